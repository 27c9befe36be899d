//! Two members' networks as separate network namespaces, as they are
//! deployed: each member's LAN behind its edge, the edges joined by a WAN
//! link, and nothing else between them.
//!
//! ```text
//!  ns b (away's LAN)          ns be (away's edge)                 ns ae (home's edge)           ns a (home's LAN)
//!  staff 198.18.10.50 --lan-- 198.18.10.1  198.19.0.2 ---wan--- 198.19.0.1  198.18.10.1 --lan-- 198.18.10.20
//!                             DNS :53, SNI :8443,                                                  web   :8443 (openssl s_server)
//!                             VIPs 198.18.11.0/24                                                  files :8080 (python http.server)
//! ```
//!
//! Both members number their LAN 198.18.10.0/24 (overlapping ranges, each
//! edge at .1), and neither LAN routes to the other. Each edge host is
//! locked down by the ruleset `fedctl firewall` writes for its member
//! (everything else dropped): nftables at home, iptables and ip6tables at
//! away. A member of staff in away's LAN finds
//! home's systems by name through away's edge (split-horizon DNS) and
//! reaches them with curl, over QUIC, then, once home's perimeter drops
//! UDP, over TLS on TCP. Home's edge listens for its peers on every address
//! of its host (`--overlay-quic [::]:4433`), as it would behind a NAT. All
//! addresses are in 198.18.0.0/15, inside namespaces this test makes and
//! deletes.

mod common;

use std::time::Duration;

use common::{
    NsOrigins, Ruleset, audit, audit_record, first_fetched, ns_curl, ns_drop_quic, ns_edge,
    ns_lock_down, ns_tools,
};
use tests::{Namespaces, World};

const DOC: &str = r#"federation: {name: test, trust_domain: test.fedgate.example}
organisations:
  - {id: away, name: Away Council, kind: local-authority, membership: {agreement: FCA-A, expires: 2035-01-01}, dns: {zones: [away.example]}}
  - {id: home, name: Home Trust, kind: nhs-trust, membership: {agreement: FCA-H, expires: 2035-01-01}, dns: {zones: [home.example]}}
networks:
  - {org: away, label: staff, purpose: roaming-staff, cidrs: [198.18.10.0/24]}
  - {org: home, label: corporate, purpose: corporate, cidrs: [198.18.10.0/24]}
edges:
  - {org: away, name: edge, overlay: {quic: "198.19.0.2:4433", tcp: "198.19.0.2:4443"}, ingress: {addresses: ["198.18.10.1"], vip_prefix: 198.18.11.0/24}, dns: "198.18.10.1:53"}
  - {org: home, name: edge, overlay: {quic: "198.19.0.1:4433", tcp: "198.19.0.1:4443"}}
services:
  - {org: home, name: web, dns: [web.home.example], address: 198.18.10.20, ports: [8443], protocol: tls}
  - {org: home, name: files, dns: [files.home.example], address: 198.18.10.20, ports: [8080], protocol: tcp}
agreements:
  - {id: ISA-T, title: Test sharing, parties: [away, home], purpose: tests, legal_basis: test, owner: {name: T, role: Caldicott Guardian, org: home}, start: 2025-01-01, expires: 2035-01-01}
policies:
  - {id: staff-to-home, description: Away staff reach home systems, from: {networks: [away/staff]}, to: {services: [home/web, home/files]}, action: allow, agreement: ISA-T}
"#;

