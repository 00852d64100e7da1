//! The live lookup against a replayed kube-apiserver: recorded discovery documents,
//! metadata-only lists, and injected faults. The guard must fail closed within its
//! deadline on every fault, and recover when the API server does.

mod common;

use std::time::{Duration, Instant};

use common::replay::{Fault, Replay, kubectl_reads};
use common::{Cluster, Server, fixture, review};
use nsguard::admission::{NamespaceGuard, pipeline};
use nsguard::cluster::{LiveCluster, LiveOptions, LookupError};
use nsguard::decisions::namespace_guard::{self, GuardConfig, Verdict};
use nsguard::simple_container::labels::LabelScheme;

const CURRENT: [(&str, &str); 2] = [
    ("simple-container-com/app-name", "wallet"),
    ("simple-container-com/env", "production"),
];
const TENANT_A: [(&str, &str); 3] = [
    ("simple-container-com/app-name", "wallet-tenant-a"),
    ("simple-container-com/env", "tenant-a"),
    ("simple-container-com/parent-env", "production"),
];
const LEGACY_B: [(&str, &str); 2] = [("appName", "wallet-tenant-b"), ("appEnv", "tenant-b")];

fn live(replay: &Replay, options: LiveOptions) -> LiveCluster {
    live_at(&replay.url(), options)
}

/// A lookup over nsguard's own client configuration (kube's retries off).
fn live_at(url: &str, options: LiveOptions) -> LiveCluster {
    let config = nsguard::cluster::live::client_config(kube::Config::new(url.parse().unwrap()));
    let client = kube::Client::try_from(config).unwrap();
    LiveCluster::new(client, url.to_owned(), LabelScheme::default(), options)
}

fn soon() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(10)
}

fn decide(
    scan: &Result<nsguard::decisions::namespace_guard::NamespaceScan, LookupError>,
) -> Verdict {
    let config = GuardConfig::default();
    match scan {
        Ok(scan) => namespace_guard::decide(&config, "wallet", Ok(scan)).verdict,
        Err(err) => namespace_guard::decide(&config, "wallet", Err(&err.to_string())).verdict,
    }
}

