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

pub mod auth;
pub mod builtin;
pub mod controllers;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod fault;
pub mod git_http;
pub mod managed_fields;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod proxy;
pub mod rbac;
pub mod request_info;
pub mod schema;
pub mod selector;
pub mod server;
pub mod simulate;
pub mod store;
pub mod table;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use controllers::Controllers;
pub use error::{ApiError, Error};
pub use fault::{FaultAction, FaultId, FaultRule};
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

    // --- TLS, tokens, RBAC ---
    /// Serve HTTPS with a generated CA (in the kubeconfig's `certificate-authority-data`).
    pub tls: bool,
    /// Authenticate bearer tokens and enforce RBAC; the kubeconfig then carries an admin token.
    pub auth: bool,
    /// A kube-apiserver static token file (`token,user,uid,"group1,group2"`); implies `auth`.
    pub token_file: Option<PathBuf>,

    // --- simulated workloads ---
    /// Simulated workloads (Deployment status, Pods Running, Jobs Complete, ...): on by default, ~200 ms.
    pub simulation: Simulation,

    // --- kube-controller-manager ---
    /// The `default` ServiceAccount of every namespace and ClusterRole aggregation: on by default.
    pub controllers: Controllers,
}

impl Options {
    /// Persist objects in `dir`.
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Serve HTTPS (self-signed CA, server certificate for 127.0.0.1 and localhost).
    #[must_use]
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Require bearer tokens and enforce RBAC (`system:masters` is the superuser group).
    #[must_use]
    pub fn auth(mut self, on: bool) -> Self {
        self.auth = on;
        self
    }

    /// Accept the tokens of a kube-apiserver static token file; turns `auth` on.
    #[must_use]
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_file = Some(path.into());
        self.auth = true;
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

/// The controllers of kube-controller-manager (see [`controllers`]).
impl Options {
    /// Turn the serviceaccounts controller (a `default` ServiceAccount in every namespace) on (the default) or
    /// off.
    #[must_use]
    pub fn service_accounts(mut self, enabled: bool) -> Self {
        self.controllers.service_accounts = enabled;
        self
    }

