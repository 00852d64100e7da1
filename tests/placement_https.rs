//! Sub-env placement over HTTPS in every mode, with the AdmissionReview bodies a real
//! kube-apiserver sent for a sub-env deployed into its parent's shared namespace.

mod common;

use base64::Engine as _;
use common::{Server, fixture, review};
use serde_json::{Value, json};

const TARGET: &str = "pay-space-wallet-tenant-a";

fn server(mode: &str) -> Server {
    Server::builder().args(&["--placement-mode", mode]).start()
}

fn with_namespace(name: &str, namespace: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture(name)).unwrap();
    body["request"]["namespace"] = namespace.into();
    body["request"]["object"]["metadata"]["namespace"] = namespace.into();
    serde_json::to_vec(&body).unwrap()
}

fn with_labels(name: &str, labels: Value) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture(name)).unwrap();
    body["request"]["object"]["metadata"]["labels"] = labels;
    serde_json::to_vec(&body).unwrap()
}

const MISPLACED: [&str; 6] = [
    "deployment-create.json",
    "deployment-create-dryrun.json",
    "configmap-create.json",
    "secret-create.json",
    "service-create.json",
    "pod-create.json",
];

#[tokio::test]
async fn enforce_denies_misplaced_objects_with_the_target_and_the_fix() {
    let server = server("enforce");
    let client = server.client();
    for name in MISPLACED {
        let resp = review(&client, server.addr, "/validate", fixture(name)).await;
        let response = &resp["response"];
        assert_eq!(response["allowed"], false, "{name}: {resp}");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!(
                "belongs in namespace \"{TARGET}\", not \"pay-space-wallet\""
            )),
            "{message}"
        );
        assert!(
            message.contains("env \"tenant-a\"") && message.contains("parent-env \"production\""),
            "{message}"
        );
        assert!(message.contains("nsguard rewrite"), "{message}");
        // The mutating endpoint never denies or patches outside rewrite mode.
        let mutate = review(
            &client,
            server.addr,
            "/mutate",
            fixture(&format!("mutating/{name}")),
        )
        .await;
        assert_eq!(mutate["response"]["allowed"], true);
        assert!(mutate["response"].get("patch").is_none());
    }
    // Already in the target namespace: allowed, untouched.
    let placed = review(
        &client,
        server.addr,
        "/validate",
        with_namespace("deployment-create.json", TARGET),
    )
    .await;
    assert_eq!(placed["response"]["allowed"], true, "{placed}");
    // The Namespace of the sub-env itself is never judged.
    let ns = review(
        &client,
        server.addr,
        "/validate",
        fixture("namespace-create.json"),
    )
    .await;
    assert_eq!(ns["response"]["allowed"], true);
}

#[tokio::test]
async fn warn_allows_with_a_warning_kubectl_prints() {
    let server = server("warn");
    let client = server.client();
    for name in MISPLACED {
        let resp = review(&client, server.addr, "/validate", fixture(name)).await;
        assert_eq!(resp["response"]["allowed"], true, "{name}");
        let warnings = resp["response"]["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1);
        let warning = warnings[0].as_str().unwrap();
        assert!(
            warning.contains(TARGET) && warning.len() <= 256,
            "{warning}"
        );
    }
    server
        .assert_metrics(&[
            r#"nsguard_admission_reviews_total{endpoint="validate",decision="warned"} 6"#,
        ])
        .await;
}

#[tokio::test]
async fn rewrite_patches_only_the_namespace_on_mutate() {
    let server = server("rewrite");
    let client = server.client();
    for name in MISPLACED {
        let body = fixture(&format!("mutating/{name}"));
        let resp = review(&client, server.addr, "/mutate", body.clone()).await;
        let response = &resp["response"];
        assert_eq!(response["allowed"], true, "{name}");
        assert_eq!(response["patchType"], "JSONPatch", "{name}: {resp}");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(
            patch,
            json!([{"op": "replace", "path": "/metadata/namespace", "value": TARGET}]),
            "{name}"
        );

        // Applied to the object, the patch changes the namespace and nothing else.
        let request: Value = serde_json::from_slice(&body).unwrap();
        let mut object = request["request"]["object"].clone();
        let ops: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut object, &ops).unwrap();
        let mut expected = request["request"]["object"].clone();
        expected["metadata"]["namespace"] = TARGET.into();
        assert_eq!(object, expected);

        // /validate in rewrite mode does not deny.
        let validate = review(&client, server.addr, "/validate", fixture(name)).await;
        assert_eq!(validate["response"]["allowed"], true);
    }
}

