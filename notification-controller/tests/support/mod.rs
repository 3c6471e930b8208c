//! Shared fixtures: a testenv API server with Flux's CRDs, the controller in-process, and a webhook sink on
//! loopback that records what providers post.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use notification_controller::Controller;
use notification_controller::notifier::Retry;
use notification_controller::server::dispatch::DispatchConfig;

/// Every log line the test process writes (JSON), to check that no secret leaks.
pub fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        logs().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a global subscriber at debug level writing into [`logs`] (once per test binary).
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = common::telemetry::filter(
            common::cli::LogLevel::Debug,
            Some("notification_controller=debug,common=info"),
        )
        .unwrap();
        let subscriber =
            common::telemetry::subscriber(filter, common::cli::LogEncoding::Json, || LogWriter);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Polls `check` every 20ms until it holds, failing after `secs` seconds.
pub async fn poll<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A testenv with Flux's CRDs, a namespace `flux-system`, and the controller running against it.
pub struct Fixture {
    pub env: testenv::TestEnv,
    pub client: kube::Client,
    pub controller: Controller,
}

/// Retries fast enough for tests: 3 attempts, 10ms apart.
pub fn fast_dispatch() -> DispatchConfig {
    DispatchConfig {
        retry: Retry {
            attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        },
        ..DispatchConfig::default()
    }
}

pub async fn start(extra_flags: &[&str], dispatch: DispatchConfig) -> Fixture {
    capture_logs();
    let env = testenv::TestEnv::start().await.unwrap();
    let client = env.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in common::api::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let alerts: Api<common::api::notification_v1beta3::Alert> =
        Api::namespaced(client.clone(), "flux-system");
    poll("CRDs served", 20, || async {
        alerts.list(&Default::default()).await.is_ok()
    })
    .await;
    let mut argv = vec![
        "notification-controller",
        "--metrics-addr=127.0.0.1:0",
        "--health-addr=127.0.0.1:0",
        "--events-addr=127.0.0.1:0",
        "--receiverAddr=127.0.0.1:0",
    ];
    argv.extend_from_slice(extra_flags);
    let args = notification_controller::parse_args(argv).unwrap();
    let controller = notification_controller::start(args, Some(client.clone()), dispatch)
        .await
        .unwrap();
    Fixture {
        env,
        client,
        controller,
    }
}

impl Fixture {
    pub async fn apply<K>(&self, yaml: &str) -> K
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        let obj: K = serde_saphyr::from_str(yaml).unwrap();
        let ns = obj
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "flux-system".into());
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        api.create(&PostParams::default(), &obj).await.unwrap()
    }

    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let data: BTreeMap<String, String> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "flux-system",
                         "labels": {"reconcile.fluxcd.io/watch": "Enabled"}},
            "stringData": data,
        }))
        .unwrap();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), "flux-system");
        api.create(&PostParams::default(), &secret).await.unwrap();
    }

    /// `http://<events addr>/`.
    pub fn events_url(&self) -> String {
        format!("http://{}/", self.controller.events_addr())
    }

    /// The Kubernetes Events about `name` with `reason`, as `(type, note)`.
    pub async fn events_for(&self, name: &str, reason: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), "flux-system");
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
            .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Waits until every event taken by the dispatcher was delivered or failed.
    pub async fn settle(&self, processed: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = self.controller.dispatcher().stats();
        poll("dispatcher settled", 30, || async {
            stats.processed.load(Relaxed) >= processed
                && stats.queued.load(Relaxed)
                    <= stats.delivered.load(Relaxed) + stats.failed.load(Relaxed)
        })
        .await;
    }
}

/// What a sink answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Ok,
    Fail,
    Hang,
}

/// A recorded post.
#[derive(Clone, Debug)]
pub struct Post {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Post {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct SinkState {
    mode: Arc<Mutex<Mode>>,
    posts: Arc<Mutex<Vec<Post>>>,
}

/// A Slack-compatible webhook sink on 127.0.0.1.
pub struct Sink {
    pub addr: SocketAddr,
    state: SinkState,
}

impl Sink {
    pub async fn start(mode: Mode) -> Sink {
        let state = SinkState {
            mode: Arc::new(Mutex::new(mode)),
            posts: Arc::new(Mutex::new(Vec::new())),
        };
        async fn record(
            State(state): State<SinkState>,
            method: axum::http::Method,
            uri: axum::http::Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> (StatusCode, &'static str) {
            state.posts.lock().unwrap().push(Post {
                method: method.to_string(),
                path: uri.to_string(),
                headers,
                body: body.to_vec(),
            });
            let mode = *state.mode.lock().unwrap();
            match mode {
                Mode::Ok => (StatusCode::OK, "ok"),
                Mode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "boom"),
                Mode::Hang => {
                    futures::future::pending::<()>().await;
                    (StatusCode::OK, "never")
                }
            }
        }
        let app = Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Sink { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn posts(&self) -> Vec<Post> {
        self.state.posts.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.posts.lock().unwrap().len()
    }

    /// The requests whose path starts with `prefix`.
    pub fn posts_to(&self, prefix: &str) -> Vec<Post> {
        self.posts()
            .into_iter()
            .filter(|p| p.path.starts_with(prefix))
            .collect()
    }
}
