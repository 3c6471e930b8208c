//! `testenv serve`: run the API server as a process.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "testenv",
    about = "A Kubernetes API server for tests, e2e and riptide up"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API until interrupted.
    Serve {
        /// Address to listen on (loopback; port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Where to write the kubeconfig once ready.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Persist objects in this directory across restarts.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve HTTPS with a generated CA (written into the kubeconfig).
        #[arg(long)]
        tls: bool,
        /// Require bearer tokens and enforce RBAC; the kubeconfig gets an admin token.
        #[arg(long)]
        auth: bool,
        /// Static token file as kube-apiserver's --token-auth-file (implies --auth).
        #[arg(long)]
        token_auth_file: Option<PathBuf>,
        /// Turn off simulated workloads (see the README): no status is filled in for Deployments, Pods, Jobs, ...
        #[arg(long)]
        no_simulation: bool,
        /// How long simulated workloads take to become ready after a spec change, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 200)]
        simulation_delay: u64,
        /// Turn off the serviceaccounts controller (no `default` ServiceAccount in new namespaces).
        #[arg(long)]
        no_service_accounts: bool,
        /// Turn off ClusterRole aggregation (`aggregationRule` is not resolved into `rules`).
        #[arg(long)]
        no_cluster_role_aggregation: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            kubeconfig,
            data_dir,
            tls,
            auth,
            token_auth_file,
            no_simulation,
            simulation_delay,
            no_service_accounts,
            no_cluster_role_aggregation,
        } => {
            let mut options = testenv::Options::default()
                .tls(tls)
                .auth(auth)
                .simulation(!no_simulation)
                .simulation_delay(std::time::Duration::from_millis(simulation_delay))
                .service_accounts(!no_service_accounts)
                .cluster_role_aggregation(!no_cluster_role_aggregation);
            if let Some(dir) = data_dir {
                options = options.data_dir(dir);
            }
            if let Some(file) = token_auth_file {
                options = options.token_file(file);
            }
            let server = testenv::Server::start_with(listen, options).await?;
            server.write_kubeconfig(&kubeconfig, None)?;
            println!("{}", server.url());
            wait_for_signal().await?;
            server.shutdown().await?;
        }
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
