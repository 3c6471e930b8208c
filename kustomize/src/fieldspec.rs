//! Field specs (which fields of which kinds a transformer touches) and the
//! transformer configuration (builtin defaults merged with `configurations:`
//! files and CRDs).

use std::sync::LazyLock;

use crate::resource::Gvk;
use crate::value::Value;
use crate::yaml;

/// A field of objects selected by GVK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSpec {
    /// Which objects (empty parts match anything).
    pub gvk: Gvk,
    /// Slash-separated path; `[]` marks a sequence.
    pub path: String,
    /// Whether to create the field when missing.
    pub create: bool,
}

impl FieldSpec {
    /// Parses a field spec map.
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let m = v
            .as_map()
            .ok_or_else(|| "field spec must be a map".to_string())?;
        let s = |k: &str| m.get(k).and_then(Value::scalar_string).unwrap_or_default();
        let create = matches!(m.get("create"), Some(Value::Bool(true)));
        Ok(FieldSpec {
            gvk: Gvk {
                group: s("group"),
                version: s("version"),
                kind: s("kind"),
            },
            path: s("path"),
            create,
        })
    }

    /// The path split into elements (`\/` escapes a slash).
    pub fn elements(&self) -> Vec<String> {
        split_path(&self.path)
    }
}

/// Splits a slash-separated path, honouring `\/` escapes.
pub fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'/') {
            cur.push('/');
            chars.next();
        } else if c == '/' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out.retain(|s| !s.is_empty());
    out
}

/// A name-reference rule: fields (`field_specs`) that hold names of `gvk` objects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameBackRef {
    /// The referenced kind.
    pub gvk: Gvk,
    /// The referring fields.
    pub field_specs: Vec<FieldSpec>,
}

/// Field specs per transformer.
#[derive(Debug, Clone, Default)]
pub struct TransformerConfig {
    /// namePrefix.
    pub name_prefix: Vec<FieldSpec>,
    /// nameSuffix.
    pub name_suffix: Vec<FieldSpec>,
    /// commonLabels (selectors included).
    pub common_labels: Vec<FieldSpec>,
    /// labels with includeTemplates.
    pub template_labels: Vec<FieldSpec>,
    /// labels with includeVolumeClaimTemplates.
    pub volume_claim_template_labels: Vec<FieldSpec>,
    /// extra fields for `labels`.
    pub labels: Vec<FieldSpec>,
    /// commonAnnotations.
    pub common_annotations: Vec<FieldSpec>,
    /// namespace.
    pub namespace: Vec<FieldSpec>,
    /// vars.
    pub var_reference: Vec<FieldSpec>,
    /// name references.
    pub name_reference: Vec<NameBackRef>,
    /// images.
    pub images: Vec<FieldSpec>,
    /// replicas.
    pub replicas: Vec<FieldSpec>,
}

static DEFAULT_CONFIG: LazyLock<Result<TransformerConfig, String>> = LazyLock::new(|| {
    let v = yaml::parse_one(include_str!("config/default.yaml"))?;
    TransformerConfig::from_value(&v)
});

fn merge_specs(into: &mut Vec<FieldSpec>, from: &[FieldSpec]) {
    for fs in from {
        if let Some(existing) = into
            .iter_mut()
            .find(|e| e.gvk == fs.gvk && e.path == fs.path)
        {
            existing.create |= fs.create;
        } else {
            into.push(fs.clone());
        }
    }
}

impl TransformerConfig {
    /// kustomize's builtin configuration.
    pub fn builtin() -> Result<Self, String> {
        DEFAULT_CONFIG.clone()
    }

