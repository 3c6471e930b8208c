//! Provider types end to end: generic-hmac with secret headers, GitHub commit statuses without duplicates,
//! commit-status events kept from chat providers, cross-namespace refusal, and the finalizer loops; then each
//! further Flux type (Telegram, Matrix, Webex, Lark, Opsgenie, PagerDuty, Grafana, Datadog, Gitea, Bitbucket,
//! Bitbucket Server) against a local server standing in for the service, checking the request Flux sends.

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
use notification_controller::notifier::Endpoints;
use notification_controller::server::dispatch::DispatchConfig;
use serde_json::json;
use sha1::Digest as _;
use support::{Fixture, Mode, Post, Sink, fast_dispatch, poll, start};

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

impl FakeGitHub {
    /// Serves the fake GitHub API on loopback and creates the `github` token Secret.
    async fn start(fx: &Fixture) -> (FakeGitHub, std::net::SocketAddr) {
        let gh = FakeGitHub::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(github_api).with_state(gh.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fx.secret("github", &[("token", "ghp_do_not_leak")]).await;
        (gh, addr)
    }
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
    let (gh, addr) = FakeGitHub::start(&fx).await;
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
async fn commit_status_expr_names_the_status() {
    let fx = start(&[], fast_dispatch()).await;
    let (gh, addr) = FakeGitHub::start(&fx).await;
    let expr = "(event.involvedObject.kind + '/' + event.involvedObject.name).lowerAscii() + '/' + \
                event.metadata.cluster + '/' + alert.metadata.name + '/' + provider.spec.type";
    let provider: Provider = fx
        .apply(&format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: github, namespace: flux-system}}
spec:
  type: github
  address: 'http://{addr}/org/app'
  secretRef: {{name: github}}
  commitStatusExpr: \"{expr}\""
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
    let meta = |cluster: Option<&str>| {
        let mut m = BTreeMap::from([
            (
                "kustomize.toolkit.fluxcd.io/revision".to_owned(),
                format!("main@sha1:{sha}"),
            ),
            (
                "kustomize.toolkit.fluxcd.io/commit_status".to_owned(),
                "update".to_owned(),
            ),
        ]);
        if let Some(c) = cluster {
            // Event metadata reaches the expression without its group prefix, as in Flux.
            m.insert(
                "kustomize.toolkit.fluxcd.io/cluster".to_owned(),
                c.to_owned(),
            );
        }
        m
    };
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Info,
        "ReconciliationSucceeded",
        meta(Some("prod-01")),
    )
    .await;
    poll("status posted", 30, || async {
        gh.statuses.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(
        gh.statuses.lock().unwrap()[0]["context"],
        "kustomization/apps/prod-01/status/github"
    );
    // An event the expression cannot handle (no `cluster` metadata) is reported on the Alert, not posted.
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Error,
        "HealthCheckFailed",
        meta(None),
    )
    .await;
    poll("failure reported", 30, || async {
        fx.events_for("status", "NotificationDispatchFailed")
            .await
            .iter()
            .any(|(_, note)| {
                note.contains(
                    "failed to evaluate the spec.commitStatusExpr CEL expression for the event",
                ) && note.contains("no such key: cluster")
            })
    })
    .await;
    assert_eq!(gh.statuses.lock().unwrap().len(), 1);
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

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// Applies a Provider `name` with `spec` (flow YAML) and an Alert `name` on every Kustomization, and waits until
/// the dispatcher has both.
async fn provider_and_alert(fx: &Fixture, name: &str, spec: &str) -> Provider {
    let provider: Provider = fx
        .apply(&format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: {name}, namespace: flux-system}}
spec: {spec}"
        ))
        .await;
    let alert: Alert = fx
        .apply(&format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: {name}, namespace: flux-system}}
spec:
  providerRef: {{name: {name}}}
  eventSources: [{{kind: Kustomization, name: '*'}}]"
        ))
        .await;
    cached(fx, &provider, &alert).await;
    provider
}

fn revision() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "kustomize.toolkit.fluxcd.io/revision".to_owned(),
        format!("main@sha1:{SHA}"),
    )])
}

