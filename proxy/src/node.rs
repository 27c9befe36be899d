//! What an edge knows: its snapshot, turned into the model, compiled
//! policies, routes and service VIPs. Replaced whole when a new snapshot
//! arrives; a flow holds the `Arc<Node>` it started with.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use federation::model::{Edge, OrgId, Protocol, ServiceId};
use federation::{EdgeSnapshot, Federation, PolicySet, RoutingTable};
use ipnet::IpNet;
use jiff::Timestamp;

#[derive(Debug)]
pub struct Node {
    pub version: u64,
    /// The snapshot's digest: with the version, what the edge holds.
    pub digest: String,
    pub edge: Edge,
    pub fed: Federation,
    pub policies: PolicySet,
    pub routing: RoutingTable,
    /// Each remote TCP service this edge may reach, at its own address from
    /// the ingress prefix, on each of its ports.
    pub vips: BTreeMap<SocketAddr, ServiceId>,
    /// The address behind `vips` of each service ([`VipTable`]).
    pub vip_table: VipTable,
}

impl Node {
    pub fn from_snapshot(
        snap: &EdgeSnapshot,
        edge_id: &str,
        now: Timestamp,
    ) -> anyhow::Result<Self> {
        let fed = snap.load(Some(edge_id), now).context("snapshot refused")?;
        let Some(edge) = fed.edge(edge_id).cloned() else {
            bail!("the snapshot does not describe edge `{edge_id}`");
        };
        let policies = PolicySet::compile(&fed);
        let routing = RoutingTable::new(&fed);
        let services = vip_services(&fed, &edge);
        let vip_table = VipTable::assign(edge.vip_prefix, &services, None);
        let vips = vip_table.by_address(&services);
        Ok(Self {
            version: snap.version,
            digest: snap.digest.clone(),
            edge,
            fed,
            policies,
            routing,
            vips,
            vip_table,
        })
    }

    /// Take over the VIPs `running` gave out ([`VipTable`]): run on a node
    /// before it succeeds `running`.
    pub fn keep_vips(&mut self, running: &Self) {
        self.keep_vips_from(&running.vip_table);
    }

    /// Keep the VIPs of `table` (the running node's, or the one an edge
    /// kept on disk before a restart).
    pub fn keep_vips_from(&mut self, table: &VipTable) {
        let services = vip_services(&self.fed, &self.edge);
        self.vip_table = VipTable::assign(self.edge.vip_prefix, &services, Some(table));
        self.vips = self.vip_table.by_address(&services);
    }

    pub fn org(&self) -> &OrgId {
        &self.edge.org
    }

    /// The local network a client address belongs to.
    pub fn source_network(&self, addr: IpAddr) -> Option<String> {
        self.routing
            .classify(self.edge.org.as_str(), addr)
            .map(|m| m.label.clone())
    }

    pub fn trust_domain(&self) -> &str {
        &self.fed.trust_domain
    }
}

/// Which address each remote TCP service has from the edge's VIP prefix.
///
/// An edge keeps every address it has given out for as long as it runs:
/// a new snapshot that adds, removes or renames services moves no other
/// service's VIP, so a client (or a resolver's cache) holding a VIP keeps
/// reaching the same service. A new service takes the first address of the
/// prefix that has never been given out; an address given up by a removed
/// service is given out again only when no other is free, the longest-free
/// first, so that a stale DNS answer does not lead to another service while
/// the prefix has room. A service that comes back (a policy removed, then
/// restored, or a rollback) gets its own address back while no other
/// service has taken it, so that clients and caches that still hold it
/// reach it again. At start (or when the prefix changes) the addresses
/// are given in service-id order from the prefix's first host, so that an
/// edge started from the same snapshot gives the same addresses, unless the
/// edge kept its table on disk (`--vip-state`, [`VipTable::to_json`]): then
/// every service keeps its address across restarts too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VipTable {
    /// Each service's address.
    pub hosts: BTreeMap<ServiceId, IpAddr>,
    /// Addresses given up since the edge started, the longest-free first,
    /// each with the service that gave it up (unknown in a table an older
    /// edge wrote).
    released: Vec<(IpAddr, Option<ServiceId>)>,
    /// Services left without an address: the prefix is full.
    pub unassigned: Vec<ServiceId>,
}

