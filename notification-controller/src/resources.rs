//! Finding arbitrary Flux objects by apiVersion and kind (event sources with `matchLabels`, receiver resources).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use kube::core::{ApiResource, GroupVersionKind};

/// Resolves `apiVersion` + `kind` to an API resource through discovery, remembering the answers.
pub struct ResourceResolver {
    client: kube::Client,
    cache: Mutex<HashMap<(String, String), ApiResource>>,
}

impl std::fmt::Debug for ResourceResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceResolver").finish_non_exhaustive()
    }
}

/// `(group, version)` of an apiVersion: `source.toolkit.fluxcd.io/v1` → (`source.toolkit.fluxcd.io`, `v1`),
/// `v1` → (``, `v1`).
pub fn group_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

impl ResourceResolver {
    /// A resolver using `client`.
    pub fn new(client: kube::Client) -> Self {
        ResourceResolver {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The API resource serving `kind` in `api_version`.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<ApiResource, kube::Error> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(found) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(found.clone());
        }
        let (group, version) = group_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, _caps) = kube::discovery::pinned_kind(&self.client, &gvk).await?;
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, resource.clone());
        Ok(resource)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_versions() {
        assert_eq!(
            super::group_version("source.toolkit.fluxcd.io/v1"),
            ("source.toolkit.fluxcd.io", "v1")
        );
        assert_eq!(super::group_version("v1"), ("", "v1"));
    }
}
