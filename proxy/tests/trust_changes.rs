//! What a peer link made while a certificate was trusted does once it is
//! not: the peer's certificate expires under a live link, and the federation
//! moves to a new CA (a rollover, the CA files replaced in place, no edge
//! restarted). In both, links made under the old trust are closed with the
//! reason logged and counted, and flows come back only where the new trust
//! allows.

mod common;

use std::time::Duration;

use common::*;
use jiff::SignedDuration;
use tests::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Hold a flow open through the echo VIP: proven with one echo.
async fn held_flow(w: &World) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr(w, 130, 7007))
        .await
        .expect("connect to the echo VIP");
    s.write_all(b"held").await.expect("write");
    let mut back = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&back, b"held");
    s
}

/// Whether `s` is closed (EOF or an error) within `within`.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn count(p: &tests::Proc, needle: &str) -> usize {
    p.log_text().matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_link_ends_when_the_peer_certificate_expires() {
    ends_at_expiry(Transport::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_flow_ends_when_the_peer_certificate_expires() {
    ends_at_expiry(Transport::Tcp).await;
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    /// One connection for every flow: the connection is closed.
    Quic,
    /// (`--no-quic`) A TLS connection per flow: the flow is closed.
    Tcp,
}

/// away's certificate expires under a live flow over `transport`.
async fn ends_at_expiry(transport: Transport) {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let home_snap = w.snapshot(&doc, "home/edge", "home.snapshot.json");
    let away_snap = w.snapshot(&doc, "away/edge", "away.snapshot.json");
    let now = tests::now();
    // away's certificate is good for 12 s more; home's for a day.
    let expires = now + SignedDuration::from_secs(12);
    let (ac, ak, _) = w.edge_cert(
        "away",
        "edge",
        "away-short",
        Some((now - SignedDuration::from_hours(1), expires)),
        None,
    );
    let (hc, hk, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let home_admin = addr(&w, 2, 9100);
    let no_quic: Vec<String> = match transport {
        Transport::Quic => vec![],
        Transport::Tcp => vec!["--no-quic".into()],
    };
    let mut home_args = vec!["--admin".to_string(), home_admin.to_string()];
    home_args.extend(no_quic.iter().cloned());
    let mut home = start_edge(&w, "home", "home/edge", &home_snap, &hc, &hk, &home_args);
    let mut away_args = away_ingress(&w);
    away_args.extend(no_quic);
    let away = start_edge(&w, "away", "away/edge", &away_snap, &ac, &ak, &away_args);
    let name = if transport == Transport::Quic {
        "quic"
    } else {
        "tcp"
    };
    assert_eq!(echo_record(&w, "before expiry").await["transport"], name);
    let mut held = held_flow(&w).await;

    // At the expiry, home closes the link, or the flow's own connection,
    // by itself: no flow, snapshot or restart asks it to.
    home.wait_for(
        match transport {
            Transport::Quic => "peer connection closed: the peer is refused now",
            Transport::Tcp => "flow closed: refused now",
        },
        Duration::from_secs(25),
    );
    assert!(
        tests::now() >= expires,
        "closed before the certificate expired"
    );
    assert!(
        closed_within(&mut held, Duration::from_secs(5)).await,
        "the flow held on the link outlived it"
    );
    match transport {
        Transport::Quic => {
            let m = metrics(home_admin).await;
            assert!(
                m.contains("fedgate_peer_closed_total{reason=\"expired\"} 1"),
                "{m}"
            );
        }
        Transport::Tcp => {
            let r = audit_record(&w, "home", |r| r["bytes_up"] == "held".len()).await;
            assert_eq!(r["closed"], "expired", "{r}");
        }
    }
    // A new flow finds away's certificate refused at the handshake.
    let back = echo_through(addr(&w, 130, 7007), b"after expiry").await;
    assert_ne!(back.as_deref(), Ok(&b"after expiry"[..]));
    home.wait_for("certificate expired", Duration::from_secs(10));
    let r = audit_record(&w, "away", |r| {
        r["result"] == "denied" && r["reason"] == "home-unreachable"
    })
    .await;
    assert_eq!(r["service"], "home/echo");
    assert!(
        !audit(&w, "home")
            .iter()
            .any(|r| r["bytes_up"] == "after expiry".len()),
        "the flow after the expiry reached home"
    );
    drop(away);
}

/// Write `pems` as the CA bundle both edges read (`--ca`), whole under a
/// temporary name and renamed, as an ICT team's tooling would.
fn write_bundle(w: &World, pems: &[&str]) {
    let tmp = w.path("ca.pem.new");
    std::fs::write(&tmp, pems.concat()).expect("write bundle");
    std::fs::rename(&tmp, w.ca_pem()).expect("rename bundle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rollover_needs_no_restart() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let mut pair = start_pair(&w, &doc, &doc, &[]);
    let (away_admin, home_admin) = (addr(&w, 1, 9100), addr(&w, 2, 9100));
    let old_ca = w.ca_cert_pem().to_owned();
    let new_ca = w.another_ca("Fedgate test CA 2");
    let home_old = (w.path("home-edge.pem"), w.path("home-edge.key"));
    // A copy of home's first pair, from the old CA, kept for the end.
    let home_ca1 = (w.path("home-ca1.pem"), w.path("home-ca1.key"));
    std::fs::copy(&home_old.0, &home_ca1.0).expect("copy");
    std::fs::copy(&home_old.1, &home_ca1.1).expect("copy");
    assert_eq!(echo_record(&w, "one").await["transport"], "quic");
    const REPLACED: &str = "CA certificates replaced";
    const CLOSED: &str = "peer connection closed: the peer is refused now";

    // 1. Both CAs trusted: nothing else changes, the link stays.
    write_bundle(&w, &[&old_ca, new_ca.cert_pem()]);
    pair.away.wait_for(REPLACED, Duration::from_secs(10));
    pair.home.wait_for(REPLACED, Duration::from_secs(10));
    assert_eq!(echo_record(&w, "two-").await["transport"], "quic");
    assert_eq!(count(&pair.away, CLOSED) + count(&pair.home, CLOSED), 0);

    // 2. Each edge's certificate renewed in place by the new CA.
    let (nc, nk, new_serial) =
        w.edge_cert_from(&new_ca, "away", "edge", "away-edge-ca2", None, None);
    install(
        &(nc, nk),
        &w.path("away-edge.pem"),
        &w.path("away-edge.key"),
    );
    pair.away
        .wait_for("certificate renewed", Duration::from_secs(10));
    assert_eq!(
        presented_serial(&w, &home_ca1),
        new_serial.to_lowercase().trim_start_matches('0')
    );
    let (nc, nk, _) = w.edge_cert_from(&new_ca, "home", "edge", "home-edge-ca2", None, None);
    install(&(nc, nk), &home_old.0, &home_old.1);
    pair.home
        .wait_for("certificate renewed", Duration::from_secs(10));
    // The link made with the old certificates is still up.
    assert_eq!(echo_record(&w, "three").await["transport"], "quic");

    // 3. The old CA out: the link made with its certificates is closed at
    // once, and the next flow comes back over a link made with the new ones.
    let (a, h) = (&pair.away, &pair.home);
    write_bundle(&w, &[new_ca.cert_pem()]);
    let both = eventually(40, Duration::from_millis(250), || async move {
        count(a, REPLACED) == 2 && count(h, REPLACED) == 2
    })
    .await;
    assert!(both, "{}\n{}", a.log_text(), h.log_text());
    let closed = eventually(40, Duration::from_millis(250), || async move {
        count(a, CLOSED) + count(h, CLOSED) >= 1
    })
    .await;
    assert!(closed, "{}\n{}", a.log_text(), h.log_text());
    let untrusted = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("fedgate_peer_closed_total{reason=\"untrusted\"}"))
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
            .unwrap_or(0.0)
    };
    let n = untrusted(&metrics(away_admin).await) + untrusted(&metrics(home_admin).await);
    assert!(n >= 1.0, "no link closed as untrusted");
    assert!(
        echo_comes_back(&w, 40).await,
        "no flow after the rollover\n{}",
        pair.away.log_text()
    );

    // A certificate of the old CA is refused at the handshake now.
    let a = &pair.away;
    let failed = count(a, "handshake failed");
    let at = addr(&w, 1, 4443).to_string();
    let (cert, key) = (
        home_ca1.0.display().to_string(),
        home_ca1.1.display().to_string(),
    );
    tests::run(
        "openssl",
        &["s_client", "-connect", &at, "-cert", &cert, "-key", &key],
    );
    let refused = eventually(20, Duration::from_millis(250), || async move {
        count(a, "handshake failed") > failed
    })
    .await;
    assert!(refused, "{}", a.log_text());

    // 4. A bundle without the CA of the edge's own certificate is refused
    // (peers trusting only it would refuse this edge), and the one in use
    // stays.
    write_bundle(&w, &[&old_ca]);
    for p in [&mut pair.away, &mut pair.home] {
        p.wait_for("new TLS material refused", Duration::from_secs(10));
        assert!(
            p.log_text()
                .contains("the certificate is not valid now under the CA certificates given"),
            "{}",
            p.log_text()
        );
    }
    assert_eq!(
        echo_record(&w, "four-after-refusal").await["transport"],
        "quic"
    );
    let m = metrics(home_admin).await;
    assert!(
        m.contains("fedgate_certificate_reloads_total{result=\"refused\"} 1"),
        "{m}"
    );
}
