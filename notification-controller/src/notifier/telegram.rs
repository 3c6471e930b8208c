//! Telegram: a MarkdownV2 message to the Bot API's `sendMessage`, chat (and forum topic) from the channel.
//!
//! Like Flux, the request always goes to the public Bot API (`https://api.telegram.org/bot<token>/sendMessage`):
//! `spec.address` is ignored, and so is `certSecretRef`; a proxy is honoured.

use common::events::{FluxEvent, Severity};
use serde::Serialize;

/// Flux's `TelegramPayload`.
#[derive(Debug, Serialize, PartialEq)]
pub struct Payload {
    chat_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    message_thread_id: String,
    text: String,
    parse_mode: &'static str,
}

/// Escapes the characters MarkdownV2 reserves, as Flux's `escapeString`.
pub fn escape(s: &str) -> String {
    const RESERVED: &str = "\\.-_[]()~>`#+=|{}!*";
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if RESERVED.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The message for `event` sent to `channel` (`<chat id>` or `<chat id>:<topic id>`).
pub fn payload(event: &FluxEvent, channel: &str) -> Payload {
    let emoji = if event.severity == Severity::Error {
        "🚨"
    } else {
        "💫"
    };
    let o = &event.involved_object;
    let heading = format!(
        "{emoji} {}/{}/{}",
        o.kind.as_deref().unwrap_or_default().to_lowercase(),
        o.name.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default()
    );
    let metadata: String = event
        .metadata
        .iter()
        .map(|(k, v)| format!("\\- *{}*: {}\n", escape(k), escape(v)))
        .collect();
    let (chat, thread) = channel.split_once(':').unwrap_or((channel, ""));
    Payload {
        chat_id: chat.to_owned(),
        message_thread_id: thread.to_owned(),
        text: format!(
            "*{}*\n{}\n{metadata}",
            escape(&heading),
            escape(&event.message)
        ),
        parse_mode: "MarkdownV2",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{assert_golden, request};
    use super::super::{Endpoints, ProviderSettings};
    use common::events::Severity;

    fn settings(channel: &str, token: &str) -> ProviderSettings {
        ProviderSettings {
            type_: "telegram".into(),
            address: "https://ignored.example.com/hook".into(),
            channel: channel.into(),
            token: token.into(),
            ..Default::default()
        }
    }

    #[test]
    fn escapes_every_reserved_character_once() {
        assert_eq!(
            super::escape(r"a.b-c_d[e]f(g)h~i>j`k#l+m=n|o{p}q!r*s\t"),
            r"a\.b\-c\_d\[e\]f\(g\)h\~i\>j\`k\#l\+m\=n\|o\{p\}q\!r\*s\\t"
        );
    }

    #[test]
    fn telegram_golden() {
        let req = request(settings("-1001234567890", "123:ABC"), Severity::Error);
        assert_eq!(
            req.url, "https://api.telegram.org/bot123:ABC/sendMessage",
            "the address is ignored, as by Flux"
        );
        assert_eq!(req.method, http::Method::POST);
        assert!(req.headers.is_empty());
        assert_golden(
            &req.body,
            r#"{
              "chat_id": "-1001234567890",
              "text": "*🚨 kustomization/podinfo/flux\\-system*\nDeployment/default/podinfo configured\nService/default/podinfo unchanged\n\\- *revision*: main@sha1:0123456789abcdef0123456789abcdef01234567\n\\- *summary*: Cluster: prod\n",
              "parse_mode": "MarkdownV2"
            }"#,
        );
    }

    #[test]
    fn forum_topic_and_endpoint_override() {
        let mut s = settings("-100123:42", "123:ABC");
        s.endpoints = Endpoints {
            telegram: "http://127.0.0.1:9/".into(),
            ..Endpoints::default()
        };
        let req = request(s, Severity::Info);
        assert_eq!(req.url, "http://127.0.0.1:9/bot123:ABC/sendMessage");
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["chat_id"], "-100123");
        assert_eq!(body["message_thread_id"], "42");
        assert!(body["text"].as_str().unwrap().starts_with("*💫 "));
    }

    #[test]
    fn channel_and_token_are_required() {
        use super::super::Notifier;
        let err = Notifier::new(settings("", "123:ABC")).unwrap_err();
        assert_eq!(err.to_string(), "empty Telegram channel");
        let err = Notifier::new(settings("@flux", "")).unwrap_err();
        assert_eq!(err.to_string(), "empty Telegram token");
    }
}
