//! The static table of built-in resources and their list merge semantics.

use crate::schema::ListType;

/// A served resource (one group/version/plural).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    /// API group, empty for core.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Has a `/status` subresource.
    pub status: bool,
    /// For CRDs: the version's schema (structural `openAPIV3Schema`).
    pub schema: Option<serde_json::Value>,
    /// For CRDs: the CRD name; `None` for built-ins.
    pub crd: Option<String>,
    /// For CRDs: additionalPrinterColumns of this version.
    pub printer_columns: Vec<serde_json::Value>,
    /// For CRDs: `subresources.scale` of this version.
    pub crd_scale: Option<serde_json::Value>,
}

/// Where a resource keeps what its `/scale` subresource shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// e.g. `.spec.replicas`
    pub spec_replicas: String,
    /// e.g. `.status.replicas`
    pub status_replicas: String,
    /// e.g. `.status.selector` (a string) or, for built-ins, `.spec.selector` (a LabelSelector).
    pub label_selector: Option<String>,
}

impl ResourceDef {
    /// `group/version` or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Verbs served for the main resource.
    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// The `/scale` subresource, if any.
    pub fn scale(&self) -> Option<ScalePaths> {
        if let Some(sc) = &self.crd_scale {
            return Some(ScalePaths {
                spec_replicas: sc["specReplicasPath"].as_str()?.to_string(),
                status_replicas: sc["statusReplicasPath"].as_str()?.to_string(),
                label_selector: sc["labelSelectorPath"].as_str().map(str::to_string),
            });
        }
        if self.crd.is_none()
            && matches!(
                self.kind.as_str(),
                "Deployment" | "StatefulSet" | "ReplicaSet"
            )
        {
            return Some(ScalePaths {
                spec_replicas: ".spec.replicas".into(),
                status_replicas: ".status.replicas".into(),
                label_selector: Some(".spec.selector".into()),
            });
        }
        None
    }

    /// Whether a write changes `metadata.generation` on spec change (everything but a few kinds without spec).
    pub fn tracks_generation(&self) -> bool {
        !matches!(
            self.kind.as_str(),
            "ConfigMap"
                | "Secret"
                | "Namespace"
                | "ServiceAccount"
                | "Event"
                | "Endpoints"
                | "Role"
                | "ClusterRole"
                | "RoleBinding"
                | "ClusterRoleBinding"
                | "Lease"
        ) || self.crd.is_some()
    }
}

struct Row {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    all: bool,
    status: bool,
}

#[allow(clippy::too_many_arguments)]
const fn row(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    all: bool,
    status: bool,
) -> Row {
    Row {
        group,
        version,
        kind,
        plural,
        short,
        namespaced,
        all,
        status,
    }
}

const ROWS: &[Row] = &[
    row(
        "",
        "v1",
        "Namespace",
        "namespaces",
        &["ns"],
        false,
        false,
        true,
    ),
    row(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        &["cm"],
        true,
        false,
        false,
    ),
    row("", "v1", "Secret", "secrets", &[], true, false, false),
    row("", "v1", "Service", "services", &["svc"], true, true, true),
    row(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        &["sa"],
        true,
        false,
        false,
    ),
    row("", "v1", "Pod", "pods", &["po"], true, true, true),
    row("", "v1", "Event", "events", &["ev"], true, false, false),
    row(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        &["ep"],
        true,
        false,
        false,
    ),
    row(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        &["pvc"],
        true,
        false,
        true,
    ),
    row(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        &["ev"],
        true,
        false,
        false,
    ),
    row(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        &["deploy"],
        true,
        true,
        true,
    ),
    row(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        &["sts"],
        true,
        true,
        true,
    ),
    row(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        &["ds"],
        true,
        true,
        true,
    ),
    row(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        &["rs"],
        true,
        true,
        true,
    ),
    row("batch", "v1", "Job", "jobs", &[], true, true, true),
    row(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        &["cj"],
        true,
        true,
        true,
    ),
    row(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        &["ing"],
        true,
        false,
        true,
    ),
    row(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        &["netpol"],
        true,
        false,
        false,
    ),
    row(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        &[],
        true,
        false,
        false,
    ),
    row(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        &[],
        true,
        false,
        false,
    ),
    row(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        &[],
        false,
        false,
        false,
    ),
    row(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        &[],
        false,
        false,
        false,
    ),
    row(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        false,
        false,
        true,
    ),
    row(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        &[],
        true,
        false,
        false,
    ),
    row(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        true,
        false,
        true,
    ),
    row(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        &["hpa"],
        true,
        true,
        true,
    ),
];

/// All built-in resources.
pub fn builtin_resources() -> Vec<ResourceDef> {
    ROWS.iter()
        .map(|r| ResourceDef {
            group: r.group.to_string(),
            version: r.version.to_string(),
            kind: r.kind.to_string(),
            plural: r.plural.to_string(),
            singular: r.kind.to_lowercase(),
            short_names: r.short.iter().map(|s| s.to_string()).collect(),
            namespaced: r.namespaced,
            categories: if r.all {
                vec!["all".to_string()]
            } else {
                vec![]
            },
            status: r.status,
            schema: None,
            crd: None,
            printer_columns: vec![],
            crd_scale: None,
        })
        .collect()
}

/// The list semantics of a built-in type at a path of field names (list indices left out),
/// following the `patchMergeKey`/`listType` markers of the Kubernetes API types.
pub fn builtin_list_type(kind: &str, path: &[String]) -> ListType {
    let Some(last) = path.last() else {
        return ListType::Atomic;
    };
    let parent = path.len().checked_sub(2).and_then(|i| path.get(i));
    let keys = |k: &[&str]| ListType::Map(k.iter().map(|s| s.to_string()).collect());
    match last.as_str() {
        "finalizers" if path.len() == 2 => ListType::Set,
        "ownerReferences" => keys(&["uid"]),
        "containers" | "initContainers" | "ephemeralContainers" => keys(&["name"]),
        "env" | "volumes" | "imagePullSecrets" | "resourceClaims" => keys(&["name"]),
        "volumeMounts" => keys(&["mountPath"]),
        "volumeDevices" => keys(&["devicePath"]),
        "hostAliases" => keys(&["ip"]),
        "conditions" => keys(&["type"]),
        "topologySpreadConstraints" => keys(&["topologyKey", "whenUnsatisfiable"]),
        "ports" => match parent.map(String::as_str) {
            Some(p) if p.ends_with("ontainers") => keys(&["containerPort", "protocol"]),
            Some("spec") if kind == "Service" => keys(&["port", "protocol"]),
            _ => ListType::Atomic,
        },
        _ => ListType::Atomic,
    }
}
