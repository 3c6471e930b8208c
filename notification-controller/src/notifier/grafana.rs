//! Grafana: an annotation (Graphite format) tagged `flux`, the reporting controller, the metadata and the
//! object, posted to the annotations API with a bearer token or, without one, basic auth.

use common::events::FluxEvent;
use serde_json::{Value, json};

use super::{object_name, unix_seconds};

/// Flux's `GraphitePayload`. Metadata tags have `:` replaced by `|` in keys and values.
pub fn payload(event: &FluxEvent) -> Value {
    let o = &event.involved_object;
    let mut tags = vec!["flux".to_owned(), event.reporting_controller.clone()];
    tags.extend(
        event
            .metadata
            .iter()
            .map(|(k, v)| format!("{}: {}", k.replace(':', "|"), v.replace(':', "|"))),
    );
    tags.push(format!("kind: {}", o.kind.as_deref().unwrap_or_default()));
    tags.push(format!("name: {}", o.name.as_deref().unwrap_or_default()));
    tags.push(format!(
        "namespace: {}",
        o.namespace.as_deref().unwrap_or_default()
    ));
    json!({
        "when": unix_seconds(event),
        "text": object_name(event),
        "tags": tags,
    })
}

#[cfg(test)]
mod tests {
    use super::super::ProviderSettings;
    use super::super::testdata::{assert_golden, request};
    use common::events::Severity;

    fn settings() -> ProviderSettings {
        ProviderSettings {
            type_: "grafana".into(),
            address: "https://grafana.example.com/api/annotations".into(),
            username: "admin".into(),
            password: "hunter2".into(),
            ..Default::default()
        }
    }

    #[test]
    fn grafana_golden_with_basic_auth() {
        let req = request(settings(), Severity::Info);
        assert_eq!(req.url, "https://grafana.example.com/api/annotations");
        assert_eq!(req.basic_auth, Some(("admin".into(), "hunter2".into())));
        assert!(req.headers.is_empty());
        assert_golden(
            &req.body,
            r#"{
              "when": 1795269600,
              "text": "kustomization/podinfo.flux-system",
              "tags": [
                "flux",
                "kustomize-controller",
                "revision: main@sha1|0123456789abcdef0123456789abcdef01234567",
                "summary: Cluster| prod",
                "kind: Kustomization",
                "name: podinfo",
                "namespace: flux-system"
              ]
            }"#,
        );
    }

    #[test]
    fn a_token_wins_over_basic_auth() {
        let mut s = settings();
        s.token = "glsa_secret".into();
        let req = request(s, Severity::Info);
        assert_eq!(req.basic_auth, None);
        assert_eq!(
            req.headers,
            vec![("Authorization".to_owned(), "Bearer glsa_secret".to_owned())]
        );
    }
}
