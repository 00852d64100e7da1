//! Kubernetes Events for refused namespace deletes, so that `kubectl events` (`-n default
//! --for namespace/NS`) and event exporters say why, to whoever looks later (not only the person whose kubectl
//! printed the denial).
//!
//! Never on the decision's path: the admission handler hands the refusal to a bounded
//! queue ([`EventSink::record`], which never waits) and answers; one task writes. A full
//! queue or a failed write is counted (`nsguard_events_total{result}`) and logged, never
//! retried into the answer. Aggregated as client-go's and kube-runtime's recorders do: the
//! refusals of one namespace within [`SERIES_TTL`] are one Event (`events.k8s.io/v1`) whose
//! `series.count` grows, and the count is written at most every [`WRITE_EVERY`], so a loop
//! of refused deletes costs the API server one create and a patch every few seconds.
//! (kube-runtime's `events::Recorder` keys its series the same way but writes on every
//! publish, a patch per repeat: a retry loop would be a write per refused delete.)
//!
//! A Namespace is cluster-scoped, so its Events live in the `default` namespace, where
//! client-go puts the Events of cluster-scoped objects and `kubectl describe` finds them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Where the Events of cluster-scoped objects live.
pub const EVENTS_NAMESPACE: &str = "default";
/// `reportingController` of every Event nsguard writes.
pub const REPORTING_CONTROLLER: &str = "nsguard.dev/namespace-guard";
/// The refusals of one namespace within this long are one Event (kube-runtime's 6 minutes).
pub const SERIES_TTL: Duration = Duration::from_secs(6 * 60);
/// A growing count is written at most this often per Event.
pub const WRITE_EVERY: Duration = Duration::from_secs(10);
/// Refusals waiting for the writer; more are dropped (and counted).
const QUEUE: usize = 256;
/// Bound of one write to the API server.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The API server refuses a longer `note`.
const MAX_NOTE_BYTES: usize = 1024;

/// One refused, non-dry-run namespace delete.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub namespace: String,
    /// The Namespace's uid, from the review's `oldObject`, when sent.
    pub uid: Option<String>,
    /// Who asked (the review's `userInfo.username`).
    pub user: String,
    /// The denial's message (owners named).
    pub message: String,
}

/// The handle the admission handler records refusals through.
#[derive(Clone)]
pub struct EventSink {
    queue: mpsc::Sender<Refusal>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("queued", &(QUEUE - self.queue.capacity()))
            .finish()
    }
}

impl EventSink {
    /// Queue `refusal` for the writer; never waits. A full queue drops it (counted).
    pub fn record(&self, refusal: Refusal) {
        if let Err(err) = self.queue.try_send(refusal) {
            self.metrics.event_write("dropped");
            tracing::warn!(error = %err, "Event for a refused namespace delete dropped: the writer is behind");
        }
    }
}

