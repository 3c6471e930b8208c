//! `meta.k8s.io/v1` Table responses for kubectl's server-side printing.

use serde_json::{Value, json};

use crate::builtin::ResourceDef;

/// Kubernetes' short human duration (`45s`, `3m20s`, `5h`, `2d3h`).
pub fn human_duration(secs: i64) -> String {
    if secs < 0 {
        return "<invalid>".into();
    }
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        let rm = m % 60;
        if rm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rm}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        let rh = h % 24;
        if rh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rh}h")
        }
    } else {
        format!("{d}d")
    }
}

fn age(obj: &Value) -> String {
    let Some(ts) = obj["metadata"]["creationTimestamp"].as_str() else {
        return "<unknown>".into();
    };
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// Evaluate a simple JSONPath like `.spec.url` or `.status.conditions[?(@.type=="Ready")].status`.
fn json_path(obj: &Value, path: &str) -> Value {
    let mut cur = obj.clone();
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur_part = String::new();
    for c in path.trim_start_matches('.').chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                parts.push(std::mem::take(&mut cur_part));
                continue;
            }
            _ => {}
        }
        cur_part.push(c);
    }
    parts.push(cur_part);
    for part in &parts {
        let part = part.as_str();
        if part.is_empty() {
            continue;
        }
        if let Some((field, filter)) = part.split_once("[?(@.") {
            cur = cur[field].clone();
            let filter = filter.trim_end_matches(")]");
            let Some((k, v)) = filter.split_once("==") else {
                return Value::Null;
            };
            let want = v.trim_matches(|c| c == '"' || c == '\'');
            cur = cur
                .as_array()
                .and_then(|a| a.iter().find(|it| it[k].as_str() == Some(want)).cloned())
                .unwrap_or(Value::Null);
        } else if let Some((field, idx)) = part.split_once('[') {
            let i: usize = idx.trim_end_matches(']').parse().unwrap_or(0);
            cur = cur[field][i].clone();
        } else {
            cur = cur[part].clone();
        }
    }
    cur
}

/// The `PartialObjectMetadata` view of an object.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// Render objects as a Table.
pub fn to_table(rd: &ResourceDef, items: &[Value], include: Option<&str>, meta: Value) -> Value {
    let mut columns = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    let custom: Vec<&Value> = rd
        .printer_columns
        .iter()
        .filter(|c| c["name"].is_string())
        .collect();
    let has_custom = !custom.is_empty();
    for c in &custom {
        columns.push(json!({"name": c["name"], "type": c["type"].as_str().unwrap_or("string"),
            "format": c["format"].as_str().unwrap_or(""), "description": c["description"].as_str().unwrap_or(""),
            "priority": c["priority"].as_i64().unwrap_or(0)}));
    }
    if !has_custom {
        columns.push(json!({"name": "Age", "type": "string", "format": "",
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            if has_custom {
                for c in &custom {
                    let v = json_path(o, c["jsonPath"].as_str().unwrap_or_default());
                    let v = if c["type"] == "date" {
                        v.as_str()
                            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                            .map(|t| {
                                json!(human_duration(
                                    jiff::Timestamp::now().as_second() - t.as_second()
                                ))
                            })
                            .unwrap_or(Value::Null)
                    } else {
                        v
                    };
                    cells.push(v);
                }
            } else {
                cells.push(json!(age(o)));
            }
            let object = match include {
                Some("None") => Value::Null,
                Some("Object") => o.clone(),
                _ => partial(o),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(5 * 3600 + 60), "5h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
    }

    #[test]
    fn json_path_filters() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            json!("True")
        );
    }
}
