//! UDP between the edges blocked, then let through again, by a stand-in
//! firewall: a UDP forwarder in front of the home edge's QUIC port that
//! drops every datagram while it is blocked (as a perimeter firewall does;
//! the home edge itself listens on QUIC as usual). While UDP is blocked,
//! flows go over TLS on TCP and QUIC is retried in the background; once
//! UDP passes again, the link comes back up and new flows take QUIC. When
//! UDP is blocked again under a link that is up, the edge notices within
//! seconds that nothing comes back (not at the QUIC idle timeout), and the
//! flow being opened, then the next ones, go over TCP. A flow whose client
//! bytes were already sent on the lost path is not sent again (they might
//! have arrived): it fails at once, and the client tries again.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use tests::{World, ip};
use tokio::net::UdpSocket;

/// Datagrams both ways between one client and `to`, unless blocked; those
/// coming back from `to` arrive `latency` after they passed (as over a
/// longer path: the block stops what reaches it after it is set, not what
/// is already on its way).
struct Firewall {
    blocked: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Firewall {
    async fn start(listen: SocketAddr, to: SocketAddr, latency: Duration) -> Self {
        let outer = Arc::new(UdpSocket::bind(listen).await.expect("bind the firewall"));
        let inner = UdpSocket::bind(SocketAddr::new(listen.ip(), 0))
            .await
            .expect("bind the firewall's inner side");
        inner.connect(to).await.expect("connect to the home edge");
        let blocked = Arc::new(AtomicBool::new(true));
        let dropped = Arc::new(AtomicU64::new(0));
        let (b, d) = (blocked.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            let mut client = None;
            let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            loop {
                tokio::select! {
                    r = outer.recv_from(&mut up) => {
                        let Ok((n, from)) = r else { continue };
                        client = Some(from);
                        if b.load(Ordering::SeqCst) {
                            d.fetch_add(1, Ordering::SeqCst);
                        } else {
                            let _ = inner.send(&up[..n]).await;
                        }
                    }
                    r = inner.recv(&mut down) => {
                        let Ok(n) = r else { continue };
                        match client {
                            Some(c) if !b.load(Ordering::SeqCst) && latency.is_zero() => {
                                let _ = outer.send_to(&down[..n], c).await;
                            }
                            Some(c) if !b.load(Ordering::SeqCst) => {
                                let (outer, datagram) = (outer.clone(), down[..n].to_vec());
                                tokio::spawn(async move {
                                    tokio::time::sleep(latency).await;
                                    let _ = outer.send_to(&datagram, c).await;
                                });
                            }
                            _ => {
                                d.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
            }
        });
        Self {
            blocked,
            dropped,
            task,
        }
    }

    fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The transport of a flow echoing `msg` ([`echo_record`]).
async fn flow_transport(w: &World, msg: &str) -> String {
    let r = echo_record(w, msg).await;
    r["transport"].as_str().unwrap_or("-").to_string()
}

async fn quic_link_up(admin: SocketAddr) -> bool {
    metrics(admin)
        .await
        .contains("fedgate_peer_link{peer=\"home/edge\",transport=\"quic\"} 1")
}

/// The firewall (.20) in front of home's QUIC port, blocked, and the pair
/// with away's snapshot sending QUIC to it: returns the firewall, away's
/// document and the pair.
async fn behind_firewall(w: &World, doc: &str) -> (Firewall, String, Pair) {
    behind_firewall_with(w, doc, Duration::ZERO).await
}

/// [`behind_firewall`], with `latency` on the firewall's way back.
async fn behind_firewall_with(w: &World, doc: &str, latency: Duration) -> (Firewall, String, Pair) {
    let firewall = Firewall::start(addr(w, 20, 4433), addr(w, 2, 4433), latency).await;
    let home_quic = format!("quic: \"{}:4433\"", ip(w.net, 2));
    assert!(doc.contains(&home_quic));
    let away_doc = doc.replace(&home_quic, &format!("quic: \"{}:4433\"", ip(w.net, 20)));
    // The edge's default head start, which this file tests (the test kit
    // gives edges a longer one).
    let head_start = ["--quic-head-start-ms".to_string(), "300".to_string()];
    let pair = start_pair_with(w, &away_doc, doc, &[], &head_start);
    (firewall, away_doc, pair)
}

/// The echo origin (.11:7007) and the HTTPS origin (.10:8443,
/// `web.home.example`) behind home: the HTTPS origin's certificate.
async fn origins(w: &World) -> PathBuf {
    tests::echo_origin(addr(w, 11, 7007)).await;
    let origin_cert = w.path("origin.pem");
    tests::https_origin(addr(w, 10, 8443), "web.home.example", &origin_cert, "web\n").await;
    origin_cert
}

/// Fetch the HTTPS origin through away's CONNECT proxy just after UDP was
/// blocked under a QUIC link that is up (`when` says what else was going
/// on): the flow (nothing of the client's sent before the answer, so safe
/// to send again) finds the path silent and goes over TCP within 5 s.
async fn fetch_falls_back_to_tcp(w: &World, pair: &Pair, origin_cert: &Path, when: &str) {
    let started = tokio::time::Instant::now();
    let (ok, body, err) = curl(vec![
        "--proxy".into(),
        format!("http://{}", addr(w, 1, 3128)),
        "--cacert".into(),
        origin_cert.display().to_string(),
        "https://web.home.example:8443/".into(),
    ])
    .await;
    let took = started.elapsed();
    assert!(
        ok && body == "web\n",
        "{body} {err}\n{}",
        pair.away.log_text()
    );
    assert!(
        took < Duration::from_secs(5),
        "the flow took {took:?} with UDP newly blocked{when}\n{}",
        pair.away.log_text()
    );
    let r = audit_record(w, "away", |r| r["ingress"] == "connect").await;
    assert_eq!(r["transport"], "tcp");
    assert!(
        pair.away.log_text().contains("QUIC path to peer lost"),
        "{}",
        pair.away.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_take_tcp_while_udp_is_blocked_and_quic_again_after() {
    let w = World::new();
    let origin_cert = origins(&w).await;
    let doc = document(&w, &Options::default());
    let (firewall, _, mut pair) = behind_firewall(&w, &doc).await;
    let away_admin = addr(&w, 1, 9100);

    // Blocked: the first flow gives QUIC a head start of 300 ms, then goes
    // over TCP; the next one goes over TCP at once.
    let started = tokio::time::Instant::now();
    assert_eq!(flow_transport(&w, "one").await, "tcp");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the first flow waited {:?} for QUIC",
        started.elapsed()
    );
    let started = tokio::time::Instant::now();
    assert_eq!(flow_transport(&w, "second").await, "tcp");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a flow while QUIC is being retried took {:?}",
        started.elapsed()
    );
    assert!(!quic_link_up(away_admin).await);

    // The handshake under way gives up (after 2 s); QUIC is retried in the
    // background: handshakes reach the firewall, and are dropped, with no
    // flow asking for them.
    pair.away
        .wait_for("using TLS over TCP", Duration::from_secs(10));
    let before = firewall.dropped();
    let retried = eventually(100, Duration::from_millis(50), || {
        let dropped = firewall.dropped();
        async move { dropped > before }
    })
    .await;
    assert!(retried, "no QUIC retry within 5 s of the fallback");

    // UDP passes again: the link comes back within the backoff (at most
    // 30 s between attempts; here the next is due within a few seconds).
    firewall.set_blocked(false);
    let up = eventually(200, Duration::from_millis(100), || quic_link_up(away_admin)).await;
    assert!(
        up,
        "QUIC did not come back within 20 s of UDP passing\n{}",
        pair.away.log_text()
    );
    assert_eq!(flow_transport(&w, "the third").await, "quic");
    let home = audit_record(&w, "home", |r| r["bytes_up"] == 9).await;
    assert_eq!(home["transport"], "quic");

    // Blocked again, under the link that is up. A CONNECT (nothing of the
    // client's sent before the answer, so safe to send again) is opened on
    // the QUIC link, finds the path silent, and goes over TCP instead.
    firewall.set_blocked(true);
    fetch_falls_back_to_tcp(&w, &pair, &origin_cert, "").await;
    assert!(!quic_link_up(away_admin).await);
    // The next flows go over TCP at once.
    let started = tokio::time::Instant::now();
    assert_eq!(flow_transport(&w, "the fourth").await, "tcp");
    assert!(started.elapsed() < Duration::from_secs(1));
    let metrics = metrics(away_admin).await;
    assert!(
        metrics.contains("fedgate_quic_path_lost_total{peer=\"home/edge\"} 1"),
        "{metrics}"
    );

    // Once more, with a flow whose bytes went out on the lost path: refused
    // within seconds, not sent again; the client's retry goes over TCP.
    firewall.set_blocked(false);
    let up = eventually(400, Duration::from_millis(100), || quic_link_up(away_admin)).await;
    assert!(up, "QUIC did not come back within 40 s the second time");
    assert_eq!(flow_transport(&w, "over quic again").await, "quic");
    firewall.set_blocked(true);
    let started = tokio::time::Instant::now();
    let lost = echo_through(addr(&w, 130, 7007), b"sent once").await;
    assert!(
        lost.as_deref().is_ok_and(<[u8]>::is_empty) || lost.is_err(),
        "{lost:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the lost flow took {:?} to fail",
        started.elapsed()
    );
    let r = audit_record(&w, "away", |r| r["reason"] == "home-unreachable").await;
    assert_eq!(r["result"], "denied");
    assert!(
        pair.away.log_text().contains("not sending them again"),
        "{}",
        pair.away.log_text()
    );
    assert_eq!(flow_transport(&w, "sent once, again").await, "tcp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_is_no_longer_retried_once_the_snapshot_drops_its_endpoint() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let (firewall, away_doc, mut pair) = behind_firewall(&w, &doc).await;
    assert_eq!(flow_transport(&w, "one").await, "tcp");
    pair.away
        .wait_for("using TLS over TCP", Duration::from_secs(10));

    // The members agree UDP stays blocked: home's edge offers TLS over TCP
    // only. away stops retrying QUIC (an attempt under way ends within its
    // 2 s timeout), and flows go on over TCP.
    let tcp_only = away_doc.replace(&format!("quic: \"{}:4433\", ", ip(w.net, 20)), "");
    w.snapshot_version(&tcp_only, "away/edge", "away.snapshot.json", 2);
    wait_version(addr(&w, 1, 9100), 2).await;
    pair.away
        .wait_for("QUIC retry stopped", Duration::from_secs(40));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = firewall.dropped();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        firewall.dropped(),
        before,
        "QUIC handshakes went on after the snapshot dropped the endpoint"
    );
    assert_eq!(flow_transport(&w, "second").await, "tcp");
}

/// UDP blocked under a busy QUIC link whose packets take 200 ms to come
/// back: acknowledgements of what the busy flow sent before the block keep
/// arriving after a new flow's header goes out. They must not pass for an
/// answer to it: the new flow finds the path silent and goes over TCP
/// within seconds (not after its 10 s answer timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_already_on_their_way_do_not_hide_a_blocked_path() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = World::new();
    let origin_cert = origins(&w).await;
    let doc = document(&w, &Options::default());
    let (firewall, _, pair) = behind_firewall_with(&w, &doc, Duration::from_millis(200)).await;
    firewall.set_blocked(false);
    // The first flow starts the link. The handshake takes at least the
    // 200 ms way back, which can outlast the 300 ms head start the flow
    // gives QUIC on a loaded machine (then that flow goes over TCP, and the
    // link comes up all the same): wait for the link, then a flow takes it.
    let first = flow_transport(&w, "first").await;
    assert!(first == "quic" || first == "tcp", "{first}");
    let up = eventually(200, Duration::from_millis(100), || {
        quic_link_up(addr(&w, 1, 9100))
    })
    .await;
    assert!(
        up,
        "QUIC did not come up within 20 s of UDP passing\n{}",
        pair.away.log_text()
    );
    assert_eq!(flow_transport(&w, "second").await, "quic");

    // A flow that keeps sending (1 KiB every 5 ms, for at most 20 s), its
    // echo read and dropped.
    let busy = tokio::net::TcpStream::connect(addr(&w, 130, 7007))
        .await
        .expect("connect to the echo VIP");
    let (mut from_busy, mut to_busy) = busy.into_split();
    let sender = tokio::spawn(async move {
        for _ in 0..4000 {
            if to_busy.write_all(&[7u8; 1024]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut echoed = 0usize;
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(20), from_busy.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            echoed += n;
        }
        echoed
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    firewall.set_blocked(true);
    fetch_falls_back_to_tcp(&w, &pair, &origin_cert, " under a busy link").await;
    sender.abort();
    // The busy flow had been echoed through QUIC before the block.
    let echoed = reader.await.expect("reader task");
    assert!(echoed > 0, "the busy flow was never echoed");
}
