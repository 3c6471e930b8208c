//! Kustomization features against testenv: health, CRDs with custom resources, dependsOn, substitution,
//! force, pruning rules, deletion policies, cross-namespace refusal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::api::kustomize_v1::Kustomization;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

const REV1: &str = "main@sha1:1111111111111111111111111111111111111111";
const REV2: &str = "main@sha1:2222222222222222222222222222222222222222";
const REV3: &str = "main@sha1:3333333333333333333333333333333333333333";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  annotations:
    testenv.riptide.dev/never-ready: \"true\"
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1
";

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
";

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: apps
spec:
  size: 3
";

const NAMESPACE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: apps
";

fn widget_api(fx: &Fx, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    Api::namespaced_with(fx.client.clone(), ns, &ar)
}

#[tokio::test]
async fn crd_namespace_and_custom_resource_in_one_revision() {
    let fx = start().await;
    fx.create_repo("repo").await;
    fx.publish(
        "repo",
        REV1,
        &[
            ("crd.yaml", CRD),
            ("ns.yaml", NAMESPACE),
            ("widget.yaml", WIDGET),
        ],
    )
    .await;
    fx.create_ks(
        "infra",
        json!({"healthChecks": [{"apiVersion": "example.com/v1", "kind": "Widget", "name": "w1", "namespace": "apps"}]}),
    )
    .await;
    let ks = fx.wait_applied("infra", REV1).await;
    assert_eq!(
        inventory_ids(&ks),
        [
            "_widgets.example.com_apiextensions.k8s.io_CustomResourceDefinition",
            "_apps__Namespace",
            "apps_w1_example.com_Widget"
        ]
    );
    let healthy = ks.condition("Healthy").unwrap();
    assert_eq!(
        (healthy.status.as_str(), healthy.reason.as_str()),
        ("True", "Succeeded")
    );
    assert!(healthy.message.starts_with("Health check passed in"));
    let w = widget_api(&fx, "apps").get("w1").await.unwrap();
    assert_eq!(w.data["spec"]["size"], 3);
    fx.stop().await;
}

#[tokio::test]
async fn wait_times_out_then_passes_when_the_deployment_is_available() {
    let fx = start().await;
    fx.create_repo("repo").await;
    fx.publish("repo", REV1, &[("deploy.yaml", DEPLOYMENT)])
        .await;
    fx.create_ks("web", json!({"wait": true, "timeout": "1s"}))
        .await;
    let ks = fx.wait_failed("web", "HealthCheckFailed").await;
    let ready = ks.condition("Ready").unwrap();
    assert!(
        ready.message.starts_with("health check failed after")
            && ready
                .message
                .contains("timeout waiting for: [Deployment/default/web status: 'InProgress']"),
        "{}",
        ready.message
    );
    let healthy = ks.condition("Healthy").unwrap();
    assert_eq!(
        (healthy.status.as_str(), healthy.reason.as_str()),
        ("False", "HealthCheckFailed")
    );
    assert_eq!(
        ks.status.as_ref().unwrap().history.as_ref().unwrap()[0].last_reconciled_status,
        "HealthCheckFailed"
    );
    assert!(ks.status.as_ref().unwrap().last_applied_revision.is_none());

    // testenv's simulated workloads observed it as never ready: the rollout is under way, not available.
    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), "default");
    let status = deployments.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (status.observed_generation, status.ready_replicas),
        (Some(1), None)
    );

    // The next revision drops the annotation: the Deployment becomes available and the health check passes.
    fx.publish(
        "repo",
        REV2,
        &[(
            "deploy.yaml",
            &DEPLOYMENT.replace("testenv.riptide.dev/never-ready: \"true\"", "{}"),
        )],
    )
    .await;
    let ks = fx.wait_applied("web", REV2).await;
    let healthy = ks.condition("Healthy").unwrap();
    assert_eq!(healthy.status.as_str(), "True");
    assert!(
        fx.events_for("web")
            .iter()
            .any(|e| e.message.starts_with("Health check passed in"))
    );
    fx.stop().await;
}

