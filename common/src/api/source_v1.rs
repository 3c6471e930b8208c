//! `source.toolkit.fluxcd.io/v1`: GitRepository, and the `Artifact` every source kind publishes.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::{Condition, LocalObjectReference};

/// The API group of every source kind.
pub const GROUP: &str = "source.toolkit.fluxcd.io";
/// The kind name of a GitRepository.
pub const GIT_REPOSITORY_KIND: &str = "GitRepository";

// Shared by every source kind (GitRepository, OCIRepository, Bucket, HelmChart, HelmRepository,
// ExternalArtifact): Flux's `fluxcd/pkg/apis/meta.Artifact`. (A `//` comment: the `///` doc is the CRD description.)
/// Artifact represents the output of a Source reconciliation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Digest is the digest of the file in the form of '<algorithm>:<checksum>'.
    #[schemars(regex(pattern = r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"))]
    pub digest: String,
    /// LastUpdateTime is the timestamp corresponding to the last update of the
    /// Artifact.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub last_update_time: String,
    /// Metadata holds upstream information such as OCI annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Path is the relative file path of the Artifact. It can be used to locate
    /// the file in the root of the Artifact storage on the local file system of
    /// the controller managing the Source.
    pub path: String,
    /// Revision is a human-readable identifier traceable in the origin source
    /// system. It can be a Git commit SHA, Git tag, a Helm chart version, etc.
    pub revision: String,
    /// Size is the number of bytes in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// URL is the HTTP address of the Artifact as exposed by the controller
    /// managing the Source. It can be used to retrieve the Artifact for
    /// consumption, e.g. by another controller applying the Artifact contents.
    pub url: String,
}

impl Artifact {
    /// Whether this Artifact has the given revision.
    pub fn has_revision(&self, revision: &str) -> bool {
        self.revision == revision
    }

    /// Whether this Artifact has the given digest.
    pub fn has_digest(&self, digest: &str) -> bool {
        self.digest == digest
    }
}

/// GitRepositorySpec specifies the required configuration to produce an
/// Artifact for a Git repository.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "GitRepository",
    plural = "gitrepositories",
    singular = "gitrepository",
    namespaced,
    status = "GitRepositoryStatus",
    shortname = "gitrepo",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-sources",
    annotation("kustomize.toolkit.fluxcd.io/substitute", "disabled"),
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    doc = "GitRepository is the Schema for the gitrepositories API."
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.serviceAccountName) || (has(self.provider) && (self.provider == 'azure' || self.provider == 'aws'))"
).message("serviceAccountName can only be set when provider is 'azure' or 'aws'"))]
pub struct GitRepositorySpec {
    /// Ignore overrides the set of excluded patterns in the .sourceignore format
    /// (which is the same as .gitignore). If not provided, a default will be used,
    /// consult the documentation for your version to find out what those are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<String>,
    /// Include specifies a list of GitRepository resources which Artifacts
    /// should be included in the Artifact produced for this GitRepository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<GitRepositoryInclude>>,
    /// Interval at which the GitRepository URL is checked for updates.
    /// This interval is approximate and may be subject to jitter to ensure
    /// efficient use of resources.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// Provider used for authentication, can be 'aws', 'azure', 'github', 'generic'.
    /// When not specified, defaults to 'generic'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<GitProvider>,
    /// ProxySecretRef specifies the Secret containing the proxy configuration
    /// to use while communicating with the Git server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// RecurseSubmodules enables the initialization of all submodules within
    /// the GitRepository as cloned from the URL, using their default settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurse_submodules: Option<bool>,
    /// Reference specifies the Git reference to resolve and monitor for
    /// changes, defaults to the 'master' branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitRepositoryRef>,
    /// SecretRef specifies the Secret containing authentication credentials for
    /// the GitRepository.
    /// For HTTPS repositories the Secret must contain 'username' and 'password'
    /// fields for basic auth or 'bearerToken' field for token auth.
    /// For SSH repositories the Secret must contain 'identity'
    /// and 'known_hosts' fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// ServiceAccountName is the name of the Kubernetes ServiceAccount used to
    /// authenticate to the GitRepository. This field is only supported for 'azure' and 'aws' providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// SparseCheckout specifies a list of directories to checkout when cloning
    /// the repository. If specified, only these directories are included in the
    /// Artifact produced for this GitRepository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_checkout: Option<Vec<String>>,
    /// Suspend tells the controller to suspend the reconciliation of this
    /// GitRepository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Timeout for Git operations like cloning, defaults to 60s.
    #[serde(default = "default_git_timeout")]
    #[schemars(
        default = "default_git_timeout",
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$")
    )]
    pub timeout: String,
    /// URL specifies the Git repository URL, it can be an HTTP/S or SSH address.
    #[schemars(regex(pattern = r"^(http|https|ssh)://.*$"))]
    pub url: String,
    /// Verification specifies the configuration to verify the Git commit
    /// signature(s).
    #[serde(default, rename = "verify", skip_serializing_if = "Option::is_none")]
    pub verification: Option<GitRepositoryVerification>,
}

