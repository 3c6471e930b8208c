//! TLS, bearer tokens, RBAC and impersonation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use base64::Engine;
use common::{eventually, raw};
use kube::Client;
use serde_json::{Value, json};
use testenv::{Options, TestEnv};

const JSON: &str = "application/json";

async fn auth_env() -> TestEnv {
    TestEnv::start_with(Options::default().auth(true))
        .await
        .unwrap()
}

async fn create(client: &Client, path: &str, obj: Value) {
    let (code, body) = raw(client, "POST", path, Some((JSON, obj))).await;
    assert!(code == 201 || code == 200, "POST {path}: {code} {body}");
}

async fn namespaces(admin: &Client, names: &[&str]) {
    for n in names {
        create(
            admin,
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}),
        )
        .await;
    }
}

async fn service_account(admin: &Client, ns: &str, name: &str) {
    create(
        admin,
        &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    )
    .await;
}

async fn role(admin: &Client, ns: &str, name: &str, rules: Value) {
    create(
        admin,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name}, "rules": rules}),
    )
    .await;
}

async fn cluster_role(admin: &Client, name: &str, rules: Value) {
    create(
        admin,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name}, "rules": rules}),
    )
    .await;
}

async fn role_binding(
    admin: &Client,
    ns: &str,
    name: &str,
    role_ref: (&str, &str),
    subject: Value,
) {
    create(
        admin,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_ref.0, "name": role_ref.1},
            "subjects": [subject]}),
    )
    .await;
}

async fn cluster_role_binding(admin: &Client, name: &str, role: &str, subject: Value) {
    create(
        admin,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [subject]}),
    )
    .await;
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

fn forbidden(body: &Value, message: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["reason"], "Forbidden", "{body}");
    assert_eq!(body["code"], 403, "{body}");
    assert_eq!(body["message"], message, "{body}");
}

async fn token_request(admin: &Client, ns: &str, sa: &str) -> String {
    let (code, tr) = raw(
        admin,
        "POST",
        &format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"),
        Some((
            JSON,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600}}),
        )),
    )
    .await;
    assert_eq!(code, 201, "{tr}");
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(tr["apiVersion"], "authentication.k8s.io/v1");
    assert!(tr["status"]["expirationTimestamp"].is_string(), "{tr}");
    tr["status"]["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let env = auth_env().await;
    let anonymous = testenv::client_from_kubeconfig(&env.server().kubeconfig_yaml(Some("")))
        .await
        .unwrap();
    let plain = testenv::client_from_kubeconfig(&testenv::kubeconfig_yaml(env.url()))
        .await
        .unwrap();
    for client in [&plain, &anonymous] {
        let (code, body) = raw(client, "GET", "/api/v1/namespaces", None).await;
        assert_eq!(code, 401, "{body}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "Unauthorized");
        assert_eq!(body["message"], "Unauthorized");
        // health and version are public, as system:public-info-viewer makes them
        assert_eq!(raw(client, "GET", "/healthz", None).await.0, 200);
        assert_eq!(raw(client, "GET", "/version", None).await.0, 200);
    }
    let bad = env.client_with_token("not-a-token").await.unwrap();
    assert_eq!(raw(&bad, "GET", "/api/v1/namespaces", None).await.0, 401);
    let forged = env
        .client_with_token(&format!("{}x", env.server().admin_token().unwrap()))
        .await
        .unwrap();
    assert_eq!(raw(&forged, "GET", "/api/v1/namespaces", None).await.0, 401);

    // the kubeconfig's admin token works, and says who it is
    let admin = env.client();
    let (code, list) = raw(&admin, "GET", "/api/v1/namespaces", None).await;
    assert_eq!(code, 200, "{list}");
    let (code, review) = raw(
        &admin,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some((
            JSON,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        )),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(review["status"]["userInfo"]["username"], "testenv-admin");
    let groups = review["status"]["userInfo"]["groups"].to_string();
    assert!(groups.contains("system:masters"), "{groups}");
    assert!(groups.contains("system:authenticated"), "{groups}");
    env.shutdown().await;
}

#[tokio::test]
async fn static_token_file_users() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.csv");
    std::fs::write(
        &file,
        "# token,user,uid,groups\nalice-token,alice,uid-1,\"devs,ops\"\nbob-token,bob,uid-2\n",
    )
    .unwrap();
    let env = TestEnv::start_with(Options::default().token_file(&file))
        .await
        .unwrap();
    let admin = env.client();
    let alice = env.client_with_token("alice-token").await.unwrap();
    let bob = env.client_with_token("bob-token").await.unwrap();
    let (_, review) = raw(
        &alice,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some((JSON, json!({}))),
    )
    .await;
    assert_eq!(
        review["status"]["userInfo"],
        json!({"username": "alice", "uid": "uid-1", "groups": ["devs", "ops", "system:authenticated"]})
    );
    // authenticated but not authorized
    let (code, body) = raw(&alice, "GET", "/api/v1/namespaces/default/configmaps", None).await;
    assert_eq!(code, 403);
    forbidden(
        &body,
        "configmaps is forbidden: User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\"",
    );
    assert_eq!(body["details"]["kind"], "configmaps");
    // discovery is for every authenticated user
    for path in ["/api", "/apis", "/api/v1", "/apis/apps/v1", "/openapi/v3"] {
        assert_eq!(raw(&alice, "GET", path, None).await.0, 200, "{path}");
    }
    // a group binding to the seeded cluster-admin role
    cluster_role_binding(
        &admin,
        "devs-admin",
        "cluster-admin",
        json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"}),
    )
    .await;
    assert_eq!(
        raw(&alice, "GET", "/api/v1/namespaces/default/configmaps", None)
            .await
            .0,
        200
    );
    assert_eq!(
        raw(&bob, "GET", "/api/v1/namespaces/default/configmaps", None)
            .await
            .0,
        403
    );
    env.shutdown().await;
}

/// Namespaces `team-a` and `team-b`, and in `team-a` the ServiceAccount `deployer` bound to a Role `role` that
/// allows `verbs` on ConfigMaps.
async fn team_a_deployer(admin: &Client, role_name: &str, verbs: &[&str]) {
    namespaces(admin, &["team-a", "team-b"]).await;
    service_account(admin, "team-a", "deployer").await;
    role(
        admin,
        "team-a",
        role_name,
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}]),
    )
    .await;
    role_binding(
        admin,
        "team-a",
        "deployer-cm",
        ("Role", role_name),
        // no namespace: a ServiceAccount subject means the binding's namespace
        json!({"kind": "ServiceAccount", "name": "deployer"}),
    )
    .await;
}

