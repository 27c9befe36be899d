//! A small federation whose edge `here/edge` answers DNS: the unit tests'
//! and the fast path's fuzz target's (`fuzz/fuzz_targets/dns_fast.rs`).

use std::sync::Arc;

use federation::{EdgeSnapshot, Sources};

use crate::node::Node;

/// `here/edge` answers for `there`'s services: s0 (TCP: its VIP), s1 (TLS:
/// the ingress addresses, IPv4 and IPv6), deep/x (TLS, below an empty
/// non-terminal); and its own `wiki` (internal, own networks only).
pub(super) const DOC: &str = r#"federation: {name: t, trust_domain: t.fedgate.example}
organisations:
  - {id: here, name: Here Council, kind: local-authority, membership: {agreement: FCA-A, expires: 2035-01-01}, dns: {zones: [here.example], upstreams: ["127.0.0.1:9"]}}
  - {id: there, name: There Trust, kind: nhs-trust, membership: {agreement: FCA-H, expires: 2035-01-01}, dns: {zones: [there.example]}}
networks:
  - {org: here, label: staff, purpose: roaming-staff, cidrs: [127.0.0.0/8]}
  - {org: there, label: corporate, purpose: corporate, cidrs: [10.99.0.0/16]}
edges:
  - {org: here, name: edge, overlay: {quic: "127.56.0.1:4433", tcp: "127.56.0.1:4443"}, ingress: {addresses: ["127.56.0.1", "fd00::1"], vip_prefix: 127.57.0.0/20}}
  - {org: there, name: edge, overlay: {quic: "127.56.0.2:4433", tcp: "127.56.0.2:4443"}}
agreements:
  - {id: ISA-B, title: Sharing, parties: [here, there], purpose: tests, legal_basis: test, owner: {name: B, role: Caldicott Guardian, org: there}, start: 2025-01-01, expires: 2035-01-01}
policies:
  - {id: here-to-there, description: Here staff reach there, from: {networks: [here/staff]}, to: {tags: [there/t]}, action: allow, agreement: ISA-B}
services:
  - {org: there, name: s0, dns: [s0.there.example], address: 10.99.0.1, ports: [2575], protocol: tcp, tags: [t]}
  - {org: there, name: s1, dns: [s1.there.example], address: 10.99.0.2, ports: [443], protocol: tls, tags: [t]}
  - {org: there, name: x, dns: [x.deep.there.example], address: 10.99.0.3, ports: [443], protocol: tls, tags: [t]}
  - {org: here, name: wiki, dns: [wiki.here.example], address: 127.60.0.20, ports: [443], protocol: tls, dns_internal: true}
"#;

/// `here/edge`'s node for [`DOC`], version 7.
pub(super) fn node() -> Arc<Node> {
    let mut sources = Sources::new();
    sources.add("test.yaml", DOC);
    let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().expect("time");
    let loaded = federation::load(&sources, now);
    let fed = loaded
        .federation
        .clone()
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    let snap = EdgeSnapshot::build(&loaded.spec, &fed, "here/edge", 7).expect("snapshot");
    Arc::new(Node::from_snapshot(&snap, "here/edge", now).expect("node"))
}
