//! The namespace guard's decision, over plain data: may this Namespace be deleted?
//!
//! Deleting a Namespace cascade-deletes everything in it. When objects of two or more
//! stacks (owners) live inside, one stack's teardown would take its siblings with it, so
//! the delete is denied. The guard fails closed: a lookup that failed, ran out of time, or
//! could not read every resource type is a denial that says why, never a silent allow.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::decisions::data_at_risk::VolumeCheck;
use crate::decisions::exemptions::{self, Asker, BREAK_GLASS_ANNOTATION, Exemption};
use crate::simple_container::labels::{Owner, StringMap};

/// How many example objects a message names per owner.
const EXAMPLES_PER_OWNER: usize = 3;

/// When a delete is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GuardPolicy {
    /// Deny while objects of two or more owners remain (the outage case).
    #[default]
    MultiOwner,
    /// Deny while any owned object remains: a stack that destroys itself empties its
    /// namespace before deleting it.
    NonEmpty,
}

/// The guard's configuration.
#[derive(Debug, Clone, Default)]
pub struct GuardConfig {
    pub policy: GuardPolicy,
    pub exempt_users: Vec<String>,
    pub exempt_groups: Vec<String>,
}

/// Who asks to delete which namespace, and the annotations it carries.
#[derive(Debug, Clone, Copy)]
pub struct DeleteRequest<'a> {
    pub namespace: &'a str,
    pub username: &'a str,
    pub groups: &'a [String],
    pub annotations: Option<&'a dyn StringMap>,
}

/// One owned object found in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedObject {
    pub owner: Owner,
    /// Kind, qualified with the API group when it has one (`Deployment.apps`).
    pub kind: String,
    pub name: String,
}

/// A resource type whose objects could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unverified {
    /// `plural.group` (`plural` for the core group), or `group/version (discovery)` when a
    /// whole group version could not be discovered.
    pub resource: String,
    pub reason: String,
    /// The API server's status code, when it answered (403: nsguard may not list it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

/// How many resource types a message names per reason; the rest are counted.
const UNVERIFIED_PER_REASON: usize = 6;
/// How many distinct reasons a message names; the rest are counted.
const UNVERIFIED_REASONS: usize = 4;

/// The ClusterRole that nsguard's lookup role aggregates (manifests/base/rbac.yaml).
pub const LOOKUP_AGGREGATION_LABEL: &str = "nsguard.dev/aggregate-to-lookup";

/// What a lookup found in one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceScan {
    pub objects: Vec<OwnedObject>,
    /// Resource types that could not be listed; their objects are unknown.
    pub unverified: Vec<Unverified>,
    /// How many resource types were read, for the audit log.
    pub resource_types: usize,
    /// API calls the lookup made (discovery, lists, retries); 0 for a dump.
    pub api_calls: usize,
    /// The age of the last good discovery when it stood in for a refresh that failed;
    /// `None` when discovery was fresh (or for a dump).
    pub stale_discovery: Option<std::time::Duration>,
}

/// The objects of one owner, summarized for a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerSummary {
    pub owner: Owner,
    pub total: usize,
    pub by_kind: BTreeMap<String, usize>,
    pub examples: Vec<String>,
}

