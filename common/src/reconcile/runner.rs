//! The runner: drives a kind's [`Reconciler`] from a kube-runtime [`Controller`] with Flux's lifecycle.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, warn};

use super::error::{ErrorKind, FluxError, chain_message};
use super::object::{FluxObject, FluxStatus};
use super::outcome::{
    Failure, Next, Success, Summary, finalize_conditions, mark_progressing, next_action,
};
use super::patch::merge_patch;
use crate::api::meta::{Condition, FINALIZER, annotations::RECONCILE_REQUEST};
use crate::cli::{IntervalJitter, RetryPolicy};
use crate::conditions::Conditions;
use crate::metrics::Metrics;
pub use crate::metrics::ObjectRef as MetricsObject;
pub use crate::metrics::ReconcileResult;

pub use crate::events::Severity;

/// An event about an object, published after its status is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Info or error.
    pub severity: Severity,
    /// Flux's reason (`NewArtifact`, `ReconciliationSucceeded`, ...).
    pub reason: String,
    /// Human-readable message (credentials already masked).
    pub message: String,
    /// Flux event metadata, e.g. `revision`, `source.toolkit.fluxcd.io/revision`.
    pub metadata: BTreeMap<String, String>,
}

/// Where events go: Kubernetes Events and, with `--events-addr`, the notification-controller.
pub trait EventSink: Send + Sync + 'static {
    /// Publishes one event about `object`; must not fail the reconcile (errors are logged by the sink).
    fn publish(&self, object: ObjectReference, event: Event) -> BoxFuture<'_, ()>;
}

impl EventSink for crate::events::EventRecorder {
    fn publish(&self, object: ObjectReference, event: Event) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Delivery to the notification-controller continues in the background; its failures are logged.
            let _delivery = crate::events::EventRecorder::publish(
                self,
                &object,
                event.severity,
                &event.reason,
                &event.message,
                event.metadata,
            )
            .await;
        })
    }
}

/// Where reconcile metrics go (the controller's process-owned registry; tests may record elsewhere).
pub trait ReconcileMetrics: Send + Sync + 'static {
    /// Records one reconcile of `object` that took `elapsed`.
    fn record(&self, object: &MetricsObject, result: ReconcileResult, elapsed: Duration);
    /// Records the status of `object`'s Ready condition and whether it is suspended (`gotk_*` gauges).
    fn record_status(&self, object: &MetricsObject, ready: Option<&str>, suspended: bool);
    /// Drops the series of a deleted object.
    fn forget(&self, object: &MetricsObject);
}

impl ReconcileMetrics for Metrics {
    fn record(&self, object: &MetricsObject, result: ReconcileResult, elapsed: Duration) {
        Metrics::record(self, object, result, elapsed);
    }
    fn record_status(&self, object: &MetricsObject, ready: Option<&str>, suspended: bool) {
        if let Some(status) = ready {
            self.record_condition(object, crate::conditions::types::READY, status);
        }
        self.record_suspend(object, suspended);
    }
    fn forget(&self, object: &MetricsObject) {
        Metrics::forget(self, object);
    }
}

/// Writes a status to the API server in the middle of a reconcile: a merge patch of `status`, the JSON given.
type WriteStatus =
    Box<dyn Fn(serde_json::Value) -> BoxFuture<'static, Result<(), kube::Error>> + Send + Sync>;

/// What a kind's steps get besides the object: the reconcile's generation and time, an event buffer, and a
/// way to write the status before the reconcile ends.
pub struct Step {
    /// `metadata.generation` of the object being reconciled.
    pub generation: i64,
    /// The time this reconcile started; conditions set through [`Step::conditions`] carry it.
    pub now: Timestamp,
    events: Vec<Event>,
    writer: Option<WriteStatus>,
    /// The status as last written, serialized: the base of the next merge patch.
    written: Option<serde_json::Value>,
}

/// A status could not be written in the middle of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum WriteStatusError {
    /// The status could not be serialized.
    #[error("serializing status: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The API server refused or could not be reached.
    #[error("patching status: {0}")]
    Kube(#[from] kube::Error),
}

impl Step {
    /// A step context for an object at `generation`, at time `now`. [`Step::write_status`] writes nothing.
    pub fn new(generation: i64, now: Timestamp) -> Self {
        Step {
            generation,
            now,
            events: Vec::new(),
            writer: None,
            written: None,
        }
    }

