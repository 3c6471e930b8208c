//! Prints every CRD Riptide serves, or writes one file per CRD into a directory.
//!
//! `crdgen` prints a multi-document YAML stream; `crdgen --out-dir charts/riptide/crds` writes
//! `<group>_<plural>.yaml` files, the layout the chart and `check.py` read.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => print!("{}", common::api::crd_yaml_stream()?),
        [flag, dir] if flag == "--out-dir" => {
            let dir = std::path::Path::new(dir);
            std::fs::create_dir_all(dir)?;
            for (file, yaml) in common::api::crd_files()? {
                std::fs::write(dir.join(file), yaml)?;
            }
        }
        _ => anyhow::bail!("usage: crdgen [--out-dir DIR]"),
    }
    Ok(())
}
