//! A Kubernetes API server for tests, e2e and `riptide up`.
