//! Events from every controller to providers, end to end: testenv, the controller in-process, the common
//! EventRecorder as producer, and webhook sinks on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use common::api::notification_v1beta3::{Alert, Provider};
use common::events::{EventRecorder, Severity};
use k8s_openapi::api::core::v1::ObjectReference;
use support::{Fixture, Mode, Sink, fast_dispatch, poll, start};

const SLACK_PATH: &str = "/services/T0000/B0000/s3cr3t-hook-path";

fn object(api_version: &str, kind: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        name: Some(name.into()),
        namespace: Some("flux-system".into()),
        uid: Some("7b4c2d1e-0000-4000-8000-000000000001".into()),
        ..Default::default()
    }
}

fn kustomization(name: &str) -> ObjectReference {
    object("kustomize.toolkit.fluxcd.io/v1", "Kustomization", name)
}

fn git_repository(name: &str) -> ObjectReference {
    object("source.toolkit.fluxcd.io/v1", "GitRepository", name)
}

fn recorder(controller: &str, fx: &Fixture) -> EventRecorder {
    EventRecorder::new(controller, None, Some(&fx.events_url())).unwrap()
}

async fn slack_provider(fx: &Fixture, sink: &Sink, name: &str, extra: &str) {
    fx.secret(
        &format!("{name}-url"),
        &[
            ("address", &sink.url(SLACK_PATH)),
            ("token", "xoxb-do-not-leak"),
        ],
    )
    .await;
    let provider: Provider = fx
        .apply::<Provider>(&format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: {name}, namespace: flux-system}}
spec:
  type: slack
  channel: general
  secretRef: {{name: {name}-url}}
{extra}"
        ))
        .await;
    let generation = provider.metadata.generation.unwrap_or(0);
    poll("provider cached", 10, || async {
        fx.controller
            .dispatcher()
            .knows_provider("flux-system", name, generation)
    })
    .await;
}

async fn alert(fx: &Fixture, name: &str, provider: &str, extra: &str) {
    let alert: Alert = fx
        .apply::<Alert>(&format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: {name}, namespace: flux-system}}
spec:
  providerRef: {{name: {provider}}}
  eventSources:
    - kind: GitRepository
      name: '*'
    - kind: Kustomization
      name: '*'
{extra}"
        ))
        .await;
    let generation = alert.metadata.generation.unwrap_or(0);
    poll("alert cached", 10, || async {
        fx.controller
            .dispatcher()
            .knows_alert("flux-system", name, generation)
    })
    .await;
}

fn revision(group: &str, rev: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(format!("{group}/revision"), rev.to_owned())])
}

/// Waits until the controller's caches hold `alerts` Alerts (events before that wait in the queue, but tests
/// that count "not posted" need the matcher to see them).
async fn until_delivered(fx: &Fixture, sink: &Sink, n: usize) {
    poll("posts arrive", 30, || async { sink.count() >= n }).await;
    fx.settle(0).await;
}

