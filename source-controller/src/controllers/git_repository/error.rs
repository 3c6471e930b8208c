//! GitRepository reconcile errors, each with Flux's reason and what the runner does next.

use std::time::Duration;

use common::api::meta::reasons;
use common::reconcile::{ErrorKind, FluxError};

use crate::git::github_app::{ConfigError, TokenError};
use crate::git::verify::VerifyError;
use crate::git::{AuthError, GitError};
use crate::storage::StorageError;

/// Why a GitRepository reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum GitRepositoryError {
    /// `spec.url` is not a valid http, https or ssh URL. Stalls.
    #[error("failed to parse url '{url}': {reason}")]
    InvalidUrl {
        /// The URL, credentials masked.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The Secret could not be read.
    #[error("failed to get secret '{namespace}/{name}': {source}")]
    Secret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The Secret's data is not usable for the URL's transport. Stalls.
    #[error("failed to configure authentication options: {0}")]
    Auth(#[source] AuthError),
    /// `spec.provider` is one Riptide cannot offer (`azure`, `aws`: cloud workload identity). Stalls.
    #[error(
        "provider '{0}' is not supported by Riptide: it needs cloud workload identity; use a secretRef (provider 'generic') or a GitHub App (provider 'github')"
    )]
    UnsupportedProvider(&'static str),
    /// `provider: github` without a usable GitHub App in the Secret. Stalls.
    #[error("{}", github_app_message(.0))]
    GitHubApp(#[source] ConfigError),
    /// The Secret holds GitHub App data but `spec.provider` is not `github`. Stalls.
    #[error("secretRef '{0}' has github app data but provider is not set to github")]
    GitHubAppDataWithoutProvider(String),
    /// No GitHub App installation token could be had. Retried.
    #[error(
        "failed to configure authentication options: failed to get GitHub App installation token: {0}"
    )]
    GitHubToken(#[source] TokenError),
    /// The proxy Secret is not usable.
    #[error("failed to configure proxy options: secret '{secret}': {reason}")]
    Proxy {
        /// `namespace/name`.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// An included GitRepository does not exist.
    #[error("could not get resource for include '{name}': {source}")]
    IncludeNotFound {
        /// The included repository.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// An included GitRepository has no artifact yet.
    #[error("no artifact available for include '{name}'")]
    IncludeNoArtifact {
        /// The included repository.
        name: String,
    },
    /// An included artifact could not be copied in.
    #[error("failed to copy artifact from include '{name}': {source}")]
    IncludeCopy {
        /// The included repository.
        name: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Resolving or fetching the revision failed.
    #[error("failed to checkout and determine revision: {}", checkout_message(source, *timeout))]
    Checkout {
        /// The git error.
        source: GitError,
        /// `spec.timeout`, for the timeout message.
        timeout: Duration,
    },
    /// A temporary directory could not be created.
    #[error("failed to create temporary working directory: {0}")]
    TempDir(#[source] std::io::Error),
    /// Storing the artifact failed.
    #[error(transparent)]
    Storage(StorageError),
    /// The progress could not be written to the object's status.
    #[error("failed to patch status: {0}")]
    Patch(String),
    /// A signature did not verify (`spec.verify`).
    #[error(transparent)]
    Verification(VerifyError),
}

fn github_app_message(err: &ConfigError) -> String {
    match err {
        // Flux's message, as is.
        ConfigError::NoAppData => err.to_string(),
        other => format!("failed to configure authentication options: {other}"),
    }
}

fn checkout_message(source: &GitError, timeout: Duration) -> String {
    match source {
        GitError::Timeout => format!("operation timed out after {}", humantime_like(timeout)),
        other => other.to_string(),
    }
}

fn humantime_like(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl GitRepositoryError {
    /// Flux's reason.
    pub fn reason_str(&self) -> &'static str {
        match self {
            GitRepositoryError::InvalidUrl { .. } => reasons::URL_INVALID,
            GitRepositoryError::Secret { .. }
            | GitRepositoryError::Auth(_)
            | GitRepositoryError::Proxy { .. }
            | GitRepositoryError::GitHubToken(_) => reasons::AUTHENTICATION_FAILED,
            GitRepositoryError::GitHubApp(e) if !e.is_missing_data() => {
                reasons::AUTHENTICATION_FAILED
            }
            GitRepositoryError::UnsupportedProvider(_)
            | GitRepositoryError::GitHubApp(_)
            | GitRepositoryError::GitHubAppDataWithoutProvider(_) => {
                reasons::INVALID_PROVIDER_CONFIGURATION
            }
            GitRepositoryError::IncludeNotFound { .. } => "NotFound",
            GitRepositoryError::IncludeNoArtifact { .. } => "NoArtifact",
            GitRepositoryError::IncludeCopy { .. } => "CopyFailed",
            GitRepositoryError::Checkout { .. } => reasons::GIT_OPERATION_FAILED,
            GitRepositoryError::TempDir(_) => reasons::DIR_CREATION_FAILED,
            GitRepositoryError::Storage(e) => match e {
                StorageError::Mkdir(_) => reasons::DIR_CREATION_FAILED,
                StorageError::Ignore(_) => "SourceIgnoreError",
                StorageError::Io { .. } => reasons::READ_OPERATION_FAILED,
                StorageError::Archive(_) => reasons::ARCHIVE_OPERATION_FAILED,
            },
            GitRepositoryError::Patch(_) => reasons::PATCH_OPERATION_FAILED,
            GitRepositoryError::Verification(e) => e.reason(),
        }
    }

    /// Whether the error belongs on the `FetchFailed` condition (source step failures).
    pub fn marks_fetch_failed(&self) -> bool {
        matches!(
            self,
            GitRepositoryError::InvalidUrl { .. }
                | GitRepositoryError::Secret { .. }
                | GitRepositoryError::Auth(_)
                | GitRepositoryError::Proxy { .. }
                | GitRepositoryError::UnsupportedProvider(_)
                | GitRepositoryError::GitHubApp(_)
                | GitRepositoryError::GitHubAppDataWithoutProvider(_)
                | GitRepositoryError::GitHubToken(_)
                | GitRepositoryError::Checkout { .. }
        )
    }
}

impl FluxError for GitRepositoryError {
    fn reason(&self) -> &str {
        self.reason_str()
    }

    fn kind(&self) -> ErrorKind {
        match self {
            GitRepositoryError::InvalidUrl { .. }
            | GitRepositoryError::Auth(_)
            | GitRepositoryError::UnsupportedProvider(_)
            | GitRepositoryError::GitHubApp(_)
            | GitRepositoryError::GitHubAppDataWithoutProvider(_)
            | GitRepositoryError::Verification(VerifyError::NoTagReference) => ErrorKind::Stalled,
            GitRepositoryError::Checkout {
                source: GitError::SemverInvalid(_),
                ..
            } => ErrorKind::Stalled,
            _ => ErrorKind::Transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_kinds() {
        let url = GitRepositoryError::InvalidUrl {
            url: "x".into(),
            reason: "bad".into(),
        };
        assert_eq!(url.reason(), "URLInvalid");
        assert_eq!(url.kind(), ErrorKind::Stalled);
        let auth = GitRepositoryError::Auth(AuthError::Missing {
            transport: "ssh",
            key: "known_hosts",
        });
        assert_eq!(auth.reason(), "AuthenticationFailed");
        assert_eq!(auth.kind(), ErrorKind::Stalled);
        assert_eq!(
            auth.to_string(),
            "failed to configure authentication options: invalid 'ssh' auth option: 'known_hosts' is required"
        );
        let azure = GitRepositoryError::UnsupportedProvider("azure");
        assert_eq!(azure.reason(), "InvalidProviderConfiguration");
        assert_eq!(azure.kind(), ErrorKind::Stalled);
        assert!(
            azure
                .to_string()
                .starts_with("provider 'azure' is not supported by Riptide"),
            "{azure}"
        );
        let no_app = GitRepositoryError::GitHubApp(ConfigError::NoAppData);
        assert_eq!(
            (no_app.reason(), no_app.kind(), no_app.to_string().as_str()),
            (
                "InvalidProviderConfiguration",
                ErrorKind::Stalled,
                "secretRef with github app data must be specified when provider is set to github"
            )
        );
        let missing = GitRepositoryError::GitHubApp(ConfigError::MissingKey {
            secret: "ns/gh".into(),
            key: "githubAppID",
        });
        assert_eq!(missing.reason(), "InvalidProviderConfiguration");
        assert_eq!(
            missing.to_string(),
            "failed to configure authentication options: secret 'ns/gh': key 'githubAppID' not found"
        );
        let bad_key = GitRepositoryError::GitHubApp(ConfigError::Invalid {
            secret: "ns/gh".into(),
            key: "githubAppPrivateKey",
            reason: "no PEM private key found".into(),
        });
        assert_eq!(
            (bad_key.reason(), bad_key.kind()),
            ("AuthenticationFailed", ErrorKind::Stalled)
        );
        let token = GitRepositoryError::GitHubToken(TokenError::Status {
            method: "POST".into(),
            url: "https://api.github.com/app/installations/1/access_tokens".into(),
            status: 401,
            message: "A JSON web token could not be decoded".into(),
        });
        assert_eq!(
            (token.reason(), token.kind()),
            ("AuthenticationFailed", ErrorKind::Transient)
        );
        assert_eq!(
            token.to_string(),
            "failed to configure authentication options: failed to get GitHub App installation token: POST https://api.github.com/app/installations/1/access_tokens: 401 A JSON web token could not be decoded"
        );
        assert!(token.marks_fetch_failed() && azure.marks_fetch_failed());
        let timeout = GitRepositoryError::Checkout {
            source: GitError::Timeout,
            timeout: Duration::from_secs(2),
        };
        assert_eq!(timeout.reason(), "GitOperationFailed");
        assert_eq!(timeout.kind(), ErrorKind::Transient);
        assert_eq!(
            timeout.to_string(),
            "failed to checkout and determine revision: operation timed out after 2s"
        );
    }
}
