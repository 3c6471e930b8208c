//! `riptide up`: the whole toolkit on this machine, one command.
//!
//! Starts, on loopback and as separate child processes of the same binaries a cluster would run: the `testenv`
//! API server (or uses a real cluster with `--kubeconfig`/`KUBECONFIG`), then every controller binary that exists
//! beside `riptide` (source-controller, kustomize-controller, and the others as they land). It installs the Flux
//! CRDs, serves a local git repository over smart HTTP (git's own `git http-backend` behind
//! [`testenv::git_http`]), creates a GitRepository and a Kustomization for it, prints progress, then a live status
//! table until Ctrl-C, which stops every child.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use testenv::git_http::{GitHttpOptions, GitHttpServer};
use tokio::process::{Child, Command};

use crate::{example, status};

/// The field manager `riptide up` applies with.
pub const FIELD_MANAGER: &str = "riptide";

/// Arguments of `riptide up`.
#[derive(Debug, Args)]
#[command(long_about = "Runs the GitOps loop on this machine.

With no flags: starts a Kubernetes API server (testenv) on 127.0.0.1, writes its kubeconfig to \
<data-dir>/kubeconfig (use it with kubectl), installs the Flux CRDs, starts source-controller, \
kustomize-controller and every other controller binary found beside `riptide` as separate processes, creates \
an example GitOps repository in <data-dir>/example (clusters/dev and clusters/prod), serves it over smart HTTP \
on loopback, and creates a GitRepository and a Kustomization (flux-system/flux-system) for ./clusters/dev. \
Commit in that repository and watch the change reach the API server.

Then it shows a status table (kind, name, Ready, revision, message) until Ctrl-C, which stops every child \
process. Controller logs go to <data-dir>/logs/.")]
pub struct UpArgs {
    /// The GitOps repository: an http(s)/ssh URL, or a local git repository (served over smart HTTP on
    /// loopback). Default: an example repository created in `<data-dir>/example`.
    #[arg(long)]
    pub repo: Option<String>,
    /// The branch to follow. Default: the local repository's current branch, else `main`.
    #[arg(long)]
    pub branch: Option<String>,
    /// The directory in the repository to apply. Default: `./clusters/dev` for the example, else `./`.
    #[arg(long)]
    pub path: Option<String>,
    /// Run the controllers against this cluster instead of starting testenv (`KUBECONFIG` does the same).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Where state lives: testenv's objects, the source-controller's artifacts, logs, the example repository.
    #[arg(long, default_value_os_t = status::default_data_dir())]
    pub data_dir: PathBuf,
    /// Reconcile interval of the GitRepository and the Kustomization.
    #[arg(long, default_value = "30s")]
    pub interval: String,
    /// Namespace of the GitRepository and Kustomization (and the controllers' runtime namespace).
    #[arg(long, default_value = "flux-system")]
    pub namespace: String,
    /// Name of the GitRepository and Kustomization.
    #[arg(long, default_value = "flux-system")]
    pub name: String,
    /// Where the controller binaries are. Default: the directory of the `riptide` executable.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Print the status table once the Kustomization is ready and exit (stopping everything), instead of
    /// showing it until Ctrl-C. Fails if it is not ready within `--timeout`.
    #[arg(long)]
    pub once: bool,
    /// With `--once`: how long to wait.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// The controllers `riptide up` knows, in start order (notification-controller first: the others send it events).
const CONTROLLERS: &[&str] = &[
    "notification-controller",
    "source-controller",
    "kustomize-controller",
    "image-reflector-controller",
    "image-automation-controller",
];

/// Runs `riptide up` until Ctrl-C (or, with `--once`, until ready).
pub fn run(args: &UpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut up = Up::default();
        let result = up.run(args).await;
        up.stop().await;
        result
    })
}

/// A child process and where its output goes.
struct ChildProc {
    name: String,
    log: PathBuf,
    child: Child,
    exit_reported: bool,
}

