//! Mutual TLS between edges: the TLS decisions are the federation's
//! ([`federation::mtls`]: TLS 1.3, ring, both sides chained to the CA,
//! identity by URI SAN); here the edge reads its files, speaks ALPN
//! `fedgate/1`, and checks a handshaken peer against its snapshot
//! ([`check_peer`]): a known edge of the organisation it names, valid, not
//! revoked, and the one it meant to reach. Nothing is trusted for where it
//! connects from.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use federation::identity::{Identity, PeerCert, peer_cert};
pub use federation::mtls::{Credentials, Material, server_name as peer_server_name};
use federation::wire::ALPN;
use jiff::Timestamp;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ServerConfig};

use crate::node::Node;

/// Read this party's certificate, key and the federation CA from PEM files.
pub fn load_material(cert: &Path, key: &Path, ca: &Path) -> anyhow::Result<Material> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).with_context(|| format!("cannot read {what} {}", p.display()))
    };
    Material::from_pem(
        &read(cert, "certificate")?,
        &read(key, "private key")?,
        &read(ca, "CA")?,
    )
    .with_context(|| {
        format!(
            "malformed TLS material ({}, {}, {})",
            cert.display(),
            key.display(),
            ca.display()
        )
    })
}

/// The overlay's listening side, with `own` (renewable).
pub fn server_config(own: &Arc<Credentials>) -> anyhow::Result<ServerConfig> {
    Ok(federation::mtls::server_config_with(own.clone(), ALPN)?)
}

/// The overlay's dialling side, with `own` (renewable).
pub fn client_config(own: &Arc<Credentials>) -> anyhow::Result<ClientConfig> {
    Ok(federation::mtls::client_config_with(own.clone(), ALPN)?)
}

/// Why a peer that completed the TLS handshake is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRefused {
    #[error("peer presented no certificate")]
    NoCertificate,
    #[error("peer certificate: {0}")]
    InvalidCertificate(#[from] federation::identity::InvalidCertificate),
    #[error("peer identity {0} is not an edge")]
    NotAnEdge(Identity),
    #[error("peer {0} is not an edge of this federation")]
    UnknownEdge(String),
    #[error("peer {edge} presented revoked certificate serial {serial}")]
    Revoked { edge: String, serial: String },
    #[error("expected edge {expected}, but the peer is {found}")]
    WrongPeer { expected: String, found: String },
}

impl PeerRefused {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoCertificate => "no-certificate",
            Self::InvalidCertificate(_) => "invalid-certificate",
            Self::NotAnEdge(_) => "not-an-edge",
            Self::UnknownEdge(_) => "unknown-edge",
            Self::Revoked { .. } => "revoked",
            Self::WrongPeer { .. } => "wrong-peer",
        }
    }
}

/// A verified peer edge.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `ORG/NAME`.
    pub edge: String,
    pub org: String,
    pub cert: PeerCert,
    /// The chain it presented, end entity first: checked again when the
    /// CA certificates trusted change ([`crate::enforce`]).
    pub chain: Vec<CertificateDer<'static>>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.edge)
    }
}

/// Check a handshaken peer against the snapshot: its URI SAN names a known
/// edge (of the organisation it claims), the certificate is in its validity
/// period and not revoked, and, when dialling, it is the edge we meant.
pub fn check_peer(
    node: &Node,
    certs: Option<&[CertificateDer<'_>]>,
    expected: Option<&str>,
    now: Timestamp,
) -> Result<Peer, PeerRefused> {
    let leaf = certs
        .and_then(|c| c.first())
        .ok_or(PeerRefused::NoCertificate)?;
    let cert = peer_cert(leaf.as_ref(), node.trust_domain())?;
    cert.check_validity(now)?;
    let Some(edge) = cert.identity.edge_id() else {
        return Err(PeerRefused::NotAnEdge(cert.identity.clone()));
    };
    let Some(known) = node.fed.edge(&edge) else {
        return Err(PeerRefused::UnknownEdge(edge));
    };
    if node.fed.is_revoked(&cert.serial) {
        return Err(PeerRefused::Revoked {
            edge,
            serial: cert.serial.clone(),
        });
    }
    if let Some(expected) = expected
        && expected != edge
    {
        return Err(PeerRefused::WrongPeer {
            expected: expected.to_owned(),
            found: edge,
        });
    }
    Ok(Peer {
        org: known.org.to_string(),
        edge,
        cert,
        chain: certs
            .unwrap_or_default()
            .iter()
            .map(|c| c.clone().into_owned())
            .collect(),
    })
}
