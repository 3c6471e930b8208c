//! Authentication (bearer tokens), impersonation and the authentication/authorization API endpoints.
//!
//! Tokens come from three places:
//! - a static token file in kube-apiserver's `--token-auth-file` format (`token,user,uid,"group1,group2"`);
//! - tokens testenv mints: the admin token of the kubeconfig, [`Auth::token_for`], the TokenRequest
//!   subresource of ServiceAccounts and Secrets of type `kubernetes.io/service-account-token`.
//!
//! Minted tokens are `tev1.<claims>.<hmac>`: signed with a key kept in the data dir (when there is one), so they
//! stay valid across restarts. ServiceAccount tokens are only valid while the ServiceAccount exists (and, for
//! Secret tokens, while the Secret holds the token), as in Kubernetes.
//!
//! With authentication on, [`authenticate`] (a middleware) turns the token into a user, applies
//! `Impersonate-*` headers after checking the caller may impersonate, asks the RBAC authorizer, and puts a
//! [`Caller`] into the request's and a [`RequestUser`] into the response's extensions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::rbac::{AUTHENTICATED, Attributes, Authorizer, MASTERS, PUBLIC_URLS, UserInfo};
use crate::server::{AppState, RequestUser};
use crate::store::{EventType, PatchKind, Store, WriteOptions, base64_encode};

/// The user of the admin kubeconfig written when authentication is on.
pub const ADMIN_USER: &str = "testenv-admin";
/// The Secret type whose `data.token` testenv fills.
pub const SA_TOKEN_SECRET: &str = "kubernetes.io/service-account-token";
/// The annotation naming the ServiceAccount of such a Secret.
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// The annotation testenv sets to the ServiceAccount's uid.
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

const TOKEN_PREFIX: &str = "tev1.";
const KEY_FILE: &str = "token-key";

/// Errors setting up authentication.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The static token file could not be read.
    #[error("token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the static token file is malformed.
    #[error("token file {path} line {line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The signing key in the data dir could not be read or written.
    #[error("token key {path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// The user a request is made as, in the request's extensions when authentication is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The effective user (the impersonated one when impersonating).
    pub user: UserInfo,
    /// The authenticated user that impersonated `user`.
    pub impersonated_by: Option<String>,
}

/// What a minted token says.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Claims {
    /// User name.
    u: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    g: Vec<String>,
    /// Expiry, unix seconds; 0 = never.
    #[serde(default, skip_serializing_if = "is_zero")]
    exp: i64,
    /// ServiceAccount `namespace/name` the token is bound to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sa: String,
    /// Secret name holding the token (legacy ServiceAccount tokens).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    secret: String,
    /// Makes every minted token distinct.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    n: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Authentication state of a server.
pub struct Auth {
    enabled: bool,
    key: Vec<u8>,
    static_tokens: HashMap<String, UserInfo>,
    admin_token: String,
    ca_pem: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("enabled", &self.enabled)
            .field("static_tokens", &self.static_tokens.len())
            .finish_non_exhaustive()
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self::disabled()
    }
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The user name of a ServiceAccount.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The groups of a ServiceAccount in `namespace` (with `system:authenticated`).
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
        AUTHENTICATED.to_string(),
    ]
}

impl Auth {
    /// Authentication off: every request is allowed, tokens can still be minted (and are ignored).
    pub fn disabled() -> Self {
        let mut a = Self {
            enabled: false,
            key: rand::random::<[u8; 32]>().to_vec(),
            static_tokens: HashMap::new(),
            admin_token: String::new(),
            ca_pem: None,
        };
        a.admin_token = a.token_for(ADMIN_USER, &[MASTERS]);
        a
    }

