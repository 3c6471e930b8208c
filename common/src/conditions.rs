//! Flux's condition semantics (`fluxcd/pkg/runtime/conditions`), over a plain `Vec<Condition>`.
//!
//! - [`Conditions::set`] keeps `lastTransitionTime` when the state (status, reason, message) is unchanged, stamps
//!   `observedGeneration`, trims the message to the API's 32 KiB and keeps the list ordered as Flux orders it
//!   (Stalled, Reconciling, Ready first, then by type).
//! - [`Conditions::mark_reconciling`] and [`Conditions::mark_stalled`] keep the kstatus invariant that the two are
//!   never both present.
//! - [`summary`] merges owned conditions into one target (Ready) honouring polarity: a negative-polarity
//!   condition (`Reconciling`, `Stalled`, `FetchFailed`, ...) being True is abnormal.
//!
//! The current time is always passed in, so every rule is unit-testable.

use jiff::{Timestamp, Unit};

use crate::api::meta::{Condition, ConditionStatus};

pub use crate::api::meta::{condition_types as types, reasons};

/// The largest message the Condition schema admits.
pub const MAX_MESSAGE_LENGTH: usize = 32768;
const TRIMMED_SUFFIX: &str = "...";

/// Formats a timestamp as Kubernetes does (`metav1.Time`): RFC 3339 in UTC, whole seconds.
pub fn format_time(t: Timestamp) -> String {
    let t = t.round(Unit::Second).unwrap_or(t);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Trims a message to `max` bytes (on a character boundary), ending it with `...` when cut.
pub fn trim_message(message: &str, max: usize) -> String {
    let max = max.max(TRIMMED_SUFFIX.len());
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max - TRIMMED_SUFFIX.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRIMMED_SUFFIX}", &message[..end])
}

/// The condition of type `t`, if present.
pub fn get<'a>(conditions: &'a [Condition], t: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == t)
}

/// Whether a condition of type `t` is present.
pub fn has(conditions: &[Condition], t: &str) -> bool {
    get(conditions, t).is_some()
}

fn status_is(conditions: &[Condition], t: &str, status: ConditionStatus) -> bool {
    get(conditions, t).is_some_and(|c| c.status == status)
}

/// Whether condition `t` is present and True.
pub fn is_true(conditions: &[Condition], t: &str) -> bool {
    status_is(conditions, t, ConditionStatus::True)
}

/// Whether condition `t` is present and False.
pub fn is_false(conditions: &[Condition], t: &str) -> bool {
    status_is(conditions, t, ConditionStatus::False)
}

/// Whether condition `t` is Unknown or absent (Flux treats a missing condition as Unknown).
pub fn is_unknown(conditions: &[Condition], t: &str) -> bool {
    get(conditions, t).is_none_or(|c| c.status == ConditionStatus::Unknown)
}

/// Whether `Ready` is True.
pub fn is_ready(conditions: &[Condition]) -> bool {
    is_true(conditions, types::READY)
}

/// Whether `Stalled` is True.
pub fn is_stalled(conditions: &[Condition]) -> bool {
    is_true(conditions, types::STALLED)
}

/// Whether `Reconciling` is True.
pub fn is_reconciling(conditions: &[Condition]) -> bool {
    is_true(conditions, types::RECONCILING)
}

/// The order Flux keeps conditions in: Stalled, Reconciling, Ready, then the rest by observed generation
/// (newest first) and type.
fn order(a: &Condition, b: &Condition) -> std::cmp::Ordering {
    fn weight(t: &str) -> Option<u8> {
        match t {
            types::STALLED => Some(0),
            types::RECONCILING => Some(1),
            types::READY => Some(2),
            _ => None,
        }
    }
    match (weight(&a.type_), weight(&b.type_)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) if a.observed_generation == b.observed_generation => a.type_.cmp(&b.type_),
        (None, None) => b.observed_generation.cmp(&a.observed_generation),
    }
}