/// Why a delete is allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Verdict {
    /// The Namespace carries the break-glass annotation: allowed without a lookup, so an
    /// emergency never waits on the API server.
    BreakGlass,
    /// `user` is exempt (`--exempt-user`): allowed without a lookup.
    ExemptUser { user: String },
    /// The asker is in exempt `group` (`--exempt-group`): allowed without a lookup.
    ExemptGroup { group: String },
    /// Nothing owned inside, or (multi-owner policy) a single owner.
    Safe,
    /// Objects of two or more stacks inside: one stack's teardown would take the others
    /// with it (the outage nsguard exists for).
    MultipleOwners,
    /// Policy `non-empty`: a stack's objects are still inside; a stack that destroys
    /// itself empties its namespace before deleting it.
    OwnedObjectsRemain,
    /// The lookup failed or passed its deadline: fail closed, saying why.
    LookupFailed { error: String },
    /// Some resource types could not be read and what was read does not already deny:
    /// what could not be read might hold a second stack, so fail closed.
    Incomplete,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        matches!(
            self,
            Verdict::BreakGlass
                | Verdict::ExemptUser { .. }
                | Verdict::ExemptGroup { .. }
                | Verdict::Safe
        )
    }

    /// Every [`Self::code`], for metrics that start each series at zero.
    pub const CODES: [&'static str; 8] = [
        "break-glass",
        "exempt-user",
        "exempt-group",
        "safe",
        "multiple-owners",
        "owned-objects-remain",
        "lookup-failed",
        "incomplete",
    ];

    /// A short, fixed name for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::BreakGlass => "break-glass",
            Verdict::ExemptUser { .. } => "exempt-user",
            Verdict::ExemptGroup { .. } => "exempt-group",
            Verdict::Safe => "safe",
            Verdict::MultipleOwners => "multiple-owners",
            Verdict::OwnedObjectsRemain => "owned-objects-remain",
            Verdict::LookupFailed { .. } => "lookup-failed",
            Verdict::Incomplete => "incomplete",
        }
    }
}

/// The guard's answer for one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardDecision {
    pub namespace: String,
    pub verdict: Verdict,
    pub owners: Vec<OwnerSummary>,
    pub unverified: Vec<Unverified>,
    /// The volumes the delete would destroy for good; filled in by the lookup shell.
    #[serde(skip_serializing_if = "VolumeCheck::is_not_checked")]
    pub volumes: VolumeCheck,
}

impl GuardDecision {
    pub fn allowed(&self) -> bool {
        self.verdict.allowed()
    }

    fn without_lookup(namespace: &str, verdict: Verdict) -> Self {
        Self {
            namespace: namespace.to_owned(),
            verdict,
            owners: Vec::new(),
            unverified: Vec::new(),
            volumes: VolumeCheck::NotChecked,
        }
    }
}

/// Allowed without looking inside: the break-glass annotation or an exempt user/group.
/// Checked first so that an emergency delete does not depend on the API server's lists.
pub fn exemption(config: &GuardConfig, request: &DeleteRequest<'_>) -> Option<GuardDecision> {
    let asker = Asker {
        username: request.username,
        groups: request.groups,
        annotations: request.annotations,
    };
    let verdict = match exemptions::exemption(&config.exempt_users, &config.exempt_groups, &asker)?
    {
        Exemption::BreakGlass => Verdict::BreakGlass,
        Exemption::User(user) => Verdict::ExemptUser { user },
        Exemption::Group(group) => Verdict::ExemptGroup { group },
    };
    Some(GuardDecision::without_lookup(request.namespace, verdict))
}

/// Decide over a finished lookup, or why it failed (the lookup's own error, said in
/// the denial). Call [`exemption`] first.
pub fn decide(
    config: &GuardConfig,
    namespace: &str,
    scan: Result<&NamespaceScan, &dyn std::fmt::Display>,
) -> GuardDecision {
    let scan = match scan {
        Ok(scan) => scan,
        Err(error) => {
            return GuardDecision::without_lookup(
                namespace,
                Verdict::LookupFailed {
                    error: error.to_string(),
                },
            );
        }
    };
    let mut tally = OwnerTally::default();
    for object in &scan.objects {
        tally.add(&object.owner, &object.kind, &object.name);
    }
    decide_owners(config, namespace, tally.summaries(), &scan.unverified)
}

/// [`decide`] over owners already summarized (the audit counts them as it reads, and
/// never holds the objects).
pub fn decide_owners(
    config: &GuardConfig,
    namespace: &str,
    owners: Vec<OwnerSummary>,
    unverified: &[Unverified],
) -> GuardDecision {
    let verdict = match (config.policy, owners.len()) {
        (_, n) if n >= 2 => Verdict::MultipleOwners,
        (GuardPolicy::NonEmpty, 1) => Verdict::OwnedObjectsRemain,
        // What could not be read might hold a second owner: fail closed.
        _ if !unverified.is_empty() => Verdict::Incomplete,
        _ => Verdict::Safe,
    };
    GuardDecision {
        namespace: namespace.to_owned(),
        verdict,
        owners,
        unverified: unverified.to_vec(),
        volumes: VolumeCheck::NotChecked,
    }
}

