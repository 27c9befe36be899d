//! A home edge that gives the visited edge no QUIC stream credit: a peer at
//! its stream limit, or another implementation of the overlay that grants
//! streams sparingly. Our own edges never get there (they let 1,024 streams
//! past `--max-flows-per-peer` in, to refuse them at once as "overloaded"),
//! so the home edge here is scripted: a quinn endpoint at home/edge's QUIC
//! address with home/edge's real certificate, the overlay's ALPN and mutual
//! TLS against the federation CA, which grants streams only when the test
//! says so. The visited edge is the real `fedgate-edge`, the clients curl
//! and a TCP client on a service VIP:
//! - a flow the peer gives no credit within the connect timeout (5 s) is
//!   refused as `home:overloaded`: CONNECT answers 503, the record names
//!   the peer and the transport, and the link is not given up for it (no
//!   TCP fallback, the QUIC link still up); two such flows wait side by
//!   side, not one behind the other;
//! - a flow waiting for credit goes on as soon as the peer grants it, with
//!   the stream header the wire format defines and the client's bytes.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use federation::wire::{FlowAnswer, FlowRequest};
use tests::World;

/// A QUIC endpoint speaking as home/edge that grants no bidirectional
/// stream until told to (`Connection::set_max_concurrent_bi_streams`).
fn stingy_home(w: &World) -> quinn::Endpoint {
    let (cert, key, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let material = proxy::tls::load_material(&cert, &key, &w.ca_pem()).expect("home material");
    let own = federation::mtls::Credentials::new(&material).expect("home credentials");
    let tls = proxy::tls::server_config(&own).expect("home TLS config");
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("QUIC crypto");
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(0u32.into());
    config.transport_config(Arc::new(transport));
    quinn::Endpoint::server(config, addr(w, 2, 4433)).expect("bind home/edge's QUIC address")
}

/// The next connection to `home`, its handshake done (10 s at most).
async fn next_link(home: &quinn::Endpoint) -> quinn::Connection {
    let incoming = tokio::time::timeout(Duration::from_secs(10), home.accept())
        .await
        .expect("away/edge connects within 10 s")
        .expect("the endpoint is open");
    tokio::time::timeout(Duration::from_secs(10), incoming)
        .await
        .expect("handshake within 10 s")
        .expect("handshake with away/edge")
}

/// Serve one flow stream on `link` as a home edge that allows it: read the
/// header, answer `Accepted`, echo the client's bytes to their end. Returns
/// the request.
async fn accept_and_echo(link: &quinn::Connection) -> FlowRequest {
    let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(10), link.accept_bi())
        .await
        .expect("a flow stream within 10 s")
        .expect("accept the flow stream");
    let mut buf = Vec::new();
    let (request, used) = loop {
        match FlowRequest::decode(&buf).expect("a well-formed stream header") {
            Some(decoded) => break decoded,
            None => {
                let mut chunk = [0u8; 1024];
                let n = tokio::time::timeout(Duration::from_secs(10), recv.read(&mut chunk))
                    .await
                    .expect("the header within 10 s")
                    .expect("read the header")
                    .expect("the header before the stream's end");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    };
    let mut answer = Vec::new();
    FlowAnswer::Accepted.encode(&mut answer).expect("encode");
    send.write_all(&answer).await.expect("answer");
    // The client's first bytes may have come with the header.
    send.write_all(&buf[used..]).await.expect("echo");
    let rest = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20))
        .await
        .expect("the client's end within 10 s")
        .expect("read to the end");
    send.write_all(&rest).await.expect("echo");
    send.finish().expect("finish");
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
    request
}

/// The value of `series` (exact name and labels) on a metrics page.
fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_grants_no_stream_gets_flows_refused_as_overloaded_and_keeps_its_link() {
    let w = World::new();
    let home = stingy_home(&w);
    let doc = document(&w, &Options::default());
    let snapshot = w.snapshot(&doc, "away/edge", "away.snapshot.json");
    let (cert, key, _) = w.edge_cert("away", "edge", "away-edge", None, None);
    let away = start_edge(
        &w,
        "away",
        "away/edge",
        &snapshot,
        &cert,
        &key,
        &away_ingress(&w),
    );
    let admin = addr(&w, 1, 9100);

    // Two CONNECTs at once through away: it dials home/edge over QUIC,
    // which lets it open no stream. Each waits out the connect timeout,
    // side by side: a flow waiting for credit holds up no other.
    let started = tokio::time::Instant::now();
    let connect = || {
        tokio::spawn(curl(vec![
            "--proxytunnel".into(),
            "--proxy".into(),
            format!("http://{}", addr(&w, 1, 3128)),
            "--write-out".into(),
            "%{http_connect}".into(),
            "http://echo.home.example:7007/".into(),
        ]))
    };
    let (first, second) = (connect(), connect());
    let link = next_link(&home).await;
    for curl in [first, second] {
        let (_, status, _) = curl.await.expect("curl task");
        assert_eq!(status.trim(), "503", "{}", away.log_text());
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(4500),
        "refused after {waited:?}, before the 5 s connect timeout ran out"
    );
    assert!(
        waited < Duration::from_secs(9),
        "two refusals took {waited:?}: the second flow waited behind the first"
    );
    let refused = audit_record(&w, "away", |r| r["reason"] == "home:overloaded").await;
    assert_eq!(refused["result"], "denied");
    assert_eq!(refused["ingress"], "connect");
    assert_eq!(refused["peer_edge"], "home/edge", "{refused:#}");
    assert_eq!(refused["transport"], "quic", "{refused:#}");
    let log = away.log_text();
    assert!(
        log.contains("home/edge takes no more flows from this edge for now"),
        "the reason is logged: {log}"
    );
    let page = metrics(admin).await;
    assert_eq!(
        metric(
            &page,
            "fedgate_denials_total{role=\"visited\",reason=\"home:overloaded\"}"
        ),
        Some(2.0),
        "{page}"
    );
    // A busy peer is not a broken one: the QUIC link stays, and nothing
    // went over TCP (home/edge has no TCP listener here).
    assert_eq!(
        metric(
            &page,
            "fedgate_peer_link{peer=\"home/edge\",transport=\"quic\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert!(link.close_reason().is_none(), "{:?}", link.close_reason());

    // A flow on the echo VIP waits for credit; home grants one stream a
    // second later, and the flow goes on over the same link.
    let vip: SocketAddr = addr(&w, 130, 7007);
    let flow = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let back = echo_through(vip, b"waited for credit").await;
        (back, started.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    link.set_max_concurrent_bi_streams(1u32.into());
    let request = accept_and_echo(&link).await;
    assert_eq!(request.service, "home/echo");
    assert_eq!(request.port, 7007);
    assert_eq!(request.src_network.as_deref(), Some("roaming-staff"));
    let (back, took) = flow.await.expect("flow task");
    assert_eq!(back.as_deref(), Ok(&b"waited for credit"[..]));
    assert!(
        took >= Duration::from_millis(900),
        "the flow went on after {took:?}, before home granted a stream"
    );
    let allowed = audit_record(&w, "away", |r| r["result"] == "allowed").await;
    assert_eq!(allowed["peer_edge"], "home/edge");
    assert_eq!(allowed["transport"], "quic");
    assert_eq!(allowed["bytes_up"], 17);
    assert_eq!(allowed["bytes_down"], 17);
    assert_eq!(
        allowed["flow_id"].as_str(),
        Some(format!("{:032x}", request.flow_id).as_str()),
        "the header carries the flow id of away's record"
    );
    home.close(0u32.into(), b"test over");
}
