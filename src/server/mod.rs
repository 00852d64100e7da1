//! `nsguard serve`: the HTTPS webhook server and the plain-HTTP metrics server.
//!
//! The accept loop is hand-rolled (after axum's `low-level-rustls` example) rather than
//! `axum::serve`, because a webhook needs control that sits below axum: a handshake
//! timeout, a bound on open connections, a precise answer to plain HTTP on the TLS port,
//! and a graceful drain of in-flight reviews on SIGTERM.

pub mod routes;
pub mod tls;
pub mod watchdog;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::admission::Webhook;
use crate::cluster::ClusterHealth;
use crate::metrics::Metrics;
use routes::AppState;
use tls::{KeyPairFiles, Tls};
use watchdog::{Expired, Progress, Watched};

/// Everything `serve` needs besides the webhook itself.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub tls: KeyPairFiles,
    pub client_ca: Option<std::path::PathBuf>,
    pub tls_reload_interval: Duration,
    pub max_body_bytes: usize,
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
        let tls = Tls::load(options.tls.clone(), options.client_ca.as_deref())?;
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

        let metrics_stop = stop.clone();
        let metrics_server = tokio::spawn(async move {
            axum::serve(metrics_listener, routes::metrics_router(metrics))
                .with_graceful_shutdown(async move { metrics_stop.cancelled().await })
                .await
        });

        let service = TowerToHyperService::new(routes::webhook_router(state.clone()));
        // No hyper timers: slow requests and idle connections are the watchdog's job.
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(options.max_connections));
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
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                state.metrics.rejection("too_many_connections");
                tracing::warn!(%peer, limit = options.max_connections, "connection refused: too many open connections (--max-connections)");
                continue;
            };
            let acceptor = acceptor.clone();
            let builder = builder.clone();
            let service = service.clone();
            let metrics = state.metrics.clone();
            let watcher = graceful.watcher();
            let (handshake_timeout, request_timeout, idle_timeout) = (
                options.handshake_timeout,
                options.request_timeout,
                options.idle_timeout,
            );
            tokio::spawn(async move {
                let _slot = slot;
                let Some(tls) = accept_tls(tcp, peer, &acceptor, handshake_timeout, &metrics).await
                else {
                    return;
                };
                let progress = Progress::new();
                let io = TokioIo::new(Watched::new(tls, progress.clone()));
                let conn = watcher.watch(
                    builder
                        .serve_connection_with_upgrades(io, service)
                        .into_owned(),
                );
                tokio::select! {
                    result = conn => if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    },
                    // Returning drops the connection, which closes it.
                    expired = watchdog::expiry(progress, request_timeout, idle_timeout) => match expired {
                        Expired::SlowRequest => {
                            metrics.rejection("request_timeout");
                            tracing::warn!(%peer, timeout = ?request_timeout, "request not received within --request-timeout; connection closed");
                        }
                        Expired::Idle => {
                            metrics.rejection("idle_timeout");
                            tracing::debug!(%peer, timeout = ?idle_timeout, "idle connection closed");
                        }
                    },
                }
            });
        }

        state.ready.store(false, Ordering::Relaxed);
        drop(listener);
        tracing::info!(grace = ?options.shutdown_grace, "shutting down: no new connections, draining in-flight requests");
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections drained"),
            () = tokio::time::sleep(options.shutdown_grace) => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
            }
        }
        watcher_stop.cancel();
        let _ = reload.await;
        match metrics_server.await {
            Ok(result) => result.context("metrics server")?,
            Err(err) => tracing::warn!(error = %err, "metrics server task failed"),
        }
        Ok(())
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
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let _ = tcp.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => {
            metrics.rejection("plain_http");
            tracing::warn!(%peer, first_byte = first[0], "non-TLS bytes on the HTTPS port; answered 400");
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
            metrics.rejection("tls_handshake_timeout");
            tracing::warn!(%peer, ?timeout, "no TLS handshake within the timeout");
            return None;
        }
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            metrics.rejection("tls_handshake");
            tracing::warn!(%peer, error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics.rejection("tls_handshake_timeout");
            tracing::warn!(%peer, ?timeout, "TLS handshake did not finish within the timeout");
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
