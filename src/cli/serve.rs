//! `nsguard serve`: the webhook server.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::guard_args::GuardInputs;
use crate::admission::Webhook;
use crate::background_audit::leader::{self, LeaseConfig, Turn};
use crate::background_audit::{self, Schedule};
use crate::certs::{self, CertRequest};
use crate::cluster::{ClusterHealth, ClusterSource, health};
use crate::decisions::placement::PlacementMode;
use crate::metrics::Metrics;
use crate::server::tls::KeyPairFiles;
use crate::server::{BoundServer, ServerOptions};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard serve --demo                      # self-made certs, the example cluster dump
  nsguard serve --tls-cert tls.crt --tls-key tls.key --placement-mode enforce
  nsguard serve --kubeconfig ~/.kube/config --context staging")]
pub struct ServeArgs {
    /// Address of the HTTPS webhook port.
    #[arg(long, env = "NSGUARD_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Address of the plain-HTTP Prometheus /metrics port.
    #[arg(long, env = "NSGUARD_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,
    /// PEM certificate chain of the serving certificate. Without --tls-cert and
    /// --tls-key, nsguard uses --cert-dir and creates a development CA there if empty.
    #[arg(long, env = "NSGUARD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the serving certificate.
    #[arg(long, env = "NSGUARD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where the development certificates live when --tls-cert/--tls-key are not given.
    #[arg(long, env = "NSGUARD_CERT_DIR", default_value = "certs")]
    cert_dir: PathBuf,
    /// PEM bundle of CAs; when set, clients must present a certificate signed by one.
    #[arg(long, env = "NSGUARD_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "NSGUARD_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    tls_reload_interval: Duration,
    /// Largest accepted request body. The API server's biggest reviews carry an object
    /// and its old version, each up to etcd's 1.5 MiB limit.
    #[arg(long, env = "NSGUARD_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Request bytes buffered at once, all requests together: a bound on memory that the
    /// body limit alone is not. Keep it well under the pod's memory limit (256Mi in the
    /// shipped Deployment). A body that finds no room within a second gets 429 with
    /// Retry-After. At least --max-body-bytes.
    #[arg(long, env = "NSGUARD_MAX_BUFFERED_BYTES", default_value_t = 48 * 1024 * 1024)]
    max_buffered_bytes: usize,
    /// Bound on receiving a request, headers and body, from its first byte; also how
    /// long a new connection may take to send its first request, and how long a
    /// connection may stay idle while the server is near --max-connections.
    #[arg(long, env = "NSGUARD_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Keep-alive connections with no traffic for this long are closed. Longer than the
    /// API server's own idle timeout (90s), so it never reuses a connection being closed.
    #[arg(long, env = "NSGUARD_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Bound on a client's TLS handshake.
    #[arg(long, env = "NSGUARD_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "NSGUARD_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// After SIGTERM, keep serving this long with /readyz failing, so the Service's
    /// endpoints drop the pod before it stops accepting. Then drain (--shutdown-grace).
    #[arg(long, env = "NSGUARD_SHUTDOWN_DELAY", default_value = "3s", value_parser = humantime::parse_duration)]
    shutdown_delay: Duration,
    /// Open connections at once. At the limit, a new connection closes the one idle the
    /// longest; it is refused only when every connection has a request in flight.
    #[arg(long, env = "NSGUARD_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// What to do with a sub-env object outside its namespace: rewrite (JSONPatch on
    /// /mutate), enforce (deny on /validate), warn (allow with a warning), off.
    #[arg(
        long,
        env = "NSGUARD_PLACEMENT_MODE",
        value_enum,
        default_value = "warn"
    )]
    placement_mode: PlacementMode,
    /// Run the audit (`nsguard audit`) in the background this often, for the
    /// nsguard_audit_* metrics; off when not given. Never delays an admission answer.
    #[arg(long, env = "NSGUARD_AUDIT_INTERVAL", value_parser = humantime::parse_duration)]
    audit_interval: Option<Duration>,
    /// Bound on one background audit's reads of the cluster.
    #[arg(long, env = "NSGUARD_AUDIT_TIMEOUT", default_value = "2m", value_parser = humantime::parse_duration)]
    audit_timeout: Duration,
    /// List calls one background audit has in flight at once, apart from the guard's.
    #[arg(long, env = "NSGUARD_AUDIT_CONCURRENCY", default_value_t = NonZeroUsize::new(4).unwrap())]
    audit_concurrency: NonZeroUsize,
    /// After each background audit, apply a wgpolicyk8s.io/v1alpha2 PolicyReport named
    /// nsguard in each namespace with findings and remove nsguard's others (needs the
    /// PolicyReport CRD and manifests/overlays/policy-reports for the RBAC).
    #[arg(
        long,
        env = "NSGUARD_WRITE_POLICY_REPORTS",
        requires = "audit_interval"
    )]
    write_policy_reports: bool,
    /// Namespace of the Lease that elects the one replica running the background audit
    /// (the shipped Deployment sets the pod's own, from the downward API); unused without
    /// --audit-interval. In a pod
    /// without it, the pod's namespace; outside a cluster without it, the audit runs
    /// without a lease (fine for one process, never for replicas).
    #[arg(long, env = "NSGUARD_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of that Lease.
    #[arg(
        long,
        env = "NSGUARD_LEASE_NAME",
        default_value = "nsguard-audit",
        requires = "audit_interval"
    )]
    lease_name: String,
    /// This replica's name in the Lease (the Deployment sets the pod's name); a random
    /// suffix makes each process's own. Default: the host name.
    #[arg(long, env = "NSGUARD_LEASE_IDENTITY")]
    lease_identity: Option<String>,
    /// How long the Lease holds without renewal: a crashed auditor is replaced within it.
    /// The holder renews a third of it before expiry and stops auditing half of that
    /// before its lease could expire. Whole seconds, at least 3s.
    #[arg(long, env = "NSGUARD_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// Record each refused (non-dry-run) namespace delete as a Warning Event on the
    /// Namespace (reason DeleteDenied, in the `default` namespace, repeats counted in one
    /// Event), for `kubectl events -n default --for namespace/NS` and event exporters. Off the answer's
    /// path. Needs create and patch on events.k8s.io events in `default` (the manifests
    /// grant it). A live cluster only.
    #[arg(long, env = "NSGUARD_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    events: bool,
    #[command(flatten)]
    inputs: GuardInputs,
}

