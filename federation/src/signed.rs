//! Signed snapshots: what the control plane hands an edge, and the rules by
//! which an edge accepts one.
//!
//! A [`SignedSnapshot`] holds an [`EdgeSnapshot`] with an ed25519 signature
//! over its header (format, version, edge, organisation and the SHA-256
//! digest of its document) and the id of the key that made it: the digest
//! binds the document, so the signature covers all of it, and signing costs
//! the same small message whatever the snapshot's size (the control plane
//! signs one per edge, the document is cut and digested once per group of
//! edges that share it). The edge trusts one public key (configured, like the
//! federation CA) and checks, in order: the envelope's shape, the key id, the
//! signature over the header, the document against the signed digest, that
//! it is addressed to this edge, and how its version relates to the one the
//! edge holds ([`check_succession`]). Only then does it validate the content
//! ([`EdgeSnapshot::load`]).
//!
//! Pure: signing and verification are computations (ring), no I/O.

use std::sync::Arc;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::snapshot::{EdgeSnapshot, SharedCut, SnapshotError};

/// The format of [`SignedSnapshot`]; bumped on an incompatible change
/// (2: the signature covers the header, the header's digest the document).
pub const SIGNED_FORMAT: u32 = 2;

/// What is signed: a fixed context, then the header's compact JSON (strings
/// escaped, so no two headers give the same bytes).
#[derive(Serialize)]
struct Header<'a> {
    format: u32,
    version: u64,
    edge: &'a str,
    org: &'a str,
    digest: &'a str,
}

const CONTEXT: &[u8] = b"fedgate edge snapshot, signed header\n";

/// A snapshot's header, as signed: what a [`SignedHeader`] carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotHeader {
    pub format: u32,
    pub version: u64,
    pub edge: String,
    pub org: String,
    pub digest: String,
}

impl SnapshotHeader {
    fn borrowed(&self) -> Header<'_> {
        Header {
            format: self.format,
            version: self.version,
            edge: &self.edge,
            org: &self.org,
            digest: &self.digest,
        }
    }
}

impl Header<'_> {
    fn message(&self) -> Vec<u8> {
        let mut m = CONTEXT.to_vec();
        // Strings and numbers: serialising cannot fail.
        m.extend(serde_json::to_vec(self).unwrap_or_default());
        m
    }

    fn of(s: &EdgeSnapshot) -> Header<'_> {
        Header {
            format: s.format,
            version: s.version,
            edge: &s.edge,
            org: &s.org,
            digest: &s.digest,
        }
    }
}

/// An ed25519 public key that snapshots are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    raw: [u8; 32],
}

impl TrustedKey {
    /// The key from its 32 raw bytes.
    pub fn from_bytes(raw: [u8; 32]) -> Self {
        Self { raw }
    }

    /// The key from the text of a public-key file: 64 hex digits, optionally
    /// after an `ed25519:` prefix; blank lines and `#` comments are ignored.
    pub fn from_text(text: &str) -> Result<Self, InvalidKey> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or(InvalidKey::Empty)?;
        let hex = line.strip_prefix("ed25519:").unwrap_or(line);
        let bytes = crate::hex::decode(hex).ok_or(InvalidKey::NotHex)?;
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| InvalidKey::Length { found: b.len() })?;
        Ok(Self { raw })
    }

    /// `ed25519:<64 hex digits>`, the public-key file's line.
    pub fn to_text(&self) -> String {
        format!("ed25519:{}", crate::hex::encode(&self.raw))
    }

    /// The first 16 hex digits of the SHA-256 of the raw key.
    pub fn id(&self) -> String {
        crate::hex::encode(&Sha256::digest(self.raw))[..16].to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKey {
    #[error("no key in the file: write one line `ed25519:<64 hex digits>`")]
    Empty,
    #[error("the key is not hex: write one line `ed25519:<64 hex digits>`")]
    NotHex,
    #[error("the key has {found} bytes; an ed25519 public key has 32")]
    Length { found: usize },
    #[error("not an ed25519 private key in PKCS#8: {0}")]
    Pkcs8(String),
}

/// The control plane's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    /// [`TrustedKey::id`] of its public key, put in every envelope.
    id: String,
}

