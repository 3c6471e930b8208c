//! `notification.toolkit.fluxcd.io/v1`: Receiver.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::{Conditions, LocalObjectReference};

/// ReceiverSpec defines the desired state of the Receiver.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1",
    kind = "Receiver",
    namespaced,
    status = "ReceiverStatus",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-notifications",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    doc = "Receiver is the Schema for the receivers API."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "message": "generic-oidc receivers must define at least one oidcProvider",
        "rule": "self.type != 'generic-oidc' || (has(self.oidcProviders) && size(self.oidcProviders) > 0)"
    },
    {
        "message": "oidcProviders can only be set when type is generic-oidc",
        "rule": "self.type == 'generic-oidc' || !has(self.oidcProviders) || size(self.oidcProviders) == 0"
    },
    {
        "message": "secretRef cannot be set when type is generic-oidc",
        "rule": "self.type != 'generic-oidc' || !has(self.secretRef)"
    },
    {
        "message": "secretRef is required when type is not generic-oidc",
        "rule": "self.type == 'generic-oidc' || has(self.secretRef)"
    }
]))]
pub struct ReceiverSpec {
    /// Events specifies the list of event types to handle,
    /// e.g. 'push' for GitHub or 'Push Hook' for GitLab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Interval at which to reconcile the Receiver with its Secret references.
    #[serde(default = "default_interval")]
    #[schemars(
        default = "default_interval",
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
    )]
    pub interval: String,
    /// OIDCProviders specifies the OIDC providers used to authenticate incoming
    /// requests when Type is 'generic-oidc'. The provider whose IssuerURL matches
    /// the token's 'iss' claim is used to verify the token signature, expiration
    /// and audience, and to evaluate the configured CEL validations against the
    /// token claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-map-keys" = ["issuerURL"], "x-kubernetes-list-type" = "map"))]
    pub oidc_providers: Option<Vec<OidcProvider>>,
    /// ResourceFilter is a CEL expression expected to return a boolean that is
    /// evaluated for each resource referenced in the Resources field when a
    /// webhook is received. If the expression returns false then the controller
    /// will not request a reconciliation for the resource.
    /// The expression can read the resource metadata via 'res' and the webhook
    /// request body via 'req'. For generic-oidc receivers, the verified OIDC
    /// token claims are also available via 'claims'.
    /// When the expression is specified the controller will parse it and mark
    /// the object as terminally failed if the expression is invalid or does not
    /// return a boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_filter: Option<String>,
    /// A list of resources to be notified about changes.
    pub resources: Vec<ReceiverResource>,
    /// SecretRef specifies the Secret containing the token used
    /// to validate the payload authenticity. The Secret must contain a 'token'
    /// key. For GCR receivers, the Secret must also contain an 'email' key
    /// with the IAM service account email configured on the Pub/Sub push
    /// subscription, and an 'audience' key with the expected OIDC token audience.
    ///
    /// Required for all receiver types except 'generic-oidc', which authenticates
    /// requests using the OIDC token instead and must not set this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Suspend tells the controller to suspend subsequent
    /// events handling for this receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Type of webhook sender, used to determine
    /// the validation procedure and payload deserialization.
    // One of `RECEIVER_TYPES`; a string so that the controller can report an unknown type itself.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["generic", "generic-hmac", "generic-oidc", "github", "gitlab", "bitbucket", "harbor", "dockerhub", "quay", "gcr", "nexus", "acr", "cdevents"]))]
    pub type_: String,
}

fn default_interval() -> String {
    "10m".to_owned()
}

/// Every Receiver type Flux 2.9 accepts in `spec.type`, in the order of the CRD's enum.
pub const RECEIVER_TYPES: &[&str] = &[
    "generic",
    "generic-hmac",
    "generic-oidc",
    "github",
    "gitlab",
    "bitbucket",
    "harbor",
    "dockerhub",
    "quay",
    "gcr",
    "nexus",
    "acr",
    "cdevents",
];

