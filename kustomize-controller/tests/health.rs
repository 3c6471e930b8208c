//! Health checks against testenv's simulated workloads: `wait: true` and `healthChecks`, kstatus rules for
//! built-in kinds (Deployments, StatefulSets, DaemonSets, PVCs, Jobs) and Ready/observedGeneration for custom
//! resources, `healthCheckExprs` (CEL) deciding instead for the kinds they name, fail fast on Failed objects,
//! timeouts. (features.rs covers a never-ready Deployment timing out under `wait` and a Stalled custom
//! resource.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod support;

use std::time::{Duration, Instant};

use common::api::kustomize_v1::Kustomization;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

const REV1: &str = "main@sha1:1111111111111111111111111111111111111111";
const REV2: &str = "main@sha1:2222222222222222222222222222222222222222";

/// A Deployment with `annotations` (YAML map entries, indented by four spaces) on the object itself.
fn deployment(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: default
  annotations:
    {annotations}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: nginx:1
"
    )
}

const STATEFULSET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: default
spec:
  replicas: 1
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: postgres:16
";

const DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: default
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: busybox:1
";

const PVC: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: default
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
";

fn job(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  namespace: default
  annotations:
    {annotations}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: busybox:1
"
    )
}

const CRD: &str = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "widgets.example.com"},
  "spec": {"group": "example.com", "scope": "Namespaced",
    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
    "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#;

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: default
spec:
  size: 2
";

/// Requests since `from` that read `resource/name`.
fn gets(fx: &Fx, from: usize, resource: &str, name: &str) -> usize {
    fx.requests_since(from)
        .iter()
        .filter(|r| r.is("get", resource) && r.name == name)
        .count()
}

fn healthy(ks: &Kustomization) -> (String, String, String) {
    let c = ks.condition("Healthy").expect("Healthy condition");
    (
        c.status.as_str().to_string(),
        c.reason.clone(),
        c.message.clone(),
    )
}

/// Ready=True and Healthy=True as Flux writes them after a passing health check.
fn assert_healthy(ks: &Kustomization) {
    let (status, reason, message) = healthy(ks);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Succeeded"));
    assert!(message.starts_with("Health check passed in "), "{message}");
}

#[tokio::test]
async fn wait_passes_once_every_simulated_workload_is_ready() {
    let fx = start().await;
    fx.create_repo("repo").await;
    fx.publish(
        "repo",
        REV1,
        &[
            (
                "web.yaml",
                &deployment("web", "testenv.riptide.dev/ready-after: 1s"),
            ),
            ("db.yaml", STATEFULSET),
            ("agent.yaml", DAEMONSET),
            ("pvc.yaml", PVC),
        ],
    )
    .await;
    let before = fx.request_count();
    fx.create_ks("apps", json!({"wait": true, "timeout": "30s"}))
        .await;
    let ks = fx.wait_applied("apps", REV1).await;
    assert_healthy(&ks);
    assert_eq!(inventory_ids(&ks).len(), 4);
    // The Deployment is ready only a second after it was applied: the check polled it until then.
    assert!(
        gets(&fx, before, "deployments", "web") >= 2,
        "polled until ready"
    );
    assert!(
        fx.events_for("apps")
            .iter()
            .any(|e| e.message.starts_with("Health check passed in ")),
        "{:?}",
        fx.events_for("apps")
    );
    fx.stop().await;
}

/// Healthy=Unknown with reason Progressing while the checks run, for `revision`.
fn checking(ks: &Kustomization, revision: &str) -> bool {
    let expected = format!("Running health checks for revision {revision} with a timeout of 30s");
    ks.condition("Healthy").is_some_and(|c| {
        c.status.as_str() == "Unknown" && c.reason == "Progressing" && c.message == expected
    }) && ks
        .condition("Reconciling")
        .is_some_and(|c| c.status.as_str() == "True" && c.message == expected)
}

#[tokio::test]
async fn healthy_is_unknown_and_written_while_the_checks_run() {
    let fx = start().await;
    fx.create_repo("repo").await;
    let slow = deployment("web", "testenv.riptide.dev/ready-after: 3s");
    fx.publish("repo", REV1, &[("web.yaml", &slow)]).await;
    fx.create_ks("apps", json!({"wait": true, "timeout": "30s"}))
        .await;
    // Written before the wait, as Flux patches it: the inventory is already there.
    let ks = fx
        .wait_ks("apps", "Healthy Unknown for REV1", |ks| checking(ks, REV1))
        .await;
    assert_eq!(inventory_ids(&ks), ["default_web_apps_Deployment"]);
    assert!(ks.status.as_ref().unwrap().last_applied_revision.is_none());
    let ks = fx.wait_applied("apps", REV1).await;
    assert_healthy(&ks);
    assert!(ks.condition("Reconciling").is_none(), "{:?}", ks.status);

    // A new revision: Healthy goes from True to Unknown during the check, then back to True.
    let slower = slow.replace("image: nginx:1", "image: nginx:2");
    fx.publish("repo", REV2, &[("web.yaml", &slower)]).await;
    let ks = fx
        .wait_ks("apps", "Healthy Unknown for REV2", |ks| checking(ks, REV2))
        .await;
    assert_eq!(
        ks.status.as_ref().unwrap().last_applied_revision.as_deref(),
        Some(REV1)
    );
    let ks = fx.wait_applied("apps", REV2).await;
    assert_healthy(&ks);
    fx.stop().await;
}

#[tokio::test]
async fn a_failed_deployment_fails_fast_long_before_the_timeout() {
    let fx = start().await;
    fx.create_repo("repo").await;
    fx.publish(
        "repo",
        REV1,
        &[
            ("ok.yaml", &deployment("ok", "{}")),
            (
                "web.yaml",
                &deployment("web", "testenv.riptide.dev/fail: \"true\""),
            ),
        ],
    )
    .await;
    let started = Instant::now();
    fx.create_ks("apps", json!({"wait": true, "timeout": "5m"}))
        .await;
    let ks = fx.wait_failed("apps", "HealthCheckFailed").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "failed fast: {took:?}");
    let expected =
        "failed early due to stalled resources: [Deployment/default/web status: 'Failed']";
    let ready = ks.condition("Ready").unwrap();
    assert!(
        ready.message.starts_with("health check failed after ")
            && ready.message.ends_with(expected),
        "{}",
        ready.message
    );
    assert_eq!(
        healthy(&ks),
        (
            "False".to_string(),
            "HealthCheckFailed".to_string(),
            expected.to_string()
        )
    );
    assert!(
        ks.condition("Stalled")
            .is_none_or(|c| c.status.as_str() != "True"),
        "a failed health check is retried, not stalled"
    );
    let status = ks.status.as_ref().unwrap();
    assert!(status.last_applied_revision.is_none());
    assert_eq!(status.last_attempted_revision.as_deref(), Some(REV1));
    assert_eq!(
        status.history.as_ref().unwrap()[0].last_reconciled_status,
        "HealthCheckFailed"
    );
    // The objects were applied (and are in the inventory); only their health failed.
    assert_eq!(
        inventory_ids(&ks),
        ["default_ok_apps_Deployment", "default_web_apps_Deployment"]
    );
    fx.stop().await;
}

