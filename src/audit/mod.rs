//! The audit: what is already at risk in a cluster, before anyone turns enforcement on.
//!
//! Over an [`Inventory`] (every namespaced object with stack labels, the namespaces, and
//! the claims and volumes whose data a namespace delete would destroy), with the same
//! decisions the webhook makes: [`namespace_guard::decide`] for a namespace holding several stacks,
//! [`placement::place`] for a sub-env object outside its namespace.

pub mod misplaced;
pub mod policy_report;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::decisions::data_at_risk;
pub use crate::decisions::data_at_risk::Claim;
use crate::decisions::namespace_guard::{self, GuardConfig, OwnerTally, Unverified, Verdict};
use crate::decisions::placement::{self, Placement};
use crate::simple_container::labels::{LabelScheme, Owner, StackRef};
pub use misplaced::{Misplaced, MisplacedObject, MisplacedRef, MisplacedSubEnv};

/// A namespaced object with stack labels, as the audit reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledObject {
    pub namespace: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub controller_owned: bool,
}

impl LabelledObject {
    /// `Kind.group`, or `Kind` for the core group.
    fn qualified_kind(&self) -> String {
        crate::documents::qualified_kind(&self.kind, crate::documents::api_group(&self.api_version))
    }
}

/// The only annotations the audit reads of an object: placement's opt-out, which
/// ServiceAccount a token Secret belongs to, and the break-glass the volume guard reads on
/// a claim (a dump keeps it for `can-delete-claim`).
const READ_ANNOTATIONS: [&str; 3] = [
    placement::SKIP_ANNOTATION,
    "kubernetes.io/service-account.name",
    crate::decisions::exemptions::BREAK_GLASS_ANNOTATION,
];

/// `annotations` without what the audit does not read. Objects applied with
/// `kubectl apply` carry their whole last-applied configuration in an annotation, KiBs
/// each: kept, they would be most of an audit's memory.
pub fn read_annotations(annotations: BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations
        .into_iter()
        .filter(|(key, _)| READ_ANNOTATIONS.contains(&key.as_str()))
        .collect()
}

/// An object without stack labels, as the lingering-namespace check reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnownedObject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    /// `creationTimestamp`, RFC 3339.
    pub created: Option<String>,
}

impl UnownedObject {
    /// What Kubernetes itself puts in every namespace, or what holds nothing of value:
    /// the `kube-root-ca.crt` ConfigMap, the `default` ServiceAccount and its token
    /// Secrets, and Events. A namespace left with only these is empty.
    pub fn is_kubernetes_default(&self) -> bool {
        let core = self.api_version == "v1";
        match self.kind.as_str() {
            "ConfigMap" => core && self.name == "kube-root-ca.crt",
            "ServiceAccount" => core && self.name == "default",
            "Secret" => {
                core && self
                    .annotations
                    .get("kubernetes.io/service-account.name")
                    .is_some_and(|sa| sa == "default")
            }
            "Event" => core || self.api_version == "events.k8s.io/v1",
            _ => false,
        }
    }

    /// A `wgpolicyk8s.io` PolicyReport (any version, anyone's): what policy tools, nsguard
    /// among them, write about the namespace.
    pub fn is_policy_report(&self) -> bool {
        self.kind == "PolicyReport"
            && crate::documents::api_group(&self.api_version) == "wgpolicyk8s.io"
    }
}

/// What the audit (and `nsguard dump`) reads of a Namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceMeta {
    /// simple-container labels the namespaces it creates.
    pub labels: BTreeMap<String, String>,
    /// The guard's break-glass is one.
    pub annotations: BTreeMap<String, String>,
    /// `creationTimestamp` (RFC 3339, as the API writes it).
    pub created: Option<String>,
}

/// What the audit reads from a cluster or a dump: what its findings need, never every
/// object. Labelled objects go in through [`Inventory::add`], which counts each in its
/// namespace's [`OwnerTally`] and keeps it only when it is misplaced; memory grows with
/// namespaces, owners, kinds and findings, not with the objects read.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// The namespaces that exist; `None` when the source does not say (a dump without
    /// Namespace objects).
    pub namespaces: Option<BTreeSet<String>>,
    /// Each Namespace's metadata, by name.
    pub namespace_meta: BTreeMap<String, NamespaceMeta>,
    /// The owners of each namespace holding labelled objects, counted.
    pub owners: BTreeMap<String, OwnerTally>,
    /// Sub-env objects outside their namespace, judged as they were read, kept by
    /// sub-env.
    pub misplaced: Misplaced,
    /// Every labelled object, kept only by [`Inventory::keeping_objects`] (`nsguard dump`
    /// writes them); `None` for the audit, which reads only the counts.
    pub objects: Option<Vec<LabelledObject>>,
    /// The objects without stack labels in the namespaces that may be lingering (a
    /// simple-container Namespace without any labelled object): all of them from a dump,
    /// only those namespaces' from a live cluster. Secrets and Events are not read live.
    pub unowned: BTreeMap<String, Vec<UnownedObject>>,
    pub claims: Vec<Claim>,
    /// PersistentVolumes by name (a cluster holds few: each is a disk).
    pub volumes: BTreeMap<String, crate::decisions::data_at_risk::Volume>,
    /// Resource types that could not be read: their objects are unknown.
    pub unverified: Vec<Unverified>,
    pub resource_types: usize,
}

impl Inventory {
    /// An inventory that also keeps every labelled object, for writing a dump.
    pub fn keeping_objects() -> Inventory {
        Inventory {
            objects: Some(Vec::new()),
            ..Inventory::default()
        }
    }