fn header<'a>(post: &'a Post, name: &str) -> &'a str {
    post.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn assert_no_leak(secrets: &[&str]) {
    let logs = String::from_utf8_lossy(&support::logs().lock().unwrap()).into_owned();
    for secret in secrets {
        assert!(!logs.contains(secret), "secret {secret} in logs");
    }
}

#[tokio::test]
async fn chat_providers_post_what_flux_posts() {
    let sink = Sink::start(Mode::Ok).await;
    let dispatch = DispatchConfig {
        endpoints: Endpoints {
            telegram: sink.url("/telegram"),
            ..Endpoints::default()
        },
        ..fast_dispatch()
    };
    let fx = start(&[], dispatch).await;
    fx.secret("telegram", &[("token", "123456:tg-do-not-leak")])
        .await;
    fx.secret("matrix", &[("token", "syt_matrix_do_not_leak")])
        .await;
    fx.secret("webex", &[("token", "webex-do-not-leak")]).await;
    fx.secret(
        "lark",
        &[(
            "address",
            &sink.url("/lark/open-apis/bot/v2/hook/lark-do-not-leak"),
        )],
    )
    .await;
    // Flux ignores a Telegram address (older docs had users set this one).
    provider_and_alert(
        &fx,
        "telegram",
        "{type: telegram, address: 'https://api.telegram.org', channel: '-100123:7', secretRef: {name: telegram}}",
    )
    .await;
    provider_and_alert(
        &fx,
        "matrix",
        &format!(
            "{{type: matrix, address: '{}', channel: '!room:example.org', secretRef: {{name: matrix}}}}",
            sink.url("/matrix")
        ),
    )
    .await;
    provider_and_alert(
        &fx,
        "webex",
        &format!(
            "{{type: webex, address: '{}', channel: room-1, secretRef: {{name: webex}}}}",
            sink.url("/webex/v1/messages")
        ),
    )
    .await;
    provider_and_alert(&fx, "lark", "{type: lark, secretRef: {name: lark}}").await;
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Error,
        "HealthCheckFailed",
        revision(),
    )
    .await;
    poll("four posts", 30, || async { sink.count() == 4 }).await;
    fx.settle(1).await;

    let telegram = &sink.posts_to("/telegram")[0];
    assert_eq!(telegram.method, "POST");
    assert_eq!(
        telegram.path,
        "/telegram/bot123456:tg-do-not-leak/sendMessage"
    );
    assert_eq!(header(telegram, "content-type"), "application/json");
    assert_eq!(
        telegram.json(),
        json!({
            "chat_id": "-100123",
            "message_thread_id": "7",
            "text": format!("*🚨 kustomization/apps/flux\\-system*\nHealthCheckFailed happened\n\\- *revision*: main@sha1:{SHA}\n"),
            "parse_mode": "MarkdownV2",
        })
    );

    let matrix = &sink.posts_to("/matrix")[0];
    assert_eq!(matrix.method, "PUT");
    let txn = matrix
        .path
        .strip_prefix("/matrix/_matrix/client/r0/rooms/!room:example.org/send/m.room.message/")
        .unwrap_or_else(|| panic!("{}", matrix.path));
    assert!(
        txn.len() == 40 && txn.bytes().all(|b| b.is_ascii_hexdigit()),
        "{txn}"
    );
    assert_eq!(
        header(matrix, "authorization"),
        "Bearer syt_matrix_do_not_leak"
    );
    assert_eq!(
        matrix.json(),
        json!({
            "body": format!("🚨 kustomization/apps.flux-system\nHealthCheckFailed happened\n- revision: main@sha1:{SHA}\n"),
            "msgtype": "m.text",
        })
    );

    let webex = &sink.posts_to("/webex")[0];
    assert_eq!(
        (webex.method.as_str(), webex.path.as_str()),
        ("POST", "/webex/v1/messages")
    );
    assert_eq!(header(webex, "authorization"), "Bearer webex-do-not-leak");
    assert_eq!(
        webex.json(),
        json!({
            "roomId": "room-1",
            "markdown": format!("💣 **kustomization/apps.flux-system**\nHealthCheckFailed happened\n>**revision**: main@sha1:{SHA}\n"),
        })
    );

    let lark = &sink.posts_to("/lark")[0];
    assert_eq!(lark.method, "POST");
    assert_eq!(lark.path, "/lark/open-apis/bot/v2/hook/lark-do-not-leak");
    assert_eq!(
        lark.json(),
        json!({
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": true},
                "header": {
                    "title": {"tag": "plain_text", "content": "🚨 kustomization/apps.flux-system"},
                    "template": "red",
                },
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": format!("**HealthCheckFailed happened**\n\nrevision: main@sha1:{SHA}\n")}}],
            },
        })
    );
    assert_no_leak(&[
        "tg-do-not-leak",
        "syt_matrix_do_not_leak",
        "webex-do-not-leak",
        "lark-do-not-leak",
    ]);
}

