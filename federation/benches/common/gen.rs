//! A deterministic generator of synthetic federations, for benchmarks.
//!
//! Shared, by `#[path]`, between `benches/decide.rs` and
//! `examples/gen_federation.rs` so that it is written once and never lives in
//! the core crate. Pure std: a tiny xorshift PRNG, no `rand`.
//!
//! The shape: K organisations `oNNN` (zone `oNNN.example`), each with two
//! networks (`corporate`, `roaming-staff`; distinct ranges per member), E
//! edges (one by default; `edge-1` .. `edge-E`, for the control plane's
//! fan-out bench), five services (three TLS on 443, two TCP on 2575); regional groups of
//! consecutive members; one agreement binding every member and one per region;
//! N policies, about 90% allow and 10% deny, each from 1-3 members or a region,
//! sometimes narrowed to one network or one /24, to 1-2 services of one owner,
//! sometimes with ports.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// xorshift64* seeded through splitmix64 (so that seed 0 works).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// True with probability `percent` / 100.
    pub(crate) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The default number of organisations for `policies` policies.
pub(crate) fn default_orgs(policies: usize) -> usize {
    (policies / 500).clamp(6, 400)
}

/// The most organisations [`generate_shape`] makes (the address plan's limit).
pub(crate) const MAX_ORGS: usize = 4096;
/// Up to this many organisations, the address plan of the `decide` figures.
const CLASSIC_ORGS: usize = 400;

pub(crate) const SERVICES: [(&str, u16, &str); 5] = [
    ("ehr", 443, "tls"),
    ("pacs", 443, "tls"),
    ("portal", 443, "tls"),
    ("lab", 2575, "tcp"),
    ("hl7", 2575, "tcp"),
];
pub(crate) const NETWORKS: [&str; 2] = ["corporate", "roaming-staff"];
const KINDS: [&str; 4] = ["nhs-trust", "gp-practice", "local-authority", "other"];

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    pub(crate) addr: Ipv4Addr,
    pub(crate) len: u8,
}

impl Prefix {
    fn new(a: u8, b: u8, c: u8, len: u8) -> Self {
        Self {
            addr: Ipv4Addr::new(a, b, c, 0),
            len,
        }
    }

    /// A random host address inside (not the network or broadcast address).
    pub(crate) fn random_host(self, rng: &mut Rng) -> IpAddr {
        let size = 1u32 << (32 - u32::from(self.len));
        let offset = 1 + rng.below(size as usize - 2) as u32;
        IpAddr::V4(Ipv4Addr::from(u32::from(self.addr) + offset))
    }

    /// A random /24 inside (the prefix must be /24 or shorter).
    pub(crate) fn random_24(self, rng: &mut Rng) -> Self {
        let count = 1usize << (24 - self.len);
        let base = u32::from(self.addr) + ((rng.below(count) as u32) << 8);
        Self {
            addr: Ipv4Addr::from(base),
            len: 24,
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub(crate) id: String,
    /// Indexed like [`NETWORKS`].
    pub(crate) networks: [Prefix; 2],
    pub(crate) region: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) org: usize,
    pub(crate) kind: usize,
    /// `ORG/NAME`.
    pub(crate) id: String,
    pub(crate) port: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) members: Vec<usize>,
}

#[derive(Debug, Clone)]
pub(crate) enum Sources {
    Orgs(Vec<usize>),
    Group(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) id: String,
    pub(crate) allow: bool,
    pub(crate) from: Sources,
    /// (org, index into [`NETWORKS`]).
    pub(crate) network: Option<(usize, usize)>,
    pub(crate) cidr: Option<Prefix>,
    /// Indexes into `services`, all of one owner.
    pub(crate) to: Vec<usize>,
    pub(crate) ports: Option<Vec<u16>>,
    pub(crate) agreement: String,
    pub(crate) expires: Option<&'static str>,
}

impl Policy {
    /// The source organisations, groups expanded.
    pub(crate) fn source_orgs<'a>(&'a self, groups: &'a [Group]) -> &'a [usize] {
        match &self.from {
            Sources::Orgs(o) => o,
            Sources::Group(g) => &groups[*g].members,
        }
    }
}

