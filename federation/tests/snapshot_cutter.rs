//! The fast path of snapshot cutting ([`Cutter`]) gives every edge the very
//! bytes [`EdgeSnapshot::build`] gives it: on the example region (sites,
//! edges at sites, several files) and on generated federations of several
//! edges per member. The property tests (`properties.rs`) check the same on
//! random policies.

use std::path::Path;

use federation::policy::{Flow, PolicySet};
use federation::signed::{SignedHeader, SignedSnapshot, SigningKey};
use federation::snapshot::Cutter;
use federation::validate::parse_time;
use federation::{EdgeSnapshot, Federation, FederationSpec, Sources};
use jiff::Timestamp;

#[path = "../benches/common/gen.rs"]
mod fedgen; // `gen` is a reserved keyword in edition 2024

fn now() -> Timestamp {
    parse_time("2026-06-01", false).unwrap()
}

fn load(sources: &Sources) -> (FederationSpec, Federation) {
    let loaded = federation::load(sources, now());
    let fed = loaded
        .federation
        .unwrap_or_else(|| panic!("invalid: {:#?}", loaded.diagnostics));
    (loaded.spec, fed)
}

/// Every edge's snapshot both ways; returns how many edges and groups.
fn assert_same_bytes(spec: &FederationSpec, fed: &Federation, version: u64) -> (usize, usize) {
    let cutter = Cutter::new(spec, fed);
    let groups = cutter.groups();
    let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
    let mut edges = 0;
    for group in &groups {
        let cut = cutter.cut(group[0]);
        for edge in group {
            let id = edge.id.as_str();
            let fast = String::from_utf8(cut.snapshot_json(id, version)).unwrap();
            let simple = EdgeSnapshot::build(spec, fed, id, version).unwrap();
            assert_eq!(
                fast,
                String::from_utf8(simple.to_json()).unwrap(),
                "edge {id}"
            );
            // And it reads back, digest checked.
            EdgeSnapshot::from_json(fast.as_bytes()).unwrap();
            // Signed, in parts, it is the envelope of the simple one.
            let parts = key.sign_cut(&cut, id, version);
            assert_eq!(parts.len(), parts.to_vec().len());
            assert_eq!(
                String::from_utf8(parts.to_vec()).unwrap(),
                String::from_utf8(key.sign(&simple).to_json()).unwrap(),
                "signed {id}"
            );
            let back = SignedSnapshot::verify(&parts.to_vec(), &key.public()).unwrap();
            assert_eq!((back.edge.as_str(), back.version), (id, version));
            // Its header alone, completed with the document, is the same.
            let header = SignedHeader::verify(&parts.header_only, &key.public()).unwrap();
            assert_eq!(header.complete(&simple).unwrap().to_json(), parts.to_vec());
            edges += 1;
        }
    }
    assert_eq!(edges, fed.edges.len(), "every edge is in one group");
    (edges, groups.len())
}

#[test]
fn the_example_region_cuts_the_same_bytes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/south-east");
    let mut sources = Sources::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    names.sort();
    for p in names {
        sources.add(
            p.display().to_string(),
            std::fs::read_to_string(&p).unwrap(),
        );
    }
    let (spec, fed) = load(&sources);
    assert!(fed.edges.iter().any(|e| e.site.is_some()), "edges at sites");
    assert_same_bytes(&spec, &fed, 42);
}

#[test]
fn generated_federations_cut_the_same_bytes() {
    for (orgs, edges_per_org, policies, seed) in [(8, 1, 60, 1), (40, 3, 200, 7), (410, 1, 600, 3)]
    {
        let yaml = fedgen::generate_shape(policies, orgs, edges_per_org, seed).to_yaml();
        let mut sources = Sources::new();
        sources.add("generated.yaml", yaml);
        let (spec, fed) = load(&sources);
        let (edges, groups) = assert_same_bytes(&spec, &fed, 3);
        assert_eq!(edges, orgs * edges_per_org);
        assert_eq!(groups, orgs, "one group per member (no sites)");
    }
}

