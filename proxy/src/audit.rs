//! The flow audit log: one JSON line per flow, each carrying the SHA-256 of
//! the line before it, so that an information-governance team can prove the
//! log is complete and unaltered (`fedgate-edge audit verify FILE`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use anyhow::Context;
use federation::chain::{Verifier, link};
use serde::{Deserialize, Serialize};

pub use federation::chain::GENESIS;

/// One flow, as one edge saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowRecord {
    pub flow_id: String,
    /// `visited` (the client's side) or `home` (the service owner's side).
    pub role: String,
    pub start: String,
    pub end: String,
    pub src_org: String,
    pub src_network: Option<String>,
    pub src_addr: Option<String>,
    pub service: String,
    pub port: u16,
    /// `allowed` or `denied`.
    pub result: String,
    pub reason: String,
    pub rules: Vec<String>,
    pub agreement: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub peer_edge: Option<String>,
    pub transport: Option<String>,
    pub ingress: Option<String>,
    /// Set when the edge closed an allowed flow: `revoked`,
    /// `policy:<reason>` (a new snapshot no longer allows it), `idle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    prev: &'a str,
    #[serde(flatten)]
    record: &'a FlowRecord,
}

struct Chain {
    seq: u64,
    prev: String,
}

/// Appends records to a file (if configured) and to tracing. Hashing happens
/// in the flow's task (cheap, and it fixes the order); the file is written by
/// a thread of its own, in batches gathered for [`GATHER`], so a flow never
/// waits on the disk.
pub struct AuditLog {
    chain: Mutex<Chain>,
    writer: Mutex<Option<(mpsc::Sender<String>, std::thread::JoinHandle<()>)>>,
}

impl AuditLog {
    /// Open (or create) the log, continuing the chain of what is there.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut chain = Chain {
            seq: 0,
            prev: GENESIS.to_owned(),
        };
        let mut writer = None;
        if let Some(path) = path {
            if path.exists() {
                let summary = scan(path).with_context(|| {
                    format!(
                        "existing audit log {} does not verify; move it aside",
                        path.display()
                    )
                })?;
                if summary.cut_short > 0 {
                    set_aside(path, &summary)?;
                }
                chain.seq = summary.records;
                chain.prev = summary.last_hash;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open audit log {}", path.display()))?;
            let (tx, rx) = mpsc::channel::<String>();
            let shown = path.display().to_string();
            let handle = std::thread::Builder::new()
                .name("audit-writer".into())
                .spawn(move || write_lines(file, &rx, &shown))
                .context("cannot start the audit writer")?;
            writer = Some((tx, handle));
        }
        Ok(Self {
            chain: Mutex::new(chain),
            writer: Mutex::new(writer),
        })
    }

    /// Write out every record taken so far and stop the writer.
    pub fn close(&self) {
        let taken = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some((tx, handle)) = taken {
            drop(tx);
            let _ = handle.join();
        }
    }

    pub fn record(&self, record: &FlowRecord) {
        tracing::info!(
            target: "fedgate::audit",
            flow_id = %record.flow_id,
            role = %record.role,
            src_org = %record.src_org,
            src_network = record.src_network.as_deref().unwrap_or("-"),
            src_addr = record.src_addr.as_deref().unwrap_or("-"),
            service = %record.service,
            port = record.port,
            result = %record.result,
            reason = %record.reason,
            rule = record.rules.first().map_or("-", String::as_str),
            agreement = record.agreement.as_deref().unwrap_or("-"),
            bytes_up = record.bytes_up,
            bytes_down = record.bytes_down,
            peer_edge = record.peer_edge.as_deref().unwrap_or("-"),
            transport = record.transport.as_deref().unwrap_or("-"),
            "flow"
        );
        let Ok(mut chain) = self.chain.lock() else {
            return;
        };
        let chain = &mut *chain;
        let line = Line {
            seq: chain.seq + 1,
            prev: &chain.prev,
            record,
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        let hash = link(&text);
        text.push('\n');
        if let Ok(w) = self.writer.lock()
            && let Some((tx, _)) = w.as_ref()
            && tx.send(text).is_err()
        {
            tracing::error!("audit writer stopped; record not written");
            return;
        }
        chain.seq += 1;
        chain.prev = hash;
    }
}

/// How long the writer, woken by a record, lets more gather before writing
/// them: a record reaches the file about this much later, and a busy edge
/// wakes the writer once per interval rather than once per flow (a wake-up
/// and a `write` that took about 5% of the CPU of each new flow).
pub const GATHER: Duration = Duration::from_millis(5);

