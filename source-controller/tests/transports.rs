//! GitRepository over HTTPS and through a proxy, against real servers on loopback: git's own `git http-backend`
//! behind TLS (a CA generated per server, optionally requiring client certificates) or a bearer token, and a
//! forward proxy (CONNECT for https, absolute-form forwarding for http) that logs what went through it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod support;

use common::api::meta::LocalObjectReference;
use common::api::source_v1::{GitRepository, GitRepositoryRef, GitRepositorySpec};
use support::*;
use testenv::git_http::{GitHttpOptions, GitHttpServer};
use testenv::proxy::{HttpProxy, ProxyOptions};

/// `spec.url` on branch `main`, with an optional `secretRef` and `proxySecretRef`.
fn on_main(url: &str, secret: Option<&str>, proxy: Option<&str>) -> GitRepositorySpec {
    let mut s = spec(url);
    s.reference = Some(GitRepositoryRef {
        branch: Some("main".into()),
        ..Default::default()
    });
    s.secret_ref = secret.map(|name| LocalObjectReference { name: name.into() });
    s.proxy_secret_ref = proxy.map(|name| LocalObjectReference { name: name.into() });
    s
}

/// Waits for `FetchFailed` and returns its (reason, message), checking Ready=False, a retry and no artifact.
async fn fetch_failure(fx: &Fixture, name: &str) -> (String, String) {
    let obj = fx
        .wait(name, |o| condition(o, "FetchFailed").is_some())
        .await;
    let (status, reason, message) = condition(&obj, "FetchFailed").unwrap();
    assert_eq!(status, "True");
    assert_eq!(ready(&obj).0, "False", "{name}");
    assert_eq!(ready(&obj).2, message, "{name}: Ready says why");
    assert_eq!(
        condition(&obj, "Reconciling").unwrap().1,
        "ProgressingWithRetry",
        "{name}"
    );
    assert!(obj.artifact().is_none(), "{name}");
    (reason, message)
}

/// Waits for `Stalled` and returns (reason, message), checking Ready=False with the same message.
async fn stalled(fx: &Fixture, name: &str) -> (String, String) {
    let obj = fx.wait(name, |o| condition(o, "Stalled").is_some()).await;
    let (status, reason, message) = condition(&obj, "Stalled").unwrap();
    assert_eq!(status, "True");
    assert_eq!(
        ready(&obj),
        ("False".into(), reason.clone(), message.clone())
    );
    assert!(condition(&obj, "Reconciling").is_none(), "{name}");
    (reason, message)
}

fn revision(obj: &GitRepository) -> String {
    obj.artifact().unwrap().revision.clone()
}

