//! `riptide suspend` and `riptide resume` as a user runs them, against testenv with Flux's CRDs and no
//! controllers: what they write, and that resume waits only for kinds with a reconciler (unless `--wait=false`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

fn riptide(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_write_spec_suspend_and_the_request() {
    let env = testenv::TestEnv::start().await.unwrap();
    let client = env.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in common::api::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let alert = resource("notification.toolkit.fluxcd.io", "v1beta3", "Alert");
    let provider = resource("notification.toolkit.fluxcd.io", "v1beta3", "Provider");
    let ks = resource("kustomize.toolkit.fluxcd.io", "v1", "Kustomization");
    let api =
        |ar: &ApiResource| Api::<DynamicObject>::namespaced_with(client.clone(), "default", ar);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while api(&ks).list(&Default::default()).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "CRDs not served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let create = |ar: &ApiResource, name: &str, spec: serde_json::Value| {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": ar.api_version, "kind": ar.kind,
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}))
        .unwrap();
        let api = api(ar);
        async move { api.create(&PostParams::default(), &obj).await.unwrap() }
    };
    create(&provider, "slack", json!({"type": "slack"})).await;
    create(
        &alert,
        "on-call",
        json!({"providerRef": {"name": "slack"}, "eventSources": [{"kind": "Kustomization", "name": "*"}]}),
    )
    .await;
    create(
        &ks,
        "apps",
        json!({"interval": "10m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "repo"}}),
    )
    .await;
    let kubeconfig = env.kubeconfig().display().to_string();
    let suspended = |ar: &ApiResource, name: &str| {
        let api = api(ar);
        let name = name.to_string();
        async move {
            let obj = api.get(&name).await.unwrap();
            obj.data["spec"]["suspend"].as_bool()
        }
    };

    for (kind, ar, name, lower) in [
        ("alert", &alert, "on-call", "alert"),
        ("alert-provider", &provider, "slack", "provider"),
        ("ks", &ks, "apps", "kustomization"),
    ] {
        let (ok, out) = riptide(&[
            "suspend",
            kind,
            name,
            "-n",
            "default",
            "--kubeconfig",
            &kubeconfig,
        ]);
        assert!(ok, "{out}");
        assert!(out.contains(&format!("✔ {lower} suspended")), "{out}");
        assert_eq!(suspended(ar, name).await, Some(true), "{kind}");
    }

    // Alerts and Providers have no reconciliation: resume returns without waiting for one.
    let (ok, out) = riptide(&[
        "resume",
        "alert",
        "on-call",
        "-n",
        "default",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(
        ok && out.contains("✔ alert resumed") && !out.contains("waiting"),
        "{out}"
    );
    assert_eq!(suspended(&alert, "on-call").await, Some(false));

    // A Kustomization with --wait=false: resumed and a reconciliation requested, nothing awaited.
    let (ok, out) = riptide(&[
        "resume",
        "ks",
        "apps",
        "-n",
        "default",
        "--wait=false",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(ok && out.contains("✔ kustomization resumed"), "{out}");
    let obj = api(&ks).get("apps").await.unwrap();
    assert_eq!(obj.data["spec"]["suspend"].as_bool(), Some(false));
    assert!(
        obj.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("reconcile.fluxcd.io/requestedAt")),
        "{:?}",
        obj.metadata.annotations
    );

    // With no controller to answer, waiting for the Kustomization times out with a clear error.
    let (ok, out) = riptide(&[
        "resume",
        "ks",
        "apps",
        "-n",
        "default",
        "--timeout",
        "1s",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("is its controller running?"), "{out}");

    // An object that does not exist is named.
    let (ok, out) = riptide(&[
        "suspend",
        "receiver",
        "nope",
        "-n",
        "default",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(!ok && out.contains("Receiver default/nope"), "{out}");
}
