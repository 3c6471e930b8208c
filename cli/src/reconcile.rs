//! `riptide reconcile <kind> <name>`: asks the controller for a reconciliation now (sets
//! `reconcile.fluxcd.io/requestedAt`, as `flux reconcile` does) and waits for its result.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::status::{self, FluxKind};

/// The kinds `riptide reconcile` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReconcileKind {
    /// A `GitRepository` (source.toolkit.fluxcd.io).
    #[value(alias = "gitrepo", alias = "source", alias = "GitRepository")]
    Gitrepository,
    /// A `Kustomization` (kustomize.toolkit.fluxcd.io).
    #[value(alias = "ks", alias = "Kustomization")]
    Kustomization,
    /// A `Receiver` (notification.toolkit.fluxcd.io).
    #[value(alias = "Receiver")]
    Receiver,
}

impl ReconcileKind {
    pub(crate) fn flux_kind(self) -> FluxKind {
        match self {
            ReconcileKind::Gitrepository => status::GIT_REPOSITORY,
            ReconcileKind::Kustomization => status::KUSTOMIZATION,
            ReconcileKind::Receiver => status::RECEIVER,
        }
    }
}

/// Arguments of `riptide reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// What to reconcile: `gitrepository` (alias `source`), `kustomization` (alias `ks`) or `receiver`.
    pub kind: ReconcileKind,
    /// The object's name.
    pub name: String,
    /// The object's namespace.
    #[arg(short = 'n', long, default_value = "flux-system")]
    pub namespace: String,
    /// For a Kustomization: reconcile its source first.
    #[arg(long)]
    pub with_source: bool,
    /// How long to wait for the result.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The cluster.
    #[command(flatten)]
    pub cluster: status::ClusterArgs,
}

/// Requests the reconciliation and waits for it.
pub fn run(args: &ReconcileArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = args.cluster.client().await?;
        let deadline = Instant::now() + args.timeout;
        let kind = args.kind.flux_kind();
        if args.with_source && args.kind == ReconcileKind::Kustomization {
            let api = api(&client, kind, &args.namespace);
            let ks = api
                .get(&args.name)
                .await
                .with_context(|| format!("Kustomization {}/{}", args.namespace, args.name))?;
            let ks = serde_json::to_value(&ks)?;
            let source_kind = ks.pointer("/spec/sourceRef/kind").and_then(Value::as_str);
            let source_name = ks.pointer("/spec/sourceRef/name").and_then(Value::as_str);
            let source_ns = ks
                .pointer("/spec/sourceRef/namespace")
                .and_then(Value::as_str)
                .unwrap_or(&args.namespace);
            match (source_kind, source_name) {
                (Some("GitRepository"), Some(name)) => {
                    reconcile_one(
                        &client,
                        status::GIT_REPOSITORY,
                        source_ns,
                        name,
                        deadline,
                        out,
                    )
                    .await?;
                }
                (Some(other), _) => {
                    writeln!(out, "✗ source kind {other} is not supported; skipping it")?
                }
                _ => {}
            }
        }
        reconcile_one(&client, kind, &args.namespace, &args.name, deadline, out).await
    })
}

pub(crate) fn api(client: &kube::Client, kind: FluxKind, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &kind.api_resource())
}

/// Annotates one object and waits until its controller has handled the request; fails when it is not Ready.
pub async fn reconcile_one(
    client: &kube::Client,
    kind: FluxKind,
    namespace: &str,
    name: &str,
    deadline: Instant,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    writeln!(out, "► annotating {} {namespace}/{name}", kind.kind)?;
    let token = request(client, kind, namespace, name, serde_json::json!({})).await?;
    wait_handled(client, kind, namespace, name, &token, deadline, out).await
}

/// Merges `patch` and a new `reconcile.fluxcd.io/requestedAt` into the object; returns the request token.
pub async fn request(
    client: &kube::Client,
    kind: FluxKind,
    namespace: &str,
    name: &str,
    mut patch: Value,
) -> anyhow::Result<String> {
    let token = jiff::Timestamp::now().to_string();
    let annotation = serde_json::json!({"annotations": {"reconcile.fluxcd.io/requestedAt": token}});
    if let Some(p) = patch.as_object_mut() {
        p.insert("metadata".into(), annotation);
    }
    api(client, kind, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("{} {namespace}/{name}", kind.kind))?;
    Ok(token)
}

/// Waits until the object's controller has handled the request `token`; fails when it is not Ready.
pub async fn wait_handled(
    client: &kube::Client,
    kind: FluxKind,
    namespace: &str,
    name: &str,
    token: &str,
    deadline: Instant,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let api = api(client, kind, namespace);
    writeln!(out, "◎ waiting for {} reconciliation", kind.kind)?;
    out.flush()?;
    loop {
        let obj = serde_json::to_value(api.get(name).await?)?;
        let handled = obj
            .pointer("/status/lastHandledReconcileAt")
            .and_then(Value::as_str)
            == Some(token);
        let reconciling = status::condition(&obj, "Reconciling")
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            == Some("True");
        if handled && !reconciling {
            let row = status::row_of(kind.kind, &obj);
            if row.ready == "True" {
                writeln!(out, "✔ {} reconciliation completed", kind.kind)?;
                if !row.revision.is_empty() {
                    writeln!(out, "✔ revision {}", row.revision)?;
                }
                return Ok(());
            }
            bail!(
                "{} {namespace}/{name} is not ready: {}",
                kind.kind,
                row.message
            );
        }
        if Instant::now() > deadline {
            bail!(
                "timed out waiting for {} {namespace}/{name} to handle the request (is its controller running?)",
                kind.kind
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