#[tokio::test]
async fn disable_fail_fast_behavior_waits_for_the_timeout() {
    let fx = start_with(kustomize_controller::Config {
        disable_fail_fast: true,
        ..test_config()
    })
    .await;
    fx.create_repo("repo").await;
    let failing = deployment("web", "testenv.riptide.dev/fail: \"true\"");
    fx.publish("repo", REV1, &[("web.yaml", &failing)]).await;
    fx.create_ks("apps", json!({"wait": true, "timeout": "2s"}))
        .await;
    let ks = fx.wait_failed("apps", "HealthCheckFailed").await;
    let expected = "timeout waiting for: [Deployment/default/web status: 'Failed']";
    assert_eq!(
        healthy(&ks),
        (
            "False".to_string(),
            "HealthCheckFailed".to_string(),
            expected.to_string()
        )
    );
    fx.stop().await;
}

#[tokio::test]
async fn health_checks_wait_for_the_listed_objects_only_and_time_out() {
    let fx = start().await;
    fx.create_repo("repo").await;
    fx.publish(
        "repo",
        REV1,
        &[
            ("fast.yaml", &deployment("fast", "{}")),
            (
                "slow.yaml",
                &deployment("slow", "testenv.riptide.dev/never-ready: \"true\""),
            ),
        ],
    )
    .await;
    fx.create_ks(
        "apps",
        json!({"timeout": "30s",
               "healthChecks": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "fast", "namespace": "default"}]}),
    )
    .await;
    let ks = fx.wait_applied("apps", REV1).await;
    assert_healthy(&ks);

    // Now the never-ready one: the check runs for the whole timeout, then fails naming it alone.
    let started = Instant::now();
    fx.ks
        .patch(
            "apps",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"timeout": "1s", "healthChecks": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fast", "namespace": "default"},
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "slow", "namespace": "default"}]}})),
        )
        .await
        .unwrap();
    let ks = fx.wait_failed("apps", "HealthCheckFailed").await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for the timeout"
    );
    let expected = "timeout waiting for: [Deployment/default/slow status: 'InProgress']";
    assert!(
        ks.condition("Ready").unwrap().message.ends_with(expected),
        "{:?}",
        ks.condition("Ready")
    );
    assert_eq!(healthy(&ks).2, expected);
    assert_eq!(
        ks.status.as_ref().unwrap().last_applied_revision.as_deref(),
        Some(REV1),
        "the last applied revision stays"
    );
    fx.stop().await;
}

