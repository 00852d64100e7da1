//! Moving a misplaced sub-env into its own namespace without losing a volume. A claim
//! cannot change namespace: the redeploy that moves a sub-env replaces each of its claims,
//! and a volume with reclaim policy `Delete` goes with the old one (simple-container
//! PR #230's caveat). The plan hands each volume over before the redeploy: keep it
//! (`Retain`), stop what mounts it, delete the old claim, reserve the volume for the claim
//! the redeploy creates in the sub-env's namespace (`spec.claimRef` without a uid); the new
//! claim then binds the old volume. Why this order and not another: docs/migration.md.
//!
//! Pure: [`sub_envs`] reads an [`Inventory`], [`Stage`] says where each claim stands, and
//! [`script`] writes the plan a person reviews and runs.

pub mod script;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::audit::Inventory;
use crate::decisions::data_at_risk::{Claim, Volume};
use crate::simple_container::labels::StackRef;

/// Annotations the plan writes on each volume it hands over, so that `nsguard migrate
/// check` can follow a volume whose old claim is gone. All under
/// [`crate::decisions::data_at_risk::MIGRATION_ANNOTATIONS`], the only annotations nsguard reads on
/// volumes.
pub const STACK_ANNOTATION: &str = "nsguard.dev/migrate-stack";
/// `namespace/claim` the volume leaves.
pub const FROM_ANNOTATION: &str = "nsguard.dev/migrate-from";
/// `namespace/claim` the volume goes to.
pub const TO_ANNOTATION: &str = "nsguard.dev/migrate-to";
/// The reclaim policy the volume had before the plan kept it.
pub const POLICY_ANNOTATION: &str = "nsguard.dev/migrate-reclaim-policy";

/// A misplaced sub-env, or one a migration has handed volumes over for: the namespace it
/// leaves, its own, and what the redeploy takes from one to the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubEnv {
    pub owner: StackRef,
    /// The namespace it shares now.
    pub from: String,
    /// Its own namespace, as simple-container names it.
    pub to: String,
    /// Its claims (labelled with it in `from`, or handed over by a plan), by name.
    pub claims: Vec<ClaimMove>,
    /// Its Deployments and StatefulSets in `from` (`Kind/name`): what mounts the claims.
    pub workloads: Vec<String>,
    /// Its other objects in `from` (`Kind/name`): they move with the redeploy, no step.
    pub others: Vec<String>,
    /// Its generic ephemeral volumes' claims in `from`: never handed over (each goes with
    /// its Pod, and the redeploy's Pods get new ones), named so the plan says it left them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ephemeral_claims: Vec<EphemeralClaim>,
}

/// A generic ephemeral volume's claim and the Pod that controls it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralClaim {
    pub name: String,
    pub pod: String,
}

/// One claim of a sub-env and the volume its data is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMove {
    pub name: String,
    /// The volume: the old claim's, or the one a plan annotated. (A claim that is not
    /// Bound holds no data: it is one of the objects that move with the redeploy.)
    pub volume: String,
    /// The volume's reclaim policy before the plan kept it (what the check and the plan's
    /// optional last step restore), when known.
    pub reclaim_policy: Option<String>,
}

impl SubEnv {
    /// `appName/env`, as the plan's annotation and `--stack` write it.
    pub fn stack(&self) -> String {
        format!("{}/{}", self.owner.app_name, self.owner.env)
    }
}

/// The claims without stack labels, Bound to a `Delete` volume, in a namespace sub-envs
/// leave: the redeploy deletes one if it is a sub-env's. The plan keeps them; it does not
/// hand them over (whose they are is not known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnlabelledClaim {
    pub namespace: String,
    pub claim: String,
    pub volume: String,
}

/// The claims and volumes of an inventory, claims by namespace and name: each sub-env's
/// claims are looked up, never scanned for (a cluster may hold tens of thousands).
pub struct Cluster<'a> {
    claims: HashMap<(&'a str, &'a str), &'a Claim>,
    volumes: &'a BTreeMap<String, Volume>,
}

impl<'a> Cluster<'a> {
    pub fn of(inventory: &'a Inventory) -> Self {
        Self {
            claims: inventory
                .claims
                .iter()
                .map(|c| ((c.namespace.as_str(), c.name.as_str()), c))
                .collect(),
            volumes: &inventory.volumes,
        }
    }

    fn claim(&self, namespace: &str, name: &str) -> Option<&'a Claim> {
        self.claims.get(&(namespace, name)).copied()
    }
}

