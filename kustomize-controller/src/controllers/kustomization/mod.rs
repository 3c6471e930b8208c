//! The Kustomization reconciler: health check expressions → source → artifact → dependencies → build → apply →
//! prune → health, with status written exactly as Flux's kustomize-controller writes it.

pub mod apply;
pub mod build;
pub mod decrypt;
pub mod dependencies;
pub mod discovery;
pub mod envsubst;
pub mod expr;
pub mod fetch;
pub mod finalize;
pub mod health;
pub mod inventory;
pub mod prune;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::api::kustomize_v1::{
    GROUP, Kustomization, KustomizationStatus, ResourceInventory, SubstituteKind,
};
use common::api::meta::{HISTORY_MAX_SIZE, Snapshot, condition_types, reasons};
use common::conditions::format_time;
use common::events::metadata_key;
use common::reconcile::{ErrorKind, FluxError, Reconciler, Severity, Step, Success, Summary};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use self::apply::{AppliedCache, Applier, ApplyError, ApplyOptions};
use self::build::{BuildError, PostBuild};
use self::dependencies::DependencyError;
use self::discovery::Resolver;
use self::expr::{CustomHealth, HealthCheckExprsError};
use self::fetch::{FetchError, FetchOptions};
use self::health::WaitOptions;
use self::inventory::{Action, ObjMeta, format_changes};
use self::source::SourceError;

/// Opt-in annotation (value `enabled`) that lets a build yielding zero objects prune everything the previous
/// revision applied. Without it such a build is refused (a Riptide safety rule; Flux has no equivalent).
pub const ALLOW_EMPTY_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/prune-empty";

/// Flux's reason for refused cross-namespace references (`apiacl.AccessDeniedReason`).
pub const ACCESS_DENIED_REASON: &str = "AccessDenied";

/// Flux's prefix of configuration errors that stall a Kustomization (`TerminalErrorMessage`).
pub const TERMINAL_ERROR_MESSAGE: &str =
    "Reconciliation failed terminally due to configuration error";

/// Controller settings from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--no-cross-namespace-refs`.
    pub no_cross_namespace_refs: bool,
    /// `--requeue-dependency`.
    pub requeue_dependency: Duration,
    /// `--default-service-account`.
    pub default_service_account: Option<String>,
    /// `--insecure-kubeconfig-exec`.
    pub insecure_kubeconfig_exec: bool,
    /// `--feature-gates=StrictPostBuildSubstitutions=true`.
    pub strict_substitutions: bool,
    /// `--feature-gates=DisableFailFastBehavior=true`: health checks wait for the timeout even when an object
    /// has Failed.
    pub disable_fail_fast: bool,
    /// `--feature-gates=AdditiveCELDependencyCheck=true`: a dependency with a `readyExpr` must also pass the
    /// built-in readiness check (by default the expression replaces it).
    pub additive_cel_dependency_check: bool,
    /// Artifact download limits (`--artifact-fetch-retries`, `SOURCE_CONTROLLER_LOCALHOST`).
    pub fetch: FetchOptions,
    /// Concurrent server-side dry-runs per Kustomization (`--concurrent-ssa`).
    pub concurrent_ssa: usize,
    /// How often health checks poll.
    pub health_interval: Duration,
    /// The field manager of applied objects.
    pub field_manager: String,
    /// `--sops-age-secret` with `RUNTIME_NAMESPACE`: `(namespace, name)` of the fallback age key Secret.
    pub sops_age_secret: Option<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            no_cross_namespace_refs: false,
            requeue_dependency: Duration::from_secs(30),
            default_service_account: None,
            insecure_kubeconfig_exec: false,
            strict_substitutions: false,
            disable_fail_fast: false,
            additive_cel_dependency_check: false,
            fetch: FetchOptions::default(),
            concurrent_ssa: 8,
            health_interval: Duration::from_millis(500),
            field_manager: common::api::meta::field_managers::KUSTOMIZE_CONTROLLER.to_string(),
            sops_age_secret: None,
        }
    }
}

