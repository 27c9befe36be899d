//! Two members' networks on IPv6, as separate network namespaces: the edges
//! joined over an IPv6 WAN, staff reaching home's IPv6 systems by name, and
//! a dual-stack CONNECT listener (and its PAC file) that takes IPv4 and IPv6
//! clients alike.
//!
//! ```text
//!  ns b (away's LAN)             ns be (away's edge)                   ns ae (home's edge)             ns a (home's LAN)
//!  staff 2001:2:0:10::50 --lan-- 2001:2:0:10::1  2001:2:0:1::2 --wan-- 2001:2:0:1::1  2001:2:0:10::1 --lan-- 2001:2:0:10::20
//!        198.18.10.50            198.18.10.1                                                               web :8443, files :8080
//!                                DNS :53, SNI :8443, CONNECT [::]:3128,
//!                                SOCKS5 :1080, VIPs 2001:2:0:11::/120
//! ```
//!
//! The WAN's MTU is IPv6's least, 1,280 bytes, as over a tunnel. Both
//! members number their LAN 2001:2:0:10::/64 (and 198.18.10.0/24):
//! overlapping, as in `namespaces.rs`. Each edge host is locked down by the
//! ruleset `fedctl firewall` writes for its member (nftables at home,
//! iptables and ip6tables at away); of ICMPv6 it lets through neighbour and
//! router discovery, and errors of flows it tracks. Every address is in the benchmarking ranges (2001:2::/48,
//! 198.18.0.0/15), inside namespaces this test makes and deletes.

mod common;

use std::time::Duration;

use common::{
    NsOrigins, Ruleset, audit_record, first_fetched, ns_curl, ns_drop_quic, ns_edge, ns_lock_down,
    ns_tools,
};
use tests::{Namespaces, World};

const DOC: &str = r#"federation: {name: test, trust_domain: test.fedgate.example}
organisations:
  - {id: away, name: Away Council, kind: local-authority, membership: {agreement: FCA-A, expires: 2035-01-01}, dns: {zones: [away.example]}}
  - {id: home, name: Home Trust, kind: nhs-trust, membership: {agreement: FCA-H, expires: 2035-01-01}, dns: {zones: [home.example]}}
networks:
  - {org: away, label: staff, purpose: roaming-staff, cidrs: [198.18.10.0/24, "2001:2:0:10::/64"]}
  - {org: home, label: corporate, purpose: corporate, cidrs: [198.18.10.0/24, "2001:2:0:10::/64"]}
edges:
  - {org: away, name: edge, overlay: {quic: "[2001:2:0:1::2]:4433", tcp: "[2001:2:0:1::2]:4443"}, ingress: {addresses: ["2001:2:0:10::1", "198.18.10.1"], vip_prefix: "2001:2:0:11::/120"}, dns: "[2001:2:0:10::1]:53"}
  - {org: home, name: edge, overlay: {quic: "[2001:2:0:1::1]:4433", tcp: "[2001:2:0:1::1]:4443"}}
services:
  - {org: home, name: web, dns: [web.home.example], address: "2001:2:0:10::20", ports: [8443], protocol: tls}
  - {org: home, name: files, dns: [files.home.example], address: "2001:2:0:10::20", ports: [8080], protocol: tcp}
agreements:
  - {id: ISA-T, title: Test sharing, parties: [away, home], purpose: tests, legal_basis: test, owner: {name: T, role: Caldicott Guardian, org: home}, start: 2025-01-01, expires: 2035-01-01}
policies:
  - {id: staff-to-home, description: Away staff reach home systems, from: {networks: [away/staff]}, to: {services: [home/web, home/files]}, action: allow, agreement: ISA-T}
"#;

