//! Prometheus Alertmanager: one firing alert per event, metadata as labels, `summary` as annotation.

use common::events::FluxEvent;
use serde_json::{Value, json};

/// Go's `cases.Title`: the first letter of each word upper-cased, the rest lower-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if c.is_alphanumeric() || c == '\'' {
            if start {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            start = false;
        } else {
            out.push(c);
            start = true;
        }
    }
    out
}

/// Flux's Alertmanager payload: a list with one alert.
pub fn payload(event: &FluxEvent) -> Value {
    let mut labels = event.metadata.clone();
    let mut annotations = serde_json::Map::new();
    annotations.insert("message".into(), json!(event.message));
    if let Some(summary) = labels.remove("summary") {
        annotations.insert("summary".into(), json!(summary));
    }
    let o = &event.involved_object;
    let kind = o.kind.clone().unwrap_or_default();
    labels.insert(
        "alertname".into(),
        format!("Flux{kind}{}", title(&event.reason)),
    );
    labels.insert("severity".into(), event.severity.as_str().into());
    labels.insert("reason".into(), event.reason.clone());
    labels.insert("kind".into(), kind);
    labels.insert("name".into(), o.name.clone().unwrap_or_default());
    labels.insert("namespace".into(), o.namespace.clone().unwrap_or_default());
    labels.insert(
        "reportingcontroller".into(),
        event.reporting_controller.clone(),
    );
    let starts_at = super::rfc3339(event);
    json!([{
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
    }])
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{assert_golden, event};
    use super::super::{Notifier, ProviderSettings};
    use common::events::Severity;

    #[test]
    fn alertmanager_golden() {
        let n = Notifier::new(ProviderSettings {
            type_: "alertmanager".into(),
            address: "https://alertmanager.example.com/api/v2/alerts".into(),
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        })
        .unwrap();
        let Notifier::Webhook(b) = n else {
            panic!("not a webhook")
        };
        let req = b.requests(&event(Severity::Info)).unwrap().remove(0);
        assert_eq!(req.basic_auth, Some(("u".into(), "p".into())));
        assert_golden(
            &req.body,
            r#"[{
              "status": "firing",
              "labels": {
                "revision": "main@sha1:0123456789abcdef0123456789abcdef01234567",
                "alertname": "FluxKustomizationReconciliationsucceeded",
                "severity": "info",
                "reason": "ReconciliationSucceeded",
                "kind": "Kustomization",
                "name": "podinfo",
                "namespace": "flux-system",
                "reportingcontroller": "kustomize-controller"
              },
              "annotations": {"message": "Deployment/default/podinfo configured\nService/default/podinfo unchanged", "summary": "Cluster: prod"},
              "startsAt": "2026-11-21T14:00:00Z",
              "endsAt": "0001-01-01T00:00:00Z"
            }]"#,
        );
    }

    #[test]
    fn title_case_like_go() {
        assert_eq!(
            super::title("ReconciliationSucceeded"),
            "Reconciliationsucceeded"
        );
        assert_eq!(super::title("health check-failed"), "Health Check-Failed");
    }
}
