//! Helpers for the end-to-end suite (the tests live in `tests/`).
//!
//! Every test builds an [`Env`]: its own Kubernetes API server (the `testenv` **binary**, started as a process),
//! a real git server on loopback ([`testenv::git_http`]: git's own `git http-backend` behind a small HTTP host)
//! and the controller **binaries** started as separate processes with `KUBECONFIG` pointing at that API server.
//! Tests then drive the loop only through the Kubernetes API and git, like a user would.
//!
//! # Finding the binaries
//! [`binary`] looks for `testenv`, `source-controller`, `kustomize-controller`, ... in the directory cargo puts
//! the workspace's binaries for the profile the test was built with (`current_exe()` is
//! `<target>/<profile>/deps/<test>`, binaries are in `<target>/<profile>/`). The first time a test process needs a
//! binary it runs `cargo build --bins -p <crate>` with that target directory and profile (a no-op when up to date,
//! so a stale binary is never tested); set `RIPTIDE_E2E_NO_BUILD=1` to skip that and use what is there, or
//! `RIPTIDE_E2E_BIN_DIR=DIR` to take the binaries from elsewhere.
//!
//! # Against a real cluster
//! With `RIPTIDE_E2E_KUBECONFIG=FILE` no testenv is started: the controllers (still local processes) and the test
//! talk to that cluster. Each test works in its own `riptide-e2e-*` namespace, and its controllers watch only that
//! namespace (`--watch-all-namespaces=false`, `RUNTIME_NAMESPACE`), so tests running in parallel do not see each
//! other's objects. Don't point it at a cluster where Flux runs.
//!
//! # Logs
//! Each process writes its output to a file in the test's temporary directory; when a test panics, the tail of
//! every log is printed (see [`Process`]). `RIPTIDE_E2E_KEEP=1` keeps the directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;
use testenv::git_http::{GitHttpOptions, GitHttpServer};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

pub use common::api::meta::{annotations, condition_types, reasons};

/// The field manager the tests write with.
pub const FIELD_MANAGER: &str = "riptide-e2e";

/// A default deadline for "the loop gets there": generous for 2 loaded cores and debug builds.
pub const DEADLINE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------------------
// Binaries

/// The crate that builds each binary the suite runs.
fn crate_of(binary: &str) -> &str {
    match binary {
        "riptide" => "cli",
        "image-reflector-controller" => "image-reflector",
        "image-automation-controller" => "image-automation",
        other => other,
    }
}

/// `(target dir, profile dir name)` of the running test executable.
fn target_of_current_exe() -> anyhow::Result<(PathBuf, String)> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("test executable has no directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("profile directory name")?
        .to_string();
    let target = dir
        .parent()
        .context("profile dir has no parent")?
        .to_path_buf();
    Ok((target, profile))
}

/// The directory holding the workspace's binaries for this test's profile.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RIPTIDE_E2E_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let (target, profile) = target_of_current_exe()?;
    Ok(target.join(profile))
}

static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The path of the workspace binary `name` (`testenv`, `source-controller`, `riptide`, ...), built first with
/// `cargo build --bins -p <crate>` once per test process (see the crate docs).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    let skip_build = std::env::var_os("RIPTIDE_E2E_NO_BUILD")
        .is_some_and(|v| !v.is_empty() && v != "0")
        || std::env::var_os("RIPTIDE_E2E_BIN_DIR").is_some();
    if !skip_build {
        let krate = crate_of(name).to_string();
        let mut built = BUILT
            .lock()
            .map_err(|_| anyhow::anyhow!("build lock poisoned"))?;
        let set = built.get_or_insert_with(HashSet::new);
        if !set.contains(&krate) {
            cargo_build(&krate)?;
            set.insert(krate);
        }
    }
    if !path.is_file() {
        bail!(
            "{} does not exist (build it with `cargo build --bins -p {}`)",
            path.display(),
            crate_of(name)
        );
    }
    Ok(path)
}

