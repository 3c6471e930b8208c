//! `kustomize.toolkit.fluxcd.io/v1`: Kustomization.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::{
    Condition, DependencyReference, KubeConfigReference, LocalObjectReference,
    NamespacedObjectKindReference, Snapshot,
};

/// The API group of the Kustomization kind.
pub const GROUP: &str = "kustomize.toolkit.fluxcd.io";
/// The kind name of a Kustomization.
pub const KUSTOMIZATION_KIND: &str = "Kustomization";
/// The most characters of a condition message the kustomize-controller writes (`MaxConditionMessageLength`).
pub const MAX_CONDITION_MESSAGE_LENGTH: usize = 20000;

/// KustomizationSpec defines the configuration to calculate the desired state
/// from a Source using Kustomize.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kustomize.toolkit.fluxcd.io",
    version = "v1",
    kind = "Kustomization",
    plural = "kustomizations",
    singular = "kustomization",
    namespaced,
    status = "KustomizationStatus",
    shortname = "ks",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-appliers",
    annotation("kustomize.toolkit.fluxcd.io/substitute", "disabled"),
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    doc = "Kustomization is the Schema for the kustomizations API."
)]
#[serde(rename_all = "camelCase")]
pub struct KustomizationSpec {
    /// BuildMetadata specifies which kustomize build metadata should be added
    /// to the built resources. The allowed values are 'originAnnotations' to
    /// annotate resources with their source origin, and 'transformerAnnotations'
    /// to annotate resources with the transformers that produced them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_metadata: Option<Vec<BuildMetadataOption>>,
    /// CommonMetadata specifies the common labels and annotations that are
    /// applied to all resources. Any existing label or annotation will be
    /// overridden if its key matches a common one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_metadata: Option<CommonMetadata>,
    /// Components specifies relative paths to kustomize Components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
    /// Decrypt Kubernetes secrets before applying them on the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<Decryption>,
    /// DeletionPolicy can be used to control garbage collection when this
    /// Kustomization is deleted. Valid values are ('MirrorPrune', 'Delete',
    /// 'WaitForTermination', 'Orphan'). 'MirrorPrune' mirrors the Prune field
    /// (orphan if false, delete if true). Defaults to 'MirrorPrune'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// DependsOn may contain a DependencyReference slice
    /// with references to Kustomization resources that must be ready before this
    /// Kustomization can be reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<DependencyReference>>,
    /// Force instructs the controller to recreate resources
    /// when patching fails due to an immutable field change.
    #[serde(default)]
    #[schemars(default = "default_false")]
    pub force: bool,
    /// HealthCheckExprs is a list of healthcheck expressions for evaluating the
    /// health of custom resources using Common Expression Language (CEL).
    /// The expressions are evaluated only when Wait or HealthChecks are specified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_exprs: Option<Vec<CustomHealthCheck>>,
    /// A list of resources to be included in the health assessment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<Vec<NamespacedObjectKindReference>>,
    /// Ignore is a list of rules for specifying which changes to ignore
    /// during drift detection. These rules are applied to the resources managed
    /// by the Kustomization and are used to exclude specific JSON pointer paths
    /// from the drift detection and apply process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<Vec<IgnoreRule>>,
    /// IgnoreMissingComponents instructs the controller to ignore Components paths
    /// not found in source by removing them from the generated kustomization.yaml
    /// before running kustomize build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_missing_components: Option<bool>,
    /// Images is a list of (image name, new name, new tag or digest)
    /// for changing image names, tags or digests. This can also be achieved with a
    /// patch, but this operator is simpler to specify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<Image>>,
    /// The interval at which to reconcile the Kustomization.
    /// This interval is approximate and may be subject to jitter to ensure
    /// efficient use of resources.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// The KubeConfig for reconciling the Kustomization on a remote cluster.
    /// When used in combination with KustomizationSpec.ServiceAccountName,
    /// forces the controller to act on behalf of that Service Account at the
    /// target cluster.
    /// If the --default-service-account flag is set, its value will be used as
    /// a controller level fallback for when KustomizationSpec.ServiceAccountName
    /// is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_config: Option<KubeConfigReference>,
    /// NamePrefix will prefix the names of all managed resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub name_prefix: Option<String>,
    /// NameSuffix will suffix the names of all managed resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub name_suffix: Option<String>,
    /// Strategic merge and JSON patches, defined as inline YAML objects,
    /// capable of targeting objects based on kind, label and annotation selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches: Option<Vec<Patch>>,
    /// Path to the directory containing the kustomization.yaml file, or the
    /// set of plain YAMLs a kustomization.yaml should be generated for.
    /// Defaults to 'None', which translates to the root path of the SourceRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// PostBuild describes which actions to perform on the YAML manifest
    /// generated by building the kustomize overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_build: Option<PostBuild>,
    /// Prune enables garbage collection.
    pub prune: bool,
    /// The interval at which to retry a previously failed reconciliation.
    /// When not specified, the controller uses the KustomizationSpec.Interval
    /// value to retry failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub retry_interval: Option<String>,
    /// The name of the Kubernetes service account to impersonate
    /// when reconciling this Kustomization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Reference of the source where the kustomization file is.
    pub source_ref: CrossNamespaceSourceReference,
    /// This flag tells the controller to suspend subsequent kustomize executions,
    /// it does not apply to already started executions. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// TargetNamespace sets or overrides the namespace in the
    /// kustomization.yaml file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub target_namespace: Option<String>,
    /// Timeout for validation, apply and health checking operations.
    /// Defaults to 'Interval' duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// Wait instructs the controller to check the health of all the reconciled
    /// resources. When enabled, the HealthChecks are ignored. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
}