/// Every sub-env of `inventory` that is misplaced or that a plan handed volumes over for,
/// limited to `stacks` (`appName/env`) and `namespaces` (the ones they leave) when not
/// empty; and the unlabelled claims at risk in the namespaces they leave.
pub fn sub_envs(
    inventory: &Inventory,
    stacks: &[String],
    namespaces: &[String],
) -> (Vec<SubEnv>, Vec<UnlabelledClaim>) {
    let cluster = Cluster::of(inventory);
    let mut found: BTreeMap<(String, String, String, String), SubEnv> = BTreeMap::new();
    for object in inventory.misplaced.iter() {
        let key = (
            object.owner.app_name.clone(),
            object.owner.env.clone(),
            object.namespace.to_owned(),
            object.target.to_owned(),
        );
        let sub_env = found.entry(key).or_insert_with(|| SubEnv {
            owner: object.owner.clone(),
            from: object.namespace.to_owned(),
            to: object.target.to_owned(),
            claims: Vec::new(),
            workloads: Vec::new(),
            others: Vec::new(),
            ephemeral_claims: Vec::new(),
        });
        match (object.api_version, object.kind) {
            ("v1", "PersistentVolumeClaim") => {
                let claim = cluster.claim(object.namespace, object.name);
                match claim.and_then(|c| c.volume.clone()) {
                    Some(volume) => sub_env.claims.push(ClaimMove {
                        name: object.name.to_owned(),
                        reclaim_policy: inventory.volumes.get(&volume).map(policy_before),
                        volume,
                    }),
                    None => sub_env
                        .others
                        .push(format!("{}/{}", object.kind, object.name)),
                }
            }
            ("apps/v1", "Deployment" | "StatefulSet") => sub_env
                .workloads
                .push(format!("{}/{}", object.kind, object.name)),
            _ => sub_env
                .others
                .push(format!("{}/{}", object.kind, object.name)),
        }
    }
    // Volumes a plan handed over: their old claim (and maybe every misplaced object) is
    // gone, the annotations say whose they are.
    for (volume_name, volume) in &inventory.volumes {
        let Some(handed) = Handover::of(volume) else {
            continue;
        };
        let key = (
            handed.app_name.to_owned(),
            handed.env.to_owned(),
            handed.from.0.to_owned(),
            handed.to.0.to_owned(),
        );
        let sub_env = found.entry(key).or_insert_with(|| SubEnv {
            owner: StackRef {
                app_name: handed.app_name.to_owned(),
                env: handed.env.to_owned(),
                parent_env: String::new(),
            },
            from: handed.from.0.to_owned(),
            to: handed.to.0.to_owned(),
            claims: Vec::new(),
            workloads: Vec::new(),
            others: Vec::new(),
            ephemeral_claims: Vec::new(),
        });
        match sub_env.claims.iter_mut().find(|c| c.name == handed.from.1) {
            // The annotated volume holds the data; a claim of that name in the old
            // namespace may be on another one (a redeploy re-created it there).
            Some(claim) => {
                claim.volume = volume_name.clone();
                claim.reclaim_policy = Some(policy_before(volume));
            }
            None => sub_env.claims.push(ClaimMove {
                name: handed.from.1.to_owned(),
                volume: volume_name.clone(),
                reclaim_policy: Some(policy_before(volume)),
            }),
        }
    }
    let mut sub_envs: Vec<SubEnv> = found
        .into_values()
        .filter(|s| stacks.is_empty() || stacks.contains(&s.stack()))
        .filter(|s| namespaces.is_empty() || namespaces.contains(&s.from))
        .collect();
    // The sub-envs' ephemeral volumes' claims: controlled by a Pod, so never misplaced
    // objects (placement leaves controller-owned objects alone), but theirs by their labels.
    let by_owner: HashMap<(&str, &str, &str), usize> = (sub_envs.iter().enumerate())
        .map(|(i, s)| {
            let key = (
                s.owner.app_name.as_str(),
                s.owner.env.as_str(),
                s.from.as_str(),
            );
            (key, i)
        })
        .collect();
    let ephemeral: Vec<(usize, EphemeralClaim)> = (inventory.claims.iter())
        .filter_map(|c| {
            let (owner, pod) = (c.owner.as_ref()?, c.ephemeral_pod.as_ref()?);
            let key = (
                owner.app_name.as_str(),
                owner.env.as_str(),
                c.namespace.as_str(),
            );
            let claim = EphemeralClaim {
                name: c.name.clone(),
                pod: pod.clone(),
            };
            Some((*by_owner.get(&key)?, claim))
        })
        .collect();
    for (i, claim) in ephemeral {
        sub_envs[i].ephemeral_claims.push(claim);
    }
    for sub_env in &mut sub_envs {
        sub_env.claims.sort_by(|a, b| a.name.cmp(&b.name));
        sub_env.workloads.sort();
        sub_env.others.sort();
        sub_env.ephemeral_claims.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let left: std::collections::BTreeSet<&str> = sub_envs.iter().map(|s| s.from.as_str()).collect();
    // An ephemeral volume's claim is nobody's data to keep: Retain would only leak it.
    let unlabelled = inventory
        .claims
        .iter()
        .filter(|c| !c.owned() && !c.is_ephemeral() && left.contains(c.namespace.as_str()))
        .filter_map(|c| {
            let volume = c.volume.as_ref()?;
            inventory
                .volumes
                .get(volume)
                .filter(|v| v.deleted_with_claim())?;
            Some(UnlabelledClaim {
                namespace: c.namespace.clone(),
                claim: c.name.clone(),
                volume: volume.clone(),
            })
        })
        .collect();
    (sub_envs, unlabelled)
}

/// The reclaim policy a volume had before a plan kept it.
fn policy_before(volume: &Volume) -> String {
    volume
        .migration
        .get(POLICY_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| volume.reclaim_policy.clone())
}

/// A volume's migration annotations, read.
struct Handover<'a> {
    app_name: &'a str,
    env: &'a str,
    from: (&'a str, &'a str),
    to: (&'a str, &'a str),
}

