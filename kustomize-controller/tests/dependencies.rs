//! dependsOn with `readyExpr` (CEL over `self` and `dep`) against testenv: the expression replaces the built-in
//! readiness check (or adds to it with `AdditiveCELDependencyCheck`), evaluation errors and false results are
//! retried as `DependencyNotReady`, expressions that do not compile stall the Kustomization.
//! (features.rs covers the built-in check.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod support;

use common::api::kustomize_v1::Kustomization;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::*;

const REV1: &str = "main@sha1:1111111111111111111111111111111111111111";

/// The lockstep example of Flux's docs.
const SAME_VERSION: &str =
    "self.metadata.annotations['app/version'] == dep.metadata.annotations['app/version']";

async fn publish_two_apps(fx: &Fx) {
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
}

async fn annotate_version(fx: &Fx, name: &str, version: &str) {
    fx.ks
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"app/version": version}}})),
        )
        .await
        .unwrap();
}

async fn set_ready_expr(fx: &Fx, name: &str, expr: &str) {
    fx.ks
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"dependsOn": [{"name": "db", "readyExpr": expr}]}})),
        )
        .await
        .unwrap();
}

/// Waits until Ready is False with `reason` and `message`.
async fn wait_ready_message(fx: &Fx, name: &str, reason: &str, message: &str) -> Kustomization {
    let ks = fx
        .wait_ks(name, message, |ks| {
            ks.condition("Ready").is_some_and(|c| {
                c.status.as_str() == "False" && c.reason == reason && c.message == message
            })
        })
        .await;
    assert_invariants(&ks);
    ks
}

fn stalled(ks: &Kustomization) -> bool {
    ks.condition("Stalled")
        .is_some_and(|c| c.status.as_str() == "True")
}

#[tokio::test]
async fn ready_expr_replaces_the_built_in_readiness_check() {
    let fx = start().await;
    publish_two_apps(&fx).await;
    // The dependency is suspended: it never reconciles, so it is never Ready by the built-in check.
    fx.create_ks("db", json!({"path": "./db", "suspend": true}))
        .await;
    annotate_version(&fx, "db", "v2").await;
    fx.create_ks(
        "app",
        json!({"path": "./app", "dependsOn": [{"name": "db", "readyExpr": SAME_VERSION}]}),
    )
    .await;

    // `self` has no annotations yet: an evaluation error, retried.
    let ks = wait_ready_message(
        &fx,
        "app",
        "DependencyNotReady",
        &format!(
            "failed to evaluate the CEL expression '{SAME_VERSION}': no such key: annotations"
        ),
    )
    .await;
    assert!(!stalled(&ks), "an evaluation error is retried");

    // Both annotated, with different versions: the expression is false.
    annotate_version(&fx, "app", "v1").await;
    let ks = wait_ready_message(
        &fx,
        "app",
        "DependencyNotReady",
        "dependency 'default/db' is not ready according to readyExpr eval",
    )
    .await;
    assert!(!stalled(&ks));
    assert!(
        fx.configmap("default", "app").await.is_none(),
        "nothing applied before the dependency is ready"
    );

    // Same version: the expression holds, and nothing else is asked of the suspended dependency.
    annotate_version(&fx, "db", "v1").await;
    fx.wait_applied("app", REV1).await;
    assert!(fx.configmap("default", "app").await.is_some());
    let db = fx.ks.get("db").await.unwrap();
    assert!(
        db.condition("Ready").is_none(),
        "the dependency never became Ready: {:?}",
        db.status
    );
    fx.stop().await;
}

#[tokio::test]
async fn additive_cel_dependency_check_also_requires_the_built_in_check() {
    let fx = start_with(kustomize_controller::Config {
        additive_cel_dependency_check: true,
        ..test_config()
    })
    .await;
    publish_two_apps(&fx).await;
    fx.create_ks("db", json!({"path": "./db", "suspend": true}))
        .await;
    annotate_version(&fx, "db", "v2").await;
    fx.create_ks(
        "app",
        json!({"path": "./app", "dependsOn": [{"name": "db", "readyExpr": SAME_VERSION}]}),
    )
    .await;
    annotate_version(&fx, "app", "v1").await;
    // The expression is evaluated first.
    wait_ready_message(
        &fx,
        "app",
        "DependencyNotReady",
        "dependency 'default/db' is not ready according to readyExpr eval",
    )
    .await;
    // It holds, but the dependency is not Ready.
    annotate_version(&fx, "db", "v1").await;
    wait_ready_message(
        &fx,
        "app",
        "DependencyNotReady",
        "dependency 'default/db' is not ready",
    )
    .await;
    assert!(fx.configmap("default", "app").await.is_none());

    // Resumed, the dependency applies and becomes Ready: both checks pass.
    fx.ks
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    fx.wait_applied("db", REV1).await;
    fx.wait_applied("app", REV1).await;
    fx.stop().await;
}

#[tokio::test]
async fn a_ready_expr_that_does_not_compile_stalls_the_kustomization() {
    let fx = start().await;
    publish_two_apps(&fx).await;
    fx.create_ks("db", json!({"path": "./db"})).await;
    fx.wait_applied("db", REV1).await;

    // A variable that does not exist.
    let expr = "self.generation == deps.generation";
    fx.create_ks(
        "app",
        json!({"path": "./app", "dependsOn": [{"name": "db", "readyExpr": expr}]}),
    )
    .await;
    let ks = fx.wait_failed("app", "InvalidCELExpression").await;
    let expected = "Reconciliation failed terminally due to configuration error: failed to evaluate dependency \
                    db: failed to parse the CEL expression 'self.generation == deps.generation': ERROR: \
                    <input>:1:20: undeclared reference to 'deps' (in container '')\n \
                    | self.generation == deps.generation\n | ...................^";
    assert_eq!(ks.condition("Ready").unwrap().message, expected);
    let stalled_condition = ks.condition("Stalled").expect("Stalled");
    assert_eq!(
        (
            stalled_condition.status.as_str(),
            stalled_condition.reason.as_str(),
            stalled_condition.message.as_str()
        ),
        ("True", "InvalidCELExpression", expected)
    );
    assert_eq!(
        ks.status.as_ref().unwrap().observed_generation,
        ks.metadata.generation
    );
    assert!(
        fx.configmap("default", "app").await.is_none(),
        "nothing applied"
    );
    assert!(
        fx.events_for("app")
            .iter()
            .any(|e| e.reason == "InvalidCELExpression" && e.message == expected),
        "{:?}",
        fx.events_for("app")
    );

    // A bare field is `dyn`, not a bool, as cel-go types it.
    set_ready_expr(&fx, "app", "dep.spec.prune").await;
    let ks = wait_ready_message(
        &fx,
        "app",
        "InvalidCELExpression",
        "Reconciliation failed terminally due to configuration error: failed to evaluate dependency db: CEL \
         expression output type mismatch: expected bool, got dyn",
    )
    .await;
    assert!(stalled(&ks));

    // Compared to a bool, it compiles; and it holds.
    set_ready_expr(&fx, "app", "dep.spec.prune == true").await;
    let ks = fx.wait_applied("app", REV1).await;
    assert!(!stalled(&ks), "{:?}", ks.condition("Stalled"));
    fx.stop().await;
}