/// A condition list being edited for one object at one moment: every condition set through it is stamped with
/// the object's generation and, when its state changes, with `now`.
pub struct Conditions<'a> {
    list: &'a mut Vec<Condition>,
    generation: i64,
    now: Timestamp,
}

impl<'a> Conditions<'a> {
    /// Edits `list` for an object at `generation`, at time `now`.
    pub fn new(list: &'a mut Vec<Condition>, generation: i64, now: Timestamp) -> Self {
        Conditions {
            list,
            generation,
            now,
        }
    }

    /// The conditions as they stand.
    pub fn list(&self) -> &[Condition] {
        self.list
    }

    /// Sets a condition with Flux's rules: a change of status, reason or message moves `lastTransitionTime` to
    /// now; otherwise the old time is kept.
    pub fn set(&mut self, t: &str, status: ConditionStatus, reason: &str, message: &str) {
        let mut condition = Condition {
            type_: t.to_string(),
            status,
            reason: reason.to_string(),
            message: trim_message(message, MAX_MESSAGE_LENGTH),
            observed_generation: Some(self.generation),
            last_transition_time: format_time(self.now),
        };
        match self.list.iter_mut().find(|c| c.type_ == t) {
            Some(existing) => {
                let same_state = existing.status == condition.status
                    && existing.reason == condition.reason
                    && existing.message == condition.message;
                if same_state {
                    condition.last_transition_time =
                        std::mem::take(&mut existing.last_transition_time);
                }
                *existing = condition;
            }
            None => self.list.push(condition),
        }
        self.list.sort_by(order);
    }

    /// Sets condition `t` True.
    pub fn mark_true(&mut self, t: &str, reason: &str, message: &str) {
        self.set(t, ConditionStatus::True, reason, message);
    }

    /// Sets condition `t` False.
    pub fn mark_false(&mut self, t: &str, reason: &str, message: &str) {
        self.set(t, ConditionStatus::False, reason, message);
    }

    /// Sets condition `t` Unknown.
    pub fn mark_unknown(&mut self, t: &str, reason: &str, message: &str) {
        self.set(t, ConditionStatus::Unknown, reason, message);
    }

    /// Reconciling=True, and Stalled removed (kstatus: never both).
    pub fn mark_reconciling(&mut self, reason: &str, message: &str) {
        self.delete(types::STALLED);
        self.mark_true(types::RECONCILING, reason, message);
    }

    /// Stalled=True, and Reconciling removed (kstatus: never both).
    pub fn mark_stalled(&mut self, reason: &str, message: &str) {
        self.delete(types::RECONCILING);
        self.mark_true(types::STALLED, reason, message);
    }

    /// Removes condition `t`.
    pub fn delete(&mut self, t: &str) {
        self.list.retain(|c| c.type_ != t);
    }

    /// Sets `target` to the [`summary`] of the conditions in `scope`.
    pub fn set_summary(&mut self, target: &str, scope: &[&str], negative_polarity: &[&str]) {
        if let Some((status, reason, message)) =
            summary(self.list, target, scope, negative_polarity)
        {
            self.set(target, status, &reason, &message);
        }
    }
}

