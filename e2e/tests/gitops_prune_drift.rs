//! Scenarios 3 and 4: deleting a manifest from git prunes its object (except one annotated
//! `kustomize.toolkit.fluxcd.io/prune: disabled`); a manual change to a managed field is reverted on the next
//! interval.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use common::api::kustomize_v1::Kustomization;
use e2e::{DEADLINE, Env, await_object, await_ready_at, fixtures, main_revision, scenario};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_manifest_is_pruned_unless_prune_disabled() {
    scenario(
        "deleted_manifest_is_pruned_unless_prune_disabled",
        true,
        async |env: &mut Env| {
            let repo = env.create_repo("fleet")?;
            repo.write_all(&[
                (
                    "apps/kustomization.yaml",
                    &fixtures::kustomization(&["keep.yaml", "doomed.yaml", "sticky.yaml"]),
                ),
                (
                    "apps/keep.yaml",
                    &fixtures::config_map("keep", &[("a", "1")], &[]),
                ),
                (
                    "apps/doomed.yaml",
                    &fixtures::config_map("doomed", &[("a", "1")], &[]),
                ),
                (
                    "apps/sticky.yaml",
                    &fixtures::config_map(
                        "sticky",
                        &[("a", "1")],
                        &[("kustomize.toolkit.fluxcd.io/prune", "disabled")],
                    ),
                ),
            ])?;
            let sha = repo.commit_and_push("three ConfigMaps")?;
            env.apply_git_repository("fleet", &repo.url, "5s").await?;
            env.apply_kustomization("apps", "fleet", "./apps", "5s", serde_json::json!({}))
                .await?;
            let kustomizations = env.api::<Kustomization>();
            await_ready_at(
                &kustomizations,
                "apps",
                "/status/lastAppliedRevision",
                &main_revision(&sha),
                DEADLINE,
            )
            .await?;
            let cms = env.api::<ConfigMap>();
            for name in ["keep", "doomed", "sticky"] {
                cms.get(name).await?;
            }

            repo.remove("apps/doomed.yaml")?;
            repo.remove("apps/sticky.yaml")?;
            repo.write(
                "apps/kustomization.yaml",
                &fixtures::kustomization(&["keep.yaml"]),
            )?;
            let sha = repo.commit_and_push("remove two ConfigMaps")?;
            await_ready_at(
                &kustomizations,
                "apps",
                "/status/lastAppliedRevision",
                &main_revision(&sha),
                DEADLINE,
            )
            .await?;
            e2e::eventually("doomed to be pruned", DEADLINE, || {
                let cms = cms.clone();
                async move { Ok(cms.get_opt("doomed").await?.is_none().then_some(())) }
            })
            .await?;
            assert!(
                cms.get_opt("sticky").await?.is_some(),
                "prune: disabled object was deleted"
            );
            assert!(cms.get_opt("keep").await?.is_some());
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_drift_is_reverted() {
    scenario("manual_drift_is_reverted", true, async |env: &mut Env| {
        let repo = env.create_repo("fleet")?;
        repo.write_all(&[
            (
                "apps/kustomization.yaml",
                &fixtures::kustomization(&["deployment.yaml", "config.yaml"]),
            ),
            ("apps/deployment.yaml", &fixtures::deployment("app", 2)),
            (
                "apps/config.yaml",
                &fixtures::config_map("config", &[("mode", "git")], &[]),
            ),
        ])?;
        let sha = repo.commit_and_push("app")?;
        env.apply_git_repository("fleet", &repo.url, "1m").await?;
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

        // What `kubectl scale`/`kubectl patch` do: a merge patch under kubectl's field manager.
        let deployments = env.api::<Deployment>();
        let pp = PatchParams {
            field_manager: Some("kubectl-patch".into()),
            ..Default::default()
        };
        deployments
            .patch(
                "app",
                &pp,
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 7}})),
            )
            .await?;
        let cms = env.api::<ConfigMap>();
        cms.patch(
            "config",
            &pp,
            &Patch::Merge(serde_json::json!({"data": {"mode": "hand-edited"}})),
        )
        .await?;
        assert_eq!(
            deployments.get("app").await?.spec.and_then(|s| s.replicas),
            Some(7)
        );

        await_object(
            &deployments,
            "app",
            "replicas reverted to 2",
            DEADLINE,
            |d| d.pointer("/spec/replicas").and_then(|r| r.as_i64()) == Some(2),
        )
        .await?;
        await_object(&cms, "config", "data.mode reverted to git", DEADLINE, |c| {
            c.pointer("/data/mode").and_then(|m| m.as_str()) == Some("git")
        })
        .await?;
        Ok(())
    })
    .await;
}
