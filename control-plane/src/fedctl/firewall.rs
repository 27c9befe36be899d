//! `fedctl firewall`: the perimeter openings a member makes for its edges,
//! and a ruleset that locks each edge host down to them.
//!
//! An edge's peers are exactly the edges its snapshot holds of other
//! members ([`EdgeSnapshot::build`]: the members whose services its staff
//! may reach, and those whose staff may reach its member's services). One
//! overlay connection per pair, opened by either side, so each peer gets both
//! directions: QUIC (UDP) and its TLS-over-TCP fallback. Inside the member,
//! the host also takes its member's own networks (ingress, DNS), reaches its
//! member's services and resolvers, and the control plane when given.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use anyhow::anyhow;
use clap::ValueEnum;
use federation::model::OrgId;
use federation::{EdgeSnapshot, Federation, FederationSpec};
use serde::Serialize;

use super::output::table;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Nftables,
    /// IPv4, for `iptables-restore`.
    Iptables,
    /// IPv6, for `ip6tables-restore`.
    Ip6tables,
    Json,
}

/// One opening on an edge host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Opening {
    pub edge: String,
    /// `in` or `out`, seen from the edge host.
    pub direction: &'static str,
    /// `udp` or `tcp`.
    pub protocol: &'static str,
    /// The edge host's address (and port, inbound).
    pub local: String,
    /// The other side: an address or CIDR (and port, outbound).
    pub remote: String,
    /// The other side's name: a peer edge, or what it is.
    pub peer: String,
    /// Whether it crosses the member's perimeter.
    pub perimeter: bool,
    pub why: &'static str,
}

/// The edge host's side of an opening inside the member (to its services
/// and resolvers): whichever address the host's routes choose. An edge on
/// the perimeter is usually on two networks, and reaches the member's
/// systems from its inside address, not the overlay's; the rule then
/// matches the destination only.
const ANY_ADDRESS: &str = "(any of its addresses)";

