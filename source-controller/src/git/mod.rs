//! Git with libgit2: authentication from a Secret, remote ref resolution without a clone (`ls-remote`), and
//! shallow single-ref checkouts into a directory. Everything here is blocking; callers run it on the blocking
//! pool under the GitRepository's timeout.
//!
//! What libgit2 cannot do per connection goes through a loopback [`gateway::Gateway`] that lives for one
//! operation: a TLS client certificate (`tls.crt`/`tls.key`) for `https`, and a proxy for `http` remotes.
//! A custom CA (`ca.crt`) is checked in the `certificate_check` callback, a bearer token is a custom header,
//! and an `https` proxy is libgit2's own (CONNECT).
//!
//! [`github_app`] (async, unlike the rest) turns a GitHub App Secret (`spec.provider: github`) into an
//! installation token, which the reconciler hands to libgit2 as basic-auth credentials.

pub mod gateway;
pub mod github_app;
pub mod known_hosts;
pub mod semver;
pub mod verify;
mod worktree;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use common::api::source_v1::GitCheckout;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, ErrorClass, ErrorCode,
    FetchOptions, ProxyOptions, RemoteCallbacks, Repository,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use url::Url;

/// The transport of a GitRepository URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `http://`.
    Http,
    /// `https://`.
    Https,
    /// `ssh://`.
    Ssh,
}

impl Transport {
    /// The scheme.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Https => "https",
            Transport::Ssh => "ssh",
        }
    }
}

/// A Secret's data did not make valid auth options.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The URL scheme is not one Flux admits.
    #[error("unsupported URL scheme '{0}': must be http, https or ssh")]
    Scheme(String),
    /// A required key is missing.
    #[error("invalid '{transport}' auth option: '{key}' is required")]
    Missing {
        /// The transport.
        transport: &'static str,
        /// The missing key.
        key: &'static str,
    },
    /// `password` without `username`.
    #[error("invalid '{0}' auth option: 'password' requires 'username' to be set")]
    PasswordWithoutUsername(&'static str),
    /// A value is not UTF-8.
    #[error("invalid '{0}' value: not valid UTF-8")]
    NotUtf8(&'static str),
    /// A value has control characters (it would not make a valid HTTP header).
    #[error("invalid '{0}' value: contains control characters")]
    ControlCharacters(&'static str),
    /// `ca.crt` (or `caFile`) holds no usable PEM certificate.
    #[error("invalid '{key}': {reason}")]
    InvalidCa {
        /// The key the CA came from.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `tls.crt` or `tls.key` is not a usable PEM certificate chain or private key.
    #[error("invalid '{key}': {reason}")]
    InvalidClientCertificate {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The CA certificates of a Secret's `ca.crt` (or the deprecated `caFile`): an HTTPS server whose certificate
/// chains to one of them is trusted, in addition to the system's trust store (as Flux does).
///
/// libgit2 offers no per-connection CA setting (`git_libgit2_opts` sets the trust store for the whole
/// process), so the server certificate libgit2 hands to the `certificate_check` callback is verified here,
/// with webpki: chain to one of these certificates, validity period, `serverAuth` usage and the host name.
#[derive(Clone)]
pub struct CaBundle {
    certs: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("certificates", &self.certs.len())
            .finish()
    }
}

impl CaBundle {
    /// Parses the PEM certificates of `key`'s value.
    pub fn from_pem(key: &'static str, pem: &[u8]) -> Result<Self, AuthError> {
        let invalid = |reason: String| AuthError::InvalidCa { key, reason };
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("failed to parse PEM: {e}")))?;
        if certs.is_empty() {
            return Err(invalid("no PEM certificate found".to_string()));
        }
        for cert in &certs {
            webpki::anchor_from_trusted_cert(cert)
                .map_err(|e| invalid(format!("invalid certificate: {e}")))?;
        }
        Ok(Self { certs })
    }

    /// The certificates, DER.
    pub fn der(&self) -> impl Iterator<Item = &[u8]> {
        self.certs.iter().map(|c| c.as_ref())
    }

    /// The certificates for an HTTP client, to merge with the system roots.
    pub fn reqwest_certificates(&self) -> Result<Vec<reqwest::Certificate>, reqwest::Error> {
        self.der().map(reqwest::Certificate::from_der).collect()
    }

    /// Checks a server's certificate (DER) for `host` against these CAs.
    pub fn verify(&self, der: &[u8], host: &str) -> Result<(), String> {
        let anchors = self
            .certs
            .iter()
            .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
            .collect::<Vec<_>>();
        let der = CertificateDer::from(der);
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| format!("invalid server certificate: {e}"))?;
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            UnixTime::now(),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| format!("certificate not trusted by the given CA: {e}"))?;
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| format!("invalid host name '{host}': {e}"))?;
        cert.verify_is_valid_for_subject_name(&name)
            .map_err(|e| format!("certificate not valid for '{host}': {e}"))
    }
}

