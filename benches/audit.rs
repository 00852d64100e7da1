//! The audit of a whole cluster against a replayed kube-apiserver on loopback: 500
//! namespaces, 60 namespaced resource types (the recorded discovery documents plus a CRD
//! group), 20,000 and then 200,000 labelled objects, 500 claims and volumes. Measured at
//! each size:
//! - in process: `LiveCluster::inventory` + `audit::audit`, time per audit (p50, max);
//! - as users run it: `nsguard audit --kubeconfig ... -o json`, wall time and the peak
//!   resident memory of the process (its own rusage, from wait4);
//! - the background audit: the peak resident memory of `nsguard serve --audit-interval`
//!   once its first audit is done, against the same server without the audit.
//!
//! Run with `cargo bench --bench audit` (a few minutes); `NSGUARD_AUDIT_BENCH_SIZES`
//! (comma-separated multiples of 500) measures other sizes, and
//! `NSGUARD_AUDIT_BENCH_SHAPE=unmoved` the shape of a cluster that has not moved its
//! sub-envs (half the objects outside their namespace; sizes multiples of 90).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nsguard::cluster::{LiveCluster, LiveOptions};
use nsguard::simple_container::labels::LabelScheme;
use serde_json::json;

#[allow(dead_code)]
#[path = "../tests/common/replay.rs"]
mod replay;
#[allow(dead_code)]
#[path = "../tests/common/volume_api.rs"]
mod volume_api;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

const NAMESPACES: usize = 500;
/// 20,000 and 200,000 labelled objects, or `NSGUARD_AUDIT_BENCH_SIZES`.
fn sizes() -> Vec<usize> {
    std::env::var("NSGUARD_AUDIT_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![20_000, 200_000])
}
/// CRD kinds next to the recorded built-in types: 60 listable types in all.
const CRDS: usize = 32;
const RUNS: usize = 3;

fn main() {
    let mut figures = Vec::new();
    for objects in sizes() {
        figures.push((objects, measure(objects)));
    }
    eprintln!("\nsummary (peak RSS, MiB):");
    for (objects, (cli, serving, idle)) in &figures {
        eprintln!(
            "  {objects} objects: nsguard audit -o json {cli}; serve with the background audit {serving} (without {idle}: +{})",
            serving.saturating_sub(*idle)
        );
    }
    if let [(_, (small, ..)), .., (_, (large, ..))] = figures[..] {
        eprintln!(
            "  largest / smallest, nsguard audit: {:.2}x",
            large as f64 / small as f64
        );
    }
}

/// One size: returns the peak RSS (MiB) of `nsguard audit -o json`, of `nsguard serve`
/// after its first background audit, and of `nsguard serve` without one.
fn measure(objects: usize) -> (u64, u64, u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let replay = runtime.block_on(replay::Replay::start_with_crds(CRDS));
    populate(&replay, objects);
    let types = replay.listable_types();

    let cluster = {
        let _guard = runtime.enter();
        let config =
            nsguard::cluster::live::client_config(kube::Config::new(replay.url().parse().unwrap()));
        LiveCluster::new(
            kube::Client::try_from(config).unwrap(),
            replay.url(),
            LabelScheme::default(),
            LiveOptions::default(),
        )
    };
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let before = replay.request_count();
        let started = Instant::now();
        let inventory = runtime
            .block_on(cluster.inventory(Duration::from_secs(600), Default::default()))
            .unwrap();
        let report = nsguard::audit::audit(&inventory, &LabelScheme::default(), &[]);
        times.push(started.elapsed());
        assert!(report.unverified.is_empty(), "{:?}", report.unverified);
        assert_eq!(report.objects, objects);
        last = Some((report, replay.request_count() - before));
    }
    times.sort();
    let (report, calls) = last.unwrap();
    eprintln!(
        "{objects} objects: audit in process: {} namespaces, {types} resource types, {} findings {:?}, {calls} API calls; p50 {:?}, max {:?} over {RUNS} runs",
        report.namespaces,
        report.findings.len(),
        report.counts(),
        times[RUNS / 2],
        times[RUNS - 1],
    );

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: replay, cluster: {{server: '{}'}}}}]\n\
             users: [{{name: bench, user: {{token: t}}}}]\n\
             contexts: [{{name: replay, context: {{cluster: replay, user: bench}}}}]\ncurrent-context: replay\n",
            replay.url()
        ),
    )
    .unwrap();
    let mut walls = Vec::new();
    let mut peak = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let output = dir.path().join("audit.json");
        // The replay answers on the runtime's worker threads meanwhile.
        let child = Command::new(env!("CARGO_BIN_EXE_nsguard"))
            .args(["audit", "-o", "json", "--timeout", "10m", "--kubeconfig"])
            .arg(&kubeconfig)
            .stdout(std::fs::File::create(&output).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (code, rss) = wait_with_peak_rss(child);
        walls.push(started.elapsed());
        peak = peak.max(rss);
        // 1: findings (0 when there are too few objects per namespace to share one).
        assert!(matches!(code, 0 | 1), "exit {code}");
        let printed: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
        assert_eq!(printed["objects"], objects);
    }
    walls.sort();
    let cli = peak / 1024;
    eprintln!(
        "{objects} objects: nsguard audit -o json (process): p50 {:?}, max {:?} over {RUNS} runs; peak RSS {cli} MiB",
        walls[RUNS / 2],
        walls[RUNS - 1],
    );
    let idle = serve_peak_rss(dir.path(), &kubeconfig, false);
    let serving = serve_peak_rss(dir.path(), &kubeconfig, true);
    eprintln!(
        "{objects} objects: nsguard serve peak RSS {serving} MiB after its first background audit, {idle} MiB without the audit: the audit adds {} MiB",
        serving.saturating_sub(idle)
    );
    (cli, serving, idle)
}

