//! The bad-input suite: many distinct classes of malformed, hostile or unexpected input
//! over real HTTPS. Each gets a precise answer (or a logged rejection), the process never
//! panics, and a normal review right after still succeeds.

mod common;

use std::time::Duration;

use common::{HttpsClient, Server, closed_within, fill_with_busy_connections, fixture, review};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a case expects back: an HTTP status and text the answer must contain.
struct Expect(u16, &'static str);

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
        ("malformed JSON", json(b"{\"kind\":AdmissionReview}"), Expect(400, "not valid JSON")),
        ("truncated JSON", json(&half), Expect(400, "not valid JSON")),
        ("empty body", json(b""), Expect(400, "not valid JSON")),
        ("JSON array", json(b"[1,2,3]"), Expect(400, "not an AdmissionReview")),
        ("JSON scalar", json(b"\"review\""), Expect(400, "not an AdmissionReview")),
        ("invalid UTF-8", json(&invalid_utf8), Expect(400, "not valid JSON")),
        ("deep nesting where nsguard skips", json(&nested_spec), Expect(200, "\"allowed\":true")),
        ("deep nesting where nsguard reads", json(&nested_label), Expect(400, "not an AdmissionReview")),
        ("wrong apiVersion", json(&edited(|v| v["apiVersion"] = "admission.k8s.io/v1beta1".into())), Expect(400, "admission.k8s.io/v1beta1")),
        ("wrong kind", json(&edited(|v| v["kind"] = "Pod".into())), Expect(400, "answers admission.k8s.io/v1 AdmissionReview only")),
        ("no request", json(&edited(|v| { v.as_object_mut().unwrap().remove("request"); })), Expect(400, "no request")),
        ("null request", json(&edited(|v| v["request"] = serde_json::Value::Null)), Expect(400, "no request")),
        ("missing uid", json(&edited(|v| { v["request"].as_object_mut().unwrap().remove("uid"); })), Expect(400, "uid")),
        ("empty uid", json(&edited(|v| v["request"]["uid"] = "".into())), Expect(400, "empty uid")),
        ("uid of the wrong type", json(&edited(|v| v["request"]["uid"] = 42.into())), Expect(400, "not an AdmissionReview")),
        ("unknown operation", json(&edited(|v| v["request"]["operation"] = "EXPLODE".into())), Expect(400, "EXPLODE")),
        ("object of the wrong type", json(&edited(|v| v["request"]["object"] = "deployment".into())), Expect(400, "not an AdmissionReview")),
        ("label value of the wrong type", json(&edited(|v| v["request"]["object"]["metadata"]["labels"]["x"] = 1.into())), Expect(400, "not an AdmissionReview")),
        ("duplicate field", json(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","uid":"b"}}"#), Expect(400, "duplicate field")),
        ("oversized body", json(&vec![b' '; 300_000]), Expect(413, "262144-byte limit")),
        ("wrong content type", http("POST", "/validate", Some("text/yaml"), &good), Expect(415, "text/yaml")),
        ("no content type", http("POST", "/validate", None, &good), Expect(415, "missing Content-Type")),
        ("GET on a review path", http("GET", "/validate", None, b""), Expect(405, "GET")),
        ("PUT on a review path", http("PUT", "/mutate", Some("application/json"), &good), Expect(405, "PUT")),
        ("unknown path", http("POST", "/admission", Some("application/json"), &good), Expect(404, "/admission")),
        ("malformed request line", b"THIS IS NOT HTTP\r\n\r\n".to_vec(), Expect(400, "")),
        ("oversized headers", {
            let mut raw = b"POST /validate HTTP/1.1\r\nHost: x\r\n".to_vec();
            for i in 0..2000 {
                raw.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(200)).as_bytes());
            }
            raw.extend_from_slice(b"\r\n");
            raw
        }, Expect(431, "")),
        ("body shorter than Content-Length", {
            let mut raw = http("POST", "/validate", Some("application/json"), &good);
            raw.truncate(raw.len() - 100);
            raw
        }, Expect(408, "not received within 2s (--request-timeout)")),
    ];
    assert!(cases.len() >= 25);
    for (what, raw, expect) in cases {
        let result = exchange(&client, &server, raw).await;
        let Expect(status, needle) = expect;
        let (got, text) = result.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {needle:?} not in {text}");
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

/// At --max-connections, a new client is let in by closing the connection idle the
/// longest, so silent connections cannot lock the API server out; only when every
/// connection has a request in flight is a new one refused, and service resumes as those
/// requests end. Before, the fifth connection was refused while four sat idle.
#[tokio::test]
async fn at_the_connection_limit_idle_connections_make_room_and_busy_ones_do_not() {
    let server = Server::builder().args(&["--max-connections", "4"]).start();
    let client = server.client();
    let good = fixture("pod-create.json");
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(client.connect_tls(server.addr).await.unwrap());
    }
    // Each new client is served, closing the oldest silent connection (the new ones stay
    // open, so nothing else frees a slot).
    let mut served = Vec::new();
    for _ in 0..4 {
        let mut conn = client.connect(server.addr).await.unwrap();
        let reply = conn
            .post("/validate", "application/json", good.clone())
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        served.push(conn);
    }
    for tls in &mut silent {
        assert!(
            closed_within(tls, Duration::from_secs(5)).await,
            "a silent connection was kept"
        );
    }
    server
        .assert_metrics(&[r#"nsguard_http_rejections_total{reason="reclaimed_idle_connection"}"#])
        .await;

    drop(served);
    // Four requests in flight (bodies still arriving) fill every slot: a fifth is refused.
    let busy = fill_with_busy_connections(&client, server.addr, 4).await;
    server.wait_for_log("every open connection is busy", Duration::from_secs(5));
    drop(busy);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut conn) = client.connect(server.addr).await
            && let Ok(reply) = conn
                .post("/validate", "application/json", good.clone())
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

/// Connections that complete the handshake and send nothing hold a slot for
/// --request-timeout, not --idle-timeout (5 min); near the limit an idle connection
/// gets the request timeout too, even one that sent a request and half of the next.
#[tokio::test]
async fn silent_and_half_sent_connections_are_closed_and_new_clients_get_in() {
    let server = Server::builder()
        .args(&["--max-connections", "8", "--request-timeout", "1s"])
        .start();
    let client = server.client();
    let good = fixture("pod-create.json");

    // A full request and half of a second one in one write, then nothing.
    let mut half = client.connect_tls(server.addr).await.unwrap();
    let mut raw = json_keep_alive(&good);
    raw.extend_from_slice(b"POST /validate HTTP/1.1\r\nHost: x\r\n");
    half.write_all(&raw).await.unwrap();
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(client.connect_tls(server.addr).await.unwrap());
    }
    // Twelve silent connections on eight slots: a new client still gets in at once.
    let resp = review(&client, server.addr, "/validate", good.clone()).await;
    assert_eq!(resp["response"]["allowed"], true);

    let started = std::time::Instant::now();
    for tls in &mut silent {
        assert!(
            closed_within(tls, Duration::from_secs(5)).await,
            "a silent connection was kept"
        );
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), half.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the half-sent connection was kept");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200 OK"));
    assert!(started.elapsed() < Duration::from_secs(5));
    server
        .assert_metrics(&[r#"nsguard_http_rejections_total{reason="no_request"}"#])
        .await;
}

/// Every request head has the request timeout from its first byte, the second on a
/// keep-alive connection as much as the first, whether it came with the first request
/// (pipelined) or after its answer, and with the server far from its connection limit.
/// Before, a second head sent after the first answer was kept open past 75 s with
/// `--request-timeout 10s`.
#[tokio::test]
async fn a_later_request_head_has_the_same_deadline_as_the_first() {
    let server = Server::builder().args(&["--request-timeout", "2s"]).start();
    let client = server.client();
    let good = fixture("pod-create.json");
    let partial = b"POST /validate HTTP/1.1\r\nHost: lo";

    // One review, its answer read, then part of the next head and silence.
    let mut after = client.connect_tls(server.addr).await.unwrap();
    after.write_all(&json_keep_alive(&good)).await.unwrap();
    let mut answer = [0u8; 4096];
    let n = after.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200 OK"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    after.write_all(partial).await.unwrap();
    after.flush().await.unwrap();

    // The same, pipelined: the first request and part of the second in one write.
    let mut pipelined = client.connect_tls(server.addr).await.unwrap();
    let mut raw = json_keep_alive(&good);
    raw.extend_from_slice(partial);
    pipelined.write_all(&raw).await.unwrap();

    let started = std::time::Instant::now();
    for tls in [&mut after, &mut pipelined] {
        assert!(
            closed_within(tls, Duration::from_secs(6)).await,
            "a connection with half a head was kept open {:?}",
            started.elapsed()
        );
    }
    let metrics = server.metrics().await;
    let slow = metrics
        .lines()
        .find(|l| l.starts_with(r#"nsguard_http_rejections_total{reason="request_timeout"}"#))
        .unwrap();
    assert!(slow.ends_with(" 2"), "{slow}");
}

fn json_keep_alive(body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// An HTTP/2 stream whose body arrives a byte at a time while the client PINGs: the
/// request deadline holds per request, as on HTTP/1.1. Before, PING replies counted as
/// progress and the stream was still open at 18 s.
#[tokio::test]
async fn an_http2_body_dripped_between_pings_is_answered_408_at_the_deadline() {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    let server = Server::builder().args(&["--request-timeout", "2s"]).start();
    let client = server.client();
    let tls = client.connect_h2(server.addr).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(300))
            .keep_alive_while_idle(true)
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let drip = Box::pin(futures::stream::unfold((), |()| async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some((
            Ok::<_, std::convert::Infallible>(Frame::data(bytes::Bytes::from_static(b" "))),
            (),
        ))
    }));
    let request = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(StreamBody::new(drip).boxed())
        .unwrap();
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(8), sender.send_request(request))
        .await
        .expect("the dripping stream was still open after 8s")
        .unwrap();
    assert_eq!(response.status(), 408);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    // The connection itself still serves.
    let good = bytes::Bytes::from(fixture("pod-create.json"));
    let request = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(good).boxed())
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
}