/// A TLS client certificate chain and its private key (`tls.crt`, `tls.key`), PEM.
#[derive(Clone)]
pub struct ClientCertificate {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Checks that `tls.crt` holds at least one certificate and `tls.key` a private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, AuthError> {
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AuthError::InvalidClientCertificate {
                key: "tls.crt",
                reason: format!("failed to parse PEM: {e}"),
            })?;
        if certs.is_empty() {
            return Err(AuthError::InvalidClientCertificate {
                key: "tls.crt",
                reason: "no PEM certificate found".to_string(),
            });
        }
        // The error of the PEM parser is not shown: it could quote key material.
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| {
            AuthError::InvalidClientCertificate {
                key: "tls.key",
                reason: "no PEM private key found".to_string(),
            }
        })?;
        Ok(Self {
            cert_pem: cert_pem.to_vec(),
            key_pem: key_pem.to_vec(),
        })
    }

    /// The certificate chain then the key, one PEM buffer.
    pub fn pem(&self) -> Vec<u8> {
        let mut pem = self.cert_pem.clone();
        pem.push(b'\n');
        pem.extend_from_slice(&self.key_pem);
        pem
    }

    /// The certificate and key as an HTTP client's identity.
    pub fn reqwest_identity(&self) -> Result<reqwest::Identity, reqwest::Error> {
        reqwest::Identity::from_pem(&self.pem())
    }
}

/// Credentials for one remote.
#[derive(Clone, Default)]
pub struct AuthOptions {
    /// The transport.
    pub transport: Option<Transport>,
    /// Basic auth user (https/http), or the ssh user.
    pub username: Option<String>,
    /// Basic auth password, or the ssh key passphrase.
    pub password: Option<String>,
    /// `bearerToken`.
    pub bearer_token: Option<String>,
    /// `identity` (PEM/OpenSSH private key).
    pub identity: Option<String>,
    /// `known_hosts`.
    pub known_hosts: Option<String>,
    /// Proxy URL (from `proxySecretRef`), credentials included.
    pub proxy: Option<String>,
    /// `ca.crt` (or the deprecated `caFile`), for `https`.
    pub ca: Option<CaBundle>,
    /// `tls.crt` and `tls.key`, for `https` (mutual TLS, through a [`gateway::Gateway`]).
    pub client_certificate: Option<ClientCertificate>,
    host: String,
    port: Option<u16>,
}

impl std::fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthOptions")
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("client_certificate", &self.client_certificate)
            .finish_non_exhaustive()
    }
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &'static str) -> Result<Option<String>, AuthError> {
    data.get(key)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8(v.clone()).map_err(|_| AuthError::NotUtf8(key)))
        .transpose()
}

