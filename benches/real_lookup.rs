//! The guard's lookup against a real kube-apiserver (the control plane of
//! tests/common/control_plane.rs, 1.36 from ../shared/kube): API calls and latency of one
//! namespace-delete decision with aggregated discovery and with the per-group-version
//! documents, on the bare server (about 30 namespaced types) and with 200 CRDs in 20 groups
//! (about 230), 30 decisions each, one after another on a quiet server.
//!
//! `NSGUARD_KUBE_ASSETS=DIR cargo bench --bench real_lookup` (`tests/run.sh --tools-only`
//! unpacks the binaries into target/kube-assets). Without it, nothing is measured and it
//! says so. `NSGUARD_REAL_LOOKUP_DECISIONS` changes the 30.

use std::time::{Duration, Instant};

use nsguard::cluster::{LiveCluster, LiveOptions};
use nsguard::labels::LabelScheme;
use serde_json::{Value, json};

#[allow(dead_code)]
#[path = "../tests/common/control_plane.rs"]
mod control_plane;

const NAMESPACE: &str = "bench-shared";
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
        let kubeconfig = kube::config::Kubeconfig::read_from(&plane.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(nsguard::cluster::live::client_config(config)).unwrap()
    });
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
        for ((aggregated, _), mut runs) in clusters.iter().zip(runs) {
            runs.sort();
            let mut calls: Vec<usize> = runs.iter().map(|r| r.1).collect();
            calls.sort();
            let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
            let at =
                |q: f64| runs[((runs.len() as f64 * q).ceil() as usize).clamp(1, runs.len()) - 1].0;
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                runs[0].2,
                if *aggregated {
                    "aggregated"
                } else {
                    "per group version"
                },
                calls[calls.len() / 2],
                ms(at(0.5)),
                ms(at(0.9)),
                ms(runs[runs.len() - 1].0),
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