impl<'a> Handover<'a> {
    fn of(volume: &'a Volume) -> Option<Self> {
        let read = |key: &str| volume.migration.get(key)?.split_once('/');
        let (app_name, env) = read(STACK_ANNOTATION)?;
        Some(Handover {
            app_name,
            env,
            from: read(FROM_ANNOTATION)?,
            to: read(TO_ANNOTATION)?,
        })
    }
}

/// Where one claim of a migrating sub-env stands, in the order the plan goes. See
/// docs/migration.md for each stage's claim phase, volume phase and `claimRef`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "stage",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Stage {
    /// The old claim is Bound to a volume deleted with it.
    NotStarted,
    /// The old claim is Bound to a volume that outlives it (`Retain`).
    Kept,
    /// The old claim is deleted; pods that mount it hold it (`pvc-protection`).
    Releasing { since: String },
    /// The old claim is gone, the volume `Released`, still naming it.
    Released,
    /// The volume is reserved for the claim the redeploy creates (`claimRef` to it, no
    /// uid; phase `Available`).
    Reserved,
    /// The redeploy created the new claim; it has not bound the volume yet.
    Binding,
    /// The new claim is Bound to the old volume.
    Done,
    /// Not a state the plan leads to: what is wrong.
    Stuck { problem: String },
}

