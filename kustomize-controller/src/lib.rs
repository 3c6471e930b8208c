//! Riptide's kustomize-controller: reconciles `kustomize.toolkit.fluxcd.io/v1` Kustomizations — fetches the
//! source artifact, builds it with the `kustomize` crate, substitutes variables, server-side applies in stages,
//! prunes, and checks health, with Flux's status, events and flags.

pub mod controllers;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use common::api::kustomize_v1::{Kustomization, SourceKind};
use common::api::meta::labels::{WATCH, WATCH_ENABLED};
use common::api::source_v1::GitRepository;
use common::reconcile::{Event, EventSink, Runner, RunnerConfig};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

pub use controllers::kustomization::{Config, KustomizationError, KustomizationReconciler};

/// The controller's name: field manager, event reporter, metrics label.
pub const CONTROLLER: &str = common::api::meta::field_managers::KUSTOMIZE_CONTROLLER;

/// Command-line flags: the shared runtime flags plus Flux's kustomize-controller flags.
#[derive(Debug, Clone, Parser)]
#[command(name = "kustomize-controller", version, about)]
pub struct Args {
    #[command(flatten)]
    pub runtime: common::cli::RuntimeArgs,
    /// Disallow remote bases (the kustomize engine never fetches remote bases; accepted for compatibility).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_remote_bases: bool,
    /// Service account impersonated when a Kustomization sets no spec.serviceAccountName.
    #[arg(long, default_value = "")]
    pub default_service_account: String,
    /// Allow kubeconfigs with exec plugins in spec.kubeConfig.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_kubeconfig_exec: bool,
    /// Retries of an artifact download.
    #[arg(long, default_value_t = 9)]
    pub artifact_fetch_retries: u32,
    /// Concurrent server-side dry-runs per Kustomization.
    #[arg(long, default_value_t = 4)]
    pub concurrent_ssa: usize,
    /// The SOPS age secret in the runtime namespace (not supported yet; accepted for compatibility).
    #[arg(long, default_value = "")]
    pub sops_age_secret: String,
}

impl Args {
    /// The reconciler settings these flags describe.
    pub fn config(&self) -> Config {
        let mut fetch = controllers::kustomization::fetch::FetchOptions {
            retries: self.artifact_fetch_retries,
            ..Default::default()
        };
        fetch.hostname_override = std::env::var("SOURCE_CONTROLLER_LOCALHOST")
            .ok()
            .filter(|h| !h.is_empty());
        Config {
            no_cross_namespace_refs: self.runtime.no_cross_namespace_refs,
            requeue_dependency: self.runtime.requeue_dependency,
            default_service_account: Some(self.default_service_account.clone())
                .filter(|s| !s.is_empty()),
            insecure_kubeconfig_exec: self.insecure_kubeconfig_exec,
            strict_substitutions: self.runtime.feature_enabled("StrictPostBuildSubstitutions"),
            fetch,
            concurrent_ssa: self.concurrent_ssa.max(1),
            ..Default::default()
        }
    }
}

fn references(ks: &Kustomization, kind: SourceKind, namespace: &str, name: &str) -> bool {
    let ks_ns = ks.namespace().unwrap_or_default();
    ks.spec.source_ref.kind == kind
        && ks.spec.source_ref.name == name
        && ks.spec.source_ref.namespace_or(&ks_ns) == namespace
}

fn uses_config(
    ks: &Kustomization,
    kind: common::api::kustomize_v1::SubstituteKind,
    namespace: &str,
    name: &str,
) -> bool {
    ks.namespace().as_deref() == Some(namespace)
        && ks
            .spec
            .post_build
            .as_ref()
            .and_then(|p| p.substitute_from.as_ref())
            .is_some_and(|refs| refs.iter().any(|r| r.kind == kind && r.name == name))
}

