//! Which replica runs the background audit: leader election on a `coordination.k8s.io/v1`
//! Lease, so that two replicas never audit twice nor write PolicyReports over each other.
//!
//! The election itself is kube-lease-manager's (acquire, renew, release on stop, take over
//! an expired lease). What it does not give is the rule controller-runtime states as "the
//! holder stops its work before the renew deadline passes, not when it notices it lost":
//! its channel says "leader" until a renewal *succeeds* in showing otherwise, so a holder
//! cut off from the API server would go on writing past its lease's expiry, while another
//! replica takes over. nsguard therefore grants the turn only while it has *seen* its own
//! renewal: it reads the Lease about every second while it leads, and the turn ends at
//! `renewTime + leaseDuration - margin` of the last renewal it saw, whether or not the next
//! read succeeds. Another replica takes over only after `renewTime + leaseDuration` (by
//! its own clock), so the margin is also the clock skew tolerated between nodes.
//!
//! Every replica serves the webhook and answers `/readyz` the same, leader or not: only
//! the background audit and its writes wait for the turn.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The Lease and the timing of the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `holderIdentity` (unique per process).
    pub identity: String,
    /// `leaseDurationSeconds`: how long a lease holds without renewal, and so the bound on
    /// how long a crashed holder keeps the audit waiting.
    pub duration: Duration,
}

impl LeaseConfig {
    /// Seconds before expiry at which the holder renews: a third of the duration (5 s of
    /// 15 s), at least 1 s.
    fn grace_seconds(&self) -> u64 {
        (self.duration.as_secs() / 3).max(1)
    }

    /// How long before its lease could expire the holder stops: half the renew window.
    fn margin(&self) -> Duration {
        Duration::from_secs(self.grace_seconds()) / 2
    }

    /// How often the holder reads the Lease back: often enough to see each renewal twice
    /// inside the margin, at most once a second.
    fn check_interval(&self) -> Duration {
        (self.margin() / 2).min(Duration::from_secs(1))
    }
}

/// What the election grants this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    No,
    /// Until this moment: the last renewal seen, plus the duration, less the margin.
    Until(Instant),
    /// No election: the only auditor.
    Always,
}

/// Whether this replica may run the background audit and write its reports now. The
/// grant carries its own deadline, so a writer that asks is told "no" the moment the
/// lease could run out, however late the election task runs.
#[derive(Debug, Clone)]
pub struct Turn {
    grant: watch::Receiver<Grant>,
    /// Without an election, the sender that keeps [`Grant::Always`] (a dropped one would
    /// read as "the election ended").
    _always: Option<Arc<watch::Sender<Grant>>>,
}

impl Turn {
    /// No election: this process is the only auditor (outside a cluster, or over a dump).
    pub fn always() -> Turn {
        let (send, grant) = watch::channel(Grant::Always);
        Turn {
            grant,
            _always: Some(Arc::new(send)),
        }
    }

    /// Whether the turn is this replica's at this moment.
    pub fn now(&self) -> bool {
        match *self.grant.borrow() {
            Grant::No => false,
            Grant::Until(until) => Instant::now() < until,
            Grant::Always => true,
        }
    }