#[tokio::test]
async fn jobs_pass_when_complete_and_fail_fast_when_failed() {
    let fx = start().await;
    fx.create_repo("repo").await;
    let migrate = job("migrate", "{}");
    fx.publish("repo", REV1, &[("migrate.yaml", &migrate)])
        .await;
    fx.create_ks("jobs", json!({"wait": true, "timeout": "5m"}))
        .await;
    let ks = fx.wait_applied("jobs", REV1).await;
    assert_healthy(&ks);

    let started = Instant::now();
    fx.publish(
        "repo",
        REV2,
        &[
            ("migrate.yaml", &migrate),
            (
                "broken.yaml",
                &job("broken", "testenv.riptide.dev/fail: \"true\""),
            ),
        ],
    )
    .await;
    let ks = fx.wait_failed("jobs", "HealthCheckFailed").await;
    assert!(started.elapsed() < Duration::from_secs(20), "failed fast");
    assert_eq!(
        healthy(&ks).2,
        "failed early due to stalled resources: [Job/default/broken status: 'Failed']"
    );
    assert_eq!(
        ks.status.as_ref().unwrap().last_applied_revision.as_deref(),
        Some(REV1)
    );
    fx.stop().await;
}

#[tokio::test]
async fn custom_resources_need_ready_at_the_observed_generation() {
    let fx = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(fx.client.clone());
    crds.create(&PostParams::default(), &serde_json::from_str(CRD).unwrap())
        .await
        .unwrap();
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(fx.client.clone(), "default", &ar);
    poll(|| async { widgets.list(&Default::default()).await.is_ok() }).await;
    // The widget exists at generation 1 and its controller reported Ready for that generation.
    let w: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "default"}, "spec": {"size": 1}}))
        .unwrap();
    widgets.create(&PostParams::default(), &w).await.unwrap();
    let set_status = |generation: i64, ready: &'static str| {
        let widgets = widgets.clone();
        async move {
            widgets
                .patch_status(
                    "w1",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"observedGeneration": generation,
                        "conditions": [{"type": "Ready", "status": ready, "reason": "Test", "message": "set by the test",
                                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})),
                )
                .await
                .unwrap();
        }
    };
    set_status(1, "True").await;

    // The Kustomization changes its spec (generation 2): Ready for generation 1 is not enough.
    fx.create_repo("repo").await;
    fx.publish("repo", REV1, &[("widget.yaml", WIDGET)]).await;
    let before = fx.request_count();
    fx.create_ks(
        "widgets",
        json!({"timeout": "30s", "healthChecks": [{"apiVersion": "example.com/v1", "kind": "Widget", "name": "w1"}]}),
    )
    .await;
    let not_applied = |fx: &Fx| {
        let ks = fx.ks.clone();
        async move {
            let ks = ks.get("widgets").await.unwrap();
            assert!(
                ks.condition("Ready")
                    .is_none_or(|c| c.status.as_str() != "True" && c.reason != "HealthCheckFailed"),
                "{:?}",
                ks.condition("Ready")
            );
        }
    };
    poll(|| async { gets(&fx, before, "widgets", "w1") >= 3 }).await;
    assert_eq!(
        widgets.get("w1").await.unwrap().metadata.generation,
        Some(2),
        "applied"
    );
    not_applied(&fx).await;

    // Observed, but not Ready: still in progress.
    let mark = fx.request_count();
    set_status(2, "False").await;
    poll(|| async { gets(&fx, mark, "widgets", "w1") >= 3 }).await;
    not_applied(&fx).await;

    // Ready at the observed generation: the check passes.
    set_status(2, "True").await;
    let ks = fx.wait_applied("widgets", REV1).await;
    assert_healthy(&ks);
    fx.stop().await;
}

