//! The API semantics of testenv, exercised through kube-rs (and raw requests where kube-rs hides details).
//! Numbers in test names refer to the "Semantics" list of issue 3.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::{api_err, eventually, raw};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    PropagationPolicy, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::{Value, json};
use testenv::{Options, TestEnv};

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap()
}

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]}
            }
        }
    }))
    .unwrap()
}

async fn create_ns(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

#[tokio::test]
async fn s1_discovery_lists_resources_verbs_and_status() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let apps = discovery.get("apps").unwrap();
    let (ar, caps) = apps
        .recommended_resources()
        .into_iter()
        .find(|(r, _)| r.kind == "Deployment")
        .unwrap();
    assert_eq!(ar.plural, "deployments");
    assert_eq!(caps.scope, Scope::Namespaced);
    for verb in [
        verbs::LIST,
        verbs::WATCH,
        verbs::PATCH,
        verbs::CREATE,
        verbs::DELETE,
    ] {
        assert!(caps.supports_operation(verb), "{verb}");
    }
    assert!(
        !caps.subresources.is_empty(),
        "deployments/status is discovered"
    );

    let (code, core) = raw(&client, "GET", "/api/v1", None).await;
    assert_eq!(code, 200);
    let ns = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "namespaces")
        .unwrap();
    assert_eq!(ns["namespaced"], false);
    assert_eq!(ns["singularName"], "namespace");
    assert_eq!(ns["shortNames"], json!(["ns"]));
    let (_, groups) = raw(&client, "GET", "/apis", None).await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for g in [
        "apps",
        "batch",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "autoscaling",
    ] {
        assert!(names.contains(&g), "{g} missing");
    }
    let (code, group) = raw(&client, "GET", "/apis/apps", None).await;
    assert_eq!(code, 200);
    assert_eq!(group["preferredVersion"]["groupVersion"], "apps/v1");
    let (_, apps_v1) = raw(&client, "GET", "/apis/apps/v1", None).await;
    let deploy = apps_v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments")
        .unwrap();
    assert_eq!(deploy["categories"], json!(["all"]));
    let (code, _) = raw(&client, "GET", "/apis/nope.example.com/v1", None).await;
    assert_eq!(code, 404);

    // aggregated discovery (apidiscovery.k8s.io/v2)
    let agg = client.list_api_groups_aggregated().await.unwrap();
    let apps = agg
        .items
        .iter()
        .find(|g| g.metadata.as_ref().and_then(|m| m.name.as_deref()) == Some("apps"))
        .unwrap();
    let deploy = apps.versions[0]
        .resources
        .iter()
        .find(|r| r.resource.as_deref() == Some("deployments"))
        .unwrap();
    assert_eq!(deploy.scope.as_deref(), Some("Namespaced"));
    assert_eq!(
        deploy.subresources[0].subresource.as_deref(),
        Some("status")
    );
    let core = client.list_core_api_versions_aggregated().await.unwrap();
    assert!(
        core.items[0].versions[0]
            .resources
            .iter()
            .any(|r| r.resource.as_deref() == Some("configmaps"))
    );
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(discovery.has_group("apiextensions.k8s.io"));
    env.shutdown().await;
}

#[tokio::test]
async fn s2_builtin_kinds_are_served_and_default_namespaces_exist() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let nss = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<String> = nss
        .items
        .iter()
        .map(|n| n.metadata.name.clone().unwrap())
        .collect();
    for n in ["default", "kube-system", "kube-public"] {
        assert!(names.iter().any(|x| x == n), "{n}");
    }
    let kinds = [
        ("", "v1", "ConfigMap", "configmaps"),
        ("", "v1", "Secret", "secrets"),
        ("", "v1", "Service", "services"),
        ("", "v1", "ServiceAccount", "serviceaccounts"),
        ("", "v1", "Pod", "pods"),
        ("", "v1", "Event", "events"),
        ("events.k8s.io", "v1", "Event", "events"),
        ("", "v1", "Endpoints", "endpoints"),
        ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        ("apps", "v1", "Deployment", "deployments"),
        ("apps", "v1", "StatefulSet", "statefulsets"),
        ("apps", "v1", "DaemonSet", "daemonsets"),
        ("apps", "v1", "ReplicaSet", "replicasets"),
        ("batch", "v1", "Job", "jobs"),
        ("batch", "v1", "CronJob", "cronjobs"),
        ("networking.k8s.io", "v1", "Ingress", "ingresses"),
        (
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
        ),
        ("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
        ),
        ("coordination.k8s.io", "v1", "Lease", "leases"),
        (
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
        ),
        (
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
        ),
    ];
    for (g, v, k, p) in kinds {
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), p);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
        let mut obj = DynamicObject::new("x1", &ar);
        obj.data = json!({});
        let created = api.create(&PostParams::default(), &obj).await.unwrap();
        assert_eq!(created.types.unwrap().kind, k);
        // (the namespace's own `default` ServiceAccount is there too)
        assert_eq!(
            api.list(&ListParams::default().fields("metadata.name=x1"))
                .await
                .unwrap()
                .items
                .len(),
            1,
            "{k}"
        );
    }
    for (g, v, k, p) in [
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
        ),
    ] {
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), p);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        api.create(&PostParams::default(), &DynamicObject::new("x1", &ar))
            .await
            .unwrap();
        api.get("x1").await.unwrap();
    }
    env.shutdown().await;
}

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["url"],
                            "properties": {
                                "url": {"type": "string", "pattern": "^https?://"},
                                "interval": {"type": "string", "default": "5m"},
                                "replicas": {"type": "integer", "minimum": 0, "maximum": 5},
                                "mode": {"type": "string", "enum": ["fast", "slow"]},
                                "port": {"x-kubernetes-int-or-string": true},
                                "values": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                                "items": {"type": "array", "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["name"],
                                    "items": {"type": "object", "required": ["name"], "properties": {
                                        "name": {"type": "string"}, "value": {"type": "string"}}}},
                                "tags": {"type": "array", "items": {"type": "string"}}
                            }
                        },
                        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
                    }
                }}
            }]
        }
    }))
    .unwrap()
}

