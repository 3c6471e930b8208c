//! Slack and the Slack-compatible payloads (Discord's `/slack` endpoint, Rocket.Chat, Mattermost).

use common::events::{FluxEvent, Severity};
use serde::Serialize;

use super::object_name;

/// Flux's `SlackPayload`.
#[derive(Debug, Serialize, PartialEq)]
pub struct SlackPayload {
    channel: String,
    username: String,
    icon_url: String,
    icon_emoji: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<SlackAttachment>,
}

#[derive(Debug, Serialize, PartialEq)]
struct SlackAttachment {
    fallback: String,
    color: String,
    author_name: String,
    text: String,
    mrkdwn_in: Vec<String>,
    fields: Vec<SlackField>,
}

#[derive(Debug, Serialize, PartialEq)]
struct SlackField {
    title: String,
    value: String,
    short: bool,
}

fn attachment(event: &FluxEvent, color: &str, fallback: bool) -> SlackAttachment {
    let author = object_name(event);
    let first_line = event.message.split('\n').next().unwrap_or_default();
    SlackAttachment {
        fallback: if fallback {
            format!("{author}: {first_line}")
        } else {
            String::new()
        },
        color: color.to_owned(),
        author_name: author,
        text: event.message.clone(),
        mrkdwn_in: vec!["text".to_owned()],
        // Metadata in key order (Flux's map order is random).
        fields: event
            .metadata
            .iter()
            .map(|(k, v)| SlackField {
                title: k.clone(),
                value: v.clone(),
                short: false,
            })
            .collect(),
    }
}

fn good_or_danger(event: &FluxEvent) -> &'static str {
    if event.severity == Severity::Error {
        "danger"
    } else {
        "good"
    }
}

/// Slack (incoming webhook or `chat.postMessage`) and Mattermost.
pub fn slack_payload(event: &FluxEvent, username: &str, channel: &str) -> SlackPayload {
    SlackPayload {
        channel: channel.to_owned(),
        username: if username.is_empty() {
            event.reporting_controller.clone()
        } else {
            username.to_owned()
        },
        icon_url: String::new(),
        icon_emoji: String::new(),
        text: String::new(),
        attachments: vec![attachment(event, good_or_danger(event), true)],
    }
}

/// Discord's Slack-compatible endpoint: no channel, no fallback.
pub fn discord_payload(event: &FluxEvent, username: &str) -> SlackPayload {
    SlackPayload {
        channel: String::new(),
        username: if username.is_empty() {
            event.reporting_controller.clone()
        } else {
            username.to_owned()
        },
        icon_url: String::new(),
        icon_emoji: String::new(),
        text: String::new(),
        attachments: vec![attachment(event, good_or_danger(event), false)],
    }
}

