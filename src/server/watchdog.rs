//! Deadlines for slow or stuck clients, at one timer per connection instead of one per
//! request.
//!
//! hyper's `header_read_timeout` and a `tokio::time::timeout` around each body read arm
//! and cancel a timer for every request; under load that cost a third of the server's
//! throughput. Instead, [`Watched`] wraps a connection's stream and records progress in
//! two atomics on every read and write, and a watchdog task checks them once a second:
//! a request that has been arriving for longer than the request timeout (slow-drip
//! headers or body), or a connection idle for longer than the idle timeout, is closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const IDLE: u8 = 0;
const READING: u8 = 1;

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request kept arriving for longer than the request timeout.
    SlowRequest,
    /// No bytes either way for longer than the idle timeout.
    Idle,
}

/// Progress of one connection, shared by the stream wrapper and the watchdog.
#[derive(Debug)]
pub struct Progress {
    epoch: Instant,
    phase: AtomicU8,
    /// Milliseconds since `epoch` of the phase change (start of the request being read,
    /// or the last write).
    since_ms: AtomicU64,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            phase: AtomicU8::new(IDLE),
            since_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn read(&self) {
        // The first bytes after a response start a request; later reads continue it.
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.phase.store(READING, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.phase.store(IDLE, Ordering::Relaxed);
    }

    /// Whether the connection is past a deadline now.
    pub fn expired(&self, request_timeout: Duration, idle_timeout: Duration) -> Option<Expired> {
        let age = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.since_ms.load(Ordering::Relaxed)),
        );
        match self.phase.load(Ordering::Relaxed) {
            READING if age > request_timeout => Some(Expired::SlowRequest),
            IDLE if age > idle_timeout => Some(Expired::Idle),
            _ => None,
        }
    }
}

/// A stream that reports its reads and writes to a [`Progress`].
pub struct Watched<S> {
    inner: S,
    progress: Arc<Progress>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, progress: Arc<Progress>) -> Self {
        Self { inner, progress }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress.read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolve when the connection passes a deadline, checking once a second (so a deadline
/// fires up to a second late).
pub async fn expiry(
    progress: Arc<Progress>,
    request_timeout: Duration,
    idle_timeout: Duration,
) -> Expired {
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(request_timeout));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(expired) = progress.expired(request_timeout, idle_timeout) {
            return expired;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_deadlines() {
        let p = Progress::new();
        let (request, idle) = (Duration::from_millis(50), Duration::from_millis(200));
        assert_eq!(p.expired(request, idle), None);
        p.read();
        std::thread::sleep(Duration::from_millis(80));
        p.read(); // still the same request: the clock does not restart
        assert_eq!(p.expired(request, idle), Some(Expired::SlowRequest));
        p.wrote();
        assert_eq!(p.expired(request, idle), None);
        std::thread::sleep(Duration::from_millis(220));
        assert_eq!(p.expired(request, idle), Some(Expired::Idle));
    }
}
