//! Providers: from a Flux event to a post on a chat, webhook or Git forge.
//!
//! Each provider type has a pure payload builder (golden-tested beside it) and shares one sender,
//! [`client::send`], that retries connection errors, 429 and 5xx answers with exponential backoff, as Flux's
//! `retryablehttp` client does. The whole delivery runs under the Provider's `spec.timeout` (the caller's job).

mod alertmanager;
mod client;
mod datadog;
mod generic;
mod git;
mod googlechat;
mod grafana;
mod lark;
mod matrix;
mod msteams;
mod opsgenie;
mod pagerduty;
mod slack;
mod telegram;
mod webex;

use std::collections::BTreeMap;
use std::time::Duration;

use common::events::FluxEvent;
use serde::Serialize;

pub use client::{HttpSettings, Retry, TlsMaterial};
pub use git::{commit_status_id, parse_revision};

/// A delivery failed. Messages never carry the address, token or headers (the caller masks them again).
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// The Provider's type is not implemented.
    #[error("provider {0} not supported")]
    Unsupported(String),
    /// The Provider is missing something its type needs.
    #[error("{0}")]
    Config(String),
    /// The HTTP client could not be built (bad CA, certificate or proxy).
    #[error("building HTTP client: {0}")]
    Client(String),
    /// The request could not be sent (connection refused, timeout, ...).
    #[error("failed to execute request: {0}")]
    Send(String),
    /// The endpoint answered with an error status.
    #[error("request failed with status code {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The endpoint answered 2xx but said it failed (Slack's `chat.postMessage`).
    #[error("{0}")]
    Rejected(String),
    /// Every attempt failed; the last error is the source.
    #[error("giving up after {attempts} attempt(s): {last}")]
    GaveUp {
        /// Requests made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<NotifierError>,
    },
}

/// Everything a Provider resolves to: its spec plus the values read from its secrets.
#[derive(Clone, Default)]
pub struct ProviderSettings {
    /// `spec.type`.
    pub type_: String,
    /// `spec.address`, or the secret's `address`.
    pub address: String,
    /// `spec.channel`.
    pub channel: String,
    /// `spec.username`, or the secret's `username`.
    pub username: String,
    /// The secret's `password`.
    pub password: String,
    /// The secret's `token`.
    pub token: String,
    /// The secret's `headers` (YAML map).
    pub headers: BTreeMap<String, String>,
    /// The Provider's UID (commit status contexts).
    pub uid: String,
    /// The commit status context for Git providers (`kind/name/<uid prefix>`).
    pub commit_status: String,
    /// Proxy, TLS material.
    pub http: HttpSettings,
    /// The fixed public APIs of the types that do not post to `address`.
    pub endpoints: Endpoints,
}

/// The Telegram Bot API, which Flux always posts to (`spec.address` is ignored).
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// Bitbucket Cloud's API, which Flux's client always uses (the address only names the repository).
pub const BITBUCKET_API: &str = "https://api.bitbucket.org/2.0";

/// The fixed endpoints of the provider types that do not post to the Provider's address. They are the public
/// services; the controller's configuration (never a Provider) may point them elsewhere, as tests do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The Telegram Bot API base ([`TELEGRAM_API`]).
    pub telegram: String,
    /// The Bitbucket Cloud API base ([`BITBUCKET_API`]).
    pub bitbucket: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            telegram: TELEGRAM_API.to_owned(),
            bitbucket: BITBUCKET_API.to_owned(),
        }
    }
}

impl Endpoints {
    /// The defaults, with `BITBUCKET_API_BASE_URL` honoured as Flux's Bitbucket client (go-bitbucket) does.
    pub fn from_env() -> Self {
        let mut endpoints = Endpoints::default();
        if let Ok(base) = std::env::var("BITBUCKET_API_BASE_URL")
            && !base.trim().is_empty()
        {
            endpoints.bitbucket = base.trim().to_owned();
        }
        endpoints
    }
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("type", &self.type_)
            .field("channel", &self.channel)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

impl ProviderSettings {
    /// Every secret value, to mask from error messages (longest first, so that a token containing another is
    /// masked whole).
    pub fn secrets(&self) -> Vec<String> {
        let mut values: Vec<String> = [&self.token, &self.password, &self.address]
            .into_iter()
            .filter(|v| v.len() >= 4)
            .cloned()
            .chain(self.headers.values().filter(|v| v.len() >= 4).cloned())
            .chain(self.http.proxy.clone().filter(|p| p.len() >= 4))
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values
    }
}

/// Replaces every occurrence of each secret in `message` with `*****`, as Flux's `masktoken` does.
pub fn mask_secrets(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_owned();
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret.as_str(), "*****");
        }
    }
    common::telemetry::mask_url_credentials(&out)
}

