//! Simulated workloads: the controllers and kubelet of a healthy cluster, reduced to the status they write.
//!
//! A background task follows the store's change events. When a Deployment, StatefulSet, DaemonSet, ReplicaSet,
//! Job, Pod, PersistentVolumeClaim or LoadBalancer Service is created, or its spec (`metadata.generation`) or one
//! of the `testenv.riptide.dev/` annotations changes, it writes, after [`Simulation::delay`], the status a healthy
//! cluster would give it: what kstatus (Flux's health checker) calls Current. The write goes through the `/status`
//! subresource like a controller's (new resourceVersion, a MODIFIED watch event) and is skipped when the object
//! changed again in between; the task never reacts to status writes, so it never loops.
//!
//! Annotations on the object (not its pod template) make it misbehave:
//! - [`NEVER_READY`] `"true"`: observed but never ready (Deployment `Available=False`, 0 ready replicas; Pod
//!   Running but not Ready; Job stays active; PVC Pending; LoadBalancer without an ingress IP).
//! - [`FAIL`] `"true"`: Deployment `Progressing=False` reason `ProgressDeadlineExceeded`; Job `Failed` reason
//!   `BackoffLimitExceeded`; Pod phase `Failed`; ReplicaSet `ReplicaFailure`; other kinds as never-ready.
//! - [`READY_AFTER`] a duration (`"2s"`, `"500ms"`, `"1m"`): this object's delay instead of the server's.
//!
//! Service cluster IPs are allocated by the store at create time, as a real API server does.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;

use crate::store::{Event, EventType, GroupResource, ListOptions, Store, WriteOptions, now};

/// Prefix of the annotations that steer the simulation.
pub const ANNOTATION_PREFIX: &str = "testenv.riptide.dev/";
/// `"true"`: the object is observed but never becomes ready.
pub const NEVER_READY: &str = "testenv.riptide.dev/never-ready";
/// `"true"`: the object fails (rollout deadline exceeded, Job backoff limit exceeded, Pod failed).
pub const FAIL: &str = "testenv.riptide.dev/fail";
/// A duration (`"2s"`, `"500ms"`, `"1m"`): how long this object takes instead of [`Simulation::delay`].
pub const READY_AFTER: &str = "testenv.riptide.dev/ready-after";

/// How long workloads take to become ready unless configured otherwise.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(200);

/// Whether and how fast workloads are simulated. The default is on, with [`DEFAULT_DELAY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulation {
    /// Off: the store keeps what clients write and nothing fills in workload status.
    pub enabled: bool,
    /// The time between a spec change and the status that reflects it.
    pub delay: Duration,
}

impl Default for Simulation {
    fn default() -> Self {
        Self {
            enabled: true,
            delay: DEFAULT_DELAY,
        }
    }
}

/// The simulated kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    Pod,
    Pvc,
    Service,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ReplicaSet,
        Kind::Job,
        Kind::Pod,
        Kind::Pvc,
        Kind::Service,
    ];

    /// (group, version, plural).
    fn resource(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::Deployment => ("apps", "v1", "deployments"),
            Kind::StatefulSet => ("apps", "v1", "statefulsets"),
            Kind::DaemonSet => ("apps", "v1", "daemonsets"),
            Kind::ReplicaSet => ("apps", "v1", "replicasets"),
            Kind::Job => ("batch", "v1", "jobs"),
            Kind::Pod => ("", "v1", "pods"),
            Kind::Pvc => ("", "v1", "persistentvolumeclaims"),
            Kind::Service => ("", "v1", "services"),
        }
    }

    fn of(gr: &GroupResource) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            let (g, _, p) = k.resource();
            gr.0 == g && gr.1 == p
        })
    }

    /// The field manager of the component that writes this status in a real cluster.
    fn manager(self) -> &'static str {
        match self {
            Kind::Pod => "kubelet",
            Kind::Service => "cloud-controller-manager",
            _ => "kube-controller-manager",
        }
    }
}

/// How an object behaves, from its annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Healthy,
    NeverReady,
    Fail,
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][key].as_str()
}

