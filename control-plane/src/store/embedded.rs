//! The embedded store: one data directory on local disk.
//!
//! ```text
//! DATA/lock                               held (flock) while a control plane uses DATA
//! DATA/versions/00000000000000000001.json one file per version, never rewritten
//! ```
//!
//! A commit writes `versions/N.json.tmp`, fsyncs it, renames it to
//! `versions/N.json` and fsyncs the directory: after a crash a version is
//! there whole or not at all. The head is the highest N on disk; leftover
//! `.tmp` files (a crash mid-write) are removed at open.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use tokio::sync::{Mutex, watch};

use super::{StoreError, Version, VersionMeta};

pub struct EmbeddedStore {
    dir: PathBuf,
    /// Held for the life of the store: the directory's flock.
    _lock: File,
    /// Metadata of every version, oldest first; its length is the head.
    /// Commits hold this lock across the write, so they are serial.
    history: Mutex<Vec<VersionMeta>>,
    head: watch::Sender<u64>,
}

fn file_name(version: u64) -> String {
    format!("{version:020}.json")
}

fn read_version(path: &Path, version: u64) -> Result<Version, StoreError> {
    let bytes = fs::read(path)?;
    let v: Version = serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
        version,
        reason: format!("{}: {e}", path.display()),
    })?;
    if v.meta.version != version {
        return Err(StoreError::Damaged {
            version,
            reason: format!("{} holds version {}", path.display(), v.meta.version),
        });
    }
    Ok(v)
}

impl EmbeddedStore {
    /// Open (creating it if needed) the store in `dir`. Fails if another
    /// process holds the directory, or if a stored version is damaged or
    /// missing (versions are numbered without gaps).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let versions = dir.join("versions");
        fs::create_dir_all(&versions)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        lock.try_lock().map_err(|_| {
            std::io::Error::other(format!(
                "{} is in use by another control plane (its lock file is held); stop it or use another --data directory",
                dir.display()
            ))
        })?;
        let mut numbers = Vec::new();
        for entry in fs::read_dir(&versions)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                fs::remove_file(entry.path())?;
                continue;
            }
            if let Some(n) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let mut history = Vec::with_capacity(numbers.len());
        for (i, n) in numbers.iter().enumerate() {
            let expected = i as u64 + 1;
            if *n != expected {
                return Err(StoreError::Damaged {
                    version: expected,
                    reason: format!(
                        "missing from {} (found version {n} instead)",
                        versions.display()
                    ),
                });
            }
            history.push(read_version(&versions.join(file_name(*n)), *n)?.meta);
        }
        let head = history.len() as u64;
        tracing::info!(dir = %dir.display(), head, "embedded store opened");
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
            history: Mutex::new(history),
            head: watch::channel(head).0,
        })
    }

    pub(super) async fn head(&self) -> Result<u64, StoreError> {
        Ok(self.history.lock().await.len() as u64)
    }

    pub(super) async fn get(&self, version: u64) -> Result<Option<Version>, StoreError> {
        let head = self.head().await?;
        if version == 0 || version > head {
            return Ok(None);
        }
        let path = self.dir.join("versions").join(file_name(version));
        tokio::task::spawn_blocking(move || read_version(&path, version))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
            .map(Some)
    }

    pub(super) async fn history(&self) -> Result<Vec<VersionMeta>, StoreError> {
        Ok(self.history.lock().await.clone())
    }

    pub(super) async fn commit(&self, expected: u64, version: &Version) -> Result<(), StoreError> {
        let mut history = self.history.lock().await;
        let head = history.len() as u64;
        if head != expected {
            return Err(StoreError::Conflict { expected, head });
        }
        let dir = self.dir.join("versions");
        let number = version.meta.version;
        let bytes = serde_json::to_vec_pretty(version).map_err(std::io::Error::other)?;
        tokio::task::spawn_blocking(move || write_durably(&dir, &file_name(number), &bytes))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        history.push(version.meta.clone());
        self.head.send_replace(number);
        Ok(())
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    pub(super) fn describe(&self) -> String {
        format!("embedded {}", self.dir.display())
    }
}

/// Write `dir/name` so that after a crash it is whole or absent.
pub fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::Store;

    fn version(n: u64) -> Version {
        Version {
            meta: VersionMeta {
                version: n,
                author: "admin wmcc/alice".into(),
                time: "2026-11-23T00:00:00Z".into(),
                message: format!("v{n}"),
                changes: Vec::new(),
                rollback_of: None,
            },
            files: BTreeMap::from([("a.yaml".to_owned(), format!("# {n}\n"))]),
        }
    }

    #[tokio::test]
    async fn commits_in_order_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::Embedded(EmbeddedStore::open(dir.path()).unwrap());
            let mut head = store.subscribe();
            assert_eq!(store.head().await.unwrap(), 0);
            store.commit(0, &version(1)).await.unwrap();
            store.commit(1, &version(2)).await.unwrap();
            assert!(matches!(
                store.commit(1, &version(2)).await,
                Err(StoreError::Conflict {
                    expected: 1,
                    head: 2
                })
            ));
            assert!(matches!(
                store.commit(2, &version(4)).await,
                Err(StoreError::InvalidVersion { .. })
            ));
            assert_eq!(*head.borrow_and_update(), 2);
        }
        // A crash mid-write leaves a .tmp: ignored and removed at open.
        fs::write(
            dir.path()
                .join("versions")
                .join("00000000000000000003.json.tmp"),
            b"{",
        )
        .unwrap();
        let store = Store::Embedded(EmbeddedStore::open(dir.path()).unwrap());
        assert_eq!(store.head().await.unwrap(), 2);
        assert_eq!(store.get(2).await.unwrap().unwrap(), version(2));
        assert_eq!(store.get(3).await.unwrap(), None);
        let history = store.history().await.unwrap();
        assert_eq!(
            history.iter().map(|m| m.version).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[tokio::test]
    async fn a_second_process_on_the_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedStore::open(dir.path()).unwrap();
        let err = EmbeddedStore::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[tokio::test]
    async fn a_gap_is_reported_as_damage() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.commit(0, &version(1)).await.unwrap();
            store.commit(1, &version(2)).await.unwrap();
        }
        fs::remove_file(
            dir.path()
                .join("versions")
                .join("00000000000000000001.json"),
        )
        .unwrap();
        let err = EmbeddedStore::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("version 1 is damaged"), "{err}");
    }
}
