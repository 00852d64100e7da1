//! What a namespace delete destroys for good: the PersistentVolumes bound to its claims
//! whose reclaim policy is `Delete`. The namespace's objects come back when their stack is
//! redeployed; the data on those volumes does not (simple-container's PR #230 outage,
//! made worse).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::simple_container::labels::Owner;

/// A PersistentVolumeClaim and the volume it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
    /// The volume, when the claim is `Bound` to it. A claim that names a volume in
    /// `spec.volumeName` while still `Pending` (made for that volume, or pre-bound) has
    /// no data on it yet: `None`.
    pub volume: Option<String>,
    /// The stack its labels name, if any. One without may belong to any stack of its
    /// namespace, a sub-env that moves out included.
    pub owner: Option<Owner>,
    /// `deletionTimestamp`: deleted, and held by `kubernetes.io/pvc-protection` until no
    /// pod mounts it.
    pub deleted_at: Option<String>,
    /// The Pod whose generic ephemeral volume it is ([`ephemeral_pod`]): its data goes
    /// with that Pod, so it is never data at risk, never guarded, never handed over.
    pub ephemeral_pod: Option<String>,
}

/// An ownerReference, as [`ephemeral_pod`] reads it from whichever form the reader has
/// (an AdmissionReview, the kube client's types, a manifest or a dump).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerRef<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub controller: bool,
}

/// The Pod that controls a claim, if one does: the claim of a generic ephemeral volume.
/// Kubernetes' ephemeral-volume controller creates the claim `<pod>-<volume>` with its Pod
/// as controlling owner, and the garbage collector deletes it with the Pod (a rollout does,
/// all the time): its data is meant to go. simple-container gives scratch volumes this way,
/// with the stack's labels on the claim (its #189).
///
/// Only the owner reference counts, never a label or an annotation anyone may set on any
/// claim: and whoever sets that reference gets what it means, since the garbage collector
/// deletes a claim controlled by a Pod when that Pod is gone (or never existed).
pub fn ephemeral_pod<'a>(owners: impl IntoIterator<Item = OwnerRef<'a>>) -> Option<&'a str> {
    owners
        .into_iter()
        .find(|o| o.controller && o.api_version == "v1" && o.kind == "Pod")
        .map(|o| o.name)
}

/// A PersistentVolume as the audit and a migration read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volume {
    /// `spec.persistentVolumeReclaimPolicy`: `Delete` goes with its claim.
    pub reclaim_policy: String,
    /// `status.phase`: Available, Bound, Released, Failed (or not reported yet).
    pub phase: Option<String>,
    /// The claim it is bound to, or reserved for when `uid` is absent.
    pub claim_ref: Option<ClaimRef>,
    /// nsguard's migration record (`nsguard.dev/migrate-*` annotations), and nothing
    /// else of its annotations.
    pub migration: BTreeMap<String, String>,
}

/// `spec.claimRef` of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    pub namespace: String,
    pub name: String,
    /// Set once bound; a reference without it reserves the volume for that claim name.
    pub uid: Option<String>,
}

/// The prefix of the annotations a migration plan writes on the volumes it hands over.
pub const MIGRATION_ANNOTATIONS: &str = "nsguard.dev/migrate-";

/// A claim whose volume is deleted with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeAtRisk {
    pub namespace: String,
    pub claim: String,
    pub volume: String,
    pub reclaim_policy: String,
}

/// The reclaim policy that deletes a volume (and its data) with its claim.
const DELETE: &str = "Delete";

/// The claims of `claims` bound to a volume of `volumes` (by name) that is deleted with
/// its claim, in claim order. Unbound claims and volumes not found are not
/// at risk from the delete (there is no data, or it is not deleted through the claim), nor
/// is an ephemeral volume's claim (its data goes with its Pod whatever is deleted).
pub fn at_risk<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
    volumes: &BTreeMap<String, Volume>,
) -> Vec<VolumeAtRisk> {
    claims
        .into_iter()
        .filter(|claim| !claim.is_ephemeral())
        .filter_map(|claim| {
            let volume = claim.volume.as_ref()?;
            let policy = volumes
                .get(volume)
                .map(|v| &v.reclaim_policy)
                .filter(|p| *p == DELETE)?;
            Some(VolumeAtRisk {
                namespace: claim.namespace.clone(),
                claim: claim.name.clone(),
                volume: volume.clone(),
                reclaim_policy: policy.clone(),
            })
        })
        .collect()
}

/// [`ephemeral_pod`] of `metadata.ownerReferences` as JSON (a manifest, a dump).
pub fn ephemeral_pod_in_json(owner_references: &serde_json::Value) -> Option<String> {
    let refs = owner_references.as_array()?;
    ephemeral_pod(refs.iter().map(|r| OwnerRef {
        api_version: r["apiVersion"].as_str().unwrap_or_default(),
        kind: r["kind"].as_str().unwrap_or_default(),
        name: r["name"].as_str().unwrap_or_default(),
        controller: r["controller"] == true,
    }))
    .map(str::to_owned)
}

impl Claim {
    /// Whether it carries a stack's labels.
    pub fn owned(&self) -> bool {
        self.owner.is_some()
    }

