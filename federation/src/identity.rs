//! Who a peer is: the SPIFFE ID in its certificate's URI SAN.
//!
//! Every edge, admin and control-plane replica holds an X.509 certificate
//! with exactly one URI SAN naming it (ARCHITECTURE.md, principle 1):
//!
//! ```text
//! spiffe://<trust_domain>/org/<org>/edge/<name>     an edge
//! spiffe://<trust_domain>/org/<org>/admin/<name>    an admin of one organisation
//! spiffe://<trust_domain>/federation/admin/<name>   a federation admin (membership, groups, agreements)
//! spiffe://<trust_domain>/control/<name>            a control-plane replica
//! ```
//!
//! [`peer_cert`] reads that identity, the serial (to match revocations), the
//! validity window and the fingerprint from a certificate's DER. It does not
//! verify the chain: call it on a certificate the TLS handshake has already
//! verified against the federation's CA. Pure: no I/O, and `now` is passed in.

use std::fmt;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

use crate::validate::normalise_serial;

/// The holder named by a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Edge {
        org: String,
        name: String,
    },
    Admin {
        org: String,
        name: String,
    },
    /// Administers the federation itself: membership, groups, agreements.
    FederationAdmin {
        name: String,
    },
    Control {
        name: String,
    },
}

/// A string that is not a Fedgate identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidIdentity {
    #[error("`{uri}` is not a SPIFFE ID: it must start with `spiffe://`")]
    Scheme { uri: String },
    #[error("`{uri}` belongs to trust domain `{found}`, not this federation's `{expected}`")]
    TrustDomain {
        uri: String,
        found: String,
        expected: String,
    },
    #[error(
        "`{uri}` names no Fedgate identity: the path must be /org/ORG/edge/NAME, /org/ORG/admin/NAME, /federation/admin/NAME or /control/NAME"
    )]
    Path { uri: String },
    #[error(
        "`{label}` is not a valid {what}: {reason} (a label is 1-63 characters of a-z, 0-9 and `-`, not starting or ending with `-`)"
    )]
    Label {
        label: String,
        /// `organisation` or `name`.
        what: &'static str,
        reason: &'static str,
    },
    #[error("`{id}` is not an edge: write ORG/NAME, e.g. `dpft/core`")]
    EdgeId { id: String },
}

/// A certificate that does not carry a usable Fedgate identity, or is not
/// valid at the time asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCertificate {
    #[error("not a DER X.509 certificate: {reason}")]
    Der { reason: String },
    #[error("{count} unexpected byte(s) after the certificate")]
    TrailingBytes { count: usize },
    #[error("the subject alternative names cannot be read: {reason}")]
    SubjectAltName { reason: String },
    #[error(
        "the certificate has no URI SAN; a Fedgate identity is exactly one `spiffe://` URI SAN"
    )]
    NoUri,
    #[error(
        "the certificate has {} URI SANs ({}); a Fedgate identity is exactly one",
        uris.len(),
        uris.join(", ")
    )]
    SeveralUris { uris: Vec<String> },
    #[error(transparent)]
    Identity(#[from] InvalidIdentity),
    #[error("the certificate is a CA (basicConstraints CA:TRUE), not a holder's identity")]
    Ca,
    #[error("serial `{serial}` is not a certificate serial of 1-20 bytes")]
    Serial { serial: String },
    #[error("the certificate's validity time {seconds} (Unix seconds) is out of range")]
    Time { seconds: i64 },
    #[error("the certificate is not valid until {not_before} (it is now {now})")]
    NotYetValid {
        not_before: Timestamp,
        now: Timestamp,
    },
    #[error("the certificate expired at {not_after} (it is now {now})")]
    Expired {
        not_after: Timestamp,
        now: Timestamp,
    },
}

/// What a verified peer certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    pub identity: Identity,
    /// Lower-case hex, no colons, no leading zeros (as
    /// [`normalise_serial`] writes revoked serials).
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
}

/// The longest string quoted back in an error; the rest is elided.
const SHOWN: usize = 200;

fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

fn check_label(label: &str, what: &'static str) -> Result<(), InvalidIdentity> {
    let reason = if label.is_empty() {
        Some("it is empty")
    } else if label.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("it has a character other than a-z, 0-9 and `-`")
    } else if label.starts_with('-') || label.ends_with('-') {
        Some("it starts or ends with `-`")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(InvalidIdentity::Label {
            label: shown(label),
            what,
            reason,
        }),
    }
}

