//! `cargo bench -p testenv`: create throughput, list latency for 10k objects, watch fan-out to 100 watchers.
//! Prints figures; asserts nothing about time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use testenv::TestEnv;

const OBJECTS: usize = 10_000;
const WATCHERS: usize = 100;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "yes"}},
        "data": {"key": "value", "other": "some longer value to make the object a little bigger"}
    }))
    .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; keep that quick
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(quick));
}

async fn run(quick: bool) {
    let objects = if quick { 200 } else { OBJECTS };
    let watchers = if quick { 5 } else { WATCHERS };
    let env = TestEnv::start().await.unwrap();
    let client = env.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());

    // writes over HTTP, 64 in flight
    let start = Instant::now();
    futures::stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &cm(&format!("cm-{i:05}")))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "create: {objects} ConfigMaps over HTTP in {:.2}s = {:.0} creates/s",
        secs,
        objects as f64 / secs
    );

    // list latency
    let mut lat = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let list = api.list(&ListParams::default()).await.unwrap();
        lat.push(t.elapsed());
        assert_eq!(list.items.len(), objects);
    }
    lat.sort();
    println!(
        "list: {objects} objects, kube-rs client (incl. decoding): median {:?}, max {:?}",
        percentile(&lat, 0.5),
        lat[lat.len() - 1]
    );
    let mut lat = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let req = http::Request::get("/api/v1/namespaces/default/configmaps")
            .body(Vec::new())
            .unwrap();
        let body = client.request_text(req).await.unwrap();
        lat.push(t.elapsed());
        assert!(body.len() > objects * 100);
    }
    lat.sort();
    println!(
        "list: {objects} objects, raw HTTP response: median {:?}, max {:?}",
        percentile(&lat, 0.5),
        lat[lat.len() - 1]
    );

    // watch fan-out
    let rv = api
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut handles = Vec::new();
    for w in 0..watchers {
        let api = api.clone();
        let tx = tx.clone();
        let rv = rv.clone();
        let wp = WatchParams::default().fields("metadata.name=fanout");
        let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
        handles.push(tokio::spawn(async move {
            while let Ok(Some(ev)) = stream.try_next().await {
                if matches!(ev, WatchEvent::Added(_) | WatchEvent::Modified(_)) {
                    let _ = tx.send((w, Instant::now()));
                }
            }
        }));
    }
    drop(tx);
    api.create(&PostParams::default(), &cm("fanout"))
        .await
        .unwrap();
    for _ in 0..watchers {
        rx.recv().await.unwrap();
    }
    let rounds = if quick { 3 } else { 50 };
    let mut all = Vec::new();
    let mut last = Vec::new();
    for i in 0..rounds {
        let t = Instant::now();
        api.patch(
            "fanout",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"round": i.to_string()}})),
        )
        .await
        .unwrap();
        let mut max = Duration::ZERO;
        for _ in 0..watchers {
            let (_, at) = rx.recv().await.unwrap();
            let d = at.duration_since(t);
            all.push(d);
            max = max.max(d);
        }
        last.push(max);
    }
    all.sort();
    last.sort();
    println!(
        "watch fan-out: {watchers} watchers, {rounds} changes: per-event median {:?}, p99 {:?}; last watcher median {:?}, worst {:?}",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&last, 0.5),
        last[last.len() - 1]
    );
    for h in handles {
        h.abort();
    }

    // in-process store writes (no HTTP), for reference
    let store = env.server().store().clone();
    let rd = store.resolve("", "v1", "configmaps").unwrap();
    let n = objects;
    let start = Instant::now();
    for i in 0..n {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("direct-{i:05}")}, "data": {"k": "v"}});
        store
            .create(
                &rd,
                "default",
                obj,
                &testenv::store::WriteOptions::default(),
            )
            .unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "create: {n} ConfigMaps directly in the store = {:.0} creates/s",
        n as f64 / secs
    );
    env.shutdown().await;
}
