//! Mutual TLS as every Fedgate party speaks it: edges to edges, edges and
//! admins to the control plane.
//!
//! Decisions a caller makes, as in rustls's builder: TLS 1.3 only; the ring
//! provider; the ALPN protocol of the conversation (`fedgate/1` between edges,
//! `http/1.1` to the control plane); both sides present certificates chained
//! to the federation CA. Identities are URI SANs (SPIFFE), not DNS names, so
//! the client side verifies the server's chain, validity and key usage exactly
//! as a server verifies a client's (webpki), and the caller then reads the
//! URI identity ([`crate::identity::peer_cert`]) and checks it is the party it
//! meant to reach. Nothing is trusted for where it connects from.
//!
//! Pure: built from PEM bytes (rustls is sans-IO); callers read the files.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// Why TLS material or a configuration cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMaterial {
    #[error("malformed {what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("no certificate in the {what} PEM")]
    Empty { what: &'static str },
    #[error("CA certificate refused: {0}")]
    Ca(String),
    #[error("certificate and key do not match: {0}")]
    KeyMismatch(String),
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// A party's certificate chain and key, and the federation's CA.
pub struct Material {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl Material {
    /// From the PEM text of the certificate (chain), its key and the CA.
    pub fn from_pem(cert: &[u8], key: &[u8], ca: &[u8]) -> Result<Self, InvalidMaterial> {
        let pem = |what: &'static str| {
            move |e: rustls::pki_types::pem::Error| InvalidMaterial::Pem {
                what,
                reason: e.to_string(),
            }
        };
        let certs = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem("certificate"))?;
        if certs.is_empty() {
            return Err(InvalidMaterial::Empty {
                what: "certificate",
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(pem("private key"))?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca) {
            roots
                .add(c.map_err(pem("CA"))?)
                .map_err(|e| InvalidMaterial::Ca(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(InvalidMaterial::Empty { what: "CA" });
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

fn client_verifier(m: &Material) -> Result<Arc<dyn ClientCertVerifier>, InvalidMaterial> {
    WebPkiClientVerifier::builder_with_provider(m.roots.clone(), provider())
        .build()
        .map_err(|e| InvalidMaterial::Config(e.to_string()))
}

/// The listening side: requires a client certificate from the federation CA.
pub fn server_config(m: &Material, alpn: &[u8]) -> Result<ServerConfig, InvalidMaterial> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| InvalidMaterial::Config(e.to_string()))?
        .with_client_cert_verifier(client_verifier(m)?)
        .with_single_cert(m.certs.clone(), m.key.clone_key())
        .map_err(|e| InvalidMaterial::KeyMismatch(e.to_string()))?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// The connecting side: presents this party's certificate, verifies the
/// server's chain with [`PeerVerifier`]; the caller checks its identity.
pub fn client_config(m: &Material, alpn: &[u8]) -> Result<ClientConfig, InvalidMaterial> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| InvalidMaterial::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier(client_verifier(m)?)))
        .with_client_auth_cert(m.certs.clone(), m.key.clone_key())
        .map_err(|e| InvalidMaterial::KeyMismatch(e.to_string()))?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// The name sent in SNI; not used for verification.
pub fn server_name() -> ServerName<'static> {
    // A constant, valid DNS name: the conversion cannot fail.
    ServerName::try_from("peer.fedgate.invalid").expect("a valid DNS name")
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
