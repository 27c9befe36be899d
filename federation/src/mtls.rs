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

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, ResolvesClientCert, Resumption,
    Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
    WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, NamedGroup, RootCertStore,
    ServerConfig, SignatureScheme,
};

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

/// Why material read to replace the material in use was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the certificate carries no Fedgate identity: {0}")]
    NoIdentity(#[from] crate::identity::InvalidCertificate),
    #[error("it names {found}, not {in_use} (the identity in use)")]
    OtherIdentity {
        found: crate::identity::Identity,
        in_use: crate::identity::Identity,
    },
    #[error("the certificate is not valid now under the CA certificates given: {0}")]
    NotValidNow(InvalidMaterial),
}

/// A party's certificate chain and key, and the federation's CA.
pub struct Material {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl Material {
    /// Check this material, read to replace `in_use` (the party's own
    /// certificate of trust domain `trust_domain`), as peers will check it:
    /// its certificate names the same identity and is valid at `now` under
    /// this material's own CA certificates. What its certificate says.
    pub fn replacing(
        &self,
        in_use: &crate::identity::PeerCert,
        trust_domain: &str,
        now: UnixTime,
    ) -> Result<crate::identity::PeerCert, Refused> {
        let found = crate::identity::peer_cert(self.leaf().as_ref(), trust_domain)?;
        if found.identity != in_use.identity {
            return Err(Refused::OtherIdentity {
                found: found.identity,
                in_use: in_use.identity.clone(),
            });
        }
        self.verify_chain(now).map_err(Refused::NotValidNow)?;
        Ok(found)
    }

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

impl Material {
    /// The end-entity certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.certs[0]
    }

    /// Whether the certificate chains to the CA and is valid at `now`, as a
    /// peer would check it.
    pub fn verify_chain(&self, now: UnixTime) -> Result<(), InvalidMaterial> {
        client_verifier(self)?
            .verify_client_cert(&self.certs[0], &self.certs[1..], now)
            .map(|_| ())
            .map_err(|e| InvalidMaterial::Ca(e.to_string()))
    }
}

/// This party's credentials as its handshakes use them: the certificate
/// and key it presents, and the CA certificates it trusts (the federation
/// CA; during a CA rollover, the old and the new). Replaceable while it runs
/// ([`Credentials::replace`]: a renewed certificate, a new CA bundle): every
/// handshake from then on uses the new ones; connections already up keep
/// theirs (the caller re-checks their peers, [`Credentials::trusts`]).
///
/// It also keeps the TLS sessions its configurations resume, and forgets
/// them on a replacement: a resumed session carries the certificates of the
/// full handshake it came from, so a peer would otherwise go on seeing the
/// old certificate (and refuse it once its serial is revoked), and a peer
/// whose CA is no longer trusted could resume past the check.
#[derive(Debug)]
pub struct Credentials {
    key: RwLock<Arc<CertifiedKey>>,
    trust: RwLock<Arc<dyn ClientCertVerifier>>,
    client_sessions: Arc<Sessions<ClientSessionMemoryCache>>,
    server_sessions: Arc<Sessions<ServerSessionMemoryCache>>,
}

/// Sessions kept for resumption (as many as rustls keeps by default).
const SESSIONS: usize = 256;

impl Credentials {
    pub fn new(m: &Material) -> Result<Arc<Self>, InvalidMaterial> {
        Ok(Arc::new(Self {
            key: RwLock::new(certified(m)?),
            trust: RwLock::new(client_verifier(m)?),
            client_sessions: Arc::new(Sessions::new(|| {
                Arc::new(ClientSessionMemoryCache::new(SESSIONS))
            })),
            server_sessions: Arc::new(Sessions::new(|| ServerSessionMemoryCache::new(SESSIONS))),
        }))
    }

    /// Present `m`'s certificate and key, and trust `m`'s CA certificates,
    /// from now on, and resume no session made before (refused, and
    /// nothing changed, if the key does not match).
    pub fn replace(&self, m: &Material) -> Result<(), InvalidMaterial> {
        let key = certified(m)?;
        let trust = client_verifier(m)?;
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = key;
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) = trust;
        self.client_sessions.forget();
        self.server_sessions.forget();
        Ok(())
    }

    /// Whether a peer's chain (end entity first), handshaken before, is
    /// still trusted now: chained to a CA certificate trusted now, valid
    /// at `now`.
    pub fn trusts(
        &self,
        chain: &[CertificateDer<'static>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let (leaf, rest) = chain
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        self.verifier().verify_client_cert(leaf, rest, now)?;
        Ok(())
    }

    /// Why a peer's chain, handshaken before, is not trusted at `now`, if
    /// so: `expired` (or not yet valid), or `untrusted` (no CA certificate
    /// trusted now issued it).
    pub fn distrusts(
        &self,
        chain: &[CertificateDer<'static>],
        now: UnixTime,
    ) -> Option<&'static str> {
        match self.trusts(chain, now) {
            Ok(()) => None,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. }
                | rustls::CertificateError::NotValidYet
                | rustls::CertificateError::NotValidYetContext { .. },
            )) => Some("expired"),
            Err(_) => Some("untrusted"),
        }
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.key.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.trust.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Client certificates are checked against the CA certificates trusted now.
impl ClientCertVerifier for Credentials {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would borrow from a replaceable verifier; they are
        // optional in TLS 1.3, and no Fedgate party needs them to choose
        // its certificate (it has one).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}

/// A session store that can be emptied at once (by a new one in its place).
struct Sessions<T> {
    store: RwLock<Arc<T>>,
    fresh: fn() -> Arc<T>,
}

impl<T> std::fmt::Debug for Sessions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

impl<T> Sessions<T> {
    fn new(fresh: fn() -> Arc<T>) -> Self {
        Self {
            store: RwLock::new(fresh()),
            fresh,
        }
    }

