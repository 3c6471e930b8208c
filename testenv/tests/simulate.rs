//! Simulated workloads: workloads reach the status a healthy cluster gives them (what kstatus calls Current),
//! annotations make them misbehave, and the simulation can be turned off.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::eventually;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use testenv::simulate::{FAIL, NEVER_READY, READY_AFTER};
use testenv::{Options, TestEnv};

const SECS: u64 = 10;

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn resource_api(env: &TestEnv, group: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let version = "v1";
    Api::namespaced_with(env.client(), "default", &ar(group, version, kind, plural))
}

fn deployments(env: &TestEnv) -> Api<DynamicObject> {
    resource_api(env, "apps", "Deployment", "deployments")
}

async fn create(api: &Api<DynamicObject>, doc: Value) -> Value {
    let obj: DynamicObject = serde_json::from_value(doc).unwrap();
    serde_json::to_value(api.create(&PostParams::default(), &obj).await.unwrap()).unwrap()
}

async fn get(api: &Api<DynamicObject>, name: &str) -> Value {
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()
}

/// Poll until `ok` holds for the object (every 20 ms, up to 10 s); returns it.
async fn until(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    eventually(SECS, &format!("{name}: {what}"), || async {
        let v = get(api, name).await;
        ok(&v).then_some(v)
    })
    .await
}

fn template(app: &str, image: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "main", "image": image}]}})
}

fn workload(kind: &str, name: &str, annotations: Value, spec: Value) -> Value {
    let api_version = if kind == "Job" { "batch/v1" } else { "apps/v1" };
    let mut doc = json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": template(name, "app:1")}});
    if kind == "Job" {
        doc["spec"] = json!({"template": template(name, "job:1")});
        doc["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    }
    for (k, v) in spec.as_object().into_iter().flatten() {
        doc["spec"][k] = v.clone();
    }
    doc
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn condition_is(obj: &Value, type_: &str, status: &str, reason: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == status && c["reason"] == reason)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// kstatus' Current, for the kinds simulated here (as kustomize-controller's health check computes it).
fn current(obj: &Value) -> bool {
    let st = &obj["status"];
    if st["observedGeneration"].is_number()
        && st["observedGeneration"] != obj["metadata"]["generation"]
    {
        return false;
    }
    let spec = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    match obj["kind"].as_str().unwrap_or_default() {
        "Deployment" => {
            !st["observedGeneration"].is_null()
                && [
                    "replicas",
                    "updatedReplicas",
                    "readyReplicas",
                    "availableReplicas",
                ]
                .iter()
                .all(|k| int(&st[*k]) == spec)
                && condition_is(obj, "Available", "True", "MinimumReplicasAvailable")
                && condition_is(obj, "Progressing", "True", "NewReplicaSetAvailable")
        }
        "StatefulSet" => {
            !st["observedGeneration"].is_null()
                && [
                    "replicas",
                    "readyReplicas",
                    "currentReplicas",
                    "updatedReplicas",
                ]
                .iter()
                .all(|k| int(&st[*k]) == spec)
                && st["currentRevision"].is_string()
                && st["currentRevision"] == st["updateRevision"]
        }
        "DaemonSet" => {
            let desired = int(&st["desiredNumberScheduled"]);
            !st["observedGeneration"].is_null()
                && desired > 0
                && [
                    "currentNumberScheduled",
                    "updatedNumberScheduled",
                    "numberAvailable",
                    "numberReady",
                ]
                .iter()
                .all(|k| int(&st[*k]) == desired)
        }
        "ReplicaSet" => {
            !st["observedGeneration"].is_null()
                && ["replicas", "readyReplicas", "availableReplicas"]
                    .iter()
                    .all(|k| int(&st[*k]) == spec)
        }
        "Job" => condition_is(obj, "Complete", "True", "CompletionsReached"),
        other => panic!("no kstatus rule for {other}"),
    }
}

/// Asserts `ok` keeps holding for `d` (polling every 20 ms): for "nothing happens" checks.
async fn stays(api: &Api<DynamicObject>, name: &str, d: Duration, ok: impl Fn(&Value) -> bool) {
    let until = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < until {
        let v = get(api, name).await;
        assert!(ok(&v), "{name} changed: {v:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn deployment_becomes_current_and_a_spec_change_rolls_out_again() {
    let env = TestEnv::start().await.unwrap();
    let api = deployments(&env);
    let created = create(
        &api,
        workload("Deployment", "web", json!({}), json!({"replicas": 3})),
    )
    .await;
    assert!(created["status"].is_null(), "no status at creation");
    let rv_created: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let d = until(&api, "web", "Current", current).await;
    assert_eq!(d["status"]["observedGeneration"], 1);
    assert_eq!(
        d["metadata"]["generation"], 1,
        "a status write is no spec change"
    );
    let rv: u64 = d["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv > rv_created,
        "the status write got a new resourceVersion"
    );
    let status_entry = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subresource"] == "status")
        .expect("a status managedFields entry");
    assert_eq!(status_entry["manager"], "kube-controller-manager");

    // a new image: not yet updated at once, Current again after the rollout
    let changed = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template("web", "app:2")}})),
        )
        .await
        .unwrap();
    let changed = serde_json::to_value(changed).unwrap();
    assert_eq!(changed["metadata"]["generation"], 2);
    assert!(
        !current(&changed),
        "still observed at generation 1: {changed:#}"
    );
    let d = until(&api, "web", "Current at generation 2", current).await;
    assert_eq!(d["status"]["observedGeneration"], 2);
    let progressing = condition(&d, "Progressing").unwrap();
    assert!(
        progressing["message"]
            .as_str()
            .unwrap()
            .contains("has successfully progressed")
    );

    // scaling is a spec change too
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let d = until(&api, "web", "scaled to 1", |d| {
        current(d) && d["status"]["readyReplicas"] == 1
    })
    .await;
    assert_eq!(d["status"]["observedGeneration"], 3);
    env.shutdown().await;
}

