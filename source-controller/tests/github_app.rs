//! `spec.provider` on GitRepository: GitHub App authentication against a local stand-in for GitHub's API (it
//! verifies the app JWT's RS256 signature with the app's public key, its issuer and time claims, and issues an
//! installation token), git's own `git http-backend` accepting only that token as `x-access-token`'s password,
//! and the providers Riptide refuses (`azure`, `aws`). RSA keys are generated per test with `openssl genrsa`
//! (PKCS#1 PEM, as GitHub hands them out).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::api::meta::LocalObjectReference;
use common::api::source_v1::{GitProvider, GitRepositoryRef, GitRepositorySpec};
use serde_json::{Value, json};
use support::*;
use testenv::git_http::{GitHttpOptions, GitHttpServer};
use testenv::proxy::{HttpProxy, ProxyOptions};

const APP_ID: u64 = 4242;
const INSTALLATION_ID: u64 = 456;
const OWNER: &str = "riptide-user";
const TOKEN: &str = "ghs_RiptideTestInstallationToken0001";

/// An app's RSA key made by openssl: the PKCS#1 PEM (the Secret's `githubAppPrivateKey`) and the public key
/// (PKCS#1 DER, what the fake GitHub verifies with).
struct AppKey {
    pem: String,
    public_der: Vec<u8>,
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn app_key(dir: &Path, name: &str) -> AppKey {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.der"));
    let (key_s, public_s) = (key.to_str().unwrap(), public.to_str().unwrap());
    openssl(&["genrsa", "-traditional", "-out", key_s, "2048"]);
    openssl(&[
        "rsa",
        "-in",
        key_s,
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        public_s,
    ]);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "PKCS#1");
    AppKey {
        pem,
        public_der: std::fs::read(&public).unwrap(),
    }
}

/// One request the fake GitHub answered.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Logged {
    method: &'static str,
    path: String,
    status: u16,
    /// Why a JWT was refused.
    refused: Option<String>,
}

struct GitHubState {
    public_key: Vec<u8>,
    log: Mutex<Vec<Logged>>,
}

/// GitHub's REST API as far as GitHub Apps need it, under `/api/v3` like GitHub Enterprise Server: the app
/// `APP_ID` installed (`INSTALLATION_ID`) on the user `OWNER`.
struct FakeGitHub {
    addr: SocketAddr,
    state: Arc<GitHubState>,
}

type Answer = (StatusCode, Json<Value>);

impl GitHubState {
    fn answer(
        &self,
        method: &'static str,
        path: String,
        checked: Result<Answer, String>,
    ) -> Answer {
        let (answer, refused) = match checked {
            Ok(answer) => (answer, None),
            Err(why) => (
                (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({
                        "message": "A JSON web token could not be decoded",
                        "documentation_url": "https://docs.github.com/rest",
                    })),
                ),
                Some(why),
            ),
        };
        self.log.lock().unwrap().push(Logged {
            method,
            path,
            status: answer.0.as_u16(),
            refused,
        });
        answer
    }

    /// GitHub's checks of an app JWT: RS256 signed by the app's key, `iss` the app ID, `iat` not in the future,
    /// `exp` ahead and at most 10 minutes away.
    fn check_jwt(&self, headers: &HeaderMap) -> Result<(), String> {
        let jwt = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or("no bearer token")?;
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return Err("not a JWT".into());
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string());
        let json = |part: &str| -> Result<Value, String> {
            serde_json::from_slice(&decode(part)?).map_err(|e| e.to_string())
        };
        if json(header)?["alg"] != "RS256" {
            return Err("alg is not RS256".into());
        }
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.public_key)
            .verify(format!("{header}.{claims}").as_bytes(), &decode(signature)?)
            .map_err(|_| "signature does not verify with the app's public key")?;
        let claims = json(claims)?;
        if claims["iss"] != json!(APP_ID.to_string()) && claims["iss"] != json!(APP_ID) {
            return Err(format!("iss {} is not the app ID", claims["iss"]));
        }
        let now = jiff::Timestamp::now().as_second();
        let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
            return Err("iat and exp must be numbers".into());
        };
        if iat > now {
            return Err("iat is in the future".into());
        }
        if exp <= now || exp > now + 600 {
            return Err("exp must be ahead, within 10 minutes".into());
        }
        Ok(())
    }
}

