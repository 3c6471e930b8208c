//! Kustomization reconciles against testenv with a static artifact server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod support;

use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::*;

const REV1: &str = "main@sha1:1111111111111111111111111111111111111111";
const REV2: &str = "main@sha1:2222222222222222222222222222222222222222";

#[tokio::test]
async fn create_update_prune_drift_and_cheap_reconciles() {
    let fx = start().await;
    fx.create_repo("repo").await;
    let a = configmap("a", &[("x", "1")]);
    let b = configmap("b", &[("y", "1")]);
    fx.publish(
        "repo",
        REV1,
        &[
            ("deploy/a.yaml", &a),
            ("deploy/b.yaml", &b),
            ("deploy/README.md", "docs"),
        ],
    )
    .await;
    fx.create_ks("apps", json!({"path": "./deploy"})).await;

    let ks = fx.wait_applied("apps", REV1).await;
    let status = ks.status.clone().unwrap();
    assert_eq!(
        inventory_ids(&ks),
        ["default_a__ConfigMap", "default_b__ConfigMap"]
    );
    assert_eq!(status.inventory_entries()[0].version, "v1");
    assert_eq!(status.last_applied_revision.as_deref(), Some(REV1));
    assert_eq!(status.last_attempted_revision.as_deref(), Some(REV1));
    let history = status.history.clone().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].last_reconciled_status, "ReconciliationSucceeded");
    assert_eq!(history[0].metadata.as_ref().unwrap()["revision"], REV1);
    assert!(history[0].digest.starts_with("sha256:"));
    assert!(ks.condition("Reconciling").is_none());
    assert!(
        ks.condition("Healthy").is_none(),
        "no health checks, no Healthy"
    );

    let cm = fx.configmap("default", "a").await.unwrap();
    assert_eq!(
        cm["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"],
        "apps"
    );
    assert_eq!(
        cm["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/namespace"],
        "default"
    );
    assert!(
        cm["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["manager"] == "kustomize-controller" && m["operation"] == "Apply")
    );
    let events = fx.events_for("apps");
    assert!(
        events.iter().any(|e| e.message
            == "ConfigMap/default/a created\nConfigMap/default/b created"
            && e.metadata
                .get("kustomize.toolkit.fluxcd.io/revision")
                .map(String::as_str)
                == Some(REV1)),
        "{events:?}"
    );

    // A new revision: a changes, b goes, c arrives. The GitRepository watch triggers the reconcile.
    let a2 = configmap("a", &[("x", "2")]);
    let c = configmap("c", &[("z", "1")]);
    fx.publish(
        "repo",
        REV2,
        &[("deploy/a.yaml", &a2), ("deploy/c.yaml", &c)],
    )
    .await;
    let ks = fx.wait_applied("apps", REV2).await;
    assert_eq!(
        inventory_ids(&ks),
        ["default_a__ConfigMap", "default_c__ConfigMap"]
    );
    assert!(fx.configmap("default", "b").await.is_none(), "b pruned");
    assert_eq!(
        fx.configmap("default", "a").await.unwrap()["data"]["x"],
        "2"
    );
    assert_eq!(
        ks.status.as_ref().unwrap().history.as_ref().unwrap().len(),
        2
    );
    let events = fx.events_for("apps");
    assert!(
        events
            .iter()
            .any(|e| e.message == "ConfigMap/default/b deleted"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.message == "ConfigMap/default/a configured\nConfigMap/default/c created"),
        "{events:?}"
    );

    // An unchanged reconcile costs one request per object (the dry-run).
    let before = fx.request_count();
    fx.request_reconcile("apps", "t1").await;
    let requests = fx.requests_since(before);
    let object_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/namespaces/default/configmaps"))
        .collect();
    println!(
        "unchanged reconcile: {} requests for 2 objects: {:?}",
        object_requests.len(),
        object_requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
    assert_eq!(object_requests.len(), 2, "one dry-run per unchanged object");
    assert!(object_requests.iter().all(|r| r.method == "PATCH"));

    // Drift: someone edits a; the next reconcile reverts it.
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(fx.client.clone(), "default");
    cms.patch(
        "a",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"data": {"x": "hacked"}})),
    )
    .await
    .unwrap();
    let ks = fx.request_reconcile("apps", "t2").await;
    assert_eq!(
        fx.configmap("default", "a").await.unwrap()["data"]["x"],
        "2",
        "drift reverted"
    );
    assert!(
        fx.events_for("apps")
            .iter()
            .any(|e| e.message == "ConfigMap/default/a configured")
    );
    assert_invariants(&ks);
    fx.stop().await;
}