impl ServeArgs {
    /// The certificate pair to serve: explicit files, or the development pair in
    /// --cert-dir, generated when missing.
    fn key_pair(&self) -> anyhow::Result<KeyPairFiles> {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            return Ok(KeyPairFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        let files = KeyPairFiles {
            cert: self.cert_dir.join(certs::TLS_CERT_FILE),
            key: self.cert_dir.join(certs::TLS_KEY_FILE),
        };
        match (files.cert.exists(), files.key.exists()) {
            (true, true) => {}
            (false, false) => {
                let written = certs::generate(&CertRequest::default())?
                    .write(&self.cert_dir, false)
                    .with_context(|| {
                        format!(
                            "no --tls-cert/--tls-key given, and the development certificates cannot be made in --cert-dir {} \
                             (pass --tls-cert and --tls-key, as the shipped Deployment does with its Secret, or a writable --cert-dir)",
                            self.cert_dir.display()
                        )
                    })?;
                tracing::warn!(
                    dir = %self.cert_dir.display(),
                    files = ?written,
                    "no --tls-cert/--tls-key: generated a development CA and serving certificate; \
                     trust ca.crt to call the webhook"
                );
            }
            _ => bail!(
                "{} holds only one of {} and {}; remove it or pass --tls-cert and --tls-key",
                self.cert_dir.display(),
                certs::TLS_CERT_FILE,
                certs::TLS_KEY_FILE
            ),
        }
        Ok(files)
    }
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_async(args))
}

