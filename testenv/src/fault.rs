//! Fault injection: rules that fail, delay or reset the next requests matching (verb, resource, namespace,
//! name); cutting every open watch; resetting every open connection; queries over the request log; and the
//! `/testenv/` admin endpoints that expose all of it to other processes (`testenv serve`).
//!
//! Rules are consulted in the order they were added, before the request reaches authentication and the store;
//! the first rule that matches fires (and counts one of its `times`). Requests to `/testenv/` are never logged
//! or faulted.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::serve::{IncomingStream, Listener};
use axum::{Extension, Router};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::Server;
use crate::error::ApiError;
use crate::request_info::RequestInfo;
use crate::server::{AppState, LoggedRequest};

/// What a matching request gets instead of (or before) being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this HTTP status and a `metav1.Status` body with the matching reason (409 `Conflict`,
    /// 410 `Expired`, 429 `TooManyRequests`, 500 `InternalError`, 503 `ServiceUnavailable`, ...).
    Status {
        /// HTTP status code, 400 to 599.
        code: u16,
        /// `Retry-After` header and `details.retryAfterSeconds` (429 defaults to 1 second).
        retry_after: Option<u64>,
        /// The Status message (a message like the real server's when `None`).
        message: Option<String>,
    },
    /// Wait this long, then serve the request normally.
    Delay(Duration),
    /// Reset the request's TCP connection (RST) instead of answering.
    Reset,
}

/// A fault-injection rule: which requests (each matcher `None` = any) and what happens to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: Option<String>,
    /// Plural resource, or `resource/subresource` (like RBAC, `deployments` does not match `deployments/status`).
    pub resource: Option<String>,
    /// Namespace (`""` matches cluster-scoped and all-namespace requests).
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// How many matching requests are faulted; `None` = until the rule is removed.
    pub times: Option<u32>,
    /// What they get.
    pub action: FaultAction,
}

impl FaultRule {
    fn new(action: FaultAction) -> Self {
        Self {
            verb: None,
            resource: None,
            namespace: None,
            name: None,
            times: None,
            action,
        }
    }

    /// Fail matching requests with HTTP status `code` and a `metav1.Status` body.
    pub fn status(code: u16) -> Self {
        Self::new(FaultAction::Status {
            code,
            retry_after: None,
            message: None,
        })
    }

    /// Delay matching requests by `delay`, then serve them.
    pub fn delay(delay: Duration) -> Self {
        Self::new(FaultAction::Delay(delay))
    }

    /// Reset the connection of matching requests.
    pub fn reset() -> Self {
        Self::new(FaultAction::Reset)
    }

    /// Only requests with this verb.
    #[must_use]
    pub fn verb(mut self, verb: impl Into<String>) -> Self {
        self.verb = Some(verb.into());
        self
    }

    /// Only requests for this resource (`configmaps`, `deployments/status`).
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Only requests in this namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only requests for this object name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Fault only the next `n` matching requests.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// With [`FaultRule::status`]: the `Retry-After` seconds.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        if let FaultAction::Status { retry_after, .. } = &mut self.action {
            *retry_after = Some(seconds);
        }
        self
    }

    /// With [`FaultRule::status`]: the Status message.
    #[must_use]
    pub fn message(mut self, text: impl Into<String>) -> Self {
        if let FaultAction::Status { message, .. } = &mut self.action {
            *message = Some(text.into());
        }
        self
    }

    /// Whether the rule's matchers accept this request (`"*"` also means any).
    pub fn matches(&self, info: &RequestInfo) -> bool {
        fn ok(want: Option<&String>, got: &str) -> bool {
            want.is_none_or(|w| w == "*" || w == got)
        }
        let resource_ok = match self.resource.as_deref() {
            None | Some("*") => true,
            Some(r) => info.is_resource && r == info.resource_path(),
        };
        ok(self.verb.as_ref(), &info.verb)
            && resource_ok
            && ok(self.namespace.as_ref(), &info.namespace)
            && ok(self.name.as_ref(), &info.name)
    }

    fn validate(&self) -> Result<(), FaultError> {
        match &self.action {
            FaultAction::Status { code, .. } if !(400..=599).contains(code) => Err(
                FaultError::Invalid(format!("status {code} is not an error status (400-599)")),
            ),
            _ => Ok(()),
        }
    }
}

/// Identifies an added rule, for [`Server::remove_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FaultId(pub u64);

/// An invalid fault rule.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The rule does not make sense.
    #[error("invalid fault rule: {0}")]
    Invalid(String),
    /// The JSON form could not be decoded.
    #[error("invalid fault rule: {0}")]
    Json(#[from] serde_json::Error),
}

