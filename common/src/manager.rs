//! The controller bootstrap every binary shares: flags → logging, Kubernetes client, metrics and health servers,
//! events, leader election and shutdown, then one [`Runner`] per kind.
//!
//! ```no_run
//! # async fn run(args: common::cli::RuntimeArgs) -> Result<(), common::manager::ManagerError> {
//! let manager = common::manager::Manager::start("source-controller", args).await?;
//! if !manager.wait_for_leadership().await {
//!     return Ok(()); // shut down before this replica led
//! }
//! // let runner = manager.runner(MyReconciler { .. });
//! // runner.clone().run(runner.controller(manager.api(), manager.watcher_config()), manager.stopped()).await;
//! manager.finish().await;
//! # Ok(()) }
//! ```
//!
//! Losing the lease stops the process's reconcilers, as controller-runtime does: a replica that is no longer the
//! leader must not write.

use std::future::Future;
use std::sync::Arc;

use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::cli::RuntimeArgs;
use crate::events::{EventError, EventRecorder};
use crate::leader::{LeaderElector, LeaderHandle, always_leader, default_identity};
use crate::metrics::{Metrics, MetricsError};
use crate::reconcile::{Reconciler, Runner, RunnerConfig};
use crate::server::{Readiness, ServerError, Shutdown, health_router, metrics_router};

