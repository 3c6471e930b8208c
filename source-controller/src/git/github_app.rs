//! GitHub App authentication for `spec.provider: github`, as Flux's `auth/githubapp` does it.
//!
//! The Secret names the app (`githubAppID`), its installation (`githubAppInstallationID`, or
//! `githubAppInstallationOwner`: the organization or user whose installation is looked up at
//! `GET {base}/orgs/{owner}/installation`, then `GET {base}/users/{owner}/installation`; exactly one of the
//! two), the app's RSA private key (`githubAppPrivateKey`, PEM: PKCS#1 as GitHub issues it, or PKCS#8) and, for
//! GitHub Enterprise Server, the API base URL (`githubAppBaseURL`, used as given, e.g.
//! `https://ghe.example.com/api/v3`; `https://api.github.com` when unset).
//!
//! An app JWT (RS256; `iss` the app ID; `iat` 30 seconds in the past against clock drift and `exp` two minutes
//! after it, whole seconds) is exchanged at `POST {base}/app/installations/{id}/access_tokens` for an
//! installation access token, which git presents as the basic-auth password of the user `x-access-token`.
//!
//! Tokens are cached for the whole process under a digest of the app ID, installation, base URL and private
//! key, so GitRepositories sharing an app share its token, until 80% of their lifetime has passed and at most
//! `--token-cache-max-duration` (one hour), as Flux's token cache does. Concurrent reconciles that need the same
//! token wait for one request.
//!
//! The API requests trust the Secret's `ca.crt` besides the system roots, present `tls.crt`/`tls.key` when they
//! are set, and go through the `proxySecretRef` proxy (else the environment's proxy settings), as Flux's do.
//! No error carries the private key, the JWT or a token.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use url::Url;

use super::gateway::error_chain;
use super::{AuthError, CaBundle, ClientCertificate, tls_options};

/// The Secret key of the app ID.
pub const KEY_APP_ID: &str = "githubAppID";
/// The Secret key of the installation owner (organization or user).
pub const KEY_INSTALLATION_OWNER: &str = "githubAppInstallationOwner";
/// The Secret key of the installation ID.
pub const KEY_INSTALLATION_ID: &str = "githubAppInstallationID";
/// The Secret key of the app's private key (PEM).
pub const KEY_PRIVATE_KEY: &str = "githubAppPrivateKey";
/// The Secret key of the API base URL (GitHub Enterprise Server).
pub const KEY_BASE_URL: &str = "githubAppBaseURL";

/// The basic-auth user git presents with an installation token.
pub const ACCESS_TOKEN_USERNAME: &str = "x-access-token";
/// The API base URL when `githubAppBaseURL` is unset.
pub const DEFAULT_API_URL: &str = "https://api.github.com/";

/// How far in the past a JWT's `iat` is set, against clock drift.
const JWT_BACKDATE_SECS: i64 = 30;
/// A JWT's lifetime from its `iat`: it is only used to get the installation token.
const JWT_LIFETIME_SECS: i64 = 120;
/// The REST API version asked for.
const API_VERSION: &str = "2022-11-28";
/// The largest API response read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// The longest API error message kept.
const MAX_MESSAGE_CHARS: usize = 300;

/// Whether a Secret holds GitHub App data (as Flux tells: a non-empty `githubAppID`).
pub fn has_app_data(data: &BTreeMap<String, Vec<u8>>) -> bool {
    data.get(KEY_APP_ID).is_some_and(|v| !v.is_empty())
}