impl IntoResponse for FaultError {
    fn into_response(self) -> Response {
        ApiError::bad_request(self.to_string()).into_response()
    }
}

/// The JSON form of a rule, for `POST /testenv/faults`: matchers, `times`, and exactly one of `status` (with
/// optional `retryAfterSeconds`, `message`), `delayMs` or `reset: true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRuleSpec {
    /// Added rules only (ignored on input): the rule's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Verb matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// Resource matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Namespace matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Number of requests to fault (on output: how many are left); absent = until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Fail with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// With `status`: `Retry-After` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// With `status`: the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Delay by this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Reset the connection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

impl TryFrom<FaultRuleSpec> for FaultRule {
    type Error = FaultError;

    fn try_from(s: FaultRuleSpec) -> Result<Self, FaultError> {
        let action = match (s.status, s.delay_ms, s.reset) {
            (Some(code), None, false) => FaultAction::Status {
                code,
                retry_after: s.retry_after_seconds,
                message: s.message,
            },
            (None, Some(ms), false) => FaultAction::Delay(Duration::from_millis(ms)),
            (None, None, true) => FaultAction::Reset,
            _ => {
                return Err(FaultError::Invalid(
                    "give exactly one of status, delayMs or reset".into(),
                ));
            }
        };
        let rule = FaultRule {
            verb: s.verb,
            resource: s.resource,
            namespace: s.namespace,
            name: s.name,
            times: s.times,
            action,
        };
        rule.validate()?;
        Ok(rule)
    }
}

impl From<&FaultRule> for FaultRuleSpec {
    fn from(r: &FaultRule) -> Self {
        let mut s = FaultRuleSpec {
            verb: r.verb.clone(),
            resource: r.resource.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            times: r.times,
            ..Self::default()
        };
        match &r.action {
            FaultAction::Status {
                code,
                retry_after,
                message,
            } => {
                s.status = Some(*code);
                s.retry_after_seconds = *retry_after;
                s.message = message.clone();
            }
            FaultAction::Delay(d) => {
                s.delay_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            }
            FaultAction::Reset => s.reset = true,
        }
        s
    }
}

struct ActiveRule {
    id: FaultId,
    rule: FaultRule,
}

/// The fault-injection state of a server (kept across [`Server::restart`]).
pub struct Faults {
    rules: Mutex<Vec<ActiveRule>>,
    next_id: AtomicU64,
    watch_cuts: tokio::sync::watch::Sender<u64>,
    connections: Mutex<HashMap<u64, CancellationToken>>,
    next_connection: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rules: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            watch_cuts: tokio::sync::watch::channel(0).0,
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Marks a response whose connection was reset instead (the request log records status 0).
#[derive(Debug, Clone, Copy)]
pub struct ResetMarker;

impl Faults {
    /// Add a rule (after the existing ones).
    pub fn add(&self, rule: FaultRule) -> Result<FaultId, FaultError> {
        rule.validate()?;
        let id = FaultId(self.next_id.fetch_add(1, Ordering::Relaxed));
        lock(&self.rules).push(ActiveRule { id, rule });
        Ok(id)
    }

    /// Remove one rule; false if it is gone (removed, or used up).
    pub fn remove(&self, id: FaultId) -> bool {
        let mut rules = lock(&self.rules);
        let before = rules.len();
        rules.retain(|r| r.id != id);
        rules.len() != before
    }

    /// Remove every rule.
    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// The active rules; `times` is what is left.
    pub fn rules(&self) -> Vec<(FaultId, FaultRule)> {
        lock(&self.rules)
            .iter()
            .map(|r| (r.id, r.rule.clone()))
            .collect()
    }

    /// The action of the first rule matching `info`, counting it against the rule's `times`.
    pub fn take(&self, info: &RequestInfo) -> Option<FaultAction> {
        let mut rules = lock(&self.rules);
        let i = rules
            .iter()
            .position(|r| r.rule.times != Some(0) && r.rule.matches(info))?;
        let action = rules[i].rule.action.clone();
        if let Some(n) = &mut rules[i].rule.times {
            *n = n.saturating_sub(1);
            if *n == 0 {
                rules.remove(i);
            }
        }
        Some(action)
    }

    /// End every open watch stream now (cleanly, like the API server ending a watch); clients re-watch.
    pub fn cut_watches(&self) {
        self.watch_cuts.send_modify(|n| *n += 1);
    }

    /// Resolves on the next [`Faults::cut_watches`] after this call (for watch streams).
    pub fn watch_cut(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.watch_cuts.subscribe();
        async move {
            let _ = rx.changed().await;
        }
    }

