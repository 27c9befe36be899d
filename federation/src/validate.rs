//! From a merged [`FederationSpec`] to a [`Federation`], with every problem
//! found reported as a [`Diagnostic`]. Errors stop the model from being built;
//! warnings do not.
//!
//! The same path serves a whole document (`fedctl check`, the control plane)
//! and one edge's snapshot ([`Scope::Edge`]), where other organisations'
//! internal addresses and network ranges are legitimately absent.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use jiff::{SignedDuration, Timestamp};

use crate::diag::{Code, Diagnostic, Pos};
use crate::model::*;
use crate::source::{FederationSpec, Sourced};
use crate::spec::*;

/// What a document is expected to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A whole federation: every address and range must be present.
    Full,
    /// The part one edge of this organisation may know (a snapshot).
    Edge(OrgId),
}

/// How far ahead expiry warnings look.
pub const EXPIRY_WARNING: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The outcome of checking a document.
#[derive(Debug)]
pub struct Checked {
    /// Present when there is no error.
    pub federation: Option<Federation>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Check a merged document at time `now` (expiry warnings are relative to it).
pub fn validate(spec: &FederationSpec, scope: &Scope, now: Timestamp) -> Checked {
    let mut cx = Cx {
        scope,
        now,
        diags: Vec::new(),
        overlaps: Vec::new(),
        site_conflicts: HashSet::new(),
    };
    let federation = cx.run(spec);
    let mut diagnostics = cx.diags;
    crate::diag::sort(&mut diagnostics);
    let federation = if diagnostics.iter().any(Diagnostic::is_error) {
        None
    } else {
        federation
    };
    Checked {
        federation,
        diagnostics,
    }
}

struct Cx<'a> {
    scope: &'a Scope,
    now: Timestamp,
    diags: Vec<Diagnostic>,
    /// Overlaps between members, reported once sites are known: a pair that
    /// is present at one site gets the error FG113 instead of this warning.
    overlaps: Vec<(NetworkId, NetworkId, Diagnostic)>,
    site_conflicts: HashSet<(NetworkId, NetworkId)>,
}

/// Ids of organisations, networks, edges, services, sites, groups, tags:
/// DNS-label-like, lower case.
fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The first character of an id or reference that is not ASCII, named by
/// its code point: a Cyrillic `а` (U+0430) looks like a Latin `a` on screen,
/// and "unknown service `kvh/intrаnet`; did you mean `kvh/intranet`?"
/// would otherwise read as nonsense. Empty when all is ASCII.
fn lookalike(value: &str) -> String {
    value
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii())
        .map(|(i, c)| {
            format!(
                " (character {} is `{c}`, U+{:04X}, not an ASCII letter: retype it)",
                i + 1,
                u32::from(c)
            )
        })
        .unwrap_or_default()
}

/// Ids of agreements and policies: letters, digits, `.`, `_`, `-`.
fn is_ref_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A DNS name, lower-cased, without the trailing dot.
pub fn normalise_dns_name(s: &str) -> Option<String> {
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        });
    ok.then_some(name)
}

/// A DNS server's address, `IP` (port 53) or `IP:PORT`.
pub fn dns_server(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// Whether `name` is `zone` or below it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// A certificate serial as lower-case hex, no separators, no leading zeros.
pub fn normalise_serial(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.is_empty() || hex.len() > 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = hex.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// A date (`2027-03-31`) or an RFC 3339 time. A date-only expiry means the
/// end of that day (UTC), a date-only start its beginning.
pub fn parse_time(s: &str, end_of_day: bool) -> Option<Timestamp> {
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts);
    }
    let date = s.parse::<jiff::civil::Date>().ok()?;
    let date = if end_of_day {
        date.tomorrow().ok()?
    } else {
        date
    };
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    match s.parse::<IpNet>() {
        Ok(net) if net.trunc() != net => Err(format!(
            "`{s}` has host bits set; write the network address: `{}`",
            net.trunc()
        )),
        Ok(net) => Ok(net),
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => Err(format!(
                "a CIDR needs a prefix length: `{ip}/{}` for a single address",
                if ip.is_ipv4() { 32 } else { 128 }
            )),
            Err(_) => Err(cidr_hint(s)),
        },
    }
}

/// Why `YYYY-MM-DD` is no day of the calendar (`2028-02-30`), if it is of
/// that form: the month's days, or no such month.
fn no_such_day(s: &str) -> Option<String> {
    let mut parts = s.splitn(3, '-').map(|p| p.parse::<i16>().ok());
    let (Some(Some(y)), Some(Some(m)), Some(Some(d))) = (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if !(1..=12).contains(&m) {
        return Some(format!(": there is no month {m}"));
    }
    let first = jiff::civil::Date::new(y, i8::try_from(m).ok()?, 1).ok()?;
    let days = first.days_in_month();
    (d < 1 || d > i16::from(days))
        .then(|| format!(": {} {y} has {days} days", first.strftime("%B")))
}

/// `IP:PORT` whose address is good and whose port is a number past 65535.
fn port_past_range(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(ip, port)| {
        let ip = ip
            .strip_prefix('[')
            .and_then(|i| i.strip_suffix(']'))
            .unwrap_or(ip);
        ip.parse::<IpAddr>().is_ok() && port.parse::<u64>().is_ok_and(|p| p > 65535)
    })
}

