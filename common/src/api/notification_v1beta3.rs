//! `notification.toolkit.fluxcd.io/v1beta3`: Provider and Alert.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::LocalObjectReference;

/// AlertSpec defines an alerting rule for events involving a list of objects.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1beta3",
    kind = "Alert",
    namespaced,
    category = "all",
    category = "fluxcd",
    category = "fluxcd-notifications",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "Alert is the Schema for the alerts API"
)]
#[serde(rename_all = "camelCase")]
pub struct AlertSpec {
    /// EventMetadata is an optional field for adding metadata to events dispatched by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_metadata: Option<BTreeMap<String, String>>,
    /// EventSeverity specifies how to filter events based on severity.
    /// If set to 'info' no events will be filtered.
    #[serde(default = "default_event_severity")]
    #[schemars(default = "default_event_severity")]
    pub event_severity: EventSeverity,
    /// EventSources specifies how to filter events based on the involved object kind, name and namespace.
    pub event_sources: Vec<CrossNamespaceObjectReference>,
    /// ExclusionList specifies a list of Golang regular expressions to be used for excluding messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusion_list: Option<Vec<String>>,
    /// InclusionList specifies a list of Golang regular expressions to be used for including messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion_list: Option<Vec<String>>,
    /// ProviderRef specifies which Provider this Alert should use.
    pub provider_ref: LocalObjectReference,
    /// Summary holds a short description of the impact and affected cluster.
    /// Deprecated: Use EventMetadata instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub summary: Option<String>,
    /// Suspend tells the controller to suspend subsequent events handling for this Alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

fn default_event_severity() -> EventSeverity {
    EventSeverity::Info
}

/// The severity an Alert filters on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventSeverity {
    #[default]
    Info,
    Error,
}

/// CrossNamespaceObjectReference contains enough information to let you locate the typed referenced object
/// at cluster level
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceObjectReference {
    /// API version of the referent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent
    #[schemars(extend("enum" = ["Bucket", "GitRepository", "Kustomization", "HelmRelease", "HelmChart", "HelmRepository", "ImageRepository", "ImagePolicy", "ImageUpdateAutomation", "OCIRepository", "ArtifactGenerator", "ExternalArtifact"]))]
    pub kind: String,
    /// MatchLabels is a map of {key,value} pairs. MatchLabels requires the name to be set to `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Name of the referent
    /// If multiple resources are targeted `*` may be set.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the referent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub namespace: Option<String>,
}

/// The CRDs of this group/version.
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![super::flux_crd(Alert::crd())]
}
