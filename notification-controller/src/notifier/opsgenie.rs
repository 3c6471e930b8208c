//! Opsgenie: one alert per event on the Alert API, `GenieKey` authorisation, the metadata and severity as
//! details, and a stable alias so that Opsgenie deduplicates repeats of the same object and reason.

use common::events::FluxEvent;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Hex SHA-256 of `<provider uid>/<kind>/<namespace>/<name>/<reason>`: Flux's `generateOpsgenieAlias`.
pub fn alias(provider_uid: &str, event: &FluxEvent) -> String {
    let o = &event.involved_object;
    let key = format!(
        "{provider_uid}/{}/{}/{}/{}",
        o.kind.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default(),
        event.reason
    );
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Flux's `OpsgenieAlert`.
pub fn payload(event: &FluxEvent, provider_uid: &str) -> Value {
    let o = &event.involved_object;
    let mut details = event.metadata.clone();
    details.insert("severity".into(), event.severity.as_str().into());
    json!({
        "message": format!(
            "{}/{}",
            o.kind.as_deref().unwrap_or_default(),
            o.name.as_deref().unwrap_or_default()
        ),
        "alias": alias(provider_uid, event),
        "description": event.message,
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{assert_golden, event, request};
    use super::super::{Notifier, ProviderSettings};
    use common::events::Severity;

    fn settings() -> ProviderSettings {
        ProviderSettings {
            type_: "opsgenie".into(),
            address: "https://api.opsgenie.com/v2/alerts".into(),
            token: "genie-secret".into(),
            uid: "0c5c3f1a-1234-4000-8000-000000000000".into(),
            ..Default::default()
        }
    }

    #[test]
    fn opsgenie_golden() {
        let req = request(settings(), Severity::Error);
        assert_eq!(req.url, "https://api.opsgenie.com/v2/alerts");
        assert_eq!(
            req.headers,
            vec![(
                "Authorization".to_owned(),
                "GenieKey genie-secret".to_owned()
            )]
        );
        // sha256("0c5c3f1a-1234-4000-8000-000000000000/Kustomization/flux-system/podinfo/ReconciliationSucceeded")
        let alias = super::alias(
            "0c5c3f1a-1234-4000-8000-000000000000",
            &event(Severity::Info),
        );
        assert_eq!(alias.len(), 64);
        assert_golden(
            &req.body,
            &format!(
                r#"{{
                  "message": "Kustomization/podinfo",
                  "alias": "{alias}",
                  "description": "Deployment/default/podinfo configured\nService/default/podinfo unchanged",
                  "details": {{
                    "revision": "main@sha1:0123456789abcdef0123456789abcdef01234567",
                    "summary": "Cluster: prod",
                    "severity": "error"
                  }}
                }}"#
            ),
        );
    }

    #[test]
    fn alias_depends_on_provider_object_and_reason() {
        let e = event(Severity::Info);
        let a = super::alias("uid-a", &e);
        assert_eq!(a, super::alias("uid-a", &event(Severity::Error)));
        assert_ne!(a, super::alias("uid-b", &e));
        let mut other = e.clone();
        other.reason = "HealthCheckFailed".into();
        assert_ne!(a, super::alias("uid-a", &other));
    }

    #[test]
    fn a_token_is_required() {
        let mut s = settings();
        s.token.clear();
        let err = Notifier::new(s).unwrap_err();
        assert_eq!(err.to_string(), "empty Opsgenie apikey/token");
    }
}
