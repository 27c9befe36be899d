//! Checks that catch dangerous mistakes a reviewer made in copies of the
//! example region: each test breaks a small, clean federation in one way and
//! asserts the code, the file, line and column of the value at fault, and the
//! words of the message and hint an admin acts on.
//!
//! The federation is two files: `base.yaml` (two members, each with an edge,
//! a service and an allow for the other, under one agreement) and
//! `extra.yaml`, which each test fills with the item under test.

mod common;

use common::pos_of;
use federation::model::OrgId;
use federation::validate::{parse_time, validate};
use federation::{Code, Diagnostic, FileId, Loaded, Scope, Sources};
use jiff::Timestamp;

const BASE: &str = r#"federation: {name: t, trust_domain: t.fedgate.example}

organisations:
  - id: alpha
    name: Alpha NHS Trust
    kind: nhs-trust
    membership: {agreement: FCA-A, expires: 2035-03-31}
    dns: {zones: [alpha.example], upstreams: ["10.1.0.53"]}
  - id: beta
    name: Beta Council
    kind: local-authority
    membership: {agreement: FCA-B, expires: 2035-03-31}
    dns: {zones: [beta.example], upstreams: ["10.2.0.53"]}

networks:
  - {org: alpha, label: corporate, purpose: corporate, cidrs: [10.1.0.0/16]}
  - {org: alpha, label: guest, purpose: guest, cidrs: [10.9.0.0/16]}
  - {org: beta, label: corporate, purpose: corporate, cidrs: [10.2.0.0/16]}
  - {org: beta, label: clinical, purpose: clinical, cidrs: [10.3.0.0/16]}

edges:
  - org: alpha
    name: core
    overlay: {quic: "192.0.2.1:4433", tcp: "192.0.2.1:4443"}
    ingress: {addresses: ["10.1.0.5"], vip_prefix: 198.18.1.0/24}
    dns: "10.1.0.5:53"
  - org: beta
    name: core
    overlay: {quic: "192.0.2.2:4433", tcp: "192.0.2.2:4443"}
    ingress: {addresses: ["10.2.0.5"], vip_prefix: 198.18.2.0/24}

services:
  - {org: alpha, name: ehr, dns: [ehr.alpha.example], address: 10.1.10.20, ports: [443], protocol: tls, tags: [clinical, patient-record]}
  - {org: beta, name: care, dns: [care.beta.example], address: 10.2.10.20, ports: [443], protocol: tls, tags: [social-care]}

agreements:
  - id: ISA-1
    title: Shared care
    parties: [alpha, beta]
    purpose: Shared care.
    legal_basis: UK GDPR Art. 6(1)(e) and 9(2)(h).
    owner: {name: A, role: Caldicott Guardian, org: alpha}
    start: 2025-01-01
    expires: 2035-03-31

policies:
  - id: beta-to-ehr
    description: Beta reaches the record.
    from: {orgs: [beta]}
    to: {services: [alpha/ehr]}
    action: allow
    agreement: ISA-1
  - id: alpha-to-care
    description: Alpha reaches the care record.
    from: {orgs: [alpha]}
    to: {services: [beta/care]}
    action: allow
    agreement: ISA-1
"#;

const BASE_FILE: FileId = FileId(0);
const EXTRA_FILE: FileId = FileId(1);

fn now() -> Timestamp {
    parse_time("2026-06-01", false).unwrap()
}

fn load(base: &str, extra: &str) -> Loaded {
    let mut sources = Sources::new();
    sources.add("base.yaml", base);
    sources.add("extra.yaml", extra);
    federation::load(&sources, now())
}

/// The one diagnostic with `code`, asserting that it is at `needle` of
/// `text` (in `file`).
fn the<'a>(
    loaded: &'a Loaded,
    code: Code,
    file: FileId,
    text: &str,
    needle: &str,
) -> &'a Diagnostic {
    let found: Vec<&Diagnostic> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.code == code)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {code} wanted: {:#?}",
        loaded.diagnostics
    );
    let d = found[0];
    let pos = d.pos.unwrap_or_else(|| panic!("{code} has no position"));
    assert_eq!(pos.file, file, "{d}");
    assert_eq!((pos.line, pos.column), pos_of(text, needle), "{d}");
    d
}

