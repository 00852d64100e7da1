//! The volume guard over HTTPS against the replayed API server: every rule that refuses a
//! claim's create or delete, every case it lets through, dry runs answered alike and never
//! recorded, the lookup's failures refused with the reason named, and the CLI giving the
//! webhook's answer (live and from a dump). The real control plane's scenarios are in
//! tests/real_cluster.rs.

mod common;

use std::time::Duration;

use common::replay::{Fault, Replay};
use common::{Cluster, Server, fixture, nsguard_cli, review};
use serde_json::{Value, json};

/// A sub-env's labels in one generation (0 current, 1 the one-day keys, 2 legacy).
fn sub_env(app: &str, env: &str, generation: usize) -> Value {
    let (a, e, p) = [
        (
            "simple-container-com/app-name",
            "simple-container-com/env",
            "simple-container-com/parent-env",
        ),
        (
            "simple-container.com/app-name",
            "simple-container.com/env",
            "simple-container.com/parent-env",
        ),
        ("appName", "appEnv", "simplecontainer.com/parent-env"),
    ][generation];
    json!({a: app, e: env, p: "production"})
}

/// A claim as the API server holds it: Bound to `volume`, or Pending without one.
fn claim(namespace: &str, labels: &Value, volume: Option<&str>) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": namespace, "labels": labels,
            "uid": format!("uid-{namespace}-data")},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": volume},
        "status": {"phase": if volume.is_some() { "Bound" } else { "Pending" }}})
}

/// The generic ephemeral volume `scratch` of Pod `web-7f9c-x2k4p`, as Kubernetes'
/// ephemeral-volume controller makes it from the Pod's `volumeClaimTemplate`: named
/// `<pod>-<volume>`, the Pod its controlling owner, the sub-env's labels copied on it (as
/// simple-container writes the template), Bound to `pv-scratch`.
fn ephemeral_claim(namespace: &str, labels: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "web-7f9c-x2k4p-scratch", "namespace": namespace, "labels": labels,
            "uid": "uid-scratch",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web-7f9c-x2k4p",
                "uid": "uid-pod", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-scratch"},
        "status": {"phase": "Bound"}})
}

/// A volume: its policy, and the claim it is bound to (`uid` set) or reserved for.
fn volume(name: &str, policy: &str, claim_ref: (&str, Option<&str>)) -> Value {
    let (namespace, uid) = claim_ref;
    json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"persistentVolumeReclaimPolicy": policy,
            "claimRef": {"kind": "PersistentVolumeClaim", "namespace": namespace, "name": "data", "uid": uid}},
        "status": {"phase": if uid.is_some() { "Bound" } else { "Available" }}})
}

/// The AdmissionReview of a claim's CREATE or DELETE, in the fixtures' wire form.
fn claim_review(operation: &str, claim: &Value, dry_run: bool) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture("configmap-create.json")).unwrap();
    let request = &mut body["request"];
    let gvk = json!({"group": "", "version": "v1", "kind": "PersistentVolumeClaim"});
    let gvr = json!({"group": "", "version": "v1", "resource": "persistentvolumeclaims"});
    request["kind"] = gvk.clone();
    request["requestKind"] = gvk;
    request["resource"] = gvr.clone();
    request["requestResource"] = gvr;
    request["name"] = claim["metadata"]["name"].clone();
    request["namespace"] = claim["metadata"]["namespace"].clone();
    request["operation"] = operation.into();
    request["dryRun"] = dry_run.into();
    if operation == "DELETE" {
        request["object"] = Value::Null;
        request["oldObject"] = claim.clone();
        request["options"] = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"});
    } else {
        let mut new = claim.clone();
        new["metadata"].as_object_mut().unwrap().remove("uid");
        new["spec"].as_object_mut().unwrap().remove("volumeName");
        new.as_object_mut().unwrap().remove("status");
        request["object"] = new;
        request["oldObject"] = Value::Null;
    }
    serde_json::to_vec(&body).unwrap()
}