    /// Authentication on. The signing key lives in `data_dir/token-key` when there is a data dir;
    /// `token_file` is a kube-apiserver static token file.
    pub fn new(
        data_dir: Option<&Path>,
        token_file: Option<&Path>,
        ca_pem: Option<String>,
    ) -> Result<Self, AuthError> {
        let key = match data_dir {
            Some(d) => load_or_create_key(&d.join(KEY_FILE))?,
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        let static_tokens = match token_file {
            Some(p) => parse_token_file(p)?,
            None => HashMap::new(),
        };
        let mut a = Self {
            enabled: true,
            key,
            static_tokens,
            admin_token: String::new(),
            ca_pem,
        };
        a.admin_token = a.token_for(ADMIN_USER, &[MASTERS]);
        Ok(a)
    }

    /// Whether requests are authenticated and authorized.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The token of the admin user (`testenv-admin`, group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A token (without expiry) for `user` in `groups` (`system:authenticated` is always added).
    pub fn token_for(&self, user: &str, groups: &[&str]) -> String {
        self.mint(&Claims {
            u: user.to_string(),
            g: groups.iter().map(|g| (*g).to_string()).collect(),
            ..Claims::default()
        })
    }

    fn mac(&self) -> Option<Hmac<sha2::Sha256>> {
        Hmac::<sha2::Sha256>::new_from_slice(&self.key).ok()
    }

    fn mint(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let sig = self
            .mac()
            .map(|mut m| {
                m.update(payload.as_bytes());
                hex::encode(m.finalize().into_bytes())
            })
            .unwrap_or_default();
        format!("{TOKEN_PREFIX}{payload}.{sig}")
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        let rest = token.strip_prefix(TOKEN_PREFIX)?;
        let (payload, sig) = rest.split_once('.')?;
        let sig = hex::decode(sig).ok()?;
        let mut mac = self.mac()?;
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }

    /// A token for the ServiceAccount `namespace/name` (with `uid`), valid for `seconds` (0: no expiry).
    pub fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        seconds: i64,
        secret: Option<&str>,
    ) -> String {
        self.mint(&Claims {
            u: service_account_user(namespace, name),
            uid: uid.to_string(),
            exp: if seconds > 0 { now_unix() + seconds } else { 0 },
            sa: format!("{namespace}/{name}"),
            secret: secret.unwrap_or_default().to_string(),
            n: hex::encode(rand::random::<[u8; 8]>()),
            ..Claims::default()
        })
    }

    /// The user a bearer token stands for, if it is valid now.
    pub fn authenticate_token(&self, store: &Store, token: &str) -> Option<UserInfo> {
        if let Some(u) = self.static_tokens.get(token) {
            return Some(u.clone());
        }
        let claims = self.verify(token)?;
        if claims.exp != 0 && claims.exp <= now_unix() {
            return None;
        }
        if claims.sa.is_empty() {
            let mut groups = claims.g;
            if !groups.iter().any(|g| g == AUTHENTICATED) {
                groups.push(AUTHENTICATED.to_string());
            }
            return Some(UserInfo {
                name: claims.u,
                uid: claims.uid,
                groups,
            });
        }
        let (ns, name) = claims.sa.split_once('/')?;
        let sa_rd = store.resolve("", "v1", "serviceaccounts")?;
        let sa = store.get(&sa_rd, ns, name).ok()?;
        if !claims.uid.is_empty() && sa["metadata"]["uid"].as_str() != Some(claims.uid.as_str()) {
            return None;
        }
        if !claims.secret.is_empty() {
            let secret_rd = store.resolve("", "v1", "secrets")?;
            let secret = store.get(&secret_rd, ns, &claims.secret).ok()?;
            if secret["data"]["token"].as_str() != Some(base64_encode(token.as_bytes()).as_str()) {
                return None;
            }
        }
        Some(UserInfo {
            name: service_account_user(ns, name),
            uid: claims.uid,
            groups: service_account_groups(ns),
        })
    }
}

fn load_or_create_key(path: &Path) -> Result<Vec<u8>, AuthError> {
    let err = |message: String| AuthError::Key {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(s) => hex::decode(s.trim()).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = rand::random::<[u8; 32]>().to_vec();
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
            }
            std::fs::write(path, hex::encode(&key)).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Split one CSV line (double quotes group commas; `""` inside quotes is a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Parse a kube-apiserver static token file: `token,user,uid[,"group1,group2"]` per line.
pub fn parse_token_file(path: &Path) -> Result<HashMap<String, UserInfo>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_tokens(&text).map_err(|(line, message)| AuthError::Parse {
        path: path.display().to_string(),
        line,
        message,
    })
}

fn parse_tokens(text: &str) -> Result<HashMap<String, UserInfo>, (usize, String)> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f = csv_fields(line).map_err(|m| (i + 1, m))?;
        if f.len() < 3 {
            return Err((i + 1, "want at least token,user,uid".into()));
        }
        let mut groups: Vec<String> = f
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        out.insert(
            f[0].trim().to_string(),
            UserInfo {
                name: f[1].trim().to_string(),
                uid: f[2].trim().to_string(),
                groups,
            },
        );
    }
    Ok(out)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Apply `Impersonate-*` headers: check that `user` may impersonate, return the impersonated user.