/// Every way a Kustomization reconcile can fail, with Flux's reason and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum KustomizationError {
    #[error("{0}")]
    Source(SourceError, Duration),
    #[error("Source is not ready, artifact not found, retrying in {}", go_duration(*.0))]
    ArtifactGone(Duration),
    #[error(transparent)]
    Fetch(FetchError),
    #[error("{TERMINAL_ERROR_MESSAGE}: {0}")]
    InvalidHealthCheckExprs(#[source] HealthCheckExprsError),
    #[error("{0}")]
    Dependency(DependencyError, Duration),
    #[error("{TERMINAL_ERROR_MESSAGE}: {0}")]
    InvalidReadyExpr(#[source] DependencyError),
    #[error(transparent)]
    Build(BuildError),
    #[error("{0}")]
    Client(String),
    #[error(
        "the build produced no objects while the inventory holds {0}; refusing to prune them all \
         (annotate the Kustomization with {ALLOW_EMPTY_ANNOTATION}=enabled to allow it)"
    )]
    EmptyBuild(usize),
    #[error("{0}")]
    Apply(String),
    #[error("{0}")]
    Prune(String),
    #[error("{0}")]
    Health(String),
}

impl FluxError for KustomizationError {
    fn reason(&self) -> &str {
        match self {
            KustomizationError::Source(SourceError::AccessDenied(_), _) => ACCESS_DENIED_REASON,
            KustomizationError::Source(..)
            | KustomizationError::ArtifactGone(_)
            | KustomizationError::Fetch(_)
            | KustomizationError::Build(BuildError::PathNotFound(_)) => reasons::ARTIFACT_FAILED,
            KustomizationError::Dependency(..) => reasons::DEPENDENCY_NOT_READY,
            KustomizationError::InvalidHealthCheckExprs(_)
            | KustomizationError::InvalidReadyExpr(_) => reasons::INVALID_CEL_EXPRESSION,
            KustomizationError::Build(_) => reasons::BUILD_FAILED,
            KustomizationError::Client(_)
            | KustomizationError::EmptyBuild(_)
            | KustomizationError::Apply(_) => reasons::RECONCILIATION_FAILED,
            KustomizationError::Prune(_) => reasons::PRUNE_FAILED,
            KustomizationError::Health(_) => reasons::HEALTH_CHECK_FAILED,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            KustomizationError::Source(SourceError::AccessDenied(_), _)
            | KustomizationError::InvalidHealthCheckExprs(_)
            | KustomizationError::InvalidReadyExpr(_) => ErrorKind::Stalled,
            KustomizationError::Source(SourceError::Get { .. }, _) => ErrorKind::Transient,
            KustomizationError::Source(_, d)
            | KustomizationError::ArtifactGone(d)
            | KustomizationError::Dependency(_, d) => ErrorKind::Waiting(*d),
            _ => ErrorKind::Transient,
        }
    }
}

/// Go's `time.Duration.String()`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let trim = |whole: u128, frac: u128, digits: usize, unit: &str| {
        let frac = format!("{frac:0digits$}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{whole}{unit}")
        } else {
            format!("{whole}.{frac}{unit}")
        }
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return trim(nanos / 1_000, nanos % 1_000, 3, "µs");
    }
    if nanos < 1_000_000_000 {
        return trim(nanos / 1_000_000, nanos % 1_000_000, 6, "ms");
    }
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let s = trim(s, frac, 9, "s");
    if h > 0 {
        format!("{h}h{m}m{s}")
    } else if m > 0 {
        format!("{m}m{s}")
    } else {
        s
    }
}

