//! Event recording: Kubernetes Events, and Flux events for the notification-controller.
//!
//! One [`EventRecorder`] per controller does both, as `fluxcd/pkg/runtime/events` does:
//!
//! 1. a Kubernetes Event (`events.k8s.io/v1`, through [`kube::runtime::events::Recorder`]) with the controller's
//!    name (e.g. `source-controller`) as reporting controller: `Normal` for [`Severity::Info`] and
//!    [`Severity::Trace`], `Warning` for [`Severity::Error`];
//! 2. when `--events-addr` is set, a [`FluxEvent`] JSON POSTed to that address (the notification-controller's
//!    event receiver), except for [`Severity::Trace`]. Delivery runs in the background: connection errors, timeouts
//!    and 5xx answers are retried a few times with exponential backoff ([`RetryConfig`]); a 429 means the receiver
//!    already has the event (it deduplicates) and counts as delivered; other answers are not retried.
//!
//! Messages have URL credentials masked ([`crate::telemetry::mask_url_credentials`]) and are trimmed
//! (Kubernetes notes to [`KUBE_NOTE_LIMIT`] bytes, Flux events to [`MESSAGE_LIMIT`] characters).
//!
//! Metadata keys are prefixed with the API group of the object's kind, as Flux controllers do:
//! `metadata_key("source.toolkit.fluxcd.io", META_REVISION_KEY)` is `source.toolkit.fluxcd.io/revision`.
//! [`EventRecorder::publish_for`] also copies the object's `event.toolkit.fluxcd.io/*` annotations into the
//! metadata.
//!
//! ```no_run
//! # async fn run(client: kube::Client, args: common::cli::RuntimeArgs, repo: k8s_openapi::api::core::v1::ConfigMap) -> Result<(), common::events::EventError> {
//! use std::collections::BTreeMap;
//! use common::events::{EventRecorder, Severity, META_REVISION_KEY, metadata_key};
//!
//! let recorder = EventRecorder::new("source-controller", Some(client), args.events_addr())?;
//! let metadata = BTreeMap::from([(
//!     metadata_key("source.toolkit.fluxcd.io", META_REVISION_KEY),
//!     "main@sha1:0123abcd".to_owned(),
//! )]);
//! recorder
//!     .publish_for(&repo, Severity::Info, "NewArtifact", "stored artifact for commit '0123abcd'", metadata)
//!     .await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::telemetry::mask_url_credentials;

/// The longest Flux event message sent to the notification-controller, in characters (Flux's limit).
pub const MESSAGE_LIMIT: usize = 39_000;
/// The longest Kubernetes Event note, in bytes (the API server rejects longer ones).
pub const KUBE_NOTE_LIMIT: usize = 1024;
/// The longest Kubernetes Event reason, in bytes.
pub const KUBE_REASON_LIMIT: usize = 128;

/// The prefix of object annotations copied into event metadata (`event.toolkit.fluxcd.io/`).
pub const EVENT_ANNOTATION_PREFIX: &str = "event.toolkit.fluxcd.io/";
/// Metadata key (after the group prefix) of the revision an event is about.
pub const META_REVISION_KEY: &str = "revision";
/// Metadata key of the revision of the source a revision was built from.
pub const META_ORIGIN_REVISION_KEY: &str = "originRevision";
/// Metadata key of an artifact checksum.
pub const META_CHECKSUM_KEY: &str = "checksum";
/// Metadata key of an artifact digest.
pub const META_DIGEST_KEY: &str = "digest";
/// Metadata key of a token that groups events (e.g. one per apply).
pub const META_TOKEN_KEY: &str = "token";
/// Metadata key of a Git commit.
pub const META_COMMIT_KEY: &str = "commit";
/// Metadata key telling the notification-controller to update a commit status.
pub const META_COMMIT_STATUS_KEY: &str = "commit_status";
/// The value of [`META_COMMIT_STATUS_KEY`] that requests a commit status update.
pub const META_COMMIT_STATUS_UPDATE_VALUE: &str = "update";

/// `group/key`, the form Flux controllers give event metadata keys.
pub fn metadata_key(group: &str, key: &str) -> String {
    format!("{group}/{key}")
}

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Detail for debugging: a `Normal` Kubernetes Event only, never sent to the notification-controller.
    Trace,
    /// Something happened as expected (`Normal`).
    Info,
    /// Something failed (`Warning`).
    Error,
}

