//! Test support: testenv with Flux's CRDs, a static artifact server on 127.0.0.1, and the Kustomization runner.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test support code

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::kustomize_v1::Kustomization;
use common::api::source_v1::GitRepository;
use common::conditions::{self, get};
use common::reconcile::{
    Event, EventSink, MetricsObject, ReconcileMetrics, ReconcileResult, Runner, RunnerConfig,
};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kustomize_controller::{Config, KustomizationReconciler};
use serde_json::{Value, json};
use sha2::Digest as _;

pub type Artifacts = Arc<Mutex<HashMap<String, Vec<u8>>>>;

pub struct Recorder {
    pub events: Mutex<Vec<(String, Event)>>,
}

pub struct Sink(pub Arc<Recorder>);

impl EventSink for Sink {
    fn publish(&self, object: ObjectReference, event: Event) -> BoxFuture<'_, ()> {
        self.0
            .events
            .lock()
            .unwrap()
            .push((object.name.unwrap_or_default(), event));
        Box::pin(async {})
    }
}

impl ReconcileMetrics for Sink {
    fn record(&self, _: &MetricsObject, _: ReconcileResult, _: Duration) {}
    fn record_status(&self, _: &MetricsObject, _: Option<&str>, _: bool) {}
    fn forget(&self, _: &MetricsObject) {}
}

pub struct Fx {
    pub env: testenv::TestEnv,
    pub client: kube::Client,
    pub ks: Api<Kustomization>,
    pub repos: Api<GitRepository>,
    pub artifacts: Artifacts,
    pub base_url: String,
    pub recorder: Arc<Recorder>,
    pub runner: Arc<Runner<KustomizationReconciler>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

pub fn test_config() -> Config {
    Config {
        requeue_dependency: Duration::from_millis(500),
        health_interval: Duration::from_millis(100),
        ..Default::default()
    }
}

async fn artifact_server(store: Artifacts) -> String {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    async fn serve(
        State(store): State<Artifacts>,
        Path(path): Path<String>,
    ) -> axum::response::Response {
        match store.lock().unwrap().get(&path) {
            Some(bytes) => bytes.clone().into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::get(serve))
        .with_state(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

pub async fn start() -> Fx {
    start_with(test_config()).await
}

pub async fn start_with(config: Config) -> Fx {
    start_full(config, 8).await
}

pub async fn start_full(config: Config, concurrency: u16) -> Fx {
    start_env(config, concurrency, testenv::Options::default()).await
}

/// testenv with authentication and RBAC on. The controller runs with the admin kubeconfig (`system:masters`),
/// like a controller whose ServiceAccount is cluster-admin, so it may impersonate tenants' ServiceAccounts.
pub async fn start_auth(config: Config) -> Fx {
    start_env(config, 8, testenv::Options::default().auth(true)).await
}

pub async fn start_env(config: Config, concurrency: u16, options: testenv::Options) -> Fx {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let env = testenv::TestEnv::start_with(options).await.unwrap();
    let client = env.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in common::api::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let ks: Api<Kustomization> = Api::namespaced(client.clone(), "default");
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), "default");
    poll(|| async {
        ks.list(&Default::default()).await.is_ok() && repos.list(&Default::default()).await.is_ok()
    })
    .await;

    let artifacts = Arc::new(Mutex::new(HashMap::new()));
    let base_url = artifact_server(artifacts.clone()).await;
    let kubeconfig = kube::config::Kubeconfig::read_from(env.kubeconfig()).unwrap();
    let base = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let recorder = Arc::new(Recorder {
        events: Mutex::new(Vec::new()),
    });
    let sink = Arc::new(Sink(recorder.clone()));
    let runner = Arc::new(Runner::new(
        client.clone(),
        KustomizationReconciler::new(client.clone(), Some(base), config),
        RunnerConfig {
            controller: kustomize_controller::CONTROLLER,
            retry: common::cli::RetryPolicy {
                min: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
            jitter: common::cli::IntervalJitter { percentage: 5 },
            concurrency,
        },
        sink.clone(),
        sink,
    ));
    let controller =
        kustomize_controller::controller(&runner, client.clone(), None, Default::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(runner.clone().run(controller, async move {
        let _ = stopped.await;
    }));
    Fx {
        env,
        client,
        ks,
        repos,
        artifacts,
        base_url,
        recorder,
        runner,
        stop: Some(stop),
    }
}

impl Fx {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.env.shutdown().await;
    }

    /// Creates the GitRepository `name` (no artifact yet).
    pub async fn create_repo(&self, name: &str) {
        let repo: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"interval": "10m", "url": "https://example.invalid/repo.git", "timeout": "60s"}
        }))
        .unwrap();
        self.repos
            .create(&PostParams::default(), &repo)
            .await
            .unwrap();
    }

    /// Serves `bytes` and points the GitRepository's artifact at them with `digest` (computed when `None`).
    pub async fn publish_bytes(
        &self,
        repo: &str,
        revision: &str,
        bytes: Vec<u8>,
        digest: Option<&str>,
    ) {
        let path = format!(
            "gitrepository/default/{repo}/{}.tar.gz",
            revision.replace(['@', ':'], "-")
        );
        let computed = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        self.artifacts.lock().unwrap().insert(path.clone(), bytes);
        self.set_artifact(
            repo,
            revision,
            &format!("{}/{path}", self.base_url),
            digest.unwrap_or(&computed),
        )
        .await;
    }

    pub async fn set_artifact(&self, repo: &str, revision: &str, url: &str, digest: &str) {
        let patch = json!({"status": {"artifact": {
            "path": "x.tar.gz", "url": url, "revision": revision, "digest": digest,
            "lastUpdateTime": "2026-01-01T00:00:00Z"
        }}});
        self.repos
            .patch_status(repo, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    /// Publishes the files as a new revision.
    pub async fn publish(&self, repo: &str, revision: &str, files: &[(&str, &str)]) {
        self.publish_bytes(repo, revision, tarball(files), None)
            .await;
    }

    pub async fn create_ks(&self, name: &str, spec: Value) {
        self.create_ks_in("default", name, spec).await;
    }

    /// Creates a Kustomization in `namespace`; its default source is the GitRepository `default/repo`.
    pub async fn create_ks_in(&self, namespace: &str, name: &str, spec: Value) {
        let mut base = json!({"interval": "10m", "prune": true, "path": "./",
            "sourceRef": {"kind": "GitRepository", "name": "repo", "namespace": "default"}});
        for (k, v) in spec.as_object().unwrap() {
            base[k] = v.clone();
        }
        let ks: Kustomization = serde_json::from_value(json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name, "namespace": namespace},
            "spec": base
        }))
        .unwrap();
        self.ks_api(namespace)
            .create(&PostParams::default(), &ks)
            .await
            .unwrap();
    }

    pub fn ks_api(&self, namespace: &str) -> Api<Kustomization> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Waits until `check` holds for the Kustomization.
    pub async fn wait_ks(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Kustomization) -> bool,
    ) -> Kustomization {
        self.wait_ks_in("default", name, what, check).await
    }

    /// Waits until `check` holds for the Kustomization `namespace/name`.
    pub async fn wait_ks_in(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        check: impl Fn(&Kustomization) -> bool,
    ) -> Kustomization {
        let api = self.ks_api(namespace);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ks = api.get(name).await.unwrap();
            if check(&ks) {
                return ks;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {what} not reached within 30s: {:#?}",
                ks.status
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until Ready=True for `revision`.
    pub async fn wait_applied(&self, name: &str, revision: &str) -> Kustomization {
        self.wait_applied_in("default", name, revision).await
    }

    /// Waits until Ready=True for `revision` (Kustomization in `namespace`).
    pub async fn wait_applied_in(
        &self,
        namespace: &str,
        name: &str,
        revision: &str,
    ) -> Kustomization {
        let want = format!("Applied revision: {revision}");
        let ks = self
            .wait_ks_in(namespace, name, &want, |ks| {
                ks.condition("Ready")
                    .is_some_and(|c| c.status.as_str() == "True" && c.message == want)
                    && ks.status.as_ref().unwrap().observed_generation == ks.metadata.generation
            })
            .await;
        assert_invariants(&ks);
        ks
    }

    /// Waits until Ready=False with `reason`.
    pub async fn wait_failed(&self, name: &str, reason: &str) -> Kustomization {
        self.wait_failed_in("default", name, reason).await
    }

    /// Waits until Ready=False with `reason` (Kustomization in `namespace`).
    pub async fn wait_failed_in(&self, namespace: &str, name: &str, reason: &str) -> Kustomization {
        let ks = self
            .wait_ks_in(namespace, name, reason, |ks| {
                ks.condition("Ready")
                    .is_some_and(|c| c.status.as_str() == "False" && c.reason == reason)
            })
            .await;
        assert_invariants(&ks);
        ks
    }

    /// Asks for a reconcile now (`reconcile.fluxcd.io/requestedAt`) and waits until it was handled.
    pub async fn request_reconcile(&self, name: &str, token: &str) -> Kustomization {
        let patch =
            json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}});
        self.ks
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
        self.wait_ks(name, "lastHandledReconcileAt", |ks| {
            ks.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some(token)
        })
        .await
    }

    pub fn events_for(&self, name: &str) -> Vec<Event> {
        self.recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
            .collect()
    }

    pub async fn configmap(&self, ns: &str, name: &str) -> Option<Value> {
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .unwrap()
            .map(|c| serde_json::to_value(c).unwrap())
    }

    pub fn request_count(&self) -> usize {
        self.env.server().requests().len()
    }

    pub fn requests_since(&self, from: usize) -> Vec<testenv::LoggedRequest> {
        self.env
            .server()
            .requests()
            .into_iter()
            .skip(from)
            .collect()
    }
}

