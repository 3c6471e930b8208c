//! The error contract every kind's reconcile errors follow.

use std::error::Error;
use std::time::Duration;

/// What the runner does after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The spec is wrong: mark the object Stalled and wait for the spec to change. No retries.
    Stalled,
    /// A dependency is not ready: requeue after the given delay, without counting a failure.
    Waiting(Duration),
    /// Something that may pass: retry with per-object exponential backoff (or the kind's retry interval).
    Transient,
}

/// An error a kind's reconcile can end with: it names Flux's reason string and what to do next.
pub trait FluxError: Error + Send + Sync + 'static {
    /// The Flux reason for the Ready condition (e.g. `GitOperationFailed`, `BuildFailed`).
    fn reason(&self) -> &str;
    /// Whether to stall, wait or retry.
    fn kind(&self) -> ErrorKind;
}

/// The error's message followed by its `source()` chain (`a: b: c`), for conditions and events.
/// Credentials in URLs are masked by the runner before the message leaves the process.
pub fn chain_message(err: &dyn Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer failed")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner cause")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped: inner cause")]
    struct AlreadySaid(#[source] Inner);

    #[test]
    fn chain_walks_sources_without_repeating() {
        assert_eq!(chain_message(&Outer(Inner)), "outer failed: inner cause");
        assert_eq!(chain_message(&AlreadySaid(Inner)), "wrapped: inner cause");
    }
}
