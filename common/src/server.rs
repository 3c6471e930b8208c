//! The metrics and health HTTP endpoints, and graceful shutdown.
//!
//! - [`metrics_router`]: `GET /metrics`, the Prometheus text format of a [`Metrics`] registry
//!   (served on `--metrics-addr`);
//! - [`health_router`]: `GET /healthz`, 200 while the process serves HTTP, and `GET /readyz`, 200 only when every
//!   [`Readiness`] check is true, e.g. caches synced and, with leader election, the lease held
//!   (served on `--health-addr`);
//! - [`serve`] / [`serve_listener`]: run a router until a shutdown future resolves, finishing in-flight requests;
//! - [`Shutdown`] and [`shutdown_signal`]: a shutdown that fires on SIGTERM or SIGINT, shared by every server
//!   and reconciler of the process.
//!
//! ```no_run
//! # async fn run(args: common::cli::RuntimeArgs, leader: tokio::sync::watch::Receiver<bool>) -> Result<(), common::server::ServerError> {
//! use common::server::{Readiness, Shutdown, health_router, metrics_router, serve};
//!
//! let shutdown = Shutdown::on_signal();
//! let metrics = common::metrics::Metrics::new("gitrepository")?;
//! let (synced, synced_rx) = tokio::sync::watch::channel(false);
//! let readiness = Readiness::new().with_check("informers", synced_rx).with_check("leader", leader);
//! let health = tokio::spawn(serve(args.health_addr, health_router(readiness), shutdown.wait()));
//! let metrics = tokio::spawn(serve(args.metrics_addr, metrics_router(metrics), shutdown.wait()));
//! synced.send_replace(true); // once the reflectors have listed
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::{Metrics, MetricsError};

/// An error of the metrics and health servers.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// One or more readiness checks are false (`/readyz` answers 503).
    #[error("not ready: {}", .0.join(", "))]
    NotReady(Vec<String>),
    /// The metrics could not be encoded (`/metrics` answers 500).
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        match self {
            ServerError::NotReady(failed) => {
                let mut body = String::new();
                for name in &failed {
                    body.push_str(&format!("[-]{name} failed: not ready\n"));
                }
                body.push_str("readyz check failed\n");
                (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
            }
            other => {
                tracing::error!(error = %other, "HTTP handler failed");
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{other}\n")).into_response()
            }
        }
    }
}

/// The named checks `/readyz` requires, each a `watch` of "this part is ready".
///
/// With no checks the process is ready. A check whose sender was dropped keeps its last value.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<Vec<(String, watch::Receiver<bool>)>>,
}

impl Readiness {
    /// No checks yet: ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the check `name`, ready while `ready` holds `true`.
    pub fn with_check(self, name: &str, ready: watch::Receiver<bool>) -> Self {
        let mut checks = Arc::unwrap_or_clone(self.checks);
        checks.push((name.to_owned(), ready));
        Readiness {
            checks: Arc::new(checks),
        }
    }

    /// The names of the checks that are not ready, in the order they were added.
    pub fn failing(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|(_, rx)| !*rx.borrow())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether every check is ready.
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|(_, rx)| *rx.borrow())
    }
}

/// `GET /metrics`: the registry of `metrics` in the Prometheus text format.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(metrics)
}

async fn serve_metrics(State(metrics): State<Metrics>) -> Result<Response, ServerError> {
    let body = metrics.encode()?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response())
}

/// `GET /healthz` (always 200 `ok`) and `GET /readyz` (200 `ok` when `readiness` holds, else 503 naming the
/// failing checks).
pub fn health_router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(serve_readyz))
        .with_state(readiness)
}

async fn serve_readyz(State(readiness): State<Readiness>) -> Result<&'static str, ServerError> {
    let failing = readiness.failing();
    if failing.is_empty() {
        Ok("ok")
    } else {
        Err(ServerError::NotReady(failing))
    }
}

/// Binds `addr` and serves `router` until `shutdown` resolves, then stops accepting and finishes in-flight
/// requests.
pub async fn serve<F>(addr: SocketAddr, router: Router, shutdown: F) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    serve_listener(listener, router, shutdown).await
}

/// [`serve`] on a listener already bound (e.g. to port 0 in tests).
pub async fn serve_listener<F>(
    listener: TcpListener,
    router: Router,
    shutdown: F,
) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving HTTP");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}

/// Resolves when the process receives SIGTERM or SIGINT (Ctrl-C), returning the signal's name.
///
/// If a handler cannot be installed, the error is logged and the other signal is still awaited.
pub async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGINT");
                std::future::pending().await
            }
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
                "SIGTERM"
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();

    let name = tokio::select! {
        name = ctrl_c => name,
        name = terminate => name,
    };
    tracing::info!(signal = name, "shutting down");
    name
}

/// A process-wide shutdown: triggered once, awaited by any number of servers and loops.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A shutdown that fires only when [`Shutdown::trigger`] is called.
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// A shutdown that also fires on SIGTERM or SIGINT (see [`shutdown_signal`]). Needs a tokio runtime.
    pub fn on_signal() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            trigger.trigger();
        });
        shutdown
    }

    /// Fires the shutdown; every [`Shutdown::wait`] future resolves.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the shutdown has fired.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// A future that resolves once the shutdown fires (at once if it already has).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            // The sender lives in `self.tx`; if every clone is gone the shutdown can no longer fire.
            if rx.wait_for(|fired| *fired).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ReconcileResult;
    use axum::body::Body;
    use axum::http::Request;
    use std::time::Duration;
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String, Option<String>) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            String::from_utf8(body.to_vec()).unwrap(),
            content_type,
        )
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_recorded_series() {
        let metrics = Metrics::new("gitrepository").unwrap();
        metrics.record_reconcile(ReconcileResult::Success, Duration::from_millis(5));
        let (status, body, content_type) = get(metrics_router(metrics), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(prometheus::TEXT_FORMAT));
        assert!(body.contains(
            r#"controller_runtime_reconcile_total{controller="gitrepository",result="success"} 1"#
        ));
    }

    #[tokio::test]
    async fn healthz_is_ok_even_when_not_ready() {
        let (_tx, rx) = watch::channel(false);
        let router = health_router(Readiness::new().with_check("informers", rx));
        let (status, body, _) = get(router, "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }

    #[tokio::test]
    async fn readyz_follows_every_check() {
        let (synced_tx, synced) = watch::channel(false);
        let (leader_tx, leader) = watch::channel(false);
        let router = health_router(
            Readiness::new()
                .with_check("informers", synced)
                .with_check("leader", leader),
        );

        let (status, body, _) = get(router.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("[-]informers") && body.contains("[-]leader"),
            "{body}"
        );

        synced_tx.send_replace(true);
        let (status, body, _) = get(router.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            !body.contains("informers") && body.contains("[-]leader"),
            "{body}"
        );

        leader_tx.send_replace(true);
        let (status, body, _) = get(router.clone(), "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

        // Losing the lease makes the process unready again.
        leader_tx.send_replace(false);
        let (status, _, _) = get(router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn no_checks_means_ready() {
        let (status, _, _) = get(health_router(Readiness::new()), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_paths_are_404() {
        let (status, _, _) = get(health_router(Readiness::new()), "/metrics").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn shutdown_wait_resolves_after_trigger() {
        let shutdown = Shutdown::new();
        let waiter = tokio::spawn(shutdown.wait());
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("wait() resolves after trigger()")
            .unwrap();
        // Waiting after the fact resolves at once.
        tokio::time::timeout(Duration::from_secs(5), shutdown.wait())
            .await
            .unwrap();
    }
}
