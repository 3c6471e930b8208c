//! The generic reconcile runner against a real API server (testenv), with a test-only kind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::meta::{Condition, FINALIZER};
use common::conditions::{self, get};
use common::reconcile::{
    ErrorKind, Event, EventSink, FluxError, MetricsObject, ReconcileMetrics, ReconcileResult,
    Reconciler, Runner, RunnerConfig, Severity, Step, Success, Summary,
};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A tiny Flux-shaped kind: what the reconciler does is in `spec.behaviour`.
#[derive(CustomResource, Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "test.riptide.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
#[serde(rename_all = "camelCase")]
struct WidgetSpec {
    behaviour: String,
    #[serde(default)]
    suspend: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conditions: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_handled_reconcile_at: Option<String>,
}

common::impl_flux_object!(
    Widget,
    WidgetStatus,
    suspend = |o| Some(o.spec.suspend),
    interval = |_| Some("10m"),
);

#[derive(Debug, thiserror::Error)]
enum WidgetError {
    #[error("spec is invalid: {0}")]
    Invalid(String),
    #[error("try again later")]
    Flaky,
}

impl FluxError for WidgetError {
    fn reason(&self) -> &str {
        match self {
            WidgetError::Invalid(_) => "InvalidSpec",
            WidgetError::Flaky => "FlakyFailure",
        }
    }
    fn kind(&self) -> ErrorKind {
        match self {
            WidgetError::Invalid(_) => ErrorKind::Stalled,
            WidgetError::Flaky => ErrorKind::Transient,
        }
    }
}

#[derive(Default)]
struct Log {
    reconciled: Mutex<Vec<String>>,
    cleaned: Mutex<Vec<String>>,
}

struct WidgetReconciler(Arc<Log>);

impl Reconciler for WidgetReconciler {
    type Object = Widget;
    type Error = WidgetError;
    const SUMMARY: Summary = Summary {
        scope: &[],
        negative_polarity: &[],
    };

    async fn reconcile(
        &self,
        obj: &Widget,
        _status: &mut WidgetStatus,
        step: &mut Step,
    ) -> Result<Success, WidgetError> {
        self.0.reconciled.lock().unwrap().push(obj.name_any());
        match obj.spec.behaviour.as_str() {
            "ok" => {
                step.event(Severity::Info, "Built", "built the widget");
                Ok(Success::new("widget is ready"))
            }
            "hang" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(Success::new("never"))
            }
            "flaky" => Err(WidgetError::Flaky),
            other => Err(WidgetError::Invalid(format!(
                "unknown behaviour {other:?} at https://user:hunter2@example.com/x"
            ))),
        }
    }

    async fn cleanup(&self, obj: &Widget) -> Result<(), WidgetError> {
        self.0.cleaned.lock().unwrap().push(obj.name_any());
        Ok(())
    }
}

#[derive(Default)]
struct Recorded {
    events: Mutex<Vec<(String, Event)>>,
    metrics: Mutex<Vec<(String, ReconcileResult)>>,
}

struct Sink(Arc<Recorded>);

impl EventSink for Sink {
    fn publish(&self, object: ObjectReference, event: Event) -> BoxFuture<'_, ()> {
        self.0
            .events
            .lock()
            .unwrap()
            .push((object.name.unwrap_or_default(), event));
        Box::pin(async {})
    }
}

impl ReconcileMetrics for Sink {
    fn record(&self, object: &MetricsObject, result: ReconcileResult, _elapsed: Duration) {
        self.0
            .metrics
            .lock()
            .unwrap()
            .push((object.name.clone(), result));
    }
    fn record_status(&self, _object: &MetricsObject, _ready: Option<&str>, _suspended: bool) {}
    fn forget(&self, _object: &MetricsObject) {}
}

