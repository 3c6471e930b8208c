//! Fault injection, the request log, restarts and the `/testenv/` admin endpoints, through kube-rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::eventually;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use testenv::{FaultRule, TestEnv};

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

/// A client that does not retry 429/503/504 itself (kube-rs' default client does), to see every status.
fn no_retry_client(env: &TestEnv) -> kube::Client {
    let mut config = kube::Config::new(env.url().parse().unwrap());
    config.default_namespace = "default".into();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

fn api_err(r: Result<impl std::fmt::Debug, kube::Error>) -> Box<kube::core::Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw request: (status, headers, JSON body).
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, http::HeaderMap, Value) {
    let mut b = http::Request::builder().method(method).uri(path);
    let bytes = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            v.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let resp = client
        .send(b.body(bytes).unwrap().map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect_bytes().await.unwrap();
    (
        code,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

async fn create_ns(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

#[tokio::test]
async fn status_faults_fail_the_next_n_requests_then_pass() {
    let env = TestEnv::start().await.unwrap();
    let client = no_retry_client(&env);
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();

    let server = env.server();
    server
        .add_fault(
            FaultRule::status(409)
                .verb("update")
                .resource("configmaps")
                .times(2),
        )
        .unwrap();
    for _ in 0..2 {
        let st = api_err(cms.replace("a", &PostParams::default(), &created).await);
        assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"), "{st:?}");
        assert!(
            st.message.contains("the object has been modified"),
            "{st:?}"
        );
    }
    cms.replace("a", &PostParams::default(), &created)
        .await
        .unwrap();

    for (code, reason, verb) in [
        (410, "Expired", "list"),
        (500, "InternalError", "get"),
        (503, "ServiceUnavailable", "get"),
    ] {
        server
            .add_fault(FaultRule::status(code).verb(verb).times(1))
            .unwrap();
        let st = if verb == "list" {
            api_err(cms.list(&ListParams::default()).await)
        } else {
            api_err(cms.get("a").await)
        };
        assert_eq!((st.code, st.reason.as_str()), (code, reason), "{st:?}");
        assert_eq!(
            st.status,
            Some(kube::core::response::StatusSummary::Failure)
        );
    }
    cms.list(&ListParams::default()).await.unwrap();
    cms.get("a").await.unwrap();
    assert!(server.faults().is_empty(), "used-up rules are removed");

    // 429 carries Retry-After, as a header and in the Status details
    server
        .add_fault(FaultRule::status(429).verb("get").retry_after(7).times(2))
        .unwrap();
    let st = api_err(cms.get("a").await);
    assert_eq!((st.code, st.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(st.details.unwrap().retry_after_seconds, 7);
    let (code, headers, body) = send(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps/a",
        None,
    )
    .await;
    assert_eq!(code, 429);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(body["kind"], "Status");

    // kube-rs' default client honours Retry-After and retries: it succeeds, after waiting
    server
        .add_fault(FaultRule::status(429).verb("get").retry_after(1).times(1))
        .unwrap();
    server.clear_requests();
    let started = Instant::now();
    Api::<ConfigMap>::default_namespaced(env.client())
        .get("a")
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let statuses: Vec<u16> = server
        .requests_matching(|r| r.is("get", "configmaps"))
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 200]);
    env.shutdown().await;
}

#[tokio::test]
async fn a_delay_holds_the_request_then_serves_it() {
    let env = TestEnv::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client());
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let delay = Duration::from_millis(400);
    env.server()
        .add_fault(
            FaultRule::delay(delay)
                .verb("get")
                .resource("configmaps")
                .times(1),
        )
        .unwrap();
    let started = Instant::now();
    let got = cms.get("a").await.unwrap();
    let took = started.elapsed();
    assert_eq!(got.data.unwrap()["k"], "v");
    assert!(took >= delay, "took {took:?}");
    assert!(env.server().faults().is_empty());
    env.shutdown().await;
}

#[tokio::test]
async fn rules_only_hit_matching_verb_resource_namespace_and_name() {
    let env = TestEnv::start().await.unwrap();
    let client = no_retry_client(&env);
    create_ns(&client, "a").await;
    create_ns(&client, "b").await;
    let in_a: Api<ConfigMap> = Api::namespaced(client.clone(), "a");
    let in_b: Api<ConfigMap> = Api::namespaced(client.clone(), "b");
    let secrets_a: Api<Secret> = Api::namespaced(client.clone(), "a");
    for api in [&in_a, &in_b] {
        api.create(&PostParams::default(), &cm("x")).await.unwrap();
        api.create(&PostParams::default(), &cm("y")).await.unwrap();
    }
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    secrets_a
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let id = env
        .server()
        .add_fault(
            FaultRule::status(500)
                .verb("get")
                .resource("configmaps")
                .namespace("a"),
        )
        .unwrap();
    assert_eq!(api_err(in_a.get("x").await).code, 500);
    assert_eq!(api_err(in_a.get("y").await).code, 500);
    in_b.get("x").await.unwrap();
    in_a.list(&ListParams::default()).await.unwrap();
    secrets_a.get("x").await.unwrap();
    in_a.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    assert!(env.server().remove_fault(id));
    in_a.get("x").await.unwrap();

    // by name
    env.server()
        .add_fault(FaultRule::status(503).name("y"))
        .unwrap();
    in_a.get("x").await.unwrap();
    assert_eq!(api_err(in_a.get("y").await).code, 503);
    assert_eq!(api_err(in_b.get("y").await).code, 503);
    env.server().clear_faults();

    // a subresource is matched as resource/subresource only
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    env.server()
        .add_fault(FaultRule::status(409).resource("deployments/status"))
        .unwrap();
    let st = api_err(
        deployments
            .patch_status(
                "d",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"replicas": 1}})),
            )
            .await,
    );
    assert_eq!(st.code, 409);
    deployments
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"l": "1"}}})),
        )
        .await
        .unwrap();
    env.shutdown().await;
}

