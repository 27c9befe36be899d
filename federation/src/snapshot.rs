//! Per-edge snapshots: exactly what one edge may know (ARCHITECTURE.md,
//! principle 5), as a versioned, serialisable value.
//!
//! A snapshot holds a pruned federation document, so an edge builds its model
//! through the same validation as the control plane ([`Scope::Edge`]). An edge
//! of organisation L receives:
//! - L's own networks, services (with internal addresses), edges and zones;
//! - the services L's networks may reach (names, ports, protocol, owner; never
//!   their internal addresses) and the overlay endpoints of their owners' edges;
//! - the edges of members that may reach L's services;
//! - the policies it enforces: those whose sources include L (the pre-check)
//!   and those opening L's services (the authoritative decision), with their
//!   agreements and groups, each narrowed to the members L exchanges traffic
//!   with (L and those peers): a source outside them reaches none of L's
//!   services and is none of L's staff, so it decides no flow at L's edges;
//! - the records and network labels (no ranges, contacts or resolvers) of
//!   those peers, the records of the hosts of its sites and the owners of its
//!   agreements, and the revoked certificate serials (all of them).
//!
//! So a snapshot's size follows what its edge needs (its own organisation
//! and its partners), not the size of the federation.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::diag::{Diagnostic, FileId};
use crate::model::*;
use crate::source::FederationSpec;
use crate::spec::*;
use crate::validate::{Checked, Scope, validate};

/// The format of [`EdgeSnapshot`]; bumped on an incompatible change.
pub const SNAPSHOT_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSnapshot {
    pub format: u32,
    /// The federation document's version this snapshot was cut from.
    pub version: u64,
    /// `ORG/NAME` of the edge it is for.
    pub edge: String,
    pub org: String,
    /// SHA-256 (hex) of the JSON of `document`.
    pub digest: String,
    pub document: DocumentSpec,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("no edge `{0}` in the federation")]
    UnknownEdge(String),
    #[error("snapshot is not valid JSON of the expected shape: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("snapshot format {found} is not supported (this build reads format {SNAPSHOT_FORMAT})")]
    InvalidFormat { found: u32 },
    #[error(
        "snapshot digest does not match its content (expected {expected}, computed {computed}): it was altered or damaged"
    )]
    InvalidDigest { expected: String, computed: String },
    #[error("snapshot is for edge `{found}`, not `{expected}`")]
    WrongEdge { expected: String, found: String },
    #[error("snapshot content is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidContent(Vec<Diagnostic>),
}

fn digest(doc: &DocumentSpec) -> String {
    // Serialising plain structs and vectors cannot fail.
    let json = serde_json::to_vec(doc).unwrap_or_default();
    crate::hex::encode(&Sha256::digest(&json))
}

/// What an edge of one organisation may know, decided from the typed model:
/// the services it keeps, its peers and the policies it enforces.
struct Plan<'f> {
    own_services: BTreeSet<&'f ServiceId>,
    reachable: BTreeSet<&'f ServiceId>,
    peers: BTreeSet<&'f OrgId>,
    policies: BTreeSet<&'f PolicyId>,
}

impl<'f> Plan<'f> {
    /// `candidates` must include every policy from `local` or to one of its
    /// services (others are skipped); `services` are `local`'s own.
    fn new(
        fed: &'f Federation,
        local: &OrgId,
        services: impl Iterator<Item = &'f Service>,
        candidates: impl Iterator<Item = &'f Policy>,
    ) -> Self {
        let own_services: BTreeSet<&ServiceId> = services.map(|s| &s.id).collect();
        let mut reachable: BTreeSet<&ServiceId> = BTreeSet::new();
        let mut peers: BTreeSet<&OrgId> = BTreeSet::new();
        let mut policies: BTreeSet<&PolicyId> = BTreeSet::new();
        for p in candidates {
            let from_local = p.from.orgs.contains(local);
            let to_local = p.to.iter().any(|s| own_services.contains(s));
            if !(from_local || to_local) {
                continue;
            }
            policies.insert(&p.id);
            if p.action != Action::Allow {
                continue;
            }
            if from_local {
                for s in &p.to {
                    if let Some(svc) = fed.service(s.as_str())
                        && svc.org != *local
                    {
                        reachable.insert(&svc.id);
                        peers.insert(&svc.org);
                    }
                }
            }
            if to_local {
                peers.extend(p.from.orgs.iter().filter(|o| *o != local));
            }
        }
        Self {
            own_services,
            reachable,
            peers,
            policies,
        }
    }

