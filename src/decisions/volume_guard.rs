//! The volume guard's decision (issue #31): which step of a plain move of a stateful
//! sub-env loses its data, over plain data.
//!
//! simple-container 2026.5.12 and later move a sub-env once its Namespace is forgotten in
//! its Pulumi state: Pulumi creates each claim in the new namespace, then deletes the old
//! one (create before delete). Without the hand-over of `nsguard migrate plan`, the new
//! claim gets a new, empty volume, and the delete of the old claim destroys the data when
//! its volume's reclaim policy is `Delete` (strands it otherwise). Refusing the create stops
//! the move before any delete runs; refusing the delete keeps a move half done from
//! destroying the data.
//!
//! Pure: the admission pipeline ([`crate::admission::pipeline`], as the CLI's) checks the exemptions,
//! reads the sub-env's claims of that name in every namespace, their volumes and whether
//! the sub-env's namespace exists, and calls [`on_create`] or [`on_delete`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decisions::data_at_risk::{Claim, Volume};
use crate::decisions::exemptions::{self, Asker, BREAK_GLASS_ANNOTATION, Exemption};
use crate::decisions::namespace_guard::GuardConfig;
use crate::simple_container::labels::StackRef;
use crate::simple_container::labels::{LabelScheme, StringMap};
use crate::simple_container::releases;

/// The two operations the volume guard judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimOperation {
    Create,
    Delete,
}

impl ClaimOperation {
    pub const ALL: [ClaimOperation; 2] = [ClaimOperation::Create, ClaimOperation::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            ClaimOperation::Create => "create",
            ClaimOperation::Delete => "delete",
        }
    }

    fn done(self) -> &'static str {
        match self {
            ClaimOperation::Create => "created",
            ClaimOperation::Delete => "deleted",
        }
    }
}

/// A create or delete of a claim, as the webhook and the CLI see it.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    pub operation: ClaimOperation,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The claim's labels: the new object's for a create, the old one's for a delete.
    pub labels: Option<&'a dyn StringMap>,
    pub annotations: Option<&'a dyn StringMap>,
    /// The Pod that controls the claim, when it is a generic ephemeral volume's
    /// ([`crate::decisions::data_at_risk::ephemeral_pod`], read from its owner references).
    pub ephemeral_pod: Option<&'a str>,
    pub username: &'a str,
    pub groups: &'a [String],
}

impl ClaimRequest<'_> {
    /// Why the claim's name or namespace is not one the API server accepts, if so: such a
    /// claim cannot exist, and its name must never reach the lookup's field selector
    /// (`metadata.name=a,metadata.namespace=b` would narrow the list, and let a move
    /// through). Quoted as an excerpt.
    pub fn invalid_names(&self) -> Option<String> {
        let (name, namespace) = (self.name, self.namespace);
        (!crate::simple_container::naming::is_dns1123_subdomain(name)
            || !crate::simple_container::naming::is_dns1123_label(namespace))
        .then(|| {
            format!(
                "a claim's name must be a DNS-1123 subdomain and its namespace a DNS-1123 label (name {:?}, namespace {:?})",
                crate::excerpt::excerpt(name),
                crate::excerpt::excerpt(namespace)
            )
        })
    }

    /// The decision on this claim, of sub-env `stack` (if any) whose namespace is `target`.
    pub fn decision(
        &self,
        stack: Option<StackRef>,
        target: Option<String>,
        verdict: Verdict,
    ) -> ClaimDecision {
        ClaimDecision {
            operation: self.operation,
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            stack,
            target,
            verdict,
        }
    }
}

