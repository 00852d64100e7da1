//! The two guards that read the cluster, as [`super::pipeline`] runs them: each its
//! question, its exemptions, its lookup and its decision (from [`crate::decisions`]), and
//! what it says in metrics, in its decision log line, in an Event and in the answer.

use futures::future::BoxFuture;
use std::fmt::Display;
use std::time::Duration;

use super::pipeline::{Guard, Lookup, Ruling, username};
use super::{Metadata, Operation, Request, Response, Text};
use crate::cluster::events::Regarding;
use crate::cluster::{ClusterSource, Deadline, LookupError};
use crate::decisions::data_at_risk::VolumeCheck;
use crate::decisions::namespace_guard::{
    self, DeleteRequest, GuardConfig, GuardDecision, NamespaceScan,
};
use crate::decisions::volume_guard::{
    self, ClaimDecision, ClaimOperation, ClaimRequest, ClaimUnderReview, Facts,
};
use crate::excerpt::excerpt;
use crate::metrics::{LookupErrorReason, Metrics};
use crate::simple_container::labels::{LabelScheme, StackRef};
use crate::simple_container::naming::MAX_NAME_LEN;

/// The namespace guard: may this Namespace be deleted? Reads what the namespace holds,
/// then, when something owned is inside, what its delete would destroy for good.
pub struct NamespaceGuard<'a> {
    pub config: &'a GuardConfig,
}

/// What the namespace guard read.
#[derive(Debug)]
pub struct NamespaceFacts {
    pub scan: NamespaceScan,
    /// Read only when something owned is inside; never changes the verdict.
    pub volumes: VolumeCheck,
}

impl Ruling for GuardDecision {
    fn allowed(&self) -> bool {
        GuardDecision::allowed(self)
    }

    fn message(&self) -> String {
        GuardDecision::message(self)
    }
}

impl Guard for NamespaceGuard<'_> {
    type Ask<'a> = DeleteRequest<'a>;
    type Subject = ();
    type Facts = NamespaceFacts;
    type Decision = GuardDecision;

    fn before_lookup(&self, ask: &DeleteRequest<'_>) -> Result<(), GuardDecision> {
        namespace_guard::exemption(self.config, ask).map_or(Ok(()), Err)
    }

    fn lookup<'s, 'q>(
        &'s self,
        cluster: &'s ClusterSource,
        ask: &'s DeleteRequest<'q>,
        (): &'s (),
        deadline: Deadline,
    ) -> BoxFuture<'s, (Result<NamespaceFacts, LookupError>, usize)>
    where
        'q: 's,
    {
        Box::pin(async move {
            let mut scan = match cluster.scan_by(ask.namespace, deadline).await {
                Ok(scan) => scan,
                Err(err) => return (Err(err), 0),
            };
            let mut volumes = VolumeCheck::NotChecked;
            if !scan.objects.is_empty() {
                let (check, calls) = cluster.volume_check(ask.namespace, deadline).await;
                volumes = check;
                // The decision's API calls, `nsguard_lookup_api_calls`, include the check's.
                scan.api_calls += calls;
            }
            let calls = scan.api_calls;
            (Ok(NamespaceFacts { scan, volumes }), calls)
        })
    }

    fn decide(
        &self,
        ask: &DeleteRequest<'_>,
        (): (),
        facts: Result<&NamespaceFacts, &LookupError>,
    ) -> GuardDecision {
        let scan = facts.map(|f| &f.scan).map_err(|e| e as &dyn Display);
        let mut decision = namespace_guard::decide(self.config, ask.namespace, scan);
        if let Ok(facts) = facts {
            decision.volumes = facts.volumes.clone();
        }
        decision
    }

    fn ask<'a>(
        &self,
        request: &'a Request<'_>,
        groups: &'a [String],
    ) -> Result<DeleteRequest<'a>, String> {
        let name = request.name.as_str();
        if name.is_empty() {
            // The API server names the namespace of every DELETE (a deletecollection is
            // reviewed item by item); without a name there is nothing to check.
            tracing::warn!(uid = %request.uid, "namespace DELETE without a name refused");
            return Err(
                "nsguard: a namespace DELETE review must name the namespace (request.name is empty)"
                    .to_owned(),
            );
        }
        if name.len() > MAX_NAME_LEN {
            // No such namespace can exist; do not carry the name into a lookup or the log.
            return Err(format!(
                "nsguard: request.name {:?} is {} bytes; a namespace name has at most {MAX_NAME_LEN}",
                excerpt(name),
                name.len(),
            ));
        }
        Ok(DeleteRequest {
            namespace: name,
            username: username(request),
            groups,
            annotations: (request.old_object.as_ref())
                .and_then(|ns| ns.metadata.annotations.as_ref())
                .map(|a| a as _),
        })
    }

    fn count(
        &self,
        metrics: &Metrics,
        decision: &GuardDecision,
        lookup: Option<&Lookup<NamespaceFacts>>,
    ) {
        if let Some(Lookup {
            read: Ok(facts),
            api_calls,
        }) = lookup
        {
            if !facts.scan.unverified.is_empty() {
                metrics.lookup_error(LookupErrorReason::UnverifiedTypes);
            }
            metrics.lookup_api_calls(*api_calls);
            if facts.scan.stale_discovery.is_some() {
                metrics.stale_discovery();
            }
        }
        metrics.namespace_delete_verdict(decision.verdict.code());
    }

    fn log(
        &self,
        request: &Request<'_>,
        ask: &DeleteRequest<'_>,
        decision: &GuardDecision,
        lookup: Option<&Lookup<NamespaceFacts>>,
        elapsed: Duration,
    ) {
        let owners: Vec<String> = (decision.owners.iter())
            .map(|o| format!("{}({})", o.owner, o.total))
            .collect();
        let unverified: Vec<&str> = (decision.unverified.iter())
            .map(|u| u.resource.as_str())
            .collect();
        tracing::info!(
            target: "nsguard::audit",
            event = "namespace-delete",
            uid = %request.uid,
            user = ask.username,
            namespace = %decision.namespace,
            dry_run = request.dry_run,
            decision = if decision.allowed() { "allowed" } else { "denied" },
            reason = decision.verdict.code(),
            lookup_error = lookup_error(lookup),
            owners = %owners.join(","),
            unverified = %unverified.join(","),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "namespace delete {}",
            if decision.allowed() { "allowed" } else { "denied" }
        );
    }

    fn regarding(&self, request: &Request<'_>, _: &DeleteRequest<'_>) -> (Regarding, &'static str) {
        let regarding = Regarding::Namespace {
            name: request.name.as_str().to_owned(),
            uid: (request.old_object.as_ref())
                .and_then(|ns| ns.metadata.uid.as_ref())
                .map(|uid| uid.as_str().to_owned()),
        };
        (regarding, "Delete")
    }

    fn allow<'r>(&self, request: &'r Request<'_>, decision: &GuardDecision) -> Response<'r> {
        // The delete goes ahead; say what it destroys for good, where kubectl shows it.
        Response {
            warnings: (decision.volumes.sentence().into_iter())
                .map(|said| format!("nsguard: namespace {:?}: {said}", decision.namespace))
                .collect(),
            ..Response::allow(request)
        }
    }

    fn refuse<'r>(&self, request: &'r Request<'_>, message: String) -> Response<'r> {
        Response::deny(request, message)
    }
}