#[tokio::test]
async fn incident_and_observability_providers_post_what_flux_posts() {
    let sink = Sink::start(Mode::Ok).await;
    let fx = start(&[], fast_dispatch()).await;
    fx.secret("opsgenie", &[("token", "genie-do-not-leak")])
        .await;
    fx.secret(
        "grafana",
        &[("username", "admin"), ("password", "grafana-do-not-leak")],
    )
    .await;
    fx.secret("datadog", &[("token", "dd-do-not-leak")]).await;
    let opsgenie = provider_and_alert(
        &fx,
        "opsgenie",
        &format!(
            "{{type: opsgenie, address: '{}', secretRef: {{name: opsgenie}}}}",
            sink.url("/opsgenie/v2/alerts")
        ),
    )
    .await;
    // PagerDuty and Datadog use only the scheme and host of the address.
    provider_and_alert(
        &fx,
        "pagerduty",
        &format!(
            "{{type: pagerduty, address: '{}', channel: routing-key-1}}",
            sink.url("/ignored")
        ),
    )
    .await;
    provider_and_alert(
        &fx,
        "grafana",
        &format!(
            "{{type: grafana, address: '{}', secretRef: {{name: grafana}}}}",
            sink.url("/grafana/api/annotations")
        ),
    )
    .await;
    provider_and_alert(
        &fx,
        "datadog",
        &format!(
            "{{type: datadog, address: '{}', secretRef: {{name: datadog}}}}",
            sink.url("/ignored")
        ),
    )
    .await;
    let object = ObjectReference {
        uid: Some("5d1f8e0c-0000-4000-8000-00000000abcd".into()),
        ..kustomization("flux-system")
    };
    publish(
        &fx,
        object.clone(),
        Severity::Error,
        "HealthCheckFailed",
        revision(),
    )
    .await;
    poll("four posts", 30, || async { sink.count() == 4 }).await;
    fx.settle(1).await;

    let post = &sink.posts_to("/opsgenie")[0];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/opsgenie/v2/alerts")
    );
    assert_eq!(header(post, "authorization"), "GenieKey genie-do-not-leak");
    let alias_key = format!(
        "{}/Kustomization/flux-system/apps/HealthCheckFailed",
        opsgenie.metadata.uid.clone().unwrap()
    );
    assert_eq!(
        post.json(),
        json!({
            "message": "Kustomization/apps",
            "alias": hex::encode(sha2::Sha256::digest(alias_key.as_bytes())),
            "description": "HealthCheckFailed happened",
            "details": {"revision": format!("main@sha1:{SHA}"), "severity": "error"},
        })
    );

    let trigger = &sink.posts_to("/v2/")[0];
    assert_eq!(
        (trigger.method.as_str(), trigger.path.as_str()),
        ("POST", "/v2/enqueue")
    );
    let body = trigger.json();
    assert_eq!(body["routing_key"], "routing-key-1");
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["dedup_key"], "5d1f8e0c-0000-4000-8000-00000000abcd");
    let payload = &body["payload"];
    assert_eq!(
        payload["summary"],
        "health check failed: kustomization/apps"
    );
    assert_eq!(payload["source"], "Flux kustomize-controller");
    assert_eq!(payload["severity"], "error");
    assert_eq!(payload["component"], "apps");
    assert_eq!(payload["group"], "Kustomization");
    assert!(
        payload["timestamp"].as_str().unwrap().ends_with('Z'),
        "{payload}"
    );
    assert_eq!(
        payload["custom_details"],
        json!({"message": "HealthCheckFailed happened", "metadata": {"revision": format!("main@sha1:{SHA}")}})
    );

    let post = &sink.posts_to("/grafana")[0];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/grafana/api/annotations")
    );
    assert_eq!(
        header(post, "authorization"),
        "Basic YWRtaW46Z3JhZmFuYS1kby1ub3QtbGVhaw=="
    );
    let body = post.json();
    let now = jiff::Timestamp::now().as_second();
    let when = body["when"].as_i64().unwrap();
    assert!((now - 60..=now).contains(&when), "{when} vs {now}");
    assert_eq!(body["text"], "kustomization/apps.flux-system");
    assert_eq!(
        body["tags"],
        json!([
            "flux",
            "kustomize-controller",
            format!("revision: main@sha1|{SHA}"),
            "kind: Kustomization",
            "name: apps",
            "namespace: flux-system"
        ])
    );

    let post = &sink.posts_to("/api/v1/events")[0];
    assert_eq!(post.method, "POST");
    assert_eq!(header(post, "dd-api-key"), "dd-do-not-leak");
    assert_eq!(header(post, "accept"), "application/json");
    let body = post.json();
    assert_eq!(
        body["date_happened"].as_i64().unwrap(),
        when,
        "the event's time"
    );
    assert_eq!(
        body,
        json!({
            "alert_type": "error",
            "date_happened": when,
            "source_type_name": "fluxcd",
            "tags": [
                "flux_reporting_controller:kustomize-controller",
                "flux_reason:healthcheckfailed",
                "kube_kind:kustomization",
                "kube_name:apps",
                "kube_namespace:flux-system",
                format!("revision:main@sha1:{SHA}"),
            ],
            "text": "HealthCheckFailed happened",
            "title": "Events from the Kustomization apps/flux-system",
        })
    );

    // An info event resolves the PagerDuty incident, then records a change.
    publish(
        &fx,
        object,
        Severity::Info,
        "ReconciliationSucceeded",
        revision(),
    )
    .await;
    poll("PagerDuty resolve and change", 30, || async {
        sink.posts_to("/v2/").len() == 3
    })
    .await;
    let pagerduty = sink.posts_to("/v2/");
    assert_eq!(pagerduty[1].path, "/v2/enqueue");
    assert_eq!(
        pagerduty[1].json(),
        json!({"routing_key": "routing-key-1", "event_action": "resolve", "dedup_key": "5d1f8e0c-0000-4000-8000-00000000abcd"})
    );
    assert_eq!(pagerduty[2].path, "/v2/change/enqueue");
    let change = pagerduty[2].json();
    assert_eq!(change["routing_key"], "routing-key-1");
    assert_eq!(
        change["payload"]["summary"],
        "reconciliation succeeded: kustomization/apps"
    );
    assert_eq!(change["payload"]["source"], "Flux kustomize-controller");
    assert_eq!(
        change["payload"]["custom_details"]["message"],
        "ReconciliationSucceeded happened"
    );
    assert_no_leak(&["genie-do-not-leak", "grafana-do-not-leak", "dd-do-not-leak"]);
}

