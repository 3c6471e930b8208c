//! A minimal `/openapi/v3`: per group-version documents listing the operations of each resource,
//! enough for kubectl to learn that the server validates fields itself (`fieldValidation`).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Value, json};

use crate::builtin::ResourceDef;

fn gv_path(r: &ResourceDef) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

fn hash_of(v: &Value) -> String {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: the index of group-version documents.
pub fn root(resources: &[ResourceDef]) -> Value {
    let mut by_gv: BTreeMap<String, Vec<ResourceDef>> = BTreeMap::new();
    for r in resources {
        by_gv.entry(gv_path(r)).or_default().push(r.clone());
    }
    let paths: serde_json::Map<String, Value> = by_gv
        .iter()
        .map(|(gv, rs)| {
            let doc = gv_doc_for(rs);
            (
                gv.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", hash_of(&doc))}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v3/{gv}` for a path like `api/v1` or `apis/apps/v1`.
pub fn gv_doc(resources: &[ResourceDef], gv: &str) -> Option<Value> {
    let rs: Vec<ResourceDef> = resources
        .iter()
        .filter(|r| gv_path(r) == gv)
        .cloned()
        .collect();
    if rs.is_empty() {
        return None;
    }
    Some(gv_doc_for(&rs))
}

fn gv_doc_for(rs: &[ResourceDef]) -> Value {
    let mut paths = serde_json::Map::new();
    let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    for r in rs {
        let prefix = format!("/{}", gv_path(r));
        let item = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = |action: &str| {
            json!({
                "operationId": format!("{action}{}", r.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
                "responses": {"200": {"description": "OK"}}
            })
        };
        paths.insert(
            item,
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}}
    })
}
