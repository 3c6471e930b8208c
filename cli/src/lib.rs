//! The `riptide` command line. Each subcommand lives in its own module.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod build;
pub mod example;
pub mod get;
pub mod reconcile;
pub mod status;
pub mod suspend;
pub mod up;

/// Riptide: GitOps toolkit.
#[derive(Debug, Parser)]
#[command(name = "riptide", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a kustomization directory and print the resulting objects as YAML.
    Build(build::BuildArgs),
    /// Run the GitOps loop on this machine: API server, controllers, a git repository, a live status table.
    Up(up::UpArgs),
    /// Show the status of every Flux object (kind, name, Ready, revision, message).
    Get(get::GetArgs),
    /// Ask for a reconciliation now (sets reconcile.fluxcd.io/requestedAt) and wait for its result.
    Reconcile(reconcile::ReconcileArgs),
    /// Suspend reconciliation of an object (sets spec.suspend).
    Suspend(suspend::SuspendArgs),
    /// Resume reconciliation of a suspended object and wait for its result.
    Resume(suspend::ResumeArgs),
}

/// Parses `args` and runs the command, writing to stdout/stderr.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let result = match &cli.command {
        Command::Build(a) => build::run(a, &mut stdout.lock(), &mut stderr.lock()),
        Command::Up(a) => up::run(a),
        Command::Get(a) => get::run(a, &mut stdout.lock()),
        Command::Reconcile(a) => reconcile::run(a, &mut stdout.lock()),
        Command::Suspend(a) => suspend::suspend(a, &mut stdout.lock()),
        Command::Resume(a) => suspend::resume(a, &mut stdout.lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut err = stderr.lock();
            let _ = writeln!(err, "Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