fn widget_ar() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    )
}

async fn install_widget_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .unwrap();
    let established = kube::runtime::wait::await_condition(
        crds.clone(),
        "widgets.example.com",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), established)
        .await
        .unwrap()
        .unwrap();
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    let mut w = DynamicObject::new(name, &widget_ar());
    w.data = json!({"spec": spec});
    w
}

#[tokio::test]
async fn s3_crds_register_validate_default_and_prune() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    install_widget_crd(&client).await;
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("widgets.example.com")
        .await
        .unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    for t in ["NamesAccepted", "Established"] {
        assert!(
            conds.iter().any(|c| c.type_ == t && c.status == "True"),
            "{t}"
        );
    }
    let (_, doc) = raw(&client, "GET", "/apis/example.com/v1", None).await;
    let names: Vec<&str> = doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status"]);

    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widget_ar());
    let created = api
        .create(
            &PostParams::default(),
            &widget("w1", json!({"url": "https://x", "port": "http", "unknown": 1, "values": {"free": {"form": true}}})),
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["interval"], "5m", "defaulted");
    assert!(created.data["spec"].get("unknown").is_none(), "pruned");
    assert_eq!(
        created.data["spec"]["values"]["free"]["form"], true,
        "preserved"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let cases = [
        (json!({"url": "ftp://x"}), "spec.url"),
        (json!({"url": "https://x", "replicas": 9}), "spec.replicas"),
        (
            json!({"url": "https://x", "replicas": "two"}),
            "spec.replicas",
        ),
        (json!({"url": "https://x", "mode": "medium"}), "spec.mode"),
        (json!({"url": "https://x", "port": 1.5}), "spec.port"),
        (json!({"interval": "1m"}), "spec.url"),
        (
            json!({"url": "https://x", "items": [{"value": "v"}]}),
            "spec.items[0].name",
        ),
    ];
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let err = api
            .create(
                &PostParams::default(),
                &widget(&format!("bad{i}"), spec.clone()),
            )
            .await
            .unwrap_err();
        let st = api_err(err);
        assert_eq!(st.code, 422, "{spec}");
        assert_eq!(st.reason, "Invalid");
        assert!(
            st.message.starts_with(&format!(
                "Widget.example.com \"bad{i}\" is invalid: {field}"
            )),
            "{}",
            st.message
        );
        let causes = st.details.unwrap().causes;
        assert!(causes.iter().any(|c| c.field == field), "{causes:?}");
    }

    // fieldValidation=Strict refuses unknown fields instead of dropping them
    let (code, st) = raw(
        &client,
        "POST",
        "/apis/example.com/v1/namespaces/default/widgets?fieldValidation=Strict",
        Some((
            "application/json",
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "strict"},
                "spec": {"url": "https://x", "unknown": 1}}),
        )),
    )
    .await;
    assert_eq!((code, st["reason"].as_str()), (400, Some("BadRequest")));
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("strict decoding error: unknown field \"spec.unknown\""),
        "{st}"
    );

    // deleting the CRD unregisters it and its objects
    Api::<CustomResourceDefinition>::all(client.clone())
        .delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let (code, _) = raw(
        &client,
        "GET",
        "/apis/example.com/v1/namespaces/default/widgets",
        None,
    )
    .await;
    assert_eq!(code, 404);
    // re-creating brings the resource back, empty
    install_widget_crd(&client).await;
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    env.shutdown().await;
}