    fn kept_services(&self) -> BTreeSet<&'f str> {
        self.own_services
            .iter()
            .chain(self.reachable.iter())
            .map(|s| s.as_str())
            .collect()
    }

    fn is_peer(&self, org: &str) -> bool {
        self.peers.iter().any(|p| p.as_str() == org)
    }
}

/// Another member's record: no contacts or resolvers; its zones only for a peer.
fn hide_org(org: &mut OrganisationSpec, peer: bool) {
    org.contacts.clear();
    org.dns.upstreams.clear();
    if !peer {
        org.dns.zones.clear();
    }
}

/// Another member's network: its label, never its ranges.
fn hide_network(n: &mut NetworkSpec) {
    n.cidrs.clear();
    n.description = None;
}

/// Another member's edge: its overlay endpoints only.
fn hide_edge(e: &mut EdgeSpec) {
    e.ingress = IngressSpec::default();
    e.site = None;
    e.dns = None;
}

/// Another member's service: never its internal address.
fn hide_service(s: &mut ServiceSpec) {
    s.address = None;
    s.description = None;
    s.dns_internal = None;
}

/// A site an edge of `local` (at `edge_site`) may know: hosted by `local`,
/// the edge's own, or holding one of `local`'s networks.
fn site_kept(site: &SiteSpec, local: &OrgId, edge_site: Option<&SiteId>) -> bool {
    site.host.value == local.as_str()
        || edge_site.is_some_and(|id| id.as_str() == site.id.value)
        || site
            .networks
            .iter()
            .any(|n| n.value.split('/').next() == Some(local.as_str()))
}

/// The members an edge of `local` exchanges traffic with: its own
/// organisation and its peers. Other members appear in its snapshot only as
/// the host of a site it keeps or the owner of an agreement it enforces.
fn traffic<'p>(local: &'p OrgId, plan: &'p Plan<'_>) -> BTreeSet<&'p str> {
    std::iter::once(local.as_str())
        .chain(plan.peers.iter().map(|p| p.as_str()))
        .collect()
}

/// Every member an edge's snapshot holds a record of: those in `traffic`,
/// and the hosts of its sites and owners of its agreements (named there).
fn known_orgs<'a>(
    traffic: &BTreeSet<&'a str>,
    sites: impl IntoIterator<Item = &'a S<SiteSpec>>,
    agreements: impl IntoIterator<Item = &'a S<AgreementSpec>>,
) -> BTreeSet<&'a str> {
    let mut known = traffic.clone();
    known.extend(sites.into_iter().map(|s| s.value.host.value.as_str()));
    known.extend(
        agreements
            .into_iter()
            .map(|a| a.value.owner.org.value.as_str()),
    );
    known
}

/// The organisation of a network id (`ORG/LABEL`).
fn network_org(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

/// A group narrowed to the members in `traffic`; `None` when none is left.
fn narrow_group<'a>(
    g: &'a S<GroupSpec>,
    traffic: &BTreeSet<&str>,
) -> Option<Cow<'a, S<GroupSpec>>> {
    let keep = |m: &S<String>| traffic.contains(m.value.as_str());
    if g.value.members.iter().all(keep) {
        return Some(Cow::Borrowed(g));
    }
    if !g.value.members.iter().any(keep) {
        return None;
    }
    let mut owned = g.clone();
    owned.value.members.retain(keep);
    Some(Cow::Owned(owned))
}

