//! Every CRD type Riptide serves, one module per group/version, named and shaped exactly as Flux 2.9's.
//!
//! Field docs double as the CRDs' descriptions and keep Flux's wording, so rustdoc's HTML and link lints are
//! relaxed for these modules.

#![allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

pub mod image_v1;
pub mod kustomize_v1;
pub mod meta;
pub mod notification_v1;
pub mod notification_v1beta3;
pub mod source_v1;

/// Shapes a CRD that kube-derive generated into the form Flux publishes: `listKind` set, `apiVersion`, `kind`
/// and `metadata` described at the root, and no `required`/`title` at the root (Flux's root schema requires
/// nothing, so a manifest without `spec` is still admitted and defaulted).
pub(crate) fn flux_crd(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
    let kind = crd.spec.names.kind.clone();
    crd.spec.names.list_kind = Some(format!("{kind}List"));
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        root.required = None;
        root.title = None;
        let props = root.properties.get_or_insert_with(Default::default);
        let string = |description: &str| JSONSchemaProps {
            type_: Some("string".into()),
            description: Some(description.into()),
            ..Default::default()
        };
        props.insert(
            "apiVersion".into(),
            string(
                "APIVersion defines the versioned schema of this representation of an object. Servers should \
                 convert recognized schemas to the latest internal value, and may reject unrecognized values.",
            ),
        );
        props.insert(
            "kind".into(),
            string(
                "Kind is a string value representing the REST resource this object represents. Servers may \
                 infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.",
            ),
        );
        props.insert(
            "metadata".into(),
            JSONSchemaProps {
                type_: Some("object".into()),
                ..Default::default()
            },
        );
    }
    crd
}

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
