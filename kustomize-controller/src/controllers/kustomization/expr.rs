//! `spec.healthCheckExprs` as Flux's `runtime/cel` status reader handles them: per GroupKind, CEL expressions
//! (see [`common::cel`]) replace kstatus' rules. Health check expressions are only *parsed* (syntax), as Flux
//! does: custom resources may have any top-level fields, so no variable is declared; each top-level field of the
//! object (`status`, `spec`, `metadata`, ...) is a variable, and a missing one is an evaluation error.
//! `spec.dependsOn[].readyExpr` is compiled with [`Expression::compile_bool`] against `self` and `dep`.

use std::collections::HashMap;

use common::api::kustomize_v1::CustomHealthCheck;
pub use common::cel::{CelError, Expression, Variables};
use serde_json::Value;

use super::health::Status;
use super::inventory::split_api_version;

/// Why a health check expression could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    #[error("expression Current not specified")]
    MissingCurrent,
    #[error("failed to parse the expression {field}: {source}")]
    Parse {
        field: &'static str,
        #[source]
        source: CelError,
    },
}

/// Why `spec.healthCheckExprs` is invalid, as Flux's `NewStatusReader` says it.
#[derive(Debug, thiserror::Error)]
pub enum HealthCheckExprsError {
    #[error("duplicate custom health check for GroupKind {group_kind} at healthchecks[{index}]")]
    Duplicate { group_kind: String, index: usize },
    #[error("failed to create custom status evaluator for healthchecks[{index}]: {source}")]
    Evaluator {
        index: usize,
        #[source]
        source: EvaluatorError,
    },
}

/// The expressions of one `healthCheckExprs` entry.
#[derive(Debug)]
pub struct StatusEvaluator {
    current: Expression,
    failed: Option<Expression>,
    in_progress: Option<Expression>,
}

impl StatusEvaluator {
    /// Parses the entry's expressions; `current` is required.
    pub fn new(check: &CustomHealthCheck) -> Result<Self, EvaluatorError> {
        if check.current.is_empty() {
            return Err(EvaluatorError::MissingCurrent);
        }
        let parse = |field: &'static str, source: &str| {
            Expression::parse(source).map_err(|source| EvaluatorError::Parse { field, source })
        };
        let optional = |field: &'static str, source: &Option<String>| {
            source
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| parse(field, s))
                .transpose()
        };
        Ok(StatusEvaluator {
            current: parse("Current", &check.current)?,
            failed: optional("Failed", &check.failed)?,
            in_progress: optional("InProgress", &check.in_progress)?,
        })
    }

    /// The object's status (RFC 0009): InProgress while `status.observedGeneration` (when an integer) differs from
    /// `metadata.generation`; else the first of `inProgress`, `failed`, `current` that holds; else InProgress. An
    /// evaluation error makes the status Unknown, with the error as its message (as kstatus reports it).
    pub fn evaluate(&self, obj: &Value) -> (Status, String) {
        if let (Some(observed), Some(generation)) = (
            obj["status"]["observedGeneration"].as_i64(),
            obj["metadata"]["generation"].as_i64(),
        ) && observed != generation
        {
            return (Status::InProgress, String::new());
        }
        let fields = Variables::new(
            obj.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v)),
        );
        for (expression, status) in [
            (self.in_progress.as_ref(), Status::InProgress),
            (self.failed.as_ref(), Status::Failed),
            (Some(&self.current), Status::Current),
        ] {
            let Some(expression) = expression else {
                continue;
            };
            match expression.evaluate_bool_in(&fields) {
                Ok(true) => return (status, String::new()),
                Ok(false) => {}
                Err(e) => return (Status::Unknown, e.to_string()),
            }
        }
        (Status::InProgress, String::new())
    }
}

/// `spec.healthCheckExprs` compiled: an evaluator per GroupKind (the version is ignored), or per group for an
/// entry without `kind`. A kind's own entry wins over its group's.
#[derive(Debug, Default)]
pub struct CustomHealth {
    evaluators: HashMap<(String, String), StatusEvaluator>,
}

impl CustomHealth {
    /// Compiles the entries, refusing invalid expressions and duplicate GroupKinds, as Flux does.
    pub fn new(checks: &[CustomHealthCheck]) -> Result<Self, HealthCheckExprsError> {
        let mut evaluators = HashMap::with_capacity(checks.len());
        for (index, check) in checks.iter().enumerate() {
            let group = split_api_version(&check.api_version).0.to_string();
            let kind = check.kind.clone().unwrap_or_default();
            let key = (group, kind);
            if evaluators.contains_key(&key) {
                let (group, kind) = key;
                let group_kind = if group.is_empty() {
                    kind
                } else {
                    format!("{kind}.{group}")
                };
                return Err(HealthCheckExprsError::Duplicate { group_kind, index });
            }
            let evaluator = StatusEvaluator::new(check)
                .map_err(|source| HealthCheckExprsError::Evaluator { index, source })?;
            evaluators.insert(key, evaluator);
        }
        Ok(CustomHealth { evaluators })
    }

    /// Whether there are no expressions.
    pub fn is_empty(&self) -> bool {
        self.evaluators.is_empty()
    }

    /// The evaluator for objects of `group` and `kind`, if any.
    pub fn evaluator(&self, group: &str, kind: &str) -> Option<&StatusEvaluator> {
        self.evaluators
            .get(&(group.to_string(), kind.to_string()))
            .or_else(|| self.evaluators.get(&(group.to_string(), String::new())))
    }

