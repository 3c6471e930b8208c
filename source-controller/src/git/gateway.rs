//! A loopback HTTP gateway for one git operation, for what libgit2 cannot do per connection: present a TLS
//! client certificate (`tls.crt`/`tls.key`), and send `http://` requests through a proxy (libgit2 connects
//! straight to the remote, libgit2/libgit2#5650).
//!
//! libgit2 talks plain HTTP to `http://127.0.0.1:<port>/<token>/<path>`; the gateway checks the random token
//! (another local process cannot use it), strips it and forwards each smart-HTTP request to the real remote
//! with a rustls client holding the client certificate, the Secret's CA merged with the system roots (as Flux
//! does), and the proxy. Bodies are streamed both ways; libgit2's own headers, `Authorization` included (basic
//! auth after a 401, or the bearer token), pass through. A remote that cannot be reached answers 502 and the
//! cause is kept, so the error names it rather than libgit2's "unexpected http status code: 502".
//!
//! The gateway runs on its own thread and single-threaded runtime, so it works from the blocking pool (or with
//! no runtime at all); dropping it stops it and closes its connections. Requests are cut at the operation's
//! deadline.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use url::Url;

use super::AuthOptions;

/// The gateway could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// `tls.crt`/`tls.key` were not accepted by the TLS client.
    #[error("invalid client certificate or key ('tls.crt'/'tls.key'): {0}")]
    Identity(String),
    /// A `ca.crt` certificate was not accepted by the TLS client.
    #[error("invalid CA certificate: {0}")]
    Ca(String),
    /// The proxy URL was not accepted.
    #[error("invalid proxy URL")]
    Proxy,
    /// The HTTP client could not be built.
    #[error("failed to build the HTTP client: {0}")]
    Client(String),
    /// The loopback listener or its thread could not be started.
    #[error("failed to start the loopback git gateway: {0}")]
    Start(#[source] std::io::Error),
}

/// A running gateway for one remote. Dropping it shuts it down.
pub struct Gateway {
    url: String,
    base: String,
    origin: String,
    original: String,
    failure: Arc<Mutex<Option<String>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("remote", &self.original)
            .finish_non_exhaustive()
    }
}

/// How long the gateway's runtime may take to wind down after the operation (in-flight tasks are dropped).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Hop-by-hop headers (RFC 9110 §7.6.1) and those the gateway sets itself: never forwarded.
const SKIPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "expect",
];

#[derive(Clone)]
struct State {
    client: reqwest::Client,
    prefix: String,
    origin: String,
    base: String,
    remote: String,
    failure: Arc<Mutex<Option<String>>>,
}

impl State {
    /// Keeps the first upstream failure: later ones are usually consequences of it.
    fn record(&self, cause: String) {
        if let Ok(mut failure) = self.failure.lock()
            && failure.is_none()
        {
            *failure = Some(cause);
        }
    }
}

