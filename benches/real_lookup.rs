//! The guard's lookup against a real kube-apiserver (the control plane of
//! tests/common/control_plane.rs, 1.36 from ../shared/kube): API calls and latency of one
//! namespace-delete decision with aggregated discovery and with the per-group-version
//! documents, on the bare server (about 30 namespaced types) and with 200 CRDs in 20 groups
//! (about 230), 30 decisions each, one after another on a quiet server.
//!
//! Then the volume guard's decision on a sub-env claim (create and delete), with no other
//! PersistentVolume and with 500.
//!
//! `NSGUARD_KUBE_ASSETS=DIR cargo bench --bench real_lookup` (`tests/run.sh --tools-only`
//! unpacks the binaries into target/kube-assets). Without it, nothing is measured and it
//! says so. `NSGUARD_REAL_LOOKUP_DECISIONS` changes the 30.

use std::time::{Duration, Instant};

use nsguard::cluster::{LiveCluster, LiveOptions};
use nsguard::simple_container::labels::LabelScheme;
use serde_json::{Value, json};

#[allow(dead_code)]
#[path = "../tests/common/control_plane.rs"]
mod control_plane;

const NAMESPACE: &str = "bench-shared";
/// Where the volume guard's sub-env claim is, apart from the guard's namespace.
const PARENT: &str = "bench-shop";
const GROUPS: usize = 20;
const KINDS_PER_GROUP: usize = 10;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(assets) = control_plane::assets() else {
        println!("real_lookup: NSGUARD_KUBE_ASSETS is not set; nothing measured");
        return;
    };
    let decisions: usize = std::env::var("NSGUARD_REAL_LOOKUP_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let plane = control_plane::ControlPlane::start(&assets);
    println!(
        "real_lookup: Kubernetes {} at {}",
        plane.version, plane.server
    );
    let mut objects = vec![json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE}})];
    for (app, count) in [("shop", 12), ("billing", 8)] {
        for i in 0..count {
            objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{app}-{i}"), "namespace": NAMESPACE,
                    "labels": {"simple-container-com/app-name": app,
                        "simple-container-com/env": "production"}}}));
        }
    }
    plane.apply(&objects);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let config = control_plane::kube_config(&plane.kubeconfig).await;
        kube::Client::try_from(nsguard::cluster::live::client_config(config)).unwrap()
    });
    volume_guard(&plane, &runtime, &client, decisions);
    println!(
        "| types | discovery | API calls per decision | p50 | p90 | worst of {decisions} |\n|---|---|---|---|---|---|"
    );
    for crds in [false, true] {
        if crds {
            install_crds(&plane);
        }
        // Both ways in turn, decision by decision, so that whatever else the server is
        // doing (the OpenAPI aggregation after 200 new CRDs) weighs on both alike.
        let clusters: Vec<(bool, LiveCluster)> = [true, false]
            .into_iter()
            .map(|aggregated| {
                let _guard = runtime.enter();
                let cluster = LiveCluster::new(
                    client.clone(),
                    plane.server.clone(),
                    LabelScheme::default(),
                    LiveOptions {
                        aggregated_discovery: aggregated,
                        ..LiveOptions::default()
                    },
                );
                (aggregated, cluster)
            })
            .collect();
        let scan = |cluster: &LiveCluster| {
            let started = Instant::now();
            let scan = runtime
                .block_on(cluster.scan(NAMESPACE, Duration::from_secs(10)))
                .unwrap();
            assert!(scan.unverified.is_empty(), "{:?}", scan.unverified);
            assert_eq!(scan.objects.len(), 20);
            (started.elapsed(), scan.api_calls, scan.resource_types)
        };
        let mut runs: Vec<Vec<(Duration, usize, usize)>> = vec![Vec::new(); clusters.len()];
        for (_, cluster) in &clusters {
            scan(cluster); // warm: connections, the client's buffers
        }
        for _ in 0..decisions {
            for (i, (_, cluster)) in clusters.iter().enumerate() {
                runs[i].push(scan(cluster));
            }
        }
        for ((aggregated, _), runs) in clusters.iter().zip(runs) {
            let mut calls: Vec<usize> = runs.iter().map(|r| r.1).collect();
            calls.sort();
            let [p50, p90, worst] = quantiles(runs.iter().map(|r| r.0).collect());
            println!(
                "| {} | {} | {} | {p50} | {p90} | {worst} |",
                runs[0].2,
                if *aggregated {
                    "aggregated"
                } else {
                    "per group version"
                },
                calls[calls.len() / 2],
            );
        }
    }
}

/// p50, p90 and the worst of `runs`, in milliseconds.
fn quantiles(mut runs: Vec<Duration>) -> [String; 3] {
    runs.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let at = |q: f64| runs[((runs.len() as f64 * q).ceil() as usize).clamp(1, runs.len()) - 1];
    [ms(at(0.5)), ms(at(0.9)), ms(runs[runs.len() - 1])]
}