/// The Secret does not describe a usable GitHub App. The spec (or Secret) is wrong: retrying will not help.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No `secretRef`, or a Secret without any GitHub App key.
    #[error("secretRef with github app data must be specified when provider is set to github")]
    NoAppData,
    /// A required key is missing or empty.
    #[error("secret '{secret}': key '{key}' not found")]
    MissingKey {
        /// `namespace/name`.
        secret: String,
        /// The key.
        key: &'static str,
    },
    /// Neither or both of `githubAppInstallationOwner` and `githubAppInstallationID`.
    #[error(
        "secret '{secret}' must contain exactly one of 'githubAppInstallationOwner' or 'githubAppInstallationID'"
    )]
    Installation {
        /// `namespace/name`.
        secret: String,
    },
    /// A value is not usable.
    #[error("secret '{secret}': invalid '{key}': {reason}")]
    Invalid {
        /// `namespace/name`.
        secret: String,
        /// The key.
        key: &'static str,
        /// What is wrong (never the value).
        reason: String,
    },
    /// `ca.crt`, `tls.crt` or `tls.key` is not usable.
    #[error(transparent)]
    Tls(#[from] AuthError),
}

impl ConfigError {
    /// Whether the error is about which keys the Secret holds (Flux's `InvalidProviderConfiguration`), rather
    /// than about their values.
    pub fn is_missing_data(&self) -> bool {
        matches!(
            self,
            ConfigError::NoAppData
                | ConfigError::MissingKey { .. }
                | ConfigError::Installation { .. }
        )
    }
}

/// An installation token could not be had. Worth retrying: GitHub, the network or the installation may change.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The JWT could not be signed.
    #[error("failed to sign the app JWT")]
    Sign,
    /// The HTTP client could not be built.
    #[error("failed to build the HTTP client: {0}")]
    Client(String),
    /// The request got no HTTP answer.
    #[error("{method} {url}: {reason}")]
    Request {
        /// The HTTP method.
        method: String,
        /// The URL, without credentials.
        url: String,
        /// Why.
        reason: String,
    },
    /// GitHub answered with an error status.
    #[error("{method} {url}: {status} {message}")]
    Status {
        /// The HTTP method.
        method: String,
        /// The URL, without credentials.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// GitHub's `message`, else the status text.
        message: String,
    },
    /// The answer is not what GitHub sends.
    #[error("{method} {url}: invalid response: {reason}")]
    Response {
        /// The HTTP method.
        method: String,
        /// The URL, without credentials.
        url: String,
        /// What is wrong (never the body).
        reason: String,
    },
    /// No installation was found for `githubAppInstallationOwner`, as an organization nor as a user.
    #[error(
        "failed to find organization installation: {org}; failed to find user installation: {user}"
    )]
    Owner {
        /// Why the organization lookup failed.
        org: Box<TokenError>,
        /// Why the user lookup failed.
        user: Box<TokenError>,
    },
    /// The requests did not finish within the GitRepository's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// The installation: by ID, or by the organization or user it is installed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installation {
    /// `githubAppInstallationID`.
    Id(u64),
    /// `githubAppInstallationOwner`.
    Owner(String),
}

