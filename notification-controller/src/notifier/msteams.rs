//! Microsoft Teams: an Adaptive Card (Power Automate workflows), or the deprecated connector MessageCard for
//! `*.webhook.office.com` addresses.

use common::events::{FluxEvent, Severity};
use serde_json::{Value, json};

use super::object_name;

/// The deprecated Office 365 connector card.
pub fn connector_payload(event: &FluxEvent) -> Value {
    let name = object_name(event);
    let facts: Vec<Value> = event
        .metadata
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    json!({
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": if event.severity == Severity::Error { "FF0000" } else { "0076D7" },
        "summary": name,
        "sections": [{
            "activityTitle": event.message,
            "activitySubtitle": name,
            "facts": facts,
        }],
    })
}

/// The Adaptive Card 1.4 message: title, message (red for errors), facts with `summary` first.
pub fn adaptive_card_payload(event: &FluxEvent) -> Value {
    let name = object_name(event);
    let mut message = json!({"type": "TextBlock", "text": event.message, "wrap": true});
    if event.severity == Severity::Error {
        message["color"] = json!("attention");
    }
    let mut facts = Vec::new();
    if let Some(summary) = event.metadata.get("summary") {
        facts.push(json!({"title": "summary", "value": summary}));
    }
    facts.extend(
        event
            .metadata
            .iter()
            .filter(|(k, _)| k.as_str() != "summary")
            .map(|(k, v)| json!({"title": k, "value": v})),
    );
    let mut fact_set = json!({"type": "FactSet"});
    if !facts.is_empty() {
        fact_set["facts"] = Value::Array(facts);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [{
                    "type": "Container",
                    "items": [
                        {"type": "TextBlock", "text": name, "size": "large", "weight": "bolder", "wrap": true},
                        message,
                        fact_set,
                    ],
                }],
                "msteams": {"width": "Full"},
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{assert_golden, event};
    use super::super::{Notifier, ProviderSettings};
    use common::events::Severity;

    fn body(address: &str, severity: Severity) -> Vec<u8> {
        let n = Notifier::new(ProviderSettings {
            type_: "msteams".into(),
            address: address.into(),
            ..Default::default()
        })
        .unwrap();
        match n {
            Notifier::Webhook(b) => b.requests(&event(severity)).unwrap().remove(0).body,
            Notifier::CommitStatus(_) => panic!("not a webhook"),
        }
    }

    #[test]
    fn adaptive_card_golden() {
        assert_golden(
            &body(
                "https://prod.westeurope.logic.azure.com/workflows/x",
                Severity::Error,
            ),
            r#"{
              "type": "message",
              "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                  "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                  "type": "AdaptiveCard",
                  "version": "1.4",
                  "body": [{
                    "type": "Container",
                    "items": [
                      {"type": "TextBlock", "text": "kustomization/podinfo.flux-system", "size": "large", "weight": "bolder", "wrap": true},
                      {"type": "TextBlock", "text": "Deployment/default/podinfo configured\nService/default/podinfo unchanged", "wrap": true, "color": "attention"},
                      {"type": "FactSet", "facts": [
                        {"title": "summary", "value": "Cluster: prod"},
                        {"title": "revision", "value": "main@sha1:0123456789abcdef0123456789abcdef01234567"}
                      ]}
                    ]
                  }],
                  "msteams": {"width": "Full"}
                }
              }]
            }"#,
        );
    }

    #[test]
    fn connector_card_golden() {
        assert_golden(
            &body("https://org.webhook.office.com/webhookb2/x", Severity::Info),
            r#"{
              "@type": "MessageCard",
              "@context": "http://schema.org/extensions",
              "themeColor": "0076D7",
              "summary": "kustomization/podinfo.flux-system",
              "sections": [{
                "activityTitle": "Deployment/default/podinfo configured\nService/default/podinfo unchanged",
                "activitySubtitle": "kustomization/podinfo.flux-system",
                "facts": [
                  {"name": "revision", "value": "main@sha1:0123456789abcdef0123456789abcdef01234567"},
                  {"name": "summary", "value": "Cluster: prod"}
                ]
              }]
            }"#,
        );
    }
}
