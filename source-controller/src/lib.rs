//! source-controller: GitRepository objects in, deterministic `.tar.gz` artifacts out, served over HTTP at
//! `http://<--storage-adv-addr>/gitrepository/<namespace>/<name>/<sha>.tar.gz` and published in
//! `status.artifact`.

pub mod controllers;
pub mod git;
pub mod server;
pub mod storage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use common::api::source_v1::GitRepository;
use common::cli::{RuntimeArgs, parse_go_duration, parse_listen_addr};
use common::manager::{Manager, ManagerError};
use common::reconcile::Runner;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{error, info};

pub use controllers::git_repository::{GitRepositoryError, GitRepositoryReconciler};
pub use storage::{DigestAlgo, Storage};

/// The controller's name: field manager, event reporter, metrics label.
pub const CONTROLLER_NAME: &str = common::api::meta::field_managers::SOURCE_CONTROLLER;

/// source-controller's flags: Flux's shared runtime flags plus the storage flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "source-controller",
    version,
    about = "Riptide source-controller: GitRepository artifacts"
)]
#[command(mut_arg("concurrent", |a| a.default_value("2")))]
pub struct Args {
    /// Flux's runtime flags.
    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// The local storage path.
    #[arg(long, default_value = "/data")]
    pub storage_path: PathBuf,

    /// The address the static file server binds to.
    #[arg(long, default_value = ":9090", value_parser = parse_listen_addr)]
    pub storage_addr: SocketAddr,

    /// The advertised address of the static file server (default: `<hostname>:<storage port>`).
    #[arg(long, env = "STORAGE_ADV_ADDR", default_value = "")]
    pub storage_adv_addr: String,

    /// The duration of time that artifacts from previous reconciliations will be kept in storage before being
    /// garbage collected.
    #[arg(long, default_value = "1m", value_parser = parse_go_duration)]
    pub artifact_retention_ttl: Duration,

    /// The maximum number of artifacts to be kept in storage after a garbage collection.
    #[arg(long, default_value_t = 2)]
    pub artifact_retention_records: usize,

    /// The algorithm to use to calculate the digest of artifacts.
    #[arg(long, value_enum, default_value = "sha256")]
    pub artifact_digest_algo: DigestAlgo,

    /// The maximum size of the cache in number of tokens (GitHub App installation tokens); 0 disables it.
    #[arg(long, default_value_t = git::github_app::TokenCache::DEFAULT_CAPACITY)]
    pub token_cache_max_size: usize,

    /// The maximum duration a token is cached (at most 1h).
    #[arg(long, default_value = "1h", value_parser = parse_go_duration)]
    pub token_cache_max_duration: Duration,
}