async fn access_tokens(
    State(state): State<Arc<GitHubState>>,
    UrlPath(id): UrlPath<u64>,
    headers: HeaderMap,
) -> Answer {
    let path = format!("/api/v3/app/installations/{id}/access_tokens");
    let checked = state.check_jwt(&headers).map(|()| {
        if id != INSTALLATION_ID {
            return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"})));
        }
        let expires =
            jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 3600).unwrap();
        (
            StatusCode::CREATED,
            Json(json!({
                "token": TOKEN,
                "expires_at": expires.to_string(),
                "permissions": {"contents": "read"},
                "repository_selection": "selected",
            })),
        )
    });
    state.answer("POST", path, checked)
}

async fn org_installation(
    State(state): State<Arc<GitHubState>>,
    UrlPath(owner): UrlPath<String>,
    headers: HeaderMap,
) -> Answer {
    let path = format!("/api/v3/orgs/{owner}/installation");
    let checked = state
        .check_jwt(&headers)
        .map(|()| (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))));
    state.answer("GET", path, checked)
}

async fn user_installation(
    State(state): State<Arc<GitHubState>>,
    UrlPath(owner): UrlPath<String>,
    headers: HeaderMap,
) -> Answer {
    let path = format!("/api/v3/users/{owner}/installation");
    let checked = state.check_jwt(&headers).map(|()| {
        if owner == OWNER {
            (
                StatusCode::OK,
                Json(json!({"id": INSTALLATION_ID, "account": {"login": OWNER}})),
            )
        } else {
            (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"})))
        }
    });
    state.answer("GET", path, checked)
}

impl FakeGitHub {
    async fn start(public_key: Vec<u8>) -> FakeGitHub {
        let state = Arc::new(GitHubState {
            public_key,
            log: Mutex::new(Vec::new()),
        });
        let api = Router::new()
            .route("/app/installations/{id}/access_tokens", post(access_tokens))
            .route("/orgs/{owner}/installation", get(org_installation))
            .route("/users/{owner}/installation", get(user_installation))
            .with_state(state.clone());
        let app = Router::new().nest("/api/v3", api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitHub { addr, state }
    }

    /// `githubAppBaseURL`.
    fn base_url(&self) -> String {
        format!("http://{}/api/v3", self.addr)
    }

    fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// How many installation tokens were issued.
    fn tokens_issued(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.status == 201)
            .count()
    }
}

/// `url` on `main` with `provider` and an optional `secretRef`.
fn with_provider(url: &str, provider: GitProvider, secret: Option<&str>) -> GitRepositorySpec {
    let mut s = spec(url);
    s.reference = Some(GitRepositoryRef {
        branch: Some("main".into()),
        ..Default::default()
    });
    s.provider = Some(provider);
    s.secret_ref = secret.map(|name| LocalObjectReference { name: name.into() });
    s
}

#[tokio::test]
async fn github_app_token_authenticates_git_and_is_cached() {
    let keys = tempfile::tempdir().unwrap();
    let key = app_key(keys.path(), "app");
    let github = FakeGitHub::start(key.public_der.clone()).await;
    let repos = GitRepos::new();
    let sha = repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "init");
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default().basic_auth("x-access-token", TOKEN),
    )
    .await
    .unwrap();
    let proxy = HttpProxy::start(ProxyOptions::default()).await.unwrap();
    let url = server.url("app.git");

    let fx = Fixture::start().await;
    let base = github.base_url();
    let id = INSTALLATION_ID.to_string();
    let app_id = APP_ID.to_string();
    fx.secret(
        "gh-app",
        &[
            ("githubAppID", &app_id),
            ("githubAppInstallationID", &id),
            ("githubAppPrivateKey", &key.pem),
            ("githubAppBaseURL", &base),
        ],
    )
    .await;
    fx.secret(
        "gh-owner",
        &[
            ("githubAppID", &app_id),
            ("githubAppInstallationOwner", OWNER),
            ("githubAppPrivateKey", &key.pem),
            ("githubAppBaseURL", &base),
        ],
    )
    .await;
    fx.secret("proxy", &[("address", &proxy.url())]).await;

    // The token gets the artifact.
    fx.create(
        "app",
        with_provider(&url, GitProvider::Github, Some("gh-app")),
    )
    .await;
    let obj = fx.wait_ready("app").await;
    let artifact = obj.artifact().unwrap();
    assert_eq!(artifact.revision, format!("main@sha1:{sha}"));
    assert_eq!(download(&artifact.url).await.0, 200);
    assert_eq!(
        github.requests(),
        vec![Logged {
            method: "POST",
            path: format!("/api/v3/app/installations/{INSTALLATION_ID}/access_tokens"),
            status: 201,
            refused: None,
        }]
    );
    let log = server.access_log();
    assert!(
        log.iter().any(|r| r.status == 401) && log.iter().any(|r| r.status == 200),
        "git authenticated after the challenge: {log:?}"
    );

    // A second reconcile uses the cached token.
    let obj = fx.request_reconcile("app", "1").await;
    assert_eq!(ready(&obj).0, "True", "{:?}", ready(&obj));
    assert_eq!(github.tokens_issued(), 1, "{:?}", github.requests());
    assert_no_secrets(&fx, &obj, &[TOKEN, &pem_line(&key.pem)]);

    // As Flux's cache key is the app, installation, base URL and key: another GitRepository on the same app
    // shares the token.
    fx.create(
        "app-shared",
        with_provider(&url, GitProvider::Github, Some("gh-app")),
    )
    .await;
    fx.wait_ready("app-shared").await;
    assert_eq!(github.tokens_issued(), 1, "{:?}", github.requests());

    // By installation owner (an organization first, then a user, as Flux looks it up), through the proxy of
    // `proxySecretRef`.
    let mut by_owner = with_provider(&url, GitProvider::Github, Some("gh-owner"));
    by_owner.proxy_secret_ref = Some(LocalObjectReference {
        name: "proxy".into(),
    });
    fx.create("app-owner", by_owner).await;
    let obj = fx.wait_ready("app-owner").await;
    assert_eq!(obj.artifact().unwrap().revision, format!("main@sha1:{sha}"));
    let owner_requests: Vec<(&str, String, u16)> = github.requests()[1..]
        .iter()
        .map(|r| (r.method, r.path.clone(), r.status))
        .collect();
    assert_eq!(
        owner_requests,
        vec![
            ("GET", format!("/api/v3/orgs/{OWNER}/installation"), 404),
            ("GET", format!("/api/v3/users/{OWNER}/installation"), 200),
            (
                "POST",
                format!("/api/v3/app/installations/{INSTALLATION_ID}/access_tokens"),
                201
            ),
        ]
    );
    let through_proxy = proxy.requests();
    let api = github.addr.to_string();
    for method in ["GET", "POST"] {
        assert!(
            through_proxy
                .iter()
                .any(|r| r.method == method && r.target == api),
            "{method} to the API went through the proxy: {through_proxy:?}"
        );
    }
    let obj = fx.request_reconcile("app-owner", "1").await;
    assert_eq!(ready(&obj).0, "True", "{:?}", ready(&obj));
    assert_eq!(github.tokens_issued(), 2, "{:?}", github.requests());
    assert_no_secrets(&fx, &obj, &[TOKEN, &pem_line(&key.pem)]);

    fx.shutdown().await;
    server.shutdown().await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn wrong_private_key_is_refused_by_github_and_retried() {
    let keys = tempfile::tempdir().unwrap();
    let key = app_key(keys.path(), "app");
    let wrong = app_key(keys.path(), "wrong");
    let github = FakeGitHub::start(key.public_der.clone()).await;
    let repos = GitRepos::new();
    let sha = repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "init");
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default().basic_auth("x-access-token", TOKEN),
    )
    .await
    .unwrap();

    let fx = Fixture::start().await;
    let base = github.base_url();
    let id = INSTALLATION_ID.to_string();
    let app_id = APP_ID.to_string();
    let secret = |pem: &str| -> Vec<(&'static str, String)> {
        vec![
            ("githubAppID", app_id.clone()),
            ("githubAppInstallationID", id.clone()),
            ("githubAppPrivateKey", pem.to_string()),
            ("githubAppBaseURL", base.clone()),
        ]
    };
    let wrong_data = secret(&wrong.pem);
    let pairs: Vec<(&str, &str)> = wrong_data.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fx.secret("gh-app", &pairs).await;
    fx.create(
        "app",
        with_provider(&server.url("app.git"), GitProvider::Github, Some("gh-app")),
    )
    .await;

    let (reason, message) = fetch_failure(&fx, "app").await;
    assert_eq!(reason, "AuthenticationFailed");
    assert_eq!(
        message,
        format!(
            "failed to configure authentication options: failed to get GitHub App installation token: \
             POST {base}/app/installations/{INSTALLATION_ID}/access_tokens: 401 A JSON web token could not be decoded"
        )
    );
    let refused = github.requests();
    assert!(
        refused.iter().all(|r| r.status == 401
            && r.refused.as_deref() == Some("signature does not verify with the app's public key")),
        "{refused:?}"
    );
    assert!(server.access_log().is_empty(), "git was not tried");
    let obj = fx.get("app").await;
    assert_no_secrets(&fx, &obj, &[TOKEN, &pem_line(&wrong.pem)]);

    // A failed token request is retried: with the right key in the Secret, the GitRepository recovers.
    fx.secrets
        .delete("gh-app", &Default::default())
        .await
        .unwrap();
    let right_data = secret(&key.pem);
    let pairs: Vec<(&str, &str)> = right_data.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fx.secret("gh-app", &pairs).await;
    let obj = fx.wait_ready("app").await;
    assert_eq!(obj.artifact().unwrap().revision, format!("main@sha1:{sha}"));
    assert_eq!(github.tokens_issued(), 1);

    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn github_app_secret_mistakes_stall() {
    let keys = tempfile::tempdir().unwrap();
    let key = app_key(keys.path(), "app");
    let github = FakeGitHub::start(key.public_der.clone()).await;
    let repos = GitRepos::new();
    repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "init");
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default().basic_auth("x-access-token", TOKEN),
    )
    .await
    .unwrap();
    let url = server.url("app.git");

    let fx = Fixture::start().await;
    let base = github.base_url();
    let id = INSTALLATION_ID.to_string();
    let app_id = APP_ID.to_string();
    fx.secret(
        "no-app-id",
        &[
            ("githubAppInstallationID", &id),
            ("githubAppPrivateKey", &key.pem),
            ("githubAppBaseURL", &base),
        ],
    )
    .await;
    fx.secret(
        "two-installations",
        &[
            ("githubAppID", &app_id),
            ("githubAppInstallationID", &id),
            ("githubAppInstallationOwner", OWNER),
            ("githubAppPrivateKey", &key.pem),
            ("githubAppBaseURL", &base),
        ],
    )
    .await;
    fx.secret(
        "bad-key",
        &[
            ("githubAppID", &app_id),
            ("githubAppInstallationID", &id),
            ("githubAppPrivateKey", "not a key"),
            ("githubAppBaseURL", &base),
        ],
    )
    .await;
    fx.secret("basic", &[("username", "git"), ("password", "pass-1")])
        .await;
    fx.secret(
        "app-data",
        &[
            ("githubAppID", &app_id),
            ("githubAppInstallationID", &id),
            ("githubAppPrivateKey", &key.pem),
        ],
    )
    .await;
    let github_with = |secret: Option<&str>| with_provider(&url, GitProvider::Github, secret);
    fx.create("no-app-id", github_with(Some("no-app-id"))).await;
    fx.create("two-installations", github_with(Some("two-installations")))
        .await;
    fx.create("bad-key", github_with(Some("bad-key"))).await;
    fx.create("no-secret-ref", github_with(None)).await;
    fx.create("no-app-data", github_with(Some("basic"))).await;
    fx.create(
        "generic-with-app-data",
        with_provider(&url, GitProvider::Generic, Some("app-data")),
    )
    .await;

    let no_app_data =
        "secretRef with github app data must be specified when provider is set to github";
    for (name, want_reason, want_message) in [
        (
            "no-app-id",
            "InvalidProviderConfiguration",
            "failed to configure authentication options: secret 'default/no-app-id': key 'githubAppID' not found"
                .to_string(),
        ),
        (
            "two-installations",
            "InvalidProviderConfiguration",
            "failed to configure authentication options: secret 'default/two-installations' must contain \
             exactly one of 'githubAppInstallationOwner' or 'githubAppInstallationID'"
                .to_string(),
        ),
        (
            "bad-key",
            "AuthenticationFailed",
            "failed to configure authentication options: secret 'default/bad-key': invalid \
             'githubAppPrivateKey': no PEM private key found"
                .to_string(),
        ),
        (
            "no-secret-ref",
            "InvalidProviderConfiguration",
            no_app_data.to_string(),
        ),
        (
            "no-app-data",
            "InvalidProviderConfiguration",
            no_app_data.to_string(),
        ),
        (
            "generic-with-app-data",
            "InvalidProviderConfiguration",
            "secretRef 'default/app-data' has github app data but provider is not set to github".to_string(),
        ),
    ] {
        let (reason, message) = stalled(&fx, name).await;
        assert_eq!((reason.as_str(), message.as_str()), (want_reason, want_message.as_str()), "{name}");
        let obj = fx.get(name).await;
        assert_eq!(
            condition(&obj, "FetchFailed").map(|c| (c.0, c.1)),
            Some(("True".to_string(), want_reason.to_string())),
            "{name}"
        );
        assert!(obj.artifact().is_none(), "{name}");
        assert_no_secrets(&fx, &obj, &[TOKEN, &pem_line(&key.pem), "pass-1"]);
    }
    assert!(github.requests().is_empty(), "{:?}", github.requests());
    assert!(server.access_log().is_empty(), "{:?}", server.access_log());

    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn azure_and_aws_providers_stall() {
    let repos = GitRepos::new();
    repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "init");
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let url = server.url("app.git");
    let fx = Fixture::start().await;
    fx.create("azure", with_provider(&url, GitProvider::Azure, None))
        .await;
    fx.create("aws", with_provider(&url, GitProvider::Aws, None))
        .await;
    // The public repository would be readable anonymously: a refused provider is never silently dropped.
    fx.create("generic", with_provider(&url, GitProvider::Generic, None))
        .await;
    fx.wait_ready("generic").await;
    server.clear_access_log();
    for name in ["azure", "aws"] {
        let (reason, message) = stalled(&fx, name).await;
        assert_eq!(reason, "InvalidProviderConfiguration", "{name}");
        assert_eq!(
            message,
            format!(
                "provider '{name}' is not supported by Riptide: it needs cloud workload identity; use a \
                 secretRef (provider 'generic') or a GitHub App (provider 'github')"
            )
        );
        assert!(fx.get(name).await.artifact().is_none(), "{name}");
    }
    assert!(server.access_log().is_empty(), "{:?}", server.access_log());
    fx.shutdown().await;
    server.shutdown().await;
}