#[tokio::test]
async fn s4_crud_create_get_list_update_delete() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("a", &[("k", "v")]))
        .await
        .unwrap();
    let st = api_err(
        api.create(&PostParams::default(), &cm("a", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(st.message, "configmaps \"a\" already exists");

    let mut gen_cm = cm("", &[]);
    gen_cm.metadata.name = None;
    gen_cm.metadata.generate_name = Some("gen-".into());
    let g = api.create(&PostParams::default(), &gen_cm).await.unwrap();
    let gname = g.metadata.name.unwrap();
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");

    let st = api_err(api.get("missing").await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (404, "NotFound"));

    // stale update
    let mut a = api.get("a").await.unwrap();
    let stale = a.clone();
    a.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
    api.replace("a", &PostParams::default(), &a).await.unwrap();
    let st = api_err(
        api.replace("a", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert!(st.message.contains("the object has been modified"));

    // namespace that does not exist
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let st = api_err(
        other
            .create(&PostParams::default(), &cm("x", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (404, "NotFound"));
    assert_eq!(st.message, "namespaces \"nope\" not found");

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(api.get("a").await.unwrap_err()).code, 404);
    env.shutdown().await;
}

#[tokio::test]
async fn s4_list_selectors_and_pagination() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    create_ns(&client, "other").await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for i in 0..10 {
        let mut c = cm(&format!("c{i}"), &[]);
        let mut labels = BTreeMap::from([("idx".to_string(), i.to_string())]);
        labels.insert(
            "parity".into(),
            if i % 2 == 0 { "even" } else { "odd" }.into(),
        );
        if i < 3 {
            labels.insert("low".into(), "yes".into());
        }
        c.metadata.labels = Some(labels);
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    Api::<ConfigMap>::namespaced(client.clone(), "other")
        .create(&PostParams::default(), &cm("c0", &[]))
        .await
        .unwrap();
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect()
    };
    let sel = |s: &str| ListParams::default().labels(s);
    assert_eq!(
        names(api.list(&sel("parity=even,low")).await.unwrap()),
        ["c0", "c2"]
    );
    assert_eq!(
        names(
            api.list(&sel("parity==odd,idx in (1, 3, 4)"))
                .await
                .unwrap()
        ),
        ["c1", "c3"]
    );
    assert_eq!(api.list(&sel("parity!=odd")).await.unwrap().items.len(), 5);
    assert_eq!(
        api.list(&sel("idx notin (0,1,2,3,4,5,6,7)"))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(api.list(&sel("!low")).await.unwrap().items.len(), 7);
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=c7"))
                .await
                .unwrap()
        ),
        ["c7"]
    );
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default().fields("metadata.name=c0"))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        all.list(&ListParams::default().fields("metadata.namespace=other"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // limit + continue visit every object exactly once
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        let token = page.metadata.continue_.clone();
        seen.extend(names(page));
        match token {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    let mut expected: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    expected.sort();
    assert_eq!(seen, expected);
    env.shutdown().await;
}

#[tokio::test]
async fn s4_finalizers_gc_deletecollection_and_namespace_deletion() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());

    // finalizers keep the object with a deletionTimestamp until removed
    let mut f = cm("fin", &[]);
    f.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &f).await.unwrap();
    api.delete("fin", &DeleteParams::default()).await.unwrap();
    let held = api.get("fin").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_err(api.get("fin").await.unwrap_err()).code, 404);

    // owner references: background deletion removes dependents, orphan keeps them
    for (owner, policy, dependent_survives) in [
        ("owner-bg", None, false),
        ("owner-fg", Some(PropagationPolicy::Foreground), false),
        ("owner-orphan", Some(PropagationPolicy::Orphan), true),
    ] {
        let o = api
            .create(&PostParams::default(), &cm(owner, &[]))
            .await
            .unwrap();
        let mut d = cm(&format!("{owner}-dep"), &[]);
        d.metadata.owner_references = Some(vec![serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": o.metadata.uid.unwrap()
        }))
        .unwrap()]);
        api.create(&PostParams::default(), &d).await.unwrap();
        let dp = DeleteParams {
            propagation_policy: policy,
            ..DeleteParams::default()
        };
        api.delete(owner, &dp).await.unwrap();
        assert_eq!(
            api_err(api.get(owner).await.unwrap_err()).code,
            404,
            "{owner}"
        );
        let dep = api.get_opt(&format!("{owner}-dep")).await.unwrap();
        assert_eq!(dep.is_some(), dependent_survives, "{owner}");
        if let Some(dep) = dep {
            assert!(dep.metadata.owner_references.unwrap_or_default().is_empty());
        }
    }

    // deletecollection with a selector
    for i in 0..4 {
        let mut c = cm(&format!("dc{i}"), &[]);
        c.metadata.labels = Some(BTreeMap::from([("batch".to_string(), (i % 2).to_string())]));
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=0"),
    )
    .await
    .unwrap();
    let left = api
        .list(&ListParams::default().labels("batch"))
        .await
        .unwrap();
    assert_eq!(left.items.len(), 2);
    assert!(
        left.items
            .iter()
            .all(|c| c.metadata.labels.as_ref().unwrap()["batch"] == "1")
    );

    // deleting a namespace removes what is in it; content with finalizers keeps it Terminating
    create_ns(&client, "doomed").await;
    let doomed: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    doomed
        .create(&PostParams::default(), &cm("plain", &[]))
        .await
        .unwrap();
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    doomed.create(&PostParams::default(), &held).await.unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = nss.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let st = api_err(
        doomed
            .create(&PostParams::default(), &cm("new", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (403, "Forbidden"));
    eventually(10, "namespace contents deleted", || {
        let doomed = doomed.clone();
        async move {
            doomed
                .get_opt("plain")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    let held = doomed.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(
        nss.get_opt("doomed").await.unwrap().is_some(),
        "kept while content has finalizers"
    );
    doomed
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": []}})),
        )
        .await
        .unwrap();
    assert!(nss.get_opt("doomed").await.unwrap().is_none());
    // a namespace holding only its default ServiceAccount goes shortly, like any namespace with content
    create_ns(&client, "quiet").await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "quiet");
    eventually(10, "the default ServiceAccount", || {
        let sas = sas.clone();
        async move { sas.get_opt("default").await.unwrap().map(|_| ()) }
    })
    .await;
    nss.delete("quiet", &DeleteParams::default()).await.unwrap();
    eventually(10, "namespace quiet to be gone", || {
        let nss = nss.clone();
        async move { nss.get_opt("quiet").await.unwrap().is_none().then_some(()) }
    })
    .await;
    env.shutdown().await;

    // without the serviceaccounts controller, an empty namespace goes at once
    let env = TestEnv::start_with(Options::default().service_accounts(false))
        .await
        .unwrap();
    let client = env.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    create_ns(&client, "empty").await;
    nss.delete("empty", &DeleteParams::default()).await.unwrap();
    assert!(nss.get_opt("empty").await.unwrap().is_none());
    env.shutdown().await;
}

#[tokio::test]
async fn s5_metadata_uid_rv_generation_and_managed_fields() {
    // resourceVersions are compared across writes: no simulated status writes in between
    let env = TestEnv::start_with(Options::default().simulation(false))
        .await
        .unwrap();
    let client = env.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let pp = PostParams {
        field_manager: Some("creator".into()),
        ..PostParams::default()
    };
    let d = api.create(&pp, &deployment("d", "nginx:1")).await.unwrap();
    let uid = d.metadata.uid.clone().unwrap();
    assert_eq!(uid.len(), 36);
    assert!(d.metadata.creation_timestamp.is_some());
    assert_eq!(d.metadata.generation, Some(1));
    let rv1: u64 = d
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let mf = d.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("creator"));
    assert_eq!(mf[0].operation.as_deref(), Some("Update"));

    // a metadata-only change: new resourceVersion, same generation
    let d2 = api
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    let rv2: u64 = d2
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    assert_eq!(d2.metadata.generation, Some(1));
    assert_eq!(d2.metadata.uid.as_deref(), Some(uid.as_str()));
    // a spec change bumps generation
    let d3 = api
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(d3.metadata.generation, Some(2));
    // the resourceVersion counter is global across kinds
    let c = Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &cm("c", &[]))
        .await
        .unwrap();
    let rvc: u64 = c.metadata.resource_version.unwrap().parse().unwrap();
    assert!(
        rvc > d3
            .metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
    );
    // a no-op write keeps the resourceVersion
    let same = api
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        api.get("d").await.unwrap().metadata.resource_version
    );
    env.shutdown().await;
}