/// A GitHub App and installation, from a Secret.
pub struct App {
    app_id: u64,
    installation: Installation,
    key: Arc<RsaKeyPair>,
    api_url: Url,
    ca: Option<CaBundle>,
    client_certificate: Option<ClientCertificate>,
    cache_key: String,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("app_id", &self.app_id)
            .field("installation", &self.installation)
            .field("api_url", &self.api_url.as_str())
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The RSA key of a PEM block. The parsers' errors are not shown: they could quote key material.
fn parse_private_key(pem: &[u8]) -> Result<RsaKeyPair, String> {
    let der =
        PrivateKeyDer::from_pem_slice(pem).map_err(|_| "no PEM private key found".to_string())?;
    let key = match &der {
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        _ => return Err("not an RSA private key".to_string()),
    };
    key.map_err(|e| format!("not a usable RSA private key ({e})"))
}

/// The API base URL, with a trailing `/`.
fn parse_api_url(raw: &str) -> Result<Url, String> {
    let mut url = Url::parse(raw).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http or https URL".to_string());
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// `url` without user name and password, for messages.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

impl App {
    /// The app of a Secret's data, validated as Flux does; `secret` (`namespace/name`) names it in errors.
    pub fn from_secret(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<App, ConfigError> {
        let get = |key: &str| data.get(key).filter(|v| !v.is_empty());
        let keys = [
            KEY_APP_ID,
            KEY_INSTALLATION_OWNER,
            KEY_INSTALLATION_ID,
            KEY_PRIVATE_KEY,
        ];
        if keys.iter().all(|k| get(k).is_none()) {
            return Err(ConfigError::NoAppData);
        }
        let missing = |key| ConfigError::MissingKey {
            secret: secret.to_string(),
            key,
        };
        let invalid = |key, reason: &str| ConfigError::Invalid {
            secret: secret.to_string(),
            key,
            reason: reason.to_string(),
        };
        let text = |key: &'static str| -> Result<Option<String>, ConfigError> {
            get(key)
                .map(|v| {
                    std::str::from_utf8(v)
                        .map(|s| s.trim().to_string())
                        .map_err(|_| invalid(key, "not valid UTF-8"))
                })
                .transpose()
        };
        let number = |key: &'static str| -> Result<Option<u64>, ConfigError> {
            text(key)?
                .map(|s| {
                    s.parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid(key, "must be a positive integer"))
                })
                .transpose()
        };
        let app_id = number(KEY_APP_ID)?.ok_or_else(|| missing(KEY_APP_ID))?;
        let pem = get(KEY_PRIVATE_KEY).ok_or_else(|| missing(KEY_PRIVATE_KEY))?;
        let installation = match (text(KEY_INSTALLATION_OWNER)?, number(KEY_INSTALLATION_ID)?) {
            (Some(owner), None) if !owner.is_empty() => Installation::Owner(owner),
            (None, Some(id)) => Installation::Id(id),
            _ => {
                return Err(ConfigError::Installation {
                    secret: secret.to_string(),
                });
            }
        };
        let key = parse_private_key(pem).map_err(|reason| invalid(KEY_PRIVATE_KEY, &reason))?;
        let base = text(KEY_BASE_URL)?.unwrap_or_default();
        let api_url = parse_api_url(if base.is_empty() {
            DEFAULT_API_URL
        } else {
            &base
        })
        .map_err(|reason| invalid(KEY_BASE_URL, &reason))?;
        let (ca, client_certificate) = tls_options(data)?;
        // As Flux's key: the app, the installation, the base URL and the private key.
        let (owner, id) = match &installation {
            Installation::Id(id) => (String::new(), *id),
            Installation::Owner(owner) => (owner.clone(), 0),
        };
        let mut digest = Sha256::new();
        digest.update(format!(
            "{KEY_APP_ID}={app_id},{KEY_INSTALLATION_OWNER}={owner},{KEY_INSTALLATION_ID}={id},{KEY_BASE_URL}={base},{KEY_PRIVATE_KEY}="
        ));
        digest.update(pem);
        Ok(App {
            app_id,
            installation,
            key: Arc::new(key),
            api_url,
            ca,
            client_certificate,
            cache_key: hex::encode(digest.finalize()),
        })
    }

    /// The app ID.
    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    /// The installation.
    pub fn installation(&self) -> &Installation {
        &self.installation
    }

    /// The key this app's tokens are cached under: a digest, never the key itself.
    pub fn cache_key(&self) -> &str {
        &self.cache_key
    }