fn cargo_build(krate: &str) -> anyhow::Result<()> {
    let (target, profile) = target_of_current_exe()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--bins", "-p", krate, "--target-dir"])
        .arg(&target);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("e2e: cargo build --bins -p {krate} ({profile})");
    let out = cmd.output().context("running cargo build")?;
    if !out.status.success() {
        bail!(
            "cargo build --bins -p {krate} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Whether the binary `name` is a real program rather than a placeholder (`--help` succeeds), and its help text.
pub fn help_of(name: &str) -> anyhow::Result<Option<String>> {
    let out = std::process::Command::new(binary(name)?)
        .arg("--help")
        .output()?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Whether the controller binary `name` exists and has every flag in `flags` (e.g. `["--storage-addr"]`): the
/// gate for tests that need a controller or a feature which may not have landed yet.
pub fn controller_supports(name: &str, flags: &[&str]) -> bool {
    match help_of(name) {
        Ok(Some(help)) => flags.iter().all(|f| help.contains(f)),
        Ok(None) => false,
        Err(e) => {
            eprintln!("e2e: {name}: {e:#}");
            false
        }
    }
}

/// A free port on 127.0.0.1 (bound then released; the OS does not hand it out again at once).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

// ---------------------------------------------------------------------------------------------------------
// Processes

/// A child process killed when dropped, its stdout and stderr in `log`. On drop while panicking (a failed
/// test), the last lines of the log are printed.
pub struct Process {
    /// A short name for messages.
    pub name: String,
    /// Where its output goes.
    pub log: PathBuf,
    child: Child,
}

impl Process {
    /// Starts `program args` with `envs`, output appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            log: log.to_path_buf(),
            child,
        })
    }

    /// The process id.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// `Some(status)` when the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process (SIGKILL, like a crashed pod) and waits for it.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}), last 60 lines -----\n{}\n----- end of {} log -----",
                self.name,
                self.log.display(),
                self.log_tail(60),
                self.name
            );
        }
        let _ = self.child.start_kill();
    }
}

/// Polls `probe` until it returns `Some`, or fails after `deadline` saying what it waited for. Polls every
/// 100 ms: waiting is always on an observable condition, never on a fixed sleep.
pub async fn eventually<T, F, Fut>(
    what: &str,
    deadline: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() > deadline {
            match last_err {
                Some(e) => {
                    bail!("timed out after {deadline:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {deadline:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn http_ok(url: &str) -> bool {
    match reqwest::get(url).await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------------------
// The cluster

/// A Kubernetes API to run against: a `testenv serve` process, or the cluster in `RIPTIDE_E2E_KUBECONFIG`.
pub struct Cluster {
    /// The kubeconfig the controllers get.
    pub kubeconfig: PathBuf,
    /// A client for the test.
    pub client: Client,
    /// The `testenv` process (none against a real cluster).
    pub server: Option<Process>,
}

/// A kube client for a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

impl Cluster {
    /// Starts `testenv serve` on a random loopback port with its kubeconfig and data in `dir`, or connects to
    /// `RIPTIDE_E2E_KUBECONFIG`. Either way, every Flux CRD is installed and established.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let cluster = match std::env::var_os("RIPTIDE_E2E_KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(kc) => {
                let kubeconfig = PathBuf::from(kc);
                let client = client_for(&kubeconfig).await?;
                Cluster {
                    kubeconfig,
                    client,
                    server: None,
                }
            }
            None => Self::start_testenv(dir, &dir.join("testenv-data")).await?,
        };
        install_crds(&cluster.client).await?;
        Ok(cluster)
    }

    /// Starts a `testenv serve` process persisting to `data_dir`.
    pub async fn start_testenv(dir: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        let kubeconfig = dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let log = dir.join("testenv.log");
        let args = vec![
            "serve".to_string(),
            "--listen=127.0.0.1:0".to_string(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--data-dir={}", data_dir.display()),
        ];
        let mut server = Process::spawn("testenv", &binary("testenv")?, &args, &[], &log)?;
        // `testenv serve` writes the kubeconfig, then prints its URL.
        let ready = eventually("testenv to print its URL", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let exited = server.exited();
            async move {
                if let Some(status) = exited {
                    bail!("testenv exited with {status}: {text}");
                }
                Ok(text.lines().any(|l| l.starts_with("http://")).then_some(()))
            }
        })
        .await;
        ready?;
        let client = client_for(&kubeconfig).await?;
        Ok(Cluster {
            kubeconfig,
            client,
            server: Some(server),
        })
    }
}

/// Creates (or updates) every Flux CRD with server-side apply and waits until each is served.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let crds = common::api::crds();
    for crd in &crds {
        let name = crd.metadata.name.clone().context("CRD without name")?;
        let mut crd = crd.clone();
        crd.metadata.managed_fields = None;
        api.patch(&name, &pp, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
    }
    for crd in &crds {
        let name = crd.metadata.name.clone().context("CRD without name")?;
        eventually(&format!("CRD {name} Established"), DEADLINE, || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(established.then_some(()))
            }
        })
        .await?;
    }
    Ok(())
}

