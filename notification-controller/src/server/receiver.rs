//! Webhook receivers on `--receiverAddr`: `POST /hook/<sha256>` from GitHub, GitLab, registries, or anything
//! that knows the token, asks Flux to reconcile the Receiver's resources now.
//!
//! Order of checks, each answering before any write: body cap (413), unknown path (404), suspended or not
//! ready (503), authenticity (400, constant-time comparisons). Then every matching resource that the Receiver's
//! CEL filters accept (`spec.resourceFilter` and `spec.resources[].filter`, with the resource's metadata as `res`
//! and a JSON body as `req`) gets `reconcile.fluxcd.io/requestedAt=<now>` by merge patch; 200 when all were
//! annotated, 500 otherwise (also when a filter fails to evaluate, or the body of a filtered request is not JSON).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use common::api::meta::annotations::RECONCILE_REQUEST;
use common::api::meta::field_managers::NOTIFICATION_CONTROLLER;
use common::api::notification_v1::{Receiver, ReceiverResource};
use common::conditions::types::READY;
use http::{HeaderMap, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tracing::{debug, error, info};

use super::{BodyError, read_body};
use crate::controllers::receiver::Filters;
use crate::resources::ResourceResolver;

/// The path prefix of every receiver.
pub const WEBHOOK_PATH_PREFIX: &str = "/hook/";

/// The kinds whose apiVersion may be omitted in `spec.resources`, and the version assumed (Flux's table).
pub fn default_api_version(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Bucket" | "HelmChart" | "HelmRepository" | "GitRepository" | "OCIRepository" => {
            "source.toolkit.fluxcd.io/v1"
        }
        "ImageRepository" => "image.toolkit.fluxcd.io/v1",
        "ArtifactGenerator" => "source.extensions.fluxcd.io/v1beta1",
        _ => return None,
    })
}

/// Why a webhook was refused. Bodies are short and never echo tokens or signatures.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// 413 or 400 while reading.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// No Receiver has this path.
    #[error("not found")]
    NotFound,
    /// The Receiver is suspended or not ready.
    #[error("unable to process request")]
    Unavailable,
    /// Authentication or payload validation failed.
    #[error("unable to validate payload")]
    Invalid(String),
    /// Annotating at least one resource failed.
    #[error("unable to request reconciliation")]
    Annotate,
    /// The Receiver's filters could not be set up for this request (an invalid expression, a JSON body that does
    /// not parse).
    #[error("unable to create resource filter")]
    Filter,
}

impl IntoResponse for ReceiverError {
    fn into_response(self) -> Response {
        let status = match &self {
            ReceiverError::Body(BodyError::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            ReceiverError::Body(BodyError::Timeout) => StatusCode::REQUEST_TIMEOUT,
            ReceiverError::Body(BodyError::Read(_)) | ReceiverError::Invalid(_) => {
                StatusCode::BAD_REQUEST
            }
            ReceiverError::NotFound => StatusCode::NOT_FOUND,
            ReceiverError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ReceiverError::Annotate | ReceiverError::Filter => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.to_string()).into_response()
    }
}

/// What the receiver handler shares.
pub struct ReceiverServer {
    receivers: Store<Receiver>,
    resources: Arc<ResourceResolver>,
    no_cross_namespace_refs: bool,
}

impl std::fmt::Debug for ReceiverServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverServer").finish_non_exhaustive()
    }
}

impl ReceiverServer {
    /// A server finding Receivers in `receivers` (a reflector store).
    pub fn new(
        receivers: Store<Receiver>,
        resources: Arc<ResourceResolver>,
        no_cross_namespace_refs: bool,
    ) -> Self {
        ReceiverServer {
            receivers,
            resources,
            no_cross_namespace_refs,
        }
    }
}

/// The receiver router.
pub fn router(server: Arc<ReceiverServer>) -> Router {
    Router::new().fallback(handle_payload).with_state(server)
}

fn is_ready(receiver: &Receiver) -> bool {
    receiver
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| common::conditions::get(c, READY))
        .is_some_and(|c| c.status == common::api::meta::ConditionStatus::True)
}

