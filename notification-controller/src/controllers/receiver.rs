//! The Receiver reconciler: reads the token, computes `status.webhookPath` = `/hook/` +
//! hex(sha256(token + name + namespace)), and marks Ready `Receiver initialized for path: …`. A missing secret
//! or token is `TokenNotFound` (retried); a spec this controller cannot honour is Stalled with a clear message, and
//! so is a `resourceFilter` or `resources[].filter` CEL expression that does not compile (`InvalidCELExpression`).

use common::api::notification_v1::{Receiver, ReceiverStatus};
use common::cel::{CelError, Expression, Variables};
use common::conditions::{reasons, types::READY};
use common::reconcile::{ErrorKind, FluxError, FluxStatus, Reconciler, Step, Success, Summary};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Receiver types this controller validates (see `server::receiver::validate`).
pub const SUPPORTED_RECEIVER_TYPES: &[&str] = &[
    "generic",
    "generic-hmac",
    "github",
    "gitlab",
    "bitbucket",
    "harbor",
    "dockerhub",
    "quay",
    "nexus",
    "acr",
];

/// Flux's reason when the token secret is missing or has no `token`.
pub const TOKEN_NOT_FOUND_REASON: &str = "TokenNotFound";
/// Flux's reason for a spec that fails validation.
pub const VALIDATION_FAILED_REASON: &str = "ValidationFailed";
/// Flux's reason for a filter expression that does not compile.
pub const INVALID_CEL_EXPRESSION_REASON: &str = "InvalidCELExpression";

/// The variables of a Receiver filter: the resource's metadata (`res`) and the webhook's JSON body (`req`).
pub const FILTER_VARIABLES: &[&str] = &["res", "req"];

/// The Receiver's filters, compiled: `spec.resourceFilter`, then `spec.resources[i].filter` by index.
pub struct Filters {
    /// `spec.resourceFilter`.
    pub top: Option<Expression>,
    /// `spec.resources[i].filter`, one entry per resource.
    pub per_resource: Vec<Option<Expression>>,
}