#[tokio::test]
async fn statefulsets_daemonsets_and_replicasets_become_current() {
    let env = TestEnv::start().await.unwrap();
    let sts = resource_api(&env, "apps", "StatefulSet", "statefulsets");
    let ds = resource_api(&env, "apps", "DaemonSet", "daemonsets");
    let rs = resource_api(&env, "apps", "ReplicaSet", "replicasets");
    create(
        &sts,
        workload(
            "StatefulSet",
            "db",
            json!({}),
            json!({"replicas": 2, "serviceName": "db"}),
        ),
    )
    .await;
    create(&ds, workload("DaemonSet", "agent", json!({}), json!({}))).await;
    create(
        &rs,
        workload("ReplicaSet", "web-1", json!({}), json!({"replicas": 2})),
    )
    .await;

    let s = until(&sts, "db", "Current", current).await;
    assert!(
        s["status"]["updateRevision"]
            .as_str()
            .unwrap()
            .starts_with("db-")
    );
    let d = until(&ds, "agent", "Current", current).await;
    assert_eq!(d["status"]["desiredNumberScheduled"], 1);
    until(&rs, "web-1", "Current", current).await;

    // a new template is a new revision
    let before = s["status"]["updateRevision"].clone();
    sts.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": template("db", "app:2")}})),
    )
    .await
    .unwrap();
    let s = until(&sts, "db", "Current at generation 2", |s| {
        current(s) && s["status"]["observedGeneration"] == 2
    })
    .await;
    assert_ne!(s["status"]["updateRevision"], before);
    env.shutdown().await;
}

#[tokio::test]
async fn jobs_complete_pods_run_claims_bind_and_load_balancers_get_an_address() {
    let env = TestEnv::start().await.unwrap();
    let jobs = resource_api(&env, "batch", "Job", "jobs");
    let pods = resource_api(&env, "", "Pod", "pods");
    let pvcs = resource_api(&env, "", "PersistentVolumeClaim", "persistentvolumeclaims");
    let services = resource_api(&env, "", "Service", "services");
    create(&jobs, workload("Job", "migrate", json!({}), json!({}))).await;
    create(
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}),
    )
    .await;
    create(
        &pvcs,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    create(
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;

    let job = until(&jobs, "migrate", "Complete", current).await;
    assert_eq!(job["status"]["succeeded"], 1);
    assert!(job["status"]["completionTime"].is_string());
    assert!(job["status"]["startTime"].is_string());

    let pod = until(&pods, "p", "Running and Ready", |p| {
        p["status"]["phase"] == "Running"
            && condition(p, "Ready").is_some_and(|c| c["status"] == "True")
    })
    .await;
    let statuses = pod["status"]["containerStatuses"].as_array().unwrap();
    assert_eq!(statuses.len(), 2);
    assert!(
        statuses
            .iter()
            .all(|c| c["ready"] == true && c["state"]["running"].is_object())
    );
    assert!(pod["status"]["podIP"].is_string());

    let pvc = until(&pvcs, "data", "Bound", |p| p["status"]["phase"] == "Bound").await;
    assert_eq!(pvc["status"]["capacity"]["storage"], "1Gi");
    assert_eq!(pvc["status"]["accessModes"], json!(["ReadWriteOnce"]));

    let lb = until(&services, "lb", "an ingress address", |s| {
        s["status"]["loadBalancer"]["ingress"][0]["ip"].is_string()
    })
    .await;
    assert!(lb["spec"]["clusterIP"].is_string());
    env.shutdown().await;
}

#[tokio::test]
async fn services_get_a_cluster_ip_at_creation_and_keep_it() {
    let env = TestEnv::start().await.unwrap();
    let services = resource_api(&env, "", "Service", "services");
    let svc = |name: &str, spec: Value| {
        let mut doc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}});
        for (k, v) in spec.as_object().into_iter().flatten() {
            doc["spec"][k] = v.clone();
        }
        doc
    };
    let a = create(&services, svc("a", json!({}))).await;
    let b = create(&services, svc("b", json!({}))).await;
    let ip = a["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.96."), "{ip}");
    assert_eq!(a["spec"]["clusterIPs"], json!([ip]));
    assert_ne!(
        b["spec"]["clusterIP"], a["spec"]["clusterIP"],
        "addresses are unique"
    );
    let headless = create(&services, svc("headless", json!({"clusterIP": "None"}))).await;
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let fixed = create(&services, svc("fixed", json!({"clusterIP": "10.96.200.7"}))).await;
    assert_eq!(fixed["spec"]["clusterIP"], "10.96.200.7");
    let external = create(
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}}),
    )
    .await;
    assert!(external["spec"]["clusterIP"].is_null());

    // a replace that leaves the address out keeps it, as on a real API server
    let mut replacement = svc("a", json!({"ports": [{"port": 8080}]}));
    replacement["metadata"]["resourceVersion"] = a["metadata"]["resourceVersion"].clone();
    let obj: DynamicObject = serde_json::from_value(replacement).unwrap();
    let replaced = serde_json::to_value(
        services
            .replace("a", &PostParams::default(), &obj)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(replaced["spec"]["clusterIP"], ip.as_str());
    assert_eq!(replaced["spec"]["ports"][0]["port"], 8080);
    env.shutdown().await;
}