    /// Parses a `configurations:` file.
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let mut c = TransformerConfig::default();
        let Some(m) = v.as_map() else {
            return Ok(c);
        };
        for (k, val) in m {
            if k == "nameReference" {
                for item in val.as_seq().map(Vec::as_slice).unwrap_or(&[]) {
                    let s = |f: &str| {
                        item.get(f)
                            .and_then(Value::scalar_string)
                            .unwrap_or_default()
                    };
                    let mut specs = Vec::new();
                    for fs in item
                        .get("fieldSpecs")
                        .and_then(Value::as_seq)
                        .map(Vec::as_slice)
                        .unwrap_or(&[])
                    {
                        specs.push(FieldSpec::from_value(fs)?);
                    }
                    let (group, version) = match (s("group"), s("version"), s("apiVersion")) {
                        (g, v, av) if !av.is_empty() && g.is_empty() && v.is_empty() => {
                            let gvk = Gvk::from_api_version(&av, "");
                            (gvk.group, gvk.version)
                        }
                        (g, v, _) => (g, v),
                    };
                    c.name_reference.push(NameBackRef {
                        gvk: Gvk {
                            group,
                            version,
                            kind: s("kind"),
                        },
                        field_specs: specs,
                    });
                }
                continue;
            }
            let mut specs = Vec::new();
            for fs in val.as_seq().map(Vec::as_slice).unwrap_or(&[]) {
                specs.push(FieldSpec::from_value(fs)?);
            }
            let target = match k.as_str() {
                "namePrefix" => &mut c.name_prefix,
                "nameSuffix" => &mut c.name_suffix,
                "commonLabels" => &mut c.common_labels,
                "templateLabels" => &mut c.template_labels,
                "volumeClaimTemplateLabels" => &mut c.volume_claim_template_labels,
                "labels" => &mut c.labels,
                "commonAnnotations" => &mut c.common_annotations,
                "namespace" => &mut c.namespace,
                "varReference" => &mut c.var_reference,
                "images" => &mut c.images,
                "replicas" => &mut c.replicas,
                other => return Err(format!("unknown transformer configuration field '{other}'")),
            };
            merge_specs(target, &specs);
        }
        Ok(c)
    }

    /// Builds a configuration from an OpenAPI definitions file named by
    /// `crds:` (x-kubernetes-annotation, -label-selector, -identity and
    /// -object-ref-* extensions, as kustomize reads them).
    pub fn from_openapi(v: &Value) -> Result<Self, String> {
        let Some(defs) = v.as_map() else {
            return Err("OpenAPI definitions must be a map".into());
        };
        let mut c = TransformerConfig::default();
        for (name, def) in defs {
            let props = schema_of(def).get("properties");
            let has = |k: &str| props.and_then(|p| p.get(k)).is_some();
            if !(has("kind") && has("apiVersion") && has("metadata")) {
                continue;
            }
            let kind = name.rsplit('.').next().unwrap_or(name).to_string();
            let gvk = Gvk {
                kind,
                ..Gvk::default()
            };
            let mut seen = Vec::new();
            load_openapi_type(&mut c, &gvk, defs, name, &mut Vec::new(), &mut seen);
        }
        Ok(c)
    }

    /// Merges another configuration into this one.
    pub fn merge(&mut self, o: &TransformerConfig) {
        merge_specs(&mut self.name_prefix, &o.name_prefix);
        merge_specs(&mut self.name_suffix, &o.name_suffix);
        merge_specs(&mut self.common_labels, &o.common_labels);
        merge_specs(&mut self.template_labels, &o.template_labels);
        merge_specs(
            &mut self.volume_claim_template_labels,
            &o.volume_claim_template_labels,
        );
        merge_specs(&mut self.labels, &o.labels);
        merge_specs(&mut self.common_annotations, &o.common_annotations);
        merge_specs(&mut self.namespace, &o.namespace);
        merge_specs(&mut self.var_reference, &o.var_reference);
        merge_specs(&mut self.images, &o.images);
        merge_specs(&mut self.replicas, &o.replicas);
        for br in &o.name_reference {
            if let Some(e) = self.name_reference.iter_mut().find(|e| e.gvk == br.gvk) {
                merge_specs(&mut e.field_specs, &br.field_specs);
            } else {
                self.name_reference.push(br.clone());
            }
        }
    }
}

/// An OpenAPIDefinition's schema (`Schema`, matched case-insensitively as Go's JSON does).
fn schema_of(def: &Value) -> &Value {
    def.as_map()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("schema"))
                .map(|(_, v)| v)
        })
        .unwrap_or(&Value::Null)
}