struct Fixture {
    env: testenv::TestEnv,
    api: Api<Widget>,
    log: Arc<Log>,
    recorded: Arc<Recorded>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn start() -> Fixture {
    let env = testenv::TestEnv::start().await.unwrap();
    let client = env.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    // The CRD is served once established: poll until a list succeeds.
    poll(|| async { api.list(&Default::default()).await.is_ok() }).await;

    let log = Arc::new(Log::default());
    let recorded = Arc::new(Recorded::default());
    let config = RunnerConfig {
        controller: "widget-controller",
        retry: common::cli::RetryPolicy {
            min: Duration::from_millis(50),
            max: Duration::from_secs(1),
        },
        jitter: common::cli::IntervalJitter { percentage: 5 },
        concurrency: 4,
    };
    let sink = Arc::new(Sink(recorded.clone()));
    let runner = Arc::new(Runner::new(
        client,
        WidgetReconciler(log.clone()),
        config,
        sink.clone(),
        sink,
    ));
    let controller = runner.controller(api.clone(), Default::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(runner.run(controller, async move {
        let _ = stopped.await;
    }));
    Fixture {
        env,
        api,
        log,
        recorded,
        stop: Some(stop),
    }
}

async fn poll<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 20s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn widget(name: &str, behaviour: &str) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            behaviour: behaviour.into(),
            suspend: false,
        },
    )
}

async fn await_ready_decided(api: &Api<Widget>, name: &str) -> Widget {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let w = api.get(name).await.unwrap();
        let generation = w.metadata.generation;
        let decided = w.status.as_ref().is_some_and(|s| {
            s.observed_generation == generation
                && conditions::get(s.conditions.as_deref().unwrap_or_default(), "Ready")
                    .is_some_and(|r| r.reason != "Progressing")
        });
        if decided {
            return w;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: Ready not decided within 20s: {:?}",
            w.status
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// kstatus invariants: Ready present, Reconciling and Stalled never both True, observedGeneration set.
fn assert_invariants(w: &Widget) {
    let status = w.status.as_ref().expect("status written");
    let list = status.conditions.as_deref().unwrap_or_default();
    assert!(get(list, "Ready").is_some(), "Ready present: {list:?}");
    assert!(!(conditions::is_true(list, "Reconciling") && conditions::is_true(list, "Stalled")));
    assert_eq!(status.observed_generation, w.metadata.generation);
}

#[tokio::test]
async fn success_adds_finalizer_marks_ready_and_publishes_events() {
    let mut fx = start().await;
    fx.api
        .create(&PostParams::default(), &widget("good", "ok"))
        .await
        .unwrap();
    let w = await_ready_decided(&fx.api, "good").await;
    assert_invariants(&w);
    assert!(w.finalizers().iter().any(|f| f == FINALIZER));
    let list = w.status.unwrap().conditions.unwrap();
    let ready = get(&list, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Succeeded")
    );
    assert_eq!(ready.message, "widget is ready");
    assert!(get(&list, "Reconciling").is_none());
    poll(|| async {
        fx.recorded
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|(n, e)| n == "good" && e.reason == "Built")
    })
    .await;
    poll(|| async {
        fx.recorded
            .metrics
            .lock()
            .unwrap()
            .iter()
            .any(|(n, r)| n == "good" && *r == ReconcileResult::RequeueAfter)
    })
    .await;
    fx.stop.take().unwrap().send(()).unwrap();
    fx.env.shutdown().await;
}

#[tokio::test]
async fn stalled_error_is_not_retried_and_masks_credentials() {
    let mut fx = start().await;
    fx.api
        .create(&PostParams::default(), &widget("bad", "explode"))
        .await
        .unwrap();
    let w = await_ready_decided(&fx.api, "bad").await;
    assert_invariants(&w);
    let list = w.status.unwrap().conditions.unwrap();
    assert!(conditions::is_true(&list, "Stalled"));
    let ready = get(&list, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(
        !ready.message.contains("hunter2"),
        "credentials masked: {}",
        ready.message
    );
    poll(|| async {
        fx.recorded
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|(_, e)| e.severity == Severity::Error)
    })
    .await;
    assert!(
        fx.recorded
            .events
            .lock()
            .unwrap()
            .iter()
            .all(|(_, e)| !e.message.contains("hunter2"))
    );

    // The status write triggers the watch again; a stalled object is not reconciled until its spec changes.
    let attempts = || {
        fx.log
            .reconciled
            .lock()
            .unwrap()
            .iter()
            .filter(|n| *n == "bad")
            .count()
    };
    let before = attempts();
    fx.api
        .patch(
            "bad",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    // A sentinel object reconciled after the label change shows the controller has processed later events.
    fx.api
        .create(&PostParams::default(), &widget("sentinel", "ok"))
        .await
        .unwrap();
    await_ready_decided(&fx.api, "sentinel").await;
    assert_eq!(
        attempts(),
        before,
        "no retry of a stalled object without a spec change"
    );

    fx.api
        .patch(
            "bad",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"behaviour": "ok"}})),
        )
        .await
        .unwrap();
    let w = await_ready_decided(&fx.api, "bad").await;
    assert_invariants(&w);
    let list = w.status.unwrap().conditions.unwrap();
    assert!(
        conditions::is_ready(&list) && get(&list, "Stalled").is_none(),
        "recovers on a spec change: {list:?}"
    );
    fx.stop.take().unwrap().send(()).unwrap();
    fx.env.shutdown().await;
}

