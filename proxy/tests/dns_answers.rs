//! Split-horizon DNS, every kind of answer, asked with real `dig` of
//! `away/edge`'s DNS listener, whose upstream is a real unbound:
//!
//! ```text
//!   dig --> away/edge 127.A.B.1:5300 --(other names, own staff only)--> unbound 127.A.B.53:5353
//!           web.home.example   (tls) -> 127.A.B.1 (the ingress address, SNI)
//!           echo.home.example  (tcp) -> 127.A.B.130 (its VIP)
//!           nope.home.example        -> NXDOMAIN + SOA of home.example
//!           wiki.away.example  (own, dns_internal) -> 127.A.B.20, own networks only
//!           intranet.away.example (own) and www.elsewhere.test -> forwarded
//! ```
//! `away/roaming-staff` is 127.A.B.0/25: a client at 127.A.B.200 is outside
//! the member's networks.

mod common;

use common::*;
use tests::{World, dig, dig_addresses, ip};

fn status(out: &str) -> &str {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("?")
}

/// The output with every run of whitespace made one space.
fn flat(out: &str) -> String {
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn flags(out: &str) -> String {
    out.split(";; flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_gets_every_kind_of_answer() {
    if !tests::require_tool("dig") || !tests::require_tool("unbound") {
        return;
    }
    let w = World::new();
    let (_upstream, up) = start_upstream(&w);
    let net = |h: u8| ip(w.net, h).to_string();
    let opts = Options {
        away_dns: format!(", upstreams: [\"{up}\"]"),
        away_cidr: Some(format!("{}/25", net(0))),
        extra_services: format!(
            "  - {{org: away, name: wiki, dns: [wiki.away.example], address: {}, ports: [443], protocol: tls, dns_internal: true}}\n  - {{org: away, name: intranet, dns: [intranet.away.example], address: {}, ports: [443], protocol: tls}}\n",
            net(20),
            net(21)
        ),
        ..Options::default()
    };
    let doc = document(&w, &opts);
    let dns = dns_addr(&w);
    let extra = vec![
        "--dns".to_string(),
        dns.to_string(),
        "--dns-ttl".into(),
        "7".into(),
        "--dns-rate".into(),
        "0".into(),
    ];
    let pair = start_pair_with(&w, &doc, &doc, &[], &extra);
    let log = || pair.away.log_text();
    // A client on the member's network (loopback would pick 127.0.0.1).
    let inside = net(66);
    let q = |args: &[&str]| {
        let mut all = vec!["-b", inside.as_str()];
        all.extend_from_slice(args);
        dig(dns, &all)
    };

    // A TLS service of another member: this edge's ingress address, AA, TTL 7.
    let (ok, out) = q(&["web.home.example", "A"]);
    assert!(ok && status(&out) == "NOERROR", "{out}\n{}", log());
    assert!(flags(&out).contains("aa"), "{out}");
    assert_eq!(dig_addresses(&out), vec![net(1)], "{out}");
    assert!(
        flat(&out).contains("web.home.example. 7 IN A"),
        "TTL 7: {out}"
    );
    // EDNS answered in kind, with at most 1232 bytes.
    assert!(
        out.contains("EDNS: version: 0") && out.contains("udp: 1232"),
        "{out}"
    );

    // A TCP service: its own VIP (blob, echo, ... in id order).
    let (_, out) = q(&["echo.home.example", "A"]);
    assert_eq!(dig_addresses(&out), vec![net(130)], "{out}");

    // The same over TCP.
    let (_, out) = q(&["+tcp", "web.home.example", "A"]);
    assert_eq!(dig_addresses(&out), vec![net(1)], "TCP: {out}");

    // No IPv6 ingress: NODATA with the zone's SOA.
    let (_, out) = q(&["web.home.example", "AAAA"]);
    assert!(
        status(&out) == "NOERROR" && dig_addresses(&out).is_empty(),
        "{out}"
    );
    assert!(
        out.contains("AUTHORITY SECTION") && out.contains("SOA"),
        "{out}"
    );

    // A name inside a federation zone that does not exist: NXDOMAIN + SOA
    // (the edge as mname, the snapshot version as serial).
    let (_, out) = q(&["nope.home.example", "A"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert!(flags(&out).contains("aa"), "{out}");
    assert!(
        flat(&out).contains(
            "home.example. 7 IN SOA edge.away.edges.test.fedgate.example. hostmaster.home.example. 1 7 7 86400 7"
        ),
        "{out}"
    );
    let (_, out) = q(&["+short", "home.example", "SOA"]);
    assert!(
        out.starts_with("edge.away.edges.test.fedgate.example. hostmaster.home.example. 1 "),
        "{out}"
    );

    // This member's own service marked dns_internal: its internal address.
    let (_, out) = q(&["wiki.away.example", "A"]);
    assert_eq!(dig_addresses(&out), vec![net(20)], "{out}");
    assert!(flags(&out).contains("aa"), "{out}");

    // Its other names, and names outside the federation: forwarded.
    let (_, out) = q(&["intranet.away.example", "A"]);
    assert_eq!(dig_addresses(&out), vec!["127.0.0.78"], "{out}");
    assert!(
        !flags(&out).contains("aa") && flags(&out).contains("ra"),
        "{out}"
    );
    let (_, out) = q(&["www.elsewhere.test", "A"]);
    assert_eq!(dig_addresses(&out), vec!["127.0.0.99"], "{out}\n{}", log());
    let (_, out) = q(&["missing.elsewhere.test", "A"]);
    assert_eq!(
        status(&out),
        "NXDOMAIN",
        "upstream's NXDOMAIN relayed: {out}"
    );

    // Too large for UDP: the upstream's truncated answer is fetched over TCP,
    // ours is truncated (TC) and dig retries over TCP by itself.
    let (_, out) = q(&["+ignore", "big.elsewhere.test", "A"]);
    assert!(
        flags(&out).contains("tc"),
        "truncated over UDP: {out}\n{}",
        log()
    );
    let (_, out) = q(&["big.elsewhere.test", "A"]);
    assert_eq!(dig_addresses(&out).len(), 100, "{out}");
    let (_, out) = q(&["+noedns", "+ignore", "intranet.away.example", "A"]);
    assert!(!flags(&out).contains("tc"), "small answers fit 512: {out}");

    // EDNS version 1: BADVERS.
    let (_, out) = q(&["+edns=1", "+noednsnegotiation", "web.home.example", "A"]);
    assert_eq!(status(&out), "BADVERS", "{out}");

    // Zone transfers: refused.
    for kind in ["AXFR", "IXFR=1"] {
        let (_, out) = q(&["+tcp", "home.example", kind]);
        assert!(
            out.contains("Transfer failed") || status(&out) == "REFUSED",
            "{kind}: {out}"
        );
        assert!(!out.contains("web.home.example."), "{kind}: {out}");
    }

    // A client outside the member's networks: federation names answered, no
    // internal answers, no recursion.
    let outside = net(200);
    let (_, out) = dig(dns, &["-b", &outside, "web.home.example", "A"]);
    assert_eq!(dig_addresses(&out), vec![net(1)], "{out}");
    for name in [
        "www.elsewhere.test",
        "wiki.away.example",
        "intranet.away.example",
    ] {
        let (_, out) = dig(dns, &["-b", &outside, name, "A"]);
        assert_eq!(status(&out), "REFUSED", "{name} from outside: {out}");
    }

    // Counted by kind and response code.
    let (ok, metrics, _) = curl(vec![format!("http://{}/metrics", addr(&w, 1, 9100))]).await;
    assert!(ok, "metrics");
    for line in [
        "fedgate_dns_queries_total{kind=\"federation\",rcode=\"noerror\"}",
        "fedgate_dns_queries_total{kind=\"federation\",rcode=\"nxdomain\"}",
        "fedgate_dns_queries_total{kind=\"internal\",rcode=\"noerror\"}",
        "fedgate_dns_queries_total{kind=\"forwarded\",rcode=\"noerror\"}",
        "fedgate_dns_queries_total{kind=\"refused\",rcode=\"refused\"}",
        "fedgate_dns_queries_total{kind=\"transfer\",rcode=\"refused\"}",
        "fedgate_dns_queries_total{kind=\"other\",rcode=\"badvers\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    drop(pair);
}

/// A DNS listener on every address is refused at start, naming why: its
/// answers over UDP would leave from whichever address the route picks.
#[test]
fn a_dns_listener_on_every_address_is_refused_with_why() {
    let w = World::new();
    for every in ["0.0.0.0:5300", "[::]:5300"] {
        let (code, err) = home_edge_refusing(&w, &["--dns", every]);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("--dns")
                && err.contains("is every address")
                && err.contains("give the address the member's resolvers query"),
            "{err}"
        );
    }
}