fn hint(d: &Diagnostic) -> &str {
    d.hint.as_deref().unwrap_or_default()
}

fn codes(loaded: &Loaded) -> Vec<Code> {
    loaded.diagnostics.iter().map(|d| d.code).collect()
}

#[test]
fn base_document_is_clean() {
    let loaded = load(BASE, "");
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
}

// 1. A destination selector item that matches no service (FG147).

const DENY_GUEST: &str = r#"policies:
  - id: deny-guest
    description: Guest Wi-Fi reaches nothing.
    from: {networks: [alpha/guest]}
    to:
      tags: ["*/clinical", "*/socialcare"]
    action: deny
"#;

#[test]
fn deny_tag_selector_matching_no_service_is_reported_at_the_item() {
    let loaded = load(BASE, DENY_GUEST);
    let d = the(
        &loaded,
        Code::SelectorMatchesNothing,
        EXTRA_FILE,
        DENY_GUEST,
        "\"*/socialcare\"",
    );
    assert!(!d.is_error());
    assert!(
        d.message.contains("`*/socialcare` matches no service")
            && d.message.contains("denies nothing")
            && d.message.contains("decided by the other rules")
            && d.message.contains("may be allowed"),
        "{d}"
    );
    assert_eq!(hint(d), "did you mean `*/social-care`?");
    // The policy as a whole still matches `alpha/ehr`: no FG141.
    assert_eq!(codes(&loaded), [Code::SelectorMatchesNothing]);
}

#[test]
fn org_tag_selector_suggests_only_that_orgs_tags() {
    // Beta's service carries `social-care`; alpha's do not, and an allow
    // must not be steered to another member's services.
    let extra = r#"policies:
  - id: beta-to-alpha-care
    description: Beta reaches alpha's care systems.
    from: {orgs: [beta]}
    to:
      tags: [alpha/clinical, alpha/social-care]
    action: allow
    agreement: ISA-1
"#;
    let loaded = load(BASE, extra);
    let d = the(
        &loaded,
        Code::SelectorMatchesNothing,
        EXTRA_FILE,
        extra,
        "alpha/social-care",
    );
    assert!(
        d.message.contains("`alpha/social-care` matches no service")
            && d.message.contains("opens nothing"),
        "{d}"
    );
    assert_eq!(
        hint(d),
        "no service carries the tag `social-care`; the tags on alpha's services are: clinical, patient-record"
    );
    assert!(!hint(d).contains("beta"), "{d}");
}

#[test]
fn only_item_matching_nothing_comes_with_fg141() {
    let extra = r#"policies:
  - id: deny-legacy
    description: Nobody reaches the legacy systems.
    from: {orgs: [beta]}
    to: {tags: [alpha/clinicl]}
    action: deny
"#;
    let loaded = load(BASE, extra);
    let d = the(
        &loaded,
        Code::SelectorMatchesNothing,
        EXTRA_FILE,
        extra,
        "alpha/clinicl",
    );
    assert_eq!(hint(d), "did you mean `alpha/clinical`?");
    the(
        &loaded,
        Code::PolicyOpensNothing,
        EXTRA_FILE,
        extra,
        "deny-legacy",
    );
}

#[test]
fn selector_matching_nothing_is_not_reported_in_an_edge_snapshot() {
    // In an edge's snapshot only the services it reaches are present: a
    // selector matching none of them there is normal.
    let loaded = load(BASE, DENY_GUEST);
    let checked = validate(&loaded.spec, &Scope::Edge(OrgId::new("beta")), now());
    assert!(
        !checked
            .diagnostics
            .iter()
            .any(|d| d.code == Code::SelectorMatchesNothing),
        "{:#?}",
        checked.diagnostics
    );
}

// 2. A deny rule that ends (FG157), and an expired deny (FG154's hint).