impl Identity {
    /// An edge, with its labels checked.
    pub fn edge(org: &str, name: &str) -> Result<Self, InvalidIdentity> {
        check_label(org, "organisation")?;
        check_label(name, "name")?;
        Ok(Self::Edge {
            org: org.to_owned(),
            name: name.to_owned(),
        })
    }

    /// An admin, with its labels checked.
    pub fn admin(org: &str, name: &str) -> Result<Self, InvalidIdentity> {
        check_label(org, "organisation")?;
        check_label(name, "name")?;
        Ok(Self::Admin {
            org: org.to_owned(),
            name: name.to_owned(),
        })
    }

    /// A federation admin, with its label checked.
    pub fn federation_admin(name: &str) -> Result<Self, InvalidIdentity> {
        check_label(name, "name")?;
        Ok(Self::FederationAdmin {
            name: name.to_owned(),
        })
    }

    /// A control-plane replica, with its label checked.
    pub fn control(name: &str) -> Result<Self, InvalidIdentity> {
        check_label(name, "name")?;
        Ok(Self::Control {
            name: name.to_owned(),
        })
    }

    /// An edge from its `ORG/NAME` id.
    pub fn from_edge_id(id: &str) -> Result<Self, InvalidIdentity> {
        let (org, name) = id
            .split_once('/')
            .ok_or_else(|| InvalidIdentity::EdgeId { id: shown(id) })?;
        Self::edge(org, name)
    }

    /// The SPIFFE ID, as it goes in the certificate's URI SAN.
    pub fn uri(&self, trust_domain: &str) -> String {
        match self {
            Self::Edge { org, name } => format!("spiffe://{trust_domain}/org/{org}/edge/{name}"),
            Self::Admin { org, name } => format!("spiffe://{trust_domain}/org/{org}/admin/{name}"),
            Self::FederationAdmin { name } => {
                format!("spiffe://{trust_domain}/federation/admin/{name}")
            }
            Self::Control { name } => format!("spiffe://{trust_domain}/control/{name}"),
        }
    }

    /// Read a SPIFFE ID of `trust_domain`.
    pub fn from_uri(uri: &str, trust_domain: &str) -> Result<Self, InvalidIdentity> {
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| InvalidIdentity::Scheme { uri: shown(uri) })?;
        let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        if domain != trust_domain {
            return Err(InvalidIdentity::TrustDomain {
                uri: shown(uri),
                found: shown(domain),
                expected: trust_domain.to_owned(),
            });
        }
        let segments: Vec<&str> = path.split('/').collect();
        match segments.as_slice() {
            ["org", org, "edge", name] => Self::edge(org, name),
            ["org", org, "admin", name] => Self::admin(org, name),
            ["federation", "admin", name] => Self::federation_admin(name),
            ["control", name] => Self::control(name),
            _ => Err(InvalidIdentity::Path { uri: shown(uri) }),
        }
    }

    /// `ORG/NAME` for an edge; `None` for anyone else.
    pub fn edge_id(&self) -> Option<String> {
        match self {
            Self::Edge { org, name } => Some(format!("{org}/{name}")),
            Self::Admin { .. } | Self::FederationAdmin { .. } | Self::Control { .. } => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Edge { org, name } => write!(f, "edge {org}/{name}"),
            Self::Admin { org, name } => write!(f, "admin {org}/{name}"),
            Self::FederationAdmin { name } => write!(f, "federation admin {name}"),
            Self::Control { name } => write!(f, "control {name}"),
        }
    }
}

fn timestamp(seconds: i64) -> Result<Timestamp, InvalidCertificate> {
    Timestamp::from_second(seconds).map_err(|_| InvalidCertificate::Time { seconds })
}

/// The trust domain a certificate's SPIFFE ID names: how a party learns its
/// own federation from its own certificate.
pub fn trust_domain_of(der: &[u8]) -> Result<String, InvalidCertificate> {
    // No trust domain is empty, so reading against "" always reports the
    // one found (or an earlier problem with the certificate).
    match peer_cert(der, "") {
        Err(InvalidCertificate::Identity(InvalidIdentity::TrustDomain { found, .. })) => Ok(found),
        Err(e) => Err(e),
        Ok(_) => Err(InvalidCertificate::Identity(InvalidIdentity::Path {
            uri: String::new(),
        })),
    }
}

