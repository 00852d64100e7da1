//! The object inside an AdmissionReview, read for what nsguard decides on: its metadata.
//!
//! kube's `AdmissionRequest<T>` is generic over the object type. `DynamicObject` would
//! build the whole object (spec, status, managedFields) as a JSON tree on every review,
//! which was two thirds of a review's cost; [`ReviewedObject`] keeps the request, the
//! response and the protocol kube's, and skips everything but the metadata nsguard reads
//! (name, namespace, generateName, labels, annotations, ownerReferences) without
//! allocating for the rest. The JSON is still fully validated while skipping.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::{ApiResource, DynamicResourceScope, Resource};
use serde::{Deserialize, Deserializer, Serialize};

/// An object of a review, metadata only.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReviewedObject {
    pub metadata: ObjectMeta,
}

impl<'de> Deserialize<'de> for ReviewedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Unknown fields (apiVersion, kind, spec, status, ...) are skipped by serde.
        #[derive(Deserialize)]
        struct Object {
            #[serde(default)]
            metadata: Metadata,
        }

        #[derive(Default, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Metadata {
            name: Option<String>,
            namespace: Option<String>,
            generate_name: Option<String>,
            labels: Option<BTreeMap<String, String>>,
            annotations: Option<BTreeMap<String, String>>,
            owner_references: Option<Vec<OwnerReference>>,
        }

        let Object { metadata } = Object::deserialize(deserializer)?;
        Ok(ReviewedObject {
            metadata: ObjectMeta {
                name: metadata.name,
                namespace: metadata.namespace,
                generate_name: metadata.generate_name,
                labels: metadata.labels,
                annotations: metadata.annotations,
                owner_references: metadata.owner_references,
                ..ObjectMeta::default()
            },
        })
    }
}

impl Resource for ReviewedObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.kind)
    }

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.group)
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.version)
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        Cow::Borrowed(&dt.plural)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_metadata_nsguard_reads_and_skips_the_rest() {
        let object: ReviewedObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "a", "namespace": "ns", "uid": "u", "generation": 3,
                "labels": {"x": "1"}, "annotations": {"y": "2"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u2", "controller": true}],
                "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {"replicas": 1, "template": {"spec": {"containers": []}}},
            "status": {}
        }))
        .unwrap();
        let meta = object.metadata;
        assert_eq!(meta.name.as_deref(), Some("a"));
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
        assert_eq!(meta.labels.unwrap()["x"], "1");
        assert_eq!(meta.annotations.unwrap()["y"], "2");
        assert_eq!(meta.owner_references.unwrap()[0].controller, Some(true));
        assert_eq!(meta.uid, None, "not read");
        assert_eq!(meta.managed_fields, None, "not read");
    }

    #[test]
    fn malformed_metadata_is_still_an_error() {
        assert!(
            serde_json::from_str::<ReviewedObject>(r#"{"metadata":{"labels":{"a":1}}}"#).is_err()
        );
        assert!(serde_json::from_str::<ReviewedObject>(r#"{"spec":{"a":}}"#).is_err());
        assert!(serde_json::from_str::<ReviewedObject>(r#"{}"#).is_ok());
    }
}
