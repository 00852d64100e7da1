//! The HTTPS server, end to end: the real binary on a loopback port, a real TLS client.

mod common;

use std::time::Duration;

use common::{HttpsClient, Server, all_fixtures, closed_within, fixture, review};
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn uid_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["request"]["uid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_fixture_review_gets_its_uid_back_on_both_endpoints() {
    let server = Server::start();
    let client = server.client();
    let fixtures = all_fixtures();
    assert!(fixtures.len() >= 20, "fixtures missing: {}", fixtures.len());
    for (name, body) in fixtures {
        for path in ["/validate", "/mutate"] {
            let resp = review(&client, server.addr, path, body.clone()).await;
            assert_eq!(resp["apiVersion"], "admission.k8s.io/v1", "{name} {path}");
            assert_eq!(resp["kind"], "AdmissionReview", "{name} {path}");
            assert_eq!(resp["response"]["uid"], uid_of(&body), "{name} {path}");
            assert!(resp["response"]["allowed"].is_boolean(), "{name} {path}");
            assert!(
                resp.get("request").is_none(),
                "{name} {path}: request echoed back"
            );
        }
    }
}

/// (what, method, path, content type, body, expected status, text the message must hold)
type BadInput = (
    &'static str,
    Method,
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    StatusCode,
    &'static str,
);

