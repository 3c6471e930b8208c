//! Commit statuses on GitHub, GitLab, Gitea, Bitbucket Cloud and Bitbucket Server: state from the severity,
//! context from `kind/name/<provider uid>` (Bitbucket: its SHA-1 as the key), description from the reason; an
//! identical latest status is not posted again.

use common::events::{FluxEvent, Severity};
use serde::Deserialize;
use serde_json::json;

use sha1::{Digest, Sha1};

use super::client::{Retry, send};
use super::{HttpSettings, NotifierError, ProviderSettings, Request, ResponseCheck};

/// `kind/name/<first block of the provider UID>`, lower-cased: Flux's default commit status context.
pub fn commit_status_id(provider_uid: &str, event: &FluxEvent) -> String {
    let o = &event.involved_object;
    let uid = provider_uid.split('-').next().unwrap_or_default();
    format!(
        "{}/{}/{}",
        o.kind.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default(),
        uid
    )
    .to_lowercase()
}

/// The commit SHA of a Flux revision (`main@sha1:<hex>`, `sha256:<hex>`, legacy `main/<hex>`, or `<hex>`).
pub fn parse_revision(revision: &str) -> Result<String, NotifierError> {
    let tail = revision.rsplit_once('@').map_or(revision, |(_, t)| t);
    let hash = if let Some(h) = tail
        .strip_prefix("sha1:")
        .or_else(|| tail.strip_prefix("sha256:"))
    {
        h
    } else {
        tail.rsplit_once('/').map_or(tail, |(_, h)| h)
    };
    let valid = matches!(hash.len(), 40 | 64) && hash.bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(hash.to_ascii_lowercase())
    } else {
        Err(NotifierError::Config(format!(
            "failed to extract commit hash from '{revision}' revision"
        )))
    }
}

/// Go's `splitCamelcase` joined with spaces and lower-cased: `ReconciliationSucceeded` → `reconciliation
/// succeeded`.
pub fn describe_reason(reason: &str) -> String {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Lower,
        Upper,
        Digit,
        Other,
    }
    let class = |c: char| {
        if c.is_lowercase() {
            Class::Lower
        } else if c.is_uppercase() {
            Class::Upper
        } else if c.is_numeric() {
            Class::Digit
        } else {
            Class::Other
        }
    };
    let mut runs: Vec<(Class, Vec<char>)> = Vec::new();
    for c in reason.chars() {
        let k = class(c);
        match runs.last_mut() {
            Some((last, run)) if *last == k => run.push(c),
            _ => runs.push((k, vec![c])),
        }
    }
    // "PDFL", "oader" → "PDF", "Loader"
    for i in 0..runs.len().saturating_sub(1) {
        if runs[i].0 == Class::Upper
            && runs[i + 1].0 == Class::Lower
            && let Some(c) = runs[i].1.pop()
        {
            runs[i + 1].1.insert(0, c);
        }
    }
    runs.into_iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(_, r)| r.into_iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forge {
    GitHub,
    GitLab,
    Gitea,
    Bitbucket,
    BitbucketServer,
}

impl Forge {
    fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
            Forge::Gitea => "gitea",
            Forge::Bitbucket => "bitbucket",
            Forge::BitbucketServer => "bitbucket server",
        }
    }
}

/// A commit status provider.
#[derive(Clone)]
pub struct CommitStatus {
    forge: Forge,
    /// The API base: `…/api/v3`, `…/api/v4`, `…/api/v1`, Bitbucket's `…/2.0`, or Bitbucket Server's
    /// `…/rest/api/latest/projects/<key>/repos/<slug>/commits`.
    api: String,
    /// `owner/repo` (GitLab: the project path).
    repo: String,
    /// Headers carrying the credentials (and Bitbucket Server's XSRF opt-outs).
    auth_headers: Vec<(String, String)>,
    /// Basic auth (Bitbucket, and Bitbucket Server without a token).
    basic_auth: Option<(String, String)>,
    context: String,
    /// The Provider's address (Bitbucket Server links the build status to it).
    address: String,
    http: HttpSettings,
}