    /// A step context whose [`Step::write_status`] patches the status, `written` being what the API server
    /// holds now.
    fn with_writer(
        generation: i64,
        now: Timestamp,
        written: serde_json::Value,
        writer: WriteStatus,
    ) -> Self {
        Step {
            writer: Some(writer),
            written: Some(written),
            ..Step::new(generation, now)
        }
    }

    /// Writes `status` now, as Flux patches the object before a long wait (e.g. `Healthy` Unknown while health
    /// checks run), so that users see the progress. Only the difference to the last written status is sent.
    pub async fn write_status<S: serde::Serialize>(
        &mut self,
        status: &S,
    ) -> Result<(), WriteStatusError> {
        let new = serde_json::to_value(status)?;
        let (Some(writer), Some(written)) = (&self.writer, &self.written) else {
            return Ok(());
        };
        if let Some(diff) = merge_patch(written, &new) {
            writer(diff).await?;
        }
        self.written = Some(new);
        Ok(())
    }

    /// Edits a condition list with this reconcile's generation and time.
    pub fn conditions<'a>(&self, list: &'a mut Vec<Condition>) -> Conditions<'a> {
        Conditions::new(list, self.generation, self.now)
    }

    /// Queues an event, published once the status is written.
    pub fn event(&mut self, severity: Severity, reason: &str, message: impl Into<String>) {
        self.event_with_metadata(severity, reason, message, BTreeMap::new());
    }

    /// Queues an event with Flux event metadata.
    pub fn event_with_metadata(
        &mut self,
        severity: Severity,
        reason: &str,
        message: impl Into<String>,
        metadata: BTreeMap<String, String>,
    ) {
        self.events.push(Event {
            severity,
            reason: reason.to_string(),
            message: message.into(),
            metadata,
        });
    }

    /// The queued events.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
}

