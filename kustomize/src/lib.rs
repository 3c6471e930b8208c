//! A pure, synchronous kustomize build engine.
