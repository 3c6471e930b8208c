//! What a request does, in Kubernetes' terms (verb, resource, namespace, name), derived from the method, path
//! and query alone, like the API server's `RequestInfoFactory`: no lookup of served resources.

use http::Method;

/// The Kubernetes view of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`; for non-resource
    /// paths (`/version`, `/apis`, `/openapi/v3`, ...) the lowercase HTTP method.
    pub verb: String,
    /// Whether the path addresses a resource (`/api/v1/...` or `/apis/{group}/{version}/...` with a resource).
    pub is_resource: bool,
    /// API group (`""` for the core group).
    pub group: String,
    /// Plural resource name, e.g. `configmaps`; empty for non-resource requests.
    pub resource: String,
    /// Subresource, e.g. `status` or `scale`; empty when none.
    pub subresource: String,
    /// Namespace; empty for cluster-scoped requests and requests across all namespaces.
    pub namespace: String,
    /// Object name; empty for collections.
    pub name: String,
}

impl RequestInfo {
    /// Derive the request info from the method, the path and the raw query string.
    pub fn parse(method: &Method, path: &str, query: &str) -> Self {
        let segs: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let non_resource = || Self {
            verb: method.as_str().to_ascii_lowercase(),
            ..Self::default()
        };
        let (group, rest) = match segs.as_slice() {
            ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
            ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
            _ => return non_resource(),
        };
        let mut parts = rest;
        // the legacy `/watch/` prefix
        let mut watch_prefix = false;
        if parts.first() == Some(&"watch") {
            watch_prefix = true;
            parts = &parts[1..];
        }
        let mut namespace = "";
        if parts.first() == Some(&"namespaces")
            && let Some(ns) = parts.get(1)
        {
            namespace = ns;
            // `namespaces/{ns}/{resource}/...`, unless the third part is a namespace's own subresource
            if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
                parts = &parts[2..];
            }
        }
        let resource = parts.first().copied().unwrap_or_default();
        let name = parts.get(1).copied().unwrap_or_default();
        let subresource = parts.get(2).copied().unwrap_or_default();
        let watch_param = query.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            k == "watch" && (v == "1" || v == "true")
        });
        let verb = match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD if watch_prefix || watch_param => "watch",
            Method::GET | Method::HEAD if name.is_empty() => "list",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if name.is_empty() => "deletecollection",
            Method::DELETE => "delete",
            _ => return non_resource(),
        };
        Self {
            verb: verb.to_string(),
            is_resource: true,
            group: group.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// `resource` or `resource/subresource`, the form RBAC rules and fault rules use.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path: &str, query: &str) -> (String, String, String, String, String) {
        let i = RequestInfo::parse(&method, path, query);
        let r = i.resource_path();
        (i.verb, r, i.namespace, i.name, i.group)
    }

    fn t(v: &str, r: &str, ns: &str, n: &str, g: &str) -> (String, String, String, String, String) {
        (v.into(), r.into(), ns.into(), n.into(), g.into())
    }

    #[test]
    fn verbs_from_method_path_and_query() {
        let cms = "/api/v1/namespaces/default/configmaps";
        assert_eq!(
            info(Method::GET, cms, ""),
            t("list", "configmaps", "default", "", "")
        );
        assert_eq!(
            info(Method::GET, cms, "watch=1&resourceVersion=3"),
            t("watch", "configmaps", "default", "", "")
        );
        assert_eq!(
            info(Method::GET, cms, "watch=true"),
            t("watch", "configmaps", "default", "", "")
        );
        assert_eq!(
            info(Method::GET, cms, "watch=false"),
            t("list", "configmaps", "default", "", "")
        );
        assert_eq!(
            info(Method::GET, &format!("{cms}/a"), ""),
            t("get", "configmaps", "default", "a", "")
        );
        assert_eq!(
            info(Method::POST, cms, ""),
            t("create", "configmaps", "default", "", "")
        );
        assert_eq!(
            info(Method::PUT, &format!("{cms}/a"), ""),
            t("update", "configmaps", "default", "a", "")
        );
        assert_eq!(
            info(Method::PATCH, &format!("{cms}/a"), ""),
            t("patch", "configmaps", "default", "a", "")
        );
        assert_eq!(
            info(Method::DELETE, &format!("{cms}/a"), ""),
            t("delete", "configmaps", "default", "a", "")
        );
        assert_eq!(
            info(Method::DELETE, cms, ""),
            t("deletecollection", "configmaps", "default", "", "")
        );
    }

    #[test]
    fn groups_subresources_namespaces_and_non_resources() {
        assert_eq!(
            info(
                Method::PATCH,
                "/apis/apps/v1/namespaces/x/deployments/d/status",
                ""
            ),
            t("patch", "deployments/status", "x", "d", "apps")
        );
        assert_eq!(
            info(Method::GET, "/apis/apps/v1/deployments", "watch=1"),
            t("watch", "deployments", "", "", "apps")
        );
        assert_eq!(
            info(Method::GET, "/api/v1/namespaces/x", ""),
            t("get", "namespaces", "x", "x", "")
        );
        assert_eq!(
            info(Method::PUT, "/api/v1/namespaces/x/finalize", ""),
            t("update", "namespaces/finalize", "x", "x", "")
        );
        assert_eq!(
            info(Method::GET, "/api/v1/namespaces", ""),
            t("list", "namespaces", "", "", "")
        );
        assert_eq!(
            info(Method::GET, "/api/v1/watch/namespaces/x/pods", ""),
            t("watch", "pods", "x", "", "")
        );
        for p in [
            "/version",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/openapi/v3",
        ] {
            let i = RequestInfo::parse(&Method::GET, p, "");
            assert_eq!((i.verb.as_str(), i.is_resource), ("get", false), "{p}");
        }
    }
}