/// A kept policy as its edge holds it: destinations narrowed to the kept
/// services, sources to the members in `traffic` (and the groups with a
/// member left, `live_groups`). `None` when it opens nothing or names no
/// source left: such a policy decides no flow from or to the edge's members
/// (a source outside `traffic` reaches none of them, allowed or not).
fn narrow_policy<'a>(
    p: &'a S<PolicySpec>,
    kept_services: &BTreeSet<&str>,
    traffic: &BTreeSet<&str>,
    live_groups: &BTreeSet<&str>,
) -> Option<Cow<'a, S<PolicySpec>>> {
    let to = |s: &S<String>| kept_services.contains(s.value.as_str());
    let org = |o: &S<String>| traffic.contains(o.value.as_str());
    let group = |g: &S<String>| live_groups.contains(g.value.as_str());
    let net = |n: &S<String>| traffic.contains(network_org(&n.value));
    let v = &p.value;
    if !v.to.services.iter().any(to) && v.to.tags.is_empty() {
        return None;
    }
    let mut p = Cow::Borrowed(p);
    if !v.to.services.iter().all(to) {
        p.to_mut().value.to.services.retain(to);
    }
    if !(v.from.orgs.iter().all(org)
        && v.from.groups.iter().all(group)
        && v.from.networks.iter().all(net))
    {
        let from = &mut p.to_mut().value.from;
        let had_networks = !from.networks.is_empty();
        from.orgs.retain(org);
        from.groups.retain(group);
        from.networks.retain(net);
        // Sources narrowed to networks are matched by network alone: with
        // none of them left, the policy matches no flow of these members.
        let no_orgs = from.orgs.is_empty() && from.groups.is_empty();
        if (no_orgs || had_networks) && from.networks.is_empty() {
            return None;
        }
    }
    Some(p)
}

/// An agreement's parties narrowed to the members in `traffic` and the live
/// groups (parties do not decide flows at an edge; its dates do).
fn narrow_agreement<'a>(
    a: &'a S<AgreementSpec>,
    traffic: &BTreeSet<&str>,
    live_groups: &BTreeSet<&str>,
) -> Cow<'a, S<AgreementSpec>> {
    let keep = |p: &S<String>| {
        traffic.contains(p.value.as_str()) || live_groups.contains(p.value.as_str())
    };
    if a.value.parties.iter().all(keep) {
        Cow::Borrowed(a)
    } else {
        let mut owned = a.clone();
        owned.value.parties.retain(keep);
        Cow::Owned(owned)
    }
}

impl EdgeSnapshot {
    /// Cut the snapshot of `edge` (`ORG/NAME`) from a valid federation.
    ///
    /// The simple form, one edge at a time (each call copies the whole
    /// document); [`Cutter`] cuts every edge's snapshot of a version with the
    /// same result, byte for byte.
    pub fn build(
        spec: &FederationSpec,
        fed: &Federation,
        edge: &str,
        version: u64,
    ) -> Result<Self, SnapshotError> {
        let e = fed
            .edge(edge)
            .ok_or_else(|| SnapshotError::UnknownEdge(edge.to_owned()))?;
        let local = e.org.clone();
        let plan = Plan::new(fed, &local, fed.services_of(&local), fed.policies.iter());
        let kept_services = plan.kept_services();
        let traffic = traffic(&local, &plan);
        let is_local = |o: &S<String>| o.value == local.as_str();

        let mut doc = spec.to_document();
        let live: BTreeSet<String> = doc
            .groups
            .iter()
            .filter(|g| narrow_group(g, &traffic).is_some())
            .map(|g| g.value.id.value.clone())
            .collect();
        let live_groups: BTreeSet<&str> = live.iter().map(String::as_str).collect();
        doc.sites
            .retain(|s| site_kept(&s.value, &local, e.site.as_ref()));
        doc.edges
            .retain(|x| is_local(&x.value.org) || plan.is_peer(&x.value.org.value));
        for x in &mut doc.edges {
            if !is_local(&x.value.org) {
                hide_edge(&mut x.value);
            }
        }
        doc.services.retain(|s| {
            kept_services.contains(format!("{}/{}", s.value.org.value, s.value.name.value).as_str())
        });
        for s in &mut doc.services {
            if !is_local(&s.value.org) {
                hide_service(&mut s.value);
            }
        }
        doc.policies = doc
            .policies
            .iter()
            .filter(|p| {
                plan.policies
                    .iter()
                    .any(|id| id.as_str() == p.value.id.value)
            })
            .filter_map(|p| narrow_policy(p, &kept_services, &traffic, &live_groups))
            .map(Cow::into_owned)
            .collect();
        let agreements: BTreeSet<String> = doc
            .policies
            .iter()
            .filter_map(|p| p.value.agreement.as_ref().map(|a| a.value.clone()))
            .collect();
        doc.agreements = doc
            .agreements
            .iter()
            .filter(|a| agreements.contains(&a.value.id.value))
            .map(|a| narrow_agreement(a, &traffic, &live_groups).into_owned())
            .collect();
        let named_groups: BTreeSet<String> = doc
            .policies
            .iter()
            .flat_map(|p| &p.value.from.groups)
            .chain(doc.agreements.iter().flat_map(|a| &a.value.parties))
            .map(|g| g.value.clone())
            .collect();
        doc.groups = doc
            .groups
            .iter()
            .filter(|g| named_groups.contains(&g.value.id.value))
            .filter_map(|g| narrow_group(g, &traffic))
            .map(Cow::into_owned)
            .collect();
        let known = known_orgs(&traffic, &doc.sites, &doc.agreements);
        doc.organisations
            .retain(|o| known.contains(o.value.id.value.as_str()));
        for o in &mut doc.organisations {
            let org = &mut o.value;
            if org.id.value != local.as_str() {
                let peer = plan.is_peer(&org.id.value);
                hide_org(org, peer);
            }
        }
        doc.networks
            .retain(|n| traffic.contains(n.value.org.value.as_str()));
        for n in &mut doc.networks {
            if !is_local(&n.value.org) {
                hide_network(&mut n.value);
            }
        }

        Ok(Self {
            format: SNAPSHOT_FORMAT,
            version,
            edge: edge.to_owned(),
            org: local.to_string(),
            digest: digest(&doc),
            document: doc,
        })
    }