fn impersonate(
    store: &Store,
    user: &UserInfo,
    headers: &HeaderMap,
) -> Result<Option<UserInfo>, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    };
    let target = values("impersonate-user").into_iter().next();
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid").into_iter().next();
    let Some(target) = target else {
        if !groups.is_empty() || uid.is_some() {
            return Err(ApiError::internal(
                "requested impersonation of groups or uid without impersonating a user",
            ));
        }
        return Ok(None);
    };
    let authz = Authorizer::new(store);
    let check = |a: Attributes| -> Result<(), ApiError> {
        if authz.authorize(user, &a).allowed {
            Ok(())
        } else {
            Err(a.forbidden(&user.name, ""))
        }
    };
    let impersonation = |group: &str, resource: &str, namespace: &str, name: &str| Attributes {
        verb: "impersonate".into(),
        resource_request: true,
        group: group.into(),
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Attributes::default()
    };
    let sa = target
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'));
    match sa {
        Some((ns, name)) => check(impersonation("", "serviceaccounts", ns, name))?,
        None => check(impersonation("", "users", "", &target))?,
    }
    for g in &groups {
        check(impersonation("", "groups", "", g))?;
    }
    if let Some(uid) = &uid {
        check(impersonation("authentication.k8s.io", "uids", "", uid))?;
    }
    let mut out_groups = groups.clone();
    if let Some((ns, _)) = sa
        && groups.is_empty()
    {
        out_groups = service_account_groups(ns);
    }
    if target != "system:anonymous" && !out_groups.iter().any(|g| g == AUTHENTICATED) {
        out_groups.push(AUTHENTICATED.to_string());
    }
    Ok(Some(UserInfo {
        name: target,
        uid: uid.unwrap_or_default(),
        groups: out_groups,
    }))
}

/// The middleware: authenticate, impersonate, authorize. A no-op with authentication off.
pub async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    if !s.auth.enabled {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let token = bearer(req.headers()).map(str::to_string);
    let Some(token) = token else {
        if req.method() == http::Method::GET && PUBLIC_URLS.contains(&path.as_str()) {
            return next.run(req).await;
        }
        return ApiError::unauthorized().into_response();
    };
    let Some(user) = s.auth.authenticate_token(&s.store, &token) else {
        return ApiError::unauthorized().into_response();
    };
    let (user, impersonated_by) = match impersonate(&s.store, &user, req.headers()) {
        Ok(Some(target)) => (target, Some(user.name)),
        Ok(None) => (user, None),
        Err(e) => {
            let mut resp = e.into_response();
            resp.extensions_mut().insert(RequestUser {
                user: user.name,
                groups: user.groups,
                impersonated_by: None,
            });
            return resp;
        }
    };
    let attrs =
        Attributes::from_request(req.method(), &path, req.uri().query().unwrap_or_default());
    let decision = Authorizer::new(&s.store).authorize(&user, &attrs);
    let request_user = RequestUser {
        user: user.name.clone(),
        groups: user.groups.clone(),
        impersonated_by: impersonated_by.clone(),
    };
    let mut resp = if decision.allowed {
        req.extensions_mut().insert(Caller {
            user,
            impersonated_by,
        });
        next.run(req).await
    } else {
        attrs
            .forbidden(&user.name, &decision.reason)
            .into_response()
    };
    resp.extensions_mut().insert(request_user);
    resp
}