/// The answers of away's edge's DNS to a query of `kind`, asked from
/// away's LAN over IPv6.
fn resolve(ns: &Namespaces, name: &str, kind: &str) -> String {
    let (ok, out, err) = ns.run(
        "b",
        "dig",
        &[
            "@2001:2:0:10::1",
            name,
            kind,
            "+short",
            "+time=2",
            "+tries=1",
        ],
    );
    assert!(ok, "dig {name} {kind}: {err}");
    out.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_reach_home_systems_over_ipv6_and_through_a_dual_stack_listener() {
    if !ns_tools() {
        return;
    }
    let w = World::new();
    // Declared before every process in it: they are stopped first.
    let ns = Namespaces::new(&["a", "ae", "be", "b"]);
    for tag in ["a", "ae", "be", "b"] {
        // Addresses usable at once, without duplicate address detection.
        let (ok, _, err) = ns.run(
            tag,
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        );
        assert!(ok, "sysctl in {tag}: {err}");
    }
    ns.link(
        ("a", "lan", "2001:2:0:10::20/64"),
        ("ae", "lan", "2001:2:0:10::1/64"),
    );
    ns.link(
        ("ae", "wan", "2001:2:0:1::1/64"),
        ("be", "wan", "2001:2:0:1::2/64"),
    );
    ns.link(
        ("be", "lan", "2001:2:0:10::1/64"),
        ("b", "lan", "2001:2:0:10::50/64"),
    );
    // The WAN carries IPv6's smallest MTU, as a tunnelled one may: QUIC
    // starts within it and finds no larger path.
    for tag in ["ae", "be"] {
        ns.ip(tag, &["link", "set", "wan", "mtu", "1280"]);
    }
    // Away's LAN is dual-stack.
    ns.ip("be", &["addr", "add", "198.18.10.1/24", "dev", "lan"]);
    ns.ip("b", &["addr", "add", "198.18.10.50/24", "dev", "lan"]);
    // Away's VIPs: the whole prefix is local to its edge, and routed there
    // from away's LAN.
    ns.ip(
        "be",
        &[
            "-6",
            "route",
            "add",
            "local",
            "2001:2:0:11::/120",
            "dev",
            "lo",
        ],
    );
    ns.ip(
        "b",
        &[
            "-6",
            "route",
            "add",
            "2001:2:0:11::/120",
            "via",
            "2001:2:0:10::1",
        ],
    );

    // Home's host loads the nftables ruleset, away's the iptables and
    // ip6tables ones.
    ns_lock_down(&w, &ns, DOC, "ae", "home", Ruleset::Nftables);
    ns_lock_down(&w, &ns, DOC, "be", "away", Ruleset::Xtables);

    // Home's systems: a web server with a certificate for its name, and a
    // plain HTTP file server, on IPv6 only.
    let origins = NsOrigins::start(
        &w,
        &ns,
        "a",
        "2001:2:0:10::20".parse().expect("address"),
        "web page of home, over IPv6\n",
        "a file of home, via an IPv6 VIP\n",
    );
    let web_cert = &origins.cert;

    let home = ns_edge(&w, &ns, DOC, "ae", "home", &[]);
    let mut away = ns_edge(
        &w,
        &ns,
        DOC,
        "be",
        "away",
        &[
            "--sni",
            "[2001:2:0:10::1]:8443",
            "--connect",
            "[::]:3128",
            "--socks",
            "[2001:2:0:10::1]:1080",
            "--vips",
            "--idle-secs",
            "10",
        ],
    );

    // Split-horizon DNS: home's names answered with away's edge, both
    // families, and the VIP of the file server from its IPv6 prefix.
    assert_eq!(resolve(&ns, "web.home.example", "AAAA"), "2001:2:0:10::1");
    assert_eq!(resolve(&ns, "web.home.example", "A"), "198.18.10.1");
    let vip = resolve(&ns, "files.home.example", "AAAA");
    assert!(vip.starts_with("2001:2:0:11::"), "files' VIP: {vip}");

    // TLS end to end through the SNI listener, over the IPv6 QUIC overlay.
    let page = |ns: &Namespaces, extra: &[&str]| {
        let mut args = vec!["--cacert", web_cert.to_str().expect("path")];
        args.extend_from_slice(extra);
        args.push("https://web.home.example:8443/page.txt");
        ns_curl(ns, "b", &args)
    };
    let (ok, body, err) = page(
        &ns,
        &["--resolve", "web.home.example:8443:[2001:2:0:10::1]"],
    );
    assert!(
        ok,
        "web through the SNI listener: {err}\n{}",
        away.log_text()
    );
    assert_eq!(body, "web page of home, over IPv6\n");
    let r = audit_record(&w, "away", |r| {
        r["service"] == "home/web" && r["ingress"] == "sni"
    })
    .await;
    assert_eq!(r["result"], "allowed");
    assert_eq!(r["transport"], "quic");
    assert_eq!(r["src_network"], "staff");
    assert_eq!(r["src_addr"], "2001:2:0:10::50");
    let r = audit_record(&w, "home", |r| r["service"] == "home/web").await;
    assert_eq!(r["result"], "allowed");
    assert_eq!(r["peer_edge"], "away/edge");
    assert_eq!(r["src_addr"], "2001:2:0:10::50");

    // HTTP through the file server's IPv6 VIP.
    let (ok, body, err) = ns_curl(
        &ns,
        "b",
        &[
            "--resolve",
            &format!("files.home.example:8080:[{vip}]"),
            "http://files.home.example:8080/files.txt",
        ],
    );
    assert!(ok, "files through the VIP: {err}\n{}", away.log_text());
    assert_eq!(body, "a file of home, via an IPv6 VIP\n");
    // The same VIP, its address in brackets, through CONNECT.
    let (ok, body, err) = ns_curl(
        &ns,
        "b",
        &[
            "--proxytunnel",
            "--proxy",
            "http://[2001:2:0:10::1]:3128",
            &format!("http://[{vip}]:8080/files.txt"),
        ],
    );
    assert!(ok, "CONNECT [{vip}]:8080: {err}\n{}", away.log_text());
    assert_eq!(body, "a file of home, via an IPv6 VIP\n");
    // 16 MiB across the 1,280-byte WAN, byte for byte.
    let mut big = vec![0u8; 16 << 20];
    tests::Pattern::new(6).fill(&mut big);
    std::fs::write(w.path("www/big.bin"), &big).expect("big file");
    let out = w.path("big.out");
    let (ok, _, err) = ns_curl(
        &ns,
        "b",
        &[
            "--resolve",
            &format!("files.home.example:8080:[{vip}]"),
            "--output",
            out.to_str().expect("path"),
            "http://files.home.example:8080/big.bin",
        ],
    );
    assert!(ok, "16 MiB through the VIP: {err}\n{}", away.log_text());
    assert!(
        std::fs::read(&out).expect("downloaded") == big,
        "16 MiB through the VIP arrived altered"
    );
    let r = audit_record(&w, "away", |r| {
        r["service"] == "home/files" && r["bytes_down"].as_u64() > Some(16 << 20)
    })
    .await;
    assert_eq!(r["transport"], "quic", "{r}");

    // One CONNECT listener on [::] for both families: an IPv4 client is
    // its IPv4 address and network (not `::ffff:198.18.10.50`, on no
    // network), an IPv6 client its own.
    for (proxy, client) in [
        ("http://198.18.10.1:3128", "198.18.10.50"),
        ("http://[2001:2:0:10::1]:3128", "2001:2:0:10::50"),
    ] {
        let (ok, body, err) = page(&ns, &["--proxy", proxy]);
        assert!(ok, "CONNECT through {proxy}: {err}\n{}", away.log_text());
        assert_eq!(body, "web page of home, over IPv6\n");
        let r = audit_record(&w, "away", |r| {
            r["ingress"] == "connect" && r["src_addr"] == client
        })
        .await;
        assert_eq!(r["result"], "allowed", "{r}");
        assert_eq!(r["src_network"], "staff", "{r}");
    }

    // SOCKS5 on IPv6, the name resolved by the edge.
    let (ok, body, err) = page(&ns, &["--socks5-hostname", "[2001:2:0:10::1]:1080"]);
    assert!(ok, "SOCKS5 over IPv6: {err}\n{}", away.log_text());
    assert_eq!(body, "web page of home, over IPv6\n");
    let r = audit_record(&w, "away", |r| r["ingress"] == "socks").await;
    assert_eq!(r["result"], "allowed", "{r}");
    assert_eq!(r["src_addr"], "2001:2:0:10::50", "{r}");

    // Its PAC file names the proxy at the address each client reached it
    // at, of the client's own family.
    for (base, named) in [
        ("http://198.18.10.1:3128", "PROXY 198.18.10.1:3128"),
        (
            "http://[2001:2:0:10::1]:3128",
            "PROXY [2001:2:0:10::1]:3128",
        ),
    ] {
        let (ok, pac, err) = ns_curl(&ns, "b", &[&format!("{base}/proxy.pac")]);
        assert!(ok, "PAC from {base}: {err}");
        assert!(
            pac.contains(named) && pac.contains("home.example"),
            "PAC from {base}:\n{pac}"
        );
    }

    // Home's perimeter drops UDP to the overlay's QUIC port: flows go over
    // TLS on TCP, on IPv6 too.
    ns_drop_quic(&ns, "ae");
    let fetched = first_fetched(10, || {
        page(
            &ns,
            &["--resolve", "web.home.example:8443:[2001:2:0:10::1]"],
        )
    });
    assert_eq!(
        fetched.as_deref(),
        Some("web page of home, over IPv6\n"),
        "no page over TCP with UDP dropped\n{}",
        away.log_text()
    );
    let r = audit_record(&w, "away", |r| {
        r["service"] == "home/web" && r["result"] == "allowed" && r["transport"] == "tcp"
    })
    .await;
    assert_eq!(r["peer_edge"], "home/edge");
    assert_eq!(r["src_addr"], "2001:2:0:10::50");
    away.wait_for("QUIC path to peer lost", Duration::from_secs(5));
    drop(home);
}