impl std::fmt::Debug for CommitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitStatus")
            .field("forge", &self.forge)
            .field("repo", &self.repo)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct GitHubStatus {
    context: Option<String>,
    state: Option<String>,
    description: Option<String>,
}

/// Gitea names the state `status`.
#[derive(Deserialize)]
struct GiteaStatus {
    #[serde(default)]
    context: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct GitLabStatus {
    sha: Option<String>,
    status: Option<String>,
    description: Option<String>,
    name: Option<String>,
}

/// A Bitbucket (Cloud or Server) build status.
#[derive(Deserialize, Default)]
#[serde(default)]
struct BuildStatus {
    key: String,
    state: String,
    name: String,
    description: String,
}

/// What an event becomes on the forge.
struct Status {
    sha: String,
    state: &'static str,
    description: String,
}

/// `segment` percent-encoded for a URL path, as Go's `url.PathEscape`.
fn path_escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+:=@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Bitbucket Server's commits API for an http(s) clone URL `…[/context]/scm/<project>/<repo>.git`.
fn bitbucket_server_api(address: &str) -> Result<String, NotifierError> {
    let invalid = |why: &str| NotifierError::Config(format!("could not parse git address: {why}"));
    let url = url::Url::parse(address.trim()).map_err(|_| invalid("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(&format!(
            "unsupported scheme type in address: {}. Must be http or https",
            url.scheme()
        )));
    }
    let path = url.path().trim_end_matches(".git");
    let Some(at) = path.rfind("/scm/") else {
        return Err(invalid(
            "supplied provider address is not http(s) git clone url",
        ));
    };
    let (context_path, id) = (&path[..at], &path[at + "/scm/".len()..]);
    let Some((project, repo)) = id.split_once('/').filter(|(_, r)| !r.contains('/')) else {
        return Err(invalid(&format!("invalid repository id {id:?}")));
    };
    Ok(format!(
        "{}{context_path}/rest/api/latest/projects/{project}/repos/{repo}/commits",
        super::origin(&url)
    ))
}

impl CommitStatus {
    /// From the Provider: `address` is the repository URL (https or ssh; Bitbucket Server: the https clone
    /// URL), the secret's `token` the API token (GitLab, Gitea: or `password`; Bitbucket: `<user>:<password>`;
    /// Bitbucket Server: or `username` and `password`).
    pub fn new(settings: ProviderSettings) -> Result<Self, NotifierError> {
        let forge = match settings.type_.as_str() {
            "github" => Forge::GitHub,
            "gitlab" => Forge::GitLab,
            "gitea" => Forge::Gitea,
            "bitbucket" => Forge::Bitbucket,
            "bitbucketserver" => Forge::BitbucketServer,
            other => return Err(NotifierError::Unsupported(other.to_owned())),
        };
        let mut token = settings.token.clone();
        if matches!(forge, Forge::GitLab | Forge::Gitea) && token.is_empty() {
            token = settings.password.clone();
        }
        if forge == Forge::BitbucketServer {
            return Self::bitbucket_server(settings);
        }
        if forge == Forge::Bitbucket && token.is_empty() {
            return Err(NotifierError::Config(
                "bitbucket token cannot be empty".into(),
            ));
        }
        if settings.commit_status.is_empty() {
            return Err(NotifierError::Config(
                "commit status cannot be empty".into(),
            ));
        }
        if matches!(forge, Forge::GitLab | Forge::Gitea) && token.is_empty() {
            return Err(NotifierError::Config(format!(
                "{} token cannot be empty",
                forge.name()
            )));
        }
        let (scheme, host, repo) = parse_git_address(&settings.address)?;
        let api = match forge {
            Forge::GitHub if host == "github.com" => "https://api.github.com".to_owned(),
            Forge::GitHub => format!("{scheme}://{host}/api/v3"),
            Forge::GitLab => format!("{scheme}://{host}/api/v4"),
            Forge::Gitea => format!("{scheme}://{host}/api/v1"),
            Forge::Bitbucket | Forge::BitbucketServer => settings
                .endpoints
                .bitbucket
                .trim_end_matches('/')
                .to_owned(),
        };
        if forge != Forge::GitLab && repo.split('/').count() != 2 {
            return Err(NotifierError::Config(format!(
                "invalid repository id {repo:?}"
            )));
        }
        let mut auth_headers = Vec::new();
        let mut basic_auth = None;
        let mut http = settings.http;
        match forge {
            Forge::GitHub => {
                auth_headers.push(("Accept".into(), "application/vnd.github+json".into()));
                if !token.is_empty() {
                    auth_headers.push(("Authorization".into(), format!("Bearer {token}")));
                }
            }
            Forge::GitLab => auth_headers.push(("PRIVATE-TOKEN".into(), token)),
            Forge::Gitea => auth_headers.push(("Authorization".into(), format!("token {token}"))),
            // (Bitbucket Server returned above.)
            Forge::Bitbucket | Forge::BitbucketServer => {
                let parts: Vec<&str> = token.split(':').collect();
                let [user, password] = parts[..] else {
                    return Err(NotifierError::Config(
                        "invalid token format, expected to be <user>:<password>".into(),
                    ));
                };
                basic_auth = Some((user.to_owned(), password.to_owned()));
                // Flux's Bitbucket client takes TLS settings but no proxy.
                http.proxy = None;
            }
        }
        Ok(CommitStatus {
            forge,
            api,
            repo,
            auth_headers,
            basic_auth,
            context: settings.commit_status,
            address: settings.address,
            http,
        })
    }