fn default_git_timeout() -> String {
    "60s".into()
}

// The authentication provider of a GitRepository. (Not a `///` doc: it would replace the field's description in
// the CRD.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GitProvider {
    /// Credentials from `secretRef`.
    #[default]
    Generic,
    /// AWS CodeCommit with IAM credentials.
    Aws,
    /// Azure DevOps with Managed Identity.
    Azure,
    /// GitHub App authentication.
    Github,
}

impl GitProvider {
    /// The string Flux uses for this provider.
    pub fn as_str(self) -> &'static str {
        match self {
            GitProvider::Generic => "generic",
            GitProvider::Aws => "aws",
            GitProvider::Azure => "azure",
            GitProvider::Github => "github",
        }
    }
}

/// GitRepositoryRef specifies the Git reference to resolve and checkout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryRef {
    /// Branch to check out, defaults to 'master' if no other field is defined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Commit SHA to check out, takes precedence over all reference fields.
    ///
    /// This can be combined with Branch to shallow clone the branch, in which
    /// the commit is expected to exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Name of the reference to check out; takes precedence over Branch, Tag and SemVer.
    ///
    /// It must be a valid Git reference: https://git-scm.com/docs/git-check-ref-format#_description
    /// Examples: "refs/heads/main", "refs/tags/v0.1.0", "refs/pull/420/head", "refs/merge-requests/1/head"
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// SemVer tag expression to check out, takes precedence over Tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// Tag to check out, takes precedence over Branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// The branch Flux checks out when a GitRepository names no reference (`git.DefaultBranch`).
pub const DEFAULT_BRANCH: &str = "master";

/// What to check out, resolved from a [`GitRepositoryRef`] with the precedence Flux's Git client applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitCheckout<'a> {
    /// A commit SHA; `branch`, when given, is the branch to shallow-clone that contains it.
    Commit {
        sha: &'a str,
        branch: Option<&'a str>,
    },
    /// A full reference name, e.g. `refs/pull/420/head`.
    RefName(&'a str),
    /// A tag.
    Tag(&'a str),
    /// The highest tag matching a SemVer range.
    SemVer(&'a str),
    /// The head of a branch (`master` when nothing is specified).
    Branch(&'a str),
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

impl GitRepositoryRef {
    /// The checkout strategy, in the order fluxcd/pkg's Git client applies it: commit, then name, then tag,
    /// then semver, then branch (defaulting to `master`). Empty strings count as unset, as in Go.
    ///
    /// Note the API docs say SemVer takes precedence over Tag, but Flux's client checks Tag first; this follows
    /// the client.
    pub fn checkout(&self) -> GitCheckout<'_> {
        if let Some(sha) = non_empty(&self.commit) {
            GitCheckout::Commit {
                sha,
                branch: non_empty(&self.branch),
            }
        } else if let Some(name) = non_empty(&self.name) {
            GitCheckout::RefName(name)
        } else if let Some(tag) = non_empty(&self.tag) {
            GitCheckout::Tag(tag)
        } else if let Some(semver) = non_empty(&self.semver) {
            GitCheckout::SemVer(semver)
        } else {
            GitCheckout::Branch(non_empty(&self.branch).unwrap_or(DEFAULT_BRANCH))
        }
    }
}

/// GitRepositoryInclude specifies a local reference to a GitRepository which
/// Artifact (sub-)contents must be included, and where they should be placed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryInclude {
    /// FromPath specifies the path to copy contents from, defaults to the root
    /// of the Artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_path: Option<String>,
    /// GitRepositoryRef specifies the GitRepository which Artifact contents
    /// must be included.
    pub repository: LocalObjectReference,
    /// ToPath specifies the path to copy contents to, defaults to the name of
    /// the GitRepositoryRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_path: Option<String>,
}

impl GitRepositoryInclude {
    /// The path to copy contents from ("" = the root of the included Artifact).
    pub fn from_path(&self) -> &str {
        self.from_path.as_deref().unwrap_or_default()
    }

    /// The path to copy contents to, defaulting to the included GitRepository's name.
    pub fn to_path(&self) -> &str {
        non_empty(&self.to_path).unwrap_or(&self.repository.name)
    }
}

/// GitRepositoryVerification specifies the Git commit signature verification
/// strategy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryVerification {
    /// Mode specifies which Git object(s) should be verified.
    ///
    /// The variants "head" and "HEAD" both imply the same thing, i.e. verify
    /// the commit that the HEAD of the Git repository points to. The variant
    /// "head" solely exists to ensure backwards compatibility.
    #[serde(default = "default_verification_mode")]
    #[schemars(default = "default_verification_mode")]
    pub mode: GitVerificationMode,
    /// SecretRef specifies the Secret containing the public keys of trusted Git
    /// authors. PGP public keys must be stored under keys with the .asc suffix,
    /// and SSH public keys must be stored under keys with the .sshpub suffix.
    pub secret_ref: LocalObjectReference,
}

fn default_verification_mode() -> GitVerificationMode {
    GitVerificationMode::Head
}

/// GitVerificationMode specifies the verification mode for a Git repository.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum GitVerificationMode {
    /// `head`: the legacy spelling of `HEAD`, kept for backwards compatibility.
    #[serde(rename = "head")]
    HeadLegacy,
    /// `HEAD`: verify the commit HEAD points to.
    #[default]
    #[serde(rename = "HEAD")]
    Head,
    /// `Tag`: verify the tag object being checked out.
    Tag,
    /// `TagAndHEAD`: verify the tag and the commit it points to.
    #[serde(rename = "TagAndHEAD")]
    TagAndHead,
}

