//! Scenario 6: two environments (`clusters/dev`, `clusters/prod`) from one repository; prod `dependsOn` an
//! infrastructure Kustomization and waits for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use common::api::kustomize_v1::Kustomization;
use e2e::{DEADLINE, Env, await_condition, await_ready_at, fixtures, main_revision, scenario};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_environments_and_depends_on() {
    scenario(
        "two_environments_and_depends_on",
        true,
        async |env: &mut Env| {
            let repo = env.create_repo("fleet")?;
            repo.write_all(&[
                (
                    "infrastructure/kustomization.yaml",
                    &fixtures::kustomization(&["settings.yaml"]),
                ),
                (
                    "infrastructure/settings.yaml",
                    &fixtures::config_map("infra-settings", &[("tier", "shared")], &[]),
                ),
                (
                    "clusters/dev/kustomization.yaml",
                    &fixtures::kustomization(&["app.yaml", "config.yaml"]),
                ),
                ("clusters/dev/app.yaml", &fixtures::deployment("app-dev", 1)),
                (
                    "clusters/dev/config.yaml",
                    &fixtures::config_map("env-dev", &[("env", "dev")], &[]),
                ),
                (
                    "clusters/prod/kustomization.yaml",
                    &fixtures::kustomization(&["app.yaml", "config.yaml"]),
                ),
                (
                    "clusters/prod/app.yaml",
                    &fixtures::deployment("app-prod", 3),
                ),
                (
                    "clusters/prod/config.yaml",
                    &fixtures::config_map("env-prod", &[("env", "prod")], &[]),
                ),
            ])?;
            let revision =
                main_revision(&repo.commit_and_push("fleet: infrastructure, dev, prod")?);
            env.apply_git_repository("fleet", &repo.url, "5s").await?;
            let kustomizations = env.api::<Kustomization>();

            // prod first: it must wait for infrastructure, which does not exist yet.
            let depends = serde_json::json!({"dependsOn": [{"name": "infrastructure"}]});
            env.apply_kustomization("prod", "fleet", "./clusters/prod", "5s", depends)
                .await?;
            env.apply_kustomization(
                "dev",
                "fleet",
                "./clusters/dev",
                "5s",
                serde_json::json!({}),
            )
            .await?;
            await_condition(
                &kustomizations,
                "prod",
                "Ready",
                "False",
                Some("DependencyNotReady"),
                DEADLINE,
            )
            .await?;
            await_ready_at(
                &kustomizations,
                "dev",
                "/status/lastAppliedRevision",
                &revision,
                DEADLINE,
            )
            .await?;
            assert!(
                env.api::<Deployment>().get_opt("app-prod").await?.is_none(),
                "prod applied before its dependency"
            );

            env.apply_kustomization(
                "infrastructure",
                "fleet",
                "./infrastructure",
                "5s",
                serde_json::json!({}),
            )
            .await?;
            await_ready_at(
                &kustomizations,
                "infrastructure",
                "/status/lastAppliedRevision",
                &revision,
                DEADLINE,
            )
            .await?;
            await_ready_at(
                &kustomizations,
                "prod",
                "/status/lastAppliedRevision",
                &revision,
                DEADLINE,
            )
            .await?;

            let deployments = env.api::<Deployment>();
            assert_eq!(
                deployments
                    .get("app-dev")
                    .await?
                    .spec
                    .and_then(|s| s.replicas),
                Some(1)
            );
            assert_eq!(
                deployments
                    .get("app-prod")
                    .await?
                    .spec
                    .and_then(|s| s.replicas),
                Some(3)
            );
            let cms = env.api::<ConfigMap>();
            for name in ["infra-settings", "env-dev", "env-prod"] {
                cms.get(name).await?;
            }
            Ok(())
        },
    )
    .await;
}