fn default_false() -> bool {
    false
}

/// BuildMetadataOption defines the supported buildMetadata options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BuildMetadataOption {
    /// `originAnnotations`: `config.kubernetes.io/origin` annotations tracking the file each resource came from.
    OriginAnnotations,
    /// `transformerAnnotations`: annotations recording which kustomize transformers modified each resource.
    TransformerAnnotations,
}

/// CommonMetadata defines the common labels and annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonMetadata {
    /// Annotations to be added to the object's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels to be added to the object's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Decryption defines how decryption is handled for Kubernetes manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decryption {
    /// Provider is the name of the decryption engine.
    pub provider: DecryptionProvider,
    /// The secret name containing the private OpenPGP keys used for decryption.
    /// A static credential for a cloud provider defined inside the Secret
    /// takes priority to secret-less authentication with the ServiceAccountName
    /// field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// ServiceAccountName is the name of the service account used to
    /// authenticate with KMS services from cloud providers. If a
    /// static credential for a given cloud provider is defined
    /// inside the Secret referenced by SecretRef, that static
    /// credential takes priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// The decryption engine of a Kustomization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecryptionProvider {
    /// Mozilla SOPS.
    #[default]
    Sops,
}

// What happens to the applied objects when a Kustomization is deleted. (Not a `///` doc: it would replace the
// field's description in the CRD.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete if `spec.prune` is true, orphan otherwise (the default).
    #[default]
    MirrorPrune,
    /// Delete the applied objects.
    Delete,
    /// Delete the applied objects and wait for them to be gone.
    WaitForTermination,
    /// Leave the applied objects in the cluster.
    Orphan,
}

impl DeletionPolicy {
    /// The string Flux uses for this policy.
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionPolicy::MirrorPrune => "MirrorPrune",
            DeletionPolicy::Delete => "Delete",
            DeletionPolicy::WaitForTermination => "WaitForTermination",
            DeletionPolicy::Orphan => "Orphan",
        }
    }
}

/// CustomHealthCheck defines the health check for custom resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomHealthCheck {
    /// APIVersion of the custom resource under evaluation.
    pub api_version: String,
    /// Current is the CEL expression that determines if the status
    /// of the custom resource has reached the desired state.
    pub current: String,
    /// Failed is the CEL expression that determines if the status
    /// of the custom resource has failed to reach the desired state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// InProgress is the CEL expression that determines if the status
    /// of the custom resource has not yet reached the desired state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<String>,
    /// Kind of the custom resource under evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// IgnoreRule defines a rule to selectively disregard specific changes during
/// the drift detection process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreRule {
    /// Paths is a list of JSON Pointer (RFC 6901) paths to be excluded from
    /// consideration in a Kubernetes object.
    pub paths: Vec<String>,
    /// Target is a selector for specifying Kubernetes objects to which this
    /// rule applies.
    /// If Target is not set, the Paths will be ignored for all Kubernetes
    /// objects within the manifest of the Kustomization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Selector>,
}

