//! Test support: testenv with Riptide's CRDs, the GitRepository runner and artifact server, local git
//! repositories built with the git CLI (commits and tags signed with ssh-keygen or gpg), and an sshd on loopback.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::meta::Condition;
use common::api::source_v1::{GitRepository, GitRepositorySpec};
use common::conditions::{self, get};
use common::reconcile::{Event, EventSink, RunnerConfig};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use source_controller::{GitRepositoryReconciler, Storage};

pub const NS: &str = "default";

#[derive(Default)]
pub struct Recorded {
    pub events: Mutex<Vec<(String, Event)>>,
}

pub struct Sink(pub Arc<Recorded>);

impl EventSink for Sink {
    fn publish(&self, object: ObjectReference, event: Event) -> BoxFuture<'_, ()> {
        self.0
            .events
            .lock()
            .unwrap()
            .push((object.name.unwrap_or_default(), event));
        Box::pin(async {})
    }
}

pub struct Fixture {
    pub env: testenv::TestEnv,
    pub api: Api<GitRepository>,
    pub secrets: Api<Secret>,
    pub recorded: Arc<Recorded>,
    pub storage: Storage,
    pub storage_dir: tempfile::TempDir,
    pub storage_addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

pub async fn poll<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Fixture {
    pub async fn start() -> Fixture {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Storage)) -> Fixture {
        let env = testenv::TestEnv::start().await.unwrap();
        let client = env.client();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in common::api::source_v1::crds() {
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
        let api: Api<GitRepository> = Api::namespaced(client.clone(), NS);
        poll("CRD served", Duration::from_secs(20), || async {
            api.list(&Default::default()).await.is_ok()
        })
        .await;

        let storage_dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let storage_addr = listener.local_addr().unwrap();
        let mut storage = Storage::new(storage_dir.path(), storage_addr.to_string());
        configure(&mut storage);
        let router = source_controller::server::router(storage.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });

        let recorded = Arc::new(Recorded::default());
        let sink = Arc::new(Sink(recorded.clone()));
        let config = RunnerConfig {
            controller: "source-controller",
            retry: common::cli::RetryPolicy {
                min: Duration::from_millis(200),
                max: Duration::from_secs(2),
            },
            jitter: common::cli::IntervalJitter { percentage: 5 },
            concurrency: 4,
        };
        let runner = Arc::new(common::reconcile::Runner::new(
            client.clone(),
            GitRepositoryReconciler::new(client.clone(), storage.clone()),
            config,
            Arc::new(common::metrics::Metrics::new("source-controller").unwrap()),
            sink,
        ));
        let controller = source_controller::controller(&runner, api.clone(), Default::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(runner.run(controller, async move {
            let _ = stopped.await;
        }));
        Fixture {
            env,
            api,
            secrets: Api::namespaced(client, NS),
            recorded,
            storage,
            storage_dir,
            storage_addr,
            stop: Some(stop),
        }
    }

    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            string_data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        };
        self.secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    pub async fn create(&self, name: &str, spec: GitRepositorySpec) {
        self.api
            .create(&PostParams::default(), &GitRepository::new(name, spec))
            .await
            .unwrap();
    }

    pub async fn get(&self, name: &str) -> GitRepository {
        self.api.get(name).await.unwrap()
    }

    /// Waits until the object's Ready condition is decided for its generation and `check` holds.
    pub async fn wait(&self, name: &str, check: impl Fn(&GitRepository) -> bool) -> GitRepository {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let obj = self.api.get(name).await.unwrap();
            let decided = obj.status.as_ref().is_some_and(|s| {
                s.observed_generation == obj.metadata.generation
                    && get(s.conditions.as_deref().unwrap_or_default(), "Ready")
                        .is_some_and(|r| r.reason != "Progressing")
            });
            if decided && check(&obj) {
                assert_invariants(&obj);
                return obj;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: condition not reached within 30s: {:#?}",
                obj.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ready(&self, name: &str) -> GitRepository {
        self.wait(name, |o| ready(o).0 == "True").await
    }

    /// Sets `reconcile.fluxcd.io/requestedAt` and waits until it is handled.
    pub async fn request_reconcile(&self, name: &str, token: &str) -> GitRepository {
        let patch = serde_json::json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}});
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        self.wait(name, |o| {
            o.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some(token)
        })
        .await
    }

