//! Build: `kustomization.yaml` generated when absent (Flux's rules), the Kustomization's overlay fields layered
//! over it, the `kustomize` crate's root-confined build, post-build substitution, `commonMetadata` and the owner
//! labels.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use common::api::kustomize_v1::{Image, KustomizationSpec, Patch, Selector, SubstituteStrategy};
use common::api::meta::annotations::{DISABLED_VALUE, KUSTOMIZE_SUBSTITUTE};
use common::api::meta::labels::{KUSTOMIZE_NAME, KUSTOMIZE_NAMESPACE};
use kustomize::{Map, Value as KValue};
use serde_json::Value;
use sha2::Digest as _;

use super::decrypt::{DecryptError, Decryptor};
use super::envsubst;

/// Kustomization file names kustomize recognises, in its order.
pub const KUSTOMIZATION_FILES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];
const VAR_NAME_PATTERN: &str = "^[_[:alpha:]][_[:alpha:][:digit:]]*$";

/// Why the manifests could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("kustomization path not found: stat {0}: no such file or directory")]
    PathNotFound(String),
    #[error("failed to generate kustomization.yaml: {0}")]
    Generate(String),
    #[error("failed to decode Kubernetes YAML from {path}: {reason}")]
    Decode { path: String, reason: String },
    #[error("component path '{0}' must be local and relative")]
    Component(String),
    #[error("kustomize build failed: {0}")]
    Kustomize(String),
    #[error("failed to decode Kubernetes apiVersion, kind and name from: {0}")]
    NotAnObject(String),
    #[error("'{0}' var name is invalid, must match '{VAR_NAME_PATTERN}'")]
    VarName(String),
    #[error(
        "post build failed for '{object}': envsubst error: variable substitution failed: {source}"
    )]
    Substitute {
        object: String,
        #[source]
        source: envsubst::SubstError,
    },
    #[error("post build failed for '{0}': YAMLToJSON: the substituted manifest is not valid YAML")]
    SubstitutedYaml(String),
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    #[error("{0}")]
    Other(String),
}

/// The build result: the objects, and the digest of their YAML (for `status.history`).
#[derive(Debug)]
pub struct Built {
    pub objects: Vec<Value>,
    pub digest: String,
}

/// `root/path` joined lexically and confined to `root` (Flux's secure join): `..` never climbs above `root`,
/// and absolute paths are taken inside it.
pub fn secure_join(root: &Path, path: &Path) -> PathBuf {
    let mut out = root.to_path_buf();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Normal(p) => {
                out.push(p);
                depth += 1;
            }
            Component::ParentDir if depth > 0 => {
                out.pop();
                depth -= 1;
            }
            _ => {}
        }
    }
    out
}

/// `root/path`, confined to `root` (see [`secure_join`]); it must be a directory.
pub fn resolve_path(root: &Path, path: &str) -> Result<PathBuf, BuildError> {
    let out = secure_join(root, Path::new(path));
    if !out.is_dir() {
        return Err(BuildError::PathNotFound(
            Path::new("/")
                .join(out.strip_prefix(root).unwrap_or(&out))
                .display()
                .to_string(),
        ));
    }
    Ok(out)
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Flux's `scanManifests`: directories holding a kustomization file, and YAML files that parse.
fn scan(root: &Path, base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), BuildError> {
    let io = |e: std::io::Error| BuildError::Generate(e.to_string());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let relative = format!("./{}", path.strip_prefix(base).unwrap_or(&path).display());
        if path.is_dir() {
            if KUSTOMIZATION_FILES.iter().any(|k| path.join(k).is_file()) {
                out.push(relative);
            } else {
                scan(root, base, &path, out)?;
            }
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str());
        if !matches!(ext, Some("yaml") | Some("yml")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        kustomize::yaml::parse_documents(&text).map_err(|reason| BuildError::Decode {
            path: rel(root, &path),
            reason,
        })?;
        out.push(relative);
    }
    Ok(())
}

fn s(v: &str) -> KValue {
    KValue::Str(v.to_string())
}

fn selector_value(sel: &Selector) -> KValue {
    let mut m = Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            m.insert(k.to_string(), s(v));
        }
    };
    put("group", &sel.group);
    put("version", &sel.version);
    put("kind", &sel.kind);
    put("name", &sel.name);
    put("namespace", &sel.namespace);
    put("labelSelector", &sel.label_selector);
    put("annotationSelector", &sel.annotation_selector);
    KValue::Map(m)
}

