//! Lark (Feishu): an interactive card to a custom bot's webhook, the message in bold and the metadata below.
//!
//! Like Flux, neither a proxy nor `certSecretRef` is used for Lark.

use common::events::{FluxEvent, Severity};
use serde_json::{Value, json};

/// Flux's `LarkPayload`.
pub fn payload(event: &FluxEvent) -> Value {
    let (emoji, color) = if event.severity == Severity::Error {
        ("🚨", "red")
    } else {
        ("💫", "turquoise")
    };
    let mut message = format!("**{}**\n\n", event.message);
    for (k, v) in &event.metadata {
        message.push_str(&format!("{k}: {v}\n"));
    }
    json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {
                "title": {"tag": "plain_text", "content": format!("{emoji} {}", super::object_name(event))},
                "template": color,
            },
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": message}}],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{assert_golden, request};
    use super::super::{HttpSettings, Notifier, ProviderSettings, TlsMaterial};
    use common::events::Severity;

    fn settings() -> ProviderSettings {
        ProviderSettings {
            type_: "lark".into(),
            address: "https://open.larksuite.com/open-apis/bot/v2/hook/xxxx".into(),
            http: HttpSettings {
                proxy: Some("http://proxy.example.com:3128".into()),
                tls: Some(TlsMaterial::default()),
            },
            ..Default::default()
        }
    }

    #[test]
    fn lark_golden() {
        let req = request(settings(), Severity::Info);
        assert_eq!(
            req.url,
            "https://open.larksuite.com/open-apis/bot/v2/hook/xxxx"
        );
        assert_golden(
            &req.body,
            r#"{
              "msg_type": "interactive",
              "card": {
                "config": {"wide_screen_mode": true},
                "header": {
                  "title": {"tag": "plain_text", "content": "💫 kustomization/podinfo.flux-system"},
                  "template": "turquoise"
                },
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "**Deployment/default/podinfo configured\nService/default/podinfo unchanged**\n\nrevision: main@sha1:0123456789abcdef0123456789abcdef01234567\nsummary: Cluster: prod\n"}}]
              }
            }"#,
        );
    }

    #[test]
    fn no_proxy_no_tls_as_flux() {
        let n = Notifier::new(settings()).unwrap();
        assert!(n.http().is_default());
    }
}