impl SigningKey {
    /// The key from its PKCS#8 document (as `fedctl certs signing-key` writes).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, InvalidKey> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| InvalidKey::Pkcs8(e.to_string()))?;
        let mut raw = [0u8; 32];
        raw.copy_from_slice(pair.public_key().as_ref());
        let id = TrustedKey { raw }.id();
        Ok(Self { pair, id })
    }

    /// A new key as a PKCS#8 document. `rng` fills the seed.
    pub fn generate_pkcs8() -> Result<Vec<u8>, InvalidKey> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| InvalidKey::Pkcs8(e.to_string()))
    }

    pub fn public(&self) -> TrustedKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        TrustedKey { raw }
    }

    /// Sign a snapshot (its header, which holds its document's digest).
    pub fn sign(&self, snapshot: &EdgeSnapshot) -> SignedSnapshot {
        SignedSnapshot {
            format: SIGNED_FORMAT,
            key_id: self.id.clone(),
            signature: self.signature(&Header::of(snapshot)),
            snapshot: snapshot.clone(),
        }
    }

    fn signature(&self, header: &Header<'_>) -> String {
        crate::hex::encode(self.pair.sign(&header.message()).as_ref())
    }

    /// The signed snapshot of `edge` (one of the cut's group) at `version`,
    /// as [`SignedSnapshot::to_json`] gives it for the snapshot
    /// [`EdgeSnapshot::build`] cuts, byte for byte; the document's bytes are
    /// shared with the group's other edges, not copied.
    pub fn sign_cut(&self, cut: &SharedCut, edge: &str, version: u64) -> SignedParts {
        let header = Header {
            format: crate::snapshot::SNAPSHOT_FORMAT,
            version,
            edge,
            org: cut.org(),
            digest: cut.digest(),
        };
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let signature = self.signature(&header);
        let envelope = format!(
            "{{\"format\":{SIGNED_FORMAT},\"key_id\":{},\"signature\":{}",
            quoted(&self.id),
            quoted(&signature),
        );
        let head = format!(
            "{envelope},\"snapshot\":{}",
            cut.snapshot_head(edge, version)
        );
        // Strings and numbers: serialising cannot fail.
        let header_json = serde_json::to_string(&header).unwrap_or_default();
        let header_only = format!("{envelope},\"header\":{header_json}}}");
        SignedParts {
            head: head.into_bytes(),
            document: cut.document(),
            digest: cut.digest().to_owned(),
            header_only: header_only.into_bytes(),
        }
    }
}

/// A signed snapshot's JSON in three parts: its own head (envelope, header),
/// the document its group shares, and the closing braces.
#[derive(Debug, Clone)]
pub struct SignedParts {
    pub head: Vec<u8>,
    pub document: Arc<[u8]>,
    /// The document's digest.
    pub digest: String,
    /// The same signature as a [`SignedHeader`]'s JSON: the answer to an
    /// edge that already holds a document with this digest.
    pub header_only: Vec<u8>,
}

impl SignedParts {
    /// The closing braces of the snapshot and of the envelope.
    pub const TAIL: &'static [u8] = b"}}";

    pub fn len(&self) -> usize {
        self.head.len() + self.document.len() + Self::TAIL.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.document);
        out.extend_from_slice(Self::TAIL);
        out
    }
}