/// Creates a namespace `<prefix>-<random>` labelled `riptide.e2e/test=true` and returns its name.
pub async fn create_temp_namespace(client: &Client, prefix: &str) -> anyhow::Result<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = jiff::Timestamp::now().subsec_nanosecond().unsigned_abs();
    let name = format!(
        "{prefix}-{:05x}{n:x}",
        (std::process::id() ^ nanos) & 0xfffff
    );
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"riptide.e2e/test": "true"}},
    }))?;
    api.create(&PostParams::default(), &ns).await?;
    Ok(name)
}

/// Runs `body` with a fresh namespace, deleting the namespace afterwards (also when `body` fails).
pub async fn with_temp_namespace<T, F, Fut>(client: &Client, body: F) -> anyhow::Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let name = create_temp_namespace(client, "riptide-e2e").await?;
    let result = body(name.clone()).await;
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(&name, &Default::default()).await;
    result
}

// ---------------------------------------------------------------------------------------------------------
// Conditions

/// The status condition `type_` of an object, as JSON.
pub fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        .cloned()
}

/// A string field of a condition (`status`, `reason`, `message`).
pub fn condition_field(obj: &Value, type_: &str, field: &str) -> Option<String> {
    condition(obj, type_)?
        .get(field)?
        .as_str()
        .map(str::to_string)
}

/// Checks the house invariants on an object's conditions (STYLE.md, Tests 4): Ready present once reconciled,
/// Reconciling and Stalled never both True, observedGeneration set when Ready is decided.
pub fn check_condition_invariants(obj: &Value) -> anyhow::Result<()> {
    let status = |t: &str| condition_field(obj, t, "status");
    if status(condition_types::RECONCILING).as_deref() == Some("True")
        && status(condition_types::STALLED).as_deref() == Some("True")
    {
        bail!("Reconciling and Stalled both True: {}", obj["status"]);
    }
    if let Some(ready) = status(condition_types::READY)
        && ready != "Unknown"
        && obj.pointer("/status/observedGeneration").is_none()
    {
        bail!(
            "Ready={ready} without observedGeneration: {}",
            obj["status"]
        );
    }
    Ok(())
}

/// Polls `name` until `pred` holds for it (as JSON), returning the object; fails after `deadline` showing the
/// object's last status.
pub async fn await_object<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    deadline: Duration,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value>
where
    K: Resource + Clone + DeserializeOwned + Debug + serde::Serialize,
{
    let last = Mutex::new(Value::Null);
    let res = eventually(what, deadline, || {
        let api = api.clone();
        let name = name.to_string();
        let pred = &pred;
        let last = &last;
        async move {
            let obj = match api.get_opt(&name).await? {
                Some(o) => serde_json::to_value(o)?,
                None => return Ok(None),
            };
            check_condition_invariants(&obj)?;
            let ok = pred(&obj);
            if let Ok(mut l) = last.lock() {
                *l = obj.clone();
            }
            Ok(ok.then_some(obj))
        }
    })
    .await;
    res.with_context(|| {
        let last = last.lock().map(|l| l.clone()).unwrap_or_default();
        format!(
            "{name}: last status {}",
            serde_json::to_string_pretty(&last["status"]).unwrap_or_default()
        )
    })
}

