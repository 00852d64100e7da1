//! A real Kubernetes control plane for tests and benchmarks, started and owned by the
//! process that uses it, as controller-runtime's envtest does (`KUBEBUILDER_ASSETS`): etcd,
//! kube-apiserver and kube-controller-manager on free 127.0.0.1 ports, with certificates
//! made here, in a temporary directory under `/tmp`. Every process is stopped when the
//! [`ControlPlane`] is dropped and dies with the process that started it
//! (`PR_SET_PDEATHSIG`).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};

/// The directory of control-plane binaries: `NSGUARD_KUBE_ASSETS`.
pub fn assets() -> Option<PathBuf> {
    std::env::var_os("NSGUARD_KUBE_ASSETS").map(PathBuf::from)
}

/// A free port on 127.0.0.1 (closed again: the process that binds it next may lose a
/// race, and says so in its log).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One process of the control plane, stopped (TERM, then KILL) when dropped.
pub struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, dir: &Path, program: &Path, args: &[String]) -> Process {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        // Dies with the suite, even when the suite is killed.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {}: {e}", program.display()));
        Process { name, child, log }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("real_cluster: {} ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcd, kube-apiserver and kube-controller-manager in a temporary directory.
pub struct ControlPlane {
    /// Stopped in reverse order of start (controller manager, API server, etcd).
    processes: Vec<Process>,
    pub server: String,
    pub version: String,
    pub ca_pem: String,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some(process) = self.processes.pop() {
            drop(process);
        }
    }
}

fn dn(pairs: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (kind, value) in pairs {
        dn.push(kind.clone(), *value);
    }
    dn
}

/// A CA and the certificates the control plane needs: the API server's serving pair, the
/// admin's client pair (group system:masters), the controller manager's client pair and
/// the ServiceAccount signing key. PEM files in `pki`.
pub fn make_pki(pki: &Path) -> String {
    std::fs::create_dir_all(pki).unwrap();
    let write = |name: &str, pem: &str| std::fs::write(pki.join(name), pem).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name = dn(&[(DnType::CommonName, "nsguard-e2e-ca")]);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    write("ca.crt", &ca_cert.pem());
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str, subject: DistinguishedName, server: bool| {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if server {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.subject_alt_names = vec![
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress("10.96.0.1".parse().unwrap()),
                SanType::DnsName("kubernetes.default.svc".try_into().unwrap()),
            ];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        write(&format!("{name}.crt"), &cert.pem());
        write(&format!("{name}.key"), &key.serialize_pem());
    };
    leaf(
        "apiserver",
        dn(&[(DnType::CommonName, "kube-apiserver")]),
        true,
    );
    leaf(
        "admin",
        dn(&[
            (DnType::OrganizationName, "system:masters"),
            (DnType::CommonName, "nsguard-e2e-admin"),
        ]),
        false,
    );
    leaf(
        "kube-controller-manager",
        dn(&[(DnType::CommonName, "system:kube-controller-manager")]),
        false,
    );
    let service_accounts = KeyPair::generate().unwrap();
    write("sa.key", &service_accounts.serialize_pem());
    write("sa.pub", &service_accounts.public_key_pem());
    ca_cert.pem()
}

pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A kubeconfig for `server` with `user` (a YAML mapping's body).
/// The kube client configuration of the kubeconfig at `path`, its current context.
pub async fn kube_config(path: &Path) -> kube::Config {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap()
}

pub fn kubeconfig(path: &Path, server: &str, ca_pem: &str, user: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    \
             certificate-authority-data: {}\nusers:\n- name: e2e\n  user:\n{user}\ncontexts:\n- name: e2e\n  \
             context: {{cluster: e2e, user: e2e}}\ncurrent-context: e2e\n",
            b64(ca_pem)
        ),
    )
    .unwrap();
}

/// Poll `check` until it returns `Some`, every 200 ms, for at most `limit`.
pub fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`poll`], which must find it.
pub fn eventually<T>(what: &str, limit: Duration, check: impl FnMut() -> Option<T>) -> T {
    poll(limit, check).unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

impl ControlPlane {
    pub fn start(assets: &Path) -> ControlPlane {
        let binary = |name: &str| {
            let path = assets.join(name);
            assert!(
                path.is_file(),
                "{} is missing (NSGUARD_KUBE_ASSETS={})",
                path.display(),
                assets.display()
            );
            path
        };
        let (apiserver, controller_manager) =
            (binary("kube-apiserver"), binary("kube-controller-manager"));
        let etcd = match assets.join("etcd") {
            path if path.is_file() => path,
            _ => PathBuf::from("etcd"),
        };
        let dir = tempfile::Builder::new()
            .prefix("nsguard-e2e-")
            .tempdir_in("/tmp")
            .unwrap();
        let pki = dir.path().join("pki");
        let ca_pem = make_pki(&pki);
        let pki = |name: &str| pki.join(name).display().to_string();
        let (etcd_port, peer_port, api_port, kcm_port) =
            (free_port(), free_port(), free_port(), free_port());
        let server = format!("https://127.0.0.1:{api_port}");
        let mut plane = ControlPlane {
            processes: Vec::new(),
            server: server.clone(),
            version: String::new(),
            ca_pem: ca_pem.clone(),
            kubeconfig: dir.path().join("admin.kubeconfig"),
            dir,
        };
        let root = plane.dir.path().to_owned();
        let client_cert = |name: &str| {
            format!(
                "    client-certificate: {}\n    client-key: {}",
                pki(&format!("{name}.crt")),
                pki(&format!("{name}.key"))
            )
        };
        kubeconfig(&plane.kubeconfig, &server, &ca_pem, &client_cert("admin"));
        let kcm_kubeconfig = root.join("kcm.kubeconfig");
        kubeconfig(
            &kcm_kubeconfig,
            &server,
            &ca_pem,
            &client_cert("kube-controller-manager"),
        );

        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        plane.processes.push(Process::spawn(
            "etcd",
            &root,
            &etcd,
            &args(&[
                "--name=e2e",
                &format!("--data-dir={}", root.join("etcd").display()),
                &format!("--listen-client-urls={etcd_url}"),
                &format!("--advertise-client-urls={etcd_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=e2e={peer_url}"),
                "--initial-cluster-state=new",
            ]),
        ));
        plane.await_ready("etcd", || http_ok(etcd_port, "/health"));
        plane.processes.push(Process::spawn(
            "kube-apiserver",
            &root,
            &apiserver,
            &args(&[
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                &format!("--secure-port={api_port}"),
                &format!("--etcd-servers={etcd_url}"),
                &format!("--client-ca-file={}", pki("ca.crt")),
                &format!("--tls-cert-file={}", pki("apiserver.crt")),
                &format!("--tls-private-key-file={}", pki("apiserver.key")),
                "--service-account-issuer=https://kubernetes.default.svc",
                &format!("--service-account-key-file={}", pki("sa.pub")),
                &format!("--service-account-signing-key-file={}", pki("sa.key")),
                "--authorization-mode=Node,RBAC",
                "--endpoint-reconciler-type=none",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--v=1",
            ]),
        ));
        let admin = plane.kubeconfig.clone();
        plane.await_ready("kube-apiserver", || {
            let out = kubectl_at(&admin, &["get", "--raw", "/readyz"], None);
            (out.status.success() && out.stdout == b"ok").then_some(())
        });
        plane.processes.push(Process::spawn(
            "kube-controller-manager",
            &root,
            &controller_manager,
            &args(&[
                &format!("--kubeconfig={}", kcm_kubeconfig.display()),
                &format!("--authentication-kubeconfig={}", kcm_kubeconfig.display()),
                &format!("--authorization-kubeconfig={}", kcm_kubeconfig.display()),
                &format!("--client-ca-file={}", pki("ca.crt")),
                "--bind-address=127.0.0.1",
                &format!("--secure-port={kcm_port}"),
                "--controllers=namespace,garbagecollector,serviceaccount,serviceaccount-token,\
                 clusterrole-aggregation,root-ca-cert-publisher,persistentvolume-binder,\
                 pvc-protection,pv-protection",
                "--use-service-account-credentials=true",
                &format!("--service-account-private-key-file={}", pki("sa.key")),
                &format!("--root-ca-file={}", pki("ca.crt")),
                "--leader-elect=false",
                "--v=1",
            ]),
        ));
        plane.await_ready("kube-controller-manager", || {
            kubectl_at(
                &admin,
                &["-n", "default", "get", "serviceaccount", "default"],
                None,
            )
            .status
            .success()
            .then_some(())
        });
        plane.read_version();
        plane
    }

    /// A control plane started by someone else (`../shared/kube`'s start.sh, for the node):
    /// kubectl with its admin `kubeconfig`; no process of its own to stop. `dir` is removed
    /// when it is dropped.
    pub fn attach(dir: tempfile::TempDir, kubeconfig: PathBuf, server: String) -> ControlPlane {
        let config = std::fs::read_to_string(&kubeconfig).unwrap_or_default();
        let ca_pem = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
            .and_then(|data| {
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .ok()
            })
            .map(|pem| String::from_utf8_lossy(&pem).into_owned())
            .unwrap_or_default();
        ControlPlane {
            processes: Vec::new(),
            server,
            version: String::new(),
            ca_pem,
            kubeconfig,
            dir,
        }
    }

    /// `kubectl version`'s server version, into [`Self::version`].
    pub fn read_version(&mut self) {
        let version: Value = serde_json::from_slice(&self.ok(&["version", "-o", "json"])).unwrap();
        self.version = version["serverVersion"]["gitVersion"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
    }

    /// Wait (at most 120 s) for `ready`, failing at once with the process's log when the
    /// newest process died.
    fn await_ready(&mut self, what: &str, mut ready: impl FnMut() -> Option<()>) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if ready().is_some() {
                return;
            }
            let process = self.processes.last_mut().unwrap();
            if !process.alive() {
                panic!("{what} exited before it was ready:\n{}", process.tail());
            }
            if Instant::now() > deadline {
                panic!("{what} not ready after 120 s:\n{}", process.tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Real kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(args, None)
    }

    pub fn kubectl_with(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_at(&self.kubeconfig, args, stdin)
    }
}

/// Real kubectl with this kubeconfig, `stdin` fed to it.
pub fn kubectl_at(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=20s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on the PATH (tests/run.sh installs it)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

impl ControlPlane {
    /// kubectl that must succeed: its standard output.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            text(&out.stderr)
        );
        out.stdout
    }

    /// `kubectl apply -f -` of these objects, which must succeed.
    pub fn apply(&self, objects: &[Value]) {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        let out = self.kubectl_with(&["apply", "-f", "-"], Some(&list.to_string()));
        assert!(out.status.success(), "kubectl apply: {}", text(&out.stderr));
    }

    pub fn get(&self, args: &[&str]) -> Option<Value> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend(["-o", "json"]);
        let out = self.kubectl(&full);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A plain-HTTP GET on loopback answered 200.
pub fn http_ok(port: u16, path: &str) -> Option<()> {
    use std::io::Read;
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).ok()?;
    answer.starts_with("HTTP/1.0 200").then_some(())
}
