//! Kustomization reconciler.