    /// Wait until the turn is this replica's.
    pub async fn granted(&mut self) {
        while !self.now() {
            // An error means the election task is gone: the turn never comes back.
            if self.grant.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Wait until the turn is no longer this replica's: taken away, or run out.
    pub async fn revoked(&mut self) {
        loop {
            let grant = *self.grant.borrow_and_update();
            let changed = match grant {
                Grant::No => return,
                Grant::Until(until) if Instant::now() >= until => return,
                Grant::Until(until) => tokio::select! {
                    changed = self.grant.changed() => changed,
                    _ = tokio::time::sleep_until(until) => return,
                },
                Grant::Always => self.grant.changed().await,
            };
            if changed.is_err() {
                return;
            }
        }
    }
}

/// Take part in the election for `config`'s Lease until `stop`; the returned [`Turn`]
/// says when this replica leads. The task releases the lease when `stop` is cancelled:
/// await its handle (bounded) before the process exits, so another replica takes over at
/// once rather than after the lease expires.
pub fn elect(
    client: Client,
    config: LeaseConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> (Turn, JoinHandle<()>) {
    let (send, receive) = watch::channel(Grant::No);
    metrics.audit_leader(false);
    let task = tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
        loop {
            let Some(manager) = build(&client, &config, &stop).await else {
                return;
            };
            let (held, election) = manager.watch().await;
            let released = follow(held, &leases, &config, &send, &metrics, &stop).await;
            match released {
                // A follower saw the lease released (or deleted): contend for it now. The
                // old manager ends; it releases nothing it does not hold.
                Some(true) => {
                    let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
                    tracing::debug!(lease = %config.name, "the audit lease is free; contending for it");
                }
                Some(false) => return,
                None => {
                    // Stopping: the turn is already given up; now the lease.
                    match tokio::time::timeout(Duration::from_secs(5), election).await {
                        Ok(Ok(Ok(_))) => {
                            tracing::info!(lease = %config.name, "released the audit lease")
                        }
                        Ok(Ok(Err(err))) => tracing::warn!(lease = %config.name, error = %err,
                            "could not release the audit lease; another replica takes over when it expires"),
                        Ok(Err(err)) => {
                            tracing::warn!(error = %err, "the leader election task failed")
                        }
                        Err(_) => tracing::warn!(lease = %config.name,
                            "releasing the audit lease took over 5s; another replica takes over when it expires"),
                    }
                    return;
                }
            }
        }
    });
    (
        Turn {
            grant: receive,
            _always: None,
        },
        task,
    )
}

/// Follow one lease manager's answers, granting the turn only while a renewal of ours
/// has been seen in time. Returns `None` when `stop` is cancelled (the turn given up),
/// `Some(true)` when this replica follows and the lease has been released or deleted
/// (the manager would sleep until the old expiry: start over to take it at once), and
/// `Some(false)` when the election task ended.
async fn follow(
    mut held: watch::Receiver<bool>,
    leases: &Api<Lease>,
    config: &LeaseConfig,
    send: &watch::Sender<Grant>,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Option<bool> {
    let mut checks = tokio::time::interval(config.check_interval());
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Until when the turn is ours: the last renewal we saw, plus the duration, less the
    // margin. `None`: not ours.
    let mut until: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                announce(send, metrics, config, false, "shutting down");
                return None;
            }
            changed = held.changed() => {
                if changed.is_err() {
                    tracing::error!(lease = %config.name, "the leader election stopped; this replica no longer audits");
                    announce(send, metrics, config, false, "the election stopped");
                    return Some(false);
                }
                let leads = *held.borrow_and_update();
                until = match leads {
                    // Acquired: read the renewal now rather than at the next check.
                    true => renewed_until(leases, config).await,
                    false => None,
                };
            }
            _ = checks.tick() => {
                let leads = *held.borrow();
                if leads {
                    until = renewed_until(leases, config).await.or(until);
                } else if is_free(leases, config).await && !*held.borrow() {
                    return Some(true);
                }
            }
            // Wake when the grant runs out, to say so at that moment.
            _ = tokio::time::sleep_until(until.unwrap_or_else(far_future)), if until.is_some() => {}
        }
        let leads = *held.borrow();
        let until = until.filter(|u| leads && Instant::now() < *u);
        send.send_if_modified(|grant| {
            let new = until.map_or(Grant::No, Grant::Until);
            let modified = *grant != new;
            *grant = new;
            modified
        });
        let why = if until.is_some() {
            "acquired the lease"
        } else if leads {
            "no renewal seen in time; stopping before the lease can expire"
        } else {
            "the lease is held by another replica"
        };
        announce(send, metrics, config, until.is_some(), why);
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// Whether the Lease has no holder, or is gone.
async fn is_free(leases: &Api<Lease>, config: &LeaseConfig) -> bool {
    match tokio::time::timeout(config.check_interval(), leases.get_opt(&config.name)).await {
        Ok(Ok(Some(lease))) => lease
            .spec
            .and_then(|s| s.holder_identity)
            .is_none_or(|h| h.is_empty()),
        Ok(Ok(None)) => true,
        _ => false,
    }
}

/// The lease manager, built once the Lease can be read or created; retried with backoff
/// until `stop`. `None` when stopped first.
async fn build(
    client: &Client,
    config: &LeaseConfig,
    stop: &CancellationToken,
) -> Option<kube_lease_manager::LeaseManager> {
    let mut backoff = Duration::from_millis(500);
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_field_manager(format!("nsguard-{}", config.identity))
            .with_duration(config.duration.as_secs())
            .with_grace(config.grace_seconds())
            .build();
        let failed = tokio::select! {
            _ = stop.cancelled() => return None,
            built = built => match built {
                Ok(manager) => return Some(manager),
                Err(err) => err,
            },
        };
        tracing::warn!(
            lease = %config.name,
            namespace = %config.namespace,
            error = %failed,
            retry_in = ?backoff,
            "cannot read or create the audit lease (is the Role of manifests/base/rbac.yaml applied?); this replica does not audit until it can"
        );
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Until when the Lease, as read now, lets this replica act: its `renewTime` plus
/// `leaseDurationSeconds`, less the margin, when it names this replica; `None` when the
/// read fails (the last good answer stands until it runs out) or names another.
async fn renewed_until(leases: &Api<Lease>, config: &LeaseConfig) -> Option<Instant> {
    let read = tokio::time::timeout(config.check_interval(), leases.get_opt(&config.name)).await;
    let lease = match read {
        Ok(Ok(Some(lease))) => lease,
        Ok(Ok(None)) => return Some(Instant::now()),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "reading the audit lease failed");
            return None;
        }
        Err(_) => return None,
    };
    let spec = lease.spec?;
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Some(Instant::now());
    }
    let renewed = spec.renew_time?.0;
    let duration = spec
        .lease_duration_seconds
        .map_or(config.duration, |s| Duration::from_secs(s.max(0) as u64));
    let expires = renewed
        .checked_add(SignedDuration::try_from(duration).ok()?)
        .ok()?;
    let left = Timestamp::now().duration_until(expires);
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Some(Instant::now() + left.saturating_sub(config.margin()))
}

