//! Which PersistentVolumes a namespace delete would destroy for good, and the paged reads
//! of claims and volumes that it, the audit and the volume guard share.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use tokio::time::Instant;

use super::LiveCluster;
use super::calls::{CallError, LookupError};
use crate::audit::Claim;
use crate::decisions::data_at_risk::{self, VolumeAtRisk};

impl LiveCluster {
    /// The PersistentVolumes that deleting `namespace` would destroy for good: its claims
    /// (one list), then each bound volume's reclaim policy (one get each, a few at once),
    /// every call bounded by `deadline` and counted in `calls`.
    pub async fn volumes_at_risk(
        &self,
        namespace: &str,
        deadline: Instant,
        calls: &AtomicUsize,
    ) -> Result<Vec<VolumeAtRisk>, LookupError> {
        let read = |what: &'static str| {
            move |cause| LookupError::Read {
                what,
                server: self.server.clone(),
                cause,
            }
        };
        let claims = self
            .claims(
                Api::namespaced(self.client.clone(), namespace),
                ListParams::default(),
                deadline,
                calls,
            )
            .await
            .map_err(read("listing the PersistentVolumeClaims"))?;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        // Owned names: a borrowing iterator adaptor would make the future not `Send`.
        let names: Vec<String> = claims.iter().filter_map(|c| c.volume.clone()).collect();
        let volumes = &volumes;
        let gets = names.into_iter().map(|name| async move {
            let found = self
                .call(deadline, calls, || volumes.get_opt(&name))
                .await?;
            Ok::<_, CallError>(found.and_then(volume_of))
        });
        let mut policies = BTreeMap::new();
        let mut answers = stream::iter(gets).buffer_unordered(self.options.concurrency.max(1));
        while let Some(answer) = answers.next().await {
            // A volume that is gone (404) holds no data the delete could destroy.
            if let Some((name, volume)) = answer.map_err(read("reading a PersistentVolume"))? {
                policies.insert(name, volume);
            }
        }
        Ok(data_at_risk::at_risk(&claims, &policies))
    }

    /// Every claim `api` lists to `params`, page by page, read as [`claim_of`] does.
    pub(super) async fn claims(
        &self,
        api: Api<PersistentVolumeClaim>,
        params: ListParams,
        deadline: Instant,
        calls: &AtomicUsize,
    ) -> Result<Vec<Claim>, CallError> {
        let mut found = Vec::new();
        self.pages(
            deadline,
            calls,
            params,
            |params| {
                let api = api.clone();
                async move { api.list(&params).await }
            },
            |pvc| found.extend(claim_of(pvc, &self.scheme)),
        )
        .await?;
        Ok(found)
    }

    /// Every PersistentVolume, page by page, by name, read as [`volume_of`] does.
    pub(super) async fn volumes(
        &self,
        deadline: Instant,
        calls: &AtomicUsize,
    ) -> Result<BTreeMap<String, data_at_risk::Volume>, CallError> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let mut found = BTreeMap::new();
        self.pages(
            deadline,
            calls,
            ListParams::default(),
            |params| {
                let api = api.clone();
                async move { api.list(&params).await }
            },
            |pv| found.extend(volume_of(pv)),
        )
        .await?;
        Ok(found)
    }
}

/// A claim as the guard and the audit read it: where it is, the volume it is bound to, and
/// the stack `scheme` finds in its labels.
fn claim_of(
    pvc: PersistentVolumeClaim,
    scheme: &crate::simple_container::labels::LabelScheme,
) -> Option<Claim> {
    // `spec.volumeName` alone is not a binding: a claim made for a volume (or pre-bound
    // by an admin) names it while both are still Pending, and no data is on it yet.
    let bound = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Bound");
    let owner = pvc.metadata.labels.as_ref().and_then(|l| scheme.owner(l));
    let ephemeral_pod = ephemeral_pod(&pvc.metadata);
    Some(Claim {
        owner,
        ephemeral_pod,
        deleted_at: pvc.metadata.deletion_timestamp.map(|t| t.0.to_string()),
        namespace: pvc.metadata.namespace?,
        name: pvc.metadata.name?,
        volume: pvc.spec.and_then(|s| s.volume_name).filter(|_| bound),
    })
}

/// The Pod that controls the object ([`data_at_risk::ephemeral_pod`]).
pub(super) fn ephemeral_pod(meta: &ObjectMeta) -> Option<String> {
    let refs = meta.owner_references.iter().flatten();
    data_at_risk::ephemeral_pod(refs.map(|r| data_at_risk::OwnerRef {
        api_version: &r.api_version,
        kind: &r.kind,
        name: &r.name,
        controller: r.controller == Some(true),
    }))
    .map(str::to_owned)
}

/// A volume by name, when it has a name and a reclaim policy: its phase, its claim and
/// nsguard's migration annotations (no other annotation is kept).
pub(super) fn volume_of(pv: PersistentVolume) -> Option<(String, data_at_risk::Volume)> {
    let spec = pv.spec?;
    let migration = pv
        .metadata
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| key.starts_with(data_at_risk::MIGRATION_ANNOTATIONS))
        .collect();
    let claim_ref = spec.claim_ref.and_then(|r| {
        Some(data_at_risk::ClaimRef {
            namespace: r.namespace?,
            name: r.name?,
            uid: r.uid.filter(|uid| !uid.is_empty()),
        })
    });
    Some((
        pv.metadata.name?,
        data_at_risk::Volume {
            reclaim_policy: spec.persistent_volume_reclaim_policy?,
            phase: pv.status.and_then(|s| s.phase),
            claim_ref,
            migration,
        },
    ))
}