/// The TLS options of a Secret for `https`: the CA (`ca.crt`, or the deprecated `caFile`) and the client
/// certificate (`tls.crt` with `tls.key`).
pub fn tls_options(
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<(Option<CaBundle>, Option<ClientCertificate>), AuthError> {
    // `ca.crt` wins over the deprecated `caFile`, as in Flux.
    let ca = ["ca.crt", "caFile"]
        .into_iter()
        .find_map(|k| data.get(k).filter(|v| !v.is_empty()).map(|v| (k, v)))
        .map(|(key, pem)| CaBundle::from_pem(key, pem))
        .transpose()?;
    let get = |k: &str| data.get(k).filter(|v| !v.is_empty());
    let missing = |key| AuthError::Missing {
        transport: Transport::Https.as_str(),
        key,
    };
    let client_certificate = match (get("tls.crt"), get("tls.key")) {
        (None, None) => None,
        (Some(_), None) => return Err(missing("tls.key")),
        (None, Some(_)) => return Err(missing("tls.crt")),
        (Some(cert), Some(key)) => Some(ClientCertificate::from_pem(cert, key)?),
    };
    Ok((ca, client_certificate))
}

impl AuthOptions {
    /// Auth options for `url` from a Secret's data (`None`: no `secretRef`), validated as Flux does.
    pub fn new(url: &Url, data: Option<&BTreeMap<String, Vec<u8>>>) -> Result<Self, AuthError> {
        let transport = match url.scheme() {
            "http" => Transport::Http,
            "https" => Transport::Https,
            "ssh" => Transport::Ssh,
            other => return Err(AuthError::Scheme(other.to_string())),
        };
        let mut opts = AuthOptions {
            transport: Some(transport),
            host: url.host_str().unwrap_or_default().to_string(),
            port: url.port(),
            ..Default::default()
        };
        if transport == Transport::Ssh && !url.username().is_empty() {
            opts.username = Some(url.username().to_string());
        }
        let Some(data) = data else {
            return Ok(opts);
        };
        let name = transport.as_str();
        match transport {
            Transport::Http | Transport::Https => {
                // As Flux: a bearer token replaces basic auth.
                opts.bearer_token = text(data, "bearerToken")?;
                if opts.bearer_token.is_none() {
                    opts.username = text(data, "username")?;
                    opts.password = text(data, "password")?;
                }
                if opts
                    .bearer_token
                    .as_deref()
                    .is_some_and(|t| t.chars().any(char::is_control))
                {
                    return Err(AuthError::ControlCharacters("bearerToken"));
                }
                if opts.password.is_some() && opts.username.is_none() {
                    return Err(AuthError::PasswordWithoutUsername(name));
                }
                if transport == Transport::Https {
                    (opts.ca, opts.client_certificate) = tls_options(data)?;
                }
            }
            Transport::Ssh => {
                if let Some(u) = text(data, "username")? {
                    opts.username = Some(u);
                }
                opts.password = text(data, "password")?;
                opts.identity = text(data, "identity")?;
                opts.known_hosts = text(data, "known_hosts")?;
                if opts.identity.is_none() {
                    return Err(AuthError::Missing {
                        transport: name,
                        key: "identity",
                    });
                }
                if opts.known_hosts.is_none() {
                    return Err(AuthError::Missing {
                        transport: name,
                        key: "known_hosts",
                    });
                }
            }
        }
        Ok(opts)
    }

    /// Whether libgit2 must go through a [`gateway::Gateway`]: a client certificate for `https`, or a proxy for
    /// `http` (libgit2 sends plain-HTTP requests straight to the remote, libgit2/libgit2#5650).
    pub fn needs_gateway(&self) -> bool {
        match self.transport {
            Some(Transport::Https) => self.client_certificate.is_some(),
            Some(Transport::Http) => self.proxy.is_some(),
            _ => false,
        }
    }

    /// The options libgit2 uses towards a gateway: its credentials and headers, no TLS, no proxy.
    fn for_gateway(&self) -> Self {
        AuthOptions {
            transport: Some(Transport::Http),
            proxy: None,
            ca: None,
            client_certificate: None,
            ..self.clone()
        }
    }

    /// Callbacks for one connection. A server certificate the `ca.crt` CA rejects is handed back to libgit2's
    /// own verdict (the system trust store); why the CA rejected it is kept in `tls_note` for the error.
    fn callbacks<'a>(
        &'a self,
        deadline: Instant,
        tls_note: &'a RefCell<Option<String>>,
    ) -> RemoteCallbacks<'a> {
        let mut cb = RemoteCallbacks::new();
        let mut attempts = 0u32;
        cb.credentials(move |_url, user_from_url, allowed| {
            attempts += 1;
            if attempts > 2 {
                return Err(git2::Error::from_str("authentication failed"));
            }
            if allowed.contains(CredentialType::SSH_KEY)
                && let Some(identity) = &self.identity
            {
                let user = self.username.as_deref().or(user_from_url).unwrap_or("git");
                return Cred::ssh_key_from_memory(user, None, identity, self.password.as_deref());
            }
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(self.username.as_deref().or(user_from_url).unwrap_or("git"));
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
                && let Some(user) = &self.username
            {
                return Cred::userpass_plaintext(
                    user,
                    self.password.as_deref().unwrap_or_default(),
                );
            }
            Err(git2::Error::from_str(
                "authentication required but no credentials were provided",
            ))
        });
        cb.certificate_check(move |cert, host| {
            if let (Some(x509), Some(ca)) = (cert.as_x509(), &self.ca) {
                return match ca.verify(x509.data(), host) {
                    Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                    Err(reason) => {
                        *tls_note.borrow_mut() = Some(reason);
                        Ok(CertificateCheckStatus::CertificatePassthrough)
                    }
                };
            }
            if let Some(hostkey) = cert.as_hostkey() {
                let Some(known) = &self.known_hosts else {
                    return Err(git2::Error::from_str(
                        "no known_hosts to verify the host key",
                    ));
                };
                let Some(key) = hostkey.hostkey() else {
                    return Err(git2::Error::from_str(
                        "server did not present a raw host key",
                    ));
                };
                return if known_hosts::matches(known, &self.host, self.port, key) {
                    Ok(CertificateCheckStatus::CertificateOk)
                } else {
                    Err(git2::Error::from_str(&format!(
                        "host key for '{}' does not match known_hosts",
                        self.host
                    )))
                };
            }
            Ok(CertificateCheckStatus::CertificatePassthrough)
        });
        cb.transfer_progress(move |_| Instant::now() < deadline);
        cb.sideband_progress(move |_| Instant::now() < deadline);
        cb
    }

    fn proxy_options(&self) -> ProxyOptions<'_> {
        let mut proxy = ProxyOptions::new();
        if let Some(url) = &self.proxy {
            proxy.url(url);
        }
        proxy
    }

    fn headers(&self) -> Vec<String> {
        self.bearer_token
            .iter()
            .map(|t| format!("Authorization: Bearer {t}"))
            .collect()
    }

    /// Fetch options with these credentials, certificate checks, proxy and headers.
    fn fetch_options<'a>(
        &'a self,
        headers: &[&str],
        deadline: Instant,
        tls_note: &'a RefCell<Option<String>>,
    ) -> FetchOptions<'a> {
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(self.callbacks(deadline, tls_note))
            .proxy_options(self.proxy_options())
            .custom_headers(headers);
        options
    }
}

