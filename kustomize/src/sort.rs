//! Output ordering: kustomize's legacy kind-based sort.

use std::cmp::Ordering;

use crate::resource::{Gvk, ResId, Resource};

/// Kinds sorted first by default.
pub const DEFAULT_ORDER_FIRST: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];

/// Kinds sorted last by default.
pub const DEFAULT_ORDER_LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn gvk_sort_string(g: &Gvk) -> String {
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_string()
        } else {
            s.to_string()
        }
    };
    format!(
        "{}_{}_{}",
        or(&g.group, "~G"),
        or(&g.version, "~V"),
        or(&g.kind, "~K")
    )
}

fn id_sort_string(id: &ResId) -> String {
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_string()
        } else {
            s.to_string()
        }
    };
    format!(
        "{}.{}.{}|{}|{}",
        or(&id.gvk.kind, "~K"),
        or(&id.gvk.version, "~V"),
        or(&id.gvk.group, "~G"),
        or(&id.namespace, "~X"),
        or(&id.name, "~N")
    )
}

/// Sorts resources in kustomize's legacy order with the given first/last kinds.
pub fn legacy_sort(resources: &mut [Resource], first: &[String], last: &[String]) {
    let order = |kind: &str| -> i64 {
        if let Some(i) = first.iter().position(|k| k == kind) {
            return i as i64 - first.len() as i64;
        }
        if let Some(i) = last.iter().position(|k| k == kind) {
            return 1 + i as i64;
        }
        0
    };
    let mut keyed: Vec<(ResId, i64, String, String, usize)> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let id = r.cur_id();
            let o = order(&id.gvk.kind);
            let g = gvk_sort_string(&id.gvk);
            let s = id_sort_string(&id);
            (id, o, g, s, i)
        })
        .collect();
    keyed.sort_by(|(a, ia, sa, ida, _), (b, ib, sb, idb, _)| {
        if a.gvk != b.gvk {
            if ia != ib {
                return ia.cmp(ib);
            }
            if a.gvk.kind == "Namespace"
                && b.gvk.kind == "Namespace"
                && (a.gvk.group.is_empty() || b.gvk.group.is_empty())
            {
                return sb.cmp(sa);
            }
            return sa.cmp(sb);
        }
        ida.partial_cmp(idb).unwrap_or(Ordering::Equal)
    });
    let mut taken: Vec<Option<Resource>> = resources
        .iter_mut()
        .map(|r| {
            Some(std::mem::replace(
                r,
                Resource::new(crate::value::Value::Null),
            ))
        })
        .collect();
    for (slot, (_, _, _, _, i)) in resources.iter_mut().zip(keyed) {
        if let Some(r) = taken[i].take() {
            *slot = r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_one;

    #[test]
    fn configmaps_before_services_before_deployments() {
        let mk = |k: &str, av: &str| {
            Resource::new(
                parse_one(&format!(
                    "apiVersion: {av}\nkind: {k}\nmetadata: {{name: x}}\n"
                ))
                .unwrap(),
            )
        };
        let mut rs = vec![
            mk("Deployment", "apps/v1"),
            mk("Service", "v1"),
            mk("ConfigMap", "v1"),
            mk("Foo", "x.io/v1"),
        ];
        let first: Vec<String> = DEFAULT_ORDER_FIRST.iter().map(|s| s.to_string()).collect();
        let last: Vec<String> = DEFAULT_ORDER_LAST.iter().map(|s| s.to_string()).collect();
        legacy_sort(&mut rs, &first, &last);
        let kinds: Vec<&str> = rs.iter().map(Resource::kind).collect();
        assert_eq!(kinds, ["ConfigMap", "Service", "Deployment", "Foo"]);
    }
}