#[test]
fn deny_with_an_expiry_is_reported_at_expires() {
    let extra = r#"policies:
  - id: deny-guest
    description: Guest Wi-Fi reaches nothing.
    from: {networks: [alpha/guest]}
    to: {tags: ["*/clinical"]}
    action: deny
    expires: 2030-01-31
"#;
    let loaded = load(BASE, extra);
    let d = the(&loaded, Code::DenyEnds, EXTRA_FILE, extra, "2030-01-31");
    assert!(!d.is_error());
    assert!(
        d.message
            .contains("deny `deny-guest` ends at 2030-02-01T00:00:00Z")
            && d.message.contains("stops denying")
            && d.message.contains("decided by the other rules"),
        "{d}"
    );
    assert!(hint(d).contains("remove `expires`"), "{d}");
    assert_eq!(codes(&loaded), [Code::DenyEnds]);
}

#[test]
fn deny_under_an_agreement_is_reported_at_agreement() {
    let extra = r#"policies:
  - id: deny-guest
    description: Guest Wi-Fi reaches nothing.
    from: {orgs: [alpha], networks: [alpha/guest]}
    to: {services: [beta/care]}
    action: deny
    agreement: ISA-1
"#;
    let loaded = load(BASE, extra);
    let d = the(&loaded, Code::DenyEnds, EXTRA_FILE, extra, "ISA-1");
    assert!(
        d.message.contains("rests on agreement `ISA-1`")
            && d.message.contains("2035-04-01T00:00:00Z")
            && d.message.contains("stops denying")
            && d.message.contains("decided by the other rules"),
        "{d}"
    );
    assert!(hint(d).contains("remove `agreement`"), "{d}");
}

#[test]
fn expired_deny_says_its_flows_may_now_be_allowed() {
    let extra = r#"policies:
  - id: deny-guest
    description: Guest Wi-Fi reaches nothing.
    from: {networks: [alpha/guest]}
    to: {tags: ["*/clinical"]}
    action: deny
    expires: 2026-01-31
  - id: alpha-to-care-trial
    description: A trial that ended.
    from: {orgs: [alpha]}
    to: {services: [beta/care]}
    action: allow
    agreement: ISA-1
    expires: 2026-02-28
"#;
    let loaded = load(BASE, extra);
    let expired: Vec<&Diagnostic> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::PolicyExpired)
        .collect();
    assert_eq!(expired.len(), 2, "{:#?}", loaded.diagnostics);
    let deny = expired[0];
    let pos = deny.pos.unwrap();
    assert_eq!((pos.line, pos.column), pos_of(extra, "2026-01-31"));
    assert!(
        deny.message.contains("policy `deny-guest` expired"),
        "{deny}"
    );
    assert!(
        hint(deny).contains("decided by the allow rules")
            && hint(deny).contains("may be allowed")
            && !hint(deny).contains("remove it"),
        "{deny}"
    );
    // The allow keeps its hint; an expired deny gets no FG157 besides.
    assert!(hint(expired[1]).contains("remove it"), "{}", expired[1]);
    assert!(!codes(&loaded).contains(&Code::DenyEnds));
}

// 3. Unusable addresses: FG115 and FG130 in more places.

#[test]
fn service_address_of_every_address_is_refused() {
    let base = BASE.replace("address: 10.2.10.20", "address: 0.0.0.0");
    let loaded = load(&base, "");
    let d = the(
        &loaded,
        Code::UnspecifiedAddress,
        BASE_FILE,
        &base,
        "0.0.0.0",
    );
    assert!(d.is_error());
    assert!(
        d.message.contains("service address `0.0.0.0`")
            && d.message.contains("connect to themselves"),
        "{d}"
    );
    assert_eq!(codes(&loaded), [Code::UnspecifiedAddress]);
}

