//! `riptide suspend <kind> <name>` and `riptide resume <kind> <name>`, as `flux suspend` and `flux resume`:
//! suspending sets `spec.suspend: true` (the controller then leaves the object and what it manages alone);
//! resuming sets it back to false, asks for a reconciliation and waits for its result (Alerts and Providers have
//! no reconciliation to wait for).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kube::api::{Patch, PatchParams};

use crate::reconcile::{api, request, wait_handled};
use crate::status::{self, FluxKind};

/// The kinds `riptide suspend` and `riptide resume` accept (those with `spec.suspend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SuspendKind {
    /// A `GitRepository` (source.toolkit.fluxcd.io).
    #[value(alias = "gitrepo", alias = "source", alias = "GitRepository")]
    Gitrepository,
    /// A `Kustomization` (kustomize.toolkit.fluxcd.io).
    #[value(alias = "ks", alias = "Kustomization")]
    Kustomization,
    /// A `Receiver` (notification.toolkit.fluxcd.io).
    #[value(alias = "Receiver")]
    Receiver,
    /// An `Alert` (notification.toolkit.fluxcd.io).
    #[value(alias = "Alert")]
    Alert,
    /// A `Provider` (notification.toolkit.fluxcd.io), as `flux suspend alert-provider`.
    #[value(alias = "provider", alias = "Provider")]
    AlertProvider,
}

impl SuspendKind {
    fn flux_kind(self) -> FluxKind {
        match self {
            SuspendKind::Gitrepository => status::GIT_REPOSITORY,
            SuspendKind::Kustomization => status::KUSTOMIZATION,
            SuspendKind::Receiver => status::RECEIVER,
            SuspendKind::Alert => status::ALERT,
            SuspendKind::AlertProvider => status::PROVIDER,
        }
    }

    /// Whether a reconciler answers reconcile requests for the kind (Alerts and Providers have no status).
    fn reconciled(self) -> bool {
        !matches!(self, SuspendKind::Alert | SuspendKind::AlertProvider)
    }
}

/// Arguments of `riptide suspend`.
#[derive(Debug, Args)]
pub struct SuspendArgs {
    /// What to suspend: `gitrepository` (alias `source`), `kustomization` (alias `ks`), `receiver`, `alert` or
    /// `alert-provider`.
    pub kind: SuspendKind,
    /// The object's name.
    pub name: String,
    /// The object's namespace.
    #[arg(short = 'n', long, default_value = "flux-system")]
    pub namespace: String,
    /// The cluster.
    #[command(flatten)]
    pub cluster: status::ClusterArgs,
}

/// Arguments of `riptide resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// What to resume: `gitrepository` (alias `source`), `kustomization` (alias `ks`), `receiver`, `alert` or
    /// `alert-provider`.
    pub kind: SuspendKind,
    /// The object's name.
    pub name: String,
    /// The object's namespace.
    #[arg(short = 'n', long, default_value = "flux-system")]
    pub namespace: String,
    /// Wait for the reconciliation that follows.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wait: bool,
    /// How long to wait for the result.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The cluster.
    #[command(flatten)]
    pub cluster: status::ClusterArgs,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Sets `spec.suspend: true`.
pub fn suspend(args: &SuspendArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = args.cluster.client().await?;
        let kind = args.kind.flux_kind();
        writeln!(
            out,
            "► suspending {} {} in {} namespace",
            kind.kind.to_lowercase(),
            args.name,
            args.namespace
        )?;
        let patch = serde_json::json!({"spec": {"suspend": true}});
        api(&client, kind, &args.namespace)
            .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("{} {}/{}", kind.kind, args.namespace, args.name))?;
        writeln!(out, "✔ {} suspended", kind.kind.to_lowercase())?;
        Ok(())
    })
}

/// Sets `spec.suspend: false`, requests a reconciliation and (with `--wait`) waits for it.
pub fn resume(args: &ResumeArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = args.cluster.client().await?;
        let kind = args.kind.flux_kind();
        let lower = kind.kind.to_lowercase();
        writeln!(
            out,
            "► resuming {lower} {} in {} namespace",
            args.name, args.namespace
        )?;
        let patch = serde_json::json!({"spec": {"suspend": false}});
        let token = request(&client, kind, &args.namespace, &args.name, patch).await?;
        writeln!(out, "✔ {lower} resumed")?;
        if !args.wait || !args.kind.reconciled() {
            return Ok(());
        }
        let deadline = Instant::now() + args.timeout;
        wait_handled(
            &client,
            kind,
            &args.namespace,
            &args.name,
            &token,
            deadline,
            out,
        )
        .await
    })
}
