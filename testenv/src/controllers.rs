//! Two controllers of kube-controller-manager that every real cluster runs and that clients count on:
//!
//! - the **serviceaccounts controller**: every namespace has a ServiceAccount `default`. It is created when the
//!   namespace is created (and, at start, in every namespace that lacks it: `default`, `kube-system`,
//!   `kube-public`, `kube-node-lease` and whatever was loaded from the data dir), recreated when it is deleted
//!   while its namespace exists, and never created in a terminating namespace (so a namespace still goes away:
//!   its `default` ServiceAccount is content like any other, removed by the namespace controller).
//! - the **clusterrole-aggregation controller**: a ClusterRole with `aggregationRule.clusterRoleSelectors` has
//!   its `rules` replaced by the union of the rules of every other ClusterRole matching any of the selectors
//!   (`matchLabels`, `matchExpressions`; an empty selector matches every ClusterRole), in selector order and by
//!   name, duplicates dropped, as Kubernetes does. It follows ClusterRole creations, changes and deletions, so
//!   an aggregated role feeding another (`view` → `edit` → `admin`) propagates, and the RBAC authorizer
//!   ([`crate::rbac`]), which reads the stored `rules`, follows.
//!
//! Both are on by default and independent of the workload [`crate::simulate`]ion (they are not status writers:
//! a cluster without them is not a cluster). [`Controllers`] turns them off, through
//! [`crate::Options::service_accounts`] and [`crate::Options::cluster_role_aggregation`], for tests that want
//! raw storage. Their writes use the field manager `kube-controller-manager`.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::builtin::ResourceDef;
use crate::selector::LabelSelector;
use crate::store::{Event, EventType, ListOptions, PatchKind, Store, WriteOptions};

/// The ServiceAccount every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Field manager of the controllers' writes.
const MANAGER: &str = "kube-controller-manager";

/// How many aggregation passes a change may take before the controller waits for the next event (a chain of
/// aggregated roles converges in as many passes as it is long; cycles do not grow forever since unions do not).
const MAX_PASSES: usize = 16;

/// Which kube-controller-manager controllers run. The default is all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controllers {
    /// A `default` ServiceAccount in every namespace.
    pub service_accounts: bool,
    /// `aggregationRule` of ClusterRoles resolved into `rules`.
    pub cluster_role_aggregation: bool,
}

impl Default for Controllers {
    fn default() -> Self {
        Self {
            service_accounts: true,
            cluster_role_aggregation: true,
        }
    }
}

/// Run the enabled controllers until the store's event stream closes.
pub async fn run(store: Arc<Store>, controllers: Controllers) {
    let service_accounts = async {
        if controllers.service_accounts {
            service_accounts(store.clone()).await;
        }
    };
    let aggregation = async {
        if controllers.cluster_role_aggregation {
            cluster_role_aggregation(store.clone()).await;
        }
    };
    tokio::join!(service_accounts, aggregation);
}

fn writer() -> WriteOptions {
    WriteOptions {
        manager: MANAGER.into(),
        ..WriteOptions::default()
    }
}

