//! Prometheus metrics with the names Flux dashboards read, on a registry owned by the process.
//!
//! The series are controller-runtime's and Flux's:
//!
//! | metric | labels | recorded by |
//! |---|---|---|
//! | `controller_runtime_reconcile_total` | `controller`, `result` | [`Metrics::record_reconcile`] |
//! | `controller_runtime_reconcile_errors_total` | `controller` | [`Metrics::record_reconcile`] with [`ReconcileResult::Error`] |
//! | `controller_runtime_reconcile_time_seconds` | `controller` | [`Metrics::record_reconcile`] |
//! | `gotk_reconcile_duration_seconds` | `kind`, `name`, `namespace` | [`Metrics::record_duration`] |
//! | `gotk_reconcile_condition` | `kind`, `name`, `namespace`, `type`, `status` | [`Metrics::record_condition`] |
//! | `gotk_suspend_status` | `kind`, `name`, `namespace` | [`Metrics::record_suspend`] |
//! | `process_*` (RSS, CPU, open fds, ...) | | collected on scrape (Linux) |
//!
//! The reconcile runner calls [`Metrics::record`] once per reconcile (both the `controller_runtime_*` and the
//! duration series), [`Metrics::record_condition`] for `Ready` (and any other condition worth a gauge),
//! [`Metrics::record_suspend`], and [`Metrics::forget`] when the object is gone.
//!
//! One [`Metrics`] per controller (per kind): [`Metrics::new`] makes the registry, and
//! [`Metrics::for_controller`] shares it with the next controller in the same process, so that one `/metrics`
//! endpoint serves them all.
//!
//! ```
//! use std::time::Duration;
//! use common::metrics::{Metrics, ObjectRef, ReconcileResult};
//!
//! let metrics = Metrics::new("gitrepository")?;
//! metrics.record_reconcile(ReconcileResult::RequeueAfter, Duration::from_millis(120));
//! metrics.record_duration(&ObjectRef::new("GitRepository", "flux-system", "podinfo"), Duration::from_millis(120));
//! assert!(metrics.encode()?.contains(r#"controller_runtime_reconcile_total{controller="gitrepository",result="requeue_after"} 1"#));
//! # Ok::<(), common::metrics::MetricsError>(())
//! ```

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Registering or encoding metrics failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A collector could not be created or registered (a name registered twice, an invalid name).
    #[error("registering metric: {0}")]
    Register(#[source] prometheus::Error),
    /// The registry could not be encoded in the text format.
    #[error("encoding metrics: {0}")]
    Encode(#[source] prometheus::Error),
}

/// The outcome of one reconcile, as controller-runtime's `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconcileResult {
    /// Reconciled; nothing to requeue before the next interval event.
    Success,
    /// The reconcile returned an error.
    Error,
    /// Requeued at once (rate limited).
    Requeue,
    /// Requeued after a delay (the usual outcome: the object's `spec.interval`).
    RequeueAfter,
}

impl ReconcileResult {
    /// The `result` label value: `success`, `error`, `requeue` or `requeue_after`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::Error => "error",
            ReconcileResult::Requeue => "requeue",
            ReconcileResult::RequeueAfter => "requeue_after",
        }
    }

    /// Every result, to pre-create the series so dashboards show zeros rather than gaps.
    pub const ALL: [ReconcileResult; 4] = [
        ReconcileResult::Success,
        ReconcileResult::Error,
        ReconcileResult::Requeue,
        ReconcileResult::RequeueAfter,
    ];
}

