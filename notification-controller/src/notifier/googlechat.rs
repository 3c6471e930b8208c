//! Google Chat: a card with the object as title, the controller as subtitle, the message and the metadata.

use common::events::{FluxEvent, Severity};
use serde_json::{Value, json};

use super::object_name;

/// Flux's `GoogleChatPayload`.
pub fn payload(event: &FluxEvent) -> Value {
    let text = if event.severity == Severity::Error {
        format!("<font color=\"#ff0000\">{}</font>", event.message)
    } else {
        event.message.clone()
    };
    let mut sections = vec![json!({
        "header": "",
        "widgets": [{"textParagraph": {"text": text}, "keyValue": null}],
    })];
    if !event.metadata.is_empty() {
        let widgets: Vec<Value> = event
            .metadata
            .iter()
            .map(|(k, v)| {
                json!({"textParagraph": null, "keyValue": {
                    "topLabel": k, "content": v, "contentMultiline": false, "bottomLabel": null, "icon": null,
                }})
            })
            .collect();
        sections.push(json!({"header": "", "widgets": widgets}));
    }
    json!({"cards": [{
        "header": {
            "title": object_name(event),
            "subtitle": event.reporting_controller,
            "imageUrl": null,
            "imageStyle": null,
        },
        "sections": sections,
    }]})
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{assert_golden, event};
    use common::events::Severity;

    #[test]
    fn google_chat_golden() {
        let body = serde_json::to_vec(&super::payload(&event(Severity::Error))).unwrap();
        assert_golden(
            &body,
            r##"{"cards": [{
              "header": {"title": "kustomization/podinfo.flux-system", "subtitle": "kustomize-controller", "imageUrl": null, "imageStyle": null},
              "sections": [
                {"header": "", "widgets": [{"textParagraph": {"text": "<font color=\"#ff0000\">Deployment/default/podinfo configured\nService/default/podinfo unchanged</font>"}, "keyValue": null}]},
                {"header": "", "widgets": [
                  {"textParagraph": null, "keyValue": {"topLabel": "revision", "content": "main@sha1:0123456789abcdef0123456789abcdef01234567", "contentMultiline": false, "bottomLabel": null, "icon": null}},
                  {"textParagraph": null, "keyValue": {"topLabel": "summary", "content": "Cluster: prod", "contentMultiline": false, "bottomLabel": null, "icon": null}}
                ]}
              ]
            }]}"##,
        );
    }
}