/// What is wrong with a CIDR that does not parse, where it can be told: a
/// prefix length past the family's bits, or a netmask in place of one.
fn cidr_hint(s: &str) -> String {
    let generic = "write a CIDR such as `10.20.0.0/16` or `2001:db8::/48`";
    let Some((addr, len)) = s.split_once('/') else {
        return generic.to_owned();
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return generic.to_owned();
    };
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    if let Ok(n) = len.parse::<u32>() {
        return format!(
            "the prefix length is at most {bits} for this address (it is {n}); `{ip}/{bits}` is a single address"
        );
    }
    if let Ok(IpAddr::V4(mask)) = len.parse::<IpAddr>() {
        let m = u32::from(mask);
        if m.leading_ones() + m.trailing_zeros() == 32 {
            return format!(
                "write the prefix length, not a netmask: `{addr}/{}`",
                m.leading_ones()
            );
        }
        return format!(
            "`{len}` is not a netmask (its ones must come first); write a prefix length such as `{addr}/16`"
        );
    }
    generic.to_owned()
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Cx<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn full(&self) -> bool {
        *self.scope == Scope::Full
    }

    /// Check an id's syntax; `false` (with a diagnostic) when malformed.
    fn id_ok(&mut self, pos: Option<Pos>, value: &str, what: &str, ref_style: bool) -> bool {
        let ok = if ref_style {
            is_ref_id(value)
        } else {
            is_label(value)
        };
        if !ok {
            let hint = if ref_style {
                "use letters, digits, `.`, `_` and `-`, starting with a letter or digit (at most 128)"
            } else {
                "use lower-case letters, digits and `-`, not at either end (at most 63)"
            };
            self.push(
                Diagnostic::new(
                    Code::InvalidId,
                    pos,
                    format!("{what} id `{value}` is malformed{}", lookalike(value)),
                )
                .hint(hint),
            );
        }
        ok
    }

    /// Record an id, reporting a duplicate against the first definition.
    fn unique<K: std::hash::Hash + Eq>(
        &mut self,
        seen: &mut HashMap<K, Option<Pos>>,
        key: K,
        pos: Option<Pos>,
        what: &str,
        shown: &str,
    ) -> bool {
        if let Some(first) = seen.get(&key) {
            let first = *first;
            self.push(
                Diagnostic::new(
                    Code::DuplicateId,
                    pos,
                    format!("{what} `{shown}` is defined twice"),
                )
                .hint(format!(
                    "rename one of them, or remove the copy; every {what} needs its own id"
                ))
                .related(first, "first defined here"),
            );
            false
        } else {
            seen.insert(key, pos);
            true
        }
    }

    fn unknown(&mut self, pos: Option<Pos>, what: &str, value: &str, known: &[&str]) {
        let hint = closest(value, known).map_or_else(
            || format!("define the {what} first, or correct the reference"),
            |c| format!("did you mean `{c}`?"),
        );
        self.push_unknown(pos, what, value, hint);
    }

    /// FG102 for `value`, a `what` that is not defined, with `hint`.
    fn push_unknown(&mut self, pos: Option<Pos>, what: &str, value: &str, hint: String) {
        self.push(
            Diagnostic::new(
                Code::UnknownReference,
                pos,
                format!("unknown {what} `{value}`{}", lookalike(value)),
            )
            .hint(hint),
        );
    }

    /// An unknown `ORG/NAME` reference (a network or a service). When `ORG`
    /// exists, only its own items are suggested: the nearest name of another
    /// member (`hcht/clinical` for `kvh/clinical`) would grant something of
    /// theirs.
    fn unknown_scoped(
        &mut self,
        pos: Option<Pos>,
        (what, plural): (&str, &str),
        value: &str,
        known: &[&str],
        orgs: &HashSet<&str>,
    ) {
        let hint = match value.split_once('/') {
            Some((org, name)) if orgs.contains(org) => {
                let prefix = format!("{org}/");
                let mut own: Vec<&str> = known
                    .iter()
                    .filter_map(|k| k.strip_prefix(prefix.as_str()))
                    .collect();
                own.sort_unstable();
                match closest(name, &own) {
                    Some(c) => format!("did you mean `{org}/{c}`?"),
                    None if own.is_empty() => {
                        format!("{org} has no {plural}; define the {what} first, or correct the reference")
                    }
                    None => format!(
                        "{org} has no {what} `{name}`; its {plural} are: {}",
                        list_some(&own)
                    ),
                }
            }
            Some((org, _)) => closest(value, known).map_or_else(
                || format!("there is no organisation `{org}`; write `ORG/NAME` with an organisation's id"),
                |c| format!("there is no organisation `{org}`; did you mean `{c}`?"),
            ),
            None => closest(value, known).map_or_else(
                || format!("write the {what} as `ORG/NAME`"),
                |c| format!("did you mean `{c}`?"),
            ),
        };
        self.push_unknown(pos, what, value, hint);
    }

    fn time(&mut self, pos: Option<Pos>, s: &str, end_of_day: bool) -> Option<Timestamp> {
        let t = parse_time(s, end_of_day);
        if t.is_none() {
            // A date of the right form that does not exist (`2028-02-30`):
            // the calendar's reason.
            let why = no_such_day(s).unwrap_or_default();
            self.push(
                Diagnostic::new(
                    Code::InvalidDate,
                    pos,
                    format!("`{s}` is not a date or time{why}"),
                )
                .hint("write a date as `2027-03-31` or a time as `2027-03-31T17:00:00Z`"),
            );
        }
        t
    }

    fn expiry_warning(
        &mut self,
        pos: Option<Pos>,
        expires: Timestamp,
        expired: Code,
        expiring: Code,
        what: String,
        hint: &str,
    ) {
        if expires <= self.now {
            self.push(
                Diagnostic::new(expired, pos, format!("{what} expired at {expires}"))
                    .hint(hint.to_owned()),
            );
        } else if expires <= self.now + EXPIRY_WARNING {
            self.push(
                Diagnostic::new(
                    expiring,
                    pos,
                    format!("{what} expires at {expires}, within 30 days"),
                )
                .hint(hint.to_owned()),
            );
        }
    }

    fn port(&mut self, pos: Option<Pos>, p: i64) -> Option<u16> {
        match u16::try_from(p) {
            Ok(p) if p >= 1 => Some(p),
            _ => {
                self.push(
                    Diagnostic::new(
                        Code::PortOutOfRange,
                        pos,
                        format!("port {p} is outside 1-65535"),
                    )
                    .hint("TCP and UDP ports run from 1 to 65535"),
                );
                None
            }
        }
    }

    fn run(&mut self, spec: &FederationSpec) -> Option<Federation> {
        let Some(meta) = &spec.federation else {
            self.push(
                Diagnostic::new(
                    Code::FederationHeader,
                    None,
                    "no `federation:` header in any file",
                )
                .hint("give every file of the federation (the directory, as `fedctl check DIR` reads it): the header is in one of them, often `federation.yaml`; a new federation adds `federation: {name: ..., trust_domain: ...}` to one file"),
            );
            return None;
        };
        let name = meta.name.value.clone();
        self.id_ok(meta.at(&meta.name), &name, "federation", false);
        let trust_domain = meta.trust_domain.value.clone();
        if normalise_dns_name(&trust_domain).is_none() {
            self.push(
                Diagnostic::new(
                    Code::InvalidDnsName,
                    meta.at(&meta.trust_domain),
                    format!("trust domain `{trust_domain}` is not a DNS name"),
                )
                .hint("use a DNS-style name such as `south-east.fedgate.example`"),
            );
        }

        let orgs = self.orgs(spec);
        let org_ids: Vec<&str> = orgs.iter().map(|o| o.id.as_str()).collect();
        let org_set: HashSet<&str> = org_ids.iter().copied().collect();
        let networks = self.networks(spec, &org_set, &org_ids);
        let groups = self.groups(spec, &org_set, &org_ids);
        let sites = self.sites(spec, &org_set, &org_ids, &networks);
        for (a, b, warning) in std::mem::take(&mut self.overlaps) {
            if !self.site_conflicts.contains(&(a, b)) {
                self.push(warning);
            }
        }
        let edges = self.edges(spec, &org_set, &org_ids, &sites);
        let services = self.services(spec, &orgs, &org_ids);
        let agreements = self.agreements(spec, &org_set, &org_ids, &groups);
        let policies = self.policies(
            spec,
            &org_set,
            &org_ids,
            &groups,
            &networks,
            &services,
            &agreements,
        );
        let revoked = self.revocations(spec);

        if self.diags.iter().any(Diagnostic::is_error) {
            return None;
        }
        let fed = Federation::new(
            name,
            trust_domain,
            orgs,
            networks,
            sites,
            edges,
            services,
            groups,
            agreements,
            policies.into_iter().map(|(_, p)| p).collect(),
            revoked,
        );
        if self.full() {
            self.lint(spec, &fed);
        }
        Some(fed)
    }

    fn orgs(&mut self, spec: &FederationSpec) -> Vec<Organisation> {
        let mut seen = HashMap::new();
        let mut zones_seen: Vec<(String, OrgId, Option<Pos>)> = Vec::new();
        let mut out = Vec::new();
        for o in &spec.organisations {
            let pos = o.at(&o.id);
            if !self.id_ok(pos, &o.id.value, "organisation", false)
                || !self.unique(
                    &mut seen,
                    o.id.value.clone(),
                    pos,
                    "organisation",
                    &o.id.value,
                )
            {
                continue;
            }
            let id = OrgId::new(&o.id.value);
            let m = &o.membership;
            let starts = m
                .starts
                .as_ref()
                .and_then(|s| self.time(o.at(s), &s.value, false));
            let expires = self.time(o.at(&m.expires), &m.expires.value, true);
            if let (Some(s), Some(e)) = (starts, expires)
                && e <= s
            {
                self.push(
                    Diagnostic::new(
                        Code::DatesReversed,
                        o.at(&m.expires),
                        format!(
                            "membership of `{id}` expires ({}) before it starts ({})",
                            m.expires.value,
                            m.starts.as_ref().map_or("", |s| s.value.as_str())
                        ),
                    )
                    .hint("check the `starts` and `expires` dates"),
                );
            }
            if let Some(e) = expires {
                self.expiry_warning(
                    o.at(&m.expires),
                    e,
                    Code::MembershipLapsed,
                    Code::MembershipExpiring,
                    format!("membership of `{id}` (agreement {})", m.agreement.value),
                    "renew the connection agreement and update `membership.expires`; until then every flow from or to this member is denied",
                );
            }
            let mut zones = Vec::new();
            for z in &o.dns.zones {
                let Some(zone) = normalise_dns_name(&z.value) else {
                    self.push(
                        Diagnostic::new(
                            Code::InvalidDnsName,
                            o.at(z),
                            format!("zone `{}` is not a DNS name", z.value),
                        )
                        .hint("write a zone such as `dpft.example`"),
                    );
                    continue;
                };
                if let Some((other, owner, first)) = zones_seen.iter().find(|(other, owner, _)| {
                    *owner != id && (in_zone(&zone, other) || in_zone(other, &zone))
                }) {
                    self.push(
                        Diagnostic::new(
                            Code::ZoneClaimedTwice,
                            o.at(z),
                            format!("zone `{zone}` is also claimed by `{owner}` (as `{other}`)"),
                        )
                        .hint("each zone, and everything below it, belongs to one member; pick a zone of your own")
                        .related(*first, "claimed here"),
                    );
                    continue;
                }
                zones_seen.push((zone.clone(), id.clone(), o.at(z)));
                zones.push(zone);
            }
            let mut upstreams = Vec::new();
            for u in &o.dns.upstreams {
                match dns_server(&u.value) {
                    Some(sa) if sa.ip().is_unspecified() => self.push(
                        Diagnostic::new(
                            Code::UnspecifiedAddress,
                            o.at(u),
                            format!(
                                "upstream resolver `{}` is every address, not a resolver: the edges would send the member's DNS queries to themselves",
                                u.value
                            ),
                        )
                        .hint("give the address of one of the member's own resolvers, e.g. `10.20.0.53`"),
                    ),
                    Some(sa) if sa.port() == 0 => self.push(
                        Diagnostic::new(
                            Code::PortOutOfRange,
                            o.at(u),
                            format!(
                                "upstream resolver `{}` has port 0, which no resolver listens on",
                                u.value
                            ),
                        )
                        .hint(format!(
                            "write `{}` (port 53), or the port the resolver listens on",
                            sa.ip()
                        )),
                    ),
                    Some(sa) => upstreams.push(sa),
                    None => self.push(
                        Diagnostic::new(
                            Code::InvalidAddress,
                            o.at(u),
                            format!("upstream resolver `{}` is not an address", u.value),
                        )
                        .hint("write `IP` or `IP:PORT`, e.g. `10.20.0.53` or `[2001:db8::53]:53`"),
                    ),
                }
            }
            // As for agreements: a bad date is reported, the member stays known.
            {
                let expires = expires.unwrap_or(Timestamp::UNIX_EPOCH);
                out.push(Organisation {
                    id,
                    name: o.name.value.clone(),
                    kind: o.kind.value,
                    ods_code: o.ods_code.as_ref().map(|c| c.value.clone()),
                    membership: Membership {
                        agreement: m.agreement.value.clone(),
                        starts,
                        expires,
                    },
                    zones,
                    upstreams,
                });
            }
        }
        out
    }

    fn org_ref(
        &mut self,
        pos: Option<Pos>,
        value: &str,
        orgs: &HashSet<&str>,
        known: &[&str],
    ) -> bool {
        if orgs.contains(value) {
            true
        } else {
            self.unknown(pos, "organisation", value, known);
            false
        }
    }

    fn networks(
        &mut self,
        spec: &FederationSpec,
        orgs: &HashSet<&str>,
        known: &[&str],
    ) -> Vec<Network> {
        let mut seen = HashMap::new();
        let mut out: Vec<(Network, Vec<Option<Pos>>)> = Vec::new();
        for n in &spec.networks {
            if !self.org_ref(n.at(&n.org), &n.org.value, orgs, known) {
                continue;
            }
            let pos = n.at(&n.label);
            let id = format!("{}/{}", n.org.value, n.label.value);
            if !self.id_ok(pos, &n.label.value, "network", false)
                || !self.unique(&mut seen, id.clone(), pos, "network", &id)
            {
                continue;
            }
            let mut cidrs = Vec::new();
            let mut cidr_pos = Vec::new();
            for c in &n.cidrs {
                match parse_cidr(&c.value) {
                    Ok(net) => {
                        cidrs.push(net);
                        cidr_pos.push(n.at(c));
                    }
                    Err(hint) => self.push(
                        Diagnostic::new(
                            Code::InvalidCidr,
                            n.at(c),
                            format!("`{}` is not a valid CIDR", c.value),
                        )
                        .hint(hint),
                    ),
                }
            }
            if n.cidrs.is_empty()
                && (self.full()
                    || matches!(self.scope, Scope::Edge(o) if o.as_str() == n.org.value))
            {
                self.push(
                    Diagnostic::new(
                        Code::MissingField,
                        n.pos(),
                        format!("network `{id}` has no `cidrs`"),
                    )
                    .hint("list the address ranges of this network, e.g. `cidrs: [10.20.0.0/16]`"),
                );
            }
            out.push((
                Network {
                    id: NetworkId::new(&id),
                    org: OrgId::new(&n.org.value),
                    label: n.label.value.clone(),
                    purpose: n.purpose.value,
                    cidrs,
                },
                cidr_pos,
            ));
        }
        // Overlaps: inside one member an error (an address would be ambiguous),
        // between members a warning (routing is by name).
        let mut flat: Vec<(usize, usize, IpNet, Option<Pos>)> = Vec::new();
        for (ni, (net, poss)) in out.iter().enumerate() {
            for (ci, (cidr, pos)) in net.cidrs.iter().zip(poss).enumerate() {
                flat.push((ni, ci, *cidr, *pos));
            }
        }
        let mut warned_pairs = HashSet::new();
        for (i, a) in flat.iter().enumerate() {
            for b in &flat[..i] {
                if !overlaps(&a.2, &b.2) {
                    continue;
                }
                let (na, nb) = (&out[a.0].0, &out[b.0].0);
                if na.org == nb.org {
                    self.push(
                        Diagnostic::new(
                            Code::OverlapWithinMember,
                            a.3,
                            format!("{} of `{}` overlaps {} of `{}`", a.2, na.id, b.2, nb.id),
                        )
                        .hint("inside one member every address must belong to one network; split or correct the ranges")
                        .related(b.3, "overlapping range"),
                    );
                } else if warned_pairs.insert((a.0.min(b.0), a.0.max(b.0))) {
                    self.overlaps.push((
                        na.id.clone(),
                        nb.id.clone(),
                        Diagnostic::new(
                            Code::OverlapBetweenMembers,
                            a.3,
                            format!("{} of `{}` overlaps {} of `{}`", a.2, na.id, b.2, nb.id),
                        )
                        .hint("this works (routing is by name), but the two networks must never be present at the same site")
                        .related(b.3, "overlapping range"),
                    ));
                }
            }
        }
        out.into_iter().map(|(n, _)| n).collect()
    }

    fn groups(
        &mut self,
        spec: &FederationSpec,
        orgs: &HashSet<&str>,
        known: &[&str],
    ) -> Vec<Group> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for g in &spec.groups {
            let pos = g.at(&g.id);
            if !self.id_ok(pos, &g.id.value, "group", false)
                || !self.unique(&mut seen, g.id.value.clone(), pos, "group", &g.id.value)
            {
                continue;
            }
            if orgs.contains(g.id.value.as_str()) {
                // Agreements' parties name organisations and groups alike.
                self.push(
                    Diagnostic::new(Code::DuplicateId, pos, format!("group `{}` has the id of an organisation", g.id.value))
                        .hint("agreement parties name organisations and groups alike; give the group an id of its own"),
                );
                continue;
            }
            let mut members = BTreeSet::new();
            for m in &g.members {
                if spec.groups.iter().any(|other| other.id.value == m.value) {
                    // A group inside a group: not "define the organisation".
                    self.push(
                        Diagnostic::new(
                            Code::UnknownReference,
                            g.at(m),
                            format!(
                                "`{}` is a group: a group's members are organisations",
                                m.value
                            ),
                        )
                        .hint(format!(
                            "list the organisations of `{}` here instead",
                            m.value
                        )),
                    );
                } else if self.org_ref(g.at(m), &m.value, orgs, known) {
                    members.insert(OrgId::new(&m.value));
                }
            }
            out.push(Group {
                id: GroupId::new(&g.id.value),
                members,
            });
        }
        out
    }

    fn sites(
        &mut self,
        spec: &FederationSpec,
        orgs: &HashSet<&str>,
        known: &[&str],
        networks: &[Network],
    ) -> Vec<Site> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        let net_ids: Vec<&str> = networks.iter().map(|n| n.id.as_str()).collect();
        for s in &spec.sites {
            let pos = s.at(&s.id);
            if !self.id_ok(pos, &s.id.value, "site", false)
                || !self.unique(&mut seen, s.id.value.clone(), pos, "site", &s.id.value)
            {
                continue;
            }
            self.org_ref(s.at(&s.host), &s.host.value, orgs, known);
            let mut present: Vec<(&Network, Option<Pos>)> = Vec::new();
            for n in &s.networks {
                match networks.iter().find(|x| x.id.as_str() == n.value) {
                    Some(net) => present.push((net, s.at(n))),
                    None => {
                        if !matches!(self.scope, Scope::Edge(_)) {
                            self.unknown_scoped(
                                s.at(n),
                                ("network", "networks"),
                                &n.value,
                                &net_ids,
                                orgs,
                            );
                        }
                    }
                }
            }
            for (i, (a, apos)) in present.iter().enumerate() {
                for (b, bpos) in &present[..i] {
                    if a.org == b.org {
                        continue;
                    }
                    if let Some((x, y)) = a
                        .cidrs
                        .iter()
                        .find_map(|x| b.cidrs.iter().find(|y| overlaps(x, y)).map(|y| (x, y)))
                    {
                        self.site_conflicts.insert((a.id.clone(), b.id.clone()));
                        self.site_conflicts.insert((b.id.clone(), a.id.clone()));
                        self.push(
                            Diagnostic::new(
                                Code::OverlapAtSite,
                                *apos,
                                format!("`{}` ({x}) and `{}` ({y}) overlap and are both present at site `{}`", a.id, b.id, s.id.value),
                            )
                            .hint("an edge at this site could not tell the two networks apart; renumber one of them here, or serve it from another site")
                            .related(*bpos, "also present here"),
                        );
                    }
                }
            }
            out.push(Site {
                id: SiteId::new(&s.id.value),
                name: s.name.clone(),
                host: OrgId::new(&s.host.value),
                networks: present.iter().map(|(n, _)| n.id.clone()).collect(),
            });
        }
        out
    }

    fn edges(
        &mut self,
        spec: &FederationSpec,
        orgs: &HashSet<&str>,
        known: &[&str],
        sites: &[Site],
    ) -> Vec<Edge> {
        let mut seen = HashMap::new();
        let mut quic_seen: HashMap<SocketAddr, (String, Option<Pos>)> = HashMap::new();
        let mut tcp_seen: HashMap<SocketAddr, (String, Option<Pos>)> = HashMap::new();
        let mut out = Vec::new();
        for e in &spec.edges {
            if !self.org_ref(e.at(&e.org), &e.org.value, orgs, known) {
                continue;
            }
            let pos = e.at(&e.name);
            let id = format!("{}/{}", e.org.value, e.name.value);
            if !self.id_ok(pos, &e.name.value, "edge", false)
                || !self.unique(&mut seen, id.clone(), pos, "edge", &id)
            {
                continue;
            }
            if let Some(site) = &e.site
                && !sites.iter().any(|s| s.id.as_str() == site.value)
                && !matches!(self.scope, Scope::Edge(_))
            {
                let ids: Vec<&str> = sites.iter().map(|s| s.id.as_str()).collect();
                self.unknown(e.at(site), "site", &site.value, &ids);
            }
            let mut sock = |v: &Option<S<String>>,
                            what: &str,
                            example: u16|
             -> Option<SocketAddr> {
                let v = v.as_ref()?;
                match v.value.parse::<SocketAddr>() {
                    Ok(sa) if sa.port() == 0 && !sa.ip().is_unspecified() => {
                        self.push(
                            Diagnostic::new(
                                Code::PortOutOfRange,
                                e.at(v),
                                format!(
                                    "{what} endpoint `{}` has port 0: peer edges cannot connect to port 0",
                                    v.value
                                ),
                            )
                            .hint(format!(
                                "give the port peers reach the edge on, e.g. `{}`",
                                SocketAddr::new(sa.ip(), example)
                            )),
                        );
                        None
                    }
                    Ok(sa) if sa.ip().is_unspecified() => {
                        self.push(
                            Diagnostic::new(
                                Code::UnspecifiedAddress,
                                e.at(v),
                                format!(
                                    "{what} endpoint `{}` is where peer edges reach this edge, and `{}` is every address, none they can reach",
                                    v.value,
                                    sa.ip()
                                ),
                            )
                            .hint("give the address peers reach it at (behind NAT, the public one); the edge may listen on another with `--overlay-quic`/`--overlay-tcp`"),
                        );
                        None
                    }
                    Ok(sa) => Some(sa),
                    Err(_) if port_past_range(&v.value) => {
                        self.push(
                            Diagnostic::new(
                                Code::PortOutOfRange,
                                e.at(v),
                                format!("{what} endpoint `{}` has a port past 65535", v.value),
                            )
                            .hint(format!("a port is 1 to 65535, e.g. `{example}`")),
                        );
                        None
                    }
                    Err(_) => {
                        self.push(
                            Diagnostic::new(
                                Code::InvalidAddress,
                                e.at(v),
                                format!("{what} endpoint `{}` is not IP:PORT", v.value),
                            )
                            .hint("write e.g. `192.0.2.10:4433` or `[2001:db8::10]:4433`"),
                        );
                        None
                    }
                }
            };
            let quic = sock(&e.overlay.quic, "QUIC", 4433);
            let tcp = sock(&e.overlay.tcp, "TCP", 4443);
            // Two edges on one endpoint: one of them cannot listen, and peers
            // reach whichever does. QUIC (UDP) and TCP ports are distinct.
            // Checked on the whole document, before any snapshot is cut: a
            // snapshot holds only some edges, and its edge need not refuse it
            // over two others.
            for (addr, v, what, seen) in [
                (quic, &e.overlay.quic, "QUIC", &mut quic_seen),
                (tcp, &e.overlay.tcp, "TCP", &mut tcp_seen),
            ] {
                let (Some(addr), Some(v), true) = (addr, v, self.full()) else {
                    continue;
                };
                let key = SocketAddr::new(addr.ip().to_canonical(), addr.port());
                if let Some((first, first_pos)) = seen.get(&key) {
                    self.push(
                        Diagnostic::new(
                            Code::OverlayEndpointShared,
                            e.at(v),
                            format!(
                                "{what} endpoint `{}` of `{id}` is also the {what} endpoint of `{first}`",
                                v.value
                            ),
                        )
                        .hint(format!(
                            "two edges cannot listen on one address and port, and peers would reach whichever does; give `{id}` an endpoint of its own"
                        ))
                        .related(*first_pos, format!("the {what} endpoint of `{first}`")),
                    );
                } else {
                    seen.insert(key, (id.clone(), e.at(v)));
                }
            }
            if e.overlay.quic.is_none() && e.overlay.tcp.is_none() {
                self.push(
                    Diagnostic::new(
                        Code::EdgeWithoutOverlay,
                        pos,
                        format!("edge `{id}` has no overlay endpoint"),
                    )
                    .hint("give `overlay.quic` and `overlay.tcp` (IP:PORT) so peers can reach it"),
                );
            }
            let mut ingress = Vec::new();
            for a in &e.ingress.addresses {
                match a.value.parse::<IpAddr>() {
                    Ok(ip) if ip.is_unspecified() => self.push(
                        Diagnostic::new(
                            Code::UnspecifiedAddress,
                            e.at(a),
                            format!(
                                "ingress address `{}` is every address: split-horizon DNS answers the federation's names with it, so it must be one staff reach",
                                a.value
                            ),
                        )
                        .hint("give the edge's address on the member's network, e.g. `10.20.0.5`"),
                    ),
                    Ok(ip) => ingress.push(ip),
                    Err(_) => self.push(
                        Diagnostic::new(
                            Code::InvalidAddress,
                            e.at(a),
                            format!("ingress address `{}` is not an IP address", a.value),
                        )
                        .hint("write e.g. `10.20.0.5`"),
                    ),
                }
            }
            let vip_prefix =
                e.ingress
                    .vip_prefix
                    .as_ref()
                    .and_then(|v| match parse_cidr(&v.value) {
                        Ok(net) => {
                            if self.full() {
                                self.vip_prefix_clear(spec, e, v, &net);
                            }
                            Some(net)
                        }
                        Err(hint) => {
                            self.push(
                                Diagnostic::new(
                                    Code::InvalidCidr,
                                    e.at(v),
                                    format!("`{}` is not a valid CIDR", v.value),
                                )
                                .hint(hint),
                            );
                            None
                        }
                    });
            let dns = e.dns.as_ref().and_then(|d| {
                let parsed = dns_server(&d.value);
                if let Some(sa) = parsed.filter(|sa| sa.ip().is_unspecified()) {
                    self.push(
                        Diagnostic::new(
                            Code::UnspecifiedAddress,
                            e.at(d),
                            format!(
                                "DNS listener `{}` is every address: the member's resolvers forward to it, and an answer over UDP would leave from whichever address the route picks, which resolvers drop",
                                d.value
                            ),
                        )
                        .hint(format!(
                            "give the address the member's resolvers query, e.g. `10.20.0.5:{}`",
                            sa.port()
                        )),
                    );
                    return None;
                }
                if let Some(sa) = parsed.filter(|sa| sa.port() == 0) {
                    self.push(
                        Diagnostic::new(
                            Code::PortOutOfRange,
                            e.at(d),
                            format!(
                                "DNS listener `{}` has port 0: the member's resolvers cannot forward to port 0",
                                d.value
                            ),
                        )
                        .hint(format!(
                            "write `{}` (port 53), or `IP:PORT` with the port the edge serves DNS on",
                            sa.ip()
                        )),
                    );
                    return None;
                }
                if parsed.is_none() {
                    self.push(
                        Diagnostic::new(
                            Code::InvalidAddress,
                            e.at(d),
                            format!("DNS listener `{}` is not an address", d.value),
                        )
                        .hint("write `IP` or `IP:PORT`, e.g. `10.20.0.5` or `10.20.0.5:53`"),
                    );
                }
                parsed
            });
            out.push(Edge {
                id: EdgeId::new(&id),
                org: OrgId::new(&e.org.value),
                name: e.name.value.clone(),
                site: e.site.as_ref().map(|s| SiteId::new(&s.value)),
                quic,
                tcp,
                ingress_addresses: ingress,
                vip_prefix,
                dns,
            });
        }
        out
    }

    /// A VIP prefix must lie outside every network of the edge's own
    /// organisation: DNS answers remote services' names with VIPs, and a VIP
    /// that is also a host on that network sends staff's traffic to that
    /// host instead. A loopback prefix (127.0.0.0/8, ::1) is exempt: it
    /// serves clients on the edge's own host only (the demo and the tests,
    /// which make all of 127.0.0.0/8 a network), where no other host can be.
    fn vip_prefix_clear(
        &mut self,
        spec: &FederationSpec,
        e: &Sourced<EdgeSpec>,
        v: &S<String>,
        vip: &IpNet,
    ) {
        if vip.network().is_loopback() && vip.broadcast().is_loopback() {
            return;
        }
        for n in spec.networks.iter().filter(|n| n.org.value == e.org.value) {
            let hit = n.cidrs.iter().find_map(|c| {
                parse_cidr(&c.value)
                    .ok()
                    .filter(|net| overlaps(vip, net))
                    .map(|net| (net, n.at(c)))
            });
            if let Some((net, at)) = hit {
                self.push(
                    Diagnostic::new(
                        Code::VipPrefixOverlap,
                        e.at(v),
                        format!(
                            "VIP prefix {vip} of `{}/{}` overlaps {net} of its own network `{}/{}`",
                            e.org.value, e.name.value, n.org.value, n.label.value
                        ),
                    )
                    .hint(format!(
                        "the edge answers DNS with VIPs from this prefix, so a VIP inside `{}/{}` would hide a real host there; pick a prefix that none of {}'s networks uses",
                        n.org.value, n.label.value, e.org.value
                    ))
                    .related(at, "the network's range"),
                );
            }
        }
    }

    fn services(
        &mut self,
        spec: &FederationSpec,
        orgs: &[Organisation],
        known: &[&str],
    ) -> Vec<Service> {
        let org_set: HashSet<&str> = known.iter().copied().collect();
        let mut seen = HashMap::new();
        let mut names: HashMap<String, (String, Option<Pos>)> = HashMap::new();
        let mut out = Vec::new();
        for s in &spec.services {
            if !self.org_ref(s.at(&s.org), &s.org.value, &org_set, known) {
                continue;
            }
            let pos = s.at(&s.name);
            let id = format!("{}/{}", s.org.value, s.name.value);
            if !self.id_ok(pos, &s.name.value, "service", false)
                || !self.unique(&mut seen, id.clone(), pos, "service", &id)
            {
                continue;
            }
            let owner = orgs.iter().find(|o| o.id.as_str() == s.org.value);
            let mut dns = Vec::new();
            for n in &s.dns {
                let Some(name) = normalise_dns_name(&n.value) else {
                    self.push(
                        Diagnostic::new(
                            Code::InvalidDnsName,
                            s.at(n),
                            format!("`{}` is not a DNS name", n.value),
                        )
                        .hint("write a name such as `ehr.dpft.example`"),
                    );
                    continue;
                };
                if let Some(owner) = owner
                    && !owner.zones.iter().any(|z| in_zone(&name, z))
                {
                    let zones = if owner.zones.is_empty() {
                        "it owns no zone".to_owned()
                    } else {
                        format!("its zones are {}", owner.zones.join(", "))
                    };
                    self.push(
                        Diagnostic::new(
                            Code::NameOutsideZones,
                            s.at(n),
                            format!("`{name}` is outside the zones of `{}`", owner.id),
                        )
                        .hint(format!(
                            "a service's names must lie in its owner's zones; {zones}"
                        )),
                    );
                    continue;
                }
                if let Some((other, first)) = names.get(&name) {
                    self.push(
                        Diagnostic::new(
                            Code::DuplicateDnsName,
                            s.at(n),
                            format!("`{name}` is already the name of `{other}`"),
                        )
                        .hint("one name leads to one service; choose another name")
                        .related(*first, "first used here"),
                    );
                    continue;
                }
                names.insert(name.clone(), (id.clone(), s.at(n)));
                dns.push(name);
            }
            let address = match &s.address {
                Some(a) => match a.value.parse::<IpAddr>() {
                    Ok(ip) if ip.is_unspecified() => {
                        self.push(
                            Diagnostic::new(
                                Code::UnspecifiedAddress,
                                s.at(a),
                                format!(
                                    "service address `{}` is every address, not a host: the owner's edges would connect to themselves",
                                    a.value
                                ),
                            )
                            .hint("give the internal address the service listens on, e.g. `10.20.4.15`"),
                        );
                        None
                    }
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        self.push(
                            Diagnostic::new(
                                Code::InvalidAddress,
                                s.at(a),
                                format!("service address `{}` is not an IP address", a.value),
                            )
                            .hint("write the internal address, e.g. `10.20.4.15`"),
                        );
                        None
                    }
                },
                None => {
                    let local = match self.scope {
                        Scope::Full => true,
                        Scope::Edge(o) => o.as_str() == s.org.value,
                    };
                    if local {
                        self.push(
                            Diagnostic::new(
                                Code::MissingField,
                                s.pos(),
                                format!("service `{id}` has no `address`"),
                            )
                            .hint("give the internal address its owner's edges connect to"),
                        );
                    }
                    None
                }
            };
            let mut ports = Vec::new();
            for p in &s.ports {
                if let Some(p) = self.port(s.at(p), p.value) {
                    ports.push(p);
                }
            }
            if s.ports.is_empty() {
                self.push(
                    Diagnostic::new(
                        Code::MissingField,
                        s.pos(),
                        format!("service `{id}` lists no ports"),
                    )
                    .hint("list the ports it serves, e.g. `ports: [443]`"),
                );
            }
            let mut tags = Vec::new();
            for t in &s.tags {
                if self.id_ok(s.at(t), &t.value, "tag", false) {
                    tags.push(t.value.clone());
                }
            }
            ports.sort_unstable();
            ports.dedup();
            let dns_internal = s.dns_internal.as_ref().is_some_and(|v| v.value);
            if let Some(flag) = &s.dns_internal
                && flag.value
                && s.dns.is_empty()
            {
                self.push(
                    Diagnostic::new(
                        Code::InternalAnswerWithoutName,
                        s.at(flag),
                        format!(
                            "service `{id}` asks for an internal DNS answer but has no DNS name"
                        ),
                    )
                    .hint("give it a name in `dns:`, or drop `dns_internal`"),
                );
            }
            out.push(Service {
                id: ServiceId::new(&id),
                org: OrgId::new(&s.org.value),
                name: s.name.value.clone(),
                dns,
                address,
                ports,
                protocol: s.protocol.value,
                tags,
                dns_internal,
            });
        }
        out
    }

    /// Organisations named by an org-or-group reference.
    fn party(
        &mut self,
        pos: Option<Pos>,
        value: &str,
        orgs: &HashSet<&str>,
        groups: &[Group],
        known: &[&str],
    ) -> Option<BTreeSet<OrgId>> {
        if orgs.contains(value) {
            return Some(BTreeSet::from([OrgId::new(value)]));
        }
        if let Some(g) = groups.iter().find(|g| g.id.as_str() == value) {
            return Some(g.members.clone());
        }
        let mut all: Vec<&str> = known.to_vec();
        all.extend(groups.iter().map(|g| g.id.as_str()));
        self.unknown(pos, "organisation or group", value, &all);
        None
    }

    fn agreements(
        &mut self,
        spec: &FederationSpec,
        orgs: &HashSet<&str>,
        known: &[&str],
        groups: &[Group],
    ) -> Vec<Agreement> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for a in &spec.agreements {
            let pos = a.at(&a.id);
            if !self.id_ok(pos, &a.id.value, "agreement", true)
                || !self.unique(&mut seen, a.id.value.clone(), pos, "agreement", &a.id.value)
            {
                continue;
            }
            let mut parties = BTreeSet::new();
            for p in &a.parties {
                if let Some(set) = self.party(a.at(p), &p.value, orgs, groups, known) {
                    parties.extend(set);
                }
            }
            self.org_ref(a.at(&a.owner.org), &a.owner.org.value, orgs, known);
            let start = self.time(a.at(&a.start), &a.start.value, false);
            let expires = self.time(a.at(&a.expires), &a.expires.value, true);
            // With a bad date the agreement stays known, so that policies naming
            // it get no follow-on error; the error stops the model being built.
            let dates_ok = start.is_some() && expires.is_some();
            let start = start.unwrap_or(Timestamp::UNIX_EPOCH);
            let expires = expires.unwrap_or(Timestamp::UNIX_EPOCH);
            if dates_ok && expires <= start {
                self.push(
                    Diagnostic::new(
                        Code::DatesReversed,
                        a.at(&a.expires),
                        format!(
                            "agreement `{}` expires ({}) before it starts ({})",
                            a.id.value, a.expires.value, a.start.value
                        ),
                    )
                    .hint("check the `start` and `expires` dates"),
                );
            }
            if dates_ok && start < expires {
                self.expiry_warning(
                a.at(&a.expires),
                expires,
                Code::AgreementExpired,
                Code::AgreementExpiring,
                format!("agreement `{}`", a.id.value),
                "policies under this agreement stop allowing when it expires; renew it and update `expires`",
                );
            }
            out.push(Agreement {
                id: AgreementId::new(&a.id.value),
                title: a.title.clone(),
                parties,
                purpose: a.purpose.clone(),
                legal_basis: a.legal_basis.clone(),
                start,
                expires,
            });
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn policies(
        &mut self,
        spec: &FederationSpec,
        orgs: &HashSet<&str>,
        known: &[&str],
        groups: &[Group],
        networks: &[Network],
        services: &[Service],
        agreements: &[Agreement],
    ) -> Vec<(usize, Policy)> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        let net_ids: Vec<&str> = networks.iter().map(|n| n.id.as_str()).collect();
        let svc_ids: Vec<&str> = services.iter().map(|s| s.id.as_str()).collect();
        let agr_ids: Vec<&str> = agreements.iter().map(|a| a.id.as_str()).collect();
        let edge_scope = matches!(self.scope, Scope::Edge(_));
        // Lookups by id instead of a scan per reference (100,000 policies
        // over thousands of services); each keeps the first item with an id,
        // as `iter().find` would.
        let group_by_id = first_by_id(groups, |g| g.id.as_str());
        let net_by_id = first_by_id(networks, |n| n.id.as_str());
        let svc_by_id = first_by_id(services, |s| s.id.as_str());
        let agr_by_id = first_by_id(agreements, |a| a.id.as_str());
        let mut svc_by_org: HashMap<&str, Vec<&Service>> = HashMap::new();
        for s in services {
            svc_by_org.entry(s.org.as_str()).or_default().push(s);
        }
        for (index, p) in spec.policies.iter().enumerate() {
            let pos = p.at(&p.id);
            if !self.id_ok(pos, &p.id.value, "policy", true)
                || !self.unique(&mut seen, p.id.value.clone(), pos, "policy", &p.id.value)
            {
                continue;
            }
            let mut ok = true;
            let is_deny = p.action.value == Action::Deny;
            // Sources.
            let mut src_orgs = BTreeSet::new();
            for o in &p.from.orgs {
                if self.org_ref(p.at(o), &o.value, orgs, known) {
                    src_orgs.insert(OrgId::new(&o.value));
                } else {
                    ok = false;
                }
            }
            for g in &p.from.groups {
                match group_by_id.get(g.value.as_str()) {
                    Some(group) => src_orgs.extend(group.members.iter().cloned()),
                    None => {
                        let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
                        self.unknown(p.at(g), "group", &g.value, &ids);
                        ok = false;
                    }
                }
            }
            let named_orgs = !(p.from.orgs.is_empty() && p.from.groups.is_empty());
            let mut src_networks = BTreeSet::new();
            for n in &p.from.networks {
                let Some(net) = net_by_id.get(n.value.as_str()) else {
                    self.unknown_scoped(p.at(n), ("network", "networks"), &n.value, &net_ids, orgs);
                    ok = false;
                    continue;
                };
                if named_orgs && !src_orgs.contains(&net.org) {
                    self.push(
                        Diagnostic::new(
                            Code::NetworkOutsideSources,
                            p.at(n),
                            format!("network `{}` belongs to `{}`, which this policy's `from` does not name", net.id, net.org),
                        )
                        .hint(format!("add `{}` to `from.orgs`, or remove the network", net.org)),
                    );
                    ok = false;
                    continue;
                }
                src_networks.insert(net.id.clone());
            }
            if !named_orgs {
                src_orgs.extend(
                    src_networks
                        .iter()
                        .filter_map(|n| net_by_id.get(n.as_str()))
                        .map(|n| n.org.clone()),
                );
            }
            let mut cidrs = Vec::new();
            for c in &p.from.cidrs {
                match parse_cidr(&c.value) {
                    Ok(net) => cidrs.push(net),
                    Err(hint) => {
                        self.push(
                            Diagnostic::new(
                                Code::InvalidCidr,
                                p.at(c),
                                format!("`{}` is not a valid CIDR", c.value),
                            )
                            .hint(hint),
                        );
                        ok = false;
                    }
                }
            }
            if !named_orgs && p.from.networks.is_empty() {
                self.push(
                    Diagnostic::new(Code::EmptySelector, pos, format!("policy `{}` names no source organisation, group or network", p.id.value))
                        .hint("add `from.orgs`, `from.groups` or `from.networks`; CIDRs alone are ambiguous because members reuse ranges"),
                );
                ok = false;
            }
            // Destinations.
            let mut to = BTreeSet::new();
            for s in &p.to.services {
                if svc_by_id.contains_key(s.value.as_str()) {
                    to.insert(ServiceId::new(&s.value));
                } else if !edge_scope {
                    self.unknown_scoped(p.at(s), ("service", "services"), &s.value, &svc_ids, orgs);
                    ok = false;
                }
            }
            for t in &p.to.tags {
                let Some((owner, tag)) = t.value.split_once('/') else {
                    self.push(
                        Diagnostic::new(Code::InvalidId, p.at(t), format!("tag selector `{}` needs an owner", t.value))
                            .hint(format!("write `ORG/{}` for one member's services, or `*/{}` for every member's", t.value, t.value)),
                    );
                    ok = false;
                    continue;
                };
                if owner != "*" && !self.org_ref(p.at(t), owner, orgs, known) {
                    ok = false;
                    continue;
                }
                // The owner's services rather than a scan of all; `to` is a
                // set, so the order they come in does not matter.
                let tagged = |s: &Service| s.tags.iter().any(|x| x == tag);
                if owner == "*" {
                    to.extend(services.iter().filter(|s| tagged(s)).map(|s| s.id.clone()));
                } else if let Some(owned) = svc_by_org.get(owner) {
                    to.extend(owned.iter().filter(|s| tagged(s)).map(|s| s.id.clone()));
                }
            }
            if p.to.services.is_empty() && p.to.tags.is_empty() {
                self.push(
                    Diagnostic::new(
                        Code::EmptySelector,
                        pos,
                        format!("policy `{}` names no destination", p.id.value),
                    )
                    .hint("add `to.services` (ORG/NAME) or `to.tags` (ORG/TAG)"),
                );
                ok = false;
            }
            // Ports.
            let mut ports = Vec::new();
            for r in &p.ports {
                let at = p.at(r);
                let start = self.port(at, r.value.start);
                let end = if r.value.end == r.value.start {
                    start
                } else {
                    self.port(at, r.value.end)
                };
                let (Some(start), Some(end)) = (start, end) else {
                    ok = false;
                    continue;
                };
                if end < start {
                    self.push(
                        Diagnostic::new(
                            Code::ReversedPortRange,
                            at,
                            format!("port range {} ends before it starts", r.value),
                        )
                        .hint(format!("write `{end}-{start}`")),
                    );
                    ok = false;
                    continue;
                }
                ports.push(PortRange { start, end });
            }
            // Agreement and expiry.
            let agreement = match &p.agreement {
                Some(a) => match agr_by_id.get(a.value.as_str()) {
                    Some(agr) => {
                        let dst_orgs: BTreeSet<&OrgId> = to
                            .iter()
                            .filter_map(|s| svc_by_id.get(s.as_str()))
                            .map(|s| &s.org)
                            .collect();
                        let missing: Vec<String> = src_orgs
                            .iter()
                            .chain(dst_orgs.iter().copied())
                            .filter(|o| !agr.parties.contains(*o))
                            .map(|o| format!("`{o}`"))
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect();
                        if !missing.is_empty() && !edge_scope {
                            self.push(
                                Diagnostic::new(
                                    Code::AgreementMissingParty,
                                    p.at(a),
                                    format!("agreement `{}` does not list {}", agr.id, missing.join(", ")),
                                )
                                .hint("an agreement must bind both the source and the destination organisations; add them to its `parties`, or use another agreement"),
                            );
                            ok = false;
                        }
                        if is_deny && !edge_scope {
                            self.deny_agreement(p, a, agr);
                        }
                        Some(agr.id.clone())
                    }
                    None => {
                        if !edge_scope {
                            self.unknown(p.at(a), "agreement", &a.value, &agr_ids);
                            ok = false;
                        }
                        None
                    }
                },
                None => None,
            };
            let expires = match &p.expires {
                Some(e) => match self.time(p.at(e), &e.value, true) {
                    Some(t) => {
                        if t <= self.now && !edge_scope {
                            let hint = if is_deny {
                                "this deny no longer denies anything: the flows it denied are now decided by the allow rules, and may be allowed; if they must stay denied, remove `expires` (a deny should not end)"
                            } else {
                                "it no longer has any effect; remove it, or extend `expires`"
                            };
                            self.push(
                                Diagnostic::new(
                                    Code::PolicyExpired,
                                    p.at(e),
                                    format!("policy `{}` expired at {t}", p.id.value),
                                )
                                .hint(hint),
                            );
                        } else if is_deny && !edge_scope {
                            self.push(
                                Diagnostic::new(
                                    Code::DenyEnds,
                                    p.at(e),
                                    format!(
                                        "deny `{}` ends at {t}: a deny rule that ends stops denying, and after that date the flows it denies are decided by the other rules (they may be allowed)",
                                        p.id.value
                                    ),
                                )
                                .hint("remove `expires` so that the rule denies for good; keep it only if those flows may really be allowed after that date"),
                            );
                        } else if !edge_scope && t <= self.now + EXPIRY_WARNING {
                            self.push(
                                Diagnostic::new(
                                    Code::PolicyExpiring,
                                    p.at(e),
                                    format!(
                                        "policy `{}` expires at {t}, within 30 days: the flows it allows are denied from then on",
                                        p.id.value
                                    ),
                                )
                                .hint("if the sharing goes on, extend `expires` (and its agreement's, if that ends too); otherwise tell its users it ends"),
                            );
                        }
                        Some(t)
                    }
                    None => {
                        ok = false;
                        None
                    }
                },
                None => None,
            };
            if !ok {
                continue;
            }
            out.push((
                index,
                Policy {
                    id: PolicyId::new(&p.id.value),
                    description: p.description.clone(),
                    action: p.action.value,
                    from: SourceSet {
                        orgs: src_orgs,
                        networks: (!p.from.networks.is_empty()).then_some(src_networks),
                        cidrs: (!p.from.cidrs.is_empty()).then_some(cidrs),
                    },
                    to,
                    ports: (!p.ports.is_empty()).then_some(ports),
                    agreement,
                    expires,
                },
            ));
        }
        out
    }

    /// A deny tied to an agreement denies only while the agreement is in
    /// force (docs/config.md §14, rule 5).
    fn deny_agreement(&mut self, p: &Sourced<PolicySpec>, a: &S<String>, agr: &Agreement) {
        let message = if agr.expires <= self.now {
            format!(
                "deny `{}` rests on agreement `{}`, which expired at {}: the deny no longer denies anything, and the flows it denied are now decided by the other rules (they may be allowed)",
                p.id.value, agr.id, agr.expires
            )
        } else {
            format!(
                "deny `{}` rests on agreement `{}`, so it denies only while the agreement is in force ({} to {}): a deny rule that ends stops denying, and after that date the flows it denies are decided by the other rules (they may be allowed)",
                p.id.value, agr.id, agr.start, agr.expires
            )
        };
        self.push(Diagnostic::new(Code::DenyEnds, p.at(a), message).hint(
            "a deny needs no agreement: remove `agreement` so that the rule denies for good",
        ));
    }

    fn revocations(&mut self, spec: &FederationSpec) -> Vec<Revocation> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for r in &spec.revoked_certificates {
            let pos = r.at(&r.serial);
            let Some(serial) = normalise_serial(&r.serial.value) else {
                let hint = match r
                    .serial
                    .value
                    .strip_prefix("0x")
                    .or_else(|| r.serial.value.strip_prefix("0X"))
                {
                    Some(hex) if normalise_serial(hex).is_some() => {
                        format!("drop the `0x`: write `{hex}`, in hex as `openssl x509 -serial` prints it")
                    }
                    _ => "write the serial in hex, as `openssl x509 -serial` prints it (colons allowed), at most 20 bytes".to_owned(),
                };
                self.push(
                    Diagnostic::new(
                        Code::InvalidSerial,
                        pos,
                        format!("`{}` is not a certificate serial", r.serial.value),
                    )
                    .hint(hint),
                );
                continue;
            };
            if let Some(at) = &r.revoked_at {
                self.time(r.at(at), &at.value, false);
            }
            if self.unique(&mut seen, serial.clone(), pos, "revoked serial", &serial) {
                out.push(Revocation {
                    serial,
                    holder: r.holder.clone(),
                    reason: r.reason.clone(),
                });
            }
        }
        out
    }

    /// Whole-document warnings: what opens nothing, what nothing opens, and
    /// allow rules a deny wholly hides.
    fn lint(&mut self, spec: &FederationSpec, fed: &Federation) {
        let policy_spec: HashMap<&str, &Sourced<PolicySpec>> = spec
            .policies
            .iter()
            .map(|p| (p.id.value.as_str(), p))
            .collect();
        let at = |id: &PolicyId| policy_spec.get(id.as_str()).and_then(|p| p.at(&p.id));
        let mut opened = HashSet::new();
        for p in &fed.policies {
            let live_ports = |s: &ServiceId| {
                fed.service(s.as_str()).is_some_and(|svc| match &p.ports {
                    None => true,
                    Some(rs) => svc
                        .ports
                        .iter()
                        .any(|port| rs.iter().any(|r| r.contains(*port))),
                })
            };
            let targets: Vec<&ServiceId> = p.to.iter().filter(|s| live_ports(s)).collect();
            if targets.is_empty() {
                let mut d = if p.to.is_empty() {
                    Diagnostic::new(
                        Code::PolicyOpensNothing,
                        at(&p.id),
                        format!(
                            "policy `{}` matches nothing: its destinations match no service",
                            p.id
                        ),
                    )
                    .hint(
                        "check its `to` against the services; remove it if it is no longer needed",
                    )
                } else {
                    // Say which ports its services do serve.
                    let served: Vec<String> = p
                        .to
                        .iter()
                        .filter_map(|s| fed.service(s.as_str()))
                        .take(4)
                        .map(|svc| {
                            let ports: Vec<String> = svc.ports.iter().map(u16::to_string).collect();
                            format!("`{}` serves {}", svc.id, ports.join(", "))
                        })
                        .collect();
                    let more = if p.to.len() > served.len() {
                        ", ..."
                    } else {
                        ""
                    };
                    Diagnostic::new(
                        Code::PolicyOpensNothing,
                        at(&p.id),
                        format!(
                            "policy `{}` matches nothing: none of its destination services serves the ports it names ({}{more})",
                            p.id,
                            served.join("; ")
                        ),
                    )
                    .hint("correct its `ports` (or leave them out for every port of each service); remove it if it is no longer needed")
                };
                if let Some(ps) = policy_spec.get(p.id.as_str())
                    && let Some(first) = ps.ports.first()
                {
                    d = d.related(ps.at(first), "the ports it names");
                }
                self.push(d);
                continue;
            }
            if p.action == Action::Allow {
                opened.extend(targets.iter().map(|s| (*s).clone()));
                let crosses = targets.iter().any(|s| {
                    fed.service(s.as_str())
                        .is_some_and(|svc| p.from.orgs.iter().any(|o| *o != svc.org))
                });
                if crosses && p.agreement.is_none() {
                    self.push(
                        Diagnostic::new(
                            Code::AllowWithoutAgreement,
                            at(&p.id),
                            format!("policy `{}` opens services to other organisations without naming an agreement", p.id),
                        )
                        .hint("name the information-sharing agreement that allows this sharing in `agreement:`"),
                    );
                }
            }
        }
        for s in &spec.services {
            let id = format!("{}/{}", s.org.value, s.name.value);
            if !opened.contains(id.as_str()) {
                self.push(
                    Diagnostic::new(
                        Code::ServiceNotOpened,
                        s.at(&s.name),
                        format!("no policy opens service `{id}`"),
                    )
                    .hint(
                        "nobody outside can reach it; add an allow policy, or remove the service",
                    ),
                );
            }
        }
        self.selectors_matching_nothing(spec, fed);
        self.vip_prefixes_too_small(spec, fed);
        // A deny shadows an allow only if its `to` holds every destination
        // of the allow, so the candidates for an allow are the denies naming
        // one of its destinations; listed in document order, the first match
        // is the one a scan of every policy would find. Linear, not
        // allows x denies.
        let mut denies_to: HashMap<&ServiceId, Vec<&Policy>> = HashMap::new();
        for d in fed.policies.iter().filter(|p| p.action == Action::Deny) {
            for s in &d.to {
                denies_to.entry(s).or_default().push(d);
            }
        }
        for allow in fed.policies.iter().filter(|p| p.action == Action::Allow) {
            let candidates = allow
                .to
                .iter()
                .map(|s| denies_to.get(s).map_or(&[][..], Vec::as_slice))
                .min_by_key(|c| c.len())
                .unwrap_or(&[]);
            if let Some(deny) = candidates.iter().find(|d| shadows(d, allow)) {
                self.push(
                    Diagnostic::new(
                        Code::AllowShadowed,
                        at(&allow.id),
                        format!(
                            "allow `{}` never takes effect: deny `{}` covers every flow it allows",
                            allow.id, deny.id
                        ),
                    )
                    .hint("deny overrides allow; narrow the deny, or remove the allow")
                    .related(at(&deny.id), "the deny"),
                );
            }
        }
    }
}

