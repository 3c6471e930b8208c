//! Resources and their identities.

use crate::value::{Map, Value};

/// Group, version and kind.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Gvk {
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
}

impl Gvk {
    /// Parses `apiVersion` + `kind`.
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        Gvk {
            group,
            version,
            kind: kind.to_string(),
        }
    }

    /// Whether `selector`'s non-empty fields all match this GVK.
    pub fn is_selected_by(&self, selector: &Gvk) -> bool {
        (selector.group.is_empty() || selector.group == self.group)
            && (selector.version.is_empty() || selector.version == self.version)
            && (selector.kind.is_empty() || selector.kind == self.kind)
    }

    /// Whether this kind is known to be cluster-scoped.
    pub fn is_cluster_scoped(&self) -> bool {
        is_cluster_scoped(&self.group, &self.kind)
    }
}

/// Whether `group`/`kind` is a cluster-scoped Kubernetes kind.
pub fn is_cluster_scoped(group: &str, kind: &str) -> bool {
    match kind {
        "Namespace" | "Node" | "PersistentVolume" | "ComponentStatus" => group.is_empty(),
        "ClusterRole" | "ClusterRoleBinding" => group == "rbac.authorization.k8s.io",
        "CustomResourceDefinition" => group == "apiextensions.k8s.io",
        "APIService" => group == "apiregistration.k8s.io",
        "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment" | "VolumeAttributesClass" => {
            group == "storage.k8s.io"
        }
        "PriorityClass" => group == "scheduling.k8s.io",
        "MutatingWebhookConfiguration"
        | "ValidatingWebhookConfiguration"
        | "ValidatingAdmissionPolicy"
        | "ValidatingAdmissionPolicyBinding"
        | "MutatingAdmissionPolicy"
        | "MutatingAdmissionPolicyBinding" => group == "admissionregistration.k8s.io",
        "CertificateSigningRequest" | "ClusterTrustBundle" => group == "certificates.k8s.io",
        "RuntimeClass" => group == "node.k8s.io",
        "PodSecurityPolicy" => group == "policy" || group == "extensions",
        "IngressClass" | "IPAddress" | "ServiceCIDR" => group == "networking.k8s.io",
        "FlowSchema" | "PriorityLevelConfiguration" => group == "flowcontrol.apiserver.k8s.io",
        "TokenReview" | "SelfSubjectReview" => group == "authentication.k8s.io",
        "SubjectAccessReview" | "SelfSubjectAccessReview" | "SelfSubjectRulesReview" => {
            group == "authorization.k8s.io"
        }
        "StorageVersion" => group == "internal.apiserver.k8s.io",
        "DeviceClass" | "ResourceSlice" => group == "resource.k8s.io",
        _ => false,
    }
}

/// A hashable identity key: group, version, kind, name and effective namespace.
pub type IdKey = (String, String, String, String, String);

/// A resource's identity.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct ResId {
    /// GVK.
    pub gvk: Gvk,
    /// metadata.name.
    pub name: String,
    /// metadata.namespace ("" when unset).
    pub namespace: String,
}

impl ResId {
    /// The namespace, with "" meaning "default" for namespaced kinds.
    pub fn effective_namespace(&self) -> &str {
        if self.gvk.is_cluster_scoped() {
            ""
        } else if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }

    /// Namespace equality treating "" as "default".
    pub fn ns_equals(&self, o: &ResId) -> bool {
        self.effective_namespace() == o.effective_namespace()
    }

    /// A key such that `a.key() == b.key()` exactly when `a.equals(&b)`.
    pub fn key(&self) -> IdKey {
        (
            self.gvk.group.clone(),
            self.gvk.version.clone(),
            self.gvk.kind.clone(),
            self.name.clone(),
            self.effective_namespace().to_string(),
        )
    }

    /// kustomize's `ResId.Equals`.
    pub fn equals(&self, o: &ResId) -> bool {
        self.ns_equals(o) && self.gvk == o.gvk && self.name == o.name
    }
}

impl std::fmt::Display for ResId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = if self.namespace.is_empty() {
            "[noNs]"
        } else {
            &self.namespace
        };
        write!(
            f,
            "{}.{}.{}/{}.{}",
            self.gvk.kind,
            if self.gvk.version.is_empty() {
                "[noVer]"
            } else {
                &self.gvk.version
            },
            if self.gvk.group.is_empty() {
                "[noGrp]"
            } else {
                &self.gvk.group
            },
            self.name,
            ns
        )
    }
}

/// How a generated resource combines with an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behavior {
    /// Not set (same as create).
    #[default]
    Unspecified,
    /// Create; fail if it exists.
    Create,
    /// Replace the existing one.
    Replace,
    /// Merge data into the existing one.
    Merge,
}

