//! The simple builtin transformers: namespace, name prefix/suffix, labels,
//! annotations, images and replicas.

use std::collections::BTreeMap;

use regex::Regex;

use crate::fieldspec::{FieldSpec, apply_specs, split_path};
use crate::kustomization::Image;
use crate::resource::{Gvk, Resource};
use crate::value::{Map, Value};

/// Sets the namespace of every resource (kustomize's NamespaceTransformer).
pub fn namespace(resources: &mut [Resource], ns: &str, specs: &[FieldSpec]) -> Result<(), String> {
    for r in resources.iter_mut() {
        if r.is_empty() {
            continue;
        }
        r.store_previous_id();
        let gvk = r.gvk();
        let api_version = r.api_version().to_string();
        let mut fs: Vec<FieldSpec> = specs
            .iter()
            .filter(|f| f.path != "metadata/namespace")
            .filter(|f| api_version == "v1" || f.path != "metadata/name")
            .cloned()
            .collect();
        if !gvk.is_cluster_scoped() {
            r.set_namespace(ns);
        }
        let is_binding = gvk.kind == "RoleBinding" || gvk.kind == "ClusterRoleBinding";
        if is_binding {
            fs.retain(|f| {
                !((f.gvk.kind == "RoleBinding" || f.gvk.kind == "ClusterRoleBinding")
                    && f.path == "subjects/namespace")
            });
            if let Some(Value::Seq(subjects)) = r.obj.get_mut("subjects") {
                for s in subjects {
                    if s.str_at(&["name"]) == Some("default")
                        && let Some(m) = s.as_map_mut()
                    {
                        m.insert("namespace".into(), Value::Str(ns.to_string()));
                    }
                }
            }
        }
        apply_specs(&mut r.obj, &gvk, &fs, &mut |n| {
            match n {
                Value::Map(_) | Value::Seq(_) => {
                    return Err("namespace field specs must target scalar nodes".into());
                }
                _ => *n = Value::Str(ns.to_string()),
            }
            Ok(())
        })?;
    }
    let mut seen = std::collections::HashSet::new();
    for r in resources.iter().filter(|r| !r.is_empty()) {
        let id = r.cur_id();
        if !seen.insert(id.key()) {
            return Err(format!(
                "namespace transformation produces ID conflict: {id}"
            ));
        }
    }
    Ok(())
}

fn skip_prefix(id_gvk: &Gvk) -> bool {
    id_gvk.kind == "CustomResourceDefinition"
        || (id_gvk.group == "apiregistration.k8s.io" && id_gvk.kind == "APIService")
        || id_gvk.kind == "Namespace"
}

