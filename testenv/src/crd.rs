//! CustomResourceDefinitions: served versions, status, and schema pruning/defaulting/validation.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::builtin::ResourceDef;
use crate::error::Cause;

/// The resources a CRD serves (one per served version).
pub fn crd_resources(crd: &Value) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return vec![];
    }
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let crd_name = crd["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut out = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let Some(version) = v["name"].as_str() else {
            continue;
        };
        out.push(ResourceDef {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            short_names: strs(&names["shortNames"]),
            namespaced,
            categories: strs(&names["categories"]),
            status: v["subresources"]["status"].is_object(),
            schema: v["schema"]["openAPIV3Schema"]
                .is_object()
                .then(|| v["schema"]["openAPIV3Schema"].clone()),
            crd: Some(crd_name.clone()),
            printer_columns: v["additionalPrinterColumns"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            crd_scale: v["subresources"]["scale"]
                .is_object()
                .then(|| v["subresources"]["scale"].clone()),
        });
    }
    out
}

/// Basic validation of a CRD object itself.
pub fn validate_crd(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(required("spec.group"));
    }
    if plural.is_empty() {
        causes.push(required("spec.names.plural"));
    }
    if spec["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        causes.push(required("spec.names.kind"));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
            ),
            field: "metadata.name".into(),
        });
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(required("spec.versions"));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                serde_json::to_string(&spec["versions"]).unwrap_or_default()
            ),
            field: "spec.versions".into(),
        });
    }
    causes
}

fn required(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired".into(),
        message: "Required value".into(),
        field: field.into(),
    }
}

/// Set the status a CRD gets once its names are accepted and it is established.
pub fn set_crd_status(crd: &mut Value, now: &str) {
    let names = crd["spec"]["names"].clone();
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    let mut accepted = names;
    if let Some(obj) = accepted.as_object_mut() {
        if !obj.contains_key("singular") {
            let kind = obj
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase();
            obj.insert("singular".into(), json!(kind));
        }
        if !obj.contains_key("listKind") {
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
            obj.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    let prev_stored = crd["status"]["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut stored = prev_stored;
    for s in storage {
        if !stored.contains(&s) {
            stored.push(s);
        }
    }
    let prev_conditions = crd["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let cond = |t: &str, reason: &str, msg: &str| {
        let since = prev_conditions
            .iter()
            .find(|c| c["type"] == t && c["status"] == "True")
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or(now);
        json!({"type": t, "status": "True", "lastTransitionTime": since, "reason": reason, "message": msg})
    };
    crd["status"] = json!({
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    });
}

/// Prune unknown fields, apply defaults and validate `obj` against a structural schema.
/// `metadata`, `apiVersion` and `kind` at the root are kept as they are.
/// Returns the validation causes and the paths of pruned (unknown) fields.
pub fn prune_default_validate(schema: &Value, obj: &mut Value) -> (Vec<Cause>, Vec<String>) {
    let mut pruned = Vec::new();
    if let Some(map) = obj.as_object_mut() {
        let props = schema.get("properties").and_then(Value::as_object);
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        let keys: Vec<String> = map.keys().cloned().collect();
        for k in keys {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&k)) {
                Some(sub) => {
                    if let Some(v) = map.get_mut(&k) {
                        prune(sub, v, &k, &mut pruned);
                    }
                }
                None if preserve => {}
                None => {
                    map.remove(&k);
                    pruned.push(k);
                }
            }
        }
        if let Some(props) = props {
            for (k, sub) in props {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if !map.contains_key(k)
                    && let Some(d) = sub.get("default")
                {
                    map.insert(k.clone(), d.clone());
                }
                if let Some(v) = map.get_mut(k) {
                    default(sub, v);
                }
            }
        }
    }
    let mut causes = Vec::new();
    if let Some(map) = obj.as_object() {
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    causes.push(required(r));
                }
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, sub) in props {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(v) = map.get(k) {
                    validate(sub, v, k, &mut causes);
                }
            }
        }
    }
    (causes, pruned)
}

