//! Providers are static in v1beta3: the loop adds Flux's finalizer, and on deletion stops the Provider's
//! dispatch worker and removes the finalizer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::api::meta::FINALIZER;
use common::api::notification_v1beta3::Provider;
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::server::dispatch::Dispatcher;

struct Context {
    client: kube::Client,
    dispatcher: Arc<Dispatcher>,
}

async fn reconcile(provider: Arc<Provider>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let namespace = provider.namespace().unwrap_or_default();
    let name = provider.name_any();
    let api: Api<Provider> = Api::namespaced(ctx.client.clone(), &namespace);
    let has_finalizer = provider.finalizers().iter().any(|f| f == FINALIZER);
    if provider.meta().deletion_timestamp.is_some() {
        ctx.dispatcher.forget_provider(&namespace, &name);
        if has_finalizer {
            let remaining: Vec<&String> = provider
                .finalizers()
                .iter()
                .filter(|f| *f != FINALIZER)
                .collect();
            let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": provider.resource_version()}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        let mut finalizers = provider.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": provider.resource_version()}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::await_change())
}

/// Runs the Provider loop until `shutdown`.
pub async fn run(
    client: kube::Client,
    api: Api<Provider>,
    config: watcher::Config,
    dispatcher: Arc<Dispatcher>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(Context { client, dispatcher });
    Controller::new(api, config)
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |_, error, _| {
                tracing::warn!(%error, "provider reconcile failed");
                Action::requeue(Duration::from_secs(5))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}
