//! The edge's limits, each with a real pair of edges and real clients:
//! - a full edge (`--max-flows`) refuses new flows, and CONNECT answers 503;
//! - a home edge refuses a peer over its share (`--max-flows-per-peer`);
//! - a flow on which nothing moves is closed after `--flow-idle-secs` and
//!   audited as `closed: "idle"`, which frees its slot for the next flow;
//! - a client that sends nothing is dropped after `--client-hello-secs`, a
//!   peer that does not finish its handshake after `--handshake-secs`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tests::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A flow through `vip` that has echoed once, held open.
async fn held(vip: SocketAddr) -> TcpStream {
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(vip))
        .await
        .expect("connect in time")
        .expect("connect");
    s.write_all(b"held").await.expect("write");
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&buf, b"held");
    s
}

/// How long until the edge closes `s` (end of stream or reset), waiting at
/// most `limit`; `None` if it is still open then. Any byte is a failure.
async fn closed_after(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(limit, s.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => Some(started.elapsed()),
        Ok(Ok(n)) => panic!("expected the edge to close, got {n} bytes"),
        Err(_) => None,
    }
}

/// Wait (bounded) for `n` audit records at `edge` of held flows closed as
/// idle, and check them: allowed, the 4 bytes of [`held`] each way.
async fn idle_records(w: &World, edge: &str, n: usize) {
    let idle = || -> Vec<serde_json::Value> {
        audit(w, edge)
            .into_iter()
            .filter(|r| r["closed"] == "idle")
            .collect()
    };
    // Counted exactly below, with the records shown.
    let _came = eventually(200, Duration::from_millis(25), || {
        let found = idle().len();
        async move { found >= n }
    })
    .await;
    let records = idle();
    assert_eq!(records.len(), n, "{:#?}", audit(w, edge));
    for r in &records {
        assert_eq!(r["result"], "allowed");
        assert_eq!(r["bytes_up"], 4);
        assert_eq!(r["bytes_down"], 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_edge_refuses_new_flows_until_idle_ones_are_closed() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let pair = start_pair_with(
        &w,
        &doc,
        &doc,
        &[],
        &[
            "--max-flows".into(),
            "2".into(),
            "--flow-idle-secs".into(),
            "4".into(),
        ],
    );
    let vip = addr(&w, 130, 7007);
    let mut first = held(vip).await;
    let mut second = held(vip).await;
    let full = tokio::time::Instant::now();

    // Full: CONNECT answers 503, a VIP connection is closed without a byte.
    assert_eq!(connect_status(&w).await, "503", "{}", pair.away.log_text());
    let through_vip = echo_through(vip, b"third").await;
    assert!(
        through_vip.as_deref().is_ok_and(<[u8]>::is_empty) || through_vip.is_err(),
        "a third flow crossed a full edge: {through_vip:?}"
    );
    let refused = audit_record(&w, "away", |r| r["reason"] == "overloaded").await;
    assert_eq!(refused["result"], "denied");
    assert_eq!(refused["role"], "visited");
    assert!(
        metrics(addr(&w, 1, 9100))
            .await
            .contains("fedgate_denials_total{role=\"visited\",reason=\"overloaded\"} 2"),
        "both refusals counted"
    );

    // Nothing moves on the held flows: the edge closes both after 4 s,
    // not before, and audits them as idle.
    for s in [&mut first, &mut second] {
        let after = closed_after(s, Duration::from_secs(10)).await;
        assert!(after.is_some(), "an idle flow was not closed within 10 s");
    }
    let idle_for = full.elapsed();
    assert!(
        idle_for >= Duration::from_millis(3500),
        "idle flows closed after {idle_for:?}, before --flow-idle-secs 4"
    );
    idle_records(&w, "away", 2).await;
    assert!(pair.away.log_text().contains("flow closed: idle"));

    // Their slots are free again.
    assert_eq!(
        echo_through(vip, b"fourth").await.as_deref(),
        Ok(&b"fourth"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_edge_refuses_a_peer_over_its_share() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let pair = start_pair(
        &w,
        &doc,
        &doc,
        &[
            "--max-flows-per-peer".into(),
            "1".into(),
            "--flow-idle-secs".into(),
            "3".into(),
        ],
    );
    let vip = addr(&w, 130, 7007);
    let mut first = held(vip).await;
    let held_at = tokio::time::Instant::now();

    // away has room; home refuses away's second flow.
    assert_eq!(connect_status(&w).await, "503", "{}", pair.away.log_text());
    let at_home = audit_record(&w, "home", |r| r["reason"] == "overloaded").await;
    assert_eq!(at_home["result"], "denied");
    assert_eq!(at_home["peer_edge"], "away/edge");
    let at_away = audit_record(&w, "away", |r| r["reason"] == "home:overloaded").await;
    assert_eq!(at_away["result"], "denied");
    assert_eq!(at_away["ingress"], "connect");
    assert!(
        metrics(addr(&w, 2, 9100))
            .await
            .contains("fedgate_denials_total{role=\"home\",reason=\"overloaded\"} 1"),
        "home counts the refusal"
    );

    // The home edge closes the idle flow (its own --flow-idle-secs 3) and
    // audits it; then away's next flow is admitted.
    let after = closed_after(&mut first, Duration::from_secs(10)).await;
    assert!(after.is_some(), "the idle flow was not closed within 10 s");
    assert!(
        held_at.elapsed() >= Duration::from_millis(2500),
        "the flow was closed after {:?}, before --flow-idle-secs 3",
        held_at.elapsed()
    );
    idle_records(&w, "home", 1).await;
    assert!(pair.home.log_text().contains("flow closed: idle"));
    assert_eq!(
        echo_through(vip, b"second").await.as_deref(),
        Ok(&b"second"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_and_peers_are_dropped_at_their_timeouts() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let pair = start_pair_with(
        &w,
        &doc,
        &doc,
        &["--handshake-secs".into(), "1".into()],
        &["--client-hello-secs".into(), "1".into()],
    );

    // A client of each ingress listener, and a would-be peer at home's
    // TLS-over-TCP overlay listener: connected, sending nothing.
    let silent = [
        ("SNI listener", addr(&w, 1, 8443)),
        ("CONNECT listener", addr(&w, 1, 3128)),
        ("SOCKS listener", addr(&w, 1, 1080)),
        ("overlay TLS listener", addr(&w, 2, 4443)),
    ];
    for (what, at) in silent {
        let mut s = TcpStream::connect(at).await.expect("connect");
        let after = closed_after(&mut s, Duration::from_secs(6)).await;
        let after = after.unwrap_or_else(|| panic!("the {what} kept a silent connection for 6 s"));
        assert!(
            after >= Duration::from_millis(800),
            "the {what} closed a silent connection after {after:?}, before its 1 s timeout"
        );
    }
    assert!(
        metrics(addr(&w, 2, 9100))
            .await
            .contains("fedgate_handshake_failures_total{reason=\"timeout\",transport=\"tcp\"} 1"),
        "home counts the handshake timeout"
    );
    assert!(
        pair.home.log_text().contains("handshake timed out"),
        "{}",
        pair.home.log_text()
    );
    // The edges serve real clients as before.
    assert_eq!(
        echo_through(addr(&w, 130, 7007), b"still here")
            .await
            .as_deref(),
        Ok(&b"still here"[..]),
        "{}\n{}",
        pair.away.log_text(),
        pair.home.log_text()
    );
}