#[tokio::test]
async fn cutting_watches_makes_a_watcher_rewatch_and_keep_seeing_changes() {
    let env = TestEnv::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn({
        let cms = cms.clone();
        async move {
            let mut events = watcher(cms, watcher::Config::default()).boxed();
            while let Some(ev) = events.next().await {
                if tx.send(ev.map_err(|e| e.to_string())).is_err() {
                    return;
                }
            }
        }
    });
    let watches = || env.server().count("watch", "configmaps");
    eventually(10, "the watcher's first watch", || async {
        (watches() == 1).then_some(())
    })
    .await;
    env.server().cut_watches();
    eventually(10, "a second watch after the cut", || async {
        (watches() >= 2).then_some(())
    })
    .await;
    cms.create(&PostParams::default(), &cm("after-cut"))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = rx.recv().await {
            if let Ok(watcher::Event::Apply(c)) = ev
                && c.metadata.name.as_deref() == Some("after-cut")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true));
    task.abort();
    env.shutdown().await;
}

#[tokio::test]
async fn cutting_watches_ends_a_raw_watch_stream() {
    let env = TestEnv::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client());
    let mut stream = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    eventually(10, "the watch to be open", || async {
        (env.server().count("watch", "configmaps") == 1).then_some(())
    })
    .await;
    env.server().cut_watches();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = stream.next().await {
            ev.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the watch stream ended");
    env.shutdown().await;
}

#[tokio::test]
async fn resetting_connections_breaks_open_requests_and_clients_reconnect() {
    let env = TestEnv::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client());
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(env.server().open_connections() >= 1);
    assert!(env.server().reset_connections() >= 1);
    let broken = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                None => return "ended",
                Some(Err(_)) => return "failed",
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(broken.is_ok(), "the watch broke");
    eventually(10, "the client to reconnect", || async {
        cms.get("a").await.ok()
    })
    .await;

    // a rule resets the connection of the matching request only
    env.server()
        .add_fault(FaultRule::reset().verb("get").name("a").times(1))
        .unwrap();
    match cms.get("a").await {
        Err(kube::Error::Api(st)) => panic!("expected a transport error, got {st:?}"),
        Err(_) => {}
        Ok(_) => panic!("expected the connection to be reset"),
    }
    cms.get("a").await.unwrap();
    let gets: Vec<u16> = env
        .server()
        .requests_matching(|r| r.is("get", "configmaps"))
        .iter()
        .map(|r| r.status)
        .collect();
    assert!(gets.ends_with(&[0, 200]), "{gets:?}");
    env.shutdown().await;
}

