//! Where the control plane keeps the federation document's versions.
//!
//! A version is immutable: its files, who made it, when and why, and a
//! summary of what changed. The head is the newest version; a new version is
//! committed only on top of the head its author saw (compare-and-swap), so two
//! admins never overwrite each other unseen.
//!
//! Two backends behind one type, [`Store`]:
//! - [`embedded`]: one data directory, one JSON file per version, written
//!   crash-safe (temporary file, fsync, atomic rename, fsync of the
//!   directory), and a lock so only one process uses the directory;
//! - [`etcd`]: an etcd cluster, so that several replicas serve one
//!   federation; the head moves by an etcd transaction and replicas learn of
//!   new versions through a watch.
//!
//! [`Store::subscribe`] tells of every new head, whoever committed it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub mod embedded;
#[cfg(feature = "etcd")]
pub mod etcd;

/// One version of the federation document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    #[serde(flatten)]
    pub meta: VersionMeta,
    /// File name to YAML text: the document as its authors wrote it.
    pub files: BTreeMap<String, String>,
}

/// A version without its files: a line of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionMeta {
    /// 1, 2, 3, ...: each commit is the head it replaced plus one.
    pub version: u64,
    /// Identity of the admin who made it (`admin wmcc/alice`).
    pub author: String,
    /// RFC 3339.
    pub time: String,
    pub message: String,
    /// What changed against the version before it, one line per object.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// Set when this version restores an earlier one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
}

/// One object added, changed or removed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// `added`, `changed` or `removed`.
    pub op: String,
    /// `organisation`, `network`, `site`, `edge`, `service`, `group`,
    /// `agreement`, `policy`, `revocation` or `federation`.
    pub kind: String,
    pub id: String,
}

/// Why a change made against version `expected` cannot land on `head`.
fn conflict(expected: u64, head: u64) -> String {
    let why = if expected < head {
        let since = if head == expected + 1 {
            format!("version {head} was")
        } else {
            format!("versions {} to {head} were", expected + 1)
        };
        format!(
            "{since} applied after the version this change was made against (by another admin, or earlier by you)"
        )
    } else {
        format!("version {expected} does not exist yet")
    };
    format!("the head is version {head}, not {expected}: {why}; review the head and apply again")
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{}", conflict(*expected, *head))]
    Conflict { expected: u64, head: u64 },
    #[error("version {version} is not the next after {expected}")]
    InvalidVersion { expected: u64, version: u64 },
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored version {version} is damaged: {reason}")]
    Damaged { version: u64, reason: String },
    #[error("etcd: {0}")]
    Etcd(String),
}

/// The store in use.
pub enum Store {
    Embedded(embedded::EmbeddedStore),
    #[cfg(feature = "etcd")]
    Etcd(etcd::EtcdStore),
}

impl Store {
    /// The newest version number; 0 when nothing is stored yet.
    pub async fn head(&self) -> Result<u64, StoreError> {
        match self {
            Self::Embedded(s) => s.head().await,
            #[cfg(feature = "etcd")]
            Self::Etcd(s) => s.head().await,
        }
    }

    pub async fn get(&self, version: u64) -> Result<Option<Version>, StoreError> {
        match self {
            Self::Embedded(s) => s.get(version).await,
            #[cfg(feature = "etcd")]
            Self::Etcd(s) => s.get(version).await,
        }
    }

    /// Every version's metadata, oldest first.
    pub async fn history(&self) -> Result<Vec<VersionMeta>, StoreError> {
        match self {
            Self::Embedded(s) => s.history().await,
            #[cfg(feature = "etcd")]
            Self::Etcd(s) => s.history().await,
        }
    }

    /// Commit `version` on top of head `expected`; `version.meta.version`
    /// must be `expected + 1`. Returns once the version is durable.
    pub async fn commit(&self, expected: u64, version: &Version) -> Result<(), StoreError> {
        if version.meta.version != expected + 1 {
            return Err(StoreError::InvalidVersion {
                expected,
                version: version.meta.version,
            });
        }
        match self {
            Self::Embedded(s) => s.commit(expected, version).await,
            #[cfg(feature = "etcd")]
            Self::Etcd(s) => s.commit(expected, version).await,
        }
    }

    /// The head version, updated on every commit by any replica.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        match self {
            Self::Embedded(s) => s.subscribe(),
            #[cfg(feature = "etcd")]
            Self::Etcd(s) => s.subscribe(),
        }
    }

    /// A short description for status output: `embedded /var/lib/fedgate`,
    /// `etcd http://127.0.0.1:2379,...`.
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded(s) => s.describe(),
            #[cfg(feature = "etcd")]
            Self::Etcd(s) => s.describe(),
        }
    }
}