fn flag(obj: &Value, key: &str) -> bool {
    annotation(obj, key).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn behaviour(obj: &Value) -> Behaviour {
    if flag(obj, FAIL) {
        Behaviour::Fail
    } else if flag(obj, NEVER_READY) {
        Behaviour::NeverReady
    } else {
        Behaviour::Healthy
    }
}

/// `"250ms"`, `"2s"`, `"1m"`, `"1.5s"`; `None` when unparsable.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        return None;
    };
    let secs = number.trim().parse::<f64>().ok()? * unit;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// What a scheduled write was for: the object's identity, generation and steering annotations when the change
/// was seen. A write happens only while the object still matches.
#[derive(Debug, Clone, PartialEq)]
struct Stamp {
    uid: Value,
    generation: Value,
    annotations: Map<String, Value>,
}

fn stamp(obj: &Value) -> Stamp {
    let annotations = obj["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Stamp {
        uid: obj["metadata"]["uid"].clone(),
        generation: obj["metadata"]["generation"].clone(),
        annotations,
    }
}

fn terminating(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// Whether an event is a change the simulated controllers act on: a creation, a spec change or a change of the
/// steering annotations. Status writes (including the simulation's own) are not.
fn triggers(ev: &Event) -> bool {
    if terminating(&ev.object) {
        return false;
    }
    match (ev.kind, &ev.old) {
        (EventType::Added, _) => true,
        (EventType::Modified, Some(old)) => stamp(old) != stamp(&ev.object),
        _ => false,
    }
}

/// Whether the object already has the status its current spec calls for (used after a restart or a lagging
/// event stream, when the triggering events are gone).
fn settled(kind: Kind, obj: &Value) -> bool {
    let status = &obj["status"];
    match kind {
        Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::ReplicaSet => {
            !status["observedGeneration"].is_null()
                && status["observedGeneration"] == obj["metadata"]["generation"]
        }
        Kind::Job => !status["startTime"].is_null() || obj["spec"]["suspend"] == json!(true),
        Kind::Pod | Kind::Pvc => !status["phase"].is_null(),
        Kind::Service => {
            obj["spec"]["type"] != "LoadBalancer"
                || status["loadBalancer"]["ingress"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        }
    }
}

/// FNV-1a, for stable names and addresses derived from content.
fn fnv(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// A `pod-template-hash`-like suffix for the template (Kubernetes' safe alphabet).
fn template_hash(obj: &Value) -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = fnv(obj["spec"]["template"].to_string().as_bytes());
    let mut out = String::new();
    for _ in 0..10 {
        out.push(char::from(CHARS[(h % 27) as usize]));
        h /= 27;
        if h == 0 {
            break;
        }
    }
    out
}

/// An address in `prefix.x.y` derived from the object's uid.
fn address(prefix: &str, obj: &Value) -> String {
    let h = fnv(obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .as_bytes());
    format!("{prefix}.{}.{}", (h >> 8) & 0xff, (h & 0xff).clamp(2, 254))
}

/// `spec.replicas`, which defaults to 1.
pub(crate) fn spec_replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// A condition; `lastTransitionTime` is kept from `prev` when the status did not change.
fn condition(
    prev: &Value,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) -> Value {
    let status = if status { "True" } else { "False" };
    let since = prev["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .filter(|c| c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now);
    json!({"type": type_, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
}

/// Workload conditions carry `lastUpdateTime` too.
fn workload_condition(
    prev: &Value,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) -> Value {
    let mut c = condition(prev, type_, status, reason, message, now);
    c["lastUpdateTime"] = json!(now);
    c
}

/// Sets `key` to `n` unless it is zero (the omitempty counters of Deployments, ReplicaSets and Jobs).
fn nonzero(status: &mut Value, key: &str, n: i64) {
    if n != 0 {
        status[key] = json!(n);
    }
}

/// The status the simulated cluster gives `obj` now, or `None` when it leaves the object alone.
fn status_for(kind: Kind, obj: &Value, now: &str) -> Option<Value> {
    let b = behaviour(obj);
    let prev = &obj["status"];
    let generation = obj["metadata"]["generation"].clone();
    let ready = b == Behaviour::Healthy;
    match kind {
        Kind::Deployment => {
            let n = spec_replicas(obj);
            let rs = format!("{}-{}", name(obj), template_hash(obj));
            let mut s = json!({"observedGeneration": generation});
            nonzero(&mut s, "replicas", n);
            nonzero(&mut s, "updatedReplicas", n);
            let available = if ready {
                nonzero(&mut s, "readyReplicas", n);
                nonzero(&mut s, "availableReplicas", n);
                workload_condition(
                    prev,
                    "Available",
                    true,
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                    now,
                )
            } else {
                nonzero(&mut s, "unavailableReplicas", n);
                workload_condition(
                    prev,
                    "Available",
                    n == 0,
                    if n == 0 {
                        "MinimumReplicasAvailable"
                    } else {
                        "MinimumReplicasUnavailable"
                    },
                    if n == 0 {
                        "Deployment has minimum availability."
                    } else {
                        "Deployment does not have minimum availability."
                    },
                    now,
                )
            };
            let progressing = match b {
                Behaviour::Healthy => workload_condition(
                    prev,
                    "Progressing",
                    true,
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{rs}\" has successfully progressed."),
                    now,
                ),
                Behaviour::NeverReady => workload_condition(
                    prev,
                    "Progressing",
                    true,
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{rs}\" is progressing."),
                    now,
                ),
                Behaviour::Fail => workload_condition(
                    prev,
                    "Progressing",
                    false,
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{rs}\" has timed out progressing."),
                    now,
                ),
            };
            s["conditions"] = json!([available, progressing]);
            Some(s)
        }
        Kind::StatefulSet => {
            let n = spec_replicas(obj);
            let revision = format!("{}-{}", name(obj), template_hash(obj));
            let r = if ready { n } else { 0 };
            Some(json!({
                "observedGeneration": generation,
                "replicas": n,
                "readyReplicas": r,
                "currentReplicas": n,
                "updatedReplicas": n,
                "availableReplicas": r,
                "currentRevision": revision,
                "updateRevision": revision,
                "collisionCount": 0,
            }))
        }
        Kind::DaemonSet => {
            // one simulated node
            let r = i64::from(ready);
            let mut s = json!({
                "observedGeneration": generation,
                "desiredNumberScheduled": 1,
                "currentNumberScheduled": 1,
                "numberMisscheduled": 0,
                "numberReady": r,
                "updatedNumberScheduled": 1,
            });
            nonzero(&mut s, "numberAvailable", r);
            nonzero(&mut s, "numberUnavailable", 1 - r);
            Some(s)
        }
        Kind::ReplicaSet => {
            let n = spec_replicas(obj);
            let mut s = json!({"observedGeneration": generation, "replicas": 0});
            match b {
                Behaviour::Fail => {
                    s["conditions"] = json!([condition(
                        prev,
                        "ReplicaFailure",
                        true,
                        "FailedCreate",
                        &format!(
                            "pods \"{}-\" is forbidden: simulated failure ({FAIL})",
                            name(obj)
                        ),
                        now,
                    )]);
                }
                _ => {
                    s["replicas"] = json!(n);
                    nonzero(&mut s, "fullyLabeledReplicas", n);
                    if ready {
                        nonzero(&mut s, "readyReplicas", n);
                        nonzero(&mut s, "availableReplicas", n);
                    }
                }
            }
            Some(s)
        }
        Kind::Job => {
            let finished = prev["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True"
                })
            });
            if finished || obj["spec"]["suspend"] == json!(true) {
                return None;
            }
            let start = prev["startTime"].as_str().unwrap_or(now);
            let mut s = json!({"startTime": start, "ready": 0, "terminating": 0});
            match b {
                Behaviour::Healthy => {
                    s["completionTime"] = json!(now);
                    s["succeeded"] = json!(obj["spec"]["completions"].as_i64().unwrap_or(1));
                    s["conditions"] = json!([condition(
                        prev,
                        "Complete",
                        true,
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        now,
                    )]);
                }
                Behaviour::NeverReady => {
                    s["active"] = json!(obj["spec"]["parallelism"].as_i64().unwrap_or(1));
                }
                Behaviour::Fail => {
                    s["failed"] = json!(obj["spec"]["backoffLimit"].as_i64().unwrap_or(6) + 1);
                    s["conditions"] = json!([condition(
                        prev,
                        "Failed",
                        true,
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                        now,
                    )]);
                }
            }
            Some(s)
        }
        Kind::Pod => Some(pod_status(obj, b, now)),
        Kind::Pvc => Some(if ready {
            json!({
                "phase": "Bound",
                "accessModes": obj["spec"]["accessModes"],
                "capacity": {"storage": obj["spec"]["resources"]["requests"]["storage"]},
            })
        } else {
            json!({"phase": "Pending"})
        }),
        Kind::Service => {
            let lb = obj["spec"]["type"] == "LoadBalancer" && obj["spec"]["clusterIP"] != "None";
            (lb && ready).then(|| {
                json!({"loadBalancer": {"ingress": [{"ip": address("172.18", obj), "ipMode": "VIP"}]}})
            })
        }
    }
}

