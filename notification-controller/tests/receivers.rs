//! Webhook receivers end to end: the Receiver reconciler on testenv, and requests to the receiver server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use common::api::notification_v1::Receiver;
use common::api::source_v1::GitRepository;
use hmac::{Hmac, Mac};
use kube::api::{Api, Patch, PatchParams};
use notification_controller::controllers::receiver::webhook_path;
use support::{Fixture, fast_dispatch, poll, start};

const TOKEN: &str = "wh-t0ken-do-not-leak";

fn github_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn git_repository(fx: &Fixture, name: &str, labels: &str) {
    fx.apply::<GitRepository>(&format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: {name}, namespace: flux-system, labels: {{{labels}}}}}
spec:
  interval: 1m
  url: https://github.com/stefanprodan/podinfo
  ref: {{branch: master}}"
    ))
    .await;
}

async fn receiver(fx: &Fixture, name: &str, type_: &str, extra: &str) {
    fx.apply::<Receiver>(&format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {{name: {name}, namespace: flux-system}}
spec:
  type: {type_}
  secretRef: {{name: webhook-token}}
{extra}"
    ))
    .await;
}

fn ready(r: &Receiver) -> Option<(String, String, String)> {
    let c = r
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        c.status.as_str().to_owned(),
        c.reason.clone(),
        c.message.clone(),
    ))
}

async fn until_ready(fx: &Fixture, name: &str) -> String {
    let api: Api<Receiver> = Api::namespaced(fx.client.clone(), "flux-system");
    poll("receiver ready", 30, || async {
        let r = api.get(name).await.unwrap();
        ready(&r).is_some_and(|(status, _, _)| status == "True")
            && r.status
                .as_ref()
                .and_then(|s| s.webhook_path.as_ref())
                .is_some()
    })
    .await;
    let r = api.get(name).await.unwrap();
    r.status.and_then(|s| s.webhook_path).unwrap()
}

fn annotation(repo: &GitRepository) -> Option<String> {
    repo.metadata
        .annotations
        .as_ref()?
        .get("reconcile.fluxcd.io/requestedAt")
        .cloned()
}

fn git_patches(fx: &Fixture) -> Vec<String> {
    fx.env
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/gitrepositories/"))
        .map(|r| r.path)
        .collect()
}

fn url(fx: &Fixture, path: &str) -> String {
    format!("http://{}{path}", fx.controller.receiver_addr())
}

