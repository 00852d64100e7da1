//! `nsguard serve`: the HTTPS webhook server and the plain-HTTP metrics server.
//!
//! The accept loop is hand-rolled (after axum's `low-level-rustls` example) rather than
//! `axum::serve` or axum-server, because a webhook needs control that sits below them: a
//! handshake timeout, a precise answer to plain HTTP on the TLS port, a bound on open
//! connections that reclaims idle ones instead of locking new clients out
//! ([`connections`]), idle measured in requests rather than bytes ([`watchdog`]), and a
//! graceful drain of in-flight reviews on SIGTERM. hyper-util gives the protocol (HTTP/1.1
//! and HTTP/2, graceful shutdown); none of hyper-util, tower-http or axum-server bounds
//! the time to a connection's first request or reclaims idle connections at a limit.

pub mod body;
pub mod connections;
pub mod expiry;
pub mod framing;
pub mod routes;
pub mod tls;
pub mod warnings;
pub mod watchdog;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Webhook;
use crate::cluster::ClusterHealth;
use crate::metrics::Metrics;
use body::Budget;
use connections::{Admission, Connections};
use routes::AppState;
use tls::{KeyPairFiles, Tls};
use warnings::Warnings;
use watchdog::{Expired, Limits, RequestStart, Watched};

/// Largest HTTP/1.1 request head buffered per connection (hyper's floor is 8 KiB; its
/// default ~400 KiB times a thousand connections would be 400 MB). The API server's
/// heads are well under 2 KiB.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// HTTP/2 flow-control windows: what a client may send ahead of the handler reading it,
/// per stream and per connection (hyper's default is 1 MiB each).
const HTTP2_WINDOW: u32 = 256 * 1024;

/// Concurrent HTTP/2 streams per connection (hyper's default is 200).
const HTTP2_MAX_STREAMS: u32 = 64;

/// How long a connection closed for being idle or to make room gets to finish
/// gracefully (HTTP/2 GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// While draining, how long an HTTP/1.1 connection must have been quiet before the server
/// closes it. The API server calls webhooks behind a Service over HTTP/1.1 keep-alive
/// connections (kubernetes#82090) and writes a review into the connection it used last:
/// closing one it is about to reuse fails that review with "write: broken pipe", which the
/// API server does not retry (seen in an upgrade under load on a real node). So while
/// draining, every response says `Connection: close` (the client then opens a new
/// connection, which the Service routes to a ready pod), and only connections quiet this
/// long are closed by the server.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Everything `serve` needs besides the webhook itself.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub tls: KeyPairFiles,
    pub client_ca: Option<std::path::PathBuf>,
    pub tls_reload_interval: Duration,
    pub max_body_bytes: usize,
    /// Budget of request bytes buffered at once, server-wide.
    pub max_buffered_bytes: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long to keep serving with /readyz failing, so endpoints drop
    /// this pod before it stops accepting connections.
    pub shutdown_delay: Duration,
    pub max_connections: usize,
}

/// A server whose sockets are bound; [`BoundServer::run`] serves until `stop` fires.
pub struct BoundServer {
    listener: TcpListener,
    metrics_listener: TcpListener,
    tls: Tls,
    state: Arc<AppState>,
    options: ServerOptions,
}