/// A kind's reconcile logic; the runner does everything else.
pub trait Reconciler: Send + Sync + 'static {
    /// The kind.
    type Object: FluxObject;
    /// The kind's error enum.
    type Error: FluxError;
    /// How Ready is summarised from the kind's own conditions (empty: the success message decides).
    const SUMMARY: Summary;

    /// The kind's ordered steps. They edit `status` (kind fields and owned conditions) and queue events.
    fn reconcile(
        &self,
        obj: &Self::Object,
        status: &mut <Self::Object as FluxObject>::Status,
        step: &mut Step,
    ) -> impl Future<Output = Result<Success, Self::Error>> + Send;

    /// Cleanup before the finalizer is dropped (e.g. remove stored artifacts, prune).
    fn cleanup(&self, obj: &Self::Object) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Errors that end a reconcile before its status could be written; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The object has no namespace or name.
    #[error("object has no {0}")]
    MissingMetadata(&'static str),
    /// A write to the API server failed.
    #[error("{action} {object}: {source}")]
    Kube {
        /// What was attempted.
        action: &'static str,
        /// `namespace/name`.
        object: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The status could not be serialized.
    #[error("serializing status of {object}: {source}")]
    Serialize {
        /// `namespace/name`.
        object: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

/// Settings shared by every kind's runner, from the controller's flags.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// The controller's name: reporting controller of events, field manager of status writes.
    pub controller: &'static str,
    /// Per-object exponential backoff after transient failures.
    pub retry: RetryPolicy,
    /// Jitter applied to `spec.interval`.
    pub jitter: IntervalJitter,
    /// Concurrent reconciles of this kind.
    pub concurrency: u16,
}

type Key = (String, String);

/// What the runner remembers of an object between reconciles: enough to skip the reconcile its own status
/// write triggers, and to count consecutive failures for backoff.
#[derive(Clone, Debug)]
struct Handled {
    generation: i64,
    requested_at: Option<String>,
    at: Instant,
    next: Next,
    failures: u32,
}

/// Drives one kind.
pub struct Runner<R: Reconciler> {
    client: Client,
    reconciler: R,
    config: RunnerConfig,
    metrics: Arc<dyn ReconcileMetrics>,
    events: Arc<dyn EventSink>,
    handled: Mutex<HashMap<Key, Handled>>,
}

fn object_name<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

impl<R: Reconciler> Runner<R> {
    /// A runner for `reconciler`.
    pub fn new(
        client: Client,
        reconciler: R,
        config: RunnerConfig,
        metrics: Arc<dyn ReconcileMetrics>,
        events: Arc<dyn EventSink>,
    ) -> Self {
        Runner {
            client,
            reconciler,
            config,
            metrics,
            events,
            handled: Mutex::new(HashMap::new()),
        }
    }

    /// The kind's reconciler.
    pub fn reconciler(&self) -> &R {
        &self.reconciler
    }

    /// Forgets what was handled for an object, so the next trigger reconciles it even if its own generation
    /// did not change. Kinds call this from `watches` mappers (e.g. a source got a new artifact).
    pub fn forget(&self, obj: &ObjectRef<R::Object>) {
        let key = (obj.namespace.clone().unwrap_or_default(), obj.name.clone());
        if let Ok(mut handled) = self.handled.lock() {
            handled.remove(&key);
        }
    }

    /// A controller for the kind, watching `api` with `watcher_config`; add `watches` before [`Runner::run`].
    pub fn controller(
        &self,
        api: Api<R::Object>,
        watcher_config: watcher::Config,
    ) -> Controller<R::Object> {
        let config =
            kube::runtime::controller::Config::default().concurrency(self.config.concurrency);
        Controller::new(api, watcher_config).with_config(config)
    }

    /// Runs `controller` until `shutdown` resolves.
    pub async fn run(
        self: Arc<Self>,
        controller: Controller<R::Object>,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) {
        controller
            .graceful_shutdown_on(shutdown)
            .run(
                |obj, runner: Arc<Self>| async move { runner.reconcile(obj).await },
                |obj, err, runner: Arc<Self>| runner.error_policy(&obj, err),
                self,
            )
            .for_each(|result| async move {
                if let Err(err) = result {
                    debug!(error = %err, "controller event");
                }
            })
            .await;
    }

    fn error_policy(&self, obj: &R::Object, err: &RunnerError) -> Action {
        warn!(object = %object_name(obj), error = %err, "reconcile could not finish");
        let key = (obj.namespace().unwrap_or_default(), obj.name_any());
        let failures = match self.handled.lock() {
            Ok(mut handled) => {
                let entry = handled.entry(key).or_insert(Handled {
                    generation: -1,
                    requested_at: None,
                    at: Instant::now(),
                    next: Next::AwaitChange,
                    failures: 0,
                });
                entry.generation = -1; // never skip the retry
                entry.failures += 1;
                entry.failures
            }
            Err(_) => 1,
        };
        Action::requeue(self.config.retry.backoff(failures.saturating_sub(1)))
    }

    /// One reconcile of `obj`, the whole lifecycle. Status is written before returning; only failures to
    /// talk to the API server come back as errors.
    pub async fn reconcile(&self, obj: Arc<R::Object>) -> Result<Action, RunnerError> {
        let kind = R::Object::kind(&()).to_string();
        let namespace = obj
            .namespace()
            .ok_or(RunnerError::MissingMetadata("namespace"))?;
        let name = obj
            .meta()
            .name
            .clone()
            .ok_or(RunnerError::MissingMetadata("name"))?;
        let span = crate::telemetry::reconcile_span(&kind, &namespace, &name);
        let started = Instant::now();
        let result = self
            .reconcile_inner(&obj, &namespace, &name)
            .instrument(span)
            .await;
        let label = match &result {
            Ok(action) if *action == Action::await_change() => ReconcileResult::Success,
            Ok(_) => ReconcileResult::RequeueAfter,
            Err(_) => ReconcileResult::Error,
        };
        let object = MetricsObject::new(kind, namespace, name);
        self.metrics.record(&object, label, started.elapsed());
        result
    }

    async fn reconcile_inner(
        &self,
        obj: &R::Object,
        namespace: &str,
        name: &str,
    ) -> Result<Action, RunnerError> {
        let api: Api<R::Object> = Api::namespaced(self.client.clone(), namespace);
        let key: Key = (namespace.to_string(), name.to_string());
        let metrics_object = MetricsObject::new(R::Object::kind(&()), namespace, name);
        let object = || format!("{namespace}/{name}");
        let kube_err = |action: &'static str| {
            move |source| RunnerError::Kube {
                action,
                object: object(),
                source,
            }
        };

        // 1. Deleted: cleanup, then drop the finalizer.
        if obj.meta().deletion_timestamp.is_some() {
            if !obj.finalizers().iter().any(|f| f == FINALIZER) {
                return Ok(Action::await_change());
            }
            if let Err(err) = self.reconciler.cleanup(obj).await {
                let failure = to_failure(&err);
                warn!(reason = %failure.reason, error = %failure.message, "cleanup failed");
                self.publish(obj, Severity::Error, &failure.reason, &failure.message)
                    .await;
                return Ok(Action::requeue(
                    self.config.retry.max.min(Duration::from_secs(30)),
                ));
            }
            let remaining: Vec<&String> = obj
                .finalizers()
                .iter()
                .filter(|f| *f != FINALIZER)
                .collect();
            let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": obj.resource_version()}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube_err("removing finalizer from"))?;
            if let Ok(mut handled) = self.handled.lock() {
                handled.remove(&key);
            }
            self.metrics.forget(&metrics_object);
            info!("finalizer removed");
            return Ok(Action::await_change());
        }

        // 2. Finalizer.
        if !obj.finalizers().iter().any(|f| f == FINALIZER) {
            let mut finalizers = obj.finalizers().to_vec();
            finalizers.push(FINALIZER.to_string());
            let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube_err("adding finalizer to"))?;
        }

        // 3. Suspended.
        if obj.suspended() {
            let ready = obj
                .status()
                .and_then(|s| {
                    crate::conditions::get(s.conditions(), crate::conditions::types::READY)
                })
                .map(|c| c.status.as_str());
            self.metrics.record_status(&metrics_object, ready, true);
            info!("reconciliation is suspended for this object");
            return Ok(Action::await_change());
        }

        let generation = obj.meta().generation.unwrap_or(0);
        let requested_at = obj.annotations().get(RECONCILE_REQUEST).cloned();
        let previous = self.handled.lock().ok().and_then(|h| h.get(&key).cloned());
        if let Some(action) = skip(
            previous.as_ref(),
            generation,
            requested_at.as_deref(),
            Instant::now(),
        ) {
            debug!("unchanged since last reconcile");
            return Ok(action);
        }

        let original = obj.status().cloned().unwrap_or_default();
        let mut status = original.clone();
        let now = Timestamp::now();

        // 4. Reconciling, patched at once when something new is asked of us.
        let new_request =
            requested_at.is_some() && requested_at.as_deref() != status.last_handled_reconcile_at();
        let new_generation = status.observed_generation() != Some(generation);
        let observed = status.observed_generation();
        mark_progressing(status.conditions_mut(), observed, generation, now);
        let mut written = original;
        if new_generation || new_request {
            self.patch_status(&api, name, Self::serialize(&api, name, &written)?, &status)
                .await?;
            written = status.clone();
        }

        // 5. The kind's steps.
        let writer: WriteStatus = {
            let api = api.clone();
            let name = name.to_string();
            let params = self.status_patch_params();
            Box::new(move |diff| {
                let (api, name, params) = (api.clone(), name.clone(), params.clone());
                Box::pin(async move {
                    api.patch_status(&name, &params, &Patch::Merge(json!({ "status": diff })))
                        .await
                        .map(|_| ())
                })
            })
        };
        let mut step = Step::with_writer(
            generation,
            now,
            Self::serialize(&api, name, &written)?,
            writer,
        );
        let result = self
            .reconciler
            .reconcile(obj, &mut status, &mut step)
            .await
            .map_err(|e| to_failure(&e));
        let written = match step.written.take() {
            Some(w) => w,
            None => Self::serialize(&api, name, &written)?,
        };

        // 6. Always: conditions, observedGeneration, lastHandledReconcileAt, status patch, events.
        finalize_conditions(
            status.conditions_mut(),
            &result,
            R::SUMMARY,
            generation,
            now,
        );
        status.set_observed_generation(generation);
        if let Some(at) = &requested_at {
            status.set_last_handled_reconcile_at(at.clone());
        }
        self.patch_status(&api, name, written, &status).await?;
        let ready = crate::conditions::get(status.conditions(), crate::conditions::types::READY)
            .map(|c| c.status.as_str());
        self.metrics.record_status(&metrics_object, ready, false);

        for event in step.events {
            self.events.publish(obj.object_ref(&()), event).await;
        }
        if let Err(failure) = &result {
            warn!(reason = %failure.reason, error = %failure.message, "reconcile failed");
            self.publish(obj, Severity::Error, &failure.reason, &failure.message)
                .await;
        }

        let failures = match &result {
            Err(f) if f.kind == ErrorKind::Transient => previous.map_or(0, |p| p.failures) + 1,
            _ => 0,
        };
        let next = next_action(
            &result,
            obj.interval(),
            obj.retry_interval(),
            failures,
            |n| self.config.retry.backoff(n),
        );
        let next = match (next, &result) {
            (Next::RequeueAfter(d), Ok(_)) => Next::RequeueAfter(self.config.jitter.apply(d)),
            (next, _) => next,
        };
        if let Ok(mut handled) = self.handled.lock() {
            handled.insert(
                key,
                Handled {
                    generation,
                    requested_at,
                    at: Instant::now(),
                    next,
                    failures,
                },
            );
        }
        Ok(match next {
            Next::RequeueAfter(d) => Action::requeue(d),
            Next::AwaitChange => Action::await_change(),
        })
    }

    fn serialize(
        api: &Api<R::Object>,
        name: &str,
        status: &<R::Object as FluxObject>::Status,
    ) -> Result<serde_json::Value, RunnerError> {
        serde_json::to_value(status).map_err(|source| RunnerError::Serialize {
            object: format!("{}/{name}", api.namespace().unwrap_or_default()),
            source,
        })
    }

    fn status_patch_params(&self) -> PatchParams {
        PatchParams {
            field_manager: Some(self.config.controller.to_string()),
            ..Default::default()
        }
    }

    /// Patches the difference between `old` (what the API server holds, serialized) and `new`.
    async fn patch_status(
        &self,
        api: &Api<R::Object>,
        name: &str,
        old: serde_json::Value,
        new: &<R::Object as FluxObject>::Status,
    ) -> Result<(), RunnerError> {
        let object = || format!("{}/{name}", api.namespace().unwrap_or_default());
        let Some(diff) = merge_patch(&old, &Self::serialize(api, name, new)?) else {
            return Ok(());
        };
        api.patch_status(
            name,
            &self.status_patch_params(),
            &Patch::Merge(json!({ "status": diff })),
        )
        .await
        .map_err(|source| RunnerError::Kube {
            action: "patching status of",
            object: object(),
            source,
        })?;
        Ok(())
    }

    async fn publish(&self, obj: &R::Object, severity: Severity, reason: &str, message: &str) {
        let event = Event {
            severity,
            reason: reason.to_string(),
            message: message.to_string(),
            metadata: BTreeMap::new(),
        };
        self.events.publish(obj.object_ref(&()), event).await;
    }
}