fn patch_value(p: &Patch) -> KValue {
    let mut m = Map::new();
    m.insert("patch".into(), s(&p.patch));
    if let Some(t) = &p.target {
        m.insert("target".into(), selector_value(t));
    }
    KValue::Map(m)
}

fn merge_images(list: &mut Vec<KValue>, images: &[Image]) {
    for image in images {
        let existing = list
            .iter_mut()
            .filter_map(|v| v.as_map_mut())
            .find(|m| m.get("name").and_then(|n| n.as_str()) == Some(image.name.as_str()));
        match existing {
            Some(m) => {
                if let Some(n) = image.new_name.as_deref().filter(|n| !n.is_empty()) {
                    m.insert("newName".into(), s(n));
                }
                if image.new_tag.is_some() || image.digest.is_some() {
                    for (k, v) in [("newTag", &image.new_tag), ("digest", &image.digest)] {
                        match v.as_deref().filter(|v| !v.is_empty()) {
                            Some(v) => m.insert(k.into(), s(v)),
                            None => m.remove(k),
                        };
                    }
                }
            }
            None => {
                let mut m = Map::new();
                m.insert("name".into(), s(&image.name));
                for (k, v) in [
                    ("newName", &image.new_name),
                    ("newTag", &image.new_tag),
                    ("digest", &image.digest),
                ] {
                    if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                        m.insert(k.into(), s(v));
                    }
                }
                list.push(KValue::Map(m));
            }
        }
    }
}

fn is_local_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.contains("://")
        && !path.is_absolute()
        && !path.components().any(|c| matches!(c, Component::Prefix(_)))
}

/// Writes `dir`'s kustomization file, generated when absent, with the Kustomization's overlay fields.
pub fn generate(root: &Path, dir: &Path, spec: &KustomizationSpec) -> Result<(), BuildError> {
    let io = |e: std::io::Error| BuildError::Generate(e.to_string());
    let existing = KUSTOMIZATION_FILES
        .iter()
        .map(|k| dir.join(k))
        .find(|p| p.is_file());
    let (file, mut kus) = match existing {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let value = kustomize::yaml::parse_one(&text).map_err(|reason| BuildError::Decode {
                path: rel(root, &path),
                reason,
            })?;
            let map = match value {
                KValue::Map(m) => m,
                KValue::Null => Map::new(),
                _ => {
                    return Err(BuildError::Decode {
                        path: rel(root, &path),
                        reason: "not a map".into(),
                    });
                }
            };
            (path, map)
        }
        None => {
            let mut resources = Vec::new();
            scan(root, dir, dir, &mut resources)?;
            let mut m = Map::new();
            m.insert("apiVersion".into(), s("kustomize.config.k8s.io/v1beta1"));
            m.insert("kind".into(), s("Kustomization"));
            if resources.is_empty() {
                m.insert("namespace".into(), s("_placeholder"));
            } else {
                m.insert(
                    "resources".into(),
                    KValue::Seq(resources.iter().map(|r| s(r)).collect()),
                );
            }
            (dir.join(KUSTOMIZATION_FILES[0]), m)
        }
    };
    if let Some(ns) = spec.target_namespace.as_deref() {
        kus.insert("namespace".into(), s(ns));
    }
    if let Some(p) = spec.name_prefix.as_deref() {
        kus.insert("namePrefix".into(), s(p));
    }
    if let Some(p) = spec.name_suffix.as_deref() {
        kus.insert("nameSuffix".into(), s(p));
    }
    let seq = |kus: &mut Map, key: &str| -> Vec<KValue> {
        match kus.remove(key) {
            Some(KValue::Seq(v)) => v,
            _ => Vec::new(),
        }
    };
    if let Some(patches) = spec.patches.as_deref().filter(|p| !p.is_empty()) {
        let mut list = seq(&mut kus, "patches");
        list.extend(patches.iter().map(patch_value));
        kus.insert("patches".into(), KValue::Seq(list));
    }
    if let Some(components) = spec.components.as_deref().filter(|c| !c.is_empty()) {
        let mut list = seq(&mut kus, "components");
        for c in components {
            if !is_local_relative(c) {
                return Err(BuildError::Component(c.clone()));
            }
            if spec.ignore_missing_components.unwrap_or(false) && !dir.join(c).exists() {
                continue;
            }
            list.push(s(c));
        }
        kus.insert("components".into(), KValue::Seq(list));
    }
    if let Some(images) = spec.images.as_deref().filter(|i| !i.is_empty()) {
        let mut list = seq(&mut kus, "images");
        merge_images(&mut list, images);
        kus.insert("images".into(), KValue::Seq(list));
    }
    if let Some(meta) = spec.build_metadata.as_deref().filter(|b| !b.is_empty()) {
        let list = meta
            .iter()
            .map(|o| {
                s(match o {
                    common::api::kustomize_v1::BuildMetadataOption::OriginAnnotations => {
                        "originAnnotations"
                    }
                    common::api::kustomize_v1::BuildMetadataOption::TransformerAnnotations => {
                        "transformerAnnotations"
                    }
                })
            })
            .collect();
        kus.insert("buildMetadata".into(), KValue::Seq(list));
    }
    std::fs::write(&file, kustomize::yaml::emit(&KValue::Map(kus))).map_err(io)?;
    Ok(())
}

fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Post-build settings, resolved before the (blocking) build runs.
#[derive(Clone, Debug, Default)]
pub struct PostBuild {
    /// The variables, `substituteFrom` first (later references win) then `substitute`. `None`: no postBuild.
    pub vars: Option<BTreeMap<String, String>>,
    /// `substituteStrategy: Always`.
    pub always: bool,
    /// Unset variables without a default fail (`StrictPostBuildSubstitutions`).
    pub strict: bool,
}

fn gvk_name(v: &KValue) -> String {
    let api_version = v.str_at(&["apiVersion"]).unwrap_or_default();
    let (group, version) = super::inventory::split_api_version(api_version);
    let kind = v.str_at(&["kind"]).unwrap_or_default();
    let name = v.str_at(&["metadata", "name"]).unwrap_or_default();
    if group.is_empty() {
        format!("{version}, Kind={kind}/{name}")
    } else {
        format!("{group}/{version}, Kind={kind}/{name}")
    }
}

fn substitution_disabled(v: &KValue) -> bool {
    ["labels", "annotations"]
        .iter()
        .any(|field| v.str_at(&["metadata", field, KUSTOMIZE_SUBSTITUTE]) == Some(DISABLED_VALUE))
}

/// Converts a kustomize value to JSON.
pub fn to_json(v: &KValue) -> Value {
    match v {
        KValue::Bool(b) => Value::Bool(*b),
        KValue::Int(i) => Value::from(*i),
        KValue::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        KValue::Str(s) => Value::String(s.clone()),
        KValue::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        KValue::Map(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        // Null, and whatever null-like variants the engine grows.
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}

/// Generates the kustomization, decrypts the SOPS sources it names (with `decryptor`), builds `dir` confined to
/// `root`, decrypts the SOPS objects, and runs post-build substitution.
pub fn build(
    root: &Path,
    dir: &Path,
    spec: &KustomizationSpec,
    post: &PostBuild,
    decryptor: Option<&Decryptor>,
) -> Result<Built, BuildError> {
    generate(root, dir, spec)?;
    if let Some(d) = decryptor {
        d.decrypt_sources(root, dir)?;
    }
    let root_text = root.display().to_string();
    let out = kustomize::build(root, dir, &kustomize::BuildOptions::default())
        .map_err(|e| BuildError::Kustomize(e.to_string().replace(&root_text, "")))?;
    let mut objects = out.objects;
    for obj in &objects {
        let ok = ["apiVersion", "kind"]
            .iter()
            .all(|k| obj.str_at(&[k]).is_some_and(|s| !s.is_empty()))
            && obj
                .str_at(&["metadata", "name"])
                .is_some_and(|s| !s.is_empty());
        if !ok {
            return Err(BuildError::NotAnObject(gvk_name(obj)));
        }
    }
    if let Some(d) = decryptor {
        for obj in objects.iter_mut() {
            d.decrypt_resource(obj)?;
        }
    }
    if let Some(vars) = &post.vars {
        if let Some(bad) = vars.keys().find(|k| !valid_var_name(k)) {
            return Err(BuildError::VarName(bad.clone()));
        }
        if !vars.is_empty() || post.always {
            for obj in objects.iter_mut() {
                if substitution_disabled(obj) {
                    continue;
                }
                let text = kustomize::yaml::emit(obj);
                let substituted =
                    envsubst::substitute(&text, vars, post.strict).map_err(|source| {
                        BuildError::Substitute {
                            object: gvk_name(obj),
                            source,
                        }
                    })?;
                if substituted != text {
                    *obj = kustomize::yaml::parse_one(&substituted)
                        .map_err(|_| BuildError::SubstitutedYaml(gvk_name(obj)))?;
                }
            }
        }
    }
    let yaml = kustomize::yaml::emit_documents(&objects);
    let digest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(yaml.as_bytes()))
    );
    Ok(Built {
        objects: objects.iter().map(to_json).collect(),
        digest,
    })
}

