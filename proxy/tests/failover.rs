//! An organisation with two edges, the first of them down: a visiting flow
//! goes to the second; the next flows go straight there (the failed edge is
//! tried after the others for a while, not again for every flow); when the
//! first edge is back, flows return to it.

mod common;

use std::time::Duration;

use common::*;
use tests::{World, ip};

/// Which home edge a flow echoing `msg` went to ([`echo_record`]).
async fn flow_peer(w: &World, msg: &str) -> String {
    let r = echo_record(w, msg).await;
    r["peer_edge"].as_str().unwrap_or("-").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_go_to_an_organisations_other_edge_while_one_is_down() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let first_edge = format!(
        "  - {{org: home, name: edge, overlay: {{quic: \"{h}:4433\", tcp: \"{h}:4443\"}}}}\n",
        h = ip(w.net, 2)
    );
    assert!(doc.contains(&first_edge));
    let doc = doc.replace(
        &first_edge,
        &format!(
            "{first_edge}  - {{org: home, name: edge2, overlay: {{quic: \"{h}:4433\", tcp: \"{h}:4443\"}}}}\n",
            h = ip(w.net, 4)
        ),
    );
    let away_snap = w.snapshot(&doc, "away/edge", "away.snapshot.json");
    let home_snap = w.snapshot(&doc, "home/edge", "home.snapshot.json");
    let home2_snap = w.snapshot(&doc, "home/edge2", "home2.snapshot.json");
    let (ac, ak, _) = w.edge_cert("away", "edge", "away-edge", None, None);
    let (hc, hk, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let (h2c, h2k, _) = w.edge_cert("home", "edge2", "home-edge2", None, None);
    let _home2 = start_edge(&w, "home2", "home/edge2", &home2_snap, &h2c, &h2k, &[]);
    let away = start_edge(
        &w,
        "away",
        "away/edge",
        &away_snap,
        &ac,
        &ak,
        &away_ingress(&w),
    );

    // home/edge (first in the snapshot) is down: the flow goes to edge2.
    assert_eq!(flow_peer(&w, "one").await, "home/edge2");
    let tries = |away: &tests::Proc| {
        away.log_text()
            .lines()
            .filter(|l| {
                l.contains("cannot open a flow to the home edge") && l.contains("home/edge ")
            })
            .count()
    };
    assert_eq!(tries(&away), 1, "{}", away.log_text());
    let metrics = metrics(addr(&w, 1, 9100)).await;
    for shown in [
        "fedgate_peer_link{peer=\"home/edge\",transport=\"quic\"} 0",
        "fedgate_peer_link{peer=\"home/edge\",transport=\"tcp\"} 0",
        "fedgate_peer_link{peer=\"home/edge2\",transport=\"quic\"} 1",
    ] {
        assert!(metrics.contains(shown), "{shown} not in\n{metrics}");
    }
    // The next flows go straight to edge2: no new attempt at the edge that
    // is down while its retry time has not come.
    let started = tokio::time::Instant::now();
    for msg in ["two!", "three", "four four"] {
        assert_eq!(flow_peer(&w, msg).await, "home/edge2");
    }
    let tried = tries(&away);
    assert!(
        tried <= 2,
        "home/edge was tried {tried} times for 4 flows in {:?}\n{}",
        started.elapsed(),
        away.log_text()
    );

    // home/edge is back: within its retry time (here at most a few
    // seconds), flows go to it again, the first in the snapshot.
    let _home = start_edge(&w, "home", "home/edge", &home_snap, &hc, &hk, &[]);
    let w = &w;
    let mut i = 0;
    let back = eventually(40, Duration::from_millis(250), || {
        i += 1;
        let msg = format!("again {}", "!".repeat(i)); // each its own length
        async move { flow_peer(w, &msg).await == "home/edge" }
    })
    .await;
    assert!(
        back,
        "flows did not return to home/edge within 10 s\n{}",
        away.log_text()
    );
    let r = audit_record(w, "home", |r| r["result"] == "allowed").await;
    assert_eq!(r["peer_edge"], "away/edge");
}
