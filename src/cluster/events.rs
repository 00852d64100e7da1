//! Kubernetes Events for refused namespace deletes and refused claims, so that `kubectl
//! events` (`-n default --for namespace/NS`, `-n NS --for pvc/NAME`) and event exporters
//! say why, to whoever looks later (not only the person whose kubectl printed the denial).
//!
//! Never on the decision's path: the admission handler hands the refusal to a bounded
//! queue ([`EventSink::record`], which never waits) and answers; one task writes. A full
//! queue or a failed write is counted (`nsguard_events_total{result}`) and logged, never
//! retried into the answer. Aggregated as client-go's and kube-runtime's recorders do: the
//! refusals of one object within [`SERIES_TTL`] are one Event (`events.k8s.io/v1`) whose
//! `series.count` grows, and the count is written at most every [`WRITE_EVERY`], so a loop
//! of refused deletes costs the API server one create and a patch every few seconds.
//! (kube-runtime's `events::Recorder` keys its series the same way but writes on every
//! publish, a patch per repeat: a retry loop would be a write per refused delete.)
//!
//! A Namespace is cluster-scoped, so its Events live in the `default` namespace, where
//! client-go puts the Events of cluster-scoped objects; a claim's live in its own namespace
//! (the API server requires an Event's namespace to be its object's).

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
/// `reportingController` of the namespace guard's Events.
pub const REPORTING_CONTROLLER: &str = "nsguard.dev/namespace-guard";
/// `reportingController` of the volume guard's Events.
pub const VOLUME_GUARD_CONTROLLER: &str = "nsguard.dev/volume-guard";
/// The refusals of one object within this long are one Event (kube-runtime's 6 minutes).
pub const SERIES_TTL: Duration = Duration::from_secs(6 * 60);
/// A growing count is written at most this often per Event.
pub const WRITE_EVERY: Duration = Duration::from_secs(10);
/// Refusals waiting for the writer; more are dropped (and counted).
const QUEUE: usize = 256;
/// Bound of one write to the API server.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The API server refuses a longer `note`.
const MAX_NOTE_BYTES: usize = 1024;

/// One refused, non-dry-run request.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub regarding: Regarding,
    /// What was refused: `Delete` or `Create`.
    pub action: &'static str,
    /// Who asked (the review's `userInfo.username`).
    pub user: String,
    /// The denial's message.
    pub message: String,
}

/// The object a refusal is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Regarding {
    /// A Namespace (a refused delete); its uid from the review's `oldObject`, when sent.
    Namespace { name: String, uid: Option<String> },
    /// A PersistentVolumeClaim (the volume guard); no uid for one not created yet.
    Claim {
        namespace: String,
        name: String,
        uid: Option<String>,
    },
}

impl Regarding {
    /// The namespace its Events live in.
    fn events_namespace(&self) -> &str {
        match self {
            Regarding::Namespace { .. } => EVENTS_NAMESPACE,
            Regarding::Claim { namespace, .. } => namespace,
        }
    }

    fn name(&self) -> &str {
        match self {
            Regarding::Namespace { name, .. } | Regarding::Claim { name, .. } => name,
        }
    }

    fn reference(&self) -> ObjectReference {
        let (kind, namespace, name, uid) = match self {
            Regarding::Namespace { name, uid } => ("Namespace", None, name, uid),
            Regarding::Claim {
                namespace,
                name,
                uid,
            } => ("PersistentVolumeClaim", Some(namespace.clone()), name, uid),
        };
        ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some(kind.to_owned()),
            namespace,
            name: Some(name.clone()),
            uid: uid.clone(),
            ..ObjectReference::default()
        }
    }

    fn controller(&self) -> &'static str {
        match self {
            Regarding::Namespace { .. } => REPORTING_CONTROLLER,
            Regarding::Claim { .. } => VOLUME_GUARD_CONTROLLER,
        }
    }
}

/// One Event series: the refusals of one action on one object (the uid left out, so a
/// claim refused before and after it exists is one series).
type SeriesKey = (String, &'static str, String, &'static str);