/// Creates the Widget CRD and returns the API of widgets in `default` once it is served.
async fn widget_crd(fx: &Fx) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(fx.client.clone());
    crds.create(&PostParams::default(), &serde_json::from_str(CRD).unwrap())
        .await
        .unwrap();
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(fx.client.clone(), "default", &ar);
    poll(|| async { widgets.list(&Default::default()).await.is_ok() }).await;
    widgets
}

/// Sets the status of widget `w1` to `status` in one merge patch (the fields it leaves out are removed).
async fn set_widget_status(widgets: &Api<DynamicObject>, status: serde_json::Value) {
    let mut patch = json!({"phase": null, "conditions": null, "observedGeneration": null});
    for (k, v) in status.as_object().unwrap() {
        patch[k] = v.clone();
    }
    widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": patch })),
        )
        .await
        .unwrap();
}

/// A Ready condition as a widget's controller would write it.
fn ready_condition(status: &str) -> serde_json::Value {
    json!([{"type": "Ready", "status": status, "reason": "Test", "message": "set by the test",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}])
}

/// The widget's health by its phase, as in Flux's docs.
fn phase_exprs(api_version: &str) -> serde_json::Value {
    json!([{"apiVersion": api_version, "kind": "Widget",
            "current": "status.phase == 'Ready'", "failed": "status.phase == 'Failed'"}])
}

#[tokio::test]
async fn health_check_exprs_decide_custom_resource_health_instead_of_kstatus() {
    let fx = start().await;
    let widgets = widget_crd(&fx).await;
    fx.create_repo("repo").await;
    fx.publish("repo", REV1, &[("widget.yaml", WIDGET)]).await;
    fx.create_ks(
        "widgets",
        json!({"wait": true, "timeout": "5m", "healthCheckExprs": phase_exprs("example.com/v1")}),
    )
    .await;
    fx.wait_ks("widgets", "Healthy Unknown while checking", |ks| {
        ks.condition("Healthy")
            .is_some_and(|c| c.status.as_str() == "Unknown")
    })
    .await;
    poll(|| async { widgets.get_opt("w1").await.unwrap().is_some() }).await;

    // Ready=True by kstatus' rules, but the phase says it is still in progress: the check goes on.
    set_widget_status(
        &widgets,
        json!({"phase": "Pending", "conditions": ready_condition("True")}),
    )
    .await;
    let mark = fx.request_count();
    poll(|| async { gets(&fx, mark, "widgets", "w1") >= 3 }).await;
    let ks = fx.ks.get("widgets").await.unwrap();
    assert_eq!(
        healthy(&ks).0,
        "Unknown",
        "still checking: {:?}",
        ks.condition("Healthy")
    );
    assert!(ks.status.as_ref().unwrap().last_applied_revision.is_none());

    // Ready=False by kstatus' rules, but the phase is Ready: the expressions decide, the check passes.
    set_widget_status(
        &widgets,
        json!({"phase": "Ready", "conditions": ready_condition("False")}),
    )
    .await;
    let ks = fx.wait_applied("widgets", REV1).await;
    assert_healthy(&ks);

    // A failed phase fails fast, long before the 5m timeout.
    set_widget_status(&widgets, json!({"phase": "Failed"})).await;
    let started = Instant::now();
    fx.publish(
        "repo",
        REV2,
        &[("widget.yaml", &WIDGET.replace("size: 2", "size: 3"))],
    )
    .await;
    let ks = fx.wait_failed("widgets", "HealthCheckFailed").await;
    assert!(started.elapsed() < Duration::from_secs(20), "failed fast");
    let expected = "failed early due to stalled resources: [Widget/default/w1 status: 'Failed']";
    assert_eq!(
        healthy(&ks),
        (
            "False".to_string(),
            "HealthCheckFailed".to_string(),
            expected.to_string()
        )
    );
    let ready = ks.condition("Ready").unwrap();
    assert!(
        ready.message.starts_with("health check failed after ")
            && ready.message.ends_with(expected),
        "{}",
        ready.message
    );
    assert_eq!(
        ks.status.as_ref().unwrap().last_applied_revision.as_deref(),
        Some(REV1)
    );

    // Back to Ready: the next attempt passes.
    set_widget_status(&widgets, json!({"phase": "Ready"})).await;
    let ks = fx.wait_applied("widgets", REV2).await;
    assert_healthy(&ks);
    fx.stop().await;
}