/// An object being built, with the bookkeeping kustomize keeps beside it.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The object.
    pub obj: Value,
    /// Earlier identities (name, namespace, kind), oldest first.
    pub prev: Vec<(String, String, String)>,
    /// Name prefixes applied, in order.
    pub prefixes: Vec<String>,
    /// Name suffixes applied, in order.
    pub suffixes: Vec<String>,
    /// Whether a hash suffix is appended at the end of the build.
    pub needs_hash: bool,
    /// Generator behavior.
    pub behavior: Behavior,
    /// Names of vars referenced (for diagnostics).
    pub ref_var_names: Vec<String>,
    /// `config.kubernetes.io/origin` value, when buildMetadata asks for it.
    pub origin: Option<String>,
}

impl Resource {
    /// Wraps an object.
    pub fn new(obj: Value) -> Self {
        Resource {
            obj,
            prev: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            needs_hash: false,
            behavior: Behavior::Unspecified,
            ref_var_names: Vec::new(),
            origin: None,
        }
    }

    /// apiVersion.
    pub fn api_version(&self) -> &str {
        self.obj.str_at(&["apiVersion"]).unwrap_or("")
    }

    /// kind.
    pub fn kind(&self) -> &str {
        self.obj.str_at(&["kind"]).unwrap_or("")
    }

    /// metadata.name.
    pub fn name(&self) -> &str {
        self.obj.str_at(&["metadata", "name"]).unwrap_or("")
    }

    /// metadata.namespace.
    pub fn namespace(&self) -> &str {
        self.obj.str_at(&["metadata", "namespace"]).unwrap_or("")
    }

    /// GVK.
    pub fn gvk(&self) -> Gvk {
        Gvk::from_api_version(self.api_version(), self.kind())
    }

    /// Current id.
    pub fn cur_id(&self) -> ResId {
        ResId {
            gvk: self.gvk(),
            name: self.name().to_string(),
            namespace: self.namespace().to_string(),
        }
    }

    /// Earlier ids (with the current group/version).
    pub fn prev_ids(&self) -> Vec<ResId> {
        let gvk = self.gvk();
        self.prev
            .iter()
            .map(|(n, ns, k)| ResId {
                gvk: Gvk {
                    kind: k.clone(),
                    ..gvk.clone()
                },
                name: n.clone(),
                namespace: ns.clone(),
            })
            .collect()
    }

    /// The original id.
    pub fn org_id(&self) -> ResId {
        self.prev_ids()
            .into_iter()
            .next()
            .unwrap_or_else(|| self.cur_id())
    }

    /// Records the current id as a previous id.
    pub fn store_previous_id(&mut self) {
        let id = self.cur_id();
        let ns = id.effective_namespace().to_string();
        self.prev.push((id.name, ns, id.gvk.kind));
    }

    /// The metadata map, created if missing.
    pub fn metadata_mut(&mut self) -> Option<&mut Map> {
        self.obj.entry_map("metadata")
    }

    /// Sets metadata.name.
    pub fn set_name(&mut self, name: &str) {
        if let Some(m) = self.metadata_mut() {
            m.insert("name".into(), Value::Str(name.to_string()));
        }
    }

    /// Sets metadata.namespace.
    pub fn set_namespace(&mut self, ns: &str) {
        if let Some(m) = self.metadata_mut() {
            if ns.is_empty() {
                m.remove("namespace");
            } else {
                m.insert("namespace".into(), Value::Str(ns.to_string()));
            }
        }
    }

    /// A string map under metadata (labels/annotations).
    pub fn string_map(&self, field: &str) -> Vec<(String, String)> {
        match self.obj.get_path(&["metadata", field]) {
            Some(Value::Map(m)) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.scalar_string().unwrap_or_default()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A label or annotation value.
    pub fn meta_value(&self, field: &str, key: &str) -> Option<String> {
        self.obj
            .get_path(&["metadata", field, key])
            .and_then(Value::scalar_string)
    }

    /// Whether the object is empty (no fields at all).
    pub fn is_empty(&self) -> bool {
        match &self.obj {
            Value::Map(m) => m.is_empty(),
            Value::Null | Value::EmptyNull => true,
            _ => false,
        }
    }
}

/// Whether `a` and `b` end with the same subsequence (kustomize's SameEndingSubSlice).
pub fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() > b.len() { (b, a) } else { (a, b) };
    if short.is_empty() {
        return long.is_empty();
    }
    let diff = long.len() - short.len();
    short.iter().enumerate().all(|(i, s)| &long[i + diff] == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvk_parsing_and_selection() {
        let g = Gvk::from_api_version("apps/v1", "Deployment");
        assert_eq!(g.group, "apps");
        assert!(g.is_selected_by(&Gvk {
            kind: "Deployment".into(),
            ..Gvk::default()
        }));
        assert!(!g.is_selected_by(&Gvk {
            group: "batch".into(),
            ..Gvk::default()
        }));
        assert_eq!(Gvk::from_api_version("v1", "Pod").version, "v1");
    }

    #[test]
    fn ending_slices() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(same_ending(&s(&["a", "b"]), &s(&["b"])));
        assert!(!same_ending(&s(&["a", "b"]), &s(&["a"])));
        assert!(same_ending(&s(&[]), &s(&[])));
        assert!(!same_ending(&s(&[]), &s(&["a"])));
    }
}
