//! Datadog: an event on the v1 Events API (`POST <site>/api/v1/events`, `DD-API-KEY`), tagged with the
//! controller, reason, object and metadata, all lower-cased as Datadog stores tags.
//!
//! As with Flux's Datadog client, only the scheme and host of `address` are used (none: `https://api.datadoghq.com`)
//! and a failed request is not retried (the Events API does not deduplicate).

use common::events::{FluxEvent, Severity};
use serde_json::{Value, json};

use super::{NotifierError, unix_seconds};

/// The default site, when `address` has no host.
pub const DEFAULT_API: &str = "https://api.datadoghq.com";

/// `scheme://host[:port]` of `address`, or [`DEFAULT_API`] when it has no host.
pub fn api_base(address: &str) -> Result<String, NotifierError> {
    let address = address.trim();
    if address.is_empty() {
        return Ok(DEFAULT_API.to_owned());
    }
    match url::Url::parse(address) {
        Ok(url) if url.has_host() => {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(NotifierError::Config(
                    "invalid datadog URL: scheme must be http or https".into(),
                ));
            }
            let host = url.host_str().unwrap_or_default();
            Ok(match url.port() {
                Some(port) => format!("{}://{host}:{port}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            })
        }
        Ok(_) | Err(url::ParseError::RelativeUrlWithoutBase) => Ok(DEFAULT_API.to_owned()),
        Err(e) => Err(NotifierError::Config(format!(
            "failed to parse datadog address: {e}"
        ))),
    }
}

/// Flux's `EventCreateRequest`.
pub fn payload(event: &FluxEvent) -> Value {
    let o = &event.involved_object;
    let kind = o.kind.as_deref().unwrap_or_default();
    let name = o.name.as_deref().unwrap_or_default();
    let namespace = o.namespace.as_deref().unwrap_or_default();
    let mut tags = vec![
        format!("flux_reporting_controller:{}", event.reporting_controller),
        format!("flux_reason:{}", event.reason),
        format!("kube_kind:{kind}"),
        format!("kube_name:{name}"),
        format!("kube_namespace:{namespace}"),
    ];
    tags.extend(event.metadata.iter().map(|(k, v)| format!("{k}:{v}")));
    let tags: Vec<String> = tags.iter().map(|t| t.to_lowercase()).collect();
    json!({
        "alert_type": if event.severity == Severity::Error { "error" } else { "info" },
        "date_happened": unix_seconds(event),
        "source_type_name": "fluxcd",
        "tags": tags,
        "text": event.message,
        "title": format!("Events from the {kind} {name}/{namespace}"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{assert_golden, request};
    use super::super::{Notifier, ProviderSettings};
    use common::events::Severity;

    fn settings(address: &str) -> ProviderSettings {
        ProviderSettings {
            type_: "datadog".into(),
            address: address.into(),
            token: "dd-api-key".into(),
            ..Default::default()
        }
    }

    #[test]
    fn datadog_golden() {
        let req = request(
            settings("https://api.datadoghq.eu/some/path"),
            Severity::Error,
        );
        assert_eq!(req.url, "https://api.datadoghq.eu/api/v1/events");
        assert_eq!(
            req.headers,
            vec![
                ("Accept".to_owned(), "application/json".to_owned()),
                ("DD-API-KEY".to_owned(), "dd-api-key".to_owned()),
            ]
        );
        assert_golden(
            &req.body,
            r#"{
              "alert_type": "error",
              "date_happened": 1795269600,
              "source_type_name": "fluxcd",
              "tags": [
                "flux_reporting_controller:kustomize-controller",
                "flux_reason:reconciliationsucceeded",
                "kube_kind:kustomization",
                "kube_name:podinfo",
                "kube_namespace:flux-system",
                "revision:main@sha1:0123456789abcdef0123456789abcdef01234567",
                "summary:cluster: prod"
              ],
              "text": "Deployment/default/podinfo configured\nService/default/podinfo unchanged",
              "title": "Events from the Kustomization podinfo/flux-system"
            }"#,
        );
    }

    #[test]
    fn site_from_the_address() {
        assert_eq!(super::api_base("").unwrap(), super::DEFAULT_API);
        assert_eq!(
            super::api_base("api.datadoghq.eu").unwrap(),
            super::DEFAULT_API
        );
        assert_eq!(
            super::api_base("http://127.0.0.1:8125").unwrap(),
            "http://127.0.0.1:8125"
        );
        let req = request(settings(""), Severity::Info);
        assert_eq!(req.url, "https://api.datadoghq.com/api/v1/events");
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["alert_type"], "info");
        let mut s = settings("https://api.datadoghq.com");
        s.token.clear();
        assert_eq!(
            Notifier::new(s).unwrap_err().to_string(),
            "token cannot be empty"
        );
    }
}
