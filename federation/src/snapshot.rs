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

use std::collections::BTreeSet;

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
    let hash = Sha256::digest(&json);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl EdgeSnapshot {
    /// Cut the snapshot of `edge` (`ORG/NAME`) from a valid federation.
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
        let own_services: BTreeSet<&ServiceId> = fed.services_of(&local).map(|s| &s.id).collect();
        let mut reachable: BTreeSet<&ServiceId> = BTreeSet::new();
        let mut peers: BTreeSet<&OrgId> = BTreeSet::new();
        let mut policies: BTreeSet<&PolicyId> = BTreeSet::new();
        for p in &fed.policies {
            let from_local = p.from.orgs.contains(&local);
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
                        && svc.org != local
                    {
                        reachable.insert(&svc.id);
                        peers.insert(&svc.org);
                    }
                }
            }
            if to_local {
                peers.extend(p.from.orgs.iter().filter(|o| **o != local));
            }
        }
        let kept_services: BTreeSet<&str> = own_services
            .iter()
            .chain(reachable.iter())
            .map(|s| s.as_str())
            .collect();
        let is_local = |o: &S<String>| o.value == local.as_str();
        let is_peer = |o: &str| peers.iter().any(|p| p.as_str() == o);

        let mut doc = spec.to_document();
        for o in &mut doc.organisations {
            let org = &mut o.value;
            if org.id.value != local.as_str() {
                org.contacts.clear();
                org.dns.upstreams.clear();
                if !is_peer(&org.id.value) {
                    org.dns.zones.clear();
                }
            }
        }
        for n in &mut doc.networks {
            if !is_local(&n.value.org) {
                n.value.cidrs.clear();
                n.value.description = None;
            }
        }
        doc.sites.retain(|s| {
            is_local(&s.value.host)
                || e.site
                    .as_ref()
                    .is_some_and(|id| id.as_str() == s.value.id.value)
                || s.value
                    .networks
                    .iter()
                    .any(|n| n.value.split('/').next() == Some(local.as_str()))
        });
        doc.edges
            .retain(|x| is_local(&x.value.org) || is_peer(&x.value.org.value));
        for x in &mut doc.edges {
            if !is_local(&x.value.org) {
                x.value.ingress = IngressSpec::default();
                x.value.site = None;
                x.value.dns = None;
            }
        }
        doc.services.retain(|s| {
            kept_services.contains(format!("{}/{}", s.value.org.value, s.value.name.value).as_str())
        });
        for s in &mut doc.services {
            if !is_local(&s.value.org) {
                s.value.address = None;
                s.value.description = None;
                s.value.dns_internal = None;
            }
        }
        doc.policies
            .retain(|p| policies.iter().any(|id| id.as_str() == p.value.id.value));
        for p in &mut doc.policies {
            p.value
                .to
                .services
                .retain(|s| kept_services.contains(s.value.as_str()));
        }
        doc.policies
            .retain(|p| !(p.value.to.services.is_empty() && p.value.to.tags.is_empty()));
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
