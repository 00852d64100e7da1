//! The audit of a whole cluster against a replayed kube-apiserver on loopback: 200
//! namespaces, 60 namespaced resource types (the recorded discovery documents plus a CRD
//! group), 20,000 labelled objects, 200 claims and volumes. Measured twice:
//! - in process: `LiveCluster::inventory` + `audit::audit`, time per audit (p50, max);
//! - as users run it: `nsguard audit --kubeconfig ... -o json`, wall time and the peak
//!   resident memory of the process (getrusage of the waited child).
//!
//! Run with `cargo bench --bench audit`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nsguard::cluster::{LiveCluster, LiveOptions};
use nsguard::labels::LabelScheme;
use serde_json::json;

#[allow(dead_code)]
#[path = "../tests/common/replay.rs"]
mod replay;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

const NAMESPACES: usize = 200;
/// 20,000, or `NSGUARD_AUDIT_BENCH_OBJECTS` (a multiple of 200) to see how memory grows.
fn objects() -> usize {
    std::env::var("NSGUARD_AUDIT_BENCH_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}
/// CRD kinds next to the recorded built-in types: 60 listable types in all.
const CRDS: usize = 32;
const RUNS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let replay = runtime.block_on(replay::Replay::start_with_crds(CRDS));
    populate(&replay);
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
            .block_on(cluster.inventory(Duration::from_secs(120), Default::default()))
            .unwrap();
        let report = nsguard::audit::audit(&inventory, &LabelScheme::default(), &[]);
        times.push(started.elapsed());
        assert!(report.unverified.is_empty(), "{:?}", report.unverified);
        assert_eq!(report.objects, objects());
        last = Some((report, replay.request_count() - before));
    }
    times.sort();
    let (report, calls) = last.unwrap();
    eprintln!(
        "audit in process: {} namespaces, {types} resource types, {} objects, {} findings {:?}, {calls} API calls; p50 {:?}, max {:?} over {RUNS} runs",
        report.namespaces,
        report.objects,
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
    for _ in 0..RUNS {
        let started = Instant::now();
        // The replay answers on the runtime's worker threads meanwhile.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nsguard"))
            .args(["audit", "-o", "json", "--kubeconfig"])
            .arg(&kubeconfig)
            .output()
            .unwrap();
        walls.push(started.elapsed());
        // 1: findings (0 when there are too few objects per namespace to share one).
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed["objects"], objects());
    }
    walls.sort();
    eprintln!(
        "nsguard audit (process): p50 {:?}, max {:?} over {RUNS} runs; peak RSS {} MiB",
        walls[RUNS / 2],
        walls[RUNS - 1],
        peak_child_rss_kib() / 1024
    );
}

/// The largest peak resident set of the children waited for so far, in KiB.
fn peak_child_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0);
    usage.ru_maxrss
}

/// 20,000 objects in 200 namespaces, over five built-in types and every CRD kind: each
/// namespace has its stack; every tenth is shared with a sub-env (misplaced), and holds a
/// claim on a Delete volume; the other claims are on Retain volumes.
fn populate(replay: &replay::Replay) {
    let plurals = replay::bench_plurals(CRDS);
    let per_namespace = objects() / NAMESPACES;
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
                "metadata": {"name": "data", "namespace": namespace}, "spec": {"volumeName": volume}}),
        );
        replay.add_typed(
            "persistentvolumes",
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
                "spec": {"persistentVolumeReclaimPolicy": if shared { "Delete" } else { "Retain" }}}),
        );
    }
}
