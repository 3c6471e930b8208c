//! Server-side apply in Flux's stages: CRDs, Namespaces and ClusterRoles first (waited for), then `*Class`
//! kinds (waited for), then the rest. Each stage dry-runs every object first; nothing in a stage is applied
//! unless every dry-run passed; only objects that drifted are applied.
//!
//! Drift is the dry-run result compared with the in-cluster object (labels, annotations and everything but
//! metadata and status), minus `spec.ignore` paths. The in-cluster object is only read when the dry-run shows a
//! resourceVersion this controller has not seen: for an object unchanged since the last apply, one dry-run
//! request is all it costs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use common::api::kustomize_v1::{IgnoreRule, Selector};
use common::api::meta::annotations::{
    DISABLED_VALUE, ENABLED_VALUE, IF_NOT_PRESENT_VALUE, IGNORE_VALUE, KUSTOMIZE_FORCE,
    KUSTOMIZE_RECONCILE, KUSTOMIZE_SSA, MERGE_VALUE,
};
use futures::StreamExt;
use kube::Client;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::discovery::{Resolved, Resolver, api_message, is_not_found};
use super::expr::CustomHealth;
use super::health::{self, WaitOptions};
use super::inventory::{Action, Change, ObjMeta, Stage, format_changes, order, stage_of};

/// Apply settings.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub field_manager: String,
    /// `spec.force`: recreate objects whose immutable fields changed.
    pub force: bool,
    /// `spec.ignore`.
    pub ignore: Vec<IgnoreRule>,
    /// How long to wait for CRDs/Namespaces/Classes to become ready.
    pub wait_timeout: Duration,
    /// Concurrent dry-runs per Kustomization.
    pub concurrency: usize,
}

/// Why the apply failed; `changes` holds what was applied before the failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApplyError {
    pub message: String,
    pub changes: Vec<Change>,
}

impl ApplyError {
    fn new(message: impl Into<String>) -> Self {
        ApplyError {
            message: message.into(),
            changes: Vec::new(),
        }
    }
}

/// What this controller last saw of each applied object: its resourceVersion and the fingerprint of its
/// comparable content. Keyed by Kustomization, then inventory id.
#[derive(Debug, Default)]
pub struct AppliedCache {
    seen: Mutex<HashMap<String, HashMap<String, Seen>>>,
}

/// resourceVersion and content fingerprint.
type Seen = (String, [u8; 32]);

impl AppliedCache {
    fn get(&self, owner: &str, id: &str) -> Option<Seen> {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.get(owner).and_then(|m| m.get(id).cloned()))
    }

    fn put(&self, owner: &str, id: String, rv: String, fp: [u8; 32]) {
        if let Ok(mut s) = self.seen.lock() {
            s.entry(owner.to_string()).or_default().insert(id, (rv, fp));
        }
    }

    /// Forgets a Kustomization (deleted) or one object (pruned).
    pub fn forget(&self, owner: &str, id: Option<&str>) {
        if let Ok(mut s) = self.seen.lock() {
            match id {
                Some(id) => {
                    if let Some(m) = s.get_mut(owner) {
                        m.remove(id);
                    }
                }
                None => {
                    s.remove(owner);
                }
            }
        }
    }
}

/// Annotations and labels of an object's metadata.
fn meta_value<'a>(obj: &'a Value, field: &str, key: &str) -> Option<&'a str> {
    obj["metadata"][field][key].as_str()
}

/// Whether any label or annotation of `obj` is `key: value`.
fn any_in_metadata(obj: &Value, pairs: &[(&str, &str)]) -> bool {
    pairs.iter().any(|(k, v)| {
        meta_value(obj, "annotations", k) == Some(v) || meta_value(obj, "labels", k) == Some(v)
    })
}

const EXCLUDE: &[(&str, &str)] = &[
    (KUSTOMIZE_RECONCILE, DISABLED_VALUE),
    (KUSTOMIZE_SSA, IGNORE_VALUE),
];