#[tokio::test]
async fn https_with_custom_ca() {
    let repos = GitRepos::new();
    let sha = repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "init");
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default()
            .tls()
            .basic_auth("git", "tls-pass-1"),
    )
    .await
    .unwrap();
    let ca = server.ca_pem().unwrap().to_string();
    let other_ca = testenv::tls::Certificates::generate().unwrap().ca_pem;
    assert!(server.url("app.git").starts_with("https://127.0.0.1:"));

    let fx = Fixture::start().await;
    let creds = [("username", "git"), ("password", "tls-pass-1")];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
        creds
            .iter()
            .chain(extra)
            .map(|(k, v)| (*k, v.to_string()))
            .collect()
    };
    for (name, data) in [
        ("ca", with(&[("ca.crt", &ca)])),
        ("legacy-ca", with(&[("caFile", &ca)])),
        ("ca-wins", with(&[("ca.crt", &ca), ("caFile", &other_ca)])),
        ("no-ca", with(&[])),
        ("wrong-ca", with(&[("ca.crt", &other_ca)])),
        ("garbage-ca", with(&[("ca.crt", "not a certificate")])),
    ] {
        let data: Vec<(&str, &str)> = data.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fx.secret(name, &data).await;
        fx.create(name, on_main(&server.url("app.git"), Some(name), None))
            .await;
    }

    for name in ["ca", "legacy-ca", "ca-wins"] {
        let obj = fx.wait_ready(name).await;
        assert_eq!(revision(&obj), format!("main@sha1:{sha}"), "{name}");
        assert_eq!(download(&obj.artifact().unwrap().url).await.0, 200);
    }
    assert!(
        server
            .access_log()
            .iter()
            .any(|r| r.method == "POST" && r.status == 200),
        "the pack was fetched over TLS: {:?}",
        server.access_log()
    );

    let (reason, message) = fetch_failure(&fx, "no-ca").await;
    assert_eq!(reason, "GitOperationFailed");
    assert_eq!(
        message,
        "failed to checkout and determine revision: the SSL certificate is invalid"
    );
    assert!(!message.contains("tls-pass-1"), "{message}");

    let (reason, message) = fetch_failure(&fx, "wrong-ca").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(
        message.contains("certificate not trusted by the given CA"),
        "{message}"
    );
    assert!(!message.contains("tls-pass-1"), "{message}");

    let (reason, message) = stalled(&fx, "garbage-ca").await;
    assert_eq!(reason, "AuthenticationFailed");
    assert_eq!(
        message,
        "failed to configure authentication options: invalid 'ca.crt': no PEM certificate found"
    );
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn bearer_token() {
    let repos = GitRepos::new();
    let sha = repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "init");
    repos.tag("app.git", "v1.0.0");
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default().bearer_token("tok-right-123"),
    )
    .await
    .unwrap();
    let fx = Fixture::start().await;
    fx.secret("right", &[("bearerToken", "tok-right-123")])
        .await;
    fx.secret("wrong", &[("bearerToken", "tok-wrong-456")])
        .await;
    // As in Flux, a bearer token replaces basic auth.
    fx.secret(
        "token-and-basic",
        &[
            ("bearerToken", "tok-right-123"),
            ("username", "git"),
            ("password", "unused"),
        ],
    )
    .await;
    fx.secret("header-injection", &[("bearerToken", "tok\r\nX-Evil: 1")])
        .await;
    let url = server.url("app.git");
    fx.create("right", on_main(&url, Some("right"), None)).await;
    let mut tag = on_main(&url, Some("right"), None);
    tag.reference = Some(GitRepositoryRef {
        tag: Some("v1.0.0".into()),
        ..Default::default()
    });
    fx.create("right-tag", tag).await;
    fx.create(
        "token-and-basic",
        on_main(&url, Some("token-and-basic"), None),
    )
    .await;
    fx.create("wrong", on_main(&url, Some("wrong"), None)).await;
    fx.create("anonymous", on_main(&url, None, None)).await;
    fx.create(
        "header-injection",
        on_main(&url, Some("header-injection"), None),
    )
    .await;

    for (name, rev) in [
        ("right", format!("main@sha1:{sha}")),
        ("right-tag", format!("v1.0.0@sha1:{sha}")),
        ("token-and-basic", format!("main@sha1:{sha}")),
    ] {
        assert_eq!(revision(&fx.wait_ready(name).await), rev, "{name}");
    }
    for name in ["wrong", "anonymous"] {
        let (reason, message) = fetch_failure(&fx, name).await;
        assert_eq!(reason, "GitOperationFailed", "{name}");
        assert!(
            message.starts_with("failed to checkout and determine revision: "),
            "{message}"
        );
        assert!(!message.contains("tok-"), "no token in '{message}'");
    }
    assert!(
        server.access_log().iter().any(|r| r.status == 401),
        "the server refused the wrong token"
    );
    let (reason, message) = stalled(&fx, "header-injection").await;
    assert_eq!(reason, "AuthenticationFailed");
    assert_eq!(
        message,
        "failed to configure authentication options: invalid 'bearerToken' value: contains control characters"
    );
    let events = fx.events_for("wrong");
    assert!(
        events.iter().all(|e| !e.message.contains("tok-")),
        "no token in events: {events:?}"
    );
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_is_refused_clearly() {
    let repos = GitRepos::new();
    repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "init");
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default().require_client_cert(),
    )
    .await
    .unwrap();
    let ca = server.ca_pem().unwrap().to_string();
    let client = server.client_certificate("riptide").unwrap();

    // The server really does mutual TLS: a client with a certificate from its CA gets the refs, one without
    // fails the handshake.
    let info_refs = format!(
        "{}/info/refs?service=git-upload-pack",
        server.url("app.git")
    );
    let root = reqwest::Certificate::from_pem(ca.as_bytes()).unwrap();
    let identity =
        reqwest::Identity::from_pem(format!("{}{}", client.cert_pem, client.key_pem).as_bytes())
            .unwrap();
    let with_cert = reqwest::Client::builder()
        .tls_certs_only([root.clone()])
        .identity(identity)
        .build()
        .unwrap();
    let response = with_cert.get(&info_refs).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let without_cert = reqwest::Client::builder()
        .tls_certs_only([root])
        .build()
        .unwrap();
    assert!(without_cert.get(&info_refs).send().await.is_err());
    server.clear_access_log();

    let fx = Fixture::start().await;
    fx.secret(
        "mtls",
        &[
            ("ca.crt", &ca),
            ("tls.crt", &client.cert_pem),
            ("tls.key", &client.key_pem),
        ],
    )
    .await;
    fx.secret("ca-only", &[("ca.crt", &ca)]).await;
    fx.create("mtls", on_main(&server.url("app.git"), Some("mtls"), None))
        .await;
    fx.create(
        "ca-only",
        on_main(&server.url("app.git"), Some("ca-only"), None),
    )
    .await;

    // libgit2 cannot present a client certificate: the spec is refused, naming the keys, not silently ignored.
    let (reason, message) = stalled(&fx, "mtls").await;
    assert_eq!(reason, "AuthenticationFailed");
    assert_eq!(
        message,
        "failed to configure authentication options: client certificate authentication ('tls.crt'/'tls.key') \
         is not supported: libgit2, which fetches the repository, has no per-connection client certificate option"
    );
    // Without a client certificate the server refuses the connection.
    let (reason, message) = fetch_failure(&fx, "ca-only").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(
        message.starts_with("failed to checkout and determine revision: SSL error"),
        "{message}"
    );
    assert!(server.access_log().is_empty(), "no request got through");
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn proxy_secret_ref() {
    let repos = GitRepos::new();
    let sha = repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "init");
    let https = GitHttpServer::start(repos.root.path(), GitHttpOptions::default().tls())
        .await
        .unwrap();
    let http = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let proxy = HttpProxy::start(ProxyOptions::default().basic_auth("proxy-user", "proxy-pass-1"))
        .await
        .unwrap();

    let fx = Fixture::start().await;
    let address = proxy.url();
    fx.secret("ca", &[("ca.crt", https.ca_pem().unwrap())])
        .await;
    fx.secret(
        "proxy",
        &[
            ("address", &address),
            ("username", "proxy-user"),
            ("password", "proxy-pass-1"),
        ],
    )
    .await;
    fx.secret(
        "proxy-wrong",
        &[
            ("address", &address),
            ("username", "proxy-user"),
            ("password", "proxy-bad-2"),
        ],
    )
    .await;
    fx.secret("proxy-no-address", &[("username", "proxy-user")])
        .await;
    fx.create(
        "https-via-proxy",
        on_main(&https.url("app.git"), Some("ca"), Some("proxy")),
    )
    .await;
    fx.create(
        "http-via-proxy",
        on_main(&http.url("app.git"), None, Some("proxy")),
    )
    .await;
    fx.create(
        "wrong-proxy-credentials",
        on_main(&https.url("app.git"), Some("ca"), Some("proxy-wrong")),
    )
    .await;
    fx.create(
        "proxy-without-address",
        on_main(&https.url("app.git"), Some("ca"), Some("proxy-no-address")),
    )
    .await;

    let obj = fx.wait_ready("https-via-proxy").await;
    assert_eq!(revision(&obj), format!("main@sha1:{sha}"));
    let log = proxy.requests();
    assert!(
        log.iter().any(|r| r.method == "CONNECT"
            && r.target == https.addr().to_string()
            && r.status == 200),
        "https tunnelled through the proxy: {log:?}"
    );
    assert!(
        https
            .access_log()
            .iter()
            .any(|r| r.method == "POST" && r.status == 200),
        "and the pack fetched through the tunnel"
    );

    // libgit2 does not route plain-HTTP remotes through a proxy (it would connect to the remote directly):
    // refused clearly rather than silently bypassing the proxy.
    let (reason, message) = stalled(&fx, "http-via-proxy").await;
    assert_eq!(reason, "AuthenticationFailed");
    assert_eq!(
        message,
        "failed to configure proxy options: a proxy is only supported for 'https' URLs: libgit2 sends 'http' \
         requests directly to the remote, bypassing the proxy"
    );
    assert!(http.access_log().is_empty(), "nothing bypassed the proxy");

    let (reason, message) = fetch_failure(&fx, "wrong-proxy-credentials").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(
        message.contains("proxy authentication required"),
        "{message}"
    );
    assert!(
        !message.contains("proxy-bad-2") && !message.contains("proxy-pass-1"),
        "no proxy password in '{message}'"
    );
    assert!(
        proxy.requests().iter().any(|r| r.status == 407),
        "the proxy refused the wrong credentials"
    );

    let (reason, message) = fetch_failure(&fx, "proxy-without-address").await;
    assert_eq!(reason, "AuthenticationFailed");
    assert_eq!(
        message,
        "failed to configure proxy options: secret 'default/proxy-no-address': key 'address' not found"
    );

    // The test proxy forwards plain HTTP too (absolute-form requests), e.g. for HTTP clients other than libgit2.
    let client = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::http(proxy.url())
                .unwrap()
                .basic_auth("proxy-user", "proxy-pass-1"),
        )
        .build()
        .unwrap();
    let response = client
        .get(format!(
            "{}/info/refs?service=git-upload-pack",
            http.url("app.git")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.target == http.addr().to_string() && r.status == 200),
        "{:?}",
        proxy.requests()
    );
    fx.shutdown().await;
    proxy.shutdown().await;
    https.shutdown().await;
    http.shutdown().await;
}
