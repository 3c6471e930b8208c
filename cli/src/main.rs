//! The `riptide` binary: parse flags, run.

fn main() -> std::process::ExitCode {
    cli::run(std::env::args_os())
}
