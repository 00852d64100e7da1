//! The open connections of the webhook port, so a full server reclaims an idle one
//! instead of refusing the API server.
//!
//! `--max-connections` bounds memory and file descriptors. A plain limit lets a client
//! that opens that many connections and sends nothing lock everyone else out; here a new
//! connection at the limit closes the connection that has been idle (no request in
//! flight, or none ever sent) the longest, and is refused only when every connection is
//! busy, which each request's own deadlines bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::watchdog::Progress;

/// Above this share of the limit (3/4), idle connections get the request timeout only.
const PRESSURE_NUMERATOR: usize = 3;
const PRESSURE_DENOMINATOR: usize = 4;

/// Every open connection, with the means to close it.
pub struct Connections {
    limit: usize,
    open: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

struct Entry {
    progress: Arc<Progress>,
    reclaim: CancellationToken,
}

/// How a new connection was let in.
pub enum Admission {
    Admitted(Slot),
    /// Let in by closing the longest-idle connection.
    Reclaimed(Slot),
    /// Every connection is busy.
    Refused,
}

/// One open connection's place; dropping it frees the place.
pub struct Slot {
    id: u64,
    pub progress: Arc<Progress>,
    /// Cancelled when the server closes this connection to let another in.
    pub reclaimed: CancellationToken,
    connections: Arc<Connections>,
}

impl Connections {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a new connection, reclaiming the longest-idle one at the limit.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut reclaimed = false;
        if entries.len() >= self.limit {
            let oldest = entries
                .iter()
                .filter_map(|(id, entry)| Some((entry.progress.idle_since()?, *id)))
                .min();
            let Some((_, id)) = oldest else {
                return Admission::Refused;
            };
            if let Some(entry) = entries.remove(&id) {
                entry.reclaim.cancel();
            }
            reclaimed = true;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            id,
            progress: Progress::new(),
            reclaimed: CancellationToken::new(),
            connections: self.clone(),
        };
        entries.insert(
            id,
            Entry {
                progress: slot.progress.clone(),
                reclaim: slot.reclaimed.clone(),
            },
        );
        self.open.store(entries.len(), Ordering::Relaxed);
        match reclaimed {
            true => Admission::Reclaimed(slot),
            false => Admission::Admitted(slot),
        }
    }

    /// Whether open connections are near the limit.
    pub fn pressed(&self) -> bool {
        self.open.load(Ordering::Relaxed) * PRESSURE_DENOMINATOR >= self.limit * PRESSURE_NUMERATOR
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut entries = self
            .connections
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        entries.remove(&self.id);
        self.connections
            .open
            .store(entries.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> Slot {
        match admission {
            Admission::Admitted(slot) => slot,
            _ => panic!("not admitted"),
        }
    }

    #[test]
    fn at_the_limit_the_longest_idle_connection_makes_room() {
        let connections = Connections::new(3);
        let first = admitted(connections.admit());
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = admitted(connections.admit());
        let busy = admitted(connections.admit());
        let _in_flight = busy.progress.request_started().1;
        assert!(connections.pressed());

        let Admission::Reclaimed(fourth) = connections.admit() else {
            panic!("not reclaimed")
        };
        assert!(
            first.reclaimed.is_cancelled(),
            "the oldest idle one goes first"
        );
        assert!(!second.reclaimed.is_cancelled());
        let _fourth_busy = fourth.progress.request_started().1;
        let _second_busy = second.progress.request_started().1;
        assert!(
            matches!(connections.admit(), Admission::Refused),
            "all busy"
        );

        drop(first); // the reclaimed connection's task ends: nothing changes
        assert!(matches!(connections.admit(), Admission::Refused));
        drop(busy);
        assert!(matches!(connections.admit(), Admission::Admitted(_)));
    }
}