/// Annotations, labels and field managers removed from in-cluster objects (reverting `kubectl` edits).
const CLEANUP_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "kustomize.toolkit.fluxcd.io/checksum",
    "fluxcd.io/sync-checksum",
];
const CLEANUP_LABELS: &[&str] = &["fluxcd.io/sync-gc-mark"];

/// Whether a managedFields entry belongs to a manager whose fields Flux takes over.
fn foreign_manager(entry: &Value, field_manager: &str) -> bool {
    let manager = entry["manager"].as_str().unwrap_or_default();
    let operation = entry["operation"].as_str().unwrap_or_default();
    if entry["subresource"].as_str().is_some_and(|s| !s.is_empty()) {
        return false;
    }
    manager.starts_with("kubectl")
        || (manager == "before-first-apply" && operation == "Update")
        || (manager == field_manager && operation == "Update")
}

fn needs_cleanup(obj: &Value, field_manager: &str) -> bool {
    CLEANUP_ANNOTATIONS
        .iter()
        .any(|a| meta_value(obj, "annotations", a).is_some())
        || CLEANUP_LABELS
            .iter()
            .any(|l| meta_value(obj, "labels", l).is_some())
        || obj["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|m| m.iter().any(|e| foreign_manager(e, field_manager)))
}

fn merge_fields(into: &mut Value, from: &Value) {
    match (into.as_object_mut(), from.as_object()) {
        (Some(a), Some(b)) => {
            for (k, v) in b {
                merge_fields(a.entry(k.clone()).or_insert_with(|| json!({})), v);
            }
        }
        _ => {
            if into.as_object().is_none_or(|m| m.is_empty()) {
                *into = from.clone();
            }
        }
    }
}

/// The merge patch that removes the cleanup annotations/labels and hands the fields of foreign managers to
/// `field_manager`'s Apply entry. `None` when nothing needs cleaning.
fn cleanup_patch(existing: &Value, field_manager: &str) -> Option<Value> {
    let mut metadata = serde_json::Map::new();
    let mut nulls = |field: &str, keys: &[&str]| {
        let present: serde_json::Map<String, Value> = keys
            .iter()
            .filter(|k| meta_value(existing, field, k).is_some())
            .map(|k| (k.to_string(), Value::Null))
            .collect();
        if !present.is_empty() {
            metadata.insert(field.to_string(), Value::Object(present));
        }
    };
    nulls("annotations", CLEANUP_ANNOTATIONS);
    nulls("labels", CLEANUP_LABELS);
    let entries = existing["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if entries.iter().any(|e| foreign_manager(e, field_manager)) {
        let mut kept = Vec::new();
        let mut taken = json!({});
        for e in &entries {
            if foreign_manager(e, field_manager) {
                merge_fields(&mut taken, &e["fieldsV1"]);
            } else {
                kept.push(e.clone());
            }
        }
        let ours = kept.iter_mut().find(|e| {
            e["manager"] == field_manager
                && e["operation"] == "Apply"
                && e["subresource"].as_str().is_none_or(str::is_empty)
        });
        match ours {
            Some(e) => merge_fields(&mut e["fieldsV1"], &taken),
            None => kept.push(json!({
                "manager": field_manager,
                "operation": "Apply",
                "apiVersion": existing["apiVersion"],
                "fieldsType": "FieldsV1",
                "fieldsV1": taken,
            })),
        }
        metadata.insert("managedFields".into(), Value::Array(kept));
    }
    (!metadata.is_empty()).then(|| json!({ "metadata": metadata }))
}

/// Canonical JSON text (sorted keys), for fingerprints independent of map order.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The parts of an object that drift detection compares, with ignored paths removed.
fn comparable(obj: &Value, ignore: &[String]) -> Value {
    let mut body = obj.clone();
    if let Some(m) = body.as_object_mut() {
        m.remove("status");
        let meta = m.remove("metadata").unwrap_or(Value::Null);
        m.insert(
            "metadata".into(),
            json!({"labels": meta["labels"], "annotations": meta["annotations"]}),
        );
    }
    for path in ignore {
        remove_pointer(&mut body, path);
    }
    body
}

fn fingerprint(v: &Value) -> [u8; 32] {
    let mut s = String::new();
    canonical(v, &mut s);
    sha2::Sha256::digest(s.as_bytes()).into()
}

fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

/// Removes the value at a JSON pointer, if present.
pub fn remove_pointer(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = unescape(last);
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    match target {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// Sets the value at a JSON pointer whose parent exists.
fn set_pointer(v: &mut Value, pointer: &str, value: Value) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = unescape(last);
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    match target {
        Some(Value::Object(m)) => {
            m.insert(last, value);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a[i] = value;
            }
        }
        _ => {}
    }
}

/// `k=v,k2!=v2,k3` equality-based selectors.
fn selector_matches(selector: &str, map: &Value) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                map[k.trim()].as_str() != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                map[k.trim()].as_str() == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                map[k.trim()].is_null()
            } else {
                !map[term].is_null()
            }
        })
}