    pub fn events_for(&self, name: &str) -> Vec<Event> {
        self.recorded
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
            .collect()
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.env.shutdown().await;
    }
}

pub fn conditions_of(obj: &GitRepository) -> Vec<Condition> {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
}

pub fn condition(obj: &GitRepository, t: &str) -> Option<(String, String, String)> {
    conditions_of(obj)
        .into_iter()
        .find(|c| c.type_ == t)
        .map(|c| {
            (
                c.status.as_str().to_string(),
                c.reason.clone(),
                c.message.clone(),
            )
        })
}

pub fn ready(obj: &GitRepository) -> (String, String, String) {
    condition(obj, "Ready").unwrap_or_default()
}

/// kstatus invariants: Ready present, Reconciling and Stalled never both True, observedGeneration set.
pub fn assert_invariants(obj: &GitRepository) {
    let list = conditions_of(obj);
    assert!(get(&list, "Ready").is_some(), "Ready present: {list:?}");
    assert!(
        !(conditions::is_true(&list, "Reconciling") && conditions::is_true(&list, "Stalled")),
        "Reconciling and Stalled both True: {list:?}"
    );
    assert_eq!(
        obj.status.as_ref().unwrap().observed_generation,
        obj.metadata.generation
    );
}

/// Waits for `FetchFailed` and returns its (reason, message), checking Ready=False, a retry and no artifact.
pub async fn fetch_failure(fx: &Fixture, name: &str) -> (String, String) {
    let obj = fx
        .wait(name, |o| condition(o, "FetchFailed").is_some())
        .await;
    let (status, reason, message) = condition(&obj, "FetchFailed").unwrap();
    assert_eq!(status, "True");
    assert_eq!(ready(&obj).0, "False", "{name}");
    assert_eq!(ready(&obj).2, message, "{name}: Ready says why");
    assert_eq!(
        condition(&obj, "Reconciling").unwrap().1,
        "ProgressingWithRetry",
        "{name}"
    );
    assert!(obj.artifact().is_none(), "{name}");
    (reason, message)
}

/// Waits for `Stalled` and returns (reason, message), checking Ready=False with the same message.
pub async fn stalled(fx: &Fixture, name: &str) -> (String, String) {
    let obj = fx.wait(name, |o| condition(o, "Stalled").is_some()).await;
    let (status, reason, message) = condition(&obj, "Stalled").unwrap();
    assert_eq!(status, "True");
    assert_eq!(
        ready(&obj),
        ("False".into(), reason.clone(), message.clone())
    );
    assert!(condition(&obj, "Reconciling").is_none(), "{name}");
    (reason, message)
}

/// No key material nor password in any condition or event of `name`.
pub fn assert_no_secrets(fx: &Fixture, obj: &GitRepository, secrets: &[&str]) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let texts: Vec<String> = conditions_of(obj)
        .into_iter()
        .map(|c| c.message)
        .chain(fx.events_for(&name).into_iter().map(|e| e.message))
        .collect();
    for text in &texts {
        assert!(!text.contains("PRIVATE KEY"), "{name}: key in '{text}'");
        for secret in secrets {
            assert!(!text.contains(secret), "{name}: secret in '{text}'");
        }
    }
}

/// A line from the middle of a PEM body, to look for in messages.
pub fn pem_line(pem: &str) -> String {
    pem.lines().nth(2).unwrap().to_string()
}

pub fn spec(url: &str) -> GitRepositorySpec {
    GitRepositorySpec {
        url: url.to_string(),
        interval: "10m".to_string(),
        timeout: "20s".to_string(),
        ..Default::default()
    }
}

/// Downloads an artifact from the storage server: (status, etag, body).
pub async fn download(url: &str) -> (u16, Option<String>, Vec<u8>) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string());
    (status, etag, response.bytes().await.unwrap().to_vec())
}