/// Routes of the TokenRequest subresource and the review APIs.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
            post(token_request),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(self_subject_access_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(subject_access_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/namespaces/{ns}/localsubjectaccessreviews",
            post(local_subject_access_review),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(self_subject_review),
        )
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(token_review),
        )
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    if body.starts_with(b"k8s\0") {
        // kubectl's typed clients (`create token`, `auth can-i`) send protobuf
        return crate::protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding protobuf body: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

fn caller(ext: &http::Extensions) -> UserInfo {
    ext.get::<Caller>()
        .map(|c| c.user.clone())
        .unwrap_or_else(|| UserInfo {
            name: ADMIN_USER.into(),
            uid: String::new(),
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
        })
}

fn timestamp(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

async fn token_request(
    State(s): State<AppState>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    body: Bytes,
) -> Response {
    let run = || -> Result<Response, ApiError> {
        let req = body_json(&body)?;
        let rd = s
            .store
            .resolve("", "v1", "serviceaccounts")
            .ok_or_else(ApiError::not_found_path)?;
        let sa = s.store.get(&rd, &ns, &name)?;
        let seconds = req["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
        if seconds <= 0 {
            return Err(ApiError::bad_request(
                "spec.expirationSeconds must be positive",
            ));
        }
        let uid = sa["metadata"]["uid"].as_str().unwrap_or_default();
        let token = s.auth.service_account_token(&ns, &name, uid, seconds, None);
        let audiences = match &req["spec"]["audiences"] {
            Value::Array(a) if !a.is_empty() => Value::Array(a.clone()),
            _ => json!(["https://kubernetes.default.svc"]),
        };
        let out = json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": crate::store::now()},
            "spec": {"audiences": audiences, "expirationSeconds": seconds,
                "boundObjectRef": req["spec"]["boundObjectRef"]},
            "status": {"token": token, "expirationTimestamp": timestamp(now_unix() + seconds)},
        });
        Ok(json_response(StatusCode::CREATED, &out))
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

/// `spec.resourceAttributes` / `spec.nonResourceAttributes` of an access review as authorizer attributes.
fn review_attributes(spec: &Value, namespace: Option<&str>) -> Result<Attributes, ApiError> {
    let ra = &spec["resourceAttributes"];
    let nra = &spec["nonResourceAttributes"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    if ra.is_object() {
        return Ok(Attributes {
            verb: s(&ra["verb"]),
            resource_request: true,
            path: String::new(),
            group: s(&ra["group"]),
            resource: s(&ra["resource"]),
            subresource: s(&ra["subresource"]),
            namespace: namespace.map_or_else(|| s(&ra["namespace"]), str::to_string),
            name: s(&ra["name"]),
        });
    }
    if nra.is_object() {
        return Ok(Attributes {
            verb: s(&nra["verb"]),
            resource_request: false,
            path: s(&nra["path"]),
            ..Attributes::default()
        });
    }
    Err(ApiError::invalid(
        "authorization.k8s.io",
        "SubjectAccessReview",
        "",
        vec![crate::error::Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
            field: "spec.resourceAttributes".into(),
        }],
    ))
}

fn review(
    s: &AppState,
    mut obj: Value,
    kind: &str,
    user: &UserInfo,
    attrs: &Attributes,
) -> Response {
    let (allowed, reason) = if s.auth.enabled {
        let d = Authorizer::new(&s.store).authorize(user, attrs);
        (d.allowed, d.reason)
    } else {
        (true, "testenv: authorization is off".to_string())
    };
    obj["kind"] = json!(kind);
    obj["apiVersion"] = json!("authorization.k8s.io/v1");
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    let mut status = json!({"allowed": allowed});
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    obj["status"] = status;
    json_response(StatusCode::CREATED, &obj)
}

async fn self_subject_access_review(State(s): State<AppState>, req: Request) -> Response {
    let user = caller(req.extensions());
    let run = async {
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let obj = body_json(&body)?;
        let attrs = review_attributes(&obj["spec"], None)?;
        Ok::<_, ApiError>(review(&s, obj, "SelfSubjectAccessReview", &user, &attrs))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

fn subject_of(spec: &Value) -> UserInfo {
    let mut groups: Vec<String> = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let name = spec["user"].as_str().unwrap_or_default().to_string();
    if let Some((ns, _)) = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
        && groups.is_empty()
    {
        groups = service_account_groups(ns);
    }
    UserInfo {
        name,
        uid: spec["uid"].as_str().unwrap_or_default().to_string(),
        groups,
    }
}

async fn subject_access_review(State(s): State<AppState>, body: Bytes) -> Response {
    let run = || -> Result<Response, ApiError> {
        let obj = body_json(&body)?;
        let attrs = review_attributes(&obj["spec"], None)?;
        let user = subject_of(&obj["spec"]);
        Ok(review(&s, obj, "SubjectAccessReview", &user, &attrs))
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

async fn local_subject_access_review(
    State(s): State<AppState>,
    UrlPath(ns): UrlPath<String>,
    body: Bytes,
) -> Response {
    let run = || -> Result<Response, ApiError> {
        let obj = body_json(&body)?;
        let attrs = review_attributes(&obj["spec"], Some(&ns))?;
        let user = subject_of(&obj["spec"]);
        Ok(review(&s, obj, "LocalSubjectAccessReview", &user, &attrs))
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

fn user_info_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    v
}

async fn self_subject_review(req: Request) -> Response {
    let user = caller(req.extensions());
    json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": user_info_json(&user)},
        }),
    )
}

async fn token_review(State(s): State<AppState>, body: Bytes) -> Response {
    let run = || -> Result<Response, ApiError> {
        let mut obj = body_json(&body)?;
        let token = obj["spec"]["token"].as_str().unwrap_or_default();
        let status = match s.auth.authenticate_token(&s.store, token) {
            Some(u) => json!({"authenticated": true, "user": user_info_json(&u)}),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        obj["kind"] = json!("TokenReview");
        obj["apiVersion"] = json!("authentication.k8s.io/v1");
        obj["status"] = status;
        Ok(json_response(StatusCode::CREATED, &obj))
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

/// Fill `data.token`, `data.namespace` (and `data.ca.crt` with TLS) of ServiceAccount token Secrets, like
/// kube-controller-manager's token controller. Runs until the store's event stream closes.
pub async fn token_controller(store: Arc<Store>, auth: Arc<Auth>) {
    let (Some(secrets), Some(sas)) = (
        store.resolve("", "v1", "secrets"),
        store.resolve("", "v1", "serviceaccounts"),
    ) else {
        return;
    };
    let start = match store.watch(&secrets, None, None) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "token controller could not watch secrets");
            return;
        }
    };
    let fill = |secret: &Value| {
        if secret["type"].as_str() != Some(SA_TOKEN_SECRET)
            || secret["data"]["token"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
            || !secret["metadata"]["deletionTimestamp"].is_null()
        {
            return;
        }
        let ns = secret["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = secret["metadata"]["name"].as_str().unwrap_or_default();
        let Some(sa_name) = secret["metadata"]["annotations"][SA_NAME_ANNOTATION].as_str() else {
            return;
        };
        let Ok(sa) = store.get(&sas, ns, sa_name) else {
            return;
        };
        let uid = sa["metadata"]["uid"].as_str().unwrap_or_default();
        let token = auth.service_account_token(ns, sa_name, uid, 0, Some(name));
        let mut data = json!({
            "token": base64_encode(token.as_bytes()),
            "namespace": base64_encode(ns.as_bytes()),
        });
        if let Some(ca) = &auth.ca_pem {
            data["ca.crt"] = json!(base64_encode(ca.as_bytes()));
        }
        let patch = json!({"metadata": {"annotations": {SA_UID_ANNOTATION: uid}}, "data": data});
        let wopts = WriteOptions {
            manager: "kube-controller-manager".into(),
            ..WriteOptions::default()
        };
        if let Err(e) = store.patch(&secrets, ns, name, PatchKind::Merge, &patch, false, &wopts) {
            tracing::debug!(error = %e, ns, name, "token controller could not fill secret");
        }
    };
    for ev in &start.initial {
        fill(&ev.object);
    }
    let mut rx = start.rx;
    loop {
        // the store's event stream carries every resource: ServiceAccounts created after their Secret
        // get their Secrets filled too
        match rx.recv().await {
            Ok(ev) => {
                if ev.kind == EventType::Deleted {
                    continue;
                }
                if ev.gr.0.is_empty() && ev.gr.1 == "secrets" {
                    fill(&ev.object);
                } else if ev.gr.0.is_empty() && ev.gr.1 == "serviceaccounts" {
                    let ns = ev.namespace.clone();
                    if let Ok(list) =
                        store.list(&secrets, Some(&ns), &crate::store::ListOptions::default())
                    {
                        for secret in list.items {
                            fill(&secret);
                        }
                    }
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
