//! `replacements`: copy a field of one resource into fields of others.

use crate::kustomization::Selector;
use crate::patch::SelectorMatcher;
use crate::resource::{Gvk, ResId, Resource};
use crate::value::{Map, Value};
use crate::yaml;

/// Splits a field path on dots, keeping bracketed segments (`[name=a.b]`) whole.
pub fn split_field_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
            }
            '.' if depth == 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    // `a[0]` / `a[name=x]` written without a dot: split the bracket off.
    let mut res = Vec::new();
    for p in out {
        if !p.starts_with('[')
            && let Some(i) = p.find('[')
            && p.ends_with(']')
        {
            res.push(p[..i].to_string());
            res.push(p[i..].to_string());
            continue;
        }
        res.push(p);
    }
    res.retain(|s| !s.is_empty());
    res
}

/// A map key in a path: `[a.b]` (no `=`) names the key `a.b`.
fn map_key(part: &str) -> &str {
    match part.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(inner) if !inner.contains('=') => inner,
        _ => part,
    }
}

fn seq_match(item: &Value, sel: &str) -> bool {
    match sel.split_once('=') {
        Some(("", v)) => item.scalar_string().as_deref() == Some(v),
        Some((k, v)) => item.get(k).and_then(Value::scalar_string).as_deref() == Some(v),
        None => false,
    }
}