/// Rocket.Chat: its own colours, the username as given.
pub fn rocket_payload(event: &FluxEvent, username: &str, channel: &str) -> SlackPayload {
    let color = if event.severity == Severity::Error {
        "#FF0000"
    } else {
        "#0076D7"
    };
    SlackPayload {
        channel: channel.to_owned(),
        username: username.to_owned(),
        icon_url: String::new(),
        icon_emoji: String::new(),
        text: String::new(),
        attachments: vec![attachment(event, color, false)],
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{assert_golden, event};
    use super::super::{Notifier, ProviderSettings, ResponseCheck};
    use common::events::Severity;

    fn settings(address: &str) -> ProviderSettings {
        ProviderSettings {
            type_: "slack".into(),
            address: address.into(),
            ..Default::default()
        }
    }

    fn request(settings: ProviderSettings, severity: Severity) -> super::super::Request {
        match Notifier::new(settings).unwrap() {
            Notifier::Webhook(b) => b.requests(&event(severity)).unwrap().remove(0),
            Notifier::CommitStatus(_) => panic!("not a webhook"),
        }
    }

    #[test]
    fn slack_incoming_webhook_golden() {
        let req = request(
            settings("https://hooks.slack.com/services/T0/B0/XXXX"),
            Severity::Info,
        );
        assert_eq!(req.url, "https://hooks.slack.com/services/T0/B0/XXXX");
        assert!(req.headers.is_empty(), "no token, no Authorization");
        assert_eq!(req.check, ResponseCheck::Status);
        assert_golden(
            &req.body,
            r#"{
              "channel": "",
              "username": "kustomize-controller",
              "icon_url": "",
              "icon_emoji": "",
              "attachments": [{
                "fallback": "kustomization/podinfo.flux-system: Deployment/default/podinfo configured",
                "color": "good",
                "author_name": "kustomization/podinfo.flux-system",
                "text": "Deployment/default/podinfo configured\nService/default/podinfo unchanged",
                "mrkdwn_in": ["text"],
                "fields": [
                  {"title": "revision", "value": "main@sha1:0123456789abcdef0123456789abcdef01234567", "short": false},
                  {"title": "summary", "value": "Cluster: prod", "short": false}
                ]
              }]
            }"#,
        );
    }

    #[test]
    fn slack_bot_token_golden() {
        let mut s = settings("https://slack.com/api/chat.postMessage");
        s.token = "xoxb-secret".into();
        s.channel = "general".into();
        s.username = "flux".into();
        let req = request(s, Severity::Error);
        assert_eq!(
            req.headers,
            vec![("Authorization".to_owned(), "Bearer xoxb-secret".to_owned())]
        );
        assert_eq!(req.check, ResponseCheck::SlackApi);
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["channel"], "general");
        assert_eq!(body["username"], "flux");
        assert_eq!(body["attachments"][0]["color"], "danger");
        assert!(!String::from_utf8_lossy(&req.body).contains("xoxb"));
    }

    #[test]
    fn discord_golden() {
        let mut s = settings("https://discord.com/api/webhooks/1/abc");
        s.type_ = "discord".into();
        s.channel = "ignored".into();
        let req = request(s, Severity::Error);
        assert_eq!(req.url, "https://discord.com/api/webhooks/1/abc/slack");
        assert_golden(
            &req.body,
            r#"{
              "channel": "",
              "username": "kustomize-controller",
              "icon_url": "",
              "icon_emoji": "",
              "attachments": [{
                "fallback": "",
                "color": "danger",
                "author_name": "kustomization/podinfo.flux-system",
                "text": "Deployment/default/podinfo configured\nService/default/podinfo unchanged",
                "mrkdwn_in": ["text"],
                "fields": [
                  {"title": "revision", "value": "main@sha1:0123456789abcdef0123456789abcdef01234567", "short": false},
                  {"title": "summary", "value": "Cluster: prod", "short": false}
                ]
              }]
            }"#,
        );
        // An address that already ends in /slack is kept.
        let mut s = settings("https://discord.com/api/webhooks/1/abc/slack");
        s.type_ = "discord".into();
        assert_eq!(
            request(s, Severity::Info).url,
            "https://discord.com/api/webhooks/1/abc/slack"
        );
    }

    #[test]
    fn rocket_golden() {
        let mut s = settings("https://rocket.example.com/hooks/abc");
        s.type_ = "rocket".into();
        s.channel = "ops".into();
        let req = request(s, Severity::Info);
        assert_golden(
            &req.body,
            r##"{
              "channel": "ops",
              "username": "",
              "icon_url": "",
              "icon_emoji": "",
              "attachments": [{
                "fallback": "",
                "color": "#0076D7",
                "author_name": "kustomization/podinfo.flux-system",
                "text": "Deployment/default/podinfo configured\nService/default/podinfo unchanged",
                "mrkdwn_in": ["text"],
                "fields": [
                  {"title": "revision", "value": "main@sha1:0123456789abcdef0123456789abcdef01234567", "short": false},
                  {"title": "summary", "value": "Cluster: prod", "short": false}
                ]
              }]
            }"##,
        );
    }

    #[test]
    fn invalid_address_is_refused_without_echoing_it() {
        let err = Notifier::new(settings("not a url/with-secret-token")).unwrap_err();
        assert!(!err.to_string().contains("secret-token"), "{err}");
    }
}