#[tokio::test]
async fn s6_merge_json_and_strategic_patches() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let mut d = deployment("d", "app:1");
    let spec = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    spec.containers[0].env = Some(vec![
        serde_json::from_value(json!({"name": "A", "value": "1"})).unwrap(),
    ]);
    spec.containers[0].ports = Some(vec![
        serde_json::from_value(json!({"containerPort": 80})).unwrap(),
    ]);
    api.create(&PostParams::default(), &d).await.unwrap();

    // strategic: containers merged by name, env by name, ports by containerPort
    let p = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "app:2", "env": [{"name": "B", "value": "2"}], "ports": [{"containerPort": 81}]},
        {"name": "sidecar", "image": "side:1"}
    ]}}}});
    let out = api
        .patch("d", &PatchParams::default(), &Patch::Strategic(p))
        .await
        .unwrap();
    let cs = out.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0].image.as_deref(), Some("app:2"));
    let env_names: Vec<String> = cs[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env_names, ["A", "B"]);
    assert_eq!(cs[0].ports.clone().unwrap().len(), 2);

    // merge patch replaces lists
    let out = api
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "o:1"}]}}}})),
        )
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().template.spec.unwrap().containers.len(), 1);

    // JSON patch, including a failing test operation
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "add", "path": "/metadata/labels", "value": {"j": "p"}}
    ]))
    .unwrap();
    let out = api
        .patch("d", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().replicas, Some(4));
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 9}]))
            .unwrap();
    let st = api_err(
        api.patch("d", &PatchParams::default(), &Patch::<()>::Json(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 422);

    // strategic merge patch is refused for custom resources
    install_widget_crd(&client).await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widget_ar());
    widgets
        .create(
            &PostParams::default(),
            &widget("w", json!({"url": "http://x"})),
        )
        .await
        .unwrap();
    let st = api_err(
        widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"url": "http://y"}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 415);
    env.shutdown().await;
}

