//! The harness itself, without controllers: a `testenv` process with the Flux CRDs, a namespace, and a git
//! server that takes pushes and serves clones over smart HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use common::api::source_v1::GitRepository;
use e2e::{Env, git, scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_serves_api_and_git() {
    scenario(
        "harness_serves_api_and_git",
        false,
        async |env: &mut Env| {
            // git: push over HTTP, then clone it back over HTTP.
            let repo = env.create_repo("fleet")?;
            repo.write(
                "clusters/dev/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
            )?;
            let sha = repo.commit_and_push("first")?;
            let clone = env.dir.path().join("clone");
            git(
                env.dir.path(),
                &["clone", "-q", &repo.url, &clone.display().to_string()],
            )?;
            assert_eq!(git(&clone, &["rev-parse", "HEAD"])?, sha);
            assert!(clone.join("clusters/dev/cm.yaml").is_file());

            // API: the Flux CRDs are served in the test's namespace.
            env.apply_git_repository("fleet", &repo.url, "1m").await?;
            let got = env.api::<GitRepository>().get("fleet").await?;
            assert_eq!(got.spec.url, repo.url);

            // kubectl works with the kubeconfig the controllers get.
            if std::process::Command::new("kubectl")
                .arg("version")
                .arg("--client")
                .output()
                .is_ok()
            {
                let out = std::process::Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&env.cluster.kubeconfig)
                    .args([
                        "get",
                        "gitrepositories.source.toolkit.fluxcd.io",
                        "-n",
                        &env.namespace,
                        "-o",
                        "name",
                    ])
                    .output()?;
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout).trim(),
                    "gitrepository.source.toolkit.fluxcd.io/fleet"
                );
            }
            Ok(())
        },
    )
    .await;
}
