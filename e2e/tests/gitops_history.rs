//! Scenarios 5 and 7: rollback by git history (`git revert` brings the previous state back), and a broken commit
//! (invalid YAML) that stops the Kustomization with `BuildFailed` without deleting anything until a fixing
//! commit recovers it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use common::api::kustomize_v1::Kustomization;
use e2e::{
    DEADLINE, Env, await_condition, await_object, await_ready_at, condition_field, fixtures,
    main_revision, scenario,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;

async fn app_repo(env: &Env) -> anyhow::Result<(e2e::Repo, String)> {
    let repo = env.create_repo("fleet")?;
    repo.write_all(&[
        (
            "apps/kustomization.yaml",
            &fixtures::kustomization(&["deployment.yaml", "config.yaml"]),
        ),
        ("apps/deployment.yaml", &fixtures::deployment("app", 1)),
        (
            "apps/config.yaml",
            &fixtures::config_map("config", &[("version", "v1")], &[]),
        ),
    ])?;
    let sha = repo.commit_and_push("app v1")?;
    env.apply_git_repository("fleet", &repo.url, "5s").await?;
    env.apply_kustomization("apps", "fleet", "./apps", "5s", serde_json::json!({}))
        .await?;
    await_ready_at(
        &env.api::<Kustomization>(),
        "apps",
        "/status/lastAppliedRevision",
        &main_revision(&sha),
        DEADLINE,
    )
    .await?;
    Ok((repo, sha))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_revert_rolls_back() {
    scenario("git_revert_rolls_back", true, async |env: &mut Env| {
        let (repo, _) = app_repo(env).await?;
        let kustomizations = env.api::<Kustomization>();
        repo.write("apps/deployment.yaml", &fixtures::deployment("app", 4))?;
        repo.write(
            "apps/config.yaml",
            &fixtures::config_map("config", &[("version", "v2")], &[]),
        )?;
        let bad = repo.commit_and_push("app v2")?;
        await_ready_at(
            &kustomizations,
            "apps",
            "/status/lastAppliedRevision",
            &main_revision(&bad),
            DEADLINE,
        )
        .await?;
        assert_eq!(
            env.api::<Deployment>()
                .get("app")
                .await?
                .spec
                .and_then(|s| s.replicas),
            Some(4)
        );

        let revert = repo.revert(&bad)?;
        repo.push()?;
        await_ready_at(
            &kustomizations,
            "apps",
            "/status/lastAppliedRevision",
            &main_revision(&revert),
            DEADLINE,
        )
        .await?;
        await_object(
            &env.api::<Deployment>(),
            "app",
            "replicas back to 1",
            DEADLINE,
            |d| d.pointer("/spec/replicas").and_then(|r| r.as_i64()) == Some(1),
        )
        .await?;
        let cm = env.api::<ConfigMap>().get("config").await?;
        assert_eq!(
            cm.data
                .unwrap_or_default()
                .get("version")
                .map(String::as_str),
            Some("v1")
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_commit_fails_build_then_recovers() {
    scenario("broken_commit_fails_build_then_recovers", true, async |env: &mut Env| {
        let (repo, good) = app_repo(env).await?;
        let kustomizations = env.api::<Kustomization>();
        repo.write("apps/config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config\ndata: [unclosed\n  version: {v2\n")?;
        let broken = repo.commit_and_push("broken YAML")?;
        let ks = await_condition(&kustomizations, "apps", "Ready", "False", Some("BuildFailed"), DEADLINE).await?;
        eprintln!("broken commit: {}", condition_field(&ks, "Ready", "message").unwrap_or_default());
        assert_eq!(
            ks.pointer("/status/lastAppliedRevision").and_then(|r| r.as_str()),
            Some(main_revision(&good).as_str()),
            "lastAppliedRevision moved to a commit that failed"
        );
        assert_eq!(
            ks.pointer("/status/lastAttemptedRevision").and_then(|r| r.as_str()),
            Some(main_revision(&broken).as_str())
        );
        // Nothing was deleted.
        env.api::<Deployment>().get("app").await?;
        let cm = env.api::<ConfigMap>().get("config").await?;
        assert_eq!(cm.data.unwrap_or_default().get("version").map(String::as_str), Some("v1"));

        repo.write("apps/config.yaml", &fixtures::config_map("config", &[("version", "v3")], &[]))?;
        let fixed = repo.commit_and_push("fix YAML")?;
        await_ready_at(&kustomizations, "apps", "/status/lastAppliedRevision", &main_revision(&fixed), DEADLINE).await?;
        let cm = env.api::<ConfigMap>().get("config").await?;
        assert_eq!(cm.data.unwrap_or_default().get("version").map(String::as_str), Some("v3"));
        Ok(())
    })
    .await;
}