#[tokio::test]
async fn namespaces_are_active_and_terminate_once_emptied() {
    let env = TestEnv::start().await.unwrap();
    let namespaces: Api<DynamicObject> =
        Api::all_with(env.client(), &ar("", "v1", "Namespace", "namespaces"));
    let ns = serde_json::to_value(
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
                )
                .unwrap(),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ns["status"]["phase"], "Active");
    let team_deployments = Api::<DynamicObject>::namespaced_with(
        env.client(),
        "team",
        &ar("apps", "v1", "Deployment", "deployments"),
    );
    create(
        &team_deployments,
        workload("Deployment", "web", json!({}), json!({})),
    )
    .await;
    until(&team_deployments, "web", "Current", current).await;
    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    let ns = serde_json::to_value(namespaces.get("team").await.unwrap()).unwrap();
    assert_eq!(ns["status"]["phase"], "Terminating");
    eventually(SECS, "namespace team gone", || async {
        namespaces
            .get_opt("team")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    env.shutdown().await;
}

#[tokio::test]
async fn never_ready_workloads_are_observed_but_not_ready_until_the_annotation_goes() {
    let env = TestEnv::start_with(Options::default().simulation_delay(Duration::from_millis(50)))
        .await
        .unwrap();
    let api = deployments(&env);
    let pods = api_for_pods(&env);
    let jobs = resource_api(&env, "batch", "Job", "jobs");
    let never = json!({NEVER_READY: "true"});
    create(
        &api,
        workload("Deployment", "stuck", never.clone(), json!({"replicas": 2})),
    )
    .await;
    create(&jobs, workload("Job", "stuck", never.clone(), json!({}))).await;
    create(
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stuck", "annotations": never},
            "spec": {"containers": [{"name": "a", "image": "a:1"}]}}),
    )
    .await;

    let d = until(&api, "stuck", "observed", |d| {
        d["status"]["observedGeneration"] == 1
    })
    .await;
    assert!(!current(&d));
    assert!(
        condition_is(&d, "Available", "False", "MinimumReplicasUnavailable"),
        "{d:#}"
    );
    assert!(
        condition_is(&d, "Progressing", "True", "ReplicaSetUpdated"),
        "{d:#}"
    );
    assert_eq!(d["status"]["updatedReplicas"], 2);
    assert!(d["status"]["readyReplicas"].is_null());
    let job = until(&jobs, "stuck", "started", |j| {
        j["status"]["startTime"].is_string()
    })
    .await;
    assert_eq!(job["status"]["active"], 1);
    assert!(!current(&job));
    let pod = until(&pods, "stuck", "running", |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    assert!(
        condition_is(&pod, "Ready", "False", "ContainersNotReady"),
        "{pod:#}"
    );

    // nothing more happens: a Deployment created later becomes ready while this one stays as it is
    let rv = d["metadata"]["resourceVersion"].clone();
    create(&api, workload("Deployment", "later", json!({}), json!({}))).await;
    until(&api, "later", "Current", current).await;
    assert_eq!(
        get(&api, "stuck").await["metadata"]["resourceVersion"],
        rv,
        "no further writes"
    );

    // removing the annotation lets it become ready
    api.patch(
        "stuck",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {NEVER_READY: null}}})),
    )
    .await
    .unwrap();
    let d = until(&api, "stuck", "Current", current).await;
    assert_eq!(d["metadata"]["generation"], 1);
    env.shutdown().await;
}

