//! One bound for every read of one decision, set once when the question is asked: the
//! scan, the volume check after it, a claim's reads, and the wait for a lookup slot all
//! end by the same instant, and a message that it passed says how long it was.

use std::time::Duration;

use tokio::time::Instant;

/// When a decision's reads must be done, and how long that was when it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    /// `timeout` from now (`--lookup-timeout`).
    pub fn after(timeout: Duration) -> Self {
        Self {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    pub fn at(&self) -> Instant {
        self.at
    }

    /// How long the reads were given, for messages.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether no time is left.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }
}