/// The volume guard's decision on a sub-env's claim `data` in its parent's namespace (its
/// own namespace exists): a create in its own namespace (refused: the old claim holds the
/// data) and a delete of the old claim, `decisions` of each, in turn, with 0 and 500 other
/// PersistentVolumes.
fn volume_guard(
    plane: &control_plane::ControlPlane,
    runtime: &tokio::runtime::Runtime,
    client: &kube::Client,
    decisions: usize,
) {
    use nsguard::admission::{VolumeGuard, pipeline};
    use nsguard::cluster::ClusterSource;
    use nsguard::decisions::namespace_guard::GuardConfig;
    use nsguard::decisions::volume_guard::{ClaimOperation, ClaimRequest};
    use std::collections::BTreeMap;
    let labels: BTreeMap<String, String> = [
        ("simple-container-com/app-name", "shop-tenant-a"),
        ("simple-container-com/env", "tenant-a"),
        ("simple-container-com/parent-env", "production"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    plane.apply(&[
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop-tenant-a"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PARENT}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "bench-data"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "bench",
                "hostPath": {"path": "/tmp/nsguard-bench-data"}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": PARENT, "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "bench",
                "volumeName": "bench-data", "resources": {"requests": {"storage": "1Gi"}}}}),
    ]);
    control_plane::eventually("the claim Bound", Duration::from_secs(60), || {
        let claim = plane.get(&["pvc", "-n", PARENT, "data"])?;
        (claim["status"]["phase"] == "Bound").then_some(())
    });
    let source = {
        let _guard = runtime.enter();
        ClusterSource::Live(LiveCluster::new(
            client.clone(),
            plane.server.clone(),
            LabelScheme::default(),
            LiveOptions::default(),
        ))
    };
    let scheme = LabelScheme::default();
    let config = GuardConfig::default();
    let request = |operation, namespace| ClaimRequest {
        operation,
        namespace,
        name: "data",
        labels: Some(&labels),
        annotations: None,
        ephemeral_pod: None,
        username: "bench",
        groups: &[],
    };
    println!(
        "| volume guard | other volumes | API calls per decision | p50 | p90 | worst of {decisions} |\n|---|---|---|---|---|---|"
    );
    for volumes in [0, 500] {
        if volumes > 0 {
            let more: Vec<Value> = (0..volumes)
                .map(|i| {
                    json!({"apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": format!("bench-other-{i}")},
                    "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "other",
                        "hostPath": {"path": format!("/tmp/nsguard-bench-{i}")}}})
                })
                .collect();
            plane.apply(&more);
        }
        let cases = [
            (ClaimOperation::Create, "shop-tenant-a", "strands-data"),
            (ClaimOperation::Delete, PARENT, "destroys-data"),
        ];
        let mut runs = vec![(Vec::new(), 0); cases.len()];
        for round in 0..=decisions {
            for (i, (operation, namespace, reason)) in cases.iter().enumerate() {
                let started = Instant::now();
                let guard = VolumeGuard {
                    scheme: &scheme,
                    config: &config,
                };
                let (decision, lookup) = runtime.block_on(pipeline::decide(
                    &guard,
                    &source,
                    &request(*operation, namespace),
                    Duration::from_secs(5),
                ));
                let took = started.elapsed();
                assert_eq!(decision.verdict.reason(), *reason, "{}", decision.message());
                if round > 0 {
                    // Round 0 warms the connections.
                    runs[i].0.push(took);
                    let lookup = lookup.unwrap();
                    assert!(lookup.read.is_ok());
                    runs[i].1 = lookup.api_calls;
                }
            }
        }
        for ((operation, ..), (runs, calls)) in cases.iter().zip(runs) {
            let [p50, p90, worst] = quantiles(runs);
            println!(
                "| {} | {volumes} | {calls} | {p50} | {p90} | {worst} |",
                operation.as_str()
            );
        }
    }
}

/// 200 namespaced CRDs in 20 groups, waited for until established.
fn install_crds(plane: &control_plane::ControlPlane) {
    let mut crds: Vec<Value> = Vec::new();
    for g in 0..GROUPS {
        for k in 0..KINDS_PER_GROUP {
            let group = format!("g{g}.bench.nsguard.dev");
            let plural = format!("widget{k}s");
            crds.push(json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.{group}"), "labels": {"nsguard.dev/bench": "true"}},
                "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": plural, "singular": format!("widget{k}"), "kind": format!("Widget{k}")},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
            }));
        }
    }
    plane.apply(&crds);
    plane.ok(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "nsguard.dev/bench=true",
        "--timeout=300s",
    ]);
    // Established is not yet in discovery everywhere: wait until kubectl sees them all.
    control_plane::eventually("200 CRDs in discovery", Duration::from_secs(120), || {
        let listed = plane.kubectl(&["api-resources", "-o", "name"]);
        let names = control_plane::text(&listed.stdout);
        (listed.status.success()
            && names
                .lines()
                .filter(|l| l.contains(".bench.nsguard.dev"))
                .count()
                == GROUPS * KINDS_PER_GROUP)
            .then_some(())
    });
}