#[test]
fn dns_upstream_of_every_address_or_port_0_is_refused() {
    let base = BASE
        .replace("upstreams: [\"10.1.0.53\"]", "upstreams: [\"::\"]")
        .replace("upstreams: [\"10.2.0.53\"]", "upstreams: [\"10.2.0.53:0\"]");
    let loaded = load(&base, "");
    let d = the(
        &loaded,
        Code::UnspecifiedAddress,
        BASE_FILE,
        &base,
        "\"::\"",
    );
    assert!(
        d.message.contains("upstream resolver `::`") && d.message.contains("themselves"),
        "{d}"
    );
    let d = the(
        &loaded,
        Code::PortOutOfRange,
        BASE_FILE,
        &base,
        "\"10.2.0.53:0\"",
    );
    assert!(d.message.contains("port 0"), "{d}");
    assert!(hint(d).contains("`10.2.0.53` (port 53)"), "{d}");
}

#[test]
fn port_0_in_overlay_endpoints_and_dns_listener_is_refused() {
    let base = BASE
        .replace("quic: \"192.0.2.1:4433\"", "quic: \"192.0.2.1:0\"")
        .replace("tcp: \"192.0.2.2:4443\"", "tcp: \"192.0.2.2:0\"")
        .replace("dns: \"10.1.0.5:53\"", "dns: \"10.1.0.5:0\"");
    let loaded = load(&base, "");
    let found: Vec<&Diagnostic> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::PortOutOfRange)
        .collect();
    assert_eq!(found.len(), 3, "{:#?}", loaded.diagnostics);
    for (d, needle, words, fix) in [
        (
            found[0],
            "\"192.0.2.1:0\"",
            "QUIC endpoint `192.0.2.1:0` has port 0",
            "`192.0.2.1:4433`",
        ),
        (
            found[1],
            "\"10.1.0.5:0\"",
            "DNS listener `10.1.0.5:0` has port 0",
            "`10.1.0.5` (port 53)",
        ),
        (
            found[2],
            "\"192.0.2.2:0\"",
            "TCP endpoint `192.0.2.2:0` has port 0",
            "`192.0.2.2:4443`",
        ),
    ] {
        let pos = d.pos.unwrap();
        assert_eq!((pos.line, pos.column), pos_of(&base, needle), "{d}");
        assert!(d.is_error() && d.message.contains(words), "{d}");
        assert!(hint(d).contains(fix), "{d}");
    }
}

// 4. Two edges on one overlay endpoint (FG118).

#[test]
fn two_edges_on_one_overlay_endpoint_is_refused_at_the_second() {
    let extra = r#"edges:
  - org: beta
    name: annexe
    overlay: {quic: "192.0.2.1:4433", tcp: "192.0.2.2:4443"}
  - org: beta
    name: depot
    overlay: {quic: "192.0.2.9:4443", tcp: "192.0.2.9:4433"}
"#;
    let loaded = load(BASE, extra);
    let found: Vec<&Diagnostic> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::OverlayEndpointShared)
        .collect();
    // depot's QUIC port is a TCP port elsewhere and vice versa: not shared.
    assert_eq!(found.len(), 2, "{:#?}", loaded.diagnostics);
    let (quic, tcp) = (found[0], found[1]);
    let pos = quic.pos.unwrap();
    assert_eq!(pos.file, EXTRA_FILE);
    assert_eq!((pos.line, pos.column), pos_of(extra, "\"192.0.2.1:4433\""));
    assert!(quic.is_error());
    assert!(
        quic.message
            .contains("also the QUIC endpoint of `alpha/core`"),
        "{quic}"
    );
    let (first, note) = &quic.related[0];
    assert_eq!(first.file, BASE_FILE);
    assert_eq!(
        (first.line, first.column),
        pos_of(BASE, "\"192.0.2.1:4433\"")
    );
    assert!(note.contains("alpha/core"), "{note}");
    assert!(
        tcp.message.contains("also the TCP endpoint of `beta/core`"),
        "{tcp}"
    );
    assert_eq!(
        (tcp.pos.unwrap().line, tcp.pos.unwrap().column),
        pos_of(extra, "\"192.0.2.2:4443\"")
    );
    assert_eq!(
        (tcp.related[0].0.line, tcp.related[0].0.column),
        pos_of(BASE, "\"192.0.2.2:4443\"")
    );
}

