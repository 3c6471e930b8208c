//! The HTTP side of every provider: client construction (proxy, CA, mutual TLS) and retried sending.

use std::time::Duration;

use super::{NotifierError, Request, ResponseCheck};

/// PEM material from a Provider's `certSecretRef` (or a Git provider's `secretRef`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// `ca.crt` (or legacy `caFile`): trust these CAs instead of the system roots.
    pub ca: Option<Vec<u8>>,
    /// `tls.crt` + `tls.key` (or legacy `certFile` + `keyFile`): the client identity.
    pub cert_and_key: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.cert_and_key.is_some())
            .finish()
    }
}

/// Transport settings of a provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpSettings {
    /// Proxy URL (may carry credentials: never logged).
    pub proxy: Option<String>,
    /// TLS material.
    pub tls: Option<TlsMaterial>,
}

impl HttpSettings {
    /// Whether the shared default client will do.
    pub fn is_default(&self) -> bool {
        self.proxy.is_none() && self.tls.is_none()
    }

    /// A client with these settings.
    pub fn client(&self) -> Result<reqwest::Client, NotifierError> {
        let mut builder = reqwest::Client::builder()
            .user_agent("notification-controller")
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(proxy) = &self.proxy {
            let proxy = reqwest::Proxy::all(proxy.as_str())
                .map_err(|_| NotifierError::Client("invalid proxy URL".into()))?;
            builder = builder.proxy(proxy);
        }
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca {
                let certs = reqwest::Certificate::from_pem_bundle(ca)
                    .map_err(|e| NotifierError::Client(format!("invalid CA certificate: {e}")))?;
                if certs.is_empty() {
                    return Err(NotifierError::Client(
                        "no certificates found in ca.crt".into(),
                    ));
                }
                builder = builder.tls_certs_only(certs);
            }
            if let Some((cert, key)) = &tls.cert_and_key {
                let mut pem = cert.clone();
                pem.push(b'\n');
                pem.extend_from_slice(key);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    NotifierError::Client(format!("invalid client certificate or key: {e}"))
                })?;
                builder = builder.identity(identity);
            }
        }
        builder
            .build()
            .map_err(|e| NotifierError::Client(e.without_url().to_string()))
    }
}

/// Retries of one delivery (Flux's `retryablehttp`: 4 retries, 2s to 30s apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Requests made at most, the first included.
    pub attempts: u32,
    /// The wait before the first retry; doubled after each.
    pub initial_backoff: Duration,
    /// The cap on the wait.
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The longest error body kept in a message.
const ERROR_BODY_LIMIT: usize = 512;

/// Sends `request`, retrying connection errors, 429 and 5xx (but 501) with backoff. Returns the 2xx body.
pub async fn send(
    client: &reqwest::Client,
    request: &Request,
    retry: Retry,
) -> Result<bytes::Bytes, NotifierError> {
    let attempts = retry.attempts.max(1);
    let mut backoff = retry.initial_backoff;
    let mut attempt = 1;
    loop {
        let (error, retryable) = match send_once(client, request).await {
            Ok(body) => return Ok(body),
            Err(e) => {
                let retryable = match &e {
                    NotifierError::Send(_) => true,
                    NotifierError::Status { status, .. } => {
                        *status == 429 || (*status >= 500 && *status != 501)
                    }
                    _ => false,
                };
                (e, retryable)
            }
        };
        if !retryable {
            return Err(error);
        }
        if attempt >= attempts {
            return Err(NotifierError::GaveUp {
                attempts: attempt,
                last: Box::new(error),
            });
        }
        tracing::debug!(%error, attempt, "notification failed, retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(retry.max_backoff);
        attempt += 1;
    }
}

async fn send_once(
    client: &reqwest::Client,
    request: &Request,
) -> Result<bytes::Bytes, NotifierError> {
    let mut builder = client
        .request(request.method.clone(), request.url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json");
    for (k, v) in &request.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if let Some((user, password)) = &request.basic_auth {
        builder = builder.basic_auth(user, Some(password));
    }
    if request.method != http::Method::GET {
        builder = builder.body(request.body.clone());
    }
    // The URL is a secret (Slack and Discord webhooks carry their token in the path).
    let response = builder
        .send()
        .await
        .map_err(|e| NotifierError::Send(e.without_url().to_string()))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| NotifierError::Send(e.without_url().to_string()))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text: String = text.chars().take(ERROR_BODY_LIMIT).collect();
        return Err(NotifierError::Status {
            status: status.as_u16(),
            body: text,
        });
    }
    if request.check == ResponseCheck::SlackApi {
        #[derive(serde::Deserialize)]
        struct SlackResponse {
            ok: bool,
            #[serde(default)]
            error: String,
        }
        let answer: SlackResponse = serde_json::from_slice(&body).map_err(|e| {
            NotifierError::Rejected(format!("unable to unmarshal response body: {e}"))
        })?;
        if !answer.ok {
            return Err(NotifierError::Rejected(format!(
                "Slack responded with error: {}",
                answer.error
            )));
        }
    }
    Ok(body)
}
