//! The `Kustomization` / `Component` file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fieldspec::FieldSpec;
use crate::value::Value;

/// File names a kustomization directory may hold, in kustomize's order.
pub const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

const KNOWN_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "openapi",
    "namePrefix",
    "nameSuffix",
    "namespace",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "patchesStrategicMerge",
    "patchesJson6902",
    "patches",
    "images",
    "imageTags",
    "replacements",
    "replicas",
    "vars",
    "sortOptions",
    "resources",
    "components",
    "crds",
    "bases",
    "configMapGenerator",
    "secretGenerator",
    "helmGlobals",
    "helmCharts",
    "helmChartInflationGenerator",
    "generatorOptions",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "buildMetadata",
];

/// A patch target selector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    /// group.
    pub group: String,
    /// version.
    pub version: String,
    /// kind.
    pub kind: String,
    /// name (a regex).
    pub name: String,
    /// namespace (a regex).
    pub namespace: String,
    /// label selector.
    pub label_selector: String,
    /// annotation selector.
    pub annotation_selector: String,
}

/// A `patches` / `patchesJson6902` entry.
#[derive(Debug, Clone, Default)]
pub struct PatchArgs {
    /// File holding the patch.
    pub path: String,
    /// Inline patch.
    pub patch: String,
    /// Target.
    pub target: Option<Selector>,
    /// options.allowNameChange.
    pub allow_name_change: bool,
    /// options.allowKindChange.
    pub allow_kind_change: bool,
}

/// An `images` entry.
#[derive(Debug, Clone, Default)]
pub struct Image {
    /// Image name to match.
    pub name: String,
    /// Replacement name.
    pub new_name: String,
    /// Replacement tag.
    pub new_tag: String,
    /// Replacement digest.
    pub digest: String,
    /// Suffix appended to the tag.
    pub tag_suffix: String,
}

/// A `labels` entry.
#[derive(Debug, Clone, Default)]
pub struct Label {
    /// The labels.
    pub pairs: BTreeMap<String, String>,
    /// Also set selectors.
    pub include_selectors: bool,
    /// Also set pod templates.
    pub include_templates: bool,
    /// Extra fields.
    pub fields: Vec<FieldSpec>,
}

/// Generator options.
#[derive(Debug, Clone, Default)]
pub struct GeneratorOptions {
    /// Labels added.
    pub labels: BTreeMap<String, String>,
    /// Annotations added.
    pub annotations: BTreeMap<String, String>,
    /// No hash suffix.
    pub disable_name_suffix_hash: bool,
    /// immutable: true.
    pub immutable: bool,
}

/// A configMapGenerator / secretGenerator entry.
#[derive(Debug, Clone, Default)]
pub struct GeneratorArgs {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// create / merge / replace.
    pub behavior: String,
    /// key=value literals.
    pub literals: Vec<String>,
    /// Files (`key=path` or `path`).
    pub files: Vec<String>,
    /// Env files.
    pub envs: Vec<String>,
    /// Options.
    pub options: Option<GeneratorOptions>,
    /// Secret type.
    pub secret_type: String,
}

/// A var.
#[derive(Debug, Clone, Default)]
pub struct Var {
    /// Name.
    pub name: String,
    /// Referenced object kind.
    pub kind: String,
    /// Referenced object name.
    pub obj_name: String,
    /// Referenced object apiVersion.
    pub api_version: String,
    /// Referenced object namespace.
    pub namespace: String,
    /// Field path.
    pub field_path: String,
}

/// sortOptions.
#[derive(Debug, Clone, Default)]
pub struct SortOptions {
    /// "legacy" or "fifo".
    pub order: String,
    /// legacy order first.
    pub order_first: Option<Vec<String>>,
    /// legacy order last.
    pub order_last: Option<Vec<String>>,
}