/// The objects of each owner, counted as they are read: totals, counts by kind and the
/// first few names in (kind, name) order, which is all a summary shows. Memory grows with
/// the owners and kinds, never with the objects; kept in small sorted vectors (a namespace
/// holds a few owners of a few kinds, and the audit keeps one tally per namespace:
/// B-tree nodes would be most of its memory at thousands of namespaces).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerTally {
    /// Sorted by owner.
    owners: Vec<(Owner, Counted)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counted {
    total: usize,
    /// Sorted by kind.
    by_kind: Vec<(Box<str>, usize)>,
    /// The smallest (kind, name) pairs seen, at most [`EXAMPLES_PER_OWNER`], sorted.
    examples: Vec<(Box<str>, Box<str>)>,
}

impl OwnerTally {
    /// Count one object of `owner`.
    pub fn add(&mut self, owner: &Owner, kind: &str, name: &str) {
        let at = match self.owners.binary_search_by(|(o, _)| o.cmp(owner)) {
            Ok(at) => at,
            Err(at) => {
                self.owners.insert(at, (owner.clone(), Counted::default()));
                at
            }
        };
        let counted = &mut self.owners[at].1;
        counted.total += 1;
        match counted.by_kind.binary_search_by(|(k, _)| (**k).cmp(kind)) {
            Ok(at) => counted.by_kind[at].1 += 1,
            Err(at) => counted.by_kind.insert(at, (kind.into(), 1)),
        }
        let key = (kind, name);
        let full = counted.examples.len() >= EXAMPLES_PER_OWNER;
        if full
            && counted
                .examples
                .last()
                .is_some_and(|(k, n)| (&**k, &**n) <= key)
        {
            return;
        }
        if let Err(at) = counted
            .examples
            .binary_search_by(|(k, n)| (&**k, &**n).cmp(&key))
        {
            counted.examples.insert(at, (kind.into(), name.into()));
            counted.examples.truncate(EXAMPLES_PER_OWNER);
        }
    }

    /// Objects counted, every owner's.
    pub fn objects(&self) -> usize {
        self.owners.iter().map(|(_, c)| c.total).sum()
    }

    /// Each owner's summary, in owner order.
    pub fn summaries(&self) -> Vec<OwnerSummary> {
        self.owners
            .iter()
            .map(|(owner, counted)| OwnerSummary {
                owner: owner.clone(),
                total: counted.total,
                by_kind: (counted.by_kind.iter())
                    .map(|(kind, n)| (kind.to_string(), *n))
                    .collect(),
                examples: counted
                    .examples
                    .iter()
                    .map(|(kind, name)| format!("{kind}/{name}"))
                    .collect(),
            })
            .collect()
    }
}