/// The cluster: one sub-env per case (each its claims named `data`, so the lookup must
/// tell them apart by their labels), and a standard stack's claim. Claims, volumes, and the
/// namespaces beyond those holding claims.
fn cluster_objects() -> (Vec<Value>, Vec<Value>, Vec<&'static str>) {
    let current = |app: &str, env| sub_env(app, env, 0);
    let claims = vec![
        // strands: Bound to a Delete volume in its parent's namespace; its namespace exists.
        claim("shop", &current("shop-a", "a"), Some("pv-a")),
        // Retain: the data would stay behind; its delete is allowed.
        claim("shop2", &current("shop-b", "b"), Some("pv-b")),
        // A teardown: a Delete volume, and no namespace to move to.
        claim("shop3", &current("shop-d", "d"), Some("pv-d")),
        // Legacy labels on the old claim; the new one carries the current keys.
        claim("shop4", &sub_env("shop-e", "e", 2), Some("pv-e")),
        // Already in its own namespace, on a Delete volume.
        claim("shop-f", &current("shop-f", "f"), Some("pv-f")),
        // Only Pending where it was: no data yet.
        claim("shop5", &current("shop-g", "g"), None),
        // A standard stack's claim `data` in another namespace: not any sub-env's.
        claim(
            "shop-a-too",
            &json!({"simple-container-com/app-name": "shop-a", "simple-container-com/env": "a"}),
            Some("pv-z"),
        ),
        // A Pod's generic ephemeral volume, of the sub-env that moves out of shop.
        ephemeral_claim("shop", &current("shop-a", "a")),
    ];
    let volumes = vec![
        volume("pv-a", "Delete", ("shop", Some("uid-a"))),
        volume("pv-b", "Retain", ("shop2", Some("uid-b"))),
        // The plan's `before` ran for shop-c/c: no old claim, the volume reserved for the
        // target's claim.
        volume("pv-c", "Retain", ("shop-c", None)),
        volume("pv-d", "Delete", ("shop3", Some("uid-d"))),
        volume("pv-e", "Delete", ("shop4", Some("uid-e"))),
        volume("pv-f", "Delete", ("shop-f", Some("uid-f"))),
        volume("pv-z", "Delete", ("shop-a-too", Some("uid-z"))),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-scratch"},
            "spec": {"persistentVolumeReclaimPolicy": "Delete",
                "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "shop",
                    "name": "web-7f9c-x2k4p-scratch", "uid": "uid-scratch"}},
            "status": {"phase": "Bound"}}),
    ];
    (
        claims,
        volumes,
        vec!["shop-a", "shop-b", "shop-c", "shop-new", "shop-e"],
    )
}

fn cluster(replay: &Replay) {
    let (claims, volumes, namespaces) = cluster_objects();
    for claim in claims {
        replay.add_typed("persistentvolumeclaims", claim);
    }
    for volume in volumes {
        replay.add_typed("persistentvolumes", volume);
    }
    for namespace in namespaces {
        replay.add_namespace(namespace, &[], "2026-12-01T00:00:00Z");
    }
}

