//! Whether the cluster source can answer, for `/readyz`, and what nsguard may not list.
//!
//! Ready means the first discovery succeeded: a pod that cannot reach its API server would
//! deny every namespace delete, so it should not receive reviews while another replica
//! can. Liveness stays independent of the API server (an unreachable API server is not
//! cured by a restart). A dump is ready at once.

use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::live::{AccessReport, LiveCluster};
use crate::decisions::namespace_guard::lookup_role;
use crate::metrics::Metrics;

/// How often a check is retried while the first one has not succeeded.
const RETRY_UNTIL_READY: Duration = Duration::from_secs(2);

/// The last word of the cluster check.
#[derive(Debug)]
pub struct ClusterHealth {
    state: Mutex<Health>,
}

#[derive(Debug, Clone)]
enum Health {
    /// Not checked successfully yet; the text says why.
    Waiting(String),
    /// Checked; the text lists what nsguard may not list (empty when nothing).
    Ready(String),
}

impl ClusterHealth {
    /// Ready at once: a dump needs no API server.
    pub fn ready() -> Self {
        Self {
            state: Mutex::new(Health::Ready(String::new())),
        }
    }

    /// Not ready until [`watch`] has checked the API server once.
    pub fn waiting() -> Self {
        Self {
            state: Mutex::new(Health::Waiting(
                "the first discovery of the API server has not finished".to_owned(),
            )),
        }
    }

    /// `Ok(details)` when ready, `Err(why)` when not.
    pub fn status(&self) -> Result<String, String> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            Health::Ready(details) => Ok(details.clone()),
            Health::Waiting(why) => Err(why.clone()),
        }
    }

    fn set(&self, health: Health) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = health;
    }
}

/// Check the API server at once, then every `interval` (every 2s until the first success):
/// discovery plus an access review. Readiness, the `nsguard_unlistable_resource_types`
/// gauge and a log line follow each result. A failure after the first success keeps the
/// pod ready (lookups fail closed on their own) and is logged.
pub async fn watch(
    live: &LiveCluster,
    health: &ClusterHealth,
    metrics: &Metrics,
    interval: Duration,
    timeout: Duration,
    stop: CancellationToken,
) {
    let mut checked = false;
    loop {
        match live.access_check(timeout).await {
            Ok(report) => {
                if let Ok(unlistable) = &report.access {
                    metrics.unlistable_types(unlistable.types.len());
                }
                log_report(live.server(), &report);
                health.set(Health::Ready(describe(&report)));
                checked = true;
            }
            Err(err) => {
                tracing::warn!(server = live.server(), error = %err, "cluster check failed");
                if !checked {
                    health.set(Health::Waiting(err.to_string()));
                }
            }
        }
        let wait = if checked { interval } else { RETRY_UNTIL_READY };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn log_report(server: &str, report: &AccessReport) {
    match &report.access {
        Ok(unlistable) if unlistable.types.is_empty() => tracing::info!(
            server,
            types = report.types,
            "cluster check: nsguard may list every discovered resource type"
        ),
        Ok(unlistable) => tracing::warn!(
            server,
            types = report.types,
            unlistable = %unlistable.types.join(","),
            incomplete = unlistable.incomplete,
            "cluster check: nsguard may not list some resource types; a namespace delete fails closed while they are not listable"
        ),
        Err(err) => tracing::warn!(
            server,
            types = report.types,
            error = %err,
            "cluster check: could not check which resource types nsguard may list"
        ),
    }
}

/// The `/readyz` details: what nsguard may not list, and the ClusterRole that fixes it.
fn describe(report: &AccessReport) -> String {
    let mut out = String::new();
    match &report.access {
        Ok(unlistable) if !unlistable.types.is_empty() => {
            out.push_str(&format!(
                "warning: nsguard may not list {} of {} resource types{}: {}\n",
                unlistable.types.len(),
                report.types,
                if unlistable.incomplete {
                    " (the API server's rules may be incomplete)"
                } else {
                    ""
                },
                unlistable.types.join(", ")
            ));
            if let Some(role) = lookup_role(unlistable.types.iter().map(String::as_str)) {
                out.push_str("to let nsguard list them, apply:\n");
                out.push_str(&role);
                out.push('\n');
            }
        }
        Ok(_) => {}
        Err(err) => out.push_str(&format!(
            "warning: could not check which resource types nsguard may list: {err}\n"
        )),
    }
    for failed in &report.discovery_failed {
        out.push_str(&format!(
            "warning: discovery of {} failed: {}\n",
            failed.resource, failed.reason
        ));
    }
    out
}