/// Read the identity and particulars of a DER certificate from a peer.
///
/// The certificate must carry exactly one URI SAN, a SPIFFE ID of
/// `trust_domain` naming an edge, admin or control-plane replica, and must
/// not be a CA. The signature, chain and validity are not checked here (see
/// [`PeerCert::check_validity`]).
pub fn peer_cert(der: &[u8], trust_domain: &str) -> Result<PeerCert, InvalidCertificate> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| InvalidCertificate::Der {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(InvalidCertificate::TrailingBytes { count: rest.len() });
    }
    let ca = cert
        .basic_constraints()
        .map_err(|e| InvalidCertificate::Der {
            reason: format!("basic constraints: {e}"),
        })?
        .is_some_and(|bc| bc.value.ca);
    if ca {
        return Err(InvalidCertificate::Ca);
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| InvalidCertificate::SubjectAltName {
            reason: e.to_string(),
        })?;
    let mut uris = Vec::new();
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        match name {
            GeneralName::URI(uri) => uris.push(*uri),
            GeneralName::Invalid(tag, _) => {
                return Err(InvalidCertificate::SubjectAltName {
                    reason: format!("a malformed entry (tag {})", tag.0),
                });
            }
            _ => {}
        }
    }
    let uri = match uris.as_slice() {
        [] => return Err(InvalidCertificate::NoUri),
        [one] => *one,
        several => {
            return Err(InvalidCertificate::SeveralUris {
                uris: several.iter().take(8).map(|u| shown(u)).collect(),
            });
        }
    };
    let identity = Identity::from_uri(uri, trust_domain)?;

    // DER writes a positive serial with a leading zero byte when its top bit
    // is set; drop leading zeros before the 20-byte limit applies.
    let raw = cert.raw_serial();
    let significant = &raw[raw.iter().position(|b| *b != 0).unwrap_or(raw.len())..];
    let serial = if raw.is_empty() {
        None
    } else if significant.is_empty() {
        Some("0".to_owned())
    } else {
        normalise_serial(&crate::hex::encode(significant))
    }
    .ok_or_else(|| InvalidCertificate::Serial {
        serial: shown(&crate::hex::encode(raw)),
    })?;

    let validity = cert.validity();
    Ok(PeerCert {
        identity,
        serial,
        not_before: timestamp(validity.not_before.timestamp())?,
        not_after: timestamp(validity.not_after.timestamp())?,
        fingerprint: crate::hex::encode(&Sha256::digest(der)),
    })
}

