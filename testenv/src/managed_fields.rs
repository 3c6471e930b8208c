//! Field sets (structured-merge-diff paths), their `fieldsV1` encoding, and `managedFields` entries.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value, json};

use crate::schema::{ListType, TypeInfo};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a map/struct: `f:name`.
    Field(String),
    /// An item of an associative list, by its key fields (compact JSON object): `k:{"name":"a"}`.
    Key(String),
    /// An item of a set, by value (compact JSON): `v:"a"`.
    Value(String),
    /// An item of a list by position: `i:0`.
    Index(usize),
}

/// A path from the object root.
pub type FieldPath = Vec<PathElement>;
/// A set of paths.
pub type FieldSet = BTreeSet<FieldPath>;

/// Render a path like structured-merge-diff does: `.spec.containers[name="a"].image`.
pub struct PathDisplay<'a>(pub &'a FieldPath);

impl fmt::Display for PathDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for pe in self.0 {
            match pe {
                PathElement::Field(n) => write!(f, ".{n}")?,
                PathElement::Key(k) => {
                    let parsed: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                    let parts: Vec<String> = parsed
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                        .unwrap_or_default();
                    write!(f, "[{}]", parts.join(","))?;
                }
                PathElement::Value(v) => write!(f, "[={v}]")?,
                PathElement::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource: everything but status (when the resource has a status subresource).
    Main {
        /// The resource has a `/status` subresource.
        has_status: bool,
    },
    /// The `/status` subresource: only `status`.
    Status,
}

const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The fields set in `obj`, as structured-merge-diff would track them.
pub fn fields_of(obj: &Value, ti: TypeInfo<'_>, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        let keep = match (scope, k.as_str()) {
            (_, "apiVersion" | "kind") => false,
            (Scope::Status, key) => key == "status",
            (Scope::Main { has_status }, "status") => !has_status,
            _ => true,
        };
        if !keep {
            continue;
        }
        let mut path = vec![PathElement::Field(k.clone())];
        let mut names = vec![k.clone()];
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for (mk, mv) in meta {
                    if IGNORED_METADATA.contains(&mk.as_str()) {
                        continue;
                    }
                    path.push(PathElement::Field(mk.clone()));
                    names.push(mk.clone());
                    walk(mv, ti, &mut names, &mut path, &mut out);
                    path.pop();
                    names.pop();
                }
            }
            continue;
        }
        walk(v, ti, &mut names, &mut path, &mut out);
    }
    out
}

/// The key of an associative-list item, as compact JSON with the key fields in order.
pub fn item_key(item: &Value, keys: &[String]) -> Option<String> {
    let obj = item.as_object()?;
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = obj.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    if m.is_empty() {
        return None;
    }
    serde_json::to_string(&Value::Object(m)).ok()
}