#[tokio::test]
async fn s6_server_side_apply_ownership_conflicts_and_force() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let apply = |m: &str| PatchParams::apply(m);
    let doc = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": data});

    // apply creates
    let c = api
        .patch(
            "s",
            &apply("alice"),
            &Patch::Apply(doc(json!({"a": "1", "b": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(c.data.as_ref().unwrap().len(), 2);
    let mf = c.metadata.managed_fields.unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    assert_eq!(
        mf[0].fields_v1.as_ref().unwrap().0,
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );

    // bob co-owns b with the same value (no conflict) and adds c
    api.patch(
        "s",
        &apply("bob"),
        &Patch::Apply(doc(json!({"b": "2", "c": "3"}))),
    )
    .await
    .unwrap();
    // alice drops a and b: a is removed, b stays (bob owns it)
    let c = api
        .patch("s", &apply("alice"), &Patch::Apply(doc(json!({"z": "9"}))))
        .await
        .unwrap();
    let keys: Vec<&String> = c.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["b", "c", "z"]);

    // alice changing bob's field conflicts
    let st = api_err(
        api.patch(
            "s",
            &apply("alice"),
            &Patch::Apply(doc(json!({"z": "9", "c": "changed"}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        st.message,
        "Apply failed with 1 conflict: conflict with \"bob\": .data.c"
    );
    let causes = st.details.unwrap().causes;
    assert_eq!(causes[0].field, ".data.c");
    assert_eq!(causes[0].reason, "FieldManagerConflict");

    // an Update manager's fields conflict too
    api.patch(
        "s",
        &PatchParams {
            field_manager: Some("editor".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"data": {"z": "edited"}})),
    )
    .await
    .unwrap();
    let st = api_err(
        api.patch("s", &apply("alice"), &Patch::Apply(doc(json!({"z": "9"}))))
            .await
            .unwrap_err(),
    );
    assert!(st.message.contains("\"editor\" using v1"), "{}", st.message);

    // force moves ownership
    let c = api
        .patch(
            "s",
            &apply("alice").force(),
            &Patch::Apply(doc(json!({"z": "9", "c": "changed"}))),
        )
        .await
        .unwrap();
    assert_eq!(c.data.as_ref().unwrap()["c"], "changed");
    let mf = c.metadata.managed_fields.unwrap();
    let bob = mf
        .iter()
        .find(|e| e.manager.as_deref() == Some("bob"))
        .unwrap();
    assert_eq!(
        bob.fields_v1.as_ref().unwrap().0,
        json!({"f:data": {"f:b": {}}})
    );

    // a writer may rewrite managedFields itself (Flux drops other managers this way)
    let current = api.get("s").await.unwrap();
    let only_alice: Vec<_> = current
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter(|e| e.manager.as_deref() == Some("alice"))
        .collect();
    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/metadata/managedFields", "value": only_alice}
    ]))
    .unwrap();
    let c = api
        .patch("s", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    let managers: Vec<String> = c
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|e| e.manager)
        .collect();
    assert_eq!(managers, ["alice"]);

    // dry run: returns the would-be object, stores nothing
    let rv = api.get("s").await.unwrap().metadata.resource_version;
    let mut pp = apply("alice");
    pp.dry_run = true;
    let would = api
        .patch(
            "s",
            &pp,
            &Patch::Apply(doc(json!({"z": "dry", "c": "changed"}))),
        )
        .await
        .unwrap();
    assert_eq!(would.data.unwrap()["z"], "dry");
    let now = api.get("s").await.unwrap();
    assert_eq!(now.metadata.resource_version, rv);
    assert_eq!(now.data.unwrap()["z"], "9");
    let mut pp = apply("alice");
    pp.dry_run = true;
    let dry_new = doc(json!({"n": "1"}));
    let mut dry_new_named = dry_new.clone();
    dry_new_named["metadata"]["name"] = json!("dry-only");
    api.patch("dry-only", &pp, &Patch::Apply(dry_new_named))
        .await
        .unwrap();
    assert!(api.get_opt("dry-only").await.unwrap().is_none());
    let dp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    api.create(&dp, &cm("dry-create", &[])).await.unwrap();
    assert!(api.get_opt("dry-create").await.unwrap().is_none());
    let dd = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    api.delete("s", &dd).await.unwrap();
    assert!(api.get_opt("s").await.unwrap().is_some());
    env.shutdown().await;
}

#[tokio::test]
async fn s6_apply_merges_lists_by_key_for_builtins_and_crds() {
    // checks that status stays empty: raw storage, no simulated status
    let env = TestEnv::start_with(Options::default().simulation(false))
        .await
        .unwrap();
    let client = env.client();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let mk = |containers: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": containers}}}})
    };
    api.patch(
        "d",
        &PatchParams::apply("kustomize-controller"),
        &Patch::Apply(mk(json!([{"name": "app", "image": "a:1"}]))),
    )
    .await
    .unwrap();
    // another manager adds a sidecar container: merged by name, not replaced
    let out = api
        .patch(
            "d",
            &PatchParams::apply("injector"),
            &Patch::Apply(mk(json!([{"name": "sidecar", "image": "s:1"}]))),
        )
        .await
        .unwrap();
    let names: Vec<String> = out
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["app", "sidecar"]);
    // status is not changed by applying to the main resource
    let out = api
        .patch(
            "d",
            &PatchParams::apply("kustomize-controller"),
            &Patch::Apply({
                let mut v = mk(json!([{"name": "app", "image": "a:2"}]));
                v["status"] = json!({"replicas": 7});
                v
            }),
        )
        .await
        .unwrap();
    assert!(out.status.is_none());
    assert_eq!(out.metadata.generation, Some(3));

    install_widget_crd(&client).await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widget_ar());
    let wdoc = |spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec});
    widgets
        .patch(
            "w",
            &PatchParams::apply("one"),
            &Patch::Apply(wdoc(
                json!({"url": "http://a", "items": [{"name": "x", "value": "1"}], "tags": ["t1"]}),
            )),
        )
        .await
        .unwrap();
    let out = widgets
        .patch(
            "w",
            &PatchParams::apply("two"),
            &Patch::Apply(wdoc(json!({"items": [{"name": "y", "value": "2"}]}))),
        )
        .await
        .unwrap();
    assert_eq!(
        out.data["spec"]["items"].as_array().unwrap().len(),
        2,
        "list-type map merges"
    );
    let st = api_err(
        widgets
            .patch(
                "w",
                &PatchParams::apply("two"),
                &Patch::Apply(wdoc(json!({"tags": ["t2"]}))),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        st.details.unwrap().causes[0].field,
        ".spec.tags",
        "atomic list conflicts as a whole"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn s7_status_subresource_is_separate() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    install_widget_crd(&client).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widget_ar());
    let mut w = widget("w", json!({"url": "http://a"}));
    w.data["status"] = json!({"ready": true});
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );

    let out = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}, "spec": {"url": "http://changed"}})),
        )
        .await
        .unwrap();
    assert_eq!(out.data["status"]["ready"], true);
    assert_eq!(
        out.data["spec"]["url"], "http://a",
        "status writes change only status"
    );
    assert_eq!(out.metadata.generation, Some(1));

    let out = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": false}, "spec": {"url": "http://b"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        out.data["status"]["ready"], true,
        "main writes leave status alone"
    );
    assert_eq!(out.data["spec"]["url"], "http://b");
    assert_eq!(out.metadata.generation, Some(2));

    let status_doc = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": {"ready": false}});
    let st = api_err(
        api.patch_status(
            "w",
            &PatchParams::apply("status-writer"),
            &Patch::Apply(status_doc.clone()),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        st.message.contains("with subresource \"status\""),
        "{}",
        st.message
    );
    let out = api
        .patch_status(
            "w",
            &PatchParams::apply("status-writer").force(),
            &Patch::Apply(status_doc),
        )
        .await
        .unwrap();
    assert_eq!(out.data["status"]["ready"], false);
    let mf = out.metadata.managed_fields.unwrap();
    let sw = mf
        .iter()
        .find(|e| e.manager.as_deref() == Some("status-writer"))
        .unwrap();
    assert_eq!(sw.subresource.as_deref(), Some("status"));

    // built-in: pods
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let out = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    assert_eq!(out.status.unwrap().phase.as_deref(), Some("Running"));
    env.shutdown().await;
}