    /// Reset every open connection (except `keep`); returns how many were reset.
    pub fn reset_connections(&self, keep: Option<u64>) -> usize {
        let conns = lock(&self.connections);
        let mut n = 0;
        for (id, token) in conns.iter() {
            if Some(*id) != keep {
                token.cancel();
                n += 1;
            }
        }
        n
    }

    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        lock(&self.connections).len()
    }

    fn register(self: &Arc<Self>) -> Connection {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        lock(&self.connections).insert(id, token.clone());
        Connection { id, token }
    }

    /// Apply the first matching rule to a request: `Some(response)` answers it instead of the server.
    pub(crate) async fn intercept(
        &self,
        info: &RequestInfo,
        conn: Option<&Connection>,
    ) -> Option<Response> {
        match self.take(info)? {
            FaultAction::Delay(d) => {
                tokio::time::sleep(d).await;
                None
            }
            FaultAction::Status {
                code,
                retry_after,
                message,
            } => Some(status_response(code, retry_after, message, info)),
            FaultAction::Reset => {
                let mut resp = match conn {
                    Some(c) => {
                        c.reset();
                        ApiError::internal("connection reset by testenv fault injection")
                            .into_response()
                    }
                    None => ApiError::internal(
                        "testenv fault injection: reset requested, but the request has no connection",
                    )
                    .into_response(),
                };
                resp.extensions_mut().insert(ResetMarker);
                Some(resp)
            }
        }
    }
}

fn status_response(
    code: u16,
    retry_after: Option<u64>,
    message: Option<String>,
    info: &RequestInfo,
) -> Response {
    let what = if info.group.is_empty() {
        info.resource.clone()
    } else {
        format!("{}.{}", info.resource, info.group)
    };
    let (reason, default_message) = match code {
        400 => (
            "BadRequest",
            "the request is invalid (injected)".to_string(),
        ),
        401 => ("Unauthorized", "Unauthorized".to_string()),
        403 => (
            "Forbidden",
            format!("{what} \"{}\" is forbidden (injected)", info.name),
        ),
        404 => ("NotFound", format!("{what} \"{}\" not found", info.name)),
        409 => (
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {what} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                info.name
            ),
        ),
        410 => ("Expired", "too old resource version (injected)".to_string()),
        422 => (
            "Invalid",
            format!("{what} \"{}\" is invalid (injected)", info.name),
        ),
        429 => (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later"
                .to_string(),
        ),
        500 => (
            "InternalError",
            "Internal error occurred: injected fault".to_string(),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".to_string(),
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted".to_string(),
        ),
        _ => ("", format!("injected fault ({code})")),
    };
    let retry_after = retry_after.or((code == 429).then_some(1));
    let error = ApiError {
        code,
        reason,
        message: message.unwrap_or(default_message),
        details: None,
        causes: Vec::new(),
    };
    let mut status = error.to_status();
    let mut details = serde_json::Map::new();
    if !info.name.is_empty() {
        details.insert("name".into(), json!(info.name));
    }
    if !info.group.is_empty() {
        details.insert("group".into(), json!(info.group));
    }
    if !info.resource.is_empty() {
        details.insert("kind".into(), json!(info.resource));
    }
    if let Some(s) = retry_after {
        details.insert("retryAfterSeconds".into(), json!(s));
    }
    if !details.is_empty() {
        status["details"] = serde_json::Value::Object(details);
    }
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        status.to_string(),
    )
        .into_response();
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

// ---- connections ----

/// One client connection (in each request's `ConnectInfo`), so a rule can reset it.
#[derive(Debug, Clone)]
pub struct Connection {
    id: u64,
    token: CancellationToken,
}

impl Connection {
    /// The connection's number (unique per server).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Reset this connection: its next read or write fails and the socket closes with a RST.
    pub fn reset(&self) {
        self.token.cancel();
    }
}

/// A TCP listener whose connections can be reset by fault injection.
pub struct FaultListener {
    inner: TcpListener,
    faults: Arc<Faults>,
}

impl FaultListener {
    /// Wrap a bound listener.
    pub fn new(inner: TcpListener, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

impl Listener for FaultListener {
    type Io = FaultIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = self.faults.register();
                    let reset = Box::pin(conn.token.clone().cancelled_owned());
                    let io = FaultIo {
                        stream,
                        conn,
                        reset,
                        faults: self.faults.clone(),
                    };
                    return (io, addr);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    // like axum's own listener: out of file descriptors and such; back off a little
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection's stream: fails with `ConnectionReset` (and closes with a RST) once the connection is reset.
pub struct FaultIo {
    stream: TcpStream,
    conn: Connection,
    reset: Pin<Box<WaitForCancellationFutureOwned>>,
    faults: Arc<Faults>,
}

impl FaultIo {
    /// The connection this stream belongs to.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.reset.as_mut().poll(cx).is_ready() {
            // linger 0: closing sends a RST, like a crashed peer or a load balancer dropping the flow
            let _ = self.stream.set_zero_linger();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset by testenv fault injection",
            ));
        }
        Ok(())
    }
}

