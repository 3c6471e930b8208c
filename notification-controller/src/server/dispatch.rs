//! From queued events to provider posts, in the background.
//!
//! One matcher task takes events from intake's bounded queue, finds the Alerts they match (from an in-memory
//! reflector of Alerts and Providers), and hands each notification to its Provider's own bounded queue. Each
//! Provider has a worker that sends at most `provider_concurrency` notifications at a time, each under the
//! Provider's `spec.timeout` with bounded retries. A Provider that hangs fills only its own queue; further
//! notifications for it are dropped (and reported on the Alert) while intake and other Providers go on.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::api::notification_v1beta3::{Alert, Provider};
use common::cel::Expression;
use common::events::{EventRecorder, FluxEvent, Severity};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, error, info, warn};

use super::matching::{
    RegexCache, Route, SourceMatch, combine_metadata, is_commit_status_provider, labels_match,
    match_sources, message_allowed, route,
};
use crate::notifier::{
    DEFAULT_TIMEOUT, Endpoints, HttpSettings, Notifier, ProviderSettings, Retry, TlsMaterial,
    commit_status_id, mask_secrets,
};
use crate::resources::ResourceResolver;

/// Reason of the Warning recorded on an Alert when a notification could not be sent.
pub const DISPATCH_FAILED_REASON: &str = "NotificationDispatchFailed";

/// Dispatch settings.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Events waiting for matching (intake answers 503 beyond).
    pub queue_capacity: usize,
    /// Notifications waiting per Provider (dropped beyond).
    pub provider_queue_capacity: usize,
    /// Notifications in flight per Provider.
    pub provider_concurrency: usize,
    /// Retries within one notification.
    pub retry: Retry,
    /// The fixed APIs of Telegram and Bitbucket Cloud (the public services unless pointed elsewhere).
    pub endpoints: Endpoints,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            queue_capacity: 4096,
            provider_queue_capacity: 256,
            provider_concurrency: 4,
            retry: Retry::default(),
            endpoints: Endpoints::default(),
        }
    }
}

/// Counters, for tests and the benchmark.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events taken from the queue.
    pub processed: AtomicU64,
    /// Notifications queued for a Provider.
    pub queued: AtomicU64,
    /// Notifications delivered.
    pub delivered: AtomicU64,
    /// Notifications that failed (after retries) or were dropped.
    pub failed: AtomicU64,
}

/// Why a notification was not queued.
enum EnqueueError {
    /// The Alert, Provider or event cannot be dispatched.
    Refused(String),
    /// The Provider's queue is full.
    Dropped(String),
}

impl From<&str> for EnqueueError {
    fn from(message: &str) -> Self {
        EnqueueError::Refused(message.to_owned())
    }
}

impl From<String> for EnqueueError {
    fn from(message: String) -> Self {
        EnqueueError::Refused(message)
    }
}

struct Delivery {
    alert: Arc<Alert>,
    event: FluxEvent,
}

type ProviderKey = (String, String);

/// The matcher and the per-Provider workers.
pub struct Dispatcher {
    alerts: Store<Alert>,
    providers: Store<Provider>,
    resources: Arc<ResourceResolver>,
    recorder: Arc<EventRecorder>,
    no_cross_namespace_refs: bool,
    config: DispatchConfig,
    regexes: RegexCache,
    queues: Mutex<HashMap<ProviderKey, mpsc::Sender<Delivery>>>,
    http: reqwest::Client,
    stats: Stats,
    /// Kubernetes Events being created: bounded so that a flood of failures cannot pile up tasks.
    warnings: Arc<Semaphore>,
    /// Per Alert: when drops were last reported, and how many were not reported since.
    drops: Mutex<HashMap<ProviderKey, (Instant, u64)>>,
}

/// How often drops for one Alert are reported (one Warning and one error line per window).
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Kubernetes Events created concurrently at most; beyond, warnings are logged only.
const MAX_WARNINGS_IN_FLIGHT: usize = 16;

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn involved_object_string(event: &FluxEvent) -> String {
    let o = &event.involved_object;
    format!(
        "{}/{}/{}",
        o.kind.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default()
    )
}

