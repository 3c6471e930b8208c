//! The GitRepository reconciler: storage check → includes → remote revision (no clone when unchanged) →
//! checkout → archive → store, with Flux's conditions, reasons, messages and events.
//!
//! Credentials follow `spec.provider`: `generic` (the default) reads them from `secretRef`; `github` exchanges
//! the GitHub App of `secretRef` for an installation token ([`git::github_app`]) used as the basic-auth password
//! of `x-access-token`; `azure` and `aws` need cloud workload identity, which Riptide does not offer, and stall
//! with `InvalidProviderConfiguration` rather than fall back to anything else.

mod error;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::meta::{condition_types as types, reasons};
use common::api::source_v1::{
    Artifact, GIT_REPOSITORY_KIND, GROUP, GitProvider, GitRepository, GitRepositoryInclude,
    GitRepositoryStatus, GitVerificationMode,
};
use common::conditions::format_time;
use common::events::{META_DIGEST_KEY, META_REVISION_KEY, metadata_key};
use common::reconcile::{FluxStatus, Reconciler, Severity, Step, Success, Summary};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use tracing::{debug, info};
use url::Url;

pub use self::error::GitRepositoryError;
use crate::git::github_app::{self, TokenCache};
use crate::git::{self, AuthOptions, Reference, Resolved, verify};
use crate::storage::{self, Storage, artifact_path, ignore::IgnoreRules};

/// Flux's Ready summary for GitRepository (`gitRepositoryReadyCondition`).
pub const SUMMARY: Summary = Summary {
    scope: &[
        types::STORAGE_OPERATION_FAILED,
        types::FETCH_FAILED,
        types::INCLUDE_UNAVAILABLE,
        types::ARTIFACT_OUTDATED,
        types::ARTIFACT_IN_STORAGE,
        types::SOURCE_VERIFIED,
        types::STALLED,
        types::RECONCILING,
    ],
    negative_polarity: &[
        types::STORAGE_OPERATION_FAILED,
        types::FETCH_FAILED,
        types::INCLUDE_UNAVAILABLE,
        types::ARTIFACT_OUTDATED,
        types::STALLED,
        types::RECONCILING,
    ],
};

/// The default `spec.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Reconciles GitRepository objects into artifacts in `storage`.
pub struct GitRepositoryReconciler {
    client: Client,
    storage: Storage,
    tokens: Option<Arc<TokenCache>>,
}

impl GitRepositoryReconciler {
    /// A reconciler reading Secrets and included GitRepositories with `client`, storing into `storage`, caching
    /// GitHub App tokens as Flux does by default (100 tokens, at most an hour each).
    pub fn new(client: Client, storage: Storage) -> Self {
        GitRepositoryReconciler {
            client,
            storage,
            tokens: Some(Arc::new(TokenCache::new(
                TokenCache::DEFAULT_CAPACITY,
                TokenCache::MAX_DURATION,
            ))),
        }
    }

    /// The same reconciler with another GitHub App token cache (`None`: every reconcile asks GitHub).
    pub fn with_token_cache(mut self, tokens: Option<TokenCache>) -> Self {
        self.tokens = tokens.map(Arc::new);
        self
    }

    /// The artifact store.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
}

/// Whether the spec fields that shape the artifact's content differ from what the stored artifact was built
/// with (Flux's `gitContentConfigChanged`, minus includes which are compared by artifact).
pub fn content_config_changed(obj: &GitRepository) -> bool {
    let status = obj.status.clone().unwrap_or_default();
    let spec = &obj.spec;
    let empty_none = |v: &Option<Vec<String>>| v.clone().filter(|v| !v.is_empty());
    let includes = |v: &Option<Vec<GitRepositoryInclude>>| v.clone().filter(|v| !v.is_empty());
    spec.ignore != status.observed_ignore
        || spec.recurse_submodules.unwrap_or(false)
            != status.observed_recurse_submodules.unwrap_or(false)
        || empty_none(&spec.sparse_checkout) != empty_none(&status.observed_sparse_checkout)
        || includes(&spec.include) != includes(&status.observed_include)
}

