//! The namespace guard over HTTPS: real fixture reviews against `nsguard serve` reading
//! the example cluster dump.

mod common;

use common::{Server, fixture, review};
use serde_json::Value;

/// The fixture DELETE of `pay-space-wallet`, retargeted at another namespace.
fn delete_review(namespace: &str, annotations: Option<Value>) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture("namespace-delete.json")).unwrap();
    let request = &mut body["request"];
    request["name"] = namespace.into();
    request["namespace"] = namespace.into();
    request["oldObject"]["metadata"]["name"] = namespace.into();
    if let Some(annotations) = annotations {
        request["oldObject"]["metadata"]["annotations"] = annotations;
    }
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn deleting_the_shared_namespace_is_denied_with_owners_named() {
    let server = Server::start();
    let client = server.client();
    for name in ["namespace-delete.json", "namespace-delete-dryrun.json"] {
        let body = fixture(name);
        let resp = review(&client, server.addr, "/validate", body.clone()).await;
        let response = &resp["response"];
        assert_eq!(response["allowed"], false, "{name}: {resp}");
        assert_eq!(response["status"]["code"], 403);
        assert_eq!(response["status"]["reason"], "Forbidden");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(message.contains("holds objects of 3 stacks"), "{message}");
        assert!(
            message.contains("pay-space-wallet-tenant-a/tenant-a"),
            "{message}"
        );
    }
    // Every decision is an audit event, dry runs included.
    let audit: Vec<Value> = server
        .wait_for_logs("nsguard::audit", 2, std::time::Duration::from_secs(5))
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "nsguard::audit")
        .collect();
    assert_eq!(audit.len(), 2, "{:#?}", server.logs());
    assert_eq!(audit[0]["decision"], "denied");
    assert_eq!(audit[0]["reason"], "multiple-owners");
    assert_eq!(audit[0]["user"], "admin");
    assert_eq!(audit[0]["namespace"], "pay-space-wallet");
    assert_eq!(audit[1]["dry_run"], true);
    server
        .assert_metrics(&[
            r#"nsguard_admission_reviews_total{endpoint="validate",decision="denied"} 2"#,
        ])
        .await;
}

#[tokio::test]
async fn single_owner_empty_and_break_glass_deletes_are_allowed() {
    let server = Server::start();
    let client = server.client();
    for ns in ["pay-space-wallet-tenant-c", "scratch"] {
        let resp = review(&client, server.addr, "/validate", delete_review(ns, None)).await;
        assert_eq!(resp["response"]["allowed"], true, "{ns}: {resp}");
    }
    let glass = serde_json::json!({"nsguard.dev/allow-delete": "true"});
    let resp = review(
        &client,
        server.addr,
        "/validate",
        delete_review("pay-space-wallet", Some(glass)),
    )
    .await;
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
    server.wait_for_log("break-glass", std::time::Duration::from_secs(2));
}

#[tokio::test]
async fn the_mutating_endpoint_never_guards_deletes() {
    let server = Server::start();
    let resp = review(
        &server.client(),
        server.addr,
        "/mutate",
        fixture("mutating/namespace-delete.json"),
    )
    .await;
    assert_eq!(resp["response"]["allowed"], true);
}
