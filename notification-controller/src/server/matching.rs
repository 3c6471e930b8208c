//! Which Alerts an event goes to, and what it looks like when it gets there: Flux's rules, as pure functions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use common::api::notification_v1beta3::{Alert, EventSeverity};
use common::events::{FluxEvent, META_COMMIT_KEY, META_COMMIT_STATUS_KEY, Severity};
use kube::ResourceExt;
use regex::Regex;

use super::events::{EVENT_GROUP, object_group};

/// Whether the event matches one of the Alert's sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceMatch {
    /// No source matches.
    No,
    /// A source without `matchLabels` matches.
    Yes,
    /// Sources match by kind, namespace and `*`; their `matchLabels` must be checked on the object.
    NeedsLabels(Vec<BTreeMap<String, String>>),
}

/// Kind, namespace (default: the Alert's), name or `*`, and severity: Flux's `eventMatchesAlertSource`.
pub fn match_sources(event: &FluxEvent, alert: &Alert) -> SourceMatch {
    let o = &event.involved_object;
    let alert_ns = alert.namespace().unwrap_or_default();
    let severity_ok = match alert.spec.event_severity {
        EventSeverity::Info => true,
        EventSeverity::Error => event.severity == Severity::Error,
    };
    if !severity_ok {
        return SourceMatch::No;
    }
    let mut selectors = Vec::new();
    for source in &alert.spec.event_sources {
        let namespace = source
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(&alert_ns);
        if o.namespace.as_deref().unwrap_or_default() != namespace
            || o.kind.as_deref().unwrap_or_default() != source.kind
        {
            continue;
        }
        if source.name != "*" && Some(source.name.as_str()) != o.name.as_deref() {
            continue;
        }
        match &source.match_labels {
            None => return SourceMatch::Yes,
            Some(labels) => selectors.push(labels.clone()),
        }
    }
    if selectors.is_empty() {
        SourceMatch::No
    } else {
        SourceMatch::NeedsLabels(selectors)
    }
}

/// Whether `labels` carry every pair of `selector`.
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Compiled inclusion/exclusion patterns, shared across events (patterns come from Alerts).
#[derive(Debug, Default)]
pub struct RegexCache {
    compiled: Mutex<HashMap<String, Result<Arc<Regex>, String>>>,
}

impl RegexCache {
    fn get(&self, pattern: &str) -> Result<Arc<Regex>, String> {
        let mut map = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = map.get(pattern) {
            return found.clone();
        }
        if map.len() > 4096 {
            map.clear();
        }
        let compiled = Regex::new(pattern).map(Arc::new).map_err(|e| e.to_string());
        map.insert(pattern.to_owned(), compiled.clone());
        compiled
    }
}

/// A pattern that does not compile: reported on the Alert as an `InvalidConfig` Warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPattern {
    /// `inclusion` or `exclusion`.
    pub list: &'static str,
    /// The pattern.
    pub pattern: String,
}

impl InvalidPattern {
    /// Flux's event message.
    pub fn message(&self) -> String {
        format!("failed to compile {} regex: {}", self.list, self.pattern)
    }
}

/// Whether the message passes the inclusion list (any match, or an empty list) and not the exclusion list.
pub fn message_allowed(
    alert: &Alert,
    message: &str,
    cache: &RegexCache,
    invalid: &mut Vec<InvalidPattern>,
) -> bool {
    let mut check = |list: &'static str, patterns: &Option<Vec<String>>| -> Option<bool> {
        let patterns = patterns.as_deref().filter(|p| !p.is_empty())?;
        let mut matched = false;
        for pattern in patterns {
            match cache.get(pattern) {
                Ok(re) => {
                    if re.is_match(message) {
                        matched = true;
                        break;
                    }
                }
                Err(_) => invalid.push(InvalidPattern {
                    list,
                    pattern: pattern.clone(),
                }),
            }
        }
        Some(matched)
    };
    let included = check("inclusion", &alert.spec.inclusion_list).unwrap_or(true);
    if !included {
        return false;
    }
    let excluded = check("exclusion", &alert.spec.exclusion_list).unwrap_or(false);
    !excluded
}

/// A key set by more than one source (reported as a `MetadataAppendFailed` Warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConflict {
    /// The key.
    pub key: String,
    /// Where it came from, lowest precedence first.
    pub sources: Vec<&'static str>,
}

