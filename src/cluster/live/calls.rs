//! One API call as the lookups make it: bounded, retried a few times within its bound
//! when the failure is transient, and, when it fails, why, kept typed until it becomes a
//! message.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::core::Status;
use tokio::time::Instant;

use super::LiveCluster;
use crate::decisions::namespace_guard::Unverified;
use crate::metrics::LookupErrorReason;

/// Why one call to the API server failed, kept typed until it becomes a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The API server answered with a `Status` (403, 404, 503 of an aggregated API, ...).
    #[error("{}", status_text(.0))]
    Api(Box<Status>),
    /// No usable answer: connection refused or reset, TLS, a body that is not the
    /// expected JSON. The text joins the whole cause chain.
    #[error("{0}")]
    Transport(String),
    /// No answer within the bound.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl CallError {
    /// `resource` could not be read because of this error.
    pub(super) fn unverified(&self, resource: impl Into<String>) -> Unverified {
        Unverified {
            resource: resource.into(),
            reason: self.to_string(),
            code: self.code(),
        }
    }

    pub(super) fn from_kube(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => CallError::Api(status),
            other => CallError::Transport(cause_chain(&other)),
        }
    }

    /// The HTTP status of an API answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            CallError::Api(status) => Some(status.code),
            _ => None,
        }
    }

    /// Worth another attempt: throttled, unavailable, or cut off on the way.
    pub(super) fn transient(&self) -> bool {
        match self {
            CallError::Api(status) => matches!(status.code, 429 | 503 | 504),
            CallError::Transport(_) => true,
            CallError::Timeout(_) => false,
        }
    }
}

/// A lookup that did not produce a scan.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    /// The deadline passed before every list call was answered; `pending` names (some of)
    /// the types still being listed.
    #[error(
        "the cluster lookup at {server} did not finish within {timeout:?} ({done} of {total} list calls done{})",
        pending_text(.pending)
    )]
    Deadline {
        server: String,
        timeout: Duration,
        done: usize,
        total: usize,
        pending: Vec<String>,
    },
    /// A lookup of a few calls (the volume guard's) was still running at its deadline.
    #[error(
        "the cluster lookup at {server} did not finish within {timeout:?} ({calls} calls made)"
    )]
    Unfinished {
        server: String,
        timeout: Duration,
        calls: usize,
    },
    /// Discovery (`/api`, `/apis`) failed and no good result of the last
    /// [`LiveOptions::discovery_ttl`](super::LiveOptions::discovery_ttl) can stand in for it.
    #[error("API discovery at {server} failed: {cause}")]
    Discovery {
        server: String,
        #[source]
        cause: CallError,
    },
    /// One read besides discovery and the lists failed: the Namespace itself, the access
    /// review.
    #[error("{what} at {server} failed: {cause}")]
    Read {
        what: &'static str,
        server: String,
        #[source]
        cause: CallError,
    },
    /// [`LiveOptions::max_concurrent_scans`](super::LiveOptions::max_concurrent_scans) lookups of one kind (`what`: namespace, claim)
    /// were running and none finished in time.
    #[error(
        "{limit} {what} lookups were already running and none finished within {timeout:?}; retry"
    )]
    Busy {
        what: &'static str,
        limit: usize,
        timeout: Duration,
    },
}

impl LookupError {
    /// Its name in `nsguard_lookup_errors_total{reason}` and the logs.
    pub fn reason(&self) -> LookupErrorReason {
        match self {
            LookupError::Deadline { .. } | LookupError::Unfinished { .. } => {
                LookupErrorReason::Deadline
            }
            LookupError::Discovery { .. } => LookupErrorReason::Discovery,
            LookupError::Read { .. } => LookupErrorReason::Read,
            LookupError::Busy { .. } => LookupErrorReason::Busy,
        }
    }
}

pub(super) fn pending_text(pending: &[String]) -> String {
    if pending.is_empty() {
        String::new()
    } else {
        format!("; still waiting for {}", pending.join(", "))
    }
}

impl LiveCluster {
    /// One API call, attempted again while it fails transiently and a jittered backoff
    /// still fits before `bound`; never past `bound`.
    pub(in crate::cluster) async fn call<T, F, Fut>(
        &self,
        bound: Instant,
        calls: &AtomicUsize,
        request: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        self.attempts(bound, Some(bound), calls, request).await
    }

    /// Like [`Self::call`], but a call in flight is left to the caller's own deadline
    /// (the scan's, whose error names what was still pending); retries still stop before
    /// `retry_until`.
    pub(super) async fn attempts<T, F, Fut>(
        &self,
        retry_until: Instant,
        bound: Option<Instant>,
        calls: &AtomicUsize,
        mut request: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            calls.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let answer = match bound {
                Some(bound) => tokio::time::timeout_at(bound, request()).await,
                None => Ok(request().await),
            };
            let err = match answer {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => CallError::from_kube(err),
                Err(_) => {
                    let waited = started.elapsed().as_millis() as u64;
                    return Err(CallError::Timeout(Duration::from_millis(waited)));
                }
            };
            let backoff = jittered(attempt);
            if !err.transient()
                || attempt >= self.options.retries
                || Instant::now() + backoff >= retry_until
            {
                return Err(err);
            }
            tracing::debug!(error = %err, attempt, ?backoff, "API call failed; retrying");
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }
}

/// 50 ms doubling per attempt, each drawn between half and the full value, so retries
/// from many lookups do not arrive together.
pub(super) fn jittered(attempt: u32) -> Duration {
    let full = 50u64 << attempt.min(6);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(full / 2 + random % (full / 2 + 1))
}

/// An API `Status` in a few words: code, reason and message.
pub(super) fn status_text(status: &Status) -> String {
    let reason = if status.reason.is_empty() {
        "error"
    } else {
        &status.reason
    };
    if status.message.is_empty() {
        format!("{} {reason}", status.code)
    } else {
        format!("{} {reason}: {}", status.code, status.message)
    }
}

/// An error and its causes in one line, each said once (wrappers often repeat their
/// source's text).
pub fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_full() {
        for attempt in 0..4 {
            let full = 50u64 << attempt;
            for _ in 0..50 {
                let d = jittered(attempt).as_millis() as u64;
                assert!(d >= full / 2 && d <= full, "{attempt}: {d}");
            }
        }
    }
}
