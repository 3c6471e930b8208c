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

/// ProviderSpec defines the desired state of the Provider.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1beta3",
    kind = "Provider",
    namespaced,
    category = "all",
    category = "fluxcd",
    category = "fluxcd-notifications",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "Provider is the Schema for the providers API"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "message": "spec.commitStatusExpr is only supported for the 'github', 'gitlab', 'gitea', 'bitbucketserver', 'bitbucket', 'azuredevops' provider types",
    "rule": "self.type == 'github' || self.type == 'gitlab' || self.type == 'gitea' || self.type == 'bitbucketserver' || self.type == 'bitbucket' || self.type == 'azuredevops' || !has(self.commitStatusExpr)"
}]))]
pub struct ProviderSpec {
    /// Address specifies the endpoint, in a generic sense, to where alerts are sent.
    /// What kind of endpoint depends on the specific Provider type being used.
    /// For the generic Provider, for example, this is an HTTP/S address.
    /// For other Provider types this could be a project ID or a namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub address: Option<String>,
    /// CertSecretRef specifies the Secret containing TLS certificates
    /// for secure communication.
    ///
    /// Supported configurations:
    /// - CA-only: Server authentication (provide ca.crt only)
    /// - mTLS: Mutual authentication (provide ca.crt + tls.crt + tls.key)
    /// - Client-only: Client authentication with system CA (provide tls.crt + tls.key only)
    ///
    /// Legacy keys "caFile", "certFile", "keyFile" are supported but deprecated. Use "ca.crt", "tls.crt", "tls.key" instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// Channel specifies the destination channel where events should be posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub channel: Option<String>,
    /// CommitStatusExpr is a CEL expression that evaluates to a string value
    /// that can be used to generate a custom commit status message for use
    /// with eligible Provider types (github, gitlab, gitea, bitbucketserver,
    /// bitbucket, azuredevops). Supported variables are: event, provider,
    /// and alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_status_expr: Option<String>,
    /// Interval at which to reconcile the Provider with its Secret references.
    /// Deprecated and not used in v1beta3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: Option<String>,
    /// Proxy the HTTP/S address of the proxy server.
    /// Deprecated: Use ProxySecretRef instead. Will be removed in v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^(http|https)://.*$"))]
    pub proxy: Option<String>,
    /// ProxySecretRef specifies the Secret containing the proxy configuration
    /// for this Provider. The Secret should contain an 'address' key with the
    /// HTTP/S address of the proxy server. Optional 'username' and 'password'
    /// keys can be provided for proxy authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// SecretRef specifies the Secret containing the authentication
    /// credentials for this Provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// ServiceAccountName is the name of the Kubernetes ServiceAccount used to
    /// authenticate with cloud provider services through workload identity.
    /// This enables multi-tenant authentication without storing static credentials.
    ///
    /// Supported provider types: azureeventhub, azuredevops, googlepubsub
    ///
    /// When specified, the controller will:
    /// 1. Create an OIDC token for the specified ServiceAccount
    /// 2. Exchange it for cloud provider credentials via STS
    /// 3. Use the obtained credentials for API authentication
    ///
    /// When unspecified, controller-level authentication is used (single-tenant).
    ///
    /// An error is thrown if static credentials are also defined in SecretRef.
    /// This field requires the ObjectLevelWorkloadIdentity feature gate to be enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Suspend tells the controller to suspend subsequent
    /// events handling for this Provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Timeout for sending alerts to the Provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"))]
    pub timeout: Option<String>,
    /// Type specifies which Provider implementation to use.
    // One of `PROVIDER_TYPES`; a string so that the controller can report an unknown type itself.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["slack", "discord", "msteams", "rocket", "generic", "generic-hmac", "github", "gitlab", "gitea", "giteapullrequestcomment", "bitbucketserver", "bitbucket", "azuredevops", "googlechat", "googlepubsub", "webex", "sentry", "azureeventhub", "telegram", "lark", "matrix", "opsgenie", "alertmanager", "grafana", "githubdispatch", "githubpullrequestcomment", "gitlabmergerequestcomment", "pagerduty", "datadog", "nats", "zulip", "otel", "zoom", "incident.io"]))]
    pub type_: String,
    /// Username specifies the name under which events are posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub username: Option<String>,
}

