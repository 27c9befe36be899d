//! Routing by name on the example region, where kvh and wmcc share
//! 10.0.0.0/16 and both run an intranet at 10.0.10.30.

use std::net::IpAddr;
use std::path::Path;

use federation::validate::parse_time;
use federation::{Federation, RoutingTable, Sources};

fn south_east() -> Federation {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/south-east");
    let mut sources = Sources::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("configs/south-east")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "yaml"))
    {
        sources.add(
            f.display().to_string(),
            std::fs::read_to_string(&f).expect("read"),
        );
    }
    let loaded = federation::load(&sources, parse_time("2026-06-01", false).unwrap());
    loaded
        .federation
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn same_address_two_members_both_reached_by_name() {
    let fed = south_east();
    let table = RoutingTable::new(&fed);
    let kvh = table.resolve("intranet.kvh.example").expect("kvh intranet");
    let wmcc = table
        .resolve("INTRANET.Westmere.example.")
        .expect("wmcc intranet, any case, trailing dot");
    assert_eq!(kvh.service.as_str(), "kvh/intranet");
    assert_eq!(wmcc.service.as_str(), "wmcc/intranet");
    assert_eq!(kvh.address, Some(ip("10.0.10.30")));
    assert_eq!(wmcc.address, Some(ip("10.0.10.30")));
    // Same internal address, different owners and different edges.
    assert_eq!(kvh.owner.as_str(), "kvh");
    assert_eq!(wmcc.owner.as_str(), "wmcc");
    let kvh_edges: Vec<&str> = kvh.edges.iter().map(|e| e.edge.as_str()).collect();
    let wmcc_edges: Vec<&str> = wmcc.edges.iter().map(|e| e.edge.as_str()).collect();
    assert_eq!(kvh_edges, ["kvh/core"]);
    assert_eq!(wmcc_edges, ["wmcc/core", "wmcc/hub"]);
    assert!(kvh.edges[0].quic.is_some() && kvh.edges[0].tcp.is_some());
    // By id as well as by name.
    assert_eq!(
        table.resolve("kvh/intranet").unwrap().service.as_str(),
        "kvh/intranet"
    );
    assert!(table.resolve("nothing.kvh.example").is_none());
}

#[test]
fn addresses_map_to_networks_within_a_member() {
    let fed = south_east();
    let table = RoutingTable::new(&fed);
    // The same address is kvh's corporate network and wmcc's corporate network.
    assert_eq!(
        table
            .classify("kvh", ip("10.0.3.4"))
            .unwrap()
            .network
            .as_str(),
        "kvh/corporate"
    );
    assert_eq!(
        table
            .classify("wmcc", ip("10.0.3.4"))
            .unwrap()
            .network
            .as_str(),
        "wmcc/corporate"
    );
    assert_eq!(
        table
            .classify("wmcc", ip("10.40.0.7"))
            .unwrap()
            .network
            .as_str(),
        "wmcc/roaming-staff"
    );
    assert!(table.classify("dpft", ip("10.0.3.4")).is_none());
    let owners: Vec<&str> = table
        .locate(ip("10.0.3.4"))
        .iter()
        .map(|m| m.org.as_str())
        .collect();
    assert_eq!(owners, ["kvh", "wmcc"]);
}

#[test]
fn addresses_outside_every_range_have_no_network() {
    let mut sources = Sources::new();
    sources.add(
        "lpm.yaml",
        "federation: {name: t, trust_domain: t.example}\n\
         organisations: [{id: a, name: A, kind: other, membership: {agreement: X, expires: 2031-01-01}}]\n\
         networks:\n\
         - {org: a, label: wide, purpose: corporate, cidrs: [10.0.0.0/8]}\n",
    );
    // Inside one member ranges never overlap (FG111), so an address is in at
    // most one of its networks, or in none.
    let loaded = federation::load(&sources, parse_time("2026-06-01", false).unwrap());
    let fed = loaded.federation.expect("valid");
    let table = RoutingTable::new(&fed);
    assert_eq!(table.classify("a", ip("10.200.1.1")).unwrap().label, "wide");
    assert!(table.classify("a", ip("11.0.0.1")).is_none());
}

/// A client on a dual-stack (IPv6) listener shows an IPv4 address as
/// `::ffff:a.b.c.d`: it is the IPv4 address's network, and IPv6 networks
/// hold IPv6 clients.
#[test]
fn ipv4_mapped_and_ipv6_clients_find_their_networks() {
    let mut sources = Sources::new();
    sources.add(
        "dual.yaml",
        "federation: {name: t, trust_domain: t.example}\n\
         organisations: [{id: a, name: A, kind: other, membership: {agreement: X, expires: 2031-01-01}}]\n\
         networks:\n\
         - {org: a, label: staff, purpose: corporate, cidrs: [10.0.0.0/8, 2001:2:0:10::/64]}\n",
    );
    let loaded = federation::load(&sources, parse_time("2026-06-01", false).unwrap());
    let fed = loaded.federation.expect("valid");
    let table = RoutingTable::new(&fed);
    for addr in ["10.1.2.3", "::ffff:10.1.2.3", "2001:2:0:10::50"] {
        assert_eq!(
            table.classify("a", ip(addr)).map(|m| m.label.as_str()),
            Some("staff"),
            "{addr}"
        );
        assert_eq!(table.locate(ip(addr)).len(), 1, "{addr}");
    }
    for addr in ["::ffff:11.1.2.3", "2001:2:0:11::50", "::10.1.2.3"] {
        assert!(table.classify("a", ip(addr)).is_none(), "{addr}");
    }
}
