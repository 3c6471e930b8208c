//! `riptide get`: the status table of every Flux object, once.

use std::path::PathBuf;

use clap::Args;

use crate::status;

/// Arguments of `riptide get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The cluster to read. Default: `KUBECONFIG`, else the API server `riptide up` started
    /// (`<data-dir>/kubeconfig`), else `~/.kube/config`.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Where `riptide up` keeps its state (default `~/.local/share/riptide`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Prints the table.
pub fn run(args: &GetArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(status::default_data_dir);
    let kubeconfig = status::resolve_kubeconfig(args.kubeconfig.as_deref(), &data_dir);
    let rows = runtime.block_on(async {
        let client = status::client(kubeconfig.as_deref()).await?;
        status::rows(&client, args.namespace.as_deref()).await
    })?;
    if rows.is_empty() {
        writeln!(out, "no Flux objects found")?;
    } else {
        write!(out, "{}", status::render(&rows, 100))?;
    }
    Ok(())
}
