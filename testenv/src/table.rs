//! `meta.k8s.io/v1` Table responses for kubectl's server-side printing.

use serde_json::{Value, json};

use crate::builtin::ResourceDef;
use crate::simulate::spec_replicas;

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

/// The columns the real API server prints for some built-in kinds (between Name and Age), and how to fill them.
type BuiltinColumns = (&'static [&'static str], fn(&Value) -> Vec<Value>);

fn builtin_columns(rd: &ResourceDef) -> Option<BuiltinColumns> {
    if rd.crd.is_some() {
        return None;
    }
    Some(match (rd.group.as_str(), rd.plural.as_str()) {
        ("apps", "deployments") => (&["Ready", "Up-to-date", "Available"], |o| {
            let s = &o["status"];
            vec![
                json!(format!(
                    "{}/{}",
                    count(&s["readyReplicas"]),
                    spec_replicas(o)
                )),
                json!(count(&s["updatedReplicas"])),
                json!(count(&s["availableReplicas"])),
            ]
        }),
        ("apps", "statefulsets") => (&["Ready"], |o| {
            vec![json!(format!(
                "{}/{}",
                count(&o["status"]["readyReplicas"]),
                spec_replicas(o)
            ))]
        }),
        ("apps", "replicasets") => (&["Desired", "Current", "Ready"], |o| {
            let s = &o["status"];
            vec![
                json!(spec_replicas(o)),
                json!(count(&s["replicas"])),
                json!(count(&s["readyReplicas"])),
            ]
        }),
        ("apps", "daemonsets") => (
            &["Desired", "Current", "Ready", "Up-to-date", "Available"],
            |o| {
                let s = &o["status"];
                [
                    "desiredNumberScheduled",
                    "currentNumberScheduled",
                    "numberReady",
                    "updatedNumberScheduled",
                    "numberAvailable",
                ]
                .iter()
                .map(|f| json!(count(&s[*f])))
                .collect()
            },
        ),
        ("", "pods") => (&["Ready", "Status", "Restarts"], |o| {
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let statuses = o["status"]["containerStatuses"].as_array();
            let ready = statuses.map_or(0, |c| {
                c.iter().filter(|c| c["ready"] == json!(true)).count()
            });
            let restarts: i64 =
                statuses.map_or(0, |c| c.iter().map(|c| count(&c["restartCount"])).sum());
            vec![
                json!(format!("{ready}/{total}")),
                json!(o["status"]["phase"].as_str().unwrap_or("Pending")),
                json!(restarts),
            ]
        }),
        ("", "services") => (&["Type", "Cluster-IP", "External-IP", "Port(s)"], |o| {
            let spec = &o["spec"];
            let external: Vec<&str> = o["status"]["loadBalancer"]["ingress"]
                .as_array()
                .map(|i| {
                    i.iter()
                        .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
                        .collect()
                })
                .unwrap_or_default();
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let proto = p["protocol"].as_str().unwrap_or("TCP");
                            match p["nodePort"].as_i64() {
                                Some(node) => format!("{}:{node}/{proto}", count(&p["port"])),
                                None => format!("{}/{proto}", count(&p["port"])),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                json!(spec["type"].as_str().unwrap_or("ClusterIP")),
                json!(spec["clusterIP"].as_str().unwrap_or("<none>")),
                json!(if external.is_empty() {
                    "<none>".to_owned()
                } else {
                    external.join(",")
                }),
                json!(if ports.is_empty() {
                    "<none>".to_owned()
                } else {
                    ports.join(",")
                }),
            ]
        }),
        ("", "namespaces") => (&["Status"], |o| {
            vec![json!(o["status"]["phase"].as_str().unwrap_or("Active"))]
        }),
        ("", "configmaps") => (&["Data"], |o| {
            let n = |f: &str| o[f].as_object().map_or(0, serde_json::Map::len);
            vec![json!(n("data") + n("binaryData"))]
        }),
        ("", "secrets") => (&["Type", "Data"], |o| {
            vec![
                json!(o["type"].as_str().unwrap_or("Opaque")),
                json!(o["data"].as_object().map_or(0, serde_json::Map::len)),
            ]
        }),
        ("", "persistentvolumeclaims") => (&["Status"], |o| {
            vec![json!(o["status"]["phase"].as_str().unwrap_or("Pending"))]
        }),
        ("batch", "jobs") => (&["Status", "Completions"], |o| {
            let s = &o["status"];
            let has = |t: &str| {
                s["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == json!(t) && c["status"] == json!("True"))
                })
            };
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else {
                "Running"
            };
            let completions = o["spec"]["completions"].as_i64().unwrap_or(1);
            vec![
                json!(status),
                json!(format!("{}/{completions}", count(&s["succeeded"]))),
            ]
        }),
        _ => return None,
    })
}

fn count(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
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
    let builtin = builtin_columns(rd);
    for name in builtin.map_or(&[][..], |(names, _)| names) {
        columns.push(
            json!({"name": name, "type": "string", "format": "", "description": "", "priority": 0}),
        );
    }
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
                if let Some((_, fill)) = builtin {
                    cells.extend(fill(o));
                }
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
    fn builtin_kinds_print_their_columns() {
        let rd = |group: &str, plural: &str| {
            crate::builtin::builtin_resources()
                .into_iter()
                .find(|r| r.group == group && r.plural == plural)
                .unwrap()
        };
        let deploy = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let table = to_table(&rd("apps", "deployments"), &[deploy], None, json!({}));
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Ready", "Up-to-date", "Available", "Age"]);
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[1], json!("2/3"));
        assert_eq!(cells[2], json!(3));

        let svc = json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.7",
            "ports": [{"port": 80}, {"port": 443, "protocol": "TCP", "nodePort": 30443}]}});
        let cells =
            to_table(&rd("", "services"), &[svc], None, json!({}))["rows"][0]["cells"].clone();
        assert_eq!(cells[1], json!("ClusterIP"));
        assert_eq!(cells[2], json!("10.96.0.7"));
        assert_eq!(cells[3], json!("<none>"));
        assert_eq!(cells[4], json!("80/TCP,443:30443/TCP"));

        let job = json!({"metadata": {"name": "j"}, "spec": {},
            "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}});
        let cells =
            to_table(&rd("batch", "jobs"), &[job], None, json!({}))["rows"][0]["cells"].clone();
        assert_eq!(cells[1], json!("Complete"));
        assert_eq!(cells[2], json!("1/1"));
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