fn pod_status(obj: &Value, b: Behaviour, now: &str) -> Value {
    let prev = &obj["status"];
    let start = prev["startTime"].as_str().unwrap_or(now).to_string();
    let containers: Vec<&Value> = obj["spec"]["containers"]
        .as_array()
        .map(|cs| cs.iter().collect())
        .unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    let ready = b == Behaviour::Healthy;
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let state = if b == Behaviour::Fail {
                json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": start, "finishedAt": now}})
            } else {
                json!({"running": {"startedAt": start}})
            };
            json!({
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": ready,
                "started": b != Behaviour::Fail,
                "restartCount": 0,
                "state": state,
            })
        })
        .collect();
    let unready = format!("containers with unready status: [{}]", names.join(" "));
    let (reason, message) = match b {
        Behaviour::Healthy => ("", ""),
        Behaviour::NeverReady => ("ContainersNotReady", unready.as_str()),
        Behaviour::Fail => ("PodFailed", ""),
    };
    let cond = |type_: &str, status: bool, reason: &str, message: &str| {
        let mut c = condition(prev, type_, status, reason, message, now);
        if let Some(m) = c.as_object_mut() {
            m.retain(|_, v| v != "");
        }
        c
    };
    let host_ip = "10.0.0.2";
    let pod_ip = address("10.244", obj);
    json!({
        "phase": if b == Behaviour::Fail { "Failed" } else { "Running" },
        "conditions": [
            cond("PodReadyToStartContainers", b != Behaviour::Fail, "", ""),
            cond("Initialized", true, "", ""),
            cond("Ready", ready, reason, message),
            cond("ContainersReady", ready, reason, message),
            cond("PodScheduled", true, "", ""),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    })
}