impl Stage {
    /// Where `claim` of `sub_env` stands in `cluster`.
    pub fn of(sub_env: &SubEnv, claim: &ClaimMove, cluster: &Cluster) -> Stage {
        let (old, new) = (
            cluster.claim(&sub_env.from, &claim.name),
            cluster.claim(&sub_env.to, &claim.name),
        );
        let volume_name = &claim.volume;
        let stuck = |problem: String| Stage::Stuck { problem };
        let Some(volume) = cluster.volumes.get(volume_name) else {
            return stuck(format!(
                "volume {volume_name} is gone: the data of claim {}/{} is lost unless a backup holds it",
                sub_env.from, claim.name
            ));
        };
        match (old, new) {
            (Some(_), Some(new)) => stuck(format!(
                "claims {}/{name} and {}/{name} both exist (the new one {}): the redeploy ran before volume {volume_name} was handed over; the data is on {volume_name}, {kept}; docs/migration.md says how to go on",
                sub_env.from,
                sub_env.to,
                new.volume
                    .as_ref()
                    .map_or("not Bound".to_owned(), |v| format!("on volume {v}")),
                name = claim.name,
                kept = if volume.deleted_with_claim() {
                    format!(
                        "its reclaim policy is Delete: keep it now (kubectl patch pv {volume_name} -p '{{\"spec\":{{\"persistentVolumeReclaimPolicy\":\"Retain\"}}}}')"
                    )
                } else {
                    format!("it is kept (reclaim policy {})", volume.reclaim_policy)
                },
            )),
            (Some(old), None) => match &old.deleted_at {
                Some(since) if !volume.deleted_with_claim() => Stage::Releasing {
                    since: since.clone(),
                },
                Some(_) => stuck(format!(
                    "claim {}/{} is being deleted while volume {volume_name} has reclaim policy Delete: set Retain on it at once",
                    sub_env.from, claim.name
                )),
                None if old.volume.as_deref() != Some(volume_name)
                    && volume.claimed_by(&sub_env.to, &claim.name)
                    && volume.claim_ref.as_ref().is_some_and(|r| r.uid.is_none()) =>
                {
                    stuck(not_moved(sub_env, claim, old, volume))
                }
                None if old.volume.as_deref() != Some(volume_name) => stuck(format!(
                    "claim {}/{} is not Bound to volume {volume_name} any more",
                    sub_env.from, claim.name
                )),
                None if volume.deleted_with_claim() => Stage::NotStarted,
                None => Stage::Kept,
            },
            (None, None) => {
                if volume.deleted_with_claim() {
                    stuck(format!(
                        "volume {volume_name} has no claim and reclaim policy Delete: set Retain on it now"
                    ))
                } else if volume.claimed_by(&sub_env.to, &claim.name) {
                    match volume.claim_ref.as_ref().and_then(|r| r.uid.as_ref()) {
                        None => Stage::Reserved,
                        Some(_) => stuck(format!(
                            "claim {}/{} was bound to volume {volume_name} and is gone (the volume is {}): point its claimRef at {}/{} without uid again and redeploy",
                            sub_env.to,
                            claim.name,
                            volume.phase.as_deref().unwrap_or("phase unknown"),
                            sub_env.to,
                            claim.name
                        )),
                    }
                } else if volume.claimed_by(&sub_env.from, &claim.name) {
                    Stage::Released
                } else {
                    stuck(format!(
                        "volume {volume_name} is {} for another claim ({})",
                        volume.phase.as_deref().unwrap_or("held"),
                        volume
                            .claim_ref
                            .as_ref()
                            .map_or("none".to_owned(), |r| format!("{}/{}", r.namespace, r.name))
                    ))
                }
            }
            (None, Some(new)) => match &new.volume {
                Some(bound) if bound == volume_name => Stage::Done,
                Some(other) => stuck(format!(
                    "claim {}/{} is Bound to volume {other}, a new one: the data is on volume {volume_name} ({}); docs/migration.md says how to re-bind it",
                    sub_env.to,
                    claim.name,
                    volume.phase.as_deref().unwrap_or("phase unknown")
                )),
                None if volume.claimed_by(&sub_env.to, &claim.name) => Stage::Binding,
                None => stuck(format!(
                    "claim {}/{} waits, but volume {volume_name} is not reserved for it (claimRef {})",
                    sub_env.to,
                    claim.name,
                    volume
                        .claim_ref
                        .as_ref()
                        .map_or("none".to_owned(), |r| format!("{}/{}", r.namespace, r.name))
                )),
            },
        }
    }

    /// Whether the old claim is still there (being deleted or not): what mounts it must
    /// stop before its volume can be handed over.
    fn holds_old_claim(&self) -> bool {
        matches!(
            self,
            Stage::NotStarted | Stage::Kept | Stage::Releasing { .. }
        )
    }

    /// Its place in the plan's order (stuck last).
    fn rank(&self) -> u8 {
        match self {
            Stage::NotStarted => 0,
            Stage::Kept => 1,
            Stage::Releasing { .. } => 2,
            Stage::Released => 3,
            Stage::Reserved => 4,
            Stage::Binding => 5,
            Stage::Done => 6,
            Stage::Stuck { .. } => 7,
        }
    }
}

/// The trap of a redeploy that did not move the sub-env: simple-container 2026.5.12 and
/// later re-create a deleted claim where the Pulumi state keeps the sub-env, its old
/// namespace, on a new volume, while the data waits for the new namespace.
fn not_moved(sub_env: &SubEnv, claim: &ClaimMove, old: &Claim, volume: &Volume) -> String {
    let (from, to, name, data) = (&sub_env.from, &sub_env.to, &claim.name, &claim.volume);
    let on = old.volume.as_ref().map_or("not Bound".to_owned(), |v| {
        format!(
            "on volume {v}, a new one: whatever the sub-env wrote since is there, not in its data"
        )
    });
    format!(
        "the redeploy did not move the sub-env: claim {from}/{name} exists again ({on}) while volume {data} (its data, reclaim policy {}) waits for {to}/{name}; {}. Way out: stop the sub-env in {from} again (scale its Deployments and StatefulSets to 0), copy off anything the new volume holds that must be kept, delete claim {from}/{name}, forget its Namespace in its Pulumi state (the state step of `nsguard migrate plan --stack {}`), `sc deploy`, then `sh migrate.sh after`",
        volume.reclaim_policy,
        crate::simple_container::releases::why_it_stays(),
        sub_env.stack(),
    )
}

/// Where a sub-env's migration stands, as `nsguard migrate check` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Some claim is still on a volume deleted with it.
    NotStarted,
    /// Every claim's volume outlives it; nothing handed over yet.
    VolumesKept,
    /// Old claims deleted or gone, volumes being reserved or reserved: ready to redeploy.
    HandedOver,
    /// The redeploy created the new claims; some have not bound their volume yet, or
    /// objects are still in the old namespace.
    Redeployed,
    /// Every claim Bound to its old volume in the sub-env's namespace, nothing left behind.
    Done,
    /// Something no step of the plan leads to (each claim's problem is named).
    Stuck,
}

