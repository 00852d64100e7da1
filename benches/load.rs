//! End-to-end load over HTTPS on loopback: N keep-alive connections post a real
//! AdmissionReview body to a running `nsguard serve`, then the same load hits a baseline
//! server (rustls + hyper answering a canned AdmissionReview: the transport's limit on
//! this machine). Reports requests/s, latency percentiles, errors, the servers' peak RSS,
//! and nsguard's throughput as a ratio of the baseline's. A third server, `json-floor`,
//! is the baseline plus serde_json validating each body: how close any webhook that
//! checks the JSON it is sent can come to the baseline here.
//!
//! `cargo bench --bench load`. The servers take turns for NSGUARD_LOAD_ROUNDS rounds
//! (3): one pair of runs on a shared machine can differ from the next by 15%, so the
//! round with the median ratio is reported, with every round's ratio. Each run also
//! prints CPU per request of the server and of this load generator, which share the
//! cores. For a soak, `NSGUARD_LOAD_ROUNDS=1 NSGUARD_LOAD_SECONDS=40` (about a million
//! reviews here): RSS is sampled every second and its first, last and peak values
//! printed, to show memory stays flat. Tune with NSGUARD_LOAD_CONNECTIONS (32),
//! NSGUARD_LOAD_SECONDS (10), NSGUARD_LOAD_WARMUP_SECONDS (2), NSGUARD_LOAD_BODY (a
//! fixture name under tests/fixtures/admission-review, default deployment-create.json)
//! and NSGUARD_LOAD_BIN (another `nsguard` binary to measure, such as a PGO build).
//! NSGUARD_LOAD_PIN=1 (Linux, `taskset`) puts this load generator on the last CPU and
//! the servers on the others, so they no longer compete for cores: the ratio then
//! compares the servers' own cost per review (it still moves from run to run here).
//! The servers run as separate processes; this process is only the load generator.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const ROLE: &str = "NSGUARD_LOAD_ROLE";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn main() {
    // `cargo bench` passes `--bench`; other harness flags are ignored.
    if std::env::var(ROLE).as_deref() == Ok("baseline") {
        baseline::serve();
        return;
    }
    // Counted before pinning narrows what this process may use.
    let machine_cpus = cpus();
    let pinning = Pinning::from_env();
    let connections: usize = env_or("NSGUARD_LOAD_CONNECTIONS", 32);
    let seconds: u64 = env_or("NSGUARD_LOAD_SECONDS", 10);
    let warmup: u64 = env_or("NSGUARD_LOAD_WARMUP_SECONDS", 2);
    let rounds_wanted: usize = env_or("NSGUARD_LOAD_ROUNDS", 3).max(1);
    let body_name =
        std::env::var("NSGUARD_LOAD_BODY").unwrap_or_else(|_| "deployment-create.json".into());
    // Compact, as the API server sends it (the fixtures are pretty-printed for reading).
    let pretty = std::fs::read(repo("tests/fixtures/admission-review").join(&body_name)).unwrap();
    let body = Bytes::from(
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&pretty).unwrap()).unwrap(),
    );

    let dir = tempfile::tempdir().unwrap();
    let certs = nsguard::certs::generate(&Default::default()).unwrap();
    certs.write(dir.path(), true).unwrap();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "load: {connections} keep-alive HTTPS connections, {rounds_wanted} rounds of {seconds}s after {warmup}s warm-up per server, body {body_name} ({} bytes), {} CPUs{}",
        body.len(),
        machine_cpus,
        pinning.as_ref().map_or(String::new(), |p| format!(
            ", servers pinned to CPU {}, load generator to CPU {}",
            p.servers, p.load_generator
        )),
    );

    // Alternate the servers for several rounds: on a shared machine a single pair of
    // runs can differ by 15% from the next, and the ratio of one pair is noise. The third
    // server is the baseline plus serde_json validating each body: the ceiling of any
    // webhook that checks the JSON it is sent, on this machine.
    let pinning = pinning.as_ref();
    let mut servers = [
        ("nsguard", Server::nsguard(&cert, &key, pinning)),
        ("baseline", Server::baseline(&cert, &key, false, pinning)),
        ("json-floor", Server::baseline(&cert, &key, true, pinning)),
    ];
    let mut rounds: Vec<[Run; 3]> = Vec::new();
    for round in 1..=rounds_wanted {
        let runs = servers.each_ref().map(|(name, server)| {
            let run = measure(
                &runtime,
                server,
                &certs.ca_cert,
                &body,
                connections,
                warmup,
                seconds,
            );
            run.print(&format!("{name} #{round}"));
            run
        });
        println!(
            "   round {round}: nsguard throughput = {:.1}% of the baseline's (json-floor: {:.1}%)",
            runs[0].stats.rps() / runs[1].stats.rps() * 100.0,
            runs[2].stats.rps() / runs[1].stats.rps() * 100.0
        );
        rounds.push(runs);
    }
    let peak_rss = servers.each_ref().map(|(_, server)| server.peak_rss_kib());
    for (_, server) in &mut servers {
        server.stop();
    }

    // The round with the median ratio stands for the run.
    rounds.sort_by(|a, b| {
        let ratio = |r: &[Run; 3]| r[0].stats.rps() / r[1].stats.rps();
        ratio(a).total_cmp(&ratio(b))
    });
    let median = &rounds[rounds.len() / 2];
    let ratio = median[0].stats.rps() / median[1].stats.rps();
    println!("median round of {}:", rounds.len());
    for ((name, _), (run, rss)) in servers.iter().zip(median.iter().zip(peak_rss)) {
        run.stats.print(name, rss);
    }
    println!(
        "nsguard throughput = {:.1}% of the baseline's (median of {} rounds; all: {})",
        ratio * 100.0,
        rounds.len(),
        rounds
            .iter()
            .map(|r| format!("{:.1}%", r[0].stats.rps() / r[1].stats.rps() * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let nsguard = &median[0].stats;
    println!(
        "targets: throughput >= 80% of baseline: {}; p99 <= 2 ms: {}; peak RSS <= 50 MB: {}; zero errors: {}",
        verdict(ratio >= 0.8),
        verdict(nsguard.percentile(99.0) <= Duration::from_millis(2)),
        verdict(peak_rss[0].is_some_and(|kib| kib <= 50 * 1024)),
        verdict(rounds.iter().all(|r| r[0].stats.errors == 0)),
    );
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// NSGUARD_LOAD_PIN: which CPUs the servers and this load generator run on.
struct Pinning {
    servers: String,
    load_generator: String,
}

impl Pinning {
    /// Read NSGUARD_LOAD_PIN and, when set, move this process (still one thread, so
    /// every thread it starts inherits it) to the last CPU.
    fn from_env() -> Option<Pinning> {
        if !std::env::var("NSGUARD_LOAD_PIN").is_ok_and(|v| !v.is_empty() && v != "0") {
            return None;
        }
        let last = cpus() - 1;
        assert!(last > 0, "NSGUARD_LOAD_PIN needs at least 2 CPUs");
        let pinning = Pinning {
            servers: if last == 1 {
                "0".into()
            } else {
                format!("0-{}", last - 1)
            },
            load_generator: last.to_string(),
        };
        let status = Command::new("taskset")
            .args(["-p", "-c", &pinning.load_generator])
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .status()
            .expect("NSGUARD_LOAD_PIN runs `taskset` (util-linux)");
        assert!(status.success(), "taskset failed: {status}");
        Some(pinning)
    }

    /// `program` started on the servers' CPUs (taskset execs it: same PID).
    fn command(pinning: Option<&Pinning>, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match pinning {
            Some(pinning) => {
                let mut command = Command::new("taskset");
                command.args(["-c", &pinning.servers]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

/// One load run against one server, with what was sampled while it ran.
struct Run {
    stats: Stats,
    /// RSS each second, KiB.
    rss: Vec<u64>,
    /// CPU seconds over the measured window: the server's, the load generator's.
    cpu: Option<(f64, f64)>,
}

impl Run {
    fn print(&self, name: &str) {
        self.stats.print(name, None);
        if let (Some(first), Some(last), Some(max)) =
            (self.rss.first(), self.rss.last(), self.rss.iter().max())
        {
            println!(
                "{:>12}  RSS first {:.1} MB, last {:.1} MB, max {:.1} MB ({} samples)",
                "",
                *first as f64 / 1024.0,
                *last as f64 / 1024.0,
                *max as f64 / 1024.0,
                self.rss.len()
            );
        }
        if let Some((server, client)) = self.cpu {
            let per_request = |cpu: f64| cpu / self.stats.latencies.len().max(1) as f64 * 1e6;
            println!(
                "{:>12}  CPU per request: server {:.1} µs, load generator {:.1} µs (server busy {:.2} cores)",
                "",
                per_request(server),
                per_request(client),
                server / self.stats.elapsed.as_secs_f64(),
            );
        }
    }
}

/// Load one server, sampling its RSS every second and, over the measured window, its
/// CPU time and this load generator's: both share the machine's cores.
fn measure(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    ca_pem: &str,
    body: &Bytes,
    connections: usize,
    warmup: u64,
    seconds: u64,
) -> Run {
    let pid = server.child.id();
    let sampler = std::thread::spawn(move || {
        let mut rss = Vec::new();
        let mut cpu_start = (cpu_seconds(pid), cpu_seconds(std::process::id()));
        for second in 1..=(warmup + seconds) {
            std::thread::sleep(Duration::from_secs(1));
            rss.extend(rss_kib(pid, "VmRSS:"));
            if second == warmup {
                cpu_start = (cpu_seconds(pid), cpu_seconds(std::process::id()));
            }
        }
        let cpu = match (cpu_start, cpu_seconds(pid), cpu_seconds(std::process::id())) {
            ((Some(server0), Some(client0)), Some(server1), Some(client1)) => {
                Some((server1 - server0, client1 - client0))
            }
            _ => None,
        };
        (rss, cpu)
    });
    let stats = runtime.block_on(run_load(
        server.addr,
        ca_pem,
        body.clone(),
        connections,
        warmup,
        seconds,
    ));
    let (rss, cpu) = sampler.join().unwrap();
    Run { stats, rss, cpu }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// A server process on a loopback port.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn nsguard(cert: &Path, key: &Path, pinning: Option<&Pinning>) -> Server {
        // NSGUARD_LOAD_BIN measures another build of the same source (a PGO build, say).
        let binary = std::env::var_os("NSGUARD_LOAD_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_nsguard")),
            PathBuf::from,
        );
        let mut command = Pinning::command(pinning, binary);
        command
            .args([
                "--log-format",
                "json",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .arg("--cluster-dump")
            .arg(repo("examples/cluster-dump.yaml"));
        Self::spawn(command, "webhook listening")
    }

    fn baseline(cert: &Path, key: &Path, validate: bool, pinning: Option<&Pinning>) -> Server {
        let mut command = Pinning::command(pinning, std::env::current_exe().unwrap());
        command
            .env(ROLE, "baseline")
            .env("BASELINE_CERT", cert)
            .env("BASELINE_KEY", key)
            .env("BASELINE_VALIDATE", if validate { "1" } else { "" });
        Self::spawn(command, "baseline listening")
    }

    /// Start and read the listening address from the first matching stderr line.
    fn spawn(mut command: Command, needle: &str) -> Server {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if line.contains(needle) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                break v["addr"].as_str().unwrap().parse().unwrap();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    /// Peak resident set size (VmHWM) in KiB, from /proc.
    fn peak_rss_kib(&self) -> Option<u64> {
        rss_kib(self.child.id(), "VmHWM:")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU time of a process so far, from /proc/PID/stat, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture nsguard builds for.
    Some(ticks as f64 / 100.0)
}

/// A memory figure of a process from /proc/PID/status, in KiB.
fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Stats {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::MAX;
        }
        let index = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[index]
    }

    fn print(&self, name: &str, rss_kib: Option<u64>) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name:>12}: {:>8.0} req/s  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms  errors {}  requests {}{}",
            self.rps(),
            ms(self.percentile(50.0)),
            ms(self.percentile(90.0)),
            ms(self.percentile(99.0)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.errors,
            self.latencies.len(),
            rss_kib.map_or(String::new(), |k| format!(
                "  peak RSS {:.1} MB",
                k as f64 / 1024.0
            )),
        );
    }
}

async fn run_load(
    addr: SocketAddr,
    ca_pem: &str,
    body: Bytes,
    connections: usize,
    warmup: u64,
    seconds: u64,
) -> Stats {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let start = Instant::now() + Duration::from_secs(warmup);
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let connector = connector.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            connection(addr, connector, body, start, end).await
        }));
    }
    let mut stats = Stats {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::from_secs(seconds),
    };
    for task in tasks {
        let (latencies, errors) = task.await.unwrap();
        stats.latencies.extend(latencies);
        stats.errors += errors;
    }
    stats.latencies.sort_unstable();
    stats
}

/// One keep-alive connection posting until `end`; latencies after `start` count.
async fn connection(
    addr: SocketAddr,
    connector: TlsConnector,
    body: Bytes,
    start: Instant,
    end: Instant,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    'reconnect: while Instant::now() < end {
        let Ok(tcp) = TcpStream::connect(addr).await else {
            errors += 1;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let Ok(tls) = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
        else {
            errors += 1;
            continue;
        };
        let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await
        else {
            errors += 1;
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < end {
            let request = Request::post("/validate")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
                .unwrap();
            let sent = Instant::now();
            let ok = match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status();
                    response.into_body().collect().await.is_ok() && status.is_success()
                }
                Err(_) => false,
            };
            let latency = sent.elapsed();
            if sent >= start {
                if ok {
                    latencies.push(latency);
                } else {
                    errors += 1;
                }
            }
            if !ok {
                continue 'reconnect;
            }
        }
    }
    (latencies, errors)
}