/// The notification's metadata, in Flux's precedence (RFC 0008), lowest first: event-group keys (object
/// annotations) without prefix, the Alert's `eventMetadata`, its `summary`, then the object-group keys
/// (controller metadata) without prefix.
pub fn combine_metadata(
    event: &FluxEvent,
    alert: &Alert,
) -> (BTreeMap<String, String>, Vec<MetadataConflict>) {
    let mut metadata = BTreeMap::new();
    let mut sources: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let mut put = |key: &str, value: &str, source: &'static str| {
        metadata.insert(key.to_owned(), value.to_owned());
        sources.entry(key.to_owned()).or_default().push(source);
    };
    let event_prefix = format!("{EVENT_GROUP}/");
    for (k, v) in &event.metadata {
        if let Some(key) = k.strip_prefix(&event_prefix) {
            put(key, v, "involved object annotations");
        }
    }
    for (k, v) in alert.spec.event_metadata.iter().flatten() {
        put(k, v, "Alert object .spec.eventMetadata");
    }
    if let Some(summary) = alert.spec.summary.as_deref().filter(|s| !s.is_empty()) {
        put("summary", summary, "Alert object .spec.summary");
    }
    let object_prefix = format!("{}/", object_group(event));
    for (k, v) in &event.metadata {
        if let Some(key) = k.strip_prefix(&object_prefix) {
            put(key, v, "involved object controller metadata");
        }
    }
    let conflicts = sources
        .into_iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(key, sources)| MetadataConflict { key, sources })
        .collect();
    (metadata, conflicts)
}

/// Git forges that take commit statuses.
pub fn is_commit_status_provider(type_: &str) -> bool {
    common::api::notification_v1beta3::COMMIT_STATUS_PROVIDER_TYPES.contains(&type_)
}

/// `generic` and `generic-hmac`, which forward everything.
pub fn is_generic_provider(type_: &str) -> bool {
    matches!(type_, "generic" | "generic-hmac")
}

/// The event asks for a commit status update (`<group>/commit_status: update`).
pub fn is_commit_status_update(event: &FluxEvent) -> bool {
    let key = format!("{}/{META_COMMIT_STATUS_KEY}", object_group(event));
    event.metadata.get(&key).map(String::as_str)
        == Some(common::events::META_COMMIT_STATUS_UPDATE_VALUE)
}

/// The event carries `event.toolkit.fluxcd.io/commit`.
pub fn has_commit_key(event: &FluxEvent) -> bool {
    event
        .metadata
        .get(&format!("{EVENT_GROUP}/{META_COMMIT_KEY}"))
        .is_some_and(|v| !v.is_empty())
}

/// What to do with an event for a Provider type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Send it.
    Send,
    /// A commit status update: never for chat providers.
    SkipCommitStatusUpdate,
    /// A commit status provider, but the event has no commit and is not a failure.
    DropMissingCommit,
}

/// Flux's routing between chat, generic and commit status providers.
pub fn route(event: &FluxEvent, provider_type: &str) -> Route {
    let commit_provider = is_commit_status_provider(provider_type);
    if !commit_provider && !is_generic_provider(provider_type) && is_commit_status_update(event) {
        return Route::SkipCommitStatusUpdate;
    }
    if commit_provider
        && !has_commit_key(event)
        && !is_commit_status_update(event)
        && event.severity != Severity::Error
    {
        return Route::DropMissingCommit;
    }
    Route::Send
}

#[cfg(test)]
mod tests {
    use common::api::meta::LocalObjectReference;
    use common::api::notification_v1beta3::{AlertSpec, CrossNamespaceObjectReference};
    use k8s_openapi::api::core::v1::ObjectReference;

    use super::*;