/// The entries of a gzip tarball: (path, mode, content for files).
pub fn tar_entries(bytes: &[u8]) -> Vec<(String, u32, String)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().to_string();
            let mode = e.header().mode().unwrap();
            let mut content = String::new();
            std::io::Read::read_to_string(&mut e, &mut content).unwrap_or_default();
            (path, mode, content)
        })
        .collect()
}

pub fn tar_paths(bytes: &[u8]) -> Vec<String> {
    tar_entries(bytes).into_iter().map(|(p, _, _)| p).collect()
}

/// Bare repositories under one root, edited through a work tree with the git CLI.
pub struct GitRepos {
    pub root: tempfile::TempDir,
    work: tempfile::TempDir,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with_env(dir, args, &[])
}

/// [`git`] with extra environment variables (e.g. `GNUPGHOME` for gpg signing).
pub fn git_with_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Riptide Test")
        .env("GIT_AUTHOR_EMAIL", "test@riptide.invalid")
        .env("GIT_COMMITTER_NAME", "Riptide Test")
        .env("GIT_COMMITTER_EMAIL", "test@riptide.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Who signs a commit or tag: an SSH private key file, or a key in a gpg home.
#[derive(Clone, Copy)]
pub enum Signer<'a> {
    /// `gpg.format=ssh` with this private key.
    Ssh(&'a Path),
    /// gpg with this home and key (fingerprint or user ID; gpg picks a signing subkey if the primary can't sign).
    Pgp(&'a Gpg, &'a str),
}

impl Signer<'_> {
    fn config(&self) -> Vec<String> {
        match self {
            Signer::Ssh(key) => vec![
                "-c".into(),
                "gpg.format=ssh".into(),
                "-c".into(),
                format!("user.signingkey={}", key.display()),
            ],
            Signer::Pgp(_, key) => vec![
                "-c".into(),
                "gpg.format=openpgp".into(),
                "-c".into(),
                "gpg.program=gpg".into(),
                "-c".into(),
                format!("user.signingkey={key}"),
            ],
        }
    }

    fn env(&self) -> Vec<(&'static str, &Path)> {
        match self {
            Signer::Ssh(_) => Vec::new(),
            Signer::Pgp(gpg, _) => vec![("GNUPGHOME", gpg.home())],
        }
    }
}

/// A throwaway gpg home with keys generated in batch mode (no passphrase).
pub struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Gpg {
        // Short path: gpg-agent's socket lives in the home and socket paths are limited to ~100 bytes.
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .unwrap();
        Gpg { home }
    }

    /// A gpg home where every gpg run, git's signing included, happens at the frozen time `time`
    /// (`20200101T000000`): for keys and signatures made in the past.
    pub fn at(time: &str) -> Gpg {
        let gpg = Gpg::new();
        std::fs::write(
            gpg.home().join("gpg.conf"),
            format!("faked-system-time {time}!\n"),
        )
        .unwrap();
        gpg
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("gpg")
            .args([
                "--batch",
                "--no-tty",
                "--passphrase",
                "",
                "--pinentry-mode",
                "loopback",
            ])
            .args(args)
            .env("GNUPGHOME", self.home())
            .output()
            .expect("gpg (apt-get install gnupg)");
        assert!(
            output.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// The fingerprints of `user`'s primary key and subkeys, primary first.
    pub fn fingerprints(&self, user: &str) -> Vec<String> {
        self.run(&["--with-colons", "--list-keys", user])
            .lines()
            .filter(|l| l.starts_with("fpr:"))
            .filter_map(|l| l.split(':').nth(9).map(str::to_string))
            .collect()
    }

    /// Generates a key for `user` (`algo` e.g. `ed25519`, `rsa2048`; `usage` e.g. `sign`, `cert`); returns its
    /// fingerprint.
    pub fn generate(&self, user: &str, algo: &str, usage: &str) -> String {
        self.run(&["--quick-gen-key", user, algo, usage, "never"]);
        self.fingerprints(user).remove(0)
    }

    /// Adds a subkey to the key `fpr`; returns the subkey's fingerprint.
    pub fn add_subkey(&self, fpr: &str, algo: &str, usage: &str) -> String {
        self.add_expiring_subkey(fpr, algo, usage, "never")
    }

    /// [`Gpg::add_subkey`] with an expiry (`1d`, `never`, ...).
    pub fn add_expiring_subkey(&self, fpr: &str, algo: &str, usage: &str, expire: &str) -> String {
        self.run(&["--quick-add-key", fpr, algo, usage, expire]);
        self.fingerprints(fpr).pop().unwrap()
    }

    /// The armored public keys of `users` (one block).
    pub fn export(&self, users: &[&str]) -> String {
        let mut args = vec!["--armor", "--export"];
        args.extend_from_slice(users);
        self.run(&args)
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.home())
            .status();
    }
}