#[tokio::test]
async fn controller_events_reach_slack_with_flux_payload() {
    let fx = start(&[], fast_dispatch()).await;
    let sink = Sink::start(Mode::Ok).await;
    slack_provider(&fx, &sink, "slack", "").await;
    alert(
        &fx,
        "on-call",
        "slack",
        "  eventMetadata: {cluster: prod}\n",
    )
    .await;

    let source = recorder("source-controller", &fx);
    let kustomize = recorder("kustomize-controller", &fx);
    let rev = "main@sha1:0123456789abcdef0123456789abcdef01234567";
    let mut meta = revision("source.toolkit.fluxcd.io", rev);
    meta.insert("source.toolkit.fluxcd.io/checksum".into(), "dropped".into());
    source
        .publish(
            &git_repository("podinfo"),
            Severity::Info,
            "NewArtifact",
            "stored artifact for commit 'Add podinfo'",
            meta,
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    poll("NewArtifact posted", 30, || async { sink.count() == 1 }).await;
    kustomize
        .publish(
            &kustomization("apps"),
            Severity::Info,
            "ReconciliationSucceeded",
            "Deployment/default/podinfo configured",
            revision("kustomize.toolkit.fluxcd.io", rev),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    poll("applied posted", 30, || async { sink.count() == 2 }).await;
    kustomize
        .publish(&kustomization("apps"), Severity::Error, "HealthCheckFailed",
            "health check failed after 30s: timeout waiting for: [Deployment/default/podinfo status: 'InProgress']",
            revision("kustomize.toolkit.fluxcd.io", rev))
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    poll("failure posted", 30, || async { sink.count() == 3 }).await;

    let posts = sink.posts();
    for post in &posts {
        assert_eq!(post.path, SLACK_PATH);
        assert_eq!(post.headers["authorization"], "Bearer xoxb-do-not-leak");
        assert_eq!(post.headers["content-type"], "application/json");
    }
    let first = posts[0].json();
    assert_eq!(first["channel"], "general");
    assert_eq!(first["username"], "source-controller");
    let attachment = &first["attachments"][0];
    assert_eq!(attachment["color"], "good");
    assert_eq!(
        attachment["author_name"],
        "gitrepository/podinfo.flux-system"
    );
    assert_eq!(
        attachment["text"],
        "stored artifact for commit 'Add podinfo'"
    );
    assert_eq!(
        attachment["fields"],
        serde_json::json!([
            {"title": "cluster", "value": "prod", "short": false},
            {"title": "revision", "value": rev, "short": false},
        ]),
        "checksum dropped, Alert metadata merged"
    );
    let failed = posts[2].json();
    assert_eq!(failed["username"], "kustomize-controller");
    assert_eq!(failed["attachments"][0]["color"], "danger");
    assert_eq!(
        failed["attachments"][0]["author_name"],
        "kustomization/apps.flux-system"
    );
    for post in &posts {
        let body = String::from_utf8_lossy(&post.body);
        assert!(
            !body.contains("xoxb-do-not-leak") && !body.contains("s3cr3t"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn ten_thousand_identical_events_make_one_post() {
    let fx = start(&[], fast_dispatch()).await;
    let sink = Sink::start(Mode::Ok).await;
    slack_provider(&fx, &sink, "slack", "").await;
    alert(&fx, "on-call", "slack", "").await;
    let body = serde_json::json!({
        "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                           "name": "apps", "namespace": "flux-system"},
        "severity": "error", "timestamp": "2026-11-21T14:00:00Z",
        "message": "kustomize build failed: missing resource", "reason": "BuildFailed",
        "metadata": {"kustomize.toolkit.fluxcd.io/revision": "main@sha1:abc"},
        "reportingController": "kustomize-controller",
    })
    .to_string();
    let client = reqwest::Client::new();
    let url = Arc::new(fx.events_url());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut codes = BTreeMap::<u16, usize>::new();
            for _ in 0..10_000 / 32 + 1 {
                let status = client
                    .post(url.as_str())
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .status();
                *codes.entry(status.as_u16()).or_default() += 1;
            }
            codes
        }));
    }
    let mut codes = BTreeMap::<u16, usize>::new();
    for task in tasks {
        for (code, n) in task.await.unwrap() {
            *codes.entry(code).or_default() += n;
        }
    }
    let sent: usize = codes.values().sum();
    println!(
        "{sent} identical events in {:?}: {codes:?}",
        started.elapsed()
    );
    assert!(sent >= 10_000);
    assert_eq!(codes.get(&202), Some(&1), "{codes:?}");
    assert_eq!(codes.get(&429), Some(&(sent - 1)), "{codes:?}");
    until_delivered(&fx, &sink, 1).await;
    fx.settle(1).await;
    assert_eq!(sink.count(), 1);
    assert_eq!(
        fx.controller.dispatcher().stats().processed.load(Relaxed),
        1
    );
}

#[tokio::test]
async fn severity_inclusion_and_exclusion_filters() {
    let fx = start(&[], fast_dispatch()).await;
    let sink = Sink::start(Mode::Ok).await;
    slack_provider(&fx, &sink, "slack", "").await;
    alert(
        &fx,
        "errors",
        "slack",
        "  eventSeverity: error\n  inclusionList: ['.*failed.*']\n  exclusionList: ['timeout', '([']\n",
    )
    .await;
    let kustomize = recorder("kustomize-controller", &fx);
    let send = |severity, reason: &'static str, message: &'static str| {
        let k = kustomize.clone();
        async move {
            k.publish(
                &kustomization("apps"),
                severity,
                reason,
                message,
                BTreeMap::new(),
            )
            .await
            .unwrap()
            .await
            .unwrap()
            .unwrap();
        }
    };
    send(
        Severity::Info,
        "ReconciliationSucceeded",
        "applied: all failed checks fixed",
    )
    .await; // severity
    send(Severity::Error, "BuildFailed", "kustomize build error").await; // not included
    send(
        Severity::Error,
        "HealthCheckFailed",
        "health check failed: timeout",
    )
    .await; // excluded
    send(
        Severity::Error,
        "HealthCheckFailed",
        "health check failed: CrashLoopBackOff",
    )
    .await; // posted
    fx.settle(4).await;
    let posts = sink.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(
        posts[0].json()["attachments"][0]["text"],
        "health check failed: CrashLoopBackOff"
    );
    poll("InvalidConfig warning", 30, || async {
        fx.events_for("errors", "InvalidConfig")
            .await
            .iter()
            .any(|(t, note)| t == "Warning" && note == "failed to compile exclusion regex: ([")
    })
    .await;
}

#[tokio::test]
async fn failing_provider_retries_bounded_and_reports_without_secrets() {
    let fx = start(&[], fast_dispatch()).await;
    let sink = Sink::start(Mode::Fail).await;
    slack_provider(&fx, &sink, "broken", "  timeout: 5s\n").await;
    alert(&fx, "on-call", "broken", "").await;
    recorder("kustomize-controller", &fx)
        .publish(
            &kustomization("apps"),
            Severity::Error,
            "BuildFailed",
            "build failed",
            BTreeMap::new(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    poll("NotificationDispatchFailed on the Alert", 30, || async {
        !fx.events_for("on-call", "NotificationDispatchFailed")
            .await
            .is_empty()
    })
    .await;
    fx.settle(1).await;
    assert_eq!(sink.count(), 3, "3 attempts, then give up");
    let events = fx.events_for("on-call", "NotificationDispatchFailed").await;
    let (type_, note) = &events[0];
    assert_eq!(type_, "Warning");
    assert!(
        note.starts_with("failed to send notification for Kustomization/flux-system/apps:"),
        "{note}"
    );
    assert!(note.contains("500"), "{note}");
    let logs = String::from_utf8_lossy(&support::logs().lock().unwrap()).into_owned();
    assert!(
        logs.contains("failed to send notification"),
        "errors are logged"
    );
    for secret in ["xoxb-do-not-leak", "s3cr3t-hook-path"] {
        assert!(!note.contains(secret), "{note}");
        assert!(!logs.contains(secret), "secret {secret} in logs");
    }
}

#[tokio::test]
async fn hanging_provider_blocks_neither_intake_nor_other_providers() {
    let mut dispatch = fast_dispatch();
    dispatch.provider_queue_capacity = 8;
    let fx = start(&[], dispatch).await;
    let dead = Sink::start(Mode::Hang).await;
    let alive = Sink::start(Mode::Ok).await;
    slack_provider(&fx, &dead, "dead", "  timeout: 30s\n").await;
    slack_provider(&fx, &alive, "alive", "").await;
    alert(&fx, "to-dead", "dead", "").await;
    alert(&fx, "to-alive", "alive", "").await;
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    let n = 200;
    for i in 0..n {
        let body = serde_json::json!({
            "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                               "name": "apps", "namespace": "flux-system"},
            "severity": "info", "timestamp": "2026-11-21T14:00:00Z",
            "message": format!("applied revision {i}"), "reason": "ReconciliationSucceeded",
            "reportingController": "kustomize-controller",
        });
        let started = Instant::now();
        let status = client
            .post(fx.events_url())
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        latencies.push(started.elapsed());
        assert_eq!(status, 202);
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    println!(
        "intake while a provider hangs: p50 {:?}, p99 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        p99,
        latencies[latencies.len() - 1]
    );
    poll("the healthy provider gets every event", 30, || async {
        alive.count() == n
    })
    .await;
    // The dead provider holds 4 hanging requests and 8 queued; the rest were dropped and reported.
    poll("drops reported on the Alert", 30, || async {
        fx.events_for("to-dead", "NotificationDispatchFailed")
            .await
            .iter()
            .any(|(_, note)| note.contains("notification dropped"))
    })
    .await;
    assert!(
        dead.count() <= 4,
        "at most the concurrency limit in flight: {}",
        dead.count()
    );
}
