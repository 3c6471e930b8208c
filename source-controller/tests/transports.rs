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
async fn mutual_tls() {
    let repos = GitRepos::new();
    let sha = repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "init");
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default().require_client_cert(),
    )
    .await
    .unwrap();
    let with_basic = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default()
            .require_client_cert()
            .basic_auth("git", "mtls-pass-1"),
    )
    .await
    .unwrap();
    let proxy = HttpProxy::start(ProxyOptions::default()).await.unwrap();
    let ca = server.ca_pem().unwrap().to_string();
    let client = server.client_certificate("riptide").unwrap();
    let basic_ca = with_basic.ca_pem().unwrap().to_string();
    let basic_client = with_basic.client_certificate("riptide").unwrap();
    // A certificate for the right name, issued by a CA the server does not know.
    let intruder = testenv::tls::Certificates::generate()
        .unwrap()
        .client_certificate("riptide")
        .unwrap();

    let fx = Fixture::start().await;
    let url = server.url("app.git");
    let mtls = [
        ("ca.crt", ca.as_str()),
        ("tls.crt", client.cert_pem.as_str()),
        ("tls.key", client.key_pem.as_str()),
    ];
    fx.secret("mtls", &mtls).await;
    fx.secret("ca-only", &[("ca.crt", &ca)]).await;
    fx.secret(
        "wrong-cert",
        &[
            ("ca.crt", &ca),
            ("tls.crt", &intruder.cert_pem),
            ("tls.key", &intruder.key_pem),
        ],
    )
    .await;
    fx.secret("no-key", &[("ca.crt", &ca), ("tls.crt", &client.cert_pem)])
        .await;
    fx.secret("proxy", &[("address", &proxy.url())]).await;
    let basic = |password: &'static str| {
        [
            ("ca.crt", basic_ca.clone()),
            ("tls.crt", basic_client.cert_pem.clone()),
            ("tls.key", basic_client.key_pem.clone()),
            ("username", "git".to_string()),
            ("password", password.to_string()),
        ]
    };
    for (name, password) in [("basic", "mtls-pass-1"), ("basic-wrong", "mtls-bad-2")] {
        let data = basic(password);
        let data: Vec<(&str, &str)> = data.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fx.secret(name, &data).await;
    }
    for (name, secret, proxy_secret, url) in [
        ("mtls", "mtls", None, url.clone()),
        ("ca-only", "ca-only", None, url.clone()),
        ("wrong-cert", "wrong-cert", None, url.clone()),
        ("no-key", "no-key", None, url.clone()),
        ("via-proxy", "mtls", Some("proxy"), url.clone()),
        ("basic", "basic", None, with_basic.url("app.git")),
        (
            "basic-wrong",
            "basic-wrong",
            None,
            with_basic.url("app.git"),
        ),
    ] {
        fx.create(name, on_main(&url, Some(secret), proxy_secret))
            .await;
    }
    let hang = GitHttpServer::start_hanging().await.unwrap();
    let mut hanging = on_main(
        &format!("https://{}/app.git", hang.addr()),
        Some("mtls"),
        None,
    );
    hanging.timeout = "1s".to_string();
    fx.create("hanging", hanging).await;

    // The client certificate gets the repository, through the ls-remote and the fetch.
    let obj = fx.wait_ready("mtls").await;
    assert_eq!(revision(&obj), format!("main@sha1:{sha}"));
    let (status, _, body) = download(&obj.artifact().unwrap().url).await;
    assert_eq!(status, 200);
    assert_eq!(tar_paths(&body), vec!["a.yaml".to_string()]);
    let log = server.access_log();
    assert!(
        log.iter()
            .any(|r| r.method == "GET" && r.path == "/app.git/info/refs" && r.status == 200),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|r| r.method == "POST" && r.path == "/app.git/git-upload-pack" && r.status == 200),
        "{log:?}"
    );
    // Nothing changed: the ls-remote alone (through the gateway too) keeps the artifact.
    let obj = fx.request_reconcile("mtls", "noop-1").await;
    assert_eq!(ready(&obj).0, "True");
    assert_eq!(revision(&obj), format!("main@sha1:{sha}"));
    // A new commit is seen and fetched.
    let next = repos.commit("app.git", "main", &[("b.yaml", "b: 2\n")], "second");
    let obj = fx.request_reconcile("mtls", "new-1").await;
    assert_eq!(ready(&obj).0, "True", "{:?}", ready(&obj));
    assert_eq!(revision(&obj), format!("main@sha1:{next}"));
    assert_no_secrets(&fx, &obj, &[&pem_line(&client.key_pem)]);

    // Through a proxy: the gateway tunnels with CONNECT.
    let obj = fx.wait_ready("via-proxy").await;
    assert!(revision(&obj).starts_with("main@sha1:"));
    assert!(
        proxy.requests().iter().any(|r| r.method == "CONNECT"
            && r.target == server.addr().to_string()
            && r.status == 200),
        "{:?}",
        proxy.requests()
    );

    // Client certificate and basic auth together.
    let obj = fx.wait_ready("basic").await;
    assert!(revision(&obj).starts_with("main@sha1:"));
    let (reason, message) = fetch_failure(&fx, "basic-wrong").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(
        message.starts_with("failed to checkout and determine revision: "),
        "{message}"
    );
    assert!(
        with_basic.access_log().iter().any(|r| r.status == 401),
        "the server refused the wrong password"
    );

    // Without a client certificate libgit2 goes direct and the server refuses the handshake.
    let (reason, message) = fetch_failure(&fx, "ca-only").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(
        message.starts_with("failed to checkout and determine revision: SSL error"),
        "{message}"
    );

    // A certificate from another CA: the server's refusal is reported, naming the remote (not the gateway).
    let (reason, message) = fetch_failure(&fx, "wrong-cert").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(
        message.starts_with(&format!(
            "failed to checkout and determine revision: request to '{url}' failed: "
        )),
        "{message}"
    );
    assert!(message.contains("received fatal alert"), "{message}");

    let (reason, message) = stalled(&fx, "no-key").await;
    assert_eq!(reason, "AuthenticationFailed");
    assert_eq!(
        message,
        "failed to configure authentication options: invalid 'https' auth option: 'tls.key' is required"
    );

    // A remote that never answers: cut at spec.timeout, gateway and all.
    let (reason, message) = fetch_failure(&fx, "hanging").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(message.contains("timed out"), "{message}");

    for name in [
        "hanging",
        "mtls",
        "ca-only",
        "wrong-cert",
        "no-key",
        "via-proxy",
        "basic",
        "basic-wrong",
    ] {
        let obj = fx.get(name).await;
        assert_no_secrets(
            &fx,
            &obj,
            &[
                &pem_line(&client.key_pem),
                &pem_line(&intruder.key_pem),
                &pem_line(&basic_client.key_pem),
                "mtls-pass-1",
                "mtls-bad-2",
            ],
        );
        for c in conditions_of(&obj) {
            assert!(
                !c.message.contains("http://127.0.0.1"),
                "{name}: the gateway's address in '{}'",
                c.message
            );
        }
    }
    fx.shutdown().await;
    proxy.shutdown().await;
    server.shutdown().await;
    with_basic.shutdown().await;
    hang.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_submodules() {
    let repos = GitRepos::new();
    repos.commit("base.git", "main", &[("base.yaml", "base: 1\n")], "base");
    repos.commit("lib.git", "main", &[("lib.yaml", "lib: 1\n")], "lib");
    // A nested submodule with a relative URL: resolved against lib's real URL, not the gateway's.
    let lib = repos.add_submodule_relative("lib.git", "base.git", "base");
    repos.commit("app.git", "main", &[("app.yaml", "app: 1\n")], "app");
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default().require_client_cert(),
    )
    .await
    .unwrap();
    repos.add_submodule_url("app.git", &server.url("lib.git"), &lib, "vendor/lib");
    let client = server.client_certificate("riptide").unwrap();
    let fx = Fixture::start().await;
    fx.secret(
        "mtls",
        &[
            ("ca.crt", server.ca_pem().unwrap()),
            ("tls.crt", &client.cert_pem),
            ("tls.key", &client.key_pem),
        ],
    )
    .await;
    let mut s = on_main(&server.url("app.git"), Some("mtls"), None);
    s.recurse_submodules = Some(true);
    fx.create("app", s).await;
    let obj = fx.wait_ready("app").await;
    let (_, _, body) = download(&obj.artifact().unwrap().url).await;
    let paths = tar_paths(&body);
    assert!(
        paths.contains(&"vendor/lib/lib.yaml".to_string()),
        "{paths:?}"
    );
    assert!(paths.contains(&"app.yaml".to_string()), "{paths:?}");
    assert!(
        paths.contains(&"vendor/lib/base/base.yaml".to_string()),
        "{paths:?}"
    );
    for repo in ["lib.git", "base.git"] {
        assert!(
            server
                .access_log()
                .iter()
                .any(|r| r.path == format!("/{repo}/git-upload-pack") && r.status == 200),
            "{repo} was fetched with the client certificate: {:?}",
            server.access_log()
        );
    }
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
        "http-wrong-proxy-credentials",
        on_main(&http.url("app.git"), None, Some("proxy-wrong")),
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

    // Plain HTTP goes through the proxy too (libgit2 alone would connect to the remote directly).
    let obj = fx.wait_ready("http-via-proxy").await;
    assert_eq!(revision(&obj), format!("main@sha1:{sha}"));
    let log = proxy.requests();
    let target = http.addr().to_string();
    for method in ["GET", "POST"] {
        assert!(
            log.iter()
                .any(|r| r.method == method && r.target == target && r.status == 200),
            "{method} forwarded by the proxy: {log:?}"
        );
    }
    assert!(
        http.access_log()
            .iter()
            .any(|r| r.method == "POST" && r.status == 200),
        "the pack came through the proxy"
    );
    assert_eq!(
        http.access_log().len(),
        log.iter()
            .filter(|r| r.target == target && r.status != 407)
            .count(),
        "every request the remote answered went through the proxy"
    );

    let (reason, message) = fetch_failure(&fx, "http-wrong-proxy-credentials").await;
    assert_eq!(reason, "GitOperationFailed");
    assert_eq!(
        message,
        format!(
            "failed to checkout and determine revision: request to '{}' failed: proxy authentication required",
            http.url("app.git")
        )
    );

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

    fx.shutdown().await;
    proxy.shutdown().await;
    https.shutdown().await;
    http.shutdown().await;
}