/// Selector specifies a set of resources. Any resource that matches intersection of all conditions is included in this
/// set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// AnnotationSelector is a string that follows the label selection expression
    /// https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#api
    /// It matches with the resource annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<String>,
    /// Group is the API group to select resources from.
    /// Together with Version and Kind it is capable of unambiguously identifying and/or selecting resources.
    /// https://github.com/kubernetes/community/blob/master/contributors/design-proposals/api-machinery/api-group.md
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the API Group to select resources from.
    /// Together with Group and Version it is capable of unambiguously
    /// identifying and/or selecting resources.
    /// https://github.com/kubernetes/community/blob/master/contributors/design-proposals/api-machinery/api-group.md
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// LabelSelector is a string that follows the label selection expression
    /// https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#api
    /// It matches with the resource labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// Name to match resources with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace to select resources from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Version of the API Group to select resources from.
    /// Together with Group and Kind it is capable of unambiguously identifying and/or selecting resources.
    /// https://github.com/kubernetes/community/blob/master/contributors/design-proposals/api-machinery/api-group.md
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Image contains an image name, a new name, a new tag or digest, which will replace the original name and tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Digest is the value used to replace the original image tag.
    /// If digest is present NewTag value is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Name is a tag-less image name.
    pub name: String,
    /// NewName is the value used to replace the original name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// NewTag is the value used to replace the original tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
}

/// Patch contains an inline StrategicMerge or JSON6902 patch, and the target the patch should
/// be applied to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Patch {
    /// Patch contains an inline StrategicMerge patch or an inline JSON6902 patch with
    /// an array of operation objects.
    pub patch: String,
    /// Target points to the resources that the patch document should be applied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Selector>,
}

/// PostBuild describes which actions to perform on the YAML manifest
/// generated by building the kustomize overlay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostBuild {
    /// Substitute holds a map of key/value pairs.
    /// The variables defined in your YAML manifests that match any of the keys
    /// defined in the map will be substituted with the set value.
    /// Includes support for bash string replacement functions
    /// e.g. ${var:=default}, ${var:position} and ${var/substring/replacement}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substitute: Option<BTreeMap<String, String>>,
    /// SubstituteFrom holds references to ConfigMaps and Secrets containing
    /// the variables and their values to be substituted in the YAML manifests.
    /// The ConfigMap and the Secret data keys represent the var names, and they
    /// must match the vars declared in the manifests for the substitution to
    /// happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substitute_from: Option<Vec<SubstituteReference>>,
    /// SubstituteStrategy defines the strategy for substituting variables in the YAML manifests.
    /// Valid values are:
    ///
    ///  - WithVariables (the default): require at least one variable to be defined,
    ///    either through the inline map or through the resolved references to ConfigMaps
    ///    and Secrets.
    ///  - Always: perform the substitution even if no variables are defined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substitute_strategy: Option<SubstituteStrategy>,
}

// SubstituteStrategy defines the strategy for substituting variables in the YAML manifests. (Not a `///` doc: it
// would replace the field's description in the CRD.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SubstituteStrategy {
    /// At least one variable must be defined, inline or through the referenced ConfigMaps and Secrets.
    #[default]
    WithVariables,
    /// Substitute even if no variables are defined (e.g. for `${var:=default}`).
    Always,
}

/// SubstituteReference contains a reference to a resource containing
/// the variables name and value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubstituteReference {
    /// Kind of the values referent, valid values are ('Secret', 'ConfigMap').
    pub kind: SubstituteKind,
    /// Name of the values referent. Should reside in the same namespace as the
    /// referring resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Optional indicates whether the referenced resource must exist, or whether to
    /// tolerate its absence. If true and the referenced resource is absent, proceed
    /// as if the resource was present but empty, without any variables defined.
    #[serde(default)]
    #[schemars(default = "default_false")]
    pub optional: bool,
}

/// The kind of object a [`SubstituteReference`] points at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SubstituteKind {
    #[default]
    Secret,
    ConfigMap,
}

/// CrossNamespaceSourceReference contains enough information to let you locate the
/// typed Kubernetes resource object at cluster level.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceSourceReference {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    pub kind: SourceKind,
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent, defaults to the namespace of the Kubernetes
    /// resource object that contains the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl CrossNamespaceSourceReference {
    /// The namespace of the source: its own, or else `default_namespace` (the Kustomization's).
    pub fn namespace_or<'a>(&'a self, default_namespace: &'a str) -> &'a str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => default_namespace,
        }
    }
}