/// The writer thread: woken by a record, let more gather for [`GATHER`],
/// append them all and flush.
fn write_lines(file: File, rx: &mpsc::Receiver<String>, path: &str) {
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    while let Ok(line) = rx.recv() {
        std::thread::sleep(GATHER);
        let mut result = out.write_all(line.as_bytes());
        while result.is_ok() {
            match rx.try_recv() {
                Ok(more) => result = out.write_all(more.as_bytes()),
                Err(_) => break,
            }
        }
        if let Err(e) = result.and_then(|()| out.flush()) {
            tracing::error!(cause = %e, path, "cannot write audit records");
        }
    }
    let _ = out.flush();
}

#[derive(Debug)]
pub struct Verified {
    pub records: u64,
    pub last_hash: String,
    /// Bytes of the complete lines (each ends with a newline).
    pub complete: u64,
    /// Bytes after the last newline: a record cut short, as when the edge
    /// stopped (power cut, full disk) in the middle of writing it.
    pub cut_short: u64,
}

/// Check every complete line's `seq` and `prev` against the chain, and
/// measure what follows the last newline.
fn scan(path: &Path) -> anyhow::Result<Verified> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut chain = Verifier::default();
    let mut complete = 0u64;
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read line {}", chain.records + 1))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(Verified {
                records: chain.records,
                last_hash: chain.prev,
                complete,
                cut_short: n as u64,
            });
        }
        let line = std::str::from_utf8(&buf[..n - 1])
            .map_err(|_| anyhow::anyhow!("line {} is not UTF-8", chain.records + 1))?;
        chain.handle_line(line)?;
        complete += n as u64;
    }
}

/// Check every line's `seq` and `prev` against the chain; a last line cut
/// short fails too (the edge sets it aside when it next starts).
pub fn verify(path: &Path) -> anyhow::Result<Verified> {
    let summary = scan(path)?;
    anyhow::ensure!(
        summary.cut_short == 0,
        "line {} is cut short ({} bytes and no newline: a record being written when the edge \
         stopped); the {} lines before it verify",
        summary.records + 1,
        summary.cut_short,
        summary.records
    );
    Ok(summary)
}

/// The most bytes a record cut short can hold: a record is well under 4 KiB.
const CUT_SHORT_MAX: u64 = 64 * 1024;

