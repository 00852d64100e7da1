//! Cluster state from a dump file: what `kubectl get ... -A -o yaml|json` prints.
//! Loaded once and indexed by namespace, keeping only what the guard reads.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;

use super::ClaimMetadata;
use crate::audit::{
    Claim, Inventory, LabelledObject, NamespaceMeta, UnownedObject, read_annotations,
};
use crate::decisions::data_at_risk::{ClaimRef, MIGRATION_ANNOTATIONS, Volume};
use crate::decisions::namespace_guard::{NamespaceScan, OwnedObject};
use crate::decisions::volume_guard::{ClaimUnderReview, Facts};
use crate::documents::{self, ObjectHead};
use crate::simple_container::labels::LabelScheme;

/// A loaded dump: owned objects per namespace, and what the audit reads (the Namespaces'
/// annotations, which the guard reads too, among it).
#[derive(Debug, Default)]
pub struct ClusterDump {
    owned: HashMap<String, Vec<OwnedObject>>,
    objects: usize,
    inventory: Inventory,
}

impl ClusterDump {
    pub fn load(path: &Path, scheme: &LabelScheme) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading cluster dump {}", path.display()))?;
        Self::parse(&text, scheme).with_context(|| format!("cluster dump {}", path.display()))
    }

    /// Index a dump's text. Cluster-scoped objects other than Namespaces are ignored.
    pub fn parse(text: &str, scheme: &LabelScheme) -> anyhow::Result<Self> {
        // Every object kept: a loaded dump can be written out again.
        let mut dump = Self {
            inventory: Inventory::keeping_objects(),
            ..Self::default()
        };
        for document in documents::parse(text)? {
            for (item, value) in documents::objects(&document.value).enumerate() {
                let head = ObjectHead::of(value).map_err(|e| {
                    anyhow::anyhow!("document {}, item {}: {e}", document.number, item + 1)
                })?;
                dump.add(head, value, scheme);
            }
        }
        let listed = &dump.inventory.namespace_meta;
        if !listed.is_empty() {
            dump.inventory.namespaces = Some(listed.keys().cloned().collect());
        }
        Ok(dump)
    }

    fn add(&mut self, head: ObjectHead, value: &serde_json::Value, scheme: &LabelScheme) {
        self.objects += 1;
        let core = head.group().is_empty();
        if core && head.kind == "PersistentVolume" {
            if let Some(policy) = value["spec"]["persistentVolumeReclaimPolicy"].as_str() {
                let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
                let claim = &value["spec"]["claimRef"];
                let claim_ref =
                    text(&claim["namespace"])
                        .zip(text(&claim["name"]))
                        .map(|(namespace, name)| ClaimRef {
                            namespace,
                            name,
                            uid: text(&claim["uid"]).filter(|uid| !uid.is_empty()),
                        });
                let volume = Volume {
                    reclaim_policy: policy.to_owned(),
                    phase: text(&value["status"]["phase"]),
                    claim_ref,
                    migration: head
                        .metadata
                        .annotations
                        .into_iter()
                        .filter(|(key, _)| key.starts_with(MIGRATION_ANNOTATIONS))
                        .collect(),
                };
                self.inventory.volumes.insert(head.metadata.name, volume);
            }
            return;
        }
        let created = value["metadata"]["creationTimestamp"]
            .as_str()
            .map(str::to_owned);
        if head.kind == "Namespace" && core {
            let meta = NamespaceMeta {
                labels: head.metadata.labels,
                annotations: head.metadata.annotations,
                created,
            };
            self.inventory
                .namespace_meta
                .insert(head.metadata.name, meta);
            return;
        }
        let Some(namespace) = head.metadata.namespace.clone().filter(|ns| !ns.is_empty()) else {
            return;
        };
        if core && head.kind == "PersistentVolumeClaim" {
            self.inventory.claims.push(Claim {
                owner: scheme.owner(&head.metadata.labels),
                ephemeral_pod: crate::decisions::data_at_risk::ephemeral_pod_in_json(
                    &value["metadata"]["ownerReferences"],
                ),
                deleted_at: value["metadata"]["deletionTimestamp"]
                    .as_str()
                    .map(str::to_owned),
                namespace: namespace.clone(),
                name: head.metadata.name.clone(),
                // Bound only: a claim that names a volume while still Pending holds no data.
                volume: value["spec"]["volumeName"]
                    .as_str()
                    .filter(|_| value["status"]["phase"] == "Bound")
                    .map(str::to_owned),
            });
        }
        let Some(owner) = scheme.owner(&head.metadata.labels) else {
            let object = UnownedObject {
                api_version: head.api_version,
                kind: head.kind,
                name: head.metadata.name,
                annotations: read_annotations(head.metadata.annotations),
                created,
            };
            self.inventory.add_unowned(&namespace, object);
            return;
        };
        let kind = head.qualified_kind();
        self.owned
            .entry(namespace.clone())
            .or_default()
            .push(OwnedObject {
                owner,
                kind,
                name: head.metadata.name.clone(),
            });
        let controller_owned = value["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["controller"] == true));
        let object = LabelledObject {
            namespace,
            api_version: head.api_version,
            kind: head.kind,
            name: head.metadata.name,
            labels: head.metadata.labels,
            annotations: read_annotations(head.metadata.annotations),
            controller_owned,
        };
        self.inventory.add(object, scheme);
    }

    /// The volumes deleting `namespace` would destroy for good.
    pub fn volumes_at_risk(
        &self,
        namespace: &str,
    ) -> Vec<crate::decisions::data_at_risk::VolumeAtRisk> {
        let claims = self
            .inventory
            .claims
            .iter()
            .filter(|c| c.namespace == namespace);
        crate::decisions::data_at_risk::at_risk(claims, &self.inventory.volumes)
    }

    /// What the volume guard decides `claim`'s `operation` over: the dump's claims of
    /// that name, every volume, and whether the sub-env's namespace is in it.
    pub fn claim_facts(&self, claim: &ClaimUnderReview<'_>) -> Facts {
        Facts {
            claims: (self.inventory.claims.iter())
                .filter(|c| c.name == claim.name)
                .cloned()
                .collect(),
            volumes: self.inventory.volumes.clone(),
            target_exists: self.namespace_annotations(claim.target).is_some(),
        }
    }

    /// The labels and annotations (those the audit keeps, the break-glass among them) of
    /// the claim `namespace/name` in the dump, and the Pod that controls it; `None` when
    /// it holds no such claim.
    pub fn claim_metadata(&self, namespace: &str, name: &str) -> Option<ClaimMetadata> {
        let claim =
            (self.inventory.claims.iter()).find(|c| c.namespace == namespace && c.name == name)?;
        let labelled = self.inventory.objects.iter().flatten().find(|o| {
            o.kind == "PersistentVolumeClaim" && o.namespace == namespace && o.name == name
        });
        let (labels, annotations) = labelled.map_or_else(Default::default, |o| {
            (o.labels.clone(), o.annotations.clone())
        });
        Some(ClaimMetadata {
            labels,
            annotations,
            ephemeral_pod: claim.ephemeral_pod.clone(),
        })
    }

    /// What the audit reads from this dump.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// What the audit reads from this dump, the dump itself given up.
    pub fn into_inventory(self) -> Inventory {
        self.inventory
    }

    /// What the namespace holds. A dump is complete by construction: nothing unverified.
    pub fn scan(&self, namespace: &str) -> NamespaceScan {
        NamespaceScan {
            objects: self.owned.get(namespace).cloned().unwrap_or_default(),
            unverified: Vec::new(),
            resource_types: 0,
            api_calls: 0,
            stale_discovery: None,
        }
    }

    /// The annotations of a Namespace in the dump; `None` when the dump lists Namespaces
    /// and not this one. A dump without Namespace objects cannot tell, so every namespace
    /// is taken to exist, without annotations.
    pub fn namespace_annotations(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let listed = &self.inventory.namespace_meta;
        match listed.get(namespace) {
            Some(meta) => Some(meta.annotations.clone()),
            None if listed.is_empty() => Some(BTreeMap::new()),
            None => None,
        }
    }

    /// How many objects the dump held, for the startup log.
    pub fn object_count(&self) -> usize {
        self.objects
    }
}

