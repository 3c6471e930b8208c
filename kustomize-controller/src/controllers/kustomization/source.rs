//! The source: the referenced GitRepository/OCIRepository/Bucket/ExternalArtifact and its artifact, read
//! through the API like any consumer of the source-controller.

use common::api::kustomize_v1::{CrossNamespaceSourceReference, SourceKind};
use common::api::source_v1::{Artifact, GROUP};
use kube::Client;
use kube::api::{ApiResource, DynamicObject};

/// Why the source could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("can't access '{0}', cross-namespace references have been blocked")]
    AccessDenied(String),
    #[error("Source '{0}' not found")]
    NotFound(String),
    #[error("unable to get source '{name}': {message}")]
    Get { name: String, message: String },
    #[error("Source artifact not found, retrying in {0}")]
    NoArtifact(String),
}

/// The API resource of a source kind.
pub fn api_resource(kind: SourceKind) -> ApiResource {
    let plural = match kind {
        SourceKind::GitRepository => "gitrepositories",
        SourceKind::OciRepository => "ocirepositories",
        SourceKind::Bucket => "buckets",
        SourceKind::ExternalArtifact => "externalartifacts",
    };
    ApiResource {
        group: GROUP.to_string(),
        version: "v1".to_string(),
        api_version: kind.api_version().to_string(),
        kind: kind.as_str().to_string(),
        plural: plural.to_string(),
    }
}

/// The source's artifact, or why there is none.
pub async fn artifact(
    client: &Client,
    source_ref: &CrossNamespaceSourceReference,
    namespace: &str,
    no_cross_namespace_refs: bool,
    requeue: &str,
) -> Result<Artifact, SourceError> {
    let source_ns = source_ref.namespace_or(namespace);
    let display = format!(
        "{}/{}/{}",
        source_ref.kind.as_str(),
        source_ns,
        source_ref.name
    );
    if no_cross_namespace_refs && source_ns != namespace {
        return Err(SourceError::AccessDenied(display));
    }
    let api: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(client.clone(), source_ns, &api_resource(source_ref.kind));
    let obj = match api.get_opt(&source_ref.name).await {
        Ok(Some(o)) => o,
        Ok(None) => return Err(SourceError::NotFound(display)),
        Err(kube::Error::Api(s)) if s.code == 404 => return Err(SourceError::NotFound(display)),
        Err(e) => {
            return Err(SourceError::Get {
                name: format!("{source_ns}/{}", source_ref.name),
                message: super::discovery::api_message(&e),
            });
        }
    };
    obj.data
        .get("status")
        .and_then(|s| s.get("artifact"))
        .filter(|a| !a.is_null())
        .and_then(|a| serde_json::from_value::<Artifact>(a.clone()).ok())
        .filter(|a| !a.url.is_empty())
        .ok_or_else(|| SourceError::NoArtifact(requeue.to_string()))
}
