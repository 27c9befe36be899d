//! The admin audit log: one JSON line per change asked of the control plane,
//! accepted or refused, hash-chained like the edges' flow audit
//! ([`federation::chain`]) and written through to disk (fsync) before the
//! caller hears the answer. Append-only: the control plane never rewrites it,
//! and at start it continues the chain of what is there, refusing a log that
//! does not verify; only a last record cut short by a crash is set aside. On
//! a full disk records are kept in memory and changes refused until the file
//! takes them; a control plane stopped before then logs them whole.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use federation::chain::{BrokenChain, NotCutShort, Verifier, link};
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

/// How long a control plane stopping tries to write the records it kept.
pub const CLOSE_TRIES: std::time::Duration = std::time::Duration::from_secs(3);

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
    #[error("admin audit log {path} does not verify ({source}); move it aside and investigate")]
    Torn { path: String, source: NotCutShort },
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
    /// Open the log at `path` (created if missing), its chain verified. A
    /// last line cut short (the control plane stopped while writing it) is
    /// moved to `FILE.cut-short-UNIXSECONDS` beside it and the chain goes
    /// on from the last whole record; any other break refuses to start.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.display().to_string(),
            source,
        };
        let broken = |source| AuditError::Broken {
            path: path.display().to_string(),
            source,
        };
        let mut chain = Verifier::default();
        if path.exists() {
            let mut reader = BufReader::new(File::open(path).map_err(io)?);
            let mut complete = 0u64;
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
                if buf.last() != Some(&b'\n') {
                    if n > 0 {
                        chain.cut_short(&buf).map_err(|source| AuditError::Torn {
                            path: path.display().to_string(),
                            source,
                        })?;
                        set_aside(path, complete, &buf).map_err(io)?;
                    }
                    break;
                }
                let line = std::str::from_utf8(&buf[..n - 1]).map_err(|_| {
                    broken(BrokenChain::NotJson {
                        line: chain.lines + 1,
                    })
                })?;
                chain.handle_line(line).map_err(broken)?;
                complete += n as u64;
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
        // `seq` and `prev` first, as every chained record begins
        // ([`Verifier::next_opening`]), then the record's own fields.
        let fields = match record {
            Value::Object(fields) => fields.clone(),
            _ => serde_json::Map::new(),
        };
        let fields = Value::Object(fields).to_string();
        let text = match fields.strip_prefix('{').filter(|f| *f != "}") {
            Some(rest) => format!("{}{rest}", state.chain.next_opening()),
            None => format!(
                r#"{{"seq":{},"prev":"{}"}}"#,
                state.chain.records + 1,
                state.chain.prev
            ),
        };
        if state.kept.len() >= KEEP_MAX {
            tracing::error!(
                target: "fedgate::admin_audit",
                path = %self.path.display(),
                record = %text,
                limit = KEEP_MAX,
                "admin audit log cannot be written and its limit of records kept is reached; this one is in this log only"
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

    /// At stop: write the records kept, trying for [`CLOSE_TRIES`]. Those
    /// the file still does not take are logged whole, each with its `seq`
    /// and `prev` (target `fedgate::admin_audit`), so that they can be put
    /// back; their number is the result.
    /// The log's head on file: the `seq` and hash of its last record, when
    /// it holds one and every record taken is on file.
    pub fn head(&self) -> Option<(u64, String)> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.kept.is_empty() && state.chain.records > 0)
            .then(|| (state.chain.records, state.chain.prev.clone()))
    }

    /// Records kept in memory until the file takes them.
    pub fn backlog(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .kept
            .len()
    }

    pub async fn close(&self) -> usize {
        let until = tokio::time::Instant::now() + CLOSE_TRIES;
        while self.ready().is_err() && tokio::time::Instant::now() < until {
            tokio::time::sleep(CLOSE_TRIES / 6).await;
        }
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for text in &state.kept {
            tracing::error!(
                target: "fedgate::admin_audit",
                path = %self.path.display(),
                record = %text,
                "stopping with an admin audit record not written"
            );
        }
        state.kept.len()
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
                            records = state.kept.len(),
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

/// Move `tail`, the bytes after the last whole line (at `complete`), to a
/// file of its own beside the log and cut the log back to its whole lines.
fn set_aside(path: &Path, complete: u64, tail: &[u8]) -> std::io::Result<()> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".cut-short-{secs}"));
    let mut kept = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&aside)?;
    kept.write_all(tail)?;
    kept.sync_all()?;
    let log = OpenOptions::new().write(true).open(path)?;
    log.set_len(complete)?;
    log.sync_all()?;
    tracing::warn!(
        path = %path.display(),
        bytes = tail.len(),
        kept = %PathBuf::from(aside).display(),
        "admin audit log ended in a record cut short; set it aside and continued the chain"
    );
    Ok(())
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

    /// A control plane stopped while writing a record leaves it cut short:
    /// the next start sets it aside and the chain goes on; other bytes
    /// after the last line still refuse to start.
    #[test]
    fn a_record_cut_short_is_set_aside_and_the_chain_goes_on() {
        let dir = std::env::temp_dir().join(format!("admin-audit-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin-audit.jsonl");
        let audit = AdminAudit::open(&path).unwrap();
        for action in ["apply", "rollback", "apply"] {
            audit.record(&json!({"action": action})).unwrap();
        }
        drop(audit);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(r#"{"seq":1,"prev":"0000"#), "{text}");
        let third = text.lines().nth(2).unwrap().len() + 1;
        let torn = &text.as_bytes()[text.len() - third..text.len() - third / 2];
        let whole = &text[..text.len() - third];
        std::fs::write(&path, [whole.as_bytes(), torn].concat()).unwrap();

        let audit = AdminAudit::open(&path).unwrap();
        audit.record(&json!({"action": "apply"})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut v = Verifier::default();
        for line in text.lines() {
            v.handle_line(line).unwrap();
        }
        assert_eq!(v.records, 3, "records 1, 2, and 3 again:\n{text}");
        let aside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".cut-short-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), torn);

        // Bytes that are not the next record's start: refused, untouched.
        let altered = format!("{text}{{\"seq\":9");
        std::fs::write(&path, &altered).unwrap();
        let err = AdminAudit::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("line 4 has no newline and is not the start of record 4"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), altered);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
