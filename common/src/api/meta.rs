//! Types shared by several Flux APIs (`fluxcd/pkg/apis/meta`): conditions and object references.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition contains details for one aspect of the current state of this API Resource.
///
/// The same shape as `metav1.Condition`, with its validation (lengths, patterns, status enum) so that the
/// generated CRDs carry exactly what Flux's carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// lastTransitionTime is the last time the condition transitioned from one status to another.
    /// This should be when the underlying condition changed.  If that is not known, then using the time when
    /// the API field changed is acceptable.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub last_transition_time: String,
    /// message is a human readable message indicating details about the transition.
    /// This may be an empty string.
    #[schemars(length(max = 32768))]
    pub message: String,
    /// observedGeneration represents the .metadata.generation that the condition was set based upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
    /// reason contains a programmatic identifier indicating the reason for the condition's last transition.
    #[schemars(
        length(min = 1, max = 1024),
        regex(pattern = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    )]
    pub reason: String,
    /// status of the condition, one of True, False, Unknown.
    pub status: ConditionStatus,
    /// type of condition in CamelCase or in foo.example.com/CamelCase.
    #[serde(rename = "type")]
    #[schemars(
        length(max = 316),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        )
    )]
    pub type_: String,
}

/// The status of a condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// The string Kubernetes uses for this status.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// LocalObjectReference contains enough information to locate the referenced Kubernetes resource object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referent.
    pub name: String,
}

/// SecretKeyReference contains enough information to locate the referenced Kubernetes Secret object in the
/// same namespace. Optionally a key can be specified. Use this type instead of core/v1 SecretKeySelector when
/// the Key is optional and the Optional field is not applicable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyReference {
    /// Name of the Secret.
    pub name: String,
    /// Key in the Secret, when not specified an implementation-specific default key is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The condition list of a Flux object's status: atomic under server-side apply, like Flux's.
pub type Conditions = Vec<Condition>;

/// NamespacedObjectKindReference contains enough information to locate the typed referenced Kubernetes resource object
/// in any namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedObjectKindReference {
    /// API version of the referent, if not specified the Kubernetes preferred version will be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    pub kind: String,
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent, when not specified it acts as LocalObjectReference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// DependencyReference contains enough information to locate the referenced Kubernetes resource object
/// and optional CEL expression to assess its readiness.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyReference {
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent, defaults to the namespace of the resource
    /// object that contains the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// ReadyExpr is a CEL expression that can be used to assess the readiness
    /// of a dependency. When specified, the built-in readiness check
    /// is replaced by the logic defined in the CEL expression.
    /// To make the CEL expression additive to the built-in readiness check,
    /// the feature gate `AdditiveCELDependencyCheck` must be set to `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_expr: Option<String>,
}

impl DependencyReference {
    /// The namespace of the dependency: its own, or else `default_namespace` (the referring object's).
    pub fn namespace_or<'a>(&'a self, default_namespace: &'a str) -> &'a str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => default_namespace,
        }
    }
}

