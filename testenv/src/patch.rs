//! Patches: JSON merge patch, JSON patch, strategic merge patch and server-side apply.

use serde_json::{Map, Value};

use crate::error::{ApiError, Cause};
use crate::managed_fields::{
    Entry, FieldSet, PathDisplay, PathElement, Scope, fields_of, get, item_key, prune_entries,
    read_entries, remove, write_entries,
};
use crate::schema::{ListType, TypeInfo};

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::unprocessable(format!(
            "the server rejected our request due to an error in our request: {e}"
        ))
    })
}

/// Kubernetes strategic merge patch, with list semantics from `ti`.
pub fn strategic_merge_patch(
    target: &mut Value,
    patch: &Value,
    ti: TypeInfo<'_>,
) -> Result<(), ApiError> {
    smp_value(target, patch, ti, &mut Vec::new())
}

fn smp_value(
    target: &mut Value,
    patch: &Value,
    ti: TypeInfo<'_>,
    names: &mut Vec<String>,
) -> Result<(), ApiError> {
    let Some(pmap) = patch.as_object() else {
        *target = patch.clone();
        return Ok(());
    };
    if pmap.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut m = pmap.clone();
        m.remove("$patch");
        *target = Value::Object(m);
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(tmap) = target.as_object_mut() else {
        return Ok(());
    };
    if let Some(retain) = pmap.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        tmap.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, pv) in pmap {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(del)) = (tmap.get_mut(field), pv.as_array()) {
                items.retain(|it| !del.contains(it));
            }
            continue;
        }
        if pv.is_null() {
            tmap.remove(k);
            continue;
        }
        names.push(k.clone());
        match pv {
            Value::Object(_) => {
                let entry = tmap.entry(k.clone()).or_insert(Value::Null);
                smp_value(entry, pv, ti, names)?;
            }
            Value::Array(pitems) => {
                let lt = ti.list_type(names);
                match (lt, tmap.get_mut(k)) {
                    (ListType::Map(keys), Some(Value::Array(titems))) if !keys.is_empty() => {
                        // patchMergeKey is the first key
                        let key = &keys[..1];
                        smp_list(titems, pitems, key, ti, names)?;
                    }
                    (ListType::Set, Some(Value::Array(titems))) => {
                        for it in pitems {
                            if !titems.contains(it) {
                                titems.push(it.clone());
                            }
                        }
                    }
                    _ => {
                        let cleaned: Vec<Value> = pitems
                            .iter()
                            .filter(|it| it.get("$patch").is_none())
                            .cloned()
                            .collect();
                        tmap.insert(k.clone(), Value::Array(cleaned));
                    }
                }
            }
            other => {
                tmap.insert(k.clone(), other.clone());
            }
        }
        names.pop();
    }
    Ok(())
}

fn smp_list(
    titems: &mut Vec<Value>,
    pitems: &[Value],
    key: &[String],
    ti: TypeInfo<'_>,
    names: &mut Vec<String>,
) -> Result<(), ApiError> {
    if pitems
        .iter()
        .any(|it| it.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *titems = pitems
            .iter()
            .filter(|it| it.get("$patch").is_none())
            .cloned()
            .collect();
        return Ok(());
    }
    for pit in pitems {
        let k = item_key(pit, key);
        let pos = k.as_ref().and_then(|k| {
            titems
                .iter()
                .position(|t| item_key(t, key).as_ref() == Some(k))
        });
        if pit.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                titems.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => {
                if let Some(t) = titems.get_mut(i) {
                    smp_value(t, pit, ti, names)?;
                }
            }
            None => {
                let mut fresh = Value::Object(Map::new());
                smp_value(&mut fresh, pit, ti, names)?;
                titems.push(fresh);
            }
        }
    }
    Ok(())
}

