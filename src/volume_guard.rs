//! The volume guard's decision (issue #31; the webhook, the lookup and the manifests that
//! call it are not built yet): which step of a plain move of a stateful sub-env loses its
//! data, over plain data.
//!
//! simple-container 2026.5.12 and later move a sub-env once its Namespace is forgotten in
//! its Pulumi state: Pulumi creates each claim in the new namespace, then deletes the old
//! one (create before delete). Without the hand-over of `nsguard migrate plan`, the new
//! claim gets a new, empty volume, and the delete of the old claim destroys the data when
//! its volume's reclaim policy is `Delete` (strands it otherwise). Refusing the create stops
//! the move before any delete runs; refusing the delete keeps a move half done from
//! destroying the data.
//!
//! Pure: the caller reads the sub-env's claims of that name in every namespace, their
//! volumes and whether the sub-env's namespace exists, and checks the break-glass
//! annotation and the exempt users and groups first, as for the namespace guard.

use std::collections::BTreeMap;

use crate::audit::StackRef;
use crate::data_at_risk::Volume;

/// A claim of the sub-env under review, found by the lookup (any namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubEnvClaim {
    pub namespace: String,
    pub name: String,
    /// `spec.volumeName`, once bound.
    pub volume: Option<String>,
    /// It has a deletionTimestamp.
    pub terminating: bool,
}

/// The claim a request creates or deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimUnderReview<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub owner: &'a StackRef,
    /// The sub-env's own namespace, as simple-container names it.
    pub target: &'a str,
    /// For a delete: the claim's `spec.volumeName`.
    pub volume: Option<&'a str>,
}

/// What the lookup read.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The sub-env's claims with the reviewed claim's name, in every namespace.
    pub claims: Vec<SubEnvClaim>,
    /// The volumes those claims are bound to, and any volume reserved for the reviewed
    /// claim's name in the target namespace, by name.
    pub volumes: BTreeMap<String, Volume>,
    /// Whether the sub-env's namespace exists (a move is under way).
    pub target_exists: bool,
}

/// The decision on one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing of the sub-env's data is at stake; `why` says which rule let it through.
    Allowed { why: &'static str },
    /// A create in a namespace while the sub-env's claim of that name lives on in another,
    /// with no volume handed over: the move would strand the data (`Retain`) or destroy it
    /// (`Delete`, when the old claim is deleted).
    StrandsData {
        old_namespace: String,
        volume: Option<String>,
        reclaim_policy: Option<String>,
    },
    /// A create in the namespace the sub-env is leaving while its volume waits for the
    /// target: a redeploy that did not move the sub-env.
    NotMoved { volume: String },
    /// A delete, during the move, of a claim whose volume goes with it (`Delete`).
    DestroysData { volume: String },
}

impl Verdict {
    /// A short, fixed name for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Allowed { .. } => "allowed",
            Verdict::StrandsData { .. } => "strands-data",
            Verdict::NotMoved { .. } => "not-moved",
            Verdict::DestroysData { .. } => "destroys-data",
        }
    }

    pub fn allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}

/// The create of `claim`.
pub fn on_create(claim: &ClaimUnderReview<'_>, facts: &Facts) -> Verdict {
    let reserved_for_target = facts.volumes.iter().find(|(_, v)| {
        v.claimed_by(claim.target, claim.name)
            && v.claim_ref.as_ref().is_some_and(|r| r.uid.is_none())
    });
    if claim.namespace != claim.target {
        return match reserved_for_target {
            Some((volume, _)) => Verdict::NotMoved {
                volume: volume.clone(),
            },
            None => Verdict::Allowed {
                why: "not in a move: the sub-env's volume waits for no other namespace",
            },
        };
    }
    if reserved_for_target.is_some() {
        return Verdict::Allowed {
            why: "a volume is handed over for this claim",
        };
    }
    match facts
        .claims
        .iter()
        .find(|c| c.namespace != claim.namespace && c.name == claim.name && !c.terminating)
    {
        Some(old) => {
            let volume = old.volume.clone();
            let reclaim_policy = volume
                .as_ref()
                .and_then(|v| facts.volumes.get(v))
                .map(|v| v.reclaim_policy.clone());
            Verdict::StrandsData {
                old_namespace: old.namespace.clone(),
                volume,
                reclaim_policy,
            }
        }
        None => Verdict::Allowed {
            why: "no claim of this name of the sub-env elsewhere",
        },
    }
}

