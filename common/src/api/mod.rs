//! Every CRD type Riptide serves, one module per group/version, named and shaped exactly as Flux 2.9's.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

pub mod image_v1;
pub mod kustomize_v1;
pub mod meta;
pub mod notification_v1;
pub mod notification_v1beta3;
pub mod source_v1;

/// Every CustomResourceDefinition Riptide serves, in a stable order (the order `crdgen` writes them).
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut all = Vec::new();
    all.extend(source_v1::crds());
    all.extend(kustomize_v1::crds());
    all.extend(notification_v1beta3::crds());
    all.extend(notification_v1::crds());
    all.extend(image_v1::crds());
    all
}

/// Errors while rendering CRDs as YAML.
#[derive(Debug, thiserror::Error)]
pub enum CrdRenderError {
    #[error("serializing CRD {name} to YAML: {source}")]
    Yaml {
        name: String,
        #[source]
        source: serde_saphyr::ser::Error,
    },
}

fn crd_to_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdRenderError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    serde_saphyr::to_string(crd).map_err(|source| CrdRenderError::Yaml { name, source })
}

/// `(file name, YAML)` for every CRD: `<group>_<plural>.yaml`, one document each.
pub fn crd_files() -> Result<Vec<(String, String)>, CrdRenderError> {
    crds()
        .iter()
        .map(|crd| {
            let file = format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural);
            Ok((file, format!("---\n{}", crd_to_yaml(crd)?)))
        })
        .collect()
}

/// Every CRD as one multi-document YAML stream.
pub fn crd_yaml_stream() -> Result<String, CrdRenderError> {
    Ok(crd_files()?.into_iter().map(|(_, yaml)| yaml).collect())
}
