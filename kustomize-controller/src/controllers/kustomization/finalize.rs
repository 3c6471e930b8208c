//! Deletion: what happens to the applied objects when the Kustomization goes away (`deletionPolicy`), before
//! the runner drops the finalizer. A suspended Kustomization never deletes anything.

use common::api::kustomize_v1::{DeletionPolicy, Kustomization};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::inventory::{ObjMeta, order};
use super::{KustomizationError, KustomizationReconciler, prune};

/// Flux's `finalizerShouldDeleteResources`.
pub fn should_delete(obj: &Kustomization) -> bool {
    !obj.spec.suspended()
        && obj
            .status
            .as_ref()
            .is_some_and(|s| !s.inventory_entries().is_empty())
        && obj.spec.deletes_on_removal()
}

/// Prunes the inventory according to `deletionPolicy`.
pub async fn finalize(
    r: &KustomizationReconciler,
    obj: &Kustomization,
) -> Result<(), KustomizationError> {
    if !should_delete(obj) {
        return Ok(());
    }
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    // When the account to impersonate is gone, the objects are left in place (as Flux does).
    if let Some(sa) = r.service_account(obj) {
        let api: Api<ServiceAccount> = Api::namespaced(r.client.clone(), &namespace);
        if let Ok(None) = api.get_opt(&sa).await {
            warn!(service_account = %sa, "skipping pruning, failed to find account to impersonate");
            return Ok(());
        }
    }
    let client = r.client_for(obj).await?;
    let mut objects: Vec<ObjMeta> = obj
        .status
        .as_ref()
        .map(|s| {
            s.inventory_entries()
                .iter()
                .filter_map(ObjMeta::from_ref)
                .collect()
        })
        .unwrap_or_default();
    objects.sort_by(|a, b| order(b, a));
    let deleted = prune::delete_all(&client, &r.resolver, &objects, &name, &namespace).await;
    if let Some(error) = deleted.error {
        return Err(KustomizationError::Prune(format!(
            "pruning for deleted resource failed: {error}"
        )));
    }
    info!(changes = %super::inventory::format_changes(&deleted.changes), "garbage collection for deleted resource completed");
    if obj.spec.deletion_policy() == DeletionPolicy::WaitForTermination
        && let Err(e) = prune::wait_for_termination(
            &client,
            &r.resolver,
            &deleted.changes,
            KustomizationReconciler::timeout(obj),
        )
        .await
    {
        warn!(error = %e, "failed to wait for resources termination");
    }
    Ok(())
}
