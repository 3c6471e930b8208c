//! The committed CRDs under `charts/riptide/crds/` must be exactly what `crdgen` generates from the Rust types.

use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn committed_crds_match_crdgen_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/riptide/crds");
    let generated: BTreeMap<String, String> =
        common::api::crd_files().unwrap().into_iter().collect();
    let mut committed = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            committed.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    let stale: Vec<_> = generated
        .iter()
        .filter(|(name, yaml)| committed.get(*name) != Some(*yaml))
        .map(|(name, _)| name.clone())
        .collect();
    let extra: Vec<_> = committed
        .keys()
        .filter(|name| !generated.contains_key(*name))
        .collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "charts/riptide/crds is out of date (stale or missing: {stale:?}; not generated: {extra:?}); \
         run `cargo run -p common --bin crdgen -- --out-dir charts/riptide/crds`"
    );
}

#[test]
fn every_crd_has_flux_names_and_one_storage_version() {
    for crd in common::api::crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.list_kind.as_deref(),
            Some(format!("{}List", names.kind).as_str())
        );
        assert!(
            crd.spec.group.ends_with(".toolkit.fluxcd.io"),
            "{}",
            crd.spec.group
        );
        let storage = crd.spec.versions.iter().filter(|v| v.storage).count();
        assert_eq!(
            storage, 1,
            "{} must have exactly one storage version",
            names.kind
        );
        let root = crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap();
        assert!(
            root.required.is_none(),
            "{}: Flux's root schema requires nothing",
            names.kind
        );
    }
}