#[derive(Default)]
struct Up {
    /// Children in start order; stopped in reverse.
    children: Vec<ChildProc>,
    git: Option<GitHttpServer>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

async fn http_ok(url: &str) -> bool {
    matches!(reqwest::get(url).await, Ok(r) if r.status().is_success())
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether `repo` names a remote URL rather than a local path.
pub fn is_url(repo: &str) -> bool {
    repo.starts_with("http://")
        || repo.starts_with("https://")
        || repo.starts_with("ssh://")
        || (repo.contains('@') && repo.contains(':') && !Path::new(repo).exists())
}

impl Up {
    fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, String)],
        logs: &Path,
    ) -> anyhow::Result<usize> {
        let log = logs.join(format!("{name}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        self.children.push(ChildProc {
            name: name.to_string(),
            log,
            child,
            exit_reported: false,
        });
        Ok(self.children.len() - 1)
    }

    /// Stops children in reverse start order: SIGTERM, then SIGKILL after 10 s.
    async fn stop(&mut self) {
        if let Some(git) = self.git.take() {
            git.shutdown().await;
        }
        while let Some(mut c) = self.children.pop() {
            if matches!(c.child.try_wait(), Ok(Some(_))) {
                continue;
            }
            if let Some(pid) = c.child.id() {
                // `kill` keeps this crate free of unsafe code; every Unix has it.
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            match tokio::time::timeout(Duration::from_secs(10), c.child.wait()).await {
                Ok(_) => say(format!("■ {} stopped", c.name)),
                Err(_) => {
                    let _ = c.child.kill().await;
                    say(format!("■ {} killed (did not stop within 10s)", c.name));
                }
            }
        }
    }

    /// Reports children that exited; fails when `fatal` is among them.
    fn check_children(&mut self, fatal: &str) -> anyhow::Result<()> {
        for c in &mut self.children {
            if c.exit_reported {
                continue;
            }
            if let Ok(Some(status)) = c.child.try_wait() {
                c.exit_reported = true;
                if c.name == fatal {
                    bail!("{} exited ({status}):\n{}", c.name, last_lines(&c.log, 20));
                }
                say(format!(
                    "✗ {} exited ({status}); log: {}\n{}",
                    c.name,
                    c.log.display(),
                    last_lines(&c.log, 5)
                ));
            }
        }
        Ok(())
    }

    async fn start_testenv(
        &mut self,
        testenv: &Path,
        data_dir: &Path,
        logs: &Path,
    ) -> anyhow::Result<PathBuf> {
        let kubeconfig = data_dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let args = vec![
            "serve".to_string(),
            "--listen=127.0.0.1:0".to_string(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--data-dir={}", data_dir.join("testenv").display()),
        ];
        let idx = self.spawn("testenv", testenv, &args, &[], logs)?;
        let log = self.children[idx].log.clone();
        let started = Instant::now();
        loop {
            if let Some(url) = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("http://"))
            {
                say(format!("✔ testenv API server at {url}"));
                break;
            }
            if let Ok(Some(status)) = self.children[idx].child.try_wait() {
                bail!("testenv exited ({status}):\n{}", last_lines(&log, 20));
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "testenv did not start within 30s:\n{}",
                    last_lines(&log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        say(format!(
            "  kubeconfig: {}   (KUBECONFIG={} kubectl get all -A)",
            kubeconfig.display(),
            kubeconfig.display()
        ));
        Ok(kubeconfig)
    }

    /// Starts one controller if its binary exists and is implemented; returns whether it runs.
    #[allow(clippy::too_many_arguments)]
    async fn start_controller(
        &mut self,
        name: &str,
        bin_dir: &Path,
        kubeconfig: Option<&Path>,
        namespace: &str,
        data_dir: &Path,
        logs: &Path,
        events_addr: &mut Option<String>,
    ) -> anyhow::Result<bool> {
        let program = bin_dir.join(name);
        if !program.is_file() {
            say(format!(
                "- {name}: not built ({} missing)",
                program.display()
            ));
            return Ok(false);
        }
        let help = std::process::Command::new(&program)
            .arg("--help")
            .output()?;
        if !help.status.success() {
            let why = String::from_utf8_lossy(&help.stderr).trim().to_string();
            say(format!("- {name}: not available yet ({why})"));
            return Ok(false);
        }
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let has = |flag: &str| help.contains(flag);
        let health = free_port()?;
        let mut args = vec![
            format!("--metrics-addr=127.0.0.1:{}", free_port()?),
            format!("--health-addr=127.0.0.1:{health}"),
            "--log-encoding=console".to_string(),
        ];
        if has("--enable-leader-election") {
            // As Flux's own manifests do; a restarted controller takes the Lease over within seconds.
            args.extend([
                "--enable-leader-election".to_string(),
                "--leader-election-lease-duration=10s".to_string(),
                "--leader-election-renew-deadline=8s".to_string(),
                "--leader-election-retry-period=2s".to_string(),
            ]);
        }
        if has("--storage-addr") {
            let port = free_port()?;
            args.push(format!(
                "--storage-path={}",
                data_dir.join("storage").display()
            ));
            args.push(format!("--storage-addr=127.0.0.1:{port}"));
            if has("--storage-adv-addr") {
                args.push(format!("--storage-adv-addr=127.0.0.1:{port}"));
            }
        }
        let mut own_events = None;
        if name == "notification-controller" {
            let port = free_port()?;
            if has("--events-addr") {
                args.push(format!("--events-addr=127.0.0.1:{port}"));
                own_events = Some(format!("http://127.0.0.1:{port}"));
            }
            if has("--receiverAddr") {
                args.push(format!("--receiverAddr=127.0.0.1:{}", free_port()?));
            }
        } else if let Some(addr) = events_addr.as_ref()
            && has("--events-addr")
        {
            args.push(format!("--events-addr={addr}"));
        }
        let mut envs = vec![("RUNTIME_NAMESPACE", namespace.to_string())];
        if let Some(kc) = kubeconfig {
            envs.push(("KUBECONFIG", kc.display().to_string()));
        }
        let idx = self.spawn(name, &program, &args, &envs, logs)?;
        let url = format!("http://127.0.0.1:{health}/readyz");
        let started = Instant::now();
        loop {
            if http_ok(&url).await {
                break;
            }
            let c = &mut self.children[idx];
            if let Ok(Some(status)) = c.child.try_wait() {
                c.exit_reported = true;
                say(format!(
                    "✗ {name} exited at start ({status}); log: {}\n{}",
                    c.log.display(),
                    last_lines(&c.log, 5)
                ));
                return Ok(false);
            }
            if started.elapsed() > Duration::from_secs(60) {
                say(format!(
                    "! {name} is not ready after 60s; continuing (log: {})",
                    c.log.display()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let c = &self.children[idx];
        say(format!(
            "✔ {name} up (pid {}, log {})",
            c.child.id().unwrap_or_default(),
            c.log.display()
        ));
        if own_events.is_some() {
            *events_addr = own_events;
        }
        Ok(true)
    }

    async fn run(&mut self, args: &UpArgs) -> anyhow::Result<()> {
        let data_dir = &args.data_dir;
        let logs = data_dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let data_dir = data_dir.canonicalize()?;
        let logs = logs.canonicalize()?;
        let bin_dir = match &args.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("riptide has no directory")?
                .to_path_buf(),
        };
        say(format!("riptide up — data in {}", data_dir.display()));

        // 1. The API server.
        let external = args.kubeconfig.clone().or_else(|| {
            std::env::var_os("KUBECONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let kubeconfig = match external {
            Some(kc) => {
                say(format!("✔ using the cluster in {}", kc.display()));
                kc
            }
            None => {
                let testenv = bin_dir.join("testenv");
                if !testenv.is_file() {
                    bail!(
                        "{} not found: build the workspace first (cargo build --release --bins)",
                        testenv.display()
                    );
                }
                self.start_testenv(&testenv, &data_dir, &logs).await?
            }
        };
        let client = status::client(Some(&kubeconfig)).await?;
        let crds = install_crds(&client).await?;
        say(format!("✔ installed {crds} Flux CRDs"));
        ensure_namespace(&client, &args.namespace).await?;

        // 2. The repository.
        let (url, branch, path) = self.repository(args, &data_dir).await?;

        // 3. The controllers.
        let mut events_addr = None;
        let mut running = Vec::new();
        for name in CONTROLLERS {
            let kc = Some(kubeconfig.as_path());
            if self
                .start_controller(
                    name,
                    &bin_dir,
                    kc,
                    &args.namespace,
                    &data_dir,
                    &logs,
                    &mut events_addr,
                )
                .await?
            {
                running.push(*name);
            }
        }
        for required in ["source-controller", "kustomize-controller"] {
            if !running.contains(&required) {
                say(format!(
                    "! {required} is not running: the GitRepository/Kustomization will wait for it"
                ));
            }
        }

        // 4. The GitOps objects.
        apply_objects(&client, args, &url, &branch, &path).await?;
        say(format!(
            "✔ GitRepository and Kustomization {}/{} → {url} (branch {branch}, path {path})",
            args.namespace, args.name
        ));

        // 5. Progress, then the live table.
        self.watch(&client, args).await
    }

    /// Resolves `--repo` to a URL the source-controller can clone, serving local repositories over HTTP.
    async fn repository(
        &mut self,
        args: &UpArgs,
        data_dir: &Path,
    ) -> anyhow::Result<(String, String, String)> {
        if let Some(repo) = args.repo.as_deref().filter(|r| is_url(r)) {
            let branch = args.branch.clone().unwrap_or_else(|| "main".to_string());
            let path = args.path.clone().unwrap_or_else(|| "./".to_string());
            say(format!("✔ repository {repo}"));
            return Ok((repo.to_string(), branch, path));
        }
        let (local, default_path) = match &args.repo {
            Some(p) => (PathBuf::from(p), "./"),
            None => {
                let dir = data_dir.join("example");
                if example::ensure(&dir)? {
                    say(format!(
                        "✔ created the example repository {}",
                        dir.display()
                    ));
                } else {
                    say(format!("✔ example repository {}", dir.display()));
                }
                (dir, "./clusters/dev")
            }
        };
        let local = local
            .canonicalize()
            .with_context(|| format!("repository {}", local.display()))?;
        let bare = example::git(&local, &["rev-parse", "--is-bare-repository"])? == "true";
        let (root, served) = if bare {
            let name = local
                .file_name()
                .and_then(|n| n.to_str())
                .context("repository directory name")?
                .to_string();
            (
                local.parent().context("repository parent")?.to_path_buf(),
                name,
            )
        } else {
            // The root is the working tree, so only this repository is exported.
            let top = PathBuf::from(example::git(&local, &["rev-parse", "--show-toplevel"])?);
            (top, ".git".to_string())
        };
        let branch = match &args.branch {
            Some(b) => b.clone(),
            None => example::git(&local, &["symbolic-ref", "--short", "HEAD"])
                .unwrap_or_else(|_| "main".into()),
        };
        let server = GitHttpServer::start(&root, GitHttpOptions::default()).await?;
        let url = server.url(&served);
        self.git = Some(server);
        say(format!(
            "✔ serving {} over smart HTTP at {url}",
            local.display()
        ));
        if args.repo.is_none() {
            say(format!(
                "  try: cd {} && edit clusters/dev/deployment.yaml && git commit -am 'scale' — it is applied within {}",
                local.display(),
                args.interval
            ));
        }
        let path = args
            .path
            .clone()
            .unwrap_or_else(|| default_path.to_string());
        Ok((url, branch, path))
    }

    /// Prints progress on transitions, then the status table until Ctrl-C (or until ready with `--once`).
    async fn watch(&mut self, client: &Client, args: &UpArgs) -> anyhow::Result<()> {
        let tty = std::io::stdout().is_terminal();
        let mut announced: BTreeMap<String, String> = BTreeMap::new();
        let mut last_table = String::new();
        let mut table_lines = 0usize;
        let started = Instant::now();
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut header_done = false;
        let mut last_inventory = Vec::new();
        loop {
            self.check_children("testenv")?;
            let source =
                get_dynamic(client, status::GIT_REPOSITORY, &args.namespace, &args.name).await;
            let ks = get_dynamic(client, status::KUSTOMIZATION, &args.namespace, &args.name).await;
            let mut progress = Vec::new();
            // Status left from an earlier run (testenv keeps its objects) is not news: wait until the source has
            // seen its current spec, and the Kustomization has applied what the source now holds.
            let source_current = source.as_ref().is_some_and(observed_current);
            let source_revision = source
                .as_ref()
                .filter(|_| source_current)
                .map(|s| status::row_of("GitRepository", s).revision);
            if let Some(src) = source.as_ref().filter(|_| source_current) {
                let row = status::row_of("GitRepository", src);
                let key = format!("source:{}:{}", row.ready, row.revision);
                if announced.get("source") != Some(&key) {
                    match row.ready.as_str() {
                        "True" => progress.push(format!("✔ source ready at {}", row.revision)),
                        "False" => progress.push(format!("✗ source not ready: {}", row.message)),
                        _ => {}
                    }
                    announced.insert("source".into(), key);
                }
            }
            let mut ready = false;
            let ks_current = ks.as_ref().filter(|k| {
                observed_current(k)
                    && source_revision.as_deref().is_some_and(|r| {
                        [
                            "/status/lastAppliedRevision",
                            "/status/lastAttemptedRevision",
                        ]
                        .iter()
                        .any(|p| k.pointer(p).and_then(Value::as_str) == Some(r))
                    })
            });
            if let Some(k) = ks_current {
                let row = status::row_of("Kustomization", k);
                ready = row.ready == "True";
                let key = format!("ks:{}:{}:{}", row.ready, row.revision, row.message);
                if announced.get("ks") != Some(&key) {
                    match row.ready.as_str() {
                        "True" => {
                            let mut line = format!("✔ applied revision {}", row.revision);
                            if row.message != format!("Applied revision: {}", row.revision) {
                                line.push_str(&format!(" ({})", row.message));
                            }
                            progress.push(line);
                            let objects = inventory(k);
                            if objects != last_inventory {
                                for id in &objects {
                                    progress.push(format!("    {id}"));
                                }
                                last_inventory = objects;
                            }
                        }
                        "False" => {
                            progress.push(format!("✗ Kustomization not ready: {}", row.message))
                        }
                        _ => {}
                    }
                    announced.insert("ks".into(), key);
                }
            }
            let rows = status::rows(client, None).await.unwrap_or_default();
            let table = status::render(&rows, 80);
            if tty {
                if !progress.is_empty() || table != last_table {
                    let mut out = std::io::stdout().lock();
                    if table_lines > 0 {
                        let _ = write!(out, "\x1b[{table_lines}A\x1b[J");
                    }
                    for p in &progress {
                        let _ = writeln!(out, "{p}");
                    }
                    let footer = "(Ctrl-C stops everything)";
                    let _ = write!(out, "\n{table}{footer}\n");
                    let _ = out.flush();
                    table_lines = table.lines().count() + 2;
                }
            } else {
                for p in &progress {
                    say(p);
                }
                if !args.once && table != last_table {
                    if !header_done {
                        say("status (refreshed on change; Ctrl-C stops everything):");
                        header_done = true;
                    }
                    say(&table);
                }
            }
            last_table = table;
            if args.once {
                if ready {
                    if !tty {
                        say(&last_table);
                    }
                    return Ok(());
                }
                if started.elapsed() > args.timeout {
                    bail!("the Kustomization was not ready within {:?}", args.timeout);
                }
            }
            tokio::select! {
                _ = &mut ctrl_c => { say("\nstopping…"); return Ok(()) }
                _ = sigterm.recv() => { say("stopping…"); return Ok(()) }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Whether an object's status describes its current spec (`status.observedGeneration == metadata.generation`).
fn observed_current(obj: &Value) -> bool {
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    generation.is_some()
        && obj
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64)
            == generation
}

async fn get_dynamic(
    client: &Client,
    kind: status::FluxKind,
    namespace: &str,
    name: &str,
) -> Option<Value> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
    let obj = api.get_opt(name).await.ok().flatten()?;
    serde_json::to_value(obj).ok()
}

/// The applied objects of a Kustomization, as `Kind namespace/name` from its inventory.
fn inventory(ks: &Value) -> Vec<String> {
    let entries = ks
        .pointer("/status/inventory/entries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| e.get("id").and_then(Value::as_str))
        .map(|id| {
            // <namespace>_<name>_<group>_<Kind>
            let parts: Vec<&str> = id.split('_').collect();
            match parts.as_slice() {
                ["", name, _group, kind] => format!("{kind} {name}"),
                [ns, name, _group, kind] => format!("{kind} {ns}/{name}"),
                _ => id.to_string(),
            }
        })
        .collect()
}

/// Applies every Flux CRD and waits until each is established; returns how many.
pub async fn install_crds(client: &Client) -> anyhow::Result<usize> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let crds = common::api::crds();
    for crd in &crds {
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        api.patch(&name, &pp, &Patch::Apply(crd))
            .await
            .with_context(|| format!("installing CRD {name}"))?;
    }
    let started = Instant::now();
    for crd in &crds {
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        loop {
            let established = api
                .get(&name)
                .await?
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("CRD {name} not established after 60s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(crds.len())
}

async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    api.patch(name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&ns))
        .await
        .with_context(|| format!("namespace {name}"))?;
    Ok(())
}

/// The GitRepository `riptide up` creates.
pub fn git_repository(args: &UpArgs, url: &str, branch: &str) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": args.name, "namespace": args.namespace},
        "spec": {"url": url, "interval": args.interval, "ref": {"branch": branch}},
    })
}

/// The Kustomization `riptide up` creates.
pub fn kustomization(args: &UpArgs, path: &str) -> Value {
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": args.name, "namespace": args.namespace},
        "spec": {
            "interval": args.interval,
            "path": path,
            "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": args.name},
        },
    })
}

async fn apply_objects(
    client: &Client,
    args: &UpArgs,
    url: &str,
    branch: &str,
    path: &str,
) -> anyhow::Result<()> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for (kind, obj) in [
        (status::GIT_REPOSITORY, git_repository(args, url, branch)),
        (status::KUSTOMIZATION, kustomization(args, path)),
    ] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &args.namespace, &kind.api_resource());
        api.patch(&args.name, &pp, &Patch::Apply(&obj))
            .await
            .with_context(|| format!("applying {} {}/{}", kind.kind, args.namespace, args.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert!(is_url("https://github.com/a/b"));
        assert!(is_url("ssh://git@github.com/a/b"));
        assert!(is_url("git@github.com:a/b.git"));
        assert!(!is_url("/tmp/fleet"));
        assert!(!is_url("fleet"));
    }

    #[test]
    fn inventory_ids_read_as_kind_and_name() {
        let ks = json!({"status": {"inventory": {"entries": [
            {"id": "_riptide-dev__Namespace", "v": "v1"},
            {"id": "riptide-dev_podinfo_apps_Deployment", "v": "v1"},
        ]}}});
        assert_eq!(
            inventory(&ks),
            vec!["Namespace riptide-dev", "Deployment riptide-dev/podinfo"]
        );
    }
}