/// A libgit2 error, with why the `ca.crt` CA rejected the server certificate when that is what failed.
fn git_error(err: git2::Error, tls_note: &RefCell<Option<String>>) -> GitError {
    match tls_note.borrow_mut().take() {
        Some(reason) if err.code() == ErrorCode::Certificate || err.class() == ErrorClass::Ssl => {
            GitError::Certificate {
                message: err.message().to_string(),
                reason,
            }
        }
        _ => GitError::Git(err),
    }
}

/// libgit2's view of a remote: the URL and options it uses, and the gateway standing in for the remote when
/// one is needed (dropped, so stopped, with the endpoint).
struct Endpoint<'a> {
    url: Cow<'a, str>,
    auth: Cow<'a, AuthOptions>,
    gateway: Option<gateway::Gateway>,
}

impl<'a> Endpoint<'a> {
    fn new(url: &'a str, auth: &'a AuthOptions, deadline: Instant) -> Result<Self, GitError> {
        Ok(match gateway::Gateway::for_remote(url, auth, deadline)? {
            Some(gateway) => Endpoint {
                url: Cow::Owned(gateway.url().to_string()),
                auth: Cow::Owned(auth.for_gateway()),
                gateway: Some(gateway),
            },
            None => Endpoint {
                url: Cow::Borrowed(url),
                auth: Cow::Borrowed(auth),
                gateway: None,
            },
        })
    }

    /// An error of a remote operation: with a gateway, the cause it recorded when it could not reach the
    /// remote, and never the gateway's address.
    fn error(&self, err: GitError) -> GitError {
        let Some(gateway) = &self.gateway else {
            return err;
        };
        if let Some(cause) = gateway.failure() {
            return GitError::Remote(cause);
        }
        match err {
            GitError::Git(e) => GitError::Git(git2::Error::new(
                e.code(),
                e.class(),
                gateway.unmask(e.message()),
            )),
            other => other,
        }
    }
}

/// What to check out, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A branch.
    Branch(String),
    /// A tag.
    Tag(String),
    /// The newest tag matching a semver constraint.
    SemVer(String),
    /// A full reference name (`refs/heads/main`, `refs/pull/1/head`).
    Name(String),
    /// A commit, optionally on a branch.
    Commit {
        /// The commit SHA.
        sha: String,
        /// The branch to fetch it from.
        branch: Option<String>,
    },
}

impl From<GitCheckout<'_>> for Reference {
    fn from(c: GitCheckout<'_>) -> Self {
        match c {
            GitCheckout::Branch(b) => Reference::Branch(b.to_string()),
            GitCheckout::Tag(t) => Reference::Tag(t.to_string()),
            GitCheckout::SemVer(s) => Reference::SemVer(s.to_string()),
            GitCheckout::RefName(n) => Reference::Name(n.to_string()),
            GitCheckout::Commit { sha, branch } => Reference::Commit {
                sha: sha.to_string(),
                branch: branch.map(str::to_string),
            },
        }
    }
}

