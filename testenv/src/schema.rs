//! Per-type structural knowledge used by patches and server-side apply: how lists merge.

use serde_json::Value;

use crate::builtin::builtin_list_type;

/// How a list merges (Kubernetes `x-kubernetes-list-type` / `patchStrategy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars, merged by value.
    Set,
    /// Items identified by the values of these keys.
    Map(Vec<String>),
}

/// The type information of one resource.
#[derive(Debug, Clone, Copy)]
pub enum TypeInfo<'a> {
    /// A built-in kind.
    Builtin(&'a str),
    /// A custom resource with its version's openAPIV3Schema.
    Crd(Option<&'a Value>),
}

impl TypeInfo<'_> {
    /// The list type at a path of field names (list indices left out).
    pub fn list_type(&self, path: &[String]) -> ListType {
        if path.first().map(String::as_str) == Some("metadata") {
            return builtin_list_type("", path);
        }
        match self {
            TypeInfo::Builtin(kind) => builtin_list_type(kind, path),
            TypeInfo::Crd(None) => ListType::Atomic,
            TypeInfo::Crd(Some(schema)) => {
                let Some(node) = walk(schema, path) else {
                    return ListType::Atomic;
                };
                match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("map") => ListType::Map(
                        node.get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|k| k.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    Some("set") => ListType::Set,
                    _ => ListType::Atomic,
                }
            }
        }
    }
}

/// Walk a structural schema along field names, stepping through array items transparently.
fn walk<'a>(schema: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = schema;
    for field in path {
        while node.get("type").and_then(Value::as_str) == Some("array") {
            node = node.get("items")?;
        }
        node = match node.get("properties").and_then(|p| p.get(field)) {
            Some(n) => n,
            None => node.get("additionalProperties").filter(|v| v.is_object())?,
        };
    }
    Some(node)
}