impl fmt::Display for CrossNamespaceSourceReference {
    /// `Kind/Name`, or `Kind/Namespace/Name` when a namespace is set (as Flux prints it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => write!(f, "{}/{}/{}", self.kind.as_str(), ns, self.name),
            _ => write!(f, "{}/{}", self.kind.as_str(), self.name),
        }
    }
}

/// The source kinds a Kustomization can apply from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SourceKind {
    #[serde(rename = "OCIRepository")]
    OciRepository,
    #[default]
    GitRepository,
    Bucket,
    ExternalArtifact,
}

impl SourceKind {
    /// The kind name as Flux spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::OciRepository => "OCIRepository",
            SourceKind::GitRepository => "GitRepository",
            SourceKind::Bucket => "Bucket",
            SourceKind::ExternalArtifact => "ExternalArtifact",
        }
    }

    /// The apiVersion every source kind is served at in Flux 2.9 (all four are `source.toolkit.fluxcd.io/v1`).
    pub fn api_version(self) -> &'static str {
        "source.toolkit.fluxcd.io/v1"
    }
}

/// KustomizationStatus defines the observed state of a kustomization.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": -1}))]
pub struct KustomizationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// History contains a set of snapshots of the last reconciliation attempts
    /// tracking the revision, the state and the duration of each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Snapshot>>,
    /// Inventory contains the list of Kubernetes resource object references that
    /// have been successfully applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<ResourceInventory>,
    /// The last successfully applied origin revision.
    /// Equals the origin revision of the applied Artifact from the referenced Source.
    /// Usually present on the Metadata of the applied Artifact and depends on the
    /// Source type, e.g. for OCI it's the value associated with the key
    /// "org.opencontainers.image.revision".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_origin_revision: Option<String>,
    /// The last successfully applied revision.
    /// Equals the Revision of the applied Artifact from the referenced Source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// LastAttemptedRevision is the revision of the last reconciliation attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// LastHandledReconcileAt holds the value of the most recent
    /// reconcile request value, so a change of the annotation value
    /// can be detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// ObservedGeneration is the last reconciled generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// ResourceInventory contains a list of Kubernetes resource object references
/// that have been applied by a Kustomization.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceInventory {
    /// Entries of Kubernetes resource object references.
    pub entries: Vec<ResourceRef>,
}

/// ResourceRef contains the information necessary to locate a resource within a cluster.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub struct ResourceRef {
    /// ID is the string representation of the Kubernetes resource object's metadata,
    /// in the format '<namespace>_<name>_<group>_<kind>'.
    pub id: String,
    /// Version is the API version of the Kubernetes resource object's kind.
    #[serde(rename = "v")]
    pub version: String,
}

impl KustomizationSpec {
    /// Whether reconciliation is suspended.
    pub fn suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }

    /// Whether to wait for every applied object to become ready.
    pub fn wait(&self) -> bool {
        self.wait.unwrap_or(false)
    }

    /// The deletion policy, `MirrorPrune` when unset.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or_default()
    }

    /// Whether the applied objects are deleted with the Kustomization: the deletion policy resolved against
    /// `spec.prune` (`MirrorPrune`), as Flux does.
    pub fn deletes_on_removal(&self) -> bool {
        match self.deletion_policy() {
            DeletionPolicy::MirrorPrune => self.prune,
            DeletionPolicy::Delete | DeletionPolicy::WaitForTermination => true,
            DeletionPolicy::Orphan => false,
        }
    }

    /// The post-build substitution strategy, `WithVariables` when unset.
    pub fn substitute_strategy(&self) -> SubstituteStrategy {
        self.post_build
            .as_ref()
            .and_then(|p| p.substitute_strategy)
            .unwrap_or_default()
    }

    /// The dependencies (empty when none).
    pub fn depends_on(&self) -> &[DependencyReference] {
        self.depends_on.as_deref().unwrap_or_default()
    }

    /// The path inside the source artifact ("" = its root).
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or_default()
    }
}

impl KustomizationStatus {
    /// The conditions (empty when none).
    pub fn conditions(&self) -> &[Condition] {
        self.conditions.as_deref().unwrap_or_default()
    }

