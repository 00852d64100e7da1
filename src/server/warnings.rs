//! Rate limits on the warnings a client can trigger.
//!
//! Every rejected request or connection is counted in `nsguard_http_rejections_total`;
//! its WARN line is logged at most once a second per kind, carrying how many were left
//! out since (`suppressed`), so a flood of bad requests cannot flood the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

// tokio's clock: std's in production, and one the tests pause and advance.
use tokio::time::Instant;

use crate::metrics::Metrics;

/// The once-per-period gate, per kind of warning.
pub struct Warnings {
    period: Duration,
    kinds: Mutex<HashMap<&'static str, Window>>,
}

struct Window {
    last: Instant,
    suppressed: u64,
}

impl Default for Warnings {
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

impl Warnings {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Count a rejection in `nsguard_http_rejections_total{reason}`, and say whether its
    /// warning may be logged now (with how many were left out since), under one key.
    pub fn reject(&self, metrics: &Metrics, reason: &'static str) -> Option<u64> {
        metrics.rejection(reason);
        self.admit(reason)
    }

    /// Whether a warning of `kind` may be logged now; if so, how many were suppressed
    /// since the last one.
    pub fn admit(&self, kind: &'static str) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match kinds.get_mut(kind) {
            Some(window) if now.duration_since(window.last) < self.period => {
                window.suppressed += 1;
                None
            }
            Some(window) => {
                window.last = now;
                Some(std::mem::take(&mut window.suppressed))
            }
            None => {
                kinds.insert(
                    kind,
                    Window {
                        last: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_warning_per_period_per_kind_with_the_count_left_out() {
        let warnings = Warnings::new(Duration::from_millis(50));
        assert_eq!(warnings.admit("bad_review"), Some(0));
        assert_eq!(warnings.admit("bad_review"), None);
        tokio::time::advance(Duration::from_millis(49)).await;
        assert_eq!(warnings.admit("bad_review"), None);
        assert_eq!(warnings.admit("plain_http"), Some(0), "kinds are separate");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(warnings.admit("bad_review"), Some(2));
        assert_eq!(warnings.admit("bad_review"), None);
    }
}