    /// Take in one labelled object: count it under its owner in its namespace, keep it if
    /// it is misplaced (the webhook's placement decision) and, when asked, keep it whole.
    /// An object without an owner is not counted.
    pub fn add(&mut self, object: LabelledObject, scheme: &LabelScheme) {
        let Some(owner) = scheme.owner(&object.labels) else {
            return;
        };
        let tally = match self.owners.get_mut(&object.namespace) {
            Some(tally) => tally,
            None => self.owners.entry(object.namespace.clone()).or_default(),
        };
        tally.add(&owner, &object.qualified_kind(), &object.name);
        if let Some(misplaced) = misplaced(&object, scheme) {
            self.misplaced.push(misplaced);
        }
        if let Some(all) = &mut self.objects {
            all.push(object);
        }
    }

    /// Take in one object without stack labels found in `namespace` (a namespace that
    /// may be lingering). Only what the lingering check reads is kept: what Kubernetes
    /// puts in every namespace, PolicyReports, and the first other object, which alone
    /// settles that the namespace is not empty. A namespace of 10,000 ConfigMaps keeps one.
    pub fn add_unowned(&mut self, namespace: &str, object: UnownedObject) {
        let left = match self.unowned.get_mut(namespace) {
            Some(left) => left,
            None => self.unowned.entry(namespace.to_owned()).or_default(),
        };
        let plain = |o: &UnownedObject| o.is_kubernetes_default() || o.is_policy_report();
        if plain(&object) || left.iter().all(plain) {
            left.push(object);
        }
    }

    /// Labelled objects counted, in every namespace.
    pub fn labelled(&self) -> usize {
        self.owners.values().map(OwnerTally::objects).sum()
    }
}

/// One owner of a shared namespace, with how many of its objects are there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerCount {
    pub app_name: String,
    pub env: String,
    pub objects: usize,
}

/// Something at risk, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Finding {
    /// A namespace holding objects of two or more stacks: the guard refuses its delete,
    /// and a delete past the guard destroys every stack inside.
    SharedNamespace {
        namespace: String,
        owners: Vec<OwnerCount>,
        /// Claims of sub-envs here whose move would delete their volume
        /// ([`Finding::MoveDestroysData`]): moving the sub-envs out must keep them first.
        #[serde(skip_serializing_if = "is_zero")]
        volumes_to_keep: usize,
    },
    /// A sub-env with objects outside its own namespace: all of them in one namespace,
    /// which one redeploy moves together (`objects`: how many, by kind, and each one).
    Misplaced {
        namespace: String,
        owner: StackRef,
        target: String,
        /// Whether the target namespace exists; `None` when the source does not say.
        target_exists: Option<bool>,
        /// Claims of the sub-env here whose move would delete their volume
        /// ([`Finding::MoveDestroysData`]): the redeploy that moves it moves them.
        #[serde(skip_serializing_if = "is_zero")]
        volumes_to_keep: usize,
        /// Claims of the sub-env here, whatever their reclaim policy: the move gives each a
        /// new, empty volume unless its volume is handed over first.
        #[serde(skip_serializing_if = "is_zero")]
        claims: usize,
        #[serde(flatten)]
        objects: SubEnvObjects,
    },
    /// A claim in a shared namespace bound to a volume that is deleted with it.
    DataAtRisk {
        namespace: String,
        claim: String,
        volume: String,
        reclaim_policy: String,
    },
    /// A misplaced sub-env's claim Bound to a volume with reclaim policy `Delete`:
    /// redeploying the sub-env into its namespace makes Pulumi replace the claim (a claim
    /// cannot move between namespaces), and deleting the old claim deletes the volume and
    /// its data, unless the volume is kept first (simple-container PR #230's caveat). Also
    /// a claim without stack labels on such a volume in a namespace that sub-envs move out
    /// of: it may be one of theirs (`owner` and `target` unknown).
    MoveDestroysData {
        namespace: String,
        claim: String,
        volume: String,
        reclaim_policy: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        owner: Option<StackRef>,
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    /// A namespace simple-container created that holds nothing of any stack any more,
    /// only what Kubernetes puts in every namespace: safe to delete, and the guard allows
    /// it. simple-container 2026.5.8 and later keep namespaces on stack destroy (PR #230).
    LingeringNamespace {
        namespace: String,
        /// The stack the Namespace's labels name.
        owner: StackRef,
        /// The newest remaining object's creation time, else the Namespace's: it has held
        /// nothing of its stack since at least then. `None` when neither is known.
        #[serde(skip_serializing_if = "Option::is_none")]
        empty_since: Option<String>,
        /// What is left (`Kind/name`), all of it put there by Kubernetes.
        left: Vec<String>,
    },
}

/// A misplaced sub-env's objects in a finding, as JSON writes them: `objectCount`,
/// `kinds` (how many of each), and `objects` (every one: `apiVersion`, `kind`, `name`),
/// written as they are serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubEnvObjects(pub std::sync::Arc<MisplacedSubEnv>);

impl Serialize for SubEnvObjects {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let sub_env = &self.0;
        let kinds: BTreeMap<String, usize> = sub_env.by_kind().into_iter().collect();
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("objectCount", &sub_env.len())?;
        map.serialize_entry("kinds", &kinds)?;
        map.serialize_entry("objects", &misplaced::ObjectList(sub_env))?;
        map.end()
    }
}

/// How many names a sub-env's line in the text report gives (`--objects` lists all).
pub const EXAMPLES: usize = 3;

impl Finding {
    /// Every finding type, as JSON and the metrics name them.
    pub const TYPES: [&'static str; 5] = [
        "SharedNamespace",
        "Misplaced",
        "DataAtRisk",
        "LingeringNamespace",
        "MoveDestroysData",
    ];