    /// The inventory entries (empty when none).
    pub fn inventory_entries(&self) -> &[ResourceRef] {
        self.inventory
            .as_ref()
            .map(|i| i.entries.as_slice())
            .unwrap_or_default()
    }
}

impl Kustomization {
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
    vec![super::flux_crd(Kustomization::crd())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Kustomization {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn flux_doc_example_minimal() {
        let ks = parse(
            r#"
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: podinfo
  namespace: default
spec:
  interval: 10m
  targetNamespace: default
  sourceRef:
    kind: GitRepository
    name: podinfo
  path: ./kustomize
  prune: true
  timeout: 1m
"#,
        );
        assert_eq!(ks.spec.interval, "10m");
        assert_eq!(ks.spec.target_namespace.as_deref(), Some("default"));
        assert_eq!(ks.spec.source_ref.kind, SourceKind::GitRepository);
        assert_eq!(ks.spec.source_ref.name, "podinfo");
        assert_eq!(ks.spec.source_ref.namespace_or("default"), "default");
        assert_eq!(ks.spec.source_ref.to_string(), "GitRepository/podinfo");
        assert_eq!(ks.spec.path(), "./kustomize");
        assert!(ks.spec.prune);
        assert!(!ks.spec.force);
        assert_eq!(ks.spec.timeout.as_deref(), Some("1m"));
        assert_eq!(ks.spec.deletion_policy(), DeletionPolicy::MirrorPrune);
        assert!(ks.spec.deletes_on_removal());
        assert!(!ks.spec.suspended() && !ks.spec.wait());
    }

    #[test]
    fn flux_doc_examples_with_health_checks_dependencies_and_kubeconfig() {
        let ks = parse(
            r#"
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: webapp
  namespace: apps
spec:
  serviceAccountName: flux
  dependsOn:
  - name: rbac
  - name: cert-manager
    namespace: flux-system
    readyExpr: status.ready == true
  interval: 60m0s
  wait: true
  timeout: 3m0s
  retryInterval: 2m0s
  prune: true
  force: false
  targetNamespace: apps
  sourceRef:
    kind: OCIRepository
    name: webapp
    namespace: sources
  path: ./deploy/production
  kubeConfig:
    secretRef:
      name: stage-kubeconfig
  healthChecks:
  - apiVersion: helm.toolkit.fluxcd.io/v2
    kind: HelmRelease
    name: frontend
    namespace: dev
  healthCheckExprs:
  - apiVersion: bitnami.com/v1alpha1
    kind: SealedSecret
    failed: status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'False')
    current: status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'True')
"#,
        );
        let deps = ks.spec.depends_on();
        assert_eq!(deps.len(), 2);
        assert_eq!(deps[0].namespace_or("apps"), "apps");
        assert_eq!(deps[1].namespace_or("apps"), "flux-system");
        assert_eq!(deps[1].ready_expr.as_deref(), Some("status.ready == true"));
        assert!(ks.spec.wait());
        assert_eq!(ks.spec.retry_interval.as_deref(), Some("2m0s"));
        assert_eq!(ks.spec.source_ref.kind, SourceKind::OciRepository);
        assert_eq!(ks.spec.source_ref.namespace_or("apps"), "sources");
        assert_eq!(
            ks.spec.source_ref.to_string(),
            "OCIRepository/sources/webapp"
        );
        let kc = ks.spec.kube_config.as_ref().unwrap();
        assert_eq!(kc.secret_ref.as_ref().unwrap().name, "stage-kubeconfig");
        assert!(kc.config_map_ref.is_none());
        let hc = &ks.spec.health_checks.as_ref().unwrap()[0];
        assert_eq!(
            (hc.kind.as_str(), hc.name.as_str()),
            ("HelmRelease", "frontend")
        );
        let expr = &ks.spec.health_check_exprs.as_ref().unwrap()[0];
        assert_eq!(expr.kind.as_deref(), Some("SealedSecret"));
        assert!(expr.current.contains("'True'"));
        assert!(expr.in_progress.is_none());
    }

