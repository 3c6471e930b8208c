//! Riptide's kustomize-controller: reconciles `kustomize.toolkit.fluxcd.io/v1` Kustomizations — fetches the
//! source artifact, builds it with the `kustomize` crate, substitutes variables, server-side applies in stages,
//! prunes, and checks health, with Flux's status, events and flags.

pub mod controllers;

use std::sync::Arc;

use clap::Parser;
use common::api::kustomize_v1::{Kustomization, SourceKind};
use common::api::meta::labels::{WATCH, WATCH_ENABLED};
use common::api::source_v1::GitRepository;
use common::reconcile::Runner;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
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
    /// The name of a Secret in the RUNTIME_NAMESPACE holding SOPS age keys (`*.agekey`), used by Kustomizations
    /// with `spec.decryption` but no `secretRef`.
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
            disable_fail_fast: self.runtime.feature_enabled("DisableFailFastBehavior"),
            additive_cel_dependency_check: self
                .runtime
                .feature_enabled("AdditiveCELDependencyCheck"),
            fetch,
            concurrent_ssa: self.concurrent_ssa.max(1),
            sops_age_secret: std::env::var(common::cli::RUNTIME_NAMESPACE_ENV)
                .ok()
                .filter(|ns| !ns.is_empty() && !self.sops_age_secret.is_empty())
                .map(|ns| (ns, self.sops_age_secret.clone())),
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
    #[error(transparent)]
    Manager(#[from] common::manager::ManagerError),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::InferConfigError),
}

/// Runs the controller (through `common::manager`: logging, client, metrics/health servers, events, leader
/// election) until shutdown or loss of leadership.
pub async fn run(args: Args) -> Result<(), RunError> {
    let manager = common::manager::Manager::start(CONTROLLER, args.runtime.clone()).await?;
    if !manager.wait_for_leadership().await {
        manager.finish().await;
        return Ok(());
    }
    // The base of impersonated clients: the same configuration the manager's client was built from.
    let base = kube::Config::infer().await?;
    let reconciler = KustomizationReconciler::new(manager.client(), Some(base), args.config());
    let runner = manager.runner(reconciler);
    let namespace = args.runtime.watched_namespace();
    let controller = controller(
        &runner,
        manager.client(),
        namespace.as_deref(),
        manager.watcher_config(),
    );
    runner.run(controller, manager.stopped()).await;
    manager.finish().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_gates_reach_the_config() {
        let config = Args::parse_from(["kustomize-controller"]).config();
        assert!(!config.additive_cel_dependency_check && !config.disable_fail_fast);
        let config = Args::parse_from([
            "kustomize-controller",
            "--feature-gates=AdditiveCELDependencyCheck=true,DisableFailFastBehavior=true",
        ])
        .config();
        assert!(config.additive_cel_dependency_check && config.disable_fail_fast);
    }
}