impl GitVerificationMode {
    /// The mode with `head` normalised to `HEAD` (Flux's `GetMode`).
    pub fn normalized(self) -> Self {
        match self {
            GitVerificationMode::HeadLegacy => GitVerificationMode::Head,
            other => other,
        }
    }

    /// The string Flux records in `status.sourceVerificationMode` (`HEAD`, `Tag` or `TagAndHEAD`).
    pub fn as_str(self) -> &'static str {
        match self.normalized() {
            GitVerificationMode::Tag => "Tag",
            GitVerificationMode::TagAndHead => "TagAndHEAD",
            GitVerificationMode::Head | GitVerificationMode::HeadLegacy => "HEAD",
        }
    }

    /// Whether the commit HEAD points to must be verified.
    pub fn verify_head(self) -> bool {
        matches!(
            self.normalized(),
            GitVerificationMode::Head | GitVerificationMode::TagAndHead
        )
    }

    /// Whether the checked-out tag object must be verified.
    pub fn verify_tag(self) -> bool {
        matches!(
            self.normalized(),
            GitVerificationMode::Tag | GitVerificationMode::TagAndHead
        )
    }
}

/// GitRepositoryStatus records the observed state of a Git repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": -1}))]
pub struct GitRepositoryStatus {
    /// Artifact represents the last successful GitRepository reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// Conditions holds the conditions for the GitRepository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// IncludedArtifacts contains a list of the last successfully included
    /// Artifacts as instructed by GitRepositorySpec.Include.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_artifacts: Option<Vec<Artifact>>,
    /// LastHandledReconcileAt holds the value of the most recent
    /// reconcile request value, so a change of the annotation value
    /// can be detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// ObservedGeneration is the last observed generation of the GitRepository
    /// object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// ObservedIgnore is the observed exclusion patterns used for constructing
    /// the source artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_ignore: Option<String>,
    /// ObservedInclude is the observed list of GitRepository resources used to
    /// produce the current Artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_include: Option<Vec<GitRepositoryInclude>>,
    /// ObservedRecurseSubmodules is the observed resource submodules
    /// configuration used to produce the current Artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_recurse_submodules: Option<bool>,
    /// ObservedSparseCheckout is the observed list of directories used to
    /// produce the current Artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_sparse_checkout: Option<Vec<String>>,
    /// SourceVerificationMode is the last used verification mode indicating
    /// which Git object(s) have been verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_verification_mode: Option<String>,
}

impl GitRepositorySpec {
    /// The Git reference to check out (`spec.ref`), if any.
    pub fn reference(&self) -> Option<&GitRepositoryRef> {
        self.reference.as_ref()
    }

