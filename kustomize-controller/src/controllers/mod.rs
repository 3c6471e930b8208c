//! One module per kind.

pub mod kustomization;
