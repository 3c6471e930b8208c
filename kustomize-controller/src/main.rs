//! Kustomization reconciler.
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = kustomize_controller::Args::parse();
    kustomize_controller::run(args).await?;
    Ok(())
}
