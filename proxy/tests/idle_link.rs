//! The QUIC link between two edges outlives idle spells (keep-alives at a
//! third of `--idle-secs`), and a peer that dies without a word is shown
//! down (`fedgate_peer_link`) at the idle timeout, with no flow needed to
//! find out.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tests::World;

async fn link_state(admin: SocketAddr) -> Option<String> {
    metrics(admin)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("fedgate_peer_link{peer=\"home/edge\",transport=\"quic\"} "))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_link_stays_up_and_a_dead_peer_is_shown_down_at_the_idle_timeout() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    // Both edges at a 3 s idle timeout (away's standard flags say 10).
    let mut away_args = away_ingress(&w);
    let at = away_args
        .iter()
        .position(|a| a == "--idle-secs")
        .expect("--idle-secs");
    away_args[at + 1] = "3".into();
    let (hc, hk, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let (ac, ak, _) = w.edge_cert("away", "edge", "away-edge", None, None);
    let home_snap = w.snapshot(&doc, "home/edge", "home.snapshot.json");
    let away_snap = w.snapshot(&doc, "away/edge", "away.snapshot.json");
    let home = start_edge(
        &w,
        "home",
        "home/edge",
        &home_snap,
        &hc,
        &hk,
        &["--idle-secs".into(), "3".into()],
    );
    let away = start_edge(&w, "away", "away/edge", &away_snap, &ac, &ak, &away_args);
    let admin = addr(&w, 1, 9100);
    let vip = addr(&w, 130, 7007);

    assert_eq!(
        echo_through(vip, b"before").await.as_deref(),
        Ok(&b"before"[..])
    );
    assert_eq!(link_state(admin).await.as_deref(), Some("1"));
    // Idle for twice the idle timeout: the link is still the same one.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(link_state(admin).await.as_deref(), Some("1"));
    assert_eq!(
        echo_through(vip, b"after").await.as_deref(),
        Ok(&b"after"[..])
    );
    let ups = away.log_text().matches("peer link up").count();
    assert_eq!(ups, 1, "the link was re-established\n{}", away.log_text());
    let r = audit_record(&w, "away", |r| r["bytes_up"] == 5).await;
    assert_eq!(r["transport"], "quic");

    // home dies without closing anything: away shows the link down within
    // the idle timeout (3 s), plus a margin.
    let pid = home.pid().to_string();
    let (ok, _, err) = tests::run("kill", &["-KILL", &pid]);
    assert!(ok, "kill -KILL {pid}: {err}");
    let killed = tokio::time::Instant::now();
    let down = eventually(80, Duration::from_millis(100), || async {
        link_state(admin).await.as_deref() == Some("0")
    })
    .await;
    assert!(
        down,
        "the link to a dead peer still showed up 8 s later\n{}",
        away.log_text()
    );
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "shown down after {:?}, before the idle timeout",
        killed.elapsed()
    );
    assert!(away.log_text().contains("peer connection closed"));
    drop(home);
}