pub fn inventory_ids(ks: &Kustomization) -> Vec<String> {
    ks.status
        .as_ref()
        .map(|s| s.inventory_entries().iter().map(|e| e.id.clone()).collect())
        .unwrap_or_default()
}

/// kstatus invariants: Ready present, Reconciling and Stalled never both True.
pub fn assert_invariants(ks: &Kustomization) {
    let status = ks.status.as_ref().expect("status written");
    let list = status.conditions();
    assert!(get(list, "Ready").is_some(), "Ready present: {list:?}");
    assert!(!(conditions::is_true(list, "Reconciling") && conditions::is_true(list, "Stalled")));
}

pub async fn poll<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 30s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A tar.gz with the given (path, contents) regular files.
pub fn tarball(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, contents.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A tar.gz with one entry whose raw name escapes the root.
pub fn evil_tarball() -> Vec<u8> {
    let mut header = tar::Header::new_old();
    let name = b"../escape.yaml";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(1);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    builder.append(&header, &b"x"[..]).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

pub fn configmap(name: &str, data: &[(&str, &str)]) -> String {
    configmap_in("default", name, data)
}

pub fn configmap_in(namespace: &str, name: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\ndata:\n"
    );
    for (k, v) in data {
        s.push_str(&format!("  {k}: \"{v}\"\n"));
    }
    s
}
