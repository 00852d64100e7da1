//! Micro-benchmarks of the pure core and the review path without transport:
//! decode + decide + encode for the fixture reviews, the guard over a dump of thousands of
//! objects, and the naming functions. `cargo bench --bench core`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nsguard::admission::{self, Endpoint, Webhook};
use nsguard::cluster::{ClusterDump, ClusterSource};
use nsguard::decisions::namespace_guard::GuardConfig;
use nsguard::decisions::placement::PlacementMode;
use nsguard::metrics::Metrics;
use nsguard::simple_container::labels::LabelScheme;

/// A fixture body as the API server sends it: compact JSON (the fixtures are
/// pretty-printed for reading).
fn fixture(name: &str) -> Vec<u8> {
    let pretty = std::fs::read(format!(
        "{}/tests/fixtures/admission-review/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&pretty).unwrap()).unwrap()
}

/// A dump of `objects` owned objects: a third in the namespace being deleted, spread over
/// three owners, the rest in other namespaces.
fn big_dump(objects: usize) -> String {
    let mut items = Vec::new();
    for i in 0..objects {
        let namespace = if i % 3 == 0 {
            "pay-space-wallet".to_owned()
        } else {
            format!("team-{}", i % 50)
        };
        let (app, env) = [
            ("wallet", "production"),
            ("wallet-tenant-a", "tenant-a"),
            ("wallet-tenant-b", "tenant-b"),
        ][i % 3];
        items.push(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}"), "namespace": namespace,
                         "labels": {"simple-container-com/app-name": app, "simple-container-com/env": env}},
            "data": {"k": "v"}
        }));
    }
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

fn webhook(dump: &str, placement: PlacementMode) -> Webhook {
    let scheme = LabelScheme::default();
    Webhook {
        cluster: ClusterSource::Dump(ClusterDump::parse(dump, &scheme).unwrap()),
        scheme,
        guard: GuardConfig::default(),
        lookup_timeout: Duration::from_secs(5),
        placement,
        metrics: Arc::new(Metrics::new()),
        events: None,
    }
}

fn reviews(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deployment = fixture("deployment-create.json");
    let update = fixture("deployment-update.json");
    let delete = fixture("namespace-delete.json");
    let warn = webhook(&big_dump(6_000), PlacementMode::Warn);

    let mut group = c.benchmark_group("review");
    // The floor under any decoder that validates the body: serde_json checking (and
    // skipping) every value of the same bytes, building nothing.
    group.bench_function("json_validation_floor_deployment_create", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(&deployment).unwrap())
    });
    group.bench_function("decode_deployment_create", |b| {
        b.iter(|| admission::decode(&deployment).unwrap())
    });
    group.bench_function("deployment_create_decode_place_encode", |b| {
        b.iter(|| {
            let request = admission::decode(&deployment).unwrap();
            runtime
                .block_on(warn.review(Endpoint::Validate, &request))
                .encode()
        })
    });
    group.bench_function("deployment_update_decode_place_encode", |b| {
        b.iter(|| {
            let request = admission::decode(&update).unwrap();
            runtime
                .block_on(warn.review(Endpoint::Validate, &request))
                .encode()
        })
    });
    group.bench_function("namespace_delete_over_6000_object_dump", |b| {
        b.iter(|| {
            let request = admission::decode(&delete).unwrap();
            runtime
                .block_on(warn.review(Endpoint::Validate, &request))
                .encode()
        })
    });
    group.finish();
}

fn naming(c: &mut Criterion) {
    let mut group = c.benchmark_group("naming");
    group.bench_function("deployed_namespace_short", |b| {
        b.iter(|| {
            nsguard::simple_container::naming::deployed_namespace(
                "pay-space-wallet",
                "tenant-a",
                "production",
            )
            .unwrap()
        })
    });
    let long = "Payments_Settlement.Reconciliation-Service-For-European-Markets";
    group.bench_function("deployed_namespace_long_hashed", |b| {
        b.iter(|| {
            nsguard::simple_container::naming::deployed_namespace(
                long,
                "tenant-customer-acme",
                "production",
            )
            .unwrap()
        })
    });
    group.finish();
}

fn dump_loading(c: &mut Criterion) {
    let text = big_dump(6_000);
    let scheme = LabelScheme::default();
    c.bench_function("dump/parse_6000_objects", |b| {
        b.iter(|| ClusterDump::parse(&text, &scheme).unwrap())
    });
}

/// The watchdog's HTTP/1.1 framing over one request as the API server sends it: the head
/// and the Deployment CREATE body in one read (what every review on a keep-alive
/// connection costs it), and the same split into a read per 1 KiB.
fn framing(c: &mut Criterion) {
    let body = fixture("deployment-create.json");
    let mut request = format!(
        "POST /validate?timeout=5s HTTP/1.1\r\nHost: nsguard.nsguard-system.svc:443\r\n\
         User-Agent: kube-apiserver-admission\r\nContent-Length: {}\r\nAccept: application/json, */*\r\n\
         Content-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let mut group = c.benchmark_group("framing");
    group.bench_function("deployment_create_one_read", |b| {
        let mut framing = nsguard::server::framing::Framing::default();
        b.iter(|| {
            framing.feed(&request, 1);
            framing.take_complete().unwrap()
        })
    });
    group.bench_function("deployment_create_1k_reads", |b| {
        let mut framing = nsguard::server::framing::Framing::default();
        b.iter(|| {
            for read in request.chunks(1024) {
                framing.feed(read, 1);
            }
            framing.take_complete().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, reviews, naming, dump_loading, framing);
criterion_main!(benches);