impl Cx<'_> {
    /// Each tag selector of a policy's `to` that matches no service (FG147),
    /// with the nearest tag of the same owner (`*/TAG`: of any). Only for a
    /// whole document: a snapshot holds only the services its edge reaches.
    fn selectors_matching_nothing(&mut self, spec: &FederationSpec, fed: &Federation) {
        let mut tags_of: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut all_tags: BTreeSet<&str> = BTreeSet::new();
        for svc in &fed.services {
            for t in &svc.tags {
                tags_of.entry(svc.org.as_str()).or_default().insert(t);
                all_tags.insert(t);
            }
        }
        let none = BTreeSet::new();
        for p in &spec.policies {
            for t in &p.to.tags {
                let Some((owner, tag)) = t.value.split_once('/') else {
                    continue;
                };
                let known = if owner == "*" {
                    &all_tags
                } else {
                    tags_of.get(owner).unwrap_or(&none)
                };
                if known.contains(tag) {
                    continue;
                }
                let message = if p.action.value == Action::Deny {
                    format!(
                        "`{}` matches no service: this deny rule denies nothing through it, so the flows it was meant to stop are decided by the other rules (they may be allowed)",
                        t.value
                    )
                } else {
                    format!(
                        "`{}` matches no service: this allow rule opens nothing through it",
                        t.value
                    )
                };
                let known: Vec<&str> = known.iter().copied().collect();
                let whose = if owner == "*" {
                    "any member's services".to_owned()
                } else {
                    format!("{owner}'s services")
                };
                let hint = match closest(tag, &known) {
                    Some(c) => format!("did you mean `{owner}/{c}`?"),
                    None if known.is_empty() => {
                        format!(
                            "no tag is set on {whose}; correct the selector, or tag the services it is meant for"
                        )
                    }
                    None => format!(
                        "no service carries the tag `{tag}`; the tags on {whose} are: {}",
                        list_some(&known)
                    ),
                };
                self.push(
                    Diagnostic::new(Code::SelectorMatchesNothing, p.at(t), message).hint(hint),
                );
            }
        }
    }

    /// Each edge gives a VIP to every remote `tcp` service its snapshot
    /// holds: those an allow rule naming its organisation in `from` opens
    /// (`snapshot::Plan`, whatever the rule's expiry; the edge's
    /// `vip_services`). A prefix with fewer addresses leaves some without
    /// one (FG117).
    fn vip_prefixes_too_small(&mut self, spec: &FederationSpec, fed: &Federation) {
        let with_vips: HashSet<&OrgId> = fed
            .edges
            .iter()
            .filter(|e| e.vip_prefix.is_some())
            .map(|e| &e.org)
            .collect();
        let mut reached: HashMap<&OrgId, BTreeSet<&ServiceId>> = HashMap::new();
        for p in fed.policies.iter().filter(|p| p.action == Action::Allow) {
            for org in p.from.orgs.iter().filter(|o| with_vips.contains(o)) {
                for s in &p.to {
                    if let Some(svc) = fed.service(s.as_str())
                        && svc.org != *org
                        && svc.protocol == Protocol::Tcp
                    {
                        reached.entry(org).or_default().insert(&svc.id);
                    }
                }
            }
        }
        for e in &spec.edges {
            let (Some(v), Some(edge)) = (
                &e.ingress.vip_prefix,
                fed.edge(&format!("{}/{}", e.org.value, e.name.value)),
            ) else {
                continue;
            };
            let Some(prefix) = edge.vip_prefix else {
                continue;
            };
            let needed = reached.get(&edge.org).map_or(0, BTreeSet::len) as u128;
            let holds = vip_capacity(&prefix);
            if needed <= holds {
                continue;
            }
            let wide = (0..=prefix.prefix_len())
                .rev()
                .find(|len| {
                    IpNet::new(prefix.addr(), *len)
                        .is_ok_and(|n| vip_capacity(&n.trunc()) >= needed)
                })
                .unwrap_or(0);
            self.push(
                Diagnostic::new(
                    Code::VipPrefixTooSmall,
                    e.at(v),
                    format!(
                        "VIP prefix {prefix} of `{}` holds {holds} VIPs, but the edge gives one to each of the {needed} remote `tcp` services {} may reach: {}, so DNS at this edge answers no address for {} and staff reach {} only through its CONNECT or SOCKS5 listener",
                        edge.id,
                        edge.org,
                        match needed - holds {
                            1 => "one of them gets none".to_owned(),
                            n => format!("{n} of them get none"),
                        },
                        if needed - holds == 1 { "its names" } else { "their names" },
                        if needed - holds == 1 { "it" } else { "them" },
                    ),
                )
                .hint(format!(
                    "widen it to a /{wide} or wider, still clear of every network"
                )),
            );
        }
    }
}

