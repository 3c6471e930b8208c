//! dependsOn: every dependency must exist and, in this order as Flux checks it,
//! - satisfy its `readyExpr` (CEL with `self`, this Kustomization, and `dep`, the dependency), when set;
//! - unless `readyExpr` is set and the `AdditiveCELDependencyCheck` feature gate is off: be Ready at its current
//!   generation and — when it uses the same source — have applied the revision this Kustomization is about to
//!   apply.
//!
//! An invalid `readyExpr` is a configuration error (the Kustomization stalls); one that fails to evaluate or does
//! not hold makes the dependency not ready (retried).

use common::api::kustomize_v1::Kustomization;
use common::api::source_v1::Artifact;
use common::conditions::is_ready;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use super::expr::{CelError, Expression};

/// The variables of a `readyExpr`.
const SELF_VAR: &str = "self";
const DEP_VAR: &str = "dep";

/// Why the dependencies do not allow the reconcile to go on, with Flux's messages.
#[derive(Debug, thiserror::Error)]
pub enum DependencyError {
    #[error("dependency '{0}' not found")]
    NotFound(String),
    #[error("dependency '{name}' not found: {message}")]
    Get { name: String, message: String },
    #[error("dependency '{0}' is not ready")]
    NotReady(String),
    #[error("dependency '{0}' revision is not up to date")]
    RevisionNotUpToDate(String),
    #[error("dependency '{0}' is not ready according to readyExpr eval")]
    ReadyExprFalse(String),
    /// The expression failed to evaluate (e.g. a missing field): retried, as Flux does.
    #[error(transparent)]
    ReadyExprEval(CelError),
    /// The expression does not compile: a configuration error.
    #[error("failed to evaluate dependency {name}: {source}")]
    InvalidReadyExpr {
        name: String,
        #[source]
        source: CelError,
    },
}

impl DependencyError {
    /// Whether only a spec change can fix it.
    pub fn is_terminal(&self) -> bool {
        matches!(self, DependencyError::InvalidReadyExpr { .. })
    }
}

/// Checks `obj`'s dependencies against the source `artifact` it is about to apply. With `additive`
/// (`AdditiveCELDependencyCheck`), the built-in readiness check also applies to dependencies with a `readyExpr`.
pub async fn check(
    client: &Client,
    obj: &Kustomization,
    artifact: &Artifact,
    additive: bool,
) -> Result<(), DependencyError> {
    let namespace = obj.namespace().unwrap_or_default();
    let mut self_value: Option<Value> = None;
    for dep_ref in obj.spec.depends_on() {
        let dep_ns = dep_ref.namespace_or(&namespace);
        let name = format!("{dep_ns}/{}", dep_ref.name);
        let api: Api<Kustomization> = Api::namespaced(client.clone(), dep_ns);
        let dep = match api.get_opt(&dep_ref.name).await {
            Ok(Some(d)) => d,
            Ok(None) => return Err(DependencyError::NotFound(name)),
            Err(e) => {
                return Err(DependencyError::Get {
                    name,
                    message: e.to_string(),
                });
            }
        };
        let ready_expr = dep_ref.ready_expr.as_deref().filter(|e| !e.is_empty());
        if let Some(source) = ready_expr {
            let expression =
                Expression::compile_bool(source, &[SELF_VAR, DEP_VAR]).map_err(|source| {
                    DependencyError::InvalidReadyExpr {
                        name: dep_ref.name.clone(),
                        source,
                    }
                })?;
            let me = self_value.get_or_insert_with(|| to_value(obj));
            let dep_value = to_value(&dep);
            let ready = expression
                .evaluate_bool([(SELF_VAR, &*me), (DEP_VAR, &dep_value)])
                .map_err(DependencyError::ReadyExprEval)?;
            if !ready {
                return Err(DependencyError::ReadyExprFalse(name));
            }
            if !additive {
                continue;
            }
        }
        let status = dep.status.clone().unwrap_or_default();
        if status.conditions().is_empty() || dep.metadata.generation != status.observed_generation {
            return Err(DependencyError::NotReady(name));
        }
        if !is_ready(status.conditions()) {
            return Err(DependencyError::NotReady(name));
        }
        let same_source = dep.spec.source_ref.name == obj.spec.source_ref.name
            && dep.spec.source_ref.kind == obj.spec.source_ref.kind
            && dep.spec.source_ref.namespace_or(dep_ns)
                == obj.spec.source_ref.namespace_or(&namespace);
        if same_source
            && !artifact.has_revision(status.last_applied_revision.as_deref().unwrap_or_default())
        {
            return Err(DependencyError::RevisionNotUpToDate(name));
        }
    }
    Ok(())
}

/// A Kustomization as the map CEL sees.
fn to_value(obj: &Kustomization) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}