/// KubeConfigReference contains enough information build a kubeconfig
/// in memory for connecting to remote Kubernetes clusters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.configMapRef) || has(self.secretRef)")
        .message("exactly one of spec.kubeConfig.configMapRef or spec.kubeConfig.secretRef must be specified"),
    validation = Rule::new("!has(self.configMapRef) || !has(self.secretRef)")
        .message("exactly one of spec.kubeConfig.configMapRef or spec.kubeConfig.secretRef must be specified")
)]
pub struct KubeConfigReference {
    /// ConfigMapRef holds an optional name of a ConfigMap that contains
    /// the following keys:
    ///
    /// - `provider`: the provider to use. One of `aws`, `azure`, `gcp`, or
    ///    `generic`. Required.
    /// - `cluster`: the fully qualified resource name of the Kubernetes
    ///    cluster in the cloud provider API. Not used by the `generic`
    ///    provider. Required when one of `address` or `ca.crt` is not set.
    /// - `address`: the address of the Kubernetes API server. Required
    ///    for `generic`. For the other providers, if not specified, the
    ///    first address in the cluster resource will be used, and if
    ///    specified, it must match one of the addresses in the cluster
    ///    resource.
    ///    If audiences is not set, will be used as the audience for the
    ///    `generic` provider.
    /// - `ca.crt`: the optional PEM-encoded CA certificate for the
    ///    Kubernetes API server. If not set, the controller will use the
    ///    CA certificate from the cluster resource.
    /// - `audiences`: the optional audiences as a list of
    ///    line-break-separated strings for the Kubernetes ServiceAccount
    ///    token. Defaults to the `address` for the `generic` provider, or
    ///    to specific values for the other providers depending on the
    ///    provider.
    /// -  `serviceAccountName`: the optional name of the Kubernetes
    ///    ServiceAccount in the same namespace that should be used
    ///    for authentication. If not specified, the controller
    ///    ServiceAccount will be used.
    ///
    /// Mutually exclusive with SecretRef.
    #[allow(clippy::doc_overindented_list_items)] // Flux's description, verbatim
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<LocalObjectReference>,
    /// SecretRef holds an optional name of a secret that contains a key with
    /// the kubeconfig file as the value. If no key is set, the key will default
    /// to 'value'. Mutually exclusive with ConfigMapRef.
    /// It is recommended that the kubeconfig is self-contained, and the secret
    /// is regularly updated if credentials such as a cloud-access-token expire.
    /// Cloud specific `cmd-path` auth helpers will not function without adding
    /// binaries and credentials to the Pod that is responsible for reconciling
    /// Kubernetes resources. Supported only for the generic provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyReference>,
}

/// Snapshot represents a point-in-time record of a group of resources reconciliation,
/// including timing information, status, and a unique digest identifier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Digest is the checksum in the format `<algo>:<hex>` of the resources in this snapshot.
    pub digest: String,
    /// FirstReconciled is the time when this revision was first reconciled to the cluster.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub first_reconciled: String,
    /// LastReconciled is the time when this revision was last reconciled to the cluster.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub last_reconciled: String,
    /// LastReconciledDuration is time it took to reconcile the resources in this revision.
    pub last_reconciled_duration: String,
    /// LastReconciledStatus is the status of the last reconciliation.
    pub last_reconciled_status: String,
    /// TotalReconciliations is the total number of reconciliations that have occurred for this snapshot.
    pub total_reconciliations: i64,
    /// Metadata contains additional information about the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
}

/// The most snapshots a `History` keeps (Flux's `HistoryMaxSize`).
pub const HISTORY_MAX_SIZE: usize = 5;

/// Finalizer every Flux controller puts on the objects it reconciles (`finalizers.fluxcd.io`).
pub const FINALIZER: &str = "finalizers.fluxcd.io";

/// Annotation keys and values Flux reads or writes, letter for letter.
pub mod annotations {
    /// Set (to any changing value, usually a timestamp) to request an immediate reconciliation.
    pub const RECONCILE_REQUEST: &str = "reconcile.fluxcd.io/requestedAt";
    /// Set together with `RECONCILE_REQUEST` (same value) to request a forced reconciliation (HelmRelease).
    pub const FORCE_REQUEST: &str = "reconcile.fluxcd.io/forceAt";

    /// On a managed object: `disabled` makes the kustomize-controller skip it.
    pub const KUSTOMIZE_RECONCILE: &str = "kustomize.toolkit.fluxcd.io/reconcile";
    /// On a managed object: `Merge`, `IfNotPresent` or `Ignore` (server-side apply policy).
    pub const KUSTOMIZE_SSA: &str = "kustomize.toolkit.fluxcd.io/ssa";
    /// On a managed object: `disabled` keeps it from being garbage collected.
    pub const KUSTOMIZE_PRUNE: &str = "kustomize.toolkit.fluxcd.io/prune";
    /// On a managed object: `enabled` recreates it when an immutable field changes.
    pub const KUSTOMIZE_FORCE: &str = "kustomize.toolkit.fluxcd.io/force";
    /// On a managed object: `disabled` skips post-build variable substitution for it.
    pub const KUSTOMIZE_SUBSTITUTE: &str = "kustomize.toolkit.fluxcd.io/substitute";
    /// On a Secret: `disabled` skips SOPS decryption for it.
    pub const KUSTOMIZE_DECRYPT: &str = "kustomize.toolkit.fluxcd.io/decrypt";

