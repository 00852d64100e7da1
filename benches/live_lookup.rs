//! The guard's live lookup against a replayed kube-apiserver on loopback: 60 or 500
//! namespaced resource types (the recorded discovery documents plus a CRD group) and 3,000
//! owned objects in the namespace, listed in pages of 500; and a third shape, 60 types
//! with 20,000 unlabelled ConfigMaps beside the owned objects (what one unselected read per
//! type costs against a selected read per label generation). Run with
//! `cargo bench --bench live_lookup`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nsguard::cluster::{LiveCluster, LiveOptions};
use nsguard::simple_container::labels::LabelScheme;

#[allow(dead_code)]
#[path = "../tests/common/replay.rs"]
mod replay;
#[allow(dead_code)]
#[path = "../tests/common/volume_api.rs"]
mod volume_api;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The clusters measured: a bare 1.26 control plane plus a small CRD group (60 types), and
/// a CRD-heavy one (500 types), each with 3,000 owned objects in the namespace; and the
/// first with 20,000 unlabelled ConfigMaps in the namespace too: (name, CRD kinds,
/// unlabelled ConfigMaps).
const CLUSTERS: [(&str, usize, usize); 3] = [
    ("60_types", 32, 0),
    ("500_types", 472, 0),
    ("60_types_20000_unlabelled", 32, 20_000),
];
const OBJECTS: usize = 3_000;

fn lookup(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("live_lookup");
    group.sample_size(20);
    for (name, crds, unlabelled) in CLUSTERS {
        let replay = runtime.block_on(replay::Replay::start_with_crds(crds));
        populate(&replay, crds);
        for i in 0..unlabelled {
            replay.add(
                "wallet",
                "configmaps",
                &format!("unlabelled-{i}"),
                &[("app", "x")],
            );
        }
        let warm = {
            // The client's buffer task needs a runtime to spawn on.
            let _guard = runtime.enter();
            let config = nsguard::cluster::live::client_config(kube::Config::new(
                replay.url().parse().unwrap(),
            ));
            let client = kube::Client::try_from(config).unwrap();
            LiveCluster::new(
                client,
                replay.url(),
                LabelScheme::default(),
                LiveOptions::default(),
            )
        };
        let scan = runtime
            .block_on(warm.scan("wallet", Duration::from_secs(30)))
            .unwrap();
        assert_eq!(scan.objects.len(), OBJECTS);
        assert!(scan.unverified.is_empty(), "{:?}", scan.unverified);
        // API calls of one decision, counted at the replayed API server.
        let (before, bytes_before) = (replay.request_count(), replay.bytes_served());
        runtime
            .block_on(warm.scan("wallet", Duration::from_secs(30)))
            .unwrap();
        let calls = replay.request_count() - before;
        let bytes = replay.bytes_served() - bytes_before;
        eprintln!(
            "{name}: resource types scanned: {}, objects: {}, API calls per decision: {calls}, bytes read: {bytes}",
            scan.resource_types,
            scan.objects.len()
        );
        // Decision time, p50 and p99 over 100 sequential lookups (criterion reports means).
        // Every lookup rediscovers the resource types.
        let mut times: Vec<Duration> = (0..100)
            .map(|_| {
                let started = std::time::Instant::now();
                runtime
                    .block_on(warm.scan("wallet", Duration::from_secs(30)))
                    .unwrap();
                started.elapsed()
            })
            .collect();
        times.sort();
        eprintln!("{name}: p50 {:?}, p99 {:?}", times[49], times[98]);
        group.bench_function(format!("scan_{name}_3000_objects"), |b| {
            b.to_async(&runtime)
                .iter(|| async { warm.scan("wallet", Duration::from_secs(30)).await.unwrap() })
        });
    }
    group.finish();
}

/// 3,000 objects of three owners over five built-in types and every CRD kind.
fn populate(replay: &replay::Replay, crds: usize) {
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
    let plurals = replay::bench_plurals(crds);
    for i in 0..OBJECTS {
        replay.add(
            "wallet",
            &plurals[i % plurals.len()],
            &format!("obj-{i}"),
            &owners[i % owners.len()],
        );
    }
}

criterion_group!(benches, lookup);
criterion_main!(benches);
