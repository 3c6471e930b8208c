//! Git with libgit2: authentication from a Secret, remote ref resolution without a clone (`ls-remote`), and
//! shallow single-ref checkouts into a directory. Everything here is blocking; callers run it on the blocking
//! pool under the GitRepository's timeout.

pub mod known_hosts;
pub mod semver;
pub mod verify;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use common::api::source_v1::GitCheckout;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, FetchOptions,
    ProxyOptions, RemoteCallbacks, Repository, build::CheckoutBuilder,
};
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
    /// Options Riptide does not support yet.
    #[error("'{0}' is not supported yet")]
    Unsupported(&'static str),
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
            .finish_non_exhaustive()
    }
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &'static str) -> Result<Option<String>, AuthError> {
    data.get(key)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8(v.clone()).map_err(|_| AuthError::NotUtf8(key)))
        .transpose()
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
        if let Some(u) = text(data, "username")? {
            opts.username = Some(u);
        }
        opts.password = text(data, "password")?;
        opts.bearer_token = text(data, "bearerToken")?;
        opts.identity = text(data, "identity")?;
        opts.known_hosts = text(data, "known_hosts")?;
        let name = transport.as_str();
        match transport {
            Transport::Http | Transport::Https => {
                if opts.password.is_some() && opts.username.is_none() {
                    return Err(AuthError::PasswordWithoutUsername(name));
                }
                if data.contains_key("ca.crt") || data.contains_key("caFile") {
                    return Err(AuthError::Unsupported("ca.crt"));
                }
                if data.contains_key("tls.crt") || data.contains_key("tls.key") {
                    return Err(AuthError::Unsupported("tls.crt/tls.key"));
                }
            }
            Transport::Ssh => {
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

    fn callbacks<'a>(&'a self, deadline: Instant) -> RemoteCallbacks<'a> {
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
        cb.certificate_check(move |cert, _host| {
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
    /// The operation was cut by the timeout.
    #[error("operation timed out")]
    Timeout,
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
    let mut remote = git2::Remote::create_detached(url)?;
    let connection = remote.connect_auth(
        Direction::Fetch,
        Some(auth.callbacks(deadline)),
        Some(auth.proxy_options()),
    )?;
    let refs = connection
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
    let mut remote = repo.remote_anonymous(url)?;
    let headers = auth.headers();
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(auth.callbacks(deadline))
        .proxy_options(auth.proxy_options())
        .download_tags(AutotagOption::None)
        .custom_headers(&header_refs);
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
    remote.fetch(&refspecs, Some(&mut options), None)?;
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
    let tree = commit.tree()?;
    if let Some(paths) = sparse {
        for p in paths {
            let clean = p.trim_start_matches("./").trim_end_matches('/');
            if !clean.is_empty() && tree.get_path(Path::new(clean)).is_err() {
                return Err(GitError::SparsePath(p.clone()));
            }
        }
    }
    let mut co = CheckoutBuilder::new();
    co.force().recreate_missing(true);
    if let Some(paths) = sparse {
        for p in paths {
            let clean = p.trim_start_matches("./").trim_end_matches('/');
            if !clean.is_empty() {
                co.path(clean);
            }
        }
    }
    repo.checkout_tree(commit.as_object(), Some(&mut co))?;
    if recurse_submodules {
        update_submodules(&repo, auth, deadline)?;
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
        summary: commit
            .summary()
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_string(),
    })
}

fn update_submodules(
    repo: &Repository,
    auth: &AuthOptions,
    deadline: Instant,
) -> Result<(), GitError> {
    for mut submodule in repo.submodules()? {
        let headers = auth.headers();
        let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut fetch = FetchOptions::new();
        fetch
            .remote_callbacks(auth.callbacks(deadline))
            .proxy_options(auth.proxy_options())
            .custom_headers(&header_refs);
        let mut options = git2::SubmoduleUpdateOptions::new();
        options.fetch(fetch);
        submodule.update(true, Some(&mut options))?;
        let nested = submodule.open()?;
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
}