/// A sub-env's migration: its state, each claim's stage, and the next step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub stack: String,
    pub from: String,
    pub to: String,
    pub state: State,
    pub claims: Vec<ClaimStatus>,
    /// Objects of the sub-env still in `from` (none once the redeploy is through).
    pub left_behind: usize,
    pub next: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStatus {
    pub name: String,
    pub volume: String,
    #[serde(flatten)]
    pub stage: Stage,
}

/// Where each sub-env of `sub_envs` stands in `inventory`; `unlabelled` (from
/// [`sub_envs`]) are the claims its redeploy may delete if they are its.
pub fn check(
    sub_envs: &[SubEnv],
    unlabelled: &[UnlabelledClaim],
    inventory: &Inventory,
) -> Vec<Status> {
    let cluster = Cluster::of(inventory);
    sub_envs
        .iter()
        .map(|sub_env| {
            let claims: Vec<ClaimStatus> = sub_env
                .claims
                .iter()
                .map(|claim| ClaimStatus {
                    name: claim.name.clone(),
                    volume: claim.volume.clone(),
                    stage: Stage::of(sub_env, claim, &cluster),
                })
                .collect();
            let left_behind = sub_env.workloads.len()
                + sub_env.others.len()
                + claims
                    .iter()
                    .filter(|c| cluster.claim(&sub_env.from, &c.name).is_some())
                    .count();
            let state = state(&claims, left_behind);
            Status {
                stack: sub_env.stack(),
                from: sub_env.from.clone(),
                to: sub_env.to.clone(),
                next: next(sub_env, state, &claims) + &keep_unlabelled(sub_env, state, unlabelled),
                state,
                claims,
                left_behind,
            }
        })
        .collect()
}

/// A sub-env's state from its claims' stages: the least advanced one, unless the stages
/// cannot all be true of one plan run (a claim bound in the new namespace while another
/// is still on its old claim means the redeploy ran before the hand-over finished).
fn state(claims: &[ClaimStatus], left_behind: usize) -> State {
    if claims
        .iter()
        .any(|c| matches!(c.stage, Stage::Stuck { .. }))
    {
        return State::Stuck;
    }
    let least = claims.iter().map(|c| c.stage.rank()).min();
    let most = claims.iter().map(|c| c.stage.rank()).max();
    match (least, most) {
        (Some(least), Some(most))
            if most >= Stage::Binding.rank() && least < Stage::Reserved.rank() =>
        {
            State::Stuck
        }
        (None, _) => State::NotStarted,
        (Some(0), _) => State::NotStarted,
        (Some(1), _) => State::VolumesKept,
        (Some(2..=4), _) => State::HandedOver,
        (Some(5), _) => State::Redeployed,
        _ if left_behind > 0 => State::Redeployed,
        _ => State::Done,
    }
}

/// Before the redeploy: the caveat for claims without stack labels on `Delete` volumes in
/// the namespace the sub-env leaves, which its redeploy deletes if they are its.
fn keep_unlabelled(sub_env: &SubEnv, state: State, unlabelled: &[UnlabelledClaim]) -> String {
    let before_redeploy = matches!(
        state,
        State::NotStarted | State::VolumesKept | State::HandedOver
    );
    let at_risk: Vec<String> = unlabelled
        .iter()
        .filter(|c| before_redeploy && c.namespace == sub_env.from)
        .map(|c| format!("{} (volume {})", c.claim, c.volume))
        .collect();
    if at_risk.is_empty() {
        return String::new();
    }
    format!(
        "; but first keep claim(s) {} in {}: they carry no stack labels, may be this sub-env's, and their volumes have reclaim policy Delete (`nsguard migrate plan -n {}` keeps them)",
        at_risk.join(", "),
        sub_env.from,
        sub_env.from
    )
}

