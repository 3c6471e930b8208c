//! `riptide up` as a newcomer runs it: it starts testenv and the controllers as child processes, creates and
//! serves the example repository and applies it; `riptide reconcile` picks up a new local commit at once,
//! `riptide get` shows it, `riptide suspend`/`resume` hold back and then apply a commit, and SIGTERM (what
//! Ctrl-C does) stops every child.
//!
//! Skipped with `RIPTIDE_E2E_KUBECONFIG`: `riptide up` would write to the cluster's flux-system namespace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{binary, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use tokio::io::{AsyncBufReadExt, BufReader};

fn riptide(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(binary("riptide").unwrap())
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

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn riptide_up_get_reconcile_and_stop() {
    if std::env::var_os("RIPTIDE_E2E_KUBECONFIG").is_some() {
        eprintln!("skipped: riptide up is tested on testenv only");
        return;
    }
    for bin in [
        "testenv",
        "source-controller",
        "kustomize-controller",
        "notification-controller",
    ] {
        binary(bin).unwrap();
    }
    let data = tempfile::Builder::new()
        .prefix("riptide-up-")
        .tempdir()
        .unwrap();
    let data_dir = data.path().display().to_string();
    let mut up = tokio::process::Command::new(binary("riptide").unwrap())
        .args(["up", "--data-dir", &data_dir, "--interval", "5s"])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let sink = output.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("riptide up | {line}");
            sink.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let seen = |needle: &'static str| {
        let output = output.clone();
        move || {
            let found = output.lock().unwrap().contains(needle);
            async move { Ok(found.then_some(())) }
        }
    };
    eventually(
        "riptide up to apply the example",
        Duration::from_secs(180),
        seen("✔ applied revision main@sha1:"),
    )
    .await
    .unwrap();
    let text = output.lock().unwrap().clone();
    for expected in [
        "✔ testenv API server at http://127.0.0.1:",
        "✔ source-controller up",
        "✔ kustomize-controller up",
        "✔ source ready at main@sha1:",
        "Deployment riptide-dev/podinfo",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let pids: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split("(pid ").nth(1)?.split(',').next()?.parse().ok())
        .collect();
    assert!(pids.len() >= 2, "no controller pids in:\n{text}");

    // kubectl-style access through the kubeconfig riptide up wrote.
    let client = e2e::client_for(&data.path().join("kubeconfig"))
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client, "riptide-dev");
    assert_eq!(
        deployments
            .get("podinfo")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.replicas),
        Some(1)
    );

    // A local commit, applied at once by `riptide reconcile --with-source`.
    let example = data.path().join("example");
    let deployment = example.join("clusters/dev/deployment.yaml");
    let manifest = std::fs::read_to_string(&deployment)
        .unwrap()
        .replace("replicas: 1", "replicas: 3");
    std::fs::write(&deployment, manifest).unwrap();
    e2e::git(&example, &["commit", "-q", "-am", "scale podinfo to 3"]).unwrap();
    let sha = e2e::git(&example, &["rev-parse", "HEAD"]).unwrap();
    let (ok, out) = riptide(&[
        "reconcile",
        "ks",
        "flux-system",
        "--with-source",
        "--data-dir",
        &data_dir,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("main@sha1:{sha}")), "{out}");
    assert_eq!(
        deployments
            .get("podinfo")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.replicas),
        Some(3)
    );

    let (ok, out) = riptide(&["get", "--data-dir", &data_dir]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Kustomization") && out.contains(&format!("main@sha1:{sha}")),
        "{out}"
    );

    // `riptide suspend` and `riptide resume`: a commit made while suspended is applied on resume.
    let (ok, out) = riptide(&["suspend", "ks", "flux-system", "--data-dir", &data_dir]);
    assert!(ok, "{out}");
    assert!(out.contains("✔ kustomization suspended"), "{out}");
    let (ok, out) = riptide(&["get", "--data-dir", &data_dir]);
    assert!(ok && out.contains("Suspended"), "{out}");
    let manifest = std::fs::read_to_string(&deployment)
        .unwrap()
        .replace("replicas: 3", "replicas: 2");
    std::fs::write(&deployment, manifest).unwrap();
    e2e::git(&example, &["commit", "-q", "-am", "scale podinfo to 2"]).unwrap();
    let sha = e2e::git(&example, &["rev-parse", "HEAD"]).unwrap();
    let (ok, out) = riptide(&[
        "reconcile",
        "source",
        "flux-system",
        "--data-dir",
        &data_dir,
    ]);
    assert!(ok && out.contains(&format!("main@sha1:{sha}")), "{out}");
    let (ok, out) = riptide(&["resume", "ks", "flux-system", "--data-dir", &data_dir]);
    assert!(ok, "{out}");
    assert!(
        out.contains("✔ kustomization resumed")
            && out.contains("✔ Kustomization reconciliation completed")
            && out.contains(&format!("main@sha1:{sha}")),
        "{out}"
    );
    assert_eq!(
        deployments
            .get("podinfo")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.replicas),
        Some(2)
    );

    // SIGTERM (Ctrl-C sends SIGINT; both stop cleanly) → every child stops, riptide exits 0.
    let pid = up.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), up.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "riptide up exited with {status}");
    for child in pids {
        assert!(
            !alive(child),
            "child {child} still running after riptide up stopped"
        );
    }
    assert!(output.lock().unwrap().contains("■ testenv stopped"));
}