#[tokio::test]
async fn signed_github_push_requests_reconciliation() {
    let fx = start(&[], fast_dispatch()).await;
    fx.secret("webhook-token", &[("token", TOKEN)]).await;
    git_repository(&fx, "podinfo", "").await;
    receiver(
        &fx,
        "github",
        "github",
        "  events: [ping, push]\n  resources:\n    - kind: GitRepository\n      name: podinfo\n",
    )
    .await;
    let path = until_ready(&fx, "github").await;
    assert_eq!(path, webhook_path(TOKEN, "github", "flux-system"));
    let api: Api<Receiver> = Api::namespaced(fx.client.clone(), "flux-system");
    let (_, reason, message) = ready(&api.get("github").await.unwrap()).unwrap();
    assert_eq!(reason, "Succeeded");
    assert_eq!(message, format!("Receiver initialized for path: {path}"));

    let body = br#"{"ref":"refs/heads/master","after":"0123456789abcdef0123456789abcdef01234567"}"#;
    let response = reqwest::Client::new()
        .post(url(&fx, &path))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", github_signature(body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The annotation is written before the answer.
    let repos: Api<GitRepository> = Api::namespaced(fx.client.clone(), "flux-system");
    let requested = annotation(&repos.get("podinfo").await.unwrap()).expect("requestedAt set");
    assert!(requested.parse::<jiff::Timestamp>().is_ok(), "{requested}");
    assert_eq!(git_patches(&fx).len(), 1);

    // GitHub's ping is validated like a push and answered.
    let ping = br#"{"zen":"Keep it logically awesome."}"#;
    let response = reqwest::Client::new()
        .post(url(&fx, &path))
        .header("content-type", "application/json")
        .header("x-github-event", "ping")
        .header("x-hub-signature-256", github_signature(ping))
        .body(ping.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn refused_webhooks_write_nothing() {
    let fx = start(&[], fast_dispatch()).await;
    fx.secret("webhook-token", &[("token", TOKEN)]).await;
    git_repository(&fx, "podinfo", "").await;
    let resources = "  resources:\n    - kind: GitRepository\n      name: podinfo\n";
    receiver(
        &fx,
        "github",
        "github",
        &format!("  events: [push]\n{resources}"),
    )
    .await;
    receiver(&fx, "gitlab", "gitlab", resources).await;
    let github = until_ready(&fx, "github").await;
    let gitlab = until_ready(&fx, "gitlab").await;
    let client = reqwest::Client::new();
    let body = br#"{"ref":"refs/heads/master"}"#.to_vec();

    // Bad signature.
    let mut forged = body.clone();
    forged.extend_from_slice(b" ");
    let r = client
        .post(url(&fx, &github))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", github_signature(&body))
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // An event the Receiver does not take.
    let r = client
        .post(url(&fx, &github))
        .header("content-type", "application/json")
        .header("x-github-event", "issues")
        .header("x-hub-signature-256", github_signature(&body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Wrong GitLab token.
    let r = client
        .post(url(&fx, &gitlab))
        .header("x-gitlab-token", "guess")
        .header("x-gitlab-event", "Push Hook")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Oversize body.
    let huge = vec![b'x'; 3 * 1024 * 1024 + 1];
    let r = client
        .post(url(&fx, &gitlab))
        .header("x-gitlab-token", TOKEN)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Unknown path.
    let r = client
        .post(url(
            &fx,
            "/hook/0000000000000000000000000000000000000000000000000000000000000000",
        ))
        .header("x-gitlab-token", TOKEN)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(git_patches(&fx), Vec::<String>::new(), "nothing written");

    // Suspended: a correct request is refused once the suspension is seen.
    let receivers: Api<Receiver> = Api::namespaced(fx.client.clone(), "flux-system");
    receivers
        .patch(
            "gitlab",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    poll("suspended receiver answers 503", 10, || async {
        client
            .post(url(&fx, &gitlab))
            .header("x-gitlab-token", TOKEN)
            .header("x-gitlab-event", "Push Hook")
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status()
            == 503
    })
    .await;
    assert_eq!(git_patches(&fx), Vec::<String>::new(), "nothing written");
    // The token never shows in logs.
    let logs = String::from_utf8_lossy(&support::logs().lock().unwrap()).into_owned();
    assert!(!logs.contains(TOKEN));
}

#[tokio::test]
async fn missing_token_then_secret_created() {
    let fx = start(&[], fast_dispatch()).await;
    receiver(
        &fx,
        "generic",
        "generic",
        "  resources:\n    - kind: GitRepository\n      name: podinfo\n",
    )
    .await;
    let api: Api<Receiver> = Api::namespaced(fx.client.clone(), "flux-system");
    poll("TokenNotFound", 30, || async {
        ready(&api.get("generic").await.unwrap())
            .is_some_and(|(status, reason, _)| status == "False" && reason == "TokenNotFound")
    })
    .await;
    let r = api.get("generic").await.unwrap();
    assert_eq!(r.status.as_ref().unwrap().webhook_path, None);
    let (_, _, message) = ready(&r).unwrap();
    assert!(message.contains("flux-system/webhook-token"), "{message}");
    fx.secret("webhook-token", &[("token", TOKEN)]).await;
    let path = until_ready(&fx, "generic").await;
    assert_eq!(path, webhook_path(TOKEN, "generic", "flux-system"));
}

#[tokio::test]
async fn an_invalid_filter_expression_stalls_the_receiver() {
    let fx = start(&[], fast_dispatch()).await;
    fx.secret("webhook-token", &[("token", TOKEN)]).await;
    receiver(
        &fx,
        "filtered",
        "generic",
        "  resourceFilter: 'request.ref == \"main\"'\n  resources:\n    - kind: GitRepository\n      name: podinfo\n",
    )
    .await;
    let api: Api<Receiver> = Api::namespaced(fx.client.clone(), "flux-system");
    poll("stalled", 30, || async {
        let r = api.get("filtered").await.unwrap();
        let stalled = r
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Stalled" && c.status.as_str() == "True")
            });
        stalled
            && ready(&r).is_some_and(|(s, reason, message)| {
                s == "False"
                    && reason == "InvalidCELExpression"
                    && message.starts_with(
                        "Reconciliation failed terminally due to configuration error: invalid resourceFilter",
                    )
                    && message.contains("undeclared reference to 'request'")
            })
    })
    .await;
    let r = api.get("filtered").await.unwrap();
    assert!(
        r.status.and_then(|s| s.webhook_path).is_none(),
        "no webhook path while invalid"
    );
}

#[tokio::test]
async fn filters_decide_which_resources_are_annotated() {
    let fx = start(&[], fast_dispatch()).await;
    fx.secret("webhook-token", &[("token", TOKEN)]).await;
    git_repository(&fx, "app-main", "app: podinfo").await;
    git_repository(&fx, "app-dev", "app: podinfo").await;
    git_repository(&fx, "infra", "").await;
    // The top-level filter matches the pushed branch to the repository's name; `infra` also has its own filter.
    receiver(
        &fx,
        "filtered",
        "generic",
        "  resourceFilter: 'res.metadata.name.endsWith(req.ref.split(\"/\")[2]) || res.metadata.name == \"infra\"'
  resources:
    - apiVersion: source.toolkit.fluxcd.io/v1
      kind: GitRepository
      name: '*'
      matchLabels: {app: podinfo}
    - kind: GitRepository
      name: infra
      filter: 'has(req.infra) && req.infra == true'
",
    )
    .await;
    let path = until_ready(&fx, "filtered").await;
    let repos: Api<GitRepository> = Api::namespaced(fx.client.clone(), "flux-system");
    let post = |body: &'static str, json: bool| {
        let mut request = reqwest::Client::new().post(url(&fx, &path)).body(body);
        if json {
            request = request.header("content-type", "application/json; charset=utf-8");
        }
        request.send()
    };
    let annotated = || async {
        let mut names = Vec::new();
        for name in ["app-main", "app-dev", "infra"] {
            if annotation(&repos.get(name).await.unwrap()).is_some() {
                names.push(name);
            }
        }
        names
    };

    let response = post(r#"{"ref": "refs/heads/dev"}"#, true).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        annotated().await,
        ["app-dev"],
        "only the dev repository, and infra's own filter said no"
    );

    let response = post(r#"{"ref": "refs/heads/main", "infra": true}"#, true)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(annotated().await, ["app-main", "app-dev", "infra"]);

    // A body that is not JSON (by content type) is an empty `req`: the expression fails on the missing key,
    // which is an error (500), as in Flux; nothing more is annotated.
    let before = git_patches(&fx).len();
    let response = post(r#"{"ref": "refs/heads/main"}"#, false).await.unwrap();
    assert_eq!(response.status(), 500);
    // A JSON content type with a body that does not parse: 500 before any lookup.
    let response = post("not json", true).await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(git_patches(&fx).len(), before);
}

#[tokio::test]
async fn wildcard_with_match_labels_annotates_every_match() {
    let fx = start(&[], fast_dispatch()).await;
    fx.secret("webhook-token", &[("token", TOKEN)]).await;
    git_repository(&fx, "a", "app: podinfo").await;
    git_repository(&fx, "b", "app: podinfo").await;
    git_repository(&fx, "c", "app: other").await;
    receiver(
        &fx,
        "generic",
        "generic",
        "  resources:\n    - apiVersion: source.toolkit.fluxcd.io/v1\n      kind: GitRepository\n      name: '*'\n      matchLabels: {app: podinfo}\n",
    )
    .await;
    let path = until_ready(&fx, "generic").await;
    let r = reqwest::Client::new()
        .post(url(&fx, &path))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let repos: Api<GitRepository> = Api::namespaced(fx.client.clone(), "flux-system");
    assert!(annotation(&repos.get("a").await.unwrap()).is_some());
    assert!(annotation(&repos.get("b").await.unwrap()).is_some());
    assert!(annotation(&repos.get("c").await.unwrap()).is_none());
}