#[tokio::test]
async fn s8_watch_events_selectors_bookmarks_and_gone() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let start_rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = WatchParams::default().labels("watched=yes").timeout(10);
    let mut stream = api.watch(&wp, &start_rv).await.unwrap().boxed();

    let mut c = cm("w", &[]);
    c.metadata.labels = Some(BTreeMap::from([("watched".to_string(), "yes".to_string())]));
    api.create(&PostParams::default(), &c).await.unwrap();
    api.create(&PostParams::default(), &cm("unwatched", &[]))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"watched": "no"}}})),
    )
    .await
    .unwrap();

    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => kinds.push(("ADDED", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => kinds.push(("MODIFIED", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => kinds.push(("DELETED", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    // leaving the selector is seen as DELETED
    assert_eq!(
        kinds,
        [
            ("ADDED", "w".to_string()),
            ("MODIFIED", "w".to_string()),
            ("DELETED", "w".to_string())
        ]
    );

    // bookmarks
    let wp = WatchParams::default().timeout(5);
    let mut stream = api.watch(&wp, "0").await.unwrap().boxed();
    let got_bookmark = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let WatchEvent::Bookmark(b) = stream.try_next().await.unwrap().unwrap() {
                return b;
            }
        }
    })
    .await
    .unwrap();
    assert!(!got_bookmark.metadata.resource_version.is_empty());

    // timeoutSeconds ends the stream
    let wp = WatchParams::default().timeout(1);
    let mut stream = api
        .watch(
            &wp,
            &api.list(&ListParams::default())
                .await
                .unwrap()
                .metadata
                .resource_version
                .unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while stream.try_next().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok());

    // a deleted event carries the object
    let mut stream = api
        .watch(
            &WatchParams::default().timeout(10),
            &api.list(&ListParams::default())
                .await
                .unwrap()
                .metadata
                .resource_version
                .unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    api.delete("unwatched", &DeleteParams::default())
        .await
        .unwrap();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("unwatched")),
        other => panic!("{other:?}"),
    }
    env.shutdown().await;
}

#[tokio::test]
async fn s8_watch_from_a_compacted_resource_version_is_gone() {
    // restarting from a data dir drops the retained history
    let dir = tempfile::tempdir().unwrap();
    let server = testenv::Server::start("127.0.0.1:0".parse().unwrap(), Some(dir.path()))
        .await
        .unwrap();
    let c = testenv::client_for(server.url()).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let first = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    server.shutdown().await.unwrap();
    let server = testenv::Server::start("127.0.0.1:0".parse().unwrap(), Some(dir.path()))
        .await
        .unwrap();
    let c = testenv::client_for(server.url()).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        2,
        "persisted"
    );
    let old_rv = first.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected 410, got {other:?}"),
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn s8_kube_runtime_controller_reacts_to_configmaps() {
    use kube::runtime::controller::{Action, Controller};
    use std::sync::Arc;
    use std::time::Duration;

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct E(#[from] kube::Error);

    async fn reconcile(obj: Arc<ConfigMap>, client: Arc<kube::Client>) -> Result<Action, E> {
        let name = obj.metadata.name.clone().unwrap();
        if name.ends_with("-out") {
            return Ok(Action::await_change());
        }
        let api: Api<ConfigMap> = Api::default_namespaced((*client).clone());
        let mut out = cm(&format!("{name}-out"), &[]);
        out.data = obj.data.clone();
        out.metadata.managed_fields = None;
        let v = serde_json::to_value(&out).unwrap();
        let mut v = v;
        v["apiVersion"] = json!("v1");
        v["kind"] = json!("ConfigMap");
        api.patch(
            &format!("{name}-out"),
            &PatchParams::apply("mirror").force(),
            &Patch::Apply(v),
        )
        .await?;
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<ConfigMap>, _: &E, _: Arc<kube::Client>) -> Action {
        Action::requeue(Duration::from_millis(100))
    }

    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let ctl = Controller::new(api.clone(), kube::runtime::watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client.clone()))
        .for_each(|_| async {});
    let handle = tokio::spawn(ctl);

    api.create(&PostParams::default(), &cm("in", &[("k", "v1")]))
        .await
        .unwrap();
    eventually(10, "mirror created", || {
        let api = api.clone();
        async move {
            api.get_opt("in-out")
                .await
                .unwrap()
                .filter(|c| c.data.as_ref().unwrap()["k"] == "v1")
        }
    })
    .await;
    api.patch(
        "in",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v2"}})),
    )
    .await
    .unwrap();
    eventually(10, "mirror updated", || {
        let api = api.clone();
        async move {
            api.get_opt("in-out")
                .await
                .unwrap()
                .filter(|c| c.data.as_ref().unwrap()["k"] == "v2")
        }
    })
    .await;
    handle.abort();
    env.shutdown().await;
}

#[tokio::test]
async fn s9_errors_are_status_objects() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let (code, st) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps/missing",
        None,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["status"], "Failure");
    assert_eq!(st["reason"], "NotFound");
    assert_eq!(st["details"]["name"], "missing");
    assert_eq!(st["details"]["kind"], "configmaps");
    let (code, st) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps/x",
        Some(("application/json", json!({}))),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    let (code, st) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some((
            "application/json",
            json!({"metadata": {"name": "Bad_Name"}}),
        )),
    )
    .await;
    assert_eq!((code, st["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(st["details"]["causes"][0]["field"], "metadata.name");
    let (code, st) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b",
        None,
    )
    .await;
    assert_eq!((code, st["reason"].as_str()), (400, Some("BadRequest")));
    let (code, st) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/x",
        Some((
            "application/apply-patch+yaml",
            json!({"apiVersion": "v1", "kind": "ConfigMap"}),
        )),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (400, Some("BadRequest")),
        "fieldManager is required for apply"
    );
    // fault injection hook
    env.server()
        .set_fault(Some(std::sync::Arc::new(|m: &http::Method, p: &str| {
            (m == http::Method::GET && p.ends_with("/configmaps/denied")).then(|| {
                testenv::ApiError::forbidden("configmaps \"denied\" is forbidden: injected")
            })
        })));
    let (code, st) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps/denied",
        None,
    )
    .await;
    assert_eq!((code, st["reason"].as_str()), (403, Some("Forbidden")));
    assert!(
        env.server()
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/configmaps/denied") && r.status == 403)
    );
    env.shutdown().await;
}

