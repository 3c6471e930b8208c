//! How a reconcile's result becomes conditions and the next requeue: pure functions, `now` passed in.

use std::time::Duration;

use jiff::Timestamp;

use super::error::ErrorKind;
use crate::api::meta::Condition;
use crate::conditions::{self, Conditions, reasons, types};

/// What a kind's steps return on success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Success {
    /// Reason for Ready=True when no owned condition decides it (Flux: `Succeeded`; kustomize-controller:
    /// `ReconciliationSucceeded`).
    pub reason: String,
    /// Message for Ready=True, e.g. `stored artifact for revision 'main@sha1:…'`.
    pub message: String,
    /// Requeue sooner than `spec.interval` (e.g. while waiting for health checks).
    pub requeue_after: Option<Duration>,
}

impl Success {
    /// Success with Flux's generic `Succeeded` reason.
    pub fn new(message: impl Into<String>) -> Self {
        Success {
            reason: reasons::SUCCEEDED.to_string(),
            message: message.into(),
            requeue_after: None,
        }
    }

    /// Success with a kind-specific reason.
    pub fn with_reason(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Success {
            reason: reason.into(),
            message: message.into(),
            requeue_after: None,
        }
    }
}

/// A failed reconcile, as the runner sees it: Flux reason, masked message, and what to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Flux's reason string.
    pub reason: String,
    /// The message (source chain walked, credentials masked).
    pub message: String,
    /// Stall, wait or retry.
    pub kind: ErrorKind,
}

/// The condition types a kind summarises into Ready, in priority order, and which of them are abnormal when True.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// Owned conditions considered for Ready, highest priority first.
    pub scope: &'static [&'static str],
    /// Conditions whose True status is abnormal (`Reconciling`, `Stalled`, `FetchFailed`, ...).
    pub negative_polarity: &'static [&'static str],
}

/// The message of the Reconciling condition while work is in progress.
pub fn progressing_message(observed: Option<i64>, generation: i64) -> String {
    match observed {
        Some(old) if old != generation => {
            format!("processing object: new generation {old} -> {generation}")
        }
        None => format!("processing object: new generation 0 -> {generation}"),
        _ => "reconciliation in progress".to_string(),
    }
}

/// Marks the object in progress (Flux's `ProgressiveStatus`): Reconciling=True, and Ready=Unknown when the
/// generation changed or Ready is not decided yet.
pub fn mark_progressing(
    list: &mut Vec<Condition>,
    observed: Option<i64>,
    generation: i64,
    now: Timestamp,
) {
    let message = progressing_message(observed, generation);
    let drift = observed != Some(generation);
    let mut c = Conditions::new(list, generation, now);
    c.mark_reconciling(reasons::PROGRESSING, &message);
    if drift || conditions::is_unknown(c.list(), types::READY) {
        c.mark_unknown(types::READY, reasons::PROGRESSING, &message);
    }
}

/// Writes the final conditions for a reconcile result, as Flux's `ResultFinalizer` does:
/// - success: Stalled and Reconciling removed, Ready summarised from the owned conditions, or True with the
///   success reason and message when nothing owned decides it;
/// - stalled: Stalled=True and Ready=False with the error's reason and message, Reconciling removed;
/// - waiting or transient: Stalled removed, Reconciling=True (`ProgressingWithRetry`), Ready=False with the
///   most specific abnormal owned condition, else the error's reason and message.
pub fn finalize_conditions(
    list: &mut Vec<Condition>,
    result: &Result<Success, Failure>,
    summary: Summary,
    generation: i64,
    now: Timestamp,
) {
    let mut c = Conditions::new(list, generation, now);
    match result {
        Ok(success) => {
            c.delete(types::STALLED);
            c.delete(types::RECONCILING);
            if !summary.scope.is_empty() {
                c.set_summary(types::READY, summary.scope, summary.negative_polarity);
            }
            if conditions::is_unknown(c.list(), types::READY) {
                c.mark_true(types::READY, &success.reason, &success.message);
            }
        }
        Err(failure) if failure.kind == ErrorKind::Stalled => {
            c.mark_stalled(&failure.reason, &failure.message);
            c.mark_false(types::READY, &failure.reason, &failure.message);
        }
        Err(failure) => {
            let in_progress = conditions::get(c.list(), types::RECONCILING)
                .map(|r| r.message.clone())
                .unwrap_or_else(|| "reconciliation in progress".to_string());
            c.mark_reconciling(reasons::PROGRESSING_WITH_RETRY, &in_progress);
            let owned: Vec<&str> = summary
                .scope
                .iter()
                .copied()
                .filter(|t| *t != types::RECONCILING && *t != types::STALLED)
                .collect();
            match conditions::summary(c.list(), types::READY, &owned, summary.negative_polarity) {
                Some((crate::api::meta::ConditionStatus::False, reason, message)) => {
                    c.mark_false(types::READY, &reason, &message);
                }
                _ => c.mark_false(types::READY, &failure.reason, &failure.message),
            }
        }
    }
}