/// One answer of away's edge's DNS, asked from away's LAN.
fn resolve(ns: &Namespaces, name: &str) -> String {
    let (ok, out, err) = ns.run(
        "b",
        "dig",
        &["@198.18.10.1", name, "A", "+short", "+time=2", "+tries=1"],
    );
    assert!(ok, "dig {name}: {err}");
    out.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_reach_home_systems_across_separate_networks_and_a_perimeter() {
    if !ns_tools() {
        return;
    }
    let w = World::new();
    // Declared before every process in it: they are stopped first.
    let ns = Namespaces::new(&["a", "ae", "be", "b"]);
    ns.link(
        ("a", "lan", "198.18.10.20/24"),
        ("ae", "lan", "198.18.10.1/24"),
    );
    ns.link(
        ("ae", "wan", "198.19.0.1/30"),
        ("be", "wan", "198.19.0.2/30"),
    );
    ns.link(
        ("be", "lan", "198.18.10.1/24"),
        ("b", "lan", "198.18.10.50/24"),
    );
    // away's VIPs: the whole prefix is local to its edge, and routed there
    // from away's LAN.
    ns.ip(
        "be",
        &["route", "add", "local", "198.18.11.0/24", "dev", "lo"],
    );
    ns.ip(
        "b",
        &["route", "add", "198.18.11.0/24", "via", "198.18.10.1"],
    );
    // Home's host loads the nftables ruleset, away's the iptables and
    // ip6tables ones.
    ns_lock_down(&w, &ns, DOC, "ae", "home", Ruleset::Nftables);
    ns_lock_down(&w, &ns, DOC, "be", "away", Ruleset::Xtables);

    // Home's systems: a web server with a certificate for its name, and a
    // plain HTTP file server.
    let origins = NsOrigins::start(
        &w,
        &ns,
        "a",
        "198.18.10.20".parse().expect("address"),
        "web page of home, via the overlay\n",
        "a file of home, via a VIP\n",
    );
    let web_cert = &origins.cert;

    // Home's edge listens for its peers on every address of its host, as
    // behind a NAT, where peers reach it at an address it does not hold;
    // `fedctl firewall` opens the address the document gives.
    let home = ns_edge(
        &w,
        &ns,
        DOC,
        "ae",
        "home",
        &["--overlay-quic", "[::]:4433", "--overlay-tcp", "[::]:4443"],
    );
    for kind in ["quic", "tcp"] {
        let port = if kind == "quic" { 4433 } else { 4443 };
        let line = format!("kind=\"overlay-{kind}\" addr=[::]:{port}");
        assert!(
            home.log_text().contains(&line),
            "{line}\n{}",
            home.log_text()
        );
    }
    let mut away = ns_edge(
        &w,
        &ns,
        DOC,
        "be",
        "away",
        &["--sni", "198.18.10.1:8443", "--vips", "--idle-secs", "10"],
    );

    // Home's file server is not reachable from away's LAN: its address
    // there is away's own range, and nothing routes between the LANs.
    let (ok, _, _) = ns_curl(
        &ns,
        "b",
        &["--max-time", "3", "http://198.18.10.20:8080/files.txt"],
    );
    assert!(
        !ok,
        "home's LAN reachable from away's LAN without the edges"
    );

    // Split-horizon DNS: home's names answered with away's edge.
    assert_eq!(resolve(&ns, "web.home.example"), "198.18.10.1");
    let vip = resolve(&ns, "files.home.example");
    assert!(vip.starts_with("198.18.11."), "files' VIP: {vip}");

    let web = |ns: &Namespaces| {
        ns_curl(
            ns,
            "b",
            &[
                "--cacert",
                &web_cert.display().to_string(),
                "--resolve",
                "web.home.example:8443:198.18.10.1",
                "https://web.home.example:8443/page.txt",
            ],
        )
    };
    let resolve_vip = format!("files.home.example:8080:{vip}");
    let files = |ns: &Namespaces| {
        ns_curl(
            ns,
            "b",
            &[
                "--resolve",
                &resolve_vip,
                "http://files.home.example:8080/files.txt",
            ],
        )
    };

    // Over QUIC: TLS end to end through the SNI listener, HTTP through a VIP.
    let (ok, body, err) = web(&ns);
    assert!(
        ok,
        "web through away's SNI listener: {err}\n{}",
        away.log_text()
    );
    assert_eq!(body, "web page of home, via the overlay\n");
    let (ok, body, err) = files(&ns);
    assert!(ok, "files through the VIP: {err}\n{}", away.log_text());
    assert_eq!(body, "a file of home, via a VIP\n");
    let r = audit_record(&w, "away", |r| {
        r["service"] == "home/files" && r["result"] == "allowed"
    })
    .await;
    assert_eq!(r["transport"], "quic");
    assert_eq!(r["src_network"], "staff");
    assert_eq!(r["src_addr"], "198.18.10.50");
    // Home decides on the organisation and network away vouches for; the
    // address is away's, in a range home also uses.
    let r = audit_record(&w, "home", |r| {
        r["service"] == "home/web" && r["result"] == "allowed"
    })
    .await;
    assert_eq!(r["peer_edge"], "away/edge");
    assert_eq!(r["src_org"], "away");
    assert_eq!(r["src_addr"], "198.18.10.50");

    // Home's perimeter now drops UDP to the overlay's QUIC port: the link
    // is lost and flows go over TLS on TCP, port 4443, which it lets in.
    ns_drop_quic(&ns, "ae");
    let before = audit(&w, "away").len();
    assert_eq!(
        first_fetched(10, || files(&ns)).as_deref(),
        Some("a file of home, via a VIP\n"),
        "no file over TCP with UDP dropped\n{}",
        away.log_text()
    );
    let (ok, body, err) = web(&ns);
    assert!(ok, "web over TCP: {err}\n{}", away.log_text());
    assert_eq!(body, "web page of home, via the overlay\n");
    for service in ["home/files", "home/web"] {
        let r = audit_record(&w, "away", |r| {
            r["service"] == service && r["result"] == "allowed" && r["transport"] == "tcp"
        })
        .await;
        assert_eq!(r["peer_edge"], "home/edge");
    }
    assert!(
        audit(&w, "away").len() > before,
        "no flow audited after the perimeter closed"
    );
    away.wait_for("QUIC path to peer lost", Duration::from_secs(5));
    drop(home);
}