#[tokio::test]
async fn restart_keeping_state_in_memory() {
    let env = TestEnv::start().await.unwrap();
    let url = env.url().to_string();
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client());
    let a = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let rv_a: u64 = a.metadata.resource_version.unwrap().parse().unwrap();
    let logged = env.server().requests().len();

    let env = env.restart(true).await.unwrap();
    assert_eq!(env.url(), url);
    let got = eventually(10, "the object after the restart", || async {
        cms.get("a").await.ok()
    })
    .await;
    assert_eq!(got.metadata.uid, a.metadata.uid);
    let b = cms.create(&PostParams::default(), &cm("b")).await.unwrap();
    let rv_b: u64 = b.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv_b > rv_a, "resourceVersion continues ({rv_a} -> {rv_b})");
    assert!(
        env.server().requests().len() > logged,
        "the request log is kept"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn restart_keeping_state_from_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let env = TestEnv::start_with(testenv::Options::default().data_dir(dir.path()))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client());
    let a = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let rv_a: u64 = a.metadata.resource_version.unwrap().parse().unwrap();
    let env = env.restart(true).await.unwrap();
    let got = eventually(10, "the object after the restart", || async {
        cms.get("a").await.ok()
    })
    .await;
    assert_eq!(got.metadata.uid, a.metadata.uid);
    let b = cms.create(&PostParams::default(), &cm("b")).await.unwrap();
    let rv_b: u64 = b.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv_b > rv_a, "resourceVersion continues ({rv_a} -> {rv_b})");

    // losing state empties the data dir too
    let env = env.restart(false).await.unwrap();
    eventually(10, "the server after the restart", || async {
        cms.list(&ListParams::default()).await.ok()
    })
    .await;
    assert!(cms.get_opt("a").await.unwrap().is_none());
    assert!(cms.get_opt("b").await.unwrap().is_none());
    env.shutdown().await;
}

#[tokio::test]
async fn restart_losing_state() {
    let env = TestEnv::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client());
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    env.server()
        .add_fault(FaultRule::status(500).verb("delete"))
        .unwrap();
    let env = env.restart(false).await.unwrap();
    let list = eventually(10, "the server after the restart", || async {
        cms.list(&ListParams::default()).await.ok()
    })
    .await;
    assert!(list.items.is_empty());
    let namespaces = Api::<Namespace>::all(env.client())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        namespaces
            .items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("default"))
    );
    assert_eq!(env.server().faults().len(), 1, "fault rules are kept");
    env.shutdown().await;
}

