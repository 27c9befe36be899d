//! Peers that our own edges never are, scripted with quinn and the
//! overlay's own TLS configuration (a real certificate of the edge they
//! stand for, the overlay's ALPN, mutual TLS against the federation CA),
//! against real `fedgate-edge` processes and real clients (curl, TCP
//! clients on a service VIP):
//!
//! - a home edge that gives the visited edge no QUIC stream credit: a peer
//!   at its stream limit, or another implementation that grants streams
//!   sparingly (our edges let 1,024 streams past `--max-flows-per-peer` in,
//!   to refuse them at once as "overloaded"). A flow it gives no credit
//!   within the connect timeout (5 s) is refused as `home:overloaded`:
//!   CONNECT answers 503, the record names the peer and the transport, and
//!   the link is not given up for it (no TCP fallback, the QUIC link still
//!   up); two such flows wait side by side, not one behind the other; a flow
//!   waiting for credit goes on as soon as the peer grants it;
//! - a home edge that answers in a header version this edge does not speak,
//!   or does not answer at all: the flow is refused (CONNECT 502) with the
//!   reason logged, in bounded time;
//! - a visited edge that sends a header the home edge cannot read (another
//!   version, not a Fedgate frame, a body over the limit) or not all of one
//!   in time: the home edge logs and counts it, closes that stream without
//!   an answer, and serves the next flow on the same connection.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use federation::wire::{FlowAnswer, FlowRequest};
use tests::World;

/// The overlay's TLS credentials of `ORG/edge`, from a certificate the
/// test's CA issues.
fn credentials(w: &World, org: &str) -> Arc<federation::mtls::Credentials> {
    let (cert, key, _) = w.edge_cert(org, "edge", &format!("{org}-edge"), None, None);
    let material = proxy::tls::load_material(&cert, &key, &w.ca_pem()).expect("edge material");
    federation::mtls::Credentials::new(&material).expect("edge credentials")
}

/// A QUIC endpoint speaking as home/edge at its overlay address, which lets
/// a peer open `streams` flow streams at once (more as the test grants
/// them: `Connection::set_max_concurrent_bi_streams`).
fn scripted_home(w: &World, streams: u32) -> quinn::Endpoint {
    let tls = proxy::tls::server_config(&credentials(w, "home")).expect("home TLS config");
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("QUIC crypto");
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(streams.into());
    config.transport_config(Arc::new(transport));
    quinn::Endpoint::server(config, addr(w, 2, 4433)).expect("bind home/edge's QUIC address")
}

/// A QUIC connection to the real home/edge, speaking as away/edge.
async fn scripted_away(w: &World) -> (quinn::Endpoint, quinn::Connection) {
    let tls = proxy::tls::client_config(&credentials(w, "away")).expect("away TLS config");
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC crypto");
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let endpoint = quinn::Endpoint::client(addr(w, 1, 0)).expect("bind away/edge's address");
    let connecting = endpoint
        .connect_with(config, addr(w, 2, 4433), "peer.fedgate.invalid")
        .expect("dial home/edge");
    let link = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("handshake within 10 s")
        .expect("handshake with home/edge");
    (endpoint, link)
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

/// The next flow stream on `link` (10 s at most) and its header; the bytes
/// that came after the header are the client's.
async fn next_flow(
    link: &quinn::Connection,
) -> (quinn::SendStream, quinn::RecvStream, FlowRequest, Vec<u8>) {
    let (send, mut recv) = tokio::time::timeout(Duration::from_secs(10), link.accept_bi())
        .await
        .expect("a flow stream within 10 s")
        .expect("accept the flow stream");
    // The edge's own header reader, as the home edge reads it.
    let (request, early) = tokio::time::timeout(
        Duration::from_secs(10),
        proxy::overlay::read_frame(&mut recv, FlowRequest::decode),
    )
    .await
    .expect("the header within 10 s")
    .expect("a well-formed header");
    (send, recv, request, early)
}

/// Serve one flow stream on `link` as a home edge that allows it: read the
/// header, answer `Accepted`, echo the client's bytes to their end. Returns
/// the request.
async fn accept_and_echo(link: &quinn::Connection) -> FlowRequest {
    let (mut send, mut recv, request, early) = next_flow(link).await;
    let mut answer = Vec::new();
    FlowAnswer::Accepted.encode(&mut answer).expect("encode");
    send.write_all(&answer).await.expect("answer");
    // The client's first bytes may have come with the header.
    send.write_all(&early).await.expect("echo");
    let rest = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20))
        .await
        .expect("the client's end within 10 s")
        .expect("read to the end");
    send.write_all(&rest).await.expect("echo");
    send.finish().expect("finish");
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
    request
}

