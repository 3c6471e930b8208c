//! Garbage collection: deletes objects that left the inventory, but only those still carrying this
//! Kustomization's owner labels and not opted out (`prune: disabled`, `reconcile: disabled`, `ssa: Ignore`).

use common::api::meta::annotations::{
    DISABLED_VALUE, IGNORE_VALUE, KUSTOMIZE_PRUNE, KUSTOMIZE_RECONCILE, KUSTOMIZE_SSA,
};
use common::api::meta::labels::{KUSTOMIZE_NAME, KUSTOMIZE_NAMESPACE};
use kube::Client;
use kube::api::{DeleteParams, PropagationPolicy};
use serde_json::Value;

use super::discovery::{Resolver, api_message, is_not_found};
use super::inventory::{Action, Change, ObjMeta};

/// The outcome of deleting a set of objects.
#[derive(Debug, Default)]
pub struct Deleted {
    pub changes: Vec<Change>,
    /// Objects whose deletion was not confirmed: they stay in the inventory.
    pub survivors: Vec<ObjMeta>,
    /// `delete failed, errors: ...` when some deletes failed.
    pub error: Option<String>,
}

fn excluded(obj: &Value) -> bool {
    [
        (KUSTOMIZE_PRUNE, DISABLED_VALUE),
        (KUSTOMIZE_RECONCILE, DISABLED_VALUE),
        (KUSTOMIZE_SSA, IGNORE_VALUE),
    ]
    .iter()
    .any(|(k, v)| {
        obj["metadata"]["annotations"][k].as_str() == Some(v)
            || obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

/// Deletes `objects` (already in reverse apply order) owned by Kustomization `namespace/name`.
pub async fn delete_all(
    client: &Client,
    resolver: &Resolver,
    objects: &[ObjMeta],
    name: &str,
    namespace: &str,
) -> Deleted {
    let mut out = Deleted::default();
    let mut errors = String::new();
    for object in objects {
        let action = delete_one(client, resolver, object, name, namespace).await;
        let action = match action {
            Ok(a) => a,
            Err(e) => {
                errors.push_str(&e);
                errors.push(';');
                Action::Unknown
            }
        };
        if !matches!(action, Action::Deleted | Action::Skipped) {
            out.survivors.push(object.clone());
        }
        out.changes.push(Change {
            object: object.clone(),
            action,
        });
    }
    if !errors.is_empty() {
        out.error = Some(format!("delete failed, errors: {errors}"));
    }
    out
}

async fn delete_one(
    client: &Client,
    resolver: &Resolver,
    object: &ObjMeta,
    name: &str,
    namespace: &str,
) -> Result<Action, String> {
    let resolved = match resolver.resolve_meta(client, object).await {
        Ok(r) => r,
        // The kind is no longer served (its CRD is gone): nothing left to delete.
        Err(e) if is_not_found(&e) => return Ok(Action::Deleted),
        Err(e) => return Err(format!("{object} query failed: {}", api_message(&e))),
    };
    let api = resolved.api(client.clone(), &object.namespace);
    let existing = match api.get_opt(&object.name).await {
        Ok(Some(o)) => serde_json::to_value(&o).unwrap_or_default(),
        Ok(None) => return Ok(Action::Deleted),
        Err(e) => return Err(format!("{object} query failed: {}", api_message(&e))),
    };
    let labels = &existing["metadata"]["labels"];
    if labels[KUSTOMIZE_NAME].as_str() != Some(name)
        || labels[KUSTOMIZE_NAMESPACE].as_str() != Some(namespace)
        || excluded(&existing)
    {
        return Ok(Action::Skipped);
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(&object.name, &dp).await {
        Ok(_) => Ok(Action::Deleted),
        Err(e) if is_not_found(&e) => Ok(Action::Deleted),
        Err(e) => Err(format!("{object} delete failed: {}", api_message(&e))),
    }
}

/// Polls until every deleted object is gone or `timeout` passes.
pub async fn wait_for_termination(
    client: &Client,
    resolver: &Resolver,
    changes: &[Change],
    timeout: std::time::Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    for change in changes.iter().filter(|c| c.action == Action::Deleted) {
        let Ok(resolved) = resolver.resolve_meta(client, &change.object).await else {
            continue;
        };
        let api = resolved.api(client.clone(), &change.object.namespace);
        loop {
            match api.get_opt(&change.object.name).await {
                Ok(None) => break,
                Err(e) if is_not_found(&e) => break,
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(format!("{} termination timeout", change.object));
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}