    #[test]
    fn post_build_patches_images_and_decryption() {
        let ks = parse(
            r#"
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
spec:
  interval: 5m
  prune: false
  deletionPolicy: Delete
  sourceRef:
    kind: GitRepository
    name: flux-system
  decryption:
    provider: sops
    secretRef:
      name: sops-age
  buildMetadata: [originAnnotations]
  commonMetadata:
    labels:
      team: a
  postBuild:
    substituteStrategy: Always
    substitute:
      cluster_env: prod
    substituteFrom:
    - kind: ConfigMap
      name: cluster-vars
    - kind: Secret
      name: cluster-secret-vars
      optional: true
  images:
  - name: podinfo
    newName: my-registry/podinfo
    newTag: v1
  patches:
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: not-used
      spec:
        replicas: 2
    target:
      kind: Deployment
      labelSelector: "app=podinfo"
  ignore:
  - paths: ["/spec/replicas"]
    target:
      kind: Deployment
"#,
        );
        assert_eq!(ks.spec.deletion_policy(), DeletionPolicy::Delete);
        assert!(ks.spec.deletes_on_removal());
        let decryption = ks.spec.decryption.as_ref().unwrap();
        assert_eq!(decryption.provider, DecryptionProvider::Sops);
        assert_eq!(
            ks.spec.build_metadata.as_deref(),
            Some(&[BuildMetadataOption::OriginAnnotations][..])
        );
        assert_eq!(ks.spec.substitute_strategy(), SubstituteStrategy::Always);
        let post_build = ks.spec.post_build.as_ref().unwrap();
        let from = post_build.substitute_from.as_ref().unwrap();
        assert_eq!(from[0].kind, SubstituteKind::ConfigMap);
        assert!(!from[0].optional);
        assert!(from[1].optional);
        assert_eq!(
            ks.spec.images.as_ref().unwrap()[0].new_tag.as_deref(),
            Some("v1")
        );
        let patch = &ks.spec.patches.as_ref().unwrap()[0];
        assert!(patch.patch.contains("replicas: 2"));
        assert_eq!(
            patch.target.as_ref().unwrap().label_selector.as_deref(),
            Some("app=podinfo")
        );
        assert_eq!(
            ks.spec.ignore.as_ref().unwrap()[0].paths,
            vec!["/spec/replicas".to_string()]
        );
    }

    #[test]
    fn status_inventory_round_trips_with_flux_keys() {
        let ks = parse(
            r#"
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: podinfo
spec:
  interval: 5m
  prune: true
  sourceRef:
    kind: GitRepository
    name: podinfo
status:
  observedGeneration: 2
  lastAppliedRevision: main@sha1:abc
  lastAttemptedRevision: main@sha1:abc
  inventory:
    entries:
    - id: default_podinfo_apps_Deployment
      v: v1
  history:
  - digest: sha256:abc
    firstReconciled: "2024-01-01T00:00:00Z"
    lastReconciled: "2024-01-01T00:05:00Z"
    lastReconciledDuration: 1.5s
    lastReconciledStatus: ReconciliationSucceeded
    totalReconciliations: 2
    metadata:
      revision: main@sha1:abc
  conditions:
  - type: Ready
    status: "False"
    reason: DependencyNotReady
    message: dependency not ready
    lastTransitionTime: "2024-01-01T00:00:00Z"
"#,
        );
        let status = ks.status.as_ref().unwrap();
        assert_eq!(status.inventory_entries()[0].version, "v1");
        assert_eq!(status.history.as_ref().unwrap()[0].total_reconciliations, 2);
        let ready = ks
            .condition(crate::api::meta::condition_types::READY)
            .unwrap();
        assert_eq!(
            ready.reason,
            crate::api::meta::reasons::DEPENDENCY_NOT_READY
        );
        let json = serde_json::to_value(status).unwrap();
        assert_eq!(
            json["inventory"],
            serde_json::json!({"entries": [{"id": "default_podinfo_apps_Deployment", "v": "v1"}]})
        );
    }

    #[test]
    fn crd_carries_kubeconfig_cel_rules_and_status_default() {
        let crd = serde_json::to_value(&crds()[0]).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        let rules = root["spec"]["properties"]["kubeConfig"]["x-kubernetes-validations"]
            .as_array()
            .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0]["rule"],
            "has(self.configMapRef) || has(self.secretRef)"
        );
        assert_eq!(
            root["status"]["default"],
            serde_json::json!({"observedGeneration": -1})
        );
    }
}

crate::impl_flux_object!(
    Kustomization,
    KustomizationStatus,
    suspend = |o| o.spec.suspend,
    interval = |o| Some(o.spec.interval.as_str()),
    retry_interval = |o| o.spec.retry_interval.as_deref(),
);