    /// The wire form: compact JSON, as the control plane serves it.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain structs and vectors cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// For people: indented JSON (`fedctl snapshot`); reads back the same.
    pub fn to_json_pretty(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parse and check a snapshot's integrity (format and digest). Its content
    /// is checked by [`EdgeSnapshot::load`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let snap: Self = serde_json::from_slice(bytes)?;
        snap.check()?;
        Ok(snap)
    }

    /// Its format is this build's and its document matches its digest.
    pub fn check(&self) -> Result<(), SnapshotError> {
        if self.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::InvalidFormat { found: self.format });
        }
        let computed = digest(&self.document);
        if computed != self.digest {
            return Err(SnapshotError::InvalidDigest {
                expected: self.digest.clone(),
                computed,
            });
        }
        Ok(())
    }

    /// Build the edge's model from the snapshot, through the same validation
    /// as a whole document. `expected_edge` guards against a snapshot meant for
    /// another edge.
    pub fn load(
        &self,
        expected_edge: Option<&str>,
        now: Timestamp,
    ) -> Result<Federation, SnapshotError> {
        if let Some(expected) = expected_edge
            && expected != self.edge
        {
            return Err(SnapshotError::WrongEdge {
                expected: expected.to_owned(),
                found: self.edge.clone(),
            });
        }
        let spec = FederationSpec::from_document(FileId(0), self.document.clone());
        let Checked {
            federation,
            diagnostics,
        } = validate(&spec, &Scope::Edge(OrgId::new(&self.org)), now);
        federation.ok_or_else(|| {
            SnapshotError::InvalidContent(
                diagnostics
                    .into_iter()
                    .filter(Diagnostic::is_error)
                    .collect(),
            )
        })
    }
}

/// The document as [`DocumentSpec`] serialises it, borrowed from a
/// [`Cutter`]'s prepared items rather than copied per edge. The fields, their
/// order and their `skip_serializing_if` mirror [`DocumentSpec`]'s exactly;
/// `tests/snapshot_cutter.rs` checks the bytes against [`EdgeSnapshot::build`].
#[derive(Serialize)]
struct DocumentView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    federation: Option<&'a S<FederationMetaSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    organisations: Vec<&'a S<OrganisationSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    networks: Vec<&'a S<NetworkSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sites: Vec<&'a S<SiteSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    edges: Vec<&'a S<EdgeSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    services: Vec<&'a S<ServiceSpec>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<Cow<'a, S<GroupSpec>>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    agreements: Vec<Cow<'a, S<AgreementSpec>>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policies: Vec<Cow<'a, S<PolicySpec>>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    revoked_certificates: &'a [S<RevocationSpec>],
}