/// `inventory` in the `--cluster-dump` format (a `kind: List`), limited to `only`'s
/// namespaces when not empty (but for every other Namespace's bare name, which the
/// audit's `targetExists` reads): Namespaces with their annotations, the labelled objects'
/// metadata, claims with their volume, and the volumes they are bound to with their
/// reclaim policy. What the guard and the audit read, and nothing else.
pub fn write(inventory: &Inventory, only: &[String]) -> serde_json::Value {
    use serde_json::json;
    let wanted = |ns: &str| only.is_empty() || only.iter().any(|o| o == ns);
    let mut items = Vec::new();
    for name in inventory.namespaces.iter().flatten() {
        if !wanted(name) {
            // Every Namespace's name, whatever `only` says: the audit of this dump tells
            // whether a misplaced object's target exists, as the live audit does.
            items
                .push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
            continue;
        }
        let meta = inventory
            .namespace_meta
            .get(name)
            .cloned()
            .unwrap_or_default();
        let mut metadata =
            json!({"name": name, "labels": meta.labels, "annotations": meta.annotations});
        if let Some(created) = meta.created {
            metadata["creationTimestamp"] = created.into();
        }
        items.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}));
    }
    // Each claim once: a labelled one carries its spec with its labels.
    let mut claims: BTreeMap<(&str, &str), &Claim> = inventory
        .claims
        .iter()
        .filter(|c| wanted(&c.namespace))
        .map(|c| ((c.namespace.as_str(), c.name.as_str()), c))
        .collect();
    let mut volumes = std::collections::BTreeSet::new();
    // A claim's volume, that it is bound to it, and that it is being deleted (what the
    // loader reads back).
    let mut claim_fields = |item: &mut serde_json::Value, claim: &Claim| {
        item["spec"] = json!({});
        if let Some(volume) = &claim.volume {
            item["spec"]["volumeName"] = volume.clone().into();
            item["status"] = json!({"phase": "Bound"});
            volumes.insert(volume.clone());
        }
        if let Some(deleted_at) = &claim.deleted_at {
            item["metadata"]["deletionTimestamp"] = deleted_at.clone().into();
        }
        if let Some(pod) = &claim.ephemeral_pod {
            // The Pod that controls it is what makes it ephemeral (and controller-owned).
            item["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "v1", "kind": "Pod", "name": pod, "controller": true}]);
        }
    };
    for object in inventory
        .objects
        .iter()
        .flatten()
        .filter(|o| wanted(&o.namespace))
    {
        let mut metadata = json!({"name": object.name, "namespace": object.namespace,
            "labels": object.labels, "annotations": object.annotations});
        if object.controller_owned {
            // Only whether a controller owns it is read.
            metadata["ownerReferences"] = json!([{"controller": true}]);
        }
        let mut item =
            json!({"apiVersion": object.api_version, "kind": object.kind, "metadata": metadata});
        if object.api_version == "v1"
            && object.kind == "PersistentVolumeClaim"
            && let Some(claim) = claims.remove(&(object.namespace.as_str(), object.name.as_str()))
        {
            claim_fields(&mut item, claim);
        }
        items.push(item);
    }
    // What else the lingering-namespace check read in a namespace.
    for (namespace, objects) in inventory.unowned.iter().filter(|(ns, _)| wanted(ns)) {
        for object in objects {
            let mut metadata = json!({"name": object.name, "namespace": namespace,
                "annotations": object.annotations});
            if let Some(created) = &object.created {
                metadata["creationTimestamp"] = created.clone().into();
            }
            let mut item = json!({"apiVersion": object.api_version, "kind": object.kind, "metadata": metadata});
            if object.api_version == "v1"
                && object.kind == "PersistentVolumeClaim"
                && let Some(claim) = claims.remove(&(namespace.as_str(), object.name.as_str()))
            {
                claim_fields(&mut item, claim);
            }
            items.push(item);
        }
    }
    for claim in claims.into_values() {
        let mut item = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim.name, "namespace": claim.namespace}});
        claim_fields(&mut item, claim);
        items.push(item);
    }
    for (name, volume) in &inventory.volumes {
        // A volume of the namespaces asked for: bound to one of their claims, or reserved
        // for one or handed over from one by a migration, whose claims may be gone.
        let theirs = volumes.contains(name)
            || volume
                .claim_ref
                .as_ref()
                .is_some_and(|r| wanted(&r.namespace))
            || [
                crate::migration::FROM_ANNOTATION,
                crate::migration::TO_ANNOTATION,
            ]
            .iter()
            .filter_map(|key| volume.migration.get(*key)?.split_once('/'))
            .any(|(namespace, _)| wanted(namespace));
        if !(only.is_empty() || theirs) {
            continue;
        }
        let mut item = json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {"persistentVolumeReclaimPolicy": volume.reclaim_policy}});
        if !volume.migration.is_empty() {
            item["metadata"]["annotations"] = json!(volume.migration);
        }
        if let Some(claim) = &volume.claim_ref {
            item["spec"]["claimRef"] = json!({"kind": "PersistentVolumeClaim",
                "namespace": claim.namespace, "name": claim.name});
            if let Some(uid) = &claim.uid {
                item["spec"]["claimRef"]["uid"] = uid.clone().into();
            }
        }
        if let Some(phase) = &volume.phase {
            item["status"] = json!({"phase": phase});
        }
        items.push(item);
    }
    json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: shared
    annotations: {nsguard.dev/allow-delete: "true"}
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: api
    namespace: shared
    labels: {simple-container-com/app-name: api, simple-container-com/env: prod}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: unowned, namespace: shared}