impl Args {
    /// The advertised storage address: the flag, else the host name with the storage port.
    pub fn advertised_addr(&self) -> String {
        if !self.storage_adv_addr.is_empty() {
            return self.storage_adv_addr.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        format!("{host}:{}", self.storage_addr.port())
    }

    /// The artifact store the flags describe.
    pub fn storage(&self) -> Storage {
        let mut storage = Storage::new(&self.storage_path, self.advertised_addr());
        storage.retention_ttl = self.artifact_retention_ttl;
        storage.retention_records = self.artifact_retention_records;
        storage.digest_algo = self.artifact_digest_algo;
        storage
    }

    /// The GitHub App token cache the flags describe (`None` when disabled).
    pub fn token_cache(&self) -> Option<git::github_app::TokenCache> {
        (self.token_cache_max_size > 0).then(|| {
            git::github_app::TokenCache::new(
                self.token_cache_max_size,
                self.token_cache_max_duration,
            )
        })
    }
}

/// Why the controller stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The bootstrap failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The storage directory could not be created.
    #[error("creating storage path '{path}': {source}")]
    StoragePath {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The storage server could not bind.
    #[error("binding the storage server on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The GitRepository controller for `runner`: watches `api`, and re-reconciles a GitRepository when a
/// repository it includes publishes an artifact it has not built with.
pub fn controller(
    runner: &Arc<Runner<GitRepositoryReconciler>>,
    api: Api<GitRepository>,
    watcher_config: watcher::Config,
) -> Controller<GitRepository> {
    let controller = runner.controller(api.clone(), watcher_config.clone());
    let store = controller.store();
    let runner = runner.clone();
    controller.watches(api, watcher_config, move |changed: GitRepository| {
        let namespace = changed.namespace();
        let name = changed.name_any();
        let Some(artifact) = changed.artifact().cloned() else {
            return Vec::new();
        };
        store
            .state()
            .into_iter()
            .filter(|o| {
                o.namespace() == namespace
                    && o.spec.includes().iter().any(|i| i.repository.name == name)
                    && !o
                        .status
                        .as_ref()
                        .and_then(|s| s.included_artifacts.as_ref())
                        .is_some_and(|list| {
                            list.iter().any(|a| {
                                a.revision == artifact.revision && a.digest == artifact.digest
                            })
                        })
            })
            .map(|o| {
                let r = ObjectRef::from_obj(&*o);
                runner.forget(&r);
                r
            })
            .collect::<Vec<_>>()
    })
}

/// Runs source-controller until SIGINT/SIGTERM (or lost leadership).
pub async fn run(args: Args) -> Result<(), RunError> {
    let storage = args.storage();
    std::fs::create_dir_all(storage.root()).map_err(|source| RunError::StoragePath {
        path: storage.root().to_path_buf(),
        source,
    })?;
    let manager = Manager::start(CONTROLLER_NAME, args.runtime.clone()).await?;
    if !manager.wait_for_leadership().await {
        manager.finish().await;
        return Ok(());
    }
    // The artifact server runs only while this replica leads.
    let listener = tokio::net::TcpListener::bind(args.storage_addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: args.storage_addr,
            source,
        })?;
    info!(addr = %args.storage_addr, advertised = %args.advertised_addr(), "artifact server started");
    let server = tokio::spawn(common::server::serve_listener(
        listener,
        server::router(storage.clone()),
        manager.stopped(),
    ));
    let reconciler = GitRepositoryReconciler::new(manager.client(), storage)
        .with_token_cache(args.token_cache());
    let runner = manager.runner(reconciler);
    let controller = controller(&runner, manager.api(), manager.watcher_config());
    runner.run(controller, manager.stopped()).await;
    manager.finish().await;
    match server.await {
        Ok(Err(err)) => error!(error = %err, "artifact server failed"),
        Err(err) => error!(error = %err, "artifact server task failed"),
        Ok(Ok(())) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_default_like_flux() {
        let args = Args::parse_from(["source-controller", "--storage-adv-addr=sc.flux-system.svc"]);
        assert_eq!(args.runtime.concurrent, 2);
        assert_eq!(args.storage_path, PathBuf::from("/data"));
        assert_eq!(args.storage_addr.port(), 9090);
        assert_eq!(args.artifact_retention_ttl, Duration::from_secs(60));
        assert_eq!(args.artifact_retention_records, 2);
        assert_eq!(args.artifact_digest_algo, DigestAlgo::Sha256);
        assert_eq!(args.storage().url("a/b"), "http://sc.flux-system.svc/a/b");
        assert_eq!(args.token_cache_max_size, 100);
        assert_eq!(args.token_cache_max_duration, Duration::from_secs(3600));
        assert!(args.token_cache().is_some());
        let args = Args::parse_from([
            "source-controller",
            "--storage-addr=127.0.0.1:9999",
            "--artifact-digest-algo=blake3",
        ]);
        assert!(args.advertised_addr().ends_with(":9999"));
        assert_eq!(args.artifact_digest_algo, DigestAlgo::Blake3);
        let args = Args::parse_from(["source-controller", "--token-cache-max-size=0"]);
        assert!(args.token_cache().is_none(), "0 disables the cache");
    }
}