/// A snapshot and the control plane's signature over its header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSnapshot {
    pub format: u32,
    /// [`TrustedKey::id`] of the key that signed it.
    pub key_id: String,
    /// ed25519 signature over the snapshot's header (with its digest), hex.
    pub signature: String,
    pub snapshot: EdgeSnapshot,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("not a signed snapshot: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error(
        "signed snapshot format {found} is not supported (this build reads format {SIGNED_FORMAT})"
    )]
    InvalidFormat { found: u32 },
    #[error(
        "signed by key {found}, but this edge trusts key {expected}: check the edge's --control-key"
    )]
    UnknownKey { expected: String, found: String },
    #[error(
        "the signature does not verify: the snapshot was altered or not signed by the trusted key"
    )]
    InvalidSignature,
    #[error(
        "the signature does not verify: the document does not match the signed digest (signed {expected}, computed {computed}): it was altered or damaged"
    )]
    AlteredContent { expected: String, computed: String },
    #[error(
        "the signed header is for document {signed}, but this edge holds document {held}: fetch the whole snapshot"
    )]
    DocumentNotHeld { signed: String, held: String },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl SignedSnapshot {
    pub fn to_json(&self) -> Vec<u8> {
        // Plain structs, strings and numbers: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse an envelope and verify it against `key`; returns the snapshot
    /// with its signature and digest checked (its content is checked by
    /// [`EdgeSnapshot::load`]).
    pub fn verify(bytes: &[u8], key: &TrustedKey) -> Result<EdgeSnapshot, SignatureError> {
        let signed: Self = serde_json::from_slice(bytes)?;
        check_envelope(signed.format, &signed.key_id, key)?;
        verify_signature(key, &Header::of(&signed.snapshot), &signed.signature)?;
        signed.snapshot.check().map_err(|e| match e {
            SnapshotError::InvalidDigest { expected, computed } => {
                SignatureError::AlteredContent { expected, computed }
            }
            other => SignatureError::Snapshot(other),
        })?;
        Ok(signed.snapshot)
    }
}

/// A newer version's signed header without its document: the control
/// plane's answer to an edge that holds the document already (the same
/// digest), so that a change elsewhere in the federation costs that edge a
/// signature, not its whole snapshot again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHeader {
    pub format: u32,
    pub key_id: String,
    pub signature: String,
    pub header: SnapshotHeader,
}

impl SignedHeader {
    pub fn to_json(&self) -> Vec<u8> {
        // Strings and numbers: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse a signed header and verify its signature against `key`.
    pub fn verify(bytes: &[u8], key: &TrustedKey) -> Result<Self, SignatureError> {
        let signed: Self = serde_json::from_slice(bytes)?;
        check_envelope(signed.format, &signed.key_id, key)?;
        verify_signature(key, &signed.header.borrowed(), &signed.signature)?;
        Ok(signed)
    }

    /// The whole signed snapshot: this header with the document of `held`,
    /// which must be the same edge's and hold the signed digest.
    pub fn complete(&self, held: &EdgeSnapshot) -> Result<SignedSnapshot, SignatureError> {
        let h = &self.header;
        if held.edge != h.edge {
            return Err(SnapshotError::WrongEdge {
                expected: held.edge.clone(),
                found: h.edge.clone(),
            }
            .into());
        }
        if held.digest != h.digest {
            return Err(SignatureError::DocumentNotHeld {
                signed: h.digest.clone(),
                held: held.digest.clone(),
            });
        }
        Ok(SignedSnapshot {
            format: self.format,
            key_id: self.key_id.clone(),
            signature: self.signature.clone(),
            snapshot: EdgeSnapshot {
                format: h.format,
                version: h.version,
                edge: h.edge.clone(),
                org: h.org.clone(),
                digest: h.digest.clone(),
                document: held.document.clone(),
            },
        })
    }
}

fn check_envelope(format: u32, key_id: &str, key: &TrustedKey) -> Result<(), SignatureError> {
    if format != SIGNED_FORMAT {
        return Err(SignatureError::InvalidFormat { found: format });
    }
    if key_id != key.id() {
        return Err(SignatureError::UnknownKey {
            expected: key.id(),
            found: key_id.to_owned(),
        });
    }
    Ok(())
}

fn verify_signature(
    key: &TrustedKey,
    header: &Header<'_>,
    signature: &str,
) -> Result<(), SignatureError> {
    let signature = crate::hex::decode(signature).ok_or(SignatureError::InvalidSignature)?;
    UnparsedPublicKey::new(&ED25519, key.raw)
        .verify(&header.message(), &signature)
        .map_err(|_| SignatureError::InvalidSignature)
}

/// What an edge holds, to judge a newer snapshot by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub version: u64,
    pub digest: String,
}