/// The object a `gotk_*` series is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The kind, e.g. `GitRepository`.
    pub kind: String,
    /// The namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    /// An object reference from its kind, namespace and name.
    pub fn new(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        ObjectRef {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// controller-runtime's `controller_runtime_reconcile_time_seconds` buckets.
const RECONCILE_TIME_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

/// Ten exponential buckets from 10ms to 30min, as Flux's `gotk_reconcile_duration_seconds`.
fn gotk_duration_buckets() -> Vec<f64> {
    let (min, max, count) = (10e-3_f64, 1800.0_f64, 10);
    let factor = (max / min).powf(1.0 / f64::from(count - 1));
    let mut buckets: Vec<f64> = (0..count).map(|i| min * factor.powi(i)).collect();
    // Keep the last bound exact despite rounding: `le="1800"`.
    if let Some(last) = buckets.last_mut() {
        *last = max;
    }
    buckets
}

/// Reconcile metrics for one controller, on a registry shared by every controller of the process.
#[derive(Clone)]
pub struct Metrics {
    controller: String,
    registry: Registry,
    reconcile_total: IntCounterVec,
    reconcile_errors_total: IntCounterVec,
    reconcile_time_seconds: HistogramVec,
    gotk_reconcile_duration_seconds: HistogramVec,
    gotk_reconcile_condition: GaugeVec,
    gotk_suspend_status: GaugeVec,
    /// Condition types recorded so far, to delete their series in [`Metrics::forget`].
    condition_types: Arc<Mutex<BTreeSet<String>>>,
}

/// The condition statuses `gotk_reconcile_condition` has a series for.
const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

impl Metrics {
    /// A new registry holding the reconcile metrics and the process collector, for `controller` (the
    /// controller-runtime controller name, e.g. `gitrepository`).
    pub fn new(controller: &str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let reconcile_total = IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_total",
                "Total number of reconciliations per controller",
            ),
            &["controller", "result"],
        )
        .map_err(MetricsError::Register)?;
        let reconcile_errors_total = IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_errors_total",
                "Total number of reconciliation errors per controller",
            ),
            &["controller"],
        )
        .map_err(MetricsError::Register)?;
        let reconcile_time_seconds = HistogramVec::new(
            HistogramOpts::new(
                "controller_runtime_reconcile_time_seconds",
                "Length of time per reconciliation per controller",
            )
            .buckets(RECONCILE_TIME_BUCKETS.to_vec()),
            &["controller"],
        )
        .map_err(MetricsError::Register)?;
        let gotk_reconcile_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gotk_reconcile_duration_seconds",
                "The duration in seconds of a GitOps Toolkit resource reconciliation.",
            )
            .buckets(gotk_duration_buckets()),
            &["kind", "name", "namespace"],
        )
        .map_err(MetricsError::Register)?;
        let gotk_reconcile_condition = GaugeVec::new(
            Opts::new(
                "gotk_reconcile_condition",
                "The current condition status of a GitOps Toolkit resource reconciliation.",
            ),
            &["kind", "name", "namespace", "type", "status"],
        )
        .map_err(MetricsError::Register)?;
        let gotk_suspend_status = GaugeVec::new(
            Opts::new(
                "gotk_suspend_status",
                "The current suspend status of a GitOps Toolkit resource.",
            ),
            &["kind", "name", "namespace"],
        )
        .map_err(MetricsError::Register)?;

        for collector in [
            Box::new(reconcile_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_errors_total.clone()),
            Box::new(reconcile_time_seconds.clone()),
            Box::new(gotk_reconcile_duration_seconds.clone()),
            Box::new(gotk_reconcile_condition.clone()),
            Box::new(gotk_suspend_status.clone()),
        ] {
            registry
                .register(collector)
                .map_err(MetricsError::Register)?;
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(MetricsError::Register)?;

        let metrics = Metrics {
            controller: String::new(),
            registry,
            reconcile_total,
            reconcile_errors_total,
            reconcile_time_seconds,
            gotk_reconcile_duration_seconds,
            gotk_reconcile_condition,
            gotk_suspend_status,
            condition_types: Arc::default(),
        };
        Ok(metrics.for_controller(controller))
    }

    /// The same registry and metrics, labelled for another controller of this process.
    /// Pre-creates its `controller_runtime_*` series at zero.
    pub fn for_controller(&self, controller: &str) -> Metrics {
        for result in ReconcileResult::ALL {
            self.reconcile_total
                .with_label_values(&[controller, result.as_str()]);
        }
        self.reconcile_errors_total.with_label_values(&[controller]);
        self.reconcile_time_seconds.with_label_values(&[controller]);
        Metrics {
            controller: controller.to_owned(),
            ..self.clone()
        }
    }

    /// The controller label of this handle.
    pub fn controller(&self) -> &str {
        &self.controller
    }

    /// Records one reconcile of this controller: counts it under `result` (and as an error for
    /// [`ReconcileResult::Error`]) and observes how long it took.
    pub fn record_reconcile(&self, result: ReconcileResult, elapsed: Duration) {
        let controller = self.controller.as_str();
        self.reconcile_total
            .with_label_values(&[controller, result.as_str()])
            .inc();
        if result == ReconcileResult::Error {
            self.reconcile_errors_total
                .with_label_values(&[controller])
                .inc();
        }
        self.reconcile_time_seconds
            .with_label_values(&[controller])
            .observe(elapsed.as_secs_f64());
    }

    /// Observes how long reconciling `object` took (`gotk_reconcile_duration_seconds`).
    pub fn record_duration(&self, object: &ObjectRef, elapsed: Duration) {
        self.gotk_reconcile_duration_seconds
            .with_label_values(&[
                object.kind.as_str(),
                object.name.as_str(),
                object.namespace.as_str(),
            ])
            .observe(elapsed.as_secs_f64());
    }

    /// Records one reconcile of `object` by this controller: [`Self::record_reconcile`] and
    /// [`Self::record_duration`] in one call.
    pub fn record(&self, object: &ObjectRef, result: ReconcileResult, elapsed: Duration) {
        self.record_reconcile(result, elapsed);
        self.record_duration(object, elapsed);
    }

    /// Sets `gotk_reconcile_condition` for condition `type_` of `object`: 1 for `status` (`True`, `False` or
    /// `Unknown`), 0 for the other two.
    pub fn record_condition(&self, object: &ObjectRef, type_: &str, status: &str) {
        for candidate in CONDITION_STATUSES {
            let value = if candidate == status { 1.0 } else { 0.0 };
            self.gotk_reconcile_condition
                .with_label_values(&[
                    object.kind.as_str(),
                    object.name.as_str(),
                    object.namespace.as_str(),
                    type_,
                    candidate,
                ])
                .set(value);
        }
        let mut types = self
            .condition_types
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !types.contains(type_) {
            types.insert(type_.to_owned());
        }
    }

    /// Sets `gotk_suspend_status` of `object`: 1 when suspended, else 0.
    pub fn record_suspend(&self, object: &ObjectRef, suspended: bool) {
        self.gotk_suspend_status
            .with_label_values(&[
                object.kind.as_str(),
                object.name.as_str(),
                object.namespace.as_str(),
            ])
            .set(if suspended { 1.0 } else { 0.0 });
    }

    /// Drops the `gotk_*` series of a deleted object, so they do not linger until restart.
    pub fn forget(&self, object: &ObjectRef) {
        let labels = [
            object.kind.as_str(),
            object.name.as_str(),
            object.namespace.as_str(),
        ];
        // Errors only mean a series did not exist.
        let _ = self
            .gotk_reconcile_duration_seconds
            .remove_label_values(&labels);
        let _ = self.gotk_suspend_status.remove_label_values(&labels);
        let types = self
            .condition_types
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for type_ in &types {
            for status in CONDITION_STATUSES {
                let _ = self.gotk_reconcile_condition.remove_label_values(&[
                    labels[0],
                    labels[1],
                    labels[2],
                    type_.as_str(),
                    status,
                ]);
            }
        }
    }

    /// The registry, to register controller-specific collectors on.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric of the registry in the Prometheus text exposition format.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .map_err(MetricsError::Encode)?;
        String::from_utf8(buf)
            .map_err(|e| MetricsError::Encode(prometheus::Error::Msg(e.to_string())))
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("controller", &self.controller)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn new_registers_the_flux_series_at_zero() {
        let m = Metrics::new("gitrepository").unwrap();
        let text = m.encode().unwrap();
        for result in ["success", "error", "requeue", "requeue_after"] {
            let series = format!(
                r#"controller_runtime_reconcile_total{{controller="gitrepository",result="{result}"}}"#
            );
            assert_eq!(line_value(&text, &series), Some(0.0), "{series}");
        }
        assert_eq!(
            line_value(
                &text,
                r#"controller_runtime_reconcile_errors_total{controller="gitrepository"}"#
            ),
            Some(0.0)
        );
        assert!(text.contains("# TYPE controller_runtime_reconcile_time_seconds histogram"));
        assert_eq!(
            line_value(
                &text,
                r#"controller_runtime_reconcile_time_seconds_count{controller="gitrepository"}"#
            ),
            Some(0.0)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exposed() {
        let text = Metrics::new("c").unwrap().encode().unwrap();
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            assert!(text.contains(&format!("# TYPE {name}")), "{name} missing");
        }
    }

    #[test]
    fn record_reconcile_counts_results_and_errors() {
        let m = Metrics::new("kustomization").unwrap();
        m.record_reconcile(ReconcileResult::Success, Duration::from_millis(20));
        m.record_reconcile(ReconcileResult::Error, Duration::from_millis(30));
        m.record_reconcile(ReconcileResult::Error, Duration::from_secs(2));
        m.record_reconcile(ReconcileResult::RequeueAfter, Duration::from_millis(10));
        let text = m.encode().unwrap();
        let total = |result: &str| {
            line_value(
                &text,
                &format!(
                    r#"controller_runtime_reconcile_total{{controller="kustomization",result="{result}"}}"#
                ),
            )
        };
        assert_eq!(total("success"), Some(1.0));
        assert_eq!(total("error"), Some(2.0));
        assert_eq!(total("requeue"), Some(0.0));
        assert_eq!(total("requeue_after"), Some(1.0));
        assert_eq!(
            line_value(
                &text,
                r#"controller_runtime_reconcile_errors_total{controller="kustomization"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"controller_runtime_reconcile_time_seconds_count{controller="kustomization"}"#
            ),
            Some(4.0)
        );
        let sum = line_value(
            &text,
            r#"controller_runtime_reconcile_time_seconds_sum{controller="kustomization"}"#,
        )
        .unwrap();
        assert!((sum - 2.06).abs() < 1e-9, "{sum}");
        assert_eq!(
            line_value(
                &text,
                r#"controller_runtime_reconcile_time_seconds_bucket{controller="kustomization",le="0.025"}"#
            ),
            Some(2.0)
        );
    }

    #[test]
    fn record_duration_labels_the_object() {
        let m = Metrics::new("gitrepository").unwrap();
        let obj = ObjectRef::new("GitRepository", "flux-system", "podinfo");
        m.record_duration(&obj, Duration::from_millis(1500));
        let text = m.encode().unwrap();
        assert!(text.contains("# TYPE gotk_reconcile_duration_seconds histogram"));
        let count = r#"gotk_reconcile_duration_seconds_count{kind="GitRepository",name="podinfo",namespace="flux-system"}"#;
        assert_eq!(line_value(&text, count), Some(1.0));
        assert!(text.contains(r#"le="1800""#), "last bucket is 30 minutes");
        m.forget(&obj);
        assert!(!m.encode().unwrap().contains("podinfo"));
    }

    #[test]
    fn conditions_and_suspend_are_gauges_per_object() {
        let m = Metrics::new("kustomization").unwrap();
        let obj = ObjectRef::new("Kustomization", "flux-system", "apps");
        let other = ObjectRef::new("Kustomization", "flux-system", "infra");
        m.record_condition(&obj, "Ready", "False");
        m.record_condition(&obj, "Ready", "True");
        m.record_condition(&other, "Ready", "Unknown");
        m.record_suspend(&obj, true);
        m.record(&obj, ReconcileResult::Success, Duration::from_millis(5));
        let text = m.encode().unwrap();
        let cond = |status: &str| {
            line_value(
                &text,
                &format!(
                    r#"gotk_reconcile_condition{{kind="Kustomization",name="apps",namespace="flux-system",status="{status}",type="Ready"}}"#
                ),
            )
        };
        assert_eq!(cond("True"), Some(1.0));
        assert_eq!(cond("False"), Some(0.0));
        assert_eq!(cond("Unknown"), Some(0.0));
        assert_eq!(
            line_value(
                &text,
                r#"gotk_suspend_status{kind="Kustomization",name="apps",namespace="flux-system"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"controller_runtime_reconcile_total{controller="kustomization",result="success"}"#
            ),
            Some(1.0)
        );

        m.forget(&obj);
        let text = m.encode().unwrap();
        assert!(!text.contains(r#"name="apps""#), "{text}");
        assert!(
            text.contains(r#"name="infra""#),
            "other objects keep their series"
        );
    }

    #[test]
    fn controllers_share_one_registry() {
        let git = Metrics::new("gitrepository").unwrap();
        let oci = git.for_controller("ocirepository");
        oci.record_reconcile(ReconcileResult::Success, Duration::from_millis(1));
        let text = git.encode().unwrap();
        assert_eq!(
            line_value(
                &text,
                r#"controller_runtime_reconcile_total{controller="ocirepository",result="success"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"controller_runtime_reconcile_total{controller="gitrepository",result="success"}"#
            ),
            Some(0.0)
        );
        assert_eq!(oci.controller(), "ocirepository");
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new("a").unwrap();
        let b = Metrics::new("a").unwrap();
        a.record_reconcile(ReconcileResult::Success, Duration::ZERO);
        let text = b.encode().unwrap();
        assert_eq!(
            line_value(
                &text,
                r#"controller_runtime_reconcile_total{controller="a",result="success"}"#
            ),
            Some(0.0)
        );
    }

    #[test]
    fn gotk_buckets_span_10ms_to_30min() {
        let b = gotk_duration_buckets();
        assert_eq!(b.len(), 10);
        assert!((b[0] - 0.01).abs() < 1e-12);
        assert_eq!(b[9], 1800.0);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
    }
}
