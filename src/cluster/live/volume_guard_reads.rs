//! The volume guard's read: a sub-env's claims of one name in every namespace, the
//! volumes they hold or that wait for them, and whether the sub-env's namespace exists.
//! A handful of calls under one deadline, whatever the cluster's size: one list of the
//! claims of that name (field selector, every namespace), then for a create one list of
//! the volumes, for a delete a get of its volume and of the Namespace. The reads of
//! claims and volumes are the audit's (`volumes`).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ListParams};

use super::LiveCluster;
use super::calls::LookupError;
use super::volumes::{ephemeral_pod, volume_of};
use crate::cluster::ClaimMetadata;
use crate::cluster::Deadline;
use crate::decisions::volume_guard::{ClaimOperation, ClaimUnderReview, Facts};

impl LiveCluster {
    /// What [`crate::decisions::volume_guard`] decides `claim`'s `operation` over, read before
    /// `deadline`, every call counted in `calls`.
    pub async fn claim_facts(
        &self,
        operation: ClaimOperation,
        claim: &ClaimUnderReview<'_>,
        deadline: Deadline,
        calls: &AtomicUsize,
    ) -> Result<Facts, LookupError> {
        let read = |what: &'static str| {
            move |cause| LookupError::Read {
                what,
                server: self.server.clone(),
                cause,
            }
        };
        let _permit = self.slot(&self.claim_lookups, "claim", deadline).await?;
        let deadline = deadline.at();
        // Every claim of that name, whoever's: the decision keeps the sub-env's, in any
        // label generation.
        let claims = self.claims(
            Api::all(self.client.clone()),
            ListParams::default().fields(&format!("metadata.name={}", claim.name)),
            deadline,
            calls,
        );
        let mut facts = match operation {
            ClaimOperation::Create => {
                // A volume reserved for the target's claim has no claim to find it by:
                // every volume is read (one list; a cluster holds few, each a disk).
                let (claims, volumes) = tokio::join!(claims, self.volumes(deadline, calls));
                Facts {
                    claims: claims.map_err(read("listing the sub-env's PersistentVolumeClaims"))?,
                    volumes: volumes.map_err(read("listing the PersistentVolumes"))?,
                    // Not read for a create (`on_create`): one in the target proves it
                    // exists, one elsewhere is judged by the volume waiting there. Not asked.
                    target_exists: true,
                }
            }
            ClaimOperation::Delete => {
                let namespaces: Api<Namespace> = Api::all(self.client.clone());
                let (claims, target) = tokio::join!(
                    claims,
                    self.call(deadline, calls, || namespaces
                        .get_metadata_opt(claim.target))
                );
                Facts {
                    claims: claims.map_err(read("listing the sub-env's PersistentVolumeClaims"))?,
                    volumes: BTreeMap::new(),
                    target_exists: target
                        .map_err(read("reading the sub-env's Namespace"))?
                        .is_some(),
                }
            }
        };
        if operation == ClaimOperation::Delete {
            let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
            let own = facts
                .claims
                .iter()
                .find(|c| c.namespace == claim.namespace)
                .and_then(|c| c.volume.clone());
            if let Some(name) = own {
                let found = self
                    .call(deadline, calls, || volumes.get_opt(&name))
                    .await
                    .map_err(read("reading the claim's PersistentVolume"))?;
                facts.volumes.extend(found.and_then(volume_of));
            }
        }
        Ok(facts)
    }

    /// What the volume guard reads of the claim `namespace/name`; `None` when it does not
    /// exist.
    pub async fn claim_metadata(
        &self,
        namespace: &str,
        name: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<ClaimMetadata>, LookupError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let calls = AtomicUsize::new(0);
        let found = self
            .call(Deadline::after(timeout).at(), &calls, || {
                api.get_metadata_opt(name)
            })
            .await
            .map_err(|cause| LookupError::Read {
                what: "reading the PersistentVolumeClaim",
                server: self.server.clone(),
                cause,
            })?;
        Ok(found.map(|claim| {
            let meta = claim.metadata;
            ClaimMetadata {
                ephemeral_pod: ephemeral_pod(&meta),
                labels: meta.labels.unwrap_or_default(),
                annotations: meta.annotations.unwrap_or_default(),
            }
        }))
    }
}