#[tokio::test]
async fn the_request_log_records_verb_field_manager_and_dry_run() {
    let env = TestEnv::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(env.client());
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    env.server().clear_requests();
    assert!(env.server().requests().is_empty());

    let apply = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"applied": "yes"}});
    cms.patch(
        "a",
        &PatchParams::apply("riptide-test").dry_run(),
        &Patch::Apply(&apply),
    )
    .await
    .unwrap();
    cms.patch(
        "a",
        &PatchParams::apply("riptide-test"),
        &Patch::Apply(&apply),
    )
    .await
    .unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();

    let patches = env
        .server()
        .requests_matching(|r| r.is("patch", "configmaps"));
    assert_eq!(patches.len(), 2);
    for (r, dry_run) in patches.iter().zip([true, false]) {
        assert_eq!(
            (
                r.method.as_str(),
                r.namespace.as_str(),
                r.name.as_str(),
                r.field_manager.as_str(),
                r.dry_run,
                r.status
            ),
            ("PATCH", "default", "a", "riptide-test", dry_run, 200)
        );
        assert!(r.is_write());
        // no authentication layer: no user decided
        assert_eq!((r.user.as_str(), r.impersonated_by.as_deref()), ("", None));
    }
    assert_eq!(env.server().count("delete", "configmaps"), 1);
    assert_eq!(env.server().count("delete", "*"), 1);
    assert_eq!(env.server().count("deletecollection", "*"), 0);
    assert_eq!(env.server().count("*", "secrets"), 0);
    env.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints() {
    let env = TestEnv::start().await.unwrap();
    let client = no_retry_client(&env);
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("x")).await.unwrap();

    // add, list, trigger, remove
    let (code, _, rule) = send(
        &client,
        "POST",
        "/testenv/faults",
        Some(
            json!({"verb": "get", "resource": "configmaps", "name": "x", "times": 1,
            "status": 429, "retryAfterSeconds": 2}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{rule}");
    let id = rule["id"].as_u64().unwrap();
    let (code, _, rules) = send(&client, "GET", "/testenv/faults", None).await;
    assert_eq!(code, 200);
    assert_eq!(rules[0]["id"], id);
    assert_eq!(rules[0]["status"], 429);
    let st = api_err(cms.get("x").await);
    assert_eq!((st.code, st.reason.as_str()), (429, "TooManyRequests"));
    cms.get("x").await.unwrap();

    let (_, _, rule) = send(
        &client,
        "POST",
        "/testenv/faults",
        Some(json!({"verb": "list", "status": 500})),
    )
    .await;
    let path = format!("/testenv/faults/{}", rule["id"]);
    assert_eq!(api_err(cms.list(&ListParams::default()).await).code, 500);
    assert_eq!(send(&client, "DELETE", &path, None).await.0, 204);
    assert_eq!(send(&client, "DELETE", &path, None).await.0, 404);
    cms.list(&ListParams::default()).await.unwrap();
    send(
        &client,
        "POST",
        "/testenv/faults",
        Some(json!({"delayMs": 1})),
    )
    .await;
    assert_eq!(
        send(&client, "DELETE", "/testenv/faults", None).await.0,
        204
    );
    assert!(env.server().faults().is_empty());

    // invalid rules are a 400 Status
    for bad in [
        json!({"verb": "get"}),
        json!({"status": 500, "delayMs": 3}),
        json!({"status": 302}),
        json!({"resources": "configmaps", "status": 500}),
    ] {
        let (code, _, st) = send(&client, "POST", "/testenv/faults", Some(bad.clone())).await;
        assert_eq!(
            (code, st["reason"].as_str()),
            (400, Some("BadRequest")),
            "{bad}"
        );
    }

    // the request log, without admin requests
    let (code, _, log) = send(&client, "GET", "/testenv/requests", None).await;
    assert_eq!(code, 200);
    let log = log.as_array().unwrap();
    assert!(
        log.iter()
            .any(|r| r["verb"] == "get" && r["name"] == "x" && r["status"] == 429)
    );
    assert!(
        log.iter()
            .all(|r| !r["path"].as_str().unwrap().starts_with("/testenv/"))
    );
    assert!(log[0].get("fieldManager").is_some() && log[0].get("dryRun").is_some());
    assert_eq!(
        send(&client, "DELETE", "/testenv/requests", None).await.0,
        204
    );
    let (_, _, log) = send(&client, "GET", "/testenv/requests", None).await;
    assert_eq!(log, json!([]));

    // cut watches
    let mut stream = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    eventually(10, "the watch to be open", || async {
        (env.server().count("watch", "configmaps") == 1).then_some(())
    })
    .await;
    assert_eq!(
        send(&client, "POST", "/testenv/watches/cut", None).await.0,
        204
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while stream.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok());

    // reset connections: everyone's but the caller's
    let other = env.client();
    let other_cms: Api<ConfigMap> = Api::default_namespaced(other.clone());
    let mut stream = other_cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let (code, _, out) = send(&client, "POST", "/testenv/connections/reset", None).await;
    assert_eq!(code, 200);
    assert!(out["reset"].as_u64().unwrap() >= 1, "{out}");
    let broken = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(broken.is_ok());
    env.shutdown().await;
}
