//! Strategic-merge patches (as kustomize's kyaml merge2 applies them), JSON
//! 6902 patches, and patch target selection.

use regex::Regex;

use crate::kustomization::Selector;
use crate::resource::Resource;
use crate::value::{Map, Value};

// ---------------------------------------------------------------- selection

fn anchored(re: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("invalid regex '{re}': {e}"))
}

/// A compiled patch target selector.
pub struct SelectorMatcher {
    group: Option<Regex>,
    version: Option<Regex>,
    kind: Option<Regex>,
    name: Option<Regex>,
    namespace: Option<Regex>,
    labels: Vec<Requirement>,
    annotations: Vec<Requirement>,
}

fn opt_re(s: &str) -> Result<Option<Regex>, String> {
    if s.is_empty() {
        Ok(None)
    } else {
        anchored(s).map(Some)
    }
}

impl SelectorMatcher {
    /// Compiles a selector.
    pub fn new(s: &Selector) -> Result<Self, String> {
        Ok(SelectorMatcher {
            group: opt_re(&s.group)?,
            version: opt_re(&s.version)?,
            kind: opt_re(&s.kind)?,
            name: opt_re(&s.name)?,
            namespace: opt_re(&s.namespace)?,
            labels: parse_label_selector(&s.label_selector)?,
            annotations: parse_label_selector(&s.annotation_selector)?,
        })
    }

    /// Whether `r` is selected (kustomize's `ResMap.Select`).
    pub fn matches(&self, r: &Resource) -> bool {
        let cur = r.cur_id();
        let org = r.org_id();
        if let Some(ns) = &self.namespace
            && !ns.is_match(org.effective_namespace())
            && !ns.is_match(cur.effective_namespace())
        {
            return false;
        }
        if let Some(n) = &self.name
            && !n.is_match(&org.name)
            && !n.is_match(&cur.name)
        {
            return false;
        }
        let gvk = r.gvk();
        if self.group.as_ref().is_some_and(|g| !g.is_match(&gvk.group))
            || self
                .version
                .as_ref()
                .is_some_and(|g| !g.is_match(&gvk.version))
            || self.kind.as_ref().is_some_and(|g| !g.is_match(&gvk.kind))
        {
            return false;
        }
        let labels: std::collections::BTreeMap<String, String> =
            r.string_map("labels").into_iter().collect();
        let annotations: std::collections::BTreeMap<String, String> =
            r.string_map("annotations").into_iter().collect();
        self.labels.iter().all(|q| q.matches(&labels))
            && self.annotations.iter().all(|q| q.matches(&annotations))
    }
}

enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn matches(&self, m: &std::collections::BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Eq(k, v) => m.get(k) == Some(v),
            Requirement::NotEq(k, v) => m.get(k) != Some(v),
            Requirement::In(k, vs) => m.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => m.get(k).is_none_or(|x| !vs.contains(x)),
            Requirement::Exists(k) => m.contains_key(k),
            Requirement::NotExists(k) => !m.contains_key(k),
        }
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn parse_label_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let mut reqs = Vec::new();
    if s.trim().is_empty() {
        return Ok(reqs);
    }
    for part in split_top(s) {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let set = |rest: &str| -> Vec<String> {
            rest.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|x| x.trim().to_string())
                .collect()
        };
        if let Some(k) = p.strip_prefix('!') {
            reqs.push(Requirement::NotExists(k.trim().to_string()));
        } else if let Some((k, v)) = p.split_once("!=") {
            reqs.push(Requirement::NotEq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once("==") {
            reqs.push(Requirement::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once('=') {
            reqs.push(Requirement::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once(" notin ") {
            reqs.push(Requirement::NotIn(k.trim().into(), set(v)));
        } else if let Some((k, v)) = p.split_once(" in ") {
            reqs.push(Requirement::In(k.trim().into(), set(v)));
        } else if p.contains(' ') || p.contains('(') {
            return Err(format!("unable to parse requirement '{p}'"));
        } else {
            reqs.push(Requirement::Exists(p.to_string()));
        }
    }
    Ok(reqs)
}

// ---------------------------------------------------------------- strategic merge

/// How a list field merges.
#[derive(Debug, Clone, PartialEq)]
enum ListKind {
    Replace,
    Keyed(&'static str),
    Primitive,
}

/// API groups whose kinds kustomize has an OpenAPI schema for.
fn is_builtin_group(group: &str) -> bool {
    matches!(
        group,
        "" | "apps"
            | "batch"
            | "extensions"
            | "policy"
            | "autoscaling"
            | "networking.k8s.io"
            | "rbac.authorization.k8s.io"
            | "admissionregistration.k8s.io"
            | "apiextensions.k8s.io"
            | "apiregistration.k8s.io"
            | "storage.k8s.io"
            | "scheduling.k8s.io"
            | "coordination.k8s.io"
            | "discovery.k8s.io"
            | "node.k8s.io"
            | "certificates.k8s.io"
            | "events.k8s.io"
            | "flowcontrol.apiserver.k8s.io"
    )
}

fn list_kind(builtin: bool, path: &[String]) -> ListKind {
    if !builtin {
        return ListKind::Replace;
    }
    let Some(last) = path.last() else {
        return ListKind::Replace;
    };
    let in_container = path.len() >= 2
        && matches!(
            path[path.len() - 2].as_str(),
            "containers" | "initContainers" | "ephemeralContainers"
        );
    match last.as_str() {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "webhooks" => ListKind::Keyed("name"),
        "env" if in_container => ListKind::Keyed("name"),
        "volumeMounts" if in_container => ListKind::Keyed("mountPath"),
        "volumeDevices" if in_container => ListKind::Keyed("devicePath"),
        "resizePolicy" if in_container => ListKind::Keyed("resourceName"),
        "ports" if in_container => ListKind::Keyed("containerPort"),
        "ports" if path.len() == 2 && path[0] == "spec" => ListKind::Keyed("port"),
        "hostAliases" => ListKind::Keyed("ip"),
        "topologySpreadConstraints" => ListKind::Keyed("topologyKey"),
        "ownerReferences" => ListKind::Keyed("uid"),
        "conditions" => ListKind::Keyed("type"),
        "finalizers" if path.len() == 2 && path[0] == "metadata" => ListKind::Primitive,
        _ => ListKind::Replace,
    }
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

/// Removes SMP directives from a value that is being copied in whole.
fn clean(v: &Value) -> Option<Value> {
    match v {
        Value::Map(m) => {
            if directive(v) == Some("delete") {
                return None;
            }
            let mut out = Map::new();
            for (k, x) in m {
                if k.starts_with('$') {
                    continue;
                }
                if let Some(c) = clean(x) {
                    out.insert(k.clone(), c);
                }
            }
            Some(Value::Map(out))
        }
        Value::Seq(items) => Some(Value::Seq(
            items
                .iter()
                .filter(|i| !matches!(directive(i), Some("replace")))
                .filter_map(clean)
                .collect(),
        )),
        Value::Null | Value::EmptyNull => None,
        other => Some(other.clone()),
    }
}

/// Applies an SMP patch map to `dest`. Returns false when the patch deletes `dest`.
pub fn merge_map(dest: &mut Map, patch: &Map, builtin: bool, path: &mut Vec<String>) -> bool {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return false,
        Some("replace") => {
            if let Some(Value::Map(c)) = clean(&Value::Map(patch.clone())) {
                *dest = c;
            }
            return true;
        }
        _ => {}
    }
    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Seq(items)), Value::Seq(del)) = (dest.get_mut(field), pv) {
                items.retain(|i| !del.contains(i));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            dest.remove(k);
            continue;
        }
        path.push(k.clone());
        match dest.get_mut(k) {
            Some(dv) if !dv.is_null() => {
                if !merge_value(dv, pv, builtin, path) {
                    dest.remove(k);
                }
            }
            _ => match clean(pv) {
                Some(c) => {
                    if let (Value::Seq(_), ListKind::Keyed(_) | ListKind::Primitive) =
                        (&c, list_kind(builtin, path))
                    {
                        let mut empty = Value::Seq(Vec::new());
                        merge_value(&mut empty, pv, builtin, path);
                        dest.insert(k.clone(), empty);
                    } else {
                        dest.insert(k.clone(), c);
                    }
                }
                None => {
                    dest.remove(k);
                }
            },
        }
        path.pop();
    }
    true
}

/// Merges `patch` into `dest`; returns false when `dest` must be removed.
fn merge_value(dest: &mut Value, patch: &Value, builtin: bool, path: &mut Vec<String>) -> bool {
    match (dest, patch) {
        (Value::Map(d), Value::Map(p)) => merge_map(d, p, builtin, path),
        (Value::Seq(d), Value::Seq(p)) => {
            if p.iter().any(|i| directive(i) == Some("replace")) {
                *d = p
                    .iter()
                    .filter(|i| directive(i) != Some("replace"))
                    .filter_map(clean)
                    .collect();
                return true;
            }
            match list_kind(builtin, path) {
                ListKind::Replace => {
                    *d = p.iter().filter_map(clean).collect();
                }
                ListKind::Primitive => {
                    let mut out: Vec<Value> = Vec::new();
                    for v in p.iter().chain(d.iter()) {
                        if !out.contains(v) {
                            out.push(v.clone());
                        }
                    }
                    *d = out;
                }
                ListKind::Keyed(key) => merge_keyed(d, p, key, builtin, path),
            }
            true
        }
        (d, p) => {
            match clean(p) {
                Some(c) => *d = c,
                None => return false,
            }
            true
        }
    }
}

fn key_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::scalar_string)
}

