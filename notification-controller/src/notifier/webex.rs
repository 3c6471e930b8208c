//! Webex: a Markdown message to the Messages API, the room id from `spec.channel`, the bot token as bearer.

use common::events::{FluxEvent, Severity};
use serde::Serialize;

use super::object_name;

/// Flux's `WebexPayload`.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    #[serde(skip_serializing_if = "String::is_empty")]
    room_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    markdown: String,
}

/// The message for `event` to room `room_id`.
pub fn payload(event: &FluxEvent, room_id: &str) -> Payload {
    let emoji = if event.severity == Severity::Error {
        "💣"
    } else {
        "✅"
    };
    let mut markdown = format!("{emoji} **{}**\n{}\n", object_name(event), event.message);
    for (k, v) in &event.metadata {
        markdown.push_str(&format!(">**{k}**: {v}\n"));
    }
    Payload {
        room_id: room_id.to_owned(),
        markdown,
    }
}

#[cfg(test)]
mod tests {
    use super::super::ProviderSettings;
    use super::super::testdata::{assert_golden, request};
    use common::events::Severity;

    #[test]
    fn webex_golden() {
        let req = request(
            ProviderSettings {
                type_: "webex".into(),
                address: "https://webexapis.com/v1/messages".into(),
                channel: "Y2lzY29zcGFyazovL3VzL1JPT00v".into(),
                token: "bot-secret".into(),
                ..Default::default()
            },
            Severity::Error,
        );
        assert_eq!(req.url, "https://webexapis.com/v1/messages");
        assert_eq!(
            req.headers,
            vec![("Authorization".to_owned(), "Bearer bot-secret".to_owned())]
        );
        assert_golden(
            &req.body,
            r#"{
              "roomId": "Y2lzY29zcGFyazovL3VzL1JPT00v",
              "markdown": "💣 **kustomization/podinfo.flux-system**\nDeployment/default/podinfo configured\nService/default/podinfo unchanged\n>**revision**: main@sha1:0123456789abcdef0123456789abcdef01234567\n>**summary**: Cluster: prod\n"
            }"#,
        );
    }
}