#[tokio::test]
async fn transient_error_retries_with_backoff_and_keeps_reconciling() {
    let mut fx = start().await;
    fx.api
        .create(&PostParams::default(), &widget("flaky", "flaky"))
        .await
        .unwrap();
    poll(|| async {
        fx.log
            .reconciled
            .lock()
            .unwrap()
            .iter()
            .filter(|n| *n == "flaky")
            .count()
            >= 3
    })
    .await;
    let w = fx.api.get("flaky").await.unwrap();
    assert_invariants(&w);
    let list = w.status.unwrap().conditions.unwrap();
    let reconciling = get(&list, "Reconciling").unwrap();
    assert_eq!(reconciling.reason, "ProgressingWithRetry");
    assert_eq!(get(&list, "Ready").unwrap().reason, "FlakyFailure");
    fx.stop.take().unwrap().send(()).unwrap();
    fx.env.shutdown().await;
}

#[tokio::test]
async fn suspend_request_annotation_and_deletion() {
    let mut fx = start().await;
    let mut suspended = widget("sleepy", "ok");
    suspended.spec.suspend = true;
    fx.api
        .create(&PostParams::default(), &suspended)
        .await
        .unwrap();
    fx.api
        .create(&PostParams::default(), &widget("awake", "ok"))
        .await
        .unwrap();
    await_ready_decided(&fx.api, "awake").await;
    poll(|| async {
        fx.api
            .get("sleepy")
            .await
            .unwrap()
            .finalizers()
            .iter()
            .any(|f| f == FINALIZER)
    })
    .await;
    assert!(
        fx.api.get("sleepy").await.unwrap().status.is_none(),
        "suspended objects are not reconciled"
    );
    assert!(
        !fx.log
            .reconciled
            .lock()
            .unwrap()
            .iter()
            .any(|n| n == "sleepy")
    );

    // reconcile.fluxcd.io/requestedAt → a reconcile that records lastHandledReconcileAt.
    let before = fx
        .log
        .reconciled
        .lock()
        .unwrap()
        .iter()
        .filter(|n| *n == "awake")
        .count();
    let patch = serde_json::json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "2026-11-21T10:00:00Z"}}});
    fx.api
        .patch("awake", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    poll(|| async {
        let w = fx.api.get("awake").await.unwrap();
        w.status
            .and_then(|s| s.last_handled_reconcile_at)
            .as_deref()
            == Some("2026-11-21T10:00:00Z")
    })
    .await;
    assert!(
        fx.log
            .reconciled
            .lock()
            .unwrap()
            .iter()
            .filter(|n| *n == "awake")
            .count()
            > before
    );

    // Deletion runs cleanup, drops the finalizer, and the object goes away.
    fx.api
        .delete("awake", &DeleteParams::default())
        .await
        .unwrap();
    poll(|| async { fx.api.get_opt("awake").await.unwrap().is_none() }).await;
    assert_eq!(fx.log.cleaned.lock().unwrap().as_slice(), ["awake"]);
    fx.stop.take().unwrap().send(()).unwrap();
    fx.env.shutdown().await;
}

#[tokio::test]
async fn one_hanging_object_does_not_block_the_others() {
    let mut fx = start().await;
    fx.api
        .create(&PostParams::default(), &widget("stuck", "hang"))
        .await
        .unwrap();
    poll(|| async {
        fx.log
            .reconciled
            .lock()
            .unwrap()
            .iter()
            .any(|n| n == "stuck")
    })
    .await;
    for i in 0..5 {
        fx.api
            .create(&PostParams::default(), &widget(&format!("w{i}"), "ok"))
            .await
            .unwrap();
    }
    for i in 0..5 {
        assert_invariants(&await_ready_decided(&fx.api, &format!("w{i}")).await);
    }
    fx.stop.take().unwrap().send(()).unwrap();
    fx.env.shutdown().await;
}
