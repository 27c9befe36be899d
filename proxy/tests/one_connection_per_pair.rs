//! One QUIC connection per pair of edges: after away's edge dials home's,
//! flows from home's side to away's services ride the same connection.

mod common;

use common::*;
use tests::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_both_ways_share_one_connection() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    tests::echo_origin(addr(&w, 14, 7013)).await;
    // Home's staff visit away too: home gets a roaming network, an ingress
    // prefix, and away opens a service to it.
    let n = |h: u8| tests::ip(w.net, h).to_string();
    let doc = document(&w, &Options::default())
        .replace(
            "  - {org: home, label: corporate, purpose: corporate, cidrs: [10.99.0.0/16]}",
            "  - {org: home, label: corporate, purpose: corporate, cidrs: [10.99.0.0/16]}\n  - {org: home, label: roaming-staff, purpose: roaming-staff, cidrs: [127.0.0.0/8]}",
        )
        .replace(
            &format!("  - {{org: home, name: edge, overlay: {{quic: \"{h}:4433\", tcp: \"{h}:4443\"}}}}", h = n(2)),
            &format!("  - {{org: home, name: edge, overlay: {{quic: \"{h}:4433\", tcp: \"{h}:4443\"}}, ingress: {{vip_prefix: {p}/25}}}}", h = n(2), p = n(0)),
        )
        .replace(
            "services:\n",
            &format!("services:\n  - {{org: away, name: desk, dns: [desk.away.example], address: {}, ports: [7013], protocol: tcp}}\n", n(14)),
        )
        .replace(
            "policies:\n",
            "policies:\n  - {id: home-to-desk, description: Home staff reach away's desk, from: {networks: [home/roaming-staff]}, to: {services: [away/desk]}, action: allow, agreement: ISA-T}\n",
        );
    let pair = start_pair(&w, &doc, &doc, &["--vips".to_string()]);

    // away -> home: away dials.
    let logs = |p: &Pair| format!("away:\n{}\nhome:\n{}", p.away.log_text(), p.home.log_text());
    let back = echo_through(addr(&w, 130, 7007), b"from away").await;
    assert_eq!(
        back.as_deref().ok(),
        Some(&b"from away"[..]),
        "{back:?}\n{}",
        logs(&pair)
    );
    // home -> away: home's first VIP is away/desk, carried on away's connection.
    let back = echo_through(addr(&w, 1, 7013), b"from home").await;
    assert_eq!(
        back.as_deref().ok(),
        Some(&b"from home"[..]),
        "{back:?}\n{}",
        logs(&pair)
    );

    let home_flow = audit_record(&w, "home", |r| {
        r["service"] == "away/desk" && r["role"] == "visited"
    })
    .await;
    assert_eq!(home_flow["transport"], "quic");
    assert_eq!(home_flow["result"], "allowed");
    let dialed_by_home = pair.home.log_text().matches("peer link up").count();
    let dialed_by_away = pair.away.log_text().matches("peer link up").count();
    assert_eq!(
        (dialed_by_away, dialed_by_home),
        (1, 0),
        "expected one connection, dialed by away\naway:\n{}\nhome:\n{}",
        pair.away.log_text(),
        pair.home.log_text()
    );
}