/// Items by id; the first of any duplicates wins, as with `iter().find`.
fn first_by_id<'a, T>(items: &'a [T], id: impl Fn(&'a T) -> &'a str) -> HashMap<&'a str, &'a T> {
    let mut map = HashMap::with_capacity(items.len());
    for item in items {
        map.entry(id(item)).or_insert(item);
    }
    map
}

/// Whether deny `d` matches every flow that allow `a` matches, for at least
/// as long.
fn shadows(d: &Policy, a: &Policy) -> bool {
    let orgs = a.from.orgs.is_subset(&d.from.orgs);
    let networks = match (&d.from.networks, &a.from.networks) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(dn), Some(an)) => an.is_subset(dn),
    };
    let cidrs = match (&d.from.cidrs, &a.from.cidrs) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(dc), Some(ac)) => ac.iter().all(|x| dc.iter().any(|y| y.contains(x))),
    };
    let to = a.to.is_subset(&d.to);
    let ports = match (&d.ports, &a.ports) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(dp), Some(ap)) => ap.iter().all(|x| dp.iter().any(|y| y.covers(*x))),
    };
    let lasts = match (d.expires, a.expires) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(de), Some(ae)) => de >= ae,
    };
    orgs && networks && cidrs && to && ports && lasts && !a.to.is_empty()
}

