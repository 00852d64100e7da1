//! Reading a request body within its limits: size, deadline, and a server-wide budget of
//! buffered bytes.
//!
//! The size limit alone does not bound memory: 16 clients sending 8 MiB each at once
//! took the server past its pod's 128Mi. Every buffered body therefore holds permits
//! from one budget (`--max-buffered-bytes`) for as long as its bytes live; a body that
//! cannot get them within a second is answered 429 with `Retry-After`, which the API
//! server's client honours.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a body waits for room in the budget before it is refused.
const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// The bytes of one request, holding their share of the budget until dropped.
pub struct Buffered {
    pub bytes: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over `--max-body-bytes`; `declared` when the Content-Length said so up front (and
    /// nothing was read).
    TooLarge {
        declared: Option<u64>,
    },
    /// The whole body did not arrive before the request's deadline.
    Timeout,
    /// The server's buffered bytes are at `--max-buffered-bytes`.
    OverBudget,
    Read(String),
}

/// The memory budget shared by every request body.
#[derive(Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        let total = bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// `n` bytes of the budget, waiting at most until `until`.
    async fn take(&self, n: usize, until: Instant) -> Result<OwnedSemaphorePermit, BodyError> {
        let n = u32::try_from(n).map_err(|_| BodyError::OverBudget)?;
        if n as usize > self.total {
            return Err(BodyError::OverBudget);
        }
        match tokio::time::timeout_at(until, self.permits.clone().acquire_many_owned(n)).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed.
            Ok(Err(_)) | Err(_) => Err(BodyError::OverBudget),
        }
    }
}

/// Read the whole body: at most `limit` bytes, before `deadline`, within `budget`.
/// A declared length over the limit is refused without buffering anything (see
/// `refuse`).
pub async fn read(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    budget: &Budget,
    deadline: Instant,
) -> Result<Buffered, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared > limit as u64
    {
        return Err(refuse(body, headers, limit, declared, deadline).await);
    }
    let until = (Instant::now() + BUDGET_WAIT).min(deadline);
    // hyper checks that the body matches the declared length.
    let expected = declared.unwrap_or(0) as usize;
    let mut permit = match expected {
        0 => None,
        n => Some(budget.take(n, until).await?),
    };
    let mut buf = BytesMut::with_capacity(expected);
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => break,
            Ok(Some(Err(err))) => return Err(BodyError::Read(err.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let needed = buf.len() + data.len();
        if needed > limit {
            return Err(BodyError::TooLarge { declared: None });
        }
        if needed > buf.capacity() {
            // Grow by doubling (bounded by the limit), paying for the new capacity first.
            let capacity = needed.max(buf.capacity() * 2).min(limit);
            let held = permit.as_ref().map_or(0, |p| p.num_permits());
            let more = budget.take(capacity.saturating_sub(held), until).await?;
            match &mut permit {
                Some(permit) => permit.merge(more),
                None => permit = Some(more),
            }
            buf.reserve(capacity - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok(Buffered {
        bytes: buf.freeze(),
        _permit: permit,
    })
}

/// The answer to a body declared over the limit. A client that sent
/// `Expect: 100-continue` waits for the go-ahead, so it is refused before a byte is read
/// and never gets `100 Continue`. Any other client is already sending: up to `limit`
/// bytes are read and dropped first, so it is not cut off mid-write (a reset that loses
/// the answer), at no cost in memory.
async fn refuse(
    mut body: Body,
    headers: &HeaderMap,
    limit: usize,
    declared: u64,
    deadline: Instant,
) -> BodyError {
    let too_large = BodyError::TooLarge {
        declared: Some(declared),
    };
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        return too_large;
    }
    let mut seen = 0usize;
    while seen <= limit {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => seen += frame.data_ref().map_or(0, Bytes::len),
            _ => break,
        }
    }
    too_large
}