/// The delete of `claim`.
pub fn on_delete(claim: &ClaimUnderReview<'_>, facts: &Facts) -> Verdict {
    if claim.namespace == claim.target {
        return Verdict::Allowed {
            why: "the claim is in the sub-env's own namespace",
        };
    }
    if !facts.target_exists {
        return Verdict::Allowed {
            why: "no move under way: the sub-env's namespace does not exist (a teardown)",
        };
    }
    let Some(volume) = claim.volume else {
        return Verdict::Allowed {
            why: "the claim holds no volume",
        };
    };
    match facts.volumes.get(volume) {
        Some(v) if v.deleted_with_claim() => Verdict::DestroysData {
            volume: volume.to_owned(),
        },
        Some(_) => Verdict::Allowed {
            why: "its volume outlives the claim (reclaim policy Retain)",
        },
        // Not read: the caller's lookup failed and decides by its failure policy.
        None => Verdict::Allowed {
            why: "its volume is gone",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_at_risk::ClaimRef;

    fn owner() -> StackRef {
        StackRef {
            app_name: "shop-tenant-a".into(),
            env: "tenant-a".into(),
            parent_env: "production".into(),
        }
    }

    fn volume(policy: &str, claim: Option<(&str, &str, Option<&str>)>) -> Volume {
        Volume {
            claim_ref: claim.map(|(namespace, name, uid)| ClaimRef {
                namespace: namespace.into(),
                name: name.into(),
                uid: uid.map(str::to_owned),
            }),
            ..Volume::with_policy(policy)
        }
    }

    fn facts(old: bool, data: Volume, target_exists: bool) -> Facts {
        Facts {
            claims: old
                .then(|| SubEnvClaim {
                    namespace: "shop".into(),
                    name: "data".into(),
                    volume: Some("pv-data".into()),
                    terminating: false,
                })
                .into_iter()
                .collect(),
            volumes: [("pv-data".to_owned(), data)].into_iter().collect(),
            target_exists,
        }
    }

    fn claim<'a>(
        namespace: &'a str,
        owner: &'a StackRef,
        volume: Option<&'a str>,
    ) -> ClaimUnderReview<'a> {
        ClaimUnderReview {
            namespace,
            name: "data",
            owner,
            target: "shop-tenant-a",
            volume,
        }
    }

    #[test]
    fn a_plain_moves_create_is_refused_and_a_planned_one_allowed() {
        let owner = owner();
        let bound = || volume("Delete", Some(("shop", "data", Some("uid-1"))));
        assert_eq!(
            on_create(
                &claim("shop-tenant-a", &owner, None),
                &facts(true, bound(), true)
            ),
            Verdict::StrandsData {
                old_namespace: "shop".into(),
                volume: Some("pv-data".into()),
                reclaim_policy: Some("Delete".into()),
            }
        );
        // The plan's `before` ran: the old claim is gone, its volume reserved.
        let reserved = volume("Retain", Some(("shop-tenant-a", "data", None)));
        assert!(
            on_create(
                &claim("shop-tenant-a", &owner, None),
                &facts(false, reserved.clone(), true)
            )
            .allowed()
        );
        // ... and a redeploy that did not move the sub-env re-creates it where it was.
        assert_eq!(
            on_create(&claim("shop", &owner, None), &facts(false, reserved, true)),
            Verdict::NotMoved {
                volume: "pv-data".into()
            }
        );
        // A first deploy, and the old claim already being deleted: nothing to strand.
        assert!(
            on_create(
                &claim("shop-tenant-a", &owner, None),
                &facts(false, bound(), false)
            )
            .allowed()
        );
        let mut terminating = facts(true, bound(), true);
        terminating.claims[0].terminating = true;
        assert!(on_create(&claim("shop-tenant-a", &owner, None), &terminating).allowed());
    }

    #[test]
    fn a_delete_is_refused_only_when_the_move_would_destroy_the_volume() {
        let owner = owner();
        let bound = |policy| volume(policy, Some(("shop", "data", Some("uid-1"))));
        assert_eq!(
            on_delete(
                &claim("shop", &owner, Some("pv-data")),
                &facts(true, bound("Delete"), true)
            ),
            Verdict::DestroysData {
                volume: "pv-data".into()
            }
        );
        for (namespace, policy, target_exists) in [
            ("shop", "Delete", false),         // a teardown: no move under way
            ("shop", "Retain", true),          // the plan's first step
            ("shop-tenant-a", "Delete", true), // already in its own namespace
        ] {
            let verdict = on_delete(
                &claim(namespace, &owner, Some("pv-data")),
                &facts(true, bound(policy), target_exists),
            );
            assert!(
                verdict.allowed(),
                "{namespace} {policy} {target_exists}: {verdict:?}"
            );
        }
        assert!(
            on_delete(
                &claim("shop", &owner, None),
                &facts(true, bound("Delete"), true)
            )
            .allowed()
        );
    }
}
