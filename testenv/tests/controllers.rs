//! The kube-controller-manager controllers testenv runs: the `default` ServiceAccount of every namespace, and
//! ClusterRole aggregation with the bootstrap `admin`, `edit` and `view` roles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{eventually, raw};
use kube::Client;
use serde_json::{Value, json};
use testenv::{Options, TestEnv};

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";

async fn create(client: &Client, path: &str, obj: Value) -> Value {
    let (code, body) = raw(client, "POST", path, Some((JSON, obj))).await;
    assert!(code == 201 || code == 200, "POST {path}: {code} {body}");
    body
}

async fn namespace(admin: &Client, name: &str) {
    create(
        admin,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .await;
}

/// The `default` ServiceAccount of `ns`, once it exists.
async fn default_sa(client: &Client, ns: &str) -> Value {
    let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/default");
    eventually(10, &format!("ServiceAccount {ns}/default"), || async {
        let (code, body) = raw(client, "GET", &path, None).await;
        (code == 200).then_some(body)
    })
    .await
}

/// A client authenticated as the ServiceAccount `ns/default`.
async fn as_default_sa(env: &TestEnv, ns: &str) -> Client {
    default_sa(&env.client(), ns).await;
    let token = env.server().service_account_token(ns, "default").unwrap();
    env.client_with_token(&token).await.unwrap()
}

async fn bind(admin: &Client, ns: &str, name: &str, cluster_role: &str) {
    create(
        admin,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}]}),
    )
    .await;
}

async fn code(client: &Client, method: &str, path: &str, body: Option<Value>) -> u16 {
    raw(client, method, path, body.map(|b| (JSON, b))).await.0
}

#[tokio::test]
async fn every_namespace_has_a_default_service_account() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let sa = default_sa(&client, ns).await;
        assert_eq!(sa["metadata"]["namespace"], ns);
    }

    namespace(&client, "team").await;
    let sa = default_sa(&client, "team").await;
    let uid = sa["metadata"]["uid"].as_str().unwrap().to_string();

    // deleted while the namespace exists: it comes back (a new object)
    let path = "/api/v1/namespaces/team/serviceaccounts/default";
    assert_eq!(code(&client, "DELETE", path, None).await, 200);
    eventually(10, "the default ServiceAccount to come back", || async {
        let (code, body) = raw(&client, "GET", path, None).await;
        (code == 200 && body["metadata"]["uid"] != uid.as_str()).then_some(())
    })
    .await;

    // the namespace still goes away: its default ServiceAccount is not recreated while it terminates
    assert_eq!(
        code(&client, "DELETE", "/api/v1/namespaces/team", None).await,
        200
    );
    eventually(10, "namespace team to be gone", || async {
        (code(&client, "GET", "/api/v1/namespaces/team", None).await == 404).then_some(())
    })
    .await;
    assert_eq!(code(&client, "GET", path, None).await, 404);
}

#[tokio::test]
async fn service_accounts_controller_can_be_turned_off() {
    let env = TestEnv::start_with(Options::default().service_accounts(false))
        .await
        .unwrap();
    let client = env.client();
    namespace(&client, "quiet").await;
    // the simulated Deployment status is written after the namespace was seen by every controller
    create(
        &client,
        "/apis/apps/v1/namespaces/quiet/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}),
    )
    .await;
    eventually(10, "the simulated Deployment status", || async {
        let (_, d) = raw(
            &client,
            "GET",
            "/apis/apps/v1/namespaces/quiet/deployments/web",
            None,
        )
        .await;
        d["status"]["observedGeneration"].is_number().then_some(())
    })
    .await;
    for ns in ["default", "quiet"] {
        let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/default");
        assert_eq!(code(&client, "GET", &path, None).await, 404, "{ns}");
    }
}

#[tokio::test]
async fn view_reads_configmaps_but_not_secrets_in_its_namespace() {
    let env = TestEnv::start_with(Options::default().auth(true))
        .await
        .unwrap();
    let admin = env.client();
    for ns in ["team-a", "team-b"] {
        namespace(&admin, ns).await;
        create(
            &admin,
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}),
        )
        .await;
    }
    let (_, view) = raw(
        &admin,
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/view",
        None,
    )
    .await;
    assert_eq!(
        view["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    assert_eq!(
        view["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );

    let sa = as_default_sa(&env, "team-a").await;
    assert_eq!(
        code(&sa, "GET", "/api/v1/namespaces/team-a/configmaps", None).await,
        403
    );
    bind(&admin, "team-a", "viewers", "view").await;

    assert_eq!(
        code(&sa, "GET", "/api/v1/namespaces/team-a/configmaps", None).await,
        200
    );
    assert_eq!(
        code(&sa, "GET", "/api/v1/namespaces/team-a/configmaps/c", None).await,
        200
    );
    let (status, body) = raw(&sa, "GET", "/api/v1/namespaces/team-a/secrets", None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["message"],
        "secrets is forbidden: User \"system:serviceaccount:team-a:default\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team-a\""
    );
    // read-only
    assert_eq!(
        code(
            &sa,
            "POST",
            "/api/v1/namespaces/team-a/configmaps",
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}}))
        )
        .await,
        403
    );
    // and only in the binding's namespace
    assert_eq!(
        code(&sa, "GET", "/api/v1/namespaces/team-b/configmaps", None).await,
        403
    );

    // edit (view aggregated into it) reads Secrets and writes; admin also manages RoleBindings
    let editor = as_default_sa(&env, "team-b").await;
    bind(&admin, "team-b", "editors", "edit").await;
    assert_eq!(
        code(&editor, "GET", "/api/v1/namespaces/team-b/secrets", None).await,
        200
    );
    assert_eq!(
        code(&editor, "GET", "/api/v1/namespaces/team-b/configmaps", None).await,
        200
    );
    assert_eq!(
        code(
            &editor,
            "DELETE",
            "/api/v1/namespaces/team-b/configmaps/c",
            None
        )
        .await,
        200
    );
    let rbs = "/apis/rbac.authorization.k8s.io/v1/namespaces/team-b/rolebindings";
    assert_eq!(code(&editor, "GET", rbs, None).await, 403);
    bind(&admin, "team-b", "admins", "admin").await;
    assert_eq!(code(&editor, "GET", rbs, None).await, 200);
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