    fn event(kind: &str, name: &str, ns: &str, severity: Severity) -> FluxEvent {
        FluxEvent {
            involved_object: ObjectReference {
                api_version: Some("kustomize.toolkit.fluxcd.io/v1".into()),
                kind: Some(kind.into()),
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            severity,
            timestamp: "2026-11-21T14:00:00Z".into(),
            message: "applied revision main@sha1:abc".into(),
            reason: "ReconciliationSucceeded".into(),
            metadata: BTreeMap::new(),
            reporting_controller: "kustomize-controller".into(),
            reporting_instance: String::new(),
        }
    }

    fn source(kind: &str, name: &str, ns: Option<&str>) -> CrossNamespaceObjectReference {
        CrossNamespaceObjectReference {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(Into::into),
            ..Default::default()
        }
    }

    fn alert(sources: Vec<CrossNamespaceObjectReference>) -> Alert {
        let mut a = Alert::new(
            "on-call",
            AlertSpec {
                event_sources: sources,
                provider_ref: LocalObjectReference {
                    name: "slack".into(),
                },
                ..Default::default()
            },
        );
        a.metadata.namespace = Some("flux-system".into());
        a
    }

    #[test]
    fn sources_by_kind_name_wildcard_and_namespace() {
        let e = event("Kustomization", "apps", "flux-system", Severity::Info);
        assert_eq!(
            match_sources(&e, &alert(vec![source("Kustomization", "apps", None)])),
            SourceMatch::Yes
        );
        assert_eq!(
            match_sources(&e, &alert(vec![source("Kustomization", "*", None)])),
            SourceMatch::Yes
        );
        assert_eq!(
            match_sources(&e, &alert(vec![source("Kustomization", "infra", None)])),
            SourceMatch::No
        );
        assert_eq!(
            match_sources(&e, &alert(vec![source("GitRepository", "*", None)])),
            SourceMatch::No
        );
        assert_eq!(
            match_sources(&e, &alert(vec![source("Kustomization", "*", Some("apps"))])),
            SourceMatch::No,
            "another namespace"
        );
        let other_ns = event("Kustomization", "apps", "team-a", Severity::Info);
        assert_eq!(
            match_sources(
                &other_ns,
                &alert(vec![source("Kustomization", "*", Some("team-a"))])
            ),
            SourceMatch::Yes
        );
        let mut labelled = source("Kustomization", "*", None);
        labelled.match_labels = Some(BTreeMap::from([("team".into(), "a".into())]));
        let SourceMatch::NeedsLabels(selectors) = match_sources(&e, &alert(vec![labelled])) else {
            panic!("labels must be checked")
        };
        assert!(labels_match(
            &selectors[0],
            &BTreeMap::from([("team".into(), "a".into()), ("x".into(), "y".into())])
        ));
        assert!(!labels_match(&selectors[0], &BTreeMap::new()));
    }

    #[test]
    fn error_alerts_only_get_errors() {
        let mut a = alert(vec![source("Kustomization", "*", None)]);
        a.spec.event_severity = EventSeverity::Error;
        let info = event("Kustomization", "apps", "flux-system", Severity::Info);
        let error = event("Kustomization", "apps", "flux-system", Severity::Error);
        assert_eq!(match_sources(&info, &a), SourceMatch::No);
        assert_eq!(match_sources(&error, &a), SourceMatch::Yes);
        a.spec.event_severity = EventSeverity::Info;
        assert_eq!(
            match_sources(&error, &a),
            SourceMatch::Yes,
            "info takes all"
        );
    }

    #[test]
    fn inclusion_and_exclusion_lists() {
        let cache = RegexCache::default();
        let mut a = alert(vec![]);
        let mut invalid = Vec::new();
        assert!(message_allowed(&a, "anything", &cache, &mut invalid));
        a.spec.inclusion_list = Some(vec![".*succeeded.*".into(), "^applied".into()]);
        a.spec.exclusion_list = Some(vec!["main@sha1:skip".into()]);
        assert!(message_allowed(
            &a,
            "applied revision main@sha1:abc",
            &cache,
            &mut invalid
        ));
        assert!(!message_allowed(
            &a,
            "health check failed",
            &cache,
            &mut invalid
        ));
        assert!(!message_allowed(
            &a,
            "applied main@sha1:skip",
            &cache,
            &mut invalid
        ));
        assert!(invalid.is_empty());
        a.spec.exclusion_list = Some(vec!["([".into()]);
        assert!(message_allowed(&a, "applied x", &cache, &mut invalid));
        assert_eq!(
            invalid[0].message(),
            "failed to compile exclusion regex: (["
        );
    }

    #[test]
    fn metadata_precedence_and_conflicts() {
        let mut e = event("Kustomization", "apps", "flux-system", Severity::Info);
        e.metadata = BTreeMap::from([
            (
                "event.toolkit.fluxcd.io/env".into(),
                "from-annotation".into(),
            ),
            (
                "event.toolkit.fluxcd.io/summary".into(),
                "annotation summary".into(),
            ),
            (
                "kustomize.toolkit.fluxcd.io/revision".into(),
                "main@sha1:abc".into(),
            ),
            (
                "kustomize.toolkit.fluxcd.io/env".into(),
                "from-controller".into(),
            ),
        ]);
        let mut a = alert(vec![]);
        a.spec.event_metadata = Some(BTreeMap::from([
            ("cluster".into(), "prod".into()),
            ("env".into(), "from-alert".into()),
        ]));
        a.spec.summary = Some("alert summary".into());
        let (metadata, conflicts) = combine_metadata(&e, &a);
        assert_eq!(
            metadata,
            BTreeMap::from([
                ("cluster".into(), "prod".into()),
                ("env".into(), "from-controller".into()),
                ("revision".into(), "main@sha1:abc".into()),
                ("summary".into(), "alert summary".into()),
            ])
        );
        let keys: Vec<_> = conflicts.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["env", "summary"]);
        assert_eq!(conflicts[0].sources.len(), 3);
    }

    #[test]
    fn commit_status_routing() {
        let mut e = event("Kustomization", "apps", "flux-system", Severity::Info);
        assert_eq!(route(&e, "slack"), Route::Send);
        assert_eq!(route(&e, "github"), Route::DropMissingCommit);
        e.metadata.insert(
            "kustomize.toolkit.fluxcd.io/commit_status".into(),
            "update".into(),
        );
        assert_eq!(route(&e, "slack"), Route::SkipCommitStatusUpdate);
        assert_eq!(route(&e, "generic"), Route::Send);
        assert_eq!(route(&e, "github"), Route::Send);
        let failure = event("Kustomization", "apps", "flux-system", Severity::Error);
        assert_eq!(route(&failure, "gitlab"), Route::Send);
    }
}
