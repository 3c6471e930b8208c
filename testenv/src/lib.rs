//! A Kubernetes API server for tests, e2e and `riptide up`.
//!
//! `testenv` is a single-process, in-memory (optionally persisted) stand-in for a cluster's control
//! plane, faithful enough for kube-rs, kube-runtime and the system `kubectl`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), testenv::Error> {
//! let env = testenv::TestEnv::start().await?;
//! let client = env.client();
//! // ... use the client; env.kubeconfig() for kubectl
//! env.shutdown().await;
//! # Ok(()) }
//! ```

pub mod builtin;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod git_http;
pub mod managed_fields;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod schema;
pub mod selector;
pub mod server;
pub mod simulate;
pub mod store;
pub mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{ApiError, Error};
pub use server::{FaultHook, LoggedRequest};
pub use simulate::Simulation;

use server::AppState;
use store::Store;

/// How long a deleted namespace keeps its contents before the namespace controller removes them
/// (a real cluster is asynchronous too: `kubectl delete -f` of a namespace and its objects must work).
pub const NAMESPACE_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

/// How a server is started. `Options::default()` is a plain in-memory server.
///
/// Each capability of the server (persistence, simulated workloads, TLS, authentication) has its own field, so
/// tests say what they need: `Options::default().data_dir(dir)`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// Load objects from and save them to `data_dir/state.json`.
    pub data_dir: Option<PathBuf>,
    /// Simulated workloads (Deployment status, Pods Running, Jobs Complete, ...): on by default, ~200 ms.
    pub simulation: Simulation,
}

impl Options {
    /// Persist objects in `dir`.
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
}

/// Simulated workloads (see [`simulate`]).
impl Options {
    /// Turn the workload simulation on (the default) or off (raw storage: no status is ever filled in).
    #[must_use]
    pub fn simulation(mut self, enabled: bool) -> Self {
        self.simulation.enabled = enabled;
        self
    }

    /// How long after a spec change the simulated status is written (default [`simulate::DEFAULT_DELAY`]).
    #[must_use]
    pub fn simulation_delay(mut self, delay: std::time::Duration) -> Self {
        self.simulation.delay = delay;
        self
    }
}

/// A running API server.
pub struct Server {
    url: String,
    state: AppState,
    task: tokio::task::JoinHandle<()>,
    persist: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Bind `listen` and serve. With `data_dir`, objects are loaded from and saved to `data_dir/state.json`.
    pub async fn start(listen: SocketAddr, data_dir: Option<&Path>) -> Result<Self, Error> {
        let options = Options {
            data_dir: data_dir.map(Path::to_path_buf),
            ..Options::default()
        };
        Self::start_with(listen, options).await
    }

    /// Bind `listen` and serve with `options`.
    pub async fn start_with(listen: SocketAddr, options: Options) -> Result<Self, Error> {
        let data_file = match options.data_dir.as_deref() {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                Some(d.join("state.json"))
            }
            None => None,
        };
        let store = Store::new(data_file)?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = AppState::new(store.clone());
        if let Ok(mut a) = state.address.lock() {
            *a = addr.to_string();
        }
        let app = server::router(state.clone());
        let stop = state.stopping.subscribe();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(server::stopped(stop))
                .await
            {
                tracing::error!(error = %e, "testenv server stopped");
            }
        });
        let simulation = options.simulation;
        // persistence, the namespace controller and the simulated workload controllers
        let persist = tokio::spawn({
            let store = store.clone();
            async move {
                let namespaces = async {
                    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
                    loop {
                        tick.tick().await;
                        store.sweep_namespaces(NAMESPACE_GRACE);
                    }
                };
                tokio::join!(
                    store.clone().persist_loop(),
                    namespaces,
                    simulate::run(store.clone(), simulation)
                );
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            state,
            task,
            persist,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object store (for direct inspection in tests).
    pub fn store(&self) -> &Arc<Store> {
        &self.state.store
    }

    /// Requests served so far (bounded to the most recent 10 000).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state
            .log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Install (or remove) a fault-injection hook consulted before every request.
    pub fn set_fault(&self, hook: Option<FaultHook>) {
        if let Ok(mut f) = self.state.fault.lock() {
            *f = hook;
        }
    }

    /// Stop serving; with a data dir, a final snapshot is written.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        // stop accepting, end watches, let in-flight requests finish (briefly), close idle connections
        self.state.stopping.send_replace(true);
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
        self.persist.abort();
        let _ = (&mut self.persist).await;
        self.state.store.save()
    }
}

impl Drop for Server {
    /// Dropping the server stops it (watch streams end when their connections close).
    fn drop(&mut self) {
        self.state.stopping.send_replace(true);
        self.task.abort();
        self.persist.abort();
    }
}

/// A kubeconfig pointing at `url` with context `testenv` and namespace `default`.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testenv\n  cluster:\n    server: {url}\ncontexts:\n- name: testenv\n  context:\n    cluster: testenv\n    user: testenv\n    namespace: default\ncurrent-context: testenv\nusers:\n- name: testenv\n  user: {{}}\npreferences: {{}}\n"
    )
}

/// Write the kubeconfig for `url` to `path` (creating parent directories).
pub fn write_kubeconfig(path: &Path, url: &str) -> Result<(), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, kubeconfig_yaml(url))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A kube client for a testenv URL.
pub fn client_for(url: &str) -> Result<kube::Client, Error> {
    let uri: http::Uri = url.parse().map_err(|e| Error::Url(format!("{url}: {e}")))?;
    let mut config = kube::Config::new(uri);
    config.default_namespace = "default".into();
    Ok(kube::Client::try_from(config)?)
}

/// An in-process API server on a random loopback port, with a kubeconfig in a temp dir.
pub struct TestEnv {
    server: Server,
    client: kube::Client,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestEnv {
    /// Start a fresh, empty (but for the default namespaces) API server.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Options::default()).await
    }

    /// Start a server with `options` on a random loopback port.
    pub async fn start_with(options: Options) -> Result<Self, Error> {
        let server = Server::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), options).await?;
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, server.url())?;
        let client = client_for(server.url())?;
        Ok(Self {
            server,
            client,
            kubeconfig,
            _dir: dir,
        })
    }

    /// A kube client for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Path of a kubeconfig for this server (for kubectl or child processes).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The running server (request log, fault injection, store).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Stop the server.
    pub async fn shutdown(self) {
        let _ = self.server.shutdown().await;
    }
}