/// Waits until condition `type_` of `name` has `status` (`"True"`/`"False"`) and, when given, `reason`.
pub async fn await_condition<K>(
    api: &Api<K>,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    deadline: Duration,
) -> anyhow::Result<Value>
where
    K: Resource + Clone + DeserializeOwned + Debug + serde::Serialize,
{
    let what = format!("{name} {type_}={status} {}", reason.unwrap_or(""));
    await_object(api, name, &what, deadline, |obj| {
        condition_field(obj, type_, "status").as_deref() == Some(status)
            && reason.is_none_or(|r| condition_field(obj, type_, "reason").as_deref() == Some(r))
    })
    .await
}

/// Waits until `name` is Ready=True with `status.<field>` equal to `revision` (`lastAppliedRevision` for a
/// Kustomization, `artifact.revision` for a source).
pub async fn await_ready_at<K>(
    api: &Api<K>,
    name: &str,
    revision_pointer: &str,
    revision: &str,
    deadline: Duration,
) -> anyhow::Result<Value>
where
    K: Resource + Clone + DeserializeOwned + Debug + serde::Serialize,
{
    let what = format!("{name} Ready at {revision}");
    await_object(api, name, &what, deadline, |obj| {
        condition_field(obj, condition_types::READY, "status").as_deref() == Some("True")
            && obj.pointer(revision_pointer).and_then(Value::as_str) == Some(revision)
    })
    .await
}

