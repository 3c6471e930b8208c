//! Event intake: every controller POSTs its Flux events here. The handler validates, cleans the metadata,
//! drops duplicates (429) and hands the event to the dispatcher's bounded queue (202). Matching Alerts and
//! talking to providers happen in the background, so a slow provider never slows intake.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use common::events::{
    FluxEvent, META_CHECKSUM_KEY, META_DIGEST_KEY, META_ORIGIN_REVISION_KEY, META_REVISION_KEY,
    META_TOKEN_KEY,
};
use http::StatusCode;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::ratelimit::RateLimiter;
use super::{BodyError, read_body};

/// The API group of Flux events: metadata keys with this prefix come from object annotations.
pub const EVENT_GROUP: &str = "event.toolkit.fluxcd.io";

/// Why an event was refused. The response body says it; nothing else is written.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The body is too large (413), too slow or broken (400).
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The body is not a Flux event.
    #[error("decoding the request body failed: {0}")]
    Decode(#[from] serde_json::Error),
    /// The event is well-formed JSON but not valid.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// Only POST is served.
    #[error("method not allowed, use POST")]
    Method,
    /// The dispatch queue is full: the sender should retry (its recorder retries 5xx).
    #[error("event queue is full, try again later")]
    QueueFull,
    /// The controller is shutting down.
    #[error("event server is shutting down")]
    Closed,
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let status = match &self {
            IntakeError::Body(BodyError::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            IntakeError::Body(BodyError::Timeout) => StatusCode::REQUEST_TIMEOUT,
            IntakeError::Body(BodyError::Read(_))
            | IntakeError::Decode(_)
            | IntakeError::Invalid(_) => StatusCode::BAD_REQUEST,
            IntakeError::Method => StatusCode::METHOD_NOT_ALLOWED,
            IntakeError::QueueFull | IntakeError::Closed => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "event refused");
        } else {
            tracing::debug!(error = %self, "event refused");
        }
        (status, self.to_string()).into_response()
    }
}

/// What the intake handler shares.
#[derive(Debug)]
pub struct Intake {
    limiter: RateLimiter,
    queue: mpsc::Sender<FluxEvent>,
}

impl Intake {
    /// Intake deduplicating with `limiter` and queueing on `queue`.
    pub fn new(limiter: RateLimiter, queue: mpsc::Sender<FluxEvent>) -> Self {
        Intake { limiter, queue }
    }

