//! Scale benchmark (Flux's: 1,000 Kustomizations in ~4 minutes at 195-223 MiB): N Kustomizations of 10 objects
//! each from one source, reconciled by the `kustomize-controller` **binary** (a separate process, as in a
//! cluster) against an in-process testenv, with the flags of Flux's vertical-scaling guide, which its benchmark
//! uses: `--concurrent=20 --kube-api-qps=500 --kube-api-burst=1000 --requeue-dependency=5s` (at the default 50
//! QPS the ~25,000 requests of a first apply alone take ~8 minutes). Prints the time until all are Ready, the API
//! requests per object on an unchanged re-reconcile, and the controller's own RSS. No timed assertions.
//!
//! `cargo test -p kustomize-controller --release --test bench -- --ignored --nocapture` (`BENCH_KS=100` for fewer,
//! `BENCH_QPS=5000` to take the client rate limit out of the picture).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::api::kustomize_v1::Kustomization;
use common::api::source_v1::GitRepository;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sha2::Digest;
use support::{configmap, tarball};

const REV: &str = "main@sha1:1111111111111111111111111111111111111111";

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Serves one artifact; returns its URL.
async fn artifact_server(path: &str, bytes: Vec<u8>) -> String {
    let files = Arc::new(HashMap::from([(path.to_owned(), bytes)]));
    let app = axum::Router::new()
        .route(
            "/{*path}",
            axum::routing::get(
                |axum::extract::State(files): axum::extract::State<
                    Arc<HashMap<String, Vec<u8>>>,
                >,
                 axum::extract::Path(p): axum::extract::Path<String>| async move {
                    use axum::response::IntoResponse;
                    match files.get(&p) {
                        Some(b) => b.clone().into_response(),
                        None => axum::http::StatusCode::NOT_FOUND.into_response(),
                    }
                },
            ),
        )
        .with_state(files);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/{path}")
}

async fn all_done(api: &Api<Kustomization>, n: usize, check: impl Fn(&Kustomization) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|k| check(k))
            .count();
        if done == n {
            return;
        }
        assert!(Instant::now() < deadline, "only {done}/{n} done after 600s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn thousand_kustomizations() {
    let n: usize = std::env::var("BENCH_KS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let env = testenv::TestEnv::start().await.unwrap();
    let client = env.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in common::api::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let ks: Api<Kustomization> = Api::namespaced(client.clone(), "default");
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), "default");
    support::poll(|| async {
        ks.list(&Default::default()).await.is_ok() && repos.list(&Default::default()).await.is_ok()
    })
    .await;

    // One source: a GitRepository whose artifact (10 ConfigMaps) is served here.
    let files: Vec<(String, String)> = (0..10)
        .map(|i| {
            let name = format!("cm-{i}");
            (
                format!("app/{name}.yaml"),
                configmap(&name, &[("index", &i.to_string())]),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let bytes = tarball(&refs);
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    let url = artifact_server("gitrepository/default/repo/latest.tar.gz", bytes).await;
    let repo: GitRepository = serde_json::from_value(json!({
        "metadata": {"name": "repo", "namespace": "default"},
        "spec": {"interval": "10m", "url": "https://example.invalid/repo.git"}
    }))
    .unwrap();
    repos.create(&PostParams::default(), &repo).await.unwrap();
    repos
        .patch_status(
            "repo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"artifact": {
                "path": "latest.tar.gz", "url": url, "revision": REV, "digest": digest,
                "lastUpdateTime": "2026-01-01T00:00:00Z"}}})),
        )
        .await
        .unwrap();

    // Count requests for the applied objects (the ring-buffered request log is too short at this scale).
    let object_requests = Arc::new(AtomicUsize::new(0));
    let all_requests = Arc::new(AtomicUsize::new(0));
    let (objects, all) = (object_requests.clone(), all_requests.clone());
    env.server().set_fault(Some(Arc::new(move |_, path: &str| {
        all.fetch_add(1, Ordering::Relaxed);
        if path.starts_with("/api/v1/namespaces/default/configmaps") {
            objects.fetch_add(1, Ordering::Relaxed);
        }
        None
    })));

    let qps: u32 = std::env::var("BENCH_QPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let controller = Controller(
        Command::new(env!("CARGO_BIN_EXE_kustomize-controller"))
            .args([
                "--concurrent=20",
                &format!("--kube-api-qps={qps}"),
                &format!("--kube-api-burst={}", 2 * qps),
                "--requeue-dependency=5s",
                "--metrics-addr=127.0.0.1:0",
                "--health-addr=127.0.0.1:0",
                "--log-level=error",
            ])
            .env("KUBECONFIG", env.kubeconfig())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = controller.0.id();
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        futures::future::join_all(chunk.iter().map(|i| {
            let k: Kustomization = serde_json::from_value(json!({
                "metadata": {"name": format!("ks-{i}"), "namespace": "default"},
                "spec": {"interval": "10m", "prune": true, "path": "./app", "namePrefix": format!("k{i}-"),
                    "sourceRef": {"kind": "GitRepository", "name": "repo"}}
            }))
            .unwrap();
            let ks = ks.clone();
            async move { ks.create(&PostParams::default(), &k).await.unwrap() }
        }))
        .await;
    }
    let want = format!("Applied revision: {REV}");
    all_done(&ks, n, |k| {
        k.condition("Ready")
            .is_some_and(|c| c.status.as_str() == "True" && c.message == want)
    })
    .await;
    let elapsed = started.elapsed();
    let (rss_ready, _) = rss_mib(pid);

    // Unchanged re-reconcile of everything.
    let (objects_before, all_before) = (
        object_requests.load(Ordering::Relaxed),
        all_requests.load(Ordering::Relaxed),
    );
    let token = "bench-1";
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        futures::future::join_all(chunk.iter().map(|i| {
            let patch =
                json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}});
            let ks = ks.clone();
            async move {
                ks.patch(
                    &format!("ks-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
                .unwrap();
            }
        }))
        .await;
    }
    all_done(&ks, n, |k| {
        k.status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref())
            == Some(token)
    })
    .await;
    let objects = object_requests.load(Ordering::Relaxed) - objects_before;
    let total = all_requests.load(Ordering::Relaxed) - all_before;
    let (rss_after, peak) = rss_mib(pid);
    println!("kustomizations: {n}, objects: {}", n * 10);
    println!("all Ready after: {elapsed:.2?} at --kube-api-qps={qps} (goal <= 25s; Flux ~4 min)");
    println!(
        "unchanged re-reconcile: {objects} object requests = {:.2} per object (goal <= 1; Flux ~2), {total} requests in total",
        objects as f64 / (n * 10) as f64,
    );
    println!(
        "kustomize-controller RSS: all Ready {rss_ready:.1} MiB, after re-reconcile {rss_after:.1} MiB, peak {peak:.1} MiB (goal <= 64 MiB; Flux 195-223 MiB)"
    );
    drop(controller);
    env.shutdown().await;
}