/// Wait for `child`; its exit code and its own peak resident set (VmHWM), in KiB, read
/// from /proc every 2 ms until it exits. Not getrusage: a child's `ru_maxrss` also counts
/// the memory of the process it was forked from (this one, which holds the replay) before
/// its exec.
fn wait_with_peak_rss(mut child: std::process::Child) -> (i32, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .as_deref()
            .and_then(vm_hwm_kib)
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), peak);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `VmHWM` of a /proc/PID/status text, in KiB (absent once the process has exited).
fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Peak resident memory (MiB, VmHWM) of `nsguard serve` against the replay: after its
/// first background audit is done when `audit`, else once it is ready plus the time the
/// audit would have taken.
fn serve_peak_rss(dir: &Path, kubeconfig: &Path, audit: bool) -> u64 {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nsguard"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--cert-dir")
        .arg(dir.join("certs"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("NSGUARD_LEASE_NAMESPACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if audit {
        command.args(["--audit-interval", "1h", "--audit-timeout", "10m"]);
    }
    let mut child = command.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let wanted = if audit {
        "background audit done"
    } else {
        "webhook listening"
    };
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        assert!(!line.contains("ERROR"), "{line}");
        if line.contains(wanted) {
            break;
        }
        seen.push(line);
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "nsguard serve exited before {wanted:?}: {seen:#?}"
    );
    if !audit {
        // The guard's own startup reads (discovery, the access review) settle.
        std::thread::sleep(Duration::from_secs(3));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let peak_kib = vm_hwm_kib(&status).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    peak_kib / 1024
}

/// `objects` objects in 500 namespaces, over five built-in types and every CRD kind: each
/// namespace has its stack; every tenth is shared with a sub-env (misplaced), and holds a
/// claim on a Delete volume; the other claims are on Retain volumes.
fn populate(replay: &replay::Replay, objects: usize) {
    if std::env::var("NSGUARD_AUDIT_BENCH_SHAPE").is_ok_and(|s| s == "unmoved") {
        return populate_unmoved(replay, objects);
    }
    let plurals = replay::bench_plurals(CRDS);
    let per_namespace = objects / NAMESPACES;
    for n in 0..NAMESPACES {
        let namespace = format!("stack-{n}");
        let shared = n % 10 == 0;
        let sub_env = format!("stack-{n}-preview");
        for i in 0..per_namespace {
            let plural = &plurals[(n + i) % plurals.len()];
            let name = format!("obj-{i}");
            if shared && i % 2 == 1 {
                replay.add(
                    &namespace,
                    plural,
                    &name,
                    &[
                        ("simple-container-com/app-name", sub_env.as_str()),
                        ("simple-container-com/env", "preview"),
                        ("simple-container-com/parent-env", "production"),
                    ],
                );
            } else {
                replay.add(
                    &namespace,
                    plural,
                    &name,
                    &[
                        ("simple-container-com/app-name", namespace.as_str()),
                        ("simple-container-com/env", "production"),
                    ],
                );
            }
        }
        let volume = format!("pv-{n}");
        replay.add_typed(
            "persistentvolumeclaims",
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": namespace}, "spec": {"volumeName": volume},
                "status": {"phase": "Bound"}}),
        );
        replay.add_typed(
            "persistentvolumes",
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
                "spec": {"persistentVolumeReclaimPolicy": if shared { "Delete" } else { "Retain" }}}),
        );
    }
}

/// The shape of a cluster that has not moved its sub-envs yet (`NSGUARD_AUDIT_BENCH_SHAPE=
/// unmoved`): `objects / 90` namespaces, each with a parent stack and a sub-env of 45
/// objects each, so that half the objects are outside their sub-env's namespace (what
/// benches/audit_real.rs fills a real API server with).
fn populate_unmoved(replay: &replay::Replay, objects: usize) {
    for n in 0..objects / 90 {
        let namespace = format!("big{n:04}");
        let sub_env = format!("{namespace}-tenant");
        for (app, env, parent) in [
            (namespace.as_str(), "production", None),
            (sub_env.as_str(), "tenant", Some("production")),
        ] {
            for i in 0..45 {
                let mut labels = vec![
                    ("simple-container-com/app-name", app),
                    ("simple-container-com/env", env),
                ];
                if let Some(parent) = parent {
                    labels.push(("simple-container-com/parent-env", parent));
                }
                // As benches/audit_real.rs: 35 ConfigMaps and 10 ServiceAccounts a stack.
                let plural = if i < 35 {
                    "configmaps"
                } else {
                    "serviceaccounts"
                };
                replay.add(&namespace, plural, &format!("{app}-{i:02}"), &labels);
            }
        }
    }
}
