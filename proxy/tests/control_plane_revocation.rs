//! A revoked certificate closes the live connections of its holder within a
//! second of the snapshot that revokes it: a federation admin revokes the
//! visited edge's certificate; the home edge drops the QUIC connection and
//! with it the flow in progress, and refuses the holder from then on.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tests::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