/// A flow to decide on, owned (the bench turns it into a `federation::Flow`).
#[derive(Debug, Clone)]
pub(crate) struct FlowSpec {
    pub(crate) src_org: String,
    pub(crate) src_network: Option<&'static str>,
    pub(crate) src_addr: Option<IpAddr>,
    pub(crate) service: String,
    pub(crate) port: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct Generated {
    /// Edges per organisation.
    pub(crate) edges_per_org: usize,
    pub(crate) orgs: Vec<Org>,
    pub(crate) services: Vec<Service>,
    pub(crate) groups: Vec<Group>,
    pub(crate) policies: Vec<Policy>,
}

/// Generate a federation of `policies` policies over `orgs` members (default:
/// [`default_orgs`], at most 400), one edge each, deterministically from `seed`.
pub(crate) fn generate(policies: usize, orgs: Option<usize>, seed: u64) -> Generated {
    let k = orgs
        .unwrap_or_else(|| default_orgs(policies))
        .clamp(2, CLASSIC_ORGS);
    generate_shape(policies, k, 1, seed)
}

/// The two networks of member `i` of `k`: up to 400 members, corporate
/// 10.0.0.0/17 .. 10.199.128.0/17 and roaming 10.200.0.0/19 ..
/// 10.249.224.0/19 (the plan of the `decide` figures); beyond, corporate
/// /20s in 10.0.0.0/8 and roaming /22s in 100.64.0.0/10 (4,096 of each).
fn networks_of(i: usize, k: usize) -> [Prefix; 2] {
    if k <= CLASSIC_ORGS {
        [
            Prefix::new(10, (i / 2) as u8, ((i % 2) * 128) as u8, 17),
            Prefix::new(10, (200 + i / 8) as u8, ((i % 8) * 32) as u8, 19),
        ]
    } else {
        [
            Prefix::new(10, (i / 16) as u8, ((i % 16) * 16) as u8, 20),
            Prefix::new(100, (64 + i / 64) as u8, ((i % 64) * 4) as u8, 22),
        ]
    }
}

/// [`generate`] with `orgs` members (2 to [`MAX_ORGS`]) of `edges_per_org`
/// edges each (1 to 250).
pub(crate) fn generate_shape(
    policies: usize,
    orgs: usize,
    edges_per_org: usize,
    seed: u64,
) -> Generated {
    let k = orgs.clamp(2, MAX_ORGS);
    let edges_per_org = edges_per_org.clamp(1, 250);
    let mut rng = Rng::new(seed);
    let region_size = (k / 2).clamp(3, 8);
    let regions = k.div_ceil(region_size);
    let orgs: Vec<Org> = (0..k)
        .map(|i| Org {
            id: format!("o{i:03}"),
            networks: networks_of(i, k),
            region: i / region_size,
        })
        .collect();
    let groups: Vec<Group> = (0..regions)
        .map(|r| Group {
            id: format!("region-{r:02}"),
            members: (r * region_size..((r + 1) * region_size).min(k)).collect(),
        })
        .collect();
    let services: Vec<Service> = (0..k)
        .flat_map(|o| {
            SERVICES
                .iter()
                .enumerate()
                .map(move |(kind, s)| (o, kind, s))
        })
        .map(|(o, kind, (name, port, _))| Service {
            org: o,
            kind,
            id: format!("o{o:03}/{name}"),
            port: *port,
        })
        .collect();

    let mut out = Vec::with_capacity(policies);
    for p in 0..policies {
        let allow = !rng.chance(10);
        let owner = rng.below(k);
        // Destinations: 1-2 distinct services of the owner.
        let first = rng.below(SERVICES.len());
        let mut to = vec![owner * SERVICES.len() + first];
        if rng.chance(35) {
            let second = (first + 1 + rng.below(SERVICES.len() - 1)) % SERVICES.len();
            to.push(owner * SERVICES.len() + second);
        }
        // Sources: a region (20%) or 1-3 distinct members.
        let from = if rng.chance(20) {
            Sources::Group(rng.below(regions))
        } else {
            let n = 1 + rng.below(3);
            let mut members = Vec::with_capacity(n);
            while members.len() < n.min(k) {
                // Mostly from the owner's region, so that region agreements apply.
                let o = if rng.chance(60) {
                    *rng.pick(&groups[orgs[owner].region].members)
                } else {
                    rng.below(k)
                };
                if !members.contains(&o) {
                    members.push(o);
                }
            }
            Sources::Orgs(members)
        };
        let src: Vec<usize> = match &from {
            Sources::Orgs(o) => o.clone(),
            Sources::Group(g) => groups[*g].members.clone(),
        };
        // Narrowing: one network (25%) or one /24 (10%) of a source member.
        let narrow = rng.below(100);
        let (network, cidr) = if narrow < 25 {
            (Some((*rng.pick(&src), rng.below(NETWORKS.len()))), None)
        } else if narrow < 35 {
            let o = *rng.pick(&src);
            let net = orgs[o].networks[rng.below(NETWORKS.len())];
            (None, Some(net.random_24(&mut rng)))
        } else {
            (None, None)
        };
        let ports = rng.chance(30).then(|| vec![services[to[0]].port]);
        let region = orgs[owner].region;
        let agreement = if src.iter().all(|o| orgs[*o].region == region) {
            format!("ISA-REGION-{region:02}")
        } else {
            "ISA-ALL".to_owned()
        };
        let expires = rng.chance(5).then_some("2029-12-31");
        out.push(Policy {
            id: format!("p{p:06}"),
            allow,
            from,
            network,
            cidr,
            to,
            ports,
            agreement,
            expires,
        });
    }
    Generated {
        edges_per_org,
        orgs,
        services,
        groups,
        policies: out,
    }
}

impl Generated {
    /// The federation document, as YAML (one flow mapping per item).
    pub(crate) fn to_yaml(&self) -> String {
        let mut y =
            String::with_capacity(256 * (self.policies.len() + 10 * self.orgs.len()) + 4096);
        let w = &mut y;
        let _ = writeln!(
            w,
            "# Generated by gen_federation: {} organisations, {} policies.",
            self.orgs.len(),
            self.policies.len()
        );
        if self.edges_per_org > 1 {
            let _ = writeln!(
                w,
                "# {} edges per organisation, {} in all.",
                self.edges_per_org,
                self.edges_per_org * self.orgs.len()
            );
        }
        let _ = writeln!(
            w,
            "federation: {{name: synthetic, trust_domain: synthetic.fedgate.example}}"
        );
        let _ = writeln!(w, "organisations:");
        for (i, o) in self.orgs.iter().enumerate() {
            let c = o.networks[0].addr.octets();
            let _ = writeln!(
                w,
                "  - {{id: {id}, name: Organisation {i:03}, kind: {kind}, membership: {{agreement: FCA-{id}, starts: 2024-01-01, expires: 2030-12-31}}, dns: {{zones: [{id}.example], upstreams: [{a}.{b}.{c2}.53]}}}}",
                id = o.id,
                kind = KINDS[i % KINDS.len()],
                a = c[0],
                b = c[1],
                c2 = c[2],
            );
        }
        let _ = writeln!(w, "networks:");
        for o in &self.orgs {
            for (label, prefix) in NETWORKS.iter().zip(o.networks) {
                let _ = writeln!(
                    w,
                    "  - {{org: {}, label: {label}, purpose: {label}, cidrs: [{prefix}]}}",
                    o.id
                );
            }
        }
        let _ = writeln!(w, "edges:");
        for (i, o) in self.orgs.iter().enumerate() {
            let c = o.networks[0].addr.octets();
            for e in 0..self.edges_per_org {
                // Overlay addresses 127.x.y.z, distinct for every edge.
                let n = i * self.edges_per_org + e + 1;
                let (x, y, z) = (n / 65536, (n / 256) % 256, n % 256);
                let _ = writeln!(
                    w,
                    "  - {{org: {}, name: edge-{}, overlay: {{quic: \"127.{x}.{y}.{z}:4433\", tcp: \"127.{x}.{y}.{z}:4443\"}}, ingress: {{addresses: [{}.{}.{}.{}]}}}}",
                    o.id,
                    e + 1,
                    c[0],
                    c[1],
                    c[2],
                    5 + e
                );
            }
        }
        let _ = writeln!(w, "services:");
        for s in &self.services {
            let o = &self.orgs[s.org];
            let (name, port, protocol) = SERVICES[s.kind];
            let c = o.networks[0].addr.octets();
            let _ = writeln!(
                w,
                "  - {{org: {org}, name: {name}, dns: [{name}.{org}.example], address: {}.{}.{}.{}, ports: [{port}], protocol: {protocol}, tags: [{tag}]}}",
                c[0],
                c[1],
                c[2] + 1,
                10 + s.kind,
                org = o.id,
                tag = if port == 443 { "web" } else { "clinical" },
            );
        }
        let _ = writeln!(w, "groups:");
        for g in &self.groups {
            let members: Vec<&str> = g
                .members
                .iter()
                .map(|m| self.orgs[*m].id.as_str())
                .collect();
            let _ = writeln!(w, "  - {{id: {}, members: [{}]}}", g.id, members.join(", "));
        }
        let _ = writeln!(w, "agreements:");
        let all: Vec<&str> = self.orgs.iter().map(|o| o.id.as_str()).collect();
        let _ = writeln!(
            w,
            "  - {{id: ISA-ALL, title: Federation-wide sharing, parties: [{}], purpose: direct care, legal_basis: \"Art 6(1)(e), 9(2)(h)\", owner: {{name: A Guardian, role: Caldicott Guardian, org: {}}}, start: 2024-01-01, expires: 2030-03-31}}",
            all.join(", "),
            all[0]
        );
        for (r, g) in self.groups.iter().enumerate() {
            let _ = writeln!(
                w,
                "  - {{id: ISA-REGION-{r:02}, title: Regional sharing {r:02}, parties: [{}], purpose: direct care, legal_basis: \"Art 6(1)(e), 9(2)(h)\", owner: {{name: A Guardian, role: Caldicott Guardian, org: {}}}, start: 2024-01-01, expires: 2030-03-31}}",
                g.id, self.orgs[g.members[0]].id
            );
        }
        let _ = writeln!(w, "policies:");
        for p in &self.policies {
            let action = if p.allow { "allow" } else { "deny" };
            let owner = &self.orgs[self.services[p.to[0]].org].id;
            let _ = write!(
                w,
                "  - {{id: {}, description: Generated {action} to {owner}, from: {{",
                p.id
            );
            match &p.from {
                Sources::Orgs(os) => {
                    let ids: Vec<&str> = os.iter().map(|o| self.orgs[*o].id.as_str()).collect();
                    let _ = write!(w, "orgs: [{}]", ids.join(", "));
                }
                Sources::Group(g) => {
                    let _ = write!(w, "groups: [{}]", self.groups[*g].id);
                }
            }
            if let Some((o, n)) = p.network {
                let _ = write!(w, ", networks: [{}/{}]", self.orgs[o].id, NETWORKS[n]);
            }
            if let Some(c) = p.cidr {
                let _ = write!(w, ", cidrs: [{c}]");
            }
            let to: Vec<&str> = p.to.iter().map(|s| self.services[*s].id.as_str()).collect();
            let _ = write!(w, "}}, to: {{services: [{}]}}", to.join(", "));
            if let Some(ports) = &p.ports {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                let _ = write!(w, ", ports: [{}]", ports.join(", "));
            }
            let _ = write!(w, ", action: {action}, agreement: {}", p.agreement);
            if let Some(e) = p.expires {
                let _ = write!(w, ", expires: {e}");
            }
            let _ = writeln!(w, "}}");
        }
        y
    }

