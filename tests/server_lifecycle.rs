//! Certificate hot reload and graceful shutdown of the real server process.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{HttpsClient, Server, fixture, review};
use nsguard::certs::{CertRequest, GeneratedCerts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Lay out a pair the way the kubelet mounts a Secret: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<version>`, and rotate by swapping `..data` atomically.
fn mount_secret(dir: &Path, version: &str, cert: &str, key: &str) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    std::fs::write(versioned.join("tls.crt"), cert).unwrap();
    std::fs::write(versioned.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

fn pair() -> GeneratedCerts {
    nsguard::certs::generate(&CertRequest::default()).unwrap()
}

#[tokio::test]
async fn rotated_certificates_are_served_without_dropping_connections() {
    let mount = tempfile::tempdir().unwrap();
    let (old, new) = (pair(), pair());
    mount_secret(mount.path(), "v1", &old.tls_cert, &old.tls_key);
    let server = Server::builder()
        .args(&["--tls-reload-interval", "100ms"])
        .tls_files(
            mount.path().join("tls.crt"),
            mount.path().join("tls.key"),
            old.clone(),
        )
        .start();
    let old_client = HttpsClient::new(&old.ca_cert, None);
    let new_client = HttpsClient::new(&new.ca_cert, None);
    let body = fixture("deployment-create.json");

    // A keep-alive connection opened under the old certificate.
    let mut open = old_client.connect(server.addr).await.unwrap();
    assert!(
        open.post("/validate", "application/json", body.clone())
            .await
            .unwrap()
            .status
            .is_success()
    );
    assert!(
        new_client.connect(server.addr).await.is_err(),
        "new CA trusted before rotation"
    );

    mount_secret(mount.path(), "v2", &new.tls_cert, &new.tls_key);
    let deadline = Instant::now() + Duration::from_secs(10);
    while new_client.connect(server.addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "new certificate never served: {:#?}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.wait_for_log("reloaded TLS certificate", Duration::from_secs(5));

    // The connection opened before the rotation still works; new handshakes get the new pair.
    let reply = open
        .post("/validate", "application/json", body.clone())
        .await
        .unwrap();
    assert!(reply.status.is_success(), "{}", reply.text());
    // A fresh client (no session to resume) that trusts only the old CA is refused.
    let fresh_old_client = HttpsClient::new(&old.ca_cert, None);
    assert!(
        fresh_old_client.connect(server.addr).await.is_err(),
        "old certificate still served"
    );
    review(&new_client, server.addr, "/validate", body.clone()).await;

    // A broken pair is rejected with a log line, and the current one keeps serving.
    mount_secret(mount.path(), "v3", "garbage", "garbage");
    server.wait_for_log("new TLS certificate rejected", Duration::from_secs(10));
    review(&new_client, server.addr, "/validate", body.clone()).await;
    // A pair whose key does not match its certificate is rejected too.
    mount_secret(mount.path(), "v4", &old.tls_cert, &new.tls_key);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server
        .logs()
        .iter()
        .filter(|l| l.contains("new TLS certificate rejected"))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "mismatched pair not rejected: {:#?}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    review(&new_client, server.addr, "/validate", body).await;

    server
        .assert_metrics(&[
            r#"nsguard_tls_reloads_total{result="success"} 1"#,
            r#"nsguard_tls_reloads_total{result="error"} 2"#,
        ])
        .await;
}

/// On SIGTERM: /readyz fails on both ports at once (the kubelet probes the metrics port),
/// reviews are answered through the delay, then no new connection is taken while the one
/// in flight finishes; the metrics port serves to the end.
#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_cleanly() {
    let mut server = Server::builder()
        .args(&["--shutdown-grace", "30s", "--shutdown-delay", "1s"])
        .start();
    assert_eq!(server.metrics_port_get("/readyz").await.0, 200);
    let client = server.client();
    let body = fixture("deployment-create.json");
    let (head, tail) = body.split_at(body.len() / 2);

    // An in-flight review: headers and half the body sent.
    let mut tls = client.connect_tls(server.addr).await.unwrap();
    let request_head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(request_head.as_bytes()).await.unwrap();
    tls.write_all(head).await.unwrap();
    tls.flush().await.unwrap();
    // An idle keep-alive connection, which shutdown may close at once.
    let mut idle = client.connect(server.addr).await.unwrap();
    assert!(
        idle.post("/validate", "application/json", body.clone())
            .await
            .unwrap()
            .status
            .is_success()
    );

    server.signal("TERM");
    server.wait_for_log(
        "still serving while endpoints update",
        Duration::from_secs(5),
    );
    assert_eq!(client.get(server.addr, "/readyz").await.status, 503);
    let (status, said) = server.metrics_port_get("/readyz").await;
    assert_eq!(status, 503, "the kubelet's probe: {said}");
    server.wait_for_log("shutting down", Duration::from_secs(5));
    // No new connections once the drain has begun ...
    assert!(
        client.connect(server.addr).await.is_err(),
        "accepted a connection while draining"
    );
    // ... while the metrics port still answers: not ready, and the counts to the end.
    assert_eq!(server.metrics_port_get("/readyz").await.0, 503);
    let metrics = server.metrics().await;
    let answered: f64 = metrics
        .lines()
        .filter(|l| l.starts_with(r#"nsguard_admission_reviews_total{endpoint="validate""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        answered, 1.0,
        "the review answered before SIGTERM:\n{metrics}"
    );

    // The in-flight request completes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tls.write_all(tail).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    // The client is told not to reuse the connection (the API server would write its
    // next review into it, and lose that review when the server closes it).
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    let uid = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["request"]["uid"].clone();
    assert!(answer.contains(uid.as_str().unwrap()), "{answer}");

    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    server.wait_for_log("all connections drained", Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_sustained_load_fails_no_request() {
    let mount = tempfile::tempdir().unwrap();
    let pairs: Vec<GeneratedCerts> = (0..4).map(|_| pair()).collect();
    mount_secret(mount.path(), "v0", &pairs[0].tls_cert, &pairs[0].tls_key);
    let server = Server::builder()
        .args(&["--tls-reload-interval", "100ms"])
        .tls_files(
            mount.path().join("tls.crt"),
            mount.path().join("tls.key"),
            pairs[0].clone(),
        )
        .start();
    // During a rotation the caBundle holds the old and the new CA.
    let bundle: String = pairs.iter().map(|p| p.ca_cert.as_str()).collect();
    let client = HttpsClient::new(&bundle, None);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(common::sustained_load(
        client,
        server.addr,
        fixture("deployment-create.json"),
        8,
        20,
        stop.clone(),
    ));
    for (i, pair) in pairs.iter().enumerate().skip(1) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        mount_secret(
            mount.path(),
            &format!("v{i}"),
            &pair.tls_cert,
            &pair.tls_key,
        );
    }
    server.wait_for_logs("reloaded TLS certificate", 3, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap().assert_clean(100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_sustained_load_fails_no_request_while_endpoints_update() {
    let mut server = Server::builder().args(&["--shutdown-delay", "2s"]).start();
    let client = server.client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(common::sustained_load(
        client.clone(),
        server.addr,
        fixture("deployment-create.json"),
        8,
        20,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal("TERM");
    server.wait_for_log(
        "still serving while endpoints update",
        Duration::from_secs(5),
    );
    // Readiness fails at once, so the kubelet takes the pod out of the endpoints ...
    assert_eq!(client.get(server.addr, "/readyz").await.status, 503);
    // ... while requests keep being answered until the API server has moved on.
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap().assert_clean(100);
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
}

/// The serving certificate's validity is a metric from the start and after each reload,
/// and the client CA's with --client-ca; a certificate with less than 14 days left is a
/// warning in the log (once a day), and the one that replaces it resets that.
#[tokio::test]
async fn certificate_expiry_is_exported_and_a_short_one_is_logged() {
    let mount = tempfile::tempdir().unwrap();
    let short = nsguard::certs::generate(&CertRequest {
        days: 5,
        client_name: Some("kube-apiserver".to_owned()),
        ..CertRequest::default()
    })
    .unwrap();
    let ca = tempfile::tempdir().unwrap();
    std::fs::write(ca.path().join("ca.crt"), &short.ca_cert).unwrap();
    mount_secret(mount.path(), "v1", &short.tls_cert, &short.tls_key);
    let server = Server::builder()
        .args(&["--tls-reload-interval", "100ms", "--client-ca"])
        .arg(ca.path().join("ca.crt").to_str().unwrap())
        .tls_files(
            mount.path().join("tls.crt"),
            mount.path().join("tls.key"),
            short.clone(),
        )
        .start();
    let gauge = |metrics: &str, series: &str| -> i64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("{series} not in:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = 86_400;
    let metrics = server.metrics().await;
    let serving = gauge(
        &metrics,
        r#"nsguard_tls_certificate_not_after_seconds{certificate="serving"}"#,
    );
    assert!(
        (serving - (now + 5 * day)).abs() < 300,
        "{serving} vs {now}"
    );
    let before = gauge(
        &metrics,
        r#"nsguard_tls_certificate_not_before_seconds{certificate="serving"}"#,
    );
    assert!(before <= now && before > now - 2 * day, "{before}");
    // The CA lives twice as long as the certificates it signs.
    let ca = gauge(
        &metrics,
        r#"nsguard_tls_certificate_not_after_seconds{certificate="client_ca"}"#,
    );
    assert!((ca - (now + 10 * day)).abs() < 300, "{ca}");
    let warning = server.wait_for_log("the serving certificate expires in", Duration::from_secs(5));
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    // The CA has 10 days left: a warning of its own.
    server.wait_for_log(
        "the client_ca certificate expires in",
        Duration::from_secs(5),
    );

    // A year-long replacement: the gauge follows, and no new warning.
    let long = nsguard::certs::generate(&CertRequest::default()).unwrap();
    mount_secret(mount.path(), "v2", &long.tls_cert, &long.tls_key);
    server.wait_for_log("reloaded TLS certificate", Duration::from_secs(5));
    let metrics = server.metrics().await;
    let serving = gauge(
        &metrics,
        r#"nsguard_tls_certificate_not_after_seconds{certificate="serving"}"#,
    );
    assert!((serving - (now + 365 * day)).abs() < 300, "{serving}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warnings = server
        .logs()
        .iter()
        .filter(|l| l.contains("the serving certificate expires in"))
        .count();
    assert_eq!(warnings, 1, "{:?}", server.logs());
}
