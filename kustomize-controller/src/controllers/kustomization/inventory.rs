//! Object identity as Flux writes it (`<namespace>_<name>_<group>_<Kind>` ids with the version beside them), the
//! change set, Flux's apply order and the inventory diff.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;

use common::api::kustomize_v1::{ResourceInventory, ResourceRef};
use serde_json::Value;

/// Group, kind, namespace and name of an object (cli-utils' `ObjMetadata`) plus its version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjMeta {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjMeta {
    /// From an object's `apiVersion`, `kind` and metadata.
    pub fn of(obj: &Value) -> ObjMeta {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = split_api_version(api_version);
        ObjMeta {
            group: group.to_string(),
            version: version.to_string(),
            kind: obj["kind"].as_str().unwrap_or_default().to_string(),
            namespace: obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            name: obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// Parses an inventory entry.
    pub fn from_ref(r: &ResourceRef) -> Option<ObjMeta> {
        // The namespace and name cannot contain '_'; the group cannot either; the kind may not.
        let mut parts = r.id.splitn(4, '_');
        let namespace = parts.next()?.to_string();
        let name = parts.next()?.to_string();
        let group = parts.next()?.to_string();
        let kind = parts.next()?.to_string();
        if name.is_empty() || kind.is_empty() {
            return None;
        }
        Some(ObjMeta {
            group,
            version: r.version.clone(),
            kind,
            namespace,
            name,
        })
    }

    /// Flux's inventory id.
    pub fn id(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.namespace, self.name, self.group, self.kind
        )
    }

    /// `group/version` or `version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The inventory entry.
    pub fn to_ref(&self) -> ResourceRef {
        ResourceRef {
            id: self.id(),
            version: self.version.clone(),
        }
    }
}

/// `Kind/namespace/name` or `Kind/name`, as Flux prints objects.
impl fmt::Display for ObjMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Deleted,
    Skipped,
    Unknown,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
            Action::Skipped => "skipped",
            Action::Unknown => "unknown",
        }
    }

    /// Created or configured (Flux's `HasChanged`).
    pub fn changed(self) -> bool {
        matches!(self, Action::Created | Action::Configured)
    }
}

/// One change set entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub object: ObjMeta,
    pub action: Action,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.object, self.action.as_str())
    }
}

