//! Anchors of the edges' audit logs: each edge reports its log's head (the
//! last record on its disk, `seq` and hash) with its version; the replica
//! keeps one every `--audit-anchor-secs` per edge in
//! `DATA/audit-anchors.jsonl`, off the edge's host and out of its admins'
//! reach. `fedgate-edge audit verify --anchors` then shows what a hash
//! chain alone cannot: a log written anew (its records at anchored `seq`s
//! differ) or cut short at its end (it ends before an anchor).
//!
//! A head that goes back (a lower `seq`, or the same `seq` with another
//! hash) is logged at once as a warning (`edge audit log went back`) and
//! anchored: the edge's log was replaced or cut, or started anew on
//! purpose after its files were archived.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub use federation::chain::Offered;
use federation::chain::{Anchor, AnchorKeeper};
use jiff::Timestamp;

/// The file of one replica's anchors: one JSON [`Anchor`] per line.
pub const FILE: &str = "audit-anchors.jsonl";

pub struct Anchors {
    path: PathBuf,
    keeper: Mutex<AnchorKeeper>,
}

impl Anchors {
    /// The anchors in `dir`, each edge's last read back from the file.
    pub fn open(dir: &Path, every: Duration) -> anyhow::Result<Self> {
        let path = dir.join(FILE);
        let mut keeper = AnchorKeeper::new(every);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                // A line cut short by a crash: the anchors before it stand,
                // and the next report makes a new one.
                for (line, cause) in keeper.load(&text) {
                    tracing::warn!(path = %path.display(), line, cause, "audit anchor line skipped");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot read audit anchors {}: {e}",
                    path.display()
                ));
            }
        }
        Ok(Self {
            path,
            keeper: Mutex::new(keeper),
        })
    }

    /// `edge` reported its audit log's head: `seq` and `hash`.
    pub fn offer(
        &self,
        replica: &str,
        edge: &str,
        seq: u64,
        hash: &str,
        now: Timestamp,
    ) -> Offered {
        let mut keeper = self
            .keeper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (outcome, anchor) = keeper.consider(replica, edge, seq, hash, now);
        let Some(anchor) = anchor else {
            return outcome;
        };
        if let Offered::WentBack { held } = &outcome {
            tracing::warn!(
                edge,
                seq,
                held_seq = held.seq,
                held_time = %held.time,
                "edge audit log went back: its log was replaced or cut, or started anew after its files were archived"
            );
        }
        if let Err(e) = self.append(&anchor) {
            tracing::error!(path = %self.path.display(), cause = %e, edge, "cannot keep an audit anchor");
            return Offered::Skipped;
        }
        keeper.kept(anchor);
        outcome
    }

    fn append(&self, anchor: &Anchor) -> std::io::Result<()> {
        let mut line = serde_json::to_string(anchor).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(line.as_bytes())
    }

    /// Every anchor of `edge` this replica keeps, oldest first.
    pub fn of(&self, edge: &str) -> std::io::Result<Vec<Anchor>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<Anchor>(l).ok())
            .filter(|a| a.edge == edge)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_per_interval_and_a_head_that_goes_back_is_kept_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let a = Anchors::open(dir.path(), Duration::from_secs(300)).expect("open");
        let t0: Timestamp = "2026-11-25T04:00:00Z".parse().expect("time");
        let at = |secs: i64| t0 + jiff::SignedDuration::from_secs(secs);
        let h = |n: u64| format!("{n:064x}");
        assert_eq!(
            a.offer("c1", "home/edge", 10, &h(10), at(0)),
            Offered::Anchored
        );
        // The same record, then a later one too soon: skipped.
        assert_eq!(
            a.offer("c1", "home/edge", 10, &h(10), at(30)),
            Offered::Skipped
        );
        assert_eq!(
            a.offer("c1", "home/edge", 20, &h(20), at(60)),
            Offered::Skipped
        );
        assert_eq!(
            a.offer("c1", "home/edge", 30, &h(30), at(301)),
            Offered::Anchored
        );
        // Another edge has its own.
        assert_eq!(
            a.offer("c1", "away/edge", 5, &h(5), at(302)),
            Offered::Anchored
        );
        // Back to record 3, at once; or the same seq with another hash.
        assert!(matches!(
            a.offer("c1", "home/edge", 3, &h(3), at(320)),
            Offered::WentBack { held } if held.seq == 30
        ));
        assert!(matches!(
            a.offer("c1", "home/edge", 3, &h(4), at(330)),
            Offered::WentBack { held } if held.seq == 3
        ));
        let seqs: Vec<u64> = a
            .of("home/edge")
            .expect("read")
            .iter()
            .map(|a| a.seq)
            .collect();
        assert_eq!(seqs, [10, 30, 3, 3]);
        // Opened again, each edge's last anchor is read back.
        let again = Anchors::open(dir.path(), Duration::from_secs(300)).expect("open");
        assert_eq!(
            again.offer("c1", "away/edge", 5, &h(5), at(900)),
            Offered::Skipped
        );
        assert_eq!(
            again.offer("c1", "home/edge", 3, &h(4), at(900)),
            Offered::Skipped
        );
    }
}