fn merge_keyed(
    dest: &mut Vec<Value>,
    patch: &[Value],
    key: &str,
    builtin: bool,
    path: &mut Vec<String>,
) {
    let mut out: Vec<Value> = Vec::new();
    let mut used = vec![false; dest.len()];
    let mut seen: Vec<String> = Vec::new();
    let mut keyless: Vec<Value> = Vec::new();
    for pe in patch {
        let Some(kv) = key_of(pe, key) else {
            if let Some(c) = clean(pe) {
                keyless.push(c);
            }
            continue;
        };
        if seen.contains(&kv) {
            continue;
        }
        seen.push(kv.clone());
        let idx = dest
            .iter()
            .position(|d| key_of(d, key).as_deref() == Some(kv.as_str()));
        match idx {
            Some(i) => {
                used[i] = true;
                let mut merged = dest[i].clone();
                let keep = match (&mut merged, pe) {
                    (Value::Map(dm), Value::Map(pm)) => merge_map(dm, pm, builtin, path),
                    _ => true,
                };
                if keep && !merged.as_map().is_some_and(Map::is_empty) {
                    out.push(merged);
                }
            }
            None => {
                if directive(pe) == Some("delete") {
                    continue;
                }
                let mut fresh = Value::Map(Map::new());
                if let (Value::Map(fm), Value::Map(pm)) = (&mut fresh, pe) {
                    merge_map(fm, pm, builtin, path);
                }
                out.push(fresh);
            }
        }
    }
    for (i, d) in dest.iter().enumerate() {
        if !used[i] {
            out.push(d.clone());
        }
    }
    out.extend(keyless);
    *dest = out;
}