/// The same cluster as a dump file (`kubectl get ... -A -o json`), every namespace listed.
fn cluster_dump(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let (claims, volumes, namespaces) = cluster_objects();
    let mut names: std::collections::BTreeSet<String> =
        namespaces.into_iter().map(str::to_owned).collect();
    names.extend(
        claims
            .iter()
            .map(|c| c["metadata"]["namespace"].as_str().unwrap().to_owned()),
    );
    let mut items: Vec<Value> = names
        .into_iter()
        .map(|name| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .collect();
    items.extend(claims);
    items.extend(volumes);
    let path = dir.path().join("dump.json");
    std::fs::write(
        &path,
        json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )
    .unwrap();
    path
}

/// The replay holding [`cluster`], a kubeconfig for it in a temporary directory, and
/// `nsguard serve` with `args` reading it.
async fn served(args: &[&str]) -> (Replay, tempfile::TempDir, Server) {
    let replay = Replay::start().await;
    cluster(&replay);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .cluster(Cluster::Kubeconfig(replay.kubeconfig(dir.path())))
        .args(args)
        .start();
    (replay, dir, server)
}

/// The server's answer to one review on `/volume-guard`.
async fn ask(server: &Server, body: Vec<u8>) -> Value {
    review(&server.client(), server.addr, "/volume-guard", body).await
}

/// What the server answered: allowed, the status code, the message.
fn answer(reply: &Value) -> (bool, u64, String) {
    let response = &reply["response"];
    (
        response["allowed"].as_bool().unwrap(),
        response["status"]["code"].as_u64().unwrap_or(0),
        response["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_and_every_allowed_case_over_https() {
    let (replay, _dir, server) = served(&[
        "--exempt-user",
        "break-glass-bot",
        "--exempt-group",
        "storage-admins",
    ])
    .await;
    let current = |app: &str, env| sub_env(app, env, 0);
    // (operation, claim, refused: the reason and what the message says)
    let refused: [(&str, Value, &str, &[&str]); 5] = [
        (
            "CREATE",
            claim("shop-a", &current("shop-a", "a"), None),
            "strands-data",
            &[
                "refusing to create claim shop-a/data",
                "claim shop/data (volume pv-a)",
                "destroys volume pv-a and the data on it (reclaim policy Delete)",
                "`nsguard migrate plan --stack shop-a/a`",
            ],
        ),
        (
            "CREATE",
            claim("shop-b", &current("shop-b", "b"), None),
            "strands-data",
            &[
                "claim shop2/data (volume pv-b)",
                "stays behind on volume pv-b (reclaim policy Retain)",
            ],
        ),
        (
            "CREATE",
            claim("shop", &current("shop-c", "c"), None),
            "not-moved",
            &[
                "volume pv-c",
                "handed over to shop-c/data",
                "Forget its Namespace in its Pulumi state",
            ],
        ),
        (
            // Another label generation: the same sub-env all the same.
            "CREATE",
            claim("shop-e", &current("shop-e", "e"), None),
            "strands-data",
            &["claim shop4/data (volume pv-e)"],
        ),
        (
            "DELETE",
            claim("shop", &current("shop-a", "a"), Some("pv-a")),
            "destroys-data",
            &[
                "refusing to delete claim shop/data",
                "moving to namespace shop-a",
                "destroy volume pv-a",
                "kubectl annotate pvc -n shop data nsguard.dev/allow-delete=true",
            ],
        ),
    ];
    for (operation, object, _, needles) in &refused {
        for dry_run in [true, false] {
            let reply = ask(&server, claim_review(operation, object, dry_run)).await;
            let (allowed, code, message) = answer(&reply);
            assert!(!allowed, "{operation} {object}: {reply}");
            assert_eq!(code, 409, "{reply}");
            assert_eq!(reply["response"]["status"]["reason"], "Conflict");
            for needle in *needles {
                assert!(message.contains(needle), "{needle:?} not in {message}");
            }
        }
    }
    let mut labelled_break_glass = claim("shop", &current("shop-a", "a"), Some("pv-a"));
    labelled_break_glass["metadata"]["annotations"] = json!({"nsguard.dev/allow-delete": "true"});
    let allowed: [(&str, Value); 9] = [
        // The planned move: the volume is handed over to this claim.
        ("CREATE", claim("shop-c", &current("shop-c", "c"), None)),
        // A first deploy: nothing of the sub-env anywhere.
        (
            "CREATE",
            claim("shop-new", &current("shop-new", "new"), None),
        ),
        // The old claim holds no data yet.
        ("CREATE", claim("shop-g", &current("shop-g", "g"), None)),
        // A claim without a sub-env's labels.
        (
            "CREATE",
            claim(
                "shop-a",
                &json!({"simple-container-com/app-name": "shop-a", "simple-container-com/env": "a"}),
                None,
            ),
        ),
        // A teardown: no namespace to move to.
        (
            "DELETE",
            claim("shop3", &current("shop-d", "d"), Some("pv-d")),
        ),
        // Retain: the volume outlives the claim.
        (
            "DELETE",
            claim("shop2", &current("shop-b", "b"), Some("pv-b")),
        ),
        // Already in its own namespace.
        (
            "DELETE",
            claim("shop-f", &current("shop-f", "f"), Some("pv-f")),
        ),
        // The break-glass annotation.
        ("DELETE", labelled_break_glass),
        // Not Bound.
        ("DELETE", claim("shop5", &current("shop-g", "g"), None)),
    ];
    for (operation, object) in &allowed {
        let reply = ask(&server, claim_review(operation, object, false)).await;
        assert!(answer(&reply).0, "{operation} {object}: {reply}");
    }
    // An exempt user, and a member of an exempt group, pass without a lookup.
    let before = replay.request_count();
    for (field, value) in [
        ("username", json!("break-glass-bot")),
        ("groups", json!(["system:authenticated", "storage-admins"])),
    ] {
        let mut body: Value =
            serde_json::from_slice(&claim_review("DELETE", &refused[4].1, false)).unwrap();
        body["request"]["userInfo"][field] = value;
        let reply = ask(&server, serde_json::to_vec(&body).unwrap()).await;
        assert!(answer(&reply).0, "{field}: {reply}");
    }
    assert_eq!(
        replay.request_count(),
        before,
        "an exemption asks the API server nothing"
    );
    // A name that no claim can have never reaches the lookup's field selector (it would
    // narrow the list to nothing and let the move through): 400, before any API call.
    let before = replay.request_count();
    let mut forged: Value =
        serde_json::from_slice(&claim_review("CREATE", &refused[0].1, false)).unwrap();
    forged["request"]["name"] = "data,metadata.namespace=elsewhere".into();
    let reply = ask(&server, serde_json::to_vec(&forged).unwrap()).await;
    let (allowed, code, message) = answer(&reply);
    assert!(!allowed && code == 400, "{reply}");
    assert!(message.contains("DNS-1123 subdomain"), "{message}");
    assert_eq!(replay.request_count(), before);
    // Updates and other resources sent there are not the volume guard's.
    let mut update: Value =
        serde_json::from_slice(&claim_review("CREATE", &refused[0].1, false)).unwrap();
    update["request"]["operation"] = "UPDATE".into();
    let reply = ask(&server, serde_json::to_vec(&update).unwrap()).await;
    assert!(answer(&reply).0, "{reply}");

    // One Warning Event per real refusal (none for the dry runs), in the claim's namespace.
    let written = common::control_plane::poll(Duration::from_secs(10), || {
        let events = replay.state.lock().unwrap().events.clone();
        (events.len() >= refused.len()).then_some(events)
    })
    .expect("the Events written");
    assert_eq!(written.len(), refused.len(), "{written:#?}");
    for ((operation, object, ..), event) in refused.iter().zip(&written) {
        let namespace = &object["metadata"]["namespace"];
        assert_eq!(&event["metadata"]["namespace"], namespace, "{event:#}");
        assert_eq!(event["regarding"]["kind"], "PersistentVolumeClaim");
        assert_eq!(&event["regarding"]["namespace"], namespace);
        let reason = if *operation == "CREATE" {
            "CreateDenied"
        } else {
            "DeleteDenied"
        };
        assert_eq!(event["reason"], reason, "{event:#}");
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reportingController"], "nsguard.dev/volume-guard");
    }
    // Every decision counted by operation and reason, and one audit line each.
    server
        .assert_metrics(&[
            r#"nsguard_volume_guard_decisions_total{operation="create",reason="strands-data"} 6"#,
            r#"nsguard_volume_guard_decisions_total{operation="create",reason="not-moved"} 2"#,
            r#"nsguard_volume_guard_decisions_total{operation="delete",reason="destroys-data"} 2"#,
            r#"nsguard_volume_guard_decisions_total{operation="create",reason="allowed"} 4"#,
            r#"nsguard_volume_guard_decisions_total{operation="delete",reason="allowed"} 4"#,
            r#"nsguard_volume_guard_decisions_total{operation="delete",reason="exempt"} 3"#,
            // The ten refusals and the forged name.
            r#"nsguard_admission_reviews_total{endpoint="volume-guard",decision="denied"} 11"#,
        ])
        .await;
    let audit: Vec<Value> = server
        .wait_for_logs("\"event\":\"claim\"", 21, Duration::from_secs(5))
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "claim")
        .collect();
    assert_eq!(audit.len(), 21, "{:#?}", server.logs());
    // A handful of calls each: a create lists the claims of that name and the volumes; a
    // delete lists the claims, gets the Namespace and the claim's volume. (The first
    // review is a dry-run create; the ninth, a dry-run delete.)
    assert_eq!(audit[0]["api_calls"], 2, "{:#}", audit[0]);
    assert_eq!(audit[8]["operation"], "delete", "{:#}", audit[8]);
    assert_eq!(audit[8]["api_calls"], 3, "{:#}", audit[8]);
    let first = &audit[0];
    assert_eq!(
        (
            &first["operation"],
            &first["namespace"],
            &first["stack"],
            &first["target_namespace"],
            &first["decision"],
            &first["reason"],
            &first["dry_run"]
        ),
        (
            &json!("create"),
            &json!("shop-a"),
            &json!("shop-a/a"),
            &json!("shop-a"),
            &json!("denied"),
            &json!("strands-data"),
            &json!(true)
        ),
        "{first:#}"
    );
}

/// A Pod's generic ephemeral volume comes and goes with the Pod: the ephemeral-volume
/// controller's create and the garbage collector's delete pass in the middle of a move,
/// without a lookup, counted under `ephemeral`, with no Event. Only a Pod that controls the
/// claim makes it so: the same delete with the Pod as a mere owner, or another controller,
/// is judged and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_volumes_claim_comes_and_goes_with_its_pod() {
    let (replay, _dir, server) = served(&[]).await;
    let scratch = ephemeral_claim("shop", &sub_env("shop-a", "a", 0));
    // The volume guard's reads (the server's own start-up reads go on beside them): the
    // claims of one name, the sub-env's Namespace, a claim's volume.
    let lookups = || {
        (replay.requests().iter())
            .filter(|r| {
                r.contains("fieldSelector=metadata.name")
                    || r.starts_with("/api/v1/namespaces/shop-a")
                    || r.starts_with("/api/v1/persistentvolumes/")
            })
            .count()
    };
    let before = lookups();
    for (operation, user) in [
        (
            "CREATE",
            "system:serviceaccount:kube-system:ephemeral-volume-controller",
        ),
        (
            "DELETE",
            "system:serviceaccount:kube-system:generic-garbage-collector",
        ),
    ] {
        for dry_run in [true, false] {
            let mut body: Value =
                serde_json::from_slice(&claim_review(operation, &scratch, dry_run)).unwrap();
            body["request"]["userInfo"]["username"] = user.into();
            let reply = ask(&server, serde_json::to_vec(&body).unwrap()).await;
            assert!(answer(&reply).0, "{operation}: {reply}");
        }
    }
    assert_eq!(
        lookups(),
        before,
        "an ephemeral volume's claim asks the API server nothing"
    );
    // The claim `data` of the same sub-env, Bound to the Delete volume pv-a while the
    // sub-env's namespace exists: its delete destroys data, whatever else owns it.
    let data = claim("shop", &sub_env("shop-a", "a", 0), Some("pv-a"));
    for owner in [
        json!({"apiVersion": "v1", "kind": "Pod", "name": "web-7f9c-x2k4p", "uid": "u",
            "controller": false}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u",
            "controller": true}),
    ] {
        let mut owned = data.clone();
        owned["metadata"]["ownerReferences"] = json!([owner]);
        let reply = ask(&server, claim_review("DELETE", &owned, true)).await;
        let (allowed, code, message) = answer(&reply);
        assert!(!allowed && code == 409, "{owner}: {reply}");
        assert!(message.contains("destroy volume pv-a"), "{message}");
    }
    let mut ephemeral_data = data.clone();
    ephemeral_data["metadata"]["ownerReferences"] = scratch["metadata"]["ownerReferences"].clone();
    let reply = ask(&server, claim_review("DELETE", &ephemeral_data, true)).await;
    assert!(answer(&reply).0, "{reply}");
    server
        .assert_metrics(&[
            r#"nsguard_volume_guard_decisions_total{operation="create",reason="ephemeral"} 2"#,
            r#"nsguard_volume_guard_decisions_total{operation="delete",reason="ephemeral"} 3"#,
            r#"nsguard_volume_guard_decisions_total{operation="delete",reason="destroys-data"} 2"#,
        ])
        .await;
    let audit: Vec<Value> = server
        .wait_for_logs("\"event\":\"claim\"", 7, Duration::from_secs(5))
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "claim")
        .collect();
    let ephemeral: Vec<&Value> = audit
        .iter()
        .filter(|v| v["reason"] == "ephemeral")
        .collect();
    assert_eq!(ephemeral.len(), 5, "{audit:#?}");
    for line in ephemeral {
        assert_eq!(
            (&line["decision"], &line["api_calls"], &line["stack"]),
            (&json!("allowed"), &json!(0), &json!("shop-a/a")),
            "{line:#}"
        );
    }
    // Nothing refused for real: no Event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(replay.state.lock().unwrap().events.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_that_fails_refuses_naming_why() {
    let (replay, _dir, server) = served(&["--lookup-timeout", "2s"]).await;
    let first_deploy = claim("shop-new", &sub_env("shop-new", "new", 0), None);
    for (plural, fault, said) in [
        ("persistentvolumeclaims", Fault::Forbidden, "403"),
        ("persistentvolumeclaims", Fault::Unavailable, "503"),
        ("persistentvolumes", Fault::ServerError, "500"),
        ("persistentvolumeclaims", Fault::Hang, "no answer within 2"),
    ] {
        replay.clear_faults();
        replay.fault(plural, fault.clone());
        let started = std::time::Instant::now();
        let reply = ask(&server, claim_review("CREATE", &first_deploy, false)).await;
        let (allowed, code, message) = answer(&reply);
        assert!(!allowed && code == 409, "{fault:?}: {reply}");
        assert!(
            message.contains("cannot tell whether creating claim shop-new/data of sub-env shop-new/new loses its data")
                && message.contains(said),
            "{fault:?}: {message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{fault:?}: {:?}",
            started.elapsed()
        );
    }
    replay.clear_faults();
    let reply = ask(&server, claim_review("CREATE", &first_deploy, false)).await;
    assert!(answer(&reply).0, "recovered: {reply}");
    server
        .assert_metrics(&[
            r#"nsguard_volume_guard_decisions_total{operation="create",reason="lookup-failed"} 4"#,
        ])
        .await;
}