/// Deep-merge an applied configuration into a live object (server-side apply semantics).
fn apply_merge(live: &mut Value, applied: &Value, ti: TypeInfo<'_>, names: &mut Vec<String>) {
    let (Some(lmap), Some(amap)) = (live.as_object_mut(), applied.as_object()) else {
        *live = applied.clone();
        return;
    };
    for (k, av) in amap {
        names.push(k.clone());
        match (lmap.get_mut(k), av) {
            (Some(lv @ Value::Object(_)), Value::Object(_)) => apply_merge(lv, av, ti, names),
            (Some(Value::Array(litems)), Value::Array(aitems)) => match ti.list_type(names) {
                ListType::Map(keys) => {
                    for ait in aitems {
                        let key = item_key(ait, &keys);
                        let pos = key.as_ref().and_then(|k| {
                            litems
                                .iter()
                                .position(|l| item_key(l, &keys).as_ref() == Some(k))
                        });
                        match pos.and_then(|i| litems.get_mut(i)) {
                            Some(l) => apply_merge(l, ait, ti, names),
                            None => litems.push(ait.clone()),
                        }
                    }
                }
                ListType::Set => {
                    for ait in aitems {
                        if !litems.contains(ait) {
                            litems.push(ait.clone());
                        }
                    }
                }
                ListType::Atomic => *litems = aitems.clone(),
            },
            _ => {
                lmap.insert(k.clone(), av.clone());
            }
        }
        names.pop();
    }
}

/// A server-side apply request.
pub struct ApplyRequest<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// Take ownership from conflicting managers.
    pub force: bool,
    /// Type information for list merging.
    pub ti: TypeInfo<'a>,
    /// Main resource or status.
    pub scope: Scope,
    /// apiVersion used for the entry.
    pub api_version: &'a str,
    /// Current time (RFC 3339).
    pub now: &'a str,
    /// For error details: group, plural, name.
    pub group: &'a str,
    /// Plural resource name.
    pub plural: &'a str,
    /// Object name.
    pub name: &'a str,
}

