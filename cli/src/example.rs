//! The example GitOps repository `riptide up` creates when given no `--repo`: one repository, a folder per
//! environment (`clusters/dev`, `clusters/prod`), each a kustomization with a Namespace, a ConfigMap, a
//! Deployment and a Service.

use std::path::Path;

use anyhow::{Context as _, bail};

/// The files of the example repository, `(path, content)`.
pub fn files() -> Vec<(String, String)> {
    let mut files = vec![(
        "README.md".to_string(),
        "# Riptide example fleet\n\n\
         One repository, a folder per environment. `riptide up` reconciles `clusters/dev`.\n\
         Edit a file here, `git commit -am ...`, and watch the change reach the cluster\n\
         (`riptide get`, or `kubectl --kubeconfig ~/.local/share/riptide/kubeconfig -n riptide-dev get all`).\n"
            .to_string(),
    )];
    for (env, replicas) in [("dev", 1), ("prod", 2)] {
        let ns = format!("riptide-{env}");
        let dir = format!("clusters/{env}");
        files.push((
            format!("{dir}/kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - namespace.yaml\n  - configmap.yaml\n  - deployment.yaml\n  - service.yaml\n".to_string(),
        ));
        files.push((
            format!("{dir}/namespace.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
        ));
        files.push((
            format!("{dir}/configmap.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: podinfo-config\n  namespace: {ns}\ndata:\n  environment: {env}\n  greeting: Hello from Riptide\n"
            ),
        ));
        files.push((
            format!("{dir}/deployment.yaml"),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\n  namespace: {ns}\n  labels:\n    app: podinfo\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: podinfo\n  template:\n    metadata:\n      labels:\n        app: podinfo\n    spec:\n      containers:\n        - name: podinfo\n          image: ghcr.io/stefanprodan/podinfo:6.7.0\n          ports:\n            - containerPort: 9898\n              name: http\n          envFrom:\n            - configMapRef:\n                name: podinfo-config\n"
            ),
        ));
        files.push((
            format!("{dir}/service.yaml"),
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: podinfo\n  namespace: {ns}\nspec:\n  selector:\n    app: podinfo\n  ports:\n    - name: http\n      port: 9898\n      targetPort: http\n"
            ),
        ));
    }
    files
}

/// Runs `git args` in `dir` (with an identity for commits) and returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Riptide")
        .env("GIT_AUTHOR_EMAIL", "riptide@localhost")
        .env("GIT_COMMITTER_NAME", "Riptide")
        .env("GIT_COMMITTER_EMAIL", "riptide@localhost")
        .output()
        .with_context(|| format!("running git {args:?} (is git installed?)"))?;
    if !out.status.success() {
        bail!(
            "git {args:?} in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Creates the example repository at `dir` (branch `main`, one commit) unless it already exists; returns whether
/// it was created.
pub fn ensure(dir: &Path) -> anyhow::Result<bool> {
    if dir.join(".git").exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    git(dir, &["init", "-q", "-b", "main"])?;
    for (path, content) in files() {
        let full = dir.join(&path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(full, content)?;
    }
    git(dir, &["add", "-A"])?;
    git(
        dir,
        &[
            "commit",
            "-q",
            "-m",
            "Riptide example fleet: clusters/dev and clusters/prod",
        ],
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_has_the_four_objects() {
        let files = files();
        for env in ["dev", "prod"] {
            for f in [
                "kustomization",
                "namespace",
                "configmap",
                "deployment",
                "service",
            ] {
                let path = format!("clusters/{env}/{f}.yaml");
                assert!(files.iter().any(|(p, _)| *p == path), "{path}");
            }
        }
    }

    #[test]
    fn ensure_creates_a_repository_once() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("fleet");
        assert!(ensure(&repo).unwrap());
        assert!(!ensure(&repo).unwrap());
        assert_eq!(
            git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"]).unwrap(),
            "main"
        );
        assert!(repo.join("clusters/dev/deployment.yaml").is_file());
    }
}