    /// What to check out: `spec.ref` resolved with Flux's precedence; the `master` branch without `spec.ref`.
    pub fn checkout(&self) -> GitCheckout<'_> {
        match &self.reference {
            Some(reference) => reference.checkout(),
            None => GitCheckout::Branch(DEFAULT_BRANCH),
        }
    }

    /// The authentication provider, `generic` when unset.
    pub fn provider(&self) -> GitProvider {
        self.provider.unwrap_or_default()
    }

    /// Whether reconciliation is suspended.
    pub fn suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }

    /// Whether submodules are initialised.
    pub fn recurse_submodules(&self) -> bool {
        self.recurse_submodules.unwrap_or(false)
    }

    /// The GitRepositories to include, in order (empty when none).
    pub fn includes(&self) -> &[GitRepositoryInclude] {
        self.include.as_deref().unwrap_or_default()
    }
}

impl GitRepositoryStatus {
    /// The current Artifact, if any.
    pub fn artifact(&self) -> Option<&Artifact> {
        self.artifact.as_ref()
    }

    /// The conditions (empty when none).
    pub fn conditions(&self) -> &[Condition] {
        self.conditions.as_deref().unwrap_or_default()
    }
}

impl GitRepository {
    /// The current Artifact in `status.artifact`, if any.
    pub fn artifact(&self) -> Option<&Artifact> {
        self.status.as_ref().and_then(GitRepositoryStatus::artifact)
    }

    /// The condition of the given type in `status.conditions`, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status
            .as_ref()
            .and_then(|s| s.conditions().iter().find(|c| c.type_ == type_))
    }
}