/// Flux's `History.Upsert`: the snapshot with the same digest and status is updated and moved to the front,
/// otherwise a new one is added at the front; at most five are kept.
pub fn upsert_history(
    history: &mut Vec<Snapshot>,
    digest: &str,
    now: Timestamp,
    duration: Duration,
    status: &str,
    metadata: BTreeMap<String, String>,
) {
    let at = format_time(now);
    let duration = go_duration(Duration::from_millis(duration.as_millis() as u64));
    if let Some(i) = history
        .iter()
        .position(|s| s.digest == digest && s.last_reconciled_status == status)
    {
        let mut s = history.remove(i);
        s.last_reconciled = at;
        s.last_reconciled_duration = duration;
        s.total_reconciliations += 1;
        s.metadata = Some(metadata);
        history.insert(0, s);
    } else {
        history.insert(
            0,
            Snapshot {
                digest: digest.to_string(),
                first_reconciled: at.clone(),
                last_reconciled: at,
                last_reconciled_duration: duration,
                last_reconciled_status: status.to_string(),
                total_reconciliations: 1,
                metadata: Some(metadata),
            },
        );
    }
    history.truncate(HISTORY_MAX_SIZE);
}

/// The Kustomization reconciler.
pub struct KustomizationReconciler {
    client: Client,
    /// The controller's own client configuration, the base of impersonated clients.
    base: Option<kube::Config>,
    config: Config,
    http: reqwest::Client,
    resolver: Resolver,
    applied: AppliedCache,
    impersonated: Mutex<HashMap<String, Client>>,
}