/// The reconcile to skip: a trigger that brings no new generation and no new reconcile request, while the
/// previous result's requeue is not yet due (our own status writes trigger the watch too). Returns the action
/// that keeps the previous schedule.
fn skip(
    previous: Option<&Handled>,
    generation: i64,
    requested_at: Option<&str>,
    now: Instant,
) -> Option<Action> {
    let previous = previous?;
    if previous.generation != generation || previous.requested_at.as_deref() != requested_at {
        return None;
    }
    match previous.next {
        Next::AwaitChange => Some(Action::await_change()),
        Next::RequeueAfter(d) => {
            let due = previous.at + d;
            (due > now).then(|| Action::requeue(due - now))
        }
    }
}

fn to_failure<E: FluxError>(err: &E) -> Failure {
    Failure {
        reason: err.reason().to_string(),
        message: crate::telemetry::mask_url_credentials(&chain_message(err)),
        kind: err.kind(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handled(generation: i64, requested_at: Option<&str>, next: Next, at: Instant) -> Handled {
        Handled {
            generation,
            requested_at: requested_at.map(str::to_string),
            at,
            next,
            failures: 0,
        }
    }

    #[test]
    fn skips_only_unchanged_objects_before_their_requeue_is_due() {
        let t0 = Instant::now();
        let minute = Next::RequeueAfter(Duration::from_secs(60));
        let prev = handled(2, Some("a"), minute, t0);
        assert!(
            skip(None, 2, Some("a"), t0).is_none(),
            "first sight reconciles"
        );
        assert!(
            skip(Some(&prev), 3, Some("a"), t0).is_none(),
            "new generation reconciles"
        );
        assert!(
            skip(Some(&prev), 2, Some("b"), t0).is_none(),
            "new request reconciles"
        );
        assert!(
            skip(Some(&prev), 2, Some("a"), t0 + Duration::from_secs(61)).is_none(),
            "due reconciles"
        );
        let action = skip(Some(&prev), 2, Some("a"), t0 + Duration::from_secs(20)).unwrap();
        assert_eq!(
            action,
            Action::requeue(Duration::from_secs(40)),
            "keeps the schedule"
        );
        let stalled = handled(2, None, Next::AwaitChange, t0);
        assert_eq!(
            skip(Some(&stalled), 2, None, t0 + Duration::from_secs(3600)),
            Some(Action::await_change())
        );
    }
}