    /// The rate limiter (for the sweeper).
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

/// The event router: every path, like Flux's mux on `/`.
pub fn router(intake: Arc<Intake>) -> Router {
    Router::new().fallback(handle_event).with_state(intake)
}

async fn handle_event(
    State(intake): State<Arc<Intake>>,
    request: Request,
) -> Result<StatusCode, IntakeError> {
    if request.method() != http::Method::POST {
        return Err(IntakeError::Method);
    }
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body).await?;
    let mut event: FluxEvent = serde_json::from_slice(&body)?;
    validate(&event)?;
    cleanup_metadata(&mut event);
    let key = event_key(&event);
    if !intake.limiter.allow(&key, Instant::now()) {
        tracing::debug!(
            kind = event.involved_object.kind.as_deref().unwrap_or_default(),
            name = event.involved_object.name.as_deref().unwrap_or_default(),
            namespace = event
                .involved_object
                .namespace
                .as_deref()
                .unwrap_or_default(),
            "Discarding event, rate limiting duplicate events"
        );
        return Ok(StatusCode::TOO_MANY_REQUESTS);
    }
    exclude_internal_metadata(&mut event);
    match intake.queue.try_send(event) {
        Ok(()) => Ok(StatusCode::ACCEPTED),
        Err(mpsc::error::TrySendError::Full(_)) => {
            // Not queued: the sender's retry must not be taken for a duplicate.
            intake.limiter.forget(&key);
            Err(IntakeError::QueueFull)
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(IntakeError::Closed),
    }
}

/// What Go's decoder would refuse beyond JSON syntax: a timestamp that is not RFC 3339.
fn validate(event: &FluxEvent) -> Result<(), IntakeError> {
    if !event.timestamp.is_empty() && event.timestamp.parse::<jiff::Timestamp>().is_err() {
        return Err(IntakeError::Invalid(format!(
            "timestamp {:?} is not an RFC 3339 time",
            event.timestamp
        )));
    }
    Ok(())
}

/// The API group of the involved object (`source.toolkit.fluxcd.io` for `source.toolkit.fluxcd.io/v1`).
pub fn object_group(event: &FluxEvent) -> &str {
    match event.involved_object.api_version.as_deref() {
        Some(av) => av.rsplit_once('/').map_or("", |(group, _)| group),
        None => "",
    }
}

/// Keeps only metadata prefixed with the event group or the object's group, minus checksum and digest.
pub fn cleanup_metadata(event: &mut FluxEvent) {
    let event_prefix = format!("{EVENT_GROUP}/");
    let object_prefix = format!("{}/", object_group(event));
    let excluded = [
        format!("{object_prefix}{META_CHECKSUM_KEY}"),
        format!("{object_prefix}{META_DIGEST_KEY}"),
    ];
    event.metadata.retain(|key, _| {
        !excluded.iter().any(|x| x.eq_ignore_ascii_case(key))
            && (key.starts_with(&event_prefix) || key.starts_with(&object_prefix))
    });
}

/// Removes the metadata used only for deduplication (the token).
pub fn exclude_internal_metadata(event: &mut FluxEvent) {
    let token_key = format!("{}/{META_TOKEN_KEY}", object_group(event));
    event.metadata.remove(&token_key);
}

/// The deduplication key: sha256 over name, namespace, kind, message, and the origin revision, revision and
/// token metadata when present (Flux's `eventKeyFunc`).
pub fn event_key(event: &FluxEvent) -> [u8; 32] {
    let o = &event.involved_object;
    let mut parts = vec![
        "event".to_owned(),
        format!("name={}", o.name.as_deref().unwrap_or_default()),
        format!("namespace={}", o.namespace.as_deref().unwrap_or_default()),
        format!("kind={}", o.kind.as_deref().unwrap_or_default()),
        format!("message={}", event.message),
    ];
    let group = object_group(event);
    for (label, key) in [
        ("originRevision", META_ORIGIN_REVISION_KEY),
        ("revision", META_REVISION_KEY),
        ("token", META_TOKEN_KEY),
    ] {
        if let Some(value) = event.metadata.get(&format!("{group}/{key}")) {
            parts.push(format!("{label}={value}"));
        }
    }
    Sha256::digest(parts.join("/").as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    fn event_json(message: &str) -> serde_json::Value {
        serde_json::json!({
            "involvedObject": {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "name": "podinfo",
                "namespace": "flux-system",
            },
            "severity": "info",
            "timestamp": "2026-11-21T14:00:00Z",
            "message": message,
            "reason": "NewArtifact",
            "metadata": {
                "source.toolkit.fluxcd.io/revision": "main@sha1:abc",
                "source.toolkit.fluxcd.io/checksum": "deadbeef",
                "source.toolkit.fluxcd.io/token": "t1",
                "event.toolkit.fluxcd.io/env": "prod",
                "kubectl.kubernetes.io/other": "dropped",
            },
            "reportingController": "source-controller",
        })
    }

    fn app(capacity: usize) -> (Router, mpsc::Receiver<FluxEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        let intake = Arc::new(Intake::new(RateLimiter::new(Duration::from_secs(300)), tx));
        (router(intake), rx)
    }

    async fn post(app: &Router, body: impl Into<Body>) -> (StatusCode, String) {
        let response = app
            .clone()
            .oneshot(
                http::Request::post("/")
                    .header("content-type", "application/json")
                    .body(body.into())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn accepts_cleans_and_deduplicates() {
        let (app, mut rx) = app(8);
        let body = event_json("stored artifact").to_string();
        assert_eq!(post(&app, body.clone()).await.0, StatusCode::ACCEPTED);
        assert_eq!(post(&app, body).await.0, StatusCode::TOO_MANY_REQUESTS);
        let other = event_json("another message").to_string();
        assert_eq!(post(&app, other).await.0, StatusCode::ACCEPTED);
        let event = rx.recv().await.unwrap();
        assert_eq!(
            event.metadata,
            BTreeMap::from([
                ("event.toolkit.fluxcd.io/env".to_owned(), "prod".to_owned()),
                (
                    "source.toolkit.fluxcd.io/revision".to_owned(),
                    "main@sha1:abc".to_owned()
                ),
            ]),
            "checksum, token and foreign keys removed"
        );
    }

    #[tokio::test]
    async fn token_and_revision_are_part_of_the_key() {
        let (app, _rx) = app(8);
        let mut a = event_json("applied");
        assert_eq!(post(&app, a.to_string()).await.0, StatusCode::ACCEPTED);
        a["metadata"]["source.toolkit.fluxcd.io/token"] = "t2".into();
        assert_eq!(post(&app, a.to_string()).await.0, StatusCode::ACCEPTED);
        a["metadata"]["source.toolkit.fluxcd.io/revision"] = "main@sha1:def".into();
        assert_eq!(post(&app, a.to_string()).await.0, StatusCode::ACCEPTED);
        assert_eq!(
            post(&app, a.to_string()).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[tokio::test]
    async fn refuses_bad_requests_with_a_reason() {
        let (app, _rx) = app(8);
        let (status, body) = post(&app, "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body.starts_with("decoding the request body failed"),
            "{body}"
        );
        let (status, body) = post(&app, r#"{"involvedObject": {}}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("missing field"), "{body}");
        let mut bad_time = event_json("x");
        bad_time["timestamp"] = "yesterday".into();
        let (status, body) = post(&app, bad_time.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("RFC 3339"), "{body}");
        let huge = vec![b' '; super::super::MAX_REQUEST_SIZE_BYTES + 1];
        assert_eq!(post(&app, huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
        let get = app
            .clone()
            .oneshot(http::Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn full_queue_answers_503_without_waiting() {
        let (app, _rx) = app(1);
        assert_eq!(
            post(&app, event_json("a").to_string()).await.0,
            StatusCode::ACCEPTED
        );
        let (status, body) = post(&app, event_json("b").to_string()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("queue is full"));
        // The refused event is not remembered as seen: its retry is not a duplicate.
        assert_eq!(
            post(&app, event_json("b").to_string()).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
