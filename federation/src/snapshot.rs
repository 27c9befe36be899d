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
//!   agreements and groups;
//! - other members' records and network labels (no ranges, contacts or
//!   resolvers), and the revoked certificate serials.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(doc: &DocumentSpec) -> String {
    // Serialising plain structs and vectors cannot fail.
    let json = serde_json::to_vec(doc).unwrap_or_default();
    hex(&Sha256::digest(&json))
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

/// A policy with nothing left to open once pruned is dropped.
fn policy_targets_nothing(p: &PolicySpec) -> bool {
    p.to.services.is_empty() && p.to.tags.is_empty()
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
        let is_local = |o: &S<String>| o.value == local.as_str();

        let mut doc = spec.to_document();
        for o in &mut doc.organisations {
            let org = &mut o.value;
            if org.id.value != local.as_str() {
                let peer = plan.is_peer(&org.id.value);
                hide_org(org, peer);
            }
        }
        for n in &mut doc.networks {
            if !is_local(&n.value.org) {
                hide_network(&mut n.value);
            }
        }
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
        doc.policies.retain(|p| {
            plan.policies
                .iter()
                .any(|id| id.as_str() == p.value.id.value)
        });
        for p in &mut doc.policies {
            p.value
                .to
                .services
                .retain(|s| kept_services.contains(s.value.as_str()));
        }
        doc.policies.retain(|p| !policy_targets_nothing(&p.value));
        let agreements: BTreeSet<String> = doc
            .policies
            .iter()
            .filter_map(|p| p.value.agreement.as_ref().map(|a| a.value.clone()))
            .collect();
        doc.agreements
            .retain(|a| agreements.contains(&a.value.id.value));

        Ok(Self {
            format: SNAPSHOT_FORMAT,
            version,
            edge: edge.to_owned(),
            org: local.to_string(),
            digest: digest(&doc),
            document: doc,
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain structs and vectors cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parse and check a snapshot's integrity (format and digest). Its content
    /// is checked by [`EdgeSnapshot::load`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let snap: Self = serde_json::from_slice(bytes)?;
        if snap.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::InvalidFormat { found: snap.format });
        }
        let computed = digest(&snap.document);
        if computed != snap.digest {
            return Err(SnapshotError::InvalidDigest {
                expected: snap.digest,
                computed,
            });
        }
        Ok(snap)
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
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    groups: &'a [S<GroupSpec>],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    agreements: Vec<&'a S<AgreementSpec>>,
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
    /// Document indexes of the edges of each organisation.
    edges_by_org: HashMap<String, Vec<usize>>,
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
    /// The document's pretty JSON, indented one level (as it sits inside the
    /// snapshot's pretty JSON).
    document: Vec<u8>,
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
        let edges_by_org = index_by(&doc.edges, |e| e.value.org.value.clone());
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
            edges_by_org,
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
        let is_local = |o: &S<String>| o.value == local.as_str();
        let doc = &self.doc;

        let organisations = doc
            .organisations
            .iter()
            .enumerate()
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
        let networks = doc
            .networks
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if is_local(&n.value.org) {
                    n
                } else {
                    &self.networks_hidden[i]
                }
            })
            .collect();
        let sites = doc
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
        .map(|(_, p)| {
            let keep = |s: &S<String>| kept_services.contains(s.value.as_str());
            if p.value.to.services.iter().all(keep) {
                Cow::Borrowed(p)
            } else {
                let mut owned = p.clone();
                owned.value.to.services.retain(keep);
                Cow::Owned(owned)
            }
        })
        .filter(|p| !policy_targets_nothing(&p.value))
        .collect();
        let agreement_ids: BTreeSet<&str> = policies
            .iter()
            .filter_map(|p| p.value.agreement.as_ref().map(|a| a.value.as_str()))
            .collect();
        let agreements = doc
            .agreements
            .iter()
            .filter(|a| agreement_ids.contains(a.value.id.value.as_str()))
            .collect();
        let view = DocumentView {
            federation: doc.federation.as_ref(),
            organisations,
            networks,
            sites,
            edges,
            services,
            groups: &doc.groups,
            agreements,
            policies,
            revoked_certificates: &doc.revoked_certificates,
        };
        // Serialising plain structs and vectors cannot fail.
        let compact = serde_json::to_vec(&view).unwrap_or_default();
        let pretty = serde_json::to_vec_pretty(&view).unwrap_or_default();
        // JSON strings hold no raw newline: every newline is layout.
        let mut document = Vec::with_capacity(pretty.len() + pretty.len() / 8);
        for &b in &pretty {
            document.push(b);
            if b == b'\n' {
                document.extend_from_slice(b"  ");
            }
        }
        SharedCut {
            org: local.to_string(),
            digest: hex(&Sha256::digest(&compact)),
            document,
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
        // Strings serialise infallibly.
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let head = format!(
            "{{\n  \"format\": {SNAPSHOT_FORMAT},\n  \"version\": {version},\n  \"edge\": {},\n  \"org\": {},\n  \"digest\": {},\n  \"document\": ",
            quoted(edge),
            quoted(&self.org),
            quoted(&self.digest),
        );
        let mut out = Vec::with_capacity(head.len() + self.document.len() + 2);
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.document);
        out.extend_from_slice(b"\n}");
        out
    }

    /// The size of the shared document's JSON, in bytes.
    pub fn document_len(&self) -> usize {
        self.document.len()
    }
}
