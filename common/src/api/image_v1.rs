//! `image.toolkit.fluxcd.io/v1`: ImageRepository, ImagePolicy (image-reflector-controller) and
//! ImageUpdateAutomation (image-automation-controller).

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::{Conditions, LocalObjectReference};

// ---------------------------------------------------------------------------------------------------------
// ImageRepository
// ---------------------------------------------------------------------------------------------------------

/// ImageRepositorySpec defines the parameters for scanning an image
/// repository, e.g., `fluxcd/flux`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImageRepository",
    namespaced,
    status = "ImageRepositoryStatus",
    shortname = "imgrepo",
    shortname = "imagerepo",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image"}"#,
    printcolumn = r#"{"name":"Tags","type":"string","jsonPath":".status.lastScanResult.tagCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Last scan","type":"string","priority":1,"jsonPath":".status.lastScanResult.scanTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "ImageRepository is the Schema for the imagerepositories API"
)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepositorySpec {
    /// AccessFrom defines an ACL for allowing cross-namespace references
    /// to the ImageRepository object based on the caller's namespace labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_from: Option<AccessFrom>,
    /// CertSecretRef can be given the name of a Secret containing
    /// either or both of
    ///
    /// - a PEM-encoded client certificate (`tls.crt`) and private
    ///   key (`tls.key`);
    /// - a PEM-encoded CA certificate (`ca.crt`)
    ///
    /// and whichever are supplied, will be used for connecting to the
    /// registry. The client cert and key are useful if you are
    /// authenticating with a certificate; the CA cert is useful if
    /// you are using a self-signed server certificate. The Secret must
    /// be of type `Opaque` or `kubernetes.io/tls`.
    ///
    /// Note: Support for the `caFile`, `certFile` and `keyFile` keys has
    /// been deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// ExclusionList is a list of regex strings used to exclude certain tags
    /// from being stored in the database.
    #[serde(default = "default_exclusion_list")]
    #[schemars(default = "default_exclusion_list", length(max = 25))]
    pub exclusion_list: Vec<String>,
    /// Image is the name of the image repository
    pub image: String,
    /// Insecure allows connecting to a non-TLS HTTP container registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Interval is the length of time to wait between
    /// scans of the image repository.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// The provider used for authentication, can be 'aws', 'azure', 'gcp' or 'generic'.
    /// When not specified, defaults to 'generic'.
    #[serde(default)]
    #[schemars(default = "default_image_provider")]
    pub provider: ImageProvider,
    /// ProxySecretRef specifies the Secret containing the proxy configuration
    /// to use while communicating with the container registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// SecretRef can be given the name of a secret containing
    /// credentials to use for the image registry. The secret should be
    /// created with `kubectl create secret docker-registry`, or the
    /// equivalent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// ServiceAccountName is the name of the Kubernetes ServiceAccount used to authenticate
    /// the image pull if the service account has attached pull secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,
    /// This flag tells the controller to suspend subsequent image scans.
    /// It does not apply to already started scans. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Timeout for image scanning.
    /// Defaults to 'Interval' duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"))]
    pub timeout: Option<String>,
}

fn default_exclusion_list() -> Vec<String> {
    vec![r"^.*\.sig$".to_owned()]
}

fn default_image_provider() -> ImageProvider {
    ImageProvider::Generic
}

/// The provider used to authenticate to a container registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageProvider {
    #[default]
    Generic,
    Aws,
    Azure,
    Gcp,
}

/// AccessFrom defines an Access Control List for allowing cross-namespace references to given object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessFrom {
    /// NamespaceSelectors is the list of namespace selectors to which this ACL applies.
    /// Items in this list are evaluated using a logical OR operation.
    pub namespace_selectors: Vec<NamespaceSelector>,
}