impl Severity {
    /// Flux's severity string: `trace`, `info` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Trace => "trace",
            Severity::Info => "info",
            Severity::Error => "error",
        }
    }

    /// The Kubernetes Event type: `Warning` for errors, `Normal` otherwise.
    pub fn event_type(self) -> EventType {
        match self {
            Severity::Error => EventType::Warning,
            Severity::Trace | Severity::Info => EventType::Normal,
        }
    }
}

/// The event a controller POSTs to the notification-controller (Flux's `event.toolkit.fluxcd.io/v1beta1` Event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxEvent {
    /// The object the event is about.
    pub involved_object: ObjectReference,
    /// `info` or `error`.
    pub severity: Severity,
    /// When the event was recorded, RFC 3339 in UTC with second precision (`2006-01-02T15:04:05Z`).
    pub timestamp: String,
    /// What happened, for humans.
    pub message: String,
    /// Why, for machines (`PascalCase`, e.g. `NewArtifact`).
    pub reason: String,
    /// Extra data: prefixed keys such as `source.toolkit.fluxcd.io/revision`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The controller that emitted the event, e.g. `source-controller`.
    pub reporting_controller: String,
    /// The controller instance (pod name) that emitted the event.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reporting_instance: String,
}

/// An event could not be built or delivered.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// `--events-addr` is not an absolute http(s) URL.
    #[error("invalid events address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address, with credentials masked.
        addr: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The object reference lacks a field the notification-controller needs.
    #[error("event object has no {0}")]
    IncompleteObject(&'static str),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The receiver could not be reached or timed out.
    #[error("posting event: {0}")]
    Http(#[source] reqwest::Error),
    /// The receiver answered with an error status.
    #[error("posting event: receiver answered {0}")]
    Status(reqwest::StatusCode),
    /// Every attempt failed; the last error is the source.
    #[error("posting event failed after {attempts} attempts: {last}")]
    GaveUp {
        /// How many requests were made.
        attempts: u32,
        /// The error of the last attempt.
        #[source]
        last: Box<EventError>,
    },
}

/// Retries of event delivery to the notification-controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Requests made at most, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the second attempt; doubled after each further failure.
    pub initial_backoff: Duration,
    /// The cap on the wait between attempts.
    pub max_backoff: Duration,
    /// The timeout of each request.
    pub timeout: Duration,
}

impl Default for RetryConfig {
    /// 4 attempts, 500ms then 1s then 2s apart, 5s per request (Flux's timeout): at most ~24s in the background.
    fn default() -> Self {
        RetryConfig {
            attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone)]
struct Webhook {
    url: reqwest::Url,
    client: reqwest::Client,
    retry: RetryConfig,
}

impl Webhook {
    fn new(addr: &str, retry: RetryConfig) -> Result<Self, EventError> {
        let invalid = |reason: String| EventError::InvalidAddress {
            addr: mask_url_credentials(addr),
            reason,
        };
        let url = reqwest::Url::parse(addr).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("scheme must be http or https".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(retry.timeout)
            .build()
            .map_err(EventError::Client)?;
        Ok(Webhook { url, client, retry })
    }

    async fn post(&self, event: &FluxEvent) -> Result<(), EventError> {
        let attempts = self.retry.attempts.max(1);
        let mut backoff = self.retry.initial_backoff;
        let mut attempt = 1;
        loop {
            let error = match self.client.post(self.url.clone()).json(event).send().await {
                Ok(response) => {
                    let status = response.status();
                    // 429: the notification-controller already has this event.
                    if status.is_success() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        return Ok(());
                    }
                    if !status.is_server_error() || status == reqwest::StatusCode::NOT_IMPLEMENTED {
                        return Err(EventError::Status(status));
                    }
                    EventError::Status(status)
                }
                // The URL may carry credentials: keep it out of the error.
                Err(error) => EventError::Http(error.without_url()),
            };
            if attempt >= attempts {
                return Err(EventError::GaveUp {
                    attempts: attempt,
                    last: Box::new(error),
                });
            }
            tracing::debug!(%error, attempt, "posting event failed, retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
            attempt += 1;
        }
    }
}

/// Records events as Kubernetes Events and, with an events address, as Flux events; see the module docs.
#[derive(Clone)]
pub struct EventRecorder {
    controller: String,
    instance: String,
    client: Option<kube::Client>,
    kube: Option<Recorder>,
    webhook: Option<Arc<Webhook>>,
    kube_timeout: Duration,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .field("kube", &self.kube.is_some())
            .field(
                "webhook",
                &self
                    .webhook
                    .as_ref()
                    .map(|w| mask_url_credentials(w.url.as_str())),
            )
            .finish()
    }
}

impl EventRecorder {
    /// A recorder for `controller` (e.g. `source-controller`). With `client`, it creates Kubernetes Events; with
    /// `events_addr` (`--events-addr`), it posts Flux events there. The instance is the pod's host name.
    pub fn new(
        controller: &str,
        client: Option<kube::Client>,
        events_addr: Option<&str>,
    ) -> Result<Self, EventError> {
        let instance = hostname();
        let kube = client
            .clone()
            .map(|client| kube_recorder(client, controller, &instance));
        let webhook = events_addr
            .filter(|a| !a.is_empty())
            .map(|addr| Webhook::new(addr, RetryConfig::default()).map(Arc::new))
            .transpose()?;
        Ok(EventRecorder {
            controller: controller.to_owned(),
            instance,
            client,
            kube,
            webhook,
            kube_timeout: Duration::from_secs(5),
        })
    }