impl KustomizationReconciler {
    /// A reconciler using `client`; `base` is the configuration `client` was built from (needed to impersonate
    /// service accounts).
    pub fn new(client: Client, base: Option<kube::Config>, config: Config) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.fetch.timeout)
            .build()
            .unwrap_or_default();
        KustomizationReconciler {
            client,
            base,
            config,
            http,
            resolver: Resolver::default(),
            applied: AppliedCache::default(),
            impersonated: Mutex::new(HashMap::new()),
        }
    }

    /// The controller's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn service_account(&self, obj: &Kustomization) -> Option<String> {
        obj.spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| self.config.default_service_account.clone())
            .filter(|s| !s.is_empty())
    }

    /// The client that applies, prunes and health-checks for `obj`: the controller's own, one impersonating
    /// `system:serviceaccount:<ns>:<sa>`, or one for the cluster in `spec.kubeConfig.secretRef`.
    async fn client_for(&self, obj: &Kustomization) -> Result<Client, KustomizationError> {
        let namespace = obj.namespace().unwrap_or_default();
        let sa = self.service_account(obj);
        let user = sa
            .as_ref()
            .map(|sa| format!("system:serviceaccount:{namespace}:{sa}"));
        if let Some(kc) = &obj.spec.kube_config {
            let Some(secret_ref) = &kc.secret_ref else {
                return Err(KustomizationError::Client(
                    "spec.kubeConfig.configMapRef is not supported".into(),
                ));
            };
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
            let secret = secrets.get(&secret_ref.name).await.map_err(|e| {
                KustomizationError::Client(format!(
                    "unable to read KubeConfig secret '{namespace}/{}': {}",
                    secret_ref.name,
                    discovery::api_message(&e)
                ))
            })?;
            let data = secret.data.unwrap_or_default();
            let bytes = match &secret_ref.key {
                Some(k) => data.get(k),
                None => data.get("value").or_else(|| data.get("value.yaml")),
            }
            .ok_or_else(|| {
                KustomizationError::Client(format!(
                    "KubeConfig secret '{namespace}/{}' has no key '{}'",
                    secret_ref.name,
                    secret_ref.key.as_deref().unwrap_or("value")
                ))
            })?;
            let text = String::from_utf8_lossy(&bytes.0).to_string();
            let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).map_err(|_| {
                KustomizationError::Client(format!(
                    "KubeConfig secret '{namespace}/{}' is not a valid kubeconfig",
                    secret_ref.name
                ))
            })?;
            if !self.config.insecure_kubeconfig_exec
                && kubeconfig
                    .auth_infos
                    .iter()
                    .any(|a| a.auth_info.as_ref().is_some_and(|i| i.exec.is_some()))
            {
                return Err(KustomizationError::Client(
                    "KubeConfig exec plugins are not allowed (see --insecure-kubeconfig-exec)"
                        .into(),
                ));
            }
            let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|_| {
                    KustomizationError::Client(format!(
                        "KubeConfig secret '{namespace}/{}' cannot be used",
                        secret_ref.name
                    ))
                })?;
            config.auth_info.impersonate = user;
            return Client::try_from(config).map_err(|e| {
                KustomizationError::Client(format!("failed to build kube client: {e}"))
            });
        }
        let Some(user) = user else {
            return Ok(self.client.clone());
        };
        if let Some(c) = self
            .impersonated
            .lock()
            .ok()
            .and_then(|m| m.get(&user).cloned())
        {
            return Ok(c);
        }
        let mut config = self.base.clone().ok_or_else(|| {
            KustomizationError::Client("impersonation needs the controller's kubeconfig".into())
        })?;
        config.auth_info.impersonate = Some(user.clone());
        let client = Client::try_from(config)
            .map_err(|e| KustomizationError::Client(format!("failed to build kube client: {e}")))?;
        if let Ok(mut m) = self.impersonated.lock() {
            m.insert(user, client.clone());
        }
        Ok(client)
    }

    /// The post-build variables: `substituteFrom` ConfigMaps/Secrets (read with the controller's client, as
    /// Flux does), then `substitute`.
    async fn post_build(&self, obj: &Kustomization) -> Result<PostBuild, KustomizationError> {
        let Some(pb) = &obj.spec.post_build else {
            return Ok(PostBuild::default());
        };
        let namespace = obj.namespace().unwrap_or_default();
        let mut from = Vec::new();
        for r in pb.substitute_from.iter().flatten() {
            let err = |kind: &str, e: &kube::Error| {
                KustomizationError::Build(BuildError::Other(format!(
                    "substitute from '{kind}/{}' error: {}",
                    r.name,
                    discovery::api_message(e)
                )))
            };
            match r.kind {
                SubstituteKind::ConfigMap => {
                    let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
                    match api.get_opt(&r.name).await {
                        Ok(Some(cm)) => from.push(cm.data.unwrap_or_default()),
                        Ok(None) if r.optional => {}
                        Ok(None) => {
                            return Err(KustomizationError::Build(BuildError::Other(format!(
                                "substitute from 'ConfigMap/{}' error: configmaps \"{}\" not found",
                                r.name, r.name
                            ))));
                        }
                        Err(e) => return Err(err("ConfigMap", &e)),
                    }
                }
                SubstituteKind::Secret => {
                    let api: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
                    match api.get_opt(&r.name).await {
                        Ok(Some(s)) => from.push(
                            s.data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).to_string()))
                                .collect(),
                        ),
                        Ok(None) if r.optional => {}
                        Ok(None) => {
                            return Err(KustomizationError::Build(BuildError::Other(format!(
                                "substitute from 'Secret/{}' error: secrets \"{}\" not found",
                                r.name, r.name
                            ))));
                        }
                        Err(e) => return Err(err("Secret", &e)),
                    }
                }
            }
        }
        Ok(PostBuild {
            vars: Some(build::merge_vars(from, pb.substitute.as_ref())),
            always: build::always(&obj.spec),
            strict: self.config.strict_substitutions,
        })
    }

    fn timeout(obj: &Kustomization) -> Duration {
        obj.spec
            .timeout
            .as_deref()
            .and_then(|t| common::cli::parse_go_duration(t).ok())
            .or_else(|| common::cli::parse_go_duration(&obj.spec.interval).ok())
            .unwrap_or(Duration::from_secs(300))
    }

    /// The health check set: every applied object with `wait`, else `healthChecks`.
    async fn health_set(
        &self,
        client: &Client,
        obj: &Kustomization,
        changes: &[inventory::Change],
    ) -> Vec<ObjMeta> {
        let namespace = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let set: Vec<ObjMeta> = if obj.spec.wait() {
            changes
                .iter()
                .filter(|c| c.action != Action::Skipped)
                .map(|c| c.object.clone())
                .collect()
        } else {
            let mut set = Vec::new();
            for hc in obj.spec.health_checks.iter().flatten() {
                let api_version = hc.api_version.clone().or_else(|| {
                    changes
                        .iter()
                        .find(|c| c.object.kind == hc.kind && c.object.name == hc.name)
                        .map(|c| c.object.api_version())
                });
                let Some(api_version) = api_version else {
                    continue;
                };
                let (group, version) = inventory::split_api_version(&api_version);
                let mut ns = hc.namespace.clone().unwrap_or_default();
                if ns.is_empty()
                    && self
                        .resolver
                        .resolve(client, &api_version, &hc.kind)
                        .await
                        .is_ok_and(|r| r.namespaced)
                {
                    ns = namespace.clone();
                }
                set.push(ObjMeta {
                    group: group.to_string(),
                    version: version.to_string(),
                    kind: hc.kind.clone(),
                    namespace: ns,
                    name: hc.name.clone(),
                });
            }
            set
        };
        set.into_iter()
            .filter(|m| {
                !(m.kind == common::api::kustomize_v1::KUSTOMIZATION_KIND
                    && m.name == name
                    && m.namespace == namespace)
            })
            .collect()
    }
}