/// The provider types this controller can post to.
pub const SUPPORTED_TYPES: &[&str] = &[
    "slack",
    "discord",
    "rocket",
    "msteams",
    "googlechat",
    "generic",
    "generic-hmac",
    "alertmanager",
    "telegram",
    "matrix",
    "opsgenie",
    "pagerduty",
    "grafana",
    "webex",
    "lark",
    "datadog",
    "github",
    "gitlab",
    "gitea",
    "bitbucket",
    "bitbucketserver",
];

/// A request ready to send: where, what, and how to judge the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The method (`POST` for chats and webhooks, `PUT` for Matrix).
    pub method: http::Method,
    /// The URL (a secret: never logged).
    pub url: String,
    /// The JSON body.
    pub body: Vec<u8>,
    /// Extra headers (besides `Content-Type: application/json`).
    pub headers: Vec<(String, String)>,
    /// Basic auth.
    pub basic_auth: Option<(String, String)>,
    /// How a 2xx answer is judged.
    pub check: ResponseCheck,
}

/// Extra validation of a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCheck {
    /// Any 2xx is success.
    Status,
    /// Slack's `chat.postMessage`: always 200, `{"ok": false, "error": "..."}` on failure.
    SlackApi,
}

/// A configured provider.
#[derive(Debug, Clone)]
pub enum Notifier {
    /// A webhook or API receiving a request (PagerDuty: up to two) per event.
    Webhook(WebhookBuilder),
    /// A Git forge commit status (GitHub, GitLab, Gitea, Bitbucket): may first list existing statuses.
    CommitStatus(git::CommitStatus),
}

/// Builds the request for an event.
#[derive(Debug, Clone)]
pub struct WebhookBuilder {
    kind: WebhookKind,
    settings: ProviderSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WebhookKind {
    Slack,
    Discord,
    Rocket,
    MsTeams,
    GoogleChat,
    Generic,
    GenericHmac,
    Alertmanager,
    Telegram,
    Matrix,
    Opsgenie,
    PagerDuty,
    Grafana,
    Webex,
    Lark,
    DataDog,
}

fn parse_address(kind: &str, address: &str) -> Result<url::Url, NotifierError> {
    let url = url::Url::parse(address.trim())
        .map_err(|e| NotifierError::Config(format!("invalid {kind} URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NotifierError::Config(format!(
            "invalid {kind} URL: scheme must be http or https"
        )));
    }
    Ok(url)
}