impl GuardDecision {
    /// The message for `kubectl` (denials) or the CLI: who owns what, and how to proceed.
    pub fn message(&self) -> String {
        let ns = &self.namespace;
        let mut out = match &self.verdict {
            Verdict::BreakGlass => {
                format!("namespace {ns:?} may be deleted: it carries {BREAK_GLASS_ANNOTATION}=true")
            }
            Verdict::ExemptUser { user } => {
                format!("namespace {ns:?} may be deleted: user {user:?} is exempt")
            }
            Verdict::ExemptGroup { group } => {
                format!("namespace {ns:?} may be deleted: group {group:?} is exempt")
            }
            Verdict::Safe => match self.owners.as_slice() {
                [] => format!("namespace {ns:?} may be deleted: no stack owns objects in it"),
                [only] => format!(
                    "namespace {ns:?} may be deleted: only stack {} owns objects in it",
                    only.owner
                ),
                _ => unreachable!("two owners are never safe"),
            },
            Verdict::MultipleOwners => format!(
                "nsguard: namespace {ns:?} holds objects of {} stacks; deleting it would delete all of them:",
                self.owners.len()
            ),
            Verdict::OwnedObjectsRemain => format!(
                "nsguard: namespace {ns:?} still holds objects of stack {} (policy non-empty: a stack empties its namespace before deleting it):",
                self.owners[0].owner
            ),
            Verdict::LookupFailed { error } => format!(
                "nsguard: cannot verify what namespace {ns:?} holds, so its deletion is denied (fail closed): {error}"
            ),
            Verdict::Incomplete => format!(
                "nsguard: namespace {ns:?} could not be fully checked, so its deletion is denied (fail closed):"
            ),
        };
        for summary in &self.owners {
            let kinds: Vec<String> = summary
                .by_kind
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            let _ = write!(
                out,
                "\n  - stack {} (app-name={}, env={}): {} object{}: {} (e.g. {})",
                summary.owner,
                summary.owner.app_name,
                summary.owner.env,
                summary.total,
                if summary.total == 1 { "" } else { "s" },
                kinds.join(", "),
                summary.examples.join(", ")
            );
        }
        if !self.unverified.is_empty() {
            write_unverified(&mut out, &self.unverified);
        }
        if let Some(volumes) = self.volumes.sentence() {
            let _ = write!(out, "\n  {volumes}");
        }
        if !self.allowed() {
            let _ = write!(out, "\n{}", self.how_to_proceed());
        }
        out
    }

    fn how_to_proceed(&self) -> String {
        let ns = &self.namespace;
        let override_hint = format!(
            "if deleting everything in it is intended, run: kubectl annotate namespace {ns} {BREAK_GLASS_ANNOTATION}=true"
        );
        let mut out = match self.verdict {
            Verdict::LookupFailed { .. } => format!(
                "To proceed: retry when the API server answers nsguard's lookups; {override_hint}"
            ),
            Verdict::Incomplete => format!(
                "To proceed: let nsguard list those types, or exclude them with --skip-resource; {override_hint}"
            ),
            Verdict::OwnedObjectsRemain => format!(
                "To proceed: tear the stack down with its own tool first, which empties the namespace; {override_hint}"
            ),
            _ => format!(
                "To proceed: tear down each stack with its own tool first (or move its objects out) so one stack is left; {override_hint}"
            ),
        };
        let forbidden = self
            .unverified
            .iter()
            .filter(|u| u.code == Some(403))
            .map(|u| u.resource.as_str());
        if let Some(role) = lookup_role(forbidden) {
            out.push_str("\nTo let nsguard list the forbidden types, apply:\n");
            out.push_str(&role);
        }
        out
    }
}

/// The unverified types, grouped by reason, a few named per reason, so a denial stays
/// readable in kubectl however many types failed.
fn write_unverified(out: &mut String, unverified: &[Unverified]) {
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for u in unverified {
        by_reason
            .entry(reason_class(u))
            .or_default()
            .push(u.resource.as_str());
    }
    let _ = write!(
        out,
        "\n  could not list {} resource type{}:",
        unverified.len(),
        if unverified.len() == 1 { "" } else { "s" }
    );
    for (reason, resources) in by_reason.iter().take(UNVERIFIED_REASONS) {
        let shown = &resources[..resources.len().min(UNVERIFIED_PER_REASON)];
        let _ = write!(out, "\n  - {}: {reason}", shown.join(", "));
        if resources.len() > shown.len() {
            let _ = write!(out, " (and {} more)", resources.len() - shown.len());
        }
    }
    if by_reason.len() > UNVERIFIED_REASONS {
        let rest: usize = by_reason
            .values()
            .skip(UNVERIFIED_REASONS)
            .map(Vec::len)
            .sum();
        let _ = write!(out, "\n  - {rest} more for other reasons");
    }
}

/// What a group of unverified types has in common: for a 403, the code and reason (the
/// API's message repeats the type's name); otherwise the whole reason.
fn reason_class(u: &Unverified) -> &str {
    match u.code {
        Some(403) => "403 Forbidden (nsguard may not list it)",
        _ => u.reason.as_str(),
    }
}