/// The Kustomization controller with its watches: a new artifact revision on the referenced GitRepository, and
/// ConfigMaps/Secrets labelled `reconcile.fluxcd.io/watch: Enabled` used by `postBuild.substituteFrom`.
pub fn controller(
    runner: &Arc<Runner<KustomizationReconciler>>,
    client: Client,
    namespace: Option<&str>,
    watcher_config: watcher::Config,
) -> Controller<Kustomization> {
    let api: Api<Kustomization> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = runner.controller(api, watcher_config);
    let store = controller.store();

    let git: Api<GitRepository> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (r, s) = (runner.clone(), store.clone());
    let controller = controller.watches(
        git,
        watcher::Config::default(),
        move |repo: GitRepository| {
            let ns = repo.namespace().unwrap_or_default();
            let name = repo.name_any();
            let revision = repo
                .status
                .as_ref()
                .and_then(|st| st.artifact.as_ref())
                .map(|a| a.revision.clone());
            let mut out = Vec::new();
            let Some(revision) = revision else { return out };
            for ks in s.state() {
                let attempted = ks
                    .status
                    .as_ref()
                    .and_then(|st| st.last_attempted_revision.as_deref());
                if references(&ks, SourceKind::GitRepository, &ns, &name)
                    && attempted != Some(revision.as_str())
                {
                    let obj_ref = ObjectRef::from_obj(ks.as_ref());
                    r.forget(&obj_ref);
                    out.push(obj_ref);
                }
            }
            out
        },
    );

    let selector = format!("{WATCH}={WATCH_ENABLED}");
    let configs: Api<ConfigMap> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (r, s) = (runner.clone(), store.clone());
    let controller = controller.watches(
        configs,
        watcher::Config::default().labels(&selector),
        move |cm: ConfigMap| {
            let ns = cm.namespace().unwrap_or_default();
            let name = cm.name_any();
            let mut out = Vec::new();
            for ks in s.state() {
                if uses_config(
                    &ks,
                    common::api::kustomize_v1::SubstituteKind::ConfigMap,
                    &ns,
                    &name,
                ) {
                    let obj_ref = ObjectRef::from_obj(ks.as_ref());
                    r.forget(&obj_ref);
                    out.push(obj_ref);
                }
            }
            out
        },
    );
    let secrets: Api<Secret> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let (r, s) = (runner.clone(), store);
    controller.watches(
        secrets,
        watcher::Config::default().labels(&selector),
        move |secret: Secret| {
            let ns = secret.namespace().unwrap_or_default();
            let name = secret.name_any();
            let mut out = Vec::new();
            for ks in s.state() {
                if uses_config(
                    &ks,
                    common::api::kustomize_v1::SubstituteKind::Secret,
                    &ns,
                    &name,
                ) {
                    let obj_ref = ObjectRef::from_obj(ks.as_ref());
                    r.forget(&obj_ref);
                    out.push(obj_ref);
                }
            }
            out
        },
    )
}

/// Why the controller could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::InferConfigError),
    #[error("kube client: {0}")]
    Client(#[from] kube::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] common::metrics::MetricsError),
    #[error("events: {0}")]
    Events(#[from] common::events::EventError),
    #[error("telemetry: {0}")]
    Telemetry(#[from] common::telemetry::TelemetryError),
}

/// Publishes runner events through the shared recorder (Kubernetes Events and `--events-addr`).
struct RecorderSink(common::events::EventRecorder);

impl EventSink for RecorderSink {
    fn publish(&self, object: ObjectReference, event: Event) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self
                .0
                .publish(
                    &object,
                    event.severity,
                    &event.reason,
                    &event.message,
                    event.metadata,
                )
                .await;
        })
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(args: Args) -> Result<(), RunError> {
    common::telemetry::init_from_args(&args.runtime)?;
    let kube_config = kube::Config::infer().await?;
    let client = Client::try_from(kube_config.clone())?;
    let metrics = common::metrics::Metrics::new(CONTROLLER)?;
    let recorder = common::events::EventRecorder::new(
        CONTROLLER,
        Some(client.clone()),
        args.runtime.events_addr(),
    )?;
    let reconciler = KustomizationReconciler::new(client.clone(), Some(kube_config), args.config());
    let runner = Arc::new(Runner::new(
        client.clone(),
        reconciler,
        RunnerConfig {
            controller: CONTROLLER,
            retry: args.runtime.retry_policy(),
            jitter: args.runtime.interval_jitter(),
            concurrency: args.runtime.concurrent,
        },
        Arc::new(metrics.clone()),
        Arc::new(RecorderSink(recorder)),
    ));
    let shutdown = common::server::Shutdown::on_signal();
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(true);
    let readiness = common::server::Readiness::new().with_check("controller", ready_rx);
    let metrics_server = tokio::spawn(common::server::serve(
        args.runtime.metrics_addr,
        common::server::metrics_router(metrics),
        shutdown.wait(),
    ));
    let health_server = tokio::spawn(common::server::serve(
        args.runtime.health_addr,
        common::server::health_router(readiness),
        shutdown.wait(),
    ));
    let namespace = args.runtime.watched_namespace();
    let mut wc = watcher::Config::default();
    if let Some(sel) = args.runtime.watch_label_selector() {
        wc = wc.labels(sel);
    }
    let controller = controller(&runner, client, namespace.as_deref(), wc);
    runner.run(controller, shutdown.wait()).await;
    drop(ready_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = metrics_server.await;
        let _ = health_server.await;
    })
    .await;
    Ok(())
}