#[tokio::test]
async fn failing_opsgenie_is_retried_and_datadog_is_not() {
    let sink = Sink::start(Mode::Fail).await;
    let fx = start(&[], fast_dispatch()).await;
    fx.secret("opsgenie", &[("token", "genie-do-not-leak")])
        .await;
    fx.secret("datadog", &[("token", "dd-do-not-leak")]).await;
    provider_and_alert(
        &fx,
        "opsgenie",
        &format!(
            "{{type: opsgenie, address: '{}', secretRef: {{name: opsgenie}}}}",
            sink.url("/opsgenie/v2/alerts")
        ),
    )
    .await;
    provider_and_alert(
        &fx,
        "datadog",
        &format!(
            "{{type: datadog, address: '{}', secretRef: {{name: datadog}}}}",
            sink.url("/")
        ),
    )
    .await;
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Error,
        "BuildFailed",
        BTreeMap::new(),
    )
    .await;
    for alert in ["opsgenie", "datadog"] {
        poll("NotificationDispatchFailed", 30, || async {
            !fx.events_for(alert, "NotificationDispatchFailed")
                .await
                .is_empty()
        })
        .await;
        let events = fx.events_for(alert, "NotificationDispatchFailed").await;
        let (type_, note) = &events[0];
        assert_eq!(type_, "Warning");
        assert!(note.contains("500"), "{note}");
        assert!(!note.contains("do-not-leak"), "{note}");
    }
    fx.settle(1).await;
    assert_eq!(
        sink.posts_to("/opsgenie").len(),
        3,
        "3 attempts, then give up"
    );
    assert_eq!(
        sink.posts_to("/api/v1/events").len(),
        1,
        "Flux's Datadog client does not retry"
    );
    assert_no_leak(&["genie-do-not-leak", "dd-do-not-leak"]);
}