/// What a person half-way through does next.
fn next(sub_env: &SubEnv, state: State, claims: &[ClaimStatus]) -> String {
    let stack = sub_env.stack();
    let plan = format!("nsguard migrate plan --stack {stack} --apply-ready > migrate.sh");
    match state {
        State::NotStarted if claims.is_empty() => {
            format!(
                "no volume to keep: {}",
                crate::simple_container::releases::how_to_move(&stack, false)
            )
        }
        State::NotStarted => {
            format!("review `{plan}`, then run `sh migrate.sh before`")
        }
        State::VolumesKept => format!(
            "stop the workloads and hand the volumes over: a new plan starts from here (`{plan}`, then `sh migrate.sh before`)"
        ),
        State::HandedOver => {
            if let Some(c) = claims
                .iter()
                .find(|c| matches!(c.stage, Stage::Releasing { .. }))
            {
                format!(
                    "claim {}/{} waits for the pods that mount it to stop (`kubectl describe pvc {} -n {}` shows them under Used By)",
                    sub_env.from, c.name, c.name, sub_env.from
                )
            } else if claims.iter().any(|c| c.stage == Stage::Released) {
                format!(
                    "reserve the released volumes for {}: a new plan starts from here (`{plan}`, then `sh migrate.sh before`)",
                    sub_env.to
                )
            } else {
                format!(
                    "forget the Namespace of {stack} in its Pulumi state (the plan's state step) if not done yet, `sc deploy` it with {}, then run `sh migrate.sh after`",
                    crate::simple_container::releases::release()
                )
            }
        }
        State::Redeployed if claims.iter().any(|c| c.stage == Stage::Binding) => format!(
            "the new claims in {} are binding their volumes; `sh migrate.sh after` waits for it",
            sub_env.to
        ),
        State::Redeployed => format!(
            "the volumes are handed over; the redeploy has not removed everything from {} yet (a failed `pulumi up`?): run it again",
            sub_env.from
        ),
        State::Done => {
            let kept: Vec<&str> = claims
                .iter()
                .filter(|c| {
                    sub_env
                        .claims
                        .iter()
                        .any(|m| m.name == c.name && m.reclaim_policy.as_deref() == Some("Delete"))
                })
                .map(|c| c.volume.as_str())
                .collect();
            if kept.is_empty() {
                "nothing left to do".to_owned()
            } else {
                format!(
                    "done; volume(s) {} keep reclaim policy Retain (they had Delete): `sh migrate.sh after` with a plan made with --restore-reclaim-policy puts it back",
                    kept.join(", ")
                )
            }
        }
        State::Stuck => {
            "see each claim's problem; docs/migration.md, \"When a migration is stuck\"".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MisplacedObject;
    use crate::decisions::data_at_risk::{Claim, ClaimRef};

    const FROM: &str = "shop";
    const TO: &str = "shop-tenant-a";

    fn owner() -> StackRef {
        StackRef {
            app_name: "shop-tenant-a".into(),
            env: "tenant-a".into(),
            parent_env: "production".into(),
        }
    }

    /// A sub-env in `shop` with a Deployment and claim `data` on `pv-data`, as the
    /// cluster shows it at each step: `claims` (namespace, name, bound volume, deleted)
    /// and the volume (reclaim policy, phase, claimRef namespace, whether the ref has a uid,
    /// annotated by a plan).
    fn cluster(
        claims: &[(&str, &str, Option<&str>, bool)],
        volume: Option<(&str, &str, &str, bool, bool)>,
    ) -> Inventory {
        let mut inventory = Inventory::default();
        for (namespace, name, bound, deleted) in claims {
            inventory.claims.push(Claim {
                namespace: (*namespace).into(),
                name: (*name).into(),
                volume: bound.map(Into::into),
                owner: Some(crate::simple_container::labels::Owner::new(
                    "shop-tenant-a",
                    "tenant-a",
                )),
                deleted_at: deleted.then(|| "2026-12-02T10:00:00Z".to_owned()),
                ephemeral_pod: None,
            });
            if *namespace == FROM {
                inventory.misplaced.push(MisplacedObject {
                    namespace: FROM.into(),
                    api_version: "v1".into(),
                    kind: "PersistentVolumeClaim".into(),
                    name: (*name).into(),
                    owner: owner(),
                    target: TO.into(),
                });
            }
        }
        if let Some((policy, phase, claim_namespace, uid, annotated)) = volume {
            let mut migration = BTreeMap::new();
            if annotated {
                for (key, value) in [
                    (STACK_ANNOTATION, "shop-tenant-a/tenant-a".to_owned()),
                    (FROM_ANNOTATION, format!("{FROM}/data")),
                    (TO_ANNOTATION, format!("{TO}/data")),
                    (POLICY_ANNOTATION, "Delete".to_owned()),
                ] {
                    migration.insert(key.to_owned(), value);
                }
            }
            inventory.volumes.insert(
                "pv-data".into(),
                Volume {
                    reclaim_policy: policy.into(),
                    phase: Some(phase.into()),
                    claim_ref: Some(ClaimRef {
                        namespace: claim_namespace.into(),
                        name: "data".into(),
                        uid: uid.then(|| "uid-1".to_owned()),
                    }),
                    migration,
                },
            );
        }
        inventory
    }

    fn status(inventory: &Inventory) -> Status {
        let (sub_envs, unlabelled) = sub_envs(inventory, &[], &[]);
        assert_eq!(sub_envs.len(), 1, "{sub_envs:?}");
        check(&sub_envs, &unlabelled, inventory).remove(0)
    }

    /// Every stage of docs/migration.md, from what the cluster shows: the claim phases, the
    /// volume's phase and claimRef, and the plan's annotations once the old claim is gone.
    #[test]
    fn each_step_of_the_plan_is_read_back_from_the_cluster() {
        let cases: [(Inventory, &str, State); 7] = [
            (
                cluster(
                    &[(FROM, "data", Some("pv-data"), false)],
                    Some(("Delete", "Bound", FROM, true, false)),
                ),
                "not-started",
                State::NotStarted,
            ),
            (
                cluster(
                    &[(FROM, "data", Some("pv-data"), false)],
                    Some(("Retain", "Bound", FROM, true, true)),
                ),
                "kept",
                State::VolumesKept,
            ),
            (
                cluster(
                    &[(FROM, "data", Some("pv-data"), true)],
                    Some(("Retain", "Bound", FROM, true, true)),
                ),
                "releasing",
                State::HandedOver,
            ),
            (
                cluster(&[], Some(("Retain", "Released", FROM, true, true))),
                "released",
                State::HandedOver,
            ),
            (
                cluster(&[], Some(("Retain", "Available", TO, false, true))),
                "reserved",
                State::HandedOver,
            ),
            (
                cluster(
                    &[(TO, "data", None, false)],
                    Some(("Retain", "Available", TO, false, true)),
                ),
                "binding",
                State::Redeployed,
            ),
            (
                cluster(
                    &[(TO, "data", Some("pv-data"), false)],
                    Some(("Retain", "Bound", TO, true, true)),
                ),
                "done",
                State::Done,
            ),
        ];
        for (inventory, stage, state) in cases {
            let status = status(&inventory);
            let json = serde_json::to_value(&status).unwrap();
            assert_eq!(json["claims"][0]["stage"], stage, "{json}");
            assert_eq!(status.state, state, "{json}");
            assert_eq!(status.stack, "shop-tenant-a/tenant-a");
            assert_eq!((status.from.as_str(), status.to.as_str()), (FROM, TO));
        }
    }

    /// What no step of the plan leads to is named, with what is at stake.
    #[test]
    fn a_migration_off_the_plan_is_stuck_and_says_why() {
        let cases = [
            // The redeploy ran first: Pulumi made the new claim (a new volume) and has
            // not deleted the old one yet; the old volume still has Delete.
            (
                cluster(
                    &[
                        (FROM, "data", Some("pv-data"), false),
                        (TO, "data", Some("pvc-new"), false),
                    ],
                    Some(("Delete", "Bound", FROM, true, false)),
                ),
                "the redeploy ran before volume pv-data was handed over; the data is on pv-data, its reclaim policy is Delete: keep it now",
            ),
            // The old claim is being deleted while its volume still goes with it.
            (
                cluster(
                    &[(FROM, "data", Some("pv-data"), true)],
                    Some(("Delete", "Bound", FROM, true, false)),
                ),
                "is being deleted while volume pv-data has reclaim policy Delete",
            ),
            // The new claim got a new volume; the data waits, Released.
            (
                cluster(
                    &[(TO, "data", Some("pvc-new"), false)],
                    Some(("Retain", "Released", FROM, true, true)),
                ),
                "is Bound to volume pvc-new, a new one: the data is on volume pv-data (Released)",
            ),
        ];
        for (inventory, problem) in cases {
            let status = status(&inventory);
            assert_eq!(status.state, State::Stuck, "{status:?}");
            let Stage::Stuck { problem: said } = &status.claims[0].stage else {
                panic!("{status:?}")
            };
            assert!(said.contains(problem), "{said}");
        }
        // A volume a plan annotated that is gone: its data is lost.
        let mut gone = cluster(&[], Some(("Retain", "Released", FROM, true, true)));
        let (sub_envs, _) = sub_envs(&gone, &[], &[]);
        gone.volumes.clear();
        let status = check(&sub_envs, &[], &gone).remove(0);
        assert_eq!(status.state, State::Stuck);
        assert!(format!("{:?}", status.claims[0].stage).contains("volume pv-data is gone"));
    }

    /// A sub-env without claims of its own, in a namespace with an unlabelled claim on a
    /// Delete volume: the advice to redeploy says to keep that claim first; once it is
    /// kept (Retain), it no longer does.
    #[test]
    fn redeploy_advice_keeps_unlabelled_claims_first() {
        let mut inventory = cluster(&[], None);
        inventory.misplaced.push(MisplacedObject {
            namespace: FROM.into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            owner: owner(),
            target: TO.into(),
        });
        inventory.claims.push(Claim {
            namespace: FROM.into(),
            name: "scratch".into(),
            volume: Some("pv-scratch".into()),
            owner: None,
            deleted_at: None,
            ephemeral_pod: None,
        });
        inventory
            .volumes
            .insert("pv-scratch".into(), Volume::with_policy("Delete"));
        let before = status(&inventory);
        assert_eq!(before.state, State::NotStarted);
        assert!(
            before.next.starts_with(&format!(
                "no volume to keep: move it with simple-container {} or later",
                crate::simple_container::releases::KEEPS_NAMESPACE
            ))
                && before.next.contains(
                    "but first keep claim(s) scratch (volume pv-scratch) in shop: they carry no stack labels"
                ),
            "{}",
            before.next
        );
        inventory
            .volumes
            .insert("pv-scratch".into(), Volume::with_policy("Retain"));
        assert!(!status(&inventory).next.contains("scratch"));
    }

    /// A sub-env's generic ephemeral volumes (its claims controlled by a Pod, labelled
    /// with its stack as simple-container writes them): never a volume to hand over or to
    /// keep, even on a Delete volume; named as left out. An unlabelled one is not kept
    /// either.
    #[test]
    fn ephemeral_claims_are_never_handed_over_nor_kept() {
        let mut inventory = cluster(
            &[(FROM, "data", Some("pv-data"), false)],
            Some(("Delete", "Bound", FROM, true, false)),
        );
        for (name, owner, volume) in [
            (
                "web-7f9c-x2k4p-scratch",
                Some(crate::simple_container::labels::Owner::new(
                    "shop-tenant-a",
                    "tenant-a",
                )),
                "pv-scratch",
            ),
            ("web-1a2b-q9w8e-cache", None, "pv-cache"),
        ] {
            inventory.claims.push(Claim {
                namespace: FROM.into(),
                name: name.into(),
                volume: Some(volume.into()),
                owner,
                deleted_at: None,
                ephemeral_pod: Some(name.rsplit_once('-').unwrap().0.into()),
            });
            inventory
                .volumes
                .insert(volume.into(), Volume::with_policy("Delete"));
        }
        let (sub_envs, unlabelled) = sub_envs(&inventory, &[], &[]);
        assert_eq!(sub_envs.len(), 1);
        let names: Vec<&str> = sub_envs[0].claims.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["data"]);
        assert_eq!(
            sub_envs[0].ephemeral_claims,
            [EphemeralClaim {
                name: "web-7f9c-x2k4p-scratch".into(),
                pod: "web-7f9c-x2k4p".into(),
            }]
        );
        assert!(unlabelled.is_empty(), "{unlabelled:?}");
        let status = status(&inventory);
        assert_eq!(status.claims.len(), 1, "{:?}", status.claims);
        assert!(!status.next.contains("cache"), "{}", status.next);
    }

    /// Two claims, one on Retain and one on Delete: both are handed over, only the Delete
    /// one needs keeping; a claim handed over while the other is already bound in the new
    /// namespace means the redeploy ran half-way through: stuck.
    #[test]
    fn a_sub_env_is_as_far_as_its_least_advanced_claim() {
        let mut inventory = cluster(
            &[
                (FROM, "data", Some("pv-data"), false),
                (FROM, "cache", Some("pv-cache"), false),
            ],
            Some(("Delete", "Bound", FROM, true, false)),
        );
        inventory
            .volumes
            .insert("pv-cache".into(), Volume::with_policy("Retain"));
        let status = status(&inventory);
        assert_eq!(status.state, State::NotStarted);
        let stages: Vec<_> = status
            .claims
            .iter()
            .map(|c| serde_json::to_value(&c.stage).unwrap()["stage"].clone())
            .collect();
        assert_eq!(stages, ["kept", "not-started"]);
        assert!(
            status
                .next
                .contains("nsguard migrate plan --stack shop-tenant-a/tenant-a")
        );

        let stages = |claims: &[(&str, Stage)]| -> Vec<ClaimStatus> {
            claims
                .iter()
                .map(|(name, stage)| ClaimStatus {
                    name: (*name).into(),
                    volume: format!("pv-{name}"),
                    stage: stage.clone(),
                })
                .collect()
        };
        assert_eq!(
            state(&stages(&[("a", Stage::Done), ("b", Stage::Kept)]), 0),
            State::Stuck
        );
        assert_eq!(
            state(&stages(&[("a", Stage::Done), ("b", Stage::Reserved)]), 0),
            State::HandedOver
        );
        assert_eq!(state(&stages(&[("a", Stage::Done)]), 2), State::Redeployed);
        assert_eq!(state(&[], 3), State::NotStarted);
    }
}