#[tokio::test]
async fn service_account_tokens_with_roles() {
    let env = auth_env().await;
    let admin = env.client();
    team_a_deployer(
        &admin,
        "cm-writer",
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    )
    .await;
    let token = token_request(&admin, "team-a", "deployer").await;
    let sa = env.client_with_token(&token).await.unwrap();

    // allowed in team-a
    create(&sa, "/api/v1/namespaces/team-a/configmaps", configmap("c1")).await;
    assert_eq!(
        raw(&sa, "GET", "/api/v1/namespaces/team-a/configmaps/c1", None)
            .await
            .0,
        200
    );
    // forbidden in team-b, with Kubernetes' message
    let (code, body) = raw(&sa, "GET", "/api/v1/namespaces/team-b/configmaps/c1", None).await;
    assert_eq!(code, 403);
    forbidden(
        &body,
        "configmaps \"c1\" is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"team-b\"",
    );
    assert_eq!(body["details"], json!({"name": "c1", "kind": "configmaps"}));
    let (code, body) = raw(
        &sa,
        "POST",
        "/api/v1/namespaces/team-b/configmaps",
        Some((JSON, configmap("c2"))),
    )
    .await;
    assert_eq!(code, 403);
    forbidden(
        &body,
        "configmaps is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"team-b\"",
    );
    // a typed kube-rs call surfaces the same Status
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(sa.clone(), "team-b");
    let err = common::api_err(api.list(&Default::default()).await.unwrap_err());
    assert_eq!(err.code, 403);
    assert_eq!(err.reason, "Forbidden");
    // cluster scope
    let (code, body) = raw(&sa, "GET", "/api/v1/namespaces", None).await;
    assert_eq!(code, 403);
    forbidden(
        &body,
        "namespaces is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope",
    );

    // a ClusterRole through a RoleBinding, limited by resourceNames
    cluster_role(
        &admin,
        "one-secret-reader",
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["allowed"]}]),
    )
    .await;
    for ns in ["team-a", "team-b"] {
        for name in ["allowed", "other"] {
            create(
                &admin,
                &format!("/api/v1/namespaces/{ns}/secrets"),
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}),
            )
            .await;
        }
    }
    role_binding(
        &admin,
        "team-b",
        "deployer-secret",
        ("ClusterRole", "one-secret-reader"),
        json!({"kind": "ServiceAccount", "name": "deployer", "namespace": "team-a"}),
    )
    .await;
    let get = |ns: &str, name: &str| format!("/api/v1/namespaces/{ns}/secrets/{name}");
    assert_eq!(
        raw(&sa, "GET", &get("team-b", "allowed"), None).await.0,
        200
    );
    assert_eq!(raw(&sa, "GET", &get("team-b", "other"), None).await.0, 403);
    assert_eq!(
        raw(&sa, "GET", &get("team-a", "allowed"), None).await.0,
        403
    );
    assert_eq!(
        raw(&sa, "GET", "/api/v1/namespaces/team-b/secrets", None)
            .await
            .0,
        403,
        "resourceNames do not grant list"
    );

    // subresources are their own resources
    create(
        &admin,
        "/apis/apps/v1/namespaces/team-a/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}),
    )
    .await;
    role(
        &admin,
        "team-a",
        "status-reader",
        json!([{"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["get"]}]),
    )
    .await;
    role_binding(
        &admin,
        "team-a",
        "deployer-status",
        ("Role", "status-reader"),
        json!({"kind": "ServiceAccount", "name": "deployer"}),
    )
    .await;
    let deploy = "/apis/apps/v1/namespaces/team-a/deployments/web";
    assert_eq!(
        raw(&sa, "GET", &format!("{deploy}/status"), None).await.0,
        200
    );
    let (code, body) = raw(&sa, "GET", deploy, None).await;
    assert_eq!(code, 403);
    forbidden(
        &body,
        "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"team-a\"",
    );
    assert_eq!(body["details"]["group"], "apps");
    let (code, body) = raw(&sa, "GET", &format!("{deploy}/scale"), None).await;
    assert_eq!(code, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cannot get resource \"deployments/scale\" in API group \"apps\""),
        "{body}"
    );

    // nonResourceURLs
    let (code, body) = raw(&sa, "GET", "/metrics", None).await;
    assert_eq!(code, 403);
    forbidden(
        &body,
        "forbidden: User \"system:serviceaccount:team-a:deployer\" cannot get path \"/metrics\"",
    );
    cluster_role(
        &admin,
        "metrics-reader",
        json!([{"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}]),
    )
    .await;
    cluster_role_binding(
        &admin,
        "deployer-metrics",
        "metrics-reader",
        json!({"kind": "ServiceAccount", "name": "deployer", "namespace": "team-a"}),
    )
    .await;
    // authorized now; testenv serves no /metrics, so NotFound instead of Forbidden
    assert_eq!(raw(&sa, "GET", "/metrics", None).await.0, 404);
    assert_eq!(raw(&sa, "GET", "/debug/pprof", None).await.0, 404);
    assert_eq!(raw(&sa, "GET", "/other", None).await.0, 403);

    // a deleted ServiceAccount's tokens stop working
    let (code, _) = raw(
        &admin,
        "DELETE",
        "/api/v1/namespaces/team-a/serviceaccounts/deployer",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        raw(&sa, "GET", "/api/v1/namespaces/team-a/configmaps", None)
            .await
            .0,
        401
    );
    env.shutdown().await;
}

#[tokio::test]
async fn service_account_token_secret() {
    let env = TestEnv::start_with(Options::default().auth(true).tls(true))
        .await
        .unwrap();
    let admin = env.client();
    namespaces(&admin, &["team-a"]).await;
    // the Secret may come before its ServiceAccount
    create(
        &admin,
        "/api/v1/namespaces/team-a/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "deployer-token",
                "annotations": {"kubernetes.io/service-account.name": "deployer"}}}),
    )
    .await;
    service_account(&admin, "team-a", "deployer").await;
    let secret = eventually(10, "the token controller fills the secret", || async {
        let (_, s) = raw(
            &admin,
            "GET",
            "/api/v1/namespaces/team-a/secrets/deployer-token",
            None,
        )
        .await;
        s["data"]["token"].is_string().then_some(s)
    })
    .await;
    let b64 = |v: &Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(b64(&secret["data"]["namespace"]), "team-a");
    assert_eq!(
        b64(&secret["data"]["ca.crt"]),
        env.server().ca_pem().unwrap()
    );
    let token = b64(&secret["data"]["token"]);
    role(
        &admin,
        "team-a",
        "cm-reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
    )
    .await;
    role_binding(
        &admin,
        "team-a",
        "deployer-cm",
        ("Role", "cm-reader"),
        json!({"kind": "ServiceAccount", "name": "deployer"}),
    )
    .await;
    // a kubeconfig for the ServiceAccount, as a controller in the cluster would build from the Secret
    let yaml = testenv::kubeconfig_yaml_with(
        env.url(),
        Some(&b64(&secret["data"]["ca.crt"])),
        Some(&token),
    );
    let sa = testenv::client_from_kubeconfig(&yaml).await.unwrap();
    assert_eq!(
        raw(&sa, "GET", "/api/v1/namespaces/team-a/configmaps", None)
            .await
            .0,
        200
    );
    assert_eq!(
        raw(&sa, "GET", "/api/v1/namespaces/default/configmaps", None)
            .await
            .0,
        403
    );
    // the token lives as long as the Secret
    let (code, _) = raw(
        &admin,
        "DELETE",
        "/api/v1/namespaces/team-a/secrets/deployer-token",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        raw(&sa, "GET", "/api/v1/namespaces/team-a/configmaps", None)
            .await
            .0,
        401
    );
    env.shutdown().await;
}

async fn impersonating(env: &TestEnv, token: &str, user: &str, groups: &[&str]) -> Client {
    let mut kc =
        kube::config::Kubeconfig::from_yaml(&env.server().kubeconfig_yaml(Some(token))).unwrap();
    let auth = kc.auth_infos[0].auth_info.as_mut().unwrap();
    auth.impersonate = Some(user.to_string());
    if !groups.is_empty() {
        auth.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    }
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn impersonation() {
    let env = auth_env().await;
    let admin = env.client();
    team_a_deployer(&admin, "cm-reader", &["list"]).await;

    // the admin impersonates the ServiceAccount (as kustomize-controller does for spec.serviceAccountName)
    let admin_token = env.server().admin_token().unwrap().to_string();
    let as_sa = impersonating(
        &env,
        &admin_token,
        "system:serviceaccount:team-a:deployer",
        &[],
    )
    .await;
    assert_eq!(
        raw(&as_sa, "GET", "/api/v1/namespaces/team-a/configmaps", None)
            .await
            .0,
        200
    );
    let (code, body) = raw(&as_sa, "GET", "/api/v1/namespaces/team-b/configmaps", None).await;
    assert_eq!(code, 403);
    forbidden(
        &body,
        "configmaps is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team-b\"",
    );
    let (_, review) = raw(
        &as_sa,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some((JSON, json!({}))),
    )
    .await;
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated"
        ])
    );

    // bob may not impersonate
    let bob_token = env.server().token_for("bob", &["people"]);
    let bob_as_alice = impersonating(&env, &bob_token, "alice", &[]).await;
    let (code, body) = raw(
        &bob_as_alice,
        "GET",
        "/api/v1/namespaces/team-a/configmaps",
        None,
    )
    .await;
    assert_eq!(code, 403);
    forbidden(
        &body,
        "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
    );
    // until he may; then alice's permissions apply (she has none)
    cluster_role(
        &admin,
        "impersonator",
        json!([{"apiGroups": [""], "resources": ["users", "groups", "serviceaccounts"], "verbs": ["impersonate"]}]),
    )
    .await;
    cluster_role_binding(
        &admin,
        "bob-impersonates",
        "impersonator",
        json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"}),
    )
    .await;
    let (code, body) = raw(
        &bob_as_alice,
        "GET",
        "/api/v1/namespaces/team-a/configmaps",
        None,
    )
    .await;
    assert_eq!(code, 403);
    forbidden(
        &body,
        "configmaps is forbidden: User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team-a\"",
    );
    let bob_as_deployer = impersonating(
        &env,
        &bob_token,
        "system:serviceaccount:team-a:deployer",
        &[],
    )
    .await;
    assert_eq!(
        raw(
            &bob_as_deployer,
            "GET",
            "/api/v1/namespaces/team-a/configmaps",
            None
        )
        .await
        .0,
        200
    );
    // impersonating a group
    let bob_as_admin = impersonating(&env, &bob_token, "alice", &["system:masters"]).await;
    assert_eq!(
        raw(
            &bob_as_admin,
            "GET",
            "/api/v1/namespaces/team-b/configmaps",
            None
        )
        .await
        .0,
        200
    );
    env.shutdown().await;
}

