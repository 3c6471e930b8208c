//! The object store: JSON objects keyed by (group, resource, namespace, name), one global
//! resourceVersion counter, and change events with a bounded retained history for watches.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, broadcast};

use crate::builtin::{ResourceDef, builtin_resources};
use crate::crd;
use crate::error::{ApiError, Cause};
use crate::managed_fields::{Scope, record_update};
use crate::patch::{self, ApplyRequest};
use crate::schema::TypeInfo;
use crate::selector::{FieldSelector, LabelSelector};

/// (group, plural).
pub type GroupResource = (String, String);
/// (namespace, name); namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change.
#[derive(Debug)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Which resource.
    pub gr: GroupResource,
    /// Namespace of the object.
    pub namespace: String,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (the last state for deletions).
    pub object: Arc<Value>,
    /// The object before the change (for MODIFIED).
    pub old: Option<Arc<Value>>,
}

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: compute and return the result, store nothing.
    pub dry_run: bool,
    /// `fieldManager`.
    pub manager: String,
    /// `fieldValidation=Strict`: unknown fields are an error instead of being dropped.
    pub strict: bool,
}

/// The kind of patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply {
        /// `force=true`.
        force: bool,
    },
}

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Dependents are deleted after the owner (the default).
    #[default]
    Background,
    /// Dependents are deleted before the owner.
    Foreground,
    /// Dependents are kept and lose their owner reference.
    Orphan,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `propagationPolicy`.
    pub propagation: Propagation,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

/// A list request.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// `limit` (0 = unlimited).
    pub limit: usize,
    /// `continue` token.
    pub continue_token: Option<String>,
}

/// The result of a list.
#[derive(Debug)]
pub struct ListResult {
    /// Matching objects.
    pub items: Vec<Arc<Value>>,
    /// resourceVersion of the list.
    pub resource_version: u64,
    /// Continue token when truncated.
    pub continue_token: Option<String>,
    /// Items left after this page.
    pub remaining: usize,
}

/// What a watch starts with.
pub struct WatchStart {
    /// Events to send first (synthetic ADDED or retained history).
    pub initial: Vec<Arc<Event>>,
    /// Live events.
    pub rx: broadcast::Receiver<Arc<Event>>,
    /// The resourceVersion at subscription time.
    pub resource_version: u64,
}

struct State {
    rv: u64,
    resources: Vec<ResourceDef>,
    objects: HashMap<GroupResource, BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Arc<Event>>,
    /// Events with rv <= floor are not retained.
    floor: u64,
    /// Terminating namespaces and when they started terminating.
    ns_terminating: HashMap<String, std::time::Instant>,
}

/// The store.
pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Event>>,
    history_cap: usize,
    persist_notify: Notify,
    data_file: Option<PathBuf>,
}

/// Current time as Kubernetes writes it.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj["metadata"][key].as_str().unwrap_or_default()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(root) = obj else {
        unreachable!("made an object above")
    };
    let entry = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let Value::Object(m) = entry else {
        unreachable!("made an object above")
    };
    m
}

fn type_info(rd: &ResourceDef) -> TypeInfo<'_> {
    if rd.crd.is_some() {
        TypeInfo::Crd(rd.schema.as_ref())
    } else {
        TypeInfo::Builtin(&rd.kind)
    }
}

/// The finalizer a CRD carries while its instances are being deleted.
const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// (group, plural) of a CRD's instances.
fn crd_instances_gr(crd: &Value) -> GroupResource {
    (
        crd["spec"]["group"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        crd["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn dns_label(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 63
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !part.starts_with('-')
        && !part.ends_with('-')
}

/// Kubernetes' name rules for a kind: `None` when valid, else the message.
fn name_error(rd: &ResourceDef, name: &str) -> Option<String> {
    if rd.group == "rbac.authorization.k8s.io" {
        // path segment names: `system:controller:x` is fine
        return (name.is_empty() || name == "." || name == ".." || name.contains(['/', '%']))
            .then(|| format!("Invalid value: \"{name}\": may not contain '/' or '%' and may not be '.' or '..'"));
    }
    if rd.group.is_empty() && matches!(rd.kind.as_str(), "Namespace" | "Service") {
        let ok = dns_label(name)
            && (rd.kind != "Service" || name.starts_with(|c: char| c.is_ascii_lowercase()));
        return (!ok).then(|| format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        ));
    }
    let ok = !name.is_empty() && name.len() <= 253 && name.split('.').all(dns_label);
    (!ok).then(|| format!(
        "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    ))
}

fn without_volatile(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

fn label_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A qualified name (`prefix/name` or `name`) as label and annotation keys must be.
fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || !p.split('.').all(dns_label))
    {
        return Some(format!(
            "Invalid value: \"{key}\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ));
    }
    (!label_name_part(name)).then(|| format!(
        "Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    ))
}

/// Label keys and values, and annotation keys, as Kubernetes validates them.
fn metadata_map_errors(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let invalid = |field: &str, message: String| Cause {
        reason: "FieldValueInvalid".into(),
        message,
        field: field.into(),
    };
    for (k, v) in obj["metadata"]["labels"].as_object().into_iter().flatten() {
        if let Some(m) = qualified_name_error(k) {
            causes.push(invalid("metadata.labels", m));
        }
        match v.as_str() {
            Some("") => {}
            Some(val) if label_name_part(val) => {}
            _ => causes.push(invalid(
                "metadata.labels",
                format!(
                    "Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
                ),
            )),
        }
    }
    for (k, v) in obj["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if let Some(m) = qualified_name_error(&k.to_lowercase()) {
            causes.push(invalid("metadata.annotations", m));
        }
        if !v.is_string() {
            causes.push(invalid(
                "metadata.annotations",
                format!("Invalid value: {v}: annotation values must be strings"),
            ));
        }
    }
    causes
}

/// Fields Kubernetes refuses to change on update (the errors Flux's `force` recreates objects for).
fn immutable_changes(rd: &ResourceDef, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut immutable = |path: &[&str]| {
        let get = |v: &Value| path.iter().fold(v.clone(), |cur, p| cur[*p].clone());
        let (o, n) = (get(old), get(new));
        if o != n {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {n}: field is immutable"),
                field: path.join("."),
            });
        }
    };
    match (rd.group.as_str(), rd.kind.as_str()) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => immutable(&["spec", "selector"]),
        ("batch", "Job") => {
            immutable(&["spec", "selector"]);
            immutable(&["spec", "template"]);
        }
        ("apps", "StatefulSet") => {
            let strip = |v: &Value| {
                let mut spec = v["spec"].clone();
                if let Some(m) = spec.as_object_mut() {
                    for k in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(k);
                    }
                }
                spec
            };
            if strip(old) != strip(new) {
                causes.push(Cause {
                    reason: "FieldValueForbidden".into(),
                    message: "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into(),
                    field: "spec".into(),
                });
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding")
            if old["roleRef"] != new["roleRef"] =>
        {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {}: cannot change roleRef", new["roleRef"]),
                field: "roleRef".into(),
            });
        }
        ("", "ConfigMap" | "Secret") if old["immutable"] == json!(true) => {
            for field in ["data", "binaryData", "immutable"] {
                if old[field] != new[field] {
                    causes.push(Cause {
                        reason: "FieldValueForbidden".into(),
                        message: "Forbidden: field is immutable when `immutable` is set".into(),
                        field: field.into(),
                    });
                }
            }
        }
        _ => {}
    }
    causes
}

/// Standard base64 (with padding), as Kubernetes encodes `[]byte` fields.
pub fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A Secret's `stringData` is merged into `data` (base64) and dropped, like the real API server does.
fn secret_string_data(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    if let Some(d) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default();
            d.insert(k, json!(base64_encode(text.as_bytes())));
        }
    }
}