async fn handle_payload(
    State(server): State<Arc<ReceiverServer>>,
    request: Request,
) -> Result<StatusCode, ReceiverError> {
    let path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body).await?;
    if !path.starts_with(WEBHOOK_PATH_PREFIX) {
        return Err(ReceiverError::NotFound);
    }
    let receiver = server
        .receivers
        .state()
        .into_iter()
        .find(|r| r.status.as_ref().and_then(|s| s.webhook_path.as_deref()) == Some(path.as_str()))
        .ok_or(ReceiverError::NotFound)?;
    let name = receiver.name_any();
    let namespace = receiver.namespace().unwrap_or_default();
    if receiver.spec.suspend == Some(true) || !is_ready(&receiver) {
        error!(
            name,
            namespace,
            suspended = receiver.spec.suspend == Some(true),
            "unable to process request: receiver is suspended or not ready"
        );
        return Err(ReceiverError::Unavailable);
    }
    let token = match &receiver.spec.secret_ref {
        Some(reference) => {
            let secret = Api::<Secret>::namespaced(server.resources.client().clone(), &namespace)
                .get(&reference.name)
                .await
                .map_err(|e| {
                    ReceiverError::Invalid(format!(
                        "unable to read secret '{namespace}/{}': {e}",
                        reference.name
                    ))
                })?;
            secret
                .data
                .as_ref()
                .and_then(|d| d.get("token"))
                .map(|t| t.0.clone())
                .ok_or_else(|| {
                    ReceiverError::Invalid(format!(
                        "invalid '{namespace}/{}' secret data: required field 'token'",
                        reference.name
                    ))
                })?
        }
        None => Vec::new(),
    };
    if let Err(reason) = validate(&receiver, &parts.headers, &body, &token) {
        error!(name, namespace, error = %reason, "unable to validate payload");
        return Err(ReceiverError::Invalid(reason));
    }
    let filters = Filters::compile(&receiver).map_err(|e| {
        error!(name, namespace, error = %e, "unable to create resource filter");
        ReceiverError::Filter
    })?;
    let filtered = filters.top.is_some() || filters.per_resource.iter().any(Option::is_some);
    // As Flux: the body is `req` only when it is JSON; otherwise `req` is empty.
    let req = if filtered && is_json(&parts.headers) {
        serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| {
            error!(name, namespace, error = %e, "unable to create resource filter: failed to parse request body as JSON");
            ReceiverError::Filter
        })?
    } else {
        serde_json::json!({})
    };
    let mut failed = false;
    for (index, resource) in receiver.spec.resources.iter().enumerate() {
        let filter = Filter {
            filters: &filters,
            index,
            req: &req,
        };
        if let Err(e) = server
            .request_reconciliation(resource, &namespace, filtered.then_some(&filter))
            .await
        {
            error!(name, namespace, kind = %resource.kind, resource = %resource.name, error = %e,
                "unable to request reconciliation");
            failed = true;
        }
    }
    if failed {
        Err(ReceiverError::Annotate)
    } else {
        Ok(StatusCode::OK)
    }
}

/// Whether a `Content-Type` header names `application/json` (any of its comma-separated values).
fn is_json(headers: &HeaderMap) -> bool {
    header(headers, "content-type")
        .split(',')
        .filter_map(|v| v.split(';').next())
        .any(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The filters that decide for one entry of `spec.resources`.
struct Filter<'a> {
    filters: &'a Filters,
    index: usize,
    req: &'a serde_json::Value,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Verifies `<algo>=<hex>` (sha1, sha256, sha512) over `body` with `key`, in constant time.
pub fn verify_signature(signature: &str, body: &[u8], key: &[u8]) -> Result<(), String> {
    use hmac::{Hmac, Mac};
    let (algo, hex_mac) = signature
        .split_once('=')
        .ok_or_else(|| "missing or malformed signature".to_owned())?;
    let mac = hex::decode(hex_mac).map_err(|_| "error decoding signature".to_owned())?;
    let ok = match algo {
        "sha1" => Hmac::<sha1::Sha1>::new_from_slice(key)
            .map(|mut m| {
                m.update(body);
                m.verify_slice(&mac).is_ok()
            })
            .unwrap_or(false),
        "sha256" => Hmac::<sha2::Sha256>::new_from_slice(key)
            .map(|mut m| {
                m.update(body);
                m.verify_slice(&mac).is_ok()
            })
            .unwrap_or(false),
        "sha512" => Hmac::<sha2::Sha512>::new_from_slice(key)
            .map(|mut m| {
                m.update(body);
                m.verify_slice(&mac).is_ok()
            })
            .unwrap_or(false),
        other => return Err(format!("unknown hash type prefix: {other:?}")),
    };
    if ok {
        Ok(())
    } else {
        Err("payload signature check failed".into())
    }
}

fn event_allowed(receiver: &Receiver, event: &str, what: &str) -> Result<(), String> {
    match receiver.spec.events.as_deref() {
        Some(events) if !events.is_empty() => {
            if events.iter().any(|e| e.eq_ignore_ascii_case(event)) {
                Ok(())
            } else {
                Err(format!("the {what} event {event:?} is not authorised"))
            }
        }
        _ => Ok(()),
    }
}

/// GitHub's (and Bitbucket Server's) signature: `X-Hub-Signature-256`, else `X-Hub-Signature`.
fn validate_hub_signature(headers: &HeaderMap, body: &[u8], token: &[u8]) -> Result<(), String> {
    let content_type = header(headers, "content-type");
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !matches!(
        media,
        "application/json" | "application/x-www-form-urlencoded"
    ) {
        return Err(format!(
            "webhook request has unsupported Content-Type {media:?}"
        ));
    }
    if token.is_empty() {
        return Ok(());
    }
    let mut signature = header(headers, "x-hub-signature-256");
    if signature.is_empty() {
        signature = header(headers, "x-hub-signature");
    }
    verify_signature(signature, body, token)
}

fn decode<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("cannot decode {what} webhook payload: {e}"))
}