fn drop_nulls(m: &mut Map, builtin: bool, path: &mut Vec<String>) {
    m.retain(|_, v| !matches!(v, Value::EmptyNull));
    for (k, v) in m.iter_mut() {
        path.push(k.clone());
        match v {
            Value::Map(inner) => drop_nulls(inner, builtin, path),
            Value::Seq(items) => {
                if matches!(list_kind(builtin, path), ListKind::Keyed(_)) {
                    for item in items {
                        if let Value::Map(im) = item {
                            drop_nulls(im, builtin, path);
                        }
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// Applies a strategic-merge patch to a resource (kustomize's `Resource.ApplySmPatch`).
pub fn apply_smp(
    r: &mut Resource,
    patch: &Value,
    allow_name_change: bool,
    allow_kind_change: bool,
) -> Result<(), String> {
    let (name, ns, kind) = (
        r.name().to_string(),
        r.namespace().to_string(),
        r.kind().to_string(),
    );
    if allow_name_change || allow_kind_change {
        r.store_previous_id();
    }
    let builtin = is_builtin_group(&r.gvk().group);
    let Value::Map(pm) = patch else {
        return Err("strategic merge patch must be a map".into());
    };
    let Value::Map(dm) = &mut r.obj else {
        return Err("resource is not a map".into());
    };
    if !merge_map(dm, pm, builtin, &mut Vec::new()) {
        r.obj = Value::Map(Map::new());
        return Ok(());
    }
    // kyaml's merge walks the whole target and drops null-valued fields.
    drop_nulls(dm, builtin, &mut Vec::new());
    if r.is_empty() {
        return Ok(());
    }
    if !allow_kind_change && let Some(m) = r.obj.as_map_mut() {
        m.insert("kind".into(), Value::Str(kind));
    }
    if !allow_name_change {
        r.set_name(&name);
    }
    r.set_namespace(&ns);
    Ok(())
}

// ---------------------------------------------------------------- JSON 6902

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn pointer(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("invalid JSON pointer '{path}'"));
    };
    Ok(rest.split('/').map(unescape).collect())
}

fn get_mut<'a>(v: &'a mut Value, toks: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Map(m) => m.get_mut(t)?,
            Value::Seq(s) => {
                let i: usize = t.parse().ok()?;
                s.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn add(doc: &mut Value, toks: &[String], value: Value, path: &str) -> Result<(), String> {
    let Some((last, parent)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    let p = get_mut(doc, parent)
        .ok_or_else(|| format!("add operation does not apply: doc is missing path: \"{path}\""))?;
    match p {
        Value::Map(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Seq(s) => {
            if last == "-" {
                s.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index '{last}' in \"{path}\""))?;
            if i > s.len() {
                return Err(format!("add operation index out of bounds: \"{path}\""));
            }
            s.insert(i, value);
            Ok(())
        }
        _ => Err(format!("add operation does not apply: \"{path}\"")),
    }
}

fn remove(doc: &mut Value, toks: &[String], path: &str) -> Result<Value, String> {
    let Some((last, parent)) = toks.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    let missing = || format!("remove operation does not apply: doc is missing path: \"{path}\"");
    let p = get_mut(doc, parent).ok_or_else(missing)?;
    match p {
        Value::Map(m) => m.remove(last).ok_or_else(missing),
        Value::Seq(s) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i >= s.len() {
                return Err(missing());
            }
            Ok(s.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Applies a JSON 6902 patch (a list of operations).
pub fn apply_json6902(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let Value::Seq(ops) = ops else {
        return Err("JSON patch must be a list of operations".into());
    };
    for op in ops {
        let kind = op.str_at(&["op"]).unwrap_or("");
        let path = op.str_at(&["path"]).unwrap_or("");
        let toks = pointer(path)?;
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        match kind {
            "add" => add(doc, &toks, value, path)?,
            "remove" => {
                remove(doc, &toks, path)?;
            }
            "replace" => {
                // evanphx/json-patch v4 (used by kustomize) treats a missing
                // map key as present: replace then behaves as add.
                match get_mut(doc, &toks) {
                    Some(target) => *target = value,
                    None => {
                        let parent_is_map = toks
                            .split_last()
                            .and_then(|(_, parent)| get_mut(doc, parent))
                            .is_some_and(|p| matches!(p, Value::Map(_)));
                        if !parent_is_map {
                            return Err(format!(
                                "replace operation does not apply: doc is missing path: \"{path}\""
                            ));
                        }
                        add(doc, &toks, value, path)?;
                    }
                }
            }
            "move" => {
                let from = op.str_at(&["from"]).unwrap_or("");
                let v = remove(doc, &pointer(from)?, from)?;
                add(doc, &toks, v, path)?;
            }
            "copy" => {
                let from = op.str_at(&["from"]).unwrap_or("");
                let v = get_mut(doc, &pointer(from)?)
                    .map(|v| v.clone())
                    .ok_or_else(|| {
                        format!("copy operation does not apply: doc is missing path: \"{from}\"")
                    })?;
                add(doc, &toks, v, path)?;
            }
            "test" => {
                let cur = get_mut(doc, &toks).map(|v| v.clone());
                if cur.as_ref() != Some(&value) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unexpected JSON patch operation '{other}'")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_one;

    fn res(y: &str) -> Resource {
        Resource::new(parse_one(y).unwrap())
    }

    #[test]
    fn smp_merges_containers_by_name_and_prepends_new() {
        let mut r = res(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: x\n        env: [{name: A, value: '1'}]\n",
        );
        let p = parse_one("spec:\n  template:\n    spec:\n      containers:\n      - name: b\n        image: y\n      - name: a\n        env: [{name: B, value: '2'}]\n").unwrap();
        apply_smp(&mut r, &p, false, false).unwrap();
        let cs = r
            .obj
            .get_path(&["spec", "template", "spec", "containers"])
            .unwrap()
            .as_seq()
            .unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].str_at(&["name"]), Some("b"));
        assert_eq!(cs[1].str_at(&["image"]), Some("x"));
        assert_eq!(cs[1].get("env").unwrap().as_seq().unwrap().len(), 2);
    }

    #[test]
    fn smp_directives() {
        let mut r =
            res("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1', b: '2'}\n");
        let p = parse_one("data:\n  a: null\n").unwrap();
        apply_smp(&mut r, &p, false, false).unwrap();
        assert!(r.obj.get_path(&["data", "a"]).is_none());
        let p = parse_one("$patch: delete\n").unwrap();
        apply_smp(&mut r, &p, false, false).unwrap();
        assert!(r.is_empty());
    }

    #[test]
    fn json6902_ops() {
        let mut d = parse_one("a: {b: [1, 2]}\n").unwrap();
        let ops = parse_one("- {op: add, path: /a/b/-, value: 3}\n- {op: replace, path: /a/b/0, value: 9}\n- {op: remove, path: /a/b/1}\n- {op: add, path: /c, value: x}\n").unwrap();
        apply_json6902(&mut d, &ops).unwrap();
        assert_eq!(d, parse_one("a: {b: [9, 3]}\nc: x\n").unwrap());
        let bad = parse_one("- {op: remove, path: /nope}\n").unwrap();
        assert!(apply_json6902(&mut d, &bad).is_err());
    }

    #[test]
    fn label_selectors() {
        let reqs = parse_label_selector("app=a,tier in (x, y),!gone").unwrap();
        let mut m = std::collections::BTreeMap::new();
        m.insert("app".to_string(), "a".to_string());
        m.insert("tier".to_string(), "y".to_string());
        assert!(reqs.iter().all(|r| r.matches(&m)));
    }
}