impl Dispatcher {
    /// A dispatcher reading Alerts and Providers from the given stores.
    pub fn new(
        alerts: Store<Alert>,
        providers: Store<Provider>,
        resources: Arc<ResourceResolver>,
        recorder: Arc<EventRecorder>,
        no_cross_namespace_refs: bool,
        config: DispatchConfig,
    ) -> Result<Self, crate::Error> {
        let http = HttpSettings::default()
            .client()
            .map_err(|e| crate::Error::Http(e.to_string()))?;
        Ok(Dispatcher {
            alerts,
            providers,
            resources,
            recorder,
            no_cross_namespace_refs,
            config,
            regexes: RegexCache::default(),
            queues: Mutex::new(HashMap::new()),
            http,
            stats: Stats::default(),
            warnings: Arc::new(Semaphore::new(MAX_WARNINGS_IN_FLIGHT)),
            drops: Mutex::new(HashMap::new()),
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Processes queued events until the queue closes.
    pub async fn run(self: Arc<Self>, mut queue: mpsc::Receiver<FluxEvent>) {
        // Events that arrive before the caches are filled wait in the queue.
        let _ = self.alerts.wait_until_ready().await;
        let _ = self.providers.wait_until_ready().await;
        while let Some(event) = queue.recv().await {
            self.stats.processed.fetch_add(1, Ordering::Relaxed);
            self.handle(event).await;
        }
    }

    /// Whether the Alert is in the dispatcher's cache (with this generation or newer).
    pub fn knows_alert(&self, namespace: &str, name: &str, generation: i64) -> bool {
        self.alerts
            .get(&ObjectRef::new(name).within(namespace))
            .is_some_and(|a| a.metadata.generation.unwrap_or(0) >= generation)
    }

    /// Whether the Provider is in the dispatcher's cache (with this generation or newer).
    pub fn knows_provider(&self, namespace: &str, name: &str, generation: i64) -> bool {
        self.providers
            .get(&ObjectRef::new(name).within(namespace))
            .is_some_and(|p| p.metadata.generation.unwrap_or(0) >= generation)
    }

    /// Stops the worker of a deleted Provider once its queue is drained.
    pub fn forget_provider(&self, namespace: &str, name: &str) {
        self.queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    fn warn_on(&self, alert: &Alert, reason: &'static str, message: String) {
        let Ok(permit) = self.warnings.clone().try_acquire_owned() else {
            debug!(
                reason,
                "too many Kubernetes events in flight, not recording this one"
            );
            return;
        };
        let recorder = self.recorder.clone();
        let reference = alert.object_ref(&());
        tokio::spawn(async move {
            recorder
                .publish(
                    &reference,
                    Severity::Error,
                    reason,
                    &message,
                    BTreeMap::new(),
                )
                .await;
            drop(permit);
        });
    }

    /// Reports a dropped notification: at most once per [`DROP_REPORT_INTERVAL`] and Alert, with the count of
    /// drops since the previous report.
    fn report_drop(&self, alert: &Alert, object: &str, message: &str) {
        let key = (alert.namespace().unwrap_or_default(), alert.name_any());
        let now = Instant::now();
        let unreported = {
            let mut drops = self.drops.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = drops.entry(key).or_insert((now, u64::MAX));
            if entry.1 != u64::MAX && now.duration_since(entry.0) < DROP_REPORT_INTERVAL {
                entry.1 += 1;
                return;
            }
            let unreported = if entry.1 == u64::MAX { 0 } else { entry.1 };
            *entry = (now, 0);
            unreported
        };
        let more = if unreported > 0 {
            format!(" ({unreported} more dropped since the last report)")
        } else {
            String::new()
        };
        error!(alert = %alert.name_any(), error = %message, "failed to dispatch notification{more}");
        self.warn_on(
            alert,
            DISPATCH_FAILED_REASON,
            format!("failed to dispatch notification for {object}: {message}{more}"),
        );
    }

    async fn handle(self: &Arc<Self>, event: FluxEvent) {
        let object = involved_object_string(&event);
        let mut labels: Option<Result<BTreeMap<String, String>, String>> = None;
        let mut matched = Vec::new();
        for alert in self.alerts.state() {
            if alert.spec.suspend == Some(true) {
                continue;
            }
            match match_sources(&event, &alert) {
                SourceMatch::No => continue,
                SourceMatch::Yes => {}
                SourceMatch::NeedsLabels(selectors) => {
                    if labels.is_none() {
                        labels = Some(self.object_labels(&event).await);
                    }
                    match &labels {
                        Some(Ok(found)) => {
                            if !selectors.iter().any(|s| labels_match(s, found)) {
                                continue;
                            }
                        }
                        _ => {
                            error!(object = %object, "error getting the involved object");
                            self.warn_on(
                                &alert,
                                "SourceFetchFailed",
                                format!("error getting source object {object}"),
                            );
                            continue;
                        }
                    }
                }
            }
            let mut invalid = Vec::new();
            let allowed = message_allowed(&alert, &event.message, &self.regexes, &mut invalid);
            for pattern in invalid {
                error!(alert = %alert.name_any(), "{}", pattern.message());
                self.warn_on(&alert, "InvalidConfig", pattern.message());
            }
            if allowed {
                matched.push(alert);
            }
        }
        if matched.is_empty() {
            debug!(object = %object, "discarding event, no alerts found for the involved object");
            return;
        }
        info!(object = %object, message = %event.message, "dispatching event");
        for alert in matched {
            if let Err(failure) = self.enqueue(&event, alert.clone()) {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let message = match failure {
                    EnqueueError::Dropped(message) => {
                        self.report_drop(&alert, &object, &message);
                        continue;
                    }
                    EnqueueError::Refused(message) => message,
                };
                error!(alert = %alert.name_any(), error = %message, "failed to dispatch notification");
                self.warn_on(
                    &alert,
                    DISPATCH_FAILED_REASON,
                    format!("failed to dispatch notification for {object}: {message}"),
                );
            }
        }
    }

    async fn object_labels(&self, event: &FluxEvent) -> Result<BTreeMap<String, String>, String> {
        let o = &event.involved_object;
        let resource = self
            .resources
            .resolve(
                o.api_version.as_deref().unwrap_or_default(),
                o.kind.as_deref().unwrap_or_default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.resources.client().clone(),
            o.namespace.as_deref().unwrap_or_default(),
            &resource,
        );
        let get = api.get_metadata(o.name.as_deref().unwrap_or_default());
        match tokio::time::timeout(Duration::from_secs(15), get).await {
            Ok(Ok(meta)) => Ok(meta.labels().clone()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    fn enqueue(self: &Arc<Self>, event: &FluxEvent, alert: Arc<Alert>) -> Result<(), EnqueueError> {
        let alert_ns = alert.namespace().unwrap_or_default();
        if self.no_cross_namespace_refs
            && event.involved_object.namespace.as_deref() != Some(alert_ns.as_str())
        {
            return Err(format!(
                "discarding event, access denied to cross-namespace sources: alert '{alert_ns}/{}' can't process \
                 event from '{}', cross-namespace references have been blocked",
                alert.name_any(),
                involved_object_string(event)
            )
            .into());
        }
        let provider_name = &alert.spec.provider_ref.name.clone();
        let provider = self
            .providers
            .get(&ObjectRef::new(provider_name).within(&alert_ns))
            .ok_or_else(|| {
                format!(
                    "failed to read provider: providers.notification.toolkit.fluxcd.io \"{provider_name}\" not found"
                )
            })?;
        if provider.spec.suspend == Some(true) {
            return Ok(());
        }
        match route(event, &provider.spec.type_) {
            Route::Send => {}
            Route::SkipCommitStatusUpdate => return Ok(()),
            Route::DropMissingCommit => {
                info!(
                    alert = %format!("{alert_ns}/{}", alert.name_any()),
                    "event dropped for commit status providers due to missing commit metadata key"
                );
                return Ok(());
            }
        }
        if provider.spec.service_account_name.is_some() {
            return Err(
                "spec.serviceAccountName (workload identity) is not supported by this controller"
                    .into(),
            );
        }
        let mut notification = event.clone();
        let (metadata, conflicts) = combine_metadata(event, &alert);
        if !conflicts.is_empty() {
            let keys: Vec<String> = conflicts
                .iter()
                .map(|c| format!("{} ({})", c.key, c.sources.join(", ")))
                .collect();
            const MSG: &str = "metadata key conflicts detected (please refer to the Alert API docs and Flux RFC \
                               0008 for more information)";
            info!(conflicting_keys = ?keys, "warning: {MSG}");
            self.warn_on(&alert, "MetadataAppendFailed", MSG.to_owned());
        }
        if !metadata.is_empty() {
            notification.metadata = metadata;
        }
        let queue = self.queue_for((alert_ns, provider_name.clone()));
        match queue.try_send(Delivery {
            alert,
            event: notification,
        }) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(EnqueueError::Dropped(format!(
                "provider '{provider_name}' has {} notifications waiting, notification dropped",
                self.config.provider_queue_capacity
            ))),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EnqueueError::Refused(
                "the provider's queue is closed".into(),
            )),
        }
    }

    fn queue_for(self: &Arc<Self>, key: ProviderKey) -> mpsc::Sender<Delivery> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queues.get(&key)
            && !queue.is_closed()
        {
            return queue.clone();
        }
        let (tx, rx) = mpsc::channel(self.config.provider_queue_capacity.max(1));
        queues.insert(key, tx.clone());
        tokio::spawn(self.clone().provider_worker(rx));
        tx
    }

    async fn provider_worker(self: Arc<Self>, mut rx: mpsc::Receiver<Delivery>) {
        let slots = Arc::new(Semaphore::new(self.config.provider_concurrency.max(1)));
        while let Some(delivery) = rx.recv().await {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.deliver(delivery).await;
                drop(permit);
            });
        }
    }

    async fn deliver(&self, delivery: Delivery) {
        let Delivery { alert, event } = delivery;
        let object = involved_object_string(&event);
        let result = self.send(&alert, &event).await;
        match result {
            Ok(()) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(message) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                error!(
                    alert = %format!("{}/{}", alert.namespace().unwrap_or_default(), alert.name_any()),
                    error = %message,
                    "failed to send notification"
                );
                self.recorder
                    .publish(
                        &alert.object_ref(&()),
                        Severity::Error,
                        DISPATCH_FAILED_REASON,
                        &format!("failed to send notification for {object}: {message}"),
                        BTreeMap::new(),
                    )
                    .await;
            }
        }
    }

    /// Resolves the Provider and its secrets, then posts under the Provider's timeout. Errors come back with
    /// every secret value masked.
    async fn send(&self, alert: &Alert, event: &FluxEvent) -> Result<(), String> {
        let namespace = alert.namespace().unwrap_or_default();
        let name = &alert.spec.provider_ref.name;
        let provider = self
            .providers
            .get(&ObjectRef::new(name).within(&namespace))
            .ok_or_else(|| {
                format!("failed to read provider: provider '{namespace}/{name}' not found")
            })?;
        let timeout = provider
            .spec
            .timeout
            .as_deref()
            .and_then(|t| common::cli::parse_go_duration(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT);
        let settings = tokio::time::timeout(
            Duration::from_secs(15),
            resolve_provider(self.resources.client(), &provider, event),
        )
        .await
        .map_err(|_| "timed out reading the provider's secrets".to_owned())??;
        let mut settings = ProviderSettings {
            endpoints: self.config.endpoints.clone(),
            ..settings
        };
        if let Some(expr) = provider
            .spec
            .commit_status_expr
            .as_deref()
            .filter(|e| !e.is_empty() && is_commit_status_provider(&provider.spec.type_))
        {
            settings.commit_status = commit_status_from_expr(expr, event, alert, &provider).map_err(|e| {
                format!("failed to evaluate the spec.commitStatusExpr CEL expression for the event: {e}")
            })?;
        }
        let secrets = settings.secrets();
        let mask = |message: String| mask_secrets(&message, &secrets);
        let notifier = Notifier::new(settings).map_err(|e| {
            mask(format!(
                "failed to initialize notifier for provider '{name}': {e}"
            ))
        })?;
        let client = if notifier.http().is_default() {
            self.http.clone()
        } else {
            notifier.http().client().map_err(|e| mask(e.to_string()))?
        };
        match tokio::time::timeout(timeout, notifier.post(&client, event, self.config.retry)).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(mask(format!("postMessage failed: {}", error_chain(&e)))),
            Err(_) => Err(format!(
                "postMessage failed: no answer within the provider timeout ({})",
                humanize(timeout)
            )),
        }
    }
}

fn humanize(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn error_chain(err: &dyn std::error::Error) -> String {
    common::reconcile::chain_message(err)
}

fn secret_string(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
}

fn secret_bytes(secret: &Secret, keys: &[&str]) -> Option<Vec<u8>> {
    keys.iter().find_map(|key| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(*key))
            .map(|v| v.0.clone())
    })
}

