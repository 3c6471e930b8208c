//! dependsOn: every dependency must exist, be Ready at its current generation, and — when it uses the same
//! source — have applied the revision this Kustomization is about to apply.

use common::api::kustomize_v1::Kustomization;
use common::api::source_v1::Artifact;
use common::conditions::is_ready;
use kube::{Api, Client, ResourceExt};

/// Checks `obj`'s dependencies against the source `artifact` it is about to apply.
pub async fn check(
    client: &Client,
    obj: &Kustomization,
    artifact: &Artifact,
) -> Result<(), String> {
    let namespace = obj.namespace().unwrap_or_default();
    for dep_ref in obj.spec.depends_on() {
        let dep_ns = dep_ref.namespace_or(&namespace);
        let name = format!("{dep_ns}/{}", dep_ref.name);
        let api: Api<Kustomization> = Api::namespaced(client.clone(), dep_ns);
        let dep = match api.get_opt(&dep_ref.name).await {
            Ok(Some(d)) => d,
            Ok(None) => return Err(format!("dependency '{name}' not found")),
            Err(e) => return Err(format!("dependency '{name}' not found: {e}")),
        };
        let status = dep.status.clone().unwrap_or_default();
        if status.conditions().is_empty() || dep.metadata.generation != status.observed_generation {
            return Err(format!("dependency '{name}' is not ready"));
        }
        if !is_ready(status.conditions()) {
            return Err(format!("dependency '{name}' is not ready"));
        }
        let same_source = dep.spec.source_ref.name == obj.spec.source_ref.name
            && dep.spec.source_ref.kind == obj.spec.source_ref.kind
            && dep.spec.source_ref.namespace_or(dep_ns)
                == obj.spec.source_ref.namespace_or(&namespace);
        if same_source
            && !artifact.has_revision(status.last_applied_revision.as_deref().unwrap_or_default())
        {
            return Err(format!("dependency '{name}' revision is not up to date"));
        }
    }
    Ok(())
}
