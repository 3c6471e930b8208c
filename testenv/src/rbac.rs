//! The RBAC authorizer: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings from the store decide every
//! request, as kube-apiserver's RBAC authorizer does. It reads the stored `rules`: those of aggregated
//! ClusterRoles are filled in by the clusterrole-aggregation controller ([`crate::controllers`]).
//!
//! With authorization on, the bootstrap ClusterRoles are seeded ([`bootstrap_roles`]): `cluster-admin`, and
//! `admin`, `edit`, `view`, which aggregate the roles labelled `rbac.authorization.k8s.io/aggregate-to-admin`,
//! `-edit` and `-view` as in Kubernetes (`view` feeds `edit`, `edit` feeds `admin`). Their rules are testenv's
//! own, with Kubernetes' intent: `view` reads the common namespaced resources but not Secrets, `edit` also
//! writes them and reads Secrets, `admin` also manages Roles and RoleBindings in its namespace.
//!
//! [`Attributes`] are the request's [`RequestInfo`] (verb, API group, resource, subresource, namespace, name)
//! as the authorizer reads it.

use std::collections::HashMap;

use http::Method;
use serde_json::Value;

use crate::error::ApiError;
use crate::request_info::RequestInfo;
use crate::store::{ListOptions, Store};

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The superuser group.
pub const MASTERS: &str = "system:masters";

/// A user as the authorizer sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// Name, e.g. `system:serviceaccount:ns:name`.
    pub name: String,
    /// UID (may be empty).
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// What a request asks to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, `impersonate`, ...
    pub verb: String,
    /// Whether this addresses an API resource (otherwise `path` is a non-resource URL).
    pub resource_request: bool,
    /// The URL path, for non-resource requests.
    pub path: String,
    /// API group, empty for core.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource, e.g. `status`.
    pub subresource: String,
    /// Namespace, empty at the cluster scope.
    pub namespace: String,
    /// Object name, if the request addresses one.
    pub name: String,
}

impl Attributes {
    /// Derive the attributes of a request from its [`RequestInfo`], like Kubernetes' authorizer does.
    pub fn from_request(method: &Method, path: &str, query: &str) -> Self {
        let info = RequestInfo::parse(method, path, query);
        let mut name = info.name;
        // list and watch of a single object by field selector are authorized for that name
        if matches!(info.verb.as_str(), "list" | "watch")
            && let Some(sel) = query_params(query).get("fieldSelector")
        {
            for term in sel.split(',') {
                if let Some(n) = term
                    .strip_prefix("metadata.name==")
                    .or_else(|| term.strip_prefix("metadata.name="))
                {
                    name = n.to_string();
                }
            }
        }
        Self {
            verb: info.verb,
            resource_request: info.is_resource,
            path: path.to_string(),
            group: info.group,
            resource: info.resource,
            subresource: info.subresource,
            namespace: info.namespace,
            name,
        }
    }

    /// The 403 Kubernetes returns when these attributes are denied to `user`.
    pub fn forbidden(&self, user: &str, reason: &str) -> ApiError {
        let mut msg = if !self.resource_request {
            format!("User {user:?} cannot {} path {:?}", self.verb, self.path)
        } else {
            let mut resource = self.resource.clone();
            if !self.subresource.is_empty() {
                resource = format!("{resource}/{}", self.subresource);
            }
            if self.namespace.is_empty() {
                format!(
                    "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                    self.verb, self.group
                )
            } else {
                format!(
                    "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                    self.verb, self.group, self.namespace
                )
            }
        };
        if !reason.is_empty() {
            msg = format!("{msg}: {reason}");
        }
        if self.resource_request {
            ApiError::forbidden_resource(&self.group, &self.resource, &self.name, &msg)
        } else {
            ApiError::forbidden(format!("forbidden: {msg}"))
        }
    }
}

fn query_params(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not.
    pub allowed: bool,
    /// Why (as SubjectAccessReview's `status.reason`).
    pub reason: String,
}

/// Non-resource URLs every authenticated user may get (`system:discovery`, `system:public-info-viewer`).
const DISCOVERY_URLS: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/readyz",
    "/version",
    "/version/",
    "/openapi",
    "/openapi/*",
];