/// When to look at the object again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// After this delay.
    RequeueAfter(Duration),
    /// Only when the object changes.
    AwaitChange,
}

/// The requeue policy: `spec.interval` (jittered by the caller) on success, the dependency delay when waiting,
/// the kind's retry interval or per-object exponential backoff (`backoff(failures)`) when transient, and nothing
/// until the spec changes when stalled. `failures` counts consecutive transient failures including this one.
pub fn next_action(
    result: &Result<Success, Failure>,
    interval: Option<Duration>,
    retry_interval: Option<Duration>,
    failures: u32,
    backoff: impl Fn(u32) -> Duration,
) -> Next {
    match result {
        Ok(success) => match success.requeue_after.or(interval) {
            Some(d) => Next::RequeueAfter(d),
            None => Next::AwaitChange,
        },
        Err(f) => match f.kind {
            ErrorKind::Stalled => Next::AwaitChange,
            ErrorKind::Waiting(d) => Next::RequeueAfter(d),
            ErrorKind::Transient => Next::RequeueAfter(
                retry_interval.unwrap_or_else(|| backoff(failures.saturating_sub(1))),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::meta::ConditionStatus::{self, *};
    use crate::conditions::get;

    const SUMMARY: Summary = Summary {
        scope: &["Stalled", "FetchFailed", "ArtifactInStorage", "Reconciling"],
        negative_polarity: &["Stalled", "FetchFailed", "Reconciling"],
    };

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn status_of(list: &[Condition], t: &str) -> Option<(ConditionStatus, String)> {
        get(list, t).map(|c| (c.status, c.reason.clone()))
    }

    fn failure(kind: ErrorKind) -> Failure {
        Failure {
            reason: "GitOperationFailed".into(),
            message: "failed to checkout".into(),
            kind,
        }
    }

    /// kstatus invariants every outcome must keep.
    fn assert_invariants(list: &[Condition], generation: i64) {
        assert!(get(list, "Ready").is_some(), "Ready always present");
        assert!(
            !(crate::conditions::is_true(list, "Reconciling")
                && crate::conditions::is_true(list, "Stalled")),
            "Reconciling and Stalled never both True"
        );
        assert_eq!(
            get(list, "Ready").unwrap().observed_generation,
            Some(generation)
        );
    }

    #[test]
    fn progressing_marks_reconciling_and_unknown_ready_on_new_generation() {
        let mut list = Vec::new();
        mark_progressing(&mut list, Some(1), 2, now());
        assert_eq!(
            status_of(&list, "Reconciling"),
            Some((True, "Progressing".into()))
        );
        assert_eq!(
            status_of(&list, "Ready"),
            Some((Unknown, "Progressing".into()))
        );
        assert_eq!(
            get(&list, "Reconciling").unwrap().message,
            "processing object: new generation 1 -> 2"
        );
    }

    #[test]
    fn progressing_keeps_a_decided_ready_when_generation_is_unchanged() {
        let mut list = Vec::new();
        Conditions::new(&mut list, 2, now()).mark_true("Ready", "Succeeded", "stored");
        mark_progressing(&mut list, Some(2), 2, now());
        assert_eq!(status_of(&list, "Ready"), Some((True, "Succeeded".into())));
        assert_eq!(
            get(&list, "Reconciling").unwrap().message,
            "reconciliation in progress"
        );
    }

    #[test]
    fn success_clears_progress_and_summarises_ready() {
        let mut list = Vec::new();
        mark_progressing(&mut list, None, 1, now());
        Conditions::new(&mut list, 1, now()).mark_true(
            "ArtifactInStorage",
            "Succeeded",
            "stored artifact",
        );
        finalize_conditions(&mut list, &Ok(Success::new("ignored")), SUMMARY, 1, now());
        assert_eq!(status_of(&list, "Ready"), Some((True, "Succeeded".into())));
        assert_eq!(get(&list, "Ready").unwrap().message, "stored artifact");
        assert!(get(&list, "Reconciling").is_none() && get(&list, "Stalled").is_none());
        assert_invariants(&list, 1);
    }

    #[test]
    fn success_without_owned_conditions_uses_the_success_message() {
        let mut list = Vec::new();
        mark_progressing(&mut list, None, 1, now());
        let ok = Success::with_reason("ReconciliationSucceeded", "Applied revision: main@sha1:abc");
        finalize_conditions(&mut list, &Ok(ok), Summary::default(), 1, now());
        let ready = get(&list, "Ready").unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (True, "ReconciliationSucceeded")
        );
        assert_eq!(ready.message, "Applied revision: main@sha1:abc");
        assert_invariants(&list, 1);
    }

    #[test]
    fn stalled_error_marks_stalled_and_ready_false() {
        let mut list = Vec::new();
        mark_progressing(&mut list, None, 3, now());
        finalize_conditions(
            &mut list,
            &Err(failure(ErrorKind::Stalled)),
            SUMMARY,
            3,
            now(),
        );
        assert_eq!(
            status_of(&list, "Stalled"),
            Some((True, "GitOperationFailed".into()))
        );
        assert_eq!(
            status_of(&list, "Ready"),
            Some((False, "GitOperationFailed".into()))
        );
        assert!(get(&list, "Reconciling").is_none());
        assert_invariants(&list, 3);
    }

    #[test]
    fn transient_error_keeps_reconciling_with_retry_and_prefers_an_owned_failure() {
        let mut list = Vec::new();
        mark_progressing(&mut list, None, 1, now());
        finalize_conditions(
            &mut list,
            &Err(failure(ErrorKind::Transient)),
            SUMMARY,
            1,
            now(),
        );
        assert_eq!(
            status_of(&list, "Reconciling"),
            Some((True, "ProgressingWithRetry".into()))
        );
        assert_eq!(
            status_of(&list, "Ready"),
            Some((False, "GitOperationFailed".into()))
        );
        assert_invariants(&list, 1);

        Conditions::new(&mut list, 1, now()).mark_true(
            "FetchFailed",
            "AuthenticationFailed",
            "bad creds",
        );
        finalize_conditions(
            &mut list,
            &Err(failure(ErrorKind::Transient)),
            SUMMARY,
            1,
            now(),
        );
        assert_eq!(
            status_of(&list, "Ready"),
            Some((False, "AuthenticationFailed".into()))
        );
        assert_eq!(get(&list, "Ready").unwrap().message, "bad creds");
    }

    #[test]
    fn recovery_after_stall_clears_stalled() {
        let mut list = Vec::new();
        finalize_conditions(
            &mut list,
            &Err(failure(ErrorKind::Stalled)),
            SUMMARY,
            1,
            now(),
        );
        mark_progressing(&mut list, Some(1), 2, now());
        assert!(
            get(&list, "Stalled").is_none(),
            "Reconciling replaces Stalled"
        );
        finalize_conditions(
            &mut list,
            &Ok(Success::new("done")),
            Summary::default(),
            2,
            now(),
        );
        assert_eq!(status_of(&list, "Ready"), Some((True, "Succeeded".into())));
        assert_invariants(&list, 2);
    }

    #[test]
    fn requeue_policy_per_outcome() {
        let backoff = |n: u32| Duration::from_millis(750) * 2u32.pow(n);
        let interval = Some(Duration::from_secs(60));
        let ok = Ok(Success::new("x"));
        assert_eq!(
            next_action(&ok, interval, None, 0, backoff),
            Next::RequeueAfter(Duration::from_secs(60))
        );
        assert_eq!(next_action(&ok, None, None, 0, backoff), Next::AwaitChange);
        let soon = Ok(Success {
            requeue_after: Some(Duration::from_secs(5)),
            ..Success::new("x")
        });
        assert_eq!(
            next_action(&soon, interval, None, 0, backoff),
            Next::RequeueAfter(Duration::from_secs(5))
        );

        let stalled = Err(failure(ErrorKind::Stalled));
        assert_eq!(
            next_action(&stalled, interval, None, 0, backoff),
            Next::AwaitChange
        );
        let waiting = Err(failure(ErrorKind::Waiting(Duration::from_secs(30))));
        assert_eq!(
            next_action(&waiting, interval, None, 4, backoff),
            Next::RequeueAfter(Duration::from_secs(30))
        );

        let transient = Err(failure(ErrorKind::Transient));
        assert_eq!(
            next_action(&transient, interval, None, 1, backoff),
            Next::RequeueAfter(Duration::from_millis(750))
        );
        assert_eq!(
            next_action(&transient, interval, None, 3, backoff),
            Next::RequeueAfter(Duration::from_millis(3000))
        );
        let retry = Some(Duration::from_secs(10));
        assert_eq!(
            next_action(&transient, interval, retry, 3, backoff),
            Next::RequeueAfter(Duration::from_secs(10))
        );
    }
}