    /// The same recorder with other retries for the notification-controller.
    pub fn with_retry(mut self, retry: RetryConfig) -> Result<Self, EventError> {
        if let Some(webhook) = &self.webhook {
            self.webhook = Some(Arc::new(Webhook::new(webhook.url.as_str(), retry)?));
        }
        Ok(self)
    }

    /// The same recorder reporting as `instance` instead of the host name.
    pub fn with_instance(mut self, instance: &str) -> Self {
        instance.clone_into(&mut self.instance);
        self.kube = self
            .client
            .clone()
            .map(|client| kube_recorder(client, &self.controller, &self.instance));
        self
    }

    /// The reporting controller name.
    pub fn controller(&self) -> &str {
        &self.controller
    }

    /// Records an event about `object` (its reference must carry kind, namespace and name for the Flux event;
    /// apiVersion, uid and resourceVersion are passed through).
    ///
    /// Never fails and never waits for the notification-controller: the Kubernetes Event is created (bounded by
    /// a 5s timeout), the Flux event is handed to a background task, and failures are logged. The returned
    /// handle, when a Flux event was sent, resolves to the delivery result; callers may drop it.
    pub async fn publish(
        &self,
        object: &ObjectReference,
        severity: Severity,
        reason: &str,
        message: &str,
        metadata: BTreeMap<String, String>,
    ) -> Option<JoinHandle<Result<(), EventError>>> {
        let message = mask_url_credentials(message);
        if let Some(kube) = &self.kube {
            let note = truncate_bytes(&message, KUBE_NOTE_LIMIT);
            let event = KubeEvent {
                type_: severity.event_type(),
                reason: truncate_bytes(reason, KUBE_REASON_LIMIT),
                action: kube_action(&note),
                note: Some(note),
                secondary: None,
            };
            match tokio::time::timeout(self.kube_timeout, kube.publish(&event, object)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, reason, "failed to create Kubernetes event")
                }
                Err(_) => tracing::warn!(reason, "timed out creating Kubernetes event"),
            }
        }
        if severity == Severity::Trace {
            return None;
        }
        let webhook = self.webhook.clone()?;
        let event = match self.flux_event(object, severity, reason, &message, metadata) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, reason, "cannot send event to the notification-controller");
                return None;
            }
        };
        Some(tokio::spawn(async move {
            let result = webhook.post(&event).await;
            if let Err(error) = &result {
                tracing::warn!(%error, reason = %event.reason, "failed to send event to the notification-controller");
            }
            result
        }))
    }

    /// [`Self::publish`] about a Kubernetes object: builds its reference (with `resourceVersion`) and adds its
    /// `event.toolkit.fluxcd.io/*` annotations to `metadata`.
    pub async fn publish_for<K>(
        &self,
        object: &K,
        severity: Severity,
        reason: &str,
        message: &str,
        metadata: BTreeMap<String, String>,
    ) -> Option<JoinHandle<Result<(), EventError>>>
    where
        K: Resource<DynamicType = ()>,
    {
        let mut reference = object.object_ref(&());
        reference.resource_version = object.meta().resource_version.clone();
        let metadata = with_event_annotations(metadata, object.meta().annotations.as_ref());
        self.publish(&reference, severity, reason, message, metadata)
            .await
    }

    /// The Flux event [`Self::publish`] sends: credentials masked in message and metadata, message trimmed to
    /// [`MESSAGE_LIMIT`], timestamped now.
    pub fn flux_event(
        &self,
        object: &ObjectReference,
        severity: Severity,
        reason: &str,
        message: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<FluxEvent, EventError> {
        let non_empty = |field: &Option<String>| field.as_deref().is_some_and(|v| !v.is_empty());
        if !non_empty(&object.kind) {
            return Err(EventError::IncompleteObject("kind"));
        }
        if !non_empty(&object.name) {
            return Err(EventError::IncompleteObject("name"));
        }
        if !non_empty(&object.namespace) {
            return Err(EventError::IncompleteObject("namespace"));
        }
        let timestamp = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        Ok(FluxEvent {
            involved_object: object.clone(),
            severity,
            timestamp,
            message: truncate_chars(&mask_url_credentials(message), MESSAGE_LIMIT),
            reason: reason.to_owned(),
            metadata: metadata
                .into_iter()
                .map(|(k, v)| (k, mask_url_credentials(&v)))
                .collect(),
            reporting_controller: self.controller.clone(),
            reporting_instance: self.instance.clone(),
        })
    }
}

