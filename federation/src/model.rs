//! The validated federation: types that cannot hold a dangling reference, a
//! malformed address or an unparsed date. Built only by [`crate::validate`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;
use serde::Serialize;

pub use crate::spec::{Action, NetworkPurpose, OrgKind, Protocol};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(s: &str) -> Self {
                Self(Arc::from(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An organisation's id (`dpft`).
    OrgId
);
id_type!(
    /// `ORG/NAME` of a service.
    ServiceId
);
id_type!(
    /// `ORG/NAME` of an edge.
    EdgeId
);
id_type!(
    /// `ORG/LABEL` of a network.
    NetworkId
);
id_type!(SiteId);
id_type!(GroupId);
id_type!(AgreementId);
id_type!(PolicyId);

#[derive(Debug, Clone, Serialize)]
pub struct Organisation {
    pub id: OrgId,
    pub name: String,
    pub kind: OrgKind,
    pub ods_code: Option<String>,
    pub membership: Membership,
    /// Zones, lower case, without the trailing dot.
    pub zones: Vec<String>,
    pub upstreams: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    pub agreement: String,
    pub starts: Option<Timestamp>,
    pub expires: Timestamp,
}

impl Membership {
    /// Whether the member's terms are in force at `now`.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.starts.is_none_or(|s| s <= now) && now < self.expires
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub id: NetworkId,
    pub org: OrgId,
    pub label: String,
    pub purpose: NetworkPurpose,
    /// Empty in a snapshot for another organisation's networks.
    pub cidrs: Vec<IpNet>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub host: OrgId,
    pub networks: Vec<NetworkId>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    pub id: EdgeId,
    pub org: OrgId,
    pub name: String,
    pub site: Option<SiteId>,
    pub quic: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub ingress_addresses: Vec<IpAddr>,
    pub vip_prefix: Option<IpNet>,
    /// Where the edge serves DNS to its member's resolvers.
    pub dns: Option<SocketAddr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub id: ServiceId,
    pub org: OrgId,
    pub name: String,
    /// Names, lower case, without the trailing dot.
    pub dns: Vec<String>,
    /// Internal address; `None` in another organisation's snapshot.
    pub address: Option<IpAddr>,
    pub ports: Vec<u16>,
    pub protocol: Protocol,
    pub tags: Vec<String>,
    /// Answer its names with `address` to the owner's own staff.
    pub dns_internal: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub id: GroupId,
    pub members: BTreeSet<OrgId>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub id: AgreementId,
    pub title: String,
    /// Organisations party to it, groups expanded.
    pub parties: BTreeSet<OrgId>,
    pub purpose: String,
    pub legal_basis: String,
    pub start: Timestamp,
    pub expires: Timestamp,
}

impl Agreement {
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.start <= now && now < self.expires
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn contains(self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }

    pub fn covers(self, other: Self) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Who a policy is about: the organisations, narrowed by networks and CIDRs.
#[derive(Debug, Clone, Serialize)]
pub struct SourceSet {
    pub orgs: BTreeSet<OrgId>,
    /// `None`: any network of those organisations.
    pub networks: Option<BTreeSet<NetworkId>>,
    /// `None`: any source address.
    pub cidrs: Option<Vec<IpNet>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub id: PolicyId,
    pub description: String,
    pub action: Action,
    pub from: SourceSet,
    /// Destination services, tags resolved.
    pub to: BTreeSet<ServiceId>,
    /// `None`: every port of each destination.
    pub ports: Option<Vec<PortRange>>,
    pub agreement: Option<AgreementId>,
    pub expires: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    /// Lower-case hex without separators or leading zeros.
    pub serial: String,
    pub holder: Option<String>,
    pub reason: Option<String>,
}

/// A whole, valid federation (or the part of it one edge may know).
#[derive(Debug, Clone, Serialize)]
pub struct Federation {
    pub name: String,
    pub trust_domain: String,
    pub orgs: Vec<Organisation>,
    pub networks: Vec<Network>,
    pub sites: Vec<Site>,
    pub edges: Vec<Edge>,
    pub services: Vec<Service>,
    pub groups: Vec<Group>,
    pub agreements: Vec<Agreement>,
    pub policies: Vec<Policy>,
    pub revoked: Vec<Revocation>,
    #[serde(skip)]
    index: Index,
}

#[derive(Debug, Clone, Default)]
struct Index {
    orgs: HashMap<OrgId, usize>,
    services: HashMap<ServiceId, usize>,
    edges: HashMap<EdgeId, usize>,
    networks: HashMap<NetworkId, usize>,
    agreements: HashMap<AgreementId, usize>,
}

impl Federation {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        trust_domain: String,
        orgs: Vec<Organisation>,
        networks: Vec<Network>,
        sites: Vec<Site>,
        edges: Vec<Edge>,
        services: Vec<Service>,
        groups: Vec<Group>,
        agreements: Vec<Agreement>,
        policies: Vec<Policy>,
        revoked: Vec<Revocation>,
    ) -> Self {
        fn index<K: Clone + Eq + std::hash::Hash, T>(
            items: &[T],
            key: impl Fn(&T) -> &K,
        ) -> HashMap<K, usize> {
            items
                .iter()
                .enumerate()
                .map(|(i, t)| (key(t).clone(), i))
                .collect()
        }
        let index = Index {
            orgs: index(&orgs, |o| &o.id),
            services: index(&services, |s| &s.id),
            edges: index(&edges, |e| &e.id),
            networks: index(&networks, |n| &n.id),
            agreements: index(&agreements, |a| &a.id),
        };
        Self {
            name,
            trust_domain,
            orgs,
            networks,
            sites,
            edges,
            services,
            groups,
            agreements,
            policies,
            revoked,
            index,
        }
    }

    pub fn org(&self, id: &str) -> Option<&Organisation> {
        self.index.orgs.get(id).map(|&i| &self.orgs[i])
    }

    pub fn service(&self, id: &str) -> Option<&Service> {
        self.index.services.get(id).map(|&i| &self.services[i])
    }

    pub fn edge(&self, id: &str) -> Option<&Edge> {
        self.index.edges.get(id).map(|&i| &self.edges[i])
    }

    pub fn network(&self, id: &str) -> Option<&Network> {
        self.index.networks.get(id).map(|&i| &self.networks[i])
    }

    pub fn agreement(&self, id: &str) -> Option<&Agreement> {
        self.index.agreements.get(id).map(|&i| &self.agreements[i])
    }

    pub fn networks_of<'a>(&'a self, org: &'a OrgId) -> impl Iterator<Item = &'a Network> + 'a {
        self.networks.iter().filter(move |n| &n.org == org)
    }

    pub fn edges_of<'a>(&'a self, org: &'a OrgId) -> impl Iterator<Item = &'a Edge> + 'a {
        self.edges.iter().filter(move |e| &e.org == org)
    }

    pub fn services_of<'a>(&'a self, org: &'a OrgId) -> impl Iterator<Item = &'a Service> + 'a {
        self.services.iter().filter(move |s| &s.org == org)
    }

    /// The certificate identity of an edge:
    /// `spiffe://<trust domain>/org/<org>/edge/<name>`.
    pub fn edge_identity(&self, edge: &Edge) -> String {
        format!(
            "spiffe://{}/org/{}/edge/{}",
            self.trust_domain, edge.org, edge.name
        )
    }

    /// Whether `serial` (hex, any case, colons allowed) is revoked.
    pub fn is_revoked(&self, serial: &str) -> bool {
        let Some(norm) = crate::validate::normalise_serial(serial) else {
            return false;
        };
        self.revoked.iter().any(|r| r.serial == norm)
    }
}