/// What needs no lookup: a claim that is not a sub-env's, a generic ephemeral volume's
/// claim (its Pod's scratch space, which the ephemeral-volume controller and the garbage
/// collector create and delete with the Pod), one whose namespace cannot be told, the
/// break-glass annotation, an exempt user or group (checked before any API call, as for
/// the namespace guard, so an emergency does not wait on the API server). `Ok`: the
/// sub-env and its namespace, to look up.
pub fn before_lookup(
    scheme: &LabelScheme,
    config: &GuardConfig,
    request: &ClaimRequest<'_>,
) -> Result<(StackRef, String), Box<ClaimDecision>> {
    let allowed = |why| Box::new(request.decision(None, None, Verdict::Allowed { why }));
    let Some(stack) = request
        .labels
        .and_then(|labels| scheme.read(labels))
        .filter(|s| s.is_sub_env())
    else {
        return Err(allowed("it carries no sub-env's labels"));
    };
    let parent_env = stack.parent_env.unwrap_or_default();
    let target =
        crate::simple_container::naming::target_namespace(stack.app_name, stack.env, parent_env);
    let stack_ref = StackRef {
        app_name: stack.app_name.to_owned(),
        env: stack.env.to_owned(),
        parent_env: parent_env.to_owned(),
    };
    if let Some(pod) = request.ephemeral_pod {
        return Err(Box::new(request.decision(
            Some(stack_ref),
            target.map(Into::into),
            Verdict::Ephemeral {
                pod: pod.to_owned(),
            },
        )));
    }
    let Some(target) = target else {
        return Err(allowed(
            "its sub-env's namespace cannot be told (the app-name sanitizes to nothing)",
        ));
    };
    let asker = Asker {
        username: request.username,
        groups: request.groups,
        annotations: request.annotations,
    };
    if let Some(exempt) = exemptions::exemption(&config.exempt_users, &config.exempt_groups, &asker)
    {
        let why = match exempt {
            Exemption::BreakGlass => format!("it carries {BREAK_GLASS_ANNOTATION}=true"),
            Exemption::User(user) => format!("user {user:?} is exempt"),
            Exemption::Group(group) => format!("group {group:?} is exempt"),
        };
        return Err(Box::new(request.decision(
            Some(stack_ref),
            Some(target.into_owned()),
            Verdict::Exempt { why },
        )));
    }
    Ok((stack_ref, target.into_owned()))
}

/// The decision over what the lookup read, or why it could not (the lookup's own error,
/// said in the refusal).
pub fn decide(
    request: &ClaimRequest<'_>,
    stack: StackRef,
    target: String,
    facts: Result<&Facts, &dyn std::fmt::Display>,
) -> ClaimDecision {
    let verdict = match facts {
        Err(error) => Verdict::LookupFailed {
            error: error.to_string(),
        },
        Ok(facts) => {
            let claim = ClaimUnderReview {
                namespace: request.namespace,
                name: request.name,
                owner: &stack,
                target: &target,
            };
            match request.operation {
                ClaimOperation::Create => on_create(&claim, facts),
                ClaimOperation::Delete => on_delete(&claim, facts),
            }
        }
    };
    request.decision(Some(stack), Some(target), verdict)
}

/// The claim a request creates or deletes, of a sub-env whose namespace is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimUnderReview<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub owner: &'a StackRef,
    /// The sub-env's own namespace, as simple-container names it.
    pub target: &'a str,
}

/// What the lookup read.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The claims with the reviewed claim's name, in every namespace, whoever's (a
    /// delete's own claim among them, as the API server has it now): the decision keeps
    /// the sub-env's.
    pub claims: Vec<Claim>,
    /// The volumes those claims are bound to, and any volume reserved for the reviewed
    /// claim's name in the target namespace, by name.
    pub volumes: BTreeMap<String, Volume>,
    /// Whether the sub-env's namespace exists (a move is under way).
    pub target_exists: bool,
}

/// The decision on one claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "reason",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Verdict {
    /// Nothing of the sub-env's data is at stake; `why` says which rule let it through.
    Allowed { why: &'static str },
    /// The break-glass annotation, or an exempt user or group: allowed without a lookup.
    Exempt { why: String },
    /// A generic ephemeral volume's claim, controlled by `pod`: made and deleted with the
    /// Pod (a rollout does both), its data meant to go. Allowed without a lookup: refusing
    /// the garbage collector's delete would leave a claim and its volume bound to nothing.
    Ephemeral { pod: String },
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
    /// The lookup failed or passed its deadline: refused (the webhook's failure policy is
    /// `Fail` too), since nsguard cannot tell whether the step loses data.
    LookupFailed { error: String },
}