/// NamespaceSelector selects the namespaces to which this ACL applies.
/// An empty map of MatchLabels matches all namespaces in a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// MatchLabels is a map of {key,value} pairs. A single {key,value} in the matchLabels
    /// map is equivalent to an element of matchExpressions, whose key field is "key", the
    /// operator is "In", and the values array contains only "value". The requirements are ANDed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// ImageRepositoryStatus defines the observed state of ImageRepository
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": -1}))]
pub struct ImageRepositoryStatus {
    /// CanonicalName is the name of the image repository with all the
    /// implied bits made explicit; e.g., `docker.io/library/alpine`
    /// rather than `alpine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_image_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
    /// LastHandledReconcileAt holds the value of the most recent
    /// reconcile request value, so a change of the annotation value
    /// can be detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// LastScanResult contains the number of fetched tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_result: Option<ScanResult>,
    /// ObservedExclusionList is a list of observed exclusion list. It reflects
    /// the exclusion rules used for the observed scan result in
    /// spec.lastScanResult.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_exclusion_list: Option<Vec<String>>,
    /// ObservedGeneration is the last reconciled generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Like the API server's defaulting: a fresh status has `observedGeneration: -1`.
impl Default for ImageRepositoryStatus {
    fn default() -> Self {
        Self {
            canonical_image_name: None,
            conditions: None,
            last_handled_reconcile_at: None,
            last_scan_result: None,
            observed_exclusion_list: None,
            observed_generation: Some(-1),
        }
    }
}

/// ScanResult contains information about the last scan of the image repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanResult {
    /// LatestTags is a small sample of the tags found in the last scan.
    /// It's the first 10 tags when sorting all the tags in descending
    /// alphabetical order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_tags: Option<Vec<String>>,
    /// Revision is a stable hash of the scanned tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// ScanTime is the time when the last scan was performed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub scan_time: Option<String>,
    /// TagCount is the number of tags found in the last scan.
    // Go's `int`: an integer without a format.
    #[schemars(schema_with = "plain_integer")]
    pub tag_count: i64,
}

/// The schema controller-gen gives a Go `int`: `type: integer` with no `format`.
fn plain_integer(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "integer" })
}

// ---------------------------------------------------------------------------------------------------------
// ImagePolicy
// ---------------------------------------------------------------------------------------------------------

/// ImagePolicySpec defines the parameters for calculating the
/// ImagePolicy.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImagePolicy",
    namespaced,
    status = "ImagePolicyStatus",
    shortname = "imgpol",
    shortname = "imagepol",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".status.latestRef.name"}"#,
    printcolumn = r#"{"name":"Tag","type":"string","jsonPath":".status.latestRef.tag"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "ImagePolicy is the Schema for the imagepolicies API"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "message": "spec.interval is only accepted when spec.digestReflectionPolicy is set to 'Always'",
        "rule": "!has(self.interval) || (has(self.digestReflectionPolicy) && self.digestReflectionPolicy == 'Always')"
    },
    {
        "message": "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'",
        "rule": "has(self.interval) || !has(self.digestReflectionPolicy) || self.digestReflectionPolicy != 'Always'"
    }
]))]
pub struct ImagePolicySpec {
    /// DigestReflectionPolicy governs the setting of the `.status.latestRef.digest` field.
    ///
    /// Never: The digest field will always be set to the empty string.
    ///
    /// IfNotPresent: The digest field will be set to the digest of the elected
    /// latest image if the field is empty and the image did not change.
    ///
    /// Always: The digest field will always be set to the digest of the elected
    /// latest image.
    ///
    /// Default: Never.
    #[serde(default)]
    #[schemars(default = "default_reflection_policy")]
    pub digest_reflection_policy: ReflectionPolicy,
    /// FilterTags enables filtering for only a subset of tags based on a set of
    /// rules. If no rules are provided, all the tags from the repository will be
    /// ordered and compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<TagFilter>,
    /// ImageRepositoryRef points at the object specifying the image
    /// being scanned
    pub image_repository_ref: NamespacedObjectReference,
    /// Interval is the length of time to wait between
    /// refreshing the digest of the latest tag when the
    /// reflection policy is set to "Always".
    ///
    /// Defaults to 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: Option<String>,
    /// Policy gives the particulars of the policy to be followed in
    /// selecting the most recent image
    pub policy: ImagePolicyChoice,
    /// This flag tells the controller to suspend subsequent policy reconciliations.
    /// It does not apply to already started reconciliations. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

fn default_reflection_policy() -> ReflectionPolicy {
    ReflectionPolicy::Never
}

/// ReflectionPolicy describes a policy for if/when to reflect a value from the registry in a certain resource
/// field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReflectionPolicy {
    /// The digest is always reflected.
    Always,
    /// The digest is reflected when the field is empty and the image did not change.
    IfNotPresent,
    /// The digest is never reflected.
    #[default]
    Never,
}

