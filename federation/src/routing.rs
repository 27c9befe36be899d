//! Routing by name: from a DNS name or `ORG/NAME` to the service, its owner
//! and the edges that reach it; and from a client's address to the network it
//! is on.
//!
//! Members reuse private ranges, so an address alone does not say which
//! member it belongs to: [`RoutingTable::classify`] looks only at one
//! organisation's networks (the ones an edge serves), and
//! [`RoutingTable::locate`] lists every member that claims the address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::Serialize;

use crate::model::*;
use crate::validate::normalise_dns_name;

/// How a service is reached.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub service: ServiceId,
    pub owner: OrgId,
    pub protocol: Protocol,
    pub ports: Vec<u16>,
    /// Internal address: known only where the owner's data is (its own edges).
    pub address: Option<IpAddr>,
    /// The owner's edges, the overlay's destination for this service.
    pub edges: Vec<EdgeRoute>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EdgeRoute {
    pub edge: EdgeId,
    pub quic: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
}

/// A member's network that holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkMatch {
    pub org: OrgId,
    pub network: NetworkId,
    pub label: String,
    pub cidr: IpNet,
}

#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    names: HashMap<String, usize>,
    ids: HashMap<ServiceId, usize>,
    routes: Vec<Route>,
    /// Per organisation, its ranges, longest prefix first.
    ranges: HashMap<OrgId, Vec<NetworkMatch>>,
}

impl RoutingTable {
    pub fn new(fed: &Federation) -> Self {
        let mut table = Self::default();
        for s in &fed.services {
            let i = table.routes.len();
            table.routes.push(Route {
                service: s.id.clone(),
                owner: s.org.clone(),
                protocol: s.protocol,
                ports: s.ports.clone(),
                address: s.address,
                edges: fed
                    .edges_of(&s.org)
                    .map(|e| EdgeRoute {
                        edge: e.id.clone(),
                        quic: e.quic,
                        tcp: e.tcp,
                    })
                    .collect(),
            });
            table.ids.insert(s.id.clone(), i);
            for name in &s.dns {
                table.names.insert(name.clone(), i);
            }
        }
        for n in &fed.networks {
            let list = table.ranges.entry(n.org.clone()).or_default();
            list.extend(n.cidrs.iter().map(|c| NetworkMatch {
                org: n.org.clone(),
                network: n.id.clone(),
                label: n.label.clone(),
                cidr: *c,
            }));
        }
        for list in table.ranges.values_mut() {
            list.sort_by_key(|m| std::cmp::Reverse(m.cidr.prefix_len()));
        }
        table
    }

    /// A service by DNS name (any case, trailing dot or not) or by `ORG/NAME`.
    pub fn resolve(&self, name: &str) -> Option<&Route> {
        if let Some(&i) = self.ids.get(name) {
            return Some(&self.routes[i]);
        }
        let name = normalise_dns_name(name)?;
        self.names.get(&name).map(|&i| &self.routes[i])
    }

    /// The network of `org` that holds `addr`, by longest prefix. An IPv4
    /// address as a dual-stack socket gives it (`::ffff:10.1.2.3`) is taken
    /// as the IPv4 address it is.
    pub fn classify(&self, org: &str, addr: IpAddr) -> Option<&NetworkMatch> {
        let addr = addr.to_canonical();
        self.ranges
            .get(org)?
            .iter()
            .find(|m| m.cidr.contains(&addr))
    }

    /// Every member's network that holds `addr` (longest prefix per member;
    /// IPv4-mapped addresses as in [`RoutingTable::classify`]).
    pub fn locate(&self, addr: IpAddr) -> Vec<&NetworkMatch> {
        let addr = addr.to_canonical();
        let mut out: Vec<&NetworkMatch> = self
            .ranges
            .values()
            .filter_map(|list| list.iter().find(|m| m.cidr.contains(&addr)))
            .collect();
        out.sort_by(|a, b| a.org.cmp(&b.org));
        out
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}