/// The ClusterRole that grants `list` on every type of `ids` (`plural.group`, `plural` for
/// the core group), labelled so that nsguard's lookup role aggregates it, as a
/// `kubectl apply` heredoc; `None` when there is none.
pub fn lookup_role<'a>(ids: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in ids {
        let (plural, group) = id.split_once('.').unwrap_or((id, ""));
        by_group.entry(group).or_default().push(plural);
    }
    if by_group.is_empty() {
        return None;
    }
    let mut role = format!(
        "kubectl apply -f - <<'EOF'\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: nsguard-lookup-extra\n  labels:\n    {LOOKUP_AGGREGATION_LABEL}: \"true\"\nrules:"
    );
    for (group, plurals) in by_group {
        let _ = write!(
            role,
            "\n- apiGroups: [\"{group}\"]\n  resources: [{}]\n  verbs: [\"list\"]",
            plurals
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    role.push_str("\nEOF");
    Some(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(app: &str, env: &str, kind: &str, name: &str) -> OwnedObject {
        OwnedObject {
            owner: Owner::new(app, env),
            kind: kind.into(),
            name: name.into(),
        }
    }

    fn scan(objects: Vec<OwnedObject>) -> NamespaceScan {
        NamespaceScan {
            objects,
            unverified: vec![],
            resource_types: 10,
            api_calls: 0,
            stale_discovery: None,
        }
    }

    #[test]
    fn two_owners_deny_with_a_readable_message() {
        let s = scan(vec![
            obj("wallet", "production", "Deployment.apps", "wallet"),
            obj("wallet", "production", "Service", "wallet"),
            obj(
                "wallet-tenant-a",
                "tenant-a",
                "Deployment.apps",
                "wallet-tenant-a",
            ),
        ]);
        let d = decide(&GuardConfig::default(), "wallet", Ok(&s));
        assert_eq!(d.verdict, Verdict::MultipleOwners);
        assert!(!d.allowed());
        let msg = d.message();
        assert!(msg.contains("holds objects of 2 stacks"), "{msg}");
        assert!(msg.contains("stack wallet/production (app-name=wallet, env=production): 2 objects: 1 Deployment.apps, 1 Service"), "{msg}");
        assert!(
            msg.contains("e.g. Deployment.apps/wallet-tenant-a"),
            "{msg}"
        );
        assert!(
            msg.contains("kubectl annotate namespace wallet nsguard.dev/allow-delete=true"),
            "{msg}"
        );
    }

    #[test]
    fn one_owner_or_none_is_safe_under_the_default_policy() {
        let one = scan(vec![
            obj("a", "prod", "Service", "a"),
            obj("a", "prod", "Secret", "b"),
        ]);
        assert!(decide(&GuardConfig::default(), "a", Ok(&one)).allowed());
        assert!(decide(&GuardConfig::default(), "a", Ok(&scan(vec![]))).allowed());
    }

    #[test]
    fn strict_policy_denies_any_owned_object() {
        let config = GuardConfig {
            policy: GuardPolicy::NonEmpty,
            ..Default::default()
        };
        let one = scan(vec![obj("a", "prod", "Service", "a")]);
        assert_eq!(
            decide(&config, "a", Ok(&one)).verdict,
            Verdict::OwnedObjectsRemain
        );
        assert!(decide(&config, "a", Ok(&scan(vec![]))).allowed());
    }

    #[test]
    fn same_app_in_two_envs_is_two_owners() {
        let s = scan(vec![
            obj("a", "prod", "Service", "a"),
            obj("a", "staging", "Service", "b"),
        ]);
        assert_eq!(
            decide(&GuardConfig::default(), "a", Ok(&s)).verdict,
            Verdict::MultipleOwners
        );
    }

    #[test]
    fn failures_fail_closed() {
        let d = decide(
            &GuardConfig::default(),
            "a",
            Err(&"deadline of 3s exceeded"),
        );
        assert!(!d.allowed());
        assert!(d.message().contains("deadline of 3s exceeded"));

        let mut partial = scan(vec![obj("a", "prod", "Service", "a")]);
        partial.unverified.push(Unverified {
            resource: "widgets.example.com".into(),
            reason: "403 Forbidden".into(),
            code: Some(403),
        });
        let d = decide(&GuardConfig::default(), "a", Ok(&partial));
        assert_eq!(d.verdict, Verdict::Incomplete);
        assert!(
            d.message().contains("widgets.example.com: 403 Forbidden"),
            "{}",
            d.message()
        );

        // Two owners already seen: the denial is about them, the gap is still listed.
        partial.objects.push(obj("b", "prod", "Service", "b"));
        let d = decide(&GuardConfig::default(), "a", Ok(&partial));
        assert_eq!(d.verdict, Verdict::MultipleOwners);
        assert!(d.message().contains("could not list"));
    }

    #[test]
    fn exemptions() {
        let config = GuardConfig {
            exempt_users: vec!["root-admin".into()],
            exempt_groups: vec!["platform".into()],
            ..Default::default()
        };
        let groups = vec!["system:authenticated".to_owned(), "platform".to_owned()];
        let none = BTreeMap::<String, String>::new();
        let mut req = DeleteRequest {
            namespace: "a",
            username: "alice",
            groups: &[],
            annotations: Some(&none),
        };
        assert_eq!(exemption(&config, &req), None);
        req.groups = &groups;
        assert_eq!(
            exemption(&config, &req).unwrap().verdict,
            Verdict::ExemptGroup {
                group: "platform".into()
            }
        );
        req.groups = &[];
        req.username = "root-admin";
        assert!(exemption(&config, &req).unwrap().allowed());
        req.username = "alice";
        let almost = BTreeMap::from([(BREAK_GLASS_ANNOTATION.to_owned(), "yes".to_owned())]);
        req.annotations = Some(&almost);
        assert_eq!(
            exemption(&config, &req),
            None,
            "only the exact value true counts"
        );
        let glass = BTreeMap::from([(BREAK_GLASS_ANNOTATION.to_owned(), "true".to_owned())]);
        req.annotations = Some(&glass);
        assert_eq!(
            exemption(&config, &req).unwrap().verdict,
            Verdict::BreakGlass
        );
    }

    /// A denial with many unlistable types stays short: grouped by reason, a few named
    /// per reason, the rest counted (one was 6.5 KB).
    #[test]
    fn many_unverified_types_are_grouped_and_capped() {
        let mut s = scan(vec![obj("a", "prod", "Service", "a")]);
        for i in 0..120 {
            s.unverified.push(Unverified {
                resource: format!("widget{i}s.example.com"),
                reason: format!(
                    "403 Forbidden: User \"nsguard\" cannot list resource \"widget{i}s\""
                ),
                code: Some(403),
            });
        }
        s.unverified.push(Unverified {
            resource: "backup.example.com/v1 (discovery)".into(),
            reason: "503 ServiceUnavailable: the server is currently unable to handle the request"
                .into(),
            code: Some(503),
        });
        let d = decide(&GuardConfig::default(), "a", Ok(&s));
        let msg = d.message();
        assert!(msg.contains("could not list 121 resource types:"), "{msg}");
        assert!(msg.contains("(and 114 more)"), "{msg}");
        assert!(
            msg.contains("- backup.example.com/v1 (discovery): 503 ServiceUnavailable"),
            "{msg}"
        );
        let before_role = msg.split("kubectl apply").next().unwrap();
        assert!(
            before_role.len() < 2_000,
            "{} bytes: {msg}",
            before_role.len()
        );
    }

    #[test]
    fn the_non_empty_policy_advises_emptying_the_namespace() {
        let config = GuardConfig {
            policy: GuardPolicy::NonEmpty,
            ..Default::default()
        };
        let d = decide(
            &config,
            "a",
            Ok(&scan(vec![obj("a", "prod", "Service", "a")])),
        );
        let msg = d.message();
        assert!(!msg.contains("so one stack is left"), "{msg}");
        assert!(msg.contains("empties the namespace"), "{msg}");
    }
}
