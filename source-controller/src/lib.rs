//! GitRepository reconciler and artifact storage server.