impl Drop for FaultIo {
    fn drop(&mut self) {
        lock(&self.faults.connections).remove(&self.conn.id);
    }
}

impl AsyncRead for FaultIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected<IncomingStream<'_, FaultListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, FaultListener>) -> Self {
        stream.io().conn.clone()
    }
}

// ---- the admin endpoints ----

/// `/testenv/` admin endpoints. The server merges this router outside the request log and fault layer, so
/// these requests are neither logged nor faulted.
///
/// Authentication: none yet. When the server authenticates requests, this is the place to require an admin
/// identity (a `route_layer` on this router).
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route(
            "/testenv/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/testenv/faults/{id}", delete(remove_fault))
        .route("/testenv/watches/cut", post(cut_watches))
        .route("/testenv/connections/reset", post(reset_connections))
        .route("/testenv/requests", get(requests).delete(clear_requests))
}

async fn list_faults(State(s): State<AppState>) -> Response {
    let rules: Vec<FaultRuleSpec> = s
        .faults
        .rules()
        .iter()
        .map(|(id, r)| FaultRuleSpec {
            id: Some(id.0),
            ..FaultRuleSpec::from(r)
        })
        .collect();
    axum::Json(rules).into_response()
}

async fn add_fault(State(s): State<AppState>, body: Bytes) -> Result<Response, FaultError> {
    let spec: FaultRuleSpec = serde_json::from_slice(&body)?;
    let rule = FaultRule::try_from(FaultRuleSpec { id: None, ..spec })?;
    let id = s.faults.add(rule.clone())?;
    Ok((
        StatusCode::CREATED,
        axum::Json(FaultRuleSpec {
            id: Some(id.0),
            ..FaultRuleSpec::from(&rule)
        }),
    )
        .into_response())
}

async fn clear_faults(State(s): State<AppState>) -> StatusCode {
    s.faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(s): State<AppState>, Path(id): Path<u64>) -> Response {
    if s.faults.remove(FaultId(id)) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::not_found_path().into_response()
    }
}

async fn cut_watches(State(s): State<AppState>) -> StatusCode {
    s.faults.cut_watches();
    StatusCode::NO_CONTENT
}

async fn reset_connections(
    State(s): State<AppState>,
    conn: Option<Extension<ConnectInfo<Connection>>>,
) -> Response {
    // every connection but the one asking, so the answer arrives
    let n = s.faults.reset_connections(conn.map(|c| c.0.0.id));
    axum::Json(json!({"reset": n})).into_response()
}

async fn requests(State(s): State<AppState>) -> Response {
    let log: Vec<LoggedRequest> = lock(&s.log).iter().cloned().collect();
    axum::Json(log).into_response()
}

async fn clear_requests(State(s): State<AppState>) -> StatusCode {
    lock(&s.log).clear();
    StatusCode::NO_CONTENT
}

// ---- the library API ----

impl Server {
    /// Add a fault rule; matching requests are failed, delayed or reset until the rule is used up or removed.
    pub fn add_fault(&self, rule: FaultRule) -> Result<FaultId, FaultError> {
        self.state.faults.add(rule)
    }

    /// Remove a rule; false if it is already gone.
    pub fn remove_fault(&self, id: FaultId) -> bool {
        self.state.faults.remove(id)
    }

    /// Remove every rule (the [`Server::set_fault`] hook stays).
    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    /// The active rules (`times` = what is left).
    pub fn faults(&self) -> Vec<(FaultId, FaultRule)> {
        self.state.faults.rules()
    }

    /// End every open watch stream now; clients (kube-runtime watchers, informers) re-watch.
    pub fn cut_watches(&self) {
        self.state.faults.cut_watches();
    }