/// The 16 hex digit key ID (as Flux prints it) of a v4 fingerprint.
pub fn key_id(fingerprint: &str) -> &str {
    &fingerprint[fingerprint.len() - 16..]
}

impl GitRepos {
    pub fn new() -> GitRepos {
        GitRepos {
            root: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    pub fn bare_path(&self, repo: &str) -> PathBuf {
        self.root.path().join(repo)
    }

    fn worktree(&self, repo: &str) -> PathBuf {
        let wt = self.work.path().join(repo);
        if !wt.exists() {
            let bare = self.bare_path(repo);
            git(
                self.root.path(),
                &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
            );
            std::fs::create_dir_all(&wt).unwrap();
            git(&wt, &["init", "-q", "-b", "main"]);
            git(&wt, &["remote", "add", "origin", bare.to_str().unwrap()]);
        }
        wt
    }

    /// Writes `files` (empty content deletes), commits on `branch`, pushes; returns the commit SHA.
    pub fn commit(
        &self,
        repo: &str,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        let wt = self.worktree(repo);
        let has_commits = Command::new("git")
            .args(["rev-parse", "--verify", "-q", "HEAD"])
            .current_dir(&wt)
            .output()
            .unwrap()
            .status
            .success();
        if has_commits {
            let exists = Command::new("git")
                .args([
                    "rev-parse",
                    "--verify",
                    "-q",
                    &format!("refs/heads/{branch}"),
                ])
                .current_dir(&wt)
                .output()
                .unwrap()
                .status
                .success();
            if exists {
                git(&wt, &["checkout", "-q", branch]);
            } else {
                git(&wt, &["checkout", "-q", "-b", branch]);
            }
        } else if branch != "main" {
            git(&wt, &["checkout", "-q", "-b", branch]);
        }
        for (path, content) in files {
            let p = wt.join(path);
            if content.is_empty() {
                let _ = std::fs::remove_file(&p);
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, content).unwrap();
            }
        }
        git(&wt, &["add", "-A"]);
        git(&wt, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&wt, &["push", "-q", "origin", branch]);
        git(&wt, &["rev-parse", "HEAD"])
    }

    /// Adds `sub` as a submodule of `repo` at `path` by a URL relative to `repo`'s (`../sub`), resolved against
    /// wherever `repo` is fetched from. Returns the new commit of `repo`.
    pub fn add_submodule_relative(&self, repo: &str, sub: &str, path: &str) -> String {
        let wt = self.worktree(repo);
        self.bare_path(sub);
        git(
            &wt,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                &format!("../{sub}"),
                path,
            ],
        );
        git(&wt, &["commit", "-q", "-m", "add submodule"]);
        git(&wt, &["push", "-q", "origin", "main"]);
        git(&wt, &["rev-parse", "HEAD"])
    }

