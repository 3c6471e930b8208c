//! Matrix: an `m.room.message` text event PUT into the room (`spec.channel`) on the homeserver (`address`),
//! authorised with the secret's access token. The transaction id is the SHA-1 of the event JSON, so a retried
//! request is not posted twice.
//!
//! Like Flux, a proxy is not used for Matrix; `certSecretRef` is.

use common::events::{FluxEvent, Severity};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use super::NotifierError;
use super::generic::GoEvent;

/// The transaction id of `event`: hex SHA-1 of the event as Flux marshals it.
pub fn transaction_id(event: &FluxEvent) -> Result<String, NotifierError> {
    let json = serde_json::to_vec(&GoEvent::from(event))
        .map_err(|e| NotifierError::Config(format!("unable to generate unique tx id: {e}")))?;
    Ok(hex::encode(Sha1::digest(&json)))
}

/// `<homeserver>/_matrix/client/r0/rooms/<room>/send/m.room.message/<txn>`.
pub fn send_url(homeserver: &url::Url, room: &str, txn: &str) -> String {
    let mut url = homeserver.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend([
            "_matrix",
            "client",
            "r0",
            "rooms",
            room,
            "send",
            "m.room.message",
            txn,
        ]);
    }
    url.to_string()
}

/// Flux's `MatrixPayload`: the message as plain text.
pub fn payload(event: &FluxEvent) -> Value {
    let emoji = if event.severity == Severity::Error {
        "🚨"
    } else {
        "💫"
    };
    let metadata: String = event
        .metadata
        .iter()
        .map(|(k, v)| format!("- {k}: {v}\n"))
        .collect();
    json!({
        "body": format!("{emoji} {}\n{}\n{metadata}", super::object_name(event), event.message),
        "msgtype": "m.text",
    })
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{assert_golden, event, request};
    use super::super::{Notifier, ProviderSettings};
    use common::events::Severity;

    fn settings(address: &str) -> ProviderSettings {
        ProviderSettings {
            type_: "matrix".into(),
            address: address.into(),
            channel: "!jezptmDwEeLapMLjOc:matrix.org".into(),
            token: "syt_secret".into(),
            http: super::super::HttpSettings {
                proxy: Some("http://proxy.example.com:3128".into()),
                tls: None,
            },
            ..Default::default()
        }
    }

    #[test]
    fn matrix_golden() {
        let req = request(settings("https://matrix.example.org"), Severity::Error);
        let txn = super::transaction_id(&event(Severity::Error)).unwrap();
        assert_eq!(txn.len(), 40);
        assert_eq!(
            req.url,
            format!(
                "https://matrix.example.org/_matrix/client/r0/rooms/!jezptmDwEeLapMLjOc:matrix.org/send/m.room.message/{txn}"
            )
        );
        assert_eq!(req.method, http::Method::PUT);
        assert_eq!(
            req.headers,
            vec![("Authorization".to_owned(), "Bearer syt_secret".to_owned())]
        );
        assert_golden(
            &req.body,
            r#"{
              "body": "🚨 kustomization/podinfo.flux-system\nDeployment/default/podinfo configured\nService/default/podinfo unchanged\n- revision: main@sha1:0123456789abcdef0123456789abcdef01234567\n- summary: Cluster: prod\n",
              "msgtype": "m.text"
            }"#,
        );
    }

    #[test]
    fn txn_id_is_stable_per_event_and_the_proxy_is_not_used() {
        let info = super::transaction_id(&event(Severity::Info)).unwrap();
        assert_eq!(info, super::transaction_id(&event(Severity::Info)).unwrap());
        assert_ne!(
            info,
            super::transaction_id(&event(Severity::Error)).unwrap()
        );
        // A homeserver behind a path prefix, with a trailing slash.
        let req = request(settings("https://example.org/matrix/"), Severity::Info);
        assert!(
            req.url
                .starts_with("https://example.org/matrix/_matrix/client/r0/rooms/"),
            "{}",
            req.url
        );
        let n = Notifier::new(settings("https://example.org")).unwrap();
        assert!(
            n.http().proxy.is_none(),
            "Flux's Matrix notifier has no proxy"
        );
    }
}
