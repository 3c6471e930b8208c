//! Commit statuses on GitHub and GitLab: state from the severity, context from `kind/name/<provider uid>`,
//! description from the reason; an identical latest status is not posted again.

use common::events::{FluxEvent, Severity};
use serde::Deserialize;
use serde_json::json;

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
}

/// A commit status provider.
#[derive(Debug, Clone)]
pub struct CommitStatus {
    forge: Forge,
    api: String,
    repo: String,
    token: String,
    context: String,
    http: HttpSettings,
}

#[derive(Deserialize)]
struct GitHubStatus {
    context: Option<String>,
    state: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
struct GitLabStatus {
    sha: Option<String>,
    status: Option<String>,
    description: Option<String>,
    name: Option<String>,
}

impl CommitStatus {
    /// From the Provider: `address` is the repository URL (https or ssh), `token` the API token.
    pub fn new(settings: ProviderSettings) -> Result<Self, NotifierError> {
        let forge = if settings.type_ == "github" {
            Forge::GitHub
        } else {
            Forge::GitLab
        };
        if settings.commit_status.is_empty() {
            return Err(NotifierError::Config(
                "commit status cannot be empty".into(),
            ));
        }
        if forge == Forge::GitLab && settings.token.is_empty() {
            return Err(NotifierError::Config("gitlab token cannot be empty".into()));
        }
        let (scheme, host, repo) = parse_git_address(&settings.address)?;
        let api = match forge {
            Forge::GitHub if host == "github.com" => "https://api.github.com".to_owned(),
            Forge::GitHub => format!("{scheme}://{host}/api/v3"),
            Forge::GitLab => format!("{scheme}://{host}/api/v4"),
        };
        if forge == Forge::GitHub && repo.split('/').count() != 2 {
            return Err(NotifierError::Config(format!(
                "invalid repository id {repo:?}"
            )));
        }
        Ok(CommitStatus {
            forge,
            api,
            repo,
            token: settings.token,
            context: settings.commit_status,
            http: settings.http,
        })
    }

    pub(crate) fn http(&self) -> &HttpSettings {
        &self.http
    }

    fn auth(&self) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        match self.forge {
            Forge::GitHub => {
                headers.push(("Accept".into(), "application/vnd.github+json".into()));
                if !self.token.is_empty() {
                    headers.push(("Authorization".into(), format!("Bearer {}", self.token)));
                }
            }
            Forge::GitLab => headers.push(("PRIVATE-TOKEN".into(), self.token.clone())),
        }
        headers
    }

    fn project(&self) -> String {
        url::form_urlencoded::byte_serialize(self.repo.as_bytes()).collect()
    }

    /// The request listing the statuses already on `sha`.
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
        };
        Request {
            method: http::Method::GET,
            url,
            body: Vec::new(),
            headers: self.auth(),
            basic_auth: None,
            check: ResponseCheck::Status,
        }
    }

    /// `(sha, state, description)` for `event`, or `None` when the event is not posted (`Progressing`).
    fn status_of(
        &self,
        event: &FluxEvent,
    ) -> Result<Option<(String, &'static str, String)>, NotifierError> {
        if event.reason == "Progressing" {
            return Ok(None);
        }
        let revision = event
            .metadata
            .get("revision")
            .ok_or_else(|| NotifierError::Config("missing revision metadata".into()))?;
        let sha = parse_revision(revision)?;
        let state = match (self.forge, event.severity) {
            (Forge::GitHub, Severity::Info) => "success",
            (Forge::GitHub, Severity::Error) => "failure",
            (Forge::GitLab, Severity::Info) => "success",
            (Forge::GitLab, Severity::Error) => "failed",
            (_, Severity::Trace) => {
                return Err(NotifierError::Config(
                    "can't convert to commit state".into(),
                ));
            }
        };
        Ok(Some((sha, state, describe_reason(&event.reason))))
    }

    /// The request creating the status for `event`, or `None` when the event is not posted.
    pub fn create_request(&self, event: &FluxEvent) -> Result<Option<Request>, NotifierError> {
        let Some((sha, state, description)) = self.status_of(event)? else {
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
        };
        Ok(Some(Request {
            method: http::Method::POST,
            url,
            body: serde_json::to_vec(&body).map_err(|e| NotifierError::Config(e.to_string()))?,
            headers: self.auth(),
            basic_auth: None,
            check: ResponseCheck::Status,
        }))
    }

    /// Whether the statuses listed (`body`) already hold this one.
    fn is_duplicate(&self, body: &[u8], sha: &str, state: &str, description: &str) -> bool {
        match self.forge {
            Forge::GitHub => {
                let Ok(statuses) = serde_json::from_slice::<Vec<GitHubStatus>>(body) else {
                    return false;
                };
                // The newest status of our context decides.
                statuses
                    .iter()
                    .filter(|s| s.state.is_some() && s.description.is_some())
                    .find(|s| s.context.as_deref() == Some(self.context.as_str()))
                    .is_some_and(|s| {
                        s.state.as_deref() == Some(state)
                            && s.description.as_deref() == Some(description)
                    })
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
        }
    }

    pub(crate) async fn post(
        &self,
        client: &reqwest::Client,
        event: &FluxEvent,
        retry: Retry,
    ) -> Result<(), NotifierError> {
        let Some((sha, state, description)) = self.status_of(event)? else {
            return Ok(());
        };
        let listed = send(client, &self.list_request(&sha), retry)
            .await
            .map_err(|e| NotifierError::Rejected(format!("could not list commit statuses: {e}")))?;
        if self.is_duplicate(&listed, &sha, state, &description) {
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
        assert!(p.is_duplicate(listed, "x", "success", "reconciliation succeeded"));
        assert!(!p.is_duplicate(listed, "x", "failure", "reconciliation succeeded"));
    }
}