    /// Adds `sub` (a bare repository under the root, by local path) as a submodule of `repo` at `path`.
    pub fn add_submodule(&self, repo: &str, sub: &str, path: &str) {
        let wt = self.worktree(repo);
        let url = self.bare_path(sub);
        git(
            &wt,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                url.to_str().unwrap(),
                path,
            ],
        );
        git(&wt, &["commit", "-q", "-m", "add submodule"]);
        git(&wt, &["push", "-q", "origin", "main"]);
    }

    /// Adds a submodule of `repo` at `path` cloned from `url` at `commit`, without contacting `url`.
    pub fn add_submodule_url(&self, repo: &str, url: &str, commit: &str, path: &str) {
        let wt = self.worktree(repo);
        let gitmodules = format!("[submodule \"{path}\"]\n\tpath = {path}\n\turl = {url}\n");
        std::fs::write(wt.join(".gitmodules"), gitmodules).unwrap();
        let cacheinfo = format!("160000,{commit},{path}");
        git(&wt, &["update-index", "--add", "--cacheinfo", &cacheinfo]);
        git(&wt, &["add", ".gitmodules"]);
        git(&wt, &["commit", "-q", "-m", "add submodule"]);
        git(&wt, &["push", "-q", "origin", "main"]);
    }

    /// Like [`GitRepos::commit`] on `main`, SSH-signed with the private key at `key`.
    pub fn commit_signed(
        &self,
        repo: &str,
        files: &[(&str, &str)],
        message: &str,
        key: &Path,
    ) -> String {
        self.commit_signed_by(repo, files, message, Signer::Ssh(key))
    }

    /// Like [`GitRepos::commit`] on `main`, signed by `signer`.
    pub fn commit_signed_by(
        &self,
        repo: &str,
        files: &[(&str, &str)],
        message: &str,
        signer: Signer<'_>,
    ) -> String {
        let wt = self.worktree(repo);
        for (path, content) in files {
            let p = wt.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        git(&wt, &["add", "-A"]);
        let config = signer.config();
        let mut args: Vec<&str> = config.iter().map(String::as_str).collect();
        args.extend(["commit", "-q", "-S", "-m", message]);
        git_with_env(&wt, &args, &signer.env());
        git(&wt, &["push", "-q", "origin", "main"]);
        git(&wt, &["rev-parse", "HEAD"])
    }

    /// An SSH-signed annotated tag at the current commit, pushed.
    pub fn tag_signed(&self, repo: &str, tag: &str, key: &Path) {
        self.tag_signed_by(repo, tag, Signer::Ssh(key));
    }

    /// An annotated tag at the current commit signed by `signer`, pushed.
    pub fn tag_signed_by(&self, repo: &str, tag: &str, signer: Signer<'_>) {
        let wt = self.worktree(repo);
        let config = signer.config();
        let mut args: Vec<&str> = config.iter().map(String::as_str).collect();
        args.extend(["tag", "-s", tag, "-m", tag]);
        git_with_env(&wt, &args, &signer.env());
        git(&wt, &["push", "-q", "origin", tag]);
    }

    /// An annotated tag at the current commit of the work tree, pushed.
    pub fn tag(&self, repo: &str, tag: &str) {
        let wt = self.worktree(repo);
        git(&wt, &["tag", "-a", tag, "-m", tag]);
        git(&wt, &["push", "-q", "origin", tag]);
    }
}

/// Debian's sshd on 127.0.0.1 with a generated host key and user key; logins as the current user (root).
pub struct Sshd {
    pub port: u16,
    pub identity: String,
    pub known_hosts: String,
    pub user: String,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Sshd {
    pub async fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let keygen = |file: &str| {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(file))
                .status()
                .unwrap();
            assert!(status.success());
        };
        keygen("host_key");
        keygen("user_key");
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nStrictModes no\nUsePAM no\nPidFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
            d.join("host_key").display(),
            d.join("authorized_keys").display(),
            d.join("sshd.pid").display(),
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("/usr/sbin/sshd (apt-get install openssh-server)");
        poll("sshd listening", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let mut fields = host_pub.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        Sshd {
            port,
            identity: std::fs::read_to_string(d.join("user_key")).unwrap(),
            known_hosts: format!("[127.0.0.1]:{port} {kind} {key}\n"),
            user,
            dir,
            child,
        }
    }

    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    /// A known_hosts line for this server with some other key.
    pub fn wrong_known_hosts(&self) -> String {
        let d = self.dir.path();
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join("other_key"))
            .status()
            .unwrap();
        assert!(status.success());
        let other = std::fs::read_to_string(d.join("other_key.pub")).unwrap();
        let mut fields = other.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        format!("[127.0.0.1]:{} {kind} {key}\n", self.port)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A generated ed25519 key pair: (private key path, public key line).
pub fn ssh_keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public)
}