fn includes_differ(current: &[Artifact], observed: Option<&Vec<Artifact>>) -> bool {
    let observed = observed.map(Vec::as_slice).unwrap_or_default();
    current.len() != observed.len()
        || current
            .iter()
            .zip(observed)
            .any(|(a, b)| a.revision != b.revision || a.digest != b.digest)
}

async fn blocking<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce(Instant) -> Result<T, git::GitError> + Send + 'static,
) -> Result<T, git::GitError> {
    let deadline = Instant::now() + timeout;
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(move || f(deadline))).await {
        Err(_) => Err(git::GitError::Timeout),
        Ok(Err(join)) => Err(git::GitError::Git(git2::Error::from_str(&join.to_string()))),
        Ok(Ok(result)) => result,
    }
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .string_data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in secret.data.clone().unwrap_or_default() {
        data.insert(k, v.0);
    }
    data
}

fn timeout_of(obj: &GitRepository) -> Duration {
    common::cli::parse_go_duration(&obj.spec.timeout).unwrap_or(DEFAULT_TIMEOUT)
}

impl GitRepositoryReconciler {
    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, GitRepositoryError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get(name)
            .await
            .map_err(|source| GitRepositoryError::Secret {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
        Ok(secret_data(&secret))
    }

    async fn auth_options(
        &self,
        obj: &GitRepository,
        url: &Url,
    ) -> Result<AuthOptions, GitRepositoryError> {
        let namespace = obj.namespace().unwrap_or_default();
        let provider = obj.spec.provider();
        if matches!(provider, GitProvider::Azure | GitProvider::Aws) {
            return Err(GitRepositoryError::UnsupportedProvider(provider.as_str()));
        }
        let data = match &obj.spec.secret_ref {
            Some(r) => Some(self.secret(&namespace, &r.name).await?),
            None => None,
        };
        let mut auth = AuthOptions::new(url, data.as_ref()).map_err(GitRepositoryError::Auth)?;
        if let Some(proxy) = &obj.spec.proxy_secret_ref {
            let data = self.secret(&namespace, &proxy.name).await?;
            auth.proxy = Some(proxy_url(&namespace, &proxy.name, &data)?);
        }
        let secret_name = |name: &str| format!("{namespace}/{name}");
        match (provider, &obj.spec.secret_ref, &data) {
            (GitProvider::Github, Some(r), Some(data)) => {
                let app = github_app::App::from_secret(&secret_name(&r.name), data)
                    .map_err(GitRepositoryError::GitHubApp)?;
                let token = github_app::installation_token(
                    &app,
                    self.tokens.as_deref(),
                    auth.proxy.as_deref(),
                    timeout_of(obj),
                )
                .await
                .map_err(GitRepositoryError::GitHubToken)?;
                // As Flux: the token replaces whatever the Secret says for git.
                auth.bearer_token = None;
                auth.username = Some(github_app::ACCESS_TOKEN_USERNAME.to_string());
                auth.password = Some(token.secret().to_string());
            }
            (GitProvider::Github, _, _) => {
                return Err(GitRepositoryError::GitHubApp(
                    github_app::ConfigError::NoAppData,
                ));
            }
            // As Flux: GitHub App data means the provider was meant to be `github`.
            (_, Some(r), Some(data)) if github_app::has_app_data(data) => {
                return Err(GitRepositoryError::GitHubAppDataWithoutProvider(
                    secret_name(&r.name),
                ));
            }
            _ => {}
        }
        Ok(auth)
    }

    /// The artifacts of the included GitRepositories, in spec order.
    async fn included_artifacts(
        &self,
        obj: &GitRepository,
    ) -> Result<Vec<Artifact>, GitRepositoryError> {
        let namespace = obj.namespace().unwrap_or_default();
        let api: Api<GitRepository> = Api::namespaced(self.client.clone(), &namespace);
        let mut artifacts = Vec::new();
        for include in obj.spec.includes() {
            let name = &include.repository.name;
            let repo =
                api.get(name)
                    .await
                    .map_err(|source| GitRepositoryError::IncludeNotFound {
                        name: name.clone(),
                        source,
                    })?;
            let artifact = repo
                .artifact()
                .cloned()
                .ok_or_else(|| GitRepositoryError::IncludeNoArtifact { name: name.clone() })?;
            artifacts.push(artifact);
        }
        Ok(artifacts)
    }

    /// Checks the stored artifact: a missing file or a digest mismatch (warning event, file removed) drops it
    /// from the status so it is rebuilt.
    fn reconcile_storage(&self, status: &mut GitRepositoryStatus, step: &mut Step) {
        let Some(mut artifact) = status.artifact.clone() else {
            return;
        };
        match self.storage.verify(&artifact) {
            Ok(true) => {
                self.storage.set_url(&mut artifact);
                let message = format!("stored artifact: revision '{}'", artifact.revision);
                status.artifact = Some(artifact);
                step.conditions(status.conditions_mut()).mark_true(
                    types::ARTIFACT_IN_STORAGE,
                    reasons::SUCCEEDED,
                    &message,
                );
            }
            Ok(false) => {
                if self.storage.local_path(&artifact.path).exists() {
                    step.event(
                        Severity::Error,
                        "ArtifactVerificationFailed",
                        format!(
                            "failed to verify integrity of artifact: computed digest doesn't match '{}'",
                            artifact.digest
                        ),
                    );
                    if let Err(err) = self.storage.remove(&artifact.path) {
                        debug!(error = %err, "removing corrupt artifact");
                    }
                }
                status.artifact = None;
                step.conditions(status.conditions_mut())
                    .delete(types::ARTIFACT_IN_STORAGE);
            }
            Err(err) => debug!(error = %err, "verifying artifact"),
        }
    }

    async fn run(
        &self,
        obj: &GitRepository,
        status: &mut GitRepositoryStatus,
        step: &mut Step,
    ) -> Result<Success, GitRepositoryError> {
        let namespace = obj.namespace().unwrap_or_default();
        let name = obj.name_any();

        // Storage: the stored artifact must still be there, with its digest.
        self.reconcile_storage(status, step);

        // Verification keys, when asked for.
        let verify = match &obj.spec.verification {
            Some(v) => {
                let keys = match self.secret(&namespace, &v.secret_ref.name).await {
                    Ok(data) => {
                        verify::load_keys(&format!("{namespace}/{}", v.secret_ref.name), &data)
                            .map_err(GitRepositoryError::Verification)
                    }
                    Err(err) => Err(err),
                };
                match keys {
                    Ok(keys) => Some((v.mode.normalized(), keys)),
                    Err(err) => {
                        step.conditions(status.conditions_mut()).mark_false(
                            types::SOURCE_VERIFIED,
                            reasons::VERIFICATION_ERROR,
                            &err.to_string(),
                        );
                        return Err(err);
                    }
                }
            }
            None => {
                step.conditions(status.conditions_mut())
                    .delete(types::SOURCE_VERIFIED);
                status.source_verification_mode = None;
                None
            }
        };

        // Source: URL, credentials, includes, remote revision.
        let verify_mode = verify.as_ref().map(|(mode, _)| mode.as_str());
        let result = self.reconcile_source(obj, status, step, verify_mode).await;
        let (auth, reference, resolved, includes) = match result {
            Ok(Some(v)) => v,
            Ok(None) => {
                let revision = status
                    .artifact
                    .as_ref()
                    .map(|a| a.revision.clone())
                    .unwrap_or_default();
                let message = format!("stored artifact for revision '{revision}'");
                return Ok(Success::new(message));
            }
            Err(err) => {
                if err.marks_fetch_failed() {
                    step.conditions(status.conditions_mut()).mark_true(
                        types::FETCH_FAILED,
                        err.reason_str(),
                        &common::telemetry::mask_url_credentials(&err.to_string()),
                    );
                }
                return Err(err);
            }
        };

        // As Flux's progressive status: a new revision (or changed includes) is announced, and written, before
        // the checkout, with Ready Unknown.
        let new_revision = !status
            .artifact
            .as_ref()
            .is_some_and(|a| a.has_revision(&resolved.revision));
        let progress = if new_revision {
            let message = format!("new upstream revision '{}'", resolved.revision);
            if status.artifact.is_some() {
                step.conditions(status.conditions_mut()).mark_true(
                    types::ARTIFACT_OUTDATED,
                    "NewRevision",
                    &message,
                );
            }
            Some(message)
        } else {
            common::conditions::get(status.conditions(), types::ARTIFACT_OUTDATED)
                .filter(|c| c.reason == "IncludeChange")
                .map(|c| c.message.clone())
        };
        if let Some(message) = progress {
            let mut c = step.conditions(status.conditions_mut());
            let message = format!("building artifact: {message}");
            c.mark_reconciling(reasons::PROGRESSING, &message);
            c.mark_unknown(types::READY, reasons::PROGRESSING, &message);
            step.write_status(&*status)
                .await
                .map_err(|e| GitRepositoryError::Patch(e.to_string()))?;
        }

        // Checkout into a temporary directory, then copy includes in.
        let tmp = tempfile::Builder::new()
            .prefix("gitrepository-")
            .tempdir()
            .map_err(GitRepositoryError::TempDir)?;
        let dir = tmp.path().to_path_buf();
        let url = obj.spec.url.clone();
        let sparse = obj.spec.sparse_checkout.clone().filter(|s| !s.is_empty());
        let recurse = obj.spec.recurse_submodules();
        let checkout = {
            let dir = dir.clone();
            let reference = reference.clone();
            let verify = verify.clone();
            blocking(timeout_of(obj), move |deadline| {
                let checkout = git::checkout(
                    &url,
                    &auth,
                    &reference,
                    &resolved,
                    &dir,
                    sparse.as_deref(),
                    recurse,
                    deadline,
                )?;
                let verified = verify
                    .map(|(mode, keys)| verify_checkout(&dir, &checkout, &reference, mode, &keys));
                Ok((checkout, verified))
            })
            .await
        };
        let (checkout, verified) = match checkout {
            Ok(c) => c,
            Err(source) => {
                let err = GitRepositoryError::Checkout {
                    source,
                    timeout: timeout_of(obj),
                };
                step.conditions(status.conditions_mut()).mark_true(
                    types::FETCH_FAILED,
                    err.reason_str(),
                    &common::telemetry::mask_url_credentials(&err.to_string()),
                );
                return Err(err);
            }
        };
        step.conditions(status.conditions_mut())
            .delete(types::FETCH_FAILED);
        match verified {
            None => {}
            Some(Ok(message)) => {
                step.conditions(status.conditions_mut()).mark_true(
                    types::SOURCE_VERIFIED,
                    reasons::SUCCEEDED,
                    &message,
                );
                status.source_verification_mode = verify_mode.map(str::to_string);
            }
            Some(Err(source)) => {
                let err = GitRepositoryError::Verification(source);
                step.conditions(status.conditions_mut()).mark_false(
                    types::SOURCE_VERIFIED,
                    err.reason_str(),
                    &err.to_string(),
                );
                return Err(err);
            }
        }
        if let Err(err) = self.copy_includes(obj, &includes, &dir).await {
            step.conditions(status.conditions_mut()).mark_true(
                types::INCLUDE_UNAVAILABLE,
                err.reason_str(),
                &err.to_string(),
            );
            return Err(err);
        }

        // Archive and store.
        let rel = artifact_path(
            GIT_REPOSITORY_KIND,
            &namespace,
            &name,
            &format!("{}.tar.gz", checkout.sha),
        );
        let stored = {
            let storage = self.storage.clone();
            let rel = rel.clone();
            let ignore = obj.spec.ignore.clone();
            tokio::task::spawn_blocking(move || {
                let rules = IgnoreRules::load(&dir, ignore.as_deref())?;
                storage.archive(&rel, &dir, &rules)
            })
            .await
            .map_err(|e| storage::StorageError::Archive(std::io::Error::other(e.to_string())))
            .and_then(|r| r)
        };
        drop(tmp);
        let (digest, size) = match stored {
            Ok(v) => v,
            Err(source) => {
                let err = GitRepositoryError::Storage(source);
                step.conditions(status.conditions_mut()).mark_true(
                    types::STORAGE_OPERATION_FAILED,
                    err.reason_str(),
                    &err.to_string(),
                );
                return Err(err);
            }
        };
        let artifact = Artifact {
            digest: digest.clone(),
            last_update_time: format_time(jiff::Timestamp::now()),
            metadata: None,
            path: rel.clone(),
            revision: checkout.revision.clone(),
            size: Some(size),
            url: self.storage.url(&rel),
        };
        status.artifact = Some(artifact);
        status.included_artifacts = (!includes.is_empty()).then_some(includes);
        status.observed_ignore = obj.spec.ignore.clone();
        status.observed_recurse_submodules = obj.spec.recurse_submodules;
        status.observed_include = obj.spec.include.clone();
        status.observed_sparse_checkout = obj.spec.sparse_checkout.clone();
        let message = format!("stored artifact for revision '{}'", checkout.revision);
        {
            let mut c = step.conditions(status.conditions_mut());
            c.delete(types::ARTIFACT_OUTDATED);
            c.delete(types::STORAGE_OPERATION_FAILED);
            c.delete(types::INCLUDE_UNAVAILABLE);
            c.mark_true(types::ARTIFACT_IN_STORAGE, reasons::SUCCEEDED, &message);
        }
        let metadata = BTreeMap::from([
            (
                metadata_key(GROUP, META_REVISION_KEY),
                checkout.revision.clone(),
            ),
            (metadata_key(GROUP, META_DIGEST_KEY), digest),
        ]);
        step.event_with_metadata(
            Severity::Info,
            reasons::NEW_ARTIFACT,
            format!("stored artifact for commit '{}'", checkout.summary),
            metadata,
        );
        info!(revision = %checkout.revision, "stored artifact");
        match self.storage.garbage_collect(&rel) {
            Ok(removed) if !removed.is_empty() => {
                debug!(count = removed.len(), "garbage collected artifacts");
            }
            Ok(_) => {}
            Err(err) => debug!(error = %err, "garbage collection failed"),
        }
        Ok(Success::new(message))
    }

    /// Resolves the remote revision. `Ok(None)`: nothing changed since the stored artifact (no clone).
    #[allow(clippy::type_complexity)]
    async fn reconcile_source(
        &self,
        obj: &GitRepository,
        status: &mut GitRepositoryStatus,
        step: &mut Step,
        verify_mode: Option<&str>,
    ) -> Result<Option<(AuthOptions, Reference, Resolved, Vec<Artifact>)>, GitRepositoryError> {
        let url = Url::parse(&obj.spec.url).map_err(|e| GitRepositoryError::InvalidUrl {
            url: common::telemetry::mask_url_credentials(&obj.spec.url),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https" | "ssh") || url.host_str().is_none() {
            return Err(GitRepositoryError::InvalidUrl {
                url: common::telemetry::mask_url_credentials(&obj.spec.url),
                reason: "must be an http, https or ssh URL with a host".to_string(),
            });
        }
        let auth = self.auth_options(obj, &url).await?;

        let includes = match self.included_artifacts(obj).await {
            Ok(a) => a,
            Err(err) => {
                step.conditions(status.conditions_mut()).mark_true(
                    types::INCLUDE_UNAVAILABLE,
                    err.reason_str(),
                    &err.to_string(),
                );
                return Err(err);
            }
        };
        step.conditions(status.conditions_mut())
            .delete(types::INCLUDE_UNAVAILABLE);
        if status.included_artifacts.is_some()
            && includes_differ(&includes, status.included_artifacts.as_ref())
        {
            step.conditions(status.conditions_mut()).mark_true(
                types::ARTIFACT_OUTDATED,
                "IncludeChange",
                "included artifacts differ from last observed includes",
            );
        }

        let reference = Reference::from(obj.spec.checkout());
        let resolved = match &reference {
            Reference::Commit { .. } => {
                git::resolve(&reference, &[]).map_err(|source| GitRepositoryError::Checkout {
                    source,
                    timeout: timeout_of(obj),
                })?
            }
            _ => {
                let url = obj.spec.url.clone();
                let auth = auth.clone();
                let reference = reference.clone();
                blocking(timeout_of(obj), move |deadline| {
                    let refs = git::ls_remote(&url, &auth, deadline)?;
                    if refs.is_empty() {
                        return Err(git::GitError::Empty);
                    }
                    git::resolve(&reference, &refs)
                })
                .await
                .map_err(|source| GitRepositoryError::Checkout {
                    source,
                    timeout: timeout_of(obj),
                })?
            }
        };

        let unchanged = status
            .artifact
            .as_ref()
            .is_some_and(|a| a.has_revision(&resolved.revision))
            && !content_config_changed(obj)
            && !includes_differ(&includes, status.included_artifacts.as_ref())
            && (verify_mode.is_none()
                || (status.source_verification_mode.as_deref() == verify_mode
                    && common::conditions::is_true(status.conditions(), types::SOURCE_VERIFIED)));
        if unchanged {
            info!(revision = %resolved.revision, "no changes since last reconciliation");
            let message = format!("stored artifact for revision '{}'", resolved.revision);
            let mut c = step.conditions(status.conditions_mut());
            c.delete(types::FETCH_FAILED);
            c.delete(types::ARTIFACT_OUTDATED);
            c.delete(types::STORAGE_OPERATION_FAILED);
            c.mark_true(types::ARTIFACT_IN_STORAGE, reasons::SUCCEEDED, &message);
            return Ok(None);
        }
        Ok(Some((auth, reference, resolved, includes)))
    }

    async fn copy_includes(
        &self,
        obj: &GitRepository,
        artifacts: &[Artifact],
        dir: &Path,
    ) -> Result<(), GitRepositoryError> {
        for (include, artifact) in obj.spec.includes().iter().zip(artifacts) {
            let archive = self.storage.local_path(&artifact.path);
            let from = include.from_path().to_string();
            let to = include.to_path().to_string();
            let dest = dir.to_path_buf();
            let name = include.repository.name.clone();
            tokio::task::spawn_blocking(move || copy_include(&archive, &from, &to, &dest))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map_err(|source| GitRepositoryError::IncludeCopy { name, source })?;
        }
        Ok(())
    }
}

/// Verifies the checked-out commit and/or tag as `mode` asks; returns Flux's `SourceVerified` message.
fn verify_checkout(
    dir: &Path,
    checkout: &git::Checkout,
    reference: &Reference,
    mode: GitVerificationMode,
    keys: &verify::Keys,
) -> Result<String, verify::VerifyError> {
    let repo = git2::Repository::open(dir)
        .map_err(|e| verify::VerifyError::Git(e.message().to_string()))?;
    let now = jiff::Timestamp::now();
    let mut lines = Vec::new();
    if mode.verify_tag() {
        let tag = match reference {
            Reference::Tag(t) => t.clone(),
            Reference::SemVer(_) => checkout
                .revision
                .split_once("@sha1:")
                .map(|(t, _)| t.to_string())
                .ok_or(verify::VerifyError::NoTagReference)?,
            _ => return Err(verify::VerifyError::NoTagReference),
        };
        let key = verify::verify_tag(&repo, &tag, keys, now)?;
        lines.push(format!("- tag '{tag}' with key '{key}'"));
    }
    if mode.verify_head() {
        let key = verify::verify_commit(&repo, &checkout.sha, keys, now)?;
        lines.push(format!("- commit '{}' with key '{key}'", checkout.sha));
    }
    Ok(format!("verified signature of\n\t{}", lines.join("\n\t")))
}

fn clean_relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn copy_include(archive: &Path, from: &str, to: &str, dest: &Path) -> std::io::Result<()> {
    let invalid = || std::io::Error::other("include path escapes the repository");
    let from = clean_relative(from).ok_or_else(invalid)?;
    let to = clean_relative(to).ok_or_else(invalid)?;
    let extracted = tempfile::tempdir()?;
    storage::extract_tarball(archive, extracted.path())?;
    let source = extracted.path().join(from);
    let target = dest.join(to);
    if target.exists() {
        std::fs::remove_dir_all(&target)?;
    }
    copy_dir(&source, &target)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn proxy_url(
    namespace: &str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<String, GitRepositoryError> {
    let get = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(v).to_string())
            .filter(|v| !v.is_empty())
    };
    let invalid = |reason: &str| GitRepositoryError::Proxy {
        secret: format!("{namespace}/{name}"),
        reason: reason.to_string(),
    };
    let address = get("address").ok_or_else(|| invalid("key 'address' not found"))?;
    let mut url = Url::parse(&address).map_err(|e| invalid(&e.to_string()))?;
    if let Some(user) = get("username") {
        url.set_username(&user)
            .map_err(|()| invalid("cannot set username"))?;
        url.set_password(get("password").as_deref())
            .map_err(|()| invalid("cannot set password"))?;
    }
    Ok(url.to_string())
}

impl Reconciler for GitRepositoryReconciler {
    type Object = GitRepository;
    type Error = GitRepositoryError;
    const SUMMARY: Summary = SUMMARY;

    async fn reconcile(
        &self,
        obj: &GitRepository,
        status: &mut GitRepositoryStatus,
        step: &mut Step,
    ) -> Result<Success, GitRepositoryError> {
        let was_failing = obj
            .status
            .as_ref()
            .and_then(|s| common::conditions::get(s.conditions(), types::READY))
            .is_some_and(|c| c.status == common::api::meta::ConditionStatus::False);
        let result = self.run(obj, status, step).await;
        // Recovery from a failure is announced, unless a new artifact already says it.
        if let Ok(success) = &result
            && was_failing
            && !step
                .events()
                .iter()
                .any(|e| e.reason == reasons::NEW_ARTIFACT)
        {
            step.event(Severity::Info, reasons::SUCCEEDED, success.message.clone());
        }
        result
    }

    async fn cleanup(&self, obj: &GitRepository) -> Result<(), GitRepositoryError> {
        let namespace = obj.namespace().unwrap_or_default();
        let storage = self.storage.clone();
        let name = obj.name_any();
        tokio::task::spawn_blocking(move || {
            storage.remove_all(GIT_REPOSITORY_KIND, &namespace, &name)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| {
            GitRepositoryError::Storage(storage::StorageError::Io {
                action: "failed to remove artifacts of",
                path: obj.name_any(),
                source,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::source_v1::GitRepositorySpec;

    #[test]
    fn content_config_change_detection() {
        let mut obj = GitRepository::new(
            "a",
            GitRepositorySpec {
                url: "https://x/y".into(),
                interval: "1m".into(),
                ..Default::default()
            },
        );
        obj.status = Some(GitRepositoryStatus::default());
        assert!(!content_config_changed(&obj));
        obj.spec.sparse_checkout = Some(vec![]);
        assert!(!content_config_changed(&obj), "empty equals unset");
        obj.spec.ignore = Some("*.md".into());
        assert!(content_config_changed(&obj));
        obj.status.as_mut().unwrap().observed_ignore = Some("*.md".into());
        assert!(!content_config_changed(&obj));
        obj.spec.recurse_submodules = Some(true);
        assert!(content_config_changed(&obj));
    }

    #[test]
    fn proxy_url_from_secret() {
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(
            proxy_url(
                "ns",
                "p",
                &data(&[
                    ("address", "http://proxy:8080"),
                    ("username", "u"),
                    ("password", "p")
                ])
            )
            .unwrap(),
            "http://u:p@proxy:8080/"
        );
        assert!(proxy_url("ns", "p", &data(&[])).is_err());
    }

    #[test]
    fn include_paths_never_escape() {
        assert_eq!(clean_relative("./a/b/"), Some(PathBuf::from("a/b")));
        assert_eq!(clean_relative("/abs"), Some(PathBuf::from("abs")));
        assert_eq!(clean_relative("../x"), None);
        assert_eq!(clean_relative(""), Some(PathBuf::new()));
    }
}