/// TagFilter enables filtering tags based on a set of defined rules
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagFilter {
    /// Extract allows a capture group to be extracted from the specified regular
    /// expression pattern, useful before tag evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<String>,
    /// Pattern specifies a regular expression pattern used to filter for image
    /// tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// NamespacedObjectReference contains enough information to locate the referenced Kubernetes resource object
/// in any namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamespacedObjectReference {
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent, when not specified it acts as LocalObjectReference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// ImagePolicyChoice is a union of all the types of policy that can be
/// supplied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyChoice {
    /// Alphabetical set of rules to use for alphabetical ordering of the tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<AlphabeticalPolicy>,
    /// Numerical set of rules to use for numerical ordering of the tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<NumericalPolicy>,
    /// SemVer gives a semantic version range to check against the tags
    /// available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemVerPolicy>,
}

/// AlphabeticalPolicy specifies a alphabetical ordering policy
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AlphabeticalPolicy {
    /// Order specifies the sorting order of the tags. Given the letters of the
    /// alphabet as tags, ascending order would select Z, and descending order
    /// would select A.
    #[serde(default)]
    #[schemars(default = "default_order")]
    pub order: SortOrder,
}

/// NumericalPolicy specifies a numerical ordering policy
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NumericalPolicy {
    /// Order specifies the sorting order of the tags. Given the integer values
    /// from 0 to 9 as tags, ascending order would select 9, and descending order
    /// would select 0.
    #[serde(default)]
    #[schemars(default = "default_order")]
    pub order: SortOrder,
}

fn default_order() -> SortOrder {
    SortOrder::Asc
}

/// The order in which an alphabetical or numerical policy sorts tags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

/// SemVerPolicy specifies a semantic version policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SemVerPolicy {
    /// Range gives a semver range for the image tag; the highest
    /// version within the range that's a tag yields the latest image.
    pub range: String,
}

/// ImagePolicyStatus defines the observed state of ImagePolicy
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": -1}))]
pub struct ImagePolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
    /// LastHandledReconcileAt holds the value of the most recent
    /// reconcile request value, so a change of the annotation value
    /// can be detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// LatestRef gives the first in the list of images scanned by
    /// the image repository, when filtered and ordered according
    /// to the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ref: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// ObservedPreviousRef is the observed previous LatestRef. It is used
    /// to keep track of the previous and current images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_previous_ref: Option<ImageRef>,
}

/// Like the API server's defaulting: a fresh status has `observedGeneration: -1`.
impl Default for ImagePolicyStatus {
    fn default() -> Self {
        Self {
            conditions: None,
            last_handled_reconcile_at: None,
            latest_ref: None,
            observed_generation: Some(-1),
            observed_previous_ref: None,
        }
    }
}

/// ImageRef represents an image reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRef {
    /// Digest is the image's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Name is the bare image's name.
    pub name: String,
    /// Tag is the image's tag.
    pub tag: String,
}

// ---------------------------------------------------------------------------------------------------------
// ImageUpdateAutomation
// ---------------------------------------------------------------------------------------------------------

/// ImageUpdateAutomationSpec defines the desired state of ImageUpdateAutomation
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImageUpdateAutomation",
    namespaced,
    status = "ImageUpdateAutomationStatus",
    shortname = "iua",
    shortname = "imgupd",
    shortname = "imgauto",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Last run","type":"string","priority":1,"jsonPath":".status.lastAutomationRunTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "ImageUpdateAutomation is the Schema for the imageupdateautomations API"
)]
#[serde(rename_all = "camelCase")]
pub struct ImageUpdateAutomationSpec {
    /// GitSpec contains all the git-specific definitions. This is
    /// technically optional, but in practice mandatory until there are
    /// other kinds of source allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSpec>,
    /// Interval gives an lower bound for how often the automation
    /// run should be attempted.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// PolicySelector allows to filter applied policies based on labels.
    /// By default includes all policies in namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "atomic_label_selector")]
    pub policy_selector: Option<LabelSelector>,
    /// SourceRef refers to the resource giving access details
    /// to a git repository.
    pub source_ref: CrossNamespaceSourceReference,
    /// Suspend tells the controller to not run this automation, until
    /// it is unset (or set to false). Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Update gives the specification for how to update the files in
    /// the repository. This can be left empty, to use the default
    /// value.
    #[serde(default)]
    #[schemars(default = "default_update_strategy")]
    pub update: UpdateStrategy,
}

