//! Health: kstatus rules for built-in kinds, Ready/Reconciling/Stalled/observedGeneration for custom resources,
//! `spec.healthCheckExprs` (CEL, see `expr`) instead of both for the GroupKinds they name, and waiting for a set
//! of objects to become Current (fail fast on Failed, timeout).

use std::time::{Duration, Instant};

use kube::Client;
use serde_json::Value;

use super::discovery::{Resolver, is_not_found};
use super::expr::CustomHealth;
use super::inventory::ObjMeta;

/// kstatus' status values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Failed,
    Current,
    Terminating,
    NotFound,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "InProgress",
            Status::Failed => "Failed",
            Status::Current => "Current",
            Status::Terminating => "Terminating",
            Status::NotFound => "NotFound",
            Status::Unknown => "Unknown",
        }
    }
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn condition_is(obj: &Value, type_: &str, status: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == status)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The status of one object and a message, following kstatus.
pub fn compute(obj: &Value) -> (Status, String) {
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        return (
            Status::Terminating,
            "Resource scheduled for deletion".into(),
        );
    }
    let generation = obj["metadata"]["generation"].as_i64();
    if let (Some(g), Some(observed)) = (generation, obj["status"]["observedGeneration"].as_i64())
        && observed != g
    {
        return (
            Status::InProgress,
            format!("observed generation {observed} does not match generation {g}"),
        );
    }
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let group = super::inventory::split_api_version(api_version).0;
    let builtin = match (group, kind) {
        ("apps", "Deployment") => Some(deployment(obj)),
        ("apps", "StatefulSet") => Some(statefulset(obj)),
        ("apps", "DaemonSet") => Some(daemonset(obj)),
        ("apps", "ReplicaSet") => Some(replicaset(obj)),
        ("", "Pod") => Some(pod(obj)),
        ("", "PersistentVolumeClaim") => Some(phase_is(obj, "Bound")),
        ("", "Namespace") => Some(phase_is(obj, "Active")),
        ("", "Service") => Some(service(obj)),
        ("batch", "Job") => Some(job(obj)),
        ("policy", "PodDisruptionBudget") => Some(pdb(obj)),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Some(crd(obj)),
        _ => None,
    };
    if let Some(s) = builtin {
        return s;
    }
    generic(obj)
}