/// OIDCProvider configures an OIDC issuer used to authenticate requests for a
/// 'generic-oidc' Receiver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcProvider {
    /// Audience is the expected audience ('aud' claim) for tokens issued by
    /// this provider. Defaults to 'notification-controller'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// IssuerURL is the OIDC issuer URL used for provider discovery. It must
    /// match the 'iss' claim of tokens issued by this provider.
    #[serde(rename = "issuerURL")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub issuer_url: String,
    /// Validations is the list of CEL boolean expressions evaluated against the
    /// token claims and the variables. The request is accepted only if all of
    /// them evaluate to true; the message of each failing expression is returned
    /// to the caller.
    ///
    /// At least one validation is required. A valid signature alone does not
    /// authorize a request: public issuers issue tokens to any caller on the
    /// platform, so the validations must constrain the caller's identity claims
    /// (e.g. 'repository_owner' for GitHub Actions).
    #[schemars(length(min = 1))]
    pub validations: Vec<OidcValidation>,
    /// Variables is an optional list of named CEL expressions, evaluated in order
    /// and exposed as 'vars.<name>'. Each expression can read the token claims
    /// via 'claims' and any variable defined before it. Use it to share
    /// sub-expressions across validations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<OidcVariable>>,
}

/// OIDCValidation is a CEL boolean expression evaluated against the OIDC token
/// claims and variables of a 'generic-oidc' Receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OidcValidation {
    /// Expression is the CEL boolean expression to evaluate.
    pub expression: String,
    /// Message is returned to the caller when the expression evaluates to false.
    pub message: String,
}

/// OIDCVariable is a named CEL expression evaluated against the OIDC token
/// claims of a 'generic-oidc' Receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OidcVariable {
    /// Expression is the CEL expression that defines the variable value.
    pub expression: String,
    /// Name is the variable name; it must be a valid CEL identifier.
    pub name: String,
}

/// ReceiverResource references a resource to be notified about changes, with an
/// optional per-resource CEL filter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverResource {
    /// API version of the referent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Filter is a CEL expression expected to return a boolean that is evaluated
    /// for each resource matched by this reference when a webhook is received,
    /// in addition to the top-level resourceFilter. A reconciliation is requested
    /// only when both expressions (when set) return true.
    /// The expression can read the resource metadata via 'res' and the webhook
    /// request body via 'req'. For generic-oidc receivers, the verified OIDC
    /// token claims are also available via 'claims'.
    /// When the expression is specified the controller will parse it and mark
    /// the object as terminally failed if the expression is invalid or does not
    /// return a boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Kind of the referent
    #[schemars(extend("enum" = ["Bucket", "GitRepository", "Kustomization", "HelmRelease", "HelmChart", "HelmRepository", "ImageRepository", "ImagePolicy", "ImageUpdateAutomation", "OCIRepository", "ArtifactGenerator", "ExternalArtifact"]))]
    pub kind: String,
    /// MatchLabels is a map of {key,value} pairs. A single {key,value} in the matchLabels
    /// map is equivalent to an element of matchExpressions, whose key field is "key", the
    /// operator is "In", and the values array contains only "value". The requirements are ANDed.
    /// MatchLabels requires the name to be set to `*`.
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

/// ReceiverStatus defines the observed state of the Receiver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": -1}))]
pub struct ReceiverStatus {
    /// Conditions holds the conditions for the Receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
    /// LastHandledReconcileAt holds the value of the most recent
    /// reconcile request value, so a change of the annotation value
    /// can be detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// ObservedGeneration is the last observed generation of the Receiver object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// WebhookPath is the generated incoming webhook address in the format
    /// of '/hook/sha256sum(token+name+namespace)'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
}

/// Like the API server's defaulting: a fresh status has `observedGeneration: -1`.
impl Default for ReceiverStatus {
    fn default() -> Self {
        Self {
            conditions: None,
            last_handled_reconcile_at: None,
            observed_generation: Some(-1),
            webhook_path: None,
        }
    }
}