fn kube_recorder(client: kube::Client, controller: &str, instance: &str) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: controller.to_owned(),
            instance: Some(instance.to_owned()),
        },
    )
}

/// `metadata` plus the `event.toolkit.fluxcd.io/*` entries of `annotations` (which win on conflict, as in Flux).
pub fn with_event_annotations(
    mut metadata: BTreeMap<String, String>,
    annotations: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    for (key, value) in annotations.into_iter().flatten() {
        if key.starts_with(EVENT_ANNOTATION_PREFIX) {
            metadata.insert(key.clone(), value.clone());
        }
    }
    metadata
}

/// The Kubernetes Event action. kube's recorder folds events with the same type, reason and action into one
/// series and keeps the first note, so the action carries a hash of the note: a new message makes a new Event,
/// a repeated one bumps the series count (as client-go's event correlator does).
fn kube_action(note: &str) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    note.hash(&mut hasher);
    format!("Reconcile/{:016x}", hasher.finish())
}

const ELLIPSIS: &str = "…";

/// `s` cut to at most `limit` bytes on a character boundary, ending in `…` when cut.
pub fn truncate_bytes(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_owned();
    }
    let mut end = limit.saturating_sub(ELLIPSIS.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &s[..end])
}

/// `s` cut to at most `limit` characters, ending in `…` when cut.
pub fn truncate_chars(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        return s.to_owned();
    }
    let kept: String = s.chars().take(limit.saturating_sub(1)).collect();
    format!("{kept}{ELLIPSIS}")
}