impl BoundServer {
    /// Bind both ports and load the certificate; errors here stop startup.
    /// `health` says whether the cluster source has answered (see `/readyz`).
    pub async fn bind(
        options: ServerOptions,
        webhook: Arc<Webhook>,
        health: Arc<ClusterHealth>,
    ) -> anyhow::Result<Self> {
        let mut tls = Tls::load(options.tls.clone(), options.client_ca.as_deref())?;
        tls.publish(&webhook.metrics);
        let listener = TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("binding the webhook port {}", options.listen))?;
        let metrics_listener = TcpListener::bind(options.metrics_listen)
            .await
            .with_context(|| format!("binding the metrics port {}", options.metrics_listen))?;
        let state = Arc::new(AppState {
            metrics: webhook.metrics.clone(),
            webhook,
            ready: false.into(),
            health,
            max_body_bytes: options.max_body_bytes,
            budget: Budget::new(options.max_buffered_bytes),
            request_timeout: options.request_timeout,
            warnings: Arc::new(Warnings::default()),
        });
        Ok(Self {
            listener,
            metrics_listener,
            tls,
            state,
            options,
        })
    }

    /// Serve until `stop` is cancelled, then stop accepting and give in-flight requests
    /// up to `shutdown_grace` to finish.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            metrics_listener,
            tls,
            state,
            options,
        } = self;
        let metrics = state.metrics.clone();
        tracing::info!(addr = %listener.local_addr()?, "webhook listening (HTTPS)");
        tracing::info!(addr = %metrics_listener.local_addr()?, "metrics listening (HTTP)");

        let acceptor = TlsAcceptor::from(tls.config.clone());
        let watcher_stop = stop.child_token();
        let reload = tokio::spawn(tls.watch(
            options.tls_reload_interval,
            metrics.clone(),
            watcher_stop.clone(),
        ));

        // The metrics port serves until the webhook port has drained: through the
        // shutdown delay and the drain, the kubelet's probes read /readyz's 503 there and
        // Prometheus scrapes the last counts.
        let metrics_stop = CancellationToken::new();
        let metrics_router = routes::metrics_router(state.clone());
        let metrics_server = tokio::spawn({
            let metrics_stop = metrics_stop.clone();
            async move {
                axum::serve(metrics_listener, metrics_router)
                    .with_graceful_shutdown(async move { metrics_stop.cancelled().await })
                    .await
            }
        });

        let service = TowerToHyperService::new(routes::webhook_router(state.clone()));
        // No hyper timers: slow requests and idle connections are the watchdog's job, and
        // each body's deadline the handler's.
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().max_buf_size(MAX_HEAD_BYTES);
        builder
            .http2()
            .initial_stream_window_size(HTTP2_WINDOW)
            .initial_connection_window_size(HTTP2_WINDOW)
            .max_concurrent_streams(HTTP2_MAX_STREAMS);
        let builder = Arc::new(builder);
        let tasks = TaskTracker::new();
        let connections = Connections::new(options.max_connections);
        let limits = Limits {
            request_timeout: options.request_timeout,
            idle_timeout: options.idle_timeout,
        };
        state.ready.store(true, Ordering::Relaxed);

        // On stop: fail readiness at once, keep serving for the delay, then drain.
        let drain = CancellationToken::new();
        tokio::spawn({
            let (stop, drain, state) = (stop.clone(), drain.clone(), state.clone());
            let delay = options.shutdown_delay;
            async move {
                stop.cancelled().await;
                state.ready.store(false, Ordering::Relaxed);
                if !delay.is_zero() {
                    tracing::info!(
                        ?delay,
                        "shutdown requested: /readyz fails, still serving while endpoints update"
                    );
                    tokio::time::sleep(delay).await;
                }
                drain.cancel();
            }
        });

        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = drain.cancelled() => break,
            };
            let slot = match connections.admit() {
                Admission::Admitted(slot) => slot,
                Admission::Reclaimed(slot) => {
                    state.metrics.rejection("reclaimed_idle_connection");
                    tracing::debug!(%peer, "at --max-connections: closed the longest-idle connection to let this one in");
                    slot
                }
                Admission::Refused => {
                    if let Some(suppressed) = state
                        .warnings
                        .reject(&state.metrics, "too_many_connections")
                    {
                        tracing::warn!(%peer, suppressed, limit = options.max_connections, "connection refused: every open connection is busy (--max-connections)");
                    }
                    continue;
                }
            };
            let connection = Connection {
                acceptor: acceptor.clone(),
                builder: builder.clone(),
                service: service.clone(),
                metrics: state.metrics.clone(),
                warnings: state.warnings.clone(),
                connections: connections.clone(),
                handshake_timeout: options.handshake_timeout,
                limits,
                drain: drain.clone(),
            };
            tasks.spawn(connection.serve(tcp, peer, slot));
        }

        state.ready.store(false, Ordering::Relaxed);
        drop(listener);
        tasks.close();
        tracing::info!(grace = ?options.shutdown_grace, "shutting down: no new connections, draining in-flight requests");
        tokio::select! {
            () = tasks.wait() => tracing::info!("all connections drained"),
            () = tokio::time::sleep(options.shutdown_grace) => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
            }
        }
        watcher_stop.cancel();
        let _ = reload.await;
        metrics_stop.cancel();
        match metrics_server.await {
            Ok(result) => result.context("metrics server")?,
            Err(err) => tracing::warn!(error = %err, "metrics server task failed"),
        }
        Ok(())
    }
}

/// What one connection's task needs.
struct Connection {
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: TowerToHyperService<axum::Router>,
    metrics: Arc<Metrics>,
    warnings: Arc<Warnings>,
    connections: Arc<Connections>,
    handshake_timeout: Duration,
    limits: Limits,
    drain: CancellationToken,
}

/// Why the server ends a connection that is still open.
enum Close {
    Expired(Expired),
    Reclaimed,
    Drain,
}