/// Frame bytes as [`federation::wire`] encodes them, with the version byte
/// (after the magic "FG") set to `version`.
fn with_version(mut frame: Vec<u8>, version: u8) -> Vec<u8> {
    assert_eq!(&frame[..3], b"FG\x01", "a version 1 frame");
    frame[2] = version;
    frame
}

/// The real away/edge with every ingress listener and `extra` flags,
/// ready, its home edge scripted.
fn start_away(w: &World, extra: &[String]) -> tests::Proc {
    let doc = document(w, &Options::default());
    let snapshot = w.snapshot(&doc, "away/edge", "away.snapshot.json");
    let (cert, key, _) = w.edge_cert("away", "edge", "away-edge", None, None);
    let mut args = away_ingress(w);
    args.extend(extra.iter().cloned());
    start_edge(w, "away", "away/edge", &snapshot, &cert, &key, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_grants_no_stream_gets_flows_refused_as_overloaded_and_keeps_its_link() {
    let w = World::new();
    let home = scripted_home(&w, 0);
    let away = start_away(&w, &[]);
    let admin = addr(&w, 1, 9100);

    // Two CONNECTs at once through away: it dials home/edge over QUIC,
    // which lets it open no stream. Each waits out the connect timeout,
    // side by side: a flow waiting for credit holds up no other.
    let started = tokio::time::Instant::now();
    let (link, first, second) =
        tokio::join!(next_link(&home), connect_status(&w), connect_status(&w));
    for status in [first, second] {
        assert_eq!(status, "503", "{}", away.log_text());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_edge_that_answers_in_another_version_or_not_at_all_gets_the_flow_refused() {
    let w = World::new();
    let home = scripted_home(&w, 100);
    // An answer is awaited for the connect and handshake timeouts together:
    // 5 + 1 s here.
    let away = start_away(&w, &["--handshake-secs".into(), "1".into()]);

    // An answer in header version 2.
    let started = tokio::time::Instant::now();
    let script = async {
        let link = next_link(&home).await;
        let (mut send, _recv, request, _) = next_flow(&link).await;
        let mut answer = Vec::new();
        FlowAnswer::Accepted.encode(&mut answer).expect("encode");
        send.write_all(&with_version(answer, 2))
            .await
            .expect("answer");
        (link, request, send)
    };
    let (status, (link, request, _held)) = tokio::join!(connect_status(&w), script);
    let took = started.elapsed();
    assert_eq!(status, "502", "{}", away.log_text());
    assert!(took < Duration::from_secs(4), "refused after {took:?}");
    assert_eq!(request.service, "home/echo");
    let log = away.log_text();
    assert!(
        log.contains("unsupported header version 2 (this edge speaks 1)"),
        "the reason is logged: {log}"
    );
    let refused = audit_record(&w, "away", |r| r["reason"] == "home-unreachable").await;
    assert_eq!(refused["result"], "denied");
    assert_eq!(refused["ingress"], "connect");

    // No answer at all: the stream is taken and held, the link kept alive.
    let started = tokio::time::Instant::now();
    let script = async {
        let (send, recv, request, _) = next_flow(&link).await;
        (request, send, recv)
    };
    let (status, (request, _send, _recv)) = tokio::join!(connect_status(&w), script);
    let took = started.elapsed();
    assert_eq!(status, "502", "{}", away.log_text());
    assert_eq!(request.service, "home/echo");
    assert!(
        took >= Duration::from_millis(5500) && took < Duration::from_secs(12),
        "refused after {took:?}, not at the 6 s the answer is awaited"
    );
    let log = away.log_text();
    assert!(
        log.contains("no answer from home/edge in time"),
        "the reason is logged: {log}"
    );
    let unanswered = || {
        audit(&w, "away")
            .into_iter()
            .filter(|r| r["reason"] == "home-unreachable")
            .collect::<Vec<_>>()
    };
    // Counted exactly below, with the records shown.
    let _came = eventually(200, Duration::from_millis(25), || {
        let n = unanswered().len();
        async move { n >= 2 }
    })
    .await;
    let records = unanswered();
    assert_eq!(records.len(), 2, "{records:#?}");
    for r in &records {
        assert_eq!(r["peer_edge"], "home/edge", "{r:#}");
    }
    home.close(0u32.into(), b"test over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_edge_drops_a_header_it_cannot_read_and_serves_the_next_flow() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let snapshot = w.snapshot(&doc, "home/edge", "home.snapshot.json");
    let (cert, key, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let admin = addr(&w, 2, 9100);
    let home = start_edge(
        &w,
        "home",
        "home/edge",
        &snapshot,
        &cert,
        &key,
        &[
            "--admin".into(),
            admin.to_string(),
            "--client-hello-secs".into(),
            "1".into(),
        ],
    );
    let (_endpoint, link) = scripted_away(&w).await;
    let request = |flow_id| FlowRequest {
        flow_id,
        service: "home/echo".into(),
        port: 7007,
        src_network: Some("roaming-staff".into()),
        src_addr: Some(addr(&w, 1, 0).ip()),
    };

    // A header in version 2, bytes that are no Fedgate frame, a header that
    // says its body is 65,535 bytes long, and the start of a header and no
    // more: each stream ends with no answer (the last at the 1 s
    // --client-hello-secs), and the link stays up.
    let mut newer = Vec::new();
    request(1).encode(&mut newer).expect("encode");
    for (header, reason) in [
        (
            with_version(newer, 2),
            "unsupported header version 2 (this edge speaks 1)",
        ),
        (
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "not a Fedgate frame (bad magic)",
        ),
        (
            b"FG\x01\x01\xff\xff".to_vec(),
            "frame body of 65535 bytes exceeds the limit of 1024",
        ),
        (b"FG\x01".to_vec(), "no flow header from peer in time"),
    ] {
        let (mut send, mut recv) = link.open_bi().await.expect("open a stream");
        send.write_all(&header).await.expect("send the header");
        let back = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024))
            .await
            .expect("the stream ends within 5 s");
        assert!(
            back.as_ref().is_err() || back.as_ref().is_ok_and(Vec::is_empty),
            "no answer to a header the home edge cannot read: {back:?}"
        );
        let log = home.log_text();
        assert!(log.contains(reason), "the reason is logged: {log}");
    }
    let page = metrics(admin).await;
    for (reason, count) in [("bad-header", 3.0), ("header-timeout", 1.0)] {
        assert_eq!(
            metric(
                &page,
                &format!("fedgate_denials_total{{role=\"home\",reason=\"{reason}\"}}")
            ),
            Some(count),
            "{page}"
        );
    }
    assert!(
        audit(&w, "home").is_empty(),
        "no flow to audit yet: {:#?}",
        audit(&w, "home")
    );
    assert!(link.close_reason().is_none(), "{:?}", link.close_reason());

    // The next flow on the same connection is served.
    let (mut send, mut recv) = link.open_bi().await.expect("open a stream");
    let mut header = Vec::new();
    request(5).encode(&mut header).expect("encode");
    header.extend_from_slice(b"after the bad ones");
    send.write_all(&header).await.expect("send the header");
    send.finish().expect("finish");
    let back = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1024))
        .await
        .expect("the flow ends within 10 s")
        .expect("read the flow");
    let (answer, used) = FlowAnswer::decode(&back)
        .expect("a well-formed answer")
        .expect("a whole answer");
    assert_eq!(answer, FlowAnswer::Accepted);
    assert_eq!(&back[used..], b"after the bad ones");
    let served = audit_record(&w, "home", |r| r["result"] == "allowed").await;
    assert_eq!(served["peer_edge"], "away/edge");
    assert_eq!(served["bytes_up"], 18);
    assert_eq!(served["bytes_down"], 18);
    assert_eq!(audit(&w, "home").len(), 1, "{:#?}", audit(&w, "home"));
}