#[tokio::test]
async fn health_check_exprs_that_cannot_be_evaluated_leave_the_object_unknown() {
    let fx = start().await;
    let widgets = widget_crd(&fx).await;
    fx.create_repo("repo").await;
    fx.publish("repo", REV1, &[("widget.yaml", WIDGET)]).await;
    // Only the group counts: an entry for v2 applies to the v1 widget.
    fx.create_ks(
        "widgets",
        json!({"wait": true, "timeout": "1s", "healthCheckExprs": phase_exprs("example.com/v2")}),
    )
    .await;
    // The widget has no status: `status` is not a variable of the expressions.
    let ks = fx.wait_failed("widgets", "HealthCheckFailed").await;
    assert_eq!(
        healthy(&ks).2,
        "timeout waiting for: [Widget/default/w1 status: 'Unknown': failed to evaluate the CEL expression \
         'status.phase == 'Failed'': no such attribute(s): status]"
    );
    assert!(
        ks.condition("Stalled")
            .is_none_or(|c| c.status.as_str() != "True"),
        "an evaluation error is retried, not stalled"
    );

    // A status without the field: the error names the missing key.
    set_widget_status(&widgets, json!({"observedGeneration": 1})).await;
    fx.wait_ks("widgets", "no such key", |ks| {
        ks.condition("Healthy").is_some_and(|c| {
            c.message
                == "timeout waiting for: [Widget/default/w1 status: 'Unknown': failed to evaluate the CEL \
                    expression 'status.phase == 'Failed'': no such key: phase]"
        })
    })
    .await;
    set_widget_status(&widgets, json!({"phase": "Ready"})).await;
    let ks = fx.wait_applied("widgets", REV1).await;
    assert_healthy(&ks);
    fx.stop().await;
}

#[tokio::test]
async fn invalid_health_check_exprs_stall_before_anything_is_applied() {
    let fx = start().await;
    fx.create_repo("repo").await;
    fx.publish(
        "repo",
        REV1,
        &[("cm.yaml", &configmap("app", &[("v", "1")]))],
    )
    .await;
    fx.create_ks(
        "apps",
        json!({"wait": true, "timeout": "30s", "healthCheckExprs": [
            {"apiVersion": "v1", "kind": "ConfigMap", "inProgress": "foo.", "current": "true"}]}),
    )
    .await;
    let ks = fx.wait_failed("apps", "InvalidCELExpression").await;
    let prefix = "Reconciliation failed terminally due to configuration error: failed to create custom status \
                  evaluator for healthchecks[0]: failed to parse the expression InProgress: failed to parse the \
                  CEL expression 'foo.': ERROR: <input>:1:";
    let ready = ks.condition("Ready").unwrap();
    assert!(ready.message.starts_with(prefix), "{}", ready.message);
    let stalled = ks.condition("Stalled").expect("Stalled");
    assert_eq!(
        (
            stalled.status.as_str(),
            stalled.reason.as_str(),
            &stalled.message
        ),
        ("True", "InvalidCELExpression", &ready.message)
    );
    let status = ks.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, ks.metadata.generation);
    assert!(
        status.last_attempted_revision.is_none(),
        "the source was not even fetched"
    );
    assert!(inventory_ids(&ks).is_empty());
    assert!(
        fx.configmap("default", "app").await.is_none(),
        "nothing applied"
    );
    assert!(
        fx.events_for("apps")
            .iter()
            .any(|e| e.reason == "InvalidCELExpression"
                && e.severity == common::reconcile::Severity::Error
                && e.message == ready.message),
        "{:?}",
        fx.events_for("apps")
    );

    // Two entries for one GroupKind are refused too.
    fx.ks
        .patch(
            "apps",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"healthCheckExprs": [
                {"apiVersion": "v1", "kind": "ConfigMap", "current": "true"},
                {"apiVersion": "v1", "kind": "ConfigMap", "current": "false"}]}})),
        )
        .await
        .unwrap();
    fx.wait_ks("apps", "duplicate refused", |ks| {
        ks.condition("Ready").is_some_and(|c| {
            c.message
                == "Reconciliation failed terminally due to configuration error: duplicate custom health \
                    check for GroupKind ConfigMap at healthchecks[1]"
        })
    })
    .await;

    // Fixed: applied, and the ConfigMap's health is decided by the expression.
    fx.ks
        .patch(
            "apps",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"healthCheckExprs": [
                {"apiVersion": "v1", "kind": "ConfigMap", "current": "data.v == '1'"}]}})),
        )
        .await
        .unwrap();
    let ks = fx.wait_applied("apps", REV1).await;
    assert_healthy(&ks);
    assert!(
        ks.condition("Stalled").is_none(),
        "{:?}",
        ks.condition("Stalled")
    );
    fx.stop().await;
}
