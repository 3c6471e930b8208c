//! `generic` and `generic-hmac`: the event JSON forwarded as is, with `Gotk-Component` and the secret's headers;
//! `generic-hmac` adds `X-Signature: sha256=<hex hmac of the body>`.

use std::collections::BTreeMap;

use common::events::FluxEvent;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// The header naming the controller that emitted the event (Go canonicalises it to `Gotk-Component`).
pub const NOTIFICATION_HEADER: &str = "gotk-component";

/// The event in the field order Flux's Go types marshal it (`event/v1beta1.Event`, `corev1.ObjectReference`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GoEvent<'a> {
    involved_object: GoObjectReference<'a>,
    severity: &'static str,
    timestamp: &'a str,
    message: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: &'a BTreeMap<String, String>,
    reporting_controller: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reporting_instance: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GoObjectReference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field_path: Option<&'a str>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

impl<'a> From<&'a FluxEvent> for GoEvent<'a> {
    fn from(e: &'a FluxEvent) -> Self {
        let o = &e.involved_object;
        GoEvent {
            involved_object: GoObjectReference {
                kind: non_empty(&o.kind),
                namespace: non_empty(&o.namespace),
                name: non_empty(&o.name),
                uid: non_empty(&o.uid),
                api_version: non_empty(&o.api_version),
                resource_version: non_empty(&o.resource_version),
                field_path: non_empty(&o.field_path),
            },
            severity: e.severity.as_str(),
            timestamp: &e.timestamp,
            message: &e.message,
            reason: &e.reason,
            metadata: &e.metadata,
            reporting_controller: &e.reporting_controller,
            reporting_instance: &e.reporting_instance,
        }
    }
}

/// Hex HMAC-SHA256 of `payload` with `key`.
pub fn sign(payload: &[u8], key: &[u8]) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(payload);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::event;
    use super::super::{Notifier, ProviderSettings};
    use super::*;
    use common::events::Severity;

    const GOLDEN: &str = r#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"podinfo","uid":"6c3b5c1f-0000-4000-8000-000000000001","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},"severity":"info","timestamp":"2026-11-21T14:00:00Z","message":"Deployment/default/podinfo configured\nService/default/podinfo unchanged","reason":"ReconciliationSucceeded","metadata":{"revision":"main@sha1:0123456789abcdef0123456789abcdef01234567","summary":"Cluster: prod"},"reportingController":"kustomize-controller","reportingInstance":"kustomize-controller-7f9c-abc"}"#;

    fn request(s: ProviderSettings) -> super::super::Request {
        match Notifier::new(s).unwrap() {
            Notifier::Webhook(b) => b.requests(&event(Severity::Info)).unwrap().remove(0),
            Notifier::CommitStatus(_) => panic!("not a webhook"),
        }
    }

    #[test]
    fn generic_golden_bytes_and_headers() {
        let req = request(ProviderSettings {
            type_: "generic".into(),
            address: "https://example.com/hook".into(),
            headers: BTreeMap::from([("X-Team".into(), "platform".into())]),
            ..Default::default()
        });
        assert_eq!(String::from_utf8(req.body).unwrap(), GOLDEN);
        assert_eq!(
            req.headers,
            vec![
                (
                    "gotk-component".to_owned(),
                    "kustomize-controller".to_owned()
                ),
                ("X-Team".to_owned(), "platform".to_owned()),
            ]
        );
    }

    #[test]
    fn generic_hmac_signs_the_body() {
        let req = request(ProviderSettings {
            type_: "generic-hmac".into(),
            address: "https://example.com/hook".into(),
            token: "hmac-key".into(),
            ..Default::default()
        });
        assert_eq!(String::from_utf8(req.body.clone()).unwrap(), GOLDEN);
        let signature = req
            .headers
            .iter()
            .find(|(k, _)| k == "X-Signature")
            .map(|(_, v)| v.clone())
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"hmac-key").unwrap();
        mac.update(GOLDEN.as_bytes());
        assert_eq!(
            signature,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
    }

    #[test]
    fn generic_hmac_needs_a_key() {
        let err = Notifier::new(ProviderSettings {
            type_: "generic-hmac".into(),
            address: "https://example.com/hook".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "HMAC key is empty");
    }

    #[test]
    fn known_hmac_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"what do ya want for nothing?", b"Jefe"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