/// Log and count a change of turn (the metric and the log say what the grant says).
fn announce(
    send: &watch::Sender<Grant>,
    metrics: &Metrics,
    config: &LeaseConfig,
    mine: bool,
    why: &str,
) {
    if !mine {
        send.send_if_modified(|grant| {
            let modified = *grant != Grant::No;
            *grant = Grant::No;
            modified
        });
    }
    if metrics.audit_leads() == mine {
        return;
    }
    metrics.audit_leader(mine);
    if mine {
        tracing::info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "this replica now runs the background audit: {why}");
    } else {
        tracing::info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "this replica no longer runs the background audit: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_stops_well_before_its_lease_can_expire() {
        let config = |secs| LeaseConfig {
            namespace: "nsguard-system".into(),
            name: "nsguard-audit".into(),
            identity: "a".into(),
            duration: Duration::from_secs(secs),
        };
        // The shipped 15 s: renew 5 s before expiry, stop 2.5 s before, read every second.
        let shipped = config(15);
        assert_eq!(shipped.grace_seconds(), 5);
        assert_eq!(shipped.margin(), Duration::from_millis(2500));
        assert_eq!(shipped.check_interval(), Duration::from_secs(1));
        // A short lease still reads each renewal at least twice inside the margin.
        let short = config(3);
        assert_eq!(short.grace_seconds(), 1);
        assert_eq!(short.margin(), Duration::from_millis(500));
        assert_eq!(short.check_interval(), Duration::from_millis(250));
    }
}
