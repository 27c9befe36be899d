//! Property tests of policy decisions and snapshots over generated federations.
//!
//! - No decision depends on the order of the policies.
//! - Adding a deny never turns a deny into an allow.
//! - A snapshot for an edge of organisation A holds no internal address of
//!   another organisation's service, and decides every flow it is
//!   responsible for exactly as the whole federation does.
//! - The fast path ([`Cutter`]) cuts every edge the bytes `build` cuts.

use std::fmt::Write;
use std::net::IpAddr;

use federation::snapshot::Cutter;
use federation::validate::parse_time;
use federation::{EdgeSnapshot, Federation, Flow, PolicySet, Sources};
use jiff::Timestamp;
use proptest::prelude::*;

/// A generated policy: indices into the generated orgs, networks and services.
#[derive(Debug, Clone)]
struct GenPolicy {
    deny: bool,
    from_orgs: Vec<usize>,
    /// Narrow to this network label of the first source org.
    network: Option<usize>,
    cidr: bool,
    owner: usize,
    services: Vec<usize>,
    port: Option<u16>,
    expires: Option<u8>,
}

const ORGS: usize = 4;
const SERVICES: usize = 3;
const LABELS: [&str; 2] = ["corporate", "roaming-staff"];
const PORTS: [u16; 2] = [443, 2575];

fn policy() -> impl Strategy<Value = GenPolicy> {
    (
        prop::bool::weighted(0.3),
        prop::collection::btree_set(0..ORGS, 1..3),
        prop::option::of(0..LABELS.len()),
        prop::bool::weighted(0.2),
        0..ORGS,
        prop::collection::btree_set(0..SERVICES, 1..3),
        prop::option::of(prop::sample::select(PORTS.to_vec())),
        prop::option::of(1u8..28),
    )
        .prop_map(
            |(deny, from, network, cidr, owner, services, port, expires)| GenPolicy {
                deny,
                from_orgs: from.into_iter().collect(),
                network,
                cidr,
                owner,
                services: services.into_iter().collect(),
                port,
                expires,
            },
        )
}

/// Render a federation of `ORGS` members (every one reusing 10.0.0.0/16 for
/// its corporate network) with the given policies, in the given order.
fn document(policies: &[(usize, GenPolicy)]) -> String {
    let mut y = String::from(
        "federation: {name: prop, trust_domain: prop.fedgate.example}\norganisations:\n",
    );
    for o in 0..ORGS {
        let _ = writeln!(
            y,
            "  - {{id: o{o}, name: Org {o}, kind: other, membership: {{agreement: FCA-{o}, expires: 2031-01-01}}, dns: {{zones: [o{o}.example]}}}}"
        );
    }
    y.push_str("networks:\n");
    for o in 0..ORGS {
        let _ = writeln!(
            y,
            "  - {{org: o{o}, label: corporate, purpose: corporate, cidrs: [10.0.0.0/16]}}"
        );
        let _ = writeln!(
            y,
            "  - {{org: o{o}, label: roaming-staff, purpose: roaming-staff, cidrs: [172.16.{o}.0/24]}}"
        );
    }
    y.push_str("edges:\n");
    for o in 0..ORGS {
        let _ = writeln!(
            y,
            "  - {{org: o{o}, name: edge, overlay: {{quic: \"127.0.{o}.1:4433\", tcp: \"127.0.{o}.1:4443\"}}}}"
        );
    }
    y.push_str("services:\n");
    for o in 0..ORGS {
        for s in 0..SERVICES {
            let _ = writeln!(
                y,
                "  - {{org: o{o}, name: s{s}, dns: [s{s}.o{o}.example], address: 10.{}.{}.{}, ports: [443, 2575], protocol: tls}}",
                100 + o,
                s,
                7 + o * 10 + s
            );
        }
    }
    y.push_str("agreements:\n  - {id: ISA, title: All, parties: [o0, o1, o2, o3], purpose: care, legal_basis: law, owner: {name: n, role: r, org: o0}, start: 2024-01-01, expires: 2030-12-31}\n");
    if !policies.is_empty() {
        y.push_str("policies:\n");
    }
    for (id, p) in policies {
        let orgs: Vec<String> = p.from_orgs.iter().map(|o| format!("o{o}")).collect();
        let mut from = format!("orgs: [{}]", orgs.join(", "));
        if let Some(n) = p.network {
            let _ = write!(from, ", networks: [o{}/{}]", p.from_orgs[0], LABELS[n]);
        }
        if p.cidr {
            from.push_str(", cidrs: [10.0.0.0/17]");
        }
        let to: Vec<String> = p
            .services
            .iter()
            .map(|s| format!("o{}/s{s}", p.owner))
            .collect();
        let _ = write!(
            y,
            "  - {{id: p{id}, description: generated, from: {{{from}}}, to: {{services: [{}]}}, action: {}, agreement: ISA",
            to.join(", "),
            if p.deny { "deny" } else { "allow" }
        );
        if let Some(port) = p.port {
            let _ = write!(y, ", ports: [{port}]");
        }
        if let Some(day) = p.expires {
            let _ = write!(y, ", expires: 2026-02-{day:02}");
        }
        y.push_str("}\n");
    }
    y
}