async fn get_secret(client: &kube::Client, namespace: &str, name: &str) -> Result<Secret, String> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| format!("failed to get secret '{namespace}/{name}': {e}"))
}

fn tls_from_secret(secret: &Secret) -> Option<TlsMaterial> {
    let ca = secret_bytes(secret, &["ca.crt", "caFile"]);
    let cert = secret_bytes(secret, &["tls.crt", "certFile"]);
    let key = secret_bytes(secret, &["tls.key", "keyFile"]);
    let cert_and_key = cert.zip(key);
    (ca.is_some() || cert_and_key.is_some()).then_some(TlsMaterial { ca, cert_and_key })
}

/// The commit status ID `spec.commitStatusExpr` gives for `event`, with the event, the Alert and the Provider as
/// the variables `event`, `alert` and `provider`, as Flux's `newCommitStatus`.
fn commit_status_from_expr(
    expr: &str,
    event: &FluxEvent,
    alert: &Alert,
    provider: &Provider,
) -> Result<String, String> {
    let expression = Expression::compile_string(expr, &["event", "alert", "provider"])
        .map_err(|e| format!("failed to compile expression: {e}"))?;
    let json = |what: &str, v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| format!("failed to convert {what} to map: {e}"))
    };
    let event = json("event", serde_json::to_value(event))?;
    let alert = json("alert object", serde_json::to_value(alert))?;
    let provider = json("provider object", serde_json::to_value(provider))?;
    expression
        .evaluate_string([
            ("event", &event),
            ("alert", &alert),
            ("provider", &provider),
        ])
        .map_err(|e| e.to_string())
}

