//! Flux-compatible API types and the plumbing every Riptide controller shares.
//!
//! No controller logic lives here: only what more than one controller needs, so that controllers depend on
//! `common` and never on each other.

pub mod api;
#[cfg(feature = "cel")]
pub mod cel;
pub mod cli;
pub mod conditions;
pub mod events;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod ratelimit;
pub mod reconcile;
pub mod server;
pub mod telemetry;
