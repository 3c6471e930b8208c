//! Multi-tenancy lockdown against testenv with authentication and RBAC on: a Kustomization with
//! `serviceAccountName` (or the controller's `--default-service-account`) applies, prunes and health-checks as
//! `system:serviceaccount:<namespace>:<name>`, so the tenant's RBAC decides what it may touch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::*;

const REV1: &str = "main@sha1:1111111111111111111111111111111111111111";
const REV2: &str = "main@sha1:2222222222222222222222222222222222222222";
const REV3: &str = "main@sha1:3333333333333333333333333333333333333333";
const REV4: &str = "main@sha1:4444444444444444444444444444444444444444";

const TENANT: &str = "tenant-a";
const SA_USER: &str = "system:serviceaccount:tenant-a:reconciler";
const ADMIN: &str = "testenv-admin";

const CLUSTER_ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: tenant-a-escalation
rules:
- apiGroups: ['*']
  resources: ['*']
  verbs: ['*']
";

async fn create<K>(api: Api<K>, value: Value)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    api.create(
        &PostParams::default(),
        &serde_json::from_value(value).unwrap(),
    )
    .await
    .unwrap();
}

/// Namespace `ns`; with `sa`, a ServiceAccount bound to a Role allowing every verb on configmaps in `ns`.
async fn tenant(fx: &Fx, ns: &str, sa: Option<&str>) {
    create::<Namespace>(
        Api::all(fx.client.clone()),
        json!({"metadata": {"name": ns}}),
    )
    .await;
    let Some(sa) = sa else { return };
    create::<ServiceAccount>(
        Api::namespaced(fx.client.clone(), ns),
        json!({"metadata": {"name": sa}}),
    )
    .await;
    create::<Role>(
        Api::namespaced(fx.client.clone(), ns),
        json!({"metadata": {"name": "configmaps-only"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]}),
    )
    .await;
    create::<RoleBinding>(
        Api::namespaced(fx.client.clone(), ns),
        json!({"metadata": {"name": format!("{sa}-configmaps")},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmaps-only"},
               "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]}),
    )
    .await;
}

/// Requests that touched the applied objects (everything but the Flux objects the test and the controller's
/// status updates write).
fn object_requests(fx: &Fx, since: usize) -> Vec<testenv::LoggedRequest> {
    fx.requests_since(since)
        .into_iter()
        .filter(|r| {
            !r.resource.is_empty()
                && !matches!(
                    r.resource.as_str(),
                    "kustomizations" | "gitrepositories" | "customresourcedefinitions"
                )
        })
        .collect()
}

/// Asserts that every write to applied objects since `since` (in `namespace` and cluster-scoped ones when
/// given: other tenants' Kustomizations may be retrying meanwhile) was made as `user`, impersonated by the
/// controller's admin identity.
fn assert_writes_impersonated_in(
    fx: &Fx,
    since: usize,
    namespace: Option<&str>,
    user: &str,
) -> Vec<testenv::LoggedRequest> {
    let writes: Vec<_> = object_requests(fx, since)
        .into_iter()
        .filter(|r| {
            r.is_write() && namespace.is_none_or(|ns| r.namespace.is_empty() || r.namespace == ns)
        })
        .collect();
    for w in &writes {
        assert_eq!(
            (w.user.as_str(), w.impersonated_by.as_deref()),
            (user, Some(ADMIN)),
            "write not impersonated: {w:?}"
        );
    }
    writes
}

fn assert_writes_impersonated(fx: &Fx, since: usize, user: &str) -> Vec<testenv::LoggedRequest> {
    assert_writes_impersonated_in(fx, since, None, user)
}

/// No write since `since` changed anything: every one was a dry-run or refused.
fn assert_nothing_written(fx: &Fx, since: usize) {
    let applied: Vec<_> = object_requests(fx, since)
        .into_iter()
        .filter(|r| r.is_write() && !r.dry_run && r.status < 300)
        .collect();
    assert!(applied.is_empty(), "writes went through: {applied:?}");
}

#[tokio::test]
async fn service_account_confines_apply_prune_and_health_to_its_rbac() {
    let fx = start_auth(test_config()).await;
    tenant(&fx, TENANT, Some("reconciler")).await;
    fx.create_repo("repo").await;
    let app = configmap_in(TENANT, "app", &[("x", "1")]);
    let old = configmap_in(TENANT, "old", &[("y", "1")]);
    fx.publish("repo", REV1, &[("app.yaml", &app), ("old.yaml", &old)])
        .await;
    let baseline = fx.request_count();
    fx.create_ks_in(
        TENANT,
        "apps",
        json!({"serviceAccountName": "reconciler", "wait": true}),
    )
    .await;
    let ks = fx.wait_applied_in(TENANT, "apps", REV1).await;
    assert_eq!(
        inventory_ids(&ks),
        ["tenant-a_app__ConfigMap", "tenant-a_old__ConfigMap"]
    );
    let healthy = ks.condition("Healthy").unwrap();
    assert_eq!(
        (healthy.status.as_str(), healthy.reason.as_str()),
        ("True", "Succeeded")
    );
    // Dry-runs, applies and the health checks' reads all went out as the ServiceAccount.
    let writes = assert_writes_impersonated(&fx, baseline, SA_USER);
    assert!(writes.iter().any(|w| w.dry_run), "{writes:?}");
    assert_eq!(
        writes
            .iter()
            .filter(|w| !w.dry_run && w.verb == "patch" && w.status < 300)
            .count(),
        2,
        "both ConfigMaps applied: {writes:?}"
    );
    let reads: Vec<_> = object_requests(&fx, baseline)
        .into_iter()
        .filter(|r| r.is("get", "configmaps"))
        .collect();
    assert!(!reads.is_empty(), "health checks read the ConfigMaps");
    for r in &reads {
        assert_eq!(r.user, SA_USER, "read not impersonated: {r:?}");
    }
    assert_eq!(
        fx.configmap(TENANT, "app").await.unwrap()["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/namespace"],
        TENANT
    );

    // A ConfigMap in a namespace the ServiceAccount may not write: the dry-run of the whole set fails, so
    // nothing is applied (app keeps x=1) and nothing is pruned (old stays).
    let app2 = configmap_in(TENANT, "app", &[("x", "2")]);
    let intruder = configmap_in("default", "intruder", &[("z", "1")]);
    let before = fx.request_count();
    fx.publish(
        "repo",
        REV2,
        &[("app.yaml", &app2), ("intruder.yaml", &intruder)],
    )
    .await;
    let ks = fx
        .wait_failed_in(TENANT, "apps", "ReconciliationFailed")
        .await;
    let message = &ks.condition("Ready").unwrap().message;
    assert_eq!(
        message,
        "ConfigMap/default/intruder dry-run failed (Forbidden): configmaps \"intruder\" is forbidden: \
         User \"system:serviceaccount:tenant-a:reconciler\" cannot patch resource \"configmaps\" in API group \"\" \
         in the namespace \"default\""
    );
    assert_eq!(
        inventory_ids(&ks),
        ["tenant-a_app__ConfigMap", "tenant-a_old__ConfigMap"],
        "inventory kept"
    );
    assert_eq!(
        ks.status.as_ref().unwrap().last_applied_revision.as_deref(),
        Some(REV1)
    );
    assert_eq!(fx.configmap(TENANT, "app").await.unwrap()["data"]["x"], "1");
    assert!(
        fx.configmap(TENANT, "old").await.is_some(),
        "nothing pruned"
    );
    assert!(fx.configmap("default", "intruder").await.is_none());
    assert_nothing_written(&fx, before);
    assert_writes_impersonated(&fx, before, SA_USER);
    assert!(
        object_requests(&fx, before)
            .iter()
            .any(|r| r.is("patch", "configmaps") && r.status == 403 && r.name == "intruder"),
        "the refused dry-run reached the server as the ServiceAccount"
    );

    // A ClusterRole (applied in the first stage): refused, and the ConfigMaps of the later stage are not even
    // dry-run.
    let before = fx.request_count();
    fx.publish(
        "repo",
        REV3,
        &[("app.yaml", &app2), ("role.yaml", CLUSTER_ROLE)],
    )
    .await;
    let ks = fx
        .wait_ks_in(TENANT, "apps", "ClusterRole refused", |ks| {
            ks.condition("Ready")
                .is_some_and(|c| c.message.starts_with("ClusterRole/"))
        })
        .await;
    assert_invariants(&ks);
    let ready = ks.condition("Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ReconciliationFailed")
    );
    assert_eq!(
        ready.message,
        "ClusterRole/tenant-a-escalation dry-run failed (Forbidden): clusterroles.rbac.authorization.k8s.io \
         \"tenant-a-escalation\" is forbidden: User \"system:serviceaccount:tenant-a:reconciler\" cannot patch \
         resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"
    );
    let roles: Api<ClusterRole> = Api::all(fx.client.clone());
    assert!(
        roles
            .get_opt("tenant-a-escalation")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(fx.configmap(TENANT, "app").await.unwrap()["data"]["x"], "1");
    assert!(
        fx.configmap(TENANT, "old").await.is_some(),
        "nothing pruned"
    );
    assert_nothing_written(&fx, before);
    assert_writes_impersonated(&fx, before, SA_USER);

    // The next revision drops the intruders and old: applied and pruned as the ServiceAccount.
    let before = fx.request_count();
    fx.publish("repo", REV4, &[("app.yaml", &app2)]).await;
    let ks = fx.wait_applied_in(TENANT, "apps", REV4).await;
    assert_eq!(inventory_ids(&ks), ["tenant-a_app__ConfigMap"]);
    assert_eq!(fx.configmap(TENANT, "app").await.unwrap()["data"]["x"], "2");
    assert!(fx.configmap(TENANT, "old").await.is_none(), "old pruned");
    let writes = assert_writes_impersonated(&fx, before, SA_USER);
    assert!(
        writes
            .iter()
            .any(|w| w.verb == "delete" && w.name == "old" && w.status < 300),
        "prune deleted old as the ServiceAccount: {writes:?}"
    );
    let events = fx.events_for("apps");
    assert!(
        events
            .iter()
            .any(|e| e.message == "ConfigMap/tenant-a/old deleted"),
        "{events:?}"
    );

    // healthChecks on an object the ServiceAccount cannot read (the admin could): it stays Unknown and the
    // check times out naming the 403.
    create::<Deployment>(
        Api::namespaced(fx.client.clone(), TENANT),
        json!({"metadata": {"name": "web"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}}),
    )
    .await;
    fx.create_repo("watch").await;
    fx.publish(
        "watch",
        REV1,
        &[("cm.yaml", &configmap_in(TENANT, "watched", &[]))],
    )
    .await;
    fx.create_ks_in(
        TENANT,
        "watcher",
        json!({"serviceAccountName": "reconciler", "timeout": "1s",
               "sourceRef": {"kind": "GitRepository", "name": "watch", "namespace": "default"},
               "healthChecks": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": TENANT}]}),
    )
    .await;
    let ks = fx
        .wait_failed_in(TENANT, "watcher", "HealthCheckFailed")
        .await;
    let ready = &ks.condition("Ready").unwrap().message;
    assert!(
        ready.contains(
            "timeout waiting for: [Deployment/tenant-a/web status: 'Unknown': deployments.apps \"web\" is \
             forbidden: User \"system:serviceaccount:tenant-a:reconciler\" cannot get resource \"deployments\" \
             in API group \"apps\" in the namespace \"tenant-a\"]"
        ),
        "{ready}"
    );

    // Deleting the Kustomization prunes its objects as the ServiceAccount as well.
    let before = fx.request_count();
    let api = fx.ks_api(TENANT);
    api.delete("apps", &Default::default()).await.unwrap();
    poll(|| async { api.get_opt("apps").await.unwrap().is_none() }).await;
    assert!(fx.configmap(TENANT, "app").await.is_none());
    let writes = assert_writes_impersonated(&fx, before, SA_USER);
    assert!(
        writes
            .iter()
            .any(|w| w.verb == "delete" && w.name == "app" && w.status < 300),
        "{writes:?}"
    );
    fx.stop().await;
}

#[tokio::test]
async fn default_service_account_applies_when_none_is_set() {
    let mut config = test_config();
    config.default_service_account = Some("reconciler".into());
    let fx = start_auth(config).await;
    tenant(&fx, TENANT, Some("reconciler")).await;
    // tenant-b has no ServiceAccount at all; in tenant-a, "idle" exists but is bound to nothing.
    tenant(&fx, "tenant-b", None).await;
    create::<ServiceAccount>(
        Api::namespaced(fx.client.clone(), TENANT),
        json!({"metadata": {"name": "idle"}}),
    )
    .await;
    fx.create_repo("repo").await;
    fx.publish(
        "repo",
        REV1,
        &[
            ("a/cm.yaml", &configmap_in(TENANT, "from-default-sa", &[])),
            ("b/cm.yaml", &configmap_in("tenant-b", "orphan", &[])),
            ("idle/cm.yaml", &configmap_in(TENANT, "idle", &[])),
        ],
    )
    .await;

    let before = fx.request_count();
    fx.create_ks_in(TENANT, "a", json!({"path": "./a"})).await;
    fx.wait_applied_in(TENANT, "a", REV1).await;
    assert!(fx.configmap(TENANT, "from-default-sa").await.is_some());
    let writes = assert_writes_impersonated(&fx, before, SA_USER);
    assert!(writes.iter().any(|w| w.dry_run) && writes.iter().any(|w| !w.dry_run));

    // The default account is looked up in the Kustomization's namespace: tenant-b has none, so every request
    // is refused and nothing is created.
    let before = fx.request_count();
    fx.create_ks_in("tenant-b", "b", json!({"path": "./b"}))
        .await;
    let ks = fx
        .wait_failed_in("tenant-b", "b", "ReconciliationFailed")
        .await;
    assert_eq!(
        ks.condition("Ready").unwrap().message,
        "ConfigMap/tenant-b/orphan dry-run failed (Forbidden): configmaps \"orphan\" is forbidden: \
         User \"system:serviceaccount:tenant-b:reconciler\" cannot patch resource \"configmaps\" in API group \"\" \
         in the namespace \"tenant-b\""
    );
    assert!(inventory_ids(&ks).is_empty());
    assert!(fx.configmap("tenant-b", "orphan").await.is_none());
    assert_nothing_written(&fx, before);
    assert_writes_impersonated_in(
        &fx,
        before,
        Some("tenant-b"),
        "system:serviceaccount:tenant-b:reconciler",
    );

    // spec.serviceAccountName wins over the default: an account without RBAC is refused just as clearly.
    let before = fx.request_count();
    fx.create_ks_in(
        TENANT,
        "idle",
        json!({"path": "./idle", "serviceAccountName": "idle"}),
    )
    .await;
    let ks = fx
        .wait_failed_in(TENANT, "idle", "ReconciliationFailed")
        .await;
    assert!(
        ks.condition("Ready").unwrap().message.starts_with(
            "ConfigMap/tenant-a/idle dry-run failed (Forbidden): configmaps \"idle\" is forbidden: \
             User \"system:serviceaccount:tenant-a:idle\" cannot patch resource \"configmaps\""
        ),
        "{:?}",
        ks.condition("Ready")
    );
    assert!(fx.configmap(TENANT, "idle").await.is_none());
    assert_nothing_written(&fx, before);
    assert_writes_impersonated_in(
        &fx,
        before,
        Some(TENANT),
        "system:serviceaccount:tenant-a:idle",
    );
    fx.stop().await;
}
