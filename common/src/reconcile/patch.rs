//! JSON merge patches (RFC 7386) computed from two versions of a document.

use serde_json::{Map, Value};

/// The merge patch that turns `old` into `new`: changed or added keys carry the new value, removed keys are
/// `null`, nested objects are diffed recursively and everything else (arrays included, so condition lists stay
/// atomic) is replaced whole. `None` when the two are equal.
pub fn merge_patch(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, value) in new {
                match old.get(key) {
                    Some(prev) => {
                        if let Some(p) = merge_patch(prev, value) {
                            patch.insert(key.clone(), p);
                        }
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys() {
                if !new.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ if old == new => None,
        _ => Some(new.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Applies a merge patch as RFC 7386 says, to check the diff round-trips.
    fn apply(target: &Value, patch: &Value) -> Value {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                let mut out = t.clone();
                for (k, v) in p {
                    if v.is_null() {
                        out.remove(k);
                    } else {
                        let merged = apply(out.get(k).unwrap_or(&Value::Null), v);
                        out.insert(k.clone(), merged);
                    }
                }
                Value::Object(out)
            }
            (_, Value::Object(p)) => apply(&json!({}), &Value::Object(p.clone())),
            (_, p) => p.clone(),
        }
    }

    #[test]
    fn equal_documents_need_no_patch() {
        let doc = json!({"a": {"b": [1, 2]}, "c": "x"});
        assert_eq!(merge_patch(&doc, &doc), None);
    }

    #[test]
    fn removed_keys_become_null_and_nested_objects_are_diffed() {
        let old =
            json!({"artifact": {"revision": "a", "size": 1}, "observedGeneration": 1, "url": "u"});
        let new = json!({"artifact": {"revision": "b"}, "observedGeneration": 1});
        let patch = merge_patch(&old, &new).unwrap();
        assert_eq!(
            patch,
            json!({"artifact": {"revision": "b", "size": null}, "url": null})
        );
        assert_eq!(apply(&old, &patch), new);
    }

    #[test]
    fn arrays_are_replaced_whole() {
        let old = json!({"conditions": [{"type": "Ready"}, {"type": "Reconciling"}]});
        let new = json!({"conditions": [{"type": "Ready"}]});
        assert_eq!(merge_patch(&old, &new).unwrap(), new);
    }
}