/// Every opening for `org`'s edges.
pub fn plan(
    spec: &FederationSpec,
    fed: &Federation,
    org: &str,
    control: &[SocketAddr],
) -> anyhow::Result<Vec<Opening>> {
    let org_id = OrgId::new(org);
    if fed.org(org).is_none() {
        let ids: Vec<&str> = fed.orgs.iter().map(|o| o.id.as_str()).collect();
        return Err(anyhow!(
            "unknown organisation `{org}`; the members are: {}",
            ids.join(", ")
        ));
    }
    let mut out = BTreeSet::new();
    let own_cidrs: Vec<String> = fed
        .networks_of(&org_id)
        .flat_map(|n| n.cidrs.iter().map(ToString::to_string))
        .collect();
    let upstreams: Vec<SocketAddr> = spec
        .organisations
        .iter()
        .filter(|o| o.item.value.id.value == org)
        .flat_map(|o| o.item.value.dns.upstreams.iter())
        .filter_map(|u| {
            u.value.parse::<SocketAddr>().ok().or_else(|| {
                u.value
                    .parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
        })
        .collect();
    for edge in fed.edges.iter().filter(|e| e.org == org_id) {
        let id = edge.id.to_string();
        let snap = EdgeSnapshot::build(spec, fed, &id, 0).map_err(|e| anyhow!("{e}"))?;
        let host = edge
            .quic
            .or(edge.tcp)
            .map(|a| a.ip())
            .or(edge.ingress_addresses.first().copied());
        let host_s = host.map_or("(its address)".to_owned(), |h| h.to_string());
        let mut add =
            |direction, protocol, local: String, remote: String, peer: String, perimeter, why| {
                out.insert(Opening {
                    edge: id.clone(),
                    direction,
                    protocol,
                    local,
                    remote,
                    peer,
                    perimeter,
                    why,
                });
            };
        for p in snap.document.edges.iter().map(|e| &e.value) {
            if p.org.value == org {
                continue;
            }
            let pid = format!("{}/{}", p.org.value, p.name.value);
            let parse = |s: &Option<federation::spec::S<String>>| {
                s.as_ref().and_then(|a| a.value.parse::<SocketAddr>().ok())
            };
            for (proto, mine, theirs, why) in [
                ("udp", edge.quic, parse(&p.overlay.quic), "overlay (QUIC)"),
                (
                    "tcp",
                    edge.tcp,
                    parse(&p.overlay.tcp),
                    "overlay (TLS over TCP, fallback)",
                ),
            ] {
                let Some(theirs) = theirs else { continue };
                if let Some(mine) = mine {
                    add(
                        "in",
                        proto,
                        mine.to_string(),
                        theirs.ip().to_string(),
                        pid.clone(),
                        true,
                        why,
                    );
                }
                add(
                    "out",
                    proto,
                    host_s.clone(),
                    theirs.to_string(),
                    pid.clone(),
                    true,
                    why,
                );
            }
        }
        for c in control {
            add(
                "out",
                "tcp",
                host_s.clone(),
                c.to_string(),
                "control plane".into(),
                true,
                "snapshots and reports (HTTPS, mutual TLS)",
            );
        }
        let mut inside: Vec<String> = edge
            .ingress_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        if let Some(v) = edge.vip_prefix {
            inside.push(v.to_string());
        }
        for cidr in &own_cidrs {
            for local in &inside {
                add(
                    "in",
                    "tcp",
                    local.clone(),
                    cidr.clone(),
                    format!("{org} networks"),
                    false,
                    "ingress for visiting staff",
                );
            }
            if let Some(dns) = edge.dns {
                for proto in ["udp", "tcp"] {
                    add(
                        "in",
                        proto,
                        dns.to_string(),
                        cidr.clone(),
                        format!("{org} resolvers"),
                        false,
                        "split-horizon DNS",
                    );
                }
            }
        }
        for s in fed.services_of(&org_id) {
            if let Some(a) = s.address {
                for port in &s.ports {
                    add(
                        "out",
                        "tcp",
                        ANY_ADDRESS.to_owned(),
                        SocketAddr::new(a, *port).to_string(),
                        s.id.to_string(),
                        false,
                        "egress to the member's service",
                    );
                }
            }
        }
        if edge.dns.is_some() {
            for u in &upstreams {
                for proto in ["udp", "tcp"] {
                    add(
                        "out",
                        proto,
                        ANY_ADDRESS.to_owned(),
                        u.to_string(),
                        format!("{org} resolver"),
                        false,
                        "DNS for names outside the federation",
                    );
                }
            }
        }
    }
    // A network of one family never reaches an address of the other: no
    // opening (a dual-stack member declares both).
    out.retain(|o| {
        family_of(&o.local)
            .zip(family_of(&o.remote))
            .is_none_or(|(l, r)| l == r)
    });
    Ok(out.into_iter().collect())
}

/// The family of an opening's side (an address, `ADDR:PORT` or a CIDR):
/// `ip` or `ip6`; `None` for [`ANY_ADDRESS`].
fn family_of(side: &str) -> Option<&'static str> {
    let (ip, _) = split(side);
    let ip = ip.split('/').next().unwrap_or_default();
    ip.parse::<IpAddr>()
        .ok()
        .map(|ip| if ip.is_ipv6() { "ip6" } else { "ip" })
}

fn split(addr: &str) -> (String, Option<String>) {
    match addr.parse::<SocketAddr>() {
        Ok(a) => (a.ip().to_string(), Some(a.port().to_string())),
        Err(_) => (addr.to_owned(), None),
    }
}

/// The openings in `format`.
pub fn render(
    format: Format,
    fed_name: &str,
    org: &str,
    openings: &[Opening],
) -> anyhow::Result<String> {
    let mut s = String::new();
    match format {
        Format::Json => s = serde_json::to_string_pretty(openings)? + "\n",
        Format::Table => {
            let rows: Vec<Vec<String>> = openings
                .iter()
                .map(|o| {
                    vec![
                        o.edge.clone(),
                        if o.perimeter { "perimeter" } else { "inside" }.into(),
                        o.direction.into(),
                        o.protocol.into(),
                        o.local.clone(),
                        o.remote.clone(),
                        o.peer.clone(),
                        o.why.into(),
                    ]
                })
                .collect();
            s = table(
                &[
                    "EDGE",
                    "WHERE",
                    "DIR",
                    "PROTO",
                    "EDGE HOST",
                    "OTHER SIDE",
                    "WHO",
                    "WHY",
                ],
                &rows,
            );
            let peers: BTreeSet<&str> = openings
                .iter()
                .filter(|o| o.perimeter && o.peer != "control plane")
                .map(|o| o.peer.as_str())
                .collect();
            let _ = writeln!(
                s,
                "\n{org}'s edges have {} peer edge(s) in {fed_name}: {}",
                peers.len(),
                peers.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        Format::Nftables => {
            let _ = writeln!(
                s,
                "# fedctl firewall --org {org} --format nftables ({fed_name}): load with `nft -f FILE` on the edge host.\n# Everything else is dropped; established flows and loopback pass.\ntable inet fedgate_edge\ndelete table inet fedgate_edge\ntable inet fedgate_edge {{"
            );
            for (chain, hook, dir) in [("input", "input", "in"), ("output", "output", "out")] {
                let lo = if dir == "in" { "iif" } else { "oif" };
                let _ = writeln!(
                    s,
                    "  chain {chain} {{\n    type filter hook {hook} priority filter; policy drop;\n    ct state established,related accept\n    {lo} \"lo\" accept\n    icmpv6 type {{ nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert }} accept comment \"IPv6 neighbour and router discovery\""
                );
                for o in openings.iter().filter(|o| o.direction == dir) {
                    let (lip, lport) = split(&o.local);
                    let (rip, rport) = split(&o.remote);
                    let (src, dst, dport) = if dir == "in" {
                        (rip, lip, lport)
                    } else {
                        (lip, rip, rport)
                    };
                    let mut rule = String::new();
                    if let Some(f) = family_of(&src) {
                        let _ = write!(rule, "{f} saddr {src} ");
                    }
                    if let Some(f) = family_of(&dst) {
                        let _ = write!(rule, "{f} daddr {dst} ");
                    }
                    let _ = write!(rule, "meta l4proto {} ", o.protocol);
                    if let Some(p) = dport {
                        let _ = write!(rule, "{} dport {p} ", o.protocol);
                    }
                    let _ = writeln!(
                        s,
                        "    {rule}accept comment \"{} {} {}\"",
                        o.edge, o.peer, o.why
                    );
                }
                let _ = writeln!(s, "  }}");
            }
            let _ = writeln!(s, "}}");
        }
        Format::Iptables => xtables(&mut s, fed_name, org, openings, false),
        Format::Ip6tables => xtables(&mut s, fed_name, org, openings, true),
    }
    Ok(s)
}

/// The ruleset of one family for `iptables-restore` (`v6`: for
/// `ip6tables-restore`): xtables keeps a table per family, so a host of
/// both loads both, and the family left without its ruleset stays open.
fn xtables(s: &mut String, fed_name: &str, org: &str, openings: &[Opening], v6: bool) {
    let (tool, this, other, other_format) = if v6 {
        ("ip6tables-restore", "IPv6", "IPv4", "iptables")
    } else {
        ("iptables-restore", "IPv4", "IPv6", "ip6tables")
    };
    let family = if v6 { "ip6" } else { "ip" };
    let of_family = |o: &&Opening| {
        family_of(&o.local)
            .or_else(|| family_of(&o.remote))
            .is_none_or(|f| f == family)
    };
    let others = openings.iter().filter(|o| !of_family(o)).count();
    let _ = writeln!(
        s,
        "# fedctl firewall --org {org} --format {} ({fed_name}): load with `{tool} < FILE` on the edge host ({this}).\n# {other} has a ruleset of its own ({others} opening(s)): `--format {other_format}`. Load both, or {other} stays open.\n# Everything else is dropped; established flows and loopback pass.\n*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A OUTPUT -o lo -j ACCEPT",
        if v6 { "ip6tables" } else { "iptables" },
    );
    if v6 {
        // Without neighbour discovery an IPv6 host loses its neighbours.
        for chain in ["INPUT", "OUTPUT"] {
            for t in [
                "router-solicitation",
                "router-advertisement",
                "neighbour-solicitation",
                "neighbour-advertisement",
            ] {
                let _ = writeln!(
                    s,
                    "-A {chain} -p ipv6-icmp -m icmp6 --icmpv6-type {t} -m comment --comment \"IPv6 neighbour and router discovery\" -j ACCEPT"
                );
            }
        }
    }
    for o in openings.iter().filter(of_family) {
        let (lip, lport) = split(&o.local);
        let (rip, rport) = split(&o.remote);
        let (chain, src, dst, dport) = if o.direction == "in" {
            ("INPUT", rip, lip, lport)
        } else {
            ("OUTPUT", lip, rip, rport)
        };
        let mut rule = format!("-A {chain}");
        if family_of(&src).is_some() {
            let _ = write!(rule, " -s {src}");
        }
        if family_of(&dst).is_some() {
            let _ = write!(rule, " -d {dst}");
        }
        let _ = write!(rule, " -p {}", o.protocol);
        if let Some(p) = dport {
            let _ = write!(rule, " --dport {p}");
        }
        // xtables takes a comment of at most 256 bytes.
        let mut comment = format!("{} {} {}", o.edge, o.peer, o.why);
        while comment.len() > 250 {
            comment.pop();
        }
        let _ = writeln!(s, "{rule} -m comment --comment \"{comment}\" -j ACCEPT");
    }
    let _ = writeln!(s, "COMMIT");
}
