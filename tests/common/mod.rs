//! Test harness: runs the real `nsguard serve` binary on loopback ports and talks HTTPS
//! to it with a rustls + hyper client.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod control_plane;
pub mod node;
pub mod replay;
pub mod schema;
pub mod volume_api;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use nsguard::admission::Webhook;
use nsguard::certs::{CertRequest, GeneratedCerts};
use nsguard::cluster::{ClusterDump, ClusterSource};
use nsguard::decisions::placement::PlacementMode;
use nsguard::metrics::Metrics;
use nsguard::simple_container::labels::LabelScheme;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `kubectl kustomize` of a kustomization, as users' kubectl renders it (once per
/// directory and test binary).
pub fn kustomize(dir: &str) -> Vec<serde_json::Value> {
    static RENDERED: std::sync::Mutex<std::collections::BTreeMap<String, Vec<serde_json::Value>>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    if let Some(objects) = RENDERED.lock().unwrap().get(dir) {
        return objects.clone();
    }
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(repo_path(dir))
        .output()
        .expect("kubectl on the PATH (tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects: Vec<serde_json::Value> =
        nsguard::documents::parse(&String::from_utf8(out.stdout).unwrap())
            .unwrap()
            .into_iter()
            .map(|d| d.value)
            .collect();
    RENDERED
        .lock()
        .unwrap()
        .insert(dir.to_owned(), objects.clone());
    objects
}

/// The built `nsguard` with `args`, and no cluster configuration from the environment
/// (`KUBECONFIG`, in-cluster variables, `NSGUARD_CLUSTER_DUMP`): only what the test passes.
pub fn nsguard_cli<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_nsguard"));
    command
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("NSGUARD_CLUSTER_DUMP");
    command
}

/// A fixture body from `tests/fixtures/admission-review/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = repo_path("tests/fixtures/admission-review").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture body as the API server sends it: compact JSON (the files are
/// pretty-printed for reading).
pub fn compact_fixture(name: &str) -> Vec<u8> {
    let pretty: serde_json::Value = serde_json::from_slice(&fixture(name)).unwrap();
    serde_json::to_vec(&pretty).unwrap()
}

/// The webhook `serve` runs without a cluster: decisions over the example dump.
pub fn example_webhook(placement: PlacementMode) -> Webhook {
    let scheme = LabelScheme::default();
    let dump = include_str!("../../examples/cluster-dump.yaml");
    Webhook {
        cluster: ClusterSource::Dump(ClusterDump::parse(dump, &scheme).unwrap()),
        scheme,
        guard: Default::default(),
        lookup_timeout: Duration::from_secs(1),
        placement,
        metrics: Arc::new(Metrics::new()),
        events: None,
    }
}

/// Every fixture review, validating and mutating, as (relative path, body).
pub fn all_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["", "mutating/"] {
        let base = repo_path("tests/fixtures/admission-review").join(dir);
        let mut names: Vec<_> = std::fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        for name in names {
            let rel = format!("{dir}{name}");
            out.push((rel.clone(), fixture(&rel)));
        }
    }
    out
}

/// Generate a CA + serving pair (and a client pair) and write them to `dir`.
pub fn write_certs(dir: &Path, client: bool) -> GeneratedCerts {
    let request = CertRequest {
        client_name: client.then(|| "kube-apiserver".to_owned()),
        ..CertRequest::default()
    };
    let certs = nsguard::certs::generate(&request).unwrap();
    certs.write(dir, true).unwrap();
    certs
}

/// A running `nsguard serve` process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
    pub certs: GeneratedCerts,
}

pub struct ServerBuilder {
    args: Vec<String>,
    client_certs: bool,
    tls_files: Option<(PathBuf, PathBuf, GeneratedCerts)>,
    cluster: Cluster,
}

