//! `serve --audit-interval`: the audit, run by the server in the background, so that
//! dashboards and alerts see what is at risk without anyone running `nsguard audit`.
//!
//! It has its own lookup (its own discovery and bound on lists in flight) and its own
//! task, and shares nothing with the admission path but the metrics registry: it never
//! delays or changes an answer. With several replicas, only the one whose [`Turn`] it is
//! (the holder of the audit's Lease, [`crate::background_audit::leader`]) audits and writes.

pub mod leader;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::admission::Webhook;
use crate::audit::policy_report;
use crate::audit::{self, Inventory};
use crate::cluster::{ClusterSource, LiveCluster};
use crate::metrics::Metrics;
use crate::simple_container::labels::LabelScheme;
use leader::Turn;

/// When and how the background audit runs.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub interval: Duration,
    /// Bound on one audit's reads (and on its PolicyReport writes).
    pub timeout: Duration,
    /// Lists in flight at once.
    pub concurrency: NonZeroUsize,
    /// Apply a PolicyReport per namespace with findings, and remove nsguard's stale ones.
    pub write_policy_reports: bool,
    /// Placement runs in `enforce`: each audit that finds sub-envs outside their
    /// namespace warns that their deploys are refused.
    pub placement_enforced: bool,
}

/// Audit the webhook's cluster source every `schedule.interval` (the first at once, or
/// as soon as the turn is this replica's), with its label scheme and into its metrics,
/// while `turn` says this replica leads, until `stop`. An audit in progress when the turn
/// ends is dropped at once, its writes with it.
pub async fn run(
    webhook: Arc<Webhook>,
    schedule: Schedule,
    mut turn: Turn,
    stop: CancellationToken,
) {
    let (source, scheme, metrics) = (&webhook.cluster, &webhook.scheme, &webhook.metrics);
    let own = match source {
        ClusterSource::Live(live) => Some(live.with_concurrency(schedule.concurrency.get())),
        ClusterSource::Dump(_) => None,
    };
    let mut ticks = tokio::time::interval(schedule.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = turn.granted() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if !turn.now() {
            continue;
        }
        let mut lost = turn.clone();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = lost.revoked() => {
                tracing::info!("background audit: dropped in progress, this replica no longer leads");
            }
            _ = once(source, own.as_ref(), scheme, metrics, &schedule, &turn) => {}
        }
    }
}

/// One audit: read, decide (off the async workers), count, and write the reports.
async fn once(
    source: &ClusterSource,
    own: Option<&LiveCluster>,
    scheme: &LabelScheme,
    metrics: &Metrics,
    schedule: &Schedule,
    turn: &Turn,
) {
    let started = Instant::now();
    let inventory: Result<Inventory, String> = match (source, own) {
        (ClusterSource::Dump(dump), _) => Ok(dump.inventory().clone()),
        (ClusterSource::Live(_), Some(live)) => live
            .inventory(schedule.timeout, Inventory::default())
            .await
            .map_err(|err| err.to_string()),
        (ClusterSource::Live(_), None) => unreachable!("a live source has its own lookup"),
    };
    let inventory = match inventory {
        Ok(inventory) => inventory,
        Err(error) => {
            metrics.audit_failed(started.elapsed());
            tracing::warn!(%error, "background audit: could not read the cluster; the audit gauges keep the last good run");
            return;
        }
    };
    let scheme = scheme.clone();
    let report =
        match tokio::task::spawn_blocking(move || audit::audit(&inventory, &scheme, &[])).await {
            Ok(report) => report,
            Err(err) => {
                metrics.audit_failed(started.elapsed());
                tracing::error!(error = %err, "background audit: the audit task failed");
                return;
            }
        };
    let counts = report.counts();
    metrics.audit_done(&counts, report.unverified.len(), started.elapsed());
    metrics.audit_sub_envs_outside(report.sub_envs_outside.len());
    if schedule.placement_enforced
        && let Some(impact) = report.enforcement_impact()
    {
        tracing::warn!(sub_envs = report.sub_envs_outside.len(), "{impact}");
    }
    tracing::info!(
        namespaces = report.namespaces,
        objects = report.objects,
        findings = report.findings.len(),
        by_type = ?counts,
        unverified = report.unverified.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "background audit done"
    );
    if let (true, Some(live)) = (schedule.write_policy_reports, own) {
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let reports = policy_report::reports(&report, now);
        let prune = report.unverified.is_empty();
        let writes = live
            .write_policy_reports(reports, prune, Instant::now() + schedule.timeout, || {
                turn.now()
            })
            .await;
        metrics.policy_report_writes("applied", writes.applied);
        metrics.policy_report_writes("unchanged", writes.unchanged);
        metrics.policy_report_writes("deleted", writes.deleted);
        metrics.policy_report_writes("failed", writes.failed.len());
        if let Some(first) = writes.failed.first() {
            tracing::warn!(
                failed = writes.failed.len(),
                first = %first,
                "background audit: some PolicyReports could not be written"
            );
        }
    }
}