fn target_matches(sel: &Selector, obj: &Value) -> bool {
    let m = ObjMeta::of(obj);
    let eq = |want: &Option<String>, have: &str| {
        want.as_deref()
            .filter(|w| !w.is_empty())
            .is_none_or(|w| w == have)
    };
    eq(&sel.group, &m.group)
        && eq(&sel.version, &m.version)
        && eq(&sel.kind, &m.kind)
        && eq(&sel.name, &m.name)
        && eq(&sel.namespace, &m.namespace)
        && sel
            .label_selector
            .as_deref()
            .is_none_or(|s| selector_matches(s, &obj["metadata"]["labels"]))
        && sel
            .annotation_selector
            .as_deref()
            .is_none_or(|s| selector_matches(s, &obj["metadata"]["annotations"]))
}

/// The ignore paths that apply to `obj`.
pub fn ignore_paths(rules: &[IgnoreRule], obj: &Value) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.target.as_ref().is_none_or(|t| target_matches(t, obj)))
        .flat_map(|r| r.paths.iter().cloned())
        .collect()
}

fn is_immutable_error(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => s.code == 422 || s.code == 409 || s.message.contains("immutable"),
        _ => false,
    }
}

/// Flux's `DryRunErr` message.
fn dry_run_error(meta: &ObjMeta, err: &kube::Error) -> ApplyError {
    match err {
        kube::Error::Api(s) if s.code == 404 => {
            ApplyError::new(format!("{meta} not found: {}", s.message))
        }
        kube::Error::Api(s) => {
            let reason = if s.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.reason)
            };
            ApplyError::new(format!("{meta} dry-run failed{reason}: {}", s.message))
        }
        other => ApplyError::new(format!("{meta} dry-run failed: {other}")),
    }
}

fn to_value(obj: &DynamicObject) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

fn rv_of(obj: &Value) -> Option<String> {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// One object after its dry-run: what to do with it.
struct Planned {
    meta: ObjMeta,
    action: Action,
    /// The payload to apply (Created/Configured).
    payload: Option<Value>,
    resolved: Option<Resolved>,
}

/// Applies objects for one Kustomization.
pub struct Applier<'a> {
    pub client: &'a Client,
    pub resolver: &'a Resolver,
    pub cache: &'a AppliedCache,
    /// `namespace/name` of the Kustomization (cache key).
    pub owner: String,
    pub opts: ApplyOptions,
    /// `spec.healthCheckExprs`, which also decide when the CRDs and namespaces of the first stages are ready
    /// (Flux's resource manager polls them with the same status readers).
    pub health: &'a CustomHealth,
}