    fn bitbucket_server(settings: ProviderSettings) -> Result<Self, NotifierError> {
        let api = bitbucket_server_api(&settings.address)?;
        if settings.commit_status.is_empty() {
            return Err(NotifierError::Config(
                "commit status cannot be empty".into(),
            ));
        }
        let mut auth_headers = Vec::new();
        let mut basic_auth = None;
        if !settings.token.is_empty() {
            auth_headers.push(("Authorization".into(), format!("Bearer {}", settings.token)));
        } else if !settings.username.is_empty() && !settings.password.is_empty() {
            basic_auth = Some((settings.username.clone(), settings.password.clone()));
        } else {
            return Err(NotifierError::Config(
                "invalid credentials, expected to be one of username/password or API Token".into(),
            ));
        }
        auth_headers.push(("x-atlassian-token".into(), "no-check".into()));
        auth_headers.push(("x-requested-with".into(), "XMLHttpRequest".into()));
        let mut http = settings.http;
        // Flux's Bitbucket Server client takes TLS settings but no proxy.
        http.proxy = None;
        Ok(CommitStatus {
            forge: Forge::BitbucketServer,
            api,
            repo: String::new(),
            auth_headers,
            basic_auth,
            context: settings.commit_status,
            address: settings.address,
            http,
        })
    }

    pub(crate) fn http(&self) -> &HttpSettings {
        &self.http
    }

    fn project(&self) -> String {
        url::form_urlencoded::byte_serialize(self.repo.as_bytes()).collect()
    }