#[tokio::test]
async fn standard_objects_and_off_mode_are_never_touched() {
    let parent = json!({"simple-container-com/app-name": "pay-space-wallet", "simple-container-com/env": "production"});
    let same_env = json!({"simple-container-com/app-name": "pay-space-wallet", "simple-container-com/env": "production", "simple-container-com/parent-env": "production"});
    for mode in ["enforce", "rewrite"] {
        let server = server(mode);
        let client = server.client();
        for labels in [&parent, &same_env] {
            for (path, name) in [
                ("/validate", "deployment-create.json"),
                ("/mutate", "mutating/deployment-create.json"),
            ] {
                let resp = review(
                    &client,
                    server.addr,
                    path,
                    with_labels(name, labels.clone()),
                )
                .await;
                assert_eq!(resp["response"]["allowed"], true, "{mode} {path}");
                assert!(resp["response"].get("patch").is_none(), "{mode} {path}");
                assert!(resp["response"].get("warnings").is_none(), "{mode} {path}");
            }
        }
    }
    let off = server("off");
    let resp = review(
        &off.client(),
        off.addr,
        "/validate",
        fixture("deployment-create.json"),
    )
    .await;
    assert_eq!(resp["response"]["allowed"], true);
    assert!(resp["response"].get("warnings").is_none());
}

#[tokio::test]
async fn controller_owned_and_opted_out_objects_are_exempt() {
    let server = server("enforce");
    let client = server.client();
    let mut owned: Value = serde_json::from_slice(&fixture("pod-create.json")).unwrap();
    owned["request"]["object"]["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true
    }]);
    let resp = review(
        &client,
        server.addr,
        "/validate",
        serde_json::to_vec(&owned).unwrap(),
    )
    .await;
    assert_eq!(resp["response"]["allowed"], true, "{resp}");

    let mut skip: Value = serde_json::from_slice(&fixture("deployment-create.json")).unwrap();
    skip["request"]["object"]["metadata"]["annotations"] =
        json!({"nsguard.dev/skip-placement": "true"});
    let resp = review(
        &client,
        server.addr,
        "/validate",
        serde_json::to_vec(&skip).unwrap(),
    )
    .await;
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
}

/// A webhook must never stop an object that exists from changing or going away: the
/// UPDATE of a misplaced object (a label, a rollout restart, a finalizer removed so a
/// foreground deletion can finish) is allowed untouched in every mode, and an object
/// already being deleted is never judged.
#[tokio::test]
async fn updates_and_objects_being_deleted_are_never_judged() {
    let mut finalizer_removed: Value =
        serde_json::from_slice(&fixture("deployment-update.json")).unwrap();
    finalizer_removed["request"]["object"]["metadata"]["deletionTimestamp"] =
        "2026-11-30T12:00:00Z".into();
    finalizer_removed["request"]["object"]["metadata"]["finalizers"] = json!([]);
    finalizer_removed["request"]["oldObject"]["metadata"]["finalizers"] =
        json!(["foregroundDeletion"]);
    let mut create_being_deleted: Value =
        serde_json::from_slice(&fixture("deployment-create.json")).unwrap();
    create_being_deleted["request"]["object"]["metadata"]["deletionTimestamp"] =
        "2026-11-30T12:00:00Z".into();
    let bodies = [
        ("update", fixture("deployment-update.json")),
        (
            "finalizer removed",
            serde_json::to_vec(&finalizer_removed).unwrap(),
        ),
        (
            "being deleted",
            serde_json::to_vec(&create_being_deleted).unwrap(),
        ),
    ];
    for mode in ["enforce", "warn", "rewrite"] {
        let server = server(mode);
        let client = server.client();
        for (what, body) in &bodies {
            for path in ["/validate", "/mutate"] {
                let resp = review(&client, server.addr, path, body.clone()).await;
                let response = &resp["response"];
                assert_eq!(response["allowed"], true, "{mode} {path} {what}: {resp}");
                assert!(response.get("patch").is_none(), "{mode} {path} {what}");
                assert!(response.get("warnings").is_none(), "{mode} {path} {what}");
            }
        }
    }
}