#[tokio::test]
async fn failures_apply_nothing_and_delete_nothing() {
    let fx = start().await;
    fx.create_repo("repo").await;
    let a = configmap("a", &[("x", "1")]);
    let b = configmap("b", &[("y", "1")]);
    fx.publish("repo", REV1, &[("a.yaml", &a), ("b.yaml", &b)])
        .await;
    fx.create_ks(
        "apps",
        json!({"postBuild": {"substitute": {"var": "value"}}}),
    )
    .await;
    let ks = fx.wait_applied("apps", REV1).await;
    let inventory = inventory_ids(&ks);
    let baseline = fx.request_count();

    let a2 = configmap("a", &[("x", "2")]);
    let check = |ks: &common::api::kustomize_v1::Kustomization| {
        assert_eq!(inventory_ids(ks), inventory, "inventory kept");
        assert_eq!(
            ks.status.as_ref().unwrap().last_applied_revision.as_deref(),
            Some(REV1)
        );
    };
    let assert_untouched = || async {
        assert_eq!(
            fx.configmap("default", "a").await.unwrap()["data"]["x"],
            "1"
        );
        assert!(fx.configmap("default", "b").await.is_some());
        let deletes: Vec<_> = fx
            .requests_since(baseline)
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .collect();
        assert!(deletes.is_empty(), "no DELETE: {deletes:?}");
    };

    // Digest mismatch.
    fx.publish_bytes(
        "repo",
        "main@sha1:digest",
        tarball(&[("a.yaml", &a2)]),
        Some("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
    )
    .await;
    let ks = fx.wait_failed("apps", "ArtifactFailed").await;
    assert!(
        ks.condition("Ready")
            .unwrap()
            .message
            .contains("doesn't match"),
        "{:?}",
        ks.condition("Ready")
    );
    check(&ks);
    assert_untouched().await;

    // Artifact gone (404).
    fx.set_artifact(
        "repo",
        "main@sha1:gone",
        &format!("{}/missing.tar.gz", fx.base_url),
        "sha256:00",
    )
    .await;
    let ks = fx
        .wait_ks("apps", "artifact not found", |ks| {
            ks.condition("Ready").is_some_and(|c| {
                c.message
                    .starts_with("Source is not ready, artifact not found")
            })
        })
        .await;
    assert_eq!(ks.condition("Ready").unwrap().reason, "ArtifactFailed");
    check(&ks);

    // Unsafe tarball.
    fx.publish_bytes("repo", "main@sha1:evil", evil_tarball(), None)
        .await;
    let ks = fx
        .wait_ks("apps", "illegal path", |ks| {
            ks.condition("Ready")
                .is_some_and(|c| c.message.contains("illegal path"))
        })
        .await;
    assert_eq!(ks.condition("Ready").unwrap().reason, "ArtifactFailed");
    check(&ks);
    assert_untouched().await;

    // Build failure.
    fx.publish(
        "repo",
        "main@sha1:build",
        &[
            ("kustomization.yaml", "resources: [missing.yaml]\n"),
            ("a.yaml", &a2),
        ],
    )
    .await;
    let ks = fx.wait_failed("apps", "BuildFailed").await;
    assert!(
        ks.condition("Ready")
            .unwrap()
            .message
            .contains("kustomize build failed"),
        "{:?}",
        ks.condition("Ready")
    );
    check(&ks);
    assert_untouched().await;

    // Substitution failure.
    let broken = configmap("a", &[("x", "${var")]);
    fx.publish("repo", "main@sha1:subst", &[("a.yaml", &broken)])
        .await;
    let ks = fx
        .wait_ks("apps", "substitution failure", |ks| {
            ks.condition("Ready")
                .is_some_and(|c| c.message.contains("post build failed"))
        })
        .await;
    assert_eq!(ks.condition("Ready").unwrap().reason, "BuildFailed");
    check(&ks);
    assert_untouched().await;

    // Dry-run failure: one object in a namespace that does not exist; a's change is not applied either.
    let elsewhere =
        configmap("c", &[("z", "1")]).replace("namespace: default", "namespace: nowhere");
    fx.publish(
        "repo",
        "main@sha1:dryrun",
        &[("a.yaml", &a2), ("c.yaml", &elsewhere)],
    )
    .await;
    let ks = fx.wait_failed("apps", "ReconciliationFailed").await;
    assert!(
        ks.condition("Ready")
            .unwrap()
            .message
            .starts_with("ConfigMap/nowhere/c not found"),
        "{:?}",
        ks.condition("Ready")
    );
    check(&ks);
    assert_untouched().await;

    // A namespaced object without a namespace is refused as Flux refuses it.
    let nameless = configmap("d", &[("z", "1")]).replace("  namespace: default\n", "");
    fx.publish(
        "repo",
        "main@sha1:nonamespace",
        &[("a.yaml", &a2), ("d.yaml", &nameless)],
    )
    .await;
    let ks = fx
        .wait_ks("apps", "namespace not specified", |ks| {
            ks.condition("Ready")
                .is_some_and(|c| c.message.starts_with("ConfigMap/d namespace not specified"))
        })
        .await;
    check(&ks);
    assert_untouched().await;

    // A build with zero objects does not prune everything.
    fx.publish("repo", "main@sha1:empty", &[("notes.txt", "nothing here")])
        .await;
    let ks = fx
        .wait_ks("apps", "empty build refused", |ks| {
            ks.condition("Ready")
                .is_some_and(|c| c.message.contains("refusing to prune them all"))
        })
        .await;
    assert_eq!(
        ks.condition("Ready").unwrap().reason,
        "ReconciliationFailed"
    );
    check(&ks);
    assert_untouched().await;

    // Recovery.
    fx.publish("repo", REV2, &[("a.yaml", &a2), ("b.yaml", &b)])
        .await;
    fx.wait_applied("apps", REV2).await;
    assert_eq!(
        fx.configmap("default", "a").await.unwrap()["data"]["x"],
        "2"
    );
    fx.stop().await;
}