impl Verdict {
    /// Every [`Self::reason`], for metrics that start each series at zero.
    pub const REASONS: [&'static str; 7] = [
        "allowed",
        "exempt",
        "ephemeral",
        "strands-data",
        "not-moved",
        "destroys-data",
        "lookup-failed",
    ];

    /// A short, fixed name for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Allowed { .. } => Self::REASONS[0],
            Verdict::Exempt { .. } => Self::REASONS[1],
            Verdict::Ephemeral { .. } => Self::REASONS[2],
            Verdict::StrandsData { .. } => Self::REASONS[3],
            Verdict::NotMoved { .. } => Self::REASONS[4],
            Verdict::DestroysData { .. } => Self::REASONS[5],
            Verdict::LookupFailed { .. } => Self::REASONS[6],
        }
    }

    pub fn allowed(&self) -> bool {
        matches!(
            self,
            Verdict::Allowed { .. } | Verdict::Exempt { .. } | Verdict::Ephemeral { .. }
        )
    }
}

/// The volume guard's answer on one claim, as the webhook, its log line and the CLI give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimDecision {
    pub operation: ClaimOperation,
    pub namespace: String,
    pub name: String,
    /// The sub-env the claim belongs to; `None` for a claim without a sub-env's labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<StackRef>,
    /// Its own namespace, when it can be told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl ClaimDecision {
    pub fn allowed(&self) -> bool {
        self.verdict.allowed()
    }

    /// `APP-NAME/ENV`, as `nsguard migrate plan --stack` takes it (empty for no sub-env).
    pub fn stack_arg(&self) -> String {
        self.stack
            .as_ref()
            .map_or_else(String::new, |s| format!("{}/{}", s.app_name, s.env))
    }

    /// The answer in words: for `kubectl` (a refusal), the CLI and the Event. A refusal
    /// says what the step would do to the data, and what to run instead.
    pub fn message(&self) -> String {
        let (ns, name) = (&self.namespace, &self.name);
        let claim = format!("claim {ns}/{name}");
        let stack = self.stack_arg();
        let target = self.target.as_deref().unwrap_or_default();
        let plan = format!("`nsguard migrate plan --stack {stack}`");
        let on_purpose = match self.operation {
            ClaimOperation::Create => format!(
                "to start it on an empty volume on purpose, create the claim with the annotation {BREAK_GLASS_ANNOTATION}=true"
            ),
            ClaimOperation::Delete => format!(
                "if losing the data is intended, run: kubectl annotate pvc -n {ns} {name} {BREAK_GLASS_ANNOTATION}=true"
            ),
        };
        match &self.verdict {
            Verdict::Allowed { why } => format!("{claim} may be {}: {why}", self.operation.done()),
            Verdict::Exempt { why } => format!("{claim} may be {}: {why}", self.operation.done()),
            Verdict::Ephemeral { pod } => format!(
                "{claim} may be {}: it is the generic ephemeral volume of Pod {pod} (the Pod controls it), made and deleted with the Pod; its data is meant to go with it",
                self.operation.done()
            ),
            Verdict::StrandsData {
                old_namespace,
                volume,
                reclaim_policy,
            } => {
                let volume = volume.as_deref().unwrap_or_default();
                let fate = match reclaim_policy.as_deref() {
                    Some("Delete") => format!(
                        "and deleting {old_namespace}/{name} next destroys volume {volume} and the data on it (reclaim policy Delete)"
                    ),
                    Some(policy) => format!(
                        "and the data stays behind on volume {volume} (reclaim policy {policy}) with no claim"
                    ),
                    None => format!("and the data stays behind on volume {volume}"),
                };
                format!(
                    "nsguard: refusing to create {claim}: sub-env {stack} keeps its data in claim {old_namespace}/{name} (volume {volume}); this new claim would start on a new, empty volume, {fate}. Keep the volume: {plan} hands it over to {target}/{name}: run its `before` (not its state step, which this deploy shows done), `sc deploy` again, then `sh migrate.sh after`; {on_purpose}"
                )
            }
            Verdict::NotMoved { volume } => format!(
                "nsguard: refusing to create {claim}: volume {volume}, the data of sub-env {stack}, is handed over to {target}/{name} and waits there, but this deploy re-creates the claim where it was and would start it on a new, empty volume ({}). Forget its Namespace in its Pulumi state (the state step of {plan}), `sc deploy` again, then `sh migrate.sh after`; {on_purpose}",
                releases::why_it_stays()
            ),
            Verdict::DestroysData { volume } => format!(
                "nsguard: refusing to delete {claim}: sub-env {stack} is moving to namespace {target}, and this delete would destroy volume {volume} and the data on it (reclaim policy Delete). Keep the volume first: {plan} sets Retain and hands it over to {target}/{name}; {on_purpose}"
            ),
            Verdict::LookupFailed { error } => format!(
                "nsguard: cannot tell whether {} {claim} of sub-env {stack} loses its data, so it is refused (fail closed): {error}. Retry when the API server answers nsguard's lookups; {on_purpose}",
                match self.operation {
                    ClaimOperation::Create => "creating",
                    ClaimOperation::Delete => "deleting",
                }
            ),
        }
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
    // The sub-env's, in any label generation. A claim being deleted goes its way whatever
    // is created; one not Bound holds no data; an ephemeral volume's goes with its Pod.
    match facts.claims.iter().find(|c| {
        c.namespace != claim.namespace
            && c.name == claim.name
            && !c.is_ephemeral()
            && c.owner
                .as_ref()
                .is_some_and(|o| o.app_name == claim.owner.app_name && o.env == claim.owner.env)
            && c.deleted_at.is_none()
            && c.volume.is_some()
    }) {
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
            why: "no Bound claim of this name of the sub-env elsewhere: nothing is left behind",
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
    let Some(volume) = facts
        .claims
        .iter()
        .find(|c| c.namespace == claim.namespace && c.name == claim.name)
        .and_then(|c| c.volume.as_deref())
    else {
        return Verdict::Allowed {
            why: "the claim holds no volume (not Bound, or already gone)",
        };
    };
    match facts.volumes.get(volume) {
        Some(v) if v.deleted_with_claim() => Verdict::DestroysData {
            volume: volume.to_owned(),
        },
        Some(_) => Verdict::Allowed {
            why: "its volume outlives the claim (reclaim policy Retain)",
        },
        // The lookup reads every volume the sub-env's claims are bound to; one it did not
        // find is gone, and holds nothing a delete could destroy.
        None => Verdict::Allowed {
            why: "its volume is gone",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::data_at_risk::ClaimRef;
    use crate::simple_container::labels::Owner;

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

    /// The old claim shop/data (Bound to pv-data when `old`), pv-data, and whether the
    /// sub-env's namespace exists.
    fn facts(old: bool, data: Volume, target_exists: bool) -> Facts {
        Facts {
            claims: old
                .then(|| Claim {
                    namespace: "shop".into(),
                    name: "data".into(),
                    volume: Some("pv-data".into()),
                    owner: Some(Owner::new("shop-tenant-a", "tenant-a")),
                    deleted_at: None,
                    ephemeral_pod: None,
                })
                .into_iter()
                .collect(),
            volumes: [("pv-data".to_owned(), data)].into_iter().collect(),
            target_exists,
        }
    }

    fn claim<'a>(namespace: &'a str, owner: &'a StackRef) -> ClaimUnderReview<'a> {
        ClaimUnderReview {
            namespace,
            name: "data",
            owner,
            target: "shop-tenant-a",
        }
    }

    fn decision(operation: ClaimOperation, namespace: &str, verdict: Verdict) -> ClaimDecision {
        ClaimDecision {
            operation,
            namespace: namespace.into(),
            name: "data".into(),
            stack: Some(owner()),
            target: Some("shop-tenant-a".into()),
            verdict,
        }
    }

    #[test]
    fn a_plain_moves_create_is_refused_and_a_planned_one_allowed() {
        let owner = owner();
        let bound = || volume("Delete", Some(("shop", "data", Some("uid-1"))));
        assert_eq!(
            on_create(&claim("shop-tenant-a", &owner), &facts(true, bound(), true)),
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
                &claim("shop-tenant-a", &owner),
                &facts(false, reserved.clone(), true)
            )
            .allowed()
        );
        // ... and a redeploy that did not move the sub-env re-creates it where it was.
        assert_eq!(
            on_create(&claim("shop", &owner), &facts(false, reserved, true)),
            Verdict::NotMoved {
                volume: "pv-data".into()
            }
        );
        // A first deploy, the old claim already being deleted, or holding no data yet:
        // nothing to strand.
        assert!(
            on_create(
                &claim("shop-tenant-a", &owner),
                &facts(false, bound(), false)
            )
            .allowed()
        );
        let mut terminating = facts(true, bound(), true);
        terminating.claims[0].deleted_at = Some("2026-12-07T08:00:00Z".into());
        assert!(on_create(&claim("shop-tenant-a", &owner), &terminating).allowed());
        let mut pending = facts(true, bound(), true);
        pending.claims[0].volume = None;
        assert!(on_create(&claim("shop-tenant-a", &owner), &pending).allowed());
        // Another stack's claim of that name, or one without stack labels, is not the
        // sub-env's data.
        for other in [Some(Owner::new("shop", "production")), None] {
            let mut facts = facts(true, bound(), true);
            facts.claims[0].owner = other;
            assert!(on_create(&claim("shop-tenant-a", &owner), &facts).allowed());
        }
        // A claim bound to a volume (uid set) is not a hand-over: still refused.
        let mut taken = facts(true, bound(), true);
        taken.volumes.insert(
            "pv-other".into(),
            volume("Retain", Some(("shop-tenant-a", "data", Some("uid-2")))),
        );
        assert!(!on_create(&claim("shop-tenant-a", &owner), &taken).allowed());
    }

    /// A generic ephemeral volume's claim (its Pod controls it) is let through on create
    /// and delete before any lookup, with a reason of its own; the same claim without that
    /// owner reference goes on to the lookup.
    #[test]
    fn an_ephemeral_volumes_claim_is_decided_without_a_lookup() {
        let labels: BTreeMap<String, String> = [
            ("simple-container.com/app-name", "shop-tenant-a"),
            ("simple-container.com/env", "tenant-a"),
            ("simple-container.com/parent-env", "production"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        let (scheme, config) = (LabelScheme::default(), GuardConfig::default());
        for operation in ClaimOperation::ALL {
            let mut request = ClaimRequest {
                operation,
                namespace: "shop",
                name: "web-7f9c-x2k4p-scratch",
                labels: Some(&labels),
                annotations: None,
                ephemeral_pod: Some("web-7f9c-x2k4p"),
                username: "system:serviceaccount:kube-system:generic-garbage-collector",
                groups: &[],
            };
            let decided = *before_lookup(&scheme, &config, &request).unwrap_err();
            assert_eq!(
                decided.verdict,
                Verdict::Ephemeral {
                    pod: "web-7f9c-x2k4p".into()
                }
            );
            assert!(decided.allowed());
            assert_eq!(decided.verdict.reason(), "ephemeral");
            assert_eq!(decided.stack_arg(), "shop-tenant-a/tenant-a");
            assert_eq!(decided.target.as_deref(), Some("shop-tenant-a"));
            assert!(
                decided
                    .message()
                    .contains("is the generic ephemeral volume of Pod web-7f9c-x2k4p"),
                "{}",
                decided.message()
            );
            request.ephemeral_pod = None;
            let (stack, target) = before_lookup(&scheme, &config, &request).unwrap();
            assert_eq!((stack, target.as_str()), (owner(), "shop-tenant-a"));
        }
    }

    /// An ephemeral volume's claim of the same name in the old namespace is not the
    /// sub-env's data: creating the claim in the sub-env's namespace strands nothing.
    #[test]
    fn an_old_ephemeral_claim_of_that_name_strands_nothing() {
        let owner = owner();
        let bound = volume("Delete", Some(("shop", "data", Some("uid-1"))));
        let mut facts = facts(true, bound, true);
        assert!(!on_create(&claim("shop-tenant-a", &owner), &facts).allowed());
        facts.claims[0].ephemeral_pod = Some("db-0".into());
        assert!(on_create(&claim("shop-tenant-a", &owner), &facts).allowed());
    }

    #[test]
    fn a_delete_is_refused_only_when_the_move_would_destroy_the_volume() {
        let owner = owner();
        let bound = |policy| volume(policy, Some(("shop", "data", Some("uid-1"))));
        assert_eq!(
            on_delete(&claim("shop", &owner), &facts(true, bound("Delete"), true)),
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
                &claim(namespace, &owner),
                &facts(true, bound(policy), target_exists),
            );
            assert!(
                verdict.allowed(),
                "{namespace} {policy} {target_exists}: {verdict:?}"
            );
        }
        // Not Bound (or gone already), and a volume that is gone: nothing to destroy.
        let mut pending = facts(true, bound("Delete"), true);
        pending.claims[0].volume = None;
        assert!(on_delete(&claim("shop", &owner), &pending).allowed());
        let mut gone = facts(true, bound("Delete"), true);
        gone.volumes.clear();
        assert!(on_delete(&claim("shop", &owner), &gone).allowed());
    }

    #[test]
    fn refusals_say_what_the_step_does_to_the_data_and_what_to_run() {
        let strands = decision(
            ClaimOperation::Create,
            "shop-tenant-a",
            Verdict::StrandsData {
                old_namespace: "shop".into(),
                volume: Some("pv-data".into()),
                reclaim_policy: Some("Delete".into()),
            },
        )
        .message();
        for said in [
            "refusing to create claim shop-tenant-a/data",
            "claim shop/data (volume pv-data)",
            "new, empty volume",
            "destroys volume pv-data",
            "`nsguard migrate plan --stack shop-tenant-a/tenant-a`",
            "run its `before` (not its state step, which this deploy shows done), `sc deploy` again, then `sh migrate.sh after`",
        ] {
            assert!(strands.contains(said), "{said:?} in {strands}");
        }
        let retained = decision(
            ClaimOperation::Create,
            "shop-tenant-a",
            Verdict::StrandsData {
                old_namespace: "shop".into(),
                volume: Some("pv-data".into()),
                reclaim_policy: Some("Retain".into()),
            },
        )
        .message();
        assert!(
            retained.contains("stays behind on volume pv-data (reclaim policy Retain)"),
            "{retained}"
        );
        let not_moved = decision(
            ClaimOperation::Create,
            "shop",
            Verdict::NotMoved {
                volume: "pv-data".into(),
            },
        )
        .message();
        assert!(
            not_moved.contains("handed over to shop-tenant-a/data"),
            "{not_moved}"
        );
        assert!(
            not_moved.contains("Forget its Namespace in its Pulumi state"),
            "{not_moved}"
        );
        assert!(not_moved.contains(releases::KEEPS_NAMESPACE), "{not_moved}");
        let destroys = decision(
            ClaimOperation::Delete,
            "shop",
            Verdict::DestroysData {
                volume: "pv-data".into(),
            },
        )
        .message();
        assert!(
            destroys.contains("refusing to delete claim shop/data"),
            "{destroys}"
        );
        assert!(
            destroys.contains("kubectl annotate pvc -n shop data nsguard.dev/allow-delete=true"),
            "{destroys}"
        );
        let allowed = decision(
            ClaimOperation::Delete,
            "shop",
            Verdict::Allowed { why: "because" },
        );
        assert_eq!(allowed.message(), "claim shop/data may be deleted: because");
        assert!(allowed.allowed());
        assert_eq!(
            Verdict::LookupFailed { error: "x".into() }.reason(),
            "lookup-failed"
        );
        // One line each: the Event's note and kubectl's error print it as it is.
        for message in [strands, retained, not_moved, destroys] {
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