/// The CRDs of this group/version.
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![super::flux_crd(Receiver::crd())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_receiver_defaults_interval() {
        let receiver: Receiver = serde_saphyr::from_str(
            r#"
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata:
  name: github-receiver
  namespace: flux-system
spec:
  type: github
  events:
    - "ping"
    - "push"
  secretRef:
    name: receiver-token
  resources:
    - apiVersion: source.toolkit.fluxcd.io/v1
      kind: GitRepository
      name: flux-system
"#,
        )
        .unwrap();
        let spec = &receiver.spec;
        assert_eq!(spec.type_, "github");
        assert_eq!(spec.interval, "10m");
        assert_eq!(
            spec.events.as_deref(),
            Some(&["ping".to_owned(), "push".to_owned()][..])
        );
        assert_eq!(spec.secret_ref.as_ref().unwrap().name, "receiver-token");
        assert_eq!(spec.resources.len(), 1);
        let resource = &spec.resources[0];
        assert_eq!(resource.kind, "GitRepository");
        assert_eq!(resource.name, "flux-system");
        assert_eq!(resource.namespace, None);
        assert_eq!(resource.filter, None);
        assert_eq!(spec.oidc_providers, None);
        assert_eq!(receiver.status, None);
        assert!(RECEIVER_TYPES.contains(&spec.type_.as_str()));
    }

    #[test]
    fn generic_oidc_receiver_with_wildcard_resources() {
        let receiver: Receiver = serde_saphyr::from_str(
            r#"
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata:
  name: gha-receiver
spec:
  type: generic-oidc
  interval: 1h
  resourceFilter: 'has(res.metadata.annotations)'
  oidcProviders:
    - issuerURL: https://token.actions.githubusercontent.com
      variables:
        - name: owner
          expression: claims.repository_owner
      validations:
        - expression: vars.owner == 'fluxcd'
          message: only fluxcd may call
  resources:
    - kind: OCIRepository
      name: "*"
      matchLabels:
        app: podinfo
      filter: res.metadata.name != 'skip'
"#,
        )
        .unwrap();
        let spec = &receiver.spec;
        assert_eq!(spec.interval, "1h");
        assert_eq!(spec.secret_ref, None);
        let oidc = &spec.oidc_providers.as_ref().unwrap()[0];
        assert_eq!(
            oidc.issuer_url,
            "https://token.actions.githubusercontent.com"
        );
        assert_eq!(oidc.audience, None);
        assert_eq!(oidc.validations[0].message, "only fluxcd may call");
        assert_eq!(oidc.variables.as_ref().unwrap()[0].name, "owner");
        let resource = &spec.resources[0];
        assert_eq!(resource.name, "*");
        assert_eq!(resource.match_labels.as_ref().unwrap()["app"], "podinfo");
        // Field names are Flux's when written back.
        let json = serde_json::to_value(spec).unwrap();
        assert!(json["oidcProviders"][0].get("issuerURL").is_some());
        assert_eq!(json["type"], "generic-oidc");
    }

    #[test]
    fn receiver_status_defaults_like_the_api_server() {
        assert_eq!(ReceiverStatus::default().observed_generation, Some(-1));
        let status: ReceiverStatus = serde_json::from_value(serde_json::json!({
            "webhookPath": "/hook/abc",
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": "Receiver initialized for path: /hook/abc",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }],
        }))
        .unwrap();
        assert_eq!(status.webhook_path.as_deref(), Some("/hook/abc"));
        assert_eq!(status.observed_generation, None);
        assert_eq!(status.conditions.unwrap()[0].reason, "Succeeded");
    }

    #[test]
    fn receiver_crd_has_flux_shape() {
        let crd = crds().remove(0);
        assert_eq!(crd.spec.names.kind, "Receiver");
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Age", "Ready", "Status"]);
        let props = version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap()
            .properties
            .as_ref()
            .unwrap();
        let spec = &props["spec"];
        assert_eq!(spec.x_kubernetes_validations.as_ref().unwrap().len(), 4);
        let interval = &spec.properties.as_ref().unwrap()["interval"];
        assert_eq!(interval.default.as_ref().unwrap().0, "10m");
        assert_eq!(
            props["status"].default.as_ref().unwrap().0,
            serde_json::json!({"observedGeneration": -1})
        );
    }
}

crate::impl_flux_object!(
    Receiver,
    ReceiverStatus,
    suspend = |o| o.spec.suspend,
    interval = |o| Some(o.spec.interval.as_str()),
);