    fn current(&self) -> Arc<T> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn forget(&self) {
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = (self.fresh)();
    }
}

impl ClientSessionStore for Sessions<ClientSessionMemoryCache> {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.current().set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.current().kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.current().set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.current().tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.current().remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.current().insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.current().take_tls13_ticket(server_name)
    }
}

impl StoresServerSessions for Sessions<ServerSessionMemoryCache> {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.current().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.current().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.current().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

fn certified(m: &Material) -> Result<Arc<CertifiedKey>, InvalidMaterial> {
    CertifiedKey::from_der(m.certs.clone(), m.key.clone_key(), &provider())
        .map(Arc::new)
        .map_err(|e| InvalidMaterial::KeyMismatch(e.to_string()))
}

impl ResolvesServerCert for Credentials {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for Credentials {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The listening side: requires a client certificate from the federation CA.
pub fn server_config(m: &Material, alpn: &[u8]) -> Result<ServerConfig, InvalidMaterial> {
    server_config_with(Credentials::new(m)?, alpn)
}

/// As [`server_config`], with `own` (which may be replaced).
pub fn server_config_with(
    own: Arc<Credentials>,
    alpn: &[u8],
) -> Result<ServerConfig, InvalidMaterial> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| InvalidMaterial::Config(e.to_string()))?
        .with_client_cert_verifier(own.clone())
        .with_cert_resolver(own.clone());
    cfg.session_storage = own.server_sessions.clone();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// The connecting side: presents this party's certificate, verifies the
/// server's chain with [`PeerVerifier`]; the caller checks its identity.
pub fn client_config(m: &Material, alpn: &[u8]) -> Result<ClientConfig, InvalidMaterial> {
    client_config_with(Credentials::new(m)?, alpn)
}

/// As [`client_config`], with `own` (which may be replaced).
pub fn client_config_with(
    own: Arc<Credentials>,
    alpn: &[u8],
) -> Result<ClientConfig, InvalidMaterial> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| InvalidMaterial::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier(own.clone())))
        .with_client_cert_resolver(own.clone());
    cfg.resumption = Resumption::store(own.client_sessions.clone());
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
/// because identities are URI SANs; the caller checks the identity after
/// the handshake (the edge with `proxy::tls::check_peer`).
#[derive(Debug)]
struct PeerVerifier(Arc<Credentials>);

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

/// When files polled for replacement (a certificate, its key, the CA
/// certificates) have changed, and settled: a change is reported once the
/// files' stamps (what the caller reads of each: modification time and
/// length) have stayed the same for one poll, so that files being written
/// are read once whole, and a set replaced one file at a time is read as
/// one change.
#[derive(Debug, Clone)]
pub struct Settled<S, const N: usize> {
    last: [S; N],
    seen: [S; N],
}

impl<S: PartialEq + Clone, const N: usize> Settled<S, N> {
    /// Start from the stamps of the files in use.
    pub fn new(in_use: [S; N]) -> Self {
        Self {
            last: in_use.clone(),
            seen: in_use,
        }
    }

    /// The stamps read now: which files differ from those last reported,
    /// once a change has settled; `None` while nothing changed or a change
    /// is still under way.
    pub fn poll(&mut self, now: [S; N]) -> Option<[bool; N]> {
        if now != self.seen {
            self.seen = now;
            return None;
        }
        if now == self.last {
            return None;
        }
        let changed = std::array::from_fn(|i| now[i] != self.last[i]);
        self.last = now;
        Some(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::Settled;

    #[test]
    fn a_change_is_reported_once_it_has_settled_for_one_poll() {
        let mut files = Settled::new([1, 10, 100]);
        assert_eq!(files.poll([1, 10, 100]), None, "nothing changed");
        assert_eq!(files.poll([2, 10, 100]), None, "the certificate changed");
        assert_eq!(files.poll([2, 11, 100]), None, "then its key");
        assert_eq!(
            files.poll([2, 11, 100]),
            Some([true, true, false]),
            "both, once settled"
        );
        assert_eq!(files.poll([2, 11, 100]), None, "reported once");
        assert_eq!(files.poll([2, 11, 101]), None);
        assert_eq!(files.poll([2, 11, 101]), Some([false, false, true]));
        // Changed and changed back before it settled: nothing to read.
        assert_eq!(files.poll([3, 11, 101]), None);
        assert_eq!(files.poll([2, 11, 101]), None);
        assert_eq!(files.poll([2, 11, 101]), None);
    }
}