/// Adds a name prefix or suffix (kustomize's PrefixTransformer / SuffixTransformer).
pub fn prefix_suffix(
    resources: &mut [Resource],
    affix: &str,
    is_prefix: bool,
    specs: &[FieldSpec],
) -> Result<(), String> {
    for r in resources.iter_mut() {
        let org = r.org_id();
        if skip_prefix(&org.gvk) {
            continue;
        }
        for fs in specs {
            if !org.gvk.is_selected_by(&fs.gvk) {
                continue;
            }
            if fs.path == "metadata/name" {
                if is_prefix {
                    r.prefixes.push(affix.to_string());
                } else {
                    r.suffixes.push(affix.to_string());
                }
                if !affix.is_empty() {
                    r.store_previous_id();
                }
            }
            crate::fieldspec::apply_path(&mut r.obj, &split_path(&fs.path), fs.create, &mut |n| {
                let cur = n.scalar_string().unwrap_or_default();
                *n = Value::Str(if is_prefix {
                    format!("{affix}{cur}")
                } else {
                    format!("{cur}{affix}")
                });
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Sets map entries (labels or annotations) at the given field specs.
pub fn set_map_entries(
    resources: &mut [Resource],
    entries: &BTreeMap<String, String>,
    specs: &[FieldSpec],
) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    for r in resources.iter_mut() {
        if r.is_empty() {
            continue;
        }
        let gvk = r.gvk();
        apply_specs(&mut r.obj, &gvk, specs, &mut |n| {
            if n.is_null() {
                *n = Value::Map(Map::new());
            }
            match n {
                Value::Map(m) => {
                    for (k, v) in entries {
                        m.insert(k.clone(), Value::Str(v.clone()));
                    }
                    Ok(())
                }
                _ => Err("labels/annotations field spec must target a map".into()),
            }
        })?;
    }
    Ok(())
}

/// Splits an image reference into name, tag and digest (as kustomize does).
pub fn split_image(image: &str) -> (String, String, String) {
    let slash = image.find('/').filter(|i| *i > 0).unwrap_or(0);
    let search = &image[slash..];
    let id = search.find('@');
    let ic = search.find(':');
    match (id, ic) {
        (None, None) => (image.to_string(), String::new(), String::new()),
        (Some(d), c) if c.is_none_or(|c| d < c) => {
            let d = d + slash;
            (
                image[..d].to_string(),
                String::new(),
                image[d + 1..].to_string(),
            )
        }
        (Some(d), Some(c)) => {
            let (d, c) = (d + slash, c + slash);
            (
                image[..c].to_string(),
                image[c + 1..d].to_string(),
                image[d + 1..].to_string(),
            )
        }
        (None, Some(c)) => {
            let c = c + slash;
            (
                image[..c].to_string(),
                image[c + 1..].to_string(),
                String::new(),
            )
        }
        (Some(_), None) => (image.to_string(), String::new(), String::new()),
    }
}

struct ImageUpdater<'a> {
    image: &'a Image,
    pattern: Option<Regex>,
}

impl ImageUpdater<'_> {
    fn update(&self, n: &mut Value) {
        let Value::Str(value) = n else { return };
        let Some(p) = &self.pattern else { return };
        if !p.is_match(value) {
            return;
        }
        let (mut name, mut tag, mut digest) = split_image(value);
        let im = self.image;
        if !im.new_name.is_empty() {
            name = im.new_name.clone();
        }
        if !im.new_tag.is_empty() && !im.digest.is_empty() {
            tag = im.new_tag.clone();
            digest = im.digest.clone();
        } else if !im.new_tag.is_empty() {
            tag = im.new_tag.clone();
            digest.clear();
        } else if !im.digest.is_empty() {
            tag.clear();
            digest = im.digest.clone();
        } else if !im.tag_suffix.is_empty() {
            tag.push_str(&im.tag_suffix);
            digest.clear();
        }
        if !tag.is_empty() {
            name = format!("{name}:{tag}");
        }
        if !digest.is_empty() {
            name = format!("{name}@{digest}");
        }
        *n = Value::Str(name);
    }

    fn walk_legacy(&self, v: &mut Value) {
        match v {
            Value::Map(m) => {
                for (k, child) in m.iter_mut() {
                    self.walk_legacy(child);
                    if (k == "containers" || k == "initContainers")
                        && let Value::Seq(items) = child
                    {
                        for item in items {
                            if let Some(img) = item.get_mut("image") {
                                self.update(img);
                            }
                        }
                    }
                }
            }
            Value::Seq(items) => {
                for i in items {
                    self.walk_legacy(i);
                }
            }
            _ => {}
        }
    }
}

/// Updates container images (kustomize's ImageTagTransformer).
pub fn images(
    resources: &mut [Resource],
    image: &Image,
    specs: &[FieldSpec],
) -> Result<(), String> {
    let pattern = Regex::new(&format!(
        "^{}(:[a-zA-Z0-9_.{{}}-]*)?(@[a-zA-Z0-9]+([.+_-][a-zA-Z0-9]+)*:[a-zA-Z0-9_.{{}}-]*)?$",
        image.name
    ))
    .ok();
    let u = ImageUpdater { image, pattern };
    for r in resources.iter_mut() {
        if r.kind() != "CustomResourceDefinition" {
            u.walk_legacy(&mut r.obj);
        }
        let gvk = r.gvk();
        let no_create: Vec<FieldSpec> = specs
            .iter()
            .map(|f| FieldSpec {
                create: false,
                ..f.clone()
            })
            .collect();
        apply_specs(&mut r.obj, &gvk, &no_create, &mut |n| {
            u.update(n);
            Ok(())
        })?;
    }
    Ok(())
}

/// Sets replica counts (kustomize's ReplicaCountTransformer).
pub fn replicas(
    resources: &mut [Resource],
    name: &str,
    count: &Value,
    specs: &[FieldSpec],
) -> Result<(), String> {
    let mut found = false;
    for r in resources.iter_mut() {
        let matches = r.name() == name || r.prev_ids().iter().any(|id| id.name == name);
        if !matches {
            continue;
        }
        let gvk = r.gvk();
        for fs in specs {
            if gvk.is_selected_by(&fs.gvk) {
                found = true;
                crate::fieldspec::apply_path(&mut r.obj, &fs.elements(), fs.create, &mut |n| {
                    *n = count.clone();
                    Ok(())
                })?;
            }
        }
    }
    if !found {
        return Err(format!(
            "resource with name {name} does not match a config with the following GVK [Deployment ReplicationController ReplicaSet StatefulSet]"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_split() {
        assert_eq!(
            split_image("nginx:1.2"),
            ("nginx".into(), "1.2".into(), String::new())
        );
        assert_eq!(
            split_image("localhost:5000/nginx@sha256:abc"),
            (
                "localhost:5000/nginx".into(),
                String::new(),
                "sha256:abc".into()
            )
        );
        assert_eq!(
            split_image("a/b:t@sha256:x"),
            ("a/b".into(), "t".into(), "sha256:x".into())
        );
    }
}