/// Start the writer: Events in [`EVENTS_NAMESPACE`] through `client`, reported by
/// `instance` (the pod), until `stop`.
pub fn spawn(
    client: kube::Client,
    instance: String,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> EventSink {
    let (queue, refusals) = mpsc::channel(QUEUE);
    let writer = Writer {
        api: Api::namespaced(client, EVENTS_NAMESPACE),
        instance,
        metrics: metrics.clone(),
        open: HashMap::new(),
    };
    tokio::spawn(writer.run(refusals, stop));
    EventSink { queue, metrics }
}

/// An Event written for a namespace, and the refusals since.
#[derive(Debug)]
struct Open {
    name: String,
    /// Refusals seen, and how many the API server has.
    count: i32,
    written: i32,
    last_seen: Instant,
    last_written: Instant,
}

struct Writer {
    api: Api<Event>,
    instance: String,
    metrics: Arc<Metrics>,
    /// By namespace.
    open: HashMap<String, Open>,
}

impl Writer {
    async fn run(mut self, mut refusals: mpsc::Receiver<Refusal>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                refusal = refusals.recv() => match refusal {
                    Some(refusal) => self.refused(refusal).await,
                    None => return,
                },
                _ = tick.tick() => self.flush(Instant::now(), false).await,
                () = stop.cancelled() => {
                    // What is counted but not written yet goes out before the process does.
                    self.flush(Instant::now(), true).await;
                    return;
                }
            }
        }
    }

    async fn refused(&mut self, refusal: Refusal) {
        let now = Instant::now();
        if let Some(open) = self.open.get_mut(&refusal.namespace)
            && now.duration_since(open.last_seen) < SERIES_TTL
        {
            open.count += 1;
            open.last_seen = now;
            return;
        }
        let event = event(&refusal, &self.instance);
        let name = event.metadata.name.clone().unwrap_or_default();
        let created = tokio::time::timeout(
            WRITE_TIMEOUT,
            self.api.create(&PostParams::default(), &event),
        )
        .await;
        match created {
            Ok(Ok(_)) => {
                self.metrics.event_write("created");
                self.open.insert(
                    refusal.namespace,
                    Open {
                        name,
                        count: 1,
                        written: 1,
                        last_seen: now,
                        last_written: now,
                    },
                );
            }
            Ok(Err(err)) => self.failed(&refusal.namespace, &err.to_string()),
            Err(_) => self.failed(&refusal.namespace, "timed out"),
        }
    }

    /// Write the counts that grew (each at most every [`WRITE_EVERY`], all when `all`),
    /// and forget the Events past [`SERIES_TTL`].
    async fn flush(&mut self, now: Instant, all: bool) {
        let due: Vec<(String, String, i32)> = self
            .open
            .iter()
            .filter(|(_, open)| {
                open.count > open.written
                    && (all || now.duration_since(open.last_written) >= WRITE_EVERY)
            })
            .map(|(namespace, open)| (namespace.clone(), open.name.clone(), open.count))
            .collect();
        for (namespace, name, count) in due {
            let patch = serde_json::json!({
                "series": EventSeries {
                    count,
                    last_observed_time: MicroTime(k8s_openapi::jiff::Timestamp::now()),
                }
            });
            let patched = tokio::time::timeout(
                WRITE_TIMEOUT,
                self.api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
            match patched {
                Ok(Ok(_)) => {
                    self.metrics.event_write("updated");
                    if let Some(open) = self.open.get_mut(&namespace) {
                        open.written = count;
                        open.last_written = now;
                    }
                }
                failed => {
                    let error = match failed {
                        Ok(Err(err)) => err.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    self.failed(&namespace, &error);
                    // Tried again after WRITE_EVERY, not every tick.
                    if let Some(open) = self.open.get_mut(&namespace) {
                        open.last_written = now;
                    }
                }
            }
        }
        self.open
            .retain(|_, open| now.duration_since(open.last_seen) < SERIES_TTL);
    }

    fn failed(&self, namespace: &str, error: &str) {
        self.metrics.event_write("failed");
        tracing::warn!(
            namespace,
            error,
            "could not write the Event for a refused namespace delete (the delete was refused all the same)"
        );
    }
}

/// The Event for `refusal`: Warning `DeleteDenied` about the Namespace, the denial and
/// who asked in its note, on one line (`kubectl events` and `kubectl get events` print a
/// note as a table cell) and cut to the API server's 1 KiB.
pub fn event(refusal: &Refusal, instance: &str) -> Event {
    let now = k8s_openapi::jiff::Timestamp::now();
    let denial: Vec<&str> = refusal
        .message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let note = cut(
        format!(
            "delete requested by {} refused: {}",
            refusal.user,
            denial.join(" ")
        ),
        MAX_NOTE_BYTES,
    );
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", refusal.namespace, now.as_nanosecond())),
            namespace: Some(EVENTS_NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some("Delete".to_owned()),
        reason: Some("DeleteDenied".to_owned()),
        type_: Some("Warning".to_owned()),
        note: Some(note),
        reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
        reporting_instance: Some(cut(instance.to_owned(), 128)),
        regarding: Some(ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Namespace".to_owned()),
            name: Some(refusal.namespace.clone()),
            uid: refusal.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

/// `text` cut to at most `bytes` bytes at a character boundary, marked when cut.
fn cut(mut text: String, bytes: usize) -> String {
    if text.len() <= bytes {
        return text;
    }
    let mut end = bytes.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("...");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_names_the_namespace_the_user_and_fits_the_api_servers_limits() {
        let refusal = Refusal {
            namespace: "shop".into(),
            uid: Some("uid-1".into()),
            user: "alice".into(),
            message: format!(
                "nsguard: namespace \"shop\" holds objects of 2 stacks: {}",
                "é".repeat(2000)
            ),
        };
        let event = event(&refusal, "nsguard-7d9f");
        let note = event.note.unwrap();
        assert!(
            note.len() <= 1024 && note.ends_with("..."),
            "{}",
            note.len()
        );
        assert!(note.starts_with("delete requested by alice refused: nsguard: namespace \"shop\""));
        let regarding = event.regarding.unwrap();
        assert_eq!(
            (
                regarding.kind.as_deref(),
                regarding.name.as_deref(),
                regarding.uid.as_deref()
            ),
            (Some("Namespace"), Some("shop"), Some("uid-1"))
        );
        assert_eq!(event.reason.as_deref(), Some("DeleteDenied"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
        assert!(event.metadata.name.unwrap().starts_with("shop."));
        assert_eq!(cut("abc".into(), 3), "abc");
        let lines = Refusal {
            message: "nsguard: namespace \"shop\" holds objects of 2 stacks:\n  - stack a/x\n  - stack b/y\nTo proceed: ...".into(),
            ..refusal
        };
        assert_eq!(
            super::event(&lines, "nsguard").note.unwrap(),
            "delete requested by alice refused: nsguard: namespace \"shop\" holds objects of 2 stacks: - stack a/x - stack b/y To proceed: ..."
        );
    }
}