/// At most eight names, comma-separated, and how many more there are.
fn list_some(names: &[&str]) -> String {
    const SHOWN: usize = 8;
    let mut out = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

/// How many VIPs `prefix` holds: its addresses but, for IPv4 shorter than a
/// /31, the network and broadcast addresses, and for IPv6 the first (the
/// subnet-router anycast address), as the edge gives them out.
fn vip_capacity(prefix: &IpNet) -> u128 {
    match prefix {
        IpNet::V4(n) => {
            let all = 1u128 << (32 - u32::from(n.prefix_len()));
            if n.prefix_len() >= 31 { all } else { all - 2 }
        }
        IpNet::V6(n) => {
            let bits = 128 - u32::from(n.prefix_len());
            if bits >= 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            }
        }
    }
}

/// The known value nearest to `value`, if it is close enough to be a typo.
fn closest<'a>(value: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(value, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let start = parse_time("2027-03-31", false).unwrap();
        let end = parse_time("2027-03-31", true).unwrap();
        assert_eq!(start.to_string(), "2027-03-31T00:00:00Z");
        assert_eq!(end.to_string(), "2027-04-01T00:00:00Z");
        assert_eq!(
            parse_time("2027-03-31T10:00:00Z", true)
                .unwrap()
                .to_string(),
            "2027-03-31T10:00:00Z"
        );
        assert!(parse_time("31/03/2027", true).is_none());
    }

    #[test]
    fn names_and_zones() {
        assert_eq!(
            normalise_dns_name("EHR.Dpft.Example.").as_deref(),
            Some("ehr.dpft.example")
        );
        assert!(normalise_dns_name("bad_name.example").is_none());
        assert!(in_zone("ehr.dpft.example", "dpft.example"));
        assert!(in_zone("dpft.example", "dpft.example"));
        assert!(!in_zone("xdpft.example", "dpft.example"));
    }

    #[test]
    fn serials() {
        assert_eq!(normalise_serial("00:4F:1a").as_deref(), Some("4f1a"));
        assert!(normalise_serial("zz").is_none());
    }

    #[test]
    fn cidr_hints() {
        assert!(
            parse_cidr("10.1.2.3/16")
                .unwrap_err()
                .contains("10.1.0.0/16")
        );
        assert!(parse_cidr("10.1.2.3").unwrap_err().contains("10.1.2.3/32"));
        assert_eq!(
            parse_cidr("10.1.0.0/16").unwrap().to_string(),
            "10.1.0.0/16"
        );
    }

    #[test]
    fn typo_suggestions() {
        assert_eq!(closest("dfpt", &["dpft", "esht"]), Some("dpft"));
        assert_eq!(closest("zzzz", &["dpft"]), None);
    }

    /// `0.0.0.0` and `::` name no edge: not as an overlay endpoint, an
    /// ingress address or a DNS listener (FG115, each at its place).
    #[test]
    fn every_address_is_no_address_to_reach() {
        let mut sources = crate::Sources::new();
        sources.add(
            "edges.yaml",
            "federation: {name: t, trust_domain: t.example}\n\
             organisations: [{id: a, name: A, kind: other, membership: {agreement: X, expires: 2031-01-01}}]\n\
             edges:\n\
             - {org: a, name: e, overlay: {quic: \"192.0.2.1:4433\", tcp: \"[::]:4443\"}, ingress: {addresses: [\"0.0.0.0\", 192.0.2.1]}, dns: \"0.0.0.0:53\"}\n",
        );
        let loaded = crate::load(&sources, parse_time("2026-06-01", false).unwrap());
        let found: Vec<&str> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.code == Code::UnspecifiedAddress)
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(found.len(), 3, "{:#?}", loaded.diagnostics);
        for value in ["`[::]:4443`", "`0.0.0.0`", "`0.0.0.0:53`"] {
            assert!(
                found.iter().any(|m| m.contains(value)),
                "{value}: {found:#?}"
            );
        }
    }
}
