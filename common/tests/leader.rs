//! The election loop against a fake Lease API (GET/POST/PUT with resourceVersion conflicts) on 127.0.0.1.
//! A test against a real API server will use `testenv`.
// Helpers outside `#[test]` functions are test code too: let them unwrap like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::leader::{LeaderElector, LeaderHandle, LeaseTimings};
use k8s_openapi::api::coordination::v1::Lease;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Clone, Default)]
struct FakeApi {
    lease: Arc<Mutex<Option<Lease>>>,
    version: Arc<Mutex<u64>>,
    failing: Arc<AtomicBool>,
}

fn status(code: StatusCode, reason: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

impl FakeApi {
    async fn start() -> (FakeApi, kube::Client) {
        let api = FakeApi::default();
        let base = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases";
        let router = Router::new()
            .route(base, post(create))
            .route(&format!("{base}/{{name}}"), get(read).put(replace))
            .with_state(api.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let mut config = kube::Config::new(url.parse().unwrap());
        config.default_namespace = "flux-system".into();
        (api, kube::Client::try_from(config).unwrap())
    }

    fn holder(&self) -> Option<String> {
        let lease = self.lease.lock().unwrap();
        lease.as_ref()?.spec.as_ref()?.holder_identity.clone()
    }

    fn transitions(&self) -> Option<i32> {
        let lease = self.lease.lock().unwrap();
        lease.as_ref()?.spec.as_ref()?.lease_transitions
    }

    fn store(&self, mut lease: Lease) -> Lease {
        let mut version = self.version.lock().unwrap();
        *version += 1;
        lease.metadata.resource_version = Some(version.to_string());
        *self.lease.lock().unwrap() = Some(lease.clone());
        lease
    }
}

async fn read(State(api): State<FakeApi>, Path((_ns, _name)): Path<(String, String)>) -> Response {
    if api.failing.load(Ordering::SeqCst) {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
    }
    match api.lease.lock().unwrap().clone() {
        Some(lease) => Json(lease).into_response(),
        None => status(StatusCode::NOT_FOUND, "NotFound"),
    }
}

async fn create(State(api): State<FakeApi>, Json(lease): Json<Lease>) -> Response {
    if api.failing.load(Ordering::SeqCst) {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
    }
    if api.lease.lock().unwrap().is_some() {
        return status(StatusCode::CONFLICT, "AlreadyExists");
    }
    (StatusCode::CREATED, Json(api.store(lease))).into_response()
}

async fn replace(
    State(api): State<FakeApi>,
    Path((_ns, _name)): Path<(String, String)>,
    Json(lease): Json<Lease>,
) -> Response {
    if api.failing.load(Ordering::SeqCst) {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
    }
    let current = api
        .lease
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|l| l.metadata.resource_version.clone());
    if current.is_none() || current != lease.metadata.resource_version {
        return status(StatusCode::CONFLICT, "Conflict");
    }
    Json(api.store(lease)).into_response()
}

const TIMINGS: LeaseTimings = LeaseTimings {
    lease_duration: Duration::from_secs(2),
    renew_deadline: Duration::from_millis(600),
    retry_period: Duration::from_millis(50),
};

fn elect(client: &kube::Client, identity: &str) -> LeaderHandle {
    LeaderElector::new(
        client.clone(),
        "flux-system",
        "source-controller-leader-election",
        identity.to_owned(),
        TIMINGS,
    )
    .spawn()
}

async fn wait_until(rx: &mut watch::Receiver<bool>, want: bool) {
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| *v == want))
        .await
        .unwrap_or_else(|_| panic!("is_leader did not become {want}"))
        .unwrap();
}

async fn poll(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn single_candidate_creates_renews_and_releases() {
    let (api, client) = FakeApi::start().await;
    let handle = elect(&client, "a");
    let mut is_leader = handle.is_leader();
    wait_until(&mut is_leader, true).await;
    assert_eq!(api.holder().as_deref(), Some("a"));
    let spec = || api.lease.lock().unwrap().clone().unwrap().spec.unwrap();
    assert_eq!(spec().lease_duration_seconds, Some(2));

    // Renewals keep moving renewTime forward.
    let first = spec().renew_time.unwrap().0;
    poll("a renewal", || spec().renew_time.unwrap().0 > first).await;
    assert!(*is_leader.borrow());

    handle.release().await.unwrap();
    assert!(!*is_leader.borrow());
    assert_eq!(api.holder(), None, "release clears holderIdentity");
}

#[tokio::test]
async fn one_leader_at_a_time_and_handover_on_release() {
    let (api, client) = FakeApi::start().await;
    let a = elect(&client, "a");
    let mut a_leads = a.is_leader();
    wait_until(&mut a_leads, true).await;
    let b = elect(&client, "b");
    let b_leads = b.is_leader();
    // Give b many retry periods: it must keep waiting while a renews.
    for _ in 0..10 {
        tokio::time::sleep(TIMINGS.retry_period).await;
        assert!(!*b_leads.borrow(), "b leads while a holds the lease");
        assert_eq!(api.holder().as_deref(), Some("a"));
    }
    let transitions = api.transitions().unwrap();

    a.release().await.unwrap();
    let mut b_leads = b.is_leader();
    // b takes over well before a's lease would have expired.
    tokio::time::timeout(TIMINGS.lease_duration, b_leads.wait_for(|v| *v))
        .await
        .expect("b takes over after release")
        .unwrap();
    assert_eq!(api.holder().as_deref(), Some("b"));
    assert_eq!(
        api.transitions(),
        Some(transitions),
        "a released lease is free, not a transition"
    );
    b.release().await.unwrap();
}

#[tokio::test]
async fn expired_lease_of_a_dead_holder_is_taken_over() {
    let (api, client) = FakeApi::start().await;
    // "dead" held the lease and stopped renewing 10s ago.
    let stale = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(10);
    api.store(Lease {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("source-controller-leader-election".into()),
            namespace: Some("flux-system".into()),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
            holder_identity: Some("dead".into()),
            renew_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                stale,
            )),
            lease_duration_seconds: Some(2),
            lease_transitions: Some(7),
            ..Default::default()
        }),
    });
    let handle = elect(&client, "a");
    wait_until(&mut handle.is_leader(), true).await;
    assert_eq!(api.holder().as_deref(), Some("a"));
    assert_eq!(api.transitions(), Some(8));
    handle.release().await.unwrap();
}

#[tokio::test]
async fn leader_steps_down_when_renewals_fail_past_the_deadline() {
    let (api, client) = FakeApi::start().await;
    let handle = elect(&client, "a");
    let mut is_leader = handle.is_leader();
    wait_until(&mut is_leader, true).await;

    api.failing.store(true, Ordering::SeqCst);
    let failed_at = tokio::time::Instant::now();
    wait_until(&mut is_leader, false).await;
    let after = failed_at.elapsed();
    assert!(
        after >= TIMINGS.renew_deadline - TIMINGS.retry_period,
        "stepped down after {after:?}, before the renew deadline"
    );

    // Once the API recovers, the lease (still ours) is renewed and leadership regained.
    api.failing.store(false, Ordering::SeqCst);
    wait_until(&mut is_leader, true).await;
    handle.release().await.unwrap();
}
