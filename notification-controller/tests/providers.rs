//! Provider types end to end: generic-hmac with secret headers, GitHub commit statuses without duplicates,
//! commit-status events kept from chat providers, cross-namespace refusal, and the finalizer loops.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use common::api::meta::FINALIZER;
use common::api::notification_v1beta3::{Alert, Provider};
use common::events::{EventRecorder, Severity};
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use support::{Fixture, Mode, Sink, fast_dispatch, poll, start};

fn kustomization(namespace: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("kustomize.toolkit.fluxcd.io/v1".into()),
        kind: Some("Kustomization".into()),
        name: Some("apps".into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

async fn cached(fx: &Fixture, provider: &Provider, alert: &Alert) {
    let d = fx.controller.dispatcher().clone();
    let (pn, an) = (
        provider.metadata.name.clone().unwrap(),
        alert.metadata.name.clone().unwrap(),
    );
    let (pg, ag) = (
        provider.metadata.generation.unwrap_or(0),
        alert.metadata.generation.unwrap_or(0),
    );
    poll("cached", 10, || async {
        d.knows_provider("flux-system", &pn, pg) && d.knows_alert("flux-system", &an, ag)
    })
    .await;
}

async fn publish(
    fx: &Fixture,
    object: ObjectReference,
    severity: Severity,
    reason: &str,
    meta: BTreeMap<String, String>,
) {
    EventRecorder::new("kustomize-controller", None, Some(&fx.events_url()))
        .unwrap()
        .publish(
            &object,
            severity,
            reason,
            &format!("{reason} happened"),
            meta,
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn generic_hmac_signs_and_sends_secret_headers() {
    let fx = start(&[], fast_dispatch()).await;
    let sink = Sink::start(Mode::Ok).await;
    fx.secret(
        "hmac",
        &[
            ("address", &sink.url("/events")),
            ("token", "hmac-key-do-not-leak"),
            (
                "headers",
                "X-Team: platform\nAuthorization: Bearer header-secret\n",
            ),
        ],
    )
    .await;
    let provider: Provider = fx
        .apply(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: hmac, namespace: flux-system}
spec: {type: generic-hmac, secretRef: {name: hmac}}",
        )
        .await;
    let alert: Alert = fx
        .apply(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: all, namespace: flux-system}
spec:
  providerRef: {name: hmac}
  eventSources: [{kind: Kustomization, name: '*'}]",
        )
        .await;
    cached(&fx, &provider, &alert).await;
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Info,
        "ReconciliationSucceeded",
        BTreeMap::new(),
    )
    .await;
    poll("posted", 30, || async { sink.count() == 1 }).await;
    let post = &sink.posts()[0];
    assert_eq!(post.headers["gotk-component"], "kustomize-controller");
    assert_eq!(post.headers["x-team"], "platform");
    assert_eq!(post.headers["authorization"], "Bearer header-secret");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hmac-key-do-not-leak").unwrap();
    mac.update(&post.body);
    assert_eq!(
        post.headers["x-signature"],
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    let event = post.json();
    assert_eq!(event["involvedObject"]["kind"], "Kustomization");
    assert_eq!(event["reason"], "ReconciliationSucceeded");
    assert!(!String::from_utf8_lossy(&post.body).contains("do-not-leak"));
}

#[derive(Clone, Default)]
struct FakeGitHub {
    statuses: Arc<Mutex<Vec<serde_json::Value>>>,
    requests: Arc<Mutex<Vec<(String, String, String)>>>,
}

async fn github_api(
    State(gh): State<FakeGitHub>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<serde_json::Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    gh.requests
        .lock()
        .unwrap()
        .push((method.to_string(), uri.path().to_owned(), auth));
    if method == http::Method::POST {
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // Newest first, like GitHub.
        gh.statuses.lock().unwrap().insert(0, status.clone());
        axum::Json(status)
    } else {
        axum::Json(serde_json::Value::Array(
            gh.statuses.lock().unwrap().clone(),
        ))
    }
}

#[tokio::test]
async fn github_commit_status_without_duplicates() {
    let fx = start(&[], fast_dispatch()).await;
    let gh = FakeGitHub::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(github_api).with_state(gh.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    fx.secret("github", &[("token", "ghp_do_not_leak")]).await;
    let provider: Provider = fx
        .apply(&format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: github, namespace: flux-system}}
spec: {{type: github, address: 'http://{addr}/org/app', secretRef: {{name: github}}}}"
        ))
        .await;
    let alert: Alert = fx
        .apply(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: status, namespace: flux-system}
spec:
  providerRef: {name: github}
  eventSources: [{kind: Kustomization, name: '*'}]",
        )
        .await;
    cached(&fx, &provider, &alert).await;
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let meta = BTreeMap::from([
        (
            "kustomize.toolkit.fluxcd.io/revision".to_owned(),
            format!("main@sha1:{sha}"),
        ),
        (
            "kustomize.toolkit.fluxcd.io/commit_status".to_owned(),
            "update".to_owned(),
        ),
    ]);
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Info,
        "ReconciliationSucceeded",
        meta.clone(),
    )
    .await;
    poll("status posted", 30, || async {
        gh.statuses.lock().unwrap().len() == 1
    })
    .await;
    // The same status again (a new token defeats deduplication at intake): listed, not posted.
    let mut again = meta.clone();
    again.insert("kustomize.toolkit.fluxcd.io/token".into(), "second".into());
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Info,
        "ReconciliationSucceeded",
        again,
    )
    .await;
    fx.settle(2).await;
    // A failure changes the state: posted.
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Error,
        "HealthCheckFailed",
        meta,
    )
    .await;
    poll("failure posted", 30, || async {
        gh.statuses.lock().unwrap().len() == 2
    })
    .await;
    fx.settle(3).await;
    let statuses = gh.statuses.lock().unwrap().clone();
    let uid = provider.metadata.uid.clone().unwrap();
    let context = format!("kustomization/apps/{}", uid.split('-').next().unwrap());
    assert_eq!(
        statuses[1],
        serde_json::json!({"state": "success", "context": context, "description": "reconciliation succeeded"})
    );
    assert_eq!(statuses[0]["state"], "failure");
    assert_eq!(statuses[0]["description"], "health check failed");
    let requests = gh.requests.lock().unwrap().clone();
    let posts: Vec<_> = requests.iter().filter(|r| r.0 == "POST").collect();
    assert_eq!(posts.len(), 2, "{requests:?}");
    assert_eq!(posts[0].1, format!("/api/v3/repos/org/app/statuses/{sha}"));
    assert!(requests.iter().all(|r| r.2 == "Bearer ghp_do_not_leak"));
    assert_eq!(requests.iter().filter(|r| r.0 == "GET").count(), 3);
}

