//! Scenario 8: source-controller killed mid-run (SIGKILL, like a crashed pod) and restarted: the artifacts it
//! stored survive in its storage directory and are served again, and the loop resumes with the next commit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use common::api::kustomize_v1::Kustomization;
use common::api::source_v1::GitRepository;
use e2e::{
    Controller, DEADLINE, Env, await_object, await_ready_at, fixtures, main_revision, scenario,
};
use k8s_openapi::api::core::v1::ConfigMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_controller_restart_resumes_the_loop() {
    scenario(
        "source_controller_restart_resumes_the_loop",
        true,
        async |env: &mut Env| {
            let repo = env.create_repo("fleet")?;
            repo.write_all(&[
                (
                    "apps/kustomization.yaml",
                    &fixtures::kustomization(&["config.yaml"]),
                ),
                (
                    "apps/config.yaml",
                    &fixtures::config_map("config", &[("version", "v1")], &[]),
                ),
            ])?;
            let first = main_revision(&repo.commit_and_push("v1")?);
            env.apply_git_repository("fleet", &repo.url, "5s").await?;
            env.apply_kustomization("apps", "fleet", "./apps", "5s", serde_json::json!({}))
                .await?;
            let sources = env.api::<GitRepository>();
            let kustomizations = env.api::<Kustomization>();
            let src = await_ready_at(
                &sources,
                "fleet",
                "/status/artifact/revision",
                &first,
                DEADLINE,
            )
            .await?;
            await_ready_at(
                &kustomizations,
                "apps",
                "/status/lastAppliedRevision",
                &first,
                DEADLINE,
            )
            .await?;
            let artifact_url = src
                .pointer("/status/artifact/url")
                .and_then(|u| u.as_str())
                .unwrap_or_default()
                .to_string();
            let artifact_path = src
                .pointer("/status/artifact/path")
                .and_then(|u| u.as_str())
                .unwrap_or_default()
                .to_string();

            env.kill_controller(Controller::Source).await?;
            let stored = env.storage_path().join(&artifact_path);
            assert!(
                stored.is_file(),
                "artifact {} not in the storage dir",
                stored.display()
            );
            assert!(
                reqwest::get(&artifact_url).await.is_err(),
                "artifact server still answering after the kill"
            );

            // A commit while source-controller is down is picked up once it is back.
            repo.write(
                "apps/config.yaml",
                &fixtures::config_map("config", &[("version", "v2")], &[]),
            )?;
            let second = main_revision(&repo.commit_and_push("v2")?);
            env.start_controller(Controller::Source).await?;
            // The artifact stored before the crash is served again (kustomize-controller may still fetch it).
            e2e::eventually("the old artifact to be served again", DEADLINE, || {
                let url = artifact_url.clone();
                async move {
                    Ok(match reqwest::get(&url).await {
                        Ok(r) if r.status().is_success() => Some(()),
                        _ => None,
                    })
                }
            })
            .await?;
            await_ready_at(
                &sources,
                "fleet",
                "/status/artifact/revision",
                &second,
                DEADLINE,
            )
            .await?;
            await_ready_at(
                &kustomizations,
                "apps",
                "/status/lastAppliedRevision",
                &second,
                DEADLINE,
            )
            .await?;
            await_object(
                &env.api::<ConfigMap>(),
                "config",
                "config at v2",
                DEADLINE,
                |c| c.pointer("/data/version").and_then(|v| v.as_str()) == Some("v2"),
            )
            .await?;
            Ok(())
        },
    )
    .await;
}
