//! The metrics and health servers on real sockets, with graceful shutdown.
// Helpers outside `#[test]` functions are test code too: let them unwrap like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use common::metrics::{Metrics, ReconcileResult};
use common::server::{
    Readiness, ServerError, Shutdown, health_router, metrics_router, serve, serve_listener,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

#[tokio::test]
async fn serves_until_shutdown() {
    let metrics = Metrics::new("kustomization").unwrap();
    metrics.record_reconcile(ReconcileResult::Error, Duration::from_millis(3));
    let (ready_tx, ready_rx) = watch::channel(false);
    let shutdown = Shutdown::new();

    let (metrics_listener, metrics_base) = bind().await;
    let (health_listener, health_base) = bind().await;
    let metrics_server = tokio::spawn(serve_listener(
        metrics_listener,
        metrics_router(metrics.clone()),
        shutdown.wait(),
    ));
    let health_server = tokio::spawn(serve_listener(
        health_listener,
        health_router(Readiness::new().with_check("informers", ready_rx)),
        shutdown.wait(),
    ));

    let client = reqwest::Client::new();
    let body = client
        .get(format!("{metrics_base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains(r#"controller_runtime_reconcile_errors_total{controller="kustomization"} 1"#)
    );

    let status = |path: &'static str| {
        let client = client.clone();
        let url = format!("{health_base}{path}");
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/healthz").await, 200);
    assert_eq!(status("/readyz").await, 503);
    ready_tx.send_replace(true);
    assert_eq!(status("/readyz").await, 200);

    shutdown.trigger();
    for server in [metrics_server, health_server] {
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops after shutdown")
            .unwrap()
            .unwrap();
    }
    assert!(
        client
            .get(format!("{health_base}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn bind_errors_are_reported() {
    let (listener, _) = bind().await;
    let taken = listener.local_addr().unwrap();
    let err = serve(taken, health_router(Readiness::new()), async {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServerError::Bind { addr, .. } if addr == taken),
        "{err}"
    );
}