/// The CRDs of this group/version.
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![super::flux_crd(GitRepository::crd())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> GitRepository {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn flux_doc_example_with_branch_and_verification() {
        let repo = parse(
            r#"
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: podinfo
  namespace: default
spec:
  interval: 1m
  url: https://github.com/stefanprodan/podinfo
  ref:
    branch: master
  verify:
    mode: HEAD
    secretRef:
      name: pgp-public-keys
"#,
        );
        assert_eq!(repo.metadata.name.as_deref(), Some("podinfo"));
        assert_eq!(repo.spec.interval, "1m");
        assert_eq!(repo.spec.url, "https://github.com/stefanprodan/podinfo");
        assert_eq!(repo.spec.checkout(), GitCheckout::Branch("master"));
        assert_eq!(
            repo.spec.timeout, "60s",
            "defaulted like the API server would"
        );
        assert_eq!(repo.spec.provider(), GitProvider::Generic);
        let verify = repo.spec.verification.as_ref().unwrap();
        assert_eq!(verify.mode, GitVerificationMode::Head);
        assert_eq!(verify.secret_ref.name, "pgp-public-keys");
        assert!(verify.mode.verify_head() && !verify.mode.verify_tag());
        assert!(repo.status.is_none());
        assert!(repo.artifact().is_none());
    }

    #[test]
    fn flux_doc_example_with_ignore_sparse_checkout_and_secret() {
        let repo = parse(
            r#"
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: webapp
  namespace: apps
spec:
  interval: 1m0s
  url: https://github.com/org/webapp
  secretRef:
    name: webapp-git-token
  ref:
    branch: main
  sparseCheckout:
  - charts
  - kustomize
  ignore: |
    # exclude all
    /*
    # include deploy dir
    !/deploy
"#,
        );
        assert_eq!(
            repo.spec.secret_ref.as_ref().unwrap().name,
            "webapp-git-token"
        );
        assert_eq!(
            repo.spec.sparse_checkout.as_deref(),
            Some(&["charts".to_string(), "kustomize".to_string()][..])
        );
        assert!(repo.spec.ignore.as_deref().unwrap().contains("!/deploy"));
        assert_eq!(
            repo.spec.reference().unwrap().branch.as_deref(),
            Some("main")
        );
    }

    #[test]
    fn status_with_artifact_and_includes() {
        let repo = parse(
            r#"
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: podinfo
spec:
  interval: 5m
  url: ssh://git@github.com/stefanprodan/podinfo
  provider: github
  timeout: 2m
  include:
  - repository:
      name: shared
    toPath: lib
  - repository:
      name: other
status:
  observedGeneration: 3
  lastHandledReconcileAt: "2024-01-01T00:00:00Z"
  sourceVerificationMode: HEAD
  artifact:
    digest: sha256:0123abcd
    lastUpdateTime: "2024-01-01T00:00:00Z"
    path: gitrepository/default/podinfo/6f1d.tar.gz
    revision: master@sha1:6f1d
    size: 1234
    url: http://source-controller.flux-system.svc.cluster.local./gitrepository/default/podinfo/6f1d.tar.gz
  conditions:
  - type: Ready
    status: "True"
    reason: Succeeded
    message: "stored artifact for revision 'master@sha1:6f1d'"
    lastTransitionTime: "2024-01-01T00:00:00Z"
    observedGeneration: 3
"#,
        );
        assert_eq!(repo.spec.provider(), GitProvider::Github);
        assert_eq!(repo.spec.timeout, "2m");
        let includes = repo.spec.includes();
        assert_eq!(includes[0].to_path(), "lib");
        assert_eq!(includes[1].to_path(), "other");
        assert_eq!(includes[1].from_path(), "");
        let artifact = repo.artifact().unwrap();
        assert!(artifact.has_revision("master@sha1:6f1d"));
        assert!(artifact.has_digest("sha256:0123abcd"));
        assert_eq!(artifact.size, Some(1234));
        let ready = repo
            .condition(crate::api::meta::condition_types::READY)
            .unwrap();
        assert_eq!(ready.status, crate::api::meta::ConditionStatus::True);
        assert_eq!(ready.reason, crate::api::meta::reasons::SUCCEEDED);
    }

    #[test]
    fn serializes_with_flux_field_names() {
        let spec = GitRepositorySpec {
            interval: "5m".into(),
            url: "https://example.com/repo".into(),
            timeout: default_git_timeout(),
            reference: Some(GitRepositoryRef {
                tag: Some("v1.0.0".into()),
                ..Default::default()
            }),
            verification: Some(GitRepositoryVerification {
                mode: GitVerificationMode::TagAndHead,
                secret_ref: LocalObjectReference {
                    name: "keys".into(),
                },
            }),
            ..Default::default()
        };
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "interval": "5m",
                "url": "https://example.com/repo",
                "timeout": "60s",
                "ref": {"tag": "v1.0.0"},
                "verify": {"mode": "TagAndHEAD", "secretRef": {"name": "keys"}},
            })
        );
    }

    #[test]
    fn checkout_precedence_follows_flux_git_client() {
        let r =
            |branch: &str, tag: &str, semver: &str, name: &str, commit: &str| GitRepositoryRef {
                branch: Some(branch.into()),
                tag: Some(tag.into()),
                semver: Some(semver.into()),
                name: Some(name.into()),
                commit: Some(commit.into()),
            };
        assert_eq!(
            r("main", "v1", "1.x", "refs/heads/x", "abc").checkout(),
            GitCheckout::Commit {
                sha: "abc",
                branch: Some("main")
            }
        );
        assert_eq!(
            r("main", "v1", "1.x", "refs/heads/x", "").checkout(),
            GitCheckout::RefName("refs/heads/x")
        );
        assert_eq!(
            r("main", "v1", "1.x", "", "").checkout(),
            GitCheckout::Tag("v1")
        );
        assert_eq!(
            r("main", "", "1.x", "", "").checkout(),
            GitCheckout::SemVer("1.x")
        );
        assert_eq!(
            r("main", "", "", "", "").checkout(),
            GitCheckout::Branch("main")
        );
        assert_eq!(
            GitRepositoryRef::default().checkout(),
            GitCheckout::Branch("master")
        );
        assert_eq!(
            GitRepositorySpec::default().checkout(),
            GitCheckout::Branch("master")
        );
    }

    #[test]
    fn verification_modes() {
        let mode: GitVerificationMode = serde_json::from_str(r#""head""#).unwrap();
        assert_eq!(mode, GitVerificationMode::HeadLegacy);
        assert_eq!(mode.as_str(), "HEAD");
        assert!(mode.verify_head());
        let mode: GitVerificationMode = serde_json::from_str(r#""Tag""#).unwrap();
        assert!(mode.verify_tag() && !mode.verify_head());
        let verify: GitRepositoryVerification =
            serde_json::from_str(r#"{"secretRef":{"name":"k"}}"#).unwrap();
        assert_eq!(verify.mode, GitVerificationMode::Head);
    }

    #[test]
    fn crd_carries_flux_cel_rule_and_status_default() {
        let crd = serde_json::to_value(&crds()[0]).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        assert_eq!(
            root["spec"]["x-kubernetes-validations"][0]["message"],
            "serviceAccountName can only be set when provider is 'azure' or 'aws'"
        );
        assert_eq!(
            root["status"]["default"],
            serde_json::json!({"observedGeneration": -1})
        );
        assert_eq!(
            crd["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/substitute"],
            "disabled"
        );
    }
}

crate::impl_flux_object!(
    GitRepository,
    GitRepositoryStatus,
    suspend = |o| o.spec.suspend,
    interval = |o| Some(o.spec.interval.as_str()),
);