/// The volume guard: does this claim's create or delete lose a sub-env's data? Reads the
/// sub-env's claims of that name, their volumes, and whether its namespace exists.
pub struct VolumeGuard<'a> {
    pub scheme: &'a LabelScheme,
    pub config: &'a GuardConfig,
}

impl Ruling for ClaimDecision {
    fn allowed(&self) -> bool {
        ClaimDecision::allowed(self)
    }

    fn message(&self) -> String {
        ClaimDecision::message(self)
    }
}

impl Guard for VolumeGuard<'_> {
    type Ask<'a> = ClaimRequest<'a>;
    /// The sub-env and its own namespace.
    type Subject = (StackRef, String);
    type Facts = Facts;
    type Decision = ClaimDecision;

    fn before_lookup(&self, ask: &ClaimRequest<'_>) -> Result<(StackRef, String), ClaimDecision> {
        volume_guard::before_lookup(self.scheme, self.config, ask).map_err(|decided| *decided)
    }

    fn lookup<'s, 'q>(
        &'s self,
        cluster: &'s ClusterSource,
        ask: &'s ClaimRequest<'q>,
        (stack, target): &'s (StackRef, String),
        deadline: Deadline,
    ) -> BoxFuture<'s, (Result<Facts, LookupError>, usize)>
    where
        'q: 's,
    {
        Box::pin(async move {
            let claim = ClaimUnderReview {
                namespace: ask.namespace,
                name: ask.name,
                owner: stack,
                target,
            };
            cluster.claim_facts(ask.operation, &claim, deadline).await
        })
    }

    fn decide(
        &self,
        ask: &ClaimRequest<'_>,
        (stack, target): (StackRef, String),
        facts: Result<&Facts, &LookupError>,
    ) -> ClaimDecision {
        volume_guard::decide(ask, stack, target, facts.map_err(|e| e as &dyn Display))
    }

    fn ask<'a>(
        &self,
        request: &'a Request<'_>,
        groups: &'a [String],
    ) -> Result<ClaimRequest<'a>, String> {
        let operation = claim_operation(request)
            .ok_or("nsguard: the volume guard judges a claim's CREATE or DELETE only")?;
        let meta = claim_metadata(request, operation);
        // The validating phase sees a generated name in the object, not in request.name.
        let name = Some(request.name.as_str())
            .filter(|n| !n.is_empty())
            .or_else(|| meta.and_then(|m| m.name.as_ref()).map(Text::as_str))
            .unwrap_or_default();
        let claim = ClaimRequest {
            operation,
            namespace: request.namespace.as_ref().map_or("", Text::as_str),
            name,
            labels: meta.and_then(|m| m.labels.as_ref()).map(|l| l as _),
            annotations: meta.and_then(|m| m.annotations.as_ref()).map(|a| a as _),
            ephemeral_pod: meta.and_then(Metadata::ephemeral_pod),
            username: username(request),
            groups,
        };
        match claim.invalid_names() {
            Some(invalid) => Err(format!("nsguard: {invalid}")),
            None => Ok(claim),
        }
    }

    fn count(&self, metrics: &Metrics, decision: &ClaimDecision, _: Option<&Lookup<Facts>>) {
        metrics.volume_guard_decision(decision.operation.as_str(), decision.verdict.reason());
    }

    fn log(
        &self,
        request: &Request<'_>,
        ask: &ClaimRequest<'_>,
        decision: &ClaimDecision,
        lookup: Option<&Lookup<Facts>>,
        elapsed: Duration,
    ) {
        let operation = ask.operation.as_str();
        tracing::info!(
            target: "nsguard::audit",
            event = "claim",
            operation,
            uid = %request.uid,
            user = ask.username,
            namespace = ask.namespace,
            name = ask.name,
            stack = %decision.stack_arg(),
            target_namespace = decision.target.as_deref().unwrap_or_default(),
            dry_run = request.dry_run,
            decision = if decision.allowed() { "allowed" } else { "denied" },
            reason = decision.verdict.reason(),
            lookup_error = lookup_error(lookup),
            api_calls = lookup.map_or(0, |l| l.api_calls),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "claim {operation} {}",
            if decision.allowed() { "allowed" } else { "denied" }
        );
    }

    fn regarding(
        &self,
        request: &Request<'_>,
        ask: &ClaimRequest<'_>,
    ) -> (Regarding, &'static str) {
        let regarding = Regarding::Claim {
            namespace: ask.namespace.to_owned(),
            name: ask.name.to_owned(),
            uid: claim_metadata(request, ask.operation)
                .and_then(|m| m.uid.as_ref())
                .map(|uid| uid.as_str().to_owned()),
        };
        let action = match ask.operation {
            ClaimOperation::Create => "Create",
            ClaimOperation::Delete => "Delete",
        };
        (regarding, action)
    }

    fn allow<'r>(&self, request: &'r Request<'_>, _: &ClaimDecision) -> Response<'r> {
        Response::allow(request)
    }

    /// Every refusal is a 409 Conflict (why: `Response::conflict`).
    fn refuse<'r>(&self, request: &'r Request<'_>, message: String) -> Response<'r> {
        Response::conflict(request, message)
    }
}