    /// Turn the clusterrole-aggregation controller (`aggregationRule` resolved into `rules`) on (the default)
    /// or off.
    #[must_use]
    pub fn cluster_role_aggregation(mut self, enabled: bool) -> Self {
        self.controllers.cluster_role_aggregation = enabled;
        self
    }
}

/// A running API server.
pub struct Server {
    url: String,
    addr: SocketAddr,
    options: Options,
    state: AppState,
    task: tokio::task::JoinHandle<()>,
    persist: tokio::task::JoinHandle<()>,
    /// With TLS: the CA and serving certificate, kept across [`Server::restart`] so kubeconfigs stay valid.
    certs: Option<Arc<tls::Certificates>>,
}

/// How long [`Server::restart`] keeps trying to bind the old address.
const REBIND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

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
        let store = Store::new(data_file(&options)?)?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let certs = if options.tls {
            Some(Arc::new(tls::Certificates::generate()?))
        } else {
            None
        };
        let mut state = AppState::new(store);
        if options.auth || options.token_file.is_some() {
            let auth = auth::Auth::new(
                options.data_dir.as_deref(),
                options.token_file.as_deref(),
                certs.as_ref().map(|c| c.ca_pem.clone()),
            )?;
            state.auth = Arc::new(auth);
        }
        Self::serve(listener, options, state, certs)
    }

    fn serve(
        listener: tokio::net::TcpListener,
        options: Options,
        state: AppState,
        certs: Option<Arc<tls::Certificates>>,
    ) -> Result<Self, Error> {
        let addr = listener.local_addr()?;
        let store = state.store.clone();
        if let Ok(mut a) = state.address.lock() {
            *a = addr.to_string();
        }
        let auth_on = state.auth.enabled();
        if auth_on {
            seed_rbac(&store);
        }
        let app = server::router(state.clone())
            .into_make_service_with_connect_info::<fault::Connection>();
        let listener = fault::FaultListener::new(listener, state.faults.clone());
        let stop = state.stopping.subscribe();
        let task = match &certs {
            Some(certs) => {
                let listener = tls::TlsListener::new(listener, certs.server_config()?)?;
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(server::stopped(stop))
                        .await
                    {
                        tracing::error!(error = %e, "testenv server stopped");
                    }
                })
            }
            None => tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(server::stopped(stop))
                    .await
                {
                    tracing::error!(error = %e, "testenv server stopped");
                }
            }),
        };
        let tokens = auth_on.then(|| state.auth.clone());
        let simulation = options.simulation;
        let controllers = options.controllers;
        // persistence, the namespace controller, the token controller, the serviceaccounts and
        // clusterrole-aggregation controllers and the simulated workload controllers
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
                let tokens = async {
                    if let Some(auth) = tokens {
                        auth::token_controller(store.clone(), auth).await;
                    }
                };
                tokio::join!(
                    store.clone().persist_loop(),
                    namespaces,
                    tokens,
                    controllers::run(store.clone(), controllers),
                    simulate::run(store.clone(), simulation)
                );
            }
        });
        let scheme = if certs.is_some() { "https" } else { "http" };
        Ok(Self {
            url: format!("{scheme}://{addr}"),
            addr,
            options,
            state,
            task,
            persist,
            certs,
        })
    }

    /// Stop the server and start it again on the same address with the same options, like an API server
    /// restart: open watches and connections end, clients reconnect.
    ///
    /// `keep_state`: objects and the resourceVersion counter survive (reloaded from the data dir, or kept in
    /// memory); otherwise the new server starts empty (the data dir's `state.json` is removed). The request log,
    /// fault rules and the [`Server::set_fault`] hook are kept either way.
    pub async fn restart(mut self, keep_state: bool) -> Result<Self, Error> {
        self.stop().await?;
        let addr = self.addr;
        let options = self.options.clone();
        let data_file = data_file(&options)?;
        let store = match (&data_file, keep_state) {
            (None, true) => self.state.store.clone(),
            (Some(file), false) => {
                match std::fs::remove_file(file) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
                Store::new(data_file)?
            }
            _ => Store::new(data_file)?,
        };
        let mut state = AppState::new(store);
        state.log = self.state.log.clone();
        state.fault = self.state.fault.clone();
        state.faults = self.state.faults.clone();
        // the same token signer: tokens handed out before the restart stay valid, like a real API server's
        state.auth = self.state.auth.clone();
        let listener = rebind(addr).await?;
        Self::serve(listener, options, state, self.certs.clone())
    }

    async fn stop(&mut self) -> Result<(), Error> {
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

    // --- TLS, tokens, RBAC ---

    /// The CA certificate (PEM) clients must trust, with TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.certs.as_ref().map(|c| c.ca_pem.as_str())
    }

    /// Whether requests are authenticated and authorized.
    pub fn auth_enabled(&self) -> bool {
        self.state.auth.enabled()
    }

    /// The admin token (user `testenv-admin`, group `system:masters`) when authentication is on.
    pub fn admin_token(&self) -> Option<&str> {
        self.auth_enabled().then(|| self.state.auth.admin_token())
    }

    /// A token (no expiry) for `user` in `groups`; `system:authenticated` is added.
    pub fn token_for(&self, user: &str, groups: &[&str]) -> String {
        self.state.auth.token_for(user, groups)
    }

    /// A token for the ServiceAccount `namespace/name` (which must exist when the token is used), valid for
    /// an hour, as the TokenRequest subresource mints them.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Result<String, Error> {
        let rd = self
            .state
            .store
            .resolve("", "v1", "serviceaccounts")
            .ok_or_else(|| Error::Url("no serviceaccounts resource".into()))?;
        let sa = self
            .state
            .store
            .get(&rd, namespace, name)
            .map_err(|e| Error::Url(e.to_string()))?;
        let uid = sa["metadata"]["uid"].as_str().unwrap_or_default();
        Ok(self
            .state
            .auth
            .service_account_token(namespace, name, uid, 3600, None))
    }

    /// A kubeconfig for this server: the CA with TLS, and `token` (the admin token when `None` and
    /// authentication is on).
    pub fn kubeconfig_yaml(&self, token: Option<&str>) -> String {
        let token = token.or_else(|| self.admin_token());
        kubeconfig_yaml_with(&self.url, self.ca_pem(), token)
    }

    /// Write [`Server::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path, token: Option<&str>) -> Result<(), Error> {
        write_file(path, &self.kubeconfig_yaml(token))
    }

    /// A kube client for this server using `token` (the admin token when `None`), through the same kubeconfig
    /// path as the controllers.
    pub async fn client_with_token(&self, token: Option<&str>) -> Result<kube::Client, Error> {
        client_from_kubeconfig(&self.kubeconfig_yaml(token)).await
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
        self.stop().await
    }
}