#[tokio::test]
async fn roles_labelled_aggregate_to_view_extend_view() {
    let env = TestEnv::start_with(Options::default().auth(true))
        .await
        .unwrap();
    let admin = env.client();
    create(
        &admin,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        widget_crd(),
    )
    .await;
    namespace(&admin, "team-a").await;
    let widgets = "/apis/example.com/v1/namespaces/team-a/widgets";
    eventually(10, "the widgets resource to be served", || async {
        (code(&admin, "GET", widgets, None).await == 200).then_some(())
    })
    .await;
    create(
        &admin,
        widgets,
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
    )
    .await;

    let sa = as_default_sa(&env, "team-a").await;
    bind(&admin, "team-a", "viewers", "view").await;
    assert_eq!(
        code(&sa, "GET", "/api/v1/namespaces/team-a/configmaps", None).await,
        200
    );
    assert_eq!(code(&sa, "GET", widgets, None).await, 403);

    let rule = json!({"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]});
    create(
        &admin,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "widget-viewer",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [rule]}),
    )
    .await;
    eventually(10, "view to grant widgets", || async {
        (code(&sa, "GET", widgets, None).await == 200).then_some(())
    })
    .await;
    assert_eq!(code(&sa, "GET", &format!("{widgets}/w"), None).await, 200);
    // through view, edit and admin have it too
    for role in ["edit", "admin"] {
        let path = format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}");
        eventually(
            10,
            &format!("{role} to aggregate the widget rule"),
            || async {
                let (_, r) = raw(&admin, "GET", &path, None).await;
                r["rules"]
                    .as_array()
                    .is_some_and(|rs| rs.contains(&rule))
                    .then_some(())
            },
        )
        .await;
    }

    // the label goes: so does the permission
    let (status, body) = raw(
        &admin,
        "PATCH",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/widget-viewer",
        Some((
            MERGE,
            json!({"metadata": {"labels": {"rbac.authorization.k8s.io/aggregate-to-view": null}}}),
        )),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually(10, "view to stop granting widgets", || async {
        (code(&sa, "GET", widgets, None).await == 403).then_some(())
    })
    .await;
    assert_eq!(
        code(&sa, "GET", "/api/v1/namespaces/team-a/configmaps", None).await,
        200
    );
}

#[tokio::test]
async fn aggregation_follows_matching_roles_and_can_be_turned_off() {
    for on in [true, false] {
        let env = TestEnv::start_with(Options::default().cluster_role_aggregation(on))
            .await
            .unwrap();
        let client = env.client();
        let roles = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
        create(
            &client,
            roles,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "monitoring"},
                "aggregationRule": {"clusterRoleSelectors": [
                    {"matchExpressions": [{"key": "example.com/aggregate-to", "operator": "In", "values": ["monitoring"]}]}
                ]}}),
        )
        .await;
        let rule = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
        create(
            &client,
            roles,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "pods-reader", "labels": {"example.com/aggregate-to": "monitoring"}},
                "rules": [rule]}),
        )
        .await;
        let path = format!("{roles}/monitoring");
        if on {
            eventually(10, "monitoring to aggregate pods-reader", || async {
                let (_, r) = raw(&client, "GET", &path, None).await;
                (r["rules"] == json!([rule])).then_some(())
            })
            .await;
            assert_eq!(
                code(&client, "DELETE", &format!("{roles}/pods-reader"), None).await,
                200
            );
            eventually(
                10,
                "monitoring to lose the rules of pods-reader",
                || async {
                    let (_, r) = raw(&client, "GET", &path, None).await;
                    (r["rules"] == json!([])).then_some(())
                },
            )
            .await;
        } else {
            // the serviceaccounts controller has handled a later event by the time this SA exists
            namespace(&client, "later").await;
            default_sa(&client, "later").await;
            // with auth off there are no bootstrap roles, and nothing fills in rules
            let (_, view) = raw(&client, "GET", &format!("{roles}/view"), None).await;
            assert_eq!(view["code"], 404, "{view}");
            let (_, r) = raw(&client, "GET", &path, None).await;
            assert!(r["rules"].as_array().is_none_or(Vec::is_empty), "{r}");
        }
        env.shutdown().await;
    }
}