impl Connection {
    /// Handshake, then serve requests until the client leaves or the server closes it.
    async fn serve(self, tcp: TcpStream, peer: SocketAddr, slot: connections::Slot) {
        let progress = slot.progress.clone();
        let tls = tokio::select! {
            tls = accept_tls(tcp, peer, &self.acceptor, self.handshake_timeout, &self.metrics, &self.warnings) => tls,
            () = slot.reclaimed.cancelled() => None,
            () = self.drain.cancelled() => None,
        };
        let Some(tls) = tls else { return };
        progress.handshake_done(tls.get_ref().1.alpn_protocol() == Some(b"h2"));
        let service = {
            let (service, progress, drain) =
                (self.service.clone(), progress.clone(), self.drain.clone());
            hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                let (started, in_flight) = progress.request_started();
                request.extensions_mut().insert(RequestStart(started));
                let http1 = request.version() < http::Version::HTTP_2;
                let response = hyper::service::Service::call(&service, request);
                let drain = drain.clone();
                async move {
                    let mut response = response.await;
                    // Draining: the client must not reuse this connection (DRAIN_QUIET).
                    if let (true, true, Ok(response)) = (http1, drain.is_cancelled(), &mut response)
                    {
                        response.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    drop(in_flight);
                    response
                }
            })
        };
        let io = TokioIo::new(Watched::new(tls, progress.clone()));
        let conn = self.builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let connections = self.connections.clone();
        let close = tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            expired = watchdog::expiry(progress.clone(), self.limits, move || connections.pressed()) => Close::Expired(expired),
            () = slot.reclaimed.cancelled() => Close::Reclaimed,
            () = self.drain.cancelled() => Close::Drain,
        };
        if let Close::Drain = close
            && progress.http1()
        {
            // Served on until the client leaves (each response now says Connection:
            // close) or the connection is quiet; --shutdown-grace bounds the drain.
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "connection ended with an error while draining");
                    }
                    return;
                }
                () = watchdog::quiet_for(&progress, DRAIN_QUIET) => {}
            }
        }
        let (request_timeout, idle_timeout) =
            (self.limits.request_timeout, self.limits.idle_timeout);
        let grace = match close {
            Close::Expired(Expired::SlowRequest) => {
                if let Some(suppressed) = self.warnings.reject(&self.metrics, "request_timeout") {
                    tracing::warn!(%peer, suppressed, timeout = ?request_timeout, "request not received within --request-timeout; connection closed");
                }
                // A half-read request head cannot end gracefully.
                return;
            }
            Close::Expired(Expired::NoRequest) => {
                if let Some(suppressed) = self.warnings.reject(&self.metrics, "no_request") {
                    tracing::warn!(%peer, suppressed, timeout = ?request_timeout, "no request within --request-timeout of connecting; connection closed");
                }
                CLOSE_GRACE
            }
            Close::Expired(Expired::Idle) => {
                self.metrics.rejection("idle_timeout");
                tracing::debug!(%peer, timeout = ?idle_timeout, "idle connection closed");
                CLOSE_GRACE
            }
            Close::Reclaimed => CLOSE_GRACE,
            // The server's drain bounds this with --shutdown-grace.
            Close::Drain => Duration::MAX,
        };
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(grace, conn).await;
    }
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Complete the TLS handshake within the timeout, answering plain HTTP with a clear 400
/// the way Go's net/http does, instead of a TLS alert a person cannot read.
async fn accept_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
    timeout: Duration,
    metrics: &Metrics,
    warnings: &Warnings,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let _ = tcp.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => {
            if let Some(suppressed) = warnings.reject(metrics, "plain_http") {
                tracing::warn!(%peer, suppressed, first_byte = first[0], "non-TLS bytes on the HTTPS port; answered 400");
            }
            answer_plain_http(tcp).await;
            return None;
        }
        // Closed before sending anything (port probes, health checkers): nothing to say.
        Ok(Ok(_)) => return None,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "connection failed before the handshake");
            return None;
        }
        Err(_) => {
            if let Some(suppressed) = warnings.reject(metrics, "tls_handshake_timeout") {
                tracing::warn!(%peer, suppressed, ?timeout, "no TLS handshake within the timeout");
            }
            return None;
        }
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            if let Some(suppressed) = warnings.reject(metrics, "tls_handshake") {
                tracing::warn!(%peer, suppressed, error = %err, "TLS handshake failed");
            }
            None
        }
        Err(_) => {
            if let Some(suppressed) = warnings.reject(metrics, "tls_handshake_timeout") {
                tracing::warn!(%peer, suppressed, ?timeout, "TLS handshake did not finish within the timeout");
            }
            None
        }
    }
}

/// The answer to a plain-HTTP request on the TLS port.
async fn answer_plain_http(mut tcp: TcpStream) {
    const BODY: &str = "Client sent an HTTP request to an HTTPS server: nsguard's webhook port speaks HTTPS only.\n";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    // Best effort with a bound: the peer may not read at all. Its request is read first
    // so closing with unread bytes does not turn the answer into a connection reset.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut request = [0u8; 8192];
        let _ = tcp.read(&mut request).await?;
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await?;
        while tcp.read(&mut request).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}