/// Non-resource URLs anyone, authenticated or not, may get (`system:public-info-viewer`).
pub const PUBLIC_URLS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];

/// Whether `path` matches a `nonResourceURLs` entry (exact, `*`, or a prefix ending in `*`).
pub fn url_matches(pattern: &str, path: &str) -> bool {
    pattern == "*"
        || pattern == path
        || pattern
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

fn strs(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn has(v: &Value, want: &str) -> bool {
    strs(v).any(|s| s == "*" || s == want)
}

/// Whether one PolicyRule allows `a`, with Kubernetes' wildcard rules.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !has(&rule["verbs"], &a.verb) {
        return false;
    }
    if !a.resource_request {
        return strs(&rule["nonResourceURLs"]).any(|p| url_matches(p, &a.path));
    }
    if !has(&rule["apiGroups"], &a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = strs(&rule["resources"]).any(|r| {
        r == "*"
            || r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names: Vec<&str> = strs(&rule["resourceNames"]).collect();
    names.is_empty() || names.contains(&a.name.as_str())
}

/// Rules every authenticated user has (`system:basic-user`, `system:discovery`).
fn implicit_allows(a: &Attributes) -> bool {
    if !a.resource_request {
        return a.verb == "get" && DISCOVERY_URLS.iter().any(|p| url_matches(p, &a.path));
    }
    a.verb == "create"
        && ((a.group == "authorization.k8s.io"
            && matches!(
                a.resource.as_str(),
                "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
            ))
            || (a.group == "authentication.k8s.io" && a.resource == "selfsubjectreviews"))
}

fn subject_matches(subject: &Value, binding_ns: &str, user: &UserInfo) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str().unwrap_or_default() {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// The RBAC authorizer over a store.
pub struct Authorizer<'a> {
    store: &'a Store,
}

impl<'a> Authorizer<'a> {
    /// An authorizer reading RBAC objects from `store`.
    pub fn new(store: &'a Store) -> Self {
        Self { store }
    }

    fn objects(&self, plural: &str, ns: Option<&str>) -> Vec<std::sync::Arc<Value>> {
        let Some(rd) = self
            .store
            .resolve("rbac.authorization.k8s.io", "v1", plural)
        else {
            return Vec::new();
        };
        self.store
            .list(&rd, ns, &ListOptions::default())
            .map(|r| r.items)
            .unwrap_or_default()
    }

    fn role_rules(&self, role_ref: &Value, binding_ns: &str) -> Vec<Value> {
        let name = role_ref["name"].as_str().unwrap_or_default();
        let (plural, ns) = match role_ref["kind"].as_str().unwrap_or_default() {
            "ClusterRole" => ("clusterroles", ""),
            "Role" => ("roles", binding_ns),
            _ => return Vec::new(),
        };
        let Some(rd) = self
            .store
            .resolve("rbac.authorization.k8s.io", "v1", plural)
        else {
            return Vec::new();
        };
        match self.store.get(&rd, ns, name) {
            Ok(role) => strs_rules(&role["rules"]),
            Err(_) => Vec::new(),
        }
    }

    /// Decide whether `user` may do `a`.
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS) {
            return allow(format!("{MASTERS} is a superuser group"));
        }
        if user.groups.iter().any(|g| g == AUTHENTICATED) && implicit_allows(a) {
            return allow("allowed to every authenticated user".to_string());
        }
        for crb in self.objects("clusterrolebindings", None) {
            let subjects = crb["subjects"].as_array().cloned().unwrap_or_default();
            if !subjects.iter().any(|s| subject_matches(s, "", user)) {
                continue;
            }
            if self
                .role_rules(&crb["roleRef"], "")
                .iter()
                .any(|r| rule_allows(r, a))
            {
                return allow(format!(
                    "RBAC: allowed by ClusterRoleBinding {:?} of ClusterRole {:?} to User {:?}",
                    crb["metadata"]["name"].as_str().unwrap_or_default(),
                    crb["roleRef"]["name"].as_str().unwrap_or_default(),
                    user.name
                ));
            }
        }
        if a.resource_request && !a.namespace.is_empty() {
            for rb in self.objects("rolebindings", Some(&a.namespace)) {
                let subjects = rb["subjects"].as_array().cloned().unwrap_or_default();
                if !subjects
                    .iter()
                    .any(|s| subject_matches(s, &a.namespace, user))
                {
                    continue;
                }
                if self
                    .role_rules(&rb["roleRef"], &a.namespace)
                    .iter()
                    .any(|r| rule_allows(r, a))
                {
                    return allow(format!(
                        "RBAC: allowed by RoleBinding {:?} of {} {:?} to User {:?}",
                        format!(
                            "{}/{}",
                            a.namespace,
                            rb["metadata"]["name"].as_str().unwrap_or_default()
                        ),
                        rb["roleRef"]["kind"].as_str().unwrap_or_default(),
                        rb["roleRef"]["name"].as_str().unwrap_or_default(),
                        user.name
                    ));
                }
            }
        }
        Decision {
            allowed: false,
            reason: String::new(),
        }
    }
}

fn allow(reason: String) -> Decision {
    Decision {
        allowed: true,
        reason,
    }
}

fn strs_rules(rules: &Value) -> Vec<Value> {
    rules.as_array().cloned().unwrap_or_default()
}

/// The `cluster-admin` ClusterRole seeded when authorization is on.
pub fn cluster_admin() -> Value {
    serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "rules": [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]}
        ]
    })
}

