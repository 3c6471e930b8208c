//! A smart-HTTP git server for tests, e2e and `riptide up`: git's own `git http-backend` CGI behind a small
//! axum host on a random loopback port.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use testenv::git_http::{GitHttpOptions, GitHttpServer};
//! // `/srv/git` holds bare repositories, e.g. `/srv/git/app.git`.
//! let server = GitHttpServer::start("/srv/git", GitHttpOptions::default().basic_auth("u", "p")).await?;
//! let url = server.url("app.git"); // http://127.0.0.1:<port>/app.git
//! // ... clone it; then prove what happened on the wire:
//! let posts = server.access_log().iter().filter(|r| r.method == "POST").count();
//! server.shutdown().await;
//! # let _ = (url, posts); Ok(()) }
//! ```
//!
//! Options: basic auth or a bearer token in front of every request (401 with `WWW-Authenticate` when missing or
//! wrong); HTTPS with a server certificate signed by a CA generated at start ([`GitHttpOptions::tls`],
//! [`GitHttpServer::ca_pem`]), optionally requiring a client certificate signed by the same CA
//! ([`GitHttpOptions::require_client_cert`], [`GitHttpServer::client_certificate`]); and a "hang" mode
//! ([`GitHttpServer::start_hanging`]) that accepts connections and never answers, for timeout tests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use testenv::git_http::{GitHttpOptions, GitHttpServer};
//! let server = GitHttpServer::start("/srv/git", GitHttpOptions::default().tls().bearer_token("t0ken")).await?;
//! let url = server.url("app.git"); // https://127.0.0.1:<port>/app.git
//! let ca = server.ca_pem(); // Some(PEM), for a Secret's `ca.crt`
//! # let _ = (url, ca); Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{ChildStdout, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::fault::FaultListener;
use crate::tls::{Certificates, ClientCertificate, TlsListener};

/// One request the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// `GET` or `POST`.
    pub method: String,
    /// The request path, e.g. `/app.git/git-upload-pack`.
    pub path: String,
    /// The query string without `?` (empty when none), e.g. `service=git-upload-pack`.
    pub query: String,
    /// The status code sent.
    pub status: u16,
}

/// How the server behaves.
#[derive(Clone, Debug, Default)]
pub struct GitHttpOptions {
    auth: Option<Auth>,
    tls: bool,
    client_auth: bool,
}

#[derive(Clone)]
enum Auth {
    Basic(String, String),
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic(user, _) => write!(f, "Basic({user:?}, <redacted>)"),
            Auth::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

impl GitHttpOptions {
    /// Requires HTTP basic auth with this user and password on every request (replaces a bearer token).
    pub fn basic_auth(mut self, username: &str, password: &str) -> Self {
        self.auth = Some(Auth::Basic(username.to_string(), password.to_string()));
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request (replaces basic auth).
    pub fn bearer_token(mut self, token: &str) -> Self {
        self.auth = Some(Auth::Bearer(token.to_string()));
        self
    }

    /// Serves HTTPS with a certificate for `127.0.0.1`, `::1` and `localhost` signed by a CA generated at
    /// start ([`GitHttpServer::ca_pem`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Serves HTTPS ([`GitHttpOptions::tls`]) and fails the handshake unless the client presents a certificate
    /// signed by the server's CA ([`GitHttpServer::client_certificate`] issues one).
    pub fn require_client_cert(mut self) -> Self {
        self.tls = true;
        self.client_auth = true;
        self
    }
}

#[derive(Clone)]
struct AppState {
    root: PathBuf,
    git: PathBuf,
    expected_auth: Option<String>,
    challenge: &'static str,
    log: Arc<Mutex<Vec<AccessLogEntry>>>,
}

/// A running smart-HTTP git server (or a hanging socket, see [`GitHttpServer::start_hanging`]).
pub struct GitHttpServer {
    addr: SocketAddr,
    certs: Option<Arc<Certificates>>,
    log: Arc<Mutex<Vec<AccessLogEntry>>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl GitHttpServer {
    /// Serves the bare repositories under `root` (`GIT_PROJECT_ROOT`, every repository exported) on
    /// `127.0.0.1:<random port>`.
    pub async fn start(root: impl Into<PathBuf>, options: GitHttpOptions) -> std::io::Result<Self> {
        let root = root.into();
        let git = git_binary();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (expected_auth, challenge) = match options.auth {
            Some(Auth::Basic(u, p)) => (
                Some(format!(
                    "Basic {}",
                    base64_encode(format!("{u}:{p}").as_bytes())
                )),
                "Basic realm=\"git\"",
            ),
            Some(Auth::Bearer(t)) => (Some(format!("Bearer {t}")), "Bearer realm=\"git\""),
            None => (None, "Basic realm=\"git\""),
        };
        let state = AppState {
            root,
            git,
            expected_auth,
            challenge,
            log: log.clone(),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let certs = if options.tls {
            Some(Arc::new(
                Certificates::generate().map_err(std::io::Error::other)?,
            ))
        } else {
            None
        };
        let task = match &certs {
            Some(certs) => {
                let config = if options.client_auth {
                    certs.server_config_requiring_client_certs()
                } else {
                    certs.server_config()
                }
                .map_err(std::io::Error::other)?;
                let listener =
                    TlsListener::new(FaultListener::new(listener, Arc::default()), config)?;
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await;
                })
            }
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await;
            }),
        };
        Ok(GitHttpServer {
            addr,
            certs,
            log,
            stop: Some(stop),
            task,
        })
    }