/// `Expect: 100-continue` with a declared length over the limit is answered 413 before
/// a byte of body is read: no `100 Continue` invites 64 MiB in.
#[tokio::test]
async fn an_oversized_expect_continue_gets_413_without_100_continue() {
    let server = Server::start();
    let client = server.client();
    let mut tls = client.connect_tls(server.addr).await.unwrap();
    tls.write_all(
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(text.contains("Content-Length 67108864"), "{text}");
}

/// Peak resident memory of a process, from /proc (Linux).
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Many clients sending maximal (8 MiB) reviews at once: the buffered-bytes budget keeps
/// the server's peak RSS under 128 MiB (half the Deployment's limit, the rest is the
/// background audit's); what does not fit is answered 429
/// with Retry-After, and every request gets an answer. Before, 16 such bodies took RSS to
/// 147 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_maximal_bodies_stay_within_the_memory_budget() {
    const LIMIT: u64 = 128 * 1024 * 1024;
    let server = Server::start();
    let client = server.client();
    // A valid review made 8 MiB by one annotation on its old object.
    let mut review_json: serde_json::Value =
        serde_json::from_slice(&fixture("configmap-create.json")).unwrap();
    let filler = "x".repeat(8 * 1024 * 1024 - 8 * 1024);
    review_json["request"]["oldObject"] =
        serde_json::json!({"metadata": {"annotations": {"filler": filler}}});
    let body = serde_json::to_vec(&review_json).unwrap();
    assert!(body.len() <= 8 * 1024 * 1024, "{}", body.len());
    let before = peak_rss_bytes(server.pid());

    // Every body but its last byte first, on all connections, so all are in the server
    // at once; then the last bytes.
    let mut head = format!(
        "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    head.extend_from_slice(&body[..body.len() - 1]);
    let head = std::sync::Arc::new(head);
    let mut tasks = Vec::new();
    let go = std::sync::Arc::new(tokio::sync::Barrier::new(25));
    for _ in 0..24 {
        let (client, head, go, addr) = (client.clone(), head.clone(), go.clone(), server.addr);
        let last = *body.last().unwrap();
        tasks.push(tokio::spawn(async move {
            let mut tls = client.connect_tls(addr).await.unwrap();
            // The server may refuse before reading it all.
            let _ = tls.write_all(&head).await;
            go.wait().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = tls.write_all(&[last]).await;
            let mut answer = Vec::new();
            let _ = tls.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    go.wait().await;
    let (mut ok, mut throttled) = (0, 0);
    for task in tasks {
        let text = task.await.unwrap();
        match text.get(9..12) {
            Some("200") => ok += 1,
            Some("429") => {
                assert!(text.contains("--max-buffered-bytes"), "{text}");
                assert!(
                    text.to_ascii_lowercase().contains("retry-after: 1"),
                    "{text}"
                );
                throttled += 1;
            }
            _ => panic!("{text}"),
        }
    }
    let peak = peak_rss_bytes(server.pid());
    assert!(ok >= 4, "{ok} answered, {throttled} throttled");
    assert!(
        peak < LIMIT,
        "peak RSS {} MiB (from {} MiB before), {ok} answered, {throttled} throttled",
        peak >> 20,
        before >> 20
    );
    eprintln!(
        "peak RSS {} MiB; {ok} answered, {throttled} throttled",
        peak >> 20
    );
}

/// The probes answer on the plain metrics port, so a flood of the webhook port (every
/// connection busy) does not fail liveness and restart the pods.
#[tokio::test]
async fn probes_answer_on_the_metrics_port_while_the_webhook_port_is_full() {
    let server = Server::builder().args(&["--max-connections", "2"]).start();
    let client = server.client();
    let _busy = fill_with_busy_connections(&client, server.addr, 2).await;
    for (path, expected) in [("/healthz", "ok"), ("/readyz", "ok")] {
        let (status, text) = plain_get(server.metrics_addr, path).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert!(text.starts_with(expected), "{path}: {text}");
    }
}

async fn plain_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// A uid holding a newline and a made-up log line cannot forge a line in the text log:
/// every request-controlled value is escaped, as the JSON format already did. Before, the
/// text log showed a forged `audit: namespace delete allowed reason="break-glass"` line.
#[tokio::test]
async fn a_forged_log_line_in_a_uid_stays_inside_its_field() {
    let server = Server::builder().args(&["--log-format", "text"]).start();
    let client = server.client();
    let forged = "2026-11-30T00:00:00.000000Z  INFO nsguard::audit: namespace delete allowed reason=\"break-glass\"";
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("namespace-delete.json")).unwrap();
    body["request"]["uid"] = format!("d3a0c8b2\n{forged}\r\u{1b}[2K").into();
    let resp = review(
        &client,
        server.addr,
        "/validate",
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(resp["response"]["allowed"], false, "{resp}");
    let line = server.wait_for_log("event=\"namespace-delete\"", Duration::from_secs(5));
    assert!(
        line.contains("uid=d3a0c8b2\\n2026-11-30T00:00:00.000000Z"),
        "{line}"
    );
    assert!(line.contains("\\r\\u{1b}[2K"), "{line}");
    let logs = server.logs();
    assert!(
        !logs
            .iter()
            .any(|l| l.starts_with("2026-11-30T00:00:00.000000Z")),
        "a forged line: {logs:#?}"
    );
}

/// Only a JSON object is an AdmissionReview, at every level: a positional array was
/// decoded as a review and decided (200), and `[1,2]` got a confusing type error.
#[tokio::test]
async fn positional_arrays_are_not_reviews() {
    let server = Server::start();
    let client = server.client();
    let good: serde_json::Value =
        serde_json::from_slice(&fixture("configmap-create.json")).unwrap();
    let positional = serde_json::json!(["admission.k8s.io/v1", "AdmissionReview", good["request"]]);
    let mut nested = good.clone();
    nested["request"]["userInfo"] = serde_json::json!(["system:admin", "uid", ["system:masters"]]);
    for (what, body, needle) in [
        (
            "positional review",
            serde_json::to_vec(&positional).unwrap(),
            "expected a JSON object",
        ),
        (
            "numbers",
            b"[1,2]".to_vec(),
            "invalid type: sequence, expected a JSON object",
        ),
        (
            "positional userInfo",
            serde_json::to_vec(&nested).unwrap(),
            "at request.userInfo: invalid type: sequence, expected a JSON object",
        ),
    ] {
        let reply = client
            .post(server.addr, "/validate", "application/json", body)
            .await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("not an AdmissionReview"),
            "{what}: {message}"
        );
        assert!(message.contains(needle), "{what}: {message}");
    }
}

/// A 4 MiB string where a map belongs comes back as a short excerpt naming the field path
/// (not a 4 MiB answer quoting it, not "line 1 column N"), its WARN line is as short, and
/// a flood of bad requests is counted in full but logged about once a second.
#[tokio::test]
async fn huge_bad_values_get_short_answers_and_rate_limited_warnings() {
    let server = Server::start();
    let client = server.client();
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("configmap-create.json")).unwrap();
    body["request"]["oldObject"] = serde_json::json!({"metadata": {"labels": "x".repeat(4 << 20)}});
    let body = serde_json::to_vec(&body).unwrap();
    let reply = client
        .post(server.addr, "/validate", "application/json", body.clone())
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.len() < 1024, "{} bytes", reply.body.len());
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("at request.oldObject.metadata.labels: invalid type: string"),
        "{message}"
    );
    assert!(message.contains("bytes cut)"), "{message}");
    assert!(!message.contains("line 1 column"), "{message}");

    // A uid or a namespace name too long to be real is refused, not echoed.
    let mut long_uid: serde_json::Value =
        serde_json::from_slice(&fixture("configmap-create.json")).unwrap();
    long_uid["request"]["uid"] = "u".repeat(1 << 20).into();
    let reply = client
        .post(
            server.addr,
            "/validate",
            "application/json",
            serde_json::to_vec(&long_uid).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.text().contains("request.uid is 1048576 bytes"),
        "{}",
        reply.text()
    );
    let mut long_name: serde_json::Value =
        serde_json::from_slice(&fixture("namespace-delete.json")).unwrap();
    long_name["request"]["name"] = "n".repeat(1 << 20).into();
    let resp = review(
        &client,
        server.addr,
        "/validate",
        serde_json::to_vec(&long_name).unwrap(),
    )
    .await;
    assert_eq!(resp["response"]["allowed"], false);
    assert_eq!(resp["response"]["status"]["code"], 400);
    assert!(resp.to_string().len() < 1024, "{resp}");

    let started = std::time::Instant::now();
    let mut conn = client.connect(server.addr).await.unwrap();
    for _ in 0..30 {
        let reply = conn
            .post("/validate", "application/json", body.clone())
            .await
            .unwrap();
        assert_eq!(reply.status, 400);
    }
    // A second later, one more: its WARN line reports every one left out since the last.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = conn
        .post("/validate", "application/json", body.clone())
        .await
        .unwrap();
    assert_eq!(reply.status, 400);
    let seconds = started.elapsed().as_secs() as usize;
    server
        .assert_metrics(&[r#"nsguard_http_rejections_total{reason="bad_review"} 33"#])
        .await;
    let last = server.wait_for_log("\"suppressed\":", Duration::from_secs(5));
    assert!(last.len() < 1024, "a {}-byte log line", last.len());
    std::thread::sleep(Duration::from_millis(200));
    let warned: Vec<serde_json::Value> = server
        .logs()
        .iter()
        .filter(|l| l.contains("rejected request body"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // At most one a second (and the first); none lost: logged plus suppressed is all.
    assert!(
        warned.len() <= seconds + 2,
        "{} WARN lines for 33 bad requests in {seconds}s",
        warned.len()
    );
    let suppressed: u64 = warned
        .iter()
        .map(|w| w["suppressed"].as_u64().unwrap())
        .sum();
    assert_eq!(warned.len() as u64 + suppressed, 33, "{warned:#?}");
    let warned: Vec<String> = warned.iter().map(|w| w.to_string()).collect();
    for line in &warned {
        assert!(line.len() < 1024, "a {}-byte log line", line.len());
    }
}