    /// Whether it is a generic ephemeral volume's claim ([`ephemeral_pod`]).
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral_pod.is_some()
    }
}

impl Volume {
    /// A volume known only by its reclaim policy.
    pub fn with_policy(policy: &str) -> Volume {
        Volume {
            reclaim_policy: policy.to_owned(),
            ..Volume::default()
        }
    }

    /// Whether its reclaim policy deletes it with its claim.
    pub fn deleted_with_claim(&self) -> bool {
        self.reclaim_policy == DELETE
    }

    /// Whether it is reserved for (or bound to) the claim `namespace/name`.
    pub fn claimed_by(&self, namespace: &str, name: &str) -> bool {
        self.claim_ref
            .as_ref()
            .is_some_and(|r| r.namespace == namespace && r.name == name)
    }
}

/// What the guard found out about the volumes a delete would destroy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VolumeCheck {
    /// Not looked at: the delete was decided without a lookup, or nothing owned is inside.
    #[default]
    NotChecked,
    /// The volumes a delete destroys (maybe none).
    Checked(Vec<VolumeAtRisk>),
    /// The claims or volumes could not be read; the verdict does not depend on them.
    Failed(String),
}

impl VolumeCheck {
    pub fn is_not_checked(&self) -> bool {
        matches!(self, VolumeCheck::NotChecked)
    }

    /// One line for a message, or `None` when there is nothing to say.
    pub fn sentence(&self) -> Option<String> {
        match self {
            VolumeCheck::NotChecked => None,
            VolumeCheck::Checked(volumes) if volumes.is_empty() => None,
            VolumeCheck::Checked(volumes) => Some(format!(
                "deleting it also destroys the data of {} PersistentVolume{} for good (reclaim policy Delete): {}; set persistentVolumeReclaimPolicy to Retain first to keep it",
                volumes.len(),
                if volumes.len() == 1 { "" } else { "s" },
                volumes
                    .iter()
                    .map(|v| format!("claim {} (volume {})", v.claim, v.volume))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            VolumeCheck::Failed(error) => Some(format!(
                "could not check which PersistentVolumes a delete would destroy: {error}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, volume: Option<&str>) -> Claim {
        Claim {
            namespace: "shop".into(),
            name: name.into(),
            volume: volume.map(Into::into),
            owner: None,
            deleted_at: None,
            ephemeral_pod: None,
        }
    }

    fn owner<'a>(api_version: &'a str, kind: &'a str, controller: bool) -> OwnerRef<'a> {
        OwnerRef {
            api_version,
            kind,
            name: "web-5d9c-x7k2p",
            controller,
        }
    }

    /// Only a Pod that controls the claim makes it ephemeral: not a Pod that merely owns
    /// it, not another controller, not a Pod of another API group.
    #[test]
    fn a_claim_controlled_by_a_pod_is_ephemeral() {
        assert_eq!(
            ephemeral_pod([
                owner("apps/v1", "ReplicaSet", false),
                owner("v1", "Pod", true)
            ]),
            Some("web-5d9c-x7k2p")
        );
        for other in [
            owner("v1", "Pod", false),
            owner("apps/v1", "StatefulSet", true),
            owner("example.com/v1", "Pod", true),
            owner("v1", "pod", true),
        ] {
            assert_eq!(ephemeral_pod([other]), None, "{other:?}");
        }
        assert_eq!(ephemeral_pod([]), None);
    }

    /// A scratch volume's data goes with its Pod: never counted as at risk, whatever its
    /// reclaim policy.
    #[test]
    fn an_ephemeral_claim_is_never_at_risk() {
        let volumes: BTreeMap<String, Volume> =
            [("pv-scratch".to_owned(), Volume::with_policy("Delete"))].into();
        let mut scratch = claim("web-5d9c-x7k2p-scratch", Some("pv-scratch"));
        assert_eq!(at_risk([&scratch], &volumes).len(), 1);
        scratch.ephemeral_pod = Some("web-5d9c-x7k2p".into());
        assert!(at_risk([&scratch], &volumes).is_empty());
    }

    #[test]
    fn only_bound_claims_on_delete_volumes_are_at_risk() {
        let volumes: BTreeMap<String, Volume> = [
            ("pv-delete", "Delete"),
            ("pv-retain", "Retain"),
            ("pv-recycle", "Recycle"),
        ]
        .map(|(a, b)| (a.to_owned(), Volume::with_policy(b)))
        .into();
        let claims = [
            claim("data", Some("pv-delete")),
            claim("kept", Some("pv-retain")),
            claim("old", Some("pv-recycle")),
            claim("pending", None),
            claim("gone", Some("pv-missing")),
        ];
        let risk = at_risk(&claims, &volumes);
        assert_eq!(risk.len(), 1);
        assert_eq!(
            (risk[0].claim.as_str(), risk[0].volume.as_str()),
            ("data", "pv-delete")
        );
        let said = VolumeCheck::Checked(risk).sentence().unwrap();
        assert!(said.contains("1 PersistentVolume for good"), "{said}");
        assert!(said.contains("claim data (volume pv-delete)"), "{said}");
        assert_eq!(VolumeCheck::Checked(Vec::new()).sentence(), None);
        assert_eq!(VolumeCheck::NotChecked.sentence(), None);
    }
}