impl Applier<'_> {
    fn params(&self, dry_run: bool) -> PatchParams {
        let mut p = PatchParams::apply(&self.opts.field_manager).force();
        p.dry_run = dry_run;
        p
    }

    /// Fills in the namespace of namespaced objects (`default` when unset) and drops it from cluster-scoped ones.
    async fn resolve(&self, obj: &mut Value) -> Result<Resolved, ApplyError> {
        let m = ObjMeta::of(obj);
        let resolved = self
            .resolver
            .resolve(self.client, &m.api_version(), &m.kind)
            .await
            .map_err(|e| {
                ApplyError::new(format!(
                    "{m} dry-run failed: no matches for kind \"{}\" in version \"{}\": {}",
                    m.kind,
                    m.api_version(),
                    api_message(&e)
                ))
            })?;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            if resolved.namespaced {
                if meta
                    .get("namespace")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(ApplyError::new(format!(
                        "{m} namespace not specified: the server could not find the requested resource"
                    )));
                }
            } else {
                meta.remove("namespace");
            }
        }
        Ok(resolved)
    }

    /// Dry-runs one object and decides what to do with it.
    async fn plan(&self, mut obj: Value) -> Result<Planned, ApplyError> {
        let resolved = self.resolve(&mut obj).await?;
        let meta = ObjMeta::of(&obj);
        let skipped = |meta: ObjMeta| Planned {
            meta,
            action: Action::Skipped,
            payload: None,
            resolved: None,
        };
        if any_in_metadata(&obj, EXCLUDE) {
            return Ok(skipped(meta));
        }
        let api = resolved.api(self.client.clone(), &meta.namespace);
        let dry = match api
            .patch(&meta.name, &self.params(true), &Patch::Apply(&obj))
            .await
        {
            Ok(d) => d,
            Err(err) => {
                let wants_force =
                    self.opts.force || any_in_metadata(&obj, &[(KUSTOMIZE_FORCE, ENABLED_VALUE)]);
                let existing = if is_immutable_error(&err) {
                    api.get_opt(&meta.name).await.ok().flatten()
                } else {
                    None
                };
                let force = existing.as_ref().is_some_and(|e| {
                    wants_force
                        || any_in_metadata(&to_value(e), &[(KUSTOMIZE_FORCE, ENABLED_VALUE)])
                });
                if !force {
                    return Err(dry_run_error(&meta, &err));
                }
                self.recreate(&api, &meta).await?;
                api.patch(&meta.name, &self.params(true), &Patch::Apply(&obj))
                    .await
                    .map_err(|e| dry_run_error(&meta, &e))?
            }
        };
        let dry = to_value(&dry);
        let Some(rv) = rv_of(&dry) else {
            return Ok(Planned {
                meta,
                action: Action::Created,
                payload: Some(obj),
                resolved: Some(resolved),
            });
        };
        if any_in_metadata(&dry, EXCLUDE)
            || meta_value(&obj, "annotations", KUSTOMIZE_SSA) == Some(IF_NOT_PRESENT_VALUE)
            || meta_value(&obj, "labels", KUSTOMIZE_SSA) == Some(IF_NOT_PRESENT_VALUE)
        {
            return Ok(skipped(meta));
        }
        let ignore = ignore_paths(&self.opts.ignore, &dry);
        let dry_fp = fingerprint(&comparable(&dry, &ignore));
        let id = meta.id();
        let cleanup_excluded = any_in_metadata(&obj, &[(KUSTOMIZE_SSA, MERGE_VALUE)])
            || any_in_metadata(&dry, &[(KUSTOMIZE_SSA, MERGE_VALUE)]);
        let dirty = !cleanup_excluded && needs_cleanup(&dry, &self.opts.field_manager);
        if !dirty && self.cache.get(&self.owner, &id) == Some((rv.clone(), dry_fp)) {
            return Ok(Planned {
                meta,
                action: Action::Unchanged,
                payload: None,
                resolved: Some(resolved),
            });
        }
        // Unknown resourceVersion: compare with the object in the cluster.
        let existing = api
            .get_opt(&meta.name)
            .await
            .map_err(|e| ApplyError::new(format!("{meta} query failed: {}", api_message(&e))))?
            .map(|e| to_value(&e));
        let Some(mut existing) = existing else {
            return Ok(Planned {
                meta,
                action: Action::Created,
                payload: Some(obj),
                resolved: Some(resolved),
            });
        };
        let mut patched = false;
        if !cleanup_excluded && let Some(patch) = cleanup_patch(&existing, &self.opts.field_manager)
        {
            let params = PatchParams {
                field_manager: Some(self.opts.field_manager.clone()),
                ..Default::default()
            };
            let result = api
                .patch(&meta.name, &params, &Patch::Merge(&patch))
                .await
                .map_err(|e| {
                    ApplyError::new(format!(
                        "{meta} metadata.managedFields cleanup failed: {}",
                        api_message(&e)
                    ))
                })?;
            existing = to_value(&result);
            patched = true;
        }
        let drifted = comparable(&existing, &ignore) != comparable(&dry, &ignore);
        if !drifted && !patched {
            let fp = fingerprint(&comparable(&existing, &ignore));
            if let Some(rv) = rv_of(&existing) {
                self.cache.put(&self.owner, id, rv, fp);
            }
            return Ok(Planned {
                meta,
                action: Action::Unchanged,
                payload: None,
                resolved: Some(resolved),
            });
        }
        // Ignored paths keep their in-cluster values.
        let mut payload = obj;
        for path in &ignore {
            match existing.pointer(path) {
                Some(v) => set_pointer(&mut payload, path, v.clone()),
                None => remove_pointer(&mut payload, path),
            }
        }
        Ok(Planned {
            meta,
            action: Action::Configured,
            payload: Some(payload),
            resolved: Some(resolved),
        })
    }

    /// Deletes an object whose immutable fields changed and waits until it is gone.
    async fn recreate(
        &self,
        api: &kube::Api<DynamicObject>,
        meta: &ObjMeta,
    ) -> Result<(), ApplyError> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match api.delete(&meta.name, &dp).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(ApplyError::new(format!(
                    "{meta} immutable field detected, failed to delete object: {}",
                    api_message(&e)
                )));
            }
        }
        let deadline = tokio::time::Instant::now() + self.opts.wait_timeout;
        loop {
            match api.get_opt(&meta.name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Some(_)) => {
                    return Err(ApplyError::new(format!(
                        "{meta} immutable field detected, failed to wait for object to be deleted"
                    )));
                }
                Err(e) => {
                    return Err(ApplyError::new(format!(
                        "{meta} immutable field detected, failed to wait for object to be deleted: {}",
                        api_message(&e)
                    )));
                }
            }
        }
    }

    /// Dry-runs every object of a stage, then applies those that changed.
    async fn apply_stage(&self, mut objects: Vec<Value>) -> Result<Vec<Change>, ApplyError> {
        objects.sort_by(|a, b| order(&ObjMeta::of(a), &ObjMeta::of(b)));
        let planned: Vec<Result<Planned, ApplyError>> = futures::stream::iter(objects)
            .map(|o| self.plan(o))
            .buffered(self.opts.concurrency.max(1))
            .collect()
            .await;
        let mut plans = Vec::with_capacity(planned.len());
        let mut errors = Vec::new();
        for p in planned {
            match p {
                Ok(p) => plans.push(p),
                Err(e) => errors.push(e.message),
            }
        }
        if !errors.is_empty() {
            return Err(ApplyError::new(errors.join("\n")));
        }
        let mut changes = Vec::with_capacity(plans.len());
        for plan in plans {
            if let (Some(payload), Some(resolved)) = (&plan.payload, &plan.resolved) {
                let api = resolved.api(self.client.clone(), &plan.meta.namespace);
                let applied = api
                    .patch(&plan.meta.name, &self.params(false), &Patch::Apply(payload))
                    .await
                    .map_err(|e| ApplyError {
                        message: format!("{} apply failed: {}", plan.meta, api_message(&e)),
                        changes: changes.clone(),
                    })?;
                let applied = to_value(&applied);
                let ignore = ignore_paths(&self.opts.ignore, &applied);
                if let Some(rv) = rv_of(&applied) {
                    self.cache.put(
                        &self.owner,
                        plan.meta.id(),
                        rv,
                        fingerprint(&comparable(&applied, &ignore)),
                    );
                }
            }
            changes.push(Change {
                object: plan.meta,
                action: plan.action,
            });
        }
        Ok(changes)
    }

    /// Applies everything in stages.
    pub async fn apply_all_staged(&self, objects: Vec<Value>) -> Result<Vec<Change>, ApplyError> {
        let mut stages: BTreeMap<Stage, Vec<Value>> = BTreeMap::new();
        for o in objects {
            stages.entry(stage_of(&o)).or_default().push(o);
        }
        let mut all = Vec::new();
        for (stage, objects) in stages {
            let changes = match self.apply_stage(objects).await {
                Ok(c) => c,
                Err(mut e) => {
                    let mut done = all.clone();
                    done.append(&mut e.changes);
                    let log = format_changes(done.iter().filter(|c: &&Change| c.action.changed()));
                    if !log.is_empty() {
                        e.message = format!("{}\n{log}", e.message);
                    }
                    e.changes = done;
                    return Err(e);
                }
            };
            if stage != Stage::Resources {
                let set: Vec<ObjMeta> = changes
                    .iter()
                    .filter(|c| c.action != Action::Skipped)
                    .map(|c| c.object.clone())
                    .collect();
                let opts = WaitOptions {
                    timeout: self.opts.wait_timeout,
                    interval: Duration::from_millis(200),
                    fail_fast: false,
                };
                if let Err(e) =
                    health::wait_for(self.client, self.resolver, &set, self.health, opts).await
                {
                    all.extend(changes);
                    return Err(ApplyError {
                        message: e.to_string(),
                        changes: all,
                    });
                }
            }
            all.extend(changes);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparable_ignores_status_metadata_noise_and_ignored_paths() {
        let a = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "resourceVersion": "1", "labels": {"x": "1"}, "managedFields": []},
            "spec": {"replicas": 1, "template": {}}, "status": {"ready": 1}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = json!("2");
        b["status"] = json!({});
        assert_eq!(comparable(&a, &[]), comparable(&b, &[]));
        assert_eq!(
            fingerprint(&comparable(&a, &[])),
            fingerprint(&comparable(&b, &[]))
        );
        b["spec"]["replicas"] = json!(3);
        assert_ne!(comparable(&a, &[]), comparable(&b, &[]));
        let ignore = vec!["/spec/replicas".to_string()];
        assert_eq!(comparable(&a, &ignore), comparable(&b, &ignore));
        b["metadata"]["labels"]["x"] = json!("2");
        assert_ne!(comparable(&a, &ignore), comparable(&b, &ignore));
    }

    #[test]
    fn ignore_rule_targets() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "namespace": "n", "labels": {"app": "web"}}});
        let rule = |target: Value| IgnoreRule {
            paths: vec!["/spec/replicas".into()],
            target: Some(serde_json::from_value(target).unwrap()),
        };
        assert_eq!(
            ignore_paths(&[rule(json!({"kind": "Deployment"}))], &obj).len(),
            1
        );
        assert_eq!(
            ignore_paths(&[rule(json!({"kind": "Service"}))], &obj).len(),
            0
        );
        assert_eq!(
            ignore_paths(&[rule(json!({"labelSelector": "app=web"}))], &obj).len(),
            1
        );
        assert_eq!(
            ignore_paths(&[rule(json!({"labelSelector": "app!=web"}))], &obj).len(),
            0
        );
    }

    #[test]
    fn cleanup_takes_over_kubectl_fields() {
        let existing = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "a", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "managedFields": [
                {"manager": "kustomize-controller", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}},
                {"manager": "kubectl-edit", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:b": {}}}}
            ]}});
        assert!(needs_cleanup(&existing, "kustomize-controller"));
        let patch = cleanup_patch(&existing, "kustomize-controller").unwrap();
        assert!(
            patch["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .is_null()
        );
        let mf = &patch["metadata"]["managedFields"];
        assert_eq!(mf.as_array().unwrap().len(), 1);
        assert!(mf[0]["fieldsV1"]["f:data"]["f:b"].is_object());
        assert!(mf[0]["fieldsV1"]["f:data"]["f:a"].is_object());
    }

    #[test]
    fn pointers() {
        let mut v = json!({"spec": {"a/b": 1, "list": [1, 2]}});
        remove_pointer(&mut v, "/spec/a~1b");
        remove_pointer(&mut v, "/spec/list/0");
        assert_eq!(v, json!({"spec": {"list": [2]}}));
        set_pointer(&mut v, "/spec/x", json!(3));
        assert_eq!(v["spec"]["x"], 3);
    }
}
