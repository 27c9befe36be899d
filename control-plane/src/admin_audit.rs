//! The admin audit log: one JSON line per change asked of the control plane,
//! accepted or refused, hash-chained like the edges' flow audit
//! ([`federation::chain`]) and written through to disk (fsync) before the
//! caller hears the answer. Append-only: the control plane never rewrites it,
//! and at start it continues the chain of what is there, refusing a log that
//! does not verify.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use federation::chain::{BrokenChain, Verifier, link};
use serde_json::Value;

pub struct AdminAudit {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    file: File,
    /// The chain of every record taken, on file or still kept.
    chain: Verifier,
    /// Lines taken that the file did not take (a full disk): written, in
    /// order, before any later one.
    kept: VecDeque<String>,
    /// Why the last write failed, while lines are kept.
    failing: Option<String>,
}

/// Lines kept in memory at most while the log cannot be written; past it a
/// record is logged (target `fedgate::admin_audit`) and not kept. Changes
/// are refused long before: from the first line kept.
const KEEP_MAX: usize = 10_000;

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
    #[error(
        "admin audit log {path} cannot be written ({cause}); {kept} record(s) kept until it can"
    )]
    Unwritable {
        path: String,
        cause: String,
        kept: usize,
    },
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
            state: Mutex::new(State {
                file,
                chain,
                kept: VecDeque::new(),
                failing: None,
            }),
        })
    }

    /// Append `record` (a JSON object) with its `seq` and `prev`, durably
    /// (fsync), after any record kept before it. If the file does not take
    /// it (a full disk), the bytes it took are cut off again, so the log
    /// stays whole, and the record is kept in memory to be written, in
    /// order, once it can be: the error says so. The change the record
    /// tells of has been decided either way.
    pub fn record(&self, record: &Value) -> Result<(), AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = serde_json::Map::new();
        line.insert("seq".into(), (state.chain.records + 1).into());
        line.insert("prev".into(), state.chain.prev.clone().into());
        if let Value::Object(fields) = record {
            line.extend(fields.clone());
        }
        let text = Value::Object(line).to_string();
        if state.kept.len() >= KEEP_MAX {
            tracing::error!(
                target: "fedgate::admin_audit",
                path = %self.path.display(),
                record = %text,
                "admin audit log cannot be written and {KEEP_MAX} records are kept already; this one is in this log only"
            );
            return Err(self.unwritable(&state));
        }
        state.chain.records += 1;
        state.chain.prev = link(&text);
        state.kept.push_back(text);
        self.write_kept(&mut state)
    }

    /// Whether every record taken is on file; if not, try the ones kept
    /// once more. A change is committed only when this is `Ok`.
    pub fn ready(&self) -> Result<(), AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.write_kept(&mut state)
    }

    /// Why records are not reaching the file, while they are not.
    pub fn trouble(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .failing
            .is_some()
            .then(|| self.unwritable(&state).to_string())
    }

    fn unwritable(&self, state: &State) -> AuditError {
        AuditError::Unwritable {
            path: self.path.display().to_string(),
            cause: state.failing.clone().unwrap_or_else(|| "full".into()),
            kept: state.kept.len(),
        }
    }

    /// Write the kept lines in order, each whole or not at all.
    fn write_kept(&self, state: &mut State) -> Result<(), AuditError> {
        while let Some(text) = state.kept.front() {
            let written = state.file.metadata().and_then(|m| {
                let before = m.len();
                let result = state
                    .file
                    .write_all(format!("{text}\n").as_bytes())
                    .and_then(|()| state.file.sync_data());
                if result.is_err() {
                    // The bytes of a line cut short go, or the next line
                    // written would break the chain.
                    if let Err(e) = state.file.set_len(before).and_then(|()| state.file.sync_data()) {
                        tracing::error!(path = %self.path.display(), cause = %e, "cannot cut a part-written admin audit record off again");
                    }
                }
                result
            });
            match written {
                Ok(()) => {
                    state.kept.pop_front();
                }
                Err(e) => {
                    if state.failing.is_none() {
                        tracing::error!(
                            path = %self.path.display(),
                            cause = %e,
                            kept = state.kept.len(),
                            "cannot write the admin audit log; keeping the records and refusing changes until it can be written"
                        );
                    }
                    state.failing = Some(e.to_string());
                    return Err(self.unwritable(state));
                }
            }
        }
        if state.failing.take().is_some() {
            tracing::warn!(path = %self.path.display(), "admin audit log writable again; every record kept is on file");
        }
        Ok(())
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
            .record(&json!({"action": "apply"}))
            .unwrap();
        AdminAudit::open(&path)
            .unwrap()
            .record(&json!({"action": "rollback"}))
            .unwrap();
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
