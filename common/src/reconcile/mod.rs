//! The generic reconcile runner every kind uses, in Flux's order:
//!
//! 1. deleted → the kind's cleanup, then the `finalizers.fluxcd.io` finalizer is dropped;
//! 2. the finalizer is added when missing;
//! 3. `spec.suspend` → nothing else happens;
//! 4. `Reconciling` is marked (and patched at once when the generation changed or a reconcile was requested);
//! 5. the kind's ordered steps run;
//! 6. always: Ready summarised, `observedGeneration` and `lastHandledReconcileAt` set, status patched with the
//!    full condition list, metrics recorded, events emitted.
//!
//! Errors say their Flux reason and whether to stall, wait or retry ([`FluxError`]); the runner maps that to
//! conditions ([`finalize_conditions`]) and requeues ([`next_action`]).

mod error;
mod object;
mod outcome;
mod patch;

pub use error::{ErrorKind, FluxError, chain_message};
pub use object::{FluxObject, FluxStatus};
pub use outcome::{
    Failure, Next, Success, Summary, finalize_conditions, mark_progressing, next_action,
    progressing_message,
};
pub use patch::merge_patch;
mod runner;

pub use runner::{
    Event, EventSink, MetricsObject, ReconcileMetrics, ReconcileResult, Reconciler, Runner,
    RunnerConfig, RunnerError, Severity, Step, WriteStatusError,
};