async fn serve_async(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.max_buffered_bytes < args.max_body_bytes {
        bail!(
            "--max-buffered-bytes ({}) is smaller than --max-body-bytes ({}): no body of the largest size could ever be read",
            args.max_buffered_bytes,
            args.max_body_bytes
        );
    }
    if args.audit_interval.is_some_and(|i| i.is_zero()) {
        bail!(
            "--audit-interval must be longer than 0s; leave it out to turn the background audit off"
        );
    }
    let options = ServerOptions {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        tls: args.key_pair()?,
        client_ca: args.client_ca.clone(),
        tls_reload_interval: args.tls_reload_interval,
        max_body_bytes: args.max_body_bytes,
        max_buffered_bytes: args.max_buffered_bytes,
        request_timeout: args.request_timeout,
        idle_timeout: args.idle_timeout,
        handshake_timeout: args.handshake_timeout,
        shutdown_grace: args.shutdown_grace,
        shutdown_delay: args.shutdown_delay,
        max_connections: args.max_connections,
    };
    let scheme = args.inputs.labels.scheme();
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let cluster = args.inputs.source(&scheme).await?;
    let events = match &cluster {
        ClusterSource::Live(live) if args.events => Some(crate::cluster::events::spawn(
            live.client().clone(),
            pod_name(&args),
            metrics.clone(),
            stop.clone(),
        )),
        _ => None,
    };
    let webhook = Arc::new(Webhook {
        cluster,
        scheme,
        guard: args.inputs.guard.config(),
        lookup_timeout: args.inputs.lookup.lookup_timeout,
        placement: args.placement_mode,
        metrics,
        events,
    });
    let health = match &webhook.cluster {
        ClusterSource::Live(_) => {
            let health = Arc::new(ClusterHealth::waiting());
            let (webhook, watched, stop) = (webhook.clone(), health.clone(), stop.clone());
            let interval = args.inputs.cluster.live_options().discovery_ttl;
            let timeout = args.inputs.lookup.lookup_timeout;
            tokio::spawn(async move {
                if let ClusterSource::Live(live) = &webhook.cluster {
                    health::watch(live, &watched, &webhook.metrics, interval, timeout, stop).await;
                }
            });
            health
        }
        ClusterSource::Dump(_) => Arc::new(ClusterHealth::ready()),
    };
    let mut election = None;
    webhook.metrics.audit_interval(args.audit_interval);
    if args.placement_mode == PlacementMode::Enforce && args.audit_interval.is_none() {
        tracing::warn!(
            "placement in enforce refuses every new object of a sub-env outside its own namespace, \
             also of sub-envs simple-container keeps in their parent's namespace (a deploy of them fails); \
             nothing checks for such sub-envs without --audit-interval: `nsguard audit` lists them"
        );
    }
    if let Some(interval) = args.audit_interval {
        if args.write_policy_reports && matches!(webhook.cluster, ClusterSource::Dump(_)) {
            bail!(
                "--write-policy-reports writes into a cluster: it needs a live cluster, not a dump"
            );
        }
        let schedule = Schedule {
            interval,
            timeout: args.audit_timeout,
            concurrency: args.audit_concurrency,
            write_policy_reports: args.write_policy_reports,
            placement_enforced: args.placement_mode == PlacementMode::Enforce,
        };
        let turn = match (&webhook.cluster, lease_config(&args)?) {
            (ClusterSource::Live(live), Some(config)) => {
                let (turn, task) = leader::elect(
                    live.client().clone(),
                    config,
                    webhook.metrics.clone(),
                    stop.clone(),
                );
                election = Some(task);
                turn
            }
            (ClusterSource::Live(_), None) => {
                tracing::warn!(
                    "background audit without a lease: no --lease-namespace and not in a pod; \
                     fine for one process, but replicas would each audit and write"
                );
                webhook.metrics.audit_leader(true);
                Turn::always()
            }
            (ClusterSource::Dump(_), _) => {
                webhook.metrics.audit_leader(true);
                Turn::always()
            }
        };
        tokio::spawn(background_audit::run(
            webhook.clone(),
            schedule,
            turn,
            stop.clone(),
        ));
    }
    let server = BoundServer::bind(options, webhook, health).await?;
    tokio::spawn(stop_on_signal(stop.clone()));
    server.run(stop).await?;
    if let Some(election) = election {
        // Released on stop (bounded inside), so another replica audits at once.
        let _ = tokio::time::timeout(Duration::from_secs(6), election).await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// This replica's name (the pod's, from --lease-identity or $HOSTNAME): the Lease holder
/// and the Events' reportingInstance.
fn pod_name(args: &ServeArgs) -> String {
    args.lease_identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "nsguard".to_owned())
}

/// The audit's Lease: in `--lease-namespace`, else the namespace of the pod nsguard runs
/// in; `None` outside a cluster without the flag.
fn lease_config(args: &ServeArgs) -> anyhow::Result<Option<LeaseConfig>> {
    let seconds = args.lease_duration.as_secs();
    if seconds < 3 || args.lease_duration.subsec_nanos() != 0 {
        bail!(
            "--lease-duration must be whole seconds, at least 3s (got {})",
            humantime::format_duration(args.lease_duration)
        );
    }
    let namespace = args
        .lease_namespace
        .clone()
        .or_else(|| std::fs::read_to_string(POD_NAMESPACE_FILE).ok())
        .map(|ns| ns.trim().to_owned())
        .filter(|ns| !ns.is_empty());
    let Some(namespace) = namespace else {
        return Ok(None);
    };
    let name = pod_name(args);
    Ok(Some(LeaseConfig {
        namespace,
        name: args.lease_name.clone(),
        identity: format!("{name}_{}", random_suffix()),
        duration: Duration::from_secs(seconds),
    }))
}

/// Where a pod's service account token sits beside its namespace.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Eight random hex digits: two processes of one pod name (a restart) are two holders.
fn random_suffix() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cancel `stop` on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
async fn stop_on_signal(stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
    }
    stop.cancel();
}