/// Where the server under test reads cluster state.
pub enum Cluster {
    Dump(PathBuf),
    /// A replayed API server, through a kubeconfig pointing at it.
    Kubeconfig(PathBuf),
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            client_certs: false,
            tls_files: None,
            cluster: Cluster::Dump(repo_path("examples/cluster-dump.yaml")),
        }
    }

    pub fn start() -> Server {
        Self::builder().start()
    }

    /// The server process's id, for reading its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Wait until `count` log lines contain `needle` (logs arrive through a pipe, a little
    /// after the response), and return them.
    pub fn wait_for_logs(&self, needle: &str, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines: Vec<String> = self
                .logs()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} log lines with {needle:?} in {:#?}",
                lines.len(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} in {:#?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self) -> HttpsClient {
        HttpsClient::new(&self.certs.ca_cert, None)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit, returning its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "nsguard did not exit; logs: {:#?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Assert that the metrics exposition holds each of `lines` (fetched once).
    pub async fn assert_metrics(&self, lines: &[&str]) {
        let metrics = self.metrics().await;
        for line in lines {
            assert!(
                metrics.contains(line),
                "{line} not in the metrics:\n{metrics}"
            );
        }
    }

    /// The metrics exposition, over plain HTTP.
    pub async fn metrics(&self) -> String {
        let (status, body) = self.metrics_port_get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A GET on the plain-HTTP metrics port (`/metrics`, `/readyz`, `/healthz`): the status
    /// and the body.
    pub async fn metrics_port_get(&self, path: &str) -> (u16, String) {
        let tcp = TcpStream::connect(self.metrics_addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }
}

impl ServerBuilder {
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Also write client.crt/client.key next to the serving pair.
    pub fn with_client_certs(mut self) -> Self {
        self.client_certs = true;
        self
    }

    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = cluster;
        self
    }

    /// Serve this certificate pair (the caller manages the files) instead of a fresh one.
    pub fn tls_files(mut self, cert: PathBuf, key: PathBuf, certs: GeneratedCerts) -> Self {
        self.tls_files = Some((cert, key, certs));
        self
    }

    pub fn start(self) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, certs) = match self.tls_files {
            Some(files) => files,
            None => {
                let certs = write_certs(dir.path(), self.client_certs);
                (
                    dir.path().join("tls.crt"),
                    dir.path().join("tls.key"),
                    certs,
                )
            }
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_nsguard"));
        command
            .env_remove("NSGUARD_CLUSTER_DUMP")
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", dir.path());
        match &self.cluster {
            Cluster::Dump(path) => {
                command.env("NSGUARD_CLUSTER_DUMP", path);
            }
            Cluster::Kubeconfig(path) => {
                command.env("KUBECONFIG", path);
            }
        }
        let mut child = command
            .args(["--log-format", "json", "--log-level", "info", "serve"])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(&self.args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsguard");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (addr, metrics_addr) = loop {
            let lines = logs.lock().unwrap().clone();
            // JSON lines, or text ones (`... webhook listening (HTTPS) addr=127.0.0.1:1234`).
            let find = |needle: &str| {
                lines.iter().find_map(|l| {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                        return (v["message"].as_str()?.contains(needle))
                            .then(|| v["addr"].as_str()?.parse().ok())?;
                    }
                    let (_, addr) = l.split_once(needle)?.1.split_once("addr=")?;
                    addr.split_whitespace().next()?.parse().ok()
                })
            };
            if let (Some(a), Some(m)) = (find("webhook listening"), find("metrics listening")) {
                break (a, m);
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("nsguard exited with {status} before listening: {lines:#?}");
            }
            assert!(
                Instant::now() < deadline,
                "nsguard did not start: {lines:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child,
            addr,
            metrics_addr,
            logs,
            dir,
            certs,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client trusting one CA, optionally presenting a client certificate.
#[derive(Clone)]
pub struct HttpsClient {
    connector: TlsConnector,
}

impl HttpsClient {
    pub fn new(ca_pem: &str, client: Option<(&str, &str)>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Self {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// A TLS stream that offers only `h2` in ALPN, for HTTP/2 tests.
    pub async fn connect_h2(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut config = (*self.connector.config().clone()).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// A raw TLS stream, for tests that write HTTP by hand.
    pub async fn connect_tls(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        self.connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// Open one keep-alive HTTP/1.1 connection over TLS.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<Connection> {
        let tls = self.connect_tls(addr).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection { sender })
    }

    /// One request on a fresh connection.
    pub async fn post(
        &self,
        addr: SocketAddr,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let mut conn = self.connect(addr).await.expect("connect");
        conn.post(path, content_type, body).await.expect("request")
    }

    pub async fn get(&self, addr: SocketAddr, path: &str) -> Reply {
        let mut conn = self.connect(addr).await.expect("connect");
        conn.send(Method::GET, path, None, Vec::new())
            .await
            .expect("request")
    }
}

/// Read until the server closes the connection, or give up after `limit`.
pub async fn closed_within(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: Duration,
) -> bool {
    use tokio::io::AsyncReadExt;
    let mut sink = Vec::new();
    matches!(
        tokio::time::timeout(limit, stream.read_to_end(&mut sink)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

/// Open `n` connections, each with a request in flight (its body still arriving), which
/// fill a server started with `--max-connections n`: a further connection is refused.
pub async fn fill_with_busy_connections(
    client: &HttpsClient,
    addr: SocketAddr,
    n: usize,
) -> Vec<tokio_rustls::client::TlsStream<TcpStream>> {
    use tokio::io::AsyncWriteExt;
    let mut busy = Vec::new();
    for _ in 0..n {
        let mut tls = client.connect_tls(addr).await.unwrap();
        tls.write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{")
            .await
            .unwrap();
        busy.push(tls);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        client.connect(addr).await.is_err(),
        "the server is not full"
    );
    busy
}

/// A status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> hyper::Result<Reply> {
        self.send(Method::POST, path, Some(content_type), body)
            .await
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> hyper::Result<Reply> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }
}

/// POST a review to `path` and return the decoded AdmissionReview response.
pub async fn review(
    client: &HttpsClient,
    addr: SocketAddr,
    path: &str,
    body: Vec<u8>,
) -> serde_json::Value {
    let reply = client.post(addr, path, "application/json", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// What a sustained load saw.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub ok: usize,
    pub failed: Vec<String>,
}

impl LoadResult {
    /// No request failed, and at least `min_ok` succeeded (the load really ran).
    #[track_caller]
    pub fn assert_clean(&self, min_ok: usize) {
        let shown = &self.failed[..self.failed.len().min(5)];
        assert!(
            self.failed.is_empty(),
            "{} failed: {shown:?}",
            self.failed.len()
        );
        assert!(self.ok >= min_ok, "only {} requests", self.ok);
    }
}

/// Post `body` to `/validate` on `connections` keep-alive connections until `stop` is set,
/// reopening each connection every `reconnect_every` requests so handshakes keep happening.
pub async fn sustained_load(
    client: HttpsClient,
    addr: SocketAddr,
    body: Vec<u8>,
    connections: usize,
    reconnect_every: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> LoadResult {
    use std::sync::atomic::Ordering;
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (client, body, stop) = (client.clone(), body.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            while !stop.load(Ordering::Relaxed) {
                let mut conn = match client.connect(addr).await {
                    Ok(conn) => conn,
                    Err(err) => {
                        result.failed.push(format!("connect: {err}"));
                        continue;
                    }
                };
                for _ in 0..reconnect_every {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match conn
                        .post("/validate", "application/json", body.clone())
                        .await
                    {
                        Ok(reply) if reply.status == StatusCode::OK => result.ok += 1,
                        Ok(reply) => {
                            result
                                .failed
                                .push(format!("{}: {}", reply.status, reply.text()))
                        }
                        Err(err) => {
                            result.failed.push(format!("request: {err}"));
                            break;
                        }
                    }
                }
            }
            result
        }));
    }
    let mut total = LoadResult::default();
    for worker in workers {
        let result = worker.await.unwrap();
        total.ok += result.ok;
        total.failed.extend(result.failed);
    }
    total
}

/// `name stage` of each claim of one sub-env in `nsguard migrate check -o json`.
pub fn claim_stages(status: &serde_json::Value) -> Vec<String> {
    status["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap(),
                c["stage"].as_str().unwrap()
            )
        })
        .collect()
}