#[tokio::test]
async fn health_check_fails_fast_on_a_stalled_custom_resource() {
    let fx = start().await;
    fx.create_repo("repo").await;
    fx.publish("repo", REV1, &[("crd.yaml", CRD)]).await;
    fx.create_ks("crds", json!({})).await;
    fx.wait_applied("crds", REV1).await;
    let widgets = widget_api(&fx, "default");
    let w: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "broken", "namespace": "default"}}),
    )
    .unwrap();
    widgets.create(&PostParams::default(), &w).await.unwrap();
    widgets
        .patch_status(
            "broken",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Stalled", "status": "True", "reason": "Broken", "message": "it broke"}]}})),
        )
        .await
        .unwrap();
    fx.create_repo("repo2").await;
    fx.publish(
        "repo2",
        REV2,
        &[("cm.yaml", &configmap("a", &[("x", "1")]))],
    )
    .await;
    fx.create_ks(
        "app",
        json!({"sourceRef": {"kind": "GitRepository", "name": "repo2"}, "timeout": "5m", "healthChecks": [{"apiVersion": "example.com/v1", "kind": "Widget", "name": "broken"}]}),
    )
    .await;
    let started = std::time::Instant::now();
    let ks = fx.wait_failed("app", "HealthCheckFailed").await;
    println!("fail-fast health check decided in {:?}", started.elapsed());
    assert!(
        ks.condition("Ready").unwrap().message.contains(
            "failed early due to stalled resources: [Widget/default/broken status: 'Failed']"
        ),
        "{:?}",
        ks.condition("Ready")
    );
    fx.stop().await;
}

#[tokio::test]
async fn depends_on_waits_for_the_dependency_at_the_same_revision() {
    let fx = start().await;
    fx.create_repo("repo").await;
    fx.publish(
        "repo",
        REV1,
        &[
            ("db/cm.yaml", &configmap("db", &[("v", "1")])),
            ("app/cm.yaml", &configmap("app", &[("v", "1")])),
        ],
    )
    .await;
    fx.create_ks(
        "app",
        json!({"path": "./app", "dependsOn": [{"name": "db"}]}),
    )
    .await;
    let ks = fx.wait_failed("app", "DependencyNotReady").await;
    assert_eq!(
        ks.condition("Ready").unwrap().message,
        "dependency 'default/db' not found"
    );
    assert!(
        fx.configmap("default", "app").await.is_none(),
        "nothing applied before the dependency is ready"
    );
    fx.create_ks("db", json!({"path": "./db"})).await;
    let db = fx.wait_applied("db", REV1).await;
    let app = fx.wait_applied("app", REV1).await;
    let db_applied = &db.status.as_ref().unwrap().history.as_ref().unwrap()[0].first_reconciled;
    let app_applied = &app.status.as_ref().unwrap().history.as_ref().unwrap()[0].first_reconciled;
    assert!(app_applied >= db_applied);
    fx.stop().await;
}

