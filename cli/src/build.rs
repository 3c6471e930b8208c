//! `riptide build DIR`: like `kustomize build`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

/// Arguments of `riptide build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The kustomization directory to build.
    pub dir: PathBuf,
    /// Confinement root: nothing outside it is read. Defaults to the
    /// filesystem root, so only kustomize's own per-kustomization
    /// restrictions apply (as with `kustomize build`).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Largest file the build may read, in bytes.
    #[arg(long, default_value_t = kustomize::DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
}

/// Builds and writes the YAML to `out`, warnings to `err`.
pub fn run(args: &BuildArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("{}: cannot open directory", args.dir.display()))?;
    let root = match &args.root {
        Some(r) => r
            .canonicalize()
            .with_context(|| format!("{}: cannot open root", r.display()))?,
        None => dir
            .ancestors()
            .last()
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.clone()),
    };
    let opts = kustomize::BuildOptions {
        max_file_size: args.max_file_size,
    };
    let output = kustomize::build(&root, &dir, &opts)?;
    for w in &output.warnings {
        writeln!(err, "# Warning: {w}")?;
    }
    out.write_all(output.to_yaml().as_bytes())?;
    Ok(())
}