/// `scheme://host[:port]` of `url` (Go's `URL.Scheme + "://" + URL.Host`: no credentials, no path).
pub(crate) fn origin(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

impl Notifier {
    /// The notifier for `settings.type_`, as Flux's factory builds it.
    pub fn new(mut settings: ProviderSettings) -> Result<Self, NotifierError> {
        let kind = match settings.type_.as_str() {
            "slack" => WebhookKind::Slack,
            "discord" => WebhookKind::Discord,
            "rocket" => WebhookKind::Rocket,
            "msteams" => WebhookKind::MsTeams,
            "googlechat" => WebhookKind::GoogleChat,
            "generic" => WebhookKind::Generic,
            "generic-hmac" => WebhookKind::GenericHmac,
            "alertmanager" => WebhookKind::Alertmanager,
            "telegram" => WebhookKind::Telegram,
            "matrix" => WebhookKind::Matrix,
            "opsgenie" => WebhookKind::Opsgenie,
            "pagerduty" => WebhookKind::PagerDuty,
            "grafana" => WebhookKind::Grafana,
            "webex" => WebhookKind::Webex,
            "lark" => WebhookKind::Lark,
            "datadog" => WebhookKind::DataDog,
            "github" | "gitlab" | "gitea" | "bitbucket" | "bitbucketserver" => {
                return git::CommitStatus::new(settings).map(Notifier::CommitStatus);
            }
            other => return Err(NotifierError::Unsupported(other.to_owned())),
        };
        settings.address = match kind {
            WebhookKind::Telegram => {
                if settings.channel.is_empty() {
                    return Err(NotifierError::Config("empty Telegram channel".into()));
                }
                if settings.token.is_empty() {
                    return Err(NotifierError::Config("empty Telegram token".into()));
                }
                let url = format!(
                    "{}/bot{}/sendMessage",
                    settings.endpoints.telegram.trim_end_matches('/'),
                    settings.token
                );
                url::Url::parse(&url)
                    .map_err(|_| NotifierError::Config("invalid Telegram API URL".into()))?
                    .to_string()
            }
            WebhookKind::DataDog => {
                if settings.token.is_empty() {
                    return Err(NotifierError::Config("token cannot be empty".into()));
                }
                format!("{}/api/v1/events", datadog::api_base(&settings.address)?)
            }
            _ => {
                let mut url = parse_address(&settings.type_, &settings.address)?;
                match kind {
                    WebhookKind::Discord if !settings.address.trim().ends_with("/slack") => {
                        // Discord's Slack-compatible endpoint.
                        let path = format!("{}/slack", url.path().trim_end_matches('/'));
                        url.set_path(&path);
                    }
                    WebhookKind::GenericHmac if settings.token.is_empty() => {
                        return Err(NotifierError::Config("HMAC key is empty".into()));
                    }
                    WebhookKind::Opsgenie if settings.token.is_empty() => {
                        return Err(NotifierError::Config("empty Opsgenie apikey/token".into()));
                    }
                    _ => {}
                }
                if kind == WebhookKind::PagerDuty {
                    // Only the scheme and host: the API paths are fixed.
                    origin(&url)
                } else {
                    url.to_string()
                }
            }
        };
        // The transports Flux gives these types: Telegram no TLS settings, Matrix no proxy, Lark neither.
        match kind {
            WebhookKind::Telegram => settings.http.tls = None,
            WebhookKind::Matrix => settings.http.proxy = None,
            WebhookKind::Lark => settings.http = HttpSettings::default(),
            _ => {}
        }
        Ok(Notifier::Webhook(WebhookBuilder { kind, settings }))
    }

    /// Delivers `event`: builds the request(s) and sends them with `retry`.
    pub async fn post(
        &self,
        client: &reqwest::Client,
        event: &FluxEvent,
        retry: Retry,
    ) -> Result<(), NotifierError> {
        match self {
            Notifier::Webhook(builder) => {
                // Flux's Datadog client does not retry (a retried event would be posted twice).
                let retry = if builder.kind == WebhookKind::DataDog {
                    Retry {
                        attempts: 1,
                        ..retry
                    }
                } else {
                    retry
                };
                for request in builder.requests(event)? {
                    client::send(client, &request, retry).await?;
                }
                Ok(())
            }
            Notifier::CommitStatus(status) => status.post(client, event, retry).await,
        }
    }

    /// The proxy and TLS settings the HTTP client needs.
    pub fn http(&self) -> &HttpSettings {
        match self {
            Notifier::Webhook(b) => &b.settings.http,
            Notifier::CommitStatus(s) => s.http(),
        }
    }
}

impl WebhookBuilder {
    /// The requests for `event`, to send in order (pure: what the golden tests check). Most types send one;
    /// PagerDuty sends none for `Progressing`, and a Change Event after the resolve of an info event.
    pub fn requests(&self, event: &FluxEvent) -> Result<Vec<Request>, NotifierError> {
        let s = &self.settings;
        let mut method = http::Method::POST;
        let mut url = s.address.clone();
        let mut headers = Vec::new();
        let mut basic_auth = None;
        let mut check = ResponseCheck::Status;
        let body = match self.kind {
            WebhookKind::Slack => {
                if !s.token.is_empty() {
                    headers.push(("Authorization".into(), format!("Bearer {}", s.token)));
                }
                if s.address == "https://slack.com/api/chat.postMessage" {
                    check = ResponseCheck::SlackApi;
                }
                to_json(&slack::slack_payload(event, &s.username, &s.channel))?
            }
            WebhookKind::Discord => to_json(&slack::discord_payload(event, &s.username))?,
            WebhookKind::Rocket => to_json(&slack::rocket_payload(event, &s.username, &s.channel))?,
            WebhookKind::MsTeams => {
                let host = url::Url::parse(&s.address)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_default();
                if host.ends_with(".webhook.office.com") {
                    to_json(&msteams::connector_payload(event))?
                } else {
                    to_json(&msteams::adaptive_card_payload(event))?
                }
            }
            WebhookKind::GoogleChat => to_json(&googlechat::payload(event))?,
            WebhookKind::Generic | WebhookKind::GenericHmac => {
                let body = to_json(&generic::GoEvent::from(event))?;
                headers.push((
                    generic::NOTIFICATION_HEADER.into(),
                    event.reporting_controller.clone(),
                ));
                for (k, v) in &s.headers {
                    headers.push((k.clone(), v.clone()));
                }
                if self.kind == WebhookKind::GenericHmac {
                    headers.push((
                        "X-Signature".into(),
                        format!("sha256={}", generic::sign(&body, s.token.as_bytes())),
                    ));
                }
                body
            }
            WebhookKind::Alertmanager => {
                if !s.token.is_empty() {
                    headers.push(("Authorization".into(), format!("Bearer {}", s.token)));
                }
                if !s.username.is_empty() && !s.password.is_empty() {
                    basic_auth = Some((s.username.clone(), s.password.clone()));
                }
                to_json(&alertmanager::payload(event))?
            }
            WebhookKind::Telegram => to_json(&telegram::payload(event, &s.channel))?,
            WebhookKind::Matrix => {
                let homeserver = url::Url::parse(&s.address)
                    .map_err(|_| NotifierError::Config("invalid Matrix homeserver URL".into()))?;
                method = http::Method::PUT;
                url = matrix::send_url(&homeserver, &s.channel, &matrix::transaction_id(event)?);
                headers.push(("Authorization".into(), format!("Bearer {}", s.token)));
                to_json(&matrix::payload(event))?
            }
            WebhookKind::Opsgenie => {
                headers.push(("Authorization".into(), format!("GenieKey {}", s.token)));
                to_json(&opsgenie::payload(event, &s.uid))?
            }
            WebhookKind::Grafana => {
                if !s.token.is_empty() {
                    headers.push(("Authorization".into(), format!("Bearer {}", s.token)));
                } else if !s.username.is_empty() && !s.password.is_empty() {
                    basic_auth = Some((s.username.clone(), s.password.clone()));
                }
                to_json(&grafana::payload(event))?
            }
            WebhookKind::Webex => {
                headers.push(("Authorization".into(), format!("Bearer {}", s.token)));
                to_json(&webex::payload(event, &s.channel))?
            }
            WebhookKind::Lark => to_json(&lark::payload(event))?,
            WebhookKind::DataDog => {
                headers.push(("Accept".into(), "application/json".into()));
                headers.push(("DD-API-KEY".into(), s.token.clone()));
                to_json(&datadog::payload(event))?
            }
            WebhookKind::PagerDuty => return self.pagerduty_requests(event),
        };
        Ok(vec![Request {
            method,
            url,
            body,
            headers,
            basic_auth,
            check,
        }])
    }

    fn pagerduty_requests(&self, event: &FluxEvent) -> Result<Vec<Request>, NotifierError> {
        if event.reason == "Progressing" {
            return Ok(Vec::new());
        }
        let s = &self.settings;
        let post = |path: &str, body: Vec<u8>| Request {
            method: http::Method::POST,
            url: format!("{}{path}", s.address),
            body,
            headers: Vec::new(),
            basic_auth: None,
            check: ResponseCheck::Status,
        };
        let mut requests = vec![post(
            "/v2/enqueue",
            to_json(&pagerduty::v2_event(event, &s.channel))?,
        )];
        if event.severity == common::events::Severity::Info {
            requests.push(post(
                "/v2/change/enqueue",
                to_json(&pagerduty::change_event(event, &s.channel))?,
            ));
        }
        Ok(requests)
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, NotifierError> {
    serde_json::to_vec(value)
        .map_err(|e| NotifierError::Config(format!("marshalling notification payload failed: {e}")))
}

/// `kind/name.namespace` with the kind lower-cased: how chat providers name the object.
pub(crate) fn object_name(event: &FluxEvent) -> String {
    let o = &event.involved_object;
    format!(
        "{}/{}.{}",
        o.kind.as_deref().unwrap_or_default().to_lowercase(),
        o.name.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default()
    )
}

/// `kind/name` and the reason as words, lower-cased: Flux's `formatNameAndDescription`.
pub(crate) fn name_and_description(event: &FluxEvent) -> (String, String) {
    let o = &event.involved_object;
    let name = format!(
        "{}/{}",
        o.kind.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default()
    )
    .to_lowercase();
    (name, git::describe_reason(&event.reason))
}

/// The event's time; `None` when the timestamp does not parse (Go then has its zero time).
fn event_time(event: &FluxEvent) -> Option<jiff::Timestamp> {
    event.timestamp.parse::<jiff::Timestamp>().ok()
}

/// The event's time as Go's `time.RFC3339` in UTC (`0001-01-01T00:00:00Z` for a timestamp that does not parse).
pub(crate) fn rfc3339(event: &FluxEvent) -> String {
    event_time(event)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// The event's time in Unix seconds (Go's `Time.Unix()`; its zero time for a timestamp that does not parse).
pub(crate) fn unix_seconds(event: &FluxEvent) -> i64 {
    const GO_ZERO_TIME: i64 = -62_135_596_800;
    event_time(event).map_or(GO_ZERO_TIME, |t| t.as_second())
}

/// The default timeout of a Provider (Flux: 15s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

#[cfg(test)]
pub(crate) mod testdata {
    use std::collections::BTreeMap;

    use common::events::{FluxEvent, Severity};
    use k8s_openapi::api::core::v1::ObjectReference;

    /// The event the golden tests post: a Kustomization applied, with metadata after Flux's merge.
    pub fn event(severity: Severity) -> FluxEvent {
        FluxEvent {
            involved_object: ObjectReference {
                api_version: Some("kustomize.toolkit.fluxcd.io/v1".into()),
                kind: Some("Kustomization".into()),
                name: Some("podinfo".into()),
                namespace: Some("flux-system".into()),
                uid: Some("6c3b5c1f-0000-4000-8000-000000000001".into()),
                ..Default::default()
            },
            severity,
            timestamp: "2026-11-21T14:00:00Z".into(),
            message: "Deployment/default/podinfo configured\nService/default/podinfo unchanged"
                .into(),
            reason: "ReconciliationSucceeded".into(),
            metadata: BTreeMap::from([
                (
                    "revision".into(),
                    "main@sha1:0123456789abcdef0123456789abcdef01234567".into(),
                ),
                ("summary".into(), "Cluster: prod".into()),
            ]),
            reporting_controller: "kustomize-controller".into(),
            reporting_instance: "kustomize-controller-7f9c-abc".into(),
        }
    }

    /// The requests a webhook-type Provider with `settings` makes for the golden event of `severity`.
    pub fn requests(settings: super::ProviderSettings, severity: Severity) -> Vec<super::Request> {
        match super::Notifier::new(settings).unwrap() {
            super::Notifier::Webhook(b) => b.requests(&event(severity)).unwrap(),
            super::Notifier::CommitStatus(_) => panic!("not a webhook"),
        }
    }

    /// The one request a webhook-type Provider with `settings` makes for the golden event of `severity`.
    pub fn request(settings: super::ProviderSettings, severity: Severity) -> super::Request {
        let mut requests = requests(settings, severity);
        assert_eq!(requests.len(), 1, "{requests:?}");
        requests.remove(0)
    }

    /// Parses `expected` and compares it with `actual` as JSON values, printing both on failure.
    pub fn assert_golden(actual: &[u8], expected: &str) {
        let actual: serde_json::Value = serde_json::from_slice(actual).unwrap();
        let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
        assert_eq!(
            actual,
            expected,
            "payload differs:\n{}",
            serde_json::to_string_pretty(&actual).unwrap()
        );
    }
}