    /// A server that accepts connections and never answers (nor closes them) until it is shut down: a git
    /// client talking to it hangs until its own timeout.
    pub async fn start_hanging() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => held.push(socket),
                        Err(_) => break,
                    },
                }
            }
            drop(held);
        });
        Ok(GitHttpServer {
            addr,
            certs: None,
            log: Arc::new(Mutex::new(Vec::new())),
            stop: Some(stop),
            task,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/<repo>` (`https://` with TLS) for a repository path relative to the root
    /// (e.g. `app.git`).
    pub fn url(&self, repo: &str) -> String {
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/{}", self.addr, repo.trim_start_matches('/'))
    }

    /// With TLS: the CA certificate (PEM) that signed the server's certificate, for a Secret's `ca.crt`.
    pub fn ca_pem(&self) -> Option<&str> {
        self.certs.as_deref().map(|c| c.ca_pem.as_str())
    }

    /// With TLS: a fresh client certificate and key (PEM) signed by the server's CA, which a server started
    /// with [`GitHttpOptions::require_client_cert`] accepts.
    pub fn client_certificate(&self, common_name: &str) -> std::io::Result<ClientCertificate> {
        let certs = self
            .certs
            .as_deref()
            .ok_or_else(|| std::io::Error::other("the server was started without TLS"))?;
        certs
            .client_certificate(common_name)
            .map_err(std::io::Error::other)
    }

    /// The requests answered so far, oldest first.
    pub fn access_log(&self) -> Vec<AccessLogEntry> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Forgets the requests logged so far.
    pub fn clear_access_log(&self) {
        if let Ok(mut log) = self.log.lock() {
            log.clear();
        }
    }

    /// Stops the server and closes its connections.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn git_binary() -> PathBuf {
    for candidate in ["/usr/local/bin/git", "/usr/bin/git"] {
        let path = PathBuf::from(candidate);
        if path.exists() {
            return path;
        }
    }
    PathBuf::from("git")
}

fn record(state: &AppState, req: &RequestLine, status: StatusCode) {
    if let Ok(mut log) = state.log.lock() {
        log.push(AccessLogEntry {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            status: status.as_u16(),
        });
    }
}

struct RequestLine {
    method: String,
    path: String,
    query: String,
}

fn plain(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(message.to_string()));
    *response.status_mut() = status;
    response
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let line = RequestLine {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        query: request.uri().query().unwrap_or_default().to_string(),
    };
    if let Some(expected) = &state.expected_auth {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            let mut response = plain(StatusCode::UNAUTHORIZED, "authentication required\n");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(state.challenge),
            );
            record(&state, &line, StatusCode::UNAUTHORIZED);
            return response;
        }
    }
    let response = match cgi(&state, &line, request).await {
        Ok(response) => response,
        Err(err) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("git http-backend: {err}\n"),
        ),
    };
    record(&state, &line, response.status());
    response
}

async fn cgi(state: &AppState, line: &RequestLine, request: Request) -> std::io::Result<Response> {
    let headers = request.headers().clone();
    let header_str = |name: &header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut command = Command::new(&state.git);
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &line.method)
        .env("QUERY_STRING", &line.query)
        .env("PATH_INFO", &line.path)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_TYPE", header_str(&header::CONTENT_TYPE))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
    {
        command.env("CONTENT_LENGTH", length);
    }
    if let Some(encoding) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    if let Some(protocol) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        command.env("GIT_PROTOCOL", protocol);
    }
    if state.expected_auth.is_some() {
        command.env("REMOTE_USER", "git");
    }
    let mut child = command.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut body = request.into_body().into_data_stream();
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = body.next().await {
            if stdin.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = stdin.shutdown().await;
    });

    // CGI headers, up to the blank line.
    let mut buffer = Vec::new();
    let (head_end, body_start) = loop {
        if let Some(found) = find_header_end(&buffer) {
            break found;
        }
        let mut chunk = [0u8; 8192];
        let n = stdout.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("CGI ended before its headers"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let rest = buffer[body_start..].to_vec();
    let mut builder = Response::builder().status(StatusCode::OK);
    for header_line in head.lines() {
        let Some((name, value)) = header_line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(500);
            builder = builder.status(code);
        } else {
            builder = builder.header(name.trim(), value);
        }
    }
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(rest) }).chain(
        futures::stream::unfold(
            (stdout, child),
            |(mut stdout, child): (ChildStdout, tokio::process::Child)| async move {
                let mut chunk = vec![0u8; 64 * 1024];
                match stdout.read(&mut chunk).await {
                    Ok(0) => None,
                    Ok(n) => {
                        chunk.truncate(n);
                        Some((Ok(chunk), (stdout, child)))
                    }
                    Err(err) => Some((Err(err), (stdout, child))),
                }
            },
        ),
    );
    builder
        .body(Body::from_stream(stream))
        .map_err(std::io::Error::other)
}

fn find_header_end(buffer: &[u8]) -> Option<(usize, usize)> {
    if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some((i, i + 4));
    }
    buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2))
}

fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"u:p"), "dTpw");
    }

    #[test]
    fn cgi_header_end_with_crlf_or_lf() {
        assert_eq!(find_header_end(b"A: b\r\n\r\nbody"), Some((4, 8)));
        assert_eq!(find_header_end(b"A: b\n\nbody"), Some((4, 6)));
        assert_eq!(find_header_end(b"A: b\n"), None);
    }
}