/// Looks up a single node by field path.
pub fn lookup<'a>(v: &'a Value, parts: &[String]) -> Option<&'a Value> {
    let Some((head, rest)) = parts.split_first() else {
        return Some(v);
    };
    match v {
        Value::Map(m) => lookup(m.get(map_key(head))?, rest),
        Value::Seq(items) => {
            if let Some(sel) = head.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                if let Ok(i) = sel.parse::<usize>() {
                    return lookup(items.get(i)?, rest);
                }
                let item = items.iter().find(|i| seq_match(i, sel))?;
                lookup(item, rest)
            } else if let Ok(i) = head.parse::<usize>() {
                lookup(items.get(i)?, rest)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Visits every node matching the path, optionally creating missing fields.
fn visit(
    v: &mut Value,
    parts: &[String],
    create: Option<&Value>,
    f: &mut dyn FnMut(&mut Value, bool) -> Result<(), String>,
) -> Result<usize, String> {
    let Some((head, rest)) = parts.split_first() else {
        f(v, false)?;
        return Ok(1);
    };
    match v {
        Value::Map(m) => {
            let head = &map_key(head).to_string();
            if !m.contains_key(head) {
                let Some(src) = create else { return Ok(0) };
                if rest.is_empty() {
                    let mut n = Value::Null;
                    f(&mut n, true)?;
                    let _ = src;
                    m.insert(head.clone(), n);
                    return Ok(1);
                }
                let next_is_seq = rest[0].starts_with('[') && rest[0].contains('=');
                m.insert(
                    head.clone(),
                    if next_is_seq {
                        Value::Seq(Vec::new())
                    } else {
                        Value::Map(Map::new())
                    },
                );
            }
            match m.get_mut(head) {
                Some(child) => {
                    if child.is_null() && !rest.is_empty() && create.is_some() {
                        *child = Value::Map(Map::new());
                    }
                    visit(child, rest, create, f)
                }
                None => Ok(0),
            }
        }
        Value::Seq(items) => {
            let sel = head
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(head);
            if sel == "*" {
                let mut n = 0;
                for i in items.iter_mut() {
                    n += visit(i, rest, create, f)?;
                }
                return Ok(n);
            }
            if let Ok(i) = sel.parse::<usize>() {
                return match items.get_mut(i) {
                    Some(item) => visit(item, rest, create, f),
                    None => Ok(0),
                };
            }
            let mut n = 0;
            for i in items.iter_mut() {
                if seq_match(i, sel) {
                    n += visit(i, rest, create, f)?;
                }
            }
            if n == 0
                && create.is_some()
                && let Some((k, val)) = sel.split_once('=')
                && !k.is_empty()
            {
                let mut m = Map::new();
                m.insert(k.to_string(), Value::Str(val.to_string()));
                let mut item = Value::Map(m);
                n += visit(&mut item, rest, create, f)?;
                items.push(item);
            }
            Ok(n)
        }
        _ => Ok(0),
    }
}

fn selector_from(v: &Value) -> Selector {
    let s = |k: &str| v.get(k).and_then(Value::scalar_string).unwrap_or_default();
    let mut sel = Selector {
        group: s("group"),
        version: s("version"),
        kind: s("kind"),
        name: s("name"),
        namespace: s("namespace"),
        label_selector: s("labelSelector"),
        annotation_selector: s("annotationSelector"),
    };
    let av = s("apiVersion");
    if !av.is_empty() && sel.group.is_empty() && sel.version.is_empty() {
        let g = Gvk::from_api_version(&av, "");
        sel.group = g.group;
        sel.version = g.version;
    }
    sel
}

fn all_ids(r: &Resource) -> Vec<ResId> {
    let mut ids = vec![r.cur_id()];
    ids.extend(r.prev_ids());
    ids
}

fn id_selected_exact(id: &ResId, s: &Selector) -> bool {
    id.gvk.is_selected_by(&Gvk {
        group: s.group.clone(),
        version: s.version.clone(),
        kind: s.kind.clone(),
    }) && (s.name.is_empty() || s.name == id.name)
        && (s.namespace.is_empty() || s.namespace == id.namespace)
}

fn anchored(re: &str) -> Result<Option<regex::Regex>, String> {
    if re.is_empty() {
        Ok(None)
    } else {
        regex::Regex::new(&format!("^(?:{re})$"))
            .map(Some)
            .map_err(|e| format!("invalid regex '{re}': {e}"))
    }
}

/// A target selector's id fields, compiled as anchored regexes.
struct IdRegex([Option<regex::Regex>; 5]);

impl IdRegex {
    fn new(s: &Selector) -> Result<Self, String> {
        Ok(IdRegex([
            anchored(&s.group)?,
            anchored(&s.version)?,
            anchored(&s.kind)?,
            anchored(&s.name)?,
            anchored(&s.namespace)?,
        ]))
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    fn selects(&self, id: &ResId) -> bool {
        let vals = [
            &id.gvk.group,
            &id.gvk.version,
            &id.gvk.kind,
            &id.name,
            &id.namespace,
        ];
        self.0
            .iter()
            .zip(vals)
            .all(|(r, v)| r.as_ref().is_none_or(|r| r.is_match(v)))
    }
}

fn opt_str(v: Option<&Value>, k: &str) -> String {
    v.and_then(|o| o.get(k))
        .and_then(Value::scalar_string)
        .unwrap_or_default()
}

fn opt_index(v: Option<&Value>) -> i64 {
    match v.and_then(|o| o.get("index")) {
        Some(Value::Int(i)) => *i,
        _ => 0,
    }
}

/// Applies replacements in order.
pub fn apply(resources: &mut [Resource], list: &[Value]) -> Result<(), String> {
    for r in list {
        let source = r.get("source");
        let targets = r.get("targets").and_then(Value::as_seq);
        let (Some(source), Some(targets)) = (source, targets) else {
            return Err("replacements must specify a source and at least one target".into());
        };
        let sel = selector_from(source);
        let mut found: Option<usize> = None;
        for (i, res) in resources.iter().enumerate() {
            if res.is_empty() {
                continue;
            }
            if all_ids(res).iter().any(|id| id_selected_exact(id, &sel)) {
                if found.is_some() {
                    return Err(format!("multiple matches for selector {sel:?}"));
                }
                found = Some(i);
            }
        }
        let Some(si) = found else {
            return Err(format!("nothing selected by {sel:?}"));
        };
        let fp = source
            .get("fieldPath")
            .and_then(Value::scalar_string)
            .unwrap_or_else(|| "metadata.name".into());
        let mut value = lookup(&resources[si].obj, &split_field_path(&fp))
            .cloned()
            .filter(|v| !v.is_null())
            .ok_or_else(|| {
                format!(
                    "fieldPath `{fp}` is missing for replacement source {}",
                    resources[si].cur_id()
                )
            })?;
        let sopts = source.get("options");
        let delim = opt_str(sopts, "delimiter");
        if !delim.is_empty() {
            let text = value
                .scalar_string()
                .ok_or("delimiter option can only be used with scalar nodes")?;
            let parts: Vec<&str> = text.split(delim.as_str()).collect();
            let idx = opt_index(sopts);
            if idx < 0 || idx as usize >= parts.len() {
                return Err(format!(
                    "options.index {idx} is out of bounds for value {text}"
                ));
            }
            value = Value::Str(parts[idx as usize].to_string());
        }
        for t in targets {
            let Some(select) = t.get("select") else {
                return Err("target must specify resources to select".into());
            };
            let ssel = selector_from(select);
            let matcher_labels = SelectorMatcher::new(&Selector {
                label_selector: ssel.label_selector.clone(),
                annotation_selector: ssel.annotation_selector.clone(),
                ..Default::default()
            })?;
            let rejects: Vec<Selector> = t
                .get("reject")
                .and_then(Value::as_seq)
                .map(|s| s.iter().map(selector_from).collect())
                .unwrap_or_default();
            let select_re = IdRegex::new(&ssel)?;
            let reject_res: Vec<IdRegex> =
                rejects.iter().map(IdRegex::new).collect::<Result<_, _>>()?;
            let mut reject_label_matchers = Vec::new();
            for rj in &rejects {
                if !rj.label_selector.is_empty() || !rj.annotation_selector.is_empty() {
                    reject_label_matchers.push(SelectorMatcher::new(&Selector {
                        label_selector: rj.label_selector.clone(),
                        annotation_selector: rj.annotation_selector.clone(),
                        ..Default::default()
                    })?);
                }
            }
            let mut paths: Vec<String> = t
                .get("fieldPaths")
                .and_then(Value::as_seq)
                .map(|s| s.iter().filter_map(Value::scalar_string).collect())
                .unwrap_or_default();
            if paths.is_empty() {
                paths.push("metadata.name".into());
            }
            let topts = t.get("options");
            let create = matches!(topts.and_then(|o| o.get("create")), Some(Value::Bool(true)));
            let tdelim = opt_str(topts, "delimiter");
            let tindex = opt_index(topts);
            for res in resources.iter_mut() {
                if res.is_empty() || !matcher_labels.matches(res) {
                    continue;
                }
                if reject_label_matchers.iter().any(|m| m.matches(res)) {
                    continue;
                }
                let ids = all_ids(res);
                let rejected = reject_res
                    .iter()
                    .any(|rj| !rj.is_empty() && ids.iter().any(|id| rj.selects(id)));
                if rejected || !ids.iter().any(|id| select_re.selects(id)) {
                    continue;
                }
                for p in &paths {
                    let parts = split_field_path(p);
                    let n = visit(
                        &mut res.obj,
                        &parts,
                        if create { Some(&value) } else { None },
                        &mut |node, _created| set_value(node, &value, &tdelim, tindex),
                    )?;
                    if n == 0 {
                        return Err(if create {
                            format!("unable to find or create field \"{p}\" in replacement target")
                        } else {
                            format!("unable to find field \"{p}\" in replacement target")
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

fn set_value(node: &mut Value, value: &Value, delim: &str, index: i64) -> Result<(), String> {
    let mut value = value.clone();
    if !delim.is_empty() {
        let Some(cur) = node.scalar_string() else {
            return Err("delimiter option can only be used with scalar nodes".into());
        };
        let mut parts: Vec<String> = cur.split(delim).map(str::to_string).collect();
        let v = value.scalar_string().unwrap_or_default();
        if index < 0 {
            parts.insert(0, v);
        } else if index as usize >= parts.len() {
            parts.push(v);
        } else {
            parts[index as usize] = v;
        }
        value = Value::Str(parts.join(delim));
    }
    match (&*node, &value) {
        (Value::Map(_) | Value::Seq(_), _) | (_, Value::Map(_) | Value::Seq(_)) => *node = value,
        (Value::Str(_), v) => *node = Value::Str(v.scalar_string().unwrap_or_default()),
        (Value::Null | Value::EmptyNull, v) => *node = v.clone(),
        (_, v) => {
            let text = v.scalar_string().unwrap_or_default();
            let resolved = yaml::parse_one(&text).unwrap_or(Value::Str(text.clone()));
            *node = match resolved {
                Value::Map(_) | Value::Seq(_) => Value::Str(text),
                other => other,
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_split() {
        assert_eq!(
            split_field_path("spec.containers.[name=a.b].image"),
            ["spec", "containers", "[name=a.b]", "image"]
        );
        assert_eq!(
            split_field_path("spec.ports[0].port"),
            ["spec", "ports", "[0]", "port"]
        );
    }

    #[test]
    fn replaces_into_selected_containers() {
        let mut rs = vec![
            Resource::new(yaml::parse_one("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: src}\ndata: {img: 'x:1'}\n").unwrap()),
            Resource::new(yaml::parse_one("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: [{name: a, image: old}]}}}\n").unwrap()),
        ];
        let list = yaml::parse_documents("- source: {kind: ConfigMap, name: src, fieldPath: data.img}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - spec.template.spec.containers.[name=a].image\n").unwrap();
        apply(&mut rs, list[0].as_seq().unwrap()).unwrap();
        assert_eq!(
            lookup(
                &rs[1].obj,
                &split_field_path("spec.template.spec.containers.[name=a].image")
            ),
            Some(&Value::Str("x:1".into()))
        );
    }
}