/// How an offered snapshot relates to the one held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Succession {
    /// Newer: apply it.
    Newer,
    /// The very snapshot held: nothing to do.
    Same,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SuccessionError {
    #[error("snapshot is for edge `{found}`, not this edge `{expected}`")]
    WrongEdge { expected: String, found: String },
    #[error("snapshot version {offered} is older than version {held}, which this edge runs")]
    Older { offered: u64, held: u64 },
    #[error(
        "snapshot version {version} differs from the version {version} this edge runs (digest {offered} against {held}): a version's content never changes"
    )]
    Conflicting {
        version: u64,
        offered: String,
        held: String,
    },
}

/// The rules for replacing the held snapshot (ARCHITECTURE.md, static
/// stability): never another edge's, never older, never the same version
/// with other content.
pub fn check_succession(
    edge: &str,
    held: Option<&Held>,
    offered: &EdgeSnapshot,
) -> Result<Succession, SuccessionError> {
    if offered.edge != edge {
        return Err(SuccessionError::WrongEdge {
            expected: edge.to_owned(),
            found: offered.edge.clone(),
        });
    }
    let Some(held) = held else {
        return Ok(Succession::Newer);
    };
    match offered.version.cmp(&held.version) {
        std::cmp::Ordering::Greater => Ok(Succession::Newer),
        std::cmp::Ordering::Less => Err(SuccessionError::Older {
            offered: offered.version,
            held: held.version,
        }),
        std::cmp::Ordering::Equal if offered.digest == held.digest => Ok(Succession::Same),
        std::cmp::Ordering::Equal => Err(SuccessionError::Conflicting {
            version: held.version,
            offered: offered.digest.clone(),
            held: held.digest.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DocumentSpec;

    fn snapshot(edge: &str, version: u64) -> EdgeSnapshot {
        let doc = DocumentSpec::default();
        let json = serde_json::json!({
            "format": crate::snapshot::SNAPSHOT_FORMAT,
            "version": version,
            "edge": edge,
            "org": edge.split('/').next().unwrap(),
            "digest": "",
            "document": doc,
        });
        // Recompute the digest the way the builder does.
        let mut snap: EdgeSnapshot = serde_json::from_value(json).unwrap();
        snap.digest = {
            let bytes = serde_json::to_vec(&snap.document).unwrap();
            crate::hex::encode(&Sha256::digest(&bytes))
        };
        snap
    }

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn a_signed_snapshot_verifies_and_reads_back() {
        let k = key();
        let snap = snapshot("dpft/core", 7);
        let bytes = k.sign(&snap).to_json();
        let back = SignedSnapshot::verify(&bytes, &k.public()).unwrap();
        assert_eq!(back.version, 7);
        assert_eq!(back.edge, "dpft/core");
    }

    #[test]
    fn an_altered_header_fails_the_signature() {
        let k = key();
        let mut signed = k.sign(&snapshot("dpft/core", 7));
        signed.snapshot.version = 8;
        assert!(matches!(
            SignedSnapshot::verify(&signed.to_json(), &k.public()),
            Err(SignatureError::InvalidSignature)
        ));
        let mut signed = k.sign(&snapshot("dpft/core", 7));
        signed.snapshot.edge = "dpft/other".into();
        assert!(matches!(
            SignedSnapshot::verify(&signed.to_json(), &k.public()),
            Err(SignatureError::InvalidSignature)
        ));
    }

    #[test]
    fn an_altered_document_fails_against_the_signed_digest() {
        let k = key();
        let signed = k.sign(&snapshot("dpft/core", 7));
        let json = String::from_utf8(signed.to_json()).unwrap();
        let altered = json.replacen(
            "\"document\":{}",
            "\"document\":{\"groups\":[{\"id\":\"g\",\"members\":[\"dpft\"]}]}",
            1,
        );
        assert_ne!(altered, json);
        let err = SignedSnapshot::verify(altered.as_bytes(), &k.public()).unwrap_err();
        assert!(
            matches!(err, SignatureError::AlteredContent { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("signature does not verify"),
            "{err}"
        );
    }

    #[test]
    fn a_signed_header_completes_only_the_document_it_names() {
        let k = key();
        let held = snapshot("dpft/core", 7);
        let newer = snapshot("dpft/core", 8);
        let full = k.sign(&newer);
        let header = SignedHeader {
            format: full.format,
            key_id: full.key_id.clone(),
            signature: full.signature.clone(),
            header: SnapshotHeader {
                format: newer.format,
                version: 8,
                edge: newer.edge.clone(),
                org: newer.org.clone(),
                digest: newer.digest.clone(),
            },
        };
        let back = SignedHeader::verify(&header.to_json(), &k.public()).unwrap();
        assert_eq!(back.complete(&held).unwrap().to_json(), full.to_json());
        // Another document held: refused, named.
        let mut other = held.clone();
        other.digest = "0".repeat(64);
        let err = back.complete(&other).unwrap_err();
        assert!(
            matches!(err, SignatureError::DocumentNotHeld { .. }),
            "{err}"
        );
        // Another edge's: refused.
        assert!(back.complete(&snapshot("kvh/core", 7)).is_err());
        // An altered header fails its signature.
        let mut forged = header.clone();
        forged.header.version = 9;
        let err = SignedHeader::verify(&forged.to_json(), &k.public()).unwrap_err();
        assert!(matches!(err, SignatureError::InvalidSignature), "{err}");
    }

    #[test]
    fn another_key_is_named_in_the_refusal() {
        let signed = key().sign(&snapshot("dpft/core", 7));
        let other = key().public();
        let err = SignedSnapshot::verify(&signed.to_json(), &other).unwrap_err();
        assert!(matches!(err, SignatureError::UnknownKey { .. }), "{err}");
    }

    #[test]
    fn public_key_text_round_trips() {
        let public = key().public();
        let text = format!("# control plane\n{}\n", public.to_text());
        assert_eq!(TrustedKey::from_text(&text).unwrap(), public);
        assert_eq!(
            TrustedKey::from_text("ed25519:abcd"),
            Err(InvalidKey::Length { found: 2 })
        );
        assert_eq!(TrustedKey::from_text("zz"), Err(InvalidKey::NotHex));
        assert_eq!(TrustedKey::from_text("\n# none\n"), Err(InvalidKey::Empty));
    }

    #[test]
    fn succession_rules() {
        let held = Held {
            version: 5,
            digest: snapshot("dpft/core", 5).digest,
        };
        let newer = snapshot("dpft/core", 6);
        assert_eq!(
            check_succession("dpft/core", Some(&held), &newer),
            Ok(Succession::Newer)
        );
        assert_eq!(
            check_succession("dpft/core", None, &newer),
            Ok(Succession::Newer)
        );
        assert_eq!(
            check_succession("dpft/core", Some(&held), &snapshot("dpft/core", 5)),
            Ok(Succession::Same)
        );
        assert_eq!(
            check_succession("dpft/core", Some(&held), &snapshot("dpft/core", 4)),
            Err(SuccessionError::Older {
                offered: 4,
                held: 5
            })
        );
        let mut other = snapshot("dpft/core", 5);
        other.digest = "0".repeat(64);
        assert!(matches!(
            check_succession("dpft/core", Some(&held), &other),
            Err(SuccessionError::Conflicting { version: 5, .. })
        ));
        assert!(matches!(
            check_succession("dpft/core", Some(&held), &snapshot("kvh/core", 9)),
            Err(SuccessionError::WrongEdge { .. })
        ));
    }
}