fn api_for_pods(env: &TestEnv) -> Api<DynamicObject> {
    resource_api(env, "", "Pod", "pods")
}

#[tokio::test]
async fn failing_workloads_report_failure() {
    let env = TestEnv::start().await.unwrap();
    let api = deployments(&env);
    let jobs = resource_api(&env, "batch", "Job", "jobs");
    let pods = api_for_pods(&env);
    let fail = json!({FAIL: "true"});
    create(
        &api,
        workload("Deployment", "broken", fail.clone(), json!({})),
    )
    .await;
    create(
        &jobs,
        workload("Job", "broken", fail.clone(), json!({"backoffLimit": 2})),
    )
    .await;
    create(
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "broken", "annotations": fail},
            "spec": {"containers": [{"name": "a", "image": "a:1"}]}}),
    )
    .await;

    let d = until(&api, "broken", "rollout failed", |d| {
        condition_is(d, "Progressing", "False", "ProgressDeadlineExceeded")
    })
    .await;
    assert_eq!(d["status"]["observedGeneration"], 1);
    assert!(condition_is(
        &d,
        "Available",
        "False",
        "MinimumReplicasUnavailable"
    ));
    let job = until(&jobs, "broken", "failed", |j| {
        condition_is(j, "Failed", "True", "BackoffLimitExceeded")
    })
    .await;
    assert_eq!(job["status"]["failed"], 3);
    assert!(job["status"]["completionTime"].is_null());
    let pod = until(&pods, "broken", "failed", |p| {
        p["status"]["phase"] == "Failed"
    })
    .await;
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        1
    );
    env.shutdown().await;
}

#[tokio::test]
async fn ready_after_delays_one_object() {
    let env = TestEnv::start_with(Options::default().simulation_delay(Duration::from_millis(20)))
        .await
        .unwrap();
    let api = deployments(&env);
    create(
        &api,
        workload(
            "Deployment",
            "slow",
            json!({READY_AFTER: "1500ms"}),
            json!({}),
        ),
    )
    .await;
    create(&api, workload("Deployment", "fast", json!({}), json!({}))).await;
    until(&api, "fast", "Current", current).await;
    assert!(
        get(&api, "slow").await["status"].is_null(),
        "slow is not ready with fast"
    );
    until(&api, "slow", "Current", current).await;
    env.shutdown().await;
}

#[tokio::test]
async fn only_the_latest_generation_is_reported() {
    let env = TestEnv::start_with(Options::default().simulation_delay(Duration::from_millis(500)))
        .await
        .unwrap();
    let mut events = env.server().store().subscribe();
    let api = deployments(&env);
    create(&api, workload("Deployment", "web", json!({}), json!({}))).await;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    until(&api, "web", "Current at generation 2", |d| {
        current(d) && d["status"]["observedGeneration"] == 2
    })
    .await;
    let mut status_writes = 0;
    while let Ok(ev) = events.try_recv() {
        if ev.gr.1 == "deployments" && !ev.object["status"].is_null() {
            status_writes += 1;
            assert_eq!(
                ev.object["status"]["observedGeneration"], 2,
                "a stale generation was reported"
            );
        }
    }
    assert_eq!(status_writes, 1);
    env.shutdown().await;
}

#[tokio::test]
async fn simulation_off_leaves_status_empty() {
    let env = TestEnv::start_with(Options::default().simulation(false))
        .await
        .unwrap();
    let api = deployments(&env);
    let jobs = resource_api(&env, "batch", "Job", "jobs");
    let pods = api_for_pods(&env);
    create(&api, workload("Deployment", "web", json!({}), json!({}))).await;
    create(&jobs, workload("Job", "once", json!({}), json!({}))).await;
    create(
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "a:1"}]}}),
    )
    .await;
    // five times the default delay
    let empty = |v: &Value| v["status"].is_null();
    stays(&api, "web", Duration::from_secs(1), empty).await;
    assert!(get(&jobs, "once").await["status"].is_null());
    assert!(get(&pods, "p").await["status"].is_null());
    env.shutdown().await;
}

#[tokio::test]
async fn objects_stored_without_status_are_simulated_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = TestEnv::start_with(Options::default().data_dir(dir.path()).simulation(false))
        .await
        .unwrap();
    create(
        &deployments(&env),
        workload("Deployment", "web", json!({}), json!({})),
    )
    .await;
    env.shutdown().await;

    let env = TestEnv::start_with(Options::default().data_dir(dir.path()))
        .await
        .unwrap();
    until(&deployments(&env), "web", "Current", current).await;
    env.shutdown().await;
}