/// Flux's per-phase Reconciling message (kept on failure, so the condition names the phase that failed).
fn progress(step: &Step, status: &mut KustomizationStatus, message: String) {
    step.conditions(status.conditions.get_or_insert_with(Vec::new))
        .mark_reconciling(reasons::PROGRESSING, &message);
}

fn is_sops_encrypted(obj: &Value) -> bool {
    obj["kind"] == "Secret"
        && obj["apiVersion"] == "v1"
        && obj.get("sops").is_some()
        && !obj["metadata"]["annotations"][common::api::meta::annotations::KUSTOMIZE_DECRYPT]
            .as_str()
            .is_some_and(|v| v.eq_ignore_ascii_case(common::api::meta::annotations::DISABLED_VALUE))
}

impl Reconciler for KustomizationReconciler {
    type Object = Kustomization;
    type Error = KustomizationError;
    const SUMMARY: Summary = Summary {
        scope: &[],
        negative_polarity: &[],
    };

    async fn reconcile(
        &self,
        obj: &Kustomization,
        status: &mut KustomizationStatus,
        step: &mut Step,
    ) -> Result<Success, KustomizationError> {
        let started = Instant::now();
        let namespace = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let requeue = self.config.requeue_dependency;

        // 0. Health check expressions, compiled once per reconcile; as Flux, an invalid one stalls the
        //    Kustomization before anything is fetched or applied.
        let custom_health =
            CustomHealth::new(obj.spec.health_check_exprs.as_deref().unwrap_or_default())
                .map_err(KustomizationError::InvalidHealthCheckExprs)?;

        // 1. Source.
        let artifact = source::artifact(
            &self.client,
            &obj.spec.source_ref,
            &namespace,
            self.config.no_cross_namespace_refs,
            &go_duration(requeue),
        )
        .await
        .map_err(|e| KustomizationError::Source(e, requeue))?;
        let revision = artifact.revision.clone();
        let event_meta = BTreeMap::from([(metadata_key(GROUP, "revision"), revision.clone())]);

        // 2. Dependencies.
        if !obj.spec.depends_on().is_empty() {
            dependencies::check(
                &self.client,
                obj,
                &artifact,
                self.config.additive_cel_dependency_check,
            )
            .await
            .map_err(|e| {
                if e.is_terminal() {
                    KustomizationError::InvalidReadyExpr(e)
                } else {
                    KustomizationError::Dependency(e, requeue)
                }
            })?;
        }

        // 3. Artifact, into a temporary directory removed on every path.
        let timeout = Self::timeout(obj);
        let timeout_text = go_duration(timeout);
        progress(
            step,
            status,
            format!("Fetching manifests for revision {revision} with a timeout of {timeout_text}"),
        );
        let tmp = tempfile::Builder::new()
            .prefix("kustomization-")
            .tempdir()
            .map_err(|e| {
                KustomizationError::Build(BuildError::Other(format!("tmp dir error: {e}")))
            })?;
        match fetch::fetch(
            &self.http,
            &artifact.url,
            &artifact.digest,
            tmp.path(),
            &self.config.fetch,
        )
        .await
        {
            Ok(()) => {}
            Err(FetchError::NotFound(_)) => return Err(KustomizationError::ArtifactGone(requeue)),
            Err(e) => return Err(KustomizationError::Fetch(e)),
        }
        let dir =
            build::resolve_path(tmp.path(), obj.spec.path()).map_err(KustomizationError::Build)?;
        status.last_attempted_revision = Some(revision.clone());
        progress(
            step,
            status,
            format!("Building manifests for revision {revision} with a timeout of {timeout_text}"),
        );

        // 4. Build.
        let client = self.client_for(obj).await?;
        let post = self.post_build(obj).await?;
        let decryptor = decrypt::load(&self.client, obj, self.config.sops_age_secret.as_ref())
            .await
            .map_err(|e| KustomizationError::Build(BuildError::Decrypt(e)))?;
        let root = tmp.path().to_path_buf();
        let spec = obj.spec.clone();
        let built = tokio::task::spawn_blocking(move || {
            build::build(&root, &dir, &spec, &post, decryptor.as_ref())
        })
        .await
        .map_err(|e| KustomizationError::Build(BuildError::Other(e.to_string())))?
        .map_err(KustomizationError::Build)?;
        drop(tmp);
        let mut objects = built.objects;
        build::set_metadata(&mut objects, &obj.spec, &name, &namespace);
        let history_meta = BTreeMap::from([("revision".to_string(), revision.clone())]);
        let mut history = status.history.take().unwrap_or_default();
        let now = step.now;
        let fail = |history: &mut Vec<Snapshot>, reason: &str| {
            upsert_history(
                history,
                &built.digest,
                now,
                started.elapsed(),
                reason,
                history_meta.clone(),
            );
        };

        let old_inventory: Vec<_> = status.inventory_entries().to_vec();
        let allow_empty = obj
            .annotations()
            .get(ALLOW_EMPTY_ANNOTATION)
            .is_some_and(|v| v == common::api::meta::annotations::ENABLED_VALUE);
        if objects.is_empty() && !old_inventory.is_empty() && !allow_empty {
            fail(&mut history, reasons::RECONCILIATION_FAILED);
            status.history = Some(history);
            return Err(KustomizationError::EmptyBuild(old_inventory.len()));
        }
        if let Some(secret) = objects.iter().find(|o| is_sops_encrypted(o)) {
            fail(&mut history, reasons::RECONCILIATION_FAILED);
            status.history = Some(history);
            return Err(KustomizationError::Apply(format!(
                "{} is SOPS encrypted, configuring decryption is required for this secret to be reconciled",
                ObjMeta::of(secret)
            )));
        }

        // 5. Apply.
        progress(
            step,
            status,
            format!("Detecting drift for revision {revision} with a timeout of {timeout_text}"),
        );
        let applier = Applier {
            client: &client,
            resolver: &self.resolver,
            cache: &self.applied,
            owner: format!("{namespace}/{name}"),
            opts: ApplyOptions {
                field_manager: self.config.field_manager.clone(),
                force: obj.spec.force,
                ignore: obj.spec.ignore.clone().unwrap_or_default(),
                wait_timeout: timeout,
                concurrency: self.config.concurrent_ssa,
            },
            health: &custom_health,
        };
        let changes = match applier.apply_all_staged(objects).await {
            Ok(c) => c,
            Err(ApplyError { message, .. }) => {
                fail(&mut history, reasons::RECONCILIATION_FAILED);
                status.history = Some(history);
                return Err(KustomizationError::Apply(message));
            }
        };
        let change_log = format_changes(changes.iter().filter(|c| c.action.changed()));
        let drifted = !change_log.is_empty();
        if drifted {
            step.event_with_metadata(
                Severity::Info,
                reasons::PROGRESSING,
                change_log,
                event_meta.clone(),
            );
        }

        // 6. Inventory and prune.
        let new_inventory: ResourceInventory = inventory::from_changes(&changes);
        let stale = inventory::stale(&old_inventory, &new_inventory);
        status.inventory = Some(new_inventory);
        if obj.spec.prune && !stale.is_empty() {
            let deleted =
                prune::delete_all(&client, &self.resolver, &stale, &name, &namespace).await;
            for c in deleted
                .changes
                .iter()
                .filter(|c| c.action == Action::Deleted)
            {
                self.applied
                    .forget(&format!("{namespace}/{name}"), Some(&c.object.id()));
            }
            if let Some(error) = deleted.error {
                if let Some(inv) = status.inventory.as_mut() {
                    inventory::merge(inv, &deleted.survivors);
                }
                fail(&mut history, reasons::PRUNE_FAILED);
                status.history = Some(history);
                return Err(KustomizationError::Prune(error));
            }
            if !deleted.changes.is_empty() {
                step.event_with_metadata(
                    Severity::Info,
                    reasons::PROGRESSING,
                    format_changes(&deleted.changes),
                    event_meta.clone(),
                );
            }
        }

        // 7. Health.
        let set = self.health_set(&client, obj, &changes).await;
        let list = status.conditions.get_or_insert_with(Vec::new);
        if set.is_empty() {
            step.conditions(list).delete(condition_types::HEALTHY);
        } else {
            let was_healthy = common::conditions::is_true(list, condition_types::HEALTHY);
            let message = format!(
                "Running health checks for revision {revision} with a timeout of {timeout_text}"
            );
            step.conditions(list)
                .mark_reconciling(reasons::PROGRESSING, &message);
            step.conditions(list).mark_unknown(
                condition_types::HEALTHY,
                reasons::PROGRESSING,
                &message,
            );
            // As Flux: the progress is written before the wait, so users see it.
            if let Err(e) = step.write_status(&*status).await {
                fail(&mut history, reasons::HEALTH_CHECK_FAILED);
                status.history = Some(history);
                return Err(KustomizationError::Health(format!(
                    "unable to update the healthy status to progressing: {e}"
                )));
            }
            let list = status.conditions.get_or_insert_with(Vec::new);
            let is_new_revision = status.last_applied_revision.as_deref() != Some(&revision);
            let check_start = Instant::now();
            let opts = WaitOptions {
                timeout,
                interval: self.config.health_interval,
                fail_fast: !self.config.disable_fail_fast,
            };
            match health::wait_for(&client, &self.resolver, &set, &custom_health, opts).await {
                Ok(()) => {
                    let msg = format!(
                        "Health check passed in {}",
                        go_duration(Duration::from_millis(
                            check_start.elapsed().as_millis() as u64
                        ))
                    );
                    if !was_healthy || (is_new_revision && drifted) {
                        step.event_with_metadata(
                            Severity::Info,
                            reasons::PROGRESSING,
                            msg.clone(),
                            event_meta.clone(),
                        );
                    }
                    step.conditions(list).mark_true(
                        condition_types::HEALTHY,
                        reasons::SUCCEEDED,
                        &msg,
                    );
                }
                Err(e) => {
                    step.conditions(list).mark_false(
                        condition_types::HEALTHY,
                        reasons::HEALTH_CHECK_FAILED,
                        &e.to_string(),
                    );
                    fail(&mut history, reasons::HEALTH_CHECK_FAILED);
                    status.history = Some(history);
                    return Err(KustomizationError::Health(format!(
                        "health check failed after {}: {e}",
                        go_duration(Duration::from_millis(
                            check_start.elapsed().as_millis() as u64
                        ))
                    )));
                }
            }
        }

        // 8. Done.
        status.last_applied_revision = Some(revision.clone());
        status.last_applied_origin_revision = artifact
            .metadata
            .as_ref()
            .and_then(|m| m.get("org.opencontainers.image.revision").cloned());
        fail(&mut history, reasons::RECONCILIATION_SUCCEEDED);
        status.history = Some(history);
        let message = format!("Applied revision: {revision}");
        // Ready is ours to set (the runner only fills it in while it is Unknown).
        step.conditions(status.conditions.get_or_insert_with(Vec::new))
            .mark_true(
                condition_types::READY,
                reasons::RECONCILIATION_SUCCEEDED,
                &message,
            );
        Ok(Success::with_reason(
            reasons::RECONCILIATION_SUCCEEDED,
            message,
        ))
    }