    /// `owner/repo` with each part path-escaped.
    fn owner_repo(&self) -> String {
        self.repo
            .split('/')
            .map(path_escape)
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Bitbucket's status key: the hex SHA-1 of the context (keys are limited to 40 characters).
    fn key(&self) -> String {
        hex::encode(Sha1::digest(self.context.as_bytes()))
    }

    fn request(&self, method: http::Method, url: String, body: Vec<u8>) -> Request {
        Request {
            method,
            url,
            body,
            headers: self.auth_headers.clone(),
            basic_auth: self.basic_auth.clone(),
            check: ResponseCheck::Status,
        }
    }

    /// The request reading the statuses already on `sha` (Bitbucket: the one with our key).
    pub fn list_request(&self, sha: &str) -> Request {
        let url = match self.forge {
            Forge::GitHub => format!(
                "{}/repos/{}/commits/{sha}/statuses?per_page=50",
                self.api, self.repo
            ),
            Forge::GitLab => {
                let name: String =
                    url::form_urlencoded::byte_serialize(self.context.as_bytes()).collect();
                format!(
                    "{}/projects/{}/repository/commits/{sha}/statuses?name={name}",
                    self.api,
                    self.project()
                )
            }
            Forge::Gitea => format!(
                "{}/repos/{}/commits/{sha}/statuses?limit=50&page=1",
                self.api,
                self.owner_repo()
            ),
            Forge::Bitbucket => format!(
                "{}/repositories/{}/commit/{sha}/statuses/build/{}",
                self.api,
                self.repo,
                self.key()
            ),
            Forge::BitbucketServer => {
                format!("{}/{sha}/builds?key={}", self.api, self.key())
            }
        };
        self.request(http::Method::GET, url, Vec::new())
    }

    /// What `event` becomes, or `None` when it is not posted (`Progressing`, but on Gitea, where it is
    /// `pending`).
    fn status_of(&self, event: &FluxEvent) -> Result<Option<Status>, NotifierError> {
        let progressing = event.reason == "Progressing";
        if progressing && self.forge != Forge::Gitea {
            return Ok(None);
        }
        let revision = event
            .metadata
            .get("revision")
            .ok_or_else(|| NotifierError::Config("missing revision metadata".into()))?;
        let sha = parse_revision(revision)?;
        let state = match (self.forge, event.severity) {
            (Forge::Gitea, _) if progressing => "pending",
            (Forge::GitHub | Forge::GitLab | Forge::Gitea, Severity::Info) => "success",
            (Forge::GitHub | Forge::Gitea, Severity::Error) => "failure",
            (Forge::GitLab, Severity::Error) => "failed",
            (Forge::Bitbucket | Forge::BitbucketServer, Severity::Info) => "SUCCESSFUL",
            (Forge::Bitbucket | Forge::BitbucketServer, Severity::Error) => "FAILED",
            (_, Severity::Trace) => {
                return Err(NotifierError::Config(format!(
                    "can't convert to {} state",
                    self.forge.name()
                )));
            }
        };
        Ok(Some(Status {
            sha,
            state,
            description: describe_reason(&event.reason),
        }))
    }

    /// Bitbucket's status name: `kind/name` (Server: with the description, which its UI shows).
    fn bitbucket_name(&self, event: &FluxEvent, description: &str) -> String {
        let (name, _) = super::name_and_description(event);
        if self.forge == Forge::BitbucketServer {
            format!("{name} [{description}]")
        } else {
            name
        }
    }

    /// The request creating the status for `event`, or `None` when the event is not posted.
    pub fn create_request(&self, event: &FluxEvent) -> Result<Option<Request>, NotifierError> {
        let Some(Status {
            sha,
            state,
            description,
        }) = self.status_of(event)?
        else {
            return Ok(None);
        };
        let (url, body) = match self.forge {
            Forge::GitHub => (
                format!("{}/repos/{}/statuses/{sha}", self.api, self.repo),
                json!({"state": state, "context": self.context, "description": description}),
            ),
            Forge::GitLab => (
                format!("{}/projects/{}/statuses/{sha}", self.api, self.project()),
                json!({"state": state, "name": self.context, "description": description}),
            ),
            Forge::Gitea => (
                format!("{}/repos/{}/statuses/{sha}", self.api, self.owner_repo()),
                json!({"state": state, "target_url": "", "description": description, "context": self.context}),
            ),
            Forge::Bitbucket => (
                format!(
                    "{}/repositories/{}/commit/{sha}/statuses/build",
                    self.api, self.repo
                ),
                json!({
                    "key": self.key(),
                    "url": "https://bitbucket.org",
                    "state": state,
                    "name": self.bitbucket_name(event, &description),
                    "description": description,
                }),
            ),
            Forge::BitbucketServer => (
                format!("{}/{sha}/builds", self.api),
                json!({
                    "description": description,
                    "key": self.key(),
                    "name": self.bitbucket_name(event, &description),
                    "state": state,
                    "url": self.address,
                }),
            ),
        };
        let body = serde_json::to_vec(&body).map_err(|e| NotifierError::Config(e.to_string()))?;
        Ok(Some(self.request(http::Method::POST, url, body)))
    }

    /// Whether the statuses read (`body`) already hold this one.
    fn is_duplicate(
        &self,
        body: &[u8],
        sha: &str,
        state: &str,
        description: &str,
        name: &str,
    ) -> bool {
        match self.forge {
            Forge::GitHub => {
                let Ok(statuses) = serde_json::from_slice::<Vec<GitHubStatus>>(body) else {
                    return false;
                };
                // The newest complete status of our context decides.
                statuses
                    .iter()
                    .filter(|s| s.context.is_some() && s.state.is_some() && s.description.is_some())
                    .find(|s| s.context.as_deref() == Some(self.context.as_str()))
                    .is_some_and(|s| {
                        s.state.as_deref() == Some(state)
                            && s.description.as_deref() == Some(description)
                    })
            }
            Forge::Gitea => {
                let Ok(statuses) = serde_json::from_slice::<Vec<GiteaStatus>>(body) else {
                    return false;
                };
                statuses
                    .iter()
                    .filter(|s| {
                        !s.context.is_empty() && !s.status.is_empty() && !s.description.is_empty()
                    })
                    .find(|s| s.context == self.context)
                    .is_some_and(|s| s.status == state && s.description == description)
            }
            Forge::GitLab => {
                let Ok(statuses) = serde_json::from_slice::<Vec<GitLabStatus>>(body) else {
                    return false;
                };
                statuses.iter().any(|s| {
                    s.sha.as_deref() == Some(sha)
                        && s.status.as_deref() == Some(state)
                        && s.description.as_deref() == Some(description)
                        && s.name.as_deref() == Some(self.context.as_str())
                })
            }
            Forge::Bitbucket => serde_json::from_slice::<BuildStatus>(body)
                .is_ok_and(|s| s.state == state && s.description == description),
            Forge::BitbucketServer => serde_json::from_slice::<BuildStatus>(body).is_ok_and(|s| {
                s.key == self.key()
                    && s.state == state
                    && s.description == description
                    && s.name == name
            }),
        }
    }

    pub(crate) async fn post(
        &self,
        client: &reqwest::Client,
        event: &FluxEvent,
        retry: Retry,
    ) -> Result<(), NotifierError> {
        let Some(Status {
            sha,
            state,
            description,
        }) = self.status_of(event)?
        else {
            return Ok(());
        };
        let listed = match send(client, &self.list_request(&sha), retry).await {
            Ok(body) => body,
            // Bitbucket answers 404 for a key it has no status for yet.
            Err(NotifierError::Status { status: 404, .. })
                if matches!(self.forge, Forge::Bitbucket | Forge::BitbucketServer) =>
            {
                bytes::Bytes::new()
            }
            Err(e) => {
                return Err(NotifierError::Rejected(format!(
                    "could not list commit statuses: {e}"
                )));
            }
        };
        let name = self.bitbucket_name(event, &description);
        if self.is_duplicate(&listed, &sha, state, &description, &name) {
            return Ok(());
        }
        if let Some(request) = self.create_request(event)? {
            send(client, &request, retry).await.map_err(|e| {
                NotifierError::Rejected(format!("could not create commit status: {e}"))
            })?;
        }
        Ok(())
    }
}

/// `(scheme, host, owner/repo)` of a Git URL: `https://host/owner/repo(.git)`, `ssh://git@host/owner/repo`,
/// or scp-like `git@host:owner/repo.git`. SSH addresses use https for the API.
fn parse_git_address(address: &str) -> Result<(String, String, String), NotifierError> {
    let address = address.trim();
    let invalid = || NotifierError::Config("failed parsing the repository address".into());
    let (scheme, host, path) = if let Ok(url) = url::Url::parse(address)
        && url.has_host()
    {
        let scheme = match url.scheme() {
            "ssh" | "git+ssh" => "https".to_owned(),
            s => s.to_owned(),
        };
        let host = match url.port() {
            Some(port) if scheme != "https" || url.scheme() == "https" => {
                format!("{}:{port}", url.host_str().unwrap_or_default())
            }
            _ => url.host_str().unwrap_or_default().to_owned(),
        };
        (scheme, host, url.path().to_owned())
    } else if let Some((user_host, path)) = address.split_once(':') {
        let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
        ("https".to_owned(), host.to_owned(), path.to_owned())
    } else {
        return Err(invalid());
    };
    let repo = path
        .trim_start_matches('/')
        .trim_end_matches(".git")
        .to_owned();
    if host.is_empty() || repo.is_empty() {
        return Err(invalid());
    }
    Ok((scheme, host, repo))
}

#[cfg(test)]
mod tests {
    use super::super::testdata::event;
    use super::*;