impl Gateway {
    /// A gateway when `auth` needs one for `url` (a client certificate for `https`, a proxy for `http`): `url`
    /// has the scheme `auth` was made for (a submodule's may not).
    pub fn for_remote(
        url: &str,
        auth: &AuthOptions,
        deadline: Instant,
    ) -> Result<Option<Self>, GatewayError> {
        let Some(transport) = auth.transport.filter(|_| auth.needs_gateway()) else {
            return Ok(None);
        };
        match Url::parse(url) {
            Ok(url) if url.scheme() == transport.as_str() && url.host_str().is_some() => {
                Self::start(&url, auth, deadline).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn start(url: &Url, auth: &AuthOptions, deadline: Instant) -> Result<Self, GatewayError> {
        let client = client(auth, deadline)?;
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(GatewayError::Start)?;
        listener
            .set_nonblocking(true)
            .map_err(GatewayError::Start)?;
        let addr = listener.local_addr().map_err(GatewayError::Start)?;
        let token = hex::encode(rand::random::<[u8; 16]>());
        let base = format!("http://{addr}/{token}");

        // What libgit2 sees: the remote's path (and credentials, which it uses itself) under the gateway.
        let mut gateway_url = Url::parse(&format!("{base}{}", url.path()))
            .map_err(|e| GatewayError::Start(std::io::Error::other(e)))?;
        gateway_url.set_query(url.query());
        if !url.username().is_empty() {
            let _ = gateway_url.set_username(url.username());
            let _ = gateway_url.set_password(url.password());
        }
        let mut remote = url.clone();
        let _ = remote.set_username("");
        let _ = remote.set_password(None);
        let original = remote.to_string();

        let failure = Arc::new(Mutex::new(None));
        let state = State {
            client,
            prefix: format!("/{token}/"),
            origin: url.origin().ascii_serialization(),
            base: base.clone(),
            remote: original.clone(),
            failure: failure.clone(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(GatewayError::Start)?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("git-gateway".to_string())
            .spawn(move || {
                runtime.block_on(serve(listener, state, stopped));
                runtime.shutdown_timeout(SHUTDOWN_GRACE);
            })
            .map_err(GatewayError::Start)?;
        Ok(Gateway {
            url: gateway_url.to_string(),
            base,
            origin: url.origin().ascii_serialization(),
            original,
            failure,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The URL to give libgit2.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Why a request to the remote failed, when one did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// `message` with the gateway's address replaced by the remote's (without credentials).
    pub fn unmask(&self, message: &str) -> String {
        message.replace(&self.base, &self.origin)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The upstream client: client certificate, the Secret's CA with the system roots, the proxy (or none: like
/// libgit2, environment proxies are not used), no redirects followed (libgit2 sees them), cut at `deadline`.
fn client(auth: &AuthOptions, deadline: Instant) -> Result<reqwest::Client, GatewayError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(deadline.saturating_duration_since(Instant::now()))
        .pool_idle_timeout(Duration::from_secs(5));
    builder = match &auth.proxy {
        Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy).map_err(|_| GatewayError::Proxy)?),
        None => builder.no_proxy(),
    };
    if let Some(ca) = &auth.ca {
        let certs = ca
            .reqwest_certificates()
            .map_err(|e| GatewayError::Ca(e.to_string()))?;
        builder = builder.tls_certs_merge(certs);
    }
    if let Some(identity) = &auth.client_certificate {
        let identity = identity
            .reqwest_identity()
            .map_err(|e| GatewayError::Identity(error_chain(&e)))?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| GatewayError::Client(error_chain(&e)))
}

async fn serve(listener: std::net::TcpListener, state: State, mut stopped: oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => return,
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(forward(&state, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn plain(status: StatusCode, message: String) -> Response<reqwest::Body> {
    let mut response = Response::new(reqwest::Body::from(message));
    *response.status_mut() = status;
    response
}

fn copy_headers(from: &HeaderMap) -> HeaderMap {
    from.iter()
        .filter(|(name, _)| !SKIPPED.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

async fn forward(state: &State, request: Request<Incoming>) -> Response<reqwest::Body> {
    let Some(rest) = request.uri().path().strip_prefix(&state.prefix) else {
        return plain(StatusCode::NOT_FOUND, "not found\n".to_string());
    };
    let mut target = format!("{}/{rest}", state.origin);
    if let Some(query) = request.uri().query() {
        target.push('?');
        target.push_str(query);
    }
    let method = request.method().clone();
    let headers = copy_headers(request.headers());
    let body = reqwest::Body::wrap(request.into_body());
    let sent = state
        .client
        .request(method, &target)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(err) => {
            let cause = format!(
                "request to '{}' failed: {}",
                state.remote,
                error_chain(&err.without_url())
            );
            state.record(cause.clone());
            return plain(StatusCode::BAD_GATEWAY, cause);
        }
    };
    if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        let cause = format!(
            "request to '{}' failed: proxy authentication required",
            state.remote
        );
        state.record(cause.clone());
        return plain(StatusCode::BAD_GATEWAY, cause);
    }
    let status = response.status();
    let mut headers = copy_headers(response.headers());
    // A redirect on the same remote stays behind the gateway.
    if let Some(location) = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.strip_prefix(&state.origin))
        .and_then(|rest| HeaderValue::from_str(&format!("{}{rest}", state.base)).ok())
    {
        headers.insert(header::LOCATION, location);
    }
    let failure = state.clone();
    let remote = state.remote.clone();
    let body = http::Response::<reqwest::Body>::from(response)
        .into_body()
        .map_err(move |err| {
            failure.record(format!(
                "reading the response of '{remote}' failed: {}",
                error_chain(&err)
            ));
            err
        });
    let mut out = Response::new(reqwest::Body::wrap(body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// An error and its sources, `: `-separated, each message once.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let message = e.to_string();
        if !parts.iter().any(|p| p.contains(&message)) {
            parts.push(message);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_skips_repeated_messages() {
        let inner = std::io::Error::other("received fatal alert: UnknownCA");
        let outer = std::io::Error::other(Wrapper(inner));
        assert_eq!(
            error_chain(&outer),
            "wrapped: received fatal alert: UnknownCA"
        );
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[tokio::test]
    async fn requires_the_token_reports_the_cause_and_stops_when_dropped() {
        let remote = "http://127.0.0.1:1/repo.git";
        let mut auth = AuthOptions::new(&Url::parse(remote).unwrap(), None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        assert!(
            Gateway::for_remote(remote, &auth, deadline)
                .unwrap()
                .is_none()
        );
        // A proxy nobody listens on: every forwarded request fails.
        auth.proxy = Some("http://127.0.0.1:1".to_string());
        let gateway = Gateway::for_remote(remote, &auth, deadline)
            .unwrap()
            .unwrap();
        let url = Url::parse(gateway.url()).unwrap();
        assert_eq!(url.scheme(), "http");
        assert!(url.path().ends_with("/repo.git"), "{url}");
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let authority = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
        let guess = format!("http://{authority}/0123/repo.git/info/refs");
        assert_eq!(client.get(&guess).send().await.unwrap().status(), 404);
        assert_eq!(gateway.failure(), None, "a refused guess is no failure");

        let refs = format!("{}/info/refs?service=git-upload-pack", gateway.url());
        let response = client.get(&refs).send().await.unwrap();
        assert_eq!(response.status(), 502);
        let failure = gateway.failure().unwrap();
        assert!(
            failure.starts_with("request to 'http://127.0.0.1:1/repo.git' failed: "),
            "{failure}"
        );
        assert_eq!(
            gateway.unmask(&format!("cannot fetch {}", gateway.url())),
            "cannot fetch http://127.0.0.1:1/repo.git"
        );

        drop(gateway);
        assert!(
            std::net::TcpStream::connect(&authority).is_err(),
            "the listener is closed"
        );
    }

    #[test]
    fn headers_drop_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("x"));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        let copied = copy_headers(&h);
        assert_eq!(copied.len(), 2);
        assert!(copied.contains_key(header::AUTHORIZATION));
    }
}
