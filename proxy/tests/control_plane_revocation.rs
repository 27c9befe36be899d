//! A revoked certificate closes the live connections of its holder within a
//! second of the snapshot that revokes it: a federation admin revokes the
//! visited edge's certificate; the home edge drops the QUIC connection and
//! with it the flow in progress, and refuses the holder from then on. The
//! control plane refuses the holder's next request on an HTTP/1.1
//! connection it kept open from before the revocation.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tests::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A mutual-TLS connection to the control plane as the holder of `cert`.
async fn control_connection(
    w: &World,
    cert: &(std::path::PathBuf, std::path::PathBuf),
) -> TlsStream<TcpStream> {
    let material = federation::mtls::Material::from_pem(
        &std::fs::read(&cert.0).expect("cert"),
        &std::fs::read(&cert.1).expect("key"),
        &std::fs::read(w.ca_pem()).expect("ca"),
    )
    .expect("material");
    let config = federation::mtls::client_config(&material, b"http/1.1").expect("client config");
    let tcp = TcpStream::connect(addr(w, 5, 7443))
        .await
        .expect("control plane");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(federation::mtls::server_name(), tcp)
        .await
        .expect("handshake")
}

/// One request on a kept-alive connection: the status and the body.
async fn get(tls: &mut TlsStream<TcpStream>, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: control.fedgate.invalid\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut b))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(
            n == 1,
            "connection closed: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let status = head[9..12].parse().expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).await.expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_edge_closes_its_connections_within_a_second() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let v1 = document(&w, &Options::default());
    let fed = start_followed(&w, &v1, &[]).await;
    let away_serial = &fed.away_serial;
    let home_admin_addr = home_admin(&w);

    // A flow in progress over the QUIC link.
    let mut flow = TcpStream::connect(addr(&w, 1, 3128)).await.expect("proxy");
    flow.write_all(b"CONNECT echo.home.example:7007 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("connect");
    let mut head = [0u8; 12];
    flow.read_exact(&mut head).await.expect("answer");
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut rest = Vec::new();
    while !rest.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        flow.read_exact(&mut b).await.expect("head");
        rest.push(b[0]);
    }
    flow.write_all(b"ping").await.expect("ping");
    let mut back = [0u8; 4];
    flow.read_exact(&mut back).await.expect("echo");

    // A connection to the control plane as away/edge, kept open.
    let mut kept = control_connection(&w, &fed.away_cert).await;
    assert_eq!(get(&mut kept, "/v1/healthz").await, (200, "ok\n".into()));

    // The federation admin revokes away/edge's certificate.
    let revoked = format!(
        "{v1}revoked_certificates:\n  - {{serial: \"{away_serial}\", holder: away/edge, reason: key compromise}}\n"
    );
    let (status, body) = api(
        &w,
        &admin(&w, None),
        "POST",
        "/v1/apply",
        Some(json!({"expected_version": 1, "message": "away/edge key compromised", "files": files(&w, &revoked)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let acknowledged = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let ended = tokio::time::timeout(Duration::from_secs(5), flow.read(&mut buf)).await;
    let took = acknowledged.elapsed();
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "the flow must be closed: {ended:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "the revoked holder's flow lasted {took:?} after the acknowledgement"
    );
    // The control plane refuses the next request on the kept connection.
    let (status, body) = get(&mut kept, "/v1/healthz").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("untrusted") && body.contains("revoked certificate serial"),
        "{body}"
    );
    let (_, metrics, _) = curl(vec![format!("http://{home_admin_addr}/metrics")]).await;
    assert!(
        metrics.contains("fedgate_peer_closed_total{reason=\"revoked\"} 1"),
        "{metrics}"
    );

    // And it is refused from then on.
    let (ok, body, _) = curl(vec![
        "--proxy".into(),
        format!("http://{}", addr(&w, 1, 3128)),
        "--proxytunnel".into(),
        "--write-out".into(),
        "%{http_connect}".into(),
        "telnet://echo.home.example:7007".into(),
    ])
    .await;
    assert!(!ok && !body.ends_with("200"), "{body}");
}