/// Every edge's snapshot of one version, fast: the result of
/// [`EdgeSnapshot::build`] for each edge, byte for byte, without copying the
/// document per edge.
///
/// - Every edge of one organisation at one site holds the same pruned
///   document: it is cut, digested and serialised once per such group
///   ([`Cutter::groups`], [`Cutter::cut`]); only the `edge` field differs
///   ([`SharedCut::snapshot_json`]).
/// - Other members' records, networks, edges and services are hidden once
///   per version, not once per edge; policies and items are found through
///   indexes instead of scans.
///
/// `Cutter` is `Sync`: a caller may cut groups on several threads.
pub struct Cutter<'f> {
    fed: &'f Federation,
    doc: DocumentSpec,
    /// Organisations as a non-peer and as a peer sees them.
    orgs_stranger: Vec<S<OrganisationSpec>>,
    orgs_peer: Vec<S<OrganisationSpec>>,
    networks_hidden: Vec<S<NetworkSpec>>,
    edges_hidden: Vec<S<EdgeSpec>>,
    services_hidden: Vec<S<ServiceSpec>>,
    /// Document indexes of each organisation, of the networks and edges of
    /// each organisation, and of each group.
    orgs_by_id: HashMap<String, Vec<usize>>,
    networks_by_org: HashMap<String, Vec<usize>>,
    edges_by_org: HashMap<String, Vec<usize>>,
    groups_by_id: HashMap<String, Vec<usize>>,
    /// Document indexes of each service (`ORG/NAME`) and policy id.
    services_by_id: HashMap<String, Vec<usize>>,
    policies_by_id: HashMap<String, Vec<usize>>,
    /// Model indexes of the services of each organisation, and of the
    /// policies from it or to one of its services (ascending).
    services_of: HashMap<&'f str, Vec<usize>>,
    policies_of: HashMap<&'f str, Vec<usize>>,
}

/// One group's pruned document, serialised: what every snapshot of the group
/// shares.
pub struct SharedCut {
    org: String,
    digest: String,
    /// The document's compact JSON, as digested and as it sits inside the
    /// snapshot's JSON.
    document: Arc<[u8]>,
}

fn index_by<T>(items: &[T], key: impl Fn(&T) -> String) -> HashMap<String, Vec<usize>> {
    let mut map: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        map.entry(key(item)).or_default().push(i);
    }
    map
}

/// The items of `items` at the ascending indexes gathered from `index` under `keys`.
fn gather<'a, 'k, T>(
    items: &'a [T],
    index: &HashMap<String, Vec<usize>>,
    keys: impl Iterator<Item = &'k str>,
) -> Vec<(usize, &'a T)> {
    let mut at: Vec<usize> = keys
        .filter_map(|k| index.get(k))
        .flatten()
        .copied()
        .collect();
    at.sort_unstable();
    at.dedup();
    at.into_iter().map(|i| (i, &items[i])).collect()
}