/// A git failure.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// libgit2 failed.
    #[error("{}", .0.message())]
    Git(#[from] git2::Error),
    /// The reference does not exist on the remote.
    #[error("couldn't find remote ref '{0}'")]
    RefNotFound(String),
    /// No tag matches the semver constraint.
    #[error("no match found for semver: {0}")]
    NoSemverMatch(String),
    /// The semver constraint is invalid.
    #[error("semver parse error: {0}")]
    SemverInvalid(#[from] semver::ConstraintError),
    /// The repository has no commits.
    #[error("git repository is empty")]
    Empty,
    /// A sparse checkout path does not exist in the commit.
    #[error("sparse checkout dir '{0}' does not exist in repository")]
    SparsePath(String),
    /// A tree entry name that would escape the checkout directory or write into `.git`.
    #[error("invalid path '{0}' in the commit's tree")]
    InvalidPath(String),
    /// A file or directory of the checkout could not be written.
    #[error("failed to write the checkout: {0}")]
    Write(String),
    /// The operation was cut by the timeout.
    #[error("operation timed out")]
    Timeout,
    /// The server certificate was rejected by the `ca.crt` CA and by the system trust store.
    #[error("{message}: {reason}")]
    Certificate {
        /// libgit2's message.
        message: String,
        /// Why the `ca.crt` CA did not accept it.
        reason: String,
    },
    /// A temporary repository could not be created.
    #[error("failed to create temporary repository: {0}")]
    TempDir(#[source] std::io::Error),
    /// The loopback gateway (client certificate, proxy for `http`) could not be set up.
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    /// The gateway could not reach the remote: why (a TLS alert, a refused connection, the proxy's answer).
    #[error("{0}")]
    Remote(String),
}

/// The commit a reference resolves to, and Flux's revision string for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// `main@sha1:<sha>`, `v1.0.0@sha1:<sha>`, `refs/…@sha1:<sha>` or `sha1:<sha>`.
    pub revision: String,
    /// The commit SHA.
    pub sha: String,
    /// The ref to fetch (`refs/heads/main`, `refs/tags/v1`), when fetching one ref.
    pub fetch_ref: Option<String>,
}

/// Flux's revision for a reference name and commit.
pub fn revision(name: Option<&str>, sha: &str) -> String {
    match name {
        Some(n) => format!("{n}@sha1:{sha}"),
        None => format!("sha1:{sha}"),
    }
}

/// Lists the remote's refs (one round trip, no clone): `(name, oid)`, peeled tags as `refs/tags/x^{}`.
pub fn ls_remote(
    url: &str,
    auth: &AuthOptions,
    deadline: Instant,
) -> Result<Vec<(String, String)>, GitError> {
    let endpoint = Endpoint::new(url, auth, deadline)?;
    ls_remote_at(&endpoint.url, &endpoint.auth, deadline).map_err(|e| endpoint.error(e))
}

fn ls_remote_at(
    url: &str,
    auth: &AuthOptions,
    deadline: Instant,
) -> Result<Vec<(String, String)>, GitError> {
    let tls_note = RefCell::new(None);
    let headers = auth.headers();
    if !headers.is_empty() {
        return ls_remote_with_headers(url, auth, &headers, deadline, &tls_note);
    }
    let mut remote = git2::Remote::create_detached(url)?;
    let connection = remote
        .connect_auth(
            Direction::Fetch,
            Some(auth.callbacks(deadline, &tls_note)),
            Some(auth.proxy_options()),
        )
        .map_err(|e| git_error(e, &tls_note))?;
    let refs = connection
        .list()?
        .iter()
        .map(|h| (h.name().to_string(), h.oid().to_string()))
        .collect();
    Ok(refs)
}

/// `ls-remote` with custom headers (`bearerToken`): git2's `connect_auth` sends none, so this runs a fetch
/// (which does) of a refspec that matches nothing, into a throwaway bare repository: the refs are advertised,
/// no pack is downloaded, and libgit2 keeps the advertisement readable after the fetch disconnects.
fn ls_remote_with_headers(
    url: &str,
    auth: &AuthOptions,
    headers: &[String],
    deadline: Instant,
    tls_note: &RefCell<Option<String>>,
) -> Result<Vec<(String, String)>, GitError> {
    let dir = tempfile::tempdir().map_err(GitError::TempDir)?;
    let repo = Repository::init_bare(dir.path())?;
    let mut remote = repo.remote_anonymous(url)?;
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut options = auth.fetch_options(&header_refs, deadline, tls_note);
    options.download_tags(AutotagOption::None);
    remote
        .fetch(
            &["+refs/riptide-ls-remote/none/*:refs/riptide-ls-remote/none/*"],
            Some(&mut options),
            None,
        )
        .map_err(|e| git_error(e, tls_note))?;
    let refs = remote
        .list()?
        .iter()
        .map(|h| (h.name().to_string(), h.oid().to_string()))
        .collect();
    Ok(refs)
}

/// Resolves `reference` against `refs` from [`ls_remote`].
pub fn resolve(reference: &Reference, refs: &[(String, String)]) -> Result<Resolved, GitError> {
    let find = |name: &str| refs.iter().find(|(n, _)| n == name).map(|(_, o)| o.clone());
    let tag_commit = |tag: &str| {
        find(&format!("refs/tags/{tag}^{{}}")).or_else(|| find(&format!("refs/tags/{tag}")))
    };
    match reference {
        Reference::Branch(b) => {
            let name = format!("refs/heads/{b}");
            let sha = find(&name).ok_or_else(|| GitError::RefNotFound(name.clone()))?;
            Ok(Resolved {
                revision: revision(Some(b), &sha),
                sha,
                fetch_ref: Some(name),
            })
        }
        Reference::Tag(t) => {
            let sha =
                tag_commit(t).ok_or_else(|| GitError::RefNotFound(format!("refs/tags/{t}")))?;
            Ok(Resolved {
                revision: revision(Some(t), &sha),
                sha,
                fetch_ref: Some(format!("refs/tags/{t}")),
            })
        }
        Reference::SemVer(range) => {
            let constraint = semver::Constraint::parse(range)?;
            let tags = refs
                .iter()
                .filter_map(|(n, _)| n.strip_prefix("refs/tags/"))
                .filter(|n| !n.ends_with("^{}"));
            let (tag, _) = semver::latest_matching(&constraint, tags)
                .ok_or_else(|| GitError::NoSemverMatch(range.clone()))?;
            let sha =
                tag_commit(tag).ok_or_else(|| GitError::RefNotFound(format!("refs/tags/{tag}")))?;
            Ok(Resolved {
                revision: revision(Some(tag), &sha),
                sha,
                fetch_ref: Some(format!("refs/tags/{tag}")),
            })
        }
        Reference::Name(n) => {
            let sha = find(&format!("{n}^{{}}"))
                .or_else(|| find(n))
                .ok_or_else(|| GitError::RefNotFound(n.clone()))?;
            Ok(Resolved {
                revision: revision(Some(n), &sha),
                sha,
                fetch_ref: Some(n.clone()),
            })
        }
        Reference::Commit { sha, branch } => Ok(Resolved {
            revision: revision(branch.as_deref(), sha),
            sha: sha.clone(),
            fetch_ref: branch.as_ref().map(|b| format!("refs/heads/{b}")),
        }),
    }
}

/// A checked-out commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkout {
    /// Flux's revision string.
    pub revision: String,
    /// The commit SHA.
    pub sha: String,
    /// The commit's first line.
    pub summary: String,
}

