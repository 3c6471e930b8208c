//! A forward HTTP proxy for tests, on a random loopback port, that only reaches loopback targets.
//!
//! It speaks both ways clients use a proxy: `CONNECT host:port` opens a TCP tunnel (how `https://` goes through
//! a proxy), and absolute-form requests (`GET http://host:port/path`) are forwarded one by one to the origin
//! (how `http://` does). Optional basic auth: without a matching `Proxy-Authorization` the answer is
//! `407 Proxy Authentication Required` with `Proxy-Authenticate: Basic`. Every request is logged, so a test
//! can prove its traffic really went through the proxy.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use testenv::proxy::{HttpProxy, ProxyOptions};
//! let proxy = HttpProxy::start(ProxyOptions::default().basic_auth("u", "p")).await?;
//! let url = proxy.url(); // http://127.0.0.1:<port>
//! // ... point a client at it; then:
//! let tunnels = proxy.requests().iter().filter(|r| r.method == "CONNECT" && r.status == 200).count();
//! proxy.shutdown().await;
//! # let _ = (url, tunnels); Ok(()) }
//! ```

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One request the proxy answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyLogEntry {
    /// `CONNECT`, `GET`, `POST`, ...
    pub method: String,
    /// `host:port` the client asked for.
    pub target: String,
    /// The status the proxy answered (for forwarded requests, the origin's).
    pub status: u16,
}

/// How the proxy behaves.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    basic_auth: Option<(String, String)>,
}

impl std::fmt::Debug for ProxyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyOptions")
            .field("basic_auth", &self.basic_auth.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl ProxyOptions {
    /// Requires `Proxy-Authorization: Basic` with this user and password on every request.
    pub fn basic_auth(mut self, username: &str, password: &str) -> Self {
        self.basic_auth = Some((username.to_string(), password.to_string()));
        self
    }
}

#[derive(Clone)]
struct State {
    expected: Option<String>,
    log: Arc<Mutex<Vec<ProxyLogEntry>>>,
}

/// A running proxy.
pub struct HttpProxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<ProxyLogEntry>>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

type Body = BoxBody<Bytes, hyper::Error>;

impl HttpProxy {
    /// Listens on `127.0.0.1:<random port>`.
    pub async fn start(options: ProxyOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = State {
            expected: options.basic_auth.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
            log: log.clone(),
        };
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { break };
                        let state = state.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |req| handle(state.clone(), req));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(socket), service)
                                .with_upgrades()
                                .await;
                        });
                    }
                }
            }
            connections.abort_all();
        });
        Ok(HttpProxy {
            addr,
            log,
            stop: Some(stop),
            task,
        })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, what goes into a client's proxy setting.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests answered so far, oldest first.
    pub fn requests(&self) -> Vec<ProxyLogEntry> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops accepting and closes every connection and tunnel.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn answer(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(message.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// The `host:port` a proxy request targets, when it is on loopback.
fn loopback_target(uri: &Uri) -> Result<String, &'static str> {
    let authority = uri.authority().ok_or("request target has no authority")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err("this proxy only reaches loopback targets");
    }
    let port = authority.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Ok(format!("{}:{port}", authority.host()))
}

async fn handle(state: State, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().to_string();
    let target = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let response = proxy(&state, req).await;
    if let Ok(mut log) = state.log.lock() {
        log.push(ProxyLogEntry {
            method,
            target,
            status: response.status().as_u16(),
        });
    }
    Ok(response)
}

async fn proxy(state: &State, mut req: Request<Incoming>) -> Response<Body> {
    if let Some(expected) = &state.expected {
        let given = req
            .headers()
            .get(header::PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            let mut response = answer(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "proxy authentication required\n",
            );
            response.headers_mut().insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"proxy\""),
            );
            return response;
        }
    }
    let target = match loopback_target(req.uri()) {
        Ok(t) => t,
        Err(reason) => return answer(StatusCode::FORBIDDEN, reason),
    };
    let upstream = match TcpStream::connect(&target).await {
        Ok(s) => s,
        Err(e) => return answer(StatusCode::BAD_GATEWAY, &format!("connect {target}: {e}\n")),
    };
    if req.method() == Method::CONNECT {
        tokio::spawn(async move {
            let mut upstream = upstream;
            if let Ok(upgraded) = hyper::upgrade::on(req).await {
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await;
            }
        });
        return Response::new(empty());
    }

    // Absolute form: forward to the origin in origin form, without the proxy's own headers.
    let origin_form = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    match origin_form.parse::<Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => return answer(StatusCode::BAD_REQUEST, &format!("{e}\n")),
    }
    req.headers_mut().remove(header::PROXY_AUTHORIZATION);
    req.headers_mut().remove("proxy-connection");
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(upstream)).await {
            Ok(c) => c,
            Err(e) => return answer(StatusCode::BAD_GATEWAY, &format!("{e}\n")),
        };
    tokio::spawn(connection);
    match sender.send_request(req).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(e) => answer(StatusCode::BAD_GATEWAY, &format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        let t = |s: &str| loopback_target(&s.parse::<Uri>().unwrap());
        assert_eq!(t("127.0.0.1:8443").unwrap(), "127.0.0.1:8443");
        assert_eq!(t("http://localhost/x").unwrap(), "localhost:80");
        assert_eq!(t("http://[::1]:81/x").unwrap(), "[::1]:81");
        assert!(t("example.com:443").is_err());
        assert!(t("http://10.0.0.1/x").is_err());
    }
}
