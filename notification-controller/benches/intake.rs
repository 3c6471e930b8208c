//! Event intake under `wrk`: the notification-controller binary (a separate process, against testenv, with an
//! Alert to a `generic` Provider posting to a no-op sink) beside a bare axum server that only reads the body
//! and answers 202, on the same machine. Prints requests/s, p99, non-2xx answers, deliveries and RSS; asserts
//! nothing about time.
//!
//! `cargo bench -p notification-controller --bench intake` (needs `wrk`: `apt-get install wrk`).
//! `BENCH_DURATION=10s`, `BENCH_CONNECTIONS=64`, `BENCH_THREADS=2` tune the run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};

const UNIQUE_SCRIPT: &str = r#"
local counter = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function request()
  counter = counter + 1
  local body = string.format('{"involvedObject":{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","name":"apps","namespace":"flux-system"},"severity":"info","timestamp":"2026-11-21T14:00:00Z","message":"applied revision %d-%d","reason":"ReconciliationSucceeded","metadata":{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:0123456789abcdef0123456789abcdef01234567"},"reportingController":"kustomize-controller"}', tid, counter)
  return wrk.format("POST", "/", {["Content-Type"]="application/json"}, body)
end
"#;

const DUPLICATE_SCRIPT: &str = r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"involvedObject":{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","name":"apps","namespace":"flux-system"},"severity":"error","timestamp":"2026-11-21T14:00:00Z","message":"build failed","reason":"BuildFailed","reportingController":"kustomize-controller"}'
"#;

#[derive(Debug, Default)]
struct WrkResult {
    requests_per_sec: f64,
    p50: String,
    p99: String,
    requests: u64,
    non_2xx: u64,
    errors: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn wrk(url: &str, script: &str) -> WrkResult {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), script).unwrap();
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t",
            &env_or("BENCH_THREADS", "2"),
            "-c",
            &env_or("BENCH_CONNECTIONS", "64"),
            "-d",
            &env_or("BENCH_DURATION", "10s"),
            "--latency",
            "-s",
        ])
        .arg(file.path())
        .arg(url)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut result = WrkResult::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => result.requests_per_sec = v.parse().unwrap_or(0.0),
            ["50%", v] => result.p50 = (*v).to_owned(),
            ["99%", v] => result.p99 = (*v).to_owned(),
            ["Non-2xx", "or", "3xx", "responses:", n] => result.non_2xx = n.parse().unwrap_or(0),
            [n, "requests", "in", ..] => result.requests = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => result.errors = rest.join(" "),
            _ => {}
        }
    }
    if result.requests == 0 {
        eprintln!(
            "wrk output:\n{text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    result
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn print(name: &str, r: &WrkResult) {
    println!(
        "{name:<44} {:>10.0} req/s   p50 {:>9}   p99 {:>9}   requests {:>8}   non-2xx {:>8}{}",
        r.requests_per_sec,
        r.p50,
        r.p99,
        r.requests,
        r.non_2xx,
        if r.errors.is_empty() {
            String::new()
        } else {
            format!("   socket errors: {}", r.errors)
        }
    );
}

#[tokio::main]
async fn main() {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("wrk not found: apt-get install wrk");
        return;
    }
    let env = testenv::TestEnv::start().await.unwrap();
    let client = env.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in common::api::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let ns: Namespace = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}}),
    )
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    // The no-op provider endpoint.
    let delivered = Arc::new(AtomicU64::new(0));
    let counter = delivered.clone();
    let sink = serve(Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            http::StatusCode::OK
        }
    }))
    .await;
    let alerts: Api<common::api::notification_v1beta3::Alert> =
        Api::namespaced(client.clone(), "flux-system");
    let deadline = Instant::now() + Duration::from_secs(20);
    while alerts.list(&Default::default()).await.is_err() {
        assert!(Instant::now() < deadline, "CRDs not served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let provider: common::api::notification_v1beta3::Provider =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
            "metadata": {"name": "noop", "namespace": "flux-system"},
            "spec": {"type": "generic", "address": format!("http://{sink}/")},
        }))
        .unwrap();
    Api::namespaced(client.clone(), "flux-system")
        .create(&PostParams::default(), &provider)
        .await
        .unwrap();
    let alert: common::api::notification_v1beta3::Alert = serde_json::from_value(serde_json::json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
        "metadata": {"name": "all", "namespace": "flux-system"},
        "spec": {"providerRef": {"name": "noop"}, "eventSources": [{"kind": "Kustomization", "name": "*"}]},
    }))
    .unwrap();
    alerts.create(&PostParams::default(), &alert).await.unwrap();

    let events_port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_notification-controller"))
        .args([
            format!("--events-addr=127.0.0.1:{events_port}"),
            format!("--receiverAddr=127.0.0.1:{}", free_port()),
            format!("--metrics-addr=127.0.0.1:{}", free_port()),
            format!("--health-addr=127.0.0.1:{}", free_port()),
            "--log-level=error".to_owned(),
        ])
        .env("KUBECONFIG", env.kubeconfig())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let url = format!("http://127.0.0.1:{events_port}/");

    // Ready when a probe event reaches the sink (caches synced, provider resolved).
    let http = reqwest::Client::new();
    let probe = serde_json::json!({
        "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                           "name": "apps", "namespace": "flux-system"},
        "severity": "info", "timestamp": "2026-11-21T14:00:00Z", "message": "probe",
        "reason": "Probe", "reportingController": "bench",
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.post(&url).json(&probe).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "controller did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while delivered.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "probe not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let idle_rss = rss_kib(pid);

    // The bare server: read the body, answer 202.
    let bare = serve(
        Router::new().fallback(|body: axum::body::Bytes| async move {
            let _ = body.len();
            http::StatusCode::ACCEPTED
        }),
    )
    .await;

    println!(
        "\nevent intake, wrk -t{} -c{} -d{} on {} CPUs",
        env_or("BENCH_THREADS", "2"),
        env_or("BENCH_CONNECTIONS", "64"),
        env_or("BENCH_DURATION", "10s"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let bare_unique = wrk(&format!("http://{bare}/"), UNIQUE_SCRIPT).await;
    print("bare axum (read body, 202)", &bare_unique);
    let before = delivered.load(Ordering::Relaxed);
    let nc_unique = wrk(&url, UNIQUE_SCRIPT).await;
    print("notification-controller, distinct events", &nc_unique);
    let peak_rss = rss_kib(pid);
    let nc_dupes = wrk(&url, DUPLICATE_SCRIPT).await;
    print("notification-controller, identical (429)", &nc_dupes);
    // Let the dispatcher drain (deliveries stop changing) before counting them.
    let accepted = nc_unique.requests.saturating_sub(nc_unique.non_2xx) + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = u64::MAX;
    while Instant::now() < deadline {
        let now = delivered.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after_rss = rss_kib(pid);
    println!(
        "\ndistinct events accepted (202): {}, refused (503, queue full): {}, delivered to the no-op provider: {} \
         (the rest dropped at the provider's bounded queue and reported on the Alert)",
        accepted - 1,
        nc_unique.non_2xx,
        delivered.load(Ordering::Relaxed) - before
    );
    println!(
        "throughput vs bare: distinct {:.0}%, identical {:.0}% (goal >= 50%)",
        100.0 * nc_unique.requests_per_sec / bare_unique.requests_per_sec.max(1.0),
        100.0 * nc_dupes.requests_per_sec / bare_unique.requests_per_sec.max(1.0),
    );
    println!(
        "RSS of the controller process: idle {:.1} MiB (goal <= 16 MiB), after load {:.1} MiB, peak sample {:.1} MiB",
        idle_rss as f64 / 1024.0,
        after_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    let _ = child.kill().await;
}
