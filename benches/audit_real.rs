//! The audit of a cluster that has not moved its sub-envs yet, on a real kube-apiserver
//! (the control plane of tests/common/control_plane.rs, 1.36 from ../shared/kube): shared
//! namespaces, each with a parent stack and a sub-env of 45 objects each (35 ConfigMaps,
//! 10 ServiceAccounts), so that half the labelled objects are outside their sub-env's
//! namespace, plus a few namespaces of one stack. Measured at 22,000 and then 202,000
//! labelled objects (`NSGUARD_AUDIT_REAL_SIZES`, comma-separated counts of shared
//! namespaces, default `222,2220`):
//! - `nsguard audit` (text) and `nsguard audit -o json`, as users run them: wall time, the
//!   peak resident memory of the process (VmHWM, read from /proc while it runs) and the
//!   size of what it printed; the text names each sub-env once.
//!
//! `NSGUARD_AUDIT_REAL_BASELINE=PATH` measures another nsguard binary (an older build) the
//! same way against the same API server, for a before and after in one run; its output is
//! only counted, not checked.
//!
//! `NSGUARD_KUBE_ASSETS=DIR cargo bench --bench audit_real` (`tests/run.sh --tools-only`
//! unpacks the binaries into target/kube-assets); filling the API server takes a few
//! minutes at the larger size. Without the assets, nothing is measured and it says so.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};

#[allow(dead_code)]
#[path = "../tests/common/control_plane.rs"]
mod control_plane;

/// Objects of each stack in each shared namespace.
const PER_STACK: usize = 45;
/// Namespaces of one stack only, beside the shared ones.
const SINGLE: usize = 4;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(assets) = control_plane::assets() else {
        println!("audit_real: NSGUARD_KUBE_ASSETS is not set; nothing measured");
        return;
    };
    let sizes: Vec<usize> = std::env::var("NSGUARD_AUDIT_REAL_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![222, 2220]);
    let plane = control_plane::ControlPlane::start(&assets);
    println!(
        "audit_real: Kubernetes {} at {}",
        plane.version, plane.server
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        kube::Client::try_from(control_plane::kube_config(&plane.kubeconfig).await).unwrap()
    });
    let mut made = 0;
    let mut rows = Vec::new();
    for shared in sizes {
        let started = Instant::now();
        runtime.block_on(fill(&client, made, shared));
        let objects = shared * 2 * PER_STACK + SINGLE * PER_STACK;
        println!(
            "audit_real: {shared} shared namespaces, {objects} labelled objects ({} outside their sub-env's namespace), filled in {:.0} s",
            shared * PER_STACK,
            started.elapsed().as_secs_f64()
        );
        made = shared;
        let outside = shared * PER_STACK;
        for (binary, checked) in binaries() {
            for (name, args) in [("text", &[][..]), ("json", &["-o", "json"][..])] {
                let run = run_audit(&plane, &binary, args, checked.then_some((objects, outside)));
                rows.push((objects, binary.clone(), name, run));
            }
        }
    }
    println!(
        "\n| labelled objects | binary | output | wall time | peak RSS | printed |\n|---|---|---|---|---|---|"
    );
    for (objects, binary, name, run) in &rows {
        println!(
            "| {objects} | {binary} | {name} | {:.1} s | {:.1} MiB | {:.2} MiB |",
            run.wall.as_secs_f64(),
            run.peak_kib as f64 / 1024.0,
            run.printed as f64 / (1024.0 * 1024.0)
        );
    }
}