#[tokio::test]
async fn discovery_lists_every_namespaced_listable_type_except_skipped_ones() {
    let replay = Replay::start().await;
    let all = live(
        &replay,
        LiveOptions {
            skip: vec![],
            ..LiveOptions::default()
        },
    );
    let found = all.discovery(soon()).await.unwrap();
    assert!(found.failed.is_empty(), "{:?}", found.failed);
    assert_eq!(found.types.len(), replay.listable_types());
    let ids: Vec<&str> = found.types.iter().map(|t| t.id.as_str()).collect();
    for id in [
        "deployments.apps",
        "configmaps",
        "services",
        "secrets",
        "cronjobs.batch",
        "leases.coordination.k8s.io",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for id in [
        "namespaces",
        "nodes",
        "pods/log",
        "bindings",
        "clusterroles.rbac.authorization.k8s.io",
    ] {
        assert!(!ids.contains(&id), "{id} must not be listed");
    }
    let defaults = live(&replay, LiveOptions::default());
    let found = defaults.discovery(soon()).await.unwrap();
    let ids: Vec<&str> = found.types.iter().map(|t| t.id.as_str()).collect();
    assert!(
        !ids.contains(&"secrets")
            && !ids.contains(&"events")
            && !ids.contains(&"events.events.k8s.io")
    );
}

#[tokio::test]
async fn scan_finds_every_owner_across_types_generations_and_pages() {
    let replay = Replay::start().await;
    for i in 0..7 {
        replay.add("wallet", "configmaps", &format!("cm-{i}"), &CURRENT);
    }
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    replay.add("wallet", "deployments", "wallet-tenant-a", &TENANT_A);
    replay.add("wallet", "services", "wallet-tenant-b", &LEGACY_B);
    replay.add("wallet", "services", "unlabelled", &[("app", "x")]);
    // Carries two generations: matched by two selectors, counted once.
    replay.add(
        "wallet",
        "services",
        "both",
        &[
            CURRENT[0],
            CURRENT[1],
            ("appName", "wallet"),
            ("appEnv", "production"),
        ],
    );
    replay.add("elsewhere", "deployments", "other", &TENANT_A);

    let cluster = live(
        &replay,
        LiveOptions {
            page_size: 2,
            ..LiveOptions::default()
        },
    );
    let scan = cluster
        .scan("wallet", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(scan.unverified.is_empty(), "{:?}", scan.unverified);
    assert_eq!(scan.objects.len(), 11, "{:#?}", scan.objects);
    let decision = namespace_guard::decide(&GuardConfig::default(), "wallet", Ok(&scan));
    assert_eq!(decision.verdict, Verdict::MultipleOwners);
    let owners: Vec<String> = decision
        .owners
        .iter()
        .map(|o| o.owner.to_string())
        .collect();
    assert_eq!(
        owners,
        [
            "wallet/production",
            "wallet-tenant-a/tenant-a",
            "wallet-tenant-b/tenant-b"
        ]
    );
    assert_eq!(decision.owners[0].by_kind["ConfigMap"], 7);

    // One read per type, whatever the number of label generations: no selector (the
    // owners are read from the labels), a page limit. A type with more than a page
    // (configmaps: 7 in pages of 2; services: 3) gets the rest by selector, one per label
    // generation, paged too; the others are read once.
    let requests = replay.requests();
    let lists: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/namespaces/wallet/"))
        .collect();
    assert!(lists.iter().all(|r| r.contains("limit=2")), "{lists:?}");
    let unselected: Vec<&&String> = lists
        .iter()
        .filter(|r| !r.contains("labelSelector="))
        .collect();
    assert_eq!(unselected.len(), scan.resource_types, "{unselected:?}");
    assert!(unselected.iter().all(|r| !r.contains("continue=")));
    let selected: Vec<&&String> = lists
        .iter()
        .filter(|r| r.contains("labelSelector="))
        .collect();
    for r in &selected {
        assert!(
            r.starts_with("/api/v1/namespaces/wallet/configmaps?")
                || r.starts_with("/api/v1/namespaces/wallet/services?"),
            "{r}"
        );
    }
    let first_selected = selected.iter().filter(|r| !r.contains("continue=")).count();
    assert_eq!(first_selected, 2 * 3, "{selected:?}");
    assert!(
        selected.iter().any(|r| r.contains("continue=")),
        "pagination never used"
    );
    // A consistent read: never `resourceVersion=0`, which may answer from a stale cache.
    assert!(
        lists.iter().all(|r| !r.contains("resourceVersion")),
        "{lists:?}"
    );
}

#[tokio::test]
async fn a_single_owner_with_full_visibility_is_allowed() {
    let replay = Replay::start().await;
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    let scan = live(&replay, LiveOptions::default())
        .scan("wallet", Duration::from_secs(10))
        .await;
    assert_eq!(decide(&scan), Verdict::Safe);
}

#[tokio::test]
async fn every_list_fault_is_named_and_fails_closed() {
    for (fault, needle) in [
        (Fault::Forbidden, "403"),
        (Fault::ServerError, "500"),
        (Fault::Garbage, ""),
        (Fault::Truncated, ""),
    ] {
        let replay = Replay::start().await;
        replay.add("wallet", "deployments", "wallet", &CURRENT);
        replay.fault("statefulsets", fault.clone());
        let scan = live(&replay, LiveOptions::default())
            .scan("wallet", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(scan.unverified.len(), 1, "{fault:?}: {:?}", scan.unverified);
        assert_eq!(scan.unverified[0].resource, "statefulsets.apps");
        assert!(
            scan.unverified[0].reason.contains(needle),
            "{fault:?}: {}",
            scan.unverified[0].reason
        );
        let decision = namespace_guard::decide(&GuardConfig::default(), "wallet", Ok(&scan));
        assert_eq!(decision.verdict, Verdict::Incomplete, "{fault:?}");
        assert!(
            decision.message().contains("statefulsets.apps"),
            "{}",
            decision.message()
        );

        // Recovery: once the API server answers, the same lookup allows.
        replay.clear_faults();
        let scan = live(&replay, LiveOptions::default())
            .scan("wallet", Duration::from_secs(10))
            .await;
        assert_eq!(decide(&scan), Verdict::Safe, "{fault:?} after recovery");
    }
}

#[tokio::test]
async fn hung_and_slow_lists_fail_closed_at_the_deadline() {
    let replay = Replay::start().await;
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    let cluster = live(&replay, LiveOptions::default());
    let deadline = Duration::from_millis(700);
    for fault in [Fault::Hang, Fault::Slow(Duration::from_secs(5))] {
        replay.fault("services", fault.clone());
        let started = Instant::now();
        let scan = cluster.scan("wallet", deadline).await;
        let elapsed = started.elapsed();
        let Err(LookupError::Deadline {
            timeout,
            done,
            total,
            pending,
            ..
        }) = &scan
        else {
            panic!("{fault:?}: expected a deadline error, got {scan:?}");
        };
        assert_eq!(*timeout, deadline);
        assert!(done < total, "{done} of {total}");
        assert_eq!(pending, &["services"], "the slow type is named");
        // Bounded: the answer comes at the deadline, not when the API server answers.
        assert!(
            elapsed < Duration::from_secs(3),
            "{fault:?} took {elapsed:?}"
        );
        assert!(matches!(decide(&scan), Verdict::LookupFailed { .. }));
    }
    // A slow answer within the deadline is fine.
    replay.fault("services", Fault::Slow(Duration::from_millis(50)));
    assert_eq!(
        decide(&cluster.scan("wallet", Duration::from_secs(10)).await),
        Verdict::Safe
    );
}

#[tokio::test]
async fn an_api_server_that_is_down_fails_closed_and_recovery_is_seen() {
    let replay = Replay::start().await;
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    let cluster = live(
        &replay,
        LiveOptions {
            discovery_ttl: Duration::ZERO,
            ..LiveOptions::default()
        },
    );
    replay.state.lock().unwrap().down = true;
    // Discovery fails (or the client's retries of the 503 run into the deadline).
    let scan = cluster.scan("wallet", Duration::from_secs(2)).await;
    assert!(
        matches!(
            scan,
            Err(LookupError::Discovery { .. } | LookupError::Deadline { .. })
        ),
        "{scan:?}"
    );
    assert!(matches!(decide(&scan), Verdict::LookupFailed { .. }));
    replay.clear_faults();
    assert_eq!(
        decide(&cluster.scan("wallet", Duration::from_secs(5)).await),
        Verdict::Safe
    );
    // Discovery succeeded once; when the server goes down again the lists fail: named, denied.
    replay.state.lock().unwrap().down = true;
    let scan = cluster.scan("wallet", Duration::from_secs(2)).await;
    assert!(!matches!(decide(&scan), Verdict::Safe), "{scan:?}");
}

/// A lookup with no time left (it waited for its slot until its deadline) starts no
/// discovery call, and does not pass off the last good discovery as a failed refresh.
#[tokio::test]
async fn a_discovery_with_no_time_left_starts_no_call() {
    let replay = Replay::start().await;
    let cluster = live(&replay, LiveOptions::default());
    let discovery_calls = || {
        (replay.requests().iter())
            .filter(|r| r.starts_with("/api?") || r == &"/api" || r.starts_with("/apis"))
            .count()
    };
    let out_of_time = cluster.discovery(tokio::time::Instant::now()).await;
    assert!(
        matches!(out_of_time, Err(LookupError::Discovery { .. })),
        "{out_of_time:?}"
    );
    assert_eq!(discovery_calls(), 0, "{:?}", replay.requests());
    // A good discovery is kept as the last good one ...
    assert!(cluster.discovery(soon()).await.is_ok());
    let made = discovery_calls();
    assert!(made > 0);
    // ... and is not handed out, nor a call made, when no time is left.
    let out_of_time = cluster.discovery(tokio::time::Instant::now()).await;
    assert!(
        matches!(out_of_time, Err(LookupError::Discovery { .. })),
        "{out_of_time:?}"
    );
    assert_eq!(discovery_calls(), made);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_are_bounded_and_the_excess_fails_closed() {
    let replay = Replay::start().await;
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    replay.fault("services", Fault::Slow(Duration::from_millis(1500)));
    let cluster = std::sync::Arc::new(live(
        &replay,
        LiveOptions {
            max_concurrent_scans: 1,
            ..LiveOptions::default()
        },
    ));
    let first = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.scan("wallet", Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The only slot is taken for 1.5 s; a lookup with a 500 ms deadline cannot start.
    let second = cluster.scan("wallet", Duration::from_millis(500)).await;
    assert!(
        matches!(second, Err(LookupError::Busy { limit: 1, .. })),
        "{second:?}"
    );
    assert!(matches!(decide(&second), Verdict::LookupFailed { .. }));
    assert_eq!(decide(&first.await.unwrap()), Verdict::Safe);
    // With the slot free again, lookups run.
    assert_eq!(
        decide(&cluster.scan("wallet", Duration::from_secs(10)).await),
        Verdict::Safe
    );
}

#[tokio::test]
async fn an_api_server_that_refuses_connections_fails_closed_within_the_deadline() {
    // A port that was just free: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cluster = live_at(&format!("http://127.0.0.1:{port}"), LiveOptions::default());
    let started = Instant::now();
    let scan = cluster.scan("wallet", Duration::from_secs(2)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    // The answer names the API server and the cause.
    let message = scan.as_ref().unwrap_err().to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{port}")) && message.contains("onnection refused"),
        "{message}"
    );
    let verdict = decide(&scan);
    assert!(
        matches!(verdict, Verdict::LookupFailed { .. }),
        "{verdict:?}"
    );
}

/// Two stacks in `pay-space-wallet`, the namespace of the recorded namespace DELETE.
fn two_stacks_in_the_recorded_namespace(replay: &Replay) {
    replay.add(
        "pay-space-wallet",
        "deployments",
        "pay-space-wallet",
        &CURRENT,
    );
    replay.add(
        "pay-space-wallet",
        "deployments",
        "pay-space-wallet-tenant-a",
        &TENANT_A,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_denies_over_https_from_a_live_lookup_and_fails_closed_on_a_hang() {
    let replay = Replay::start().await;
    two_stacks_in_the_recorded_namespace(&replay);
    let dir = tempfile::tempdir().unwrap();
    let server = live_server(&replay, &dir, &["--lookup-timeout", "800ms"]);
    let client = server.client();
    let denied_for_two_stacks = || async {
        let resp = review(
            &client,
            server.addr,
            "/validate",
            fixture("namespace-delete.json"),
        )
        .await;
        assert_eq!(resp["response"]["allowed"], false, "{resp}");
        let message = resp["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("holds objects of 2 stacks"), "{message}");
    };
    denied_for_two_stacks().await;

    replay.fault("deployments", Fault::Hang);
    let started = Instant::now();
    let resp = review(
        &client,
        server.addr,
        "/validate",
        fixture("namespace-delete-dryrun.json"),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(resp["response"]["allowed"], false, "{resp}");
    let message = resp["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("fail closed") && message.contains("did not finish within 800ms"),
        "{message}"
    );
    server
        .assert_metrics(&[
            r#"nsguard_lookup_errors_total{reason="deadline"} 1"#,
            "nsguard_lookup_stale_discoveries_total 0",
        ])
        .await;
    // One typed error, said the same way in the answer, the metric and the decision log.
    let logged: Vec<serde_json::Value> = server
        .wait_for_logs("lookup-failed", 1, Duration::from_secs(5))
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["target"] == "nsguard::audit")
        .collect();
    assert_eq!(logged.len(), 1, "{:#?}", server.logs());
    assert_eq!(logged[0]["lookup_error"], "deadline", "{}", logged[0]);
    assert_eq!(logged[0]["reason"], "lookup-failed");

    // `/apis` fails: the last good discovery stands in, the second stack is still found,
    // and the fallback is counted.
    replay.clear_faults();
    replay.discovery_fault("/apis", Fault::ServerError);
    denied_for_two_stacks().await;
    server
        .assert_metrics(&["nsguard_lookup_stale_discoveries_total 1"])
        .await;
}

/// A type created after the last lookup (a new CRD, a ClusterRole for it and an instance
/// of a second owner) is counted by the very next delete: discovery is not cached across
/// lookups. With a cached discovery this delete was allowed for up to --discovery-ttl.
#[tokio::test]
async fn a_type_created_after_the_last_lookup_is_counted() {
    let replay = Replay::start().await;
    replay.add("wallet", "configmaps", "wallet", &CURRENT);
    let cluster = live(&replay, LiveOptions::default());
    let timeout = Duration::from_secs(10);
    assert_eq!(
        decide(&cluster.scan("wallet", timeout).await),
        Verdict::Safe
    );

    replay.add_group("example.com", "v1", &[("widgets", "Widget")]);
    replay.add("wallet", "widgets", "tenant-a-widget", &TENANT_A);
    let scan = cluster.scan("wallet", timeout).await;
    assert_eq!(decide(&scan), Verdict::MultipleOwners, "{scan:?}");
    let scan = scan.unwrap();
    assert!(
        scan.objects
            .iter()
            .any(|o| o.kind == "Widget.example.com" && o.name == "tenant-a-widget"),
        "{:?}",
        scan.objects
    );
}

/// When `/apis` fails as a whole, the last good discovery stands in while it is younger
/// than --discovery-ttl (the scan says so, for the metric), and a second owner in a type
/// it knows is still found; once it is older, the delete fails closed naming discovery.
#[tokio::test]
async fn the_last_good_discovery_stands_in_for_a_failed_refresh_until_it_expires() {
    let replay = Replay::start().await;
    replay.add_group("example.com", "v1", &[("widgets", "Widget")]);
    replay.add("wallet", "configmaps", "wallet", &CURRENT);
    let ttl = Duration::from_millis(1500);
    let cluster = live(
        &replay,
        LiveOptions {
            discovery_ttl: ttl,
            ..LiveOptions::default()
        },
    );
    let timeout = Duration::from_secs(5);
    let fresh = cluster.scan("wallet", timeout).await.unwrap();
    assert_eq!(fresh.stale_discovery, None);
    assert!(fresh.api_calls > 0);

    replay.discovery_fault("/apis", Fault::ServerError);
    replay.add("wallet", "widgets", "tenant-a-widget", &TENANT_A);
    let started = Instant::now();
    let scan = cluster.scan("wallet", timeout).await;
    assert_eq!(decide(&scan), Verdict::MultipleOwners, "{scan:?}");
    let scan = scan.unwrap();
    assert!(scan.stale_discovery.is_some(), "{scan:?}");
    assert_eq!(scan.resource_types, fresh.resource_types);
    assert!(
        scan.objects.iter().any(|o| o.name == "tenant-a-widget"),
        "{:?}",
        scan.objects
    );

    tokio::time::sleep((started + ttl).saturating_duration_since(Instant::now())).await;
    let scan = cluster.scan("wallet", timeout).await;
    match &scan {
        Err(err @ LookupError::Discovery { .. }) => {
            let message = err.to_string();
            assert!(message.contains(&replay.url()), "{message}");
            assert!(message.contains("500"), "{message}");
        }
        other => panic!("expected a discovery error once the last good one expired: {other:?}"),
    }
    assert!(matches!(decide(&scan), Verdict::LookupFailed { .. }));

    // Discovery answers again: fresh, not stale.
    replay.clear_faults();
    let scan = cluster.scan("wallet", timeout).await.unwrap();
    assert_eq!(scan.stale_discovery, None);
}

/// A kind served only by a version the server does not prefer (a group whose CRDs sit at
/// different versions, an alpha kind beside a GA group) is listed too, as the namespace
/// controller and `kubectl api-resources` see it: it would be deleted with the namespace.
#[tokio::test]
async fn a_kind_served_only_by_a_non_preferred_version_is_counted() {
    let replay = Replay::start().await;
    replay.add("wallet", "configmaps", "wallet", &CURRENT);
    replay.add_group_versions(
        "example.com",
        &[
            ("v1", &[("widgets", "Widget")]),
            ("v1beta1", &[("widgets", "Widget"), ("gadgets", "Gadget")]),
        ],
    );
    replay.add("wallet", "gadgets", "tenant-a-gadget", &TENANT_A);
    let cluster = live(&replay, LiveOptions::default());
    let scan = cluster.scan("wallet", Duration::from_secs(10)).await;
    assert_eq!(decide(&scan), Verdict::MultipleOwners, "{scan:?}");
    let found = cluster.discovery(soon()).await.unwrap();
    let example: Vec<(&str, &str)> = found
        .types
        .iter()
        .filter(|t| t.resource.group == "example.com")
        .map(|t| (t.id.as_str(), t.resource.version.as_str()))
        .collect();
    // Each kind once, at the preferred version where it is served there.
    assert_eq!(
        example,
        [
            ("gadgets.example.com", "v1beta1"),
            ("widgets.example.com", "v1")
        ]
    );
}

/// A list answered 404 while discovery serves the type is never read as "no objects":
/// discovery is asked again, and a type it still serves is named and the delete denied.
#[tokio::test]
async fn a_list_answering_404_is_never_read_as_empty() {
    let replay = Replay::start().await;
    replay.add("wallet", "configmaps", "wallet", &CURRENT);
    replay.add("wallet", "deployments", "wallet-tenant-a", &TENANT_A);
    replay.fault("deployments", Fault::NotFound);
    let cluster = live(&replay, LiveOptions::default());
    let scan = cluster
        .scan("wallet", Duration::from_secs(10))
        .await
        .unwrap();
    let unverified: Vec<&str> = scan
        .unverified
        .iter()
        .map(|u| u.resource.as_str())
        .collect();
    assert_eq!(unverified, ["deployments.apps"], "{:?}", scan.unverified);
    assert_eq!(scan.unverified[0].code, Some(404));
    assert_eq!(decide(&Ok(scan)), Verdict::Incomplete);
    // Discovery was asked again after the 404.
    let apis = replay
        .requests()
        .iter()
        .filter(|r| r.as_str() == "/apis")
        .count();
    assert_eq!(apis, 2, "one discovery for the scan, one after the 404");
}

/// A list answered 404 whose group then cannot be rediscovered is not "gone": nothing
/// says its objects went with it, so it is named and the delete denied.
#[tokio::test]
async fn a_404_whose_group_cannot_be_rediscovered_is_named() {
    let replay = Replay::start().await;
    replay.add("wallet", "configmaps", "wallet", &CURRENT);
    replay.add_group("example.com", "v1", &[("widgets", "Widget")]);
    replay.add("wallet", "widgets", "tenant-a-widget", &TENANT_A);
    replay.fault(
        "widgets",
        Fault::NotFoundThenUndiscoverable("/apis/example.com/v1".to_owned()),
    );
    let scan = live(&replay, LiveOptions::default())
        .scan("wallet", Duration::from_secs(10))
        .await
        .unwrap();
    let unverified: Vec<(&str, Option<u16>)> = scan
        .unverified
        .iter()
        .map(|u| (u.resource.as_str(), u.code))
        .collect();
    assert_eq!(
        unverified,
        [("widgets.example.com", Some(404))],
        "{:?}",
        scan.unverified
    );
    assert!(
        scan.unverified[0].reason.contains("503"),
        "{:?}",
        scan.unverified[0]
    );
    assert_eq!(decide(&Ok(scan)), Verdict::Incomplete);
}

/// An aggregated API whose service is gone answers 503 (or nothing) for its discovery.
/// kube's own retry policy used to retry that for longer than the deadline, so every
/// delete was denied after 5 s, naming nothing. Now: the API is named, within about a
/// second, and the metrics APIs are skipped by default, subdomains included.
#[tokio::test]
async fn an_unavailable_aggregated_api_is_named_within_a_second() {
    for fault in [Fault::Unavailable, Fault::Hang] {
        let replay = Replay::start().await;
        replay.add("wallet", "configmaps", "wallet", &CURRENT);
        replay.add_group(
            "custom.metrics.k8s.io",
            "v1beta1",
            &[("pods", "MetricValueList")],
        );
        replay.discovery_fault("/apis/custom.metrics.k8s.io/v1beta1", fault.clone());
        let cluster = live(&replay, LiveOptions::default());
        let timeout = Duration::from_secs(5);
        assert_eq!(
            decide(&cluster.scan("wallet", timeout).await),
            Verdict::Safe,
            "{fault:?}: *.metrics.k8s.io is skipped by default"
        );

        replay.add_group("backup.example.com", "v1", &[("snapshots", "Snapshot")]);
        replay.discovery_fault("/apis/backup.example.com/v1", fault.clone());
        let started = Instant::now();
        let scan = cluster.scan("wallet", timeout).await.unwrap();
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_millis(1500),
            "{fault:?} took {elapsed:?}"
        );
        assert_eq!(scan.unverified.len(), 1, "{:?}", scan.unverified);
        assert_eq!(
            scan.unverified[0].resource,
            "backup.example.com/v1 (discovery)"
        );
        let reason = &scan.unverified[0].reason;
        match fault {
            Fault::Unavailable => assert!(reason.starts_with("503 ServiceUnavailable"), "{reason}"),
            _ => assert!(reason.starts_with("no answer within"), "{reason}"),
        }
        fails_closed_naming(&scan, "backup.example.com/v1 (discovery)");
    }
}

/// Where the API server serves aggregated discovery (1.27 on), discovery is the two
/// roots and nothing else, and finds what the per-group-version documents find: the same
/// types, the same decision, a CRD group added a moment ago included.
#[tokio::test]
async fn aggregated_discovery_is_two_calls_and_finds_the_same_types() {
    let replay = Replay::start().await;
    replay.add("wallet", "configmaps", "wallet", &CURRENT);
    replay.add("wallet", "deployments", "wallet-tenant-a", &TENANT_A);
    let cluster = live(&replay, LiveOptions::default());
    let legacy = cluster.discovery(soon()).await.unwrap();
    let legacy_scan = cluster
        .scan("wallet", Duration::from_secs(5))
        .await
        .unwrap();

    replay.state.lock().unwrap().aggregated = true;
    replay.add_group("shop.example.com", "v1", &[("carts", "Cart")]);
    replay.add("wallet", "carts", "wallet", &CURRENT);
    let before = replay.request_count();
    let aggregated = cluster.discovery(soon()).await.unwrap();
    assert_eq!(aggregated.calls, 2);
    let mut asked = replay.requests()[before..].to_vec();
    asked.sort();
    assert_eq!(asked, ["/api", "/apis"]);
    let ids = |d: &nsguard::cluster::live::Discovered| -> Vec<(String, String, String)> {
        d.types
            .iter()
            .map(|t| {
                (
                    t.id.clone(),
                    t.resource.api_version.clone(),
                    t.resource.kind.clone(),
                )
            })
            .collect()
    };
    let mut expected = ids(&legacy);
    expected.push((
        "carts.shop.example.com".to_owned(),
        "shop.example.com/v1".to_owned(),
        "Cart".to_owned(),
    ));
    expected.sort();
    assert_eq!(ids(&aggregated), expected);
    assert!(aggregated.failed.is_empty(), "{:?}", aggregated.failed);

    let before = replay.request_count();
    let scan = cluster
        .scan("wallet", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(scan.resource_types, legacy_scan.resource_types + 1);
    assert_eq!(scan.api_calls, replay.request_count() - before);
    assert_eq!(
        scan.api_calls,
        2 + scan.resource_types,
        "the two roots and one list per type (no claim: no volume read)"
    );
    assert_eq!(decide(&Ok(scan)), decide(&Ok(legacy_scan)));
}

/// A version aggregated discovery calls `Stale` (its API service did not answer the API
/// server) is named as a failed discovery, as its 503 is on a server without aggregated
/// discovery: the delete fails closed naming it.
#[tokio::test]
async fn a_stale_version_in_aggregated_discovery_fails_closed() {
    let replay = Replay::start().await;
    replay.state.lock().unwrap().aggregated = true;
    replay.add("wallet", "configmaps", "wallet", &CURRENT);
    replay.add_group("backup.example.com", "v1", &[("snapshots", "Snapshot")]);
    replay.discovery_fault("/apis/backup.example.com/v1", Fault::Unavailable);
    let cluster = live(&replay, LiveOptions::default());
    let scan = cluster
        .scan("wallet", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        !replay
            .requests()
            .iter()
            .any(|r| r == "/apis/backup.example.com/v1"),
        "{:?}",
        replay.requests()
    );
    assert_eq!(scan.unverified.len(), 1, "{:?}", scan.unverified);
    assert_eq!(
        scan.unverified[0].resource,
        "backup.example.com/v1 (discovery)"
    );
    assert!(
        scan.unverified[0].reason.contains("stale"),
        "{:?}",
        scan.unverified
    );
    fails_closed_naming(&scan, "backup.example.com/v1 (discovery)");
}

/// The guard refuses the delete over `scan` as incomplete, naming `what`.
fn fails_closed_naming(scan: &nsguard::decisions::namespace_guard::NamespaceScan, what: &str) {
    let decision = namespace_guard::decide(&GuardConfig::default(), "wallet", Ok(scan));
    assert_eq!(decision.verdict, Verdict::Incomplete);
    assert!(decision.message().contains(what), "{}", decision.message());
}

/// A throttled or unavailable list is retried a bounded number of times, with jitter,
/// inside the deadline; then the type is named.
#[tokio::test]
async fn transient_list_failures_are_retried_a_bounded_number_of_times() {
    let replay = Replay::start().await;
    replay.add("wallet", "configmaps", "wallet", &CURRENT);
    replay.fault("services", Fault::Throttled);
    let cluster = live(&replay, LiveOptions::default());
    let started = Instant::now();
    let scan = cluster
        .scan("wallet", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(scan.unverified.len(), 1, "{:?}", scan.unverified);
    assert!(
        scan.unverified[0].reason.starts_with("429"),
        "{:?}",
        scan.unverified
    );
    let service_lists = replay
        .requests()
        .iter()
        .filter(|r| r.starts_with("/api/v1/namespaces/wallet/services"))
        .count();
    // One list of the type (whatever the label generations), tried once and retried twice.
    assert_eq!(service_lists, 3);
    assert_eq!(scan.api_calls, replay.request_count());
}

/// A type nsguard may not list (a CRD the shipped roles do not cover) is named, and the
/// denial ends with the ClusterRole that lets nsguard list it, labelled so that the
/// shipped lookup role aggregates it.
#[tokio::test]
async fn a_forbidden_type_is_named_with_the_cluster_role_to_apply() {
    let replay = Replay::start().await;
    replay.add("wallet", "configmaps", "wallet", &CURRENT);
    replay.add_group(
        "cert-manager.io",
        "v1",
        &[("certificates", "Certificate"), ("issuers", "Issuer")],
    );
    replay.fault("certificates", Fault::Forbidden);
    replay.fault("issuers", Fault::Forbidden);
    let scan = live(&replay, LiveOptions::default())
        .scan("wallet", Duration::from_secs(10))
        .await
        .unwrap();
    let decision = namespace_guard::decide(&GuardConfig::default(), "wallet", Ok(&scan));
    assert_eq!(decision.verdict, Verdict::Incomplete);
    let message = decision.message();
    assert!(
        message.contains("certificates.cert-manager.io, issuers.cert-manager.io: 403 Forbidden"),
        "{message}"
    );
    let role = message
        .split_once("kubectl apply -f - <<'EOF'\n")
        .and_then(|(_, rest)| rest.strip_suffix("\nEOF"))
        .unwrap_or_else(|| panic!("no ClusterRole at the end of: {message}"));
    let role_yaml = role;
    let role: k8s_openapi::api::rbac::v1::ClusterRole =
        serde_json::from_value(nsguard::documents::parse(role).unwrap().remove(0).value).unwrap();
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].api_groups.as_deref(),
        Some(&["cert-manager.io".to_owned()][..])
    );
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["certificates".to_owned(), "issuers".to_owned()][..])
    );
    assert_eq!(rules[0].verbs, ["list"]);
    // kubectl, which reads YAML 1.1, reads the same role (the label value stays a string).
    let read = kubectl_reads(&replay, role_yaml, &[]).await.remove(0);
    assert_eq!(read["kind"], "ClusterRole");
    assert_eq!(
        read["metadata"]["labels"],
        serde_json::json!({"nsguard.dev/aggregate-to-lookup": "true"})
    );
    assert_eq!(
        read["rules"],
        serde_json::json!([{"apiGroups": ["cert-manager.io"], "resources": ["certificates", "issuers"], "verbs": ["list"]}])
    );
    // The label is one the shipped aggregated role selects.
    let labels = role.metadata.labels.unwrap();
    let rbac = std::fs::read_to_string(common::repo_path("manifests/base/rbac.yaml")).unwrap();
    let (key, value) = labels.iter().next().unwrap();
    assert!(
        rbac.contains(&format!("{key}: \"{value}\"")),
        "{key}={value}"
    );
}

/// `nsguard serve` with `args`, against the replayed API server through a kubeconfig in
/// `dir`.
fn live_server(replay: &Replay, dir: &tempfile::TempDir, args: &[&str]) -> Server {
    Server::builder()
        .cluster(Cluster::Kubeconfig(kubeconfig(dir, replay)))
        .args(args)
        .start()
}

/// A kubeconfig in `dir` whose current context is the replayed API server.
fn kubeconfig(dir: &tempfile::TempDir, replay: &Replay) -> std::path::PathBuf {
    replay.kubeconfig(dir.path())
}

/// Ready means the first discovery succeeded: /readyz answers 503, saying why, while the
/// API server is unreachable (it answered ok before), and liveness does not depend on it.
/// Once ready, the body names what nsguard may not list, with the ClusterRole to apply,
/// and the gauge counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_api_server_and_names_what_nsguard_may_not_list() {
    let replay = Replay::start().await;
    replay.add_group("example.com", "v1", &[("widgets", "Widget")]);
    replay.state.lock().unwrap().rules = Some(serde_json::json!([
        {"verbs": ["list"], "apiGroups": ["", "apps", "batch", "autoscaling", "policy",
            "networking.k8s.io", "discovery.k8s.io", "coordination.k8s.io", "storage.k8s.io",
            "resource.k8s.io", "rbac.authorization.k8s.io"], "resources": ["*"]},
        {"verbs": ["get", "list", "watch"], "apiGroups": ["example.com"], "resources": ["widgets"],
            "resourceNames": ["only-this-one"]}
    ]));
    replay.state.lock().unwrap().down = true;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .cluster(Cluster::Kubeconfig(kubeconfig(&dir, &replay)))
        .start();
    let client = server.client();
    let ready = client.get(server.addr, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().starts_with("not ready: "), "{}", ready.text());
    // Once the first check has failed, the body says where and why.
    server.wait_for_log("cluster check failed", Duration::from_secs(10));
    let ready = client.get(server.addr, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(
        ready.text().contains(&replay.url()) && ready.text().contains("503"),
        "{}",
        ready.text()
    );
    assert_eq!(client.get(server.addr, "/healthz").await.status, 200);

    replay.clear_faults();
    let ready = ready_within(&server, Duration::from_secs(10)).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let body = ready.text();
    assert!(
        body.starts_with("ok\n")
            && body.contains("may not list 1 of")
            && body.contains("widgets.example.com"),
        "{body}"
    );
    assert!(body.contains("resources: [\"widgets\"]"), "{body}");
    server
        .assert_metrics(&["nsguard_unlistable_resource_types 1"])
        .await;
}

/// Ready means the first discovery succeeded. An access review that fails (a cluster that
/// refuses SelfSubjectRulesReviews) is reported in the body, and does not keep the pod out
/// of the Service: it kept /readyz at 503 for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_access_review_is_reported_and_does_not_block_readiness() {
    let replay = Replay::start().await;
    replay.state.lock().unwrap().access_review_fault = Some(Fault::Forbidden);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .cluster(Cluster::Kubeconfig(kubeconfig(&dir, &replay)))
        .start();
    let ready = ready_within(&server, Duration::from_secs(10)).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let body = ready.text();
    assert!(
        body.contains("could not check which resource types nsguard may list")
            && body.contains("the access review at")
            && body.contains("403 Forbidden"),
        "{body}"
    );
}

/// `can-delete` against a live API server, as a person runs it: `--kubeconfig` and
/// `--context` as in kubectl, a namespace that does not exist is an error (it said "may be
/// deleted"), and an API error is one readable line (it was a Rust debug dump of a Status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_delete_against_the_api_server() {
    let replay = Replay::start().await;
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    replay.add("wallet", "deployments", "wallet-tenant-a", &TENANT_A);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The current context is an API server that is not there; `replay` is another context.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: replay, cluster: {{server: '{}'}}}}, {{name: dead, cluster: {{server: 'http://{dead}'}}}}]\n\
             users: [{{name: alice, user: {{token: t}}}}]\n\
             contexts: [{{name: replay, context: {{cluster: replay, user: alice}}}}, {{name: dead, context: {{cluster: dead, user: alice}}}}]\n\
             current-context: dead\n",
            replay.url()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        common::nsguard_cli(["can-delete"])
            .args(args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--lookup-timeout", "3s"])
            .output()
            .unwrap()
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    let out = run(&["wallet", "--context", "replay"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("holds objects of 2 stacks"),
        "{}",
        text(&out.stdout)
    );

    // Without --context, the current (dead) one: an error naming the server and cause.
    let out = run(&["wallet"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&dead.to_string()) && stderr.contains("onnection refused"),
        "{stderr}"
    );

    let out = run(&["does-not-exist", "--context", "replay"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "nsguard: error: namespace \"does-not-exist\" does not exist"
    );

    replay.fault("namespaces", Fault::Forbidden);
    let out = run(&["wallet", "--context", "replay"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("nsguard: error: namespace \"wallet\": reading the Namespace at ")
            && stderr.contains("failed: 403 Forbidden: namespaces \"wallet\" is forbidden")
            && !stderr.contains("Status {"),
        "{stderr}"
    );
}

/// The guard's message counts the volumes a delete destroys: this namespace's claims on
/// Delete volumes (one list of claims, one get per volume), not another namespace's nor a
/// Retain volume. Volumes that cannot be read never change the verdict: the denial stands
/// and says the volumes are unknown.
#[tokio::test]
async fn a_denial_counts_the_volumes_read_from_the_api_server() {
    use nsguard::cluster::ClusterSource;
    use nsguard::decisions::data_at_risk::VolumeCheck;
    let replay = Replay::start().await;
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    replay.add("wallet", "deployments", "wallet-tenant-a", &TENANT_A);
    // `reserved` names a Delete volume but is still Pending (made for the volume, or
    // pre-bound): no data yet, not counted.
    for (namespace, claim, volume, policy, phase) in [
        ("wallet", "ledger", "pv-ledger", "Delete", "Bound"),
        ("wallet", "cache", "pv-cache", "Retain", "Bound"),
        ("wallet", "reserved", "pv-reserved", "Delete", "Pending"),
        ("billing", "invoices", "pv-invoices", "Delete", "Bound"),
    ] {
        replay.add_typed(
            "persistentvolumeclaims",
            serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace}, "spec": {"volumeName": volume},
                "status": {"phase": phase}}),
        );
        replay.add_typed(
            "persistentvolumes",
            serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": volume}, "spec": {"persistentVolumeReclaimPolicy": policy}}),
        );
    }
    let source = ClusterSource::Live(live(&replay, LiveOptions::default()));
    let request = namespace_guard::DeleteRequest {
        namespace: "wallet",
        username: "alice",
        groups: &[],
        annotations: None,
    };
    let config = GuardConfig::default();
    let guard = NamespaceGuard { config: &config };
    let (decision, lookup) =
        pipeline::decide(&guard, &source, &request, Duration::from_secs(5)).await;
    assert_eq!(decision.verdict, Verdict::MultipleOwners);
    // `nsguard_lookup_api_calls` counts every call of the decision: discovery, one list
    // per type, and the volume check (a claims list and one GET per bound volume).
    let lookup = lookup.unwrap();
    assert_eq!(lookup.api_calls, replay.request_count());
    let scan = lookup.read.unwrap().scan;
    assert_eq!(scan.api_calls, replay.request_count());
    let discovery_calls = replay
        .requests()
        .iter()
        .filter(|r| !r.contains("/namespaces/") && !r.starts_with("/api/v1/persistentvolumes/"))
        .count();
    assert_eq!(
        scan.api_calls,
        discovery_calls + scan.resource_types + 1 + 2
    );
    let VolumeCheck::Checked(volumes) = &decision.volumes else {
        panic!("{:?}", decision.volumes)
    };
    let names: Vec<_> = volumes.iter().map(|v| v.claim.as_str()).collect();
    assert_eq!(names, ["ledger"]);
    assert!(
        decision
            .message()
            .contains("destroys the data of 1 PersistentVolume for good"),
        "{}",
        decision.message()
    );
    assert!(replay.was_requested("/api/v1/namespaces/wallet/persistentvolumeclaims"));
    assert!(!replay.was_requested("/api/v1/persistentvolumes/pv-invoices"));

    replay.fault("persistentvolumes", Fault::Forbidden);
    let (decision, _) = pipeline::decide(&guard, &source, &request, Duration::from_secs(5)).await;
    assert_eq!(decision.verdict, Verdict::MultipleOwners);
    let message = decision.message();
    assert!(
        message.contains("could not check which PersistentVolumes a delete would destroy: reading a PersistentVolume at ")
            && message.contains("403"),
        "{message}"
    );
}

/// `/readyz` once it answers 200, or its last answer when `limit` passes first.
async fn ready_within(server: &Server, limit: Duration) -> common::Reply {
    let client = server.client();
    let deadline = Instant::now() + limit;
    loop {
        let ready = client.get(server.addr, "/readyz").await;
        if ready.status == 200 || Instant::now() > deadline {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The audit against an API server: every namespace at once (one list per type and label
/// generation across all namespaces), the namespaces, claims and volumes. It finds the
/// shared namespace, the misplaced sub-env object (its namespace does not exist) and the
/// claim on a Delete volume; through the CLI with a kubeconfig, exit 1. A type it may not
/// list makes the audit exit 2, naming it, or 1 with --allow-partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_reads_every_namespace_of_the_api_server() {
    let replay = Replay::start().await;
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    replay.add("wallet", "deployments", "wallet-tenant-a", &TENANT_A);
    replay.add("wallet", "configmaps", "wallet-config", &CURRENT);
    // What kubectl apply leaves on every object it applied: not kept by the audit.
    replay.annotate(
        "wallet",
        "configmaps",
        "wallet-config",
        "kubectl.kubernetes.io/last-applied-configuration",
        &"x".repeat(16 * 1024),
    );
    replay.add("billing", "services", "billing", &LEGACY_B);
    replay.add_typed(
        "persistentvolumeclaims",
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "ledger", "namespace": "wallet"}, "spec": {"volumeName": "pv-ledger"},
            "status": {"phase": "Bound"}}),
    );
    replay.add_typed(
        "persistentvolumes",
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv-ledger"}, "spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
    );
    let cluster = live(&replay, LiveOptions::default());
    let inventory = cluster
        .inventory(
            Duration::from_secs(10),
            nsguard::audit::Inventory::keeping_objects(),
        )
        .await
        .unwrap();
    assert!(
        inventory.unverified.is_empty(),
        "{:?}",
        inventory.unverified
    );
    let objects = inventory.objects.as_ref().unwrap();
    assert_eq!(objects.len(), 4);
    assert_eq!(inventory.labelled(), 4);
    assert!(
        objects.iter().all(|o| o.annotations.is_empty()),
        "only the annotations the audit reads are kept"
    );
    let report = nsguard::audit::audit(&inventory, &LabelScheme::default(), &[]);
    let found: Vec<String> = report
        .findings
        .iter()
        .map(|f| {
            let v = serde_json::to_value(f).unwrap();
            format!(
                "{} {} {}",
                v["type"].as_str().unwrap(),
                v["namespace"].as_str().unwrap(),
                v["objects"][0]["name"]
                    .as_str()
                    .or(v["claim"].as_str())
                    .unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            "SharedNamespace wallet ",
            "Misplaced wallet wallet-tenant-a",
            "DataAtRisk wallet ledger",
            // The ledger carries no stack labels, and a sub-env moves out of wallet: it
            // may be the sub-env's, whose move would delete its Delete volume.
            "MoveDestroysData wallet ledger",
        ]
    );
    // Lists went across all namespaces, not one namespace at a time.
    let requests = replay.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/apis/apps/v1/deployments?")),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.contains("/namespaces/wallet/")),
        "{requests:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(&dir, &replay);
    let audit = |extra: &'static [&'static str]| {
        let config = config.clone();
        move || {
            common::nsguard_cli(["audit", "-o", "json", "--kubeconfig"])
                .arg(&config)
                .args(extra)
                .output()
                .unwrap()
        }
    };
    let out = tokio::task::spawn_blocking(audit(&[])).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["findings"].as_array().unwrap().len(), 4, "{json}");
    assert!(json["resourceTypes"].as_u64().unwrap() > 20, "{json}");

    // Captured with `nsguard dump`, then audited offline: the same findings.
    // `nsguard dump` of `namespaces` into a file, then `nsguard audit` of that file.
    let dump_and_audit = |namespaces: &'static [&'static str]| {
        let (config, file) = (config.clone(), dir.path().join("cluster.json"));
        tokio::task::spawn_blocking(move || {
            let only: Vec<&str> = namespaces.iter().flat_map(|ns| ["-n", *ns]).collect();
            let out = common::nsguard_cli(["dump", "--kubeconfig"])
                .arg(&config)
                .args(&only)
                .arg("-o")
                .arg(&file)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            common::nsguard_cli(["audit", "-o", "json", "--cluster-dump"])
                .arg(&file)
                .args(&only)
                .output()
                .unwrap()
        })
    };
    let offline = dump_and_audit(&[]).await.unwrap();
    assert_eq!(offline.status.code(), Some(1));
    let offline: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(
        offline["findings"], json["findings"],
        "live and offline audits differ"
    );

    // `dump -n` keeps every Namespace's name: the offline audit still knows that the
    // misplaced object's target exists, as the live `audit -n` does.
    replay.add_namespace("wallet-tenant-a", &[], "2026-01-01T00:00:00Z");
    let live = tokio::task::spawn_blocking(audit(&["-n", "wallet"]))
        .await
        .unwrap();
    let live: serde_json::Value = serde_json::from_slice(&live.stdout).unwrap();
    let misplaced = &live["findings"][1];
    assert_eq!(misplaced["type"], "Misplaced", "{live}");
    assert_eq!(misplaced["targetExists"], true, "{live}");
    let offline = dump_and_audit(&["wallet"]).await.unwrap();
    let offline: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(
        offline["findings"], live["findings"],
        "the audit of `dump -n` differs from the live `audit -n`"
    );

    replay.fault("configmaps", Fault::Forbidden);
    let out = tokio::task::spawn_blocking(audit(&[])).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["unverified"][0]["resource"], "configmaps", "{json}");
    let out = tokio::task::spawn_blocking(audit(&["--allow-partial"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// `serve --audit-interval --write-policy-reports` against the API server: without the
/// PolicyReport CRD each write fails, is counted and logged with what to install, and the
/// webhook keeps answering; once the CRD is there, nsguard's report is applied (server-side
/// apply as field manager nsguard) in the shared namespace, valid under the CRD's schema,
/// and nsguard's stale report in a namespace now clean is removed, never another tool's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_audit_writes_policy_reports_and_removes_stale_ones() {
    let replay = Replay::start().await;
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    replay.add("wallet", "deployments", "wallet-tenant-a", &TENANT_A);
    replay.add("billing", "services", "billing", &LEGACY_B);
    let dir = tempfile::tempdir().unwrap();
    let server = live_server(
        &replay,
        &dir,
        &["--audit-interval", "300ms", "--write-policy-reports"],
    );
    let line = server.wait_for_log(
        "some PolicyReports could not be written",
        Duration::from_secs(10),
    );
    assert!(
        line.contains("is the PolicyReport CRD, wgpolicyk8s.io/v1alpha2, installed?"),
        "{line}"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"nsguard_audit_findings{finding="SharedNamespace"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"nsguard_policy_report_writes_total{result="failed"} 0"#),
        "{metrics}"
    );
    let gauge = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = gauge("nsguard_audit_last_success_timestamp_seconds");
    assert!(now - last < 60.0 && last <= now + 1.0, "{last} vs {now}");
    let took = gauge("nsguard_audit_duration_seconds");
    assert!(took > 0.0 && took < 10.0, "{took}");
    assert_eq!(gauge("nsguard_audit_unverified_resource_types"), 0.0);
    let resp = review(
        &server.client(),
        server.addr,
        "/validate",
        fixture("pod-create.json"),
    )
    .await;
    assert_eq!(resp["response"]["allowed"], true, "{resp}");

    replay.install_policy_reports();
    let stale = |namespace: &str, managed_by: &str| {
        serde_json::json!({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
            "metadata": {"name": if managed_by == "nsguard" { "nsguard" } else { "cpol-require-labels" },
                "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": managed_by}}})
    };
    {
        let mut state = replay.state.lock().unwrap();
        state.policy_reports.insert(
            ("billing".into(), "nsguard".into()),
            stale("billing", "nsguard"),
        );
        state.policy_reports.insert(
            ("billing".into(), "cpol-require-labels".into()),
            stale("billing", "kyverno"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let reports = loop {
        let reports = replay.state.lock().unwrap().policy_reports.clone();
        let keys: Vec<(String, String)> = reports.keys().cloned().collect();
        let want = [
            ("billing".to_owned(), "cpol-require-labels".to_owned()),
            ("wallet".to_owned(), "nsguard".to_owned()),
        ];
        if keys == want {
            break reports;
        }
        assert!(Instant::now() < deadline, "reports: {keys:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let report = &reports[&("wallet".to_owned(), "nsguard".to_owned())];
    let crd: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_path(
            "tests/data/crds/policyreport-v1alpha2.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let mut as_written = report.clone();
    as_written["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("uid");
    let violations = common::schema::violations(&crd["openAPIV3Schema"], &as_written);
    assert!(violations.is_empty(), "{violations:?}");
    let policies: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["policy"].as_str().unwrap())
        .collect();
    assert_eq!(policies, ["nsguard-shared-namespace", "nsguard-placement"]);
    let writes = replay.state.lock().unwrap().policy_report_writes.clone();
    let apply = writes
        .iter()
        .find(|w| {
            w.starts_with(
                "PATCH /apis/wgpolicyk8s.io/v1alpha2/namespaces/wallet/policyreports/nsguard?",
            )
        })
        .unwrap();
    assert!(
        apply.contains("fieldManager=nsguard")
            && apply.contains("force=true")
            && apply.ends_with(" application/apply-patch+yaml"),
        "{apply}"
    );
    assert!(
        writes.iter().any(|w| w.starts_with(
            "DELETE /apis/wgpolicyk8s.io/v1alpha2/namespaces/billing/policyreports/nsguard"
        )),
        "{writes:?}"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"nsguard_policy_report_writes_total{result="deleted"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"nsguard_policy_report_writes_total{result="applied"} 0"#),
        "{metrics}"
    );
}

/// The background audit's flags are checked at startup: PolicyReports are written only
/// into a live cluster, and an interval of zero is refused, each with a one-line error.
#[test]
fn background_audit_flags_that_cannot_work_are_refused() {
    let dump = common::repo_path("tests/data/dumps/audit.yaml");
    let cwd = tempfile::tempdir().unwrap(); // where development certificates may be made
    for (extra, said) in [
        (
            &["--audit-interval", "1m", "--write-policy-reports"][..],
            "--write-policy-reports writes into a cluster",
        ),
        (
            &["--audit-interval", "0s"][..],
            "--audit-interval must be longer than 0s",
        ),
        (
            &["--audit-interval", "1m", "--lease-duration", "1500ms"][..],
            "--lease-duration must be whole seconds, at least 3s (got 1s 500ms)",
        ),
    ] {
        let out = common::nsguard_cli([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--cluster-dump",
        ])
        .arg(&dump)
        .args(extra)
        .current_dir(cwd.path())
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
    }
}

/// Lingering namespaces from the API server: a Namespace with a sub-env's labels holding
/// only kube-root-ca.crt and the default ServiceAccount. Only the candidate namespaces are
/// read in full (no selector); one with an unlabelled ConfigMap someone made is not
/// lingering, nor a namespace whose stack is alive or that has no stack labels. A dump of
/// the cluster gives the same findings offline; a type that cannot be listed leaves no
/// namespace called lingering.
#[tokio::test]
async fn lingering_namespaces_are_read_from_the_api_server() {
    let replay = Replay::start().await;
    let preview = [
        ("simple-container-com/app-name", "wallet-preview"),
        ("simple-container-com/env", "preview"),
        ("simple-container-com/parent-env", "production"),
    ];
    replay.add_namespace("wallet-preview", &preview, "2026-05-01T00:00:00Z");
    replay.add("wallet-preview", "configmaps", "kube-root-ca.crt", &[]);
    replay.add("wallet-preview", "serviceaccounts", "default", &[]);
    replay.add_namespace("hand-made", &CURRENT, "2026-05-01T00:00:00Z");
    replay.add("hand-made", "configmaps", "settings", &[]);
    replay.add_namespace("wallet", &CURRENT, "2026-01-01T00:00:00Z");
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    replay.add_namespace("plain", &[], "2026-01-01T00:00:00Z");
    let cluster = live(&replay, LiveOptions::default());
    let inventory = cluster
        .inventory(
            Duration::from_secs(10),
            nsguard::audit::Inventory::keeping_objects(),
        )
        .await
        .unwrap();
    let report = nsguard::audit::audit(&inventory, &LabelScheme::default(), &[]);
    let findings = serde_json::to_value(&report.findings).unwrap();
    assert_eq!(
        findings,
        serde_json::json!([{"type": "LingeringNamespace", "namespace": "wallet-preview",
            "owner": {"appName": "wallet-preview", "env": "preview", "parentEnv": "production"},
            "emptySince": "2026-05-01T00:00:00Z",
            "left": ["ConfigMap/kube-root-ca.crt", "ServiceAccount/default"]}])
    );
    for (namespace, read) in [
        ("wallet-preview", true),
        ("hand-made", true),
        ("wallet", false),
        ("plain", false),
    ] {
        let prefix = format!("/api/v1/namespaces/{namespace}/configmaps?");
        assert_eq!(
            replay.was_requested(&prefix),
            read,
            "{namespace}: {:?}",
            replay.requests()
        );
    }

    let written = serde_json::to_string(&nsguard::cluster::dump::write(&inventory, &[])).unwrap();
    let dump = nsguard::cluster::ClusterDump::parse(&written, &LabelScheme::default()).unwrap();
    let offline = nsguard::audit::audit(dump.inventory(), &LabelScheme::default(), &[]);
    assert_eq!(serde_json::to_value(&offline.findings).unwrap(), findings);

    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(&dir, &replay);
    let script = |extra: &'static [&'static str]| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            common::nsguard_cli(["audit", "--cleanup-script", "--kubeconfig"])
                .arg(&config)
                .args(extra)
                .output()
                .unwrap()
        })
    };
    let out = script(&[]).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\nkubectl delete namespace wallet-preview --dry-run=server\n"),
        "{text}"
    );

    replay.fault("serviceaccounts", Fault::Forbidden);
    let inventory = cluster
        .inventory(Duration::from_secs(10), Default::default())
        .await
        .unwrap();
    let report = nsguard::audit::audit(&inventory, &LabelScheme::default(), &[]);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.unverified.len(), 1, "{:?}", report.unverified);
    // The script then deletes nothing and says why: exit 2, or 0 with --allow-partial.
    for (extra, code, said) in [
        (&[][..], 2, "error"),
        (&["--allow-partial"][..], 0, "warning"),
    ] {
        let out = script(extra).await.unwrap();
        assert_eq!(out.status.code(), Some(code));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("kubectl delete"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "nsguard: {said}: 1 resource type(s) could not be read"
            )) && stderr.contains("serviceaccounts"),
            "{stderr}"
        );
    }
}