#[tokio::test]
async fn substitution_from_configmaps_and_secrets_without_leaking_secrets() {
    let fx = start().await;
    fx.create_repo("repo").await;
    let cms: Api<ConfigMap> = Api::namespaced(fx.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "vars", "labels": {"reconcile.fluxcd.io/watch": "Enabled"}},
            "data": {"region": "eu", "env": "overridden"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "secret-vars"}, "stringData": {"password": "s3cr3t-value"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let manifest = configmap(
        "app",
        &[
            ("env", "${env}"),
            ("region", "${region}"),
            ("password", "${password}"),
            ("fallback", "${missing:=dflt}"),
            ("kept", "$${env}"),
        ],
    );
    fx.publish("repo", REV1, &[("app.yaml", &manifest)]).await;
    fx.create_ks(
        "app",
        json!({"postBuild": {
            "substitute": {"env": "prod"},
            "substituteFrom": [{"kind": "ConfigMap", "name": "vars"}, {"kind": "Secret", "name": "secret-vars"},
                               {"kind": "ConfigMap", "name": "absent", "optional": true}]
        }}),
    )
    .await;
    fx.wait_applied("app", REV1).await;
    let cm = fx.configmap("default", "app").await.unwrap();
    assert_eq!(
        cm["data"]["env"], "prod",
        "substitute wins over substituteFrom"
    );
    assert_eq!(cm["data"]["region"], "eu");
    assert_eq!(cm["data"]["password"], "s3cr3t-value");
    assert_eq!(cm["data"]["fallback"], "dflt");
    assert_eq!(cm["data"]["kept"], "${env}");

    // A watched ConfigMap change triggers the Kustomization.
    cms.patch(
        "vars",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"region": "us"}})),
    )
    .await
    .unwrap();
    poll(|| async { fx.configmap("default", "app").await.unwrap()["data"]["region"] == "us" })
        .await;

    // A failing substitution names the variable, never the secret value.
    let broken = configmap("app", &[("password", "${password}"), ("bad", "${password")]);
    fx.publish("repo", REV2, &[("app.yaml", &broken)]).await;
    let ks = fx.wait_failed("app", "BuildFailed").await;
    for c in ks.status.as_ref().unwrap().conditions() {
        assert!(
            !c.message.contains("s3cr3t-value"),
            "secret in condition: {c:?}"
        );
    }
    for e in fx.events_for("app") {
        assert!(
            !e.message.contains("s3cr3t-value"),
            "secret in event: {e:?}"
        );
    }
    fx.stop().await;
}

#[tokio::test]
async fn force_recreates_objects_with_immutable_changes() {
    let fx = start().await;
    fx.create_repo("repo").await;
    fx.publish(
        "repo",
        REV1,
        &[("cm.yaml", &configmap("imm", &[("v", "1")]))],
    )
    .await;
    fx.create_ks("imm", json!({"force": true})).await;
    fx.wait_applied("imm", REV1).await;
    let uid = fx.configmap("default", "imm").await.unwrap()["metadata"]["uid"].clone();

    // The next apply of the object hits an immutable field error once.
    let armed = Arc::new(AtomicBool::new(true));
    let hook_armed = armed.clone();
    fx.env
        .server()
        .set_fault(Some(Arc::new(move |method, path| {
            if *method == http_patch()
                && path == "/api/v1/namespaces/default/configmaps/imm"
                && hook_armed.swap(false, Ordering::SeqCst)
            {
                return Some(testenv::ApiError::invalid(
                    "",
                    "ConfigMap",
                    "imm",
                    vec![testenv::error::Cause {
                        reason: "FieldValueInvalid".into(),
                        message: "field is immutable".into(),
                        field: "data".into(),
                    }],
                ));
            }
            None
        })));
    let before = fx.request_count();
    fx.publish(
        "repo",
        REV2,
        &[("cm.yaml", &configmap("imm", &[("v", "2")]))],
    )
    .await;
    fx.wait_applied("imm", REV2).await;
    let cm = fx.configmap("default", "imm").await.unwrap();
    assert_eq!(cm["data"]["v"], "2");
    assert_ne!(cm["metadata"]["uid"], uid, "recreated");
    assert!(
        fx.requests_since(before)
            .iter()
            .any(|r| r.method == "DELETE" && r.path.ends_with("/configmaps/imm"))
    );

    // Without force the same error fails the reconcile and deletes nothing.
    fx.ks
        .patch(
            "imm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"force": false}})),
        )
        .await
        .unwrap();
    fx.wait_applied("imm", REV2).await;
    armed.store(true, Ordering::SeqCst);
    let before = fx.request_count();
    fx.publish(
        "repo",
        REV3,
        &[("cm.yaml", &configmap("imm", &[("v", "3")]))],
    )
    .await;
    let ks = fx.wait_failed("imm", "ReconciliationFailed").await;
    assert!(
        ks.condition("Ready")
            .unwrap()
            .message
            .contains("dry-run failed"),
        "{:?}",
        ks.condition("Ready")
    );
    assert!(
        !fx.requests_since(before)
            .iter()
            .any(|r| r.method == "DELETE")
    );
    fx.env.server().set_fault(None);
    fx.stop().await;
}

