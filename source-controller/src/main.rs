//! The source-controller binary: parse flags, run.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = source_controller::Args::parse();
    source_controller::run(args).await?;
    Ok(())
}