/// The volume guard's operation for a review: a CREATE or DELETE of the core
/// `persistentvolumeclaims` resource itself (not a subresource), known by the resource the
/// API server resolved.
pub(super) fn claim_operation(request: &Request<'_>) -> Option<ClaimOperation> {
    if !request.resource.group.as_str().is_empty()
        || request.resource.resource.as_str() != "persistentvolumeclaims"
        || request.sub_resource.is_some()
    {
        return None;
    }
    match request.operation {
        Operation::Create => Some(ClaimOperation::Create),
        Operation::Delete => Some(ClaimOperation::Delete),
        _ => None,
    }
}

/// The claim's metadata as the review carries it: the new object's for a create, the old
/// one's for a delete.
fn claim_metadata<'r, 'b>(
    request: &'r Request<'b>,
    operation: ClaimOperation,
) -> Option<&'r Metadata<'b>> {
    match operation {
        ClaimOperation::Create => request.object.as_ref(),
        ClaimOperation::Delete => request.old_object.as_ref(),
    }
    .map(|o| &o.metadata)
}

/// The decision log's `lookup_error`: why the lookup failed, as its metric label names it
/// (`deadline`, `discovery`, `read`, `busy`); empty when it did not.
fn lookup_error<F>(lookup: Option<&Lookup<F>>) -> &'static str {
    lookup
        .and_then(|l| l.read.as_ref().err())
        .map_or("", |err| err.reason().as_str())
}
