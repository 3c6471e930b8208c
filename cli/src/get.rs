//! `riptide get`: the status table of every Flux object, once.

use clap::Args;

use crate::status;

/// Arguments of `riptide get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The cluster.
    #[command(flatten)]
    pub cluster: status::ClusterArgs,
}

/// Prints the table.
pub fn run(args: &GetArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(async {
        let client = args.cluster.client().await?;
        status::rows(&client, args.namespace.as_deref()).await
    })?;
    if rows.is_empty() {
        writeln!(out, "no Flux objects found")?;
    } else {
        write!(out, "{}", status::render(&rows, 100))?;
    }
    Ok(())
}