#[tokio::test]
async fn s2_secret_string_data_becomes_base64_data() {
    let env = TestEnv::start().await.unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::default_namespaced(env.client());
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
    )
    .unwrap();
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert!(created.string_data.is_none());
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    let data = created.data.unwrap();
    assert_eq!(data["password"].0, b"hunter2");
    env.shutdown().await;
}

#[tokio::test]
async fn s3_crd_updates_change_served_versions_at_once() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    install_widget_crd(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let v1: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widget_ar());
    v1.create(
        &PostParams::default(),
        &widget("w", json!({"url": "http://a"})),
    )
    .await
    .unwrap();

    // add v2 (served, not storage)
    let mut crd = crds.get("widgets.example.com").await.unwrap();
    let mut v2 = crd.spec.versions[0].clone();
    v2.name = "v2".into();
    v2.storage = false;
    crd.spec.versions.push(v2);
    crds.replace("widgets.example.com", &PostParams::default(), &crd)
        .await
        .unwrap();
    let ar2 = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v2", "Widget"),
        "widgets",
    );
    let as_v2: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar2);
    let w = as_v2.get("w").await.unwrap();
    assert_eq!(w.types.unwrap().api_version, "example.com/v2");
    let (_, group) = raw(&client, "GET", "/apis/example.com", None).await;
    assert_eq!(group["preferredVersion"]["version"], "v2");

    // stop serving v1
    let mut crd = crds.get("widgets.example.com").await.unwrap();
    crd.spec.versions[0].served = false;
    crds.replace("widgets.example.com", &PostParams::default(), &crd)
        .await
        .unwrap();
    let (code, _) = raw(
        &client,
        "GET",
        "/apis/example.com/v1/namespaces/default/widgets",
        None,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        as_v2
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    env.shutdown().await;
}

#[tokio::test]
async fn s8_watcher_streaming_lists_and_field_selectors() {
    use kube::runtime::watcher::{self, Event};
    let env = TestEnv::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(env.client());
    api.create(&PostParams::default(), &cm("one", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("two", &[]))
        .await
        .unwrap();
    let cfg = watcher::Config::default()
        .streaming_lists()
        .fields("metadata.name=two");
    let mut stream = watcher::watcher(api.clone(), cfg).boxed();
    let mut initial = Vec::new();
    loop {
        match stream.try_next().await.unwrap().unwrap() {
            Event::Init => {}
            Event::InitApply(o) => initial.push(o.metadata.name.unwrap()),
            Event::InitDone => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(initial, ["two"]);
    api.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    api.patch(
        "two",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "2"}})),
    )
    .await
    .unwrap();
    match stream.try_next().await.unwrap().unwrap() {
        Event::Apply(o) => {
            assert_eq!(o.metadata.name.as_deref(), Some("two"));
            assert_eq!(o.data.unwrap()["x"], "2");
        }
        other => panic!("{other:?}"),
    }
    env.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_serving_and_ends_watches() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.list(&ListParams::default()).await.unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    env.shutdown().await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.try_next().await {}
    })
    .await;
    assert!(ended.is_ok(), "open watches end on shutdown");
    assert!(
        api.list(&ListParams::default()).await.is_err(),
        "no longer served"
    );
}

