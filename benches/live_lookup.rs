//! The guard's live lookup against a replayed kube-apiserver on loopback: 60 namespaced
//! resource types (the recorded discovery documents plus a CRD group) and 3,000 owned
//! objects in the namespace, listed in pages of 500 with one label selector per label
//! generation. Run with `cargo bench --bench live_lookup`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nsguard::cluster::{LiveCluster, LiveOptions};
use nsguard::labels::LabelScheme;

#[allow(dead_code)]
#[path = "../tests/common/replay.rs"]
mod replay;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

const CRDS: usize = 32;
const OBJECTS: usize = 3_000;

fn lookup(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let replay = runtime.block_on(replay::Replay::start_with_crds(CRDS));
    let owners = [
        [
            ("simple-container-com/app-name", "wallet"),
            ("simple-container-com/env", "production"),
        ],
        [
            ("simple-container-com/app-name", "wallet-tenant-a"),
            ("simple-container-com/env", "tenant-a"),
        ],
        [("appName", "wallet-tenant-b"), ("appEnv", "tenant-b")],
    ];
    let plurals: Vec<String> = [
        "configmaps",
        "services",
        "deployments",
        "serviceaccounts",
        "cronjobs",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain((0..CRDS).map(|i| format!("widget{i}s")))
    .collect();
    for i in 0..OBJECTS {
        replay.add(
            "wallet",
            &plurals[i % plurals.len()],
            &format!("obj-{i}"),
            &owners[i % owners.len()],
        );
    }
    let cluster = |ttl| {
        // The client's buffer task needs a runtime to spawn on.
        let _guard = runtime.enter();
        let client =
            kube::Client::try_from(kube::Config::new(replay.url().parse().unwrap())).unwrap();
        LiveCluster::new(
            client,
            LabelScheme::default(),
            LiveOptions {
                discovery_ttl: ttl,
                ..LiveOptions::default()
            },
        )
    };

    let warm = cluster(Duration::from_secs(3600));
    let scan = runtime
        .block_on(warm.scan("wallet", Duration::from_secs(30)))
        .unwrap();
    assert_eq!(scan.objects.len(), OBJECTS);
    assert!(scan.unverified.is_empty());
    eprintln!(
        "resource types scanned: {}, objects: {}",
        scan.resource_types,
        scan.objects.len()
    );

    let mut group = c.benchmark_group("live_lookup");
    group.sample_size(20);
    group.bench_function("scan_60_types_3000_objects_discovery_cached", |b| {
        b.to_async(&runtime)
            .iter(|| async { warm.scan("wallet", Duration::from_secs(30)).await.unwrap() })
    });
    let cold = cluster(Duration::ZERO);
    group.bench_function("scan_60_types_3000_objects_with_discovery", |b| {
        b.to_async(&runtime)
            .iter(|| async { cold.scan("wallet", Duration::from_secs(30)).await.unwrap() })
    });
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