fn series_key(refusal: &Refusal) -> SeriesKey {
    let kind = match refusal.regarding {
        Regarding::Namespace { .. } => "Namespace",
        Regarding::Claim { .. } => "PersistentVolumeClaim",
    };
    (
        refusal.regarding.events_namespace().to_owned(),
        kind,
        refusal.regarding.name().to_owned(),
        refusal.action,
    )
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
            tracing::warn!(error = %err, "Event for a refusal dropped: the writer is behind");
        }
    }
}

/// Start the writer: Events through `client`, reported by `instance` (the pod), until
/// `stop`.
pub fn spawn(
    client: kube::Client,
    instance: String,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> EventSink {
    let (queue, refusals) = mpsc::channel(QUEUE);
    let writer = Writer {
        client,
        instance,
        metrics: metrics.clone(),
        open: HashMap::new(),
    };
    tokio::spawn(writer.run(refusals, stop));
    EventSink { queue, metrics }
}

/// An Event written for an object, and the refusals since.
#[derive(Debug)]
struct Open {
    /// The Event's name (its namespace is its series key's).
    name: String,
    /// Refusals seen, and how many the API server has.
    count: i32,
    written: i32,
    last_seen: Instant,
    last_written: Instant,
}

struct Writer {
    client: kube::Client,
    instance: String,
    metrics: Arc<Metrics>,
    open: HashMap<SeriesKey, Open>,
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

    fn api(&self, namespace: &str) -> Api<Event> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn refused(&mut self, refusal: Refusal) {
        let now = Instant::now();
        let key = series_key(&refusal);
        if let Some(open) = self.open.get_mut(&key)
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
            self.api(&key.0).create(&PostParams::default(), &event),
        )
        .await;
        match created {
            Ok(Ok(_)) => {
                self.metrics.event_write("created");
                self.open.insert(
                    key,
                    Open {
                        name,
                        count: 1,
                        written: 1,
                        last_seen: now,
                        last_written: now,
                    },
                );
            }
            Ok(Err(err)) => self.failed(&key, &err.to_string()),
            Err(_) => self.failed(&key, "timed out"),
        }
    }

    /// Write the counts that grew (each at most every [`WRITE_EVERY`], all when `all`),
    /// and forget the Events past [`SERIES_TTL`].
    async fn flush(&mut self, now: Instant, all: bool) {
        let due: Vec<(SeriesKey, String, i32)> = self
            .open
            .iter()
            .filter(|(_, open)| {
                open.count > open.written
                    && (all || now.duration_since(open.last_written) >= WRITE_EVERY)
            })
            .map(|(key, open)| (key.clone(), open.name.clone(), open.count))
            .collect();
        for (key, name, count) in due {
            let patch = serde_json::json!({
                "series": EventSeries {
                    count,
                    last_observed_time: MicroTime(k8s_openapi::jiff::Timestamp::now()),
                }
            });
            let patched = tokio::time::timeout(
                WRITE_TIMEOUT,
                self.api(&key.0)
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
            match patched {
                Ok(Ok(_)) => {
                    self.metrics.event_write("updated");
                    if let Some(open) = self.open.get_mut(&key) {
                        open.written = count;
                        open.last_written = now;
                    }
                }
                failed => {
                    let error = match failed {
                        Ok(Err(err)) => err.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    self.failed(&key, &error);
                    // Tried again after WRITE_EVERY, not every tick.
                    if let Some(open) = self.open.get_mut(&key) {
                        open.last_written = now;
                    }
                }
            }
        }
        self.open
            .retain(|_, open| now.duration_since(open.last_seen) < SERIES_TTL);
    }

    fn failed(&self, (namespace, kind, name, action): &SeriesKey, error: &str) {
        self.metrics.event_write("failed");
        tracing::warn!(
            namespace,
            kind,
            name,
            action,
            error,
            "could not write the Event for a refusal (the request was refused all the same)"
        );
    }
}

/// The Event for `refusal`: Warning `DeleteDenied` (or `CreateDenied`) about the object,
/// the denial and who asked in its note, on one line (`kubectl events` and `kubectl get
/// events` print a note as a table cell) and cut to the API server's 1 KiB.
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
            "{} requested by {} refused: {}",
            refusal.action.to_lowercase(),
            refusal.user,
            denial.join(" ")
        ),
        MAX_NOTE_BYTES,
    );
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(refusal.regarding.name(), now.as_nanosecond())),
            namespace: Some(refusal.regarding.events_namespace().to_owned()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some(refusal.action.to_owned()),
        reason: Some(format!("{}Denied", refusal.action)),
        type_: Some("Warning".to_owned()),
        note: Some(note),
        reporting_controller: Some(refusal.regarding.controller().to_owned()),
        reporting_instance: Some(cut(instance.to_owned(), 128)),
        regarding: Some(refusal.regarding.reference()),
        ..Event::default()
    }
}