impl Filters {
    /// Compiles every filter of `receiver` against [`FILTER_VARIABLES`] with a bool result, as Flux does.
    pub fn compile(receiver: &Receiver) -> Result<Filters, String> {
        let compile = |source: Option<&str>| -> Result<Option<Expression>, CelError> {
            source
                .filter(|s| !s.is_empty())
                .map(|s| Expression::compile_bool(s, FILTER_VARIABLES))
                .transpose()
        };
        let top = compile(receiver.spec.resource_filter.as_deref())
            .map_err(|e| format!("invalid resourceFilter: {e}"))?;
        let per_resource = receiver
            .spec
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| {
                compile(r.filter.as_deref())
                    .map_err(|e| format!("invalid resources[{i}].filter: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Filters { top, per_resource })
    }

    /// For each of `resources` (matched by entry `index` of `spec.resources`), whether every filter set accepts
    /// it. The request body is converted for CEL once, not once per resource.
    pub fn accept_each(
        &self,
        index: usize,
        req: &Value,
        resources: &[Value],
    ) -> Result<Vec<bool>, CelError> {
        let expressions: Vec<&Expression> = [
            self.top.as_ref(),
            self.per_resource.get(index).and_then(Option::as_ref),
        ]
        .into_iter()
        .flatten()
        .collect();
        let request = Variables::new([("req", req)]);
        resources
            .iter()
            .map(|res| {
                let variables = request.with("res", res);
                for expression in &expressions {
                    if !expression.evaluate_bool_in(&variables)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            })
            .collect()
    }
}

/// The webhook path of a Receiver with `token`.
pub fn webhook_path(token: &str, name: &str, namespace: &str) -> String {
    let digest = Sha256::digest(format!("{token}{name}{namespace}").as_bytes());
    format!("/hook/{}", hex::encode(digest))
}

/// A Receiver reconcile error.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The secret could not be read.
    #[error("unable to read token from secret '{secret}' error: {source}")]
    SecretRead {
        /// `namespace/name`.
        secret: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The secret has no `token`.
    #[error("invalid '{0}' secret data: required fields 'token'")]
    TokenMissing(String),
    /// The spec asks for something this controller refuses or does not implement.
    #[error("Reconciliation failed terminally due to configuration error: {0}")]
    Invalid(String),
    /// A `resourceFilter` or `resources[].filter` CEL expression does not compile.
    #[error("Reconciliation failed terminally due to configuration error: {0}")]
    InvalidFilter(String),
}

impl FluxError for ReceiverError {
    fn reason(&self) -> &str {
        match self {
            ReceiverError::SecretRead { .. } | ReceiverError::TokenMissing(_) => {
                TOKEN_NOT_FOUND_REASON
            }
            ReceiverError::Invalid(_) => VALIDATION_FAILED_REASON,
            ReceiverError::InvalidFilter(_) => INVALID_CEL_EXPRESSION_REASON,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            ReceiverError::Invalid(_) | ReceiverError::InvalidFilter(_) => ErrorKind::Stalled,
            _ => ErrorKind::Transient,
        }
    }
}

/// What this controller cannot honour in a Receiver spec: never silently ignored.
pub fn unsupported(receiver: &Receiver) -> Option<String> {
    let spec = &receiver.spec;
    if !SUPPORTED_RECEIVER_TYPES.contains(&spec.type_.as_str()) {
        return Some(format!(
            "receiver type '{}' is not supported by this controller (supported: {})",
            spec.type_,
            SUPPORTED_RECEIVER_TYPES.join(", ")
        ));
    }
    if spec.secret_ref.is_none() {
        return Some("secretRef is required when type is not generic-oidc".into());
    }
    if spec.oidc_providers.as_ref().is_some_and(|p| !p.is_empty()) {
        return Some("oidcProviders can only be set when type is generic-oidc".into());
    }
    None
}

/// Reconciles Receivers.
pub struct ReceiverReconciler {
    client: kube::Client,
}

impl ReceiverReconciler {
    /// A reconciler reading secrets with `client`.
    pub fn new(client: kube::Client) -> Self {
        ReceiverReconciler { client }
    }

    async fn token(&self, receiver: &Receiver, secret_name: &str) -> Result<String, ReceiverError> {
        let namespace = receiver.namespace().unwrap_or_default();
        let secret = format!("{namespace}/{secret_name}");
        let found = Api::<Secret>::namespaced(self.client.clone(), &namespace)
            .get(secret_name)
            .await
            .map_err(|source| ReceiverError::SecretRead {
                secret: secret.clone(),
                source,
            })?;
        found
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .map(|t| String::from_utf8_lossy(&t.0).into_owned())
            .ok_or(ReceiverError::TokenMissing(secret))
    }
}

impl Reconciler for ReceiverReconciler {
    type Object = Receiver;
    type Error = ReceiverError;
    const SUMMARY: Summary = Summary {
        scope: &[],
        negative_polarity: &[],
    };

    async fn reconcile(
        &self,
        obj: &Receiver,
        status: &mut ReceiverStatus,
        step: &mut Step,
    ) -> Result<Success, ReceiverError> {
        if let Some(problem) = unsupported(obj) {
            status.webhook_path = None;
            return Err(ReceiverError::Invalid(problem));
        }
        if let Err(problem) = Filters::compile(obj) {
            status.webhook_path = None;
            return Err(ReceiverError::InvalidFilter(problem));
        }
        let secret_name = obj
            .spec
            .secret_ref
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let token = match self.token(obj, &secret_name).await {
            Ok(token) => token,
            Err(err) => {
                status.webhook_path = None;
                return Err(err);
            }
        };
        let path = webhook_path(
            &token,
            &obj.name_any(),
            &obj.namespace().unwrap_or_default(),
        );
        let message = format!("Receiver initialized for path: {path}");
        if status.webhook_path.as_deref() != Some(path.as_str()) {
            tracing::info!("{message}");
        }
        status.webhook_path = Some(path);
        // Marked here: the runner only turns an Unknown Ready into True, and a Ready=False left by an earlier
        // TokenNotFound is not Unknown (Flux's reconciler marks Ready itself, too).
        step.conditions(status.conditions_mut())
            .mark_true(READY, reasons::SUCCEEDED, &message);
        Ok(Success::new(message))
    }

    async fn cleanup(&self, _obj: &Receiver) -> Result<(), ReceiverError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::notification_v1::{ReceiverResource, ReceiverSpec};

    #[test]
    fn webhook_path_is_flux_digest() {
        // printf 'tokenreceiverflux-system' | sha256sum
        assert_eq!(
            webhook_path("token", "receiver", "flux-system"),
            format!(
                "/hook/{}",
                hex::encode(Sha256::digest(b"tokenreceiverflux-system"))
            )
        );
        assert_eq!(webhook_path("a", "b", "c").len(), "/hook/".len() + 64);
    }

    /// One resource at a time.
    struct Accept<'a>(&'a Filters);

    impl Accept<'_> {
        fn accept(&self, index: usize, res: &Value, req: &Value) -> Result<bool, CelError> {
            self.0
                .accept_each(index, req, std::slice::from_ref(res))
                .map(|v| v[0])
        }
    }

    #[test]
    fn filters_compile_against_res_and_req_and_all_must_accept() {
        let mut r = Receiver::new(
            "r",
            ReceiverSpec {
                type_: "generic".into(),
                resources: vec![
                    ReceiverResource {
                        kind: "GitRepository".into(),
                        name: "a".into(),
                        ..Default::default()
                    },
                    ReceiverResource {
                        kind: "GitRepository".into(),
                        name: "b".into(),
                        filter: Some("res.metadata.name == 'b'".into()),
                        ..Default::default()
                    },
                ],
                resource_filter: Some("req.ref == 'refs/heads/main'".into()),
                ..Default::default()
            },
        );
        let compiled = Filters::compile(&r).unwrap();
        let filters = Accept(&compiled);
        let res = |name: &str| serde_json::json!({"metadata": {"name": name}});
        let main = serde_json::json!({"ref": "refs/heads/main"});
        let dev = serde_json::json!({"ref": "refs/heads/dev"});
        assert_eq!(filters.accept(0, &res("a"), &main), Ok(true));
        assert_eq!(filters.accept(0, &res("a"), &dev), Ok(false));
        assert_eq!(filters.accept(1, &res("b"), &main), Ok(true));
        assert_eq!(
            filters.accept(1, &res("c"), &main),
            Ok(false),
            "both must hold"
        );
        assert!(
            filters
                .accept(0, &res("a"), &serde_json::json!({}))
                .is_err(),
            "a missing key is an error, as in cel-go"
        );

        r.spec.resource_filter = Some("request.ref == 'x'".into());
        let err = Filters::compile(&r).err().unwrap();
        assert!(
            err.starts_with("invalid resourceFilter: failed to parse the CEL expression")
                && err.contains("undeclared reference to 'request'"),
            "{err}"
        );
        r.spec.resource_filter = None;
        r.spec.resources[1].filter = Some("res.metadata.name".into());
        assert_eq!(
            Filters::compile(&r).err().unwrap(),
            "invalid resources[1].filter: CEL expression output type mismatch: expected bool, got dyn"
        );
        let err = ReceiverError::InvalidFilter("x".into());
        assert_eq!(err.reason(), "InvalidCELExpression");
        assert_eq!(err.kind(), ErrorKind::Stalled);
    }

    #[test]
    fn unsupported_fields_are_named() {
        let mut r = Receiver::new(
            "r",
            ReceiverSpec {
                type_: "github".into(),
                secret_ref: Some(common::api::meta::LocalObjectReference { name: "s".into() }),
                resources: vec![ReceiverResource {
                    kind: "GitRepository".into(),
                    name: "x".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        assert_eq!(unsupported(&r), None);
        r.spec.type_ = "gcr".into();
        assert!(unsupported(&r).unwrap().contains("'gcr' is not supported"));
        let err = ReceiverError::Invalid("x".into());
        assert_eq!(err.reason(), "ValidationFailed");
        assert_eq!(err.kind(), ErrorKind::Stalled);
        assert_eq!(
            ReceiverError::TokenMissing("a/b".into()).reason(),
            "TokenNotFound"
        );
    }
}