    fn provider(type_: &str, address: &str) -> CommitStatus {
        let e = event(Severity::Info);
        CommitStatus::new(ProviderSettings {
            type_: type_.into(),
            address: address.into(),
            token: "ghp_secret".into(),
            commit_status: commit_status_id("0c5c3f1a-1234-4000-8000-000000000000", &e),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn context_revision_and_description() {
        let e = event(Severity::Info);
        assert_eq!(
            commit_status_id("0c5c3f1a-1234-4000-8000-000000000000", &e),
            "kustomization/podinfo/0c5c3f1a"
        );
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for rev in [
            format!("main@sha1:{sha}"),
            format!("sha1:{sha}"),
            format!("main/{sha}"),
            sha.to_owned(),
        ] {
            assert_eq!(parse_revision(&rev).unwrap(), sha, "{rev}");
        }
        assert!(parse_revision("main@sha1:nothex").is_err());
        assert_eq!(
            describe_reason("ReconciliationSucceeded"),
            "reconciliation succeeded"
        );
        assert_eq!(describe_reason("PDFLoader"), "pdf loader");
        assert_eq!(describe_reason("HealthCheckFailed"), "health check failed");
    }

    #[test]
    fn github_golden() {
        let p = provider("github", "https://github.com/stefanprodan/podinfo.git");
        let req = p.create_request(&event(Severity::Error)).unwrap().unwrap();
        assert_eq!(
            req.url,
            "https://api.github.com/repos/stefanprodan/podinfo/statuses/0123456789abcdef0123456789abcdef01234567"
        );
        assert!(
            req.headers
                .contains(&("Authorization".into(), "Bearer ghp_secret".into()))
        );
        super::super::testdata::assert_golden(
            &req.body,
            r#"{"state": "failure", "context": "kustomization/podinfo/0c5c3f1a", "description": "reconciliation succeeded"}"#,
        );
        assert_eq!(
            p.list_request("abc").url,
            "https://api.github.com/repos/stefanprodan/podinfo/commits/abc/statuses?per_page=50"
        );
        let enterprise = provider("github", "ssh://git@ghe.example.com/org/app");
        assert_eq!(enterprise.api, "https://ghe.example.com/api/v3");
    }

    #[test]
    fn gitlab_golden() {
        let p = provider("gitlab", "git@gitlab.com:group/sub/app.git");
        let req = p.create_request(&event(Severity::Info)).unwrap().unwrap();
        assert_eq!(
            req.url,
            "https://gitlab.com/api/v4/projects/group%2Fsub%2Fapp/statuses/0123456789abcdef0123456789abcdef01234567"
        );
        assert!(
            req.headers
                .contains(&("PRIVATE-TOKEN".into(), "ghp_secret".into()))
        );
        super::super::testdata::assert_golden(
            &req.body,
            r#"{"state": "success", "name": "kustomization/podinfo/0c5c3f1a", "description": "reconciliation succeeded"}"#,
        );
    }

    #[test]
    fn progressing_is_not_posted_and_duplicates_are_detected() {
        let p = provider("github", "https://github.com/org/app");
        let mut e = event(Severity::Info);
        e.reason = "Progressing".into();
        assert!(p.create_request(&e).unwrap().is_none());
        let listed = br#"[{"context":"kustomization/podinfo/0c5c3f1a","state":"success","description":"reconciliation succeeded"},
                         {"context":"kustomization/podinfo/0c5c3f1a","state":"failure","description":"old"}]"#;
        assert!(p.is_duplicate(listed, "x", "success", "reconciliation succeeded", ""));
        assert!(!p.is_duplicate(listed, "x", "failure", "reconciliation succeeded", ""));
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    /// sha1("kustomization/podinfo/0c5c3f1a"): Bitbucket's key for the test context.
    fn key() -> String {
        hex::encode(Sha1::digest(b"kustomization/podinfo/0c5c3f1a"))
    }

    #[test]
    fn gitea_golden() {
        let p = provider("gitea", "https://gitea.example.com/org/app.git");
        let req = p.create_request(&event(Severity::Error)).unwrap().unwrap();
        assert_eq!(
            req.url,
            format!("https://gitea.example.com/api/v1/repos/org/app/statuses/{SHA}")
        );
        assert_eq!(
            req.headers,
            vec![("Authorization".to_owned(), "token ghp_secret".to_owned())]
        );
        super::super::testdata::assert_golden(
            &req.body,
            r#"{"state": "failure", "target_url": "", "description": "reconciliation succeeded", "context": "kustomization/podinfo/0c5c3f1a"}"#,
        );
        assert_eq!(
            p.list_request(SHA).url,
            format!(
                "https://gitea.example.com/api/v1/repos/org/app/commits/{SHA}/statuses?limit=50&page=1"
            )
        );
        // Progressing is posted as pending on Gitea (GitHub skips it).
        let mut e = event(Severity::Info);
        e.reason = "Progressing".into();
        let req = p.create_request(&e).unwrap().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["state"], "pending");
        // Gitea lists the state as `status`.
        let listed = br#"[{"context":"kustomization/podinfo/0c5c3f1a","status":"failure","description":"reconciliation succeeded"}]"#;
        assert!(p.is_duplicate(listed, SHA, "failure", "reconciliation succeeded", ""));
        assert!(!p.is_duplicate(listed, SHA, "success", "reconciliation succeeded", ""));
    }

    #[test]
    fn gitea_and_gitlab_take_the_password_without_a_token() {
        for type_ in ["gitea", "gitlab"] {
            let mut s = ProviderSettings {
                type_: type_.into(),
                address: "https://git.example.com/org/app".into(),
                commit_status: "kustomization/podinfo/0c5c3f1a".into(),
                ..Default::default()
            };
            let err = CommitStatus::new(s.clone()).unwrap_err();
            assert_eq!(err.to_string(), format!("{type_} token cannot be empty"));
            s.password = "from-password".into();
            let p = CommitStatus::new(s).unwrap();
            assert!(
                p.auth_headers
                    .iter()
                    .any(|(_, v)| v.ends_with("from-password")),
                "{type_}"
            );
        }
        let invalid = CommitStatus::new(ProviderSettings {
            type_: "gitea".into(),
            address: "https://git.example.com/group/sub/app".into(),
            token: "t".into(),
            commit_status: "c".into(),
            ..Default::default()
        });
        assert!(invalid.is_err());
    }

    #[test]
    fn bitbucket_golden() {
        let mut s = ProviderSettings {
            type_: "bitbucket".into(),
            address: "ssh://git@bitbucket.org/owner/repo.git".into(),
            token: "user:app-password".into(),
            commit_status: "kustomization/podinfo/0c5c3f1a".into(),
            http: HttpSettings {
                proxy: Some("http://proxy:3128".into()),
                tls: None,
            },
            ..Default::default()
        };
        let p = CommitStatus::new(s.clone()).unwrap();
        assert!(
            p.http().proxy.is_none(),
            "Flux's Bitbucket client has no proxy"
        );
        let req = p.create_request(&event(Severity::Info)).unwrap().unwrap();
        assert_eq!(
            req.url,
            format!(
                "https://api.bitbucket.org/2.0/repositories/owner/repo/commit/{SHA}/statuses/build"
            )
        );
        assert_eq!(req.basic_auth, Some(("user".into(), "app-password".into())));
        assert!(req.headers.is_empty());
        super::super::testdata::assert_golden(
            &req.body,
            &format!(
                r#"{{"key": "{}", "url": "https://bitbucket.org", "state": "SUCCESSFUL", "name": "kustomization/podinfo", "description": "reconciliation succeeded"}}"#,
                key()
            ),
        );
        assert_eq!(
            p.list_request(SHA).url,
            format!(
                "https://api.bitbucket.org/2.0/repositories/owner/repo/commit/{SHA}/statuses/build/{}",
                key()
            )
        );
        let listed = br#"{"key":"k","state":"SUCCESSFUL","description":"reconciliation succeeded","name":"x"}"#;
        assert!(p.is_duplicate(listed, SHA, "SUCCESSFUL", "reconciliation succeeded", ""));
        assert!(!p.is_duplicate(b"", SHA, "SUCCESSFUL", "reconciliation succeeded", ""));
        // The token must be user:password.
        s.token = "just-a-token".into();
        assert_eq!(
            CommitStatus::new(s).unwrap_err().to_string(),
            "invalid token format, expected to be <user>:<password>"
        );
    }

    #[test]
    fn bitbucket_server_golden() {
        let address = "https://bitbucket.example.com/context/scm/proj/repo.git";
        let mut s = ProviderSettings {
            type_: "bitbucketserver".into(),
            address: address.into(),
            token: "bbs-token".into(),
            commit_status: "kustomization/podinfo/0c5c3f1a".into(),
            ..Default::default()
        };
        let p = CommitStatus::new(s.clone()).unwrap();
        let req = p.create_request(&event(Severity::Error)).unwrap().unwrap();
        assert_eq!(
            req.url,
            format!(
                "https://bitbucket.example.com/context/rest/api/latest/projects/proj/repos/repo/commits/{SHA}/builds"
            )
        );
        assert_eq!(
            req.headers,
            vec![
                ("Authorization".to_owned(), "Bearer bbs-token".to_owned()),
                ("x-atlassian-token".to_owned(), "no-check".to_owned()),
                ("x-requested-with".to_owned(), "XMLHttpRequest".to_owned()),
            ]
        );
        super::super::testdata::assert_golden(
            &req.body,
            &format!(
                r#"{{"description": "reconciliation succeeded", "key": "{}", "name": "kustomization/podinfo [reconciliation succeeded]", "state": "FAILED", "url": "{address}"}}"#,
                key()
            ),
        );
        assert_eq!(
            p.list_request(SHA).url,
            format!(
                "https://bitbucket.example.com/context/rest/api/latest/projects/proj/repos/repo/commits/{SHA}/builds?key={}",
                key()
            )
        );
        let listed = format!(
            r#"{{"key":"{}","state":"FAILED","description":"reconciliation succeeded","name":"kustomization/podinfo [reconciliation succeeded]"}}"#,
            key()
        );
        let name = "kustomization/podinfo [reconciliation succeeded]";
        assert!(p.is_duplicate(
            listed.as_bytes(),
            SHA,
            "FAILED",
            "reconciliation succeeded",
            name
        ));
        assert!(!p.is_duplicate(
            listed.as_bytes(),
            SHA,
            "SUCCESSFUL",
            "reconciliation succeeded",
            name
        ));
        // Without a token: username and password.
        s.token.clear();
        assert!(CommitStatus::new(s.clone()).is_err());
        s.username = "bot".into();
        s.password = "pw".into();
        let p = CommitStatus::new(s.clone()).unwrap();
        assert_eq!(p.basic_auth, Some(("bot".into(), "pw".into())));
        // Only http(s) clone URLs with /scm/.
        for bad in [
            "ssh://git@bitbucket.example.com:7999/proj/repo.git",
            "https://bitbucket.example.com/proj/repo.git",
            "https://bitbucket.example.com/scm/proj/sub/repo.git",
        ] {
            s.address = bad.into();
            assert!(CommitStatus::new(s.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_path_escape() {
        assert_eq!(path_escape("a b/c?d;e,f"), "a%20b%2Fc%3Fd%3Be%2Cf");
        assert_eq!(path_escape("my-repo_1.x~$&+:=@"), "my-repo_1.x~$&+:=@");
    }

    #[test]
    fn debug_hides_credentials() {
        let p = provider("gitea", "https://gitea.example.com/org/app.git");
        assert!(!format!("{p:?}").contains("ghp_secret"));
    }
}