/// The longest object name the API server takes (a DNS-1123 subdomain).
const MAX_NAME_BYTES: usize = 253;

/// `<object>.<nanoseconds in hex>`, as client-go names Events, with the object's name cut
/// so that the whole stays a DNS-1123 subdomain: a claim's name may already be 253 bytes,
/// and the API server refuses a longer Event name (the Event would never be written).
fn event_name(object: &str, nanos: i128) -> String {
    let suffix = format!(".{nanos:x}");
    let room = MAX_NAME_BYTES.saturating_sub(suffix.len());
    // Names are ASCII; a cut must not leave a '.' or '-' before the suffix's '.'.
    let stem = object
        .get(..room.min(object.len()))
        .unwrap_or(object)
        .trim_end_matches(['.', '-']);
    format!("{stem}{suffix}")
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
            regarding: Regarding::Namespace {
                name: "shop".into(),
                uid: Some("uid-1".into()),
            },
            action: "Delete",
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

    #[test]
    fn a_refused_claims_event_lives_in_its_namespace() {
        let refusal = Refusal {
            regarding: Regarding::Claim {
                namespace: "shop-tenant-a".into(),
                name: "data".into(),
                uid: None,
            },
            action: "Create",
            user: "pulumi".into(),
            message: "nsguard: refusing to create claim shop-tenant-a/data: ...".into(),
        };
        let event = event(&refusal, "nsguard-7d9f");
        assert_eq!(event.metadata.namespace.as_deref(), Some("shop-tenant-a"));
        assert_eq!(event.reason.as_deref(), Some("CreateDenied"));
        assert_eq!(event.action.as_deref(), Some("Create"));
        assert_eq!(
            event.reporting_controller.as_deref(),
            Some(VOLUME_GUARD_CONTROLLER)
        );
        let regarding = event.regarding.unwrap();
        assert_eq!(
            (
                regarding.kind.as_deref(),
                regarding.namespace.as_deref(),
                regarding.name.as_deref(),
                regarding.uid
            ),
            (
                Some("PersistentVolumeClaim"),
                Some("shop-tenant-a"),
                Some("data"),
                None
            )
        );
        assert!(
            event
                .note
                .unwrap()
                .starts_with("create requested by pulumi refused: ")
        );
        // A claim of the longest name still gets an Event name the API server takes.
        for long in [
            "a".repeat(253),
            format!("{}.{}", "a".repeat(236), "b".repeat(16)),
        ] {
            let name = event_name(&long, i128::from(i64::MAX));
            assert!(name.len() <= 253, "{}", name.len());
            assert!(
                crate::simple_container::naming::is_dns1123_subdomain(&name),
                "{name}"
            );
        }
        assert_eq!(event_name("data", 255), "data.ff");
        // A create and a delete of one claim are two series; two creates are one.
        let delete = Refusal {
            action: "Delete",
            ..refusal.clone()
        };
        assert_ne!(series_key(&refusal), series_key(&delete));
        assert_eq!(series_key(&refusal), series_key(&refusal.clone()));
    }
}
