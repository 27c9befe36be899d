//! `fedctl firewall`: the openings a member makes list exactly its edges'
//! peers (the edges its snapshots hold of other members), in both
//! directions, over QUIC and TCP, as a table, nftables, iptables and
//! ip6tables.

mod kit;

use std::collections::BTreeSet;

use federation::{EdgeSnapshot, Sources};
use kit::*;
use tests::{World, ip};

fn peers_by_snapshot(doc: &str, org: &str) -> BTreeSet<String> {
    let mut sources = Sources::new();
    sources.add("test.yaml", doc);
    let loaded = federation::load(&sources, tests::now());
    let fed = loaded.federation.clone().expect("valid");
    let mut out = BTreeSet::new();
    for e in fed.edges.iter().filter(|e| e.org.as_str() == org) {
        let snap = EdgeSnapshot::build(&loaded.spec, &fed, e.id.as_str(), 1).expect("snapshot");
        for p in &snap.document.edges {
            if p.value.org.value != org {
                out.insert(format!("{}/{}", p.value.org.value, p.value.name.value));
            }
        }
    }
    out
}

#[test]
fn a_member_opens_exactly_its_peers() {
    let w = World::new();
    // `third` is a member no policy touches: nobody's peer.
    let doc = document(&w, "", true);
    std::fs::create_dir_all(w.path("fed")).expect("dir");
    std::fs::write(w.path("fed/test.yaml"), &doc).expect("doc");
    for org in ["home", "away", "third"] {
        let run = fedctl_bare(
            &w,
            &[
                "firewall", "--config", "fed", "--org", org, "--format", "json",
            ],
        );
        assert_eq!(run.code, 0, "{run:?}");
        let openings: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        let listed: BTreeSet<String> = openings
            .as_array()
            .expect("list")
            .iter()
            .filter(|o| o["perimeter"] == true)
            .map(|o| o["peer"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(listed, peers_by_snapshot(&doc, org), "{org}: {run:?}");
    }
    // home and away peer with each other, both directions, UDP and TCP.
    let table = fedctl_bare(&w, &["firewall", "--config", "fed", "--org", "home"]);
    assert!(
        table
            .stdout
            .contains("home's edges have 1 peer edge(s) in test: away/edge"),
        "{table:?}"
    );
    let away = ip(w.net, 1).to_string();
    let third = ip(w.net, 3).to_string();
    let nft = fedctl_bare(
        &w,
        &[
            "firewall", "--config", "fed", "--org", "home", "--format", "nftables",
        ],
    );
    assert_eq!(nft.code, 0, "{nft:?}");
    for rule in [
        format!(
            "ip saddr {away} ip daddr {} meta l4proto udp udp dport 4433 accept",
            ip(w.net, 2)
        ),
        format!(
            "ip saddr {away} ip daddr {} meta l4proto tcp tcp dport 4443 accept",
            ip(w.net, 2)
        ),
        format!("ip daddr {away} meta l4proto udp udp dport 4433 accept"),
        format!("ip daddr {away} meta l4proto tcp tcp dport 4443 accept"),
        // To its own services, from whichever address its routes choose
        // (an edge on two networks reaches them from the inside one).
        format!(
            "    ip daddr {} meta l4proto tcp tcp dport 7007 accept",
            ip(w.net, 11)
        ),
        "policy drop;".to_owned(),
    ] {
        assert!(
            nft.stdout.contains(&rule),
            "`{rule}` missing:\n{}",
            nft.stdout
        );
    }
    assert!(
        !nft.stdout.contains(&third),
        "third is not home's peer:\n{}",
        nft.stdout
    );
    let ipt = fedctl_bare(
        &w,
        &[
            "firewall", "--config", "fed", "--org", "home", "--format", "iptables",
        ],
    );
    assert!(
        ipt.stdout.contains(&format!(
            "-A INPUT -s {away} -d {} -p udp --dport 4433",
            ip(w.net, 2)
        )),
        "{ipt:?}"
    );
    assert!(
        ipt.stdout.contains(&format!(
            "-A OUTPUT -s {} -d {away} -p tcp --dport 4443",
            ip(w.net, 2)
        )),
        "{ipt:?}"
    );
    assert!(ipt.stdout.trim_end().ends_with("COMMIT"), "{ipt:?}");
    // IPv6 has a ruleset of its own: this member's is IPv4 only, so its
    // IPv6 ruleset opens nothing but neighbour discovery. (The namespace
    // tests load both into edge hosts.)
    let ip6t = fedctl_bare(
        &w,
        &[
            "firewall",
            "--config",
            "fed",
            "--org",
            "home",
            "--format",
            "ip6tables",
        ],
    );
    assert_eq!(ip6t.code, 0, "{ip6t:?}");
    let v4_rules = ipt.stdout.lines().filter(|l| l.starts_with("-A")).count();
    assert!(
        ip6t.stdout.contains(&format!(
            "IPv4 has a ruleset of its own ({} opening(s)): `--format iptables`. Load both",
            v4_rules - 4
        )),
        "{ip6t:?}"
    );
    assert!(
        ip6t.stdout
            .contains("-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type neighbour-solicitation"),
        "{ip6t:?}"
    );
    assert!(
        !ip6t.stdout.contains(" -s ") && !ip6t.stdout.contains(" -d "),
        "no IPv6 opening for an IPv4 member: {ip6t:?}"
    );
    assert!(
        ipt.stdout
            .contains("IPv6 has a ruleset of its own (0 opening(s))"),
        "{ipt:?}"
    );
    let third_rules = fedctl_bare(&w, &["firewall", "--config", "fed", "--org", "third"]);
    assert!(
        third_rules
            .stdout
            .contains("third's edges have 0 peer edge(s)"),
        "{third_rules:?}"
    );

    let unknown = fedctl_bare(&w, &["firewall", "--config", "fed", "--org", "nobody"]);
    assert_eq!(unknown.code, 3, "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("unknown organisation `nobody`; the members are: away, home, third"),
        "{unknown:?}"
    );
}