/// The schema controller-gen gives a `metav1.LabelSelector`: the selector is an atomic map and its lists are
/// atomic lists (k8s-openapi's schema carries neither marker).
fn atomic_label_selector(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <LabelSelector as JsonSchema>::json_schema(generator);
    let atomic = || serde_json::Value::String("atomic".to_owned());
    schema.insert("x-kubernetes-map-type".to_owned(), atomic());
    for list in [
        "/properties/matchExpressions",
        "/properties/matchExpressions/items/properties/values",
    ] {
        if let Some(list) = schema
            .pointer_mut(list)
            .and_then(serde_json::Value::as_object_mut)
        {
            list.insert("x-kubernetes-list-type".to_owned(), atomic());
        }
    }
    schema
}

fn default_update_strategy() -> UpdateStrategy {
    UpdateStrategy::default()
}

/// CrossNamespaceSourceReference contains enough information to let you locate the
/// typed Kubernetes resource object at cluster level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Flux both defaults `kind` and requires it (the API server defaults before it validates).
#[schemars(extend("required" = ["kind", "name"]))]
pub struct CrossNamespaceSourceReference {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    #[serde(default = "default_source_kind")]
    #[schemars(default = "default_source_kind", extend("enum" = ["GitRepository"]))]
    pub kind: String,
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent, defaults to the namespace of the Kubernetes resource object that contains the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Default for CrossNamespaceSourceReference {
    fn default() -> Self {
        Self {
            api_version: None,
            kind: default_source_kind(),
            name: String::new(),
            namespace: None,
        }
    }
}

fn default_source_kind() -> String {
    "GitRepository".to_owned()
}

/// GitSpec contains all the git-specific definitions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSpec {
    /// Checkout gives the parameters for cloning the git repository,
    /// ready to make changes. If not present, the `spec.ref` field from the
    /// referenced `GitRepository` or its default will be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<GitCheckoutSpec>,
    /// Commit specifies how to commit to the git repository.
    pub commit: CommitSpec,
    /// Push specifies how and where to push commits made by the
    /// automation. If missing, commits are pushed (back) to
    /// `.spec.checkout.branch` or its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSpec>,
}

/// GitCheckoutSpec specifies the Git reference to check out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GitCheckoutSpec {
    /// Reference gives a branch, tag or commit to clone from the Git
    /// repository.
    #[serde(rename = "ref")]
    pub reference: GitRepositoryRef,
}

/// GitRepositoryRef specifies the Git reference to resolve and checkout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

/// CommitSpec specifies how to commit changes to the git repository
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitSpec {
    /// Author gives the email and optionally the name to use as the
    /// author of commits.
    pub author: CommitUser,
    /// MessageTemplate provides a template for the commit message,
    /// into which will be interpolated the details of the change made.
    /// Note: The `Updated` template field has been removed. Use `Changed` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template: Option<String>,
    /// MessageTemplateValues provides additional values to be available to the
    /// templating rendering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template_values: Option<BTreeMap<String, String>>,
    /// SigningKey provides the option to sign commits with an OpenPGP or
    /// SSH signing key, referenced from a Secret. See SigningKey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SigningKey>,
}

/// CommitUser specifies the identity of the commit author.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommitUser {
    /// Email gives the email to provide when making a commit.
    pub email: String,
    /// Name gives the name to provide when making a commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// SigningKey references a Kubernetes secret that contains a signing key: an OpenPGP keypair or an SSH