/// Each bad input gets its precise status and message, and a good review still works
/// right after it on a new connection.
#[tokio::test]
async fn bad_inputs_get_precise_answers_and_the_server_keeps_serving() {
    let server = Server::builder()
        .args(&["--max-body-bytes", "65536"])
        .start();
    let client = server.client();
    let good = fixture("configmap-create.json");
    let cases: Vec<BadInput> = vec![
        ("malformed json", Method::POST, "/validate", Some("application/json"), b"{\"kind\":".to_vec(), StatusCode::BAD_REQUEST, "not valid JSON"),
        ("empty body", Method::POST, "/validate", Some("application/json"), Vec::new(), StatusCode::BAD_REQUEST, "not valid JSON"),
        ("json array", Method::POST, "/mutate", Some("application/json"), b"[]".to_vec(), StatusCode::BAD_REQUEST, "not an AdmissionReview"),
        ("wrong version", Method::POST, "/validate", Some("application/json"),
            String::from_utf8(good.clone()).unwrap().replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1").into_bytes(),
            StatusCode::BAD_REQUEST, "admission.k8s.io/v1beta1"),
        ("no request", Method::POST, "/validate", Some("application/json"),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), StatusCode::BAD_REQUEST, "no request"),
        ("missing uid", Method::POST, "/validate", Some("application/json"),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"group":"","version":"v1","kind":"Pod"}}}"#.to_vec(),
            StatusCode::BAD_REQUEST, "uid"),
        ("wrong content type", Method::POST, "/validate", Some("text/plain"), good.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain"),
        ("no content type", Method::POST, "/validate", None, good.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "missing Content-Type"),
        ("oversized", Method::POST, "/validate", Some("application/json"), vec![b' '; 70_000], StatusCode::PAYLOAD_TOO_LARGE, "65536-byte limit"),
        ("wrong method", Method::GET, "/validate", None, Vec::new(), StatusCode::METHOD_NOT_ALLOWED, "GET"),
        ("unknown path", Method::POST, "/admit", Some("application/json"), good.clone(), StatusCode::NOT_FOUND, "/admit"),
    ];
    for (what, method, path, content_type, body, status, needle) in cases {
        let mut conn = client.connect(server.addr).await.unwrap();
        let reply = conn.send(method, path, content_type, body).await.unwrap();
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        let v = reply.json();
        assert_eq!(v["kind"], "Status", "{what}");
        assert_eq!(v["code"], status.as_u16(), "{what}");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{what}: {message:?} lacks {needle:?}"
        );
        let after = review(&client, server.addr, "/validate", good.clone()).await;
        assert_eq!(after["response"]["uid"], uid_of(&good), "after {what}");
    }
    let metrics = server.metrics().await;
    for reason in [
        "bad_review",
        "unsupported_media_type",
        "payload_too_large",
        "method_not_allowed",
        "not_found",
    ] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason} not counted:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_readable_400() {
    let server = Server::start();
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("HTTPS"), "{answer}");
    let good = fixture("pod-create.json");
    let resp = review(&server.client(), server.addr, "/validate", good.clone()).await;
    assert_eq!(resp["response"]["uid"], uid_of(&good));
    server.wait_for_log("non-TLS bytes on the HTTPS port", Duration::from_secs(5));
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_cannot_connect() {
    let server = Server::start();
    let other = nsguard::certs::generate(&Default::default()).unwrap();
    let stranger = HttpsClient::new(&other.ca_cert, None);
    assert!(stranger.connect(server.addr).await.is_err());
    // The server logs the failed handshake and keeps serving.
    server.wait_for_log("TLS handshake failed", Duration::from_secs(5));
    let resp = server.client().get(server.addr, "/healthz").await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn health_and_readiness() {
    let server = Server::start();
    let client = server.client();
    assert_eq!(
        client.get(server.addr, "/healthz").await.status,
        StatusCode::OK
    );
    assert_eq!(
        client.get(server.addr, "/readyz").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_count_reviews_by_endpoint_and_decision() {
    let server = Server::start();
    let client = server.client();
    review(
        &client,
        server.addr,
        "/validate",
        fixture("service-create.json"),
    )
    .await;
    review(
        &client,
        server.addr,
        "/mutate",
        fixture("mutating/service-create.json"),
    )
    .await;
    server
        .assert_metrics(&[
            // The fixture is a sub-env Service in its parent's namespace: the default
            // placement mode (warn) allows it with a warning.
            r#"nsguard_admission_reviews_total{endpoint="validate",decision="warned"} 1"#,
            r#"nsguard_admission_reviews_total{endpoint="mutate",decision="allowed"} 1"#,
            r#"nsguard_admission_review_duration_seconds_count{endpoint="validate"} 1"#,
        ])
        .await;
}

#[tokio::test]
async fn client_certificates_are_required_and_verified_with_client_ca() {
    // The client CA is separate from the CA that signed the serving certificate.
    let dir = tempfile::tempdir().unwrap();
    let certs = common::write_certs(dir.path(), true);
    let ca = dir.path().join("ca.crt");
    let server = Server::builder()
        .arg("--client-ca")
        .arg(ca.to_str().unwrap())
        .start();
    let (client_cert, client_key) = certs.client.clone().unwrap();

    // No client certificate: refused.
    let anonymous = server.client();
    let refused = match anonymous.connect(server.addr).await {
        Err(_) => true,
        // TLS 1.3 reports the missing certificate on the first read.
        Ok(mut conn) => conn
            .post("/validate", "application/json", fixture("pod-create.json"))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");

    // A certificate from the trusted client CA: served.
    let trusted = HttpsClient::new(&server.certs.ca_cert, Some((&client_cert, &client_key)));
    let body = fixture("pod-create.json");
    let resp = review(&trusted, server.addr, "/validate", body.clone()).await;
    assert_eq!(resp["response"]["uid"], uid_of(&body));

    // A certificate from another CA: refused (a second later, past the once-a-second
    // limit on handshake warnings, so its own line is logged).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let other = nsguard::certs::generate(&nsguard::certs::CertRequest {
        client_name: Some("intruder".into()),
        ..Default::default()
    })
    .unwrap();
    let (bad_cert, bad_key) = other.client.unwrap();
    let intruder = HttpsClient::new(&server.certs.ca_cert, Some((&bad_cert, &bad_key)));
    let refused = match intruder.connect(server.addr).await {
        Err(_) => true,
        Ok(mut conn) => conn
            .post("/validate", "application/json", body.clone())
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a client certificate from an unknown CA was accepted"
    );
    // Each generated CA has its own subject, so the log says what happened (an unknown
    // issuer), not BadSignature as when every nsguard CA shared one subject.
    let line = server.wait_for_log("UnknownIssuer", Duration::from_secs(5));
    assert!(line.contains("TLS handshake failed"), "{line}");
}

/// `nsguard serve --demo` on ports the system picks, for the start-up refusals.
fn serve_demo_on_free_ports() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nsguard"));
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--demo",
    ]);
    command
}