// 5. VIP prefixes: inside an own network (FG116), too small (FG117).

#[test]
fn vip_prefix_inside_an_own_network_is_refused() {
    let base = BASE.replace("vip_prefix: 198.18.1.0/24", "vip_prefix: 10.9.200.0/24");
    let loaded = load(&base, "");
    let d = the(
        &loaded,
        Code::VipPrefixOverlap,
        BASE_FILE,
        &base,
        "10.9.200.0/24",
    );
    assert!(d.is_error());
    assert!(
        d.message
            .contains("10.9.200.0/24 of `alpha/core` overlaps 10.9.0.0/16")
            && d.message.contains("`alpha/guest`"),
        "{d}"
    );
    assert!(hint(d).contains("none of alpha's networks"), "{d}");
    let (net, _) = d.related[0];
    assert_eq!((net.line, net.column), pos_of(&base, "10.9.0.0/16"));
}

#[test]
fn vip_prefix_over_another_members_network_is_not_an_own_overlap() {
    let base = BASE.replace("vip_prefix: 198.18.1.0/24", "vip_prefix: 10.2.200.0/24");
    let loaded = load(&base, "");
    assert!(!codes(&loaded).contains(&Code::VipPrefixOverlap));
}

#[test]
fn loopback_vip_prefix_inside_a_loopback_network_is_allowed() {
    // The demo and the tests make all of 127.0.0.0/8 a network and take VIPs
    // from it: on one host, no other host can be behind a VIP.
    let base = BASE
        .replace("cidrs: [10.9.0.0/16]", "cidrs: [127.0.0.0/8]")
        .replace("vip_prefix: 198.18.1.0/24", "vip_prefix: 127.57.0.0/24");
    let loaded = load(&base, "");
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
}

#[test]
fn vip_prefix_smaller_than_the_services_given_vips_is_reported() {
    // Alpha's edge gives a VIP to each of beta's three `tcp` services that
    // an allow from alpha opens; beta's `tls` service needs none, nor does
    // the `tcp` service no allow from alpha names.
    let base = BASE.replace("vip_prefix: 198.18.1.0/24", "vip_prefix: 198.18.1.0/31");
    let extra = r#"services:
  - {org: beta, name: hl7, dns: [hl7.beta.example], address: 10.2.10.21, ports: [2575], protocol: tcp}
  - {org: beta, name: rdp, dns: [rdp.beta.example], address: 10.2.10.22, ports: [3389], protocol: tcp}
  - {org: beta, name: pacs, dns: [pacs.beta.example], address: 10.2.10.23, ports: [104], protocol: tcp}
  - {org: beta, name: own, dns: [own.beta.example], address: 10.2.10.24, ports: [22], protocol: tcp}
policies:
  - id: alpha-to-beta-tcp
    description: Alpha reaches beta's TCP systems.
    from: {orgs: [alpha]}
    to: {services: [beta/hl7, beta/rdp, beta/pacs]}
    action: allow
    agreement: ISA-1
  - id: beta-own
    description: Beta's own staff reach it.
    from: {orgs: [beta]}
    to: {services: [beta/own]}
    action: allow
"#;
    let loaded = load(&base, extra);
    let d = the(
        &loaded,
        Code::VipPrefixTooSmall,
        BASE_FILE,
        &base,
        "198.18.1.0/31",
    );
    assert!(!d.is_error());
    assert!(
        d.message
            .contains("198.18.1.0/31 of `alpha/core` holds 2 VIPs")
            && d.message
                .contains("3 remote `tcp` services alpha may reach")
            && d.message.contains("one of them gets none")
            && d.message.contains("CONNECT or SOCKS5"),
        "{d}"
    );
    // A /30 also holds 2 (network and broadcast are not given out).
    assert!(hint(d).contains("widen it to a /29"), "{d}");
    // Beta's /24 is ample; with a /29 alpha's is too.
    let wide = base.replace("vip_prefix: 198.18.1.0/31", "vip_prefix: 198.18.1.0/29");
    assert!(!codes(&load(&wide, extra)).contains(&Code::VipPrefixTooSmall));
}