/// Lines of `Kind/ns/name action`.
pub fn format_changes<'a>(changes: impl IntoIterator<Item = &'a Change>) -> String {
    changes
        .into_iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

const FIRST: &[&str] = &[
    "CustomResourceDefinition",
    "Namespace",
    "ClusterRole",
    "ClusterClass",
    "RuntimeClass",
    "PriorityClass",
    "StorageClass",
    "VolumeSnapshotClass",
    "IngressClass",
    "GatewayClass",
    "ClusterRoleBinding",
    "ResourceQuota",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "LimitRange",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn kind_index(kind: &str) -> i64 {
    if let Some(i) = FIRST.iter().position(|k| *k == kind) {
        return i as i64 - FIRST.len() as i64;
    }
    if let Some(i) = LAST.iter().position(|k| *k == kind) {
        return 1 + i as i64;
    }
    0
}

/// Flux's reconcile order: known kinds first (CRDs, Namespaces, ...), webhooks last, then group, kind,
/// namespace, name.
pub fn order(a: &ObjMeta, b: &ObjMeta) -> Ordering {
    if a.group != b.group || a.kind != b.kind {
        return kind_index(&a.kind)
            .cmp(&kind_index(&b.kind))
            .then_with(|| a.group.cmp(&b.group))
            .then_with(|| a.kind.cmp(&b.kind));
    }
    a.namespace
        .cmp(&b.namespace)
        .then_with(|| a.name.cmp(&b.name))
}

/// Apply stages, as `fluxcd/pkg/ssa` stages them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// CRDs, Namespaces and ClusterRoles: applied first and waited for.
    Definitions,
    /// `*Class` kinds: applied next and waited for.
    Classes,
    /// Everything else.
    Resources,
}

pub fn stage_of(obj: &Value) -> Stage {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let lower = kind.to_ascii_lowercase();
    if (lower == "customresourcedefinition" && api_version.starts_with("apiextensions.k8s.io/"))
        || (lower == "namespace" && api_version == "v1")
        || (lower == "clusterrole" && api_version.starts_with("rbac.authorization.k8s.io/"))
    {
        Stage::Definitions
    } else if kind.ends_with("Class") {
        Stage::Classes
    } else {
        Stage::Resources
    }
}

/// The inventory of a change set, in change set order.
pub fn from_changes(changes: &[Change]) -> ResourceInventory {
    let mut seen = HashSet::new();
    let entries = changes
        .iter()
        .map(|c| c.object.to_ref())
        .filter(|r| seen.insert(r.id.clone()))
        .collect();
    ResourceInventory { entries }
}

/// Objects of `old` that are not in `new` (by id), in reverse apply order: what pruning deletes.
pub fn stale(old: &[ResourceRef], new: &ResourceInventory) -> Vec<ObjMeta> {
    let keep: HashSet<&str> = new.entries.iter().map(|r| r.id.as_str()).collect();
    let mut stale: Vec<ObjMeta> = old
        .iter()
        .filter(|r| !keep.contains(r.id.as_str()))
        .filter_map(ObjMeta::from_ref)
        .collect();
    stale.sort_by(|a, b| order(b, a));
    stale
}

/// Adds `objects` back to `inventory` (failed deletes stay tracked).
pub fn merge(inventory: &mut ResourceInventory, objects: &[ObjMeta]) {
    for o in objects {
        let r = o.to_ref();
        if !inventory.entries.iter().any(|e| e.id == r.id) {
            inventory.entries.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_match_flux() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo", "namespace": "default"}});
        let m = ObjMeta::of(&d);
        assert_eq!(m.id(), "default_podinfo_apps_Deployment");
        assert_eq!(m.to_string(), "Deployment/default/podinfo");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}});
        let m = ObjMeta::of(&ns);
        assert_eq!(m.id(), "_apps__Namespace");
        assert_eq!(m.to_string(), "Namespace/apps");
        let back = ObjMeta::from_ref(&m.to_ref()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn order_and_stages() {
        let mk = |kind: &str, name: &str| ObjMeta {
            group: String::new(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: "ns".into(),
            name: name.into(),
        };
        let mut v = [
            mk("ValidatingWebhookConfiguration", "w"),
            mk("Widget", "a"),
            mk("Deployment", "d"),
            mk("Namespace", "n"),
            mk("ConfigMap", "b"),
            mk("ConfigMap", "a"),
            mk("CustomResourceDefinition", "c"),
        ];
        v.sort_by(order);
        let kinds: Vec<_> = v.iter().map(|m| format!("{}/{}", m.kind, m.name)).collect();
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition/c",
                "Namespace/n",
                "ConfigMap/a",
                "ConfigMap/b",
                "Deployment/d",
                "Widget/a",
                "ValidatingWebhookConfiguration/w"
            ]
        );
        assert_eq!(
            stage_of(
                &json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"})
            ),
            Stage::Definitions
        );
        assert_eq!(
            stage_of(&json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass"})),
            Stage::Classes
        );
        assert_eq!(
            stage_of(&json!({"apiVersion": "v1", "kind": "ConfigMap"})),
            Stage::Resources
        );
    }

    #[test]
    fn stale_objects_in_reverse_order() {
        let old = vec![
            ResourceRef {
                id: "_apps__Namespace".into(),
                version: "v1".into(),
            },
            ResourceRef {
                id: "apps_a__ConfigMap".into(),
                version: "v1".into(),
            },
            ResourceRef {
                id: "apps_b__ConfigMap".into(),
                version: "v1".into(),
            },
        ];
        let new = ResourceInventory {
            entries: vec![old[2].clone()],
        };
        let stale = stale(&old, &new);
        let ids: Vec<_> = stale.iter().map(|m| m.id()).collect();
        assert_eq!(ids, ["apps_a__ConfigMap", "_apps__Namespace"]);
    }
}