---
apiVersion: v1
kind: Service
metadata:
  name: legacy
  namespace: shared
  labels: {appName: api-tenant-a, appEnv: tenant-a}
"#;

    #[test]
    fn indexes_owned_objects_by_namespace() {
        let dump = ClusterDump::parse(DUMP, &LabelScheme::default()).unwrap();
        let scan = dump.scan("shared");
        let kinds: Vec<_> = scan
            .objects
            .iter()
            .map(|o| (o.kind.as_str(), o.owner.env.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![("Deployment.apps", "prod"), ("Service", "tenant-a")]
        );
        assert!(dump.scan("absent").objects.is_empty());
        assert_eq!(
            dump.namespace_annotations("shared").unwrap()["nsguard.dev/allow-delete"],
            "true"
        );
        assert_eq!(dump.object_count(), 4);
    }

    /// Writing what a dump holds and reading it back gives the same inventory.
    #[test]
    fn a_written_dump_reads_back_as_the_same_inventory() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/dumps/audit.yaml"
        ))
        .unwrap();
        let scheme = LabelScheme::default();
        let first = ClusterDump::parse(&text, &scheme).unwrap();
        let written = serde_json::to_string(&write(first.inventory(), &[])).unwrap();
        let second = ClusterDump::parse(&written, &scheme).unwrap();
        let (a, b) = (first.inventory(), second.inventory());
        assert_eq!(a.namespaces, b.namespaces);
        assert_eq!(a.namespace_meta, b.namespace_meta);
        assert_eq!(a.unowned, b.unowned);
        assert_eq!(a.objects, b.objects);
        assert_eq!(a.owners, b.owners);
        assert_eq!(a.misplaced, b.misplaced);
        assert_eq!(a.claims, b.claims);
        assert_eq!(a.volumes, b.volumes);
        assert!(a.objects.as_ref().is_some_and(|o| !o.is_empty()));
        assert!(!a.owners.is_empty() && !a.claims.is_empty() && !a.volumes.is_empty());
    }

    /// Of an object's annotations only those the audit reads are kept: a last-applied
    /// configuration (KiBs on every object kubectl applied) would be most of the memory.
    #[test]
    fn only_the_annotations_the_audit_reads_are_kept() {
        let big = "x".repeat(64 * 1024);
        let text = format!(
            "apiVersion: v1\nkind: List\nitems:\n\
             - {{apiVersion: v1, kind: ConfigMap, metadata: {{name: a, namespace: ns, \
               labels: {{simple-container-com/app-name: a-preview, simple-container-com/env: preview, simple-container-com/parent-env: production}}, \
               annotations: {{kubectl.kubernetes.io/last-applied-configuration: '{big}', nsguard.dev/skip-placement: 'true'}}}}}}\n\
             - {{apiVersion: v1, kind: Secret, metadata: {{name: t, namespace: ns, \
               annotations: {{kubernetes.io/service-account.name: default, kubectl.kubernetes.io/last-applied-configuration: '{big}'}}}}}}\n"
        );
        let dump = ClusterDump::parse(&text, &LabelScheme::default()).unwrap();
        let inventory = dump.inventory();
        let objects = inventory.objects.as_ref().unwrap();
        let kept: Vec<&String> = objects[0].annotations.keys().collect();
        assert_eq!(kept, ["nsguard.dev/skip-placement"]);
        let kept: Vec<&String> = inventory.unowned["ns"][0].annotations.keys().collect();
        assert_eq!(kept, ["kubernetes.io/service-account.name"]);
        // Placement's opt-out still holds: the sub-env object is not misplaced.
        let report = crate::audit::audit(inventory, &LabelScheme::default(), &[]);
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    #[test]
    fn malformed_items_are_errors_with_a_position() {
        let err =
            ClusterDump::parse("kind: List\nitems:\n- 42\n", &LabelScheme::default()).unwrap_err();
        assert!(format!("{err:#}").contains("document 1, item 1"), "{err:#}");
    }
}