/// Two partners (o0 opens a service to o1) in a federation of `members`
/// organisations: every other pair (o2k, o2k+1) works together the same way,
/// all of them belong to one group, sign one federation-wide agreement and
/// are denied a service of o0 through that group.
fn partners_among(members: usize) -> String {
    let mut y = String::from(
        "federation: {name: size, trust_domain: size.fedgate.example}\norganisations:\n",
    );
    let ids: Vec<String> = (0..members).map(|o| format!("o{o}")).collect();
    for id in &ids {
        y += &format!(
            "  - {{id: {id}, name: Org {id}, kind: other, membership: {{agreement: FCA-{id}, expires: 2031-01-01}}, dns: {{zones: [{id}.example]}}}}\n"
        );
    }
    y += "networks:\n";
    for id in &ids {
        y += &format!(
            "  - {{org: {id}, label: corporate, purpose: corporate, cidrs: [10.0.0.0/16]}}\n"
        );
    }
    y += "edges:\n";
    for (o, id) in ids.iter().enumerate() {
        y += &format!(
            "  - {{org: {id}, name: edge, overlay: {{quic: \"127.0.{}.{}:4433\"}}}}\n",
            o / 250,
            o % 250 + 1
        );
    }
    y += "services:\n";
    for (o, id) in ids.iter().enumerate() {
        y += &format!(
            "  - {{org: {id}, name: ehr, dns: [ehr.{id}.example], address: 10.100.{}.{}, ports: [443], protocol: tls}}\n",
            o / 250,
            o % 250 + 1
        );
    }
    y += &format!(
        "groups:\n  - {{id: everyone, members: [{}]}}\n",
        ids.join(", ")
    );
    y += "agreements:\n  - {id: ISA, title: All, parties: [everyone], purpose: care, legal_basis: law, owner: {name: n, role: r, org: o0}, start: 2024-01-01, expires: 2030-12-31}\n";
    y += "policies:\n";
    for pair in 0..members / 2 {
        let (a, b) = (2 * pair, 2 * pair + 1);
        y += &format!(
            "  - {{id: p{pair}, description: pair, from: {{orgs: [o{b}]}}, to: {{services: [o{a}/ehr]}}, action: allow, agreement: ISA}}\n"
        );
    }
    y += "  - {id: no-one-else, description: group deny, from: {groups: [everyone], cidrs: [10.0.9.0/24]}, to: {services: [o0/ehr]}, action: deny, agreement: ISA}\n";
    y
}

#[test]
fn a_snapshot_holds_what_its_edge_needs_not_the_whole_federation() {
    let mut sizes = Vec::new();
    for members in [4, 40, 400] {
        let mut sources = Sources::new();
        sources.add("size.yaml", partners_among(members));
        let (spec, fed) = load(&sources);
        assert_same_bytes(&spec, &fed, 1);
        for edge in ["o0/edge", "o1/edge"] {
            let snap = EdgeSnapshot::build(&spec, &fed, edge, 1).unwrap();
            let doc = &snap.document;
            let orgs: Vec<&str> = doc
                .organisations
                .iter()
                .map(|o| o.value.id.value.as_str())
                .collect();
            assert_eq!(orgs, ["o0", "o1"], "{edge} of {members}");
            assert_eq!(doc.networks.len(), 2, "{edge} of {members}");
            assert_eq!(doc.edges.len(), 2, "{edge} of {members}");
            assert_eq!(doc.groups.len(), 1);
            let members_kept: Vec<&str> = doc.groups[0]
                .value
                .members
                .iter()
                .map(|m| m.value.as_str())
                .collect();
            assert_eq!(members_kept, ["o0", "o1"], "the group, narrowed");
            sizes.push((members, edge, snap.to_json().len()));
        }
        // The partners decide as the whole federation does.
        let o0 = EdgeSnapshot::build(&spec, &fed, "o0/edge", 1)
            .unwrap()
            .load(Some("o0/edge"), now())
            .unwrap();
        let ids: Vec<&str> = o0.policies.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["p0", "no-one-else"]);
        let (full, mine) = (PolicySet::compile(&fed), PolicySet::compile(&o0));
        for (src, addr) in [("o1", "10.0.1.1"), ("o1", "10.0.9.1"), ("o3", "10.0.1.1")] {
            let flow = Flow {
                src_org: src,
                src_network: Some("corporate"),
                src_addr: Some(addr.parse().unwrap()),
                service: "o0/ehr",
                port: 443,
            };
            let (a, b) = (full.decide(&flow, now()), mine.decide(&flow, now()));
            assert_eq!(a.is_allowed(), b.is_allowed(), "{flow:?}: {a:?} / {b:?}");
            assert_eq!(
                a.is_allowed(),
                src == "o1" && addr == "10.0.1.1",
                "{flow:?}"
            );
        }
    }
    // The same size however many members the federation has (the version
    // and the names' digits aside: equal here).
    for edge in ["o0/edge", "o1/edge"] {
        let of: Vec<usize> = sizes.iter().filter(|s| s.1 == edge).map(|s| s.2).collect();
        assert!(of.windows(2).all(|w| w[0] == w[1]), "{edge}: {sizes:?}");
    }
}
