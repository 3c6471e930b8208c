//! Golden tests: every fixture under `testdata/<case>/` is built and compared
//! with what the real kustomize (v5.5, via `kubectl kustomize`) printed for it,
//! as recorded by `testdata/regenerate.sh`.
//!
//! - `expected.yaml`: the build must succeed and produce the same objects in
//!   the same order (compared as parsed YAML values).
//! - `expected-error.txt`: the build must fail, and the error must name a file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use kustomize::{BuildOptions, Value, build, yaml};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn docs(text: &str) -> Vec<Value> {
    yaml::parse_documents(text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn entry(case: &Path) -> PathBuf {
    let e = std::fs::read_to_string(case.join("ENTRY")).unwrap_or_else(|_| "input".into());
    case.join(e.trim())
}

fn run_case(case: &Path) -> Result<(), String> {
    let name = case.file_name().unwrap().to_string_lossy().to_string();
    let result = build(case, &entry(case), &BuildOptions::default());
    if case.join("expected.yaml").exists() {
        let want = std::fs::read_to_string(case.join("expected.yaml")).unwrap();
        let out = result.map_err(|e| format!("{name}: build failed: {e}"))?;
        let got_text = out.to_yaml();
        let (want, got) = (docs(&want), docs(&got_text));
        if want.len() != got.len() {
            return Err(format!(
                "{name}: {} objects, expected {}\n{got_text}",
                got.len(),
                want.len()
            ));
        }
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            if w != g {
                return Err(format!(
                    "{name}: object {i} differs\n--- got\n{}--- expected\n{}",
                    yaml::emit(g),
                    yaml::emit(w)
                ));
            }
        }
        Ok(())
    } else if case.join("expected-error.txt").exists() {
        match result {
            Ok(_) => Err(format!("{name}: built, but kustomize refuses this tree")),
            Err(e) => {
                let msg = e.to_string();
                if msg.contains(case.to_string_lossy().as_ref()) || msg.contains("kustomization") {
                    Ok(())
                } else {
                    Err(format!("{name}: error does not name a file: {msg}"))
                }
            }
        }
    } else {
        Err(format!(
            "{name}: no expected.yaml or expected-error.txt; run testdata/regenerate.sh"
        ))
    }
}

#[test]
fn golden_fixtures_match_kustomize() {
    let failures: Vec<String> = cases().iter().filter_map(|c| run_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn refuses_files_over_the_size_cap() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/resources-nested");
    let opts = BuildOptions { max_file_size: 64 };
    let err = build(&case, &entry(&case), &opts).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
}

#[test]
fn nothing_outside_the_build_root_is_read() {
    // Building an overlay that references ../base with the overlay itself as
    // the root must fail: the base is outside the root.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/generator-behaviors");
    let overlay = case.join("input/overlay");
    let err = build(&overlay, &overlay, &BuildOptions::default()).unwrap_err();
    assert!(err.to_string().contains("security"), "{err}");
}
