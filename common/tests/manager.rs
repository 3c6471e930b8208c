//! The controller bootstrap against a real API server: leader election on a Lease, metrics and health servers,
//! lease release on finish.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    runtime: common::cli::RuntimeArgs,
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn manager_leads_serves_metrics_and_health_and_releases_the_lease() {
    let env = testenv::TestEnv::start().await.unwrap();
    let client = env.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "flux-system"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    let flags = Flags::parse_from([
        "test-controller",
        "--metrics-addr=127.0.0.1:0",
        "--health-addr=127.0.0.1:0",
        "--enable-leader-election",
        "--leader-election-lease-duration=2s",
        "--leader-election-renew-deadline=1s",
        "--leader-election-retry-period=200ms",
    ]);
    let manager = common::manager::Manager::start_with_client(
        "test-controller",
        flags.runtime,
        client.clone(),
    )
    .await
    .unwrap();
    assert!(manager.wait_for_leadership().await);

    let leases: Api<Lease> = Api::namespaced(client.clone(), "flux-system");
    let lease = leases.get("test-controller-leader-election").await.unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap_or_default();
    assert!(!holder.is_empty(), "the lease names its holder");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if http_get(manager.health_addr(), "/readyz").await.0 == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http_get(manager.health_addr(), "/healthz").await.0, 200);
    let (status, body) = http_get(manager.metrics_addr(), "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("controller_runtime_reconcile_total"),
        "{body}"
    );

    let config = manager.runner_config();
    assert_eq!(config.controller, "test-controller");

    manager.finish().await;
    let lease = leases.get("test-controller-leader-election").await.unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap_or_default();
    assert!(
        holder.is_empty(),
        "the lease is released on shutdown, holder was {holder:?}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn without_leader_election_reconcilers_run_until_shutdown() {
    let env = testenv::TestEnv::start().await.unwrap();
    let flags = Flags::parse_from([
        "test-controller",
        "--metrics-addr=127.0.0.1:0",
        "--health-addr=127.0.0.1:0",
    ]);
    let manager =
        common::manager::Manager::start_with_client("test-controller", flags.runtime, env.client())
            .await
            .unwrap();
    assert!(manager.wait_for_leadership().await, "leads at once");
    let mut stopped = Box::pin(manager.stopped());
    // Give the watcher task every chance to resolve `stopped` early (the bug: the leader channel of
    // `always_leader` has no sender, which once looked like lost leadership).
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(
        futures::poll!(stopped.as_mut()).is_pending(),
        "stopped() must not resolve without a shutdown"
    );
    manager.shutdown().trigger();
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("stopped() resolves once the shutdown fires");
    manager.finish().await;
    env.shutdown().await;
}
