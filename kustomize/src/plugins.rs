//! Builtin plugin configurations named by `transformers:` / `generators:`
//! (`apiVersion: builtin`). Non-builtin plugins (exec, container, Go) are refused.

use std::path::Path;

use crate::build::{Builder, apply_patch_entry, json6902_on_targets, parse_json_patch, smp_by_id};
use crate::error::{Error, Result};
use crate::fieldspec::{FieldSpec, TransformerConfig};
use crate::kustomization::{Image, Kustomization, PatchArgs};
use crate::resource::Resource;
use crate::transformers;
use crate::value::Value;
use crate::yaml;

fn specs(v: &Value, file: &Path) -> Result<Vec<FieldSpec>> {
    let mut out = Vec::new();
    for f in v
        .get("fieldSpecs")
        .and_then(Value::as_seq)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        out.push(FieldSpec::from_value(f).map_err(|e| Error::field(file, "transformers", e))?);
    }
    Ok(out)
}

fn string_map(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    v.and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.scalar_string().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn check_builtin(cfg: &Value, file: &Path, field: &str) -> Result<String> {
    let api = cfg.str_at(&["apiVersion"]).unwrap_or("");
    let kind = cfg.str_at(&["kind"]).unwrap_or("").to_string();
    if api != "builtin" {
        return Err(Error::Unsupported {
            file: file.to_path_buf(),
            field: field.into(),
            what: format!("non-builtin plugin {api}/{kind}"),
        });
    }
    Ok(kind)
}

/// Parses a generator config (ConfigMapGenerator / SecretGenerator) into a kustomization fragment.
pub(crate) fn generator_kustomization(cfg: &Value, file: &Path) -> Result<(Kustomization, bool)> {
    let kind = check_builtin(cfg, file, "generators")?;
    let secret = match kind.as_str() {
        "ConfigMapGenerator" => false,
        "SecretGenerator" => true,
        other => {
            return Err(Error::Unsupported {
                file: file.to_path_buf(),
                field: "generators".into(),
                what: format!("builtin generator {other}"),
            });
        }
    };
    let mut entry = cfg.clone();
    if let Some(m) = entry.as_map_mut() {
        let meta = m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(meta) = meta {
            if let Some(n) = meta.get("name") {
                m.insert("name".into(), n.clone());
            }
            if let Some(n) = meta.get("namespace") {
                m.insert("namespace".into(), n.clone());
            }
        }
    }
    let mut km = crate::value::Map::new();
    km.insert(
        if secret {
            "secretGenerator"
        } else {
            "configMapGenerator"
        }
        .into(),
        Value::Seq(vec![entry]),
    );
    Ok((Kustomization::from_value(&Value::Map(km), file)?, secret))
}

/// Applies one builtin transformer config.
pub(crate) fn apply_transformer(
    b: &Builder,
    dir: &Path,
    cfg: &Value,
    resources: &mut [Resource],
    tc: &TransformerConfig,
    file: &Path,
) -> Result<()> {
    let kind = check_builtin(cfg, file, "transformers")?;
    let ferr = |e: String| Error::field(file, "transformers", format!("{kind}: {e}"));
    match kind.as_str() {
        "LabelTransformer" => transformers::set_map_entries(
            resources,
            &string_map(cfg.get("labels")),
            &specs(cfg, file)?,
        )
        .map_err(ferr),
        "AnnotationsTransformer" => transformers::set_map_entries(
            resources,
            &string_map(cfg.get("annotations")),
            &specs(cfg, file)?,
        )
        .map_err(ferr),
        "NamespaceTransformer" => {
            let ns = cfg.str_at(&["metadata", "namespace"]).unwrap_or("");
            if ns.is_empty() {
                return Ok(());
            }
            let s = specs(cfg, file)?;
            transformers::namespace(resources, ns, if s.is_empty() { &tc.namespace } else { &s })
                .map_err(ferr)
        }
        "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" => {
            let s = specs(cfg, file)?;
            if let Some(p) = cfg.str_at(&["prefix"]).filter(|p| !p.is_empty()) {
                transformers::prefix_suffix(resources, p, true, &s).map_err(ferr)?;
            }
            if let Some(p) = cfg.str_at(&["suffix"]).filter(|p| !p.is_empty()) {
                transformers::prefix_suffix(resources, p, false, &s).map_err(ferr)?;
            }
            Ok(())
        }
        "ImageTagTransformer" => {
            let it = cfg.get("imageTag");
            let g = |k: &str| {
                it.and_then(|i| i.get(k))
                    .and_then(Value::scalar_string)
                    .unwrap_or_default()
            };
            let im = Image {
                name: g("name"),
                new_name: g("newName"),
                new_tag: g("newTag"),
                digest: g("digest"),
                tag_suffix: g("tagSuffix"),
            };
            transformers::images(resources, &im, &specs(cfg, file)?).map_err(ferr)
        }
        "ReplicaCountTransformer" => {
            let name = cfg.str_at(&["replica", "name"]).unwrap_or("").to_string();
            let count = cfg
                .get_path(&["replica", "count"])
                .cloned()
                .unwrap_or(Value::Int(0));
            transformers::replicas(resources, &name, &count, &specs(cfg, file)?).map_err(ferr)
        }
        "PatchTransformer" => {
            let pk = Kustomization::from_value(
                &Value::Map(
                    [(
                        "patches".to_string(),
                        Value::Seq(vec![{
                            let mut c = cfg.clone();
                            if let Some(m) = c.as_map_mut() {
                                m.remove("apiVersion");
                                m.remove("kind");
                                m.remove("metadata");
                            }
                            c
                        }]),
                    )]
                    .into_iter()
                    .collect(),
                ),
                file,
            )?;
            for p in &pk.patches {
                let text = patch_text(b, dir, p, file)?;
                apply_patch_entry(resources, &text, p, file, "transformers")?;
            }
            Ok(())
        }
        "PatchStrategicMergeTransformer" => {
            let mut texts = Vec::new();
            for p in cfg
                .get("paths")
                .and_then(Value::as_seq)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                if let Some(p) = p.as_str() {
                    texts.push(b.plugin_read(dir, p, file, "transformers")?);
                }
            }
            if let Some(p) = cfg.str_at(&["patches"]) {
                texts.push(p.to_string());
            }
            for t in texts {
                let docs = yaml::parse_documents(&t).map_err(|message| Error::Yaml {
                    file: file.to_path_buf(),
                    message,
                })?;
                for d in docs.into_iter().filter(|d| !d.is_null()) {
                    smp_by_id(resources, &d, false, false).map_err(ferr)?;
                }
            }
            Ok(())
        }
        "PatchJson6902Transformer" => {
            let text = match cfg.str_at(&["jsonOp"]) {
                Some(op) => op.to_string(),
                None => {
                    let p = cfg.str_at(&["path"]).unwrap_or("");
                    b.plugin_read(dir, p, file, "transformers")?
                }
            };
            let ops = parse_json_patch(&text).map_err(ferr)?;
            let pk = Kustomization::from_value(
                &Value::Map(
                    [(
                        "patchesJson6902".to_string(),
                        Value::Seq(vec![{
                            let mut m = crate::value::Map::new();
                            if let Some(t) = cfg.get("target") {
                                m.insert("target".into(), t.clone());
                            }
                            m.insert("patch".into(), Value::Str("x".into()));
                            Value::Map(m)
                        }]),
                    )]
                    .into_iter()
                    .collect(),
                ),
                file,
            )?;
            let Some(target) = pk.patches_json6902.first().and_then(|p| p.target.clone()) else {
                return Err(ferr("must specify a target for JSON patch".into()));
            };
            json6902_on_targets(resources, &target, &ops).map_err(ferr)
        }
        "ReplacementTransformer" => {
            let mut list = Vec::new();
            for r in cfg
                .get("replacements")
                .and_then(Value::as_seq)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                if let Some(p) = r.str_at(&["path"]) {
                    let text = b.plugin_read(dir, p, file, "transformers")?;
                    for d in yaml::parse_documents(&text).map_err(|message| Error::Yaml {
                        file: dir.join(p),
                        message,
                    })? {
                        match d {
                            Value::Seq(items) => list.extend(items),
                            Value::Null | Value::EmptyNull => {}
                            other => list.push(other),
                        }
                    }
                } else {
                    list.push(r.clone());
                }
            }
            crate::replacements::apply(resources, &list).map_err(ferr)
        }
        other => Err(Error::Unsupported {
            file: file.to_path_buf(),
            field: "transformers".into(),
            what: format!("builtin transformer {other}"),
        }),
    }
}

fn patch_text(b: &Builder, dir: &Path, p: &PatchArgs, file: &Path) -> Result<String> {
    if !p.patch.trim().is_empty() {
        Ok(p.patch.clone())
    } else {
        b.plugin_read(dir, &p.path, file, "transformers")
    }
}
