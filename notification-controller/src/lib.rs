//! The notification-controller: event intake (`--events-addr`), Alerts dispatched to Providers, and webhook
//! Receivers (`--receiverAddr`), matching Flux's notification-controller.
//!
//! [`start`] brings everything up and returns a [`Controller`] handle with the bound addresses; `main` only
//! parses [`command`] and waits.

pub mod controllers;
pub mod notifier;
pub mod resources;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use common::api::notification_v1::Receiver;
use common::api::notification_v1beta3::{Alert, Provider};
use common::cli::{CliError, RuntimeArgs, parse_go_duration, parse_listen_addr};
use common::manager::{Manager, ManagerError};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use controllers::receiver::ReceiverReconciler;
use server::dispatch::{DispatchConfig, Dispatcher};
use server::events::Intake;
use server::ratelimit::RateLimiter;
use server::receiver::ReceiverServer;

/// The controller's name: field manager, event reporter, lease prefix.
pub const NAME: &str = "notification-controller";
/// Where events are received when `--events-addr` is not given.
pub const DEFAULT_EVENTS_ADDR: &str = ":9090";

/// The notification-controller's flags: the shared runtime flags, with `--events-addr` as the listen address
/// of the event server, plus Flux's `--receiverAddr` and `--rate-limit-interval`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = NAME, about = "Flux notification-controller: events, alerts and webhook receivers")]
pub struct Args {
    /// The shared controller flags.
    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// The address the webhook receiver endpoint binds to.
    #[arg(long = "receiverAddr", default_value = ":9292", value_parser = parse_listen_addr)]
    pub receiver_addr: SocketAddr,

    /// Interval in which rate limit has effect.
    #[arg(long, default_value = "5m", value_parser = parse_go_duration)]
    pub rate_limit_interval: Duration,
}

/// The command line: [`Args`] with `--events-addr` documented and defaulted as this controller's listen address.
pub fn command() -> clap::Command {
    Args::command().mut_arg("events_addr", |a| {
        a.help("The address the event endpoint binds to.")
            .default_value(DEFAULT_EVENTS_ADDR)
    })
}

/// Parses `argv` with [`command`].
pub fn parse_args<I, T>(argv: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(argv)?;
    Args::from_arg_matches(&matches)
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Client, metrics or health server.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// `--events-addr` is not a listen address.
    #[error("invalid --events-addr: {0}")]
    EventsAddr(#[source] CliError),
    /// A server could not bind.
    #[error("binding the {what} server on {addr}: {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The shared HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(String),
}

/// A running controller.
pub struct Controller {
    manager: Manager,
    events_addr: SocketAddr,
    receiver_addr: SocketAddr,
    dispatcher: Arc<Dispatcher>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("events_addr", &self.events_addr)
            .field("receiver_addr", &self.receiver_addr)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Where events are received (the bound address).
    pub fn events_addr(&self) -> SocketAddr {
        self.events_addr
    }

    /// Where webhooks are received.
    pub fn receiver_addr(&self) -> SocketAddr {
        self.receiver_addr
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.manager.metrics_addr()
    }

    /// The dispatcher (counters for tests and benchmarks).
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Asks everything to stop.
    pub fn shutdown(&self) {
        self.manager.shutdown().trigger();
    }

    /// Runs until shutdown (a signal, [`Controller::shutdown`] or lost leadership), then stops cleanly.
    pub async fn wait(self) {
        self.manager.shutdown().wait().await;
        for task in self.tasks {
            let _ = task.await;
        }
        self.manager.finish().await;
    }
}

fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff())
        .applied_objects()
        .for_each(|_| futures::future::ready(()));
    let task = tokio::spawn(async move {
        tokio::select! {
            () = stream => {}
            () = shutdown => {}
        }
    });
    (store, task)
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    server::bind(addr)
        .await
        .map_err(|source| Error::Bind { what, addr, source })
}