#[tokio::test]
async fn access_reviews() {
    let env = auth_env().await;
    let admin = env.client();
    team_a_deployer(&admin, "cm-writer", &["create"]).await;
    let sa = env
        .client_with_token(&token_request(&admin, "team-a", "deployer").await)
        .await
        .unwrap();
    let ssar = |ns: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": ns, "verb": "create", "resource": "configmaps"}}})
    };
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, r) = raw(&sa, "POST", path, Some((JSON, ssar("team-a")))).await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["kind"], "SelfSubjectAccessReview");
    assert_eq!(r["status"]["allowed"], true, "{r}");
    let (_, r) = raw(&sa, "POST", path, Some((JSON, ssar("team-b")))).await;
    assert_eq!(r["status"]["allowed"], false, "{r}");

    // typed, through k8s-openapi
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("system:serviceaccount:team-a:deployer".into()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some("team-a".into()),
                verb: Some("create".into()),
                resource: Some("configmaps".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: kube::Api<SubjectAccessReview> = kube::Api::all(admin.clone());
    let out = api.create(&Default::default(), &sar).await.unwrap();
    assert!(out.status.unwrap().allowed);
    let mut other = sar.clone();
    other.spec.resource_attributes.as_mut().unwrap().namespace = Some("team-b".into());
    let out = api.create(&Default::default(), &other).await.unwrap();
    assert!(!out.status.unwrap().allowed);
    // the ServiceAccount itself may not ask about others
    let api: kube::Api<SubjectAccessReview> = kube::Api::all(sa.clone());
    let err = common::api_err(api.create(&Default::default(), &sar).await.unwrap_err());
    assert_eq!(err.code, 403);

    // non-resource attributes
    let (_, r) = raw(
        &sa,
        "POST",
        path,
        Some((
            JSON,
            json!({"spec": {"nonResourceAttributes": {"path": "/apis", "verb": "get"}}}),
        )),
    )
    .await;
    assert_eq!(r["status"]["allowed"], true, "{r}");
    env.shutdown().await;
}

#[tokio::test]
async fn kube_client_over_tls() {
    let env = TestEnv::start_with(Options::default().tls(true))
        .await
        .unwrap();
    assert!(env.url().starts_with("https://127.0.0.1:"), "{}", env.url());
    let kubeconfig = std::fs::read_to_string(env.kubeconfig()).unwrap();
    assert!(kubeconfig.contains("certificate-authority-data:"));
    assert!(!kubeconfig.contains("token:"), "auth is off");
    let client = testenv::client_from_kubeconfig(&kubeconfig).await.unwrap();
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"kube-system".to_string()), "{names:?}");
    // localhost is in the certificate too
    let localhost = kubeconfig.replace("https://127.0.0.1:", "https://localhost:");
    let client = testenv::client_from_kubeconfig(&localhost).await.unwrap();
    assert_eq!(raw(&client, "GET", "/version", None).await.0, 200);
    // without the CA the server is not trusted
    let untrusted = testenv::client_from_kubeconfig(&testenv::kubeconfig_yaml(env.url()))
        .await
        .unwrap();
    let req = http::Request::get("/version")
        .body(kube::client::Body::empty())
        .unwrap();
    assert!(untrusted.send(req).await.is_err());
    // a watch streams over TLS
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::default_namespaced(env.client());
    let mut stream = Box::pin(
        cms.watch(&kube::api::WatchParams::default(), "0")
            .await
            .unwrap(),
    );
    cms.create(
        &Default::default(),
        &serde_json::from_value(configmap("w")).unwrap(),
    )
    .await
    .unwrap();
    use futures::StreamExt;
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, kube::core::WatchEvent::Added(_)), "{ev:?}");
    env.shutdown().await;
}

/// The authentication layer tells the request log who made a request.
#[tokio::test]
async fn response_carries_the_request_user() {
    use tower::ServiceExt;
    let store = testenv::store::Store::new(None).unwrap();
    let mut state = testenv::server::AppState::new(store);
    let auth = testenv::auth::Auth::new(None, None, None).unwrap();
    let token = auth.token_for("carol", &["system:masters"]);
    state.auth = Arc::new(auth);
    let app = testenv::server::router(state);
    let req = http::Request::get("/api/v1/namespaces")
        .header("authorization", format!("Bearer {token}"))
        .header("impersonate-user", "dave")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 403, "dave has no permissions");
    let user = resp
        .extensions()
        .get::<testenv::server::RequestUser>()
        .unwrap();
    assert_eq!(user.user, "dave");
    assert_eq!(user.groups, vec!["system:authenticated".to_string()]);
    assert_eq!(user.impersonated_by.as_deref(), Some("carol"));
}