/// The pod (host) name: `POD_NAME`, `HOSTNAME`, or `/etc/hostname`, else `unknown`.
pub(crate) fn hostname() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_ref() -> ObjectReference {
        ObjectReference {
            api_version: Some("source.toolkit.fluxcd.io/v1".into()),
            kind: Some("GitRepository".into()),
            name: Some("podinfo".into()),
            namespace: Some("flux-system".into()),
            uid: Some("cc4d0095-83f4-4f08-98f2-d2e9f3731fb9".into()),
            resource_version: Some("56921".into()),
            field_path: None,
        }
    }

    fn recorder() -> EventRecorder {
        EventRecorder::new("source-controller", None, Some("http://127.0.0.1:1/"))
            .unwrap()
            .with_instance("source-controller-7c7b47f5f-8bhrp")
    }

    #[test]
    fn flux_event_has_flux_json_shape() {
        let metadata = BTreeMap::from([(
            metadata_key("source.toolkit.fluxcd.io", META_REVISION_KEY),
            "main@sha1:731f7ead".to_owned(),
        )]);
        let event = recorder()
            .flux_event(
                &repo_ref(),
                Severity::Info,
                "NewArtifact",
                "stored artifact",
                metadata,
            )
            .unwrap();
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json["involvedObject"],
            serde_json::json!({
                "kind": "GitRepository",
                "namespace": "flux-system",
                "name": "podinfo",
                "uid": "cc4d0095-83f4-4f08-98f2-d2e9f3731fb9",
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "resourceVersion": "56921",
            })
        );
        assert_eq!(json["severity"], "info");
        assert_eq!(json["reason"], "NewArtifact");
        assert_eq!(json["message"], "stored artifact");
        assert_eq!(
            json["metadata"]["source.toolkit.fluxcd.io/revision"],
            "main@sha1:731f7ead"
        );
        assert_eq!(json["reportingController"], "source-controller");
        assert_eq!(
            json["reportingInstance"],
            "source-controller-7c7b47f5f-8bhrp"
        );
        let ts = json["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2006-01-02T15:04:05Z".len(), "{ts}");
        assert!(
            ts.ends_with('Z') && ts.parse::<jiff::Timestamp>().is_ok(),
            "{ts}"
        );
        // Round trip: the notification-controller reads the same type.
        let back: FluxEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn empty_metadata_is_omitted() {
        let event = recorder()
            .flux_event(
                &repo_ref(),
                Severity::Error,
                "Failed",
                "boom",
                BTreeMap::new(),
            )
            .unwrap();
        let json = serde_json::to_value(&event).unwrap();
        assert!(json.get("metadata").is_none());
        assert_eq!(json["severity"], "error");
    }

    #[test]
    fn flux_event_requires_kind_name_namespace() {
        for (field, clear) in [
            (
                "kind",
                (|r: &mut ObjectReference| r.kind = None) as fn(&mut ObjectReference),
            ),
            ("name", |r| r.name = Some(String::new())),
            ("namespace", |r| r.namespace = None),
        ] {
            let mut reference = repo_ref();
            clear(&mut reference);
            let err = recorder()
                .flux_event(&reference, Severity::Info, "R", "m", BTreeMap::new())
                .unwrap_err();
            assert!(
                matches!(err, EventError::IncompleteObject(f) if f == field),
                "{err}"
            );
        }
    }

    #[test]
    fn credentials_are_masked_and_messages_trimmed() {
        let long = format!(
            "fetch https://user:tok3n@github.com/org/repo failed: {}",
            "x".repeat(50_000)
        );
        let metadata = BTreeMap::from([("k".to_owned(), "https://a:b@h/".to_owned())]);
        let event = recorder()
            .flux_event(
                &repo_ref(),
                Severity::Error,
                "GitOperationFailed",
                &long,
                metadata,
            )
            .unwrap();
        assert!(!event.message.contains("tok3n"));
        assert!(
            event
                .message
                .starts_with("fetch https://***@github.com/org/repo failed: ")
        );
        assert_eq!(event.message.chars().count(), MESSAGE_LIMIT);
        assert!(event.message.ends_with('…'));
        assert_eq!(event.metadata["k"], "https://***@h/");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_bytes("short", 10), "short");
        let cut = truncate_bytes(&"é".repeat(1000), KUBE_NOTE_LIMIT);
        assert!(cut.len() <= KUBE_NOTE_LIMIT && cut.ends_with('…'));
        assert_eq!(truncate_chars("ééé", 3), "ééé");
        assert_eq!(truncate_chars("éééé", 3), "éé…");
    }

    #[test]
    fn event_annotations_are_copied_into_metadata() {
        let annotations = BTreeMap::from([
            ("event.toolkit.fluxcd.io/env".to_owned(), "prod".to_owned()),
            (
                "kubectl.kubernetes.io/last-applied".to_owned(),
                "{}".to_owned(),
            ),
        ]);
        let metadata = with_event_annotations(
            BTreeMap::from([("a/revision".to_owned(), "r".to_owned())]),
            Some(&annotations),
        );
        assert_eq!(
            metadata,
            BTreeMap::from([
                ("a/revision".to_owned(), "r".to_owned()),
                ("event.toolkit.fluxcd.io/env".to_owned(), "prod".to_owned()),
            ])
        );
    }

    #[test]
    fn severities_map_to_flux_and_kubernetes() {
        assert_eq!(Severity::Info.as_str(), "info");
        assert_eq!(Severity::Error.event_type(), EventType::Warning);
        assert_eq!(Severity::Trace.event_type(), EventType::Normal);
        assert_eq!(serde_json::to_value(Severity::Error).unwrap(), "error");
    }

    #[test]
    fn kube_action_distinguishes_messages() {
        assert_eq!(kube_action("a"), kube_action("a"));
        assert_ne!(kube_action("a"), kube_action("b"));
        assert!(kube_action("a").len() <= 128);
    }

    #[test]
    fn events_addr_must_be_http() {
        for bad in ["not a url", "ftp://host/", "/relative"] {
            assert!(
                EventRecorder::new("c", None, Some(bad)).is_err(),
                "{bad} was accepted"
            );
        }
        let err = EventRecorder::new("c", None, Some("ftp://u:secret@h/")).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(EventRecorder::new("c", None, None).is_ok());
        assert!(EventRecorder::new("c", None, Some("")).is_ok());
    }
}
