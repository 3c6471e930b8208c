//! source-controller bench: time from GitRepository creation to stored artifact for a generated repository of
//! 5,000 files / 50 MB, served by `git http-backend`, with the controller binary as a separate process against
//! testenv; side by side with `git clone --depth 1 <url> && tar czf` of the same tree in the same run. Prints
//! the ratio and the controller's peak RSS (VmHWM). Figures only, never assertions on time.
//!
//! `cargo bench -p source-controller --bench git_repository` (FILES and FILE_SIZE env vars override the size).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench support code

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::api::source_v1::{GitRepository, GitRepositoryRef, GitRepositorySpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use testenv::git_http::{GitHttpOptions, GitHttpServer};

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@riptide.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@riptide.invalid")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pseudo-random text (a fixed LCG), compressible about as much as source code.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let words = [
        "apiVersion",
        "kind",
        "metadata",
        "name",
        "spec",
        "replicas",
        "image",
        "container",
        "port",
        "label",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let w = words[(x >> 60) as usize % words.len()];
        out.extend_from_slice(w.as_bytes());
        out.extend_from_slice(format!(": {:x}\n", x >> 20).as_bytes());
    }
    out.truncate(len);
    out
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// `RssAnon` + `RssShmem` (heap, stacks: what the process holds) and `RssFile` (mapped files, e.g. libgit2's pack
/// windows: page cache the kernel can reclaim), in KiB.
fn rss_parts_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("RssAnon:")? + field("RssShmem:")?, field("RssFile:")?))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::main]
async fn main() {
    let files = env_usize("FILES", 5000);
    let file_size = env_usize("FILE_SIZE", 10 * 1024);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("repos");
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&tree).unwrap();

    // The repository: files spread over 50 directories.
    let generated = Instant::now();
    for i in 0..files {
        let dir = tree.join(format!("dir{:02}", i % 50));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("file{i:05}.yaml")),
            content(i as u64, file_size),
        )
        .unwrap();
    }
    git(&root, &["init", "-q", "--bare", "-b", "main", "bench.git"]);
    git(&tree, &["init", "-q", "-b", "main"]);
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-q", "-m", "generated"]);
    git(
        &tree,
        &[
            "push",
            "-q",
            root.join("bench.git").to_str().unwrap(),
            "main",
        ],
    );
    println!(
        "repository: {files} files, {:.1} MB, generated in {:.1}s",
        (files * file_size) as f64 / 1e6,
        generated.elapsed().as_secs_f64()
    );

    let server = GitHttpServer::start(&root, GitHttpOptions::default())
        .await
        .unwrap();
    let url = server.url("bench.git");

    // Baseline: git clone --depth 1 && tar czf.
    let baseline_dir = work.path().join("baseline");
    std::fs::create_dir_all(&baseline_dir).unwrap();
    let started = Instant::now();
    git(
        &baseline_dir,
        &["clone", "-q", "--depth", "1", &url, "clone"],
    );
    let status = Command::new("tar")
        .args(["czf", "out.tar.gz", "--exclude=.git", "-C", "clone", "."])
        .current_dir(&baseline_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let baseline = started.elapsed();

    // The controller, as its own process, against testenv.
    let env = testenv::TestEnv::start().await.unwrap();
    let client = env.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in common::api::source_v1::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let api: Api<GitRepository> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.list(&Default::default()).await.is_err() {
        assert!(Instant::now() < deadline, "CRD not served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kubeconfig = env.kubeconfig().to_path_buf();
    let storage = work.path().join("storage");
    let storage_port = free_port();
    let mut controller = Command::new(env!("CARGO_BIN_EXE_source-controller"))
        .args([
            &format!("--storage-path={}", storage.display()),
            &format!("--storage-addr=127.0.0.1:{storage_port}"),
            &format!("--storage-adv-addr=127.0.0.1:{storage_port}"),
            "--metrics-addr=127.0.0.1:0",
            "--health-addr=127.0.0.1:0",
            "--log-level=error",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = controller.id();

    let spec = GitRepositorySpec {
        url: url.clone(),
        interval: "10m".into(),
        timeout: "5m".into(),
        reference: Some(GitRepositoryRef {
            branch: Some("main".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let started = Instant::now();
    api.create(&PostParams::default(), &GitRepository::new("bench", spec))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut peak_anon, mut peak_file) = (0u64, 0u64);
    let artifact = loop {
        if let Some((anon, file)) = rss_parts_kib(pid) {
            peak_anon = peak_anon.max(anon);
            peak_file = peak_file.max(file);
        }
        if let Some(a) = api.get("bench").await.unwrap().artifact().cloned() {
            break a;
        }
        assert!(Instant::now() < deadline, "no artifact within 10 minutes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let controller_time = started.elapsed();
    let rss = peak_rss_kib(pid);
    let _ = controller.kill();
    let _ = controller.wait();

    let baseline_size = std::fs::metadata(baseline_dir.join("out.tar.gz"))
        .unwrap()
        .len();
    println!(
        "git clone --depth 1 && tar czf: {:.3}s ({:.1} MB tarball)",
        baseline.as_secs_f64(),
        baseline_size as f64 / 1e6
    );
    println!(
        "source-controller (create → status.artifact): {:.3}s ({:.1} MB artifact, {})",
        controller_time.as_secs_f64(),
        artifact.size.unwrap_or_default() as f64 / 1e6,
        artifact.revision
    );
    println!(
        "ratio controller/baseline: {:.2} (goal <= 1.0)",
        controller_time.as_secs_f64() / baseline.as_secs_f64()
    );
    match rss {
        Some(kib) => println!(
            "controller peak RSS: {:.1} MiB (goal <= 40 MiB)",
            kib as f64 / 1024.0
        ),
        None => println!("controller peak RSS: unavailable (no /proc)"),
    }
    println!(
        "  of which, sampled every 10 ms: anonymous (heap, stacks) {:.1} MiB, file-backed (executable, mapped pack slices) {:.1} MiB",
        peak_anon as f64 / 1024.0,
        peak_file as f64 / 1024.0
    );
    env.shutdown().await;
    server.shutdown().await;
}