/// Fetches what `resolved` names into a new repository at `dir` (shallow when a single ref is fetched) and
/// checks the commit out there (only `sparse` paths when given; submodules too, recursively, when asked, with
/// the same credentials).
#[allow(clippy::too_many_arguments)]
pub fn checkout(
    url: &str,
    auth: &AuthOptions,
    reference: &Reference,
    resolved: &Resolved,
    dir: &Path,
    sparse: Option<&[String]>,
    recurse_submodules: bool,
    deadline: Instant,
) -> Result<Checkout, GitError> {
    let repo = Repository::init(dir)?;
    // `origin` is never fetched from (the fetch below may go through a gateway); it is where relative submodule
    // URLs (`../lib.git`) are resolved, as git resolves them against the superproject's remote.
    repo.remote("origin", url)?;
    let endpoint = Endpoint::new(url, auth, deadline)?;
    let mut remote = repo.remote_anonymous(&endpoint.url)?;
    let headers = endpoint.auth.headers();
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let tls_note = RefCell::new(None);
    let mut options = endpoint
        .auth
        .fetch_options(&header_refs, deadline, &tls_note);
    options.download_tags(AutotagOption::None);
    let is_commit = matches!(reference, Reference::Commit { .. });
    let refspecs: Vec<String> = match &resolved.fetch_ref {
        Some(r) => {
            if !is_commit {
                options.depth(1);
            }
            vec![format!("+{r}:{r}")]
        }
        None => vec![
            "+refs/heads/*:refs/heads/*".to_string(),
            "+refs/tags/*:refs/tags/*".to_string(),
        ],
    };
    remote
        .fetch(&refspecs, Some(&mut options), None)
        .map_err(|e| endpoint.error(git_error(e, &tls_note)))?;
    drop(options);
    drop(remote);
    drop(endpoint);
    if Instant::now() >= deadline {
        return Err(GitError::Timeout);
    }
    let oid = match (&resolved.fetch_ref, is_commit) {
        (Some(r), false) => repo.refname_to_id(r)?,
        _ => git2::Oid::from_str(&resolved.sha)?,
    };
    let commit = repo
        .find_object(oid, None)?
        .peel_to_commit()
        .map_err(|e| match reference {
            Reference::Commit { sha, .. } => GitError::RefNotFound(sha.clone()),
            _ => GitError::Git(e),
        })?;
    let sha = commit.id().to_string();
    let summary = commit
        .summary()
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string();
    let tree = commit.tree()?;
    let mut sparse_dirs = Vec::new();
    for given in sparse.unwrap_or_default() {
        let clean = given.trim_start_matches("./").trim_end_matches('/');
        if clean.is_empty() {
            continue;
        }
        if tree.get_path(Path::new(clean)).is_err() {
            return Err(GitError::SparsePath(given.clone()));
        }
        sparse_dirs.push(clean.to_string());
    }
    let tree_id = tree.id();
    if recurse_submodules {
        // Submodules are looked up in the index: it records their commits (gitlinks).
        let mut index = repo.index()?;
        index.read_tree(&tree)?;
        index.write()?;
    }
    drop(tree);
    drop(commit);
    drop(repo);
    worktree::write_tree(dir, tree_id, &sparse_dirs)?;
    if recurse_submodules {
        update_submodules(&Repository::open(dir)?, auth, deadline)?;
    }
    let name = match reference {
        Reference::Branch(b) => Some(b.clone()),
        Reference::Commit { branch, .. } => branch.clone(),
        _ => resolved
            .revision
            .split_once("@sha1:")
            .map(|(n, _)| n.to_string()),
    };
    Ok(Checkout {
        revision: revision(name.as_deref(), &sha),
        sha,
        summary,
    })
}

