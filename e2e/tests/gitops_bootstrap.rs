//! Scenarios 1 and 2: bootstrap a GitRepository + Kustomization, then a new commit reaches the cluster within one
//! interval (the push → applied latency is printed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use common::api::kustomize_v1::Kustomization;
use common::api::source_v1::GitRepository;
use e2e::{
    DEADLINE, Env, await_object, await_ready_at, condition_field, fixtures, main_revision, scenario,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};

/// Pushes the first version of the app and waits for it to be applied; returns the repository.
async fn bootstrap(env: &Env) -> anyhow::Result<(e2e::Repo, String)> {
    let repo = env.create_repo("fleet")?;
    repo.write_all(&[
        (
            "clusters/dev/kustomization.yaml",
            &fixtures::kustomization(&["configmap.yaml", "deployment.yaml", "service.yaml"]),
        ),
        (
            "clusters/dev/configmap.yaml",
            &fixtures::config_map("app-config", &[("greeting", "hello")], &[]),
        ),
        (
            "clusters/dev/deployment.yaml",
            &fixtures::deployment("app", 1),
        ),
        ("clusters/dev/service.yaml", &fixtures::service("app")),
    ])?;
    let sha = repo.commit_and_push("app v1")?;
    env.apply_git_repository("fleet", &repo.url, "5s").await?;
    env.apply_kustomization(
        "dev",
        "fleet",
        "./clusters/dev",
        "5s",
        serde_json::json!({}),
    )
    .await?;
    let revision = main_revision(&sha);
    await_ready_at(
        &env.api::<GitRepository>(),
        "fleet",
        "/status/artifact/revision",
        &revision,
        DEADLINE,
    )
    .await?;
    let ks = await_ready_at(
        &env.api::<Kustomization>(),
        "dev",
        "/status/lastAppliedRevision",
        &revision,
        DEADLINE,
    )
    .await?;
    assert_eq!(
        condition_field(&ks, "Ready", "message").as_deref(),
        Some(format!("Applied revision: {revision}").as_str())
    );
    Ok((repo, sha))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_applies_the_repository() {
    scenario(
        "bootstrap_applies_the_repository",
        true,
        async |env: &mut Env| {
            let (_repo, sha) = bootstrap(env).await?;
            let deployment = env.api::<Deployment>().get("app").await?;
            assert_eq!(deployment.spec.and_then(|s| s.replicas), Some(1));
            let cm = env.api::<ConfigMap>().get("app-config").await?;
            assert_eq!(
                cm.data
                    .unwrap_or_default()
                    .get("greeting")
                    .map(String::as_str),
                Some("hello")
            );
            env.api::<Service>().get("app").await?;
            let ks = serde_json::to_value(env.api::<Kustomization>().get("dev").await?)?;
            let entries = ks
                .pointer("/status/inventory/entries")
                .and_then(|e| e.as_array())
                .cloned()
                .unwrap_or_default();
            assert_eq!(entries.len(), 3, "inventory: {entries:?}");
            eprintln!("bootstrap: applied main@sha1:{sha}");
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_commit_is_applied_within_an_interval() {
    scenario("new_commit_is_applied_within_an_interval", true, async |env: &mut Env| {
        let (repo, _) = bootstrap(env).await?;
        repo.write("clusters/dev/deployment.yaml", &fixtures::deployment("app", 3))?;
        repo.write("clusters/dev/extra.yaml", &fixtures::config_map("extra", &[("added", "yes")], &[]))?;
        repo.write(
            "clusters/dev/kustomization.yaml",
            &fixtures::kustomization(&["configmap.yaml", "deployment.yaml", "service.yaml", "extra.yaml"]),
        )?;
        repo.commit("scale to 3, add a ConfigMap")?;
        let pushed = Instant::now();
        repo.push()?;
        let revision = main_revision(&repo.head()?);
        let deployments = env.api::<Deployment>();
        await_object(&deployments, "app", "app at 3 replicas", DEADLINE, |d| {
            d.pointer("/spec/replicas").and_then(|r| r.as_i64()) == Some(3)
        })
        .await?;
        let latency = pushed.elapsed();
        eprintln!("push → applied latency: {latency:.2?} (GitRepository and Kustomization interval 5s)");
        env.api::<ConfigMap>().get("extra").await?;
        await_ready_at(&env.api::<Kustomization>(), "dev", "/status/lastAppliedRevision", &revision, DEADLINE).await?;
        // One source interval (5s) plus the apply, with room for two loaded cores.
        assert!(latency < Duration::from_secs(20), "push → applied took {latency:?}");
        Ok(())
    })
    .await;
}
