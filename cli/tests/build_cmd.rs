//! `riptide build` end to end: the binary prints YAML on success and fails
//! with a message naming the file on error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kustomize/testdata")
        .join(name)
}

#[test]
fn build_prints_the_objects() {
    let case = fixture("generator-behaviors");
    let out = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .arg("build")
        .arg(case.join("input/overlay"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = std::fs::read_to_string(case.join("expected.yaml")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}

#[test]
fn build_errors_go_to_stderr_with_a_non_zero_exit() {
    let case = fixture("error-outside-root");
    let out = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .arg("build")
        .arg(case.join("input/app"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("kustomization.yaml") && err.contains("security"),
        "{err}"
    );
}

#[test]
fn root_flag_confines_the_build() {
    let case = fixture("generator-behaviors");
    let overlay = case.join("input/overlay");
    let out = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .arg("build")
        .arg("--root")
        .arg(&overlay)
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("security"));
}