fn update_submodules(
    repo: &Repository,
    auth: &AuthOptions,
    deadline: Instant,
) -> Result<(), GitError> {
    for mut submodule in repo.submodules()? {
        // The URL libgit2 clones from is `submodule.<name>.url` in the repository's config (from
        // `.gitmodules` at init): a gateway for it, when needed, goes there.
        submodule.init(false)?;
        let key = format!("submodule.{}.url", submodule.name().unwrap_or_default());
        let url = repo.config()?.snapshot()?.get_string(&key)?;
        let endpoint = Endpoint::new(&url, auth, deadline)?;
        if endpoint.gateway.is_some() {
            repo.config()?.set_str(&key, &endpoint.url)?;
        }
        let headers = endpoint.auth.headers();
        let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let tls_note = RefCell::new(None);
        let mut options = git2::SubmoduleUpdateOptions::new();
        options.fetch(
            endpoint
                .auth
                .fetch_options(&header_refs, deadline, &tls_note),
        );
        submodule
            .update(true, Some(&mut options))
            .map_err(|e| endpoint.error(git_error(e, &tls_note)))?;
        drop(options);
        drop(endpoint);
        let nested = submodule.open()?;
        // The submodule's `origin` is what it was cloned from (maybe a gateway, gone now): its own relative
        // submodule URLs resolve against its real URL.
        nested.remote_set_url("origin", &url)?;
        update_submodules(&nested, auth, deadline)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs() -> Vec<(String, String)> {
        [
            ("HEAD", "aaa"),
            ("refs/heads/main", "aaa"),
            ("refs/tags/v1.0.0", "t10"),
            ("refs/tags/v1.0.0^{}", "c10"),
            ("refs/tags/v1.1.0", "c11"),
            ("refs/tags/v2.0.0", "c20"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    #[test]
    fn resolves_each_reference_kind_to_flux_revisions() {
        let r = |reference| resolve(&reference, &refs()).unwrap().revision;
        assert_eq!(r(Reference::Branch("main".into())), "main@sha1:aaa");
        assert_eq!(
            r(Reference::Tag("v1.0.0".into())),
            "v1.0.0@sha1:c10",
            "peeled"
        );
        assert_eq!(r(Reference::SemVer("<2.0.0".into())), "v1.1.0@sha1:c11");
        assert_eq!(
            r(Reference::Name("refs/heads/main".into())),
            "refs/heads/main@sha1:aaa"
        );
        assert_eq!(
            r(Reference::Commit {
                sha: "abc".into(),
                branch: Some("main".into())
            }),
            "main@sha1:abc"
        );
        assert_eq!(
            r(Reference::Commit {
                sha: "abc".into(),
                branch: None
            }),
            "sha1:abc"
        );
        assert!(matches!(
            resolve(&Reference::Branch("nope".into()), &refs()),
            Err(GitError::RefNotFound(n)) if n == "refs/heads/nope"
        ));
        assert!(matches!(
            resolve(&Reference::SemVer(">=3".into()), &refs()),
            Err(GitError::NoSemverMatch(_))
        ));
    }

    #[test]
    fn auth_options_validate_like_flux() {
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        let https = Url::parse("https://example.com/repo.git").unwrap();
        let ok =
            AuthOptions::new(&https, Some(&data(&[("username", "u"), ("password", "p")]))).unwrap();
        assert_eq!(ok.username.as_deref(), Some("u"));
        assert!(
            !format!("{ok:?}").contains("\"p\""),
            "password redacted in Debug"
        );
        assert_eq!(
            AuthOptions::new(&https, Some(&data(&[("password", "p")]))).unwrap_err(),
            AuthError::PasswordWithoutUsername("https")
        );
        let ssh = Url::parse("ssh://git@example.com:2222/repo.git").unwrap();
        assert_eq!(
            AuthOptions::new(&ssh, Some(&data(&[("identity", "k")]))).unwrap_err(),
            AuthError::Missing {
                transport: "ssh",
                key: "known_hosts"
            }
        );
        assert_eq!(
            AuthOptions::new(&ssh, Some(&data(&[("known_hosts", "k")]))).unwrap_err(),
            AuthError::Missing {
                transport: "ssh",
                key: "identity"
            }
        );
        let s = AuthOptions::new(
            &ssh,
            Some(&data(&[("identity", "k"), ("known_hosts", "h")])),
        )
        .unwrap();
        assert_eq!((s.username.as_deref(), s.port), (Some("git"), Some(2222)));
        let ftp = Url::parse("ftp://example.com/x").unwrap();
        assert!(matches!(
            AuthOptions::new(&ftp, None),
            Err(AuthError::Scheme(_))
        ));
    }

    #[test]
    fn https_options_follow_flux_keys() {
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        let https = Url::parse("https://127.0.0.1:8443/repo.git").unwrap();
        let http = Url::parse("http://127.0.0.1:8080/repo.git").unwrap();
        let token = AuthOptions::new(
            &https,
            Some(&data(&[
                ("bearerToken", "t"),
                ("username", "u"),
                ("password", "p"),
            ])),
        )
        .unwrap();
        assert_eq!(
            (
                token.bearer_token.as_deref(),
                token.username.as_deref(),
                token.password.as_deref()
            ),
            (Some("t"), None, None),
            "a bearer token replaces basic auth"
        );
        assert_eq!(token.headers(), vec!["Authorization: Bearer t".to_string()]);
        assert_eq!(
            AuthOptions::new(&https, Some(&data(&[("bearerToken", "t\r\nX: y")]))).unwrap_err(),
            AuthError::ControlCharacters("bearerToken")
        );
        assert!(matches!(
            AuthOptions::new(&https, Some(&data(&[("tls.crt", "c"), ("tls.key", "k")])))
                .unwrap_err(),
            AuthError::InvalidClientCertificate { key: "tls.crt", .. }
        ));
        assert_eq!(
            AuthOptions::new(&https, Some(&data(&[("tls.crt", "c")]))).unwrap_err(),
            AuthError::Missing {
                transport: "https",
                key: "tls.key"
            }
        );
        let certs = testenv::tls::Certificates::generate().unwrap();
        let client = certs.client_certificate("riptide").unwrap();
        let mtls = AuthOptions::new(
            &https,
            Some(&data(&[
                ("tls.crt", &client.cert_pem),
                ("tls.key", &client.key_pem),
            ])),
        )
        .unwrap();
        assert!(mtls.needs_gateway());
        assert!(!format!("{mtls:?}").contains("PRIVATE KEY"), "{mtls:?}");
        assert!(matches!(
            AuthOptions::new(
                &https,
                Some(&data(&[("tls.crt", &client.cert_pem), ("tls.key", "junk")]))
            )
            .unwrap_err(),
            AuthError::InvalidClientCertificate { key: "tls.key", .. }
        ));
        assert!(matches!(
            AuthOptions::new(&https, Some(&data(&[("caFile", "junk")]))).unwrap_err(),
            AuthError::InvalidCa { key: "caFile", .. }
        ));
        // TLS keys mean nothing for http, as in Flux.
        let plain =
            AuthOptions::new(&http, Some(&data(&[("ca.crt", "junk"), ("tls.crt", "c")]))).unwrap();
        assert!(plain.ca.is_none() && plain.client_certificate.is_none());
        assert!(!plain.needs_gateway());
        let proxied = AuthOptions {
            proxy: Some("http://proxy:3128".into()),
            ..plain
        };
        assert!(proxied.needs_gateway(), "libgit2 bypasses proxies for http");
        assert!(!token.needs_gateway());
    }

    #[test]
    fn ca_bundle_checks_chain_validity_and_host() {
        let certs = testenv::tls::Certificates::generate().unwrap();
        let leaf = certs.server_cert_der();
        let bundle = CaBundle::from_pem("ca.crt", certs.ca_pem.as_bytes()).unwrap();
        assert_eq!(bundle.verify(leaf, "127.0.0.1"), Ok(()));
        assert_eq!(bundle.verify(leaf, "localhost"), Ok(()));
        let wrong_host = bundle.verify(leaf, "example.com").unwrap_err();
        assert!(
            wrong_host.contains("not valid for 'example.com'"),
            "{wrong_host}"
        );
        let other = testenv::tls::Certificates::generate().unwrap();
        let other = CaBundle::from_pem("ca.crt", other.ca_pem.as_bytes()).unwrap();
        let untrusted = other.verify(leaf, "127.0.0.1").unwrap_err();
        assert!(
            untrusted.starts_with("certificate not trusted by the given CA"),
            "{untrusted}"
        );
        assert!(matches!(
            CaBundle::from_pem("ca.crt", b"no pem here"),
            Err(AuthError::InvalidCa { key: "ca.crt", reason }) if reason == "no PEM certificate found"
        ));
    }
}