/// The baseline: the same TLS and HTTP stack as nsguard (rustls, hyper-util auto
/// builder, tokio multi-thread), reading each body and answering a canned review.
mod baseline {
    use super::*;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioExecutor;
    use hyper_util::server::conn::auto;
    use rustls::pki_types::PrivateKeyDer;

    const CANNED: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"3ee7cc9f-aa44-4291-9c8b-491a9fd89e86","allowed":true,"status":{}}}"#;

    pub fn serve() {
        // With BASELINE_VALIDATE, each body is also checked with serde_json (skipping
        // every value): the JSON floor a validating webhook cannot go below.
        let validate = std::env::var("BASELINE_VALIDATE").is_ok_and(|v| !v.is_empty());
        let cert = std::fs::read(std::env::var("BASELINE_CERT").unwrap()).unwrap();
        let key = std::fs::read(std::env::var("BASELINE_KEY").unwrap()).unwrap();
        let certs = CertificateDer::pem_slice_iter(&cert)
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_slice(&key).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            eprintln!(
                r#"{{"message":"baseline listening","addr":"{}"}}"#,
                listener.local_addr().unwrap()
            );
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service =
                        service_fn(|request: Request<hyper::body::Incoming>| async move {
                            let body = request.into_body().collect().await;
                            let valid = !validate
                                || body.is_ok_and(|b| {
                                    serde_json::from_slice::<serde::de::IgnoredAny>(&b.to_bytes())
                                        .is_ok()
                                });
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(if valid { 200 } else { 400 })
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from_static(CANNED)))
                                    .unwrap(),
                            )
                        });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    }
}
