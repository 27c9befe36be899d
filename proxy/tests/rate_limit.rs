//! A source that opens connections faster than `--conn-rate` per second is
//! refused past the limit, and the refusals are counted, and logged once a
//! second.

mod common;

use std::time::Duration;

use common::*;
use tests::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_rate_are_refused() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let home_snap = w.snapshot(&doc, "home/edge", "home.snapshot.json");
    let away_snap = w.snapshot(&doc, "away/edge", "away.snapshot.json");
    let (hc, hk, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let (ac, ak, _) = w.edge_cert("away", "edge", "away-edge", None, None);
    let _home = start_edge(&w, "home", "home/edge", &home_snap, &hc, &hk, &[]);
    let mut args = away_ingress(&w);
    args.extend(["--conn-rate".to_string(), "3".to_string()]);
    let away = start_edge(&w, "away", "away/edge", &away_snap, &ac, &ak, &args);

    // Ten connections at once from one address: at most three (per second)
    // are served; the rest are closed without a byte.
    let vip = addr(&w, 130, 7007);
    let mut served = 0;
    for i in 0..10u8 {
        let mut s = tokio::net::TcpStream::connect(vip).await.expect("connect");
        let msg = [b'a' + i];
        let _ = s.write_all(&msg).await;
        let _ = s.shutdown().await;
        let mut back = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut back)).await;
        if back == msg {
            served += 1;
        }
    }
    assert!(
        (1..=6).contains(&served),
        "served {served} of 10 at a limit of 3/s (allowing a second boundary)\n{}",
        away.log_text()
    );
    let (ok, metrics, _) = curl(vec![format!("http://{}/metrics", addr(&w, 1, 9100))]).await;
    assert!(
        ok && metrics.contains("fedgate_denials_total{role=\"visited\",reason=\"rate-limited\"}"),
        "{metrics}"
    );
    // Logged once a second per address, not once per connection.
    let lines = away
        .log_text()
        .lines()
        .filter(|l| l.contains("connection rate limit exceeded"))
        .count();
    assert!(
        (1..=2).contains(&lines) && lines < 10 - served,
        "{lines} lines for {} refused:\n{}",
        10 - served,
        away.log_text()
    );
}