fn load(doc: &str) -> (federation::FederationSpec, Federation) {
    let mut sources = Sources::new();
    sources.add("generated.yaml", doc);
    let loaded = federation::load(&sources, now());
    let fed = loaded.federation.unwrap_or_else(|| {
        panic!(
            "generated document invalid: {:#?}\n{doc}",
            loaded.diagnostics
        )
    });
    (loaded.spec, fed)
}

fn now() -> Timestamp {
    parse_time("2026-01-15", false).unwrap()
}

fn times() -> [Timestamp; 3] {
    ["2026-01-15", "2026-02-14T12:00:00Z", "2026-03-01"].map(|t| parse_time(t, false).unwrap())
}

/// Every flow worth asking about: each org, network, a matching and a
/// non-matching address, each service and port, at several times.
fn all_decisions(policies: &PolicySet) -> Vec<(String, bool)> {
    let addrs: [Option<IpAddr>; 3] = [
        None,
        Some("10.0.1.1".parse().unwrap()),
        Some("10.0.200.1".parse().unwrap()),
    ];
    let mut out = Vec::new();
    for o in 0..ORGS {
        let org = format!("o{o}");
        for label in [None, Some(LABELS[0]), Some(LABELS[1])] {
            for addr in addrs {
                for d in 0..ORGS {
                    for s in 0..SERVICES {
                        let service = format!("o{d}/s{s}");
                        for port in PORTS {
                            for at in times() {
                                let flow = Flow {
                                    src_org: &org,
                                    src_network: label,
                                    src_addr: addr,
                                    service: &service,
                                    port,
                                };
                                let d = policies.decide(&flow, at);
                                out.push((format!("{flow:?} at {at} -> {d:?}"), d.is_allowed()));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn decisions_do_not_depend_on_rule_order(
        policies in prop::collection::vec(policy(), 0..10),
        seed in any::<u64>(),
    ) {
        let numbered: Vec<(usize, GenPolicy)> = policies.into_iter().enumerate().collect();
        let mut shuffled = numbered.clone();
        // Deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let (_, a) = load(&document(&numbered));
        let (_, b) = load(&document(&shuffled));
        let da = all_decisions(&PolicySet::compile(&a));
        let db = all_decisions(&PolicySet::compile(&b));
        prop_assert_eq!(da, db);
    }

    #[test]
    fn adding_a_deny_never_allows_more(
        policies in prop::collection::vec(policy(), 0..10),
        mut extra in policy(),
    ) {
        extra.deny = true;
        let numbered: Vec<(usize, GenPolicy)> = policies.into_iter().enumerate().collect();
        let mut with_deny = numbered.clone();
        with_deny.push((99, extra));
        let (_, before) = load(&document(&numbered));
        let (_, after) = load(&document(&with_deny));
        let before = all_decisions(&PolicySet::compile(&before));
        let after = all_decisions(&PolicySet::compile(&after));
        for ((q, was), (_, now)) in before.iter().zip(&after) {
            prop_assert!(*was || !*now, "a deny turned a denial into an allow: {}", q);
        }
    }

    #[test]
    fn snapshots_hold_only_what_their_edge_may_know(
        policies in prop::collection::vec(policy(), 0..10),
    ) {
        let numbered: Vec<(usize, GenPolicy)> = policies.into_iter().enumerate().collect();
        let (spec, fed) = load(&document(&numbered));
        let full = PolicySet::compile(&fed);
        for edge in &fed.edges {
            let snap = EdgeSnapshot::build(&spec, &fed, edge.id.as_str(), 7).expect("build");
            let json = String::from_utf8(snap.to_json()).expect("utf8");
            // No internal address of another organisation's service, anywhere.
            for s in fed.services.iter().filter(|s| s.org != edge.org) {
                let addr = s.address.expect("full document has addresses").to_string();
                prop_assert!(!json.contains(&format!("\"{addr}\"")), "snapshot of {} holds {} of {}", edge.id, addr, s.id);
            }
            // It survives the round trip and decides as the whole federation
            // does for every flow its edge is responsible for.
            let reread = EdgeSnapshot::from_json(json.as_bytes()).expect("reread");
            let local = reread.load(Some(edge.id.as_str()), now()).expect("load snapshot");
            for s in local.services.iter().filter(|s| s.org != edge.org) {
                prop_assert!(s.address.is_none(), "{} has the address of {}", edge.id, s.id);
            }
            let mine = PolicySet::compile(&local);
            let org = edge.org.as_str();
            let full_d = all_decisions(&full);
            let mine_d = all_decisions(&mine);
            for ((q, a), (_, b)) in full_d.iter().zip(&mine_d) {
                let from_me = q.starts_with(&format!("Flow {{ src_org: \"{org}\""));
                let to_me = q.contains(&format!("service: \"{org}/"));
                if from_me || to_me {
                    prop_assert_eq!(a, b, "edge {} decides differently: {}", edge.id, q);
                }
            }
        }
    }

    #[test]
    fn the_fast_cut_is_the_simple_one_byte_for_byte(
        policies in prop::collection::vec(policy(), 0..10),
    ) {
        let numbered: Vec<(usize, GenPolicy)> = policies.into_iter().enumerate().collect();
        let (spec, fed) = load(&document(&numbered));
        let cutter = Cutter::new(&spec, &fed);
        for group in cutter.groups() {
            let cut = cutter.cut(group[0]);
            for edge in group {
                let fast = cut.snapshot_json(edge.id.as_str(), 7);
                let simple = EdgeSnapshot::build(&spec, &fed, edge.id.as_str(), 7).expect("build");
                prop_assert_eq!(String::from_utf8(fast), String::from_utf8(simple.to_json()));
            }
        }
    }
}

#[test]
fn a_snapshot_is_refused_when_tampered_or_for_another_edge() {
    let policies = vec![(
        0,
        GenPolicy {
            deny: false,
            from_orgs: vec![1],
            network: None,
            cidr: false,
            owner: 0,
            services: vec![0],
            port: None,
            expires: None,
        },
    )];
    let (spec, fed) = load(&document(&policies));
    let snap = EdgeSnapshot::build(&spec, &fed, "o1/edge", 3).unwrap();
    let json = String::from_utf8(snap.to_json()).unwrap();
    assert!(
        snap.load(Some("o0/edge"), now()).is_err(),
        "loaded a snapshot meant for another edge"
    );
    let tampered = json.replacen("s0.o0.example", "s9.o0.example", 1);
    assert_ne!(tampered, json, "the test must change the content");
    let err = EdgeSnapshot::from_json(tampered.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("digest"),
        "unexpected error: {err}"
    );
}