/// Label of the bootstrap roles.
const BOOTSTRAPPING: &str = "kubernetes.io/bootstrapping";
/// Prefix of the aggregation labels of the user-facing roles.
pub const AGGREGATE_TO: &str = "rbac.authorization.k8s.io/aggregate-to-";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> Value {
    serde_json::json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
}

/// A user-facing ClusterRole: aggregates the roles labelled `aggregate-to-{name}`, and carries `labels`.
fn aggregated(name: &str, labels: &[(&str, &str)]) -> Value {
    let mut l = serde_json::Map::new();
    l.insert(BOOTSTRAPPING.into(), "rbac-defaults".into());
    for (k, v) in labels {
        l.insert((*k).into(), (*v).into());
    }
    serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": l},
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {format!("{AGGREGATE_TO}{name}"): "true"}}
        ]},
        "rules": []
    })
}

/// `system:aggregate-to-{to}`: the rules `to` gets through its label.
fn aggregate_to(to: &str, rules: Vec<Value>) -> Value {
    serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": format!("system:aggregate-to-{to}"), "labels": {
            BOOTSTRAPPING: "rbac-defaults",
            format!("{AGGREGATE_TO}{to}"): "true"
        }},
        "rules": rules
    })
}

/// The ClusterRoles seeded when authorization is on: `cluster-admin`; `admin`, `edit`, `view` (aggregated,
/// `rules` empty until aggregation fills them in) and the `system:aggregate-to-*` roles that feed them. `view`
/// is labelled to aggregate into `edit`, and `edit` into `admin`.
pub fn bootstrap_roles() -> Vec<Value> {
    let view = vec![
        rule(
            "",
            &[
                "configmaps",
                "endpoints",
                "events",
                "limitranges",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "pods/log",
                "pods/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            READ,
        ),
        rule("", &["namespaces", "namespaces/status"], READ),
        rule(
            "apps",
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            READ,
        ),
        rule(
            "autoscaling",
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            READ,
        ),
        rule(
            "batch",
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            READ,
        ),
        rule(
            "policy",
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            READ,
        ),
        rule(
            "networking.k8s.io",
            &["ingresses", "ingresses/status", "networkpolicies"],
            READ,
        ),
        rule("discovery.k8s.io", &["endpointslices"], READ),
        rule("events.k8s.io", &["events"], READ),
    ];
    let edit = vec![
        rule("", &["secrets"], READ),
        rule(
            "",
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "pods",
                "pods/attach",
                "pods/eviction",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            WRITE,
        ),
        rule("", &["serviceaccounts"], &["impersonate"]),
        rule("", &["serviceaccounts/token"], &["create"]),
        rule(
            "apps",
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            WRITE,
        ),
        rule("autoscaling", &["horizontalpodautoscalers"], WRITE),
        rule("batch", &["cronjobs", "jobs"], WRITE),
        rule("policy", &["poddisruptionbudgets"], WRITE),
        rule(
            "networking.k8s.io",
            &["ingresses", "networkpolicies"],
            WRITE,
        ),
        rule("discovery.k8s.io", &["endpointslices"], WRITE),
    ];
    let all: Vec<&str> = READ.iter().chain(WRITE).copied().collect();
    let admin = vec![
        rule(
            "rbac.authorization.k8s.io",
            &["roles", "rolebindings"],
            &all,
        ),
        rule(
            "authorization.k8s.io",
            &["localsubjectaccessreviews"],
            &["create"],
        ),
    ];
    vec![
        cluster_admin(),
        aggregated("admin", &[]),
        aggregated("edit", &[(&format!("{AGGREGATE_TO}admin"), "true")]),
        aggregated("view", &[(&format!("{AGGREGATE_TO}edit"), "true")]),
        aggregate_to("admin", admin),
        aggregate_to("edit", edit),
        aggregate_to("view", view),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(method: Method, path: &str, query: &str) -> Attributes {
        Attributes::from_request(&method, path, query)
    }

    #[test]
    fn request_info() {
        let a = attrs(Method::GET, "/api/v1/namespaces/a/configmaps", "");
        assert_eq!(
            (a.verb.as_str(), a.namespace.as_str(), a.resource.as_str()),
            ("list", "a", "configmaps")
        );
        let a = attrs(Method::GET, "/api/v1/namespaces/a/configmaps", "watch=1");
        assert_eq!(a.verb, "watch");
        let a = attrs(
            Method::GET,
            "/api/v1/namespaces/a/configmaps",
            "fieldSelector=metadata.name%3Dx&watch=true",
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "x"));
        let a = attrs(
            Method::PATCH,
            "/apis/apps/v1/namespaces/a/deployments/d/status",
            "",
        );
        assert_eq!(
            (
                a.verb.as_str(),
                a.group.as_str(),
                a.name.as_str(),
                a.subresource.as_str()
            ),
            ("patch", "apps", "d", "status")
        );
        let a = attrs(Method::DELETE, "/api/v1/namespaces/a/secrets", "");
        assert_eq!(a.verb, "deletecollection");
        let a = attrs(Method::GET, "/api/v1/namespaces/a", "");
        assert_eq!(
            (
                a.resource.as_str(),
                a.namespace.as_str(),
                a.name.as_str(),
                a.verb.as_str()
            ),
            ("namespaces", "a", "a", "get")
        );
        let a = attrs(Method::GET, "/apis/apps/v1", "");
        assert!(!a.resource_request);
        let a = attrs(Method::GET, "/api", "");
        assert!(!a.resource_request);
    }

    #[test]
    fn rules() {
        let a = attrs(Method::GET, "/api/v1/namespaces/a/configmaps/x", "");
        assert!(rule_allows(
            &json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}),
            &a
        ));
        assert!(!rule_allows(
            &json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["y"]}),
            &a
        ));
        assert!(!rule_allows(
            &json!({"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}),
            &a
        ));
        let s = attrs(
            Method::PUT,
            "/apis/apps/v1/namespaces/a/deployments/d/status",
            "",
        );
        assert!(rule_allows(
            &json!({"apiGroups": ["apps"], "resources": ["*/status"], "verbs": ["update"]}),
            &s
        ));
        assert!(!rule_allows(
            &json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["update"]}),
            &s
        ));
        let n = attrs(Method::GET, "/metrics/x", "");
        assert!(rule_allows(
            &json!({"nonResourceURLs": ["/metrics/*"], "verbs": ["get"]}),
            &n
        ));
    }

    #[test]
    fn forbidden_message() {
        let a = attrs(Method::GET, "/apis/apps/v1/namespaces/b/deployments/d", "");
        let e = a.forbidden("bob", "");
        assert_eq!(
            e.message,
            "deployments.apps \"d\" is forbidden: User \"bob\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"b\""
        );
        let a = attrs(Method::GET, "/api/v1/namespaces", "");
        assert_eq!(
            a.forbidden("bob", "").message,
            "namespaces is forbidden: User \"bob\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
        );
    }
}