impl<'f> Cutter<'f> {
    /// Prepare to cut snapshots of `fed`, a valid federation, and of `spec`,
    /// its document.
    pub fn new(spec: &FederationSpec, fed: &'f Federation) -> Self {
        let doc = spec.to_document();
        let hidden = |f: fn(&mut S<OrganisationSpec>)| -> Vec<S<OrganisationSpec>> {
            doc.organisations
                .iter()
                .cloned()
                .map(|mut o| {
                    f(&mut o);
                    o
                })
                .collect()
        };
        let orgs_stranger = hidden(|o| hide_org(&mut o.value, false));
        let orgs_peer = hidden(|o| hide_org(&mut o.value, true));
        fn hide_all<T: Clone>(items: &[S<T>], f: fn(&mut T)) -> Vec<S<T>> {
            items
                .iter()
                .cloned()
                .map(|mut x| {
                    f(&mut x.value);
                    x
                })
                .collect()
        }
        let networks_hidden = hide_all(&doc.networks, hide_network);
        let edges_hidden = hide_all(&doc.edges, hide_edge);
        let services_hidden = hide_all(&doc.services, hide_service);
        let orgs_by_id = index_by(&doc.organisations, |o| o.value.id.value.clone());
        let networks_by_org = index_by(&doc.networks, |n| n.value.org.value.clone());
        let edges_by_org = index_by(&doc.edges, |e| e.value.org.value.clone());
        let groups_by_id = index_by(&doc.groups, |g| g.value.id.value.clone());
        let services_by_id = index_by(&doc.services, |s| {
            format!("{}/{}", s.value.org.value, s.value.name.value)
        });
        let policies_by_id = index_by(&doc.policies, |p| p.value.id.value.clone());
        let mut services_of: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, s) in fed.services.iter().enumerate() {
            services_of.entry(s.org.as_str()).or_default().push(i);
        }
        let mut policies_of: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, p) in fed.policies.iter().enumerate() {
            let owners = p.to.iter().filter_map(|s| fed.service(s.as_str()));
            for org in p.from.orgs.iter().chain(owners.map(|s| &s.org)) {
                let list = policies_of.entry(org.as_str()).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Self {
            fed,
            doc,
            orgs_stranger,
            orgs_peer,
            networks_hidden,
            edges_hidden,
            services_hidden,
            orgs_by_id,
            networks_by_org,
            edges_by_org,
            groups_by_id,
            services_by_id,
            policies_by_id,
            services_of,
            policies_of,
        }
    }

    /// The edges, grouped so that all the edges of a group hold the same
    /// document (same organisation, same site), in the federation's order.
    pub fn groups(&self) -> Vec<Vec<&'f Edge>> {
        let mut at: HashMap<(&OrgId, Option<&SiteId>), usize> = HashMap::new();
        let mut groups: Vec<Vec<&Edge>> = Vec::new();
        for e in &self.fed.edges {
            let i = *at.entry((&e.org, e.site.as_ref())).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[i].push(e);
        }
        groups
    }

    /// The document every edge of `edge`'s group holds.
    pub fn cut(&self, edge: &Edge) -> SharedCut {
        let fed = self.fed;
        let local = &edge.org;
        let none = Vec::new();
        let own = self.services_of.get(local.as_str()).unwrap_or(&none);
        let candidates = self.policies_of.get(local.as_str()).unwrap_or(&none);
        let plan = Plan::new(
            fed,
            local,
            own.iter().map(|&i| &fed.services[i]),
            candidates.iter().map(|&i| &fed.policies[i]),
        );
        let kept_services = plan.kept_services();
        let traffic = traffic(local, &plan);
        let is_local = |o: &S<String>| o.value == local.as_str();
        let doc = &self.doc;

        let narrowed_groups: Vec<Option<Cow<'_, S<GroupSpec>>>> = doc
            .groups
            .iter()
            .map(|g| narrow_group(g, &traffic))
            .collect();
        let live_groups: BTreeSet<&str> = doc
            .groups
            .iter()
            .zip(&narrowed_groups)
            .filter(|(_, n)| n.is_some())
            .map(|(g, _)| g.value.id.value.as_str())
            .collect();
        let sites: Vec<&S<SiteSpec>> = doc
            .sites
            .iter()
            .filter(|s| site_kept(&s.value, local, edge.site.as_ref()))
            .collect();
        let edge_orgs =
            std::iter::once(local.as_str()).chain(plan.peers.iter().map(|p| p.as_str()));
        let edges = gather(&doc.edges, &self.edges_by_org, edge_orgs)
            .into_iter()
            .map(|(i, x)| {
                if is_local(&x.value.org) {
                    x
                } else {
                    &self.edges_hidden[i]
                }
            })
            .collect();
        let services = gather(
            &doc.services,
            &self.services_by_id,
            kept_services.iter().copied(),
        )
        .into_iter()
        .map(|(i, s)| {
            if is_local(&s.value.org) {
                s
            } else {
                &self.services_hidden[i]
            }
        })
        .collect();
        let policies: Vec<Cow<'_, S<PolicySpec>>> = gather(
            &doc.policies,
            &self.policies_by_id,
            plan.policies.iter().map(|p| p.as_str()),
        )
        .into_iter()
        .filter_map(|(_, p)| narrow_policy(p, &kept_services, &traffic, &live_groups))
        .collect();
        let agreement_ids: BTreeSet<&str> = policies
            .iter()
            .filter_map(|p| p.value.agreement.as_ref().map(|a| a.value.as_str()))
            .collect();
        let agreements: Vec<Cow<'_, S<AgreementSpec>>> = doc
            .agreements
            .iter()
            .filter(|a| agreement_ids.contains(a.value.id.value.as_str()))
            .map(|a| narrow_agreement(a, &traffic, &live_groups))
            .collect();
        let named_groups: BTreeSet<&str> = policies
            .iter()
            .flat_map(|p| &p.value.from.groups)
            .chain(agreements.iter().flat_map(|a| &a.value.parties))
            .map(|g| g.value.as_str())
            .collect();
        let groups = gather(
            &narrowed_groups,
            &self.groups_by_id,
            named_groups.iter().copied(),
        )
        .into_iter()
        .filter_map(|(_, g)| g.clone())
        .collect();
        let known = known_orgs(
            &traffic,
            sites.iter().copied(),
            agreements.iter().map(|a| a.as_ref()),
        );
        let organisations = gather(&doc.organisations, &self.orgs_by_id, known.iter().copied())
            .into_iter()
            .map(|(i, o)| {
                if o.value.id.value == local.as_str() {
                    o
                } else if plan.is_peer(&o.value.id.value) {
                    &self.orgs_peer[i]
                } else {
                    &self.orgs_stranger[i]
                }
            })
            .collect();
        let networks = gather(
            &doc.networks,
            &self.networks_by_org,
            traffic.iter().copied(),
        )
        .into_iter()
        .map(|(i, n)| {
            if is_local(&n.value.org) {
                n
            } else {
                &self.networks_hidden[i]
            }
        })
        .collect();
        let view = DocumentView {
            federation: doc.federation.as_ref(),
            organisations,
            networks,
            sites,
            edges,
            services,
            groups,
            agreements,
            policies,
            revoked_certificates: &doc.revoked_certificates,
        };
        // Serialising plain structs and vectors cannot fail.
        let document = serde_json::to_vec(&view).unwrap_or_default();
        SharedCut {
            org: local.to_string(),
            digest: crate::hex::encode(&Sha256::digest(&document)),
            document: document.into(),
        }
    }

    /// The whole document the snapshots are cut from.
    pub fn into_document(self) -> DocumentSpec {
        self.doc
    }
}

