//! Flux events posted to a local notification-controller stand-in.
// Helpers outside `#[test]` functions are test code too: let them unwrap like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::events::{
    EventError, EventRecorder, FluxEvent, META_REVISION_KEY, RetryConfig, Severity, metadata_key,
};
use k8s_openapi::api::core::v1::ObjectReference;
use tokio::net::TcpListener;

/// A sink that records every POST to `/` and answers with `statuses[n]` for the n-th request
/// (the last status once the list runs out).
#[derive(Clone)]
struct Sink {
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    hits: Arc<AtomicUsize>,
    statuses: Arc<Vec<StatusCode>>,
}

impl Sink {
    async fn start(statuses: Vec<StatusCode>) -> (Sink, String) {
        let sink = Sink {
            received: Arc::default(),
            hits: Arc::default(),
            statuses: Arc::new(statuses),
        };
        let router = Router::new()
            .route("/", post(receive))
            .with_state(sink.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (sink, format!("http://{addr}/"))
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Polls until `n` events were received, or fails after a deadline.
    async fn wait_for(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let received = self.received.lock().unwrap().clone();
            if received.len() >= n {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "got {} events, want {n}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receive(State(sink): State<Sink>, body: String) -> StatusCode {
    let n = sink.hits.fetch_add(1, Ordering::SeqCst);
    let status = sink
        .statuses
        .get(n)
        .or(sink.statuses.last())
        .copied()
        .unwrap();
    if status.is_success() {
        sink.received
            .lock()
            .unwrap()
            .push(serde_json::from_str(&body).unwrap());
    }
    status
}

fn repo() -> ObjectReference {
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

fn fast_retry(attempts: u32) -> RetryConfig {
    RetryConfig {
        attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        timeout: Duration::from_secs(2),
    }
}

fn recorder(addr: &str, attempts: u32) -> EventRecorder {
    EventRecorder::new("source-controller", None, Some(addr))
        .unwrap()
        .with_instance("source-controller-abc")
        .with_retry(fast_retry(attempts))
        .unwrap()
}

#[tokio::test]
async fn posts_the_flux_event_json() {
    let (sink, addr) = Sink::start(vec![StatusCode::ACCEPTED]).await;
    let metadata = BTreeMap::from([(
        metadata_key("source.toolkit.fluxcd.io", META_REVISION_KEY),
        "main@sha1:731f7ead".to_owned(),
    )]);
    let handle = recorder(&addr, 3)
        .publish(
            &repo(),
            Severity::Info,
            "NewArtifact",
            "stored artifact for commit 'Update README'",
            metadata,
        )
        .await;
    assert!(handle.is_some());

    let events = sink.wait_for(1).await;
    let event = &events[0];
    assert_eq!(
        event["involvedObject"],
        serde_json::json!({
            "kind": "GitRepository",
            "namespace": "flux-system",
            "name": "podinfo",
            "uid": "cc4d0095-83f4-4f08-98f2-d2e9f3731fb9",
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "resourceVersion": "56921",
        })
    );
    assert_eq!(event["severity"], "info");
    assert_eq!(event["reason"], "NewArtifact");
    assert_eq!(
        event["message"],
        "stored artifact for commit 'Update README'"
    );
    assert_eq!(
        event["metadata"],
        serde_json::json!({"source.toolkit.fluxcd.io/revision": "main@sha1:731f7ead"})
    );
    assert_eq!(event["reportingController"], "source-controller");
    assert_eq!(event["reportingInstance"], "source-controller-abc");
    assert!(
        event["timestamp"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    let typed: FluxEvent = serde_json::from_value(event.clone()).unwrap();
    assert_eq!(typed.severity, Severity::Info);
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (sink, addr) = Sink::start(vec![
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::OK,
    ])
    .await;
    let handle = recorder(&addr, 4)
        .publish(&repo(), Severity::Error, "Failed", "boom", BTreeMap::new())
        .await
        .unwrap();
    handle.await.unwrap().unwrap();
    assert_eq!(sink.hits(), 3);
    assert_eq!(sink.wait_for(1).await[0]["severity"], "error");
}

#[tokio::test]
async fn retries_are_bounded() {
    let (sink, addr) = Sink::start(vec![StatusCode::INTERNAL_SERVER_ERROR]).await;
    let handle = recorder(&addr, 3)
        .publish(&repo(), Severity::Error, "Failed", "boom", BTreeMap::new())
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("delivery gives up in time")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, EventError::GaveUp { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(sink.hits(), 3);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_429_counts_as_delivered() {
    let (sink, addr) = Sink::start(vec![StatusCode::BAD_REQUEST]).await;
    let err = recorder(&addr, 5)
        .publish(&repo(), Severity::Info, "R", "m", BTreeMap::new())
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, EventError::Status(StatusCode::BAD_REQUEST)),
        "{err}"
    );
    assert_eq!(sink.hits(), 1);

    let (sink, addr) = Sink::start(vec![StatusCode::TOO_MANY_REQUESTS]).await;
    recorder(&addr, 5)
        .publish(&repo(), Severity::Info, "R", "m", BTreeMap::new())
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sink.hits(), 1);
}

#[tokio::test]
async fn unreachable_receiver_gives_up_without_blocking_publish() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let recorder = recorder(&format!("http://127.0.0.1:{port}/"), 2);
    let handle = tokio::time::timeout(
        Duration::from_secs(1),
        recorder.publish(&repo(), Severity::Info, "R", "m", BTreeMap::new()),
    )
    .await
    .expect("publish returns at once")
    .unwrap();
    let err = handle.await.unwrap().unwrap_err();
    assert!(
        matches!(err, EventError::GaveUp { attempts: 2, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn credentials_never_reach_the_receiver() {
    let (sink, addr) = Sink::start(vec![StatusCode::OK]).await;
    recorder(&addr, 1)
        .publish(
            &repo(),
            Severity::Error,
            "GitOperationFailed",
            "failed to checkout 'https://bob:hunter2@git.example.com/org/repo.git': auth failed",
            BTreeMap::from([(
                "url".to_owned(),
                "https://bob:hunter2@git.example.com".to_owned(),
            )]),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    let event = &sink.wait_for(1).await[0];
    let raw = event.to_string();
    assert!(!raw.contains("hunter2") && !raw.contains("bob"), "{raw}");
    assert_eq!(
        event["message"],
        "failed to checkout 'https://***@git.example.com/org/repo.git': auth failed"
    );
}

#[tokio::test]
async fn trace_events_and_incomplete_objects_are_not_posted() {
    let (sink, addr) = Sink::start(vec![StatusCode::OK]).await;
    let recorder = recorder(&addr, 1);
    assert!(
        recorder
            .publish(
                &repo(),
                Severity::Trace,
                "Progressing",
                "m",
                BTreeMap::new()
            )
            .await
            .is_none()
    );
    let mut cluster_scoped = repo();
    cluster_scoped.namespace = None;
    assert!(
        recorder
            .publish(&cluster_scoped, Severity::Info, "R", "m", BTreeMap::new())
            .await
            .is_none()
    );
    // A later event arrives alone: nothing else was sent.
    recorder
        .publish(&repo(), Severity::Info, "Last", "m", BTreeMap::new())
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    let events = sink.wait_for(1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "Last");
    assert_eq!(sink.hits(), 1);
}

/// A fake API server that stores `events.k8s.io/v1` Events created in any namespace.
async fn fake_events_api() -> (Arc<Mutex<Vec<(String, serde_json::Value)>>>, kube::Client) {
    let created: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let store = created.clone();
    let router = Router::new().route(
        "/apis/events.k8s.io/v1/namespaces/{ns}/events",
        post(
            move |axum::extract::Path(ns): axum::extract::Path<String>,
                  axum::Json(event): axum::Json<serde_json::Value>| {
                let store = store.clone();
                async move {
                    store.lock().unwrap().push((ns, event.clone()));
                    (StatusCode::CREATED, axum::Json(event))
                }
            },
        ),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    (created, client)
}

#[tokio::test]
async fn kubernetes_events_name_the_controller_and_are_masked_and_trimmed() {
    let (created, client) = fake_events_api().await;
    let recorder = EventRecorder::new("source-controller", Some(client), None)
        .unwrap()
        .with_instance("source-controller-abc");
    let message = format!(
        "auth failed for https://bob:hunter2@git.example.com/repo: {}",
        "x".repeat(5000)
    );
    let handle = recorder
        .publish(
            &repo(),
            Severity::Error,
            "GitOperationFailed",
            &message,
            BTreeMap::new(),
        )
        .await;
    assert!(handle.is_none(), "no events address: nothing posted");
    recorder
        .publish(
            &repo(),
            Severity::Info,
            "NewArtifact",
            "stored",
            BTreeMap::new(),
        )
        .await;

    let created = created.lock().unwrap().clone();
    assert_eq!(created.len(), 2, "{created:?}");
    let (ns, warning) = &created[0];
    assert_eq!(ns, "flux-system");
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["reason"], "GitOperationFailed");
    assert_eq!(warning["reportingController"], "source-controller");
    assert_eq!(warning["reportingInstance"], "source-controller-abc");
    assert_eq!(warning["regarding"]["kind"], "GitRepository");
    assert_eq!(warning["regarding"]["name"], "podinfo");
    let note = warning["note"].as_str().unwrap();
    assert!(
        note.starts_with("auth failed for https://***@git.example.com/repo: "),
        "{note}"
    );
    assert!(!note.contains("hunter2"));
    assert!(
        note.len() <= common::events::KUBE_NOTE_LIMIT,
        "{}",
        note.len()
    );
    assert_eq!(created[1].1["type"], "Normal");
    assert_eq!(created[1].1["note"], "stored");
}
