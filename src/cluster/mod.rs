//! What nsguard reads of the cluster and writes into it: a live API server or a dump
//! file behind one interface for the reads ([`ClusterSource`]), Events, PolicyReports and
//! readiness. Decides nothing: the guards' steps are [`crate::admission::pipeline`]'s.

pub mod deadline;
pub mod dump;
pub mod events;
pub mod health;
pub mod live;
pub mod report_writer;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::decisions::data_at_risk::VolumeCheck;
use crate::decisions::namespace_guard::NamespaceScan;
use crate::decisions::volume_guard::{ClaimOperation, ClaimUnderReview, Facts};
pub use deadline::Deadline;
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

    /// What `namespace` holds, read by `deadline`. A dump answers at once.
    pub async fn scan_by(
        &self,
        namespace: &str,
        deadline: Deadline,
    ) -> Result<NamespaceScan, LookupError> {
        match self {
            ClusterSource::Live(live) => live.scan_by(namespace, deadline).await,
            ClusterSource::Dump(dump) => Ok(dump.scan(namespace)),
        }
    }

    /// The volumes a delete of `namespace` destroys for good, read by `deadline`, with
    /// the API calls it took. Never fails a decision: what could not be read is said.
    pub async fn volume_check(&self, namespace: &str, deadline: Deadline) -> (VolumeCheck, usize) {
        match self {
            ClusterSource::Dump(dump) => (VolumeCheck::Checked(dump.volumes_at_risk(namespace)), 0),
            ClusterSource::Live(live) => {
                let calls = AtomicUsize::new(0);
                let check = match live.volumes_at_risk(namespace, deadline.at(), &calls).await {
                    Ok(volumes) => VolumeCheck::Checked(volumes),
                    Err(err) => VolumeCheck::Failed(err.to_string()),
                };
                (check, calls.into_inner())
            }
        }
    }

    /// What the volume guard decides `claim`'s `operation` over, read by `deadline`, with
    /// the API calls it took (those made before a failure too).
    ///
    /// # Guarantees
    /// Answers by `deadline`: a read still running then is [`LookupError::Unfinished`].
    pub async fn claim_facts(
        &self,
        operation: ClaimOperation,
        claim: &ClaimUnderReview<'_>,
        deadline: Deadline,
    ) -> (Result<Facts, LookupError>, usize) {
        match self {
            ClusterSource::Dump(dump) => (Ok(dump.claim_facts(claim)), 0),
            ClusterSource::Live(live) => {
                let calls = AtomicUsize::new(0);
                let read = tokio::time::timeout_at(
                    deadline.at(),
                    live.claim_facts(operation, claim, deadline, &calls),
                )
                .await;
                let calls = calls.into_inner();
                let read = read.unwrap_or_else(|_| {
                    Err(LookupError::Unfinished {
                        server: live.server().to_owned(),
                        timeout: deadline.timeout(),
                        calls,
                    })
                });
                (read, calls)
            }
        }
    }
}