    /// Reset every open client connection (TCP RST); returns how many there were.
    pub fn reset_connections(&self) -> usize {
        self.state.faults.reset_connections(None)
    }

    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.state.faults.open_connections()
    }

    /// Logged requests for which `f` holds, oldest first.
    pub fn requests_matching(&self, f: impl Fn(&LoggedRequest) -> bool) -> Vec<LoggedRequest> {
        lock(&self.state.log)
            .iter()
            .filter(|r| f(r))
            .cloned()
            .collect()
    }

    /// How many logged requests had this verb and resource (`"*"` = any; resource may be `resource/sub`).
    pub fn count(&self, verb: &str, resource: &str) -> usize {
        lock(&self.state.log)
            .iter()
            .filter(|r| r.is(verb, resource))
            .count()
    }

    /// Forget the logged requests.
    pub fn clear_requests(&self) {
        lock(&self.state.log).clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::server::RequestUser;
    use axum::body::Body;
    use http::{Method, Request};
    use tower::ServiceExt;

    fn info(method: Method, path: &str) -> RequestInfo {
        RequestInfo::parse(&method, path, "")
    }

    #[test]
    fn rules_match_on_each_given_matcher() {
        let get_a = info(Method::GET, "/api/v1/namespaces/a/configmaps/x");
        let status = info(
            Method::PUT,
            "/apis/apps/v1/namespaces/a/deployments/d/status",
        );
        let r = FaultRule::status(500).verb("get").resource("configmaps");
        assert!(r.matches(&get_a));
        assert!(!r.clone().namespace("b").matches(&get_a));
        assert!(r.clone().namespace("a").name("x").matches(&get_a));
        assert!(!FaultRule::status(500).verb("list").matches(&get_a));
        assert!(FaultRule::status(500).matches(&get_a));
        assert!(FaultRule::status(500).resource("*").matches(&get_a));
        assert!(
            !FaultRule::status(500)
                .resource("deployments")
                .matches(&status)
        );
        assert!(
            FaultRule::status(500)
                .resource("deployments/status")
                .matches(&status)
        );
        assert!(
            !FaultRule::status(500)
                .resource("configmaps")
                .matches(&info(Method::GET, "/version"))
        );
    }

    #[test]
    fn times_count_down_and_first_rule_wins() {
        let f = Faults::default();
        let req = info(Method::GET, "/api/v1/namespaces/a/configmaps/x");
        f.add(FaultRule::status(409).times(2)).unwrap();
        f.add(FaultRule::status(500)).unwrap();
        let codes: Vec<_> = (0..4)
            .map(|_| match f.take(&req) {
                Some(FaultAction::Status { code, .. }) => code,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(codes, [409, 409, 500, 500]);
        assert_eq!(f.rules().len(), 1);
        assert!(f.add(FaultRule::status(200)).is_err());
    }

    #[test]
    fn spec_json_needs_exactly_one_action() {
        let rule: FaultRule = serde_json::from_value::<FaultRuleSpec>(json!(
            {"verb": "get", "times": 1, "status": 429, "retryAfterSeconds": 3}
        ))
        .unwrap()
        .try_into()
        .unwrap();
        assert_eq!(
            rule,
            FaultRule::status(429).verb("get").times(1).retry_after(3)
        );
        let delay: FaultRule = serde_json::from_value::<FaultRuleSpec>(json!({"delayMs": 20}))
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(delay.action, FaultAction::Delay(Duration::from_millis(20)));
        for bad in [
            json!({"verb": "get"}),
            json!({"status": 500, "reset": true}),
            json!({"status": 200}),
        ] {
            let spec: FaultRuleSpec = serde_json::from_value(bad.clone()).unwrap();
            assert!(FaultRule::try_from(spec).is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<FaultRuleSpec>(json!({"resources": "x"})).is_err());
    }

    /// The request log takes the user from the response extensions, where the (inner) auth layer puts it.
    #[tokio::test]
    async fn log_reads_the_user_from_the_response() {
        let state = AppState::new(crate::store::Store::new(None).unwrap());
        let app = Router::new()
            .fallback(|| async {
                let mut resp = StatusCode::OK.into_response();
                resp.extensions_mut().insert(RequestUser {
                    user: "system:serviceaccount:tenant:sa".into(),
                    groups: vec![],
                    impersonated_by: Some("flux".into()),
                });
                resp
            })
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::server::log_and_fault,
            ))
            .with_state(state.clone());
        let req = Request::builder()
            .method(Method::PATCH)
            .uri("/api/v1/namespaces/tenant/configmaps/c?fieldManager=kustomize-controller&dryRun=All")
            .body(Body::empty())
            .unwrap();
        app.oneshot(req).await.unwrap();
        let log = lock(&state.log);
        let r = log.back().unwrap();
        assert_eq!(
            (
                r.verb.as_str(),
                r.user.as_str(),
                r.impersonated_by.as_deref(),
                r.field_manager.as_str(),
                r.dry_run
            ),
            (
                "patch",
                "system:serviceaccount:tenant:sa",
                Some("flux"),
                "kustomize-controller",
                true
            )
        );
    }
}
