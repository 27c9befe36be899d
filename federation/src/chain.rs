//! Hash-chained logs: each JSON line carries `seq` (1, 2, ...) and `prev`,
//! the SHA-256 of the line before it ([`GENESIS`] for the first), so that a
//! reader can prove a log complete and unaltered. The edges' flow audit and
//! the control plane's admin audit both use it. Pure: lines in, verdicts out.

use sha2::{Digest, Sha256};

/// The chain's starting point: the `prev` of a log's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 of a line, hex: the next line's `prev`.
pub fn link(line: &str) -> String {
    crate::hex::encode(&Sha256::digest(line.as_bytes()))
}

/// Why a log does not verify; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokenChain {
    #[error("line {line} is not JSON")]
    NotJson { line: u64 },
    #[error("line {line} has no `{field}`")]
    Missing { line: u64, field: &'static str },
    #[error(
        "line {line}: sequence number {found}, expected {expected}: a record is missing or repeated"
    )]
    Sequence {
        line: u64,
        found: u64,
        expected: u64,
    },
    #[error(
        "line {line}: `prev` does not match the hash of line {}: the log was altered or a record removed",
        line - 1
    )]
    Prev { line: u64 },
}

/// Checks a log line by line; after the last, `records` and `prev` continue
/// the chain.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub records: u64,
    /// Hash of the last line checked ([`GENESIS`] before any).
    pub prev: String,
}

impl Default for Verifier {
    fn default() -> Self {
        Self {
            records: 0,
            prev: GENESIS.to_owned(),
        }
    }
}

impl Verifier {
    pub fn handle_line(&mut self, line: &str) -> Result<(), BrokenChain> {
        let n = self.records + 1;
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|_| BrokenChain::NotJson { line: n })?;
        let seq = value["seq"].as_u64().ok_or(BrokenChain::Missing {
            line: n,
            field: "seq",
        })?;
        let claimed = value["prev"].as_str().ok_or(BrokenChain::Missing {
            line: n,
            field: "prev",
        })?;
        if seq != n {
            return Err(BrokenChain::Sequence {
                line: n,
                found: seq,
                expected: n,
            });
        }
        if claimed != self.prev {
            return Err(BrokenChain::Prev { line: n });
        }
        self.prev = link(line);
        self.records = n;
        Ok(())
    }
}
