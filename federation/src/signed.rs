//! Signed snapshots: what the control plane hands an edge, and the rules by
//! which an edge accepts one.
//!
//! A [`SignedSnapshot`] wraps the exact JSON bytes of an [`EdgeSnapshot`]
//! with an ed25519 signature over them and the id of the key that made it.
//! The edge trusts one public key (configured, like the federation CA) and
//! checks, in order: the envelope's shape, the key id, the signature, the
//! snapshot's own digest, that it is addressed to this edge, and how its
//! version relates to the one the edge holds ([`check_succession`]). Only
//! then does it validate the content ([`EdgeSnapshot::load`]).
//!
//! Pure: signing and verification are computations (ring), no I/O.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::snapshot::{EdgeSnapshot, SnapshotError};

/// The format of [`SignedSnapshot`]; bumped on an incompatible change.
pub const SIGNED_FORMAT: u32 = 1;

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
        let bytes = from_hex(hex).ok_or(InvalidKey::NotHex)?;
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| InvalidKey::Length { found: b.len() })?;
        Ok(Self { raw })
    }

    /// `ed25519:<64 hex digits>`, the public-key file's line.
    pub fn to_text(&self) -> String {
        format!("ed25519:{}", to_hex(&self.raw))
    }

    /// The first 16 hex digits of the SHA-256 of the raw key.
    pub fn id(&self) -> String {
        to_hex(&Sha256::digest(self.raw))[..16].to_owned()
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
}

impl SigningKey {
    /// The key from its PKCS#8 document (as `fedctl certs signing-key` writes).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, InvalidKey> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| InvalidKey::Pkcs8(e.to_string()))?;
        Ok(Self { pair })
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

    /// Sign a snapshot: its JSON, as it will be verified, inside an envelope.
    pub fn sign(&self, snapshot: &EdgeSnapshot) -> SignedSnapshot {
        self.sign_json(snapshot.to_json())
    }

    /// Sign a snapshot's JSON as it is (from [`EdgeSnapshot::to_json`] or
    /// [`crate::snapshot::SharedCut::snapshot_json`]).
    pub fn sign_json(&self, json: Vec<u8>) -> SignedSnapshot {
        let payload = String::from_utf8(json).unwrap_or_default();
        let signature = self.pair.sign(payload.as_bytes());
        SignedSnapshot {
            format: SIGNED_FORMAT,
            key_id: self.public().id(),
            signature: to_hex(signature.as_ref()),
            snapshot: payload,
        }
    }
}

/// A snapshot and the control plane's signature over its exact JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSnapshot {
    pub format: u32,
    /// [`TrustedKey::id`] of the key that signed it.
    pub key_id: String,
    /// ed25519 signature over `snapshot`'s bytes, hex.
    pub signature: String,
    /// The [`EdgeSnapshot`] JSON, byte for byte as signed.
    pub snapshot: String,
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
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl SignedSnapshot {
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and a number: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse an envelope and verify it against `key`; returns the snapshot
    /// with its digest checked (its content is checked by
    /// [`EdgeSnapshot::load`]).
    pub fn verify(bytes: &[u8], key: &TrustedKey) -> Result<(Self, EdgeSnapshot), SignatureError> {
        let signed: Self = serde_json::from_slice(bytes)?;
        if signed.format != SIGNED_FORMAT {
            return Err(SignatureError::InvalidFormat {
                found: signed.format,
            });
        }
        if signed.key_id != key.id() {
            return Err(SignatureError::UnknownKey {
                expected: key.id(),
                found: signed.key_id,
            });
        }
        let signature = from_hex(&signed.signature).ok_or(SignatureError::InvalidSignature)?;
        UnparsedPublicKey::new(&ED25519, key.raw)
            .verify(signed.snapshot.as_bytes(), &signature)
            .map_err(|_| SignatureError::InvalidSignature)?;
        let snapshot = EdgeSnapshot::from_json(signed.snapshot.as_bytes())?;
        Ok((signed, snapshot))
    }
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

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
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
            to_hex(&Sha256::digest(&bytes))
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
        let (_, back) = SignedSnapshot::verify(&bytes, &k.public()).unwrap();
        assert_eq!(back.version, 7);
        assert_eq!(back.edge, "dpft/core");
    }

    #[test]
    fn an_altered_payload_fails_the_signature() {
        let k = key();
        let mut signed = k.sign(&snapshot("dpft/core", 7));
        signed.snapshot = signed.snapshot.replace("\"version\": 7", "\"version\": 8");
        assert!(matches!(
            SignedSnapshot::verify(&signed.to_json(), &k.public()),
            Err(SignatureError::InvalidSignature)
        ));
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