fn terminating(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// Runs a controller on the store's events until the stream closes: `resync` once (after subscribing, so nothing
/// created in between is missed) and again whenever events were missed, `on_event` for every event.
async fn follow(
    store: &Store,
    controller: &str,
    mut resync: impl FnMut(),
    mut on_event: impl FnMut(&Event),
) {
    let mut rx = store.subscribe();
    resync();
    loop {
        match rx.recv().await {
            Ok(ev) => on_event(&ev),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, controller, "controller lagged; resyncing");
                resync();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

// --- the serviceaccounts controller ---

/// The serviceaccounts controller (see the module docs).
pub async fn service_accounts(store: Arc<Store>) {
    let (Some(namespaces), Some(sas)) = (
        store.resolve("", "v1", "namespaces"),
        store.resolve("", "v1", "serviceaccounts"),
    ) else {
        return;
    };
    follow(
        &store,
        "serviceaccounts",
        || ensure_all(&store, &namespaces, &sas),
        |ev| {
            let ns = match (ev.gr.0.as_str(), ev.gr.1.as_str(), ev.kind) {
                ("", "namespaces", EventType::Added | EventType::Modified) => {
                    ev.object["metadata"]["name"].as_str().unwrap_or_default()
                }
                ("", "serviceaccounts", EventType::Deleted)
                    if ev.object["metadata"]["name"] == DEFAULT_SERVICE_ACCOUNT =>
                {
                    ev.namespace.as_str()
                }
                _ => return,
            };
            ensure(&store, &namespaces, &sas, ns);
        },
    )
    .await;
}

fn ensure_all(store: &Store, namespaces: &ResourceDef, sas: &ResourceDef) {
    let Ok(list) = store.list(namespaces, None, &ListOptions::default()) else {
        return;
    };
    for ns in list.items {
        ensure(
            store,
            namespaces,
            sas,
            ns["metadata"]["name"].as_str().unwrap_or_default(),
        );
    }
}

/// Create `ns/default` unless it exists or the namespace is gone or terminating.
fn ensure(store: &Store, namespaces: &ResourceDef, sas: &ResourceDef, ns: &str) {
    match store.get(namespaces, "", ns) {
        Ok(n) if !terminating(&n) => {}
        _ => return,
    }
    if store.get(sas, ns, DEFAULT_SERVICE_ACCOUNT).is_ok() {
        return;
    }
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": ns}});
    match store.create(sas, ns, sa, &writer()) {
        // 409: created meanwhile; 403: the namespace started terminating meanwhile
        Ok(_) => {}
        Err(e) if matches!(e.code, 409 | 403 | 404) => {}
        Err(e) => tracing::warn!(error = %e, ns, "could not create the default ServiceAccount"),
    }
}

// --- the clusterrole-aggregation controller ---

/// The clusterrole-aggregation controller (see the module docs).
pub async fn cluster_role_aggregation(store: Arc<Store>) {
    follow(
        &store,
        "clusterrole-aggregation",
        || aggregate_all(&store),
        |ev| {
            if ev.gr.0 == "rbac.authorization.k8s.io" && ev.gr.1 == "clusterroles" {
                aggregate_all(&store);
            }
        },
    )
    .await;
}

/// Fill in the `rules` of every aggregated ClusterRole until nothing changes (at most [`MAX_PASSES`] passes).
pub fn aggregate_all(store: &Store) {
    let Some(rd) = store.resolve("rbac.authorization.k8s.io", "v1", "clusterroles") else {
        return;
    };
    for _ in 0..MAX_PASSES {
        let Ok(list) = store.list(&rd, None, &ListOptions::default()) else {
            return;
        };
        let mut changed = false;
        for role in list
            .items
            .iter()
            .filter(|r| r["aggregationRule"].is_object())
        {
            let name = role["metadata"]["name"].as_str().unwrap_or_default();
            let rules = match aggregated_rules(role, &list.items) {
                Ok(rules) => rules,
                Err(e) => {
                    tracing::debug!(error = %e, name, "invalid aggregationRule");
                    continue;
                }
            };
            if role["rules"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                == rules.as_slice()
                || terminating(role)
            {
                continue;
            }
            let patch = json!({"rules": rules});
            match store.patch(&rd, "", name, PatchKind::Merge, &patch, false, &writer()) {
                Ok(_) => changed = true,
                Err(e) => tracing::debug!(error = %e, name, "could not aggregate ClusterRole"),
            }
        }
        if !changed {
            return;
        }
    }
}

/// The rules `role`'s `aggregationRule` gives it among `roles`: for each selector in order, the matching
/// ClusterRoles other than `role` by name, their rules in order, each rule once.
pub fn aggregated_rules(role: &Value, roles: &[Arc<Value>]) -> Result<Vec<Value>, crate::ApiError> {
    let name = &role["metadata"]["name"];
    let mut sorted: Vec<&Arc<Value>> = roles.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |r: &Value| {
            r["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        key(a).cmp(&key(b))
    });
    let mut rules: Vec<Value> = Vec::new();
    for sel in role["aggregationRule"]["clusterRoleSelectors"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let sel = LabelSelector::from_object(sel)?;
        for other in sorted
            .iter()
            .filter(|r| r["metadata"]["name"] != *name && sel.matches(r))
        {
            for rule in other["rules"].as_array().into_iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, labels: Value, rules: Value) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "labels": labels}, "rules": rules}))
    }

    #[test]
    fn union_of_matching_roles_by_selector_then_name() {
        let r1 = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
        let r2 = json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]});
        let r3 = json!({"apiGroups": ["x"], "resources": ["y"], "verbs": ["list"]});
        let agg = Arc::new(json!({
            "metadata": {"name": "agg", "labels": {"a": "true"}},
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"b": "true"}},
                {"matchExpressions": [{"key": "a", "operator": "Exists"}]}
            ]},
            "rules": [r3.clone()]
        }));
        let roles = vec![
            agg.clone(),
            role("z", json!({"b": "true"}), json!([r1.clone()])),
            role("m", json!({"a": "x"}), json!([r2.clone(), r1.clone()])),
            role("c", json!({"b": "true"}), json!([r2.clone()])),
            role("other", json!({}), json!([r3])),
        ];
        // selector order, then name order; the role itself and non-matching roles are left out
        assert_eq!(aggregated_rules(&agg, &roles).unwrap(), vec![r2, r1]);
    }

    #[test]
    fn bootstrap_roles_aggregate_view_into_edit_into_admin() {
        use crate::rbac::{Attributes, rule_allows};
        let store = Store::new(None).unwrap();
        let rd = store
            .resolve("rbac.authorization.k8s.io", "v1", "clusterroles")
            .unwrap();
        for role in crate::rbac::bootstrap_roles() {
            store.create(&rd, "", role, &writer()).unwrap();
        }
        aggregate_all(&store);
        let allows = |role: &str, verb: &str, group: &str, resource: &str| {
            let a = Attributes {
                verb: verb.into(),
                resource_request: true,
                group: group.into(),
                resource: resource.into(),
                namespace: "ns".into(),
                ..Attributes::default()
            };
            let role = store.get(&rd, "", role).unwrap();
            role["rules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| rule_allows(r, &a))
        };
        assert!(allows("view", "list", "", "configmaps"));
        assert!(!allows("view", "get", "", "secrets"));
        assert!(!allows("view", "create", "", "configmaps"));
        assert!(allows("edit", "list", "", "configmaps"));
        assert!(allows("edit", "get", "", "secrets"));
        assert!(allows("edit", "create", "apps", "deployments"));
        assert!(!allows(
            "edit",
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings"
        ));
        assert!(allows("admin", "get", "", "secrets"));
        assert!(allows("admin", "list", "apps", "deployments"));
        assert!(allows(
            "admin",
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings"
        ));
        assert!(!allows(
            "admin",
            "create",
            "rbac.authorization.k8s.io",
            "clusterroles"
        ));
    }
}
