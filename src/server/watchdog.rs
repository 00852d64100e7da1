//! Deadlines for slow, silent or idle clients, at one timer per connection.
//!
//! A connection is *busy* while a request is in flight (from its headers to its response):
//! the handler bounds that time itself (the body by the request's deadline, the decision
//! by `--lookup-timeout`). Otherwise it is *idle*, and the watchdog, checking once a
//! second, closes it when:
//! - HTTP/1.1 header bytes have been arriving for longer than the request timeout
//!   (slow-drip headers), for every head of the connection: where each begins is
//!   followed in the bytes themselves ([`super::framing`]), so a head that came in the
//!   same read as the end of the previous request is timed too;
//! - it never sent a request within the request timeout of connecting (a silent client
//!   holds a connection slot for seconds, not minutes);
//! - it has been idle for longer than the idle timeout, or for longer than the request
//!   timeout while the server is near its connection limit.
//!
//! Idle is counted in requests, not bytes: an HTTP/2 client's PINGs and SETTINGS do not
//! keep a connection alive, and neither does a request that trickles in one byte a second
//! (its deadline is its own, see `server::body`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
// tokio's clock, not std's: the same instant in production, and a paused clock the tests
// advance by hand, so no test judges a deadline by how fast a busy machine sleeps.
use tokio::time::Instant;

use super::framing::Framing;

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Request headers kept arriving for longer than the request timeout.
    SlowRequest,
    /// Connected, and sent no request within the request timeout.
    NoRequest,
    /// No request in flight for longer than the idle timeout (or the request timeout,
    /// near the connection limit).
    Idle,
}

/// The bounds the watchdog enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Progress of one connection, shared by the stream wrapper, the per-request service
/// wrapper and the watchdog.
#[derive(Debug)]
pub struct Progress {
    epoch: Instant,
    /// HTTP/1.1 (false for HTTP/2, whose idle reads are control frames): what ALPN
    /// chose until the first bytes say (hyper serves what the bytes are, whatever ALPN
    /// chose).
    http1: AtomicBool,
    in_flight: AtomicU32,
    requests: AtomicU64,
    /// Milliseconds since `epoch` at which the connection last became idle.
    idle_since_ms: AtomicU64,
    /// Where each request head begins in the bytes read.
    framing: Mutex<Framing>,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            http1: AtomicBool::new(true),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            framing: Mutex::new(Framing::default()),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The TLS handshake finished, choosing HTTP/2 or not: the time to the first request
    /// counts from here, so a slow handshake on a busy server does not use it up.
    pub fn handshake_done(&self, http2: bool) {
        self.http1.store(!http2, Ordering::Relaxed);
        self.idle_since_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn framing(&self) -> std::sync::MutexGuard<'_, Framing> {
        self.framing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `bytes` were read from the client.
    fn read(&self, bytes: &[u8]) {
        let mut framing = self.framing();
        framing.feed_with(bytes, || self.now_ms());
        if framing.is_http2() {
            self.http1.store(false, Ordering::Relaxed);
        } else if framing.head_since().is_some() || framing.has_complete() {
            self.http1.store(true, Ordering::Relaxed);
        }
    }

    /// A request's headers are in: it is in flight until the guard drops. Returns when
    /// the request began arriving, the start of its deadline.
    pub fn request_started(self: &Arc<Self>) -> (Instant, InFlight) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let since = self.framing().take_complete();
        let started = match (self.http1.load(Ordering::Relaxed), since) {
            (true, Some(since)) => self.epoch + Duration::from_millis(since),
            _ => Instant::now(),
        };
        (started, InFlight(self.clone()))
    }

    /// Whether the connection speaks HTTP/1.x (as far as its bytes have told).
    pub fn http1(&self) -> bool {
        self.http1.load(Ordering::Relaxed)
    }

    /// Whether no request is in flight.
    pub fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// When the connection became idle (connected, or its last response), for choosing
    /// the longest-idle connection to reclaim; `None` while busy.
    pub fn idle_since(&self) -> Option<Instant> {
        self.idle()
            .then(|| self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed)))
    }

    /// Whether the connection is past a deadline now. `pressed`: the server is near its
    /// connection limit, so idle connections get the request timeout only.
    pub fn expired(&self, limits: Limits, pressed: bool) -> Option<Expired> {
        if !self.idle() {
            return None;
        }
        let now = self.now_ms();
        let age = |since: u64| Duration::from_millis(now.saturating_sub(since));
        let reading = self.framing().head_since();
        if let (true, Some(reading)) = (self.http1.load(Ordering::Relaxed), reading) {
            // A request head is arriving: only its own deadline applies (it began a moment
            // after the connection went idle, so the idle clock would fire first).
            return (age(reading) > limits.request_timeout).then_some(Expired::SlowRequest);
        }
        let idle = age(self.idle_since_ms.load(Ordering::Relaxed));
        if self.requests.load(Ordering::Relaxed) == 0 {
            return (idle > limits.request_timeout).then_some(Expired::NoRequest);
        }
        let allowed = match pressed {
            true => limits.request_timeout.min(limits.idle_timeout),
            false => limits.idle_timeout,
        };
        (idle > allowed).then_some(Expired::Idle)
    }
}

/// When a request began arriving, set on it as an extension: its deadline starts here.
#[derive(Debug, Clone, Copy)]
pub struct RequestStart(pub Instant);