// 6. "Did you mean" for ORG/NAME stays within ORG.

#[test]
fn unknown_network_of_a_known_org_suggests_only_that_orgs_networks() {
    // Beta has a `clinical` network; alpha has none. Suggesting
    // `beta/clinical` would grant beta's network.
    let extra = r#"policies:
  - id: alpha-clinical-to-care
    description: Alpha's clinicians reach the care record.
    from: {orgs: [alpha], networks: [alpha/clinical]}
    to: {services: [beta/care]}
    action: allow
    agreement: ISA-1
"#;
    let loaded = load(BASE, extra);
    let d = the(
        &loaded,
        Code::UnknownReference,
        EXTRA_FILE,
        extra,
        "alpha/clinical",
    );
    assert_eq!(d.message, "unknown network `alpha/clinical`");
    assert_eq!(
        hint(d),
        "alpha has no network `clinical`; its networks are: corporate, guest"
    );
}

#[test]
fn unknown_service_suggests_a_close_name_of_the_same_org() {
    let extra = r#"policies:
  - id: beta-to-ehr-2
    description: Beta reaches the record.
    from: {orgs: [beta]}
    to: {services: [alpha/ehrr, beta/ehr]}
    action: allow
    agreement: ISA-1
"#;
    let loaded = load(BASE, extra);
    let found: Vec<&Diagnostic> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.code == Code::UnknownReference)
        .collect();
    assert_eq!(found.len(), 2, "{:#?}", loaded.diagnostics);
    let pos = found[0].pos.unwrap();
    assert_eq!((pos.line, pos.column), pos_of(extra, "alpha/ehrr"));
    assert_eq!(hint(found[0]), "did you mean `alpha/ehr`?");
    // `beta/ehr` is one edit from `alpha/ehr`'s name, but beta's own
    // services are the only ones to offer.
    let pos = found[1].pos.unwrap();
    assert_eq!((pos.line, pos.column), pos_of(extra, "beta/ehr"));
    assert_eq!(
        hint(found[1]),
        "beta has no service `ehr`; its services are: care"
    );
}

#[test]
fn unknown_org_in_a_reference_is_named() {
    let extra = r#"sites:
  - id: hub
    name: The hub
    host: alpha
    networks: [alpah/corporate]
"#;
    let loaded = load(BASE, extra);
    let d = the(
        &loaded,
        Code::UnknownReference,
        EXTRA_FILE,
        extra,
        "alpah/corporate",
    );
    assert_eq!(
        hint(d),
        "there is no organisation `alpah`; did you mean `alpha/corporate`?"
    );
}

#[test]
fn a_policy_on_ports_its_service_does_not_serve_says_which_it_serves() {
    let extra = r#"policies:
  - id: beta-ehr-8443
    description: Beta reaches the record on the wrong port.
    from: {orgs: [beta]}
    to: {services: [alpha/ehr]}
    ports: [8443]
    action: allow
    agreement: ISA-1
"#;
    let loaded = load(BASE, extra);
    let d = the(
        &loaded,
        Code::PolicyOpensNothing,
        EXTRA_FILE,
        extra,
        "beta-ehr-8443",
    );
    assert!(
        d.message.contains("(`alpha/ehr` serves 443)"),
        "{}",
        d.message
    );
    assert!(hint(d).contains("correct its `ports`"), "{}", hint(d));
    let related = d.related.first().expect("the ports named");
    assert_eq!((related.0.line, related.0.column), pos_of(extra, "8443]"));
}