#[tokio::test]
async fn commit_status_events_skip_chat_and_cross_namespace_is_refused() {
    let fx = start(&["--no-cross-namespace-refs=true"], fast_dispatch()).await;
    let sink = Sink::start(Mode::Ok).await;
    let provider: Provider = fx
        .apply(&format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: chat, namespace: flux-system}}
spec: {{type: slack, address: '{}'}}",
            sink.url("/hook")
        ))
        .await;
    let alert: Alert = fx
        .apply(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: all, namespace: flux-system}
spec:
  providerRef: {name: chat}
  eventSources:
    - {kind: Kustomization, name: '*'}
    - {kind: Kustomization, name: '*', namespace: team-a}",
        )
        .await;
    cached(&fx, &provider, &alert).await;
    let status_only = BTreeMap::from([(
        "kustomize.toolkit.fluxcd.io/commit_status".to_owned(),
        "update".to_owned(),
    )]);
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Info,
        "ReconciliationSucceeded",
        status_only,
    )
    .await;
    publish(
        &fx,
        kustomization("team-a"),
        Severity::Info,
        "ReconciliationSucceeded",
        BTreeMap::new(),
    )
    .await;
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Info,
        "Progressing",
        BTreeMap::new(),
    )
    .await;
    poll("the plain event is posted", 30, || async {
        sink.count() >= 1
    })
    .await;
    fx.settle(3).await;
    let posts = sink.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(
        posts[0].json()["attachments"][0]["text"],
        "Progressing happened"
    );
    poll("cross-namespace refusal reported", 30, || async {
        fx.events_for("all", "NotificationDispatchFailed")
            .await
            .iter()
            .any(|(_, note)| {
                note.contains("cross-namespace references have been blocked")
                    && note.contains("Kustomization/team-a/apps")
            })
    })
    .await;
}

#[tokio::test]
async fn finalizers_are_migrated_and_managed() {
    let fx = start(&[], fast_dispatch()).await;
    let alerts: Api<Alert> = Api::namespaced(fx.client.clone(), "flux-system");
    let providers: Api<Provider> = Api::namespaced(fx.client.clone(), "flux-system");
    let _: Provider = fx
        .apply(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: p, namespace: flux-system}
spec: {type: generic, address: 'http://127.0.0.1:9/'}",
        )
        .await;
    let _: Alert = fx
        .apply(&format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: old, namespace: flux-system, finalizers: [{FINALIZER}]}}
spec:
  providerRef: {{name: p}}
  eventSources: [{{kind: Kustomization, name: '*'}}]"
        ))
        .await;
    poll("Alert finalizer removed", 30, || async {
        alerts
            .get("old")
            .await
            .unwrap()
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty()
    })
    .await;
    poll("Migration event", 30, || async {
        !fx.events_for("old", "Migration").await.is_empty()
    })
    .await;
    poll("Provider finalizer added", 30, || async {
        providers
            .get("p")
            .await
            .unwrap()
            .metadata
            .finalizers
            .unwrap_or_default()
            == vec![FINALIZER.to_owned()]
    })
    .await;
    providers.delete("p", &Default::default()).await.unwrap();
    poll("Provider deleted", 30, || async {
        providers.get_opt("p").await.unwrap().is_none()
    })
    .await;
    let _ = Patch::Merge(serde_json::json!({}));
    let _ = PatchParams::default();
}
