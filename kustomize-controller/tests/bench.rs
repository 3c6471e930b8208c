//! Scale benchmark (Flux's: 1,000 Kustomizations in ~4 minutes): N Kustomizations of 10 objects each from one
//! source against testenv. Prints the time until all are Ready, API requests per object on an unchanged
//! re-reconcile, and the process RSS (controller and testenv share the process). No timed assertions.
//!
//! `cargo test -p kustomize-controller --release --test bench -- --ignored --nocapture` (`BENCH_KS=100` for fewer).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod support;

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::*;

const REV: &str = "main@sha1:1111111111111111111111111111111111111111";

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn all_done(
    fx: &Fx,
    n: usize,
    check: impl Fn(&common::api::kustomize_v1::Kustomization) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let list = fx.ks.list(&Default::default()).await.unwrap();
        let done = list.items.iter().filter(|k| check(k)).count();
        if done == n {
            return;
        }
        assert!(Instant::now() < deadline, "only {done}/{n} done after 600s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn thousand_kustomizations() {
    let n: usize = std::env::var("BENCH_KS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let fx = start_full(test_config(), 20).await;
    fx.create_repo("repo").await;
    let files: Vec<(String, String)> = (0..10)
        .map(|i| {
            (
                format!("app/cm-{i}.yaml"),
                configmap(&format!("cm-{i}"), &[("index", &i.to_string())]),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    fx.publish("repo", REV, &refs).await;
    let rss_before = rss_mib();

    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let names: Vec<String> = chunk.iter().map(|i| format!("ks-{i}")).collect();
        futures::future::join_all(chunk.iter().zip(&names).map(|(i, name)| {
            fx.create_ks(
                name,
                json!({"path": "./app", "namePrefix": format!("k{i}-")}),
            )
        }))
        .await;
    }
    let want = format!("Applied revision: {REV}");
    all_done(&fx, n, |k| {
        k.condition("Ready")
            .is_some_and(|c| c.status.as_str() == "True" && c.message == want)
    })
    .await;
    let elapsed = started.elapsed();
    let rss_ready = rss_mib();

    // Unchanged re-reconcile of everything.
    let before = fx.request_count();
    let token = "bench-1";
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        futures::future::join_all(chunk.iter().map(|i| {
            let patch =
                json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}});
            let ks = fx.ks.clone();
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
    all_done(&fx, n, |k| {
        k.status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref())
            == Some(token)
    })
    .await;
    let requests = fx.requests_since(before);
    let object_requests = requests
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/namespaces/default/configmaps"))
        .count();
    println!("kustomizations: {n}, objects: {}", n * 10);
    println!("all Ready after: {elapsed:.2?}");
    println!(
        "unchanged re-reconcile: {object_requests} object requests = {:.2} per object ({} requests in total)",
        object_requests as f64 / (n * 10) as f64,
        requests.len()
    );
    println!(
        "RSS (controller + testenv in one process): before {rss_before:.1} MiB, all Ready {rss_ready:.1} MiB, after re-reconcile {:.1} MiB",
        rss_mib()
    );
    fx.stop().await;
}