fn data_file(options: &Options) -> Result<Option<PathBuf>, Error> {
    match options.data_dir.as_deref() {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            Ok(Some(d.join("state.json")))
        }
        None => Ok(None),
    }
}

/// Bind `addr` again after a stop. Tokio listeners set `SO_REUSEADDR` on Unix, so connections in TIME_WAIT do
/// not block the port; still retry briefly while the old listener's socket is being released.
async fn rebind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    let deadline = tokio::time::Instant::now() + REBIND_DEADLINE;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
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
    kubeconfig_yaml_with(url, None, None)
}

/// Write the kubeconfig for `url` to `path` (creating parent directories).
pub fn write_kubeconfig(path: &Path, url: &str) -> Result<(), Error> {
    write_file(path, &kubeconfig_yaml(url))
}

fn write_file(path: &Path, contents: &str) -> Result<(), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A kubeconfig for `url` trusting `ca_pem` (as `certificate-authority-data`) and authenticating with
/// `token`; user `testenv`, context `testenv`, namespace `default`.
pub fn kubeconfig_yaml_with(url: &str, ca_pem: Option<&str>, token: Option<&str>) -> String {
    let ca = ca_pem
        .map(|c| {
            format!(
                "    certificate-authority-data: {}\n",
                store::base64_encode(c.as_bytes())
            )
        })
        .unwrap_or_default();
    let user = match token {
        Some(t) => format!("\n    token: {t}"),
        None => " {}".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testenv\n  cluster:\n    server: {url}\n{ca}contexts:\n- name: testenv\n  context:\n    cluster: testenv\n    user: testenv\n    namespace: default\ncurrent-context: testenv\nusers:\n- name: testenv\n  user:{user}\npreferences: {{}}\n"
    )
}

/// A kube client from kubeconfig YAML (its current context).
pub async fn client_from_kubeconfig(yaml: &str) -> Result<kube::Client, Error> {
    let kc = kube::config::Kubeconfig::from_yaml(yaml)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

/// With authentication on, the bootstrap ClusterRoles exist as in a real cluster: `cluster-admin`, and the
/// user-facing `admin`, `edit`, `view` with the roles they aggregate (see [`rbac::bootstrap_roles`]). Missing
/// ones are created; existing ones are left as they are. The aggregated rules are filled in at once, so a
/// binding to `view` works from the first request.
fn seed_rbac(store: &Store) {
    let Some(rd) = store.resolve("rbac.authorization.k8s.io", "v1", "clusterroles") else {
        return;
    };
    let opts = store::WriteOptions {
        manager: "testenv".into(),
        ..store::WriteOptions::default()
    };
    for role in rbac::bootstrap_roles() {
        let name = role["metadata"]["name"].as_str().unwrap_or_default();
        if store.get(&rd, "", name).is_ok() {
            continue;
        }
        if let Err(e) = store.create(&rd, "", role.clone(), &opts) {
            tracing::warn!(error = %e, name, "could not create a bootstrap ClusterRole");
        }
    }
    controllers::aggregate_all(store);
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
        server.write_kubeconfig(&kubeconfig, None)?;
        let client = if server.ca_pem().is_some() || server.auth_enabled() {
            server.client_with_token(None).await?
        } else {
            client_for(server.url())?
        };
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

    /// Restart the server on the same address (see [`Server::restart`]); the kubeconfig stays valid and the
    /// client reconnects.
    pub async fn restart(self, keep_state: bool) -> Result<Self, Error> {
        let Self {
            server,
            client,
            kubeconfig,
            _dir,
        } = self;
        let server = server.restart(keep_state).await?;
        Ok(Self {
            server,
            client,
            kubeconfig,
            _dir,
        })
    }

    /// A kube client authenticated as `user` in `groups` (a token from [`Server::token_for`]).
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Result<kube::Client, Error> {
        let token = self.server.token_for(user, groups);
        self.server.client_with_token(Some(&token)).await
    }

    /// A kube client authenticated with `token` (e.g. a ServiceAccount's).
    pub async fn client_with_token(&self, token: &str) -> Result<kube::Client, Error> {
        self.server.client_with_token(Some(token)).await
    }

    /// Stop the server.
    pub async fn shutdown(self) {
        let _ = self.server.shutdown().await;
    }
}