#[tokio::test]
async fn s7_scale_subresource_reads_and_writes_replicas() {
    let env = TestEnv::start().await.unwrap();
    let api: Api<Deployment> = Api::default_namespaced(env.client());
    api.create(&PostParams::default(), &deployment("d", "app:1"))
        .await
        .unwrap();
    let scale = api.get_scale("d").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=d"));
    let scale = api
        .patch_scale(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(5));
    let d = api.get("d").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(5));
    assert_eq!(d.metadata.generation, Some(2));
    let (_, doc) = raw(&env.client(), "GET", "/apis/apps/v1", None).await;
    let scale_doc = doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .unwrap();
    assert_eq!(scale_doc["kind"], "Scale");
    assert_eq!(scale_doc["group"], "autoscaling");
    env.shutdown().await;
}

#[tokio::test]
async fn s8_metadata_lists_and_watches() {
    use kube::runtime::watcher::{self, Event};
    let env = TestEnv::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(env.client());
    api.create(&PostParams::default(), &cm("m", &[("k", "v")]))
        .await
        .unwrap();
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("m"));
    let one = api.get_metadata("m").await.unwrap();
    assert_eq!(one.types.unwrap().kind, "PartialObjectMetadata");
    let meta_api: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::default_namespaced(env.client());
    let mut stream = watcher::watcher(meta_api, watcher::Config::default()).boxed();
    loop {
        if let Event::InitDone = stream.try_next().await.unwrap().unwrap() {
            break;
        }
    }
    api.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    match stream.try_next().await.unwrap().unwrap() {
        Event::Apply(o) => assert_eq!(o.metadata.labels.unwrap()["x"], "y"),
        other => panic!("{other:?}"),
    }
    env.shutdown().await;
}

#[tokio::test]
async fn s4_immutable_fields_are_refused_on_update() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    deploys
        .create(&PostParams::default(), &deployment("d", "app:1"))
        .await
        .unwrap();
    let patch = json!({"spec": {"selector": {"matchLabels": {"app": "other"}}, "template": {"metadata": {"labels": {"app": "other"}}}}});
    let st = api_err(
        deploys
            .patch("d", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"));
    assert!(
        st.message.contains("spec.selector") && st.message.contains("field is immutable"),
        "{}",
        st.message
    );
    // dry-run sees the same refusal
    let mut pp = PatchParams::apply("kustomize-controller").force();
    pp.dry_run = true;
    let doc = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "main", "image": "app:1"}]}}}});
    assert_eq!(
        api_err(
            deploys
                .patch("d", &pp, &Patch::Apply(doc))
                .await
                .unwrap_err()
        )
        .code,
        422
    );

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut c = cm("frozen", &[("k", "v")]);
    c.immutable = Some(true);
    cms.create(&PostParams::default(), &c).await.unwrap();
    let st = api_err(
        cms.patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "w"}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        st.message
            .contains("field is immutable when `immutable` is set"),
        "{}",
        st.message
    );
    // metadata may still change
    cms.patch(
        "frozen",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .unwrap();
    env.shutdown().await;
}

#[tokio::test]
async fn s2_kube_runtime_event_recorder_publishes_and_patches_series() {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let c = cms
        .create(&PostParams::default(), &cm("subject", &[]))
        .await
        .unwrap();
    let recorder = Recorder::new(client.clone(), Reporter::from("testenv-test"));
    let ev = Event {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&ev, &c.object_ref(&())).await.unwrap();
    recorder.publish(&ev, &c.object_ref(&())).await.unwrap();
    let events: Api<K8sEvent> = Api::default_namespaced(client.clone());
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Reconciled"));
    assert_eq!(
        e.regarding.as_ref().unwrap().name.as_deref(),
        Some("subject")
    );
    assert_eq!(e.series.as_ref().unwrap().count, 2);
    env.shutdown().await;
}

#[tokio::test]
async fn s3_deleting_a_crd_waits_for_instance_finalizers() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    install_widget_crd(&client).await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widget_ar());
    let mut held = widget("held", json!({"url": "http://a"}));
    held.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    widgets.create(&PostParams::default(), &held).await.unwrap();
    widgets
        .create(
            &PostParams::default(),
            &widget("plain", json!({"url": "http://b"})),
        )
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    // the CRD stays (terminating) while an instance is held by its finalizer
    let crd = crds.get("widgets.example.com").await.unwrap();
    assert!(crd.metadata.deletion_timestamp.is_some());
    assert!(widgets.get_opt("plain").await.unwrap().is_none());
    let h = widgets.get("held").await.unwrap();
    assert!(h.metadata.deletion_timestamp.is_some());
    let st = api_err(
        widgets
            .create(
                &PostParams::default(),
                &widget("new", json!({"url": "http://c"})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 405);
    // the controller removes its finalizer: instance and CRD go
    widgets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(crds.get_opt("widgets.example.com").await.unwrap().is_none());
    let (code, _) = raw(
        &client,
        "GET",
        "/apis/example.com/v1/namespaces/default/widgets",
        None,
    )
    .await;
    assert_eq!(code, 404);
    env.shutdown().await;
}
