//! One module per kind.

pub mod git_repository;