fn http_patch() -> axum::http::Method {
    axum::http::Method::PATCH
}

#[tokio::test]
async fn prune_spares_opted_out_and_foreign_objects() {
    let fx = start().await;
    fx.create_repo("repo").await;
    let keep = configmap("keep", &[("v", "1")]).replace(
        "  namespace: default\n",
        "  namespace: default\n  annotations:\n    kustomize.toolkit.fluxcd.io/prune: disabled\n",
    );
    fx.publish(
        "repo",
        REV1,
        &[
            ("keep.yaml", &keep),
            ("gone.yaml", &configmap("gone", &[])),
            ("mine.yaml", &configmap("mine", &[])),
        ],
    )
    .await;
    fx.create_ks("apps", json!({})).await;
    fx.wait_applied("apps", REV1).await;
    // Someone else takes "mine" over.
    let cms: Api<ConfigMap> = Api::namespaced(fx.client.clone(), "default");
    cms.patch(
        "mine",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "someone-else"}}}),
        ),
    )
    .await
    .unwrap();
    fx.publish("repo", REV2, &[("stay.yaml", &configmap("stay", &[]))])
        .await;
    let ks = fx.wait_applied("apps", REV2).await;
    assert_eq!(inventory_ids(&ks), ["default_stay__ConfigMap"]);
    assert!(fx.configmap("default", "gone").await.is_none());
    assert!(
        fx.configmap("default", "keep").await.is_some(),
        "prune: disabled is kept"
    );
    assert!(
        fx.configmap("default", "mine").await.is_some(),
        "objects of another owner are kept"
    );
    let events = fx.events_for("apps");
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("ConfigMap/default/gone deleted")),
        "{events:?}"
    );
    fx.stop().await;
}

async fn delete_and_wait(fx: &Fx, name: &str) {
    fx.ks.delete(name, &DeleteParams::default()).await.unwrap();
    poll(|| async { fx.ks.get_opt(name).await.unwrap().is_none() }).await;
}