/// Merges the conditions in `scope` (in priority order) into a status, reason and message for `target`, as
/// Flux's `SetSummary` does.
///
/// Conditions are grouped by (status, polarity) and the groups ranked: abnormal ones first (True with negative
/// polarity, then False with positive polarity), then normal ones, then Unknown. The top group decides the
/// status (False when abnormal, True when normal, Unknown otherwise; inverted when the target itself has
/// negative polarity) and its first condition in `scope` order gives the reason and message. `None` when no
/// condition is in scope.
pub fn summary(
    conditions: &[Condition],
    target: &str,
    scope: &[&str],
    negative_polarity: &[&str],
) -> Option<(ConditionStatus, String, String)> {
    let rank = |c: &Condition| -> u8 {
        let negative = negative_polarity.contains(&c.type_.as_str());
        match (c.status, negative) {
            (ConditionStatus::True, true) => 0,
            (ConditionStatus::False, false) => 1,
            (ConditionStatus::True, false) => 2,
            (ConditionStatus::False, true) => 3,
            (ConditionStatus::Unknown, _) => 4,
        }
    };
    let in_scope: Vec<(usize, &Condition)> = scope
        .iter()
        .enumerate()
        .filter(|(_, t)| **t != target)
        .filter_map(|(i, t)| get(conditions, t).map(|c| (i, c)))
        .collect();
    let top = in_scope.iter().map(|(_, c)| rank(c)).min()?;
    let (_, first) = in_scope
        .iter()
        .filter(|(_, c)| rank(c) == top)
        .min_by_key(|(i, _)| *i)?;
    let target_negative = negative_polarity.contains(&target);
    let status = match (top, target_negative) {
        (0 | 1, false) | (2 | 3, true) => ConditionStatus::False,
        (0 | 1, true) | (2 | 3, false) => ConditionStatus::True,
        _ => ConditionStatus::Unknown,
    };
    Some((status, first.reason.clone(), first.message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn time_is_rfc3339_utc_whole_seconds() {
        let t: Timestamp = "2024-03-05T06:07:08.6Z".parse().unwrap();
        assert_eq!(format_time(t), "2024-03-05T06:07:09Z");
    }

    #[test]
    fn set_adds_with_generation_and_time() {
        let mut list = Vec::new();
        Conditions::new(&mut list, 3, at(0)).mark_true("Ready", "Succeeded", "ok");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].observed_generation, Some(3));
        assert_eq!(list[0].last_transition_time, format_time(at(0)));
        assert_eq!(list[0].status, ConditionStatus::True);
    }

    #[test]
    fn unchanged_state_keeps_transition_time_but_updates_generation() {
        let mut list = Vec::new();
        Conditions::new(&mut list, 1, at(0)).mark_true("Ready", "Succeeded", "ok");
        Conditions::new(&mut list, 2, at(60)).mark_true("Ready", "Succeeded", "ok");
        assert_eq!(list[0].last_transition_time, format_time(at(0)));
        assert_eq!(list[0].observed_generation, Some(2));
    }

    #[test]
    fn changed_status_reason_or_message_moves_transition_time() {
        for change in 0..3 {
            let mut list = Vec::new();
            Conditions::new(&mut list, 1, at(0)).mark_true("Ready", "Succeeded", "ok");
            let mut c = Conditions::new(&mut list, 1, at(60));
            match change {
                0 => c.mark_false("Ready", "Succeeded", "ok"),
                1 => c.mark_true("Ready", "Other", "ok"),
                _ => c.mark_true("Ready", "Succeeded", "different"),
            }
            assert_eq!(
                list[0].last_transition_time,
                format_time(at(60)),
                "change {change}"
            );
        }
    }

    #[test]
    fn reconciling_and_stalled_are_never_both_present() {
        let mut list = Vec::new();
        let mut c = Conditions::new(&mut list, 1, at(0));
        c.mark_reconciling("Progressing", "working");
        c.mark_stalled("InvalidURL", "bad url");
        assert!(is_stalled(c.list()) && !has(c.list(), "Reconciling"));
        c.mark_reconciling("Progressing", "again");
        assert!(is_reconciling(c.list()) && !has(c.list(), "Stalled"));
    }

    #[test]
    fn list_is_ordered_stalled_reconciling_ready_then_by_type() {
        let mut list = Vec::new();
        let mut c = Conditions::new(&mut list, 1, at(0));
        c.mark_true("FetchFailed", "GitOperationFailed", "x");
        c.mark_true("ArtifactInStorage", "Succeeded", "x");
        c.mark_false("Ready", "Failed", "x");
        c.mark_stalled("Stalled", "x");
        let order: Vec<_> = list.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            order,
            ["Stalled", "Ready", "ArtifactInStorage", "FetchFailed"]
        );
    }

    #[test]
    fn delete_and_getters() {
        let mut list = Vec::new();
        let mut c = Conditions::new(&mut list, 1, at(0));
        c.mark_false("Ready", "Failed", "x");
        assert!(
            is_false(c.list(), "Ready")
                && !is_true(c.list(), "Ready")
                && !is_unknown(c.list(), "Ready")
        );
        c.delete("Ready");
        assert!(!has(c.list(), "Ready") && is_unknown(c.list(), "Ready"));
    }

    #[test]
    fn long_messages_are_trimmed_on_a_char_boundary() {
        let msg = "é".repeat(MAX_MESSAGE_LENGTH);
        let mut list = Vec::new();
        Conditions::new(&mut list, 1, at(0)).mark_false("Ready", "Failed", &msg);
        assert!(list[0].message.len() <= MAX_MESSAGE_LENGTH);
        assert!(list[0].message.ends_with("..."));
        assert_eq!(trim_message("short", 100), "short");
        assert_eq!(trim_message("abcdefgh", 6), "abc...");
    }

    fn cond(t: &str, status: ConditionStatus, reason: &str) -> Condition {
        Condition {
            type_: t.into(),
            status,
            reason: reason.into(),
            message: format!("{t} message"),
            ..Default::default()
        }
    }

    const NEG: &[&str] = &["Reconciling", "Stalled", "FetchFailed", "ArtifactOutdated"];
    const SCOPE: &[&str] = &[
        "Stalled",
        "Reconciling",
        "FetchFailed",
        "ArtifactOutdated",
        "ArtifactInStorage",
    ];

    #[test]
    fn summary_abnormal_negative_polarity_wins() {
        use ConditionStatus::*;
        let list = vec![
            cond("ArtifactInStorage", True, "Succeeded"),
            cond("FetchFailed", True, "GitOperationFailed"),
        ];
        let (status, reason, message) = summary(&list, "Ready", SCOPE, NEG).unwrap();
        assert_eq!((status, reason.as_str()), (False, "GitOperationFailed"));
        assert_eq!(message, "FetchFailed message");
    }

    #[test]
    fn summary_priority_follows_scope_order_within_a_group() {
        use ConditionStatus::*;
        let list = vec![
            cond("FetchFailed", True, "GitOperationFailed"),
            cond("Reconciling", True, "Progressing"),
        ];
        let (status, reason, _) = summary(&list, "Ready", SCOPE, NEG).unwrap();
        assert_eq!((status, reason.as_str()), (False, "Progressing"));
    }

    #[test]
    fn summary_all_normal_is_true_and_unknown_is_unknown() {
        use ConditionStatus::*;
        let normal = vec![
            cond("ArtifactInStorage", True, "Succeeded"),
            cond("FetchFailed", False, "Ok"),
        ];
        let (status, reason, _) = summary(&normal, "Ready", SCOPE, NEG).unwrap();
        assert_eq!((status, reason.as_str()), (True, "Succeeded"));

        let unknown = vec![cond("ArtifactInStorage", Unknown, "Progressing")];
        assert_eq!(summary(&unknown, "Ready", SCOPE, NEG).unwrap().0, Unknown);

        assert!(summary(&[], "Ready", SCOPE, NEG).is_none());
        let ready_only = vec![cond("Ready", True, "Succeeded")];
        assert!(
            summary(&ready_only, "Ready", &["Ready"], NEG).is_none(),
            "the target is never in scope"
        );
    }

    #[test]
    fn summary_of_a_negative_polarity_target_is_inverted() {
        use ConditionStatus::*;
        let list = vec![cond("FetchFailed", True, "GitOperationFailed")];
        let (status, _, _) = summary(
            &list,
            "Stalled",
            &["FetchFailed"],
            &["FetchFailed", "Stalled"],
        )
        .unwrap();
        assert_eq!(status, True);
    }

    #[test]
    fn set_summary_writes_the_target() {
        use ConditionStatus::*;
        let mut list = vec![cond("FetchFailed", True, "GitOperationFailed")];
        Conditions::new(&mut list, 4, at(0)).set_summary("Ready", SCOPE, NEG);
        let ready = get(&list, "Ready").unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (False, "GitOperationFailed")
        );
        assert_eq!(ready.observed_generation, Some(4));
    }
}
