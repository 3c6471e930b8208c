//! The HTTP front end: an axum router that parses Kubernetes API paths and calls the store.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::builtin::ResourceDef;
use crate::error::ApiError;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{
    DeleteOptions, Event, EventType, ListOptions, PatchKind, Propagation, Store, WriteOptions,
};
use crate::table;
use crate::{discovery, openapi};

/// One request as seen by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// `Accept` header.
    pub accept: String,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Response status code; 0 when fault injection reset the connection instead.
    pub status: u16,
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`);
    /// the lowercase method for non-resource paths.
    pub verb: String,
    /// Plural resource (empty for non-resource paths).
    pub resource: String,
    /// Subresource (`status`, `scale`), or empty.
    pub subresource: String,
    /// Namespace, or empty.
    pub namespace: String,
    /// Object name, or empty.
    pub name: String,
    /// The `fieldManager` query parameter, or empty.
    pub field_manager: String,
    /// `dryRun=All` was in the query.
    pub dry_run: bool,
    /// The user the request acted as ([`RequestUser::user`]); empty when no authentication layer decided one
    /// (authentication off: anonymous admin), and for requests failed by fault injection, which happens first.
    pub user: String,
    /// The authenticated user that impersonated `user`, if any.
    pub impersonated_by: Option<String>,
}

impl LoggedRequest {
    /// `resource` or `resource/subresource`.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// Whether the request had this verb and resource (`"*"` = any; resource may be `resource/subresource`).
    pub fn is(&self, verb: &str, resource: &str) -> bool {
        (verb == "*" || verb == self.verb)
            && (resource == "*" || (!self.resource.is_empty() && resource == self.resource_path()))
    }

    /// Whether the request wrote (create, update, patch, delete, deletecollection).
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// Who made a request, as the authentication layer decided it. That layer puts it into the response's
/// extensions, where the request log reads it; with authentication off it is absent (anonymous admin).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestUser {
    /// The user the request is authorized as (the impersonated one, when impersonating).
    pub user: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// The authenticated user that impersonated `user`, if any.
    pub impersonated_by: Option<String>,
}

/// A fault-injection hook: return `Some(error)` to fail the request before it reaches the store.
pub type FaultHook = Arc<dyn Fn(&Method, &str) -> Option<ApiError> + Send + Sync>;

/// Shared server state.
#[derive(Clone)]
pub struct AppState {
    /// The object store.
    pub store: Arc<Store>,
    /// Recent requests (bounded).
    pub log: Arc<Mutex<std::collections::VecDeque<LoggedRequest>>>,
    /// Optional fault injection.
    pub fault: Arc<Mutex<Option<FaultHook>>>,
    /// Fault rules, watch cuts and connection resets.
    pub faults: Arc<crate::fault::Faults>,
    /// `host:port` the server listens on.
    pub address: Arc<Mutex<String>>,
    /// Set to true when the server shuts down: open watches end.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// Authentication and authorization (off by default).
    pub auth: Arc<crate::auth::Auth>,
}

const LOG_CAP: usize = 10_000;

impl AppState {
    /// New state around a store.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            log: Arc::new(Mutex::new(std::collections::VecDeque::new())),
            fault: Arc::new(Mutex::new(None)),
            faults: Arc::default(),
            address: Arc::new(Mutex::new(String::new())),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            auth: Arc::new(crate::auth::Auth::disabled()),
        }
    }
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { json_response(StatusCode::OK, &discovery::version()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/api", get(api))
        .route("/apis", get(apis))
        .merge(crate::auth::routes())
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), log_and_fault))
        // after the layer: admin requests are neither logged nor faulted
        .merge(crate::fault::admin_router())
        .with_state(state)
}

fn header_str(headers: &HeaderMap, h: header::HeaderName) -> String {
    headers
        .get(h)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub(crate) async fn log_and_fault(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let accept = header_str(req.headers(), header::ACCEPT);
    let user_agent = header_str(req.headers(), header::USER_AGENT);
    let info = crate::request_info::RequestInfo::parse(&method, &path, &query);
    let params: Params = Query::<Params>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let conn = req
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::fault::Connection>>()
        .map(|c| c.0.clone());
    let hook: Option<FaultHook> = match s.fault.lock() {
        Ok(g) => g.clone(),
        Err(_) => None,
    };
    let fault = hook.and_then(|h| h(&method, &path));
    let resp = match fault {
        Some(e) => e.into_response(),
        None => match s.faults.intercept(&info, conn.as_ref()).await {
            Some(r) => r,
            None => next.run(req).await,
        },
    };
    let status = if resp
        .extensions()
        .get::<crate::fault::ResetMarker>()
        .is_some()
    {
        0
    } else {
        resp.status().as_u16()
    };
    tracing::debug!(%method, %path, %query, status, "request");
    let user = resp
        .extensions()
        .get::<RequestUser>()
        .cloned()
        .unwrap_or_default();
    if let Ok(mut log) = s.log.lock() {
        if log.len() >= LOG_CAP {
            log.pop_front();
        }
        log.push_back(LoggedRequest {
            method: method.to_string(),
            path,
            query,
            accept,
            user_agent,
            status,
            verb: info.verb,
            resource: info.resource,
            subresource: info.subresource,
            namespace: info.namespace,
            name: info.name,
            field_manager: params.get("fieldManager").cloned().unwrap_or_default(),
            dry_run: params.get("dryRun").is_some_and(|d| d == "All"),
            user: user.user,
            impersonated_by: user.impersonated_by,
        });
    }
    resp
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn aggregated_response(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, discovery::AGGREGATED_V2)],
        v.to_string(),
    )
        .into_response()
}

async fn api(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if discovery::wants_aggregated(&header_str(&headers, header::ACCEPT)) {
        return aggregated_response(&discovery::aggregated(&s.store.resources(), true));
    }
    let addr = s.address.lock().map(|a| a.clone()).unwrap_or_default();
    json_response(StatusCode::OK, &discovery::api_versions(&addr))
}

async fn apis(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if discovery::wants_aggregated(&header_str(&headers, header::ACCEPT)) {
        return aggregated_response(&discovery::aggregated(&s.store.resources(), false));
    }
    json_response(
        StatusCode::OK,
        &discovery::api_group_list(&s.store.resources()),
    )
}

/// What a resource path addresses.
struct Target {
    rd: ResourceDef,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

enum Route {
    Discovery(Value),
    Resource(Box<Target>),
}

fn parse_path(store: &Store, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g] => {
            return discovery::api_group(&store.resources(), g)
                .map(Route::Discovery)
                .ok_or_else(ApiError::not_found_path);
        }
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::not_found_path()),
    };
    if rest.is_empty() {
        return discovery::api_resource_list(&store.resources(), group, version)
            .map(Route::Discovery)
            .ok_or_else(ApiError::not_found_path);
    }
    let resolve = |plural: &str| store.resolve(group, version, plural);
    let (namespace, plural, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if resolve(plural).is_some_and(|r| r.namespaced) => {
            (Some(ns.to_string()), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Err(ApiError::not_found_path()),
    };
    let rd = resolve(plural).ok_or_else(ApiError::not_found_path)?;
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::not_found_path()),
    };
    if !rd.namespaced && namespace.is_some() {
        return Err(ApiError::not_found_path());
    }
    if rd.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::not_found_path());
    }
    if let Some(sub) = &subresource
        && !(sub == "status" && rd.status)
        && !(sub == "scale" && rd.scale().is_some())
    {
        return Err(ApiError::not_found_path());
    }
    Ok(Route::Resource(Box::new(Target {
        rd,
        namespace,
        name,
        subresource,
    })))
}

type Params = HashMap<String, String>;

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

/// `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1` (kube-rs metadata watchers).
fn wants_partial(headers: &HeaderMap) -> bool {
    header_str(headers, header::ACCEPT).contains("as=PartialObjectMetadata")
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct.contains("protobuf") {
        return crate::protobuf::decode(body).map_err(|e| match e {
            crate::protobuf::DecodeError::Unsupported(_) => {
                ApiError::unsupported_media_type(e.to_string())
            }
            _ => ApiError::bad_request(format!("error decoding protobuf body: {e}")),
        });
    }
    if ct.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({ct} is not supported by testenv)"
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body ({ct}): {e}")))
}

fn field_manager(params: &Params, headers: &HeaderMap) -> String {
    if let Some(m) = params.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    ua.split('/').next().unwrap_or("unknown").to_string()
}

fn output(rd: &ResourceDef, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(rd.api_version()));
    }
    v
}

async fn dispatch(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&s, method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    s: &AppState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let path = uri.path().trim_end_matches('/');
    if path == "/openapi/v3" {
        return Ok(json_response(
            StatusCode::OK,
            &openapi::root(&s.store.resources()),
        ));
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        return openapi::gv_doc(&s.store.resources(), gv)
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(ApiError::not_found_path);
    }
    if path.starts_with("/openapi") {
        return Err(ApiError::not_found_path());
    }
    let target = match parse_path(&s.store, uri.path())? {
        Route::Discovery(doc) => {
            return if method == Method::GET {
                Ok(json_response(StatusCode::OK, &doc))
            } else {
                Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({method})"
                )))
            };
        }
        Route::Resource(t) => t,
    };
    let params: Params = Query::<Params>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let rd = &target.rd;
    let ns = target.namespace.clone().unwrap_or_default();
    let dry_run = params.get("dryRun").is_some_and(|d| d == "All");
    let wopts = WriteOptions {
        dry_run,
        manager: field_manager(&params, headers),
        strict: params.get("fieldValidation").is_some_and(|v| v == "Strict"),
    };
    let status = target.subresource.as_deref() == Some("status");
    if target.subresource.as_deref() == Some("scale") {
        let name = target.name.clone().unwrap_or_default();
        return scale_request(s, rd, &ns, &name, &method, headers, &body, &wopts);
    }
    let table = wants_table(headers);
    let partial = !table && wants_partial(headers);
    let not_allowed = || {
        ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))
    };
    match (&method, &target.name) {
        (&Method::GET, None) => {
            let watch = params.get("watch").is_some_and(|w| w == "1" || w == "true");
            let list = list_options(&params)?;
            if watch {
                return watch_response(s, &target, &params, list, table, partial);
            }
            let res = s.store.list(rd, target.namespace.as_deref(), &list)?;
            let mut meta = json!({"resourceVersion": res.resource_version.to_string()});
            if let Some(c) = &res.continue_token {
                meta["continue"] = json!(c);
                meta["remainingItemCount"] = json!(res.remaining);
            }
            if table {
                let include = params.get("includeObject").map(String::as_str);
                let items: Vec<Value> = res.items.iter().map(|o| output(rd, o)).collect();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::to_table(rd, &items, include, meta),
                ));
            }
            if partial {
                let items: Vec<Value> = res.items.iter().map(|o| table::partial(o)).collect();
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                        "metadata": meta, "items": items}),
                ));
            }
            Ok(list_response(rd, &res.items, &meta))
        }
        (&Method::GET, Some(name)) => {
            let obj = s.store.get(rd, &ns, name)?;
            let obj = output(rd, &obj);
            if table {
                let include = params.get("includeObject").map(String::as_str);
                let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                return Ok(json_response(
                    StatusCode::OK,
                    &table::to_table(rd, &[obj], include, meta),
                ));
            }
            if partial {
                return Ok(json_response(StatusCode::OK, &table::partial(&obj)));
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        (&Method::POST, None) => {
            let obj = parse_body(headers, &body)?;
            check_type(rd, &obj)?;
            let created = s.store.create(rd, &ns, obj, &wopts)?;
            Ok(json_response(StatusCode::CREATED, &output(rd, &created)))
        }
        (&Method::PUT, Some(name)) => {
            let obj = parse_body(headers, &body)?;
            check_type(rd, &obj)?;
            let updated = s.store.update(rd, &ns, name, obj, status, &wopts)?;
            Ok(json_response(StatusCode::OK, &output(rd, &updated)))
        }
        (&Method::PATCH, Some(name)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let ct = ct.split(';').next().unwrap_or_default().trim();
            let force = params.get("force").is_some_and(|f| f == "true");
            let kind = match ct {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                    PatchKind::Apply { force }
                }
                other => {
                    return Err(ApiError::unsupported_media_type(format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
                    )));
                }
            };
            let patch = parse_body(headers, &body)?;
            let mut wopts = wopts;
            if let PatchKind::Apply { .. } = kind {
                check_apply_type(rd, &patch)?;
                // apply needs an explicit manager
                wopts.manager = params.get("fieldManager").cloned().unwrap_or_default();
            }
            let existed = s.store.get(rd, &ns, name).is_ok();
            let out = s.store.patch(rd, &ns, name, kind, &patch, status, &wopts)?;
            let code = if !existed {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(code, &output(rd, &out)))
        }
        (&Method::DELETE, Some(name)) => {
            if status {
                return Err(not_allowed());
            }
            let opts = delete_options(&params, headers, &body)?;
            let out = s.store.delete(rd, &ns, name, &opts)?;
            Ok(json_response(StatusCode::OK, &output(rd, &out)))
        }
        (&Method::DELETE, None) => {
            let opts = delete_options(&params, headers, &body)?;
            let list = list_options(&params)?;
            let deleted =
                s.store
                    .delete_collection(rd, target.namespace.as_deref(), &list, &opts)?;
            let items: Vec<Arc<Value>> = deleted.into_iter().map(Arc::new).collect();
            let meta = json!({"resourceVersion": s.store.resource_version().to_string()});
            Ok(list_response(rd, &items, &meta))
        }
        _ => Err(not_allowed()),
    }
}

fn get_path<'a>(obj: &'a Value, path: &str) -> &'a Value {
    path.trim_start_matches('.')
        .split('.')
        .fold(obj, |cur, part| &cur[part])
}

fn merge_patch_for(path: &str, v: Value) -> Value {
    path.trim_start_matches('.')
        .split('.')
        .rev()
        .fold(v, |inner, part| json!({ part: inner }))
}

/// A LabelSelector object as the string form a Scale's `status.selector` carries.
fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "DoesNotExist" => format!("!{key}"),
            _ => key.to_string(),
        });
    }
    parts.join(",")
}

fn scale_object(rd: &ResourceDef, obj: &Value) -> Value {
    let Some(sp) = rd.scale() else {
        return Value::Null;
    };
    let selector = match sp.label_selector.as_deref().map(|p| get_path(obj, p)) {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Object(_)) => selector_string(v),
        _ => String::new(),
    };
    let m = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": get_path(obj, &sp.spec_replicas).as_i64().unwrap_or(0)},
        "status": {"replicas": get_path(obj, &sp.status_replicas).as_i64().unwrap_or(0), "selector": selector},
    })
}

/// `/scale`: a view of the replicas of a Deployment, StatefulSet, ReplicaSet or custom resource.
#[allow(clippy::too_many_arguments)]
fn scale_request(
    s: &AppState,
    rd: &ResourceDef,
    ns: &str,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
    wopts: &WriteOptions,
) -> Result<Response, ApiError> {
    let Some(sp) = rd.scale() else {
        return Err(ApiError::not_found_path());
    };
    let current = s.store.get(rd, ns, name)?;
    let current_scale = scale_object(rd, &current);
    let replicas = match *method {
        Method::GET => return Ok(json_response(StatusCode::OK, &current_scale)),
        Method::PUT => {
            let b = parse_body(headers, body)?;
            let rv = b["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            if !rv.is_empty()
                && rv
                    != current["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
            {
                return Err(ApiError::conflict(&rd.group, &rd.plural, name));
            }
            b["spec"]["replicas"].clone()
        }
        Method::PATCH => {
            let b = parse_body(headers, body)?;
            let ct = header_str(headers, header::CONTENT_TYPE);
            let mut scale = current_scale.clone();
            if ct.starts_with("application/json-patch+json") {
                crate::patch::json_patch(&mut scale, &b)?;
            } else {
                crate::patch::merge_patch(&mut scale, &b);
            }
            scale["spec"]["replicas"].clone()
        }
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )));
        }
    };
    if !replicas.is_i64() {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![crate::error::Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {replicas}: must be an integer"),
                field: "spec.replicas".into(),
            }],
        ));
    }
    let patch = merge_patch_for(&sp.spec_replicas, replicas);
    let updated = s
        .store
        .patch(rd, ns, name, PatchKind::Merge, &patch, false, wopts)?;
    Ok(json_response(StatusCode::OK, &scale_object(rd, &updated)))
}

fn check_type(rd: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not an object",
        ));
    }
    let av = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    if !kind.is_empty() && kind != rd.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rd.kind
        )));
    }
    if !av.is_empty() && av != rd.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rd.api_version()
        )));
    }
    Ok(())
}

fn check_apply_type(rd: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    if obj["apiVersion"].as_str().unwrap_or_default().is_empty()
        || obj["kind"].as_str().unwrap_or_default().is_empty()
    {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply patch",
        ));
    }
    check_type(rd, obj)
}

fn list_options(params: &Params) -> Result<ListOptions, ApiError> {
    Ok(ListOptions {
        labels: LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(params.get("fieldSelector").map_or("", String::as_str))?,
        limit: params
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0),
        continue_token: params.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

fn delete_options(
    params: &Params,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<DeleteOptions, ApiError> {
    let b = parse_body(headers, body)?;
    let policy = params
        .get("propagationPolicy")
        .cloned()
        .or_else(|| b["propagationPolicy"].as_str().map(str::to_string));
    let orphan = params
        .get("orphanDependents")
        .map(|o| o == "true")
        .or_else(|| b["orphanDependents"].as_bool())
        .unwrap_or(false);
    let propagation = match policy.as_deref() {
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some("Background") | None if !orphan => Propagation::Background,
        None => Propagation::Orphan,
        Some(other) => {
            if other == "Background" {
                Propagation::Background
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid propagationPolicy {other:?}"
                )));
            }
        }
    };
    let dry_run = params.get("dryRun").is_some_and(|d| d == "All")
        || b["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "All"));
    Ok(DeleteOptions {
        dry_run,
        propagation,
        uid: b["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: b["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
    })
}

fn list_response(rd: &ResourceDef, items: &[Arc<Value>], meta: &Value) -> Response {
    // serialise directly to avoid cloning each item
    let mut out = Vec::with_capacity(items.len() * 512 + 128);
    out.extend_from_slice(b"{\"kind\":");
    out.extend_from_slice(json!(format!("{}List", rd.kind)).to_string().as_bytes());
    out.extend_from_slice(b",\"apiVersion\":");
    out.extend_from_slice(json!(rd.api_version()).to_string().as_bytes());
    out.extend_from_slice(b",\"metadata\":");
    out.extend_from_slice(meta.to_string().as_bytes());
    out.extend_from_slice(b",\"items\":[");
    let av = rd.api_version();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let res = if it["apiVersion"].as_str() == Some(av.as_str()) {
            serde_json::to_writer(&mut out, &**it)
        } else {
            serde_json::to_writer(&mut out, &output(rd, it))
        };
        if res.is_err() {
            return ApiError::internal("serialising list failed").into_response();
        }
    }
    out.extend_from_slice(b"]}");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response()
}

struct WatchFilter {
    rd: ResourceDef,
    namespace: Option<String>,
    list: ListOptions,
    table: Option<Option<String>>,
    partial: bool,
}

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        self.list.labels.matches(obj) && self.list.fields.matches(obj)
    }

    fn render(&self, ev: &Event) -> Option<Bytes> {
        if ev.gr.0 != self.rd.group || ev.gr.1 != self.rd.plural {
            return None;
        }
        if let Some(ns) = &self.namespace
            && ev.namespace != *ns
        {
            return None;
        }
        let now = self.matches(&ev.object);
        let kind = match ev.kind {
            EventType::Modified => {
                let before = ev.old.as_deref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => EventType::Modified,
                    (false, true) => EventType::Added,
                    (true, false) => EventType::Deleted,
                    (false, false) => return None,
                }
            }
            k => {
                if !now {
                    return None;
                }
                k
            }
        };
        Some(self.line(kind.as_str(), &output(&self.rd, &ev.object)))
    }

    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        let object = match (&self.table, kind) {
            (Some(include), "ADDED" | "MODIFIED" | "DELETED") => {
                let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                table::to_table(
                    &self.rd,
                    std::slice::from_ref(obj),
                    include.as_deref(),
                    meta,
                )
            }
            (None, "ADDED" | "MODIFIED" | "DELETED") if self.partial => table::partial(obj),
            _ => obj.clone(),
        };
        let mut s = json!({"type": kind, "object": object}).to_string();
        s.push('\n');
        Bytes::from(s)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.line(
            "BOOKMARK",
            &json!({"kind": self.rd.kind, "apiVersion": self.rd.api_version(), "metadata": meta}),
        )
    }
}

/// Resolves once the server is stopping.
pub async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn watch_response(
    s: &AppState,
    target: &Target,
    params: &Params,
    list: ListOptions,
    table: bool,
    partial: bool,
) -> Result<Response, ApiError> {
    let filter = WatchFilter {
        rd: target.rd.clone(),
        namespace: target.namespace.clone(),
        list,
        table: table.then(|| params.get("includeObject").cloned()),
        partial,
    };
    let send_initial = params.get("sendInitialEvents").is_some_and(|v| v == "true");
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let rv: Option<u64> = if send_initial {
        None
    } else {
        params.get("resourceVersion").and_then(|r| r.parse().ok())
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
    match s.store.watch(&filter.rd, filter.namespace.as_deref(), rv) {
        Err(e) if e.code == 410 => {
            let line = filter.line("ERROR", &e.to_status());
            let _ = tx.try_send(line);
        }
        Err(e) => return Err(e),
        Ok(start) => {
            let stopping = s.stopping.clone();
            let cut = s.faults.watch_cut();
            tokio::spawn(async move {
                let mut last_rv = start.resource_version;
                for ev in &start.initial {
                    if let Some(line) = filter.render(ev)
                        && tx.send(line).await.is_err()
                    {
                        return;
                    }
                }
                if send_initial
                    && bookmarks
                    && tx.send(filter.bookmark(last_rv, true)).await.is_err()
                {
                    return;
                }
                let mut rx = start.rx;
                let stop = stopping.subscribe();
                let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                tokio::pin!(cut);
                loop {
                    let line = tokio::select! {
                        _ = async {
                            match deadline {
                                Some(d) => tokio::time::sleep_until(d).await,
                                None => std::future::pending().await,
                            }
                        } => break,
                        _ = tx.closed() => break,
                        _ = stopped(stop.clone()) => break,
                        _ = &mut cut => break,
                        _ = tick.tick(), if bookmarks => Some(filter.bookmark(last_rv, false)),
                        r = rx.recv() => match r {
                            Ok(ev) => {
                                last_rv = ev.rv;
                                filter.render(&ev)
                            }
                            Err(RecvError::Lagged(_)) => {
                                let e = ApiError::gone("too old resource version: the watch fell behind");
                                let _ = tx.send(filter.line("ERROR", &e.to_status())).await;
                                break;
                            }
                            Err(RecvError::Closed) => break,
                        },
                    };
                    if let Some(line) = line
                        && tx.send(line).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
