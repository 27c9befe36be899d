//! The flow audit log: one JSON line per flow, each carrying the SHA-256 of
//! the line before it, so that an information-governance team can prove the
//! log is complete and unaltered (`fedgate-edge audit verify FILE`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The chain's starting point: the `prev` of a log's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
}

#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    prev: &'a str,
    #[serde(flatten)]
    record: &'a FlowRecord,
}

struct Chain {
    file: Option<File>,
    seq: u64,
    prev: String,
}

/// Appends records to a file (if configured) and to tracing.
pub struct AuditLog {
    path: Option<PathBuf>,
    chain: Mutex<Chain>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AuditLog {
    /// Open (or create) the log, continuing the chain of what is there.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut chain = Chain {
            file: None,
            seq: 0,
            prev: GENESIS.to_owned(),
        };
        if let Some(path) = path {
            if path.exists() {
                let summary = verify(path).with_context(|| {
                    format!(
                        "existing audit log {} does not verify; move it aside",
                        path.display()
                    )
                })?;
                chain.seq = summary.records;
                chain.prev = summary.last_hash;
            }
            chain.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open audit log {}", path.display()))?,
            );
        }
        Ok(Self {
            path: path.map(Path::to_owned),
            chain: Mutex::new(chain),
        })
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
        let hash = sha256_hex(text.as_bytes());
        text.push('\n');
        if let Some(file) = &mut chain.file
            && let Err(e) = file.write_all(text.as_bytes()).and_then(|()| file.flush())
        {
            tracing::error!(cause = %e, path = ?self.path, "cannot write audit record");
            return;
        }
        chain.seq += 1;
        chain.prev = hash;
    }
}

#[derive(Debug)]
pub struct Verified {
    pub records: u64,
    pub last_hash: String,
}

/// Check every line's `seq` and `prev` against the chain.
pub fn verify(path: &Path) -> anyhow::Result<Verified> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut prev = GENESIS.to_owned();
    let mut records = 0u64;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("cannot read line {n}"))?;
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("line {n} is not JSON"))?;
        let seq = value["seq"]
            .as_u64()
            .with_context(|| format!("line {n} has no `seq`"))?;
        let claimed = value["prev"]
            .as_str()
            .with_context(|| format!("line {n} has no `prev`"))?;
        anyhow::ensure!(
            seq == records + 1,
            "line {n}: sequence number {seq}, expected {}: a record is missing or repeated",
            records + 1
        );
        anyhow::ensure!(
            claimed == prev,
            "line {n}: `prev` does not match the hash of line {}: the log was altered or a record removed",
            n - 1
        );
        prev = sha256_hex(line.as_bytes());
        records += 1;
    }
    Ok(Verified {
        records,
        last_hash: prev,
    })
}