impl PeerCert {
    /// Whether the certificate is valid at `now` (both ends inclusive, as
    /// X.509 has it).
    pub fn check_validity(&self, now: Timestamp) -> Result<(), InvalidCertificate> {
        if now < self.not_before {
            Err(InvalidCertificate::NotYetValid {
                not_before: self.not_before,
                now,
            })
        } else if now > self.not_after {
            Err(InvalidCertificate::Expired {
                not_after: self.not_after,
                now,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    };

    use super::*;

    const TD: &str = "south-east.fedgate.example";

    struct TestCa {
        issuer: Issuer<'static, KeyPair>,
    }

    impl TestCa {
        fn new() -> Self {
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, "test ca");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let key = KeyPair::generate().unwrap();
            Self {
                issuer: Issuer::new(params, key),
            }
        }

        /// A leaf with these URI SANs (plus a DNS SAN), valid between the
        /// two Unix times, with serial 0x00ff10.
        fn leaf(&self, uris: &[&str], not_before: i64, not_after: i64) -> Vec<u8> {
            let mut params = CertificateParams::new(vec!["x.example".to_owned()]).unwrap();
            for uri in uris {
                params
                    .subject_alt_names
                    .push(SanType::URI((*uri).try_into().unwrap()));
            }
            params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
            params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
            params.serial_number = Some(SerialNumber::from_slice(&[0x00, 0xff, 0x10]));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate().unwrap();
            params.signed_by(&key, &self.issuer).unwrap().der().to_vec()
        }
    }

    // 2025-01-01 and 2035-01-01.
    const START: i64 = 1_735_689_600;
    const END: i64 = 2_051_222_400;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn edge_cert_reads_back() {
        let ca = TestCa::new();
        let der = ca.leaf(
            &["spiffe://south-east.fedgate.example/org/dpft/edge/core"],
            START,
            END,
        );
        let peer = peer_cert(&der, TD).unwrap();
        assert_eq!(
            peer.identity,
            Identity::Edge {
                org: "dpft".into(),
                name: "core".into()
            }
        );
        assert_eq!(peer.identity.edge_id().as_deref(), Some("dpft/core"));
        assert_eq!(peer.identity.to_string(), "edge dpft/core");
        assert_eq!(peer.serial, "ff10");
        assert_eq!(peer.not_before, Timestamp::from_second(START).unwrap());
        assert_eq!(peer.not_after, Timestamp::from_second(END).unwrap());
        assert_eq!(peer.fingerprint, crate::hex::encode(&Sha256::digest(&der)));
        assert_eq!(peer.fingerprint.len(), 64);
        assert!(peer.check_validity(ts("2026-06-01T00:00:00Z")).is_ok());
    }

    #[test]
    fn admin_cert_reads_back() {
        let ca = TestCa::new();
        let der = ca.leaf(
            &["spiffe://south-east.fedgate.example/org/wmcc/admin/alice"],
            START,
            END,
        );
        let peer = peer_cert(&der, TD).unwrap();
        assert_eq!(
            peer.identity,
            Identity::Admin {
                org: "wmcc".into(),
                name: "alice".into()
            }
        );
        assert_eq!(peer.identity.edge_id(), None);
        assert_eq!(peer.identity.to_string(), "admin wmcc/alice");
    }

    #[test]
    fn federation_admin_round_trips() {
        let id = Identity::federation_admin("fiona").unwrap();
        let uri = id.uri(TD);
        assert_eq!(
            uri,
            "spiffe://south-east.fedgate.example/federation/admin/fiona"
        );
        assert_eq!(Identity::from_uri(&uri, TD).unwrap(), id);
        assert_eq!(id.to_string(), "federation admin fiona");
        assert_eq!(id.edge_id(), None);
    }

    #[test]
    fn no_uri_san_is_refused() {
        let der = TestCa::new().leaf(&[], START, END);
        assert_eq!(peer_cert(&der, TD), Err(InvalidCertificate::NoUri));
    }

    #[test]
    fn two_uri_sans_are_refused() {
        let der = TestCa::new().leaf(
            &[
                "spiffe://south-east.fedgate.example/org/dpft/edge/core",
                "spiffe://south-east.fedgate.example/org/wmcc/edge/core",
            ],
            START,
            END,
        );
        let err = peer_cert(&der, TD).unwrap_err();
        assert!(
            matches!(&err, InvalidCertificate::SeveralUris { uris } if uris.len() == 2),
            "{err:?}"
        );
        assert!(err.to_string().contains("2 URI SANs"), "{err}");
    }

    #[test]
    fn other_trust_domain_is_refused() {
        let der = TestCa::new().leaf(
            &["spiffe://north.fedgate.example/org/dpft/edge/core"],
            START,
            END,
        );
        let err = peer_cert(&der, TD).unwrap_err();
        assert!(
            matches!(
                &err,
                InvalidCertificate::Identity(InvalidIdentity::TrustDomain { found, .. })
                    if found == "north.fedgate.example"
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("not this federation's"), "{err}");
    }

    #[test]
    fn expired_cert_is_refused_at_check() {
        // 2020-01-01 to 2021-01-01.
        let der = TestCa::new().leaf(
            &["spiffe://south-east.fedgate.example/org/dpft/edge/core"],
            1_577_836_800,
            1_609_459_200,
        );
        let peer = peer_cert(&der, TD).unwrap();
        let now = ts("2026-01-01T00:00:00Z");
        let err = peer.check_validity(now).unwrap_err();
        assert_eq!(
            err,
            InvalidCertificate::Expired {
                not_after: ts("2021-01-01T00:00:00Z"),
                now
            }
        );
        let early = ts("2019-06-01T00:00:00Z");
        assert!(matches!(
            peer.check_validity(early),
            Err(InvalidCertificate::NotYetValid { .. })
        ));
        // Both ends are inclusive.
        assert!(peer.check_validity(peer.not_before).is_ok());
        assert!(peer.check_validity(peer.not_after).is_ok());
    }

    #[test]
    fn ca_cert_is_not_an_identity() {
        let mut params = CertificateParams::default();
        params.subject_alt_names.push(SanType::URI(
            "spiffe://south-east.fedgate.example/control/x"
                .try_into()
                .unwrap(),
        ));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(peer_cert(&der, TD), Err(InvalidCertificate::Ca));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        assert!(matches!(
            peer_cert(&[], TD),
            Err(InvalidCertificate::Der { .. })
        ));
        assert!(matches!(
            peer_cert(&[0x30, 0x82, 0xff, 0xff, 0x01], TD),
            Err(InvalidCertificate::Der { .. })
        ));
        let mut der = TestCa::new().leaf(
            &["spiffe://south-east.fedgate.example/control/control-1"],
            START,
            END,
        );
        // Every truncation is an error, never a panic.
        for n in 0..der.len() {
            assert!(peer_cert(&der[..n], TD).is_err());
        }
        der.extend_from_slice(&[0, 0]);
        assert_eq!(
            peer_cert(&der, TD),
            Err(InvalidCertificate::TrailingBytes { count: 2 })
        );
    }

    #[test]
    fn uris_round_trip() {
        for id in [
            Identity::edge("dpft", "core").unwrap(),
            Identity::admin("kvh", "ops-1").unwrap(),
            Identity::control("control-1").unwrap(),
        ] {
            assert_eq!(Identity::from_uri(&id.uri(TD), TD), Ok(id));
        }
        assert_eq!(
            Identity::control("c1").unwrap().uri(TD),
            "spiffe://south-east.fedgate.example/control/c1"
        );
        assert_eq!(
            Identity::from_edge_id("dpft/core"),
            Identity::edge("dpft", "core")
        );
        assert!(matches!(
            Identity::from_edge_id("dpft"),
            Err(InvalidIdentity::EdgeId { .. })
        ));
    }

    #[test]
    fn bad_uris_say_what_is_wrong() {
        let bad = |uri: &str| Identity::from_uri(uri, TD).unwrap_err();
        assert!(matches!(
            bad("https://south-east.fedgate.example/control/c"),
            InvalidIdentity::Scheme { .. }
        ));
        assert!(matches!(
            bad("spiffe://south-east.fedgate.example.evil/control/c"),
            InvalidIdentity::TrustDomain { .. }
        ));
        assert!(matches!(
            bad("spiffe://south-east.fedgate.example"),
            InvalidIdentity::Path { .. }
        ));
        for path in [
            "/org/dpft/edge",
            "/org/dpft/edge/core/",
            "/org/dpft/server/core",
            "/control",
            "//control/c",
            "/control/c?x=1",
        ] {
            let uri = format!("spiffe://{TD}{path}");
            let err = Identity::from_uri(&uri, TD).unwrap_err();
            assert!(
                matches!(
                    err,
                    InvalidIdentity::Path { .. } | InvalidIdentity::Label { .. }
                ),
                "{uri}: {err:?}"
            );
        }
        for (label, reason) in [
            ("", "empty"),
            ("Core", "other than"),
            ("-core", "starts or ends"),
            ("core-", "starts or ends"),
            ("c%41", "other than"),
        ] {
            let uri = format!("spiffe://{TD}/org/dpft/edge/{label}");
            let err = Identity::from_uri(&uri, TD).unwrap_err();
            assert!(
                matches!(&err, InvalidIdentity::Label { what: "name", .. }),
                "{uri}: {err:?}"
            );
            assert!(err.to_string().contains(reason), "{err}");
        }
        let long = "a".repeat(64);
        assert!(matches!(
            Identity::edge(&long, "core"),
            Err(InvalidIdentity::Label {
                what: "organisation",
                ..
            })
        ));
        assert!(Identity::edge(&"a".repeat(63), "core").is_ok());
    }

    #[test]
    fn long_input_is_elided_in_errors() {
        let uri = format!("https://{}", "x".repeat(10_000));
        let err = Identity::from_uri(&uri, TD).unwrap_err();
        assert!(err.to_string().len() < 400);
    }
}