/// Sets `reconcile.fluxcd.io/requestedAt` to now (what `flux reconcile` does) and returns the value.
pub async fn request_reconcile<K>(api: &Api<K>, name: &str) -> anyhow::Result<String>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let at = jiff::Timestamp::now().to_string();
    let patch =
        serde_json::json!({"metadata": {"annotations": {annotations::RECONCILE_REQUEST: at}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(at)
}

/// Applies a YAML/JSON object (as a `serde_json::Value`) with server-side apply as [`FIELD_MANAGER`].
pub async fn apply<K>(api: &Api<K>, obj: &Value) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + serde::Serialize,
{
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .context("object without metadata.name")?;
    Ok(api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

// ---------------------------------------------------------------------------------------------------------
// Git

/// Runs `git args` in `dir` with a fixed identity and no user/system config; returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Riptide E2E")
        .env("GIT_AUTHOR_EMAIL", "e2e@riptide.invalid")
        .env("GIT_COMMITTER_NAME", "Riptide E2E")
        .env("GIT_COMMITTER_EMAIL", "e2e@riptide.invalid")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .with_context(|| format!("running git {args:?}"))?;
    if !out.status.success() {
        bail!(
            "git {args:?} in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A git server on loopback holding bare repositories, with working copies that push to it over HTTP.
pub struct GitServer {
    root: PathBuf,
    work: PathBuf,
    server: GitHttpServer,
}

impl GitServer {
    /// Starts `git http-backend` behind [`GitHttpServer`] for bare repositories under `dir/git`.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let root = dir.join("git");
        let work = dir.join("work");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&work)?;
        let server = GitHttpServer::start(&root, GitHttpOptions::default()).await?;
        Ok(Self { root, work, server })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Creates the bare repository `<name>.git` (pushes over HTTP allowed) and a working copy on branch `main`
    /// whose `origin` is its HTTP URL.
    pub fn create_repo(&self, name: &str) -> anyhow::Result<Repo> {
        let bare = self.root.join(format!("{name}.git"));
        std::fs::create_dir_all(&bare)?;
        git(&bare, &["init", "--bare", "-q", "-b", "main"])?;
        git(&bare, &["config", "http.receivepack", "true"])?;
        let url = self.server.url(&format!("{name}.git"));
        let dir = self.work.join(name);
        std::fs::create_dir_all(&dir)?;
        git(&dir, &["init", "-q", "-b", "main"])?;
        git(&dir, &["remote", "add", "origin", &url])?;
        Ok(Repo { dir, url })
    }
}

/// A working copy of a repository on the [`GitServer`].
pub struct Repo {
    /// The working tree.
    pub dir: PathBuf,
    /// The HTTP URL the controllers clone from.
    pub url: String,
}

impl Repo {
    /// Writes `content` to `path` (parents created).
    pub fn write(&self, path: &str, content: &str) -> anyhow::Result<()> {
        let full = self.dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(full, content)?;
        Ok(())
    }

    /// Writes every `(path, content)`.
    pub fn write_all(&self, files: &[(&str, &str)]) -> anyhow::Result<()> {
        for (p, c) in files {
            self.write(p, c)?;
        }
        Ok(())
    }

    /// Removes `path` from the working tree.
    pub fn remove(&self, path: &str) -> anyhow::Result<()> {
        std::fs::remove_file(self.dir.join(path))?;
        Ok(())
    }

    /// Commits everything (`git add -A`) and returns the new commit's sha.
    pub fn commit(&self, message: &str) -> anyhow::Result<String> {
        git(&self.dir, &["add", "-A"])?;
        git(&self.dir, &["commit", "-q", "-m", message])?;
        self.head()
    }

    /// Pushes `main` to the server over HTTP.
    pub fn push(&self) -> anyhow::Result<()> {
        git(&self.dir, &["push", "-q", "origin", "main"])?;
        Ok(())
    }

    /// Commits everything and pushes; returns the sha.
    pub fn commit_and_push(&self, message: &str) -> anyhow::Result<String> {
        let sha = self.commit(message)?;
        self.push()?;
        Ok(sha)
    }

    /// `git revert --no-edit <sha>` and returns the new commit's sha (not pushed).
    pub fn revert(&self, sha: &str) -> anyhow::Result<String> {
        git(&self.dir, &["revert", "--no-edit", sha])?;
        self.head()
    }

    /// The sha of `HEAD`.
    pub fn head(&self) -> anyhow::Result<String> {
        git(&self.dir, &["rev-parse", "HEAD"])
    }
}

/// Flux's revision string for a commit on `main`: `main@sha1:<sha>`.
pub fn main_revision(sha: &str) -> String {
    format!("main@sha1:{sha}")
}

// ---------------------------------------------------------------------------------------------------------
// The whole environment

/// The controllers the suite knows how to start, with their binary names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// `source-controller`: GitRepository → artifact server.
    Source,
    /// `kustomize-controller`: Kustomization → applied objects.
    Kustomize,
}

impl Controller {
    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            Controller::Source => "source-controller",
            Controller::Kustomize => "kustomize-controller",
        }
    }
}

/// One test's world: a temporary directory, an API server, a namespace, a git server and the controllers.
pub struct Env {
    /// Logs, kubeconfig, git repositories, source-controller storage.
    pub dir: tempfile::TempDir,
    /// The API server.
    pub cluster: Cluster,
    /// This test's namespace (its controllers watch only it).
    pub namespace: String,
    /// The git server.
    pub git: GitServer,
    /// The artifact server's port (kept across source-controller restarts).
    pub storage_port: u16,
    controllers: BTreeMap<Controller, Process>,
}

impl Env {
    /// Starts the API server (or connects to `RIPTIDE_E2E_KUBECONFIG`), installs the CRDs, creates the
    /// namespace and starts the git server. No controller runs yet: see [`Env::start_controller`].
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("riptide-e2e-").tempdir()?;
        let cluster = Cluster::start(dir.path()).await?;
        let namespace = create_temp_namespace(&cluster.client, "riptide-e2e").await?;
        let git = GitServer::start(dir.path()).await?;
        let storage_port = free_port()?;
        Ok(Self {
            dir,
            cluster,
            namespace,
            git,
            storage_port,
            controllers: BTreeMap::new(),
        })
    }

    /// A client for the API server.
    pub fn client(&self) -> Client {
        self.cluster.client.clone()
    }

    /// An API for `K` in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client(), &self.namespace)
    }

    /// The source-controller's storage directory (survives restarts of the process).
    pub fn storage_path(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The command line a controller is started with.
    fn controller_args(&self, controller: Controller) -> anyhow::Result<Vec<String>> {
        let mut args = vec![
            format!("--metrics-addr=127.0.0.1:{}", free_port()?),
            format!("--health-addr=127.0.0.1:{}", free_port()?),
            "--log-encoding=console".to_string(),
            "--log-level=info".to_string(),
            "--watch-all-namespaces=false".to_string(),
            "--min-retry-delay=250ms".to_string(),
            "--max-retry-delay=5s".to_string(),
            "--requeue-dependency=2s".to_string(),
            // As Flux's manifests do. Short timings so a restarted controller takes the Lease over quickly.
            "--enable-leader-election".to_string(),
            "--leader-election-lease-duration=4s".to_string(),
            "--leader-election-renew-deadline=3s".to_string(),
            "--leader-election-retry-period=1s".to_string(),
            "--interval-jitter-percentage=0".to_string(),
        ];
        if controller == Controller::Source {
            args.push(format!("--storage-path={}", self.storage_path().display()));
            args.push(format!("--storage-addr=127.0.0.1:{}", self.storage_port));
            args.push(format!(
                "--storage-adv-addr=127.0.0.1:{}",
                self.storage_port
            ));
        }
        Ok(args)
    }

    /// Starts a controller binary as a process watching the test's namespace and waits for its `/readyz`.
    pub async fn start_controller(&mut self, controller: Controller) -> anyhow::Result<()> {
        let name = controller.binary();
        let args = self.controller_args(controller)?;
        let health = args
            .iter()
            .find_map(|a| a.strip_prefix("--health-addr="))
            .context("health address")?
            .to_string();
        let envs = vec![
            (
                "KUBECONFIG".to_string(),
                self.cluster.kubeconfig.display().to_string(),
            ),
            ("RUNTIME_NAMESPACE".to_string(), self.namespace.clone()),
            ("RUST_BACKTRACE".to_string(), "1".to_string()),
        ];
        let log = self.dir.path().join(format!("{name}.log"));
        let mut process = Process::spawn(name, &binary(name)?, &args, &envs, &log)?;
        let url = format!("http://{health}/readyz");
        let ready = eventually(&format!("{name} /readyz"), DEADLINE, || {
            let exited = process.exited();
            let url = url.clone();
            async move {
                if let Some(status) = exited {
                    bail!("{name} exited with {status}");
                }
                Ok(http_ok(&url).await.then_some(()))
            }
        })
        .await;
        if let Err(e) = ready {
            bail!("{e:#}\n{name} log:\n{}", process.log_tail(40));
        }
        self.controllers.insert(controller, process);
        Ok(())
    }

    /// Starts source-controller and kustomize-controller.
    pub async fn start_controllers(&mut self) -> anyhow::Result<()> {
        self.start_controller(Controller::Source).await?;
        self.start_controller(Controller::Kustomize).await
    }

    /// Kills a controller process (SIGKILL, as a crashed pod) and waits until it is gone.
    pub async fn kill_controller(&mut self, controller: Controller) -> anyhow::Result<()> {
        if let Some(p) = self.controllers.remove(&controller) {
            p.kill().await?;
        }
        Ok(())
    }

    /// Creates a repository on the git server.
    pub fn create_repo(&self, name: &str) -> anyhow::Result<Repo> {
        self.git.create_repo(name)
    }

    /// Applies a GitRepository `name` for `url` on branch `main` with `interval`.
    pub async fn apply_git_repository(
        &self,
        name: &str,
        url: &str,
        interval: &str,
    ) -> anyhow::Result<()> {
        let api: Api<common::api::source_v1::GitRepository> = self.api();
        apply(
            &api,
            &serde_json::json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"url": url, "interval": interval, "ref": {"branch": "main"}, "timeout": "20s"},
            }),
        )
        .await?;
        Ok(())
    }

    /// Applies a Kustomization `name` of `path` in GitRepository `source`, pruning, objects put in the test's
    /// namespace; `extra` is merged into its spec (e.g. `{"dependsOn": [...]}`).
    pub async fn apply_kustomization(
        &self,
        name: &str,
        source: &str,
        path: &str,
        interval: &str,
        extra: Value,
    ) -> anyhow::Result<()> {
        let mut spec = serde_json::json!({
            "interval": interval,
            "retryInterval": "2s",
            "path": path,
            "prune": true,
            "timeout": "30s",
            "targetNamespace": self.namespace,
            "sourceRef": {"kind": "GitRepository", "name": source},
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        let api: Api<common::api::kustomize_v1::Kustomization> = self.api();
        apply(
            &api,
            &serde_json::json!({
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": spec,
            }),
        )
        .await?;
        Ok(())
    }

    /// The last lines of every process's log (for failure reports).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let procs = self.cluster.server.iter().chain(self.controllers.values());
        for p in procs {
            out.push_str(&format!(
                "----- {} ({}), last 80 lines -----\n{}\n",
                p.name,
                p.log.display(),
                p.log_tail(80)
            ));
        }
        out
    }

    /// Ends the test: stops the controllers, deletes the namespace on a real cluster, stops the API server.
    /// With `RIPTIDE_E2E_KEEP=1` the temporary directory (logs, repositories) is kept and its path printed.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        for (_, p) in std::mem::take(&mut self.controllers) {
            p.kill().await?;
        }
        if self.cluster.server.is_none() {
            let api: Api<Namespace> = Api::all(self.client());
            let _ = api.delete(&self.namespace, &Default::default()).await;
        }
        if let Some(server) = self.cluster.server.take() {
            server.kill().await?;
        }
        if std::env::var_os("RIPTIDE_E2E_KEEP").is_some() {
            let path = self.dir.keep();
            eprintln!("e2e: kept {}", path.display());
        }
        Ok(())
    }
}

