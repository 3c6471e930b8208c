//! What the runner needs to know about a Flux object and its status.

use std::fmt::Debug;
use std::time::Duration;

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::meta::Condition;

/// A Flux custom resource the generic runner can reconcile (every Flux kind is namespaced).
pub trait FluxObject:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The status type, written through the status subresource.
    type Status: FluxStatus;

    /// The status as stored, if any.
    fn status(&self) -> Option<&Self::Status>;
    /// `spec.suspend`.
    fn suspended(&self) -> bool;
    /// `spec.interval`, parsed. Kinds without an interval return `None` (no periodic requeue).
    fn interval(&self) -> Option<Duration>;
    /// `spec.retryInterval` where the kind has one: the delay after a failure instead of the backoff.
    fn retry_interval(&self) -> Option<Duration> {
        None
    }
}

/// The status fields every Flux kind shares (`meta.ReconcileRequestStatus`, conditions, observedGeneration).
pub trait FluxStatus:
    Clone + Debug + Default + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The conditions.
    fn conditions(&self) -> &[Condition];
    /// The conditions, to edit.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// `status.observedGeneration`.
    fn observed_generation(&self) -> Option<i64>;
    /// Sets `status.observedGeneration`.
    fn set_observed_generation(&mut self, generation: i64);
    /// `status.lastHandledReconcileAt`.
    fn last_handled_reconcile_at(&self) -> Option<&str>;
    /// Sets `status.lastHandledReconcileAt`.
    fn set_last_handled_reconcile_at(&mut self, value: String);
}

/// Implements [`FluxStatus`] for a status struct with Flux's usual fields: `conditions: Option<Vec<Condition>>`,
/// `observed_generation: Option<i64>` and `last_handled_reconcile_at: Option<String>`.
#[macro_export]
macro_rules! impl_flux_status {
    ($status:ty) => {
        impl $crate::reconcile::FluxStatus for $status {
            fn conditions(&self) -> &[$crate::api::meta::Condition] {
                self.conditions.as_deref().unwrap_or_default()
            }
            fn conditions_mut(&mut self) -> &mut Vec<$crate::api::meta::Condition> {
                self.conditions.get_or_insert_with(Vec::new)
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn set_observed_generation(&mut self, generation: i64) {
                self.observed_generation = Some(generation);
            }
            fn last_handled_reconcile_at(&self) -> Option<&str> {
                self.last_handled_reconcile_at.as_deref()
            }
            fn set_last_handled_reconcile_at(&mut self, value: String) {
                self.last_handled_reconcile_at = Some(value);
            }
        }
    };
}

/// Implements [`FluxObject`] (and [`FluxStatus`] for its status) for a Flux kind, given closures that read
/// `spec.suspend`, `spec.interval` and, optionally, `spec.retryInterval` as Go duration strings.
#[macro_export]
macro_rules! impl_flux_object {
    ($kind:ty, $status:ty, suspend = $suspend:expr, interval = $interval:expr $(, retry_interval = $retry:expr)? $(,)?) => {
        $crate::impl_flux_status!($status);

        impl $crate::reconcile::FluxObject for $kind {
            type Status = $status;

            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn suspended(&self) -> bool {
                let read: fn(&$kind) -> Option<bool> = $suspend;
                read(self).unwrap_or(false)
            }
            fn interval(&self) -> Option<std::time::Duration> {
                let read: fn(&$kind) -> Option<&str> = $interval;
                read(self).and_then(|s| $crate::cli::parse_go_duration(s).ok())
            }
            $(
            fn retry_interval(&self) -> Option<std::time::Duration> {
                let read: fn(&$kind) -> Option<&str> = $retry;
                read(self).and_then(|s| $crate::cli::parse_go_duration(s).ok())
            }
            )?
        }
    };
}
