//! Alerts are static in v1beta3: the only thing to reconcile is the finalizer older versions added, which is
//! removed (Flux: "removed finalizer from Alert to migrate to static Alert").

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::api::meta::FINALIZER;
use common::api::notification_v1beta3::Alert;
use common::events::{EventRecorder, Severity};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

struct Context {
    recorder: Arc<EventRecorder>,
    client: kube::Client,
}

async fn reconcile(alert: Arc<Alert>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    if !alert.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let deleting = alert.meta().deletion_timestamp.is_some();
    if alert.spec.suspend == Some(true) && !deleting {
        return Ok(Action::await_change());
    }
    let namespace = alert.namespace().unwrap_or_default();
    let api: Api<Alert> = Api::namespaced(ctx.recorder_client(), &namespace);
    let remaining: Vec<&String> = alert
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch =
        json!({"metadata": {"finalizers": remaining, "resourceVersion": alert.resource_version()}});
    api.patch(
        &alert.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    tracing::info!(name = %alert.name_any(), namespace, "removed finalizer from Alert to migrate to static Alert");
    let _delivery = ctx
        .recorder
        .publish(
            &alert.object_ref(&()),
            Severity::Info,
            "Migration",
            "removed finalizer from Alert to migrate to static Alert",
            BTreeMap::new(),
        )
        .await;
    Ok(Action::await_change())
}

impl Context {
    fn recorder_client(&self) -> kube::Client {
        self.client.clone()
    }
}

/// Runs the Alert loop until `shutdown`.
pub async fn run(
    client: kube::Client,
    api: Api<Alert>,
    config: watcher::Config,
    recorder: Arc<EventRecorder>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(Context { recorder, client });
    Controller::new(api, config)
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |_, error, _| {
                tracing::warn!(%error, "alert reconcile failed");
                Action::requeue(Duration::from_secs(5))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}