/// The background audit never holds up an answer: while its list of PersistentVolumes
/// hangs (a read only the audit makes), a namespace delete is still decided from the live
/// lookup at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_background_audit_does_not_delay_the_guard() {
    let replay = Replay::start().await;
    two_stacks_in_the_recorded_namespace(&replay);
    replay.add_typed(
        "persistentvolumes",
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv-1"}, "spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
    );
    replay.fault("persistentvolumes", Fault::Hang);
    let dir = tempfile::tempdir().unwrap();
    let server = live_server(
        &replay,
        &dir,
        &["--audit-interval", "1h", "--audit-timeout", "60s"],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replay.was_requested("/api/v1/persistentvolumes") {
        assert!(
            Instant::now() < deadline,
            "the audit never listed the volumes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let resp = review(
        &server.client(),
        server.addr,
        "/validate",
        fixture("namespace-delete.json"),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(resp["response"]["allowed"], false, "{resp}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"nsguard_audit_runs_total{result="complete"} 0"#),
        "{metrics}"
    );
}

/// The audit reads a 404 as the scan does, as a stale discovery: a type whose CRD was
/// deleted during the audit took its objects with it (nothing unverified, exit by the
/// findings); one that discovery still serves is named. Before, both made the audit
/// incomplete (exit 2).
#[tokio::test]
async fn the_audit_rediscovers_a_type_that_answers_404() {
    let replay = Replay::start().await;
    replay.add("wallet", "configmaps", "wallet", &CURRENT);
    replay.add_group("example.com", "v1", &[("widgets", "Widget")]);
    replay.add("wallet", "widgets", "tenant-a-widget", &TENANT_A);
    replay.fault(
        "widgets",
        Fault::NotFoundThenRemoved("example.com".to_owned()),
    );
    let cluster = live(&replay, LiveOptions::default());
    let inventory = cluster
        .inventory(Duration::from_secs(10), Default::default())
        .await
        .unwrap();
    assert!(
        inventory.unverified.is_empty(),
        "{:?}",
        inventory.unverified
    );
    assert_eq!(inventory.labelled(), 1, "{:?}", inventory.owners);
    let apis = replay
        .requests()
        .iter()
        .filter(|r| r.as_str() == "/apis")
        .count();
    assert_eq!(apis, 2, "one discovery for the audit, one after the 404");

    replay.fault("deployments", Fault::NotFound);
    let inventory = cluster
        .inventory(Duration::from_secs(10), Default::default())
        .await
        .unwrap();
    let unverified: Vec<(&str, &str)> = inventory
        .unverified
        .iter()
        .map(|u| (u.resource.as_str(), u.reason.as_str()))
        .collect();
    assert_eq!(
        unverified,
        [(
            "deployments.apps",
            "404 NotFound, though discovery still serves the type"
        )]
    );
}

/// A namespace is called lingering over what the API serves when it is read, not when the
/// audit began: an object of a type created during the audit keeps it from lingering (it
/// was called lingering before), and a type deleted during the audit does not make the
/// audit incomplete (it did).
#[tokio::test]
async fn lingering_is_judged_over_the_types_served_when_the_namespace_is_read() {
    let preview = [
        ("simple-container-com/app-name", "wallet-preview"),
        ("simple-container-com/env", "preview"),
        ("simple-container-com/parent-env", "production"),
    ];
    // A CRD and an unlabelled object of it appear while the volumes are being listed.
    let replay = Replay::start().await;
    replay.add_namespace("wallet-preview", &preview, "2026-05-01T00:00:00Z");
    replay.add("wallet-preview", "configmaps", "kube-root-ca.crt", &[]);
    replay.add("wallet-preview", "widgets", "made-just-now", &[]);
    replay.state.lock().unwrap().group_on_request = Some((
        "/api/v1/persistentvolumes".into(),
        "example.com".into(),
        "v1".into(),
        "widgets".into(),
        "Widget".into(),
    ));
    let inventory = live(&replay, LiveOptions::default())
        .inventory(Duration::from_secs(10), Default::default())
        .await
        .unwrap();
    assert!(
        inventory.unowned["wallet-preview"]
            .iter()
            .any(|o| o.name == "made-just-now"),
        "{:?}",
        inventory.unowned
    );
    let report = nsguard::audit::audit(&inventory, &LabelScheme::default(), &[]);
    assert!(report.findings.is_empty(), "{:?}", report.findings);

    // A CRD deleted during the audit: its objects went with it.
    let replay = Replay::start().await;
    replay.add_namespace("wallet-preview", &preview, "2026-05-01T00:00:00Z");
    replay.add("wallet-preview", "configmaps", "kube-root-ca.crt", &[]);
    replay.add_group("example.com", "v1", &[("widgets", "Widget")]);
    replay.fault(
        "widgets",
        Fault::NotFoundThenRemoved("example.com".to_owned()),
    );
    let inventory = live(&replay, LiveOptions::default())
        .inventory(Duration::from_secs(10), Default::default())
        .await
        .unwrap();
    assert!(
        inventory.unverified.is_empty(),
        "{:?}",
        inventory.unverified
    );
    let report = nsguard::audit::audit(&inventory, &LabelScheme::default(), &[]);
    let found: Vec<(&str, &str)> = report
        .findings
        .iter()
        .map(|f| (f.kind(), f.namespace()))
        .collect();
    assert_eq!(found, [("LingeringNamespace", "wallet-preview")]);
}

/// nsguard's own PolicyReport in a lingering namespace is not an object of any stack: the
/// namespace stays lingering run after run (the gauge does not flap, the report is not
/// deleted), and a report whose findings did not change is not written again. A change
/// in the findings is written at the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_mean_the_same_every_run_and_unchanged_ones_are_not_rewritten() {
    let replay = Replay::start().await;
    replay.install_policy_reports();
    let preview = [
        ("simple-container-com/app-name", "wallet-preview"),
        ("simple-container-com/env", "preview"),
        ("simple-container-com/parent-env", "production"),
    ];
    replay.add_namespace("wallet-preview", &preview, "2026-05-01T00:00:00Z");
    replay.add("wallet-preview", "configmaps", "kube-root-ca.crt", &[]);
    two_stacks_in_the_recorded_namespace(&replay);
    let dir = tempfile::tempdir().unwrap();
    let server = live_server(
        &replay,
        &dir,
        &["--audit-interval", "200ms", "--write-policy-reports"],
    );
    let writes = || replay.state.lock().unwrap().policy_report_writes.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while writes().len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", writes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Five more audits at least.
    let runs = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(r#"nsguard_audit_runs_total{result="complete"}"#))
            .and_then(|l| l.split_whitespace().nth(1))
            .map_or(0, |n| n.parse().unwrap())
    };
    let after_first = runs(&server.metrics().await);
    while runs(&server.metrics().await) < after_first + 5 {
        assert!(Instant::now() < deadline + Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"nsguard_audit_findings{finding="LingeringNamespace"} 1"#),
        "{metrics}"
    );
    let written = writes();
    assert_eq!(
        written.len(),
        2,
        "one apply per namespace, then none: {written:?}"
    );
    assert!(
        written.iter().all(|w| w.starts_with("PATCH ")),
        "{written:?}"
    );
    let keys: Vec<(String, String)> = replay
        .state
        .lock()
        .unwrap()
        .policy_reports
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys,
        [
            ("pay-space-wallet".to_owned(), "nsguard".to_owned()),
            ("wallet-preview".to_owned(), "nsguard".to_owned())
        ]
    );
    assert!(
        !metrics.contains(r#"nsguard_policy_report_writes_total{result="unchanged"} 0"#),
        "{metrics}"
    );

    // A new finding in the shared namespace changes its report: written once more.
    replay.add(
        "pay-space-wallet",
        "configmaps",
        "stray",
        &[
            ("simple-container-com/app-name", "pay-space-wallet-tenant-c"),
            ("simple-container-com/env", "tenant-c"),
            ("simple-container-com/parent-env", "production"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while writes().len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", writes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = writes();
    assert!(
        written[2].contains("/namespaces/pay-space-wallet/policyreports/nsguard"),
        "{written:?}"
    );
}

/// A metric's value in `metrics` (the line that starts with `series `), 0 when absent.
fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{series} ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// The `timestamp` of a JSON log line, as Unix seconds.
fn logged_at(line: &str) -> f64 {
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    let at: k8s_openapi::jiff::Timestamp = json["timestamp"].as_str().unwrap().parse().unwrap();
    at.as_millisecond() as f64 / 1000.0
}

/// A Lease time (`renewTime`, RFC 3339 with microseconds) as Unix seconds.
fn lease_time(lease: &serde_json::Value, field: &str) -> f64 {
    let at: k8s_openapi::jiff::Timestamp = lease["spec"][field].as_str().unwrap().parse().unwrap();
    at.as_millisecond() as f64 / 1000.0
}

/// `nsguard serve` with the background audit and PolicyReports, electing its auditor on
/// the Lease `nsguard-system/nsguard-audit` (3 s) as `identity`.
fn replica(replay: &Replay, dir: &tempfile::TempDir, identity: &str) -> Server {
    live_server(
        replay,
        dir,
        &[
            "--audit-interval",
            "300ms",
            "--write-policy-reports",
            "--lease-namespace",
            "nsguard-system",
            "--lease-identity",
            identity,
            "--lease-duration",
            "3s",
        ],
    )
}

/// Two replicas, one auditor: exactly one holds the Lease, audits and writes; both serve
/// the webhook and are ready. Stopped (SIGTERM), the holder releases the Lease and the
/// other audits within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_auditor_and_a_stopped_one_hands_over() {
    let replay = Replay::start().await;
    replay.install_policy_reports();
    two_stacks_in_the_recorded_namespace(&replay);
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = vec![replica(&replay, &dir, "a"), replica(&replay, &dir, "b")];
    let complete = r#"nsguard_audit_runs_total{result="complete"}"#;
    let deadline = Instant::now() + Duration::from_secs(15);
    let leader = loop {
        let mut leading = Vec::new();
        for (i, server) in replicas.iter().enumerate() {
            if metric_value(&server.metrics().await, "nsguard_audit_leader") == 1.0 {
                leading.push(i);
            }
        }
        assert!(leading.len() <= 1, "two leaders: {leading:?}");
        if let [one] = leading[..] {
            break one;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let follower = 1 - leader;
    // Several audit intervals and lease renewals later: still one auditor.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (lead, follow) = (
        replicas[leader].metrics().await,
        replicas[follower].metrics().await,
    );
    assert_eq!(metric_value(&lead, "nsguard_audit_leader"), 1.0);
    assert!(metric_value(&lead, complete) >= 3.0, "{lead}");
    assert_eq!(metric_value(&follow, "nsguard_audit_leader"), 0.0);
    for result in ["complete", "partial", "failed"] {
        let series = format!(r#"nsguard_audit_runs_total{{result="{result}"}}"#);
        assert_eq!(metric_value(&follow, &series), 0.0, "{follow}");
    }
    let lease = replay.lease("nsguard-system", "nsguard-audit").unwrap();
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap();
    assert!(holder.starts_with(["a_", "b_"][leader]), "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 3);
    // One writer: the shared namespace's report applied once.
    let writes = replay.state.lock().unwrap().policy_report_writes.clone();
    assert_eq!(writes.len(), 1, "{writes:?}");
    // Both serve the webhook and are ready, leader or not.
    for server in &replicas {
        let resp = review(
            &server.client(),
            server.addr,
            "/validate",
            fixture("namespace-delete.json"),
        )
        .await;
        assert_eq!(resp["response"]["allowed"], false, "{resp}");
        assert_eq!(
            ready_within(server, Duration::from_secs(5)).await.status,
            200
        );
    }
    let line =
        replicas[leader].wait_for_log("now runs the background audit", Duration::from_secs(1));
    assert!(line.contains("acquired the lease"), "{line}");

    // SIGTERM: the holder gives up its turn and releases the Lease; the other takes over.
    replicas[leader].signal("TERM");
    let stopped = std::time::Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_value(&replicas[follower].metrics().await, "nsguard_audit_leader") != 1.0 {
        assert!(Instant::now() < deadline, "no takeover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = stopped.elapsed();
    // The release comes at SIGTERM, before the drain (--shutdown-delay, 3 s by default),
    // and the follower, reading the Lease about every second, sees it free: well inside
    // the lease duration (3 s) a crashed holder would take.
    assert!(took < Duration::from_millis(2500), "takeover took {took:?}");
    replicas[leader].wait_for_log("released the audit lease", Duration::from_secs(1));
    assert_eq!(replicas[leader].wait_exit(Duration::from_secs(30)), Some(0));
    let lease = replay.lease("nsguard-system", "nsguard-audit").unwrap();
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap()
            .starts_with(["a_", "b_"][follower]),
        "{lease}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_value(&replicas[follower].metrics().await, complete) < 1.0 {
        assert!(Instant::now() < deadline, "the new holder never audited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A holder that crashes (SIGKILL) releases nothing: a third replica takes over once
    // the lease has expired, within the lease duration and the election's own pauses.
    let third = replica(&replay, &dir, "c");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        metric_value(&third.metrics().await, "nsguard_audit_leader"),
        0.0
    );
    replicas[follower].signal("KILL");
    let killed = std::time::Instant::now();
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric_value(&third.metrics().await, "nsguard_audit_leader") != 1.0 {
        assert!(Instant::now() < deadline, "no takeover after a crash");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(5500),
        "takeover after a crash took {took:?}"
    );
    replicas.clear();
}

/// A holder whose renewals stop reaching the API server stops auditing and writing
/// before its lease can expire; the other replica takes over only after it has expired:
/// never two writers, even across a partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_renewals_fail_stops_before_its_lease_expires() {
    let replay = Replay::start().await;
    replay.install_policy_reports();
    two_stacks_in_the_recorded_namespace(&replay);
    let dir = tempfile::tempdir().unwrap();
    let replicas = [replica(&replay, &dir, "a"), replica(&replay, &dir, "b")];
    let deadline = Instant::now() + Duration::from_secs(15);
    let (leader, holder) = loop {
        if let Some(lease) = replay.lease("nsguard-system", "nsguard-audit")
            && let Some(holder) = lease["spec"]["holderIdentity"].as_str()
        {
            let leader = usize::from(holder.starts_with("b_"));
            if metric_value(&replicas[leader].metrics().await, "nsguard_audit_leader") == 1.0 {
                break (leader, holder.to_owned());
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let follower = 1 - leader;
    // The holder's writes to the Lease fail from now on (its reads still succeed).
    replay
        .state
        .lock()
        .unwrap()
        .lease_write_faults
        .push((format!("nsguard-{holder}"), Fault::Unavailable));
    let lease = replay.lease("nsguard-system", "nsguard-audit").unwrap();
    let expires = lease_time(&lease, "renewTime") + 3.0;
    let gave_up = replicas[leader].wait_for_log(
        "no renewal seen in time; stopping before the lease can expire",
        Duration::from_secs(10),
    );
    let gave_up = logged_at(&gave_up);
    assert!(
        gave_up < expires,
        "stopped at {gave_up}, the lease expired at {expires}"
    );
    let took_over =
        replicas[follower].wait_for_log("now runs the background audit", Duration::from_secs(15));
    let took_over = logged_at(&took_over);
    assert!(
        took_over >= expires,
        "took over at {took_over}, before expiry at {expires}"
    );
    assert_eq!(
        metric_value(&replicas[leader].metrics().await, "nsguard_audit_leader"),
        0.0
    );
    // The cut-off replica stays a follower once its writes work again.
    replay.state.lock().unwrap().lease_write_faults.clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        metric_value(&replicas[leader].metrics().await, "nsguard_audit_leader"),
        0.0
    );
    assert_eq!(
        metric_value(&replicas[follower].metrics().await, "nsguard_audit_leader"),
        1.0
    );
}

/// Outside a cluster, without --lease-namespace, the background audit runs without a
/// lease, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_lease_namespace_the_audit_runs_alone_and_says_so() {
    let replay = Replay::start().await;
    two_stacks_in_the_recorded_namespace(&replay);
    let dir = tempfile::tempdir().unwrap();
    let server = live_server(&replay, &dir, &["--audit-interval", "300ms"]);
    server.wait_for_log("background audit without a lease", Duration::from_secs(10));
    server.wait_for_log("background audit done", Duration::from_secs(10));
    assert_eq!(
        metric_value(&server.metrics().await, "nsguard_audit_leader"),
        1.0
    );
    assert!(replay.state.lock().unwrap().lease_calls.is_empty());
}

/// Run `command` off the async runtime (the replay answers on it meanwhile).
async fn run(mut command: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// A sub-env's volumes follow it into its namespace, with the plan run by real kubectl
/// against an API server that binds claims as Kubernetes does (tests/common/volume_api.rs):
/// the dry run changes nothing; `before` keeps the Delete volume, stops the workload,
/// deletes the old claims and reserves both volumes for the new namespace; `after` stops
/// until the redeploy has made the new claims, then sees them bound to the old volumes and
/// puts the reclaim policy back. `nsguard migrate check` follows every state. The parent's
/// own claim is never touched; the unlabelled one is kept, not handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_plan_hands_the_volumes_over_through_kubectl() {
    use common::volume_api::create_claim;
    let replay = Replay::start().await;
    replay.add("wallet", "deployments", "wallet", &CURRENT);
    replay.add("wallet", "deployments", "wallet-tenant-a", &TENANT_A);
    let labels = |pairs: &[(&str, &str)]| -> serde_json::Value {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect()
    };
    for (claim, volume, policy, owner) in [
        ("data", "pv-data", "Delete", &TENANT_A[..]),
        ("cache", "pv-cache", "Retain", &TENANT_A[..]),
        ("wallet-db", "pv-wallet-db", "Delete", &CURRENT[..]),
        ("ledger", "pv-ledger", "Delete", &[][..]),
    ] {
        if !owner.is_empty() {
            replay.add("wallet", "persistentvolumeclaims", claim, owner);
        }
        replay.add_typed(
            "persistentvolumeclaims",
            serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": "wallet", "uid": format!("uid-{claim}"),
                    "labels": labels(owner)},
                "spec": {"volumeName": volume}, "status": {"phase": "Bound"}}),
        );
        replay.add_typed(
            "persistentvolumes",
            serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": volume},
                "spec": {"persistentVolumeReclaimPolicy": policy, "claimRef": {"kind": "PersistentVolumeClaim",
                    "namespace": "wallet", "name": claim, "uid": format!("uid-{claim}")}},
                "status": {"phase": "Bound"}}),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(&dir, &replay);
    let nsguard = |args: &[&str]| {
        let mut command = common::nsguard_cli(["migrate"]);
        command.args(args).arg("--kubeconfig").arg(&config);
        command
    };
    let check = || async {
        let out = run(nsguard(&["check", "-o", "json"])).await;
        let statuses: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let status = &statuses.as_array().unwrap()[0];
        let stages = common::claim_stages(status);
        (
            out.status.code(),
            status["state"].as_str().unwrap().to_owned(),
            stages,
            status.clone(),
        )
    };
    let volume = |name: &str| {
        replay.state.lock().unwrap().typed["persistentvolumes"]
            .iter()
            .find(|v| v["metadata"]["name"] == name)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let (code, state, stages, status) = check().await;
    assert_eq!((code, state.as_str()), (Some(1), "not-started"), "{status}");
    assert_eq!(stages, ["cache kept", "data not-started"]);
    let target = status["to"].as_str().unwrap().to_owned();
    let next = status["next"].as_str().unwrap();
    assert!(
        next.contains("nsguard migrate plan --stack wallet-tenant-a/tenant-a"),
        "{next}"
    );
    // The unlabelled ledger may be the sub-env's: keep it before anything else.
    assert!(
        next.contains("but first keep claim(s) ledger (volume pv-ledger) in wallet"),
        "{next}"
    );

    let script = |args: &[&str], name: &str| {
        let path = dir.path().join(name);
        let mut command = nsguard(&["plan"]);
        command.args(args);
        (command, path)
    };
    let sh = |path: &std::path::Path, stage: &str| {
        let mut command = std::process::Command::new("sh");
        command
            .arg(path)
            .arg(stage)
            .env("KUBECONFIG", &config)
            .env_remove("KUBERNETES_SERVICE_HOST");
        command
    };
    // The dry run: every line goes to the API server, nothing changes.
    let (plan, dry) = script(&[], "dry.sh");
    let out = run(plan).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&dry, &out.stdout).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("# claim wallet/ledger carries no stack labels"),
        "{text}"
    );
    assert!(
        !text.contains("wallet-db"),
        "the parent's claim is not the plan's: {text}"
    );
    let out = run(sh(&dry, "before")).await;
    assert!(
        out.status.success(),
        "{} {:?}",
        String::from_utf8_lossy(&out.stderr),
        replay.requests()
    );
    let before = replay.requests().len();
    assert_eq!(
        volume("pv-data")["spec"]["persistentVolumeReclaimPolicy"],
        "Delete"
    );
    assert_eq!(volume("pv-data")["status"]["phase"], "Bound");
    let writes: Vec<String> = replay
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PATCH") || r.starts_with("DELETE") || r.contains("/scale"))
        .collect();
    assert!(
        writes
            .iter()
            .any(|w| w == "DELETE /api/v1/namespaces/wallet/persistentvolumeclaims/data"),
        "{writes:?}"
    );
    assert!(
        writes
            .iter()
            .any(|w| w.contains("deployments/wallet-tenant-a/scale in wallet (dry run)")),
        "{writes:?}"
    );
    assert!(
        !writes.iter().any(|w| w.contains("deployments/wallet/")),
        "{writes:?}"
    );

    // Applied: `after` first, which stops (nothing to find yet), then `before`.
    let (plan, ready) = script(&["--apply-ready", "--restore-reclaim-policy"], "ready.sh");
    let out = run(plan).await;
    std::fs::write(&ready, &out.stdout).unwrap();
    let out = run(sh(&ready, "after")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "claim {target}/cache (the redeploy creates it) does not exist yet"
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(replay.requests().len() > before);
    let out = run(sh(&ready, "before")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["pv-data", "pv-cache"] {
        let pv = volume(name);
        assert_eq!(
            pv["spec"]["persistentVolumeReclaimPolicy"], "Retain",
            "{pv}"
        );
        assert_eq!(pv["status"]["phase"], "Available", "{pv}");
        assert_eq!(pv["spec"]["claimRef"]["namespace"], target.as_str(), "{pv}");
        assert!(pv["spec"]["claimRef"]["uid"].is_null(), "{pv}");
        assert_eq!(
            pv["metadata"]["annotations"]["nsguard.dev/migrate-to"],
            format!("{target}/{}", &name[3..])
        );
    }
    assert_eq!(
        volume("pv-data")["metadata"]["annotations"]["nsguard.dev/migrate-reclaim-policy"],
        "Delete"
    );
    // The unlabelled claim is kept where it is; the parent's is untouched.
    assert_eq!(
        volume("pv-ledger")["spec"]["persistentVolumeReclaimPolicy"],
        "Retain"
    );
    assert_eq!(volume("pv-ledger")["status"]["phase"], "Bound");
    assert_eq!(
        volume("pv-wallet-db")["spec"]["persistentVolumeReclaimPolicy"],
        "Delete"
    );
    assert_eq!(volume("pv-wallet-db")["status"]["phase"], "Bound");
    let (code, state, stages, status) = check().await;
    assert_eq!((code, state.as_str()), (Some(1), "handed-over"), "{status}");
    assert_eq!(stages, ["cache reserved", "data reserved"]);
    assert!(
        !status["next"].as_str().unwrap().contains("ledger"),
        "{status}"
    );
    assert!(
        status["next"]
            .as_str()
            .unwrap()
            .contains("forget the Namespace of wallet-tenant-a/tenant-a in its Pulumi state"),
        "{status}"
    );

    // The trap: a redeploy with simple-container 2026.5.12+ whose Namespace was not
    // forgotten in the Pulumi state re-creates the claim where it was, on a new volume.
    // `after` and `check` say so before anyone writes to the new volume.
    create_claim(&replay.state, "wallet", "cache", labels(&TENANT_A));
    replay.add("wallet", "persistentvolumeclaims", "cache", &TENANT_A);
    let out = run(sh(&ready, "after")).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nsguard: claim wallet/cache exists again: the redeploy did not move wallet-tenant-a/tenant-a")
            && stderr.contains("forget its Namespace in its Pulumi state"),
        "{stderr}"
    );
    let (code, state, stages, status) = check().await;
    assert_eq!((code, state.as_str()), (Some(1), "stuck"), "{status}");
    assert_eq!(stages, ["cache stuck", "data reserved"], "{status}");
    assert!(
        status.to_string().contains(
            "the redeploy did not move the sub-env: claim wallet/cache exists again (on volume"
        ),
        "{status}"
    );
    // The way out: the re-created claim and its new, empty volume go.
    {
        let mut state = replay.state.lock().unwrap();
        state
            .typed
            .get_mut("persistentvolumeclaims")
            .unwrap()
            .retain(|c| {
                !(c["metadata"]["namespace"] == "wallet" && c["metadata"]["name"] == "cache")
            });
        state
            .typed
            .get_mut("persistentvolumes")
            .unwrap()
            .retain(|v| {
                !(v["spec"]["claimRef"]["namespace"] == "wallet"
                    && v["spec"]["claimRef"]["name"] == "cache")
            });
        state
            .objects
            .get_mut(&("wallet".to_owned(), "persistentvolumeclaims".to_owned()))
            .unwrap()
            .retain(|o| o["name"] != "cache");
    }
    let (_, state, stages, status) = check().await;
    assert_eq!(state, "handed-over", "{status}");
    assert_eq!(stages, ["cache reserved", "data reserved"]);

    // The redeploy: the new claims in the sub-env's namespace, the Deployment moved.
    for claim in ["data", "cache"] {
        create_claim(&replay.state, &target, claim, labels(&TENANT_A));
        replay.add(&target, "persistentvolumeclaims", claim, &TENANT_A);
    }
    replay
        .state
        .lock()
        .unwrap()
        .objects
        .get_mut(&("wallet".to_owned(), "deployments".to_owned()))
        .unwrap()
        .retain(|o| o["name"] != "wallet-tenant-a");
    replay.add(&target, "deployments", "wallet-tenant-a", &TENANT_A);
    let out = run(sh(&ready, "after")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        volume("pv-data")["spec"]["persistentVolumeReclaimPolicy"],
        "Delete"
    );
    assert_eq!(
        volume("pv-cache")["spec"]["persistentVolumeReclaimPolicy"],
        "Retain"
    );
    for name in ["pv-data", "pv-cache"] {
        assert_eq!(volume(name)["status"]["phase"], "Bound");
    }
    let (code, state, stages, status) = check().await;
    assert_eq!((code, state.as_str()), (Some(0), "done"), "{status}");
    assert_eq!(stages, ["cache done", "data done"]);
}

/// A refused (non-dry-run) namespace delete is a Warning Event `DeleteDenied` on the
/// Namespace (in `default`, where kubectl describe finds a cluster-scoped object's), naming
/// who asked and the owners; a burst of refusals is one Event whose series counts them
/// (one create, a patch every few seconds), a dry run records nothing, and the Event is
/// valid under Kubernetes' own schema (kubernetes-validate, strict). An Event the API
/// server refuses is counted and logged; the answers do not change or wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_namespace_deletes_are_one_event_with_a_count() {
    let replay = Replay::start().await;
    two_stacks_in_the_recorded_namespace(&replay);
    let dir = tempfile::tempdir().unwrap();
    let server = live_server(&replay, &dir, &[]);
    let client = server.client();
    let refuse = |body: Vec<u8>| {
        let client = client.clone();
        async move {
            let resp = review(&client, server.addr, "/validate", body).await;
            assert_eq!(resp["response"]["allowed"], false, "{resp}");
        }
    };
    refuse(fixture("namespace-delete-dryrun.json")).await;
    for _ in 0..20 {
        refuse(fixture("namespace-delete.json")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        let counted = {
            let state = replay.state.lock().unwrap();
            state
                .events
                .first()
                .filter(|e| e["series"]["count"] == 20)
                .cloned()
        };
        if let Some(event) = counted {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}",
            replay.state.lock().unwrap().events
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let writes = replay.state.lock().unwrap().event_writes.clone();
    assert_eq!(
        writes.iter().filter(|w| w.starts_with("POST")).count(),
        1,
        "{writes:?}"
    );
    assert!(writes.len() <= 4, "{writes:?}");
    assert!(
        writes[0].starts_with("POST default/pay-space-wallet."),
        "{writes:?}"
    );
    assert_eq!(event["reason"], "DeleteDenied");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["action"], "Delete");
    assert_eq!(event["reportingController"], "nsguard.dev/namespace-guard");
    assert_eq!(
        event["regarding"],
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "name": "pay-space-wallet",
            "uid": "dd423ac0-c94a-458a-8e95-b942b8874aed"})
    );
    let note = event["note"].as_str().unwrap();
    assert!(
        note.starts_with("delete requested by admin refused: ")
            && note.contains("holds objects of 2 stacks"),
        "{note}"
    );
    // What the API server's schema says of it.
    let file = dir.path().join("event.json");
    std::fs::write(&file, event.to_string()).unwrap();
    let mut validate = std::process::Command::new("kubernetes-validate");
    validate
        .args(["--strict", "--kubernetes-version", "1.37"])
        .arg(&file);
    let validated = run(validate).await;
    assert!(
        validated.status.success(),
        "kubernetes-validate (on the PATH: tests/run.sh installs it): {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"nsguard_events_total{result="created"}"#),
        1.0
    );
    assert!(metric_value(&metrics, r#"nsguard_events_total{result="updated"}"#) >= 1.0);

    // The API server refuses Events now: counted and logged, the answers unchanged.
    replay.fault("events", Fault::Forbidden);
    replay.add("billing", "deployments", "wallet", &CURRENT);
    replay.add("billing", "deployments", "wallet-tenant-a", &TENANT_A);
    let billing = String::from_utf8(fixture("namespace-delete.json"))
        .unwrap()
        .replace("\"pay-space-wallet\"", "\"billing\"");
    let started = Instant::now();
    refuse(billing.into_bytes()).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    server.wait_for_log("could not write the Event", Duration::from_secs(15));
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"nsguard_events_total{result="failed"}"#),
        1.0
    );
}