fn walk(
    v: &Value,
    ti: TypeInfo<'_>,
    names: &mut Vec<String>,
    path: &mut FieldPath,
    out: &mut FieldSet,
) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                names.push(k.clone());
                walk(child, ti, names, path, out);
                names.pop();
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match ti.list_type(names) {
            ListType::Atomic => {
                out.insert(path.clone());
            }
            ListType::Set => {
                for it in items {
                    path.push(PathElement::Value(it.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListType::Map(keys) => {
                for (i, it) in items.iter().enumerate() {
                    let pe = match item_key(it, &keys) {
                        Some(k) => PathElement::Key(k),
                        None => PathElement::Index(i),
                    };
                    path.push(pe);
                    out.insert(path.clone());
                    if let Some(m) = it.as_object() {
                        for (k, child) in m {
                            path.push(PathElement::Field(k.clone()));
                            names.push(k.clone());
                            walk(child, ti, names, path, out);
                            names.pop();
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

fn find_item<'a>(items: &'a [Value], pe: &PathElement) -> Option<(usize, &'a Value)> {
    match pe {
        PathElement::Key(k) => {
            let want: Value = serde_json::from_str(k).ok()?;
            let want = want.as_object()?;
            items
                .iter()
                .enumerate()
                .find(|(_, it)| want.iter().all(|(wk, wv)| it.get(wk) == Some(wv)))
        }
        PathElement::Value(v) => {
            let want: Value = serde_json::from_str(v).ok()?;
            items.iter().enumerate().find(|(_, it)| **it == want)
        }
        PathElement::Index(i) => items.get(*i).map(|it| (*i, it)),
        PathElement::Field(_) => None,
    }
}

/// The value at a path, if present.
pub fn get<'a>(obj: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    let mut cur = obj;
    for pe in path {
        cur = match (pe, cur) {
            (PathElement::Field(k), Value::Object(m)) => m.get(k)?,
            (_, Value::Array(items)) => find_item(items, pe)?.1,
            _ => return None,
        };
    }
    Some(cur)
}

/// Remove the value at a path; returns whether something was removed.
pub fn remove(obj: &mut Value, path: &[PathElement]) -> bool {
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    let mut cur = obj;
    for pe in parent_path {
        let next = match (pe, cur) {
            (PathElement::Field(k), Value::Object(m)) => m.get_mut(k),
            (_, Value::Array(items)) => match find_item(items, pe) {
                Some((i, _)) => items.get_mut(i),
                None => None,
            },
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (PathElement::Field(k), Value::Object(m)) => m.remove(k).is_some(),
        (_, Value::Array(items)) => match find_item(items, last) {
            Some((i, _)) => {
                items.remove(i);
                true
            }
            None => false,
        },
        _ => false,
    }
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<String, Node>,
}

fn encode_pe(pe: &PathElement) -> String {
    match pe {
        PathElement::Field(n) => format!("f:{n}"),
        PathElement::Key(k) => format!("k:{k}"),
        PathElement::Value(v) => format!("v:{v}"),
        PathElement::Index(i) => format!("i:{i}"),
    }
}

fn decode_pe(s: &str) -> Option<PathElement> {
    let (prefix, rest) = s.split_at_checked(2)?;
    Some(match prefix {
        "f:" => PathElement::Field(rest.to_string()),
        "k:" => {
            // normalise key JSON to compact form
            let v: Value = serde_json::from_str(rest).ok()?;
            PathElement::Key(serde_json::to_string(&v).ok()?)
        }
        "v:" => {
            let v: Value = serde_json::from_str(rest).ok()?;
            PathElement::Value(v.to_string())
        }
        "i:" => PathElement::Index(rest.parse().ok()?),
        _ => return None,
    })
}

/// Encode a set in the `FieldsV1` JSON format.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            node = node.children.entry(encode_pe(pe)).or_default();
        }
        node.member = true;
    }
    fn render(node: &Node) -> Value {
        let mut m = Map::new();
        if node.member && !node.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, child) in &node.children {
            m.insert(k.clone(), render(child));
        }
        Value::Object(m)
    }
    render(&root)
}

/// Decode a `FieldsV1` JSON tree.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn rec(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else {
            return;
        };
        if (m.is_empty() || m.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in m {
            if k == "." {
                continue;
            }
            if let Some(pe) = decode_pe(k) {
                path.push(pe);
                rec(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = FieldSet::new();
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the manager used.
    pub api_version: String,
    /// RFC 3339 time of the last change.
    pub time: String,
    /// `status` for the status subresource.
    pub subresource: String,
    /// The owned fields.
    pub set: FieldSet,
}

impl Entry {
    /// The manager as Kubernetes prints it in conflict messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// Parse `metadata.managedFields`.
pub fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
            set: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// Write `metadata.managedFields` (dropping empty entries).
pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.set),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Record an `Update` by `manager`: it takes every field whose value it changed (from all others),
/// and every manager loses fields that no longer exist.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    ti: TypeInfo<'_>,
    scope: Scope,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    // a writer that changes managedFields itself (e.g. to drop a manager) sets the starting point
    let mut entries = match old {
        Some(o) if new["metadata"]["managedFields"] == o["metadata"]["managedFields"] => {
            read_entries(o)
        }
        Some(o)
            if new["metadata"]
                .get("managedFields")
                .is_none_or(|m| m.as_array().is_some_and(|a| a.is_empty())) =>
        {
            read_entries(o)
        }
        _ => read_entries(new),
    };
    let new_fields = fields_of(new, ti, scope);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| match old {
            None => true,
            Some(o) => {
                if matches!(p.last(), Some(PathElement::Key(_) | PathElement::Index(_))) {
                    get(o, p).is_none()
                } else {
                    get(o, p) != get(new, p)
                }
            }
        })
        .cloned()
        .collect();
    let subresource = match scope {
        Scope::Status => "status",
        Scope::Main { .. } => "",
    };
    for e in &mut entries {
        e.set.retain(|p| !changed.contains(p));
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        }) {
            Some(e) => {
                e.set.extend(changed);
                e.time = now.to_string();
                e.api_version = api_version.to_string();
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.to_string(),
                set: changed,
            }),
        }
    }
    prune_entries(&mut entries, new);
    write_entries(new, &entries);
}

/// Drop paths that no longer exist in `obj` from every entry.
pub fn prune_entries(entries: &mut [Entry], obj: &Value) {
    for e in entries.iter_mut() {
        e.set.retain(|p| get(obj, p).is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trip_and_shape() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "x"}, "finalizers": ["a"]},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "c", "image": "i", "args": ["x"]}
            ]}}},
            "status": {"replicas": 0}
        });
        let set = fields_of(
            &obj,
            TypeInfo::Builtin("Deployment"),
            Scope::Main { has_status: true },
        );
        let v1 = to_fields_v1(&set);
        assert_eq!(v1["f:metadata"]["f:labels"]["f:app"], json!({}));
        assert_eq!(v1["f:metadata"]["f:finalizers"]["v:\"a\""], json!({}));
        let item = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
        assert_eq!(item["."], json!({}));
        assert_eq!(item["f:args"], json!({}));
        assert!(v1.get("f:status").is_none());
        assert!(v1["f:metadata"].get("f:name").is_none());
        assert_eq!(from_fields_v1(&v1), set);
        let p = set
            .iter()
            .find(|p| p.last() == Some(&PathElement::Field("image".into())))
            .unwrap();
        assert_eq!(
            PathDisplay(p).to_string(),
            ".spec.template.spec.containers[name=\"c\"].image"
        );
        assert_eq!(get(&obj, p), Some(&json!("i")));
    }

    #[test]
    fn update_moves_changed_fields_to_the_writer() {
        let ti = TypeInfo::Builtin("ConfigMap");
        let scope = Scope::Main { has_status: false };
        let mut a = json!({"metadata": {"name": "c"}, "data": {"x": "1", "y": "2"}});
        record_update(None, &mut a, ti, scope, "alice", "v1", "t0");
        let mut b = a.clone();
        b["data"]["x"] = json!("changed");
        b["data"].as_object_mut().unwrap().remove("y");
        record_update(Some(&a), &mut b, ti, scope, "bob", "v1", "t1");
        let entries = read_entries(&b);
        let alice = entries.iter().find(|e| e.manager == "alice");
        let bob = entries.iter().find(|e| e.manager == "bob").unwrap();
        assert!(alice.is_none(), "alice lost x and y: {entries:?}");
        assert_eq!(
            bob.set.iter().next().map(|p| PathDisplay(p).to_string()),
            Some(".data.x".to_string())
        );
    }
}