/// Shared namespaces `from..to` (each `big0000`: the parent `big0000/production` and the
/// sub-env `big0000-tenant/tenant`), and the single-stack namespaces the first time.
async fn fill(client: &kube::Client, from: usize, to: usize) {
    let mut work: Vec<(String, String, String, Option<String>)> = Vec::new();
    let mut namespaces: Vec<String> = (from..to).map(|n| format!("big{n:04}")).collect();
    if from == 0 {
        namespaces.extend((0..SINGLE).map(|n| format!("solo{n}")));
    }
    let all: Api<Namespace> = Api::all(client.clone());
    stream::iter(namespaces.iter())
        .for_each_concurrent(16, |name| {
            let all = all.clone();
            async move {
                let ns = Namespace {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                all.create(&PostParams::default(), &ns).await.unwrap();
            }
        })
        .await;
    for namespace in &namespaces {
        let mut stacks = vec![(namespace.clone(), "production".to_owned(), None)];
        if namespace.starts_with("big") {
            stacks.push((
                format!("{namespace}-tenant"),
                "tenant".to_owned(),
                Some("production".to_owned()),
            ));
        }
        for (app, env, parent) in stacks {
            for i in 0..PER_STACK {
                work.push((
                    namespace.clone(),
                    format!("{app}-{i:02}"),
                    format!("{app}\0{env}"),
                    parent.clone(),
                ));
            }
        }
    }
    let started = Instant::now();
    let total = work.len();
    stream::iter(work.into_iter().enumerate())
        .for_each_concurrent(64, |(i, (namespace, name, stack, parent))| {
            let client = client.clone();
            async move {
                let (app, env) = stack.split_once('\0').unwrap();
                let mut labels = std::collections::BTreeMap::from([
                    ("simple-container-com/app-name".to_owned(), app.to_owned()),
                    ("simple-container-com/env".to_owned(), env.to_owned()),
                ]);
                if let Some(parent) = parent {
                    labels.insert("simple-container-com/parent-env".to_owned(), parent);
                }
                let metadata = ObjectMeta {
                    name: Some(name),
                    namespace: Some(namespace.clone()),
                    labels: Some(labels),
                    ..Default::default()
                };
                let params = PostParams::default();
                if i % PER_STACK < 35 {
                    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
                    let object = ConfigMap {
                        metadata,
                        data: Some([("k".to_owned(), "v".to_owned())].into()),
                        ..Default::default()
                    };
                    create(|| api.create(&params, &object)).await;
                } else {
                    let api: Api<ServiceAccount> = Api::namespaced(client, &namespace);
                    let object = ServiceAccount {
                        metadata,
                        ..Default::default()
                    };
                    create(|| api.create(&params, &object)).await;
                }
                if (i + 1) % 20_000 == 0 {
                    eprintln!(
                        "audit_real: {} of {total} objects made ({:.0}/s)",
                        i + 1,
                        (i + 1) as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        })
        .await;
}

/// One create, again while the API server throttles or times out.
async fn create<T, F, Fut>(mut call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    for attempt in 0.. {
        match call().await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => return,
            Err(err) if attempt < 20 => {
                eprintln!("audit_real: create failed ({err}); again");
                tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
            }
            Err(err) => panic!("create: {err}"),
        }
    }
}

/// The binaries to measure: this build's (its output checked), and the baseline's.
fn binaries() -> Vec<(String, bool)> {
    let mut binaries = vec![(env!("CARGO_BIN_EXE_nsguard").to_owned(), true)];
    if let Some(baseline) = std::env::var_os("NSGUARD_AUDIT_REAL_BASELINE") {
        binaries.push((baseline.to_string_lossy().into_owned(), false));
    }
    binaries
}

struct Run {
    wall: Duration,
    peak_kib: u64,
    printed: u64,
}

/// `BINARY audit ARGS` against the control plane as its admin: wall time, peak RSS and the
/// bytes printed; with `expect` (objects, of them misplaced), the report must count them.
fn run_audit(
    plane: &control_plane::ControlPlane,
    binary: &str,
    args: &[&str],
    expect: Option<(usize, usize)>,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("audit.out");
    let started = Instant::now();
    let child = Command::new(binary)
        .args(["audit", "--timeout", "20m", "--kubeconfig"])
        .arg(&plane.kubeconfig)
        .args(args)
        .stdout(std::fs::File::create(&output).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (code, peak_kib) = wait_with_peak_rss(child);
    let wall = started.elapsed();
    assert_eq!(code, 1, "findings: exit 1");
    let printed = std::fs::metadata(&output).unwrap().len();
    let Some((objects, outside)) = expect else {
        return Run {
            wall,
            peak_kib,
            printed,
        };
    };
    let text = std::fs::read_to_string(&output).unwrap();
    if args.is_empty() {
        assert!(
            text.contains(&format!(
                "({objects} labelled objects, {outside} of them outside"
            )),
            "{}",
            &text[text.len().saturating_sub(2000)..]
        );
        // Each sub-env named once.
        assert_eq!(
            text.matches("move it: nsguard migrate plan --stack big0000-tenant/tenant")
                .count(),
            1
        );
    } else {
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["objects"], objects);
        let listed: usize = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["type"] == "Misplaced")
            .map(|f| f["objects"].as_array().unwrap().len())
            .sum();
        assert_eq!(listed, outside, "every misplaced object listed");
    }
    Run {
        wall,
        peak_kib,
        printed,
    }
}

/// Wait for `child`; its exit code and its peak resident set (VmHWM, KiB), read from /proc
/// every 5 ms until it exits.
fn wait_with_peak_rss(mut child: std::process::Child) -> (i32, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        }) {
            peak = u64::max(peak, kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