/// Server-side apply `applied` onto `live` (an empty object when creating). Returns the new object with
/// updated `managedFields`, or a 409 Conflict.
pub fn server_side_apply(
    live: &Value,
    applied: &Value,
    req: &ApplyRequest<'_>,
) -> Result<Value, ApiError> {
    let mut applied = applied.clone();
    if let Some(m) = applied.as_object_mut() {
        match req.scope {
            Scope::Main { has_status: true } => {
                m.remove("status");
            }
            Scope::Status => {
                let status = m.remove("status");
                m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
                if let Some(s) = status {
                    m.insert("status".into(), s);
                }
            }
            Scope::Main { has_status: false } => {}
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            meta.remove("resourceVersion");
            if req.scope == Scope::Status {
                meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
            }
        }
    }
    let subresource = if req.scope == Scope::Status {
        "status"
    } else {
        ""
    };
    let new_set = fields_of(&applied, req.ti, req.scope);
    let mut entries = read_entries(live);
    let is_mine = |e: &Entry| {
        e.manager == req.manager && e.operation == "Apply" && e.subresource == subresource
    };

    // conflicts: leaf fields whose value this apply changes and that another manager owns
    let mut conflicts: Vec<(usize, crate::managed_fields::FieldPath)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        // managers are (name, operation, subresource): the same name with Update conflicts too
        if is_mine(e) {
            continue;
        }
        for p in new_set.intersection(&e.set) {
            if matches!(p.last(), Some(PathElement::Key(_) | PathElement::Index(_))) {
                continue;
            }
            if get(live, p) != get(&applied, p) {
                conflicts.push((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !req.force {
            return Err(conflict_error(&entries, &conflicts, req));
        }
        for (i, p) in &conflicts {
            if let Some(e) = entries.get_mut(*i) {
                e.set.remove(p);
            }
        }
    }

    let previous: FieldSet = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !is_mine(e))
        .flat_map(|e| e.set.iter().cloned())
        .collect();

    let mut result = live.clone();
    if !result.is_object() {
        result = Value::Object(Map::new());
    }
    apply_merge(&mut result, &applied, req.ti, &mut Vec::new());

    // remove what this manager applied before, dropped now, and nobody else owns (deepest first)
    let mut dropped: Vec<&crate::managed_fields::FieldPath> = previous
        .iter()
        .filter(|p| !new_set.contains(*p) && !others.contains(*p))
        .collect();
    // parents first: an item nobody owns anything under goes as a whole
    dropped.sort_by_key(|p| p.len());
    for p in dropped {
        if is_key_field(p) {
            continue;
        }
        let owned_below = others
            .iter()
            .chain(new_set.iter())
            .any(|o| o.len() > p.len() && o.starts_with(p));
        if !owned_below {
            remove(&mut result, p);
        }
    }

    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(e) => {
            e.set = new_set;
            e.time = req.now.to_string();
            e.api_version = req.api_version.to_string();
        }
        None => entries.push(Entry {
            manager: req.manager.to_string(),
            operation: "Apply".into(),
            api_version: req.api_version.to_string(),
            time: req.now.to_string(),
            subresource: subresource.to_string(),
            set: new_set,
        }),
    }
    prune_entries(&mut entries, &result);
    write_entries(&mut result, &entries);
    Ok(result)
}

/// A key field of an associative-list item (`k:{"name":"a"}` / `f:name`) is never removed on its own.
fn is_key_field(p: &[PathElement]) -> bool {
    match p {
        [.., PathElement::Key(k), PathElement::Field(f)] => serde_json::from_str::<Value>(k)
            .ok()
            .is_some_and(|v| v.get(f).is_some()),
        _ => false,
    }
}

fn conflict_error(
    entries: &[Entry],
    conflicts: &[(usize, crate::managed_fields::FieldPath)],
    req: &ApplyRequest<'_>,
) -> ApiError {
    let describe = |i: usize| entries.get(i).map(Entry::describe).unwrap_or_default();
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(i, p)| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {}", describe(*i)),
            field: PathDisplay(p).to_string(),
        })
        .collect();
    let message = if let [(i, p)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            describe(*i),
            PathDisplay(p)
        )
    } else {
        let mut managers: Vec<String> = conflicts.iter().map(|(i, _)| describe(*i)).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for (i, p) in conflicts {
                if describe(*i) == m {
                    lines.push(format!("- {}", PathDisplay(p)));
                }
            }
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApiError::apply_conflict(req.group, req.plural, req.name, message, causes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn strategic_merge_merges_containers_by_name_and_env_by_name() {
        let mut live = deploy(json!([
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "b:1"}
        ]));
        let patch = deploy(json!([
            {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}], "ports": [{"containerPort": 81}]},
            {"name": "b", "$patch": "delete"},
            {"name": "c", "image": "c:1"}
        ]));
        strategic_merge_patch(&mut live, &patch, TypeInfo::Builtin("Deployment")).unwrap();
        let cs = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = cs.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(cs[0]["image"], "a:2");
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(cs[0]["ports"].as_array().unwrap().len(), 2);
    }

    fn req<'a>(manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            manager,
            force,
            ti: TypeInfo::Builtin("Deployment"),
            scope: Scope::Main { has_status: true },
            api_version: "apps/v1",
            now: "2026-01-01T00:00:00Z",
            group: "apps",
            plural: "deployments",
            name: "d",
        }
    }

    #[test]
    fn apply_removes_dropped_fields_and_detects_conflicts() {
        let first = deploy(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]));
        let live = server_side_apply(&json!({}), &first, &req("one", false)).unwrap();
        // same manager drops container b: it is removed
        let second = deploy(json!([{"name": "a", "image": "a:1"}]));
        let live = server_side_apply(&live, &second, &req("one", false)).unwrap();
        let cs = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(cs.len(), 1);
        // another manager changing the image conflicts
        let other = deploy(json!([{"name": "a", "image": "a:2"}]));
        let err = server_side_apply(&live, &other, &req("two", false)).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.causes[0].field,
            ".spec.template.spec.containers[name=\"a\"].image"
        );
        assert!(
            err.message.contains("conflict with \"one\""),
            "{}",
            err.message
        );
        // forcing moves ownership
        let live = server_side_apply(&live, &other, &req("two", true)).unwrap();
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"][0]["image"],
            "a:2"
        );
        let entries = read_entries(&live);
        let one = entries.iter().find(|e| e.manager == "one").unwrap();
        assert!(
            !one.set
                .iter()
                .any(|p| PathDisplay(p).to_string().ends_with(".image"))
        );
        // same value from a second manager is shared, not a conflict
        let live2 = server_side_apply(&live, &other, &req("three", false)).unwrap();
        assert_eq!(read_entries(&live2).len(), 3);
    }
}
