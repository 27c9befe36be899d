//! What an edge knows: its snapshot, turned into the model, compiled
//! policies, routes and service VIPs. Replaced whole when a new snapshot
//! arrives; a flow holds the `Arc<Node>` it started with.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use federation::model::{Edge, OrgId, Protocol, ServiceId};
use federation::{EdgeSnapshot, Federation, PolicySet, RoutingTable};
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
        let vips = vips(&fed, &edge);
        Ok(Self {
            version: snap.version,
            digest: snap.digest.clone(),
            edge,
            fed,
            policies,
            routing,
            vips,
        })
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

/// VIPs in service-id order from the prefix's second address on, so that
/// every edge with the same snapshot assigns the same addresses.
fn vips(fed: &Federation, edge: &Edge) -> BTreeMap<SocketAddr, ServiceId> {
    let mut out = BTreeMap::new();
    let Some(prefix) = edge.vip_prefix else {
        return out;
    };
    let mut hosts = prefix.hosts();
    let mut remote: Vec<_> = fed
        .services
        .iter()
        .filter(|s| s.org != edge.org && s.protocol == Protocol::Tcp)
        .collect();
    remote.sort_by(|a, b| a.id.cmp(&b.id));
    for s in remote {
        let Some(ip) = hosts.next() else { break };
        for port in &s.ports {
            out.insert(SocketAddr::new(ip, *port), s.id.clone());
        }
    }
    out
}
