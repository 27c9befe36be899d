//! The admin audit log: one JSON line per change asked of the control plane,
//! accepted or refused, hash-chained like the edges' flow audit
//! ([`federation::chain`]) and written through to disk (fsync) before the
//! caller hears the answer. Append-only: the control plane never rewrites it,
//! and at start it continues the chain of what is there, refusing a log that
//! does not verify.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use federation::chain::{BrokenChain, Verifier, link};
use serde_json::Value;

pub struct AdminAudit {
    path: PathBuf,
    state: Mutex<(File, Verifier)>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("admin audit log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("admin audit log {path} does not verify ({source}); move it aside and investigate")]
    Broken { path: String, source: BrokenChain },
}

impl AdminAudit {
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut chain = Verifier::default();
        if path.exists() {
            let file = File::open(path).map_err(io)?;
            for line in BufReader::new(file).lines() {
                chain
                    .handle_line(&line.map_err(io)?)
                    .map_err(|source| AuditError::Broken {
                        path: path.display().to_string(),
                        source,
                    })?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new((file, chain)),
        })
    }

    /// Append `record` (a JSON object) with its `seq` and `prev`, durably.
    /// A failure to write is logged loudly; the change itself has already
    /// been decided.
    pub fn record(&self, record: &Value) {
        let Ok(mut state) = self.state.lock() else {
            tracing::error!("admin audit log lock poisoned; record lost");
            return;
        };
        let (file, chain) = &mut *state;
        let mut line = serde_json::Map::new();
        line.insert("seq".into(), (chain.records + 1).into());
        line.insert("prev".into(), chain.prev.clone().into());
        if let Value::Object(fields) = record {
            line.extend(fields.clone());
        }
        let text = Value::Object(line).to_string();
        let written = file
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| file.sync_data());
        match written {
            Ok(()) => {
                chain.records += 1;
                chain.prev = link(&text);
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), cause = %e, "cannot write the admin audit log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn records_chain_and_continue_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-audit.jsonl");
        AdminAudit::open(&path)
            .unwrap()
            .record(&json!({"action": "apply"}));
        AdminAudit::open(&path)
            .unwrap()
            .record(&json!({"action": "rollback"}));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut v = Verifier::default();
        for line in text.lines() {
            v.handle_line(line).unwrap();
        }
        assert_eq!(v.records, 2);
        // Altered: the next open refuses it.
        std::fs::write(&path, text.replace("apply", "APPLY")).unwrap();
        let err = AdminAudit::open(&path).err().unwrap().to_string();
        assert!(err.contains("line 2: `prev` does not match"), "{err}");
    }
}