/// managedFields without timestamps.
fn ownership(v: &Value) -> Vec<(Value, Value, Value, Value)> {
    v["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].clone(),
                e["operation"].clone(),
                e["subresource"].clone(),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// Like the API server's IP allocator: a Service (but `ExternalName` or headless `None`) without a `clusterIP` gets
/// a free one from 10.96.0.0/16; `clusterIPs` follows `clusterIP`.
fn allocate_cluster_ip(st: &State, obj: &mut Value) {
    let spec = &obj["spec"];
    if spec["type"] == "ExternalName" {
        return;
    }
    let ip = match spec["clusterIP"].as_str() {
        Some(ip) if !ip.is_empty() => ip.to_string(),
        _ => {
            let used: HashSet<&str> = st
                .objects
                .get(&(String::new(), "services".to_string()))
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|s| s["spec"]["clusterIP"].as_str())
                .collect();
            let mut rng = rand::rng();
            // .0.1 is the `kubernetes` Service's, .0.10 the DNS Service's in most clusters
            let mut candidate = || {
                format!(
                    "10.96.{}.{}",
                    rng.random_range(0..=255u8),
                    rng.random_range(11..=254u8)
                )
            };
            let mut ip = candidate();
            while used.contains(ip.as_str()) {
                ip = candidate();
            }
            ip
        }
    };
    if obj["spec"]["clusterIPs"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        obj["spec"]["clusterIPs"] = json!([ip]);
    }
    obj["spec"]["clusterIP"] = json!(ip);
}

/// An update that leaves out the allocated `clusterIP`/`clusterIPs` keeps them (as the API server does).
fn keep_cluster_ip(old: &Value, new: &mut Value) {
    if new["spec"]["type"] == "ExternalName" || !new["spec"].is_object() {
        return;
    }
    for field in ["clusterIP", "clusterIPs"] {
        let missing = match &new["spec"][field] {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        if missing && !old["spec"][field].is_null() {
            new["spec"][field] = old["spec"][field].clone();
        }
    }
}

impl Store {
    /// A new in-memory store with the built-in resources and namespaces default, kube-system, kube-public.
    pub fn new(data_file: Option<PathBuf>) -> Result<Arc<Self>, crate::Error> {
        let (tx, _) = broadcast::channel(16384);
        let store = Arc::new(Store {
            state: Mutex::new(State {
                rv: 0,
                resources: builtin_resources(),
                objects: HashMap::new(),
                history: VecDeque::new(),
                floor: 0,
                ns_terminating: HashMap::new(),
            }),
            tx,
            history_cap: 100_000,
            persist_notify: Notify::new(),
            data_file,
        });
        let loaded = store.load()?;
        if !loaded {
            let ns = store
                .resolve("", "v1", "namespaces")
                .ok_or_else(|| crate::Error::Persist("no namespaces resource".into()))?;
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let obj =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                store
                    .create(&ns, "", obj, &WriteOptions::default())
                    .map_err(|e| crate::Error::Persist(e.to_string()))?;
            }
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Every change from now on (all resources), for in-process controllers such as the workload simulation.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// All served resources.
    pub fn resources(&self) -> Vec<ResourceDef> {
        self.lock().resources.clone()
    }

    /// Look up a served resource.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
        self.lock()
            .resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Get one object.
    pub fn get(&self, rd: &ResourceDef, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        let st = self.lock();
        st.objects
            .get(&(rd.group.clone(), rd.plural.clone()))
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rd.group, &rd.plural, name))
    }

    /// List objects (in `ns`, or everywhere when `None`).
    pub fn list(
        &self,
        rd: &ResourceDef,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let start_after: Option<ObjKey> = match &opts.continue_token {
            Some(tok) => Some(decode_continue(tok)?),
            None => None,
        };
        let st = self.lock();
        let mut items = Vec::new();
        let mut remaining = 0;
        let mut last: Option<ObjKey> = None;
        if let Some(objs) = st.objects.get(&(rd.group.clone(), rd.plural.clone())) {
            let iter: Box<dyn Iterator<Item = (&ObjKey, &Arc<Value>)>> = match ns {
                Some(ns) => Box::new(
                    objs.range((ns.to_string(), String::new())..)
                        .take_while(move |(k, _)| k.0 == ns),
                ),
                None => Box::new(objs.iter()),
            };
            for (k, v) in iter {
                if let Some(after) = &start_after
                    && k <= after
                {
                    continue;
                }
                if !opts.labels.matches(v) || !opts.fields.matches(v) {
                    continue;
                }
                if opts.limit > 0 && items.len() >= opts.limit {
                    remaining += 1;
                    continue;
                }
                last = Some(k.clone());
                items.push(v.clone());
            }
        }
        let continue_token = if remaining > 0 {
            last.map(|k| encode_continue(st.rv, &k))
        } else {
            None
        };
        Ok(ListResult {
            items,
            resource_version: st.rv,
            continue_token,
            remaining,
        })
    }

    /// Start a watch from `rv` (`None` or 0: synthetic ADDED events for current objects first).
    pub fn watch(
        &self,
        rd: &ResourceDef,
        ns: Option<&str>,
        rv: Option<u64>,
    ) -> Result<WatchStart, ApiError> {
        let st = self.lock();
        let gr = (rd.group.clone(), rd.plural.clone());
        let initial = match rv {
            Some(rv) if rv > 0 => {
                if rv < st.floor {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {rv} ({})",
                        st.floor + 1
                    )));
                }
                st.history
                    .iter()
                    .filter(|e| e.rv > rv && e.gr == gr)
                    .filter(|e| ns.is_none_or(|n| e.namespace == n))
                    .cloned()
                    .collect()
            }
            _ => st
                .objects
                .get(&gr)
                .into_iter()
                .flat_map(|m| m.iter())
                .filter(|(k, _)| ns.is_none_or(|n| k.0 == n))
                .map(|(k, v)| {
                    Arc::new(Event {
                        rv: meta(v)["resourceVersion"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0),
                        gr: gr.clone(),
                        namespace: k.0.clone(),
                        kind: EventType::Added,
                        object: v.clone(),
                        old: None,
                    })
                })
                .collect(),
        };
        Ok(WatchStart {
            initial,
            rx: self.tx.subscribe(),
            resource_version: st.rv,
        })
    }

    fn check_namespace(st: &State, rd: &ResourceDef, ns: &str) -> Result<(), ApiError> {
        if let Some(crd_name) = &rd.crd {
            let terminating = st
                .objects
                .get(&(
                    "apiextensions.k8s.io".to_string(),
                    "customresourcedefinitions".to_string(),
                ))
                .and_then(|m| m.get(&(String::new(), crd_name.clone())))
                .is_some_and(|c| !meta(c)["deletionTimestamp"].is_null());
            if terminating {
                return Err(ApiError::method_not_allowed(
                    "create not allowed while custom resource definition is terminating",
                ));
            }
        }
        if !rd.namespaced {
            return Ok(());
        }
        let nsobj = st
            .objects
            .get(&(String::new(), "namespaces".to_string()))
            .and_then(|m| m.get(&(String::new(), ns.to_string())));
        match nsobj {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(o) if !meta(o)["deletionTimestamp"].is_null() => {
                Err(ApiError::forbidden(format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    if rd.group.is_empty() {
                        rd.plural.clone()
                    } else {
                        format!("{}.{}", rd.plural, rd.group)
                    },
                    meta_str(o, "name")
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// Validate, default and prune per the resource's schema and generic metadata rules.
    fn validate(rd: &ResourceDef, obj: &mut Value, strict: bool) -> Result<(), ApiError> {
        if rd.group.is_empty() && rd.kind == "Secret" {
            secret_string_data(obj);
        }
        let name = meta_str(obj, "name").to_string();
        let mut causes = Vec::new();
        if let Some(message) = name_error(rd, &name) {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message,
                field: "metadata.name".into(),
            });
        }
        causes.extend(metadata_map_errors(obj));
        if let Some(schema) = &rd.schema {
            let (c, pruned) = crd::prune_default_validate(schema, obj);
            if strict && !pruned.is_empty() {
                let fields: Vec<String> = pruned
                    .iter()
                    .map(|p| format!("unknown field \"{p}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    rd.kind,
                    rd.version,
                    rd.kind,
                    fields.join(", ")
                )));
            }
            causes.extend(c);
        }
        if rd.group == "apiextensions.k8s.io" && rd.plural == "customresourcedefinitions" {
            causes.extend(crd::validate_crd(obj));
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&rd.group, &rd.kind, &name, causes))
        }
    }

    /// Create an object.
    pub fn create(
        &self,
        rd: &ResourceDef,
        ns: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not an object",
            ));
        }
        obj["apiVersion"] = json!(rd.api_version());
        obj["kind"] = json!(rd.kind);
        let m = meta_mut(&mut obj);
        if rd.namespaced {
            match m.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    m.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            m.remove("namespace");
        }
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = if name.is_empty() {
            match m.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        &rd.group,
                        &rd.kind,
                        "",
                        vec![Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ));
                }
            }
        } else {
            name
        };
        m.insert("name".into(), json!(name));
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            m.remove(k);
        }
        m.insert("uid".into(), json!(new_uid()));
        m.insert("creationTimestamp".into(), json!(now()));
        if rd.tracks_generation() {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        if rd.status && rd.group != "apiextensions.k8s.io" {
            // status is set through the status subresource only
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        Self::defaults_on_create(rd, &mut obj);
        Self::validate(rd, &mut obj, opts.strict)?;
        let manager = opts.manager.clone();
        record_update(
            None,
            &mut obj,
            type_info(rd),
            Scope::Main {
                has_status: rd.status,
            },
            &manager,
            &rd.api_version(),
            &now(),
        );
        let mut st = self.lock();
        Self::check_namespace(&st, rd, ns)?;
        let gr = (rd.group.clone(), rd.plural.clone());
        let key = (
            if rd.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name.clone(),
        );
        if st.objects.get(&gr).is_some_and(|m| m.contains_key(&key)) {
            return Err(ApiError::already_exists(&rd.group, &rd.plural, &name));
        }
        if rd.crd.is_none() && rd.group.is_empty() && rd.plural == "services" {
            allocate_cluster_ip(&st, &mut obj);
        }
        if opts.dry_run {
            return Ok(obj);
        }
        let stored = self.commit(&mut st, &gr, key, None, obj);
        drop(st);
        self.persist_notify.notify_one();
        Ok((*stored).clone())
    }

    fn defaults_on_create(rd: &ResourceDef, obj: &mut Value) {
        if rd.group.is_empty() && rd.plural == "namespaces" {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
            let name = meta_str(obj, "name").to_string();
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        if rd.group == "apiextensions.k8s.io" && rd.plural == "customresourcedefinitions" {
            crd::set_crd_status(obj, &now());
        }
        if rd.group.is_empty()
            && rd.kind == "Secret"
            && obj["type"].as_str().is_none_or(str::is_empty)
        {
            obj["type"] = json!("Opaque");
        }
    }

    /// Store an object: bump the resourceVersion, record the event, apply CRD side effects.
    fn commit(
        &self,
        st: &mut State,
        gr: &GroupResource,
        key: ObjKey,
        old: Option<Arc<Value>>,
        mut obj: Value,
    ) -> Arc<Value> {
        st.rv += 1;
        let rv = st.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let obj = Arc::new(obj);
        st.objects
            .entry(gr.clone())
            .or_default()
            .insert(key.clone(), obj.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(st, gr, &key.0, kind, obj.clone(), old);
        if gr.0 == "apiextensions.k8s.io" && gr.1 == "customresourcedefinitions" {
            Self::register_crds(st);
        }
        obj
    }

    fn emit(
        &self,
        st: &mut State,
        gr: &GroupResource,
        ns: &str,
        kind: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let ev = Arc::new(Event {
            rv: st.rv,
            gr: gr.clone(),
            namespace: ns.to_string(),
            kind,
            object,
            old,
        });
        st.history.push_back(ev.clone());
        while st.history.len() > self.history_cap {
            if let Some(e) = st.history.pop_front() {
                st.floor = e.rv;
            }
        }
        // no receivers is fine
        let _ = self.tx.send(ev);
    }

    fn register_crds(st: &mut State) {
        let mut resources: Vec<ResourceDef> = builtin_resources();
        if let Some(crds) = st.objects.get(&(
            "apiextensions.k8s.io".to_string(),
            "customresourcedefinitions".to_string(),
        )) {
            // a terminating CRD keeps serving its instances until they are gone
            for c in crds.values() {
                resources.extend(crd::crd_resources(c));
            }
        }
        st.resources = resources;
    }

    /// Replace an object (PUT), on the main resource or `/status`.
    pub fn update(
        &self,
        rd: &ResourceDef,
        ns: &str,
        name: &str,
        obj: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not an object",
            ));
        }
        if meta_str(&obj, "name") != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let client_rv = meta_str(&obj, "resourceVersion").to_string();
        self.modify(
            rd,
            ns,
            name,
            status,
            opts,
            |old| {
                if !client_rv.is_empty() && client_rv != meta_str(old, "resourceVersion") {
                    return Err(ApiError::conflict(&rd.group, &rd.plural, name));
                }
                Ok(obj)
            },
            None,
        )
    }

    /// Patch an object. Server-side apply creates the object when absent.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rd: &ResourceDef,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let ti = type_info(rd);
        if kind == PatchKind::Strategic && rd.crd.is_some() {
            return Err(ApiError::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        if let PatchKind::Apply { force } = kind {
            if opts.manager.is_empty() {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let body_name = meta_str(body, "name");
            if !body_name.is_empty() && body_name != name {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            let exists = self.get(rd, ns, name).ok();
            let client_rv = meta_str(body, "resourceVersion");
            if !client_rv.is_empty()
                && exists
                    .as_ref()
                    .is_none_or(|o| meta_str(o, "resourceVersion") != client_rv)
            {
                return Err(ApiError::conflict(&rd.group, &rd.plural, name));
            }
            let exists = exists.is_some();
            let api_version = rd.api_version();
            let req = ApplyRequest {
                manager: &opts.manager,
                force,
                ti,
                scope: if status {
                    Scope::Status
                } else {
                    Scope::Main {
                        has_status: rd.status,
                    }
                },
                api_version: &api_version,
                now: &now(),
                group: &rd.group,
                plural: &rd.plural,
                name,
            };
            if !exists {
                if status {
                    return Err(ApiError::not_found(&rd.group, &rd.plural, name));
                }
                let mut applied = patch::server_side_apply(&json!({}), body, &req)?;
                meta_mut(&mut applied).insert("name".into(), json!(name));
                let managed = applied["metadata"]["managedFields"].clone();
                return self.create_with_managed(rd, ns, applied, managed, opts);
            }
            return self.modify(
                rd,
                ns,
                name,
                status,
                opts,
                |old| patch::server_side_apply(old, body, &req),
                Some(()),
            );
        }
        self.modify(
            rd,
            ns,
            name,
            status,
            opts,
            |old| {
                let mut new = old.clone();
                match kind {
                    PatchKind::Merge => patch::merge_patch(&mut new, body),
                    PatchKind::Json => patch::json_patch(&mut new, body)?,
                    PatchKind::Strategic => patch::strategic_merge_patch(&mut new, body, ti)?,
                    PatchKind::Apply { .. } => {}
                }
                let client_rv = meta_str(body, "resourceVersion");
                if kind != PatchKind::Json
                    && !client_rv.is_empty()
                    && client_rv != meta_str(old, "resourceVersion")
                {
                    return Err(ApiError::conflict(&rd.group, &rd.plural, name));
                }
                Ok(new)
            },
            None,
        )
    }

    fn create_with_managed(
        &self,
        rd: &ResourceDef,
        ns: &str,
        obj: Value,
        managed: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        // create, then replace the Update entry create() records with the Apply entry
        let mut o = WriteOptions {
            dry_run: true,
            manager: opts.manager.clone(),
            strict: opts.strict,
        };
        let mut created = self.create(rd, ns, obj, &o)?;
        if managed.is_null() {
            meta_mut(&mut created).remove("managedFields");
        } else {
            meta_mut(&mut created).insert("managedFields".into(), managed);
        }
        if opts.dry_run {
            return Ok(created);
        }
        o.dry_run = false;
        let mut st = self.lock();
        Self::check_namespace(&st, rd, ns)?;
        let gr = (rd.group.clone(), rd.plural.clone());
        let key = (
            if rd.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            meta_str(&created, "name").to_string(),
        );
        if st.objects.get(&gr).is_some_and(|m| m.contains_key(&key)) {
            return Err(ApiError::already_exists(&rd.group, &rd.plural, &key.1));
        }
        let stored = self.commit(&mut st, &gr, key, None, created);
        drop(st);
        self.persist_notify.notify_one();
        Ok((*stored).clone())
    }

    /// Read-modify-write under the lock. `apply` is `Some` when `f` already recorded managedFields.
    #[allow(clippy::too_many_arguments)]
    fn modify(
        &self,
        rd: &ResourceDef,
        ns: &str,
        name: &str,
        status: bool,
        opts: &WriteOptions,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
        apply: Option<()>,
    ) -> Result<Value, ApiError> {
        let gr = (rd.group.clone(), rd.plural.clone());
        let key = (
            if rd.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name.to_string(),
        );
        let mut st = self.lock();
        let old = st
            .objects
            .get(&gr)
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rd.group, &rd.plural, name))?;
        let mut new = f(&old)?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the result is not an object"));
        }
        // identity and server-owned fields
        new["apiVersion"] = json!(rd.api_version());
        new["kind"] = json!(rd.kind);
        {
            let om = meta(&old).clone();
            let m = meta_mut(&mut new);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
            ] {
                match om.get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            m.insert("name".into(), json!(name));
            m.insert(
                "resourceVersion".into(),
                om.get("resourceVersion").cloned().unwrap_or(Value::Null),
            );
        }
        if status {
            // only status changes through /status
            let new_status = new.get("status").cloned();
            let mut merged = (*old).clone();
            match new_status {
                Some(s) => merged["status"] = s,
                None => {
                    if let Some(o) = merged.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            if apply.is_some() {
                merged["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
            }
            new = merged;
        } else if rd.status {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        if !status && rd.crd.is_none() && rd.group.is_empty() && rd.plural == "services" {
            keep_cluster_ip(&old, &mut new);
        }
        if !status {
            Self::validate(rd, &mut new, opts.strict)?;
            let causes = immutable_changes(rd, &old, &new);
            if !causes.is_empty() {
                return Err(ApiError::invalid(&rd.group, &rd.kind, name, causes));
            }
        }
        if rd.group == "apiextensions.k8s.io" && rd.plural == "customresourcedefinitions" {
            crd::set_crd_status(&mut new, &now());
        }
        if rd.group.is_empty() && rd.plural == "namespaces" {
            new["status"] = old["status"].clone();
            new["spec"] = old["spec"].clone();
        }
        if rd.tracks_generation() && spec_part(&old) != spec_part(&new) {
            let g = meta(&old)["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(g));
        }
        if apply.is_none() {
            record_update(
                Some(&old),
                &mut new,
                type_info(rd),
                if status {
                    Scope::Status
                } else {
                    Scope::Main {
                        has_status: rd.status,
                    }
                },
                &opts.manager,
                &rd.api_version(),
                &now(),
            );
        }
        // a no-op write changes nothing (not even the resourceVersion)
        if without_volatile(&old) == without_volatile(&new) && ownership(&old) == ownership(&new) {
            return Ok((*old).clone());
        }
        if opts.dry_run {
            return Ok(new);
        }
        let terminating = !meta(&new)["deletionTimestamp"].is_null();
        let no_finalizers = meta(&new)["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        if terminating && no_finalizers {
            // the last finalizer is gone: the object goes away
            let result = self.remove_object(&mut st, &gr, &key, Some(Arc::new(new)));
            self.gc(&mut st);
            drop(st);
            self.persist_notify.notify_one();
            return Ok((*result).clone());
        }
        let stored = self.commit(&mut st, &gr, key, Some(old), new);
        drop(st);
        self.persist_notify.notify_one();
        Ok((*stored).clone())
    }

    fn remove_object(
        &self,
        st: &mut State,
        gr: &GroupResource,
        key: &ObjKey,
        last: Option<Arc<Value>>,
    ) -> Arc<Value> {
        let removed = st.objects.get_mut(gr).and_then(|m| m.remove(key));
        let last = last.or(removed).unwrap_or_else(|| Arc::new(json!({})));
        st.rv += 1;
        let mut obj = (*last).clone();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(st.rv.to_string()));
        let obj = Arc::new(obj);
        self.emit(st, gr, &key.0, EventType::Deleted, obj.clone(), None);
        if gr.0 == "apiextensions.k8s.io" && gr.1 == "customresourcedefinitions" {
            // instances of the CRD go with it
            let group = obj["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let plural = obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let cgr = (group, plural);
            let keys: Vec<ObjKey> = st
                .objects
                .get(&cgr)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for k in keys {
                self.remove_object(st, &cgr, &k, None);
            }
            Self::register_crds(st);
        }
        obj
    }

    /// Delete an object, honouring finalizers and the propagation policy.
    pub fn delete(
        &self,
        rd: &ResourceDef,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let gr = (rd.group.clone(), rd.plural.clone());
        let key = (
            if rd.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name.to_string(),
        );
        let mut st = self.lock();
        let old = st
            .objects
            .get(&gr)
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rd.group, &rd.plural, name))?;
        if let Some(uid) = &opts.uid
            && uid != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(&rd.group, &rd.plural, name));
        }
        if let Some(rv) = &opts.resource_version
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&rd.group, &rd.plural, name));
        }
        if opts.dry_run {
            return Ok((*old).clone());
        }
        let result = self.delete_locked(&mut st, rd.namespaced, &gr, &key, opts.propagation);
        self.gc(&mut st);
        drop(st);
        self.persist_notify.notify_one();
        Ok(result)
    }

    fn delete_locked(
        &self,
        st: &mut State,
        _namespaced: bool,
        gr: &GroupResource,
        key: &ObjKey,
        propagation: Propagation,
    ) -> Value {
        let Some(old) = st.objects.get(gr).and_then(|m| m.get(key)).cloned() else {
            return json!({});
        };
        if gr.0 == "apiextensions.k8s.io" && gr.1 == "customresourcedefinitions" {
            let igr = crd_instances_gr(&old);
            let instances: Vec<ObjKey> = st
                .objects
                .get(&igr)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            if !instances.is_empty() {
                // like the CRD finalizer: delete the instances (their finalizers hold them), then the CRD
                let mut nd = (*old).clone();
                if meta(&nd)["deletionTimestamp"].is_null() {
                    meta_mut(&mut nd).insert("deletionTimestamp".into(), json!(now()));
                }
                let mut fins = meta(&nd)["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let cleanup = json!(CRD_CLEANUP_FINALIZER);
                if !fins.contains(&cleanup) {
                    fins.push(cleanup);
                }
                meta_mut(&mut nd).insert("finalizers".into(), Value::Array(fins));
                let stored = if without_volatile(&nd) == without_volatile(&old) {
                    old.clone()
                } else {
                    self.commit(st, gr, key.clone(), Some(old.clone()), nd)
                };
                for ik in instances {
                    self.delete_locked(st, true, &igr, &ik, Propagation::Background);
                }
                return (*stored).clone();
            }
        }
        let uid = meta_str(&old, "uid").to_string();
        let is_namespace = gr.0.is_empty() && gr.1 == "namespaces";
        let dependents = Self::dependents_of(st, &uid);
        if propagation == Propagation::Orphan {
            for (dgr, dkey) in &dependents {
                if let Some(d) = st.objects.get(dgr).and_then(|m| m.get(dkey)).cloned() {
                    let mut nd = (*d).clone();
                    if let Some(refs) = nd["metadata"]["ownerReferences"].as_array_mut() {
                        refs.retain(|r| r["uid"].as_str() != Some(uid.as_str()));
                    }
                    self.commit(st, dgr, dkey.clone(), Some(d), nd);
                }
            }
        }
        let mut finalizers: Vec<Value> = meta(&old)["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if propagation == Propagation::Foreground && !dependents.is_empty() {
            let fg = json!("foregroundDeletion");
            if !finalizers.contains(&fg) {
                finalizers.push(fg);
            }
            for (dgr, dkey) in &dependents {
                self.delete_locked(st, true, dgr, dkey, Propagation::Background);
            }
        }
        if is_namespace {
            // like the namespace controller: contents go shortly after (see sweep_namespaces),
            // an empty namespace goes at once
            let name = key.1.clone();
            let has_content = st
                .objects
                .iter()
                .any(|(_, m)| m.keys().any(|k| k.0 == name));
            if has_content {
                st.ns_terminating
                    .entry(name)
                    .or_insert_with(std::time::Instant::now);
                let mut nd = (*old).clone();
                if meta(&nd)["deletionTimestamp"].is_null() {
                    meta_mut(&mut nd).insert("deletionTimestamp".into(), json!(now()));
                }
                nd["status"] = json!({"phase": "Terminating"});
                if without_volatile(&nd) == without_volatile(&old) {
                    return (*old).clone();
                }
                return (*self.commit(st, gr, key.clone(), Some(old), nd)).clone();
            }
            return (*self.remove_object(st, gr, key, None)).clone();
        }
        if finalizers.is_empty() {
            return (*self.remove_object(st, gr, key, None)).clone();
        }
        let mut nd = (*old).clone();
        if meta(&nd)["deletionTimestamp"].is_null() {
            let m = meta_mut(&mut nd);
            m.insert("deletionTimestamp".into(), json!(now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        meta_mut(&mut nd).insert("finalizers".into(), Value::Array(finalizers));
        if without_volatile(&nd) == without_volatile(&old) {
            return (*old).clone();
        }
        (*self.commit(st, gr, key.clone(), Some(old), nd)).clone()
    }

    fn dependents_of(st: &State, uid: &str) -> Vec<(GroupResource, ObjKey)> {
        let mut out = Vec::new();
        for (gr, m) in &st.objects {
            for (k, v) in m {
                if meta(v)["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
                {
                    out.push((gr.clone(), k.clone()));
                }
            }
        }
        out
    }

    /// Garbage collection: dependents whose owners are all gone, finished foreground deletions,
    /// and emptied terminating namespaces.
    fn gc(&self, st: &mut State) {
        loop {
            let uids: HashSet<String> = st
                .objects
                .values()
                .flat_map(|m| m.values())
                .map(|v| meta_str(v, "uid").to_string())
                .collect();
            let mut orphans = Vec::new();
            let mut fg_done = Vec::new();
            let mut ns_done = Vec::new();
            let mut owner_uids: HashSet<String> = HashSet::new();
            for m in st.objects.values() {
                for v in m.values() {
                    if let Some(refs) = meta(v)["ownerReferences"].as_array() {
                        for r in refs {
                            if let Some(u) = r["uid"].as_str() {
                                owner_uids.insert(u.to_string());
                            }
                        }
                    }
                }
            }
            for (gr, m) in &st.objects {
                for (k, v) in m {
                    if let Some(refs) = meta(v)["ownerReferences"].as_array()
                        && !refs.is_empty()
                        && meta(v)["deletionTimestamp"].is_null()
                        && refs
                            .iter()
                            .all(|r| !r["uid"].as_str().is_some_and(|u| uids.contains(u)))
                    {
                        orphans.push((gr.clone(), k.clone()));
                    }
                    let terminating = !meta(v)["deletionTimestamp"].is_null();
                    if terminating
                        && meta(v)["finalizers"]
                            .as_array()
                            .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"))
                        && !owner_uids.contains(meta_str(v, "uid"))
                    {
                        fg_done.push((gr.clone(), k.clone()));
                    }
                    if terminating && gr.0.is_empty() && gr.1 == "namespaces" {
                        ns_done.push((gr.clone(), k.clone()));
                    }
                }
            }
            let mut changed = false;
            for (gr, k) in orphans {
                self.delete_locked(st, true, &gr, &k, Propagation::Background);
                changed = true;
            }
            for (gr, k) in fg_done {
                if let Some(o) = st.objects.get(&gr).and_then(|m| m.get(&k)).cloned() {
                    let mut nd = (*o).clone();
                    if let Some(f) = nd["metadata"]["finalizers"].as_array_mut() {
                        f.retain(|x| x != "foregroundDeletion");
                    }
                    if nd["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|f| f.is_empty())
                    {
                        self.remove_object(st, &gr, &k, Some(Arc::new(nd)));
                    } else {
                        self.commit(st, &gr, k, Some(o), nd);
                    }
                    changed = true;
                }
            }
            let crd_gr = (
                "apiextensions.k8s.io".to_string(),
                "customresourcedefinitions".to_string(),
            );
            let crds_done: Vec<ObjKey> = st
                .objects
                .get(&crd_gr)
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| {
                            meta(v)["finalizers"]
                                .as_array()
                                .is_some_and(|f| f.iter().any(|x| x == CRD_CLEANUP_FINALIZER))
                                && st
                                    .objects
                                    .get(&crd_instances_gr(v))
                                    .is_none_or(|i| i.is_empty())
                        })
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            for k in crds_done {
                if let Some(o) = st.objects.get(&crd_gr).and_then(|m| m.get(&k)).cloned() {
                    let mut nd = (*o).clone();
                    if let Some(f) = nd["metadata"]["finalizers"].as_array_mut() {
                        f.retain(|x| x != CRD_CLEANUP_FINALIZER);
                    }
                    if nd["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|f| f.is_empty())
                    {
                        self.remove_object(st, &crd_gr, &k, Some(Arc::new(nd)));
                    } else {
                        self.commit(st, &crd_gr, k, Some(o), nd);
                    }
                    changed = true;
                }
            }
            for (gr, k) in ns_done {
                let empty = !st.objects.iter().any(|(_, m)| m.keys().any(|x| x.0 == k.1));
                if empty {
                    self.remove_object(st, &gr, &k, None);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// The namespace controller: delete the contents of namespaces that have been terminating for
    /// at least `grace`; emptied namespaces are then removed.
    pub fn sweep_namespaces(&self, grace: std::time::Duration) {
        let mut st = self.lock();
        let terminating: Vec<String> = st
            .objects
            .get(&(String::new(), "namespaces".to_string()))
            .map(|m| {
                m.values()
                    .filter(|v| !meta(v)["deletionTimestamp"].is_null())
                    .map(|v| meta_str(v, "name").to_string())
                    .collect()
            })
            .unwrap_or_default();
        st.ns_terminating.retain(|k, _| terminating.contains(k));
        let mut due = Vec::new();
        for name in terminating {
            let since = *st
                .ns_terminating
                .entry(name.clone())
                .or_insert_with(std::time::Instant::now);
            if since.elapsed() >= grace {
                due.push(name);
            }
        }
        if due.is_empty() {
            return;
        }
        let before = st.rv;
        for name in due {
            let contents: Vec<(GroupResource, ObjKey)> = st
                .objects
                .iter()
                .filter(|(g, _)| !(g.0.is_empty() && g.1 == "namespaces"))
                .flat_map(|(g, m)| {
                    m.keys()
                        .filter(|k| k.0 == name)
                        .map(move |k| (g.clone(), k.clone()))
                })
                .collect();
            for (cgr, ckey) in contents {
                self.delete_locked(&mut st, true, &cgr, &ckey, Propagation::Background);
            }
        }
        self.gc(&mut st);
        let changed = st.rv != before;
        drop(st);
        if changed {
            self.persist_notify.notify_one();
        }
    }

    /// Delete every matching object (in `ns`, or everywhere when `None`).
    pub fn delete_collection(
        &self,
        rd: &ResourceDef,
        ns: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>, ApiError> {
        let items = self.list(rd, ns, list)?.items;
        if opts.dry_run {
            return Ok(items.iter().map(|i| (**i).clone()).collect());
        }
        let gr = (rd.group.clone(), rd.plural.clone());
        let mut st = self.lock();
        let mut out = Vec::new();
        for it in items {
            let key = (
                meta_str(&it, "namespace").to_string(),
                meta_str(&it, "name").to_string(),
            );
            if st.objects.get(&gr).is_some_and(|m| m.contains_key(&key)) {
                out.push(self.delete_locked(&mut st, rd.namespaced, &gr, &key, opts.propagation));
            }
        }
        // one garbage-collection pass for the whole collection
        self.gc(&mut st);
        drop(st);
        self.persist_notify.notify_one();
        Ok(out)
    }

    // ---- persistence ----

    fn load(&self) -> Result<bool, crate::Error> {
        let Some(file) = &self.data_file else {
            return Ok(false);
        };
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let snap: Value = serde_json::from_str(&text)
            .map_err(|e| crate::Error::Persist(format!("{}: {e}", file.display())))?;
        let mut st = self.lock();
        st.rv = snap["resourceVersion"].as_u64().unwrap_or(0);
        st.floor = st.rv;
        for entry in snap["objects"].as_array().into_iter().flatten() {
            let gr = (
                entry["group"].as_str().unwrap_or_default().to_string(),
                entry["resource"].as_str().unwrap_or_default().to_string(),
            );
            let obj = entry["object"].clone();
            let key = (
                meta_str(&obj, "namespace").to_string(),
                meta_str(&obj, "name").to_string(),
            );
            st.objects.entry(gr).or_default().insert(key, Arc::new(obj));
        }
        Self::register_crds(&mut st);
        Ok(true)
    }

    /// Write a snapshot of all objects to the data file (if any).
    pub fn save(&self) -> Result<(), crate::Error> {
        let Some(file) = &self.data_file else {
            return Ok(());
        };
        let (rv, objects) = {
            let st = self.lock();
            let objects: Vec<(GroupResource, Arc<Value>)> = st
                .objects
                .iter()
                .flat_map(|(gr, m)| m.values().map(move |v| (gr.clone(), v.clone())))
                .collect();
            (st.rv, objects)
        };
        let list: Vec<Value> = objects
            .iter()
            .map(|((g, r), o)| json!({"group": g, "resource": r, "object": **o}))
            .collect();
        let snap = json!({"resourceVersion": rv, "objects": list});
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&snap).unwrap_or_default())?;
        std::fs::rename(&tmp, file)?;
        Ok(())
    }

    /// Persist snapshots after writes until the process ends (only with a data file).
    pub async fn persist_loop(self: Arc<Self>) {
        if self.data_file.is_none() {
            return;
        }
        loop {
            self.persist_notify.notified().await;
            // coalesce bursts of writes into one snapshot
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if let Err(e) = self.save() {
                tracing::warn!(error = %e, "persisting state failed");
            }
        }
    }
}

fn encode_continue(rv: u64, key: &ObjKey) -> String {
    let raw = json!([rv, key.0, key.1]).to_string();
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(tok: &str) -> Result<ObjKey, ApiError> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion")
    };
    if !tok.len().is_multiple_of(2) || !tok.is_ascii() {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..tok.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&tok[i..i + 2], 16))
        .collect();
    let bytes = bytes.map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok((
        v[1].as_str().ok_or_else(bad)?.to_string(),
        v[2].as_str().ok_or_else(bad)?.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules_of_their_kind() {
        let defs = builtin_resources();
        let rd = |kind: &str| defs.iter().find(|r| r.kind == kind).unwrap();
        assert!(name_error(rd("ClusterRole"), "system:controller:x").is_none());
        assert!(name_error(rd("ClusterRole"), "a/b").is_some());
        assert!(name_error(rd("ConfigMap"), "a.b-c").is_none());
        assert!(name_error(rd("ConfigMap"), "Upper").is_some());
        assert!(name_error(rd("Namespace"), "a.b").is_some());
        assert!(name_error(rd("Service"), "1abc").is_some());
        assert!(name_error(rd("Service"), "abc-1").is_none());
    }

    #[test]
    fn labels_and_annotations_are_validated() {
        let ok = json!({"metadata": {"labels": {"app.kubernetes.io/name": "web", "empty": "", "x": "A_b.c-1"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "Mixed/Case": "v"}}});
        assert!(
            metadata_map_errors(&ok).is_empty(),
            "{:?}",
            metadata_map_errors(&ok)
        );
        for bad in [
            json!({"metadata": {"labels": {"a b": "x"}}}),
            json!({"metadata": {"labels": {"a": "has space"}}}),
            json!({"metadata": {"labels": {"a": "x".repeat(64)}}}),
            json!({"metadata": {"labels": {"Bad_Prefix/a": "x"}}}),
            json!({"metadata": {"annotations": {"-a": "x"}}}),
        ] {
            assert_eq!(metadata_map_errors(&bad).len(), 1, "{bad}");
        }
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"hello world!?"), "aGVsbG8gd29ybGQhPw==");
    }

    #[test]
    fn secret_string_data_moves_into_data() {
        let mut s = json!({"data": {"a": "YQ=="}, "stringData": {"b": "bb"}});
        secret_string_data(&mut s);
        assert_eq!(s, json!({"data": {"a": "YQ==", "b": "YmI="}}));
    }
}