/// Move the bytes after the last complete line of `path` to a file of
/// their own beside it (`FILE.cut-short-UNIXSECONDS`), so that the chain
/// goes on from the last whole record and nothing written is lost. Only
/// the start of the record the chain expects next is taken for one cut
/// short; anything else (not our log, or altered) is refused as before.
fn set_aside(path: &Path, summary: &Verified) -> anyhow::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let line = summary.records + 1;
    anyhow::ensure!(
        summary.cut_short <= CUT_SHORT_MAX,
        "line {line} has no newline and {} bytes: not a record cut short",
        summary.cut_short
    );
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open audit log {}", path.display()))?;
    file.seek(SeekFrom::Start(summary.complete))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    // Every record starts with its `seq` and the hash of the line before.
    let expected = format!("{{\"seq\":{line},\"prev\":\"{}\",", summary.last_hash);
    anyhow::ensure!(
        tail.starts_with(expected.as_bytes()) || expected.as_bytes().starts_with(&tail),
        "line {line} has no newline and is not the start of record {line}: not a record cut short"
    );
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".cut-short-{secs}"));
    let aside = std::path::PathBuf::from(aside);
    let mut kept = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&aside)
        .with_context(|| {
            format!(
                "cannot set the cut-short record aside in {}",
                aside.display()
            )
        })?;
    kept.write_all(&tail)?;
    kept.sync_all()?;
    file.set_len(summary.complete)?;
    file.sync_all()?;
    tracing::warn!(
        path = %path.display(),
        bytes = tail.len(),
        kept = %aside.display(),
        records = summary.records,
        "audit log ended in a record cut short; set it aside and continued the chain"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> FlowRecord {
        FlowRecord {
            flow_id: format!("{n:032x}"),
            role: "home".into(),
            start: "2026-06-01T00:00:00Z".into(),
            end: "2026-06-01T00:00:01Z".into(),
            src_org: "away".into(),
            src_network: Some("roaming-staff".into()),
            src_addr: None,
            service: "home/web".into(),
            port: 443,
            result: "allowed".into(),
            reason: "allowed".into(),
            rules: vec!["r".into()],
            agreement: None,
            bytes_up: n,
            bytes_down: n,
            peer_edge: None,
            transport: Some("quic".into()),
            ingress: None,
            closed: None,
        }
    }

    /// An audit log in `dir` with records 1 to 3, closed.
    fn three_records(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("audit.jsonl");
        let log = AuditLog::open(Some(&path)).unwrap();
        for n in 1..=3 {
            log.record(&record(n));
        }
        log.close();
        path
    }

    #[test]
    fn the_chain_proves_the_log_complete_and_unaltered() {
        let dir = tempfile::tempdir().unwrap();
        let path = three_records(dir.path());
        // Reopening continues the chain.
        let log = AuditLog::open(Some(&path)).unwrap();
        log.record(&record(4));
        log.close();
        assert_eq!(verify(&path).unwrap().records, 4);

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let check = |body: String| {
            let p = dir.path().join("tampered.jsonl");
            std::fs::write(&p, body).unwrap();
            verify(&p).unwrap_err().to_string()
        };
        // A removed record.
        let removed = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]);
        assert!(check(removed).contains("line 2: sequence number 3"));
        // An altered record (bytes changed, seq and prev kept).
        let altered = text.replacen("\"bytes_up\":2", "\"bytes_up\":9", 1);
        assert_ne!(altered, text);
        assert!(check(altered).contains("line 3: `prev` does not match"));
        // A record removed and the rest renumbered still breaks the chain.
        let renumbered = format!(
            "{}\n{}\n",
            lines[0],
            lines[2].replacen("\"seq\":3", "\"seq\":2", 1)
        );
        assert!(check(renumbered).contains("line 2: `prev` does not match"));
    }

    /// A record cut short (the edge stopped while writing it) fails
    /// `verify`, naming the line; an edge that opens the log sets those
    /// bytes aside in a file of their own and goes on from the last whole
    /// record. A log altered before its end still refuses to open.
    #[test]
    fn a_record_cut_short_is_set_aside_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = three_records(dir.path());
        let whole = std::fs::read(&path).unwrap();
        // The first half of the record that came next, as a copy shows.
        let copy = dir.path().join("copy.jsonl");
        std::fs::copy(&path, &copy).unwrap();
        let log = AuditLog::open(Some(&copy)).unwrap();
        log.record(&record(4));
        log.close();
        let next = std::fs::read(&copy).unwrap()[whole.len()..].to_vec();
        let torn = &next[..next.len() / 2];
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(torn).unwrap();
        drop(file);
        let err = format!("{:#}", verify(&path).unwrap_err());
        assert!(
            err.contains(&format!(
                "line 4 is cut short ({} bytes and no newline",
                torn.len()
            )) && err.contains("the 3 lines before it verify"),
            "{err}"
        );

        let log = AuditLog::open(Some(&path)).unwrap();
        log.record(&record(4));
        log.close();
        let summary = verify(&path).unwrap();
        assert_eq!(summary.records, 4);
        assert_eq!(&std::fs::read(&path).unwrap()[..whole.len()], &whole[..]);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("audit.jsonl.cut-short-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), torn);

        // Bytes after the last line that do not start the next record (not
        // our log, or altered): refused, the file left as it is.
        let foreign = dir.path().join("foreign.jsonl");
        let mut body = std::fs::read(&path).unwrap();
        body.extend_from_slice(b"{\"seq\":5,\"prev\":\"0000");
        std::fs::write(&foreign, &body).unwrap();
        let err = format!("{:#}", AuditLog::open(Some(&foreign)).err().unwrap());
        assert!(
            err.contains("line 5 has no newline and is not the start of record 5"),
            "{err}"
        );
        assert_eq!(std::fs::read(&foreign).unwrap(), body);

        // An altered record before the end: no setting aside, no opening.
        let text = std::fs::read_to_string(&path).unwrap();
        let altered = text.replacen("\"bytes_up\":2", "\"bytes_up\":9", 1);
        assert_ne!(altered, text);
        std::fs::write(&path, format!("{altered}{{\"seq\":5")).unwrap();
        let err = format!("{:#}", AuditLog::open(Some(&path)).err().unwrap());
        assert!(
            err.contains("does not verify; move it aside") && err.contains("line 3"),
            "{err}"
        );
    }

    /// Records of many flows at once, gathered by the writer, all reach the
    /// file soon after they were taken, without waiting for close, with the
    /// chain intact.
    #[test]
    fn records_from_many_flows_reach_the_file_soon_without_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = std::sync::Arc::new(AuditLog::open(Some(&path)).unwrap());
        let flows: Vec<_> = (0..4u64)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..250 {
                        log.record(&record(t * 1000 + n));
                    }
                })
            })
            .collect();
        for f in flows {
            f.join().unwrap();
        }
        #[allow(clippy::disallowed_types)] // a wall-clock bound on a real thread
        let recorded = std::time::Instant::now();
        let mut lines = 0;
        for _ in 0..100 {
            lines = std::fs::read_to_string(&path).unwrap().lines().count();
            if lines == 1000 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(lines, 1000, "every record on file before close");
        assert!(
            recorded.elapsed() < Duration::from_millis(500),
            "on file {:?} after the last record",
            recorded.elapsed()
        );
        log.close();
        assert_eq!(verify(&path).unwrap().records, 1000);
    }
}
