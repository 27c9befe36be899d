//! Mutual TLS between edges.
//!
//! Decisions a caller makes, as in rustls's builder: TLS 1.3 only; ALPN
//! `fedgate/1`; the ring provider; both sides present certificates chained to
//! the federation CA. Identities are URI SANs (SPIFFE), not DNS names, so the
//! client side verifies the server's chain, validity and key usage exactly as
//! the server verifies a client's (webpki), and then checks the URI identity
//! against the edge it meant to reach ([`check_peer`]). Nothing is trusted for
//! where it connects from.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use federation::identity::{Identity, PeerCert, peer_cert};
use federation::wire::ALPN;
use jiff::Timestamp;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::node::Node;

/// This edge's certificate chain, key and the federation's CA.
pub struct Material {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl Material {
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> anyhow::Result<Self> {
        let certs = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("cannot read certificate {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("malformed certificate {}", cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("cannot read private key {}", key.display()))?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("cannot read CA {}", ca.display()))?
        {
            roots
                .add(c.with_context(|| format!("malformed CA {}", ca.display()))?)
                .context("CA certificate refused")?;
        }
        Ok(Self {
            certs,
            key,
            roots: Arc::new(roots),
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_verifier(m: &Material) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    WebPkiClientVerifier::builder_with_provider(m.roots.clone(), provider())
        .build()
        .map_err(|e| anyhow!("cannot build the certificate verifier: {e}"))
}

/// The listening side: requires a client certificate from the federation CA.
pub fn server_config(m: &Material) -> anyhow::Result<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_verifier(m)?)
        .with_single_cert(m.certs.clone(), m.key.clone_key())
        .context("certificate and key do not match")?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The connecting side: presents this edge's certificate, verifies the
/// peer's chain with [`PeerVerifier`].
pub fn client_config(m: &Material) -> anyhow::Result<ClientConfig> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier(client_verifier(m)?)))
        .with_client_auth_cert(m.certs.clone(), m.key.clone_key())
        .context("certificate and key do not match")?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The name sent in SNI to peers; not used for verification.
pub fn peer_server_name() -> ServerName<'static> {
    ServerName::try_from("edge.fedgate.invalid").expect("a valid DNS name")
}

/// Verifies a server's certificate as webpki verifies a client's: chain to
/// the federation CA, validity, signatures. The DNS name is not checked,
/// because identities are URI SANs; [`check_peer`] checks that after the
/// handshake.
#[derive(Debug)]
struct PeerVerifier(Arc<dyn ClientCertVerifier>);

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
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
    })
}