/// private key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKey {
    /// SecretRef references a Secret containing the signing key. For type
    /// 'gpg', the Secret must contain a 'git.asc' (ASCII-armored OpenPGP
    /// keypair) and may contain a 'passphrase'. For type 'ssh', the Secret
    /// must contain an 'identity' (an SSH private key in any format
    /// golang.org/x/crypto/ssh.ParsePrivateKey accepts; typically the
    /// OpenSSH format produced by 'ssh-keygen') and may contain a 'password'
    /// (the key's passphrase). The SSH conventions match the GitRepository
    /// SSH transport-auth Secret format, allowing a single Secret to serve
    /// both transport and signing when the ImageUpdateAutomation lives in
    /// the same namespace as the GitRepository.
    ///
    /// The Secret itself must live in the same namespace as the
    /// ImageUpdateAutomation.
    ///
    /// Supported SSH key algorithms: ed25519, ecdsa-sha2-nistp256/384/521,
    /// and rsa (>= 2048-bit).
    pub secret_ref: LocalObjectReference,
    /// Type selects the signing-key format expected in the referenced
    /// Secret. When empty, the controller defaults to 'gpg'.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<SigningKeyType>,
}

// The format of a commit signing key (undocumented here so that `spec.git.commit.signingKey.type` keeps its own
// description in the CRD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SigningKeyType {
    /// An ASCII-armored OpenPGP keypair.
    #[default]
    Gpg,
    /// An SSH private key.
    Ssh,
}

/// PushSpec specifies how and where to push commits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PushSpec {
    /// Branch specifies that commits should be pushed to the branch
    /// named. The branch is created using `.spec.checkout.branch` as the
    /// starting point, if it doesn't already exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Options specifies the push options that are sent to the Git
    /// server when performing a push operation. For details, see:
    /// https://git-scm.com/docs/git-push#Documentation/git-push.txt---push-optionltoptiongt
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
    /// Refspec specifies the Git Refspec to use for a push operation.
    /// If both Branch and Refspec are provided, then the commit is pushed
    /// to the branch and also using the specified refspec.
    /// For more details about Git Refspecs, see:
    /// https://git-scm.com/book/en/v2/Git-Internals-The-Refspec
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refspec: Option<String>,
}

/// UpdateStrategy is a union of the various strategies for updating
/// the Git repository. Parameters for each strategy (if any) can be
/// inlined here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UpdateStrategy {
    /// Path to the directory containing the manifests to be updated.
    /// Defaults to 'None', which translates to the root path
    /// of the GitRepositoryRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Strategy names the strategy to be used.
    #[serde(default)]
    #[schemars(default = "default_update_strategy_name")]
    pub strategy: UpdateStrategyName,
}

fn default_update_strategy_name() -> UpdateStrategyName {
    UpdateStrategyName::Setters
}

/// UpdateStrategyName is the type for names that go in .update.strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UpdateStrategyName {
    /// Update the files using the image policy setter markers (`# {"$imagepolicy": ...}`).
    #[default]
    Setters,
}

/// ImageUpdateAutomationStatus defines the observed state of ImageUpdateAutomation
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": -1}))]
pub struct ImageUpdateAutomationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
    /// LastAutomationRunTime records the last time the controller ran
    /// this automation through to completion (even if no updates were
    /// made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_automation_run_time: Option<String>,
    /// LastHandledReconcileAt holds the value of the most recent
    /// reconcile request value, so a change of the annotation value
    /// can be detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// LastPushCommit records the SHA1 of the last commit made by the
    /// controller, for this automation object
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_commit: Option<String>,
    /// LastPushTime records the time of the last pushed change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_push_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// ObservedPolicies is the list of observed ImagePolicies that were
    /// considered by the ImageUpdateAutomation update process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_policies: Option<BTreeMap<String, ImageRef>>,
    /// ObservedSourceRevision is the last observed source revision. This can be
    /// used to determine if the source has been updated since last observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_source_revision: Option<String>,
}

/// Like the API server's defaulting: a fresh status has `observedGeneration: -1`.
impl Default for ImageUpdateAutomationStatus {
    fn default() -> Self {
        Self {
            conditions: None,
            last_automation_run_time: None,
            last_handled_reconcile_at: None,
            last_push_commit: None,
            last_push_time: None,
            observed_generation: Some(-1),
            observed_policies: None,
            observed_source_revision: None,
        }
    }
}