    /// The API URL of `segments` (percent-encoded) under the base URL.
    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// An app JWT issued at `now` (RS256, `iss` the app ID, `iat` 30 s before `now`, `exp` 2 min after `iat`).
    pub fn jwt(&self, now: Timestamp) -> Result<String, TokenError> {
        let iat = now.as_second() - JWT_BACKDATE_SECS;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iat": iat,
            "exp": iat + JWT_LIFETIME_SECS,
            "iss": self.app_id.to_string(),
        });
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| TokenError::Sign)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// The API client: the Secret's CA with the system roots, its client certificate, the proxy (else the
    /// environment's), the timeout.
    fn client(
        &self,
        proxy: Option<&str>,
        timeout: Duration,
    ) -> Result<reqwest::Client, TokenError> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!(
                "riptide-source-controller/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(proxy) = proxy {
            let proxy = reqwest::Proxy::all(proxy)
                .map_err(|_| TokenError::Client("invalid proxy URL".to_string()))?;
            builder = builder.proxy(proxy);
        }
        if let Some(ca) = &self.ca {
            let certs = ca.reqwest_certificates().map_err(|e| {
                TokenError::Client(format!("invalid CA certificate: {}", error_chain(&e)))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(identity) = &self.client_certificate {
            let identity = identity.reqwest_identity().map_err(|e| {
                TokenError::Client(format!(
                    "invalid client certificate or key: {}",
                    error_chain(&e)
                ))
            })?;
            builder = builder.identity(identity);
        }
        builder
            .build()
            .map_err(|e| TokenError::Client(error_chain(&e)))
    }

    /// One API call authenticated with `jwt`; a 2xx JSON answer is decoded as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: Url,
        jwt: &str,
    ) -> Result<T, TokenError> {
        let url_shown = shown(&url);
        let method_shown = method.to_string();
        let request_failed = |reason: String| TokenError::Request {
            method: method_shown.clone(),
            url: url_shown.clone(),
            reason: scrub(&reason, jwt),
        };
        let mut response = client
            .request(method.clone(), url)
            .bearer_auth(jwt)
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .send()
            .await
            .map_err(|e| request_failed(error_chain(&e)))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| request_failed(error_chain(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RESPONSE_BYTES {
                break;
            }
        }
        if !status.is_success() {
            return Err(TokenError::Status {
                method: method_shown,
                url: url_shown,
                status: status.as_u16(),
                message: scrub(&api_message(&body, status), jwt),
            });
        }
        // serde's message is not shown: it could quote the token.
        serde_json::from_slice(&body).map_err(|e| TokenError::Response {
            method: method_shown,
            url: url_shown,
            reason: format!("unexpected JSON at line {} column {}", e.line(), e.column()),
        })
    }

    /// The installation ID: given, or looked up for the owner as an organization, then as a user.
    async fn installation_id(
        &self,
        client: &reqwest::Client,
        jwt: &str,
    ) -> Result<u64, TokenError> {
        #[derive(Deserialize)]
        struct Found {
            id: u64,
        }
        let owner = match &self.installation {
            Installation::Id(id) => return Ok(*id),
            Installation::Owner(owner) => owner,
        };
        let get = |kind| {
            self.call::<Found>(
                client,
                reqwest::Method::GET,
                self.endpoint(&[kind, owner, "installation"]),
                jwt,
            )
        };
        let org = match get("orgs").await {
            Ok(found) => return Ok(found.id),
            Err(err) => err,
        };
        let user = match get("users").await {
            Ok(found) => return Ok(found.id),
            Err(err) => err,
        };
        Err(TokenError::Owner {
            org: Box::new(org),
            user: Box::new(user),
        })
    }

    /// Asks GitHub for a new installation token.
    async fn request_token(
        &self,
        proxy: Option<&str>,
        timeout: Duration,
    ) -> Result<Token, TokenError> {
        #[derive(Deserialize)]
        struct Issued {
            token: String,
            expires_at: Timestamp,
        }
        let client = self.client(proxy, timeout)?;
        let jwt = self.jwt(Timestamp::now())?;
        let id = self.installation_id(&client, &jwt).await?;
        let url = self.endpoint(&["app", "installations", &id.to_string(), "access_tokens"]);
        let url_shown = shown(&url);
        let issued: Issued = self.call(&client, reqwest::Method::POST, url, &jwt).await?;
        if issued.token.is_empty() || issued.token.chars().any(char::is_control) {
            return Err(TokenError::Response {
                method: "POST".to_string(),
                url: url_shown,
                reason: "no usable token".to_string(),
            });
        }
        Ok(Token {
            value: issued.token,
            expires_at: issued.expires_at,
        })
    }
}

/// GitHub's `message` of an error answer, else the status text; one line, bounded.
fn api_message(body: &[u8], status: reqwest::StatusCode) -> String {
    #[derive(Deserialize)]
    struct ApiError {
        message: Option<String>,
    }
    let message = serde_json::from_slice::<ApiError>(body)
        .ok()
        .and_then(|e| e.message)
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or_default().to_string());
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    message.trim().to_string()
}