    async fn cleanup(&self, obj: &Kustomization) -> Result<(), KustomizationError> {
        let result = finalize::finalize(self, obj).await;
        self.applied.forget(
            &format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
            None,
        );
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn history_upserts_dedups_and_caps() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let mut h = Vec::new();
        for i in 0..7 {
            upsert_history(
                &mut h,
                &format!("sha256:{i}"),
                now,
                Duration::from_secs(1),
                "ReconciliationSucceeded",
                BTreeMap::new(),
            );
        }
        assert_eq!(h.len(), 5);
        assert_eq!(h[0].digest, "sha256:6");
        upsert_history(
            &mut h,
            "sha256:4",
            now,
            Duration::from_secs(1),
            "ReconciliationSucceeded",
            BTreeMap::new(),
        );
        assert_eq!(h[0].digest, "sha256:4");
        assert_eq!(h[0].total_reconciliations, 2);
        assert_eq!(h.len(), 5);
        upsert_history(
            &mut h,
            "sha256:4",
            now,
            Duration::from_secs(1),
            "HealthCheckFailed",
            BTreeMap::new(),
        );
        assert_eq!(h[0].last_reconciled_status, "HealthCheckFailed");
        assert_eq!(h[1].digest, "sha256:4");
    }

    #[test]
    fn errors_carry_flux_reasons_and_kinds() {
        let d = Duration::from_secs(30);
        let denied =
            KustomizationError::Source(SourceError::AccessDenied("GitRepository/a/b".into()), d);
        assert_eq!(denied.reason(), "AccessDenied");
        assert_eq!(denied.kind(), ErrorKind::Stalled);
        let missing = KustomizationError::Source(SourceError::NoArtifact("30s".into()), d);
        assert_eq!(missing.reason(), "ArtifactFailed");
        assert_eq!(missing.kind(), ErrorKind::Waiting(d));
        assert_eq!(
            missing.to_string(),
            "Source artifact not found, retrying in 30s"
        );
        let dep = KustomizationError::Dependency(DependencyError::NotReady("a/b".into()), d);
        assert_eq!(dep.reason(), "DependencyNotReady");
        assert_eq!(dep.kind(), ErrorKind::Waiting(d));
        assert_eq!(dep.to_string(), "dependency 'a/b' is not ready");
        let invalid = KustomizationError::InvalidReadyExpr(DependencyError::InvalidReadyExpr {
            name: "b".into(),
            source: expr::CelError::OutputType {
                expected: "bool".into(),
                got: "dyn".into(),
            },
        });
        assert_eq!(invalid.reason(), "InvalidCELExpression");
        assert_eq!(invalid.kind(), ErrorKind::Stalled);
        assert_eq!(
            common::reconcile::chain_message(&invalid),
            "Reconciliation failed terminally due to configuration error: failed to evaluate dependency b: \
             CEL expression output type mismatch: expected bool, got dyn"
        );
        let exprs = KustomizationError::InvalidHealthCheckExprs(HealthCheckExprsError::Duplicate {
            group_kind: "Widget.example.com".into(),
            index: 1,
        });
        assert_eq!(exprs.reason(), "InvalidCELExpression");
        assert_eq!(exprs.kind(), ErrorKind::Stalled);
        assert_eq!(
            KustomizationError::Health("x".into()).reason(),
            "HealthCheckFailed"
        );
        assert_eq!(
            KustomizationError::Prune("x".into()).reason(),
            "PruneFailed"
        );
        assert_eq!(
            KustomizationError::Build(BuildError::Other("x".into())).reason(),
            "BuildFailed"
        );
        assert_eq!(
            KustomizationError::Build(BuildError::PathNotFound("/x".into())).reason(),
            "ArtifactFailed"
        );
    }
}