/// Gitea, Bitbucket Cloud (under `/2.0`) and Bitbucket Server in one fake: statuses kept per forge, newest
/// first; Bitbucket answers 404 for a key without status, as it does.
#[derive(Clone, Default)]
struct FakeForges {
    statuses: Arc<Mutex<BTreeMap<&'static str, Vec<serde_json::Value>>>>,
    requests: Arc<Mutex<Vec<Post>>>,
}

async fn forges_api(
    State(f): State<FakeForges>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    f.requests.lock().unwrap().push(Post {
        method: method.to_string(),
        path: uri.to_string(),
        headers,
        body: body.to_vec(),
    });
    let forge = if uri.path().starts_with("/api/v1/") {
        "gitea"
    } else if uri.path().starts_with("/2.0/") {
        "bitbucket"
    } else {
        "bitbucketserver"
    };
    let mut statuses = f.statuses.lock().unwrap();
    let list = statuses.entry(forge).or_default();
    if method == http::Method::POST {
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        list.insert(0, status.clone());
        return (http::StatusCode::CREATED, axum::Json(status)).into_response();
    }
    match forge {
        // Gitea lists the state as `status`.
        "gitea" => axum::Json(
            list.iter()
                .map(|s| json!({"context": s["context"], "status": s["state"], "description": s["description"]}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        _ => match list.first() {
            Some(status) => axum::Json(status.clone()).into_response(),
            None => (http::StatusCode::NOT_FOUND, "Not Found").into_response(),
        },
    }
}

#[tokio::test]
async fn gitea_and_bitbucket_commit_statuses_without_duplicates() {
    let forges = FakeForges::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .fallback(forges_api)
        .with_state(forges.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dispatch = DispatchConfig {
        endpoints: Endpoints {
            bitbucket: format!("http://{addr}/2.0"),
            ..Endpoints::default()
        },
        ..fast_dispatch()
    };
    let fx = start(&[], dispatch).await;
    fx.secret("gitea", &[("token", "gitea-do-not-leak")]).await;
    fx.secret("bitbucket", &[("token", "bb-user:bb-app-do-not-leak")])
        .await;
    fx.secret("bitbucketserver", &[("token", "bbs-do-not-leak")])
        .await;
    let gitea = provider_and_alert(
        &fx,
        "gitea",
        &format!(
            "{{type: gitea, address: 'http://{addr}/org/app.git', secretRef: {{name: gitea}}}}"
        ),
    )
    .await;
    let bitbucket = provider_and_alert(
        &fx,
        "bitbucket",
        "{type: bitbucket, address: 'https://bitbucket.org/owner/repo.git', secretRef: {name: bitbucket}}",
    )
    .await;
    let bbs_address = format!("http://{addr}/bitbucket/scm/proj/repo.git");
    let bitbucketserver = provider_and_alert(
        &fx,
        "bitbucketserver",
        &format!(
            "{{type: bitbucketserver, address: '{bbs_address}', secretRef: {{name: bitbucketserver}}}}"
        ),
    )
    .await;
    let meta = {
        let mut m = revision();
        m.insert(
            "kustomize.toolkit.fluxcd.io/commit_status".into(),
            "update".into(),
        );
        m
    };
    let posted = |n: usize| {
        let forges = forges.clone();
        move || {
            let forges = forges.clone();
            async move {
                let statuses = forges.statuses.lock().unwrap();
                ["gitea", "bitbucket", "bitbucketserver"]
                    .iter()
                    .all(|f| statuses.get(f).map_or(0, Vec::len) == n)
            }
        }
    };
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Info,
        "ReconciliationSucceeded",
        meta.clone(),
    )
    .await;
    poll("a status on each forge", 30, posted(1)).await;
    // The same status again: read, not posted.
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
    publish(
        &fx,
        kustomization("flux-system"),
        Severity::Error,
        "HealthCheckFailed",
        meta,
    )
    .await;
    poll("the failure on each forge", 30, posted(2)).await;
    fx.settle(3).await;

    let context = |p: &Provider| {
        let uid = p.metadata.uid.clone().unwrap();
        format!("kustomization/apps/{}", uid.split('-').next().unwrap())
    };
    let key = |p: &Provider| hex::encode(sha1::Sha1::digest(context(p).as_bytes()));
    let requests = forges.requests.lock().unwrap().clone();
    let of = |prefix: &str, method: &str| -> Vec<Post> {
        requests
            .iter()
            .filter(|r| r.path.starts_with(prefix) && r.method == method)
            .cloned()
            .collect()
    };
    let statuses = forges.statuses.lock().unwrap().clone();

    // Gitea: token auth, GitHub-like statuses, 3 reads and 2 writes.
    let (reads, writes) = (of("/api/v1/", "GET"), of("/api/v1/", "POST"));
    assert_eq!((reads.len(), writes.len()), (3, 2), "{requests:?}");
    assert_eq!(
        reads[0].path,
        format!("/api/v1/repos/org/app/commits/{SHA}/statuses?limit=50&page=1")
    );
    assert_eq!(
        writes[0].path,
        format!("/api/v1/repos/org/app/statuses/{SHA}")
    );
    assert!(
        reads
            .iter()
            .chain(&writes)
            .all(|r| header(r, "authorization") == "token gitea-do-not-leak")
    );
    assert_eq!(
        statuses["gitea"][1],
        json!({"state": "success", "target_url": "", "description": "reconciliation succeeded", "context": context(&gitea)})
    );
    assert_eq!(statuses["gitea"][0]["state"], "failure");
    assert_eq!(statuses["gitea"][0]["description"], "health check failed");

    // Bitbucket Cloud: basic auth from `user:password`, the key is the SHA-1 of the context.
    let (reads, writes) = (of("/2.0/", "GET"), of("/2.0/", "POST"));
    assert_eq!((reads.len(), writes.len()), (3, 2), "{requests:?}");
    assert_eq!(
        reads[0].path,
        format!(
            "/2.0/repositories/owner/repo/commit/{SHA}/statuses/build/{}",
            key(&bitbucket)
        )
    );
    assert_eq!(
        writes[0].path,
        format!("/2.0/repositories/owner/repo/commit/{SHA}/statuses/build")
    );
    assert!(
        reads
            .iter()
            .chain(&writes)
            .all(|r| header(r, "authorization") == "Basic YmItdXNlcjpiYi1hcHAtZG8tbm90LWxlYWs=")
    );
    assert_eq!(
        statuses["bitbucket"][1],
        json!({"key": key(&bitbucket), "url": "https://bitbucket.org", "state": "SUCCESSFUL", "name": "kustomization/apps", "description": "reconciliation succeeded"})
    );
    assert_eq!(statuses["bitbucket"][0]["state"], "FAILED");

    // Bitbucket Server: bearer token, XSRF headers, builds under the context path.
    let (reads, writes) = (of("/bitbucket/", "GET"), of("/bitbucket/", "POST"));
    assert_eq!((reads.len(), writes.len()), (3, 2), "{requests:?}");
    let builds =
        format!("/bitbucket/rest/api/latest/projects/proj/repos/repo/commits/{SHA}/builds");
    assert_eq!(
        reads[0].path,
        format!("{builds}?key={}", key(&bitbucketserver))
    );
    assert_eq!(writes[0].path, builds);
    for r in reads.iter().chain(&writes) {
        assert_eq!(header(r, "authorization"), "Bearer bbs-do-not-leak");
        assert_eq!(header(r, "x-atlassian-token"), "no-check");
        assert_eq!(header(r, "x-requested-with"), "XMLHttpRequest");
    }
    assert_eq!(
        statuses["bitbucketserver"][1],
        json!({
            "description": "reconciliation succeeded",
            "key": key(&bitbucketserver),
            "name": "kustomization/apps [reconciliation succeeded]",
            "state": "SUCCESSFUL",
            "url": bbs_address,
        })
    );
    assert_eq!(statuses["bitbucketserver"][0]["state"], "FAILED");
    assert_no_leak(&["gitea-do-not-leak", "bb-app-do-not-leak", "bbs-do-not-leak"]);
}