impl SharedCut {
    /// The JSON of the snapshot of `edge` (one of the group's) at `version`:
    /// [`EdgeSnapshot::to_json`] of what [`EdgeSnapshot::build`] cuts.
    pub fn snapshot_json(&self, edge: &str, version: u64) -> Vec<u8> {
        let head = self.snapshot_head(edge, version);
        let mut out = Vec::with_capacity(head.len() + self.document.len() + 1);
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.document);
        out.push(b'}');
        out
    }

    /// The snapshot's JSON up to its document: [`SharedCut::snapshot_json`]
    /// is this, the document, and `}`.
    pub fn snapshot_head(&self, edge: &str, version: u64) -> String {
        // Strings serialise infallibly.
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
        format!(
            "{{\"format\":{SNAPSHOT_FORMAT},\"version\":{version},\"edge\":{},\"org\":{},\"digest\":{},\"document\":",
            quoted(edge),
            quoted(&self.org),
            quoted(&self.digest),
        )
    }

    pub fn org(&self) -> &str {
        &self.org
    }

    /// The SHA-256 (hex) of the document's JSON.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The document's JSON, shared.
    pub fn document(&self) -> Arc<[u8]> {
        self.document.clone()
    }

    /// The size of the shared document's JSON, in bytes.
    pub fn document_len(&self) -> usize {
        self.document.len()
    }
}