/// Custom resources: Stalled → Failed, Reconciling → InProgress, Ready=False → InProgress.
fn generic(obj: &Value) -> (Status, String) {
    let msg = |t: &str| {
        condition(obj, t)
            .and_then(|c| c["message"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    if condition_is(obj, "Stalled", "True") {
        return (Status::Failed, msg("Stalled"));
    }
    if condition_is(obj, "Reconciling", "True") {
        return (Status::InProgress, msg("Reconciling"));
    }
    if condition_is(obj, "Ready", "False") {
        return (Status::InProgress, msg("Ready"));
    }
    (Status::Current, "Resource is current".into())
}

fn replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn deployment(obj: &Value) -> (Status, String) {
    if condition(obj, "Progressing").is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return (Status::Failed, "Progress deadline exceeded".into());
    }
    let spec = replicas(obj);
    let st = &obj["status"];
    let (total, updated, ready, available) = (
        int(&st["replicas"]),
        int(&st["updatedReplicas"]),
        int(&st["readyReplicas"]),
        int(&st["availableReplicas"]),
    );
    if spec > total {
        return (Status::InProgress, format!("Replicas: {total}/{spec}"));
    }
    if spec > updated {
        return (Status::InProgress, format!("Updated: {updated}/{spec}"));
    }
    if total > spec {
        return (
            Status::InProgress,
            format!("Pending termination: {}", total - spec),
        );
    }
    if spec > available {
        return (Status::InProgress, format!("Available: {available}/{spec}"));
    }
    if spec > ready {
        return (Status::InProgress, format!("Ready: {ready}/{spec}"));
    }
    if spec > 0 && !condition_is(obj, "Available", "True") {
        return (Status::InProgress, "Deployment not Available".into());
    }
    (
        Status::Current,
        format!("Deployment is available. Replicas: {total}"),
    )
}

fn statefulset(obj: &Value) -> (Status, String) {
    let spec = replicas(obj);
    let st = &obj["status"];
    let (ready, current, updated) = (
        int(&st["readyReplicas"]),
        int(&st["currentReplicas"]),
        int(&st["updatedReplicas"]),
    );
    if spec > ready {
        return (Status::InProgress, format!("Ready: {ready}/{spec}"));
    }
    if obj["spec"]["updateStrategy"]["type"] != "OnDelete" && (spec > updated.max(current)) {
        return (Status::InProgress, format!("Updated: {updated}/{spec}"));
    }
    (
        Status::Current,
        format!("All replicas scheduled as expected. Replicas: {ready}"),
    )
}

fn daemonset(obj: &Value) -> (Status, String) {
    let st = &obj["status"];
    let desired = int(&st["desiredNumberScheduled"]);
    for (field, name) in [
        ("currentNumberScheduled", "Current"),
        ("updatedNumberScheduled", "Updated"),
        ("numberAvailable", "Available"),
        ("numberReady", "Ready"),
    ] {
        let n = int(&st[field]);
        if desired > n {
            return (Status::InProgress, format!("{name}: {n}/{desired}"));
        }
    }
    (
        Status::Current,
        format!("All replicas scheduled as expected. Replicas: {desired}"),
    )
}

fn replicaset(obj: &Value) -> (Status, String) {
    let spec = replicas(obj);
    let st = &obj["status"];
    for (field, name) in [
        ("replicas", "Replicas"),
        ("readyReplicas", "Ready"),
        ("availableReplicas", "Available"),
    ] {
        let n = int(&st[field]);
        if spec > n {
            return (Status::InProgress, format!("{name}: {n}/{spec}"));
        }
    }
    (
        Status::Current,
        format!("ReplicaSet is available. Replicas: {spec}"),
    )
}

fn pod(obj: &Value) -> (Status, String) {
    match obj["status"]["phase"].as_str() {
        Some("Succeeded") => (Status::Current, "Pod has completed successfully".into()),
        Some("Failed") => (
            Status::Failed,
            "Pod has completed, but not successfully".into(),
        ),
        Some("Running") if condition_is(obj, "Ready", "True") => {
            (Status::Current, "Pod is Ready".into())
        }
        _ => (Status::InProgress, "Pod is not Ready".into()),
    }
}

fn phase_is(obj: &Value, phase: &str) -> (Status, String) {
    if obj["status"]["phase"] == phase {
        (
            Status::Current,
            format!("{} is {phase}", obj["kind"].as_str().unwrap_or("")),
        )
    } else if obj["kind"] == "Namespace" && obj["status"]["phase"] == "Terminating" {
        (Status::Terminating, "Namespace is terminating".into())
    } else {
        (Status::InProgress, format!("not {phase}"))
    }
}

fn service(obj: &Value) -> (Status, String) {
    if obj["spec"]["type"] == "LoadBalancer"
        && obj["spec"]["clusterIP"] != "None"
        && obj["status"]["loadBalancer"]["ingress"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    {
        return (Status::InProgress, "Pending external IP".into());
    }
    (Status::Current, "Service is ready".into())
}

fn job(obj: &Value) -> (Status, String) {
    if condition_is(obj, "Failed", "True") {
        return (Status::Failed, "Job Failed".into());
    }
    if condition_is(obj, "Complete", "True") {
        return (Status::Current, "Job Completed".into());
    }
    (Status::InProgress, "Job in progress".into())
}

fn pdb(obj: &Value) -> (Status, String) {
    if condition_is(obj, "DisruptionAllowed", "True")
        || int(&obj["status"]["currentHealthy"]) >= int(&obj["status"]["desiredHealthy"])
    {
        (Status::Current, "Budget is met".into())
    } else {
        (Status::InProgress, "Budget not met".into())
    }
}

fn crd(obj: &Value) -> (Status, String) {
    if condition_is(obj, "NamesAccepted", "False") {
        return (Status::Failed, "CRD names have not been accepted".into());
    }
    if condition_is(obj, "Established", "True") {
        return (Status::Current, "CRD is established".into());
    }
    (Status::InProgress, "CRD is not established".into())
}

/// The error of a failed read as Go's client prints it: the API server's message alone.
fn read_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// Why the wait ended without every object Current.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("timeout waiting for: [{0}]")]
    Timeout(String),
    #[error("failed early due to stalled resources: [{0}]")]
    Failed(String),
}

/// How to wait.
#[derive(Clone, Copy, Debug)]
pub struct WaitOptions {
    pub timeout: Duration,
    pub interval: Duration,
    pub fail_fast: bool,
}

/// Polls `set` until every object is Current, one is Failed (with `fail_fast`) or `timeout` passes. Objects whose
/// GroupKind `custom` covers get their status from its expressions, the others from kstatus' rules.
pub async fn wait_for(
    client: &Client,
    resolver: &Resolver,
    set: &[ObjMeta],
    custom: &CustomHealth,
    opts: WaitOptions,
) -> Result<(), WaitError> {
    if set.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + opts.timeout;
    loop {
        let statuses = futures::future::join_all(set.iter().map(|m| async move {
            let resolved = match resolver.resolve_meta(client, m).await {
                Ok(r) => r,
                Err(e) if is_not_found(&e) => return (m, Status::NotFound, String::new()),
                Err(e) => return (m, Status::Unknown, read_error(&e)),
            };
            match resolved
                .api(client.clone(), &m.namespace)
                .get_opt(&m.name)
                .await
            {
                Ok(Some(obj)) => {
                    let value = serde_json::to_value(&obj).unwrap_or_default();
                    let (s, msg) = custom.status(&value).unwrap_or_else(|| compute(&value));
                    (m, s, msg)
                }
                Ok(None) => (m, Status::NotFound, String::new()),
                Err(e) => (m, Status::Unknown, read_error(&e)),
            }
        }))
        .await;
        if statuses.iter().all(|(_, s, _)| *s == Status::Current) {
            return Ok(());
        }
        let failed: Vec<_> = statuses
            .iter()
            .filter(|(_, s, _)| *s == Status::Failed)
            .collect();
        // kstatus keeps the error of an object it could not read (Unknown) and Flux appends it.
        let describe = |list: &[&(&ObjMeta, Status, String)]| {
            list.iter()
                .map(|(m, s, msg)| match s {
                    Status::Unknown if !msg.is_empty() => {
                        format!("{m} status: '{}': {msg}", s.as_str())
                    }
                    _ => format!("{m} status: '{}'", s.as_str()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if opts.fail_fast && !failed.is_empty() {
            return Err(WaitError::Failed(describe(&failed)));
        }
        if Instant::now() >= deadline {
            let pending: Vec<_> = statuses
                .iter()
                .filter(|(_, s, _)| *s != Status::Current)
                .collect();
            return Err(WaitError::Timeout(describe(&pending)));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(opts.interval.min(left)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_rules() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1}
        });
        assert_eq!(compute(&d).0, Status::InProgress);
        d["status"] = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Available", "status": "True"}]});
        assert_eq!(compute(&d).0, Status::Current);
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert_eq!(compute(&d).0, Status::Failed);
    }

    #[test]
    fn custom_resource_rules() {
        let mut cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "generation": 1}});
        assert_eq!(compute(&cr).0, Status::Current, "no status is current");
        cr["status"] =
            json!({"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False"}]});
        assert_eq!(compute(&cr).0, Status::InProgress);
        cr["status"]["conditions"] =
            json!([{"type": "Stalled", "status": "True", "message": "broken"}]);
        assert_eq!(compute(&cr), (Status::Failed, "broken".into()));
        cr["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(compute(&cr).0, Status::Current);
        cr["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(compute(&cr).0, Status::Terminating);
    }

    #[test]
    fn crd_and_namespace() {
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert_eq!(compute(&crd).0, Status::Current);
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "status": {"phase": "Active"}});
        assert_eq!(compute(&ns).0, Status::Current);
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(compute(&job).0, Status::Failed);
    }
}