/// Authenticates a webhook for the Receiver's type, as Flux's `validate`.
pub fn validate(
    receiver: &Receiver,
    headers: &HeaderMap,
    body: &[u8],
    token: &[u8],
) -> Result<(), String> {
    let name = receiver.name_any();
    match receiver.spec.type_.as_str() {
        "generic" => Ok(()),
        "generic-hmac" => verify_signature(header(headers, "x-signature"), body, token)
            .map_err(|e| format!("unable to validate HMAC signature: {e}")),
        "github" => {
            validate_hub_signature(headers, body, token)
                .map_err(|e| format!("the GitHub signature header is invalid, err: {e}"))?;
            let event = header(headers, "x-github-event");
            event_allowed(receiver, event, "GitHub")?;
            info!(receiver = %name, "handling GitHub event: {event}");
            Ok(())
        }
        "gitlab" => {
            if !ct_eq(header(headers, "x-gitlab-token").as_bytes(), token) {
                return Err(
                    "the X-Gitlab-Token header value does not match the receiver token".into(),
                );
            }
            let event = header(headers, "x-gitlab-event");
            event_allowed(receiver, event, "GitLab")?;
            info!(receiver = %name, "handling GitLab event: {event}");
            Ok(())
        }
        "bitbucket" => {
            validate_hub_signature(headers, body, token).map_err(|e| {
                format!("the Bitbucket server signature header is invalid, err: {e}")
            })?;
            let event = header(headers, "x-event-key");
            event_allowed(receiver, event, "Bitbucket server")?;
            info!(receiver = %name, "handling Bitbucket server event: {event}");
            Ok(())
        }
        "harbor" => {
            if !ct_eq(header(headers, "authorization").as_bytes(), token) {
                return Err(
                    "the Harbor Authorization header value does not match the receiver token"
                        .into(),
                );
            }
            info!(receiver = %name, "handling Harbor event");
            Ok(())
        }
        "dockerhub" => {
            #[derive(Deserialize, Default)]
            #[serde(default)]
            struct PushData {
                tag: String,
            }
            #[derive(Deserialize, Default)]
            #[serde(default)]
            struct Repository {
                repo_url: String,
            }
            #[derive(Deserialize)]
            struct Payload {
                #[serde(default)]
                push_data: PushData,
                #[serde(default)]
                repository: Repository,
            }
            let p: Payload = decode(body, "DockerHub")?;
            info!(receiver = %name, "handling DockerHub event from {} for tag {}", p.repository.repo_url, p.push_data.tag);
            Ok(())
        }
        "quay" => {
            #[derive(Deserialize)]
            struct Payload {
                #[serde(default)]
                docker_url: String,
                #[serde(default)]
                #[allow(dead_code)]
                updated_tags: Vec<String>,
            }
            let p: Payload = decode(body, "Quay")?;
            info!(receiver = %name, "handling Quay event from {}", p.docker_url);
            Ok(())
        }
        "nexus" => {
            let signature = header(headers, "x-nexus-webhook-signature");
            if signature.is_empty() {
                return Err("the Nexus signature is missing from header".into());
            }
            verify_signature(&format!("sha1={signature}"), body, token)
                .map_err(|_| "invalid Nexus signature".to_owned())?;
            #[derive(Deserialize)]
            struct Payload {
                #[serde(default, rename = "repositoryName")]
                repository_name: String,
            }
            let p: Payload = decode(body, "Nexus")?;
            info!(receiver = %name, "handling Nexus event from {}", p.repository_name);
            Ok(())
        }
        "acr" => {
            #[derive(Deserialize, Default)]
            #[serde(default)]
            struct Target {
                repository: String,
                tag: String,
            }
            #[derive(Deserialize)]
            struct Payload {
                #[serde(default)]
                target: Target,
            }
            let p: Payload = decode(body, "ACR")?;
            info!(receiver = %name, "handling ACR event from {} for tag {}", p.target.repository, p.target.tag);
            Ok(())
        }
        other => Err(format!("receiver type {other:?} not supported")),
    }
}