/// The variables for `postBuild`: `substituteFrom` data (later references override earlier ones), then
/// `substitute`; newlines are removed from values as Flux does.
pub fn merge_vars(
    from: Vec<BTreeMap<String, String>>,
    substitute: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for data in from {
        for (k, v) in data {
            vars.insert(k, v.replace('\n', ""));
        }
    }
    for (k, v) in substitute.into_iter().flatten() {
        vars.insert(k.clone(), v.replace('\n', ""));
    }
    vars
}

/// Whether `substituteStrategy: Always` is set.
pub fn always(spec: &KustomizationSpec) -> bool {
    spec.substitute_strategy() == SubstituteStrategy::Always
}

/// `commonMetadata` and the owner labels, on every object.
pub fn set_metadata(objects: &mut [Value], spec: &KustomizationSpec, name: &str, namespace: &str) {
    for obj in objects.iter_mut() {
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        let mut put = |field: &str, entries: &mut dyn Iterator<Item = (String, String)>| {
            let target = meta
                .entry(field)
                .or_insert_with(|| Value::Object(Default::default()));
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Some(m) = target.as_object_mut() {
                for (k, v) in entries {
                    m.insert(k, Value::String(v));
                }
            }
        };
        if let Some(cm) = &spec.common_metadata {
            if let Some(labels) = cm.labels.as_ref().filter(|l| !l.is_empty()) {
                put("labels", &mut labels.clone().into_iter());
            }
            if let Some(ann) = cm.annotations.as_ref().filter(|a| !a.is_empty()) {
                put("annotations", &mut ann.clone().into_iter());
            }
        }
        put(
            "labels",
            &mut [
                (KUSTOMIZE_NAME.to_string(), name.to_string()),
                (KUSTOMIZE_NAMESPACE.to_string(), namespace.to_string()),
            ]
            .into_iter(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> KustomizationSpec {
        serde_json::from_value(serde_json::json!({
            "interval": "1m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "repo"}
        }))
        .map(|mut s: KustomizationSpec| {
            if !yaml.is_empty() {
                let extra: serde_json::Value = serde_json::from_str(yaml).unwrap();
                let mut base = serde_json::to_value(&s).unwrap();
                for (k, v) in extra.as_object().unwrap() {
                    base[k] = v.clone();
                }
                s = serde_json::from_value(base).unwrap();
            }
            s
        })
        .unwrap()
    }

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (p, c) in files {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
    }

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  env: ${env:=dev}\n  region: ${region}\n";

    #[test]
    fn generates_a_kustomization_from_plain_manifests_and_overlays_spec_fields() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("deploy/cm.yaml", CM),
                ("deploy/notes.txt", "ignored"),
                ("deploy/sub/kustomization.yaml", "resources: [sa.yaml]\n"),
                (
                    "deploy/sub/sa.yaml",
                    "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n",
                ),
            ],
        );
        let sp = spec(r#"{"targetNamespace": "apps", "namePrefix": "p-"}"#);
        let path = resolve_path(dir.path(), "./deploy").unwrap();
        let built = build(dir.path(), &path, &sp, &PostBuild::default(), None).unwrap();
        let names: Vec<_> = built
            .objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert!(
            names.contains(&"ConfigMap/apps/p-cfg".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"ServiceAccount/apps/p-sa".to_string()),
            "{names:?}"
        );
        assert!(built.digest.starts_with("sha256:"));
    }

    #[test]
    fn path_is_confined_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("a/x.yaml", CM)]);
        assert_eq!(
            resolve_path(dir.path(), "../../a").unwrap(),
            dir.path().join("a")
        );
        assert!(matches!(
            resolve_path(dir.path(), "./missing"),
            Err(BuildError::PathNotFound(_))
        ));
    }

    #[test]
    fn substitutes_with_precedence_and_opt_out() {
        let dir = tempfile::tempdir().unwrap();
        let disabled = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: raw\n  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\ndata:\n  v: ${region}\n";
        write(dir.path(), &[("cm.yaml", CM), ("raw.yaml", disabled)]);
        let from = vec![
            BTreeMap::from([("region".to_string(), "eu\n".to_string())]),
            BTreeMap::from([("region".to_string(), "us".to_string())]),
        ];
        let sub = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let post = PostBuild {
            vars: Some(merge_vars(from, Some(&sub))),
            always: false,
            strict: false,
        };
        let sp = spec("");
        let built = build(dir.path(), dir.path(), &sp, &post, None).unwrap();
        let cm = built
            .objects
            .iter()
            .find(|o| o["metadata"]["name"] == "cfg")
            .unwrap();
        assert_eq!(cm["data"]["env"], "prod");
        assert_eq!(cm["data"]["region"], "us");
        let raw = built
            .objects
            .iter()
            .find(|o| o["metadata"]["name"] == "raw")
            .unwrap();
        assert_eq!(raw["data"]["v"], "${region}");
    }

    #[test]
    fn strict_mode_and_bad_names_fail() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("cm.yaml", CM)]);
        let sp = spec("");
        let strict = PostBuild {
            vars: Some(BTreeMap::from([("env".into(), "x".into())])),
            always: false,
            strict: true,
        };
        let err = build(dir.path(), dir.path(), &sp, &strict, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("variable not set (strict mode): \"region\""),
            "{err}"
        );
        let bad = PostBuild {
            vars: Some(BTreeMap::from([("bad-name".into(), "x".into())])),
            ..Default::default()
        };
        assert!(matches!(
            build(dir.path(), dir.path(), &sp, &bad, None),
            Err(BuildError::VarName(_))
        ));
    }

    #[test]
    fn owner_labels_and_common_metadata() {
        let mut objects = vec![
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
        ];
        let sp = spec(
            r#"{"commonMetadata": {"labels": {"team": "a"}, "annotations": {"owner": "me"}}}"#,
        );
        set_metadata(&mut objects, &sp, "apps", "flux-system");
        let m = &objects[0]["metadata"];
        assert_eq!(m["labels"]["team"], "a");
        assert_eq!(m["labels"][KUSTOMIZE_NAME], "apps");
        assert_eq!(m["labels"][KUSTOMIZE_NAMESPACE], "flux-system");
        assert_eq!(m["annotations"]["owner"], "me");
    }
}
