//! Where the guard learns what a namespace holds: a live API server or a dump file,
//! behind one interface.

pub mod dump;
pub mod events;
pub mod health;
pub mod live;
pub mod report_writer;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::decisions::data_at_risk::VolumeCheck;
use crate::decisions::namespace_guard::{
    self, DeleteRequest, GuardConfig, GuardDecision, NamespaceScan,
};
use crate::decisions::volume_guard::{self, ClaimDecision, ClaimRequest, ClaimUnderReview};
use crate::simple_container::labels::LabelScheme;
pub use dump::ClusterDump;
pub use health::ClusterHealth;
pub use live::{CallError, LiveCluster, LiveOptions, LookupError};

/// What the volume guard reads of a claim besides its name: its labels, its annotations
/// (the break-glass among them) and the Pod that controls it, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimMetadata {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// [`crate::decisions::data_at_risk::ephemeral_pod`].
    pub ephemeral_pod: Option<String>,
}

/// The source of cluster state.
pub enum ClusterSource {
    Live(LiveCluster),
    Dump(ClusterDump),
}

impl ClusterSource {
    /// What `namespace` holds, within `timeout`. A dump answers at once.
    pub async fn scan(
        &self,
        namespace: &str,
        timeout: Duration,
    ) -> Result<NamespaceScan, LookupError> {
        match self {
            ClusterSource::Live(live) => live.scan(namespace, timeout).await,
            ClusterSource::Dump(dump) => Ok(dump.scan(namespace)),
        }
    }

    /// The annotations of a Namespace; `None` when it does not exist.
    pub async fn namespace_annotations(
        &self,
        namespace: &str,
        timeout: Duration,
    ) -> Result<Option<BTreeMap<String, String>>, LookupError> {
        match self {
            ClusterSource::Live(live) => live.namespace_annotations(namespace, timeout).await,
            ClusterSource::Dump(dump) => Ok(dump.namespace_annotations(namespace)),
        }
    }

    /// What the volume guard reads of the claim `namespace/name`; `None` when it does not
    /// exist.
    pub async fn claim_metadata(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<ClaimMetadata>, LookupError> {
        match self {
            ClusterSource::Live(live) => live.claim_metadata(namespace, name, timeout).await,
            ClusterSource::Dump(dump) => Ok(dump.claim_metadata(namespace, name)),
        }
    }

    /// The volumes a delete of `namespace` destroys for good, in what is left before
    /// `deadline`, with the API calls it took. Never changes a verdict: it only adds to
    /// the message.
    async fn volume_check(
        &self,
        namespace: &str,
        deadline: tokio::time::Instant,
    ) -> (VolumeCheck, usize) {
        match self {
            ClusterSource::Dump(dump) => (VolumeCheck::Checked(dump.volumes_at_risk(namespace)), 0),
            ClusterSource::Live(live) => {
                let calls = AtomicUsize::new(0);
                let check = match live.volumes_at_risk(namespace, deadline, &calls).await {
                    Ok(volumes) => VolumeCheck::Checked(volumes),
                    Err(err) => VolumeCheck::Failed(err.to_string()),
                };
                (check, calls.into_inner())
            }
        }
    }

    /// The volume guard's whole question, as the webhook and the CLI both ask it: what
    /// needs no lookup first, then the sub-env's claims and volumes read under `timeout`,
    /// then the decision. A lookup that fails or passes its deadline refuses (fail
    /// closed), with the reason. Also returned: the API calls the lookup made (its audit
    /// line says them), or why it failed (for `nsguard_lookup_errors_total`); `None`
    /// when decided without a lookup.
    pub async fn volume_guard(
        &self,
        scheme: &LabelScheme,
        config: &GuardConfig,
        request: &ClaimRequest<'_>,
        timeout: Duration,
    ) -> (ClaimDecision, Option<Result<usize, &'static str>>) {
        let (stack, target) = match volume_guard::before_lookup(scheme, config, request) {
            Ok(subject) => subject,
            Err(decided) => return (*decided, None),
        };
        let claim = ClaimUnderReview {
            namespace: request.namespace,
            name: request.name,
            owner: &stack,
            target: &target,
        };
        let (facts, lookup) = match self {
            ClusterSource::Dump(dump) => (Ok(dump.claim_facts(&claim)), Ok(0)),
            ClusterSource::Live(live) => {
                let calls = AtomicUsize::new(0);
                let deadline = tokio::time::Instant::now() + timeout;
                let read = tokio::time::timeout_at(
                    deadline,
                    live.claim_facts(request.operation, &claim, deadline, &calls),
                )
                .await;
                let calls = calls.into_inner();
                match read {
                    Ok(Ok(facts)) => (Ok(facts), Ok(calls)),
                    Ok(Err(err)) => (Err(err.to_string()), Err(err.reason())),
                    Err(_) => (
                        Err(format!(
                            "the cluster lookup at {} did not finish within {timeout:?} ({calls} calls made)",
                            live.server()
                        )),
                        Err("deadline"),
                    ),
                }
            }
        };
        let decision =
            volume_guard::decide(request, stack, target, facts.as_ref().map_err(Clone::clone));
        (decision, Some(lookup))
    }

    /// The guard's whole question, as the webhook and the CLI both ask it: exemptions
    /// first (no lookup needed), then a scan under `timeout`, then the decision. The scan
    /// (or its error) is returned too, for metrics.
    ///
    /// # Guarantees
    /// Never allows when the lookup failed, passed its deadline, or could not list a type
    /// (unless what was read already denies); exemptions are checked before any API call.
    pub async fn guard(
        &self,
        config: &GuardConfig,
        request: &DeleteRequest<'_>,
        timeout: Duration,
    ) -> (GuardDecision, Option<Result<NamespaceScan, LookupError>>) {
        if let Some(decision) = namespace_guard::exemption(config, request) {
            return (decision, None);
        }
        // One deadline for the decision's every read: the scan's and the volume check's.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut scan = match self {
            ClusterSource::Live(live) => live.scan_by(request.namespace, deadline, timeout).await,
            ClusterSource::Dump(dump) => Ok(dump.scan(request.namespace)),
        };
        let mut decision = match &scan {
            Ok(scan) => namespace_guard::decide(config, request.namespace, Ok(scan)),
            Err(err) => namespace_guard::decide(config, request.namespace, Err(&err.to_string())),
        };
        if !decision.owners.is_empty() {
            let (volumes, calls) = self.volume_check(request.namespace, deadline).await;
            decision.volumes = volumes;
            // The decision's API calls, `nsguard_lookup_api_calls`, include the check's.
            if let Ok(scan) = &mut scan {
                scan.api_calls += calls;
            }
        }
        (decision, Some(scan))
    }
}