/// Everything the Provider's notifier needs: spec fields, then `secretRef` (address, token, username,
/// password, headers, proxy), `proxySecretRef` and `certSecretRef`, as Flux's `createNotifier`.
pub async fn resolve_provider(
    client: &kube::Client,
    provider: &Provider,
    event: &FluxEvent,
) -> Result<ProviderSettings, String> {
    let spec = &provider.spec;
    let namespace = provider.namespace().unwrap_or_default();
    let uid = provider.uid().unwrap_or_default();
    let mut settings = ProviderSettings {
        type_: spec.type_.clone(),
        address: spec.address.clone().unwrap_or_default(),
        channel: spec.channel.clone().unwrap_or_default(),
        username: spec.username.clone().unwrap_or_default(),
        commit_status: if is_commit_status_provider(&spec.type_) {
            commit_status_id(&uid, event)
        } else {
            String::new()
        },
        uid,
        http: HttpSettings {
            proxy: spec.proxy.clone().filter(|p| !p.is_empty()),
            tls: None,
        },
        ..Default::default()
    };
    let mut secret_ref = None;
    if let Some(reference) = &spec.secret_ref {
        let secret = get_secret(client, &namespace, &reference.name).await?;
        if let Some(address) = secret_string(&secret, "address") {
            if address.len() > 2048 {
                return Err(
                    "invalid address in secret: address exceeds maximum length of 2048 bytes"
                        .into(),
                );
            }
            settings.address = address.trim().to_owned();
        }
        if let Some(proxy) = secret_string(&secret, "proxy") {
            warn!(
                "warning: specifying proxy with 'proxy' key in the referenced secret is deprecated, use spec.proxySecretRef with 'address' key instead"
            );
            settings.http.proxy = Some(proxy.trim().to_owned());
        }
        if let Some(headers) = secret_string(&secret, "headers") {
            settings.headers = serde_saphyr::from_str::<BTreeMap<String, String>>(&headers)
                .map_err(|_| {
                    "failed to read headers from secret: not a map of strings".to_owned()
                })?;
        }
        if let Some(token) = secret_string(&secret, "token") {
            settings.token = token.trim().to_owned();
        }
        if let (Some(user), Some(password)) = (
            secret_string(&secret, "username"),
            secret_string(&secret, "password"),
        ) {
            settings.username = user;
            settings.password = password;
        }
        secret_ref = Some(secret);
    }
    if let Some(reference) = &spec.proxy_secret_ref {
        let secret = get_secret(client, &namespace, &reference.name).await?;
        let address = secret_string(&secret, "address").ok_or_else(|| {
            format!(
                "failed to get proxy URL: secret '{namespace}/{}' has no 'address'",
                reference.name
            )
        })?;
        let mut url = url::Url::parse(address.trim())
            .map_err(|_| "failed to get proxy URL: invalid address".to_owned())?;
        if let Some(user) = secret_string(&secret, "username") {
            let _ = url.set_username(&user);
            let _ = url.set_password(secret_string(&secret, "password").as_deref());
        }
        settings.http.proxy = Some(url.to_string());
    }
    if let Some(reference) = &spec.cert_secret_ref {
        let secret = get_secret(client, &namespace, &reference.name).await?;
        settings.http.tls = Some(tls_from_secret(&secret).ok_or_else(|| {
            format!(
                "failed to get TLS config: secret '{namespace}/{}' has none of ca.crt, tls.crt and tls.key",
                reference.name
            )
        })?);
    } else if is_commit_status_provider(&spec.type_)
        && let Some(secret) = &secret_ref
        && secret_bytes(secret, &["ca.crt", "caFile"]).is_some()
    {
        settings.http.tls = tls_from_secret(secret);
    }
    Ok(settings)
}