/// Follow the store's events and write simulated status until the task is dropped.
pub async fn run(store: Arc<Store>, sim: Simulation) {
    if !sim.enabled {
        return;
    }
    // subscribe before looking at what exists, so nothing falls in between
    let mut rx = store.subscribe();
    let mut tasks = JoinSet::new();
    resync(&store, &mut tasks, sim.delay);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if let Some(kind) = Kind::of(&ev.gr)
                        && triggers(&ev)
                    {
                        schedule(&mut tasks, &store, kind, &ev.object, sim.delay);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "simulation lagged behind the event stream; resyncing");
                    resync(&store, &mut tasks, sim.delay);
                }
                Err(RecvError::Closed) => return,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Schedule a write for every object whose status does not reflect its spec yet.
fn resync(store: &Arc<Store>, tasks: &mut JoinSet<()>, delay: Duration) {
    for kind in Kind::ALL {
        let (g, v, p) = kind.resource();
        let Some(rd) = store.resolve(g, v, p) else {
            continue;
        };
        let Ok(list) = store.list(&rd, None, &ListOptions::default()) else {
            continue;
        };
        for obj in list.items {
            if !terminating(&obj) && !settled(kind, &obj) {
                schedule(tasks, store, kind, &obj, delay);
            }
        }
    }
}

