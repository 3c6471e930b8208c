//! apiVersion + kind → API resource (plural, scope), cached across reconciles. Failures are not cached, so a
//! CRD applied in an earlier stage is found once it is served.

use std::collections::HashMap;
use std::sync::RwLock;

use kube::Client;
use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;

use super::inventory::{ObjMeta, split_api_version};

/// A resolved kind.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

impl Resolved {
    /// The API for an object of this kind in `namespace` (ignored for cluster-scoped kinds).
    pub fn api(&self, client: Client, namespace: &str) -> kube::Api<DynamicObject> {
        if self.namespaced {
            kube::Api::namespaced_with(client, namespace, &self.resource)
        } else {
            kube::Api::all_with(client, &self.resource)
        }
    }
}

/// The shared cache.
#[derive(Debug, Default)]
pub struct Resolver {
    cache: RwLock<HashMap<(String, String), Resolved>>,
}

impl Resolver {
    /// Resolves `apiVersion`/`kind`, asking the API server on a cache miss.
    pub async fn resolve(
        &self,
        client: &Client,
        api_version: &str,
        kind: &str,
    ) -> Result<Resolved, kube::Error> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(hit) = self.cache.read().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let (group, version) = split_api_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
        let resolved = Resolved {
            resource,
            namespaced: caps.scope == Scope::Namespaced,
        };
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(key, resolved.clone());
        }
        Ok(resolved)
    }

    /// Resolves an object's kind.
    pub async fn resolve_meta(
        &self,
        client: &Client,
        meta: &ObjMeta,
    ) -> Result<Resolved, kube::Error> {
        self.resolve(client, &meta.api_version(), &meta.kind).await
    }
}

/// Whether a kube error is a 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => status.code == 404,
        kube::Error::Discovery(_) => true,
        _ => false,
    }
}

/// The API server's reason and message, without the client's decoration.
pub fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) if !s.message.is_empty() => {
            if s.reason.is_empty() {
                s.message.clone()
            } else {
                format!("({}) {}", s.reason, s.message)
            }
        }
        other => other.to_string(),
    }
}
