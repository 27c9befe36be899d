//! The fast path of snapshot cutting ([`Cutter`]) gives every edge the very
//! bytes [`EdgeSnapshot::build`] gives it: on the example region (sites,
//! edges at sites, several files) and on generated federations of several
//! edges per member. The property tests (`properties.rs`) check the same on
//! random policies.

use std::path::Path;

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