    /// `n` flows to decide on, deterministically from `seed`: about 60% aimed
    /// at a random policy's sources and destinations (so a fair share is
    /// allowed, or denied by a deny rule), the rest between random members and
    /// services (mostly default deny), with a few on a port the service does
    /// not serve. Networks and addresses are sometimes given, sometimes not.
    pub(crate) fn flows(&self, n: usize, seed: u64) -> Vec<FlowSpec> {
        let mut rng = Rng::new(seed ^ 0xF10F_F10F);
        (0..n)
            .map(|_| {
                let (org, service, want_net, want_cidr) =
                    if !self.policies.is_empty() && rng.chance(60) {
                        let p = rng.pick(&self.policies);
                        let org = *rng.pick(p.source_orgs(&self.groups));
                        let service = *rng.pick(&p.to);
                        let want_net = p.network.filter(|(o, _)| *o == org).map(|(_, n)| n);
                        (org, service, want_net, p.cidr)
                    } else {
                        (
                            rng.below(self.orgs.len()),
                            rng.below(self.services.len()),
                            None,
                            None,
                        )
                    };
                let net = match want_net {
                    Some(n) if rng.chance(80) => Some(n),
                    _ => match rng.below(3) {
                        0 => None,
                        x => Some(x - 1),
                    },
                };
                let addr = match want_cidr {
                    Some(c) if rng.chance(80) => Some(c.random_host(&mut rng)),
                    _ if rng.chance(50) => {
                        Some(self.orgs[org].networks[net.unwrap_or(0)].random_host(&mut rng))
                    }
                    _ => None,
                };
                let svc = &self.services[service];
                FlowSpec {
                    src_org: self.orgs[org].id.clone(),
                    src_network: net.map(|n| NETWORKS[n]),
                    src_addr: addr,
                    service: svc.id.clone(),
                    port: if rng.chance(5) { 8080 } else { svc.port },
                }
            })
            .collect()
    }
}