#[tokio::test]
async fn deletion_policies() {
    let fx = start().await;
    fx.create_repo("repo").await;
    fx.publish(
        "repo",
        REV1,
        &[
            ("delete/cm.yaml", &configmap("by-delete", &[])),
            ("orphan/cm.yaml", &configmap("by-orphan", &[])),
            ("mirror/cm.yaml", &configmap("by-mirror", &[])),
            ("suspended/cm.yaml", &configmap("by-suspended", &[])),
            ("noprune/cm.yaml", &configmap("by-noprune", &[])),
            ("wait/cm.yaml", &configmap("by-wait", &[])),
        ],
    )
    .await;
    fx.create_ks(
        "delete",
        json!({"path": "./delete", "prune": false, "deletionPolicy": "Delete"}),
    )
    .await;
    fx.create_ks(
        "orphan",
        json!({"path": "./orphan", "prune": true, "deletionPolicy": "Orphan"}),
    )
    .await;
    fx.create_ks("mirror", json!({"path": "./mirror", "prune": true}))
        .await;
    fx.create_ks("suspended", json!({"path": "./suspended", "prune": true}))
        .await;
    fx.create_ks("noprune", json!({"path": "./noprune", "prune": false}))
        .await;
    fx.create_ks(
        "wait",
        json!({"path": "./wait", "prune": false, "deletionPolicy": "WaitForTermination"}),
    )
    .await;
    for name in ["delete", "orphan", "mirror", "suspended", "noprune", "wait"] {
        fx.wait_applied(name, REV1).await;
    }
    fx.ks
        .patch(
            "suspended",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    for name in ["delete", "orphan", "mirror", "suspended", "noprune", "wait"] {
        delete_and_wait(&fx, name).await;
    }
    assert!(
        fx.configmap("default", "by-wait").await.is_none(),
        "WaitForTermination deletes"
    );
    assert!(
        fx.configmap("default", "by-delete").await.is_none(),
        "Delete deletes even without prune"
    );
    assert!(
        fx.configmap("default", "by-orphan").await.is_some(),
        "Orphan keeps"
    );
    assert!(
        fx.configmap("default", "by-mirror").await.is_none(),
        "MirrorPrune with prune deletes"
    );
    assert!(
        fx.configmap("default", "by-suspended").await.is_some(),
        "a suspended Kustomization never prunes"
    );
    assert!(
        fx.configmap("default", "by-noprune").await.is_some(),
        "MirrorPrune without prune keeps"
    );
    fx.stop().await;
}

#[tokio::test]
async fn cross_namespace_source_refused_when_disabled() {
    let mut config = test_config();
    config.no_cross_namespace_refs = true;
    let fx = start_with(config).await;
    fx.create_ks(
        "x",
        json!({"sourceRef": {"kind": "GitRepository", "name": "repo", "namespace": "flux-system"}}),
    )
    .await;
    let ks: Kustomization = fx.wait_failed("x", "AccessDenied").await;
    assert_eq!(
        ks.condition("Ready").unwrap().message,
        "can't access 'GitRepository/flux-system/repo', cross-namespace references have been blocked"
    );
    assert_eq!(ks.condition("Stalled").unwrap().status.as_str(), "True");
    fx.stop().await;
}

#[tokio::test]
async fn missing_source_and_artifact_wait_for_the_source() {
    let fx = start().await;
    fx.create_ks("early", json!({})).await;
    let ks = fx.wait_failed("early", "ArtifactFailed").await;
    assert_eq!(
        ks.condition("Ready").unwrap().message,
        "Source 'GitRepository/default/repo' not found"
    );
    fx.create_repo("repo").await;
    fx.wait_ks("early", "no artifact", |ks| {
        ks.condition("Ready")
            .is_some_and(|c| c.message == "Source artifact not found, retrying in 500ms")
    })
    .await;
    fx.publish("repo", REV1, &[("cm.yaml", &configmap("late", &[]))])
        .await;
    fx.wait_applied("early", REV1).await;
    assert!(fx.configmap("default", "late").await.is_some());
    fx.stop().await;
}

#[tokio::test]
async fn kubeconfig_secret_targets_another_cluster_and_exec_is_refused() {
    let fx = start().await;
    // The "remote" cluster is a second testenv.
    let remote = testenv::TestEnv::start().await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), "default");
    let kubeconfig = testenv::kubeconfig_yaml(remote.url());
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "remote"}, "stringData": {"value": kubeconfig}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let exec = format!(
        "{kubeconfig}\n"
    )
    .replace("users:", "users:\n- name: exec-user\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/true");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "exec"}, "stringData": {"value": exec}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    fx.create_repo("repo").await;
    fx.publish(
        "repo",
        REV1,
        &[("cm.yaml", &configmap("remote-cm", &[("v", "1")]))],
    )
    .await;
    fx.create_ks(
        "remote",
        json!({"kubeConfig": {"secretRef": {"name": "remote"}}}),
    )
    .await;
    fx.wait_applied("remote", REV1).await;
    let remote_cms: Api<ConfigMap> = Api::namespaced(remote.client(), "default");
    assert!(
        remote_cms.get_opt("remote-cm").await.unwrap().is_some(),
        "applied to the remote cluster"
    );
    assert!(
        fx.configmap("default", "remote-cm").await.is_none(),
        "not to the local one"
    );

    fx.create_ks(
        "exec",
        json!({"kubeConfig": {"secretRef": {"name": "exec"}}}),
    )
    .await;
    let ks = fx.wait_failed("exec", "ReconciliationFailed").await;
    assert!(
        ks.condition("Ready")
            .unwrap()
            .message
            .contains("exec plugins are not allowed"),
        "{:?}",
        ks.condition("Ready")
    );
    remote.shutdown().await;
    fx.stop().await;
}
