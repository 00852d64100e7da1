//! A real node for the real-cluster suite, so nsguard runs as it ships: an image on a
//! kubelet, called by the API server through its Service. `../shared/kube` lays out the
//! instance (`setup.sh`: etcd, kube-apiserver, kube-controller-manager) and joins the node
//! (`node.sh`: containerd, kubelet, kube-scheduler, kube-proxy, the CNI bridge); this file
//! starts both on free ports in a temporary directory and stops them on every exit path.
//!
//! node.sh's processes run in sessions of their own (so a pod outlives no test only by
//! luck): a reaper, started in its own session with a pipe from the suite as its standard
//! input, runs `node.sh stop` and `stop.sh` when that pipe closes, which it does when the
//! [`Node`] is dropped and when the suite dies however it dies. One node per machine: its
//! iptables chains and bridge are machine-wide.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use super::control_plane::{ControlPlane, free_port, text};

/// `NSGUARD_KUBE_NODE`: the folder with `setup.sh`, `node.sh` and `mkimage.py`
/// (`../shared/kube`; tests/run.sh sets it), and what a node needs here, or why it
/// cannot run.
pub fn available() -> Result<PathBuf, String> {
    let dir = std::env::var_os("NSGUARD_KUBE_NODE")
        .map(PathBuf::from)
        .ok_or("NSGUARD_KUBE_NODE is not set (../shared/kube: tests/run.sh sets it)")?;
    for script in ["setup.sh", "node.sh", "mkimage.py"] {
        if !dir.join(script).is_file() {
            return Err(format!("{} has no {script}", dir.display()));
        }
    }
    if unsafe { libc::geteuid() } != 0 {
        return Err("a node needs root (containerd, iptables, cgroups)".into());
    }
    for tool in ["containerd", "runc", "iptables", "conntrack", "gcc"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("{tool} is missing (tests/run.sh installs it)"));
        }
    }
    Ok(dir)
}

/// An instance of `../shared/kube` with a node, started and owned by this process.
pub struct Node {
    /// kubectl as the cluster admin, as for the suite's own control plane (no process of
    /// its own: node.sh's and start.sh's are the reaper's to stop).
    pub plane: ControlPlane,
    /// The instance folder (inside `plane.dir`).
    pub dir: PathBuf,
    kube_node: PathBuf,
    /// Stops the node and the instance when its standard input closes.
    reaper: Option<Child>,
}

impl Node {
    /// `setup.sh`, `node.sh setup`, `start.sh`, `node.sh start`: a Ready node (~25 s).
    /// `assets`: the control-plane binaries (and the node's, when the folder has them).
    pub fn start(kube_node: &Path, assets: &Path) -> Node {
        let started = Instant::now();
        let tmp = tempfile::Builder::new()
            .prefix("nsguard-node-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().join("kube");
        let ports: Vec<String> = (0..4).map(|_| free_port().to_string()).collect();
        let mut envs: Vec<(&str, PathBuf)> = vec![("KUBE_BIN", assets.to_owned())];
        if assets.join("kubelet").is_file() {
            envs.push(("NODE_BIN", assets.to_owned()));
        }
        let run = |program: &Path, args: &[&str]| {
            let out = Command::new(program)
                .args(args)
                .envs(envs.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
            assert!(
                out.status.success(),
                "{} {args:?}: {}{}",
                program.display(),
                text(&out.stdout),
                text(&out.stderr)
            );
        };
        let dir_arg = dir.to_str().unwrap();
        run(
            &kube_node.join("setup.sh"),
            &[dir_arg, &ports[0], &ports[1], &ports[2], &ports[3]],
        );
        run(&kube_node.join("node.sh"), &["setup", dir_arg]);
        // From here on, whatever happens, the reaper stops what starts.
        let reaper = Command::new("bash")
            .args([
                "-c",
                r#"read -r _; "$0" stop "$1"; "$1/stop.sh""#,
                kube_node.join("node.sh").to_str().unwrap(),
                dir_arg,
            ])
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(tmp.path().join("reaper.log")).unwrap())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("bash");
        let mut node = Node {
            plane: ControlPlane::attach(
                tmp,
                dir.join("kubeconfig"),
                format!("https://127.0.0.1:{}", ports[0]),
            ),
            dir: dir.clone(),
            kube_node: kube_node.to_owned(),
            reaper: Some(reaper),
        };
        run(&dir.join("start.sh"), &[]);
        run(&kube_node.join("node.sh"), &["start", dir_arg]);
        node.plane.read_version();
        eprintln!(
            "real_cluster: node Ready with Kubernetes {} in {:.1} s",
            node.plane.version,
            started.elapsed().as_secs_f64()
        );
        node
    }

    /// `node.sh import`: an image archive into the node's containerd.
    pub fn import(&self, archive: &Path) {
        let out = self.node_sh(&["import", archive.to_str().unwrap()]);
        assert!(out.status.success(), "import: {}", text(&out.stderr));
    }

    fn node_sh(&self, args: &[&str]) -> Output {
        let (command, rest) = args.split_first().unwrap();
        Command::new(self.kube_node.join("node.sh"))
            .arg(command)
            .arg(&self.dir)
            .args(rest)
            .output()
            .unwrap()
    }

    /// The last lines of one of the instance's logs (`kubelet`, `kube-apiserver`, ...).
    pub fn log_tail(&self, name: &str) -> String {
        let log = std::fs::read_to_string(self.dir.join("logs").join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut reaper) = self.reaper.take() {
            // Closing its standard input is the signal; it stops the pods first.
            drop(reaper.stdin.take());
            let _ = reaper.wait();
        }
    }
}

/// An OCI image archive of `binary` as the Dockerfile's runtime stage holds it: the binary
/// at /usr/local/bin/nsguard, the shared libraries `ldd` names (what
/// gcr.io/distroless/cc-debian12 provides it: glibc and libgcc), user 65532, its ports.
/// `name` is the image reference the manifests render.
pub fn image(kube_node: &Path, binary: &Path, name: &str, archive: &Path) {
    let ldd = Command::new("ldd").arg(binary).output().expect("ldd");
    assert!(ldd.status.success(), "ldd: {}", text(&ldd.stderr));
    let mut files = vec![format!("{}=/usr/local/bin/nsguard:0755", binary.display())];
    for line in text(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|s| s.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            files.push(format!("{path}={path}"));
        }
    }
    files.push("/tmp=/tmp/:1777".to_owned());
    let out = Command::new("python3")
        .arg(kube_node.join("mkimage.py"))
        .arg(archive)
        .arg(name)
        .args(&files)
        .args([
            "--entrypoint",
            "/usr/local/bin/nsguard",
            "--user",
            "65532:65532",
            "--expose",
            "8443/tcp",
            "--expose",
            "9090/tcp",
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "mkimage.py: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `tests/image.sh`: the binary the Docker build context compiles to, built as its build
/// stage builds it (incremental after the first time).
pub fn image_binary(repo: &Path) -> PathBuf {
    let out_dir = repo.join("target/image");
    let mut child = Command::new(repo.join("tests/image.sh"))
        .arg(&out_dir)
        .stdin(Stdio::null())
        .spawn()
        .expect("tests/image.sh");
    let status = child.wait().unwrap();
    assert!(status.success(), "tests/image.sh failed (above)");
    let _ = std::io::stderr().flush();
    out_dir.join("nsguard")
}
