//! What a namespace delete destroys for good: the PersistentVolumes bound to its claims
//! whose reclaim policy is `Delete`. The namespace's objects come back when their stack is
//! redeployed; the data on those volumes does not (simple-container's PR #230 outage,
//! made worse).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::labels::Owner;

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
/// at risk from the delete (there is no data, or it is not deleted through the claim).
pub fn at_risk<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
    volumes: &BTreeMap<String, Volume>,
) -> Vec<VolumeAtRisk> {
    claims
        .into_iter()
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

impl Claim {
    /// Whether it carries a stack's labels.
    pub fn owned(&self) -> bool {
        self.owner.is_some()
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
        }
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