fn is_preserve(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn prune(schema: &Value, v: &mut Value, path: &str, pruned: &mut Vec<String>) {
    if schema
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true)
        && is_preserve(schema)
    {
        return;
    }
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            if let Some(add) = additional.filter(|a| a.is_object()) {
                for (k, val) in map.iter_mut() {
                    prune(add, val, &format!("{path}.{k}"), pruned);
                }
                return;
            }
            if additional.and_then(Value::as_bool) == Some(true) {
                return;
            }
            let preserve = is_preserve(schema);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                match props.and_then(|p| p.get(&k)) {
                    Some(sub) => {
                        if let Some(val) = map.get_mut(&k) {
                            prune(sub, val, &format!("{path}.{k}"), pruned);
                        }
                    }
                    None if preserve => {}
                    None => {
                        map.remove(&k);
                        pruned.push(format!("{path}.{k}"));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, it) in items.iter_mut().enumerate() {
                    prune(item_schema, it, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

fn default(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if !map.contains_key(k)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                    if let Some(val) = map.get_mut(k) {
                        default(sub, val);
                    }
                }
            }
            if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for val in map.values_mut() {
                    default(add, val);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for it in items {
                    default(item_schema, it);
                }
            }
        }
        _ => {}
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Null => "\"null\"".to_string(),
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn invalid(path: &str, v: &Value, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {}: {path} in body {detail}", render(v)),
        field: path.to_string(),
    }
}

/// Validate a value against a structural schema node, appending causes.
pub fn validate(schema: &Value, v: &Value, path: &str, causes: &mut Vec<Cause>) {
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if schema.get("type").is_none() && is_preserve(schema) {
            return;
        }
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    let actual = type_name(v);
    if int_or_string {
        if !matches!(actual, "integer" | "string") {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid".into(),
                message: format!(
                    "Invalid value: {}: {path} in body must be of type integer,string: {}",
                    render(v),
                    render(&json!(actual))
                ),
                field: path.to_string(),
            });
            return;
        }
    } else if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "number" => matches!(actual, "integer" | "number"),
            "integer" => {
                actual == "integer"
                    || v.as_f64()
                        .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            }
            other => other == actual,
        };
        if !ok {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid".into(),
                message: format!(
                    "Invalid value: {}: {path} in body must be of type {t}: {}",
                    render(v),
                    render(&json!(actual))
                ),
                field: path.to_string(),
            });
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let mut list = String::new();
        for (i, a) in allowed.iter().enumerate() {
            if i > 0 {
                list.push_str(", ");
            }
            let _ = write!(list, "{a}");
        }
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: {v}: supported values: {list}"),
            field: path.to_string(),
        });
    }
    match v {
        Value::String(s) => validate_string(schema, v, s, path, causes),
        Value::Number(n) => validate_number(schema, v, n.as_f64().unwrap_or(0.0), path, causes),
        Value::Array(items) => validate_array(schema, v, items, path, causes),
        Value::Object(map) => validate_object(schema, map, path, causes),
        _ => {}
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        let Some(subs) = schema.get(key).and_then(Value::as_array) else {
            continue;
        };
        let results: Vec<Vec<Cause>> = subs
            .iter()
            .map(|s| {
                let mut c = Vec::new();
                validate(s, v, path, &mut c);
                c
            })
            .collect();
        let passing = results.iter().filter(|c| c.is_empty()).count();
        match key {
            "allOf" => causes.extend(results.into_iter().flatten()),
            "anyOf" if passing == 0 => causes.push(invalid(
                path,
                v,
                "must validate at least one schema (anyOf)",
            )),
            "oneOf" if passing != 1 => causes.push(invalid(
                path,
                v,
                "must validate one and only one schema (oneOf)",
            )),
            _ => {}
        }
    }
    if let Some(not) = schema.get("not") {
        let mut c = Vec::new();
        validate(not, v, path, &mut c);
        if c.is_empty() {
            causes.push(invalid(path, v, "must not validate the schema (not)"));
        }
    }
}

fn validate_string(schema: &Value, v: &Value, s: &str, path: &str, causes: &mut Vec<Cause>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        causes.push(Cause {
            reason: "FieldValueTooLong".into(),
            message: format!("Too long: may not be more than {max} bytes"),
            field: path.to_string(),
        });
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        causes.push(invalid(
            path,
            v,
            &format!("should be at least {min} chars long"),
        ));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(p) {
            Ok(re) if !re.is_match(s) => {
                causes.push(invalid(path, v, &format!("should match '{p}'")));
            }
            _ => {}
        }
    }
}