/// Whether `ip` may be a VIP of `prefix`: in it, and for IPv6 not its
/// first address, the subnet-router anycast address (IPv4's network and
/// broadcast addresses `hosts()` leaves out already).
fn usable(prefix: IpNet, ip: IpAddr) -> bool {
    prefix.contains(&ip) && !(ip.is_ipv6() && ip == prefix.network())
}

impl VipTable {
    /// Give `services` (id and ports, in any order) addresses from
    /// `prefix`, keeping those `prev` gave.
    pub fn assign(
        prefix: Option<IpNet>,
        services: &BTreeMap<ServiceId, Vec<u16>>,
        prev: Option<&Self>,
    ) -> Self {
        let mut out = Self::default();
        let Some(prefix) = prefix else {
            return out;
        };
        let empty = Self::default();
        let prev = prev.unwrap_or(&empty);
        let mut taken = BTreeSet::new();
        for id in services.keys() {
            if let Some(ip) = prev.hosts.get(id).filter(|ip| usable(prefix, **ip)) {
                out.hosts.insert(id.clone(), *ip);
                taken.insert(*ip);
            }
        }
        let gone = prev
            .hosts
            .iter()
            .filter(|(id, _)| !services.contains_key(*id))
            .map(|(id, ip)| (*ip, Some(id.clone())));
        let mut released: Vec<(IpAddr, Option<ServiceId>)> = Vec::new();
        for (ip, by) in prev.released.iter().cloned().chain(gone) {
            if usable(prefix, ip) && !taken.contains(&ip) && !released.iter().any(|(r, _)| *r == ip)
            {
                released.push((ip, by));
            }
        }
        let avoid: BTreeSet<IpAddr> = taken
            .iter()
            .copied()
            .chain(released.iter().map(|(ip, _)| *ip))
            .collect();
        let mut fresh = prefix
            .hosts()
            .filter(move |ip| usable(prefix, *ip) && !avoid.contains(ip));
        for id in services.keys() {
            if out.hosts.contains_key(id) {
                continue;
            }
            // Its own address back, else a fresh one, else the
            // longest-free.
            let own = released.iter().position(|(_, by)| by.as_ref() == Some(id));
            let ip = if let Some(i) = own {
                released.remove(i).0
            } else if let Some(ip) = fresh.next() {
                ip
            } else if !released.is_empty() {
                released.remove(0).0
            } else {
                out.unassigned.push(id.clone());
                continue;
            };
            out.hosts.insert(id.clone(), ip);
        }
        out.released = released;
        out
    }

    /// The table as an edge keeps it on disk ([`VipState`]), as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let state = VipState {
            format: VIP_STATE_FORMAT,
            hosts: self
                .hosts
                .iter()
                .map(|(id, ip)| (id.to_string(), *ip))
                .collect(),
            released: self.released.iter().map(|(ip, _)| *ip).collect(),
            released_by: self
                .released
                .iter()
                .filter_map(|(ip, by)| Some((*ip, by.as_ref()?.to_string())))
                .collect(),
        };
        let mut out = serde_json::to_vec_pretty(&state).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Read what [`VipTable::to_json`] wrote; the error says where and what.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Self> {
        let state: VipState = serde_json::from_slice(bytes)?;
        if state.format != VIP_STATE_FORMAT {
            bail!(
                "format {} is not {VIP_STATE_FORMAT}, the one this edge reads",
                state.format
            );
        }
        Ok(Self {
            hosts: state
                .hosts
                .iter()
                .map(|(id, ip)| (ServiceId::new(id), *ip))
                .collect(),
            released: state
                .released
                .iter()
                .map(|ip| (*ip, state.released_by.get(ip).map(|id| ServiceId::new(id))))
                .collect(),
            unassigned: Vec::new(),
        })
    }

    /// The listening address of every service port.
    fn by_address(
        &self,
        services: &BTreeMap<ServiceId, Vec<u16>>,
    ) -> BTreeMap<SocketAddr, ServiceId> {
        let mut out = BTreeMap::new();
        for (id, ip) in &self.hosts {
            for port in services.get(id).into_iter().flatten() {
                out.insert(SocketAddr::new(*ip, *port), id.clone());
            }
        }
        out
    }
}

/// A [`VipTable`] on disk: `{"format":1,"hosts":{SERVICE:IP,..},"released":[IP,..],
/// "released_by":{IP:SERVICE,..}}` (`released_by` since the services that
/// come back get their addresses back; without it, none does).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VipState {
    format: u32,
    hosts: BTreeMap<String, IpAddr>,
    #[serde(default)]
    released: Vec<IpAddr>,
    #[serde(default)]
    released_by: BTreeMap<IpAddr, String>,
}