impl ReceiverServer {
    async fn request_reconciliation(
        &self,
        resource: &ReceiverResource,
        default_namespace: &str,
        filter: Option<&Filter<'_>>,
    ) -> Result<(), String> {
        let namespace = match resource.namespace.as_deref().filter(|n| !n.is_empty()) {
            Some(ns) if self.no_cross_namespace_refs && ns != default_namespace => {
                return Err("cross-namespace references are not allowed".into());
            }
            Some(ns) => ns,
            None => default_namespace,
        };
        let api_version = match resource.api_version.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => v,
            None => default_api_version(&resource.kind).ok_or_else(|| {
                format!("apiVersion must be specified for kind {:?}", resource.kind)
            })?,
        };
        let api_resource = self
            .resources
            .resolve(api_version, &resource.kind)
            .await
            .map_err(|e| {
                format!(
                    "unable to find kind {} in {api_version}: {e}",
                    resource.kind
                )
            })?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.resources.client().clone(), namespace, &api_resource);
        let candidates = if resource.name == "*" {
            let labels = resource
                .match_labels
                .as_ref()
                .ok_or("matchLabels field not set when using wildcard '*' as name")?;
            let selector = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let list = api
                .list_metadata(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| {
                    format!(
                        "failed listing resources in namespace {namespace:?} by matching labels {labels:?}: {e}"
                    )
                })?;
            if list.items.is_empty() {
                error!(kind = %resource.kind, namespace, "no resources found with matching labels {labels:?}");
            }
            list.items
                .into_iter()
                .map(|o| o.metadata)
                .collect::<Vec<_>>()
        } else {
            let found = api.get_metadata(&resource.name).await.map_err(|e| {
                format!(
                    "unable to read {} '{namespace}/{}': {e}",
                    resource.kind, resource.name
                )
            })?;
            vec![found.metadata]
        };
        let names: Vec<String> = match filter {
            Some(f) => {
                // `res` is the resource's metadata, as Flux's PartialObjectMetadata.
                let resources: Vec<serde_json::Value> = candidates
                    .iter()
                    .map(|metadata| {
                        serde_json::json!({
                            "apiVersion": api_version,
                            "kind": resource.kind,
                            "metadata": metadata,
                        })
                    })
                    .collect();
                let accepted = f
                    .filters
                    .accept_each(f.index, f.req, &resources)
                    .map_err(|e| e.to_string())?;
                candidates
                    .into_iter()
                    .zip(accepted)
                    .filter_map(|(metadata, accept)| {
                        let name = metadata.name.unwrap_or_default();
                        if !accept {
                            debug!(kind = %resource.kind, name, namespace, "resource NOT annotated because CEL expression returned false");
                        }
                        accept.then_some(name)
                    })
                    .collect()
            }
            None => candidates
                .into_iter()
                .map(|metadata| metadata.name.unwrap_or_default())
                .collect(),
        };
        let now = jiff::Timestamp::now().to_string();
        let patch = serde_json::json!({"metadata": {"annotations": BTreeMap::from([(RECONCILE_REQUEST, now)])}});
        let params = PatchParams {
            field_manager: Some(NOTIFICATION_CONTROLLER.to_owned()),
            ..Default::default()
        };
        for name in names {
            api.patch_metadata(&name, &params, &Patch::Merge(&patch))
                .await
                .map_err(|e| {
                    format!(
                        "failed to annotate resource: '{}/{name}.{namespace}': {e}",
                        resource.kind
                    )
                })?;
            info!(kind = %resource.kind, name, namespace, "resource annotated");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::notification_v1::ReceiverSpec;

    fn receiver(type_: &str, events: &[&str]) -> Receiver {
        Receiver::new(
            "r",
            ReceiverSpec {
                type_: type_.into(),
                events: (!events.is_empty())
                    .then(|| events.iter().map(|e| e.to_string()).collect()),
                ..Default::default()
            },
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn sign(algo: &str, body: &[u8], key: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let mac = match algo {
            "sha1" => {
                let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
                m.update(body);
                m.finalize().into_bytes().to_vec()
            }
            "sha256" => {
                let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
                m.update(body);
                m.finalize().into_bytes().to_vec()
            }
            _ => {
                let mut m = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
                m.update(body);
                m.finalize().into_bytes().to_vec()
            }
        };
        format!("{algo}={}", hex::encode(mac))
    }

    #[test]
    fn generic_hmac_accepts_three_algorithms() {
        let r = receiver("generic-hmac", &[]);
        let body = br#"{"hello":"world"}"#;
        for algo in ["sha1", "sha256", "sha512"] {
            let sig = sign(algo, body, b"tok");
            assert!(
                validate(&r, &headers(&[("x-signature", &sig)]), body, b"tok").is_ok(),
                "{algo}"
            );
            assert!(validate(&r, &headers(&[("x-signature", &sig)]), body, b"other").is_err());
        }
        assert!(validate(&r, &headers(&[]), body, b"tok").is_err());
        assert!(validate(&r, &headers(&[("x-signature", "md5=00")]), body, b"tok").is_err());
    }

    #[test]
    fn github_signature_and_events() {
        let r = receiver("github", &["ping", "push"]);
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = sign("sha256", body, b"tok");
        let ok = headers(&[
            ("content-type", "application/json"),
            ("x-hub-signature-256", &sig),
            ("x-github-event", "push"),
        ]);
        assert!(validate(&r, &ok, body, b"tok").is_ok());
        let ping = headers(&[
            ("content-type", "application/json"),
            ("x-hub-signature-256", &sig),
            ("x-github-event", "ping"),
        ]);
        assert!(validate(&r, &ping, body, b"tok").is_ok());
        let other = headers(&[
            ("content-type", "application/json"),
            ("x-hub-signature-256", &sig),
            ("x-github-event", "issues"),
        ]);
        assert!(
            validate(&r, &other, body, b"tok")
                .unwrap_err()
                .contains("not authorised")
        );
        let tampered = br#"{"ref":"refs/heads/evil"}"#;
        assert!(validate(&r, &ok, tampered, b"tok").is_err());
        let legacy = headers(&[
            ("content-type", "application/json"),
            ("x-hub-signature", &sign("sha1", body, b"tok")),
            ("x-github-event", "push"),
        ]);
        assert!(validate(&r, &legacy, body, b"tok").is_ok());
        let no_type = headers(&[("x-hub-signature-256", &sig), ("x-github-event", "push")]);
        assert!(validate(&r, &no_type, body, b"tok").is_err());
    }

    #[test]
    fn gitlab_harbor_nexus_and_payload_types() {
        let gl = receiver("gitlab", &["Push Hook"]);
        let h = headers(&[("x-gitlab-token", "tok"), ("x-gitlab-event", "Push Hook")]);
        assert!(validate(&gl, &h, b"{}", b"tok").is_ok());
        assert!(validate(&gl, &h, b"{}", b"tok2").is_err());
        let tag = headers(&[
            ("x-gitlab-token", "tok"),
            ("x-gitlab-event", "Tag Push Hook"),
        ]);
        assert!(validate(&gl, &tag, b"{}", b"tok").is_err());

        let harbor = receiver("harbor", &[]);
        assert!(validate(&harbor, &headers(&[("authorization", "tok")]), b"", b"tok").is_ok());
        assert!(validate(&harbor, &headers(&[("authorization", "nope")]), b"", b"tok").is_err());

        let nexus = receiver("nexus", &[]);
        let body = br#"{"action":"CREATED","repositoryName":"docker"}"#;
        let sig = sign("sha1", body, b"tok");
        let sig = sig.trim_start_matches("sha1=");
        assert!(
            validate(
                &nexus,
                &headers(&[("x-nexus-webhook-signature", sig)]),
                body,
                b"tok"
            )
            .is_ok()
        );
        assert!(validate(&nexus, &headers(&[]), body, b"tok").is_err());

        for t in ["dockerhub", "quay", "acr"] {
            let r = receiver(t, &[]);
            assert!(validate(&r, &headers(&[]), b"{}", b"").is_ok(), "{t}");
            assert!(
                validate(&r, &headers(&[]), b"not json", b"").is_err(),
                "{t}"
            );
        }
        assert!(validate(&receiver("gcr", &[]), &headers(&[]), b"{}", b"").is_err());
        assert!(validate(&receiver("generic", &[]), &headers(&[]), b"", b"").is_ok());
    }
}