/// The CRDs of this group/version.
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![
        super::flux_crd(ImageRepository::crd()),
        super::flux_crd(ImagePolicy::crd()),
        super::flux_crd(ImageUpdateAutomation::crd()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;

    fn root_properties(kind: &str) -> BTreeMap<String, JSONSchemaProps> {
        let crd = crds()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap();
        crd.spec.versions[0]
            .schema
            .clone()
            .unwrap()
            .open_api_v3_schema
            .unwrap()
            .properties
            .unwrap()
    }

    fn prop<'a>(schema: &'a JSONSchemaProps, path: &[&str]) -> &'a JSONSchemaProps {
        path.iter()
            .fold(schema, |s, name| &s.properties.as_ref().unwrap()[*name])
    }

    #[test]
    fn image_repository_defaults() {
        let repo: ImageRepository = serde_saphyr::from_str(
            r#"
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  image: ghcr.io/stefanprodan/podinfo
  interval: 5m
"#,
        )
        .unwrap();
        let spec = &repo.spec;
        assert_eq!(spec.image, "ghcr.io/stefanprodan/podinfo");
        assert_eq!(spec.interval, "5m");
        assert_eq!(spec.provider, ImageProvider::Generic);
        assert_eq!(spec.exclusion_list, [r"^.*\.sig$"]);
        assert_eq!(spec.timeout, None);
        assert_eq!(spec.access_from, None);
        let json = serde_json::to_value(spec).unwrap();
        assert_eq!(json["provider"], "generic");
        assert_eq!(json["exclusionList"], serde_json::json!([r"^.*\.sig$"]));
    }

    #[test]
    fn image_repository_with_provider_and_acl() {
        let repo: ImageRepository = serde_saphyr::from_str(
            r#"
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: podinfo
spec:
  image: 123456789000.dkr.ecr.us-east-2.amazonaws.com/podinfo
  interval: 1h
  timeout: 1m
  provider: aws
  exclusionList:
    - "^.*\\.sig$"
    - "1.0.1"
  accessFrom:
    namespaceSelectors:
      - matchLabels:
          kubernetes.io/metadata.name: flux-system
"#,
        )
        .unwrap();
        let spec = &repo.spec;
        assert_eq!(spec.provider, ImageProvider::Aws);
        assert_eq!(spec.exclusion_list.len(), 2);
        let selectors = &spec.access_from.as_ref().unwrap().namespace_selectors;
        assert_eq!(
            selectors[0].match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
            "flux-system"
        );
    }

    #[test]
    fn image_policy_defaults() {
        let policy: ImagePolicy = serde_saphyr::from_str(
            r#"
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: podinfo
spec:
  imageRepositoryRef:
    name: podinfo
  filterTags:
    pattern: '^main-[a-fA-F0-9]+-(?P<ts>.*)'
    extract: '$ts'
  policy:
    numerical: {}
"#,
        )
        .unwrap();
        let spec = &policy.spec;
        assert_eq!(spec.digest_reflection_policy, ReflectionPolicy::Never);
        assert_eq!(spec.image_repository_ref.name, "podinfo");
        assert_eq!(spec.image_repository_ref.namespace, None);
        assert_eq!(spec.interval, None);
        assert_eq!(
            spec.filter_tags.as_ref().unwrap().extract.as_deref(),
            Some("$ts")
        );
        assert_eq!(
            spec.policy.numerical.as_ref().unwrap().order,
            SortOrder::Asc
        );
        assert_eq!(spec.policy.semver, None);
    }

    #[test]
    fn image_policy_semver_and_digest_reflection() {
        let policy: ImagePolicy = serde_saphyr::from_str(
            r#"
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: podinfo
spec:
  imageRepositoryRef:
    name: podinfo
    namespace: flux-system
  digestReflectionPolicy: Always
  interval: 10m
  policy:
    semver:
      range: 5.1.x
"#,
        )
        .unwrap();
        let spec = &policy.spec;
        assert_eq!(spec.digest_reflection_policy, ReflectionPolicy::Always);
        assert_eq!(spec.interval.as_deref(), Some("10m"));
        assert_eq!(spec.policy.semver.as_ref().unwrap().range, "5.1.x");
        assert_eq!(
            spec.image_repository_ref.namespace.as_deref(),
            Some("flux-system")
        );
        let alphabetical: ImagePolicyChoice =
            serde_json::from_value(serde_json::json!({"alphabetical": {"order": "desc"}})).unwrap();
        assert_eq!(alphabetical.alphabetical.unwrap().order, SortOrder::Desc);
    }

    #[test]
    fn image_update_automation_defaults() {
        let automation: ImageUpdateAutomation = serde_saphyr::from_str(
            r#"
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 30m
  sourceRef:
    name: flux-system
  git:
    checkout:
      ref:
        branch: main
    commit:
      author:
        email: fluxcdbot@users.noreply.github.com
        name: fluxcdbot
      messageTemplate: '{{range .Changed.Changes}}{{print .OldValue}} -> {{println .NewValue}}{{end}}'
      signingKey:
        secretRef:
          name: signing-key
    push:
      branch: main
      options:
        merge_request.create: ""
"#,
        )
        .unwrap();
        let spec = &automation.spec;
        assert_eq!(spec.interval, "30m");
        assert_eq!(spec.source_ref.kind, "GitRepository");
        assert_eq!(spec.source_ref.name, "flux-system");
        assert_eq!(
            spec.update,
            UpdateStrategy {
                path: None,
                strategy: UpdateStrategyName::Setters
            }
        );
        let git = spec.git.as_ref().unwrap();
        assert_eq!(
            git.checkout.as_ref().unwrap().reference.branch.as_deref(),
            Some("main")
        );
        assert_eq!(git.commit.author.name.as_deref(), Some("fluxcdbot"));
        let signing = git.commit.signing_key.as_ref().unwrap();
        assert_eq!(signing.secret_ref.name, "signing-key");
        assert_eq!(signing.type_, None);
        let push = git.push.as_ref().unwrap();
        assert_eq!(push.options.as_ref().unwrap()["merge_request.create"], "");
        assert_eq!(spec.policy_selector, None);
        // Written back with Flux's names.
        let json = serde_json::to_value(spec).unwrap();
        assert_eq!(json["git"]["checkout"]["ref"]["branch"], "main");
        assert_eq!(json["update"]["strategy"], "Setters");
    }

    #[test]
    fn image_update_automation_with_path_and_selector() {
        let spec: ImageUpdateAutomationSpec = serde_json::from_value(serde_json::json!({
            "interval": "5m",
            "sourceRef": {"kind": "GitRepository", "name": "fleet", "namespace": "flux-system"},
            "git": {"commit": {"author": {"email": "bot@example.com"}, "signingKey": {"secretRef": {"name": "ssh"}, "type": "ssh"}}},
            "update": {"path": "./clusters/prod"},
            "policySelector": {"matchLabels": {"env": "prod"}},
        }))
        .unwrap();
        assert_eq!(spec.update.path.as_deref(), Some("./clusters/prod"));
        assert_eq!(spec.update.strategy, UpdateStrategyName::Setters);
        assert_eq!(
            spec.git.unwrap().commit.signing_key.unwrap().type_,
            Some(SigningKeyType::Ssh)
        );
        assert_eq!(
            spec.policy_selector.unwrap().match_labels.unwrap()["env"],
            "prod"
        );
    }

    #[test]
    fn statuses_default_observed_generation_like_the_api_server() {
        assert_eq!(
            ImageRepositoryStatus::default().observed_generation,
            Some(-1)
        );
        assert_eq!(ImagePolicyStatus::default().observed_generation, Some(-1));
        assert_eq!(
            ImageUpdateAutomationStatus::default().observed_generation,
            Some(-1)
        );
        let status: ImageRepositoryStatus = serde_json::from_value(serde_json::json!({
            "canonicalImageName": "ghcr.io/stefanprodan/podinfo",
            "lastScanResult": {"tagCount": 42, "scanTime": "2026-01-01T00:00:00Z", "latestTags": ["6.5.0"]},
            "observedGeneration": 3,
        }))
        .unwrap();
        assert_eq!(status.last_scan_result.unwrap().tag_count, 42);
        let status: ImageUpdateAutomationStatus = serde_json::from_value(serde_json::json!({
            "observedPolicies": {"podinfo": {"name": "ghcr.io/stefanprodan/podinfo", "tag": "6.5.0"}},
        }))
        .unwrap();
        assert_eq!(status.observed_policies.unwrap()["podinfo"].tag, "6.5.0");
    }

    #[test]
    fn crd_defaults_agree_with_serde_defaults() {
        let repo = root_properties("ImageRepository");
        let spec = &repo["spec"];
        assert_eq!(
            prop(spec, &["exclusionList"]).default.as_ref().unwrap().0,
            serde_json::to_value(default_exclusion_list()).unwrap()
        );
        assert_eq!(
            prop(spec, &["provider"]).default.as_ref().unwrap().0,
            serde_json::to_value(ImageProvider::default()).unwrap()
        );
        assert_eq!(
            prop(&repo["status"], &["lastScanResult", "tagCount"]).format,
            None
        );

        let policy = root_properties("ImagePolicy");
        let spec = &policy["spec"];
        assert_eq!(
            prop(spec, &["digestReflectionPolicy"])
                .default
                .as_ref()
                .unwrap()
                .0,
            serde_json::to_value(ReflectionPolicy::default()).unwrap()
        );
        assert_eq!(
            prop(spec, &["policy", "numerical", "order"])
                .default
                .as_ref()
                .unwrap()
                .0,
            serde_json::to_value(SortOrder::default()).unwrap()
        );
        assert_eq!(spec.x_kubernetes_validations.as_ref().unwrap().len(), 2);

        let automation = root_properties("ImageUpdateAutomation");
        let spec = &automation["spec"];
        assert_eq!(
            prop(spec, &["update"]).default.as_ref().unwrap().0,
            serde_json::to_value(UpdateStrategy::default()).unwrap()
        );
        let source_ref = prop(spec, &["sourceRef"]);
        assert_eq!(
            source_ref.required.as_deref(),
            Some(&["kind".to_owned(), "name".to_owned()][..])
        );
        assert_eq!(
            prop(source_ref, &["kind"]).default.as_ref().unwrap().0,
            serde_json::to_value(CrossNamespaceSourceReference::default().kind).unwrap()
        );
        let selector = prop(spec, &["policySelector"]);
        assert_eq!(selector.x_kubernetes_map_type.as_deref(), Some("atomic"));
        assert_eq!(
            prop(selector, &["matchExpressions"])
                .x_kubernetes_list_type
                .as_deref(),
            Some("atomic")
        );
        for status in [&repo["status"], &policy["status"], &automation["status"]] {
            assert_eq!(
                status.default.as_ref().unwrap().0,
                serde_json::json!({"observedGeneration": -1})
            );
        }
    }

    #[test]
    fn printer_columns_are_fluxs() {
        let columns = |kind: &str| -> Vec<(String, String, Option<i32>)> {
            let crd = crds()
                .into_iter()
                .find(|c| c.spec.names.kind == kind)
                .unwrap();
            crd.spec.versions[0]
                .additional_printer_columns
                .clone()
                .unwrap()
                .into_iter()
                .map(|c| (c.name, c.json_path, c.priority))
                .collect()
        };
        let repo = columns("ImageRepository");
        assert_eq!(
            repo[4],
            (
                "Last scan".to_owned(),
                ".status.lastScanResult.scanTime".to_owned(),
                Some(1)
            )
        );
        let automation = columns("ImageUpdateAutomation");
        assert_eq!(
            automation[2],
            (
                "Last run".to_owned(),
                ".status.lastAutomationRunTime".to_owned(),
                Some(1)
            )
        );
        assert_eq!(columns("ImagePolicy").len(), 5);
    }
}

crate::impl_flux_object!(
    ImageRepository,
    ImageRepositoryStatus,
    suspend = |o| o.spec.suspend,
    interval = |o| Some(o.spec.interval.as_str()),
);

crate::impl_flux_object!(
    ImagePolicy,
    ImagePolicyStatus,
    suspend = |o| o.spec.suspend,
    interval = |o| o.spec.interval.as_deref(),
);

crate::impl_flux_object!(
    ImageUpdateAutomation,
    ImageUpdateAutomationStatus,
    suspend = |o| o.spec.suspend,
    interval = |o| Some(o.spec.interval.as_str()),
);