#[tokio::test]
async fn refuses_to_start_with_a_broken_certificate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    let out = serve_demo_on_free_ports()
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nsguard: error:") && err.contains("CERTIFICATE"),
        "{err}"
    );
}

/// Without --tls-cert/--tls-key, serve makes development certificates in --cert-dir; where
/// it cannot (a read-only root, as in the shipped pod), it says which flags to pass.
#[tokio::test]
async fn refuses_to_start_naming_the_flags_when_it_cannot_make_development_certificates() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the folder would be: writing fails, as on a read-only root (root, which
    // runs CI, can write through permission bits).
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, "").unwrap();
    let out = serve_demo_on_free_ports()
        .arg("--cert-dir")
        .arg(blocked.join("certs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("nsguard: error: no --tls-cert/--tls-key given")
            && err.contains("pass --tls-cert and --tls-key")
            && err.contains("Not a directory"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn slow_drip_headers_and_bodies_are_cut_off_at_the_request_timeout() {
    let server = Server::builder().args(&["--request-timeout", "1s"]).start();
    let client = server.client();

    // Headers that never finish.
    let mut headers = client.connect_tls(server.addr).await.unwrap();
    headers
        .write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A body that never finishes.
    let mut body = client.connect_tls(server.addr).await.unwrap();
    body.write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"kind\":").await.unwrap();

    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut headers, Duration::from_secs(5)).await,
        "slow headers not cut off"
    );
    assert!(
        closed_within(&mut body, Duration::from_secs(5)).await,
        "slow body not cut off"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout"
    );
    server.wait_for_log(
        "request not received within --request-timeout",
        Duration::from_secs(2),
    );

    let good = fixture("configmap-create.json");
    let resp = review(&client, server.addr, "/validate", good.clone()).await;
    assert_eq!(resp["response"]["uid"], uid_of(&good));
    server
        .assert_metrics(&[r#"nsguard_http_rejections_total{reason="request_timeout"} 2"#])
        .await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let server = Server::builder().args(&["--idle-timeout", "1s"]).start();
    let client = server.client();
    let mut tls = client.connect_tls(server.addr).await.unwrap();
    let body = fixture("configmap-create.json");
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body).await.unwrap();
    // The answer arrives, then the idle connection is closed by the server.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "idle connection was not closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200 OK"));
}

/// Placement in `enforce` refuses every new object of a sub-env outside its namespace,
/// also of the sub-envs simple-container keeps in their parent's namespace: `serve` says
/// so at start-up. With the background audit it names them (the example dump has three)
/// and exports how many; without it, it says nothing checks and what to run.
#[tokio::test]
async fn enforce_says_which_sub_envs_it_would_refuse() {
    let server = Server::builder()
        .args(&["--placement-mode", "enforce", "--audit-interval", "1h"])
        .start();
    let line = server.wait_for_log(
        "placement in enforce would refuse every new object of 3 sub-envs",
        Duration::from_secs(10),
    );
    for needle in [
        "pay-space-wallet-tenant-a/tenant-a in pay-space-wallet (belongs in pay-space-wallet-tenant-a)",
        "forget its Namespace in its Pulumi state",
        "\"level\":\"WARN\"",
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
    server
        .assert_metrics(&["nsguard_audit_sub_envs_outside_namespace 3"])
        .await;

    let alone = Server::builder()
        .args(&["--placement-mode", "enforce"])
        .start();
    alone.wait_for_log(
        "nothing checks for such sub-envs without --audit-interval: `nsguard audit` lists them",
        Duration::from_secs(10),
    );
    let warned = Server::builder().args(&["--audit-interval", "1h"]).start();
    warned.wait_for_log("background audit done", Duration::from_secs(10));
    assert!(
        !warned
            .logs()
            .iter()
            .any(|l| l.contains("placement in enforce would refuse")),
        "warn mode refuses nothing"
    );
    warned
        .assert_metrics(&["nsguard_audit_sub_envs_outside_namespace 3"])
        .await;
}