/// `text` without `jwt` in it.
fn scrub(text: &str, jwt: &str) -> String {
    common::telemetry::mask_url_credentials(&text.replace(jwt, "<redacted>"))
}

/// An installation access token.
#[derive(Clone)]
pub struct Token {
    value: String,
    expires_at: Timestamp,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Token {
    /// A token (for tests and callers with their own source).
    pub fn new(value: impl Into<String>, expires_at: Timestamp) -> Token {
        Token {
            value: value.into(),
            expires_at,
        }
    }

    /// The token: git's password.
    pub fn secret(&self) -> &str {
        &self.value
    }

    /// When GitHub expires it.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
}

/// How long a token expiring at `expires_at` is served from the cache from `now`: 80% of its remaining lifetime
/// (the threshold at which kubelet rotates service account tokens, which Flux follows), at most `max`.
pub fn fresh_for(expires_at: Timestamp, now: Timestamp, max: Duration) -> Duration {
    let left = Duration::try_from(expires_at.duration_since(now)).unwrap_or(Duration::ZERO);
    left.checked_mul(8).map(|d| d / 10).unwrap_or(max).min(max)
}

struct Cached {
    token: Token,
    fresh_until: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

#[derive(Default)]
struct Slots {
    map: HashMap<String, (Slot, u64)>,
    clock: u64,
}

/// Installation tokens by [`App::cache_key`], least recently used evicted first.
pub struct TokenCache {
    slots: Mutex<Slots>,
    capacity: usize,
    max_duration: Duration,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("max_duration", &self.max_duration)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// Flux's default `--token-cache-max-size`.
    pub const DEFAULT_CAPACITY: usize = 100;
    /// Flux's longest (and default) `--token-cache-max-duration`.
    pub const MAX_DURATION: Duration = Duration::from_secs(3600);

    /// A cache of at most `capacity` tokens (at least one), each kept at most `max_duration` (at most an hour).
    pub fn new(capacity: usize, max_duration: Duration) -> TokenCache {
        TokenCache {
            slots: Mutex::new(Slots::default()),
            capacity: capacity.max(1),
            max_duration: max_duration.min(Self::MAX_DURATION),
        }
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, key: &str) -> Slot {
        let mut guard = self.lock();
        let slots = &mut *guard;
        slots.clock += 1;
        let now = slots.clock;
        if let Some((slot, used)) = slots.map.get_mut(key) {
            *used = now;
            return slot.clone();
        }
        if slots.map.len() >= self.capacity {
            let oldest = slots
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                slots.map.remove(&oldest);
            }
        }
        let slot = Slot::default();
        slots.map.insert(key.to_string(), (slot.clone(), now));
        slot
    }

    /// The token cached under `key` while fresh, else the one `fetch` gets (cached unless it failed). Callers
    /// asking for the same key at once wait for one fetch.
    pub async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<Token, TokenError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, TokenError>>,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.fresh_until
        {
            return Ok(c.token.clone());
        }
        let token = fetch().await?;
        let fresh = fresh_for(token.expires_at, Timestamp::now(), self.max_duration);
        *cached = Some(Cached {
            token: token.clone(),
            fresh_until: Instant::now() + fresh,
        });
        Ok(token)
    }
}