fn validate_number(schema: &Value, v: &Value, f: f64, path: &str, causes: &mut Vec<Cause>) {
    let excl = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if excl("exclusiveMinimum") && f <= min {
            causes.push(invalid(path, v, &format!("should be greater than {min}")));
        } else if f < min {
            causes.push(invalid(
                path,
                v,
                &format!("should be greater than or equal to {min}"),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if excl("exclusiveMaximum") && f >= max {
            causes.push(invalid(path, v, &format!("should be less than {max}")));
        } else if f > max {
            causes.push(invalid(
                path,
                v,
                &format!("should be less than or equal to {max}"),
            ));
        }
    }
    if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
        && m != 0.0
        && (f / m).fract() != 0.0
    {
        causes.push(invalid(path, v, &format!("should be a multiple of {m}")));
    }
}

fn validate_array(schema: &Value, v: &Value, items: &[Value], path: &str, causes: &mut Vec<Cause>) {
    let n = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        causes.push(Cause {
            reason: "FieldValueTooMany".into(),
            message: format!("Too many: {n}: must have at most {max} items"),
            field: path.to_string(),
        });
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        causes.push(invalid(
            path,
            v,
            &format!("should have at least {min} items"),
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, it) in items.iter().enumerate() {
            validate(item_schema, it, &format!("{path}[{i}]"), causes);
        }
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                causes.push(required(&format!("{path}.{r}")));
            }
        }
    }
    let n = map.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && n > max
    {
        causes.push(Cause {
            reason: "FieldValueTooMany".into(),
            message: format!("Too many: {n}: must have at most {max} items"),
            field: path.to_string(),
        });
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && n < min
    {
        causes.push(invalid(
            path,
            &Value::Object(map.clone()),
            &format!("should have at least {min} properties"),
        ));
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, val) in map {
        if let Some(sub) = props.and_then(|p| p.get(k)) {
            validate(sub, val, &format!("{path}.{k}"), causes);
        } else if let Some(add) = additional {
            validate(add, val, &format!("{path}[{k}]"), causes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["url"],
                    "properties": {
                        "url": {"type": "string", "pattern": "^https?://"},
                        "interval": {"type": "string", "default": "5m"},
                        "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "port": {"x-kubernetes-int-or-string": true},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                    }
                }
            }
        })
    }

    #[test]
    fn prunes_defaults_and_accepts_valid_objects() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"url": "https://e", "unknown": 1, "port": "http", "extra": {"any": {"thing": 1}}},
            "junk": true});
        let (causes, pruned) = prune_default_validate(&schema(), &mut obj);
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(obj["spec"]["interval"], "5m");
        assert!(obj["spec"].get("unknown").is_none());
        assert!(obj.get("junk").is_none());
        assert_eq!(pruned, ["junk", "spec.unknown"]);
        assert_eq!(obj["spec"]["extra"]["any"]["thing"], 1);
        assert_eq!(obj["metadata"]["name"], "a");
    }

    #[test]
    fn reports_each_violation_with_its_field() {
        let mut obj = json!({"spec": {"url": "ftp://x", "replicas": 11, "mode": "c", "port": true, "tags": ["a","b","c"]}});
        let (causes, _) = prune_default_validate(&schema(), &mut obj);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        for f in [
            "spec.url",
            "spec.replicas",
            "spec.mode",
            "spec.port",
            "spec.tags",
        ] {
            assert!(fields.contains(&f), "{f} missing from {causes:?}");
        }
        let mut obj = json!({"spec": {"replicas": "three"}});
        let (causes, _) = prune_default_validate(&schema(), &mut obj);
        assert!(
            causes
                .iter()
                .any(|c| c.field == "spec.url" && c.reason == "FieldValueRequired")
        );
        assert!(
            causes.iter().any(
                |c| c.field == "spec.replicas" && c.message.contains("must be of type integer")
            )
        );
    }

    #[test]
    fn crd_resources_follow_served_versions() {
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {
        "group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
            {"name": "v1beta1", "served": false, "storage": false}
        ]}});
        let defs = crd_resources(&crd);
        assert_eq!(defs.len(), 1);
        assert_eq!(defs[0].version, "v1");
        assert!(defs[0].status);
        assert_eq!(defs[0].short_names, vec!["wd".to_string()]);
        assert!(validate_crd(&crd).is_empty());
    }
}