/// The version of [`VipState`]'s layout.
const VIP_STATE_FORMAT: u32 = 1;

/// The remote TCP services an edge gives VIPs to, with their ports.
fn vip_services(fed: &Federation, edge: &Edge) -> BTreeMap<ServiceId, Vec<u16>> {
    fed.services
        .iter()
        .filter(|s| s.org != edge.org && s.protocol == Protocol::Tcp)
        .map(|s| (s.id.clone(), s.ports.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(ids: &[&str]) -> BTreeMap<ServiceId, Vec<u16>> {
        ids.iter()
            .map(|id| (ServiceId::new(id), vec![7000]))
            .collect()
    }

    fn at(t: &VipTable, id: &str) -> Option<String> {
        t.hosts.get(&ServiceId::new(id)).map(ToString::to_string)
    }

    fn prefix(s: &str) -> Option<IpNet> {
        Some(s.parse().expect("prefix"))
    }

    #[test]
    fn at_start_in_service_id_order_from_the_first_host() {
        let t = VipTable::assign(prefix("198.18.0.128/29"), &services(&["b/y", "a/x"]), None);
        assert_eq!(at(&t, "a/x").as_deref(), Some("198.18.0.129"));
        assert_eq!(at(&t, "b/y").as_deref(), Some("198.18.0.130"));
        assert!(t.unassigned.is_empty());
    }

    /// An IPv6 prefix's first address is its subnet-router anycast
    /// address, not a host's: the VIPs start after it, and a table that
    /// gave it out keeps it no longer. A /126 holds three VIPs.
    #[test]
    fn ipv6_vips_start_after_the_subnet_router_anycast_address() {
        let p = prefix("2001:2:0:11::/126");
        let t = VipTable::assign(p, &services(&["a/x", "b/y", "c/z", "d/w"]), None);
        assert_eq!(at(&t, "a/x").as_deref(), Some("2001:2:0:11::1"));
        assert_eq!(at(&t, "c/z").as_deref(), Some("2001:2:0:11::3"));
        assert_eq!(t.unassigned, [ServiceId::new("d/w")]);
        let mut old = VipTable::default();
        old.hosts
            .insert(ServiceId::new("a/x"), "2001:2:0:11::".parse().unwrap());
        let t = VipTable::assign(p, &services(&["a/x"]), Some(&old));
        assert_eq!(at(&t, "a/x").as_deref(), Some("2001:2:0:11::1"));
    }

    #[test]
    fn a_new_service_moves_no_other_vip() {
        let p = prefix("198.18.0.128/29");
        let t1 = VipTable::assign(p, &services(&["b/y", "c/z"]), None);
        // `a/a` sorts first: fresh, it would take .129 and move both others.
        let t2 = VipTable::assign(p, &services(&["a/a", "b/y", "c/z"]), Some(&t1));
        assert_eq!(at(&t2, "b/y"), at(&t1, "b/y"));
        assert_eq!(at(&t2, "c/z"), at(&t1, "c/z"));
        assert_eq!(at(&t2, "a/a").as_deref(), Some("198.18.0.131"));
    }

    #[test]
    fn a_removed_services_address_is_given_out_last() {
        // A /29 has six hosts: .129 to .134.
        let p = prefix("198.18.0.128/29");
        let t1 = VipTable::assign(p, &services(&["a/1", "a/2", "a/3"]), None);
        let t2 = VipTable::assign(p, &services(&["a/1", "a/3"]), Some(&t1));
        assert_eq!(at(&t2, "a/3").as_deref(), Some("198.18.0.131"));
        // A stale answer for a/2 (.130) must not reach a new service while
        // the prefix has room.
        let t3 = VipTable::assign(
            p,
            &services(&["a/1", "a/3", "b/1", "b/2", "b/3"]),
            Some(&t2),
        );
        let given: Vec<_> = ["b/1", "b/2", "b/3"].iter().map(|id| at(&t3, id)).collect();
        assert_eq!(
            given,
            [
                Some("198.18.0.132".into()),
                Some("198.18.0.133".into()),
                Some("198.18.0.134".into())
            ]
        );
        // Full: the released address is reused, then services go without.
        let t4 = VipTable::assign(
            p,
            &services(&["a/1", "a/3", "b/1", "b/2", "b/3", "c/1", "c/2"]),
            Some(&t3),
        );
        assert_eq!(at(&t4, "c/1").as_deref(), Some("198.18.0.130"));
        assert_eq!(t4.unassigned, vec![ServiceId::new("c/2")]);
        // Unchanged input, unchanged table.
        let t5 = VipTable::assign(
            p,
            &services(&["a/1", "a/3", "b/1", "b/2", "b/3", "c/1", "c/2"]),
            Some(&t4),
        );
        assert_eq!(t5, t4);
    }

    /// A service removed from the snapshot (a policy taken away) and put
    /// back (a rollback) gets its own address again, not a new one: clients
    /// and resolvers that still hold it reach it again. While it is away,
    /// its address goes to no one while the prefix has room; a restart in
    /// between (the table on disk) changes none of this.
    #[test]
    fn a_service_that_comes_back_gets_its_own_address_back() {
        let p = prefix("198.18.0.128/29");
        let t1 = VipTable::assign(p, &services(&["a/1", "a/2", "a/3"]), None);
        let t2 = VipTable::assign(p, &services(&["a/1", "a/3"]), Some(&t1));
        let t3 = VipTable::assign(p, &services(&["a/1", "a/3", "b/1"]), Some(&t2));
        assert_eq!(at(&t3, "b/1").as_deref(), Some("198.18.0.132"));
        let on_disk = VipTable::from_json(&t3.to_json()).expect("reads its own JSON");
        assert_eq!(on_disk, t3);
        let back = VipTable::assign(p, &services(&["a/1", "a/2", "a/3", "b/1"]), Some(&on_disk));
        assert_eq!(at(&back, "a/2"), at(&t1, "a/2"));
        assert_eq!(at(&back, "b/1"), at(&t3, "b/1"));
        // A table written before owners were kept: the address is released,
        // owner unknown; the service that comes back takes a fresh one.
        let old = VipTable::from_json(
            b"{\"format\": 1, \"hosts\": {\"a/1\": \"198.18.0.129\"}, \"released\": [\"198.18.0.130\"]}",
        )
        .expect("an older table");
        let t = VipTable::assign(p, &services(&["a/1", "a/2"]), Some(&old));
        assert_eq!(at(&t, "a/2").as_deref(), Some("198.18.0.131"));
    }

    #[test]
    fn a_new_prefix_starts_afresh() {
        let t1 = VipTable::assign(prefix("198.18.0.128/29"), &services(&["b/y"]), None);
        let t2 = VipTable::assign(
            prefix("198.18.1.0/29"),
            &services(&["a/x", "b/y"]),
            Some(&t1),
        );
        assert_eq!(at(&t2, "a/x").as_deref(), Some("198.18.1.1"));
        assert_eq!(at(&t2, "b/y").as_deref(), Some("198.18.1.2"));
        let none = VipTable::assign(None, &services(&["a/x"]), Some(&t2));
        assert!(none.hosts.is_empty());
    }

    #[test]
    fn the_table_survives_a_restart_through_its_json() {
        let p = prefix("198.18.0.128/29");
        let t1 = VipTable::assign(p, &services(&["b/y", "c/z", "d/w"]), None);
        let t2 = VipTable::assign(p, &services(&["a/a", "b/y", "d/w"]), Some(&t1));
        let back = VipTable::from_json(&t2.to_json()).expect("reads its own JSON");
        assert_eq!(back, t2, "hosts and released addresses kept");
        // A restart with the same services gives the same addresses, where
        // a fresh start would have moved every one.
        let restarted = VipTable::assign(p, &services(&["a/a", "b/y", "d/w"]), Some(&back));
        assert_eq!(restarted, t2);
        let fresh = VipTable::assign(p, &services(&["a/a", "b/y", "d/w"]), None);
        assert_ne!(at(&fresh, "a/a"), at(&t2, "a/a"));
    }

    #[test]
    fn a_damaged_table_is_refused_with_where_and_why() {
        let e = VipTable::from_json(b"{\"format\": 1, \"hosts\": {\"a/x\": \"not an address\"}}")
            .expect_err("refused");
        let text = format!("{e:#}");
        assert!(text.contains("line 1 column"), "{text}");
        assert!(text.contains("invalid IP address"), "{text}");
        let e = VipTable::from_json(b"{\"format\": 2, \"hosts\": {}}").expect_err("refused");
        assert!(format!("{e:#}").contains("format 2"), "{e:#}");
    }
}