/// Every Provider type Flux 2.9 accepts in `spec.type`, in the order of the CRD's enum.
pub const PROVIDER_TYPES: &[&str] = &[
    "slack",
    "discord",
    "msteams",
    "rocket",
    "generic",
    "generic-hmac",
    "github",
    "gitlab",
    "gitea",
    "giteapullrequestcomment",
    "bitbucketserver",
    "bitbucket",
    "azuredevops",
    "googlechat",
    "googlepubsub",
    "webex",
    "sentry",
    "azureeventhub",
    "telegram",
    "lark",
    "matrix",
    "opsgenie",
    "alertmanager",
    "grafana",
    "githubdispatch",
    "githubpullrequestcomment",
    "gitlabmergerequestcomment",
    "pagerduty",
    "datadog",
    "nats",
    "zulip",
    "otel",
    "zoom",
    "incident.io",
];

/// The Provider types whose `spec.commitStatusExpr` is allowed (Flux's CEL rule on `spec`).
pub const COMMIT_STATUS_PROVIDER_TYPES: &[&str] = &[
    "github",
    "gitlab",
    "gitea",
    "bitbucketserver",
    "bitbucket",
    "azuredevops",
];

/// The CRDs of this group/version.
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![
        super::flux_crd(Provider::crd()),
        super::flux_crd(Alert::crd()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_provider_from_flux_docs() {
        let provider: Provider = serde_saphyr::from_str(
            r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata:
  name: slack-bot
  namespace: flux-system
spec:
  type: slack
  channel: general
  address: https://slack.com/api/chat.postMessage
  secretRef:
    name: slack-bot-token
"#,
        )
        .unwrap();
        let spec = &provider.spec;
        assert_eq!(spec.type_, "slack");
        assert_eq!(spec.channel.as_deref(), Some("general"));
        assert_eq!(
            spec.address.as_deref(),
            Some("https://slack.com/api/chat.postMessage")
        );
        assert_eq!(spec.secret_ref.as_ref().unwrap().name, "slack-bot-token");
        assert_eq!(spec.suspend, None);
        assert_eq!(spec.timeout, None);
        assert_eq!(spec.cert_secret_ref, None);
        assert!(PROVIDER_TYPES.contains(&spec.type_.as_str()));
    }

    #[test]
    fn github_provider_with_commit_status_expr() {
        let provider: Provider = serde_saphyr::from_str(
            r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata:
  name: github-status
spec:
  type: github
  address: https://github.com/stefanprodan/podinfo
  secretRef:
    name: github-token
  commitStatusExpr: "(event.involvedObject.kind + '/' + event.involvedObject.name)"
  timeout: 30s
"#,
        )
        .unwrap();
        assert!(provider.spec.commit_status_expr.is_some());
        assert!(COMMIT_STATUS_PROVIDER_TYPES.contains(&provider.spec.type_.as_str()));
        assert_eq!(provider.spec.timeout.as_deref(), Some("30s"));
        // Optional fields that were not set are not written back.
        let json = serde_json::to_value(&provider.spec).unwrap();
        assert!(json.get("proxy").is_none());
        assert!(json.get("suspend").is_none());
    }

    #[test]
    fn provider_crd_has_flux_shape() {
        let crd = crds()
            .into_iter()
            .find(|c| c.spec.names.kind == "Provider")
            .unwrap();
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1beta3");
        assert!(
            version.subresources.is_none(),
            "Flux's Provider has no status"
        );
        let spec = &version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap()
            .properties
            .as_ref()
            .unwrap()["spec"];
        assert_eq!(spec.required.as_deref(), Some(&["type".to_owned()][..]));
        let rules = spec.x_kubernetes_validations.as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].rule.contains("!has(self.commitStatusExpr)"));
        let types = spec.properties.as_ref().unwrap()["type"]
            .enum_
            .as_ref()
            .unwrap();
        let types: Vec<_> = types.iter().map(|t| t.0.as_str().unwrap()).collect();
        assert_eq!(types, PROVIDER_TYPES);
    }
}