/// Starts the controller: the manager (client, metrics, health, leader election), the event and receiver
/// servers (on every replica, as Flux), and, once leading, the Receiver, Alert and Provider reconcilers.
pub async fn start(
    args: Args,
    client: Option<kube::Client>,
    dispatch: DispatchConfig,
) -> Result<Controller, Error> {
    let mut runtime = args.runtime.clone();
    let events_listen = parse_listen_addr(
        runtime
            .events_addr
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or(DEFAULT_EVENTS_ADDR),
    )
    .map_err(Error::EventsAddr)?;
    // `--events-addr` is where this controller listens; it posts no Flux events to itself.
    runtime.events_addr = None;
    let manager = match client {
        Some(client) => Manager::start_with_client(NAME, runtime.clone(), client).await?,
        None => Manager::start(NAME, runtime.clone()).await?,
    };
    let client = manager.client();
    let shutdown = manager.shutdown().clone();
    let mut tasks = Vec::new();

    let (alerts, task) = reflect(
        manager.api::<Alert>(),
        manager.watcher_config(),
        shutdown.wait(),
    );
    tasks.push(task);
    let (providers, task) = reflect(
        manager.api::<Provider>(),
        manager.watcher_config(),
        shutdown.wait(),
    );
    tasks.push(task);
    let resources = Arc::new(resources::ResourceResolver::new(client.clone()));

    let (queue, queued) = mpsc::channel(dispatch.queue_capacity.max(1));
    let intake = Arc::new(Intake::new(
        RateLimiter::new(args.rate_limit_interval),
        queue,
    ));
    let dispatcher = Arc::new(Dispatcher::new(
        alerts,
        providers,
        resources.clone(),
        manager.events(),
        runtime.no_cross_namespace_refs,
        dispatch,
    )?);
    tasks.push(tokio::spawn(dispatcher.clone().run(queued)));
    {
        let intake = intake.clone();
        let stop = shutdown.wait();
        let every = args.rate_limit_interval.max(Duration::from_secs(1));
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            let sweep = async {
                loop {
                    ticker.tick().await;
                    intake.limiter().sweep(std::time::Instant::now());
                }
            };
            tokio::select! {
                () = sweep => {}
                () = stop => {}
            }
        }));
    }

    let events_listener = bind("event", events_listen).await?;
    let events_addr = events_listener.local_addr().unwrap_or(events_listen);
    tracing::info!(addr = %events_addr, "starting event server");
    tasks.push(tokio::spawn(server::serve(
        events_listener,
        server::events::router(intake),
        shutdown.wait(),
    )));

    // Receivers: the runner's controller owns the reflector the webhook handler reads.
    let runner = manager.runner(ReceiverReconciler::new(client.clone()));
    let controller = runner.controller(manager.api::<Receiver>(), manager.watcher_config());
    let receivers = controller.store();
    let receiver_listener = bind("webhook receiver", args.receiver_addr).await?;
    let receiver_addr = receiver_listener.local_addr().unwrap_or(args.receiver_addr);
    tracing::info!(addr = %receiver_addr, "starting webhook receiver server");
    tasks.push(tokio::spawn(server::serve(
        receiver_listener,
        server::receiver::router(Arc::new(ReceiverServer::new(
            receivers.clone(),
            resources,
            runtime.no_cross_namespace_refs,
        ))),
        shutdown.wait(),
    )));

    let secrets_config = match runtime.watch_configs_label_selector.as_str() {
        "" => watcher::Config::default(),
        selector => watcher::Config::default().labels(selector),
    };
    let mapper_runner = runner.clone();
    let controller = controller.watches(
        manager.api::<Secret>(),
        secrets_config,
        move |secret: Secret| {
            let namespace = secret.metadata.namespace.clone().unwrap_or_default();
            let name = secret.metadata.name.clone().unwrap_or_default();
            let refs: Vec<ObjectRef<Receiver>> = receivers
                .state()
                .iter()
                .filter(|r| {
                    r.metadata.namespace.as_deref() == Some(namespace.as_str())
                        && r.spec.secret_ref.as_ref().is_some_and(|s| s.name == name)
                })
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect();
            for r in &refs {
                mapper_runner.forget(r);
            }
            refs
        },
    );

    let mut is_leader = manager.is_leader();
    let stopped = manager.stopped();
    let leader_shutdown = shutdown.clone();
    let events = manager.events();
    let alert_api = manager.api::<Alert>();
    let provider_api = manager.api::<Provider>();
    let watcher_config = manager.watcher_config();
    let provider_dispatcher = dispatcher.clone();
    tasks.push(tokio::spawn(async move {
        let leading = tokio::select! {
            led = is_leader.wait_for(|l| *l) => led.is_ok(),
            () = leader_shutdown.wait() => false,
        };
        if !leading {
            return;
        }
        let stop = leader_shutdown.clone();
        tokio::join!(
            runner.run(controller, stopped),
            controllers::alert::run(
                client.clone(),
                alert_api,
                watcher_config.clone(),
                events,
                stop.wait(),
            ),
            controllers::provider::run(
                client,
                provider_api,
                watcher_config,
                provider_dispatcher,
                leader_shutdown.wait(),
            ),
        );
    }));

    Ok(Controller {
        manager,
        events_addr,
        receiver_addr,
        dispatcher,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_have_flux_names_and_defaults() {
        let args = parse_args(["notification-controller"]).unwrap();
        assert_eq!(args.runtime.events_addr.as_deref(), Some(":9090"));
        assert_eq!(args.receiver_addr, "0.0.0.0:9292".parse().unwrap());
        assert_eq!(args.rate_limit_interval, Duration::from_secs(300));
        assert!(!args.runtime.no_cross_namespace_refs);
        let args = parse_args([
            "notification-controller",
            "--events-addr=127.0.0.1:19090",
            "--receiverAddr=127.0.0.1:19292",
            "--rate-limit-interval=30s",
            "--no-cross-namespace-refs=true",
        ])
        .unwrap();
        assert_eq!(args.runtime.events_addr.as_deref(), Some("127.0.0.1:19090"));
        assert_eq!(args.receiver_addr, "127.0.0.1:19292".parse().unwrap());
        assert_eq!(args.rate_limit_interval, Duration::from_secs(30));
        assert!(args.runtime.no_cross_namespace_refs);
        let help = command().render_long_help().to_string();
        assert!(
            help.contains("The address the event endpoint binds to."),
            "{help}"
        );
        assert!(help.contains("--receiverAddr"));
    }
}