fn load_openapi_type(
    c: &mut TransformerConfig,
    gvk: &Gvk,
    defs: &crate::value::Map,
    type_name: &str,
    path: &mut Vec<String>,
    seen: &mut Vec<String>,
) {
    let Some(props) = defs
        .get(type_name)
        .and_then(|d| schema_of(d).get("properties"))
        .and_then(Value::as_map)
    else {
        return;
    };
    if seen.iter().any(|s| s == type_name) {
        return;
    }
    seen.push(type_name.to_string());
    for (prop, p) in props {
        path.push(prop.clone());
        let fs = |extra: &[&str]| FieldSpec {
            gvk: gvk.clone(),
            path: path
                .iter()
                .map(String::as_str)
                .chain(extra.iter().copied())
                .collect::<Vec<_>>()
                .join("/"),
            create: false,
        };
        let ext = |k: &str| p.get(k).and_then(Value::scalar_string);
        if ext("x-kubernetes-annotation").is_some() {
            merge_specs(&mut c.common_annotations, &[fs(&[])]);
        }
        if ext("x-kubernetes-label-selector").is_some() {
            merge_specs(&mut c.common_labels, &[fs(&[])]);
        }
        if ext("x-kubernetes-identity").is_some() {
            merge_specs(&mut c.name_prefix, &[fs(&[])]);
        }
        if let (Some(version), Some(kind)) = (
            ext("x-kubernetes-object-ref-api-version"),
            ext("x-kubernetes-object-ref-kind"),
        ) {
            let key = ext("x-kubernetes-object-ref-name-key").unwrap_or_else(|| "name".into());
            c.merge(&TransformerConfig {
                name_reference: vec![NameBackRef {
                    gvk: Gvk {
                        group: String::new(),
                        version,
                        kind,
                    },
                    field_specs: vec![fs(&[&key])],
                }],
                ..Default::default()
            });
        }
        if let Some(r) = ext("$ref") {
            load_openapi_type(c, gvk, defs, &r, path, seen);
        }
        path.pop();
    }
    seen.pop();
}

/// Applies `f` to every node the path reaches in `obj`, creating missing
/// map fields when `create` is set. `f` receives the node (possibly `Null`
/// when just created).
pub fn apply_path(
    obj: &mut Value,
    path: &[String],
    create: bool,
    f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        return f(obj);
    };
    match obj {
        Value::Seq(items) => {
            for item in items {
                apply_path(item, path, create, f)?;
            }
            Ok(())
        }
        Value::Map(m) => {
            let (name, is_seq) = match head.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (head.as_str(), false),
            };
            if !m.contains_key(name) {
                if !create || is_seq {
                    return Ok(());
                }
                let fresh = if rest.is_empty() {
                    Value::Null
                } else if is_seq {
                    Value::Seq(Vec::new())
                } else {
                    Value::Map(Default::default())
                };
                m.insert(name.to_string(), fresh);
            }
            let Some(child) = m.get_mut(name) else {
                return Ok(());
            };
            if rest.is_empty() {
                if is_seq && let Value::Seq(items) = child {
                    for item in items {
                        f(item)?;
                    }
                    return Ok(());
                }
                if child.is_null() && !create {
                    return Ok(());
                }
                return f(child);
            }
            if child.is_null() {
                if !create {
                    return Ok(());
                }
                *child = Value::Map(Default::default());
            }
            apply_path(child, rest, create, f)
        }
        _ => Ok(()),
    }
}

/// Applies `f` at every field spec in `specs` that selects `gvk`.
pub fn apply_specs(
    obj: &mut Value,
    gvk: &Gvk,
    specs: &[FieldSpec],
    f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    for fs in specs {
        if gvk.is_selected_by(&fs.gvk) {
            apply_path(obj, &fs.elements(), fs.create, f)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_config_loads() {
        let c = TransformerConfig::builtin().unwrap();
        assert!(!c.name_reference.is_empty());
        assert!(c.common_labels.iter().any(|f| f.path == "metadata/labels"));
    }

    #[test]
    fn paths_through_sequences() {
        let mut v = yaml::parse_one("spec:\n  containers:\n  - image: a\n  - image: b\n").unwrap();
        let path = split_path("spec/containers[]/image");
        let mut seen = Vec::new();
        apply_path(&mut v, &path, false, &mut |n| {
            seen.push(n.scalar_string().unwrap());
            *n = Value::Str("x".into());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["a", "b"]);
        assert_eq!(
            v.get_path(&["spec"])
                .unwrap()
                .get("containers")
                .unwrap()
                .as_seq()
                .unwrap()[0]
                .str_at(&["image"]),
            Some("x")
        );
    }

    #[test]
    fn creates_missing_maps() {
        let mut v = yaml::parse_one("spec: {}\n").unwrap();
        apply_path(
            &mut v,
            &split_path("spec/selector/matchLabels"),
            true,
            &mut |n| {
                *n = Value::Str("y".into());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(v.str_at(&["spec", "selector", "matchLabels"]), Some("y"));
    }
}