/// The namespace leases live in when `RUNTIME_NAMESPACE` is unset.
pub const DEFAULT_LEASE_NAMESPACE: &str = "flux-system";

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("loading Kubernetes client configuration: {0}")]
    Client(#[source] kube::Error),
    /// The metrics registry could not be built.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The event recorder could not be built (e.g. a bad `--events-addr`).
    #[error(transparent)]
    Events(#[from] EventError),
    /// A server could not bind its address.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// A running controller process: what every kind's runner needs, and the servers around them.
pub struct Manager {
    name: &'static str,
    client: Client,
    args: RuntimeArgs,
    metrics: Metrics,
    events: Arc<EventRecorder>,
    shutdown: Shutdown,
    leader: Option<LeaderHandle>,
    is_leader: watch::Receiver<bool>,
    servers: Vec<JoinHandle<Result<(), ServerError>>>,
    metrics_addr: std::net::SocketAddr,
    health_addr: std::net::SocketAddr,
}

impl Manager {
    /// Starts a controller named `name` (`source-controller`, ...): initialises logging (ignored when already
    /// initialised, as in tests), connects to Kubernetes (`KUBECONFIG` or in-cluster) with client-side rate
    /// limiting (`--kube-api-qps`, `--kube-api-burst`), serves `/metrics` on
    /// `--metrics-addr` and `/healthz`, `/readyz` on `--health-addr`, and starts leader election when enabled.
    pub async fn start(name: &'static str, args: RuntimeArgs) -> Result<Self, ManagerError> {
        if let Err(err) = crate::telemetry::init_from_args(&args) {
            tracing::debug!(error = %err, "logging already initialised");
        }
        let config = kube::Config::infer()
            .await
            .map_err(|e| ManagerError::Client(kube::Error::InferConfig(e)))?;
        let client = kube::client::ClientBuilder::try_from(config)
            .map_err(ManagerError::Client)?
            .with_layer(&crate::ratelimit::RateLimitLayer::new(
                f64::from(args.kube_api_qps),
                args.kube_api_burst,
            ))
            .build();
        Self::start_with_client(name, args, client).await
    }

    /// [`Manager::start`] with a client given (tests, `riptide up`).
    pub async fn start_with_client(
        name: &'static str,
        args: RuntimeArgs,
        client: Client,
    ) -> Result<Self, ManagerError> {
        let metrics = Metrics::new(name)?;
        let events = Arc::new(EventRecorder::new(
            name,
            Some(client.clone()),
            args.events_addr(),
        )?);
        let shutdown = Shutdown::on_signal();

        let (leader, is_leader) = if args.enable_leader_election {
            let namespace = std::env::var(crate::cli::RUNTIME_NAMESPACE_ENV)
                .ok()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| DEFAULT_LEASE_NAMESPACE.to_string());
            let lease = format!("{name}-leader-election");
            let handle = LeaderElector::new(
                client.clone(),
                &namespace,
                &lease,
                default_identity(),
                args.leader_election_timings(),
            )
            .release_on_cancel(args.leader_election_release_on_cancel)
            .spawn();
            let rx = handle.is_leader();
            (Some(handle), rx)
        } else {
            (None, always_leader())
        };

        let readiness = Readiness::new().with_check("leader", is_leader.clone());
        // Bind before returning so that a port clash is an error at start, not a log line later.
        let metrics_listener = bind(args.metrics_addr).await?;
        let health_listener = bind(args.health_addr).await?;
        let metrics_addr = local_addr(&metrics_listener, args.metrics_addr);
        let health_addr = local_addr(&health_listener, args.health_addr);
        let servers = vec![
            tokio::spawn(crate::server::serve_listener(
                metrics_listener,
                metrics_router(metrics.clone()),
                shutdown.wait(),
            )),
            tokio::spawn(crate::server::serve_listener(
                health_listener,
                health_router(readiness),
                shutdown.wait(),
            )),
        ];
        info!(controller = name, metrics = %metrics_addr, health = %health_addr, "controller started");
        Ok(Manager {
            name,
            client,
            args,
            metrics,
            events,
            shutdown,
            leader,
            is_leader,
            servers,
            metrics_addr,
            health_addr,
        })
    }

    /// Where `/metrics` is served (the bound address, so `:0` resolves to the real port).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.metrics_addr
    }

    /// Where `/healthz` and `/readyz` are served.
    pub fn health_addr(&self) -> std::net::SocketAddr {
        self.health_addr
    }

    /// The controller's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Kubernetes client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The shared flags.
    pub fn args(&self) -> &RuntimeArgs {
        &self.args
    }

    /// The process-owned metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The event recorder (Kubernetes Events and, with `--events-addr`, the notification-controller).
    pub fn events(&self) -> Arc<EventRecorder> {
        self.events.clone()
    }

    /// The process's shutdown trigger.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Whether this replica leads (always true without leader election).
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.is_leader.clone()
    }

    /// Waits until this replica leads; `false` when the process is shut down first.
    pub async fn wait_for_leadership(&self) -> bool {
        let mut leader = self.is_leader.clone();
        tokio::select! {
            led = leader.wait_for(|l| *l) => led.is_ok(),
            () = self.shutdown.wait() => false,
        }
    }

    /// A future that resolves on shutdown or when leadership is lost: what reconcilers run until.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let shutdown = self.shutdown.clone();
        let mut leader = self.is_leader.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let lost = tokio::select! {
                () = shutdown.wait() => None,
                lost = leader.wait_for(|l| !*l) => Some(lost.is_ok()),
            };
            match lost {
                Some(true) => {
                    error!("leadership lost: stopping reconcilers");
                    shutdown.trigger();
                }
                // The leader channel is closed (no leader election: `always_leader`), so leadership can no longer
                // be lost: run until shutdown.
                Some(false) => shutdown.wait().await,
                None => {}
            }
            let _ = tx.send(());
        });
        async move {
            let _ = rx.await;
        }
    }

    /// An API for kind `K` in the watched namespace (`--watch-all-namespaces=false` → `RUNTIME_NAMESPACE`).
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self.args.watched_namespace() {
            Some(ns) => Api::namespaced(self.client.clone(), &ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// The watcher configuration: `--watch-label-selector` applied.
    pub fn watcher_config(&self) -> watcher::Config {
        let config = watcher::Config::default();
        match self.args.watch_label_selector() {
            Some(selector) => config.labels(selector),
            None => config,
        }
    }

    /// The runner settings from the flags.
    pub fn runner_config(&self) -> RunnerConfig {
        RunnerConfig {
            controller: self.name,
            retry: self.args.retry_policy(),
            jitter: self.args.interval_jitter(),
            concurrency: self.args.concurrent,
        }
    }

    /// A runner for `reconciler` wired to this process's client, metrics and events.
    pub fn runner<R: Reconciler>(&self, reconciler: R) -> Arc<Runner<R>> {
        Arc::new(Runner::new(
            self.client.clone(),
            reconciler,
            self.runner_config(),
            Arc::new(self.metrics.clone()),
            self.events.clone(),
        ))
    }

    /// Shuts the servers down and releases the lease.
    pub async fn finish(self) {
        self.shutdown.trigger();
        for server in self.servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => error!(error = %err, "server failed"),
                Err(err) => error!(error = %err, "server task failed"),
            }
        }
        if let Some(leader) = self.leader
            && let Err(err) = leader.release().await
        {
            error!(error = %err, "releasing the leader lease");
        }
        info!(controller = self.name, "controller stopped");
    }
}

fn local_addr(
    listener: &tokio::net::TcpListener,
    asked: std::net::SocketAddr,
) -> std::net::SocketAddr {
    listener.local_addr().unwrap_or(asked)
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}