    /// The object's status by its expressions, or `None` when no entry covers its GroupKind.
    pub fn status(&self, obj: &Value) -> Option<(Status, String)> {
        if self.evaluators.is_empty() {
            return None;
        }
        let group = split_api_version(obj["apiVersion"].as_str().unwrap_or_default()).0;
        let kind = obj["kind"].as_str().unwrap_or_default();
        self.evaluator(group, kind).map(|e| e.evaluate(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(api_version: &str, kind: Option<&str>, current: &str) -> CustomHealthCheck {
        CustomHealthCheck {
            api_version: api_version.into(),
            kind: kind.map(Into::into),
            current: current.into(),
            ..Default::default()
        }
    }

    fn widget(status: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
               "metadata": {"name": "w1", "namespace": "default", "generation": 1},
               "spec": {"size": 3}, "status": status})
    }

    fn phases() -> CustomHealthCheck {
        CustomHealthCheck {
            failed: Some("status.phase == 'Failed'".into()),
            in_progress: Some("has(status.progressing) && status.progressing".into()),
            ..check("example.com/v1", Some("Widget"), "status.phase == 'Ready'")
        }
    }

    #[test]
    fn expressions_decide_the_status_in_flux_order() {
        let health = CustomHealth::new(&[phases()]).unwrap();
        let status = |s: Value| health.status(&widget(s)).unwrap().0;
        assert_eq!(status(json!({"phase": "Ready"})), Status::Current);
        assert_eq!(status(json!({"phase": "Failed"})), Status::Failed);
        assert_eq!(
            status(json!({"phase": "Pending"})),
            Status::InProgress,
            "nothing holds"
        );
        assert_eq!(
            status(json!({"phase": "Failed", "progressing": true})),
            Status::InProgress,
            "inProgress is evaluated first"
        );
        // The built-in generation rule comes first, and applies only to integers.
        assert_eq!(
            status(json!({"phase": "Ready", "observedGeneration": 0})),
            Status::InProgress
        );
        assert_eq!(
            status(json!({"phase": "Ready", "observedGeneration": 1})),
            Status::Current
        );
        assert_eq!(
            status(json!({"phase": "Ready", "observedGeneration": "0"})),
            Status::Current
        );
    }

    #[test]
    fn evaluation_errors_make_the_status_unknown_with_cel_go_wording() {
        let health = CustomHealth::new(&[phases()]).unwrap();
        let obj =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}});
        assert_eq!(
            health.status(&obj),
            Some((
                Status::Unknown,
                "failed to evaluate the CEL expression 'has(status.progressing) && status.progressing': \
                 no such attribute(s): status"
                    .into()
            ))
        );
        let health = CustomHealth::new(&[check(
            "example.com/v1",
            Some("Widget"),
            "status.phase == 'x'",
        )])
        .unwrap();
        assert_eq!(
            health.status(&widget(json!({}))).unwrap().1,
            "failed to evaluate the CEL expression 'status.phase == 'x'': no such key: phase"
        );
        let health =
            CustomHealth::new(&[check("example.com/v1", Some("Widget"), "status")]).unwrap();
        assert_eq!(
            health.status(&widget(json!({}))).unwrap(),
            (
                Status::Unknown,
                "failed to evaluate CEL expression as boolean: 'status'".into()
            )
        );
    }

    #[test]
    fn the_version_is_ignored_and_a_kind_wins_over_its_group() {
        let health = CustomHealth::new(&[
            check("example.com/v1", None, "true"),
            check("example.com/v2", Some("Widget"), "false"),
        ])
        .unwrap();
        let status = |api_version: &str, kind: &str| {
            health
                .status(&json!({"apiVersion": api_version, "kind": kind, "metadata": {}}))
                .map(|s| s.0)
        };
        assert_eq!(status("example.com/v1", "Widget"), Some(Status::InProgress));
        assert_eq!(
            status("example.com/v1beta1", "Gadget"),
            Some(Status::Current)
        );
        assert_eq!(status("other.com/v1", "Widget"), None);
        assert_eq!(status("v1", "ConfigMap"), None);
    }

    #[test]
    fn invalid_entries_are_refused_with_flux_messages() {
        let bad = CustomHealthCheck {
            in_progress: Some("foo.".into()),
            ..check("v1", Some("ConfigMap"), "true")
        };
        let err = CustomHealth::new(&[bad]).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "failed to create custom status evaluator for healthchecks[0]: failed to parse the expression \
                 InProgress: failed to parse the CEL expression 'foo.': ERROR: <input>:1:"
            ),
            "{err}"
        );
        let err = CustomHealth::new(&[check("example.com/v1", Some("Widget"), "")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "failed to create custom status evaluator for healthchecks[0]: expression Current not specified"
        );
        let err = CustomHealth::new(&[
            check("example.com/v1", Some("Widget"), "true"),
            check("example.com/v2", Some("Widget"), "true"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "duplicate custom health check for GroupKind Widget.example.com at healthchecks[1]"
        );
        // Parsing checks syntax only: unknown variables are an evaluation matter.
        assert!(CustomHealth::new(&[check("v1", Some("ConfigMap"), "nope.x == 1")]).is_ok());
    }
}