fn schedule(tasks: &mut JoinSet<()>, store: &Arc<Store>, kind: Kind, obj: &Value, delay: Duration) {
    let wait = annotation(obj, READY_AFTER)
        .and_then(parse_duration)
        .unwrap_or(delay);
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = name(obj).to_string();
    let expected = stamp(obj);
    let store = store.clone();
    tasks.spawn(async move {
        tokio::time::sleep(wait).await;
        write(&store, kind, &ns, &name, &expected);
    });
}

/// Write the status for `ns/name` if it still is the object `expected` describes.
fn write(store: &Store, kind: Kind, ns: &str, name: &str, expected: &Stamp) {
    let (g, v, p) = kind.resource();
    let Some(rd) = store.resolve(g, v, p) else {
        return;
    };
    let opts = WriteOptions {
        manager: kind.manager().to_string(),
        ..WriteOptions::default()
    };
    // a conflict means another status writer got in between: look again
    for _ in 0..5 {
        let Ok(current) = store.get(&rd, ns, name) else {
            return;
        };
        if terminating(&current) || stamp(&current) != *expected {
            return;
        }
        let Some(status) = status_for(kind, &current, &now()) else {
            return;
        };
        if current["status"] == status {
            return;
        }
        let mut next = (*current).clone();
        next["status"] = status;
        match store.update(&rd, ns, name, next, true, &opts) {
            Ok(_) => return,
            Err(e) if e.code == 409 => continue,
            Err(e) => {
                tracing::debug!(error = %e, kind = ?kind, ns, name, "simulated status write failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(annotations: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 3, "uid": "u1", "annotations": annotations},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}})
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn healthy_deployment_status() {
        let s = status_for(Kind::Deployment, &deployment(json!({})), "T").unwrap();
        assert_eq!(s["observedGeneration"], 3);
        for k in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ] {
            assert_eq!(s[k], 2, "{k}");
        }
        assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetAvailable");
    }

    #[test]
    fn transition_time_is_kept_while_the_status_holds() {
        let mut d = deployment(json!({}));
        d["status"] = status_for(Kind::Deployment, &d, "T1").unwrap();
        let again = status_for(Kind::Deployment, &d, "T2").unwrap();
        assert_eq!(again["conditions"][0]["lastTransitionTime"], "T1");
        assert_eq!(again["conditions"][0]["lastUpdateTime"], "T2");
        d["metadata"]["annotations"] = json!({NEVER_READY: "true"});
        let unready = status_for(Kind::Deployment, &d, "T3").unwrap();
        assert_eq!(unready["conditions"][0]["status"], "False");
        assert_eq!(unready["conditions"][0]["lastTransitionTime"], "T3");
    }

    #[test]
    fn only_spec_and_steering_annotation_changes_trigger() {
        let a = deployment(json!({"x": "1"}));
        let mut status_only = a.clone();
        status_only["status"] = json!({"replicas": 1});
        let mut other_annotation = a.clone();
        other_annotation["metadata"]["annotations"]["x"] = json!("2");
        let mut steering = a.clone();
        steering["metadata"]["annotations"][FAIL] = json!("true");
        let mut spec = a.clone();
        spec["metadata"]["generation"] = json!(4);
        let ev = |new: &Value| Event {
            rv: 1,
            gr: ("apps".into(), "deployments".into()),
            namespace: "default".into(),
            kind: EventType::Modified,
            object: Arc::new(new.clone()),
            old: Some(Arc::new(a.clone())),
        };
        assert!(!triggers(&ev(&status_only)));
        assert!(!triggers(&ev(&other_annotation)));
        assert!(triggers(&ev(&steering)));
        assert!(triggers(&ev(&spec)));
    }
}