/// A `tokio` line reader over a child's stdout, for tests that drive the `riptide` binary.
pub async fn read_line(
    reader: &mut (impl AsyncBufReadExt + Unpin),
) -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    Ok(match reader.read_line(&mut line).await? {
        0 => None,
        _ => Some(line),
    })
}

/// Runs one e2e scenario: starts an [`Env`] (and, when `controllers` is true, source-controller and
/// kustomize-controller), runs `body`, and on failure panics with the error and every process's log tail.
pub async fn scenario(
    name: &str,
    controllers: bool,
    body: impl AsyncFnOnce(&mut Env) -> anyhow::Result<()>,
) {
    let started = Instant::now();
    let mut env = match Env::start().await {
        Ok(env) => env,
        Err(e) => panic!("{name}: starting the environment: {e:#}"),
    };
    let result = if controllers {
        match env.start_controllers().await {
            Ok(()) => body(&mut env).await,
            Err(e) => Err(e.context("starting the controllers")),
        }
    } else {
        body(&mut env).await
    };
    if let Err(e) = result {
        let logs = env.logs();
        // The processes print their own tails when dropped while panicking; avoid printing twice.
        let _ = env.finish().await;
        panic!("{name} failed after {:?}: {e:#}\n{logs}", started.elapsed());
    }
    if let Err(e) = env.finish().await {
        panic!("{name}: stopping the environment: {e:#}");
    }
    eprintln!("{name}: passed in {:.1?}", started.elapsed());
}