/// A parsed kustomization file.
#[derive(Debug, Clone, Default)]
pub struct Kustomization {
    /// The file it came from.
    pub file: PathBuf,
    /// "Kustomization" or "Component".
    pub kind: String,
    /// resources (and bases).
    pub resources: Vec<String>,
    /// components.
    pub components: Vec<String>,
    /// crds.
    pub crds: Vec<String>,
    /// namespace.
    pub namespace: String,
    /// namePrefix.
    pub name_prefix: String,
    /// nameSuffix.
    pub name_suffix: String,
    /// commonLabels.
    pub common_labels: BTreeMap<String, String>,
    /// labels.
    pub labels: Vec<Label>,
    /// commonAnnotations.
    pub common_annotations: BTreeMap<String, String>,
    /// patchesStrategicMerge (paths or inline patches).
    pub patches_strategic_merge: Vec<String>,
    /// patchesJson6902.
    pub patches_json6902: Vec<PatchArgs>,
    /// patches.
    pub patches: Vec<PatchArgs>,
    /// images.
    pub images: Vec<Image>,
    /// replicas.
    pub replicas: Vec<(String, Value)>,
    /// replacements (inline or `{path:}`).
    pub replacements: Vec<Value>,
    /// vars.
    pub vars: Vec<Var>,
    /// configMapGenerator.
    pub config_map_generator: Vec<GeneratorArgs>,
    /// secretGenerator.
    pub secret_generator: Vec<GeneratorArgs>,
    /// generatorOptions.
    pub generator_options: Option<GeneratorOptions>,
    /// configurations.
    pub configurations: Vec<String>,
    /// generators.
    pub generators: Vec<String>,
    /// transformers.
    pub transformers: Vec<String>,
    /// validators.
    pub validators: Vec<String>,
    /// sortOptions.
    pub sort_options: Option<SortOptions>,
    /// openapi.path.
    pub openapi_path: Option<String>,
    /// buildMetadata.
    pub build_metadata: Vec<String>,
}

struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, field: &str, msg: impl Into<String>) -> Error {
        Error::field(self.file, field, msg)
    }

    fn string(&self, v: &Value, field: &str) -> Result<String> {
        match v {
            Value::Null | Value::EmptyNull => Ok(String::new()),
            Value::Seq(_) | Value::Map(_) => Err(self.err(field, "expected a string")),
            other => Ok(other.scalar_string().unwrap_or_default()),
        }
    }

    fn strings(&self, v: Option<&Value>, field: &str) -> Result<Vec<String>> {
        match v {
            None | Some(Value::Null | Value::EmptyNull) => Ok(Vec::new()),
            Some(Value::Seq(items)) => items.iter().map(|i| self.string(i, field)).collect(),
            Some(_) => Err(self.err(field, "expected a list of strings")),
        }
    }

    fn string_map(&self, v: Option<&Value>, field: &str) -> Result<BTreeMap<String, String>> {
        match v {
            None | Some(Value::Null | Value::EmptyNull) => Ok(BTreeMap::new()),
            Some(Value::Map(m)) => m
                .iter()
                .map(|(k, v)| Ok((k.clone(), self.string(v, field)?)))
                .collect(),
            Some(_) => Err(self.err(field, "expected a map of strings")),
        }
    }

    fn bool(&self, v: Option<&Value>, field: &str) -> Result<bool> {
        match v {
            None | Some(Value::Null | Value::EmptyNull) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.err(field, "expected a boolean")),
        }
    }

    fn list<'v>(&self, v: Option<&'v Value>, field: &str) -> Result<&'v [Value]> {
        match v {
            None | Some(Value::Null | Value::EmptyNull) => Ok(&[]),
            Some(Value::Seq(items)) => Ok(items),
            Some(_) => Err(self.err(field, "expected a list")),
        }
    }

    fn selector(&self, v: &Value, field: &str) -> Result<Selector> {
        let g = |k: &str| -> Result<String> {
            v.get(k)
                .map(|x| self.string(x, field))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let mut s = Selector {
            group: g("group")?,
            version: g("version")?,
            kind: g("kind")?,
            name: g("name")?,
            namespace: g("namespace")?,
            label_selector: g("labelSelector")?,
            annotation_selector: g("annotationSelector")?,
        };
        if s.group.is_empty() && s.version.is_empty() {
            let av = g("apiVersion")?;
            if !av.is_empty() {
                let gvk = crate::resource::Gvk::from_api_version(&av, "");
                s.group = gvk.group;
                s.version = gvk.version;
            }
        }
        Ok(s)
    }

    fn patch(&self, v: &Value, field: &str) -> Result<PatchArgs> {
        if v.as_map().is_none() {
            return Err(self.err(field, "expected a map"));
        }
        let target = match v.get("target") {
            None | Some(Value::Null | Value::EmptyNull) => None,
            Some(t) => Some(self.selector(t, &format!("{field}.target"))?),
        };
        let opts = v.get("options");
        Ok(PatchArgs {
            path: v
                .get("path")
                .map(|x| self.string(x, field))
                .transpose()?
                .unwrap_or_default(),
            patch: v
                .get("patch")
                .map(|x| self.string(x, field))
                .transpose()?
                .unwrap_or_default(),
            target,
            allow_name_change: self.bool(
                opts.and_then(|o| o.get("allowNameChange")),
                "patches.options",
            )?,
            allow_kind_change: self.bool(
                opts.and_then(|o| o.get("allowKindChange")),
                "patches.options",
            )?,
        })
    }

    fn gen_options(&self, v: Option<&Value>, field: &str) -> Result<Option<GeneratorOptions>> {
        let Some(v) = v else { return Ok(None) };
        if v.is_null() {
            return Ok(None);
        }
        Ok(Some(GeneratorOptions {
            labels: self.string_map(v.get("labels"), field)?,
            annotations: self.string_map(v.get("annotations"), field)?,
            disable_name_suffix_hash: self.bool(v.get("disableNameSuffixHash"), field)?,
            immutable: self.bool(v.get("immutable"), field)?,
        }))
    }

    fn generator(&self, v: &Value, field: &str) -> Result<GeneratorArgs> {
        let s = |k: &str| -> Result<String> {
            v.get(k)
                .map(|x| self.string(x, field))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let mut envs = self.strings(v.get("envs"), field)?;
        let env = s("env")?;
        if !env.is_empty() {
            envs.push(env);
        }
        Ok(GeneratorArgs {
            name: s("name")?,
            namespace: s("namespace")?,
            behavior: s("behavior")?,
            literals: self.strings(v.get("literals"), field)?,
            files: self.strings(v.get("files"), field)?,
            envs,
            options: self.gen_options(v.get("options"), field)?,
            secret_type: s("type")?,
        })
    }
}

impl Kustomization {
    /// Parses a kustomization document.
    pub fn from_value(v: &Value, file: &Path) -> Result<Self> {
        let c = Ctx { file };
        let m = match v {
            Value::Map(m) => m,
            Value::Null | Value::EmptyNull => {
                return Err(Error::field(file, "", "kustomization.yaml is empty"));
            }
            _ => return Err(Error::field(file, "", "kustomization must be a map")),
        };
        if let Some(unknown) = m.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
            return Err(Error::field(
                file,
                unknown.as_str(),
                format!("invalid Kustomization: json: unknown field \"{unknown}\""),
            ));
        }
        if m.iter()
            .all(|(k, v)| k == "apiVersion" || k == "kind" || v.is_null())
        {
            return Err(Error::field(file, "", "kustomization.yaml is empty"));
        }
        let kind = m
            .get("kind")
            .map(|k| c.string(k, "kind"))
            .transpose()?
            .unwrap_or_default();
        let kind = if kind.is_empty() {
            "Kustomization".to_string()
        } else {
            kind
        };
        if kind != "Kustomization" && kind != "Component" {
            return Err(c.err("kind", format!("unknown kind '{kind}'")));
        }
        let mut k = Kustomization {
            file: file.to_path_buf(),
            kind,
            ..Default::default()
        };
        k.resources = c.strings(m.get("resources"), "resources")?;
        k.resources.extend(c.strings(m.get("bases"), "bases")?);
        k.components = c.strings(m.get("components"), "components")?;
        k.crds = c.strings(m.get("crds"), "crds")?;
        let s = |key: &str| -> Result<String> {
            m.get(key)
                .map(|x| c.string(x, key))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        k.namespace = s("namespace")?;
        k.name_prefix = s("namePrefix")?;
        k.name_suffix = s("nameSuffix")?;
        k.common_labels = c.string_map(m.get("commonLabels"), "commonLabels")?;
        k.common_annotations = c.string_map(m.get("commonAnnotations"), "commonAnnotations")?;
        for l in c.list(m.get("labels"), "labels")? {
            let mut fields = Vec::new();
            for f in c.list(l.get("fields"), "labels.fields")? {
                fields.push(FieldSpec::from_value(f).map_err(|e| c.err("labels.fields", e))?);
            }
            k.labels.push(Label {
                pairs: c.string_map(l.get("pairs"), "labels.pairs")?,
                include_selectors: c.bool(l.get("includeSelectors"), "labels.includeSelectors")?,
                include_templates: c.bool(l.get("includeTemplates"), "labels.includeTemplates")?,
                fields,
            });
        }
        for p in c.list(m.get("patchesStrategicMerge"), "patchesStrategicMerge")? {
            k.patches_strategic_merge
                .push(c.string(p, "patchesStrategicMerge")?);
        }
        for p in c.list(m.get("patchesJson6902"), "patchesJson6902")? {
            k.patches_json6902.push(c.patch(p, "patchesJson6902")?);
        }
        for p in c.list(m.get("patches"), "patches")? {
            k.patches.push(c.patch(p, "patches")?);
        }
        for field in ["images", "imageTags"] {
            for i in c.list(m.get(field), field)? {
                let g = |key: &str| -> Result<String> {
                    i.get(key)
                        .map(|x| c.string(x, field))
                        .transpose()
                        .map(Option::unwrap_or_default)
                };
                k.images.push(Image {
                    name: g("name")?,
                    new_name: g("newName")?,
                    new_tag: g("newTag")?,
                    digest: g("digest")?,
                    tag_suffix: g("tagSuffix")?,
                });
            }
        }
        for r in c.list(m.get("replicas"), "replicas")? {
            let name = r
                .get("name")
                .map(|x| c.string(x, "replicas.name"))
                .transpose()?
                .unwrap_or_default();
            let count = r.get("count").cloned().unwrap_or(Value::Int(0));
            k.replicas.push((name, count));
        }
        k.replacements = c.list(m.get("replacements"), "replacements")?.to_vec();
        for v in c.list(m.get("vars"), "vars")? {
            // encoding/json matches field names case-insensitively.
            let ci = |map: Option<&Value>, key: &str| -> String {
                map.and_then(Value::as_map)
                    .and_then(|m| {
                        m.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(key))
                            .map(|(_, v)| v)
                    })
                    .and_then(Value::scalar_string)
                    .unwrap_or_default()
            };
            let objref = v.get("objref");
            let fieldref = v.get("fieldref");
            let fp = ci(fieldref, "fieldPath");
            let mut api_version = ci(objref, "apiVersion");
            let (group, version) = (ci(objref, "group"), ci(objref, "version"));
            if api_version.is_empty() && !(group.is_empty() && version.is_empty()) {
                api_version = if group.is_empty() {
                    version
                } else {
                    format!("{group}/{version}")
                };
            }
            k.vars.push(Var {
                name: ci(Some(v), "name"),
                kind: ci(objref, "kind"),
                obj_name: ci(objref, "name"),
                api_version,
                namespace: ci(objref, "namespace"),
                field_path: if fp.is_empty() {
                    "metadata.name".into()
                } else {
                    fp
                },
            });
        }
        for g in c.list(m.get("configMapGenerator"), "configMapGenerator")? {
            k.config_map_generator
                .push(c.generator(g, "configMapGenerator")?);
        }
        for g in c.list(m.get("secretGenerator"), "secretGenerator")? {
            k.secret_generator.push(c.generator(g, "secretGenerator")?);
        }
        k.generator_options = c.gen_options(m.get("generatorOptions"), "generatorOptions")?;
        k.configurations = c.strings(m.get("configurations"), "configurations")?;
        k.generators = c.strings(m.get("generators"), "generators")?;
        k.transformers = c.strings(m.get("transformers"), "transformers")?;
        k.validators = c.strings(m.get("validators"), "validators")?;
        k.build_metadata = c.strings(m.get("buildMetadata"), "buildMetadata")?;
        if let Some(so) = m.get("sortOptions").filter(|v| !v.is_null()) {
            let lso = so.get("legacySortOptions");
            let opt_list = |key: &str| -> Result<Option<Vec<String>>> {
                match lso.and_then(|l| l.get(key)) {
                    None => Ok(None),
                    v => Ok(Some(c.strings(v, "sortOptions.legacySortOptions")?)),
                }
            };
            k.sort_options = Some(SortOptions {
                order: so
                    .get("order")
                    .map(|x| c.string(x, "sortOptions.order"))
                    .transpose()?
                    .unwrap_or_default(),
                order_first: opt_list("orderFirst")?,
                order_last: opt_list("orderLast")?,
            });
        }
        if let Some(o) = m.get("openapi") {
            k.openapi_path = o.get("path").and_then(Value::scalar_string);
        }
        for (field, what) in [
            ("helmCharts", "Helm chart inflation"),
            ("helmChartInflationGenerator", "Helm chart inflation"),
            ("validators", "validators (plugins)"),
        ] {
            if m.get(field).is_some_and(|v| !v.is_null()) {
                if let Some(Value::Seq(s)) = m.get(field)
                    && s.is_empty()
                {
                    continue;
                }
                return Err(Error::Unsupported {
                    file: file.to_path_buf(),
                    field: field.into(),
                    what: what.into(),
                });
            }
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_one;

    #[test]
    fn unknown_fields_are_refused() {
        let v = parse_one("apiVersion: x\nkind: Kustomization\nspec: {}\n").unwrap();
        let e = Kustomization::from_value(&v, Path::new("k.yaml")).unwrap_err();
        assert!(e.to_string().contains("unknown field \"spec\""), "{e}");
    }

    #[test]
    fn bases_follow_resources() {
        let v = parse_one("resources: [a]\nbases: [b]\n").unwrap();
        let k = Kustomization::from_value(&v, Path::new("k.yaml")).unwrap();
        assert_eq!(k.resources, ["a", "b"]);
        assert_eq!(k.kind, "Kustomization");
    }

    #[test]
    fn helm_is_refused() {
        let v = parse_one("helmCharts:\n- name: x\n").unwrap();
        let e = Kustomization::from_value(&v, Path::new("k.yaml")).unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
    }
}