/// A look-alike character (Cyrillic `а`, U+0430) is named by its code point,
/// in an id and in a reference: on screen both read as `intranet`.
#[test]
fn a_lookalike_character_is_named_by_its_code_point() {
    let extra = "services:\n  - {org: alpha, name: intr\u{430}net, dns: [intranet.alpha.example], address: 10.1.10.21, ports: [443], protocol: tls}\n";
    let loaded = load(BASE, extra);
    let d = the(
        &loaded,
        Code::InvalidId,
        EXTRA_FILE,
        extra,
        "intr\u{430}net",
    );
    assert!(
        d.message
            .contains("(character 5 is `\u{430}`, U+0430, not an ASCII letter: retype it)"),
        "{}",
        d.message
    );
    let extra = r#"policies:
  - id: beta-to-ehr-lookalike
    description: Beta reaches the record.
    from: {orgs: [beta]}
    to: {services: [alpha/еhr]}
    action: allow
    agreement: ISA-1
"#;
    let loaded = load(BASE, extra);
    let d = the(
        &loaded,
        Code::UnknownReference,
        EXTRA_FILE,
        extra,
        "alpha/\u{435}hr",
    );
    assert!(
        d.message.contains("character 7 is `\u{435}`, U+0435"),
        "{}",
        d.message
    );
    assert_eq!(hint(d), "did you mean `alpha/ehr`?");
}

/// Small mistakes that were reported without their reason: a prefix length
/// past 32, a netmask for a prefix length, a day February does not have,
/// reversed dates without the dates, a group inside a group, a serial
/// written `0x…`, a port past 65535.
#[test]
fn small_mistakes_say_what_is_wrong() {
    let extra = r#"networks:
  - {org: alpha, label: wide, purpose: corporate, cidrs: [10.4.0.0/33]}
  - {org: alpha, label: masked, purpose: corporate, cidrs: [10.5.0.0/255.255.0.0]}
groups:
  - {id: trusts, members: [alpha]}
  - {id: everyone, members: [trusts, beta]}
agreements:
  - id: ISA-2
    title: Leap day
    parties: [alpha, beta]
    purpose: A test.
    legal_basis: None.
    owner: {name: A, role: Caldicott Guardian, org: alpha}
    start: 2026-01-01
    expires: 2028-02-30
  - id: ISA-3
    title: Reversed
    parties: [alpha, beta]
    purpose: A test.
    legal_basis: None.
    owner: {name: A, role: Caldicott Guardian, org: alpha}
    start: 2027-01-01
    expires: 2026-12-31
revoked_certificates:
  - {serial: "0x1F", reason: key-compromise}
edges:
  - org: beta
    name: spare
    overlay: {quic: "192.0.2.9:70000"}
"#;
    let loaded = load(BASE, extra);
    let all = |code| -> Vec<&Diagnostic> {
        loaded
            .diagnostics
            .iter()
            .filter(|d| d.code == code)
            .collect()
    };
    let cidrs = all(Code::InvalidCidr);
    assert!(
        cidrs.iter().any(
            |d| hint(d).contains("the prefix length is at most 32 for this address (it is 33)")
        ),
        "{cidrs:#?}"
    );
    assert!(
        cidrs
            .iter()
            .any(|d| hint(d) == "write the prefix length, not a netmask: `10.5.0.0/16`"),
        "{cidrs:#?}"
    );
    let date = the(&loaded, Code::InvalidDate, EXTRA_FILE, extra, "2028-02-30");
    assert_eq!(
        date.message,
        "`2028-02-30` is not a date or time: February 2028 has 29 days"
    );
    let reversed = the(
        &loaded,
        Code::DatesReversed,
        EXTRA_FILE,
        extra,
        "2026-12-31",
    );
    assert_eq!(
        reversed.message,
        "agreement `ISA-3` expires (2026-12-31) before it starts (2027-01-01)"
    );
    let nested = all(Code::UnknownReference);
    assert!(
        nested
            .iter()
            .any(|d| d.message == "`trusts` is a group: a group's members are organisations"),
        "{nested:#?}"
    );
    let serial = the(&loaded, Code::InvalidSerial, EXTRA_FILE, extra, "\"0x1F");
    assert!(
        hint(serial).starts_with("drop the `0x`: write `1F`"),
        "{}",
        hint(serial)
    );
    let port = the(
        &loaded,
        Code::PortOutOfRange,
        EXTRA_FILE,
        extra,
        "\"192.0.2.9:70000",
    );
    assert!(
        port.message.contains("has a port past 65535"),
        "{}",
        port.message
    );
}