/// The volume guard's lookups at once are bounded (`--max-concurrent-lookups`): past it, a
/// review waits for a turn within its own deadline, and is refused when that passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_lookups_at_once_are_bounded() {
    let (replay, _dir, server) =
        served(&["--lookup-timeout", "2s", "--max-concurrent-lookups", "1"]).await;
    replay.fault("persistentvolumeclaims", Fault::Hang);
    let body = || {
        claim_review(
            "CREATE",
            &claim("shop-new", &sub_env("shop-new", "new", 0), None),
            false,
        )
    };
    let lists = || {
        replay
            .requests()
            .iter()
            .filter(|r| r.contains("fieldSelector=metadata.name"))
            .count()
    };
    let both = tokio::spawn({
        let server_addr = server.addr;
        let client = server.client();
        let (a, b) = (body(), body());
        async move {
            tokio::join!(
                review(&client, server_addr, "/volume-guard", a),
                review(&client, server_addr, "/volume-guard", b)
            )
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lists(), 1, "one lookup at a time: {:#?}", replay.requests());
    let (first, second) = both.await.unwrap();
    for reply in [first, second] {
        let (allowed, code, message) = answer(&reply);
        assert!(!allowed && code == 409, "{reply}");
        assert!(message.contains("(fail closed)"), "{message}");
    }
}

/// `nsguard can-create-claim` and `can-delete-claim` against the replay and the same
/// cluster as a dump: the webhook's answer, exit 1 refused, 0 allowed, 2 no such claim or
/// a failed lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_gives_the_webhooks_answer() {
    let replay = Replay::start().await;
    cluster(&replay);
    let dir = tempfile::tempdir().unwrap();
    let config = replay.kubeconfig(dir.path());
    let config = config.to_str().unwrap();
    let manifest = dir.path().join("claim.yaml");
    let mut new = claim("shop-a", &sub_env("shop-a", "a", 0), None);
    new["metadata"].as_object_mut().unwrap().remove("namespace");
    std::fs::write(&manifest, serde_json::to_string(&new).unwrap()).unwrap();
    let run = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["--kubeconfig", config]);
        nsguard_cli(&full).output().unwrap()
    };
    let created = run(&[
        "can-create-claim",
        "-f",
        manifest.to_str().unwrap(),
        "-n",
        "shop-a",
    ]);
    let said = String::from_utf8_lossy(&created.stdout);
    assert_eq!(created.status.code(), Some(1), "{said}");
    assert!(
        said.contains("refusing to create claim shop-a/data") && said.contains("volume pv-a"),
        "{said}"
    );
    let forged = dir.path().join("forged.json");
    let mut bad = new.clone();
    bad["metadata"]["name"] = "data,metadata.namespace=elsewhere".into();
    std::fs::write(&forged, bad.to_string()).unwrap();
    let refused = run(&[
        "can-create-claim",
        "-f",
        forged.to_str().unwrap(),
        "-n",
        "shop-a",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("DNS-1123 subdomain"));
    let created = run(&[
        "can-create-claim",
        "-f",
        manifest.to_str().unwrap(),
        "-n",
        "shop-new",
        "-o",
        "json",
    ]);
    assert_eq!(
        created.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let decisions: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(decisions[0]["allowed"], true);
    assert_eq!(decisions[0]["reason"], "allowed");
    // The claim's labels are read from the cluster for a delete.
    let deleted = run(&["can-delete-claim", "data", "-n", "shop", "-o", "json"]);
    let decisions: Value = serde_json::from_slice(&deleted.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&deleted.stderr)));
    assert_eq!(deleted.status.code(), Some(1), "{decisions:#}");
    assert_eq!(decisions[0]["reason"], "destroys-data");
    assert_eq!(decisions[0]["volume"], "pv-a");
    let deleted = run(&["can-delete-claim", "data", "-n", "shop3"]);
    assert_eq!(
        deleted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&deleted.stdout)
    );
    // A Pod's ephemeral volume: its controlling owner is read from the cluster too.
    let scratch = run(&[
        "can-delete-claim",
        "web-7f9c-x2k4p-scratch",
        "-n",
        "shop",
        "-o",
        "json",
    ]);
    let decisions: Value = serde_json::from_slice(&scratch.stdout).unwrap();
    assert_eq!(scratch.status.code(), Some(0), "{decisions:#}");
    assert_eq!(decisions[0]["reason"], "ephemeral");
    assert_eq!(decisions[0]["pod"], "web-7f9c-x2k4p");
    let ephemeral_manifest = dir.path().join("ephemeral.json");
    std::fs::write(
        &ephemeral_manifest,
        ephemeral_claim("shop", &sub_env("shop-a", "a", 0)).to_string(),
    )
    .unwrap();
    let created = run(&[
        "can-create-claim",
        "-f",
        ephemeral_manifest.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&created.stdout);
    assert_eq!(created.status.code(), Some(0), "{said}");
    assert!(
        said.contains("is the generic ephemeral volume of Pod web-7f9c-x2k4p"),
        "{said}"
    );
    let missing = run(&["can-delete-claim", "nope", "-n", "shop"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("claim shop/nope does not exist"));
    replay.fault("persistentvolumeclaims", Fault::Forbidden);
    let failed = run(&[
        "can-create-claim",
        "-f",
        manifest.to_str().unwrap(),
        "-n",
        "shop-new",
    ]);
    assert_eq!(
        failed.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&failed.stdout)
    );

    // The same cluster as a dump: the same answers.
    let dump = cluster_dump(&dir);
    let dump = dump.to_str().unwrap();
    for (args, code, reason) in [
        (
            vec![
                "can-create-claim",
                "-f",
                manifest.to_str().unwrap(),
                "-n",
                "shop-a",
            ],
            1,
            "strands-data",
        ),
        (
            vec![
                "can-create-claim",
                "-f",
                manifest.to_str().unwrap(),
                "-n",
                "shop-new",
            ],
            0,
            "allowed",
        ),
        (
            vec!["can-delete-claim", "data", "-n", "shop"],
            1,
            "destroys-data",
        ),
        (
            vec!["can-delete-claim", "data", "-n", "shop3"],
            0,
            "allowed",
        ),
        (
            vec!["can-delete-claim", "data", "-n", "shop2"],
            0,
            "allowed",
        ),
        (
            vec!["can-delete-claim", "web-7f9c-x2k4p-scratch", "-n", "shop"],
            0,
            "ephemeral",
        ),
    ] {
        let mut full = args.clone();
        full.extend(["--cluster-dump", dump, "-o", "json"]);
        let out = nsguard_cli(&full).output().unwrap();
        let decisions: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(out.status.code(), Some(code), "{args:?}: {decisions:#}");
        assert_eq!(decisions[0]["reason"], reason, "{args:?}: {decisions:#}");
    }
}