/// A request in flight; dropping it (with the response future) ends it.
pub struct InFlight(Arc<Progress>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let progress = &self.0;
        progress
            .idle_since_ms
            .store(progress.now_ms(), Ordering::Relaxed);
        progress.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that reports its reads to a [`Progress`].
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
            self.progress.read(&buf.filled()[before..]);
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
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

/// Resolve once the connection has had no request in flight for `quiet`: an HTTP/1.1
/// client reuses its most recently used connection first, so one quiet that long is not
/// about to be written to, and closing it cannot cut a request the client just sent.
pub async fn quiet_for(progress: &Progress, quiet: Duration) {
    loop {
        match progress.idle_since() {
            Some(since) if since.elapsed() >= quiet => return,
            Some(since) => tokio::time::sleep_until(since + quiet).await,
            None => tokio::time::sleep(quiet).await,
        }
    }
}

/// Resolve when the connection passes a deadline, checking once a second (so a deadline
/// fires up to a second late). `pressed` says whether the server is near its limit.
pub async fn expiry(
    progress: Arc<Progress>,
    limits: Limits,
    pressed: impl Fn() -> bool,
) -> Expired {
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(limits.request_timeout));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(expired) = progress.expired(limits, pressed()) {
            return expired;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const LIMITS: Limits = Limits {
        request_timeout: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(200),
    };

    /// Each test runs on tokio's paused clock: `advance` moves it by exactly that much,
    /// whatever the machine is doing, so the limits are judged to the millisecond.
    async fn after(ms: u64) {
        advance(Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_expires_at_the_request_timeout_after_its_handshake() {
        let p = Progress::new();
        assert_eq!(p.expired(LIMITS, false), None);
        // A slow handshake (bounded on its own) does not use up the first request's time.
        after(40).await;
        p.handshake_done(false);
        after(30).await;
        assert_eq!(p.expired(LIMITS, false), None);
        after(20).await;
        assert_eq!(
            p.expired(LIMITS, false),
            None,
            "50 ms exactly is not past it"
        );
        after(1).await;
        assert_eq!(p.expired(LIMITS, false), Some(Expired::NoRequest));
    }

    /// A head that began just after the handshake is judged by its own deadline: before,
    /// the idle clock (a few ms older) closed it as "no request" first.
    #[tokio::test(start_paused = true)]
    async fn a_head_in_progress_is_never_a_connection_without_a_request() {
        let p = Progress::new();
        p.handshake_done(false);
        after(20).await;
        p.read(b"POST /validate HTTP/1.1\r\n");
        after(40).await;
        assert_eq!(p.expired(LIMITS, false), None, "idle 60 ms, head 40 ms");
        after(11).await;
        assert_eq!(p.expired(LIMITS, false), Some(Expired::SlowRequest));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_headers_expire_and_a_request_in_flight_never_does() {
        let p = Progress::new();
        p.read(b"POST /validate HTTP/1.1\r\n");
        after(70).await;
        p.read(b"Host: x\r\n"); // still the same head: the clock does not restart
        assert_eq!(p.expired(LIMITS, false), Some(Expired::SlowRequest));
        p.read(b"\r\n");
        let (started, in_flight) = p.request_started();
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(70),
            "the deadline starts at the first byte"
        );
        assert_eq!(p.expired(LIMITS, false), None);
        after(70).await;
        assert_eq!(p.expired(LIMITS, true), None);
        drop(in_flight);
        assert_eq!(p.idle_since(), Some(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_is_counted_in_requests_and_shortened_under_pressure() {
        let p = Progress::new();
        drop(p.request_started().1);
        after(70).await;
        assert_eq!(p.expired(LIMITS, false), None);
        assert_eq!(p.expired(LIMITS, true), Some(Expired::Idle));
        after(130).await;
        assert_eq!(
            p.expired(LIMITS, false),
            None,
            "200 ms exactly is not past it"
        );
        after(1).await;
        assert_eq!(p.expired(LIMITS, false), Some(Expired::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn http2_control_frames_are_not_a_request_head() {
        let p = Progress::new();
        p.handshake_done(true);
        p.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        drop(p.request_started().1);
        p.read(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00"); // a PING
        after(70).await;
        assert_eq!(p.expired(LIMITS, false), None);
        after(150).await;
        assert_eq!(p.expired(LIMITS, false), Some(Expired::Idle));
    }

    /// A connection is quiet once no request has been in flight for the whole span: a
    /// request in between starts the span again.
    #[tokio::test(start_paused = true)]
    async fn quiet_counts_from_the_last_request() {
        let p = Progress::new();
        p.handshake_done(false);
        drop(p.request_started().1);
        after(600).await;
        let started = Instant::now();
        let quiet = quiet_for(&p, Duration::from_secs(1));
        tokio::pin!(quiet);
        // A request 300 ms on, in flight for 200 ms: quiet a second after it ended.
        let traffic = async {
            after(300).await;
            let in_flight = p.request_started().1;
            after(200).await;
            drop(in_flight);
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = &mut quiet => {}
            () = traffic => unreachable!(),
        }
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
    }

    /// The watchdog's timer: a silent connection is closed at its first check past the
    /// request timeout (checks are a second apart, or the timeout's apart if shorter).
    #[tokio::test(start_paused = true)]
    async fn expiry_fires_at_the_first_check_past_the_deadline() {
        let limits = Limits {
            request_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(60),
        };
        let p = Progress::new();
        p.handshake_done(false);
        let started = Instant::now();
        let expired = expiry(p, limits, || false).await;
        assert_eq!(expired, Expired::NoRequest);
        assert_eq!(started.elapsed(), Duration::from_secs(4));
    }
}
