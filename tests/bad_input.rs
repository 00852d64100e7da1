//! The bad-input suite: many distinct classes of malformed, hostile or unexpected input
//! over real HTTPS. Each gets a precise answer (or a logged rejection), the process never
//! panics, and a normal review right after still succeeds.

mod common;

use std::time::Duration;

use common::{HttpsClient, Server, fixture, review};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a case expects back: an HTTP status and text the answer must contain, or a closed
/// connection (no HTTP answer possible).
enum Expect {
    Status(u16, &'static str),
    Closed,
}

/// Send raw bytes over one TLS connection and read until the server closes it.
async fn exchange(
    client: &HttpsClient,
    server: &Server,
    raw: Vec<u8>,
) -> Result<(u16, String), String> {
    let mut tls = client
        .connect_tls(server.addr)
        .await
        .map_err(|e| e.to_string())?;
    // The server may answer (and close) before reading everything: ignore write errors.
    let _ = tls.write_all(&raw).await;
    let _ = tls.flush().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    Ok((status, text))
}

fn http(method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        raw.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn json(body: &[u8]) -> Vec<u8> {
    http("POST", "/validate", Some("application/json"), body)
}

/// The good Deployment CREATE review with one edit applied to its JSON.
fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("deployment-create.json")).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn every_class_of_bad_input_gets_a_precise_answer_and_the_server_keeps_serving() {
    let server = Server::builder()
        .args(&["--max-body-bytes", "262144", "--request-timeout", "2s"])
        .start();
    let client = server.client();
    let good = fixture("deployment-create.json");
    let half = good[..good.len() / 2].to_vec();
    // 100,000 levels of nesting where nsguard skips (the object's spec): answered, without
    // recursing; and where it reads (a label value): refused.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let nested_spec = String::from_utf8(edited(|v| {
        v["request"]["object"]["spec"]["x"] = "NESTED".into()
    }))
    .unwrap()
    .replace("\"NESTED\"", &deep)
    .into_bytes();
    let nested_label = String::from_utf8(edited(|v| {
        v["request"]["object"]["metadata"]["labels"]["x"] = "NESTED".into()
    }))
    .unwrap()
    .replace("\"NESTED\"", &deep)
    .into_bytes();
    let mut invalid_utf8 = good.clone();
    let at = invalid_utf8
        .windows(8)
        .position(|w| w == b"tenant-a")
        .unwrap();
    invalid_utf8[at] = 0xff;

    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("malformed JSON", json(b"{\"kind\":AdmissionReview}"), Expect::Status(400, "not valid JSON")),
        ("truncated JSON", json(&half), Expect::Status(400, "not valid JSON")),
        ("empty body", json(b""), Expect::Status(400, "not valid JSON")),
        ("JSON array", json(b"[1,2,3]"), Expect::Status(400, "not an AdmissionReview")),
        ("JSON scalar", json(b"\"review\""), Expect::Status(400, "not an AdmissionReview")),
        ("invalid UTF-8", json(&invalid_utf8), Expect::Status(400, "not valid JSON")),
        ("deep nesting where nsguard skips", json(&nested_spec), Expect::Status(200, "\"allowed\":true")),
        ("deep nesting where nsguard reads", json(&nested_label), Expect::Status(400, "not an AdmissionReview")),
        ("wrong apiVersion", json(&edited(|v| v["apiVersion"] = "admission.k8s.io/v1beta1".into())), Expect::Status(400, "admission.k8s.io/v1beta1")),
        ("wrong kind", json(&edited(|v| v["kind"] = "Pod".into())), Expect::Status(400, "answers admission.k8s.io/v1 AdmissionReview only")),
        ("no request", json(&edited(|v| { v.as_object_mut().unwrap().remove("request"); })), Expect::Status(400, "no request")),
        ("null request", json(&edited(|v| v["request"] = serde_json::Value::Null)), Expect::Status(400, "no request")),
        ("missing uid", json(&edited(|v| { v["request"].as_object_mut().unwrap().remove("uid"); })), Expect::Status(400, "uid")),
        ("empty uid", json(&edited(|v| v["request"]["uid"] = "".into())), Expect::Status(400, "empty uid")),
        ("uid of the wrong type", json(&edited(|v| v["request"]["uid"] = 42.into())), Expect::Status(400, "not an AdmissionReview")),
        ("unknown operation", json(&edited(|v| v["request"]["operation"] = "EXPLODE".into())), Expect::Status(400, "EXPLODE")),
        ("object of the wrong type", json(&edited(|v| v["request"]["object"] = "deployment".into())), Expect::Status(400, "not an AdmissionReview")),
        ("label value of the wrong type", json(&edited(|v| v["request"]["object"]["metadata"]["labels"]["x"] = 1.into())), Expect::Status(400, "not an AdmissionReview")),
        ("duplicate field", json(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","uid":"b"}}"#), Expect::Status(400, "duplicate field")),
        ("oversized body", json(&vec![b' '; 300_000]), Expect::Status(413, "262144-byte limit")),
        ("wrong content type", http("POST", "/validate", Some("text/yaml"), &good), Expect::Status(415, "text/yaml")),
        ("no content type", http("POST", "/validate", None, &good), Expect::Status(415, "missing Content-Type")),
        ("GET on a review path", http("GET", "/validate", None, b""), Expect::Status(405, "GET")),
        ("PUT on a review path", http("PUT", "/mutate", Some("application/json"), &good), Expect::Status(405, "PUT")),
        ("unknown path", http("POST", "/admission", Some("application/json"), &good), Expect::Status(404, "/admission")),
        ("malformed request line", b"THIS IS NOT HTTP\r\n\r\n".to_vec(), Expect::Status(400, "")),
        ("oversized headers", {
            let mut raw = b"POST /validate HTTP/1.1\r\nHost: x\r\n".to_vec();
            for i in 0..2000 {
                raw.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(200)).as_bytes());
            }
            raw.extend_from_slice(b"\r\n");
            raw
        }, Expect::Status(431, "")),
        ("body shorter than Content-Length", {
            let mut raw = http("POST", "/validate", Some("application/json"), &good);
            raw.truncate(raw.len() - 100);
            raw
        }, Expect::Closed),
    ];
    assert!(cases.len() >= 25);
    for (what, raw, expect) in cases {
        let result = exchange(&client, &server, raw).await;
        match expect {
            Expect::Status(status, needle) => {
                let (got, text) = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(got, status, "{what}: {text}");
                assert!(text.contains(needle), "{what}: {needle:?} not in {text}");
            }
            Expect::Closed => assert!(
                result.is_err(),
                "{what}: expected the connection to be closed, got {result:?}"
            ),
        }
        let after = review(&client, server.addr, "/validate", good.clone()).await;
        assert_eq!(after["response"]["allowed"], true, "after {what}");
    }

    // Transport-level bad input: non-TLS bytes and a broken TLS record.
    for (what, bytes) in [
        (
            "plain HTTP on the TLS port",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "garbage TLS record",
            [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5].to_vec(),
        ),
        ("binary noise", vec![0u8; 64]),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let _ = tcp.write_all(&bytes).await;
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "{what}: connection left open");
        let after = review(&client, server.addr, "/validate", good.clone()).await;
        assert_eq!(after["response"]["allowed"], true, "after {what}");
    }
    // A client that does not trust the server's CA.
    let stranger = HttpsClient::new(
        &nsguard::certs::generate(&Default::default())
            .unwrap()
            .ca_cert,
        None,
    );
    assert!(stranger.connect(server.addr).await.is_err());

    let logs = server.logs().join("\n");
    assert!(!logs.contains("panicked"), "a panic was logged:\n{logs}");
    assert_eq!(client.get(server.addr, "/healthz").await.status, 200);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_service_resumes() {
    let server = Server::builder().args(&["--max-connections", "4"]).start();
    let client = server.client();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(client.connect(server.addr).await.unwrap());
    }
    // The fifth is closed at once: its handshake fails.
    assert!(client.connect(server.addr).await.is_err());
    server.wait_for_log("too many open connections", Duration::from_secs(5));
    drop(idle);
    // Slots free up as the idle connections close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut conn) = client.connect(server.addr).await
            && let Ok(reply) = conn
                .post("/validate", "application/json", fixture("pod-create.json"))
                .await
        {
            assert_eq!(reply.status, 200);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "service did not resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