    /// Value of `KUSTOMIZE_FORCE` (and other on/off annotations) that turns the behaviour on.
    pub const ENABLED_VALUE: &str = "enabled";
    /// Value of `KUSTOMIZE_RECONCILE`, `KUSTOMIZE_PRUNE`, `KUSTOMIZE_SUBSTITUTE`, `KUSTOMIZE_DECRYPT` that turns
    /// the behaviour off.
    pub const DISABLED_VALUE: &str = "disabled";
    /// `KUSTOMIZE_SSA` value: merge with fields owned by other managers.
    pub const MERGE_VALUE: &str = "Merge";
    /// `KUSTOMIZE_SSA` value: create the object only if it does not exist.
    pub const IF_NOT_PRESENT_VALUE: &str = "IfNotPresent";
    /// `KUSTOMIZE_SSA` value: never apply the object.
    pub const IGNORE_VALUE: &str = "Ignore";
}

/// Label keys and values Flux reads or writes, letter for letter.
pub mod labels {
    /// On a Secret or ConfigMap: with value `WATCH_ENABLED`, changes to it trigger reconciliation of the
    /// Flux objects referencing it. (A label in Flux, `meta.LabelKeyWatch`, not an annotation.)
    pub const WATCH: &str = "reconcile.fluxcd.io/watch";
    /// The value of `WATCH` that enables watching.
    pub const WATCH_ENABLED: &str = "Enabled";
    /// Owner label the kustomize-controller sets on every object it applies: the Kustomization's name.
    pub const KUSTOMIZE_NAME: &str = "kustomize.toolkit.fluxcd.io/name";
    /// Owner label the kustomize-controller sets on every object it applies: the Kustomization's namespace.
    pub const KUSTOMIZE_NAMESPACE: &str = "kustomize.toolkit.fluxcd.io/namespace";
}

/// Condition types (`status.conditions[].type`) used by Flux, letter for letter.
pub mod condition_types {
    // fluxcd/pkg/apis/meta
    /// The object is reconciled and ready (True), failed (False), or in progress (Unknown).
    pub const READY: &str = "Ready";
    /// Reconciliation is in progress (abnormal-true: only present while True).
    pub const RECONCILING: &str = "Reconciling";
    /// Reconciliation cannot proceed without a change of spec (abnormal-true).
    pub const STALLED: &str = "Stalled";
    /// The applied resources passed their health checks.
    pub const HEALTHY: &str = "Healthy";

    // source-controller api/v1
    /// The Artifact is in storage (only present once an Artifact was stored).
    pub const ARTIFACT_IN_STORAGE: &str = "ArtifactInStorage";
    /// The current Artifact is outdated (abnormal-true).
    pub const ARTIFACT_OUTDATED: &str = "ArtifactOutdated";
    /// Result of the source's integrity verification (only present when verification is enabled).
    pub const SOURCE_VERIFIED: &str = "SourceVerified";
    /// Fetching the upstream source failed (abnormal-true).
    pub const FETCH_FAILED: &str = "FetchFailed";
    /// Building the Artifact failed (abnormal-true).
    pub const BUILD_FAILED: &str = "BuildFailed";
    /// A storage (filesystem) operation failed (abnormal-true).
    pub const STORAGE_OPERATION_FAILED: &str = "StorageOperationFailed";
    /// One of a GitRepository's includes is not available (abnormal-true).
    pub const INCLUDE_UNAVAILABLE: &str = "IncludeUnavailable";
}