    /// The finding's type, as JSON names it (`type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::SharedNamespace { .. } => Self::TYPES[0],
            Finding::Misplaced { .. } => Self::TYPES[1],
            Finding::DataAtRisk { .. } => Self::TYPES[2],
            Finding::LingeringNamespace { .. } => Self::TYPES[3],
            Finding::MoveDestroysData { .. } => Self::TYPES[4],
        }
    }

    pub fn namespace(&self) -> &str {
        match self {
            Finding::SharedNamespace { namespace, .. }
            | Finding::Misplaced { namespace, .. }
            | Finding::DataAtRisk { namespace, .. }
            | Finding::MoveDestroysData { namespace, .. }
            | Finding::LingeringNamespace { namespace, .. } => namespace,
        }
    }

    /// What was found, in one line (without the namespace, which groups it); with `now`,
    /// also how many days a lingering namespace has been empty.
    pub fn summary(&self, now: Option<Timestamp>) -> String {
        match self {
            Finding::SharedNamespace { owners, .. } => format!(
                "shared by {}",
                owners
                    .iter()
                    .map(|o| format!(
                        "{}/{} ({} object{})",
                        o.app_name,
                        o.env,
                        o.objects,
                        if o.objects == 1 { "" } else { "s" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Finding::Misplaced { owner, objects, .. } => {
                let sub_env = &objects.0;
                let kinds: Vec<String> = sub_env
                    .by_kind()
                    .iter()
                    .map(|(kind, n)| format!("{n} {kind}"))
                    .collect();
                let mut names: Vec<String> = sub_env
                    .objects()
                    .take(EXAMPLES)
                    .map(|o| format!("{}/{}", o.kind, o.name))
                    .collect();
                if sub_env.len() > EXAMPLES {
                    names.push(format!("and {} more", sub_env.len() - EXAMPLES));
                }
                format!(
                    "sub-env {}/{} (parent-env {}): {} object{} outside its namespace ({}): {}",
                    owner.app_name,
                    owner.env,
                    owner.parent_env,
                    sub_env.len(),
                    if sub_env.len() == 1 { "" } else { "s" },
                    kinds.join(", "),
                    names.join(", ")
                )
            }
            Finding::DataAtRisk { claim, .. } => {
                format!("PersistentVolumeClaim {claim:?}: its data dies with the namespace")
            }
            Finding::MoveDestroysData {
                claim,
                volume,
                owner: Some(owner),
                ..
            } => format!(
                "PersistentVolumeClaim {claim:?} of sub-env {}/{}: moving the sub-env deletes volume {volume:?} and its data",
                owner.app_name, owner.env
            ),
            Finding::MoveDestroysData {
                claim,
                volume,
                owner: None,
                ..
            } => format!(
                "PersistentVolumeClaim {claim:?} carries no stack labels, in a namespace sub-envs move out of: if it is one of theirs, the move deletes volume {volume:?} and its data"
            ),
            Finding::LingeringNamespace {
                owner,
                empty_since,
                left,
                ..
            } => format!(
                "left behind by stack {}/{}{}: holds nothing of any stack{}{}",
                owner.app_name,
                owner.env,
                if owner.parent_env.is_empty() {
                    String::new()
                } else {
                    format!(" (parent-env {})", owner.parent_env)
                },
                empty_since.as_ref().map_or(String::new(), |t| {
                    let days = now.zip(t.parse::<Timestamp>().ok()).map_or(
                        String::new(),
                        |(now, since)| {
                            let days = now.duration_since(since).as_secs() / 86_400;
                            format!(", {days} day{}", if days == 1 { "" } else { "s" })
                        },
                    );
                    format!(" (since {t} or earlier{days})")
                }),
                if left.is_empty() {
                    String::new()
                } else {
                    format!(", only {}", left.join(", "))
                }
            ),
        }
    }

    /// What a person should do about it.
    pub fn advice(&self) -> String {
        match self {
            Finding::SharedNamespace {
                namespace,
                owners,
                volumes_to_keep,
            } => format!(
                "{} stacks share it: a delete would destroy them all; {} before deleting any{}",
                owners.len(),
                crate::simple_container::releases::how_to_move_each(),
                keep_first(*volumes_to_keep, &format!("-n {namespace}"))
            ),
            Finding::Misplaced {
                target,
                target_exists,
                volumes_to_keep,
                claims,
                owner,
                ..
            } => {
                let stack = format!("{}/{}", owner.app_name, owner.env);
                let exists = match target_exists {
                    Some(false) => ", which does not exist yet (the move creates it)",
                    _ => "",
                };
                let volumes = match (*claims, *volumes_to_keep) {
                    (0, _) => String::new(),
                    (claims, 0) => format!(
                        "; its {claims} claim{} need{} their volume handed over, or the move starts {} on an empty one",
                        if claims == 1 { "" } else { "s" },
                        if claims == 1 { "s" } else { "" },
                        if claims == 1 { "it" } else { "each" },
                    ),
                    (claims, keep) => format!(
                        "; its {claims} claim{} need{} their volume handed over, and {keep} of those volumes (reclaim policy Delete) would be destroyed by the move without it (MoveDestroysData)",
                        if claims == 1 { "" } else { "s" },
                        if claims == 1 { "s" } else { "" },
                    ),
                };
                format!(
                    "belongs in {target:?}{exists}: move it with `nsguard migrate plan --stack {stack}`{volumes}"
                )
            }
            Finding::MoveDestroysData {
                namespace,
                volume,
                target,
                owner,
                ..
            } => {
                let keep = format!(
                    "`kubectl patch pv {volume} -p '{{\"spec\":{{\"persistentVolumeReclaimPolicy\":\"Retain\"}}}}'`"
                );
                match (target, owner) {
                    (Some(target), Some(owner)) => format!(
                        "the move into {target:?} (`sc deploy` once its Namespace is forgotten in its Pulumi state) replaces this claim (a claim cannot change namespace: Pulumi creates the new one there and deletes this one), and volume {volume:?} (reclaim policy Delete) is deleted with it; hand it over before the move: `nsguard migrate plan --stack {}/{}` writes the checked steps (keep it, stop the sub-env, release the claim, reserve the volume for the claim the redeploy creates); at the least keep it now: {keep}",
                        owner.app_name, owner.env
                    ),
                    _ => format!(
                        "if a sub-env that moves out of this namespace uses it, its redeploy deletes it with volume {volume:?} (reclaim policy Delete); keep it now: {keep} (`nsguard migrate plan -n {namespace}` does, but hands over only claims labelled with the sub-env's stack)"
                    ),
                }
            }
            Finding::DataAtRisk { volume, .. } => format!(
                "volume {volume:?} has reclaim policy Delete: deleting the namespace destroys its data for good; set the PersistentVolume's persistentVolumeReclaimPolicy to Retain first"
            ),
            Finding::LingeringNamespace { namespace, .. } => format!(
                "safe to delete, and the guard allows it; nsguard does not read Secrets in a cluster, so check `kubectl get secrets -n {namespace}` first; `nsguard audit --cleanup-script` prints the command"
            ),
        }
    }
}

/// What one object of a misplaced sub-env's finding says on its own (a PolicyReport's
/// result is per object): which object, where it belongs, and how to move it.
pub fn misplaced_object_message(finding: &Finding, object: MisplacedRef<'_>) -> String {
    let Finding::Misplaced {
        target_exists,
        volumes_to_keep,
        claims,
        ..
    } = finding
    else {
        return format!("{}: {}", finding.summary(None), finding.advice());
    };
    let owner = object.owner;
    let stack = format!("{}/{}", owner.app_name, owner.env);
    let exists = match target_exists {
        Some(false) => ", which does not exist yet (the move creates it)",
        _ => "",
    };
    format!(
        "{} {:?} of sub-env {stack} (parent-env {}) is misplaced: belongs in {:?}{exists}: {}{}",
        object.kind,
        object.name,
        owner.parent_env,
        object.target,
        crate::simple_container::releases::how_to_move(&stack, *claims > 0),
        keep_first(*volumes_to_keep, &format!("--stack {stack}"))
    )
}

/// The caveat on advice that says to redeploy, when `volumes` claims of the sub-envs it
/// moves sit on volumes the move deletes; `select` picks them for `nsguard migrate plan`.
fn keep_first(volumes: usize, select: &str) -> String {
    match volumes {
        0 => String::new(),
        n => format!(
            "; but first keep the {n} volume{} that the move would delete with {} claim{} (reclaim policy Delete: see MoveDestroysData) and hand {} over: `nsguard migrate plan {select}`",
            if n == 1 { "" } else { "s" },
            if n == 1 { "its" } else { "their" },
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" },
        ),
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The audit's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Namespaces looked at.
    pub namespaces: usize,
    pub resource_types: usize,
    /// Labelled objects looked at.
    pub objects: usize,
    pub unverified: Vec<Unverified>,
    /// Sorted by namespace.
    pub findings: Vec<Finding>,
    /// The sub-envs with objects outside their own namespace, each once per namespace:
    /// placement in `enforce` refuses every new object of theirs there, so a deploy of
    /// them fails until they are moved (simple-container 2026.5.12 and later keep such a
    /// sub-env where it is).
    pub sub_envs_outside: Vec<SubEnvOutside>,
}

/// A sub-env with objects outside its own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubEnvOutside {
    /// `app-name/env`.
    pub stack: String,
    /// Where its objects are.
    pub namespace: String,
    /// Its own namespace.
    pub target: String,
    pub objects: usize,
}

impl Report {
    /// What placement in `enforce` would refuse, for a person: `None` when nothing.
    pub fn enforcement_impact(&self) -> Option<String> {
        let outside = &self.sub_envs_outside;
        if outside.is_empty() {
            return None;
        }
        let (s, their, them) = match outside.len() {
            1 => ("", "its", "it"),
            _ => ("s", "their", "them"),
        };
        let mut names: Vec<String> = outside
            .iter()
            .take(10)
            .map(|o| format!("{} in {} (belongs in {})", o.stack, o.namespace, o.target))
            .collect();
        if outside.len() > 10 {
            names.push(format!("and {} more", outside.len() - 10));
        }
        Some(format!(
            "placement in enforce would refuse every new object of {} sub-env{s} still outside {their} namespace, so a deploy of {them} would fail: {}. Before enforce, {}; or keep placement in warn",
            outside.len(),
            names.join(", "),
            crate::simple_container::releases::how_to_move_each(),
        ))
    }

    /// How many findings of each type, every type listed.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        Finding::TYPES
            .iter()
            .map(|t| (*t, self.findings.iter().filter(|f| f.kind() == *t).count()))
            .collect()
    }
}

/// Audit `inventory`, every namespace or only those in `only` (when not empty).
pub fn audit(inventory: &Inventory, scheme: &LabelScheme, only: &[String]) -> Report {
    let wanted = |ns: &str| only.is_empty() || only.iter().any(|o| o == ns);
    let occupied: BTreeMap<&str, &OwnerTally> = inventory
        .owners
        .iter()
        .filter(|(ns, _)| wanted(ns))
        .map(|(ns, tally)| (ns.as_str(), tally))
        .collect();
    let mut namespaces: BTreeSet<&str> = occupied.keys().copied().collect();
    if let Some(existing) = &inventory.namespaces {
        namespaces.extend(existing.iter().map(String::as_str).filter(|ns| wanted(ns)));
    }
    // One finding per sub-env and namespace it is outside in, with all its objects.
    let mut misplaced: Vec<&std::sync::Arc<MisplacedSubEnv>> = inventory
        .misplaced
        .sub_envs()
        .iter()
        .filter(|m| wanted(&m.namespace))
        .collect();
    misplaced.sort_by(|a, b| {
        (&a.namespace, &a.owner.app_name, &a.owner.env).cmp(&(
            &b.namespace,
            &b.owner.app_name,
            &b.owner.env,
        ))
    });
    let moves = moves_destroying_data(&misplaced, inventory);
    // How many of those claims each namespace, and each sub-env in it, must keep before
    // moving out: counted once, not per finding (a legacy namespace can hold 100,000
    // misplaced objects). A claim whose stack is unknown (`None`) may move with any
    // sub-env of its namespace.
    let mut in_namespace: BTreeMap<&str, usize> = BTreeMap::new();
    // (namespace, (app-name, env) of the sub-env, or None for a claim of no known stack)
    let mut of_stack: BTreeMap<StackKey, usize> = BTreeMap::new();
    for finding in &moves {
        if let Finding::MoveDestroysData {
            namespace, owner, ..
        } = finding
        {
            let owner = owner
                .as_ref()
                .map(|o| (o.app_name.as_str(), o.env.as_str()));
            *in_namespace.entry(namespace).or_default() += 1;
            *of_stack.entry((namespace, owner)).or_default() += 1;
        }
    }
    let keep_in = |namespace: &str, owner: Option<&StackRef>| -> usize {
        let of = |owner| of_stack.get(&(namespace, owner)).copied().unwrap_or(0);
        match owner {
            None => in_namespace.get(namespace).copied().unwrap_or(0),
            Some(o) => of(Some((o.app_name.as_str(), o.env.as_str()))) + of(None),
        }
    };
    let mut findings = Vec::new();
    let mut shared = BTreeSet::new();
    for (namespace, tally) in &occupied {
        // The guard's own decision, under its default policy.
        let decision = namespace_guard::decide_owners(
            &GuardConfig::default(),
            namespace,
            tally.summaries(),
            &[],
        );
        if decision.verdict == Verdict::MultipleOwners {
            shared.insert(*namespace);
            findings.push(Finding::SharedNamespace {
                namespace: (*namespace).to_owned(),
                owners: decision
                    .owners
                    .iter()
                    .map(|o| OwnerCount {
                        app_name: o.owner.app_name.clone(),
                        env: o.owner.env.clone(),
                        objects: o.total,
                    })
                    .collect(),
                volumes_to_keep: keep_in(namespace, None),
            });
        }
    }
    findings.extend(misplaced.iter().map(|m| {
        Finding::Misplaced {
            namespace: m.namespace.clone(),
            owner: m.owner.clone(),
            target: m.target.clone(),
            target_exists: inventory
                .namespaces
                .as_ref()
                .map(|ns| ns.contains(&m.target)),
            volumes_to_keep: keep_in(&m.namespace, Some(&m.owner)),
            claims: m.claims().count(),
            objects: SubEnvObjects(std::sync::Arc::clone(m)),
        }
    }));
    let sub_envs_outside = misplaced
        .iter()
        .map(|m| SubEnvOutside {
            stack: m.stack(),
            namespace: m.namespace.clone(),
            target: m.target.clone(),
            objects: m.len(),
        })
        .collect();
    let claims = inventory
        .claims
        .iter()
        .filter(|c| shared.contains(c.namespace.as_str()));
    for risk in data_at_risk::at_risk(claims, &inventory.volumes) {
        findings.push(Finding::DataAtRisk {
            namespace: risk.namespace,
            claim: risk.claim,
            volume: risk.volume,
            reclaim_policy: risk.reclaim_policy,
        });
    }
    findings.extend(moves);
    // What could not be read might be in any namespace: only a complete read can call a
    // namespace empty.
    if inventory.unverified.is_empty() {
        for namespace in namespaces.iter().filter(|ns| !occupied.contains_key(*ns)) {
            if let Some(finding) = lingering(inventory, scheme, namespace) {
                findings.push(finding);
            }
        }
    }
    findings.sort_by(|a, b| a.namespace().cmp(b.namespace()));
    Report {
        namespaces: namespaces.len(),
        resource_types: inventory.resource_types,
        objects: occupied.values().map(|t| t.objects()).sum(),
        unverified: inventory.unverified.clone(),
        findings,
        sub_envs_outside,
    }
}

/// A namespace and the (app-name, env) of a stack in it, `None` when unknown.
type StackKey<'a> = (&'a str, Option<(&'a str, &'a str)>);

/// The claims Bound to a volume with reclaim policy `Delete` that the redeploy moving a
/// sub-env out would delete: the misplaced sub-envs' own claims (among `misplaced`), and
/// the claims without stack labels in the namespaces they move out of, which may be
/// theirs.
fn moves_destroying_data(
    misplaced: &[&std::sync::Arc<MisplacedSubEnv>],
    inventory: &Inventory,
) -> Vec<Finding> {
    let moving: BTreeMap<(&str, &str), &MisplacedSubEnv> = misplaced
        .iter()
        .flat_map(|m| {
            m.claims()
                .map(move |claim| ((m.namespace.as_str(), claim), &***m))
        })
        .collect();
    let left: BTreeSet<&str> = misplaced.iter().map(|m| m.namespace.as_str()).collect();
    let moved = inventory.claims.iter().filter(|c| {
        moving.contains_key(&(c.namespace.as_str(), c.name.as_str()))
            || (!c.owned() && left.contains(c.namespace.as_str()))
    });
    data_at_risk::at_risk(moved, &inventory.volumes)
        .into_iter()
        .map(|risk| {
            let mover = moving.get(&(risk.namespace.as_str(), risk.claim.as_str()));
            Finding::MoveDestroysData {
                owner: mover.map(|m| m.owner.clone()),
                target: mover.map(|m| m.target.clone()),
                namespace: risk.namespace,
                claim: risk.claim,
                volume: risk.volume,
                reclaim_policy: risk.reclaim_policy,
            }
        })
        .collect()
}

/// `namespace` (which holds no labelled object) as a lingering namespace: its Namespace
/// carries a stack's labels and nothing but Kubernetes' defaults is left in it.
fn lingering(inventory: &Inventory, scheme: &LabelScheme, namespace: &str) -> Option<Finding> {
    let meta = inventory.namespace_meta.get(namespace)?;
    let labels = &meta.labels;
    let stack = scheme.read(labels)?;
    let left = inventory
        .unowned
        .get(namespace)
        .map_or(&[][..], Vec::as_slice);
    // A PolicyReport describes the namespace, it is not in it for a stack: nsguard's own
    // report of this very finding, or another tool's, never makes a namespace non-lingering.
    let left: Vec<&UnownedObject> = left.iter().filter(|o| !o.is_policy_report()).collect();
    if !left.iter().all(|o| o.is_kubernetes_default()) {
        return None;
    }
    let empty_since = left
        .iter()
        .filter_map(|o| o.created.clone())
        .max()
        .or_else(|| meta.created.clone());
    let mut left: Vec<String> = left
        .into_iter()
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect();
    left.sort();
    Some(Finding::LingeringNamespace {
        namespace: namespace.to_owned(),
        owner: StackRef {
            app_name: stack.app_name.to_owned(),
            env: stack.env.to_owned(),
            parent_env: stack.parent_env.unwrap_or_default().to_owned(),
        },
        empty_since,
        left,
    })
}

/// The webhook's placement decision for an object already in the cluster.
fn misplaced(object: &LabelledObject, scheme: &LabelScheme) -> Option<MisplacedObject> {
    if placement::exempt(Some(&object.annotations), object.controller_owned) {
        return None;
    }
    let Placement::Misplaced(m) = placement::place(scheme, &object.labels, &object.namespace)
    else {
        return None;
    };
    let Owner { app_name, env } = m.owner;
    Some(MisplacedObject {
        namespace: object.namespace.clone(),
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        name: object.name.clone(),
        owner: StackRef {
            app_name,
            env,
            parent_env: m.parent_env,
        },
        target: m.target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::data_at_risk::Volume;

    fn object(namespace: &str, kind: &str, name: &str, labels: &[(&str, &str)]) -> LabelledObject {
        LabelledObject {
            namespace: namespace.into(),
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            annotations: BTreeMap::new(),
            controller_owned: false,
        }
    }

    /// An inventory that took in `objects`, as a read of the cluster does.
    fn with_objects(objects: Vec<LabelledObject>) -> Inventory {
        let mut inventory = Inventory::default();
        for object in objects {
            inventory.add(object, &LabelScheme::default());
        }
        inventory
    }

    const PARENT: [(&str, &str); 2] = [
        ("simple-container-com/app-name", "shop"),
        ("simple-container-com/env", "production"),
    ];
    const TENANT: [(&str, &str); 3] = [
        ("simple-container-com/app-name", "shop-tenant-a"),
        ("simple-container-com/env", "tenant-a"),
        ("simple-container-com/parent-env", "production"),
    ];

    #[test]
    fn a_shared_namespace_its_misplaced_objects_and_its_data_at_risk() {
        let inventory = with_objects(vec![
            object("shop", "Service", "shop", &PARENT),
            object("shop", "ConfigMap", "shop-tenant-a", &TENANT),
            object("shop", "PersistentVolumeClaim", "data", &TENANT),
            object("clean", "Service", "clean", &PARENT),
        ]);
        let inventory = Inventory {
            namespaces: Some(["shop", "clean"].map(String::from).into()),
            claims: vec![Claim {
                deleted_at: None,
                ephemeral_pod: None,
                namespace: "shop".into(),
                name: "data".into(),
                volume: Some("pv-1".into()),
                owner: Some(crate::simple_container::labels::Owner::new(
                    "shop-tenant-a",
                    "tenant-a",
                )),
            }],
            volumes: [("pv-1".to_owned(), Volume::with_policy("Delete"))].into(),
            ..inventory
        };
        let report = audit(&inventory, &LabelScheme::default(), &[]);
        assert_eq!(report.namespaces, 2);
        assert_eq!(report.objects, 4);
        let types: Vec<_> = report
            .findings
            .iter()
            .map(|f| {
                serde_json::to_value(f).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            types,
            [
                "SharedNamespace",
                "Misplaced",
                "DataAtRisk",
                "MoveDestroysData"
            ]
        );
        // One finding for the sub-env, with both of its objects.
        let Finding::Misplaced {
            target,
            target_exists,
            claims,
            ..
        } = &report.findings[1]
        else {
            panic!()
        };
        assert_eq!(
            (target.as_str(), *target_exists, *claims),
            ("shop-tenant-a", Some(false), 1)
        );
        let json = serde_json::to_value(&report.findings[1]).unwrap();
        assert_eq!(json["objectCount"], 2, "{json}");
        assert_eq!(
            json["kinds"],
            serde_json::json!({"ConfigMap": 1, "PersistentVolumeClaim": 1})
        );
        assert_eq!(
            json["objects"],
            serde_json::json!([
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "shop-tenant-a"},
                {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}
            ])
        );
        assert_eq!(json["owner"]["appName"], "shop-tenant-a");
        assert_eq!(report.sub_envs_outside[0].objects, 2);
        assert!(report.findings[2].advice().contains("Retain"));
        // `kind` is what serde writes as `type`.
        for finding in &report.findings {
            assert_eq!(
                serde_json::to_value(finding).unwrap()["type"],
                finding.kind()
            );
        }

        let only = audit(&inventory, &LabelScheme::default(), &["clean".to_owned()]);
        assert!(only.findings.is_empty());
        assert_eq!(only.namespaces, 1);
    }

    /// A sub-env with two claims in the shared namespace, one on a Delete volume and one
    /// on a Retain volume: only the first is lost by the redeploy that moves the sub-env,
    /// gets a finding of its own, and every piece of advice to redeploy says to keep it
    /// first; without such a claim the advice says nothing of volumes.
    #[test]
    fn a_move_that_deletes_a_volume_is_a_finding_and_the_redeploy_advice_says_so() {
        let inventory = with_objects(vec![
            object("shop", "Service", "shop", &PARENT),
            object("shop", "ConfigMap", "settings", &TENANT),
            object("shop", "PersistentVolumeClaim", "data", &TENANT),
            object("shop", "PersistentVolumeClaim", "cache", &TENANT),
        ]);
        let claim = |name: &str, volume: &str| Claim {
            deleted_at: None,
            ephemeral_pod: None,
            owner: Some(crate::simple_container::labels::Owner::new(
                "shop-tenant-a",
                "tenant-a",
            )),
            namespace: "shop".into(),
            name: name.into(),
            volume: Some(volume.into()),
        };
        let inventory = Inventory {
            claims: vec![claim("data", "pv-data"), claim("cache", "pv-cache")],
            volumes: [
                ("pv-data".to_owned(), Volume::with_policy("Delete")),
                ("pv-cache".to_owned(), Volume::with_policy("Retain")),
            ]
            .into(),
            ..inventory
        };
        let report = audit(&inventory, &LabelScheme::default(), &[]);
        let moves: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.kind() == "MoveDestroysData")
            .collect();
        assert_eq!(moves.len(), 1, "{:#?}", report.findings);
        let json = serde_json::to_value(moves[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "MoveDestroysData", "namespace": "shop", "claim": "data",
                "volume": "pv-data", "reclaimPolicy": "Delete", "target": "shop-tenant-a",
                "owner": {"appName": "shop-tenant-a", "env": "tenant-a", "parentEnv": "production"}})
        );
        let advice = moves[0].advice();
        assert!(
            advice.contains(r#"kubectl patch pv pv-data -p '{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}'"#)
                && advice.contains("`nsguard migrate plan --stack shop-tenant-a/tenant-a`"),
            "{advice}"
        );
        for finding in &report.findings {
            let advice = finding.advice();
            if advice.contains("redeploy") && finding.kind() != "MoveDestroysData" {
                assert!(
                    advice.contains("first keep the 1 volume that the move would delete")
                        && advice.contains("hand it over: `nsguard migrate plan "),
                    "{}: {advice}",
                    finding.kind()
                );
                assert_eq!(serde_json::to_value(finding).unwrap()["volumesToKeep"], 1);
            }
        }
        // The Retain claim is moved too, but loses nothing: no step, no caveat of its own.
        assert!(!report.findings.iter().any(|f| {
            matches!(f, Finding::MoveDestroysData { claim, .. } | Finding::DataAtRisk { claim, .. } if claim == "cache")
        }));

        // A claim without stack labels, in the namespace the sub-env moves out of, on a
        // Delete volume: it may be the sub-env's, so it is a finding too (stack unknown),
        // and the sub-env's advice counts it.
        let mut unlabelled = inventory.clone();
        unlabelled.claims.push(Claim {
            deleted_at: None,
            ephemeral_pod: None,
            namespace: "shop".into(),
            name: "scratch".into(),
            volume: Some("pv-scratch".into()),
            owner: None,
        });
        unlabelled
            .volumes
            .insert("pv-scratch".into(), Volume::with_policy("Delete"));
        let report = audit(&unlabelled, &LabelScheme::default(), &[]);
        let unknown = report
            .findings
            .iter()
            .find(|f| matches!(f, Finding::MoveDestroysData { claim, .. } if claim == "scratch"))
            .unwrap();
        let json = serde_json::to_value(unknown).unwrap();
        assert!(
            json.get("owner").is_none() && json.get("target").is_none(),
            "{json}"
        );
        assert!(unknown.advice().contains("kubectl patch pv pv-scratch"));
        assert!(unknown.summary(None).contains("carries no stack labels"));
        // A Pod's generic ephemeral volume, labelled with the sub-env or not, on a Delete
        // volume: its data goes with its Pod whatever moves. No finding, nothing to keep.
        let mut ephemeral = inventory.clone();
        for (name, owner) in [
            (
                "web-7f9c-x2k4p-tmp",
                Some(crate::simple_container::labels::Owner::new(
                    "shop-tenant-a",
                    "tenant-a",
                )),
            ),
            ("web-7f9c-x2k4p-cache", None),
        ] {
            ephemeral.claims.push(Claim {
                deleted_at: None,
                ephemeral_pod: Some("web-7f9c-x2k4p".into()),
                namespace: "shop".into(),
                name: name.into(),
                volume: Some(format!("pv-{name}")),
                owner,
            });
            ephemeral
                .volumes
                .insert(format!("pv-{name}"), Volume::with_policy("Delete"));
        }
        let with_ephemeral = audit(&ephemeral, &LabelScheme::default(), &[]);
        assert_eq!(
            with_ephemeral.findings,
            audit(&inventory, &LabelScheme::default(), &[]).findings
        );
        // The Misplaced finding of the sub-env's ConfigMap `settings`.
        let settings = |report: &Report| {
            report
                .findings
                .iter()
                .find(|f| matches!(f, Finding::Misplaced { objects, .. } if objects.0.objects().any(|o| o.name == "settings")))
                .unwrap()
                .clone()
        };
        let configmap = settings(&report);
        assert_eq!(
            serde_json::to_value(&configmap).unwrap()["volumesToKeep"],
            2
        );
        assert!(
            configmap.advice().contains(
                "2 of those volumes (reclaim policy Delete) would be destroyed by the move without it"
            ),
            "{}",
            configmap.advice()
        );
        // Each object's own message (a PolicyReport result) says how to keep them.
        let object_message = |finding: &Finding| {
            let Finding::Misplaced { objects, .. } = finding else {
                panic!()
            };
            let settings = objects.0.objects().find(|o| o.name == "settings").unwrap();
            misplaced_object_message(finding, settings)
        };
        let message = object_message(&configmap);
        assert!(
            message.starts_with("ConfigMap \"settings\" of sub-env shop-tenant-a/tenant-a")
                && message.contains("first keep the 2 volumes that the move would delete"),
            "{message}"
        );

        let mut kept = inventory.clone();
        kept.volumes
            .insert("pv-data".into(), Volume::with_policy("Retain"));
        let report = audit(&kept, &LabelScheme::default(), &[]);
        for finding in &report.findings {
            assert!(
                !finding.advice().contains("first keep"),
                "{}",
                finding.advice()
            );
            assert!(
                serde_json::to_value(finding)
                    .unwrap()
                    .get("volumesToKeep")
                    .is_none()
            );
        }
        // Kept or not, the sub-env's claims need their volumes handed over: a move
        // without the plan gives each a new, empty volume.
        let configmap = settings(&report);
        assert!(
            object_message(&configmap).contains("keep its volumes (`nsguard migrate plan --stack"),
            "{}",
            object_message(&configmap)
        );
        assert!(
            configmap.advice().contains("need their volume handed over"),
            "{}",
            configmap.advice()
        );
        assert!(serde_json::to_value(configmap).unwrap()["claims"].as_u64() > Some(0));
    }

    #[test]
    fn a_lingering_namespace_says_how_long_it_has_been_empty() {
        let inventory = Inventory {
            namespaces: Some(["shop-preview".to_owned()].into()),
            namespace_meta: [(
                "shop-preview".to_owned(),
                NamespaceMeta {
                    labels: TENANT
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    created: Some("2026-05-01T00:00:00Z".to_owned()),
                    ..NamespaceMeta::default()
                },
            )]
            .into(),
            ..Inventory::default()
        };
        let report = audit(&inventory, &LabelScheme::default(), &[]);
        assert_eq!(report.findings.len(), 1);
        let now: Timestamp = "2026-05-02T06:00:00Z".parse().unwrap();
        let said = report.findings[0].summary(Some(now));
        assert!(
            said.contains("(since 2026-05-01T00:00:00Z or earlier, 1 day)"),
            "{said}"
        );
        assert!(
            report.findings[0]
                .summary(None)
                .contains("(since 2026-05-01T00:00:00Z or earlier)")
        );
        // PolicyReports, nsguard's or another tool's, describe the namespace: it still
        // lingers with them, and they are not listed as left.
        let mut reported = inventory.clone();
        reported.unowned.insert(
            "shop-preview".into(),
            ["nsguard", "cpol-require-labels"]
                .map(|name| UnownedObject {
                    api_version: "wgpolicyk8s.io/v1alpha2".into(),
                    kind: "PolicyReport".into(),
                    name: name.into(),
                    annotations: BTreeMap::new(),
                    created: Some("2026-05-02T00:00:00Z".to_owned()),
                })
                .into(),
        );
        let again = audit(&reported, &LabelScheme::default(), &[]);
        assert_eq!(again.findings, report.findings);
        // Anything a person made keeps it from lingering; so does a partial read.
        let mut made = inventory.clone();
        made.unowned.insert(
            "shop-preview".into(),
            vec![UnownedObject {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "settings".into(),
                annotations: BTreeMap::new(),
                created: None,
            }],
        );
        assert!(
            audit(&made, &LabelScheme::default(), &[])
                .findings
                .is_empty()
        );
        let mut partial = inventory;
        partial.unverified.push(Unverified {
            resource: "configmaps".into(),
            reason: "403".into(),
            code: Some(403),
        });
        assert!(
            audit(&partial, &LabelScheme::default(), &[])
                .findings
                .is_empty()
        );
    }

    #[test]
    fn a_retained_volume_and_a_single_owner_are_not_at_risk() {
        let inventory = Inventory {
            claims: vec![Claim {
                deleted_at: None,
                ephemeral_pod: None,
                namespace: "solo".into(),
                name: "data".into(),
                volume: Some("pv-1".into()),
                owner: None,
            }],
            volumes: [("pv-1".to_owned(), Volume::with_policy("Delete"))].into(),
            ..with_objects(vec![object("solo", "Service", "s", &PARENT)])
        };
        assert!(
            audit(&inventory, &LabelScheme::default(), &[])
                .findings
                .is_empty()
        );
    }
}