/// An installation token for `app`: from `cache` while fresh, else from GitHub (through `proxy` when given),
/// within `timeout`.
pub async fn installation_token(
    app: &App,
    cache: Option<&TokenCache>,
    proxy: Option<&str>,
    timeout: Duration,
) -> Result<Token, TokenError> {
    let fetch = || async {
        tokio::time::timeout(timeout, app.request_token(proxy, timeout))
            .await
            .map_err(|_| TokenError::Timeout(timeout))?
    };
    match cache {
        Some(cache) => cache.get_or_fetch(app.cache_key(), fetch).await,
        None => fetch().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn pem(label: &str, der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// A fresh RSA key: (PKCS#8 PEM, PKCS#1 public key DER).
    fn rsa_key() -> (String, Vec<u8>) {
        let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        (
            pem("PRIVATE KEY", pkcs8.as_ref()),
            key.public_key().as_ref().to_vec(),
        )
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn secret_keys_are_checked_like_flux() {
        let (key, _) = rsa_key();
        let app = |pairs: &[(&str, &str)]| App::from_secret("ns/gh", &data(pairs));
        let ok = app(&[
            (KEY_APP_ID, "123\n"),
            (KEY_INSTALLATION_ID, "456"),
            (KEY_PRIVATE_KEY, &key),
        ])
        .unwrap();
        assert_eq!(ok.app_id(), 123);
        assert_eq!(ok.installation(), &Installation::Id(456));
        assert_eq!(
            ok.endpoint(&["app", "installations", "456", "access_tokens"])
                .as_str(),
            "https://api.github.com/app/installations/456/access_tokens"
        );
        let debug = format!("{ok:?}");
        assert!(
            !debug.contains("PRIVATE KEY") && debug.contains("<redacted>"),
            "{debug}"
        );

        assert_eq!(
            app(&[("username", "u")]).unwrap_err(),
            ConfigError::NoAppData
        );
        assert_eq!(
            app(&[(KEY_INSTALLATION_ID, "456"), (KEY_PRIVATE_KEY, &key)]).unwrap_err(),
            ConfigError::MissingKey {
                secret: "ns/gh".into(),
                key: KEY_APP_ID
            }
        );
        assert_eq!(
            app(&[(KEY_APP_ID, "1"), (KEY_INSTALLATION_ID, "456")])
                .unwrap_err()
                .to_string(),
            "secret 'ns/gh': key 'githubAppPrivateKey' not found"
        );
        let both = app(&[
            (KEY_APP_ID, "1"),
            (KEY_INSTALLATION_ID, "456"),
            (KEY_INSTALLATION_OWNER, "org"),
            (KEY_PRIVATE_KEY, &key),
        ])
        .unwrap_err();
        assert_eq!(
            both.to_string(),
            "secret 'ns/gh' must contain exactly one of 'githubAppInstallationOwner' or 'githubAppInstallationID'"
        );
        assert!(both.is_missing_data());
        assert!(matches!(
            app(&[(KEY_APP_ID, "1"), (KEY_PRIVATE_KEY, &key)]).unwrap_err(),
            ConfigError::Installation { .. }
        ));
        let bad_id = app(&[
            (KEY_APP_ID, "abc"),
            (KEY_INSTALLATION_ID, "456"),
            (KEY_PRIVATE_KEY, &key),
        ])
        .unwrap_err();
        assert_eq!(
            bad_id.to_string(),
            "secret 'ns/gh': invalid 'githubAppID': must be a positive integer"
        );
        assert!(!bad_id.is_missing_data());
        let bad_key = app(&[
            (KEY_APP_ID, "1"),
            (KEY_INSTALLATION_ID, "456"),
            (
                KEY_PRIVATE_KEY,
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            bad_key.starts_with(
                "secret 'ns/gh': invalid 'githubAppPrivateKey': not a usable RSA private key"
            ),
            "{bad_key}"
        );
        assert!(!bad_key.contains("AAAA"), "{bad_key}");
        assert_eq!(
            app(&[
                (KEY_APP_ID, "1"),
                (KEY_INSTALLATION_ID, "456"),
                (KEY_PRIVATE_KEY, "junk"),
            ])
            .unwrap_err()
            .to_string(),
            "secret 'ns/gh': invalid 'githubAppPrivateKey': no PEM private key found"
        );
        assert!(matches!(
            app(&[
                (KEY_APP_ID, "1"),
                (KEY_INSTALLATION_ID, "456"),
                (KEY_PRIVATE_KEY, &key),
                (KEY_BASE_URL, "ftp://ghe.example.com"),
            ])
            .unwrap_err(),
            ConfigError::Invalid {
                key: KEY_BASE_URL,
                ..
            }
        ));
        assert!(matches!(
            app(&[
                (KEY_APP_ID, "1"),
                (KEY_INSTALLATION_ID, "456"),
                (KEY_PRIVATE_KEY, &key),
                ("ca.crt", "junk"),
            ])
            .unwrap_err(),
            ConfigError::Tls(AuthError::InvalidCa { key: "ca.crt", .. })
        ));
    }

    #[test]
    fn enterprise_base_url_is_used_as_given() {
        let (key, _) = rsa_key();
        for (base, want) in [
            (
                "https://ghe.example.com/api/v3",
                "https://ghe.example.com/api/v3/orgs/my%20org/installation",
            ),
            (
                "https://ghe.example.com/api/v3/",
                "https://ghe.example.com/api/v3/orgs/my%20org/installation",
            ),
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/orgs/my%20org/installation",
            ),
        ] {
            let app = App::from_secret(
                "ns/gh",
                &data(&[
                    (KEY_APP_ID, "1"),
                    (KEY_INSTALLATION_OWNER, "my org"),
                    (KEY_PRIVATE_KEY, &key),
                    (KEY_BASE_URL, base),
                ]),
            )
            .unwrap();
            assert_eq!(
                app.endpoint(&["orgs", "my org", "installation"]).as_str(),
                want
            );
        }
    }

    #[test]
    fn cache_key_follows_flux_fields() {
        let (key, _) = rsa_key();
        let (other_key, _) = rsa_key();
        let key_of = |pairs: &[(&str, &str)]| {
            App::from_secret("ns/gh", &data(pairs))
                .unwrap()
                .cache_key()
                .to_string()
        };
        let base = [
            (KEY_APP_ID, "1"),
            (KEY_INSTALLATION_ID, "2"),
            (KEY_PRIVATE_KEY, key.as_str()),
        ];
        let same = key_of(&base);
        assert_eq!(same, key_of(&base));
        assert_eq!(same.len(), 64);
        assert!(!key.contains(&same));
        assert_eq!(
            key_of(&[base[0], base[1], base[2], ("ca.crt", "")]),
            same,
            "TLS settings do not change the token"
        );
        for changed in [
            [(KEY_APP_ID, "9"), base[1], base[2]],
            [base[0], (KEY_INSTALLATION_ID, "9"), base[2]],
            [base[0], base[1], (KEY_PRIVATE_KEY, other_key.as_str())],
            [base[0], (KEY_INSTALLATION_OWNER, "2"), base[2]],
        ] {
            assert_ne!(key_of(&changed), same, "{:?}", changed[..2].to_vec());
        }
        assert_ne!(
            key_of(&[base[0], base[1], base[2], (KEY_BASE_URL, "https://ghe")]),
            same
        );
    }

    #[test]
    fn jwt_is_rs256_with_flux_claims() {
        let (key, public) = rsa_key();
        let app = App::from_secret(
            "ns/gh",
            &data(&[
                (KEY_APP_ID, "4242"),
                (KEY_INSTALLATION_ID, "2"),
                (KEY_PRIVATE_KEY, &key),
            ]),
        )
        .unwrap();
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let jwt = app.jwt(now).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"iat": 1_699_999_970, "exp": 1_700_000_090, "iss": "4242"})
        );
        let message = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(message.as_bytes(), &decode(parts[2]))
            .unwrap();
        let (_, other_public) = rsa_key();
        assert!(
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &other_public)
                .verify(message.as_bytes(), &decode(parts[2]))
                .is_err()
        );
    }

    #[test]
    fn tokens_stay_fresh_for_80_percent_of_their_life() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let at = |secs: i64| Timestamp::from_second(1_700_000_000 + secs).unwrap();
        let hour = TokenCache::MAX_DURATION;
        assert_eq!(fresh_for(at(3600), now, hour), Duration::from_secs(2880));
        assert_eq!(fresh_for(at(100), now, hour), Duration::from_secs(80));
        assert_eq!(
            fresh_for(at(100), now, Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(fresh_for(at(-5), now, hour), Duration::ZERO);
        assert_eq!(
            fresh_for(at(10 * 365 * 24 * 3600), now, hour),
            hour,
            "capped at the maximum"
        );
        assert_eq!(
            TokenCache::new(0, Duration::from_secs(7200)).max_duration,
            hour
        );
    }

    #[tokio::test]
    async fn cache_fetches_once_per_fresh_token() {
        let cache = TokenCache::new(2, TokenCache::MAX_DURATION);
        let fetches = AtomicUsize::new(0);
        let fetch = |secs: i64| {
            let fetches = &fetches;
            move || async move {
                let n = fetches.fetch_add(1, Ordering::SeqCst);
                let expires = Timestamp::now() + jiff::SignedDuration::from_secs(secs);
                Ok::<_, TokenError>(Token::new(format!("tok-{n}"), expires))
            }
        };
        // Concurrent askers of one key share one fetch.
        let (a, b) = tokio::join!(
            cache.get_or_fetch("a", fetch(3600)),
            cache.get_or_fetch("a", fetch(3600))
        );
        assert_eq!(
            (a.unwrap().secret(), b.unwrap().secret()),
            ("tok-0", "tok-0")
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // An expired token is fetched again.
        let stale = cache.get_or_fetch("b", fetch(-1)).await.unwrap();
        assert_eq!(stale.secret(), "tok-1");
        assert_eq!(
            cache.get_or_fetch("b", fetch(3600)).await.unwrap().secret(),
            "tok-2"
        );
        assert_eq!(
            cache.get_or_fetch("b", fetch(3600)).await.unwrap().secret(),
            "tok-2"
        );
        // Failures are not cached.
        let failed = cache
            .get_or_fetch("a2", || async { Err(TokenError::Sign) })
            .await;
        assert!(failed.is_err());
        // The least recently used key went ("a": "b" and "a2" were used after it).
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.get_or_fetch("a", fetch(3600)).await.unwrap().secret(),
            "tok-3"
        );
        let debug = format!("{:?}", Token::new("ghs_secret", Timestamp::now()));
        assert!(!debug.contains("ghs_secret"), "{debug}");
    }

    #[test]
    fn api_errors_are_one_bounded_line_without_the_jwt() {
        let status = reqwest::StatusCode::UNAUTHORIZED;
        assert_eq!(
            api_message(
                br#"{"message":"A JSON web token could not be decoded","documentation_url":"x"}"#,
                status
            ),
            "A JSON web token could not be decoded"
        );
        assert_eq!(api_message(b"<html>", status), "Unauthorized");
        let long = format!(r#"{{"message":"{}\nmore"}}"#, "x".repeat(1000));
        let message = api_message(long.as_bytes(), status);
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(!message.contains('\n'));
        assert_eq!(
            scrub("bad jwt a.b.c here", "a.b.c"),
            "bad jwt <redacted> here"
        );
    }
}
