//! PagerDuty Events API v2: an error triggers an incident (deduplicated on the object's UID), anything else
//! resolves it, and an info event is also sent as a Change Event. `Progressing` events are not sent. The
//! routing (integration) key is `spec.channel`; only the scheme and host of `address` are used.

use std::collections::BTreeMap;

use common::events::{FluxEvent, Severity};
use serde::Serialize;

use super::{name_and_description, rfc3339};

/// go-pagerduty's `V2Event`.
#[derive(Debug, Serialize, PartialEq)]
pub struct V2Event<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    dedup_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<V2Payload<'a>>,
}

/// go-pagerduty's `V2Payload`.
#[derive(Debug, Serialize, PartialEq)]
struct V2Payload<'a> {
    summary: String,
    source: String,
    severity: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    timestamp: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    component: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    custom_details: Details<'a>,
}

/// go-pagerduty's `ChangeEvent`.
#[derive(Debug, Serialize, PartialEq)]
pub struct ChangeEvent<'a> {
    routing_key: &'a str,
    payload: ChangePayload<'a>,
}

#[derive(Debug, Serialize, PartialEq)]
struct ChangePayload<'a> {
    summary: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    timestamp: String,
    custom_details: Details<'a>,
}

/// `{"message": ..., "metadata": ...}`; Go marshals a missing metadata map as `null`.
#[derive(Debug, Serialize, PartialEq)]
struct Details<'a> {
    message: &'a str,
    metadata: Option<&'a BTreeMap<String, String>>,
}

fn details(event: &FluxEvent) -> Details<'_> {
    Details {
        message: &event.message,
        metadata: (!event.metadata.is_empty()).then_some(&event.metadata),
    }
}

fn summary(event: &FluxEvent) -> String {
    let (name, description) = name_and_description(event);
    format!("{description}: {name}")
}

/// The Events API v2 event: `trigger` with a payload for errors, a bare `resolve` otherwise.
pub fn v2_event<'a>(event: &'a FluxEvent, routing_key: &'a str) -> V2Event<'a> {
    let o = &event.involved_object;
    let dedup_key = o.uid.as_deref().unwrap_or_default();
    if event.severity != Severity::Error {
        return V2Event {
            routing_key,
            event_action: "resolve",
            dedup_key,
            payload: None,
        };
    }
    V2Event {
        routing_key,
        event_action: "trigger",
        dedup_key,
        payload: Some(V2Payload {
            summary: summary(event),
            source: format!("Flux {}", event.reporting_controller),
            // Flux's `toPagerDutySeverity` yields "error" for errors.
            severity: "error",
            timestamp: rfc3339(event),
            component: o.name.as_deref().unwrap_or_default(),
            group: o.kind.as_deref().unwrap_or_default(),
            custom_details: details(event),
        }),
    }
}

/// The Change Event sent for info events.
pub fn change_event<'a>(event: &'a FluxEvent, routing_key: &'a str) -> ChangeEvent<'a> {
    ChangeEvent {
        routing_key,
        payload: ChangePayload {
            summary: summary(event),
            source: format!("Flux {}", event.reporting_controller),
            timestamp: rfc3339(event),
            custom_details: details(event),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{assert_golden, event, requests};
    use super::super::{Notifier, ProviderSettings};
    use common::events::Severity;

    fn settings() -> ProviderSettings {
        ProviderSettings {
            type_: "pagerduty".into(),
            address: "https://events.pagerduty.com/ignored/path?x=1".into(),
            channel: "routing-key-1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn error_triggers_an_incident() {
        let reqs = requests(settings(), Severity::Error);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].url, "https://events.pagerduty.com/v2/enqueue");
        assert_golden(
            &reqs[0].body,
            r#"{
              "routing_key": "routing-key-1",
              "event_action": "trigger",
              "dedup_key": "6c3b5c1f-0000-4000-8000-000000000001",
              "payload": {
                "summary": "reconciliation succeeded: kustomization/podinfo",
                "source": "Flux kustomize-controller",
                "severity": "error",
                "timestamp": "2026-11-21T14:00:00Z",
                "component": "podinfo",
                "group": "Kustomization",
                "custom_details": {
                  "message": "Deployment/default/podinfo configured\nService/default/podinfo unchanged",
                  "metadata": {"revision": "main@sha1:0123456789abcdef0123456789abcdef01234567", "summary": "Cluster: prod"}
                }
              }
            }"#,
        );
    }

    #[test]
    fn info_resolves_then_records_a_change() {
        let reqs = requests(settings(), Severity::Info);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].url, "https://events.pagerduty.com/v2/enqueue");
        assert_golden(
            &reqs[0].body,
            r#"{"routing_key": "routing-key-1", "event_action": "resolve", "dedup_key": "6c3b5c1f-0000-4000-8000-000000000001"}"#,
        );
        assert_eq!(
            reqs[1].url,
            "https://events.pagerduty.com/v2/change/enqueue"
        );
        assert_golden(
            &reqs[1].body,
            r#"{
              "routing_key": "routing-key-1",
              "payload": {
                "summary": "reconciliation succeeded: kustomization/podinfo",
                "source": "Flux kustomize-controller",
                "timestamp": "2026-11-21T14:00:00Z",
                "custom_details": {
                  "message": "Deployment/default/podinfo configured\nService/default/podinfo unchanged",
                  "metadata": {"revision": "main@sha1:0123456789abcdef0123456789abcdef01234567", "summary": "Cluster: prod"}
                }
              }
            }"#,
        );
    }

    #[test]
    fn progressing_is_skipped_and_missing_metadata_is_null() {
        let Notifier::Webhook(b) = Notifier::new(settings()).unwrap() else {
            panic!("not a webhook")
        };
        let mut e = event(Severity::Error);
        e.reason = "Progressing".into();
        assert!(b.requests(&e).unwrap().is_empty());
        let mut e = event(Severity::Error);
        e.metadata.clear();
        let body: serde_json::Value =
            serde_json::from_slice(&b.requests(&e).unwrap()[0].body).unwrap();
        assert_eq!(
            body["payload"]["custom_details"]["metadata"],
            serde_json::Value::Null
        );
    }
}