/// Condition reasons (`status.conditions[].reason`) and event reasons used by Flux, letter for letter.
pub mod reasons {
    // fluxcd/pkg/apis/meta
    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";
    pub const PROGRESSING: &str = "Progressing";
    pub const SUSPENDED: &str = "Suspended";
    pub const PROGRESSING_WITH_RETRY: &str = "ProgressingWithRetry";
    pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
    /// `meta.InvalidPathReason`; source-controller's `InvalidPathReason` is the same string.
    pub const INVALID_PATH: &str = "InvalidPath";
    /// `meta.InvalidURLReason`; note source-controller's own `URL_INVALID` ("URLInvalid").
    pub const INVALID_URL: &str = "InvalidURL";
    pub const INSECURE_CONNECTIONS_DISALLOWED: &str = "InsecureConnectionsDisallowed";
    pub const UNSUPPORTED_CONNECTION_TYPE: &str = "UnsupportedConnectionType";
    pub const PRUNE_FAILED: &str = "PruneFailed";
    pub const ARTIFACT_FAILED: &str = "ArtifactFailed";
    pub const BUILD_FAILED: &str = "BuildFailed";
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    pub const RECONCILIATION_SUCCEEDED: &str = "ReconciliationSucceeded";
    pub const RECONCILIATION_FAILED: &str = "ReconciliationFailed";
    pub const INVALID_CEL_EXPRESSION: &str = "InvalidCELExpression";
    pub const FEATURE_GATE_DISABLED: &str = "FeatureGateDisabled";
    pub const HEALTH_CHECK_CANCELED: &str = "HealthCheckCanceled";

    // source-controller api/v1
    pub const URL_INVALID: &str = "URLInvalid";
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    /// `VerificationError` (Flux's constant has no `Reason` suffix).
    pub const VERIFICATION_ERROR: &str = "VerificationError";
    /// Reason of a `StorageOperationFailed` condition.
    pub const DIR_CREATION_FAILED: &str = "DirectoryCreationFailed";
    /// Reason of a `StorageOperationFailed` condition.
    pub const STAT_OPERATION_FAILED: &str = "StatOperationFailed";
    /// Reason of a `StorageOperationFailed` condition.
    pub const READ_OPERATION_FAILED: &str = "ReadOperationFailed";
    /// Reason of a `StorageOperationFailed` condition.
    pub const ACQUIRE_LOCK_FAILED: &str = "AcquireLockFailed";
    /// Reason of a `StorageOperationFailed` condition.
    pub const ARCHIVE_OPERATION_FAILED: &str = "ArchiveOperationFailed";
    /// Reason of a `StorageOperationFailed` condition.
    pub const SYMLINK_UPDATE_FAILED: &str = "SymlinkUpdateFailed";
    pub const ARTIFACT_UP_TO_DATE: &str = "ArtifactUpToDate";
    pub const CACHE_OPERATION_FAILED: &str = "CacheOperationFailed";
    pub const PATCH_OPERATION_FAILED: &str = "PatchOperationFailed";
    pub const INVALID_STS_CONFIGURATION: &str = "InvalidSTSConfiguration";
    pub const INVALID_PROVIDER_CONFIGURATION: &str = "InvalidProviderConfiguration";
    /// GitRepository: a Git operation (clone, checkout, ...) succeeded.
    pub const GIT_OPERATION_SUCCEEDED: &str = "GitOperationSucceeded";
    /// GitRepository: a Git operation (clone, checkout, ...) failed.
    pub const GIT_OPERATION_FAILED: &str = "GitOperationFailed";
    /// Event reason (not a constant in Flux's API, a literal in source-controller) when a new Artifact is stored.
    pub const NEW_ARTIFACT: &str = "NewArtifact";
}

/// Field managers (server-side apply / patch field owners) Flux's controllers use, letter for letter.
pub mod field_managers {
    /// source-controller: status patches and everything else it writes.
    pub const SOURCE_CONTROLLER: &str = "source-controller";
    /// kustomize-controller: server-side apply of the objects it manages.
    pub const KUSTOMIZE_CONTROLLER: &str = "kustomize-controller";
    /// kustomize-controller: patches of its own Kustomization status (`gotk-` + controller name).
    pub const KUSTOMIZE_CONTROLLER_STATUS: &str = "gotk-kustomize-controller";
    /// notification-controller.
    pub const NOTIFICATION_CONTROLLER: &str = "notification-controller";
    /// image-reflector-controller.
    pub const IMAGE_REFLECTOR_CONTROLLER: &str = "image-reflector-controller";
    /// image-automation-controller.
    pub const IMAGE_AUTOMATION_CONTROLLER: &str = "image-automation-controller";
}