/// Manifests for the tests' repositories.
pub mod fixtures {
    /// A `kustomization.yaml` listing `resources`.
    pub fn kustomization(resources: &[&str]) -> String {
        let mut s = String::from(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
        );
        for r in resources {
            s.push_str(&format!("  - {r}\n"));
        }
        s
    }

    /// A ConfigMap `name` with `data` (`key: value` pairs); `annotations` too when given.
    pub fn config_map(name: &str, data: &[(&str, &str)], annotations: &[(&str, &str)]) -> String {
        let mut s = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
        if !annotations.is_empty() {
            s.push_str("  annotations:\n");
            for (k, v) in annotations {
                s.push_str(&format!("    {k}: \"{v}\"\n"));
            }
        }
        s.push_str("data:\n");
        for (k, v) in data {
            s.push_str(&format!("  {k}: \"{v}\"\n"));
        }
        s
    }

    /// A Deployment `name` running `replicas` pods of a podinfo container.
    pub fn deployment(name: &str, replicas: u32) -> String {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n        - name: app\n          image: ghcr.io/stefanprodan/podinfo:6.7.0\n          ports:\n            - containerPort: 9898\n"
        )
    }

    /// A Service `name` selecting `app: name`.
    pub fn service(name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n    app: {name}\n  ports:\n    - port: 9898\n      targetPort: 9898\n"
        )
    }
}
