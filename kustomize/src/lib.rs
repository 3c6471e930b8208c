//! A pure, synchronous kustomize build engine: a kustomization directory in,
//! Kubernetes resources out, equal to what kustomize v5 produces.
//!
//! ```no_run
//! use std::path::Path;
//! let out = kustomize::build(Path::new("/repo"), Path::new("/repo/deploy/prod"), &Default::default())?;
//! print!("{}", out.to_yaml());
//! # Ok::<(), kustomize::Error>(())
//! ```
//!
//! Nothing outside `root` is read; no process is spawned and no network is used.

mod build;
mod error;
mod fieldspec;
mod generators;
mod kustomization;
mod loader;
mod nameref;
mod patch;
mod plugins;
mod replacements;
mod resource;
mod sort;
mod transformers;
mod value;
mod vars;
pub mod yaml;

pub use build::{BuildOptions, BuildOutput, build};
pub use error::{Error, Result};
pub use loader::DEFAULT_MAX_FILE_SIZE;
pub use value::{Map, Value};
