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
//!
//! The file is thinned when the replica starts and after every
//! [`THIN_AFTER`] anchors: anchors older than [`KEEP_EVERY_ANCHOR`] are
//! kept one a day per edge ([`thin_anchors`] says which), so the file grows
//! by a line a day per edge, not by one every interval.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub use federation::chain::Offered;
use federation::chain::{Anchor, AnchorKeeper, KEEP_EVERY_ANCHOR, THIN_AFTER, thin_anchors};
use jiff::Timestamp;

/// The file of one replica's anchors: one JSON [`Anchor`] per line.
pub const FILE: &str = "audit-anchors.jsonl";

/// Thin `dir`'s anchors file, whose text is `text`, at `now`: written whole
/// in its place, or left as it was on failure (logged).
fn thin(dir: &Path, text: &str, now: Timestamp) {
    let Some(thinned) = thin_anchors(text, now, KEEP_EVERY_ANCHOR) else {
        return;
    };
    let path = dir.join(FILE);
    let (before, after) = (text.lines().count(), thinned.lines().count());
    match crate::store::embedded::write_durably(dir, FILE, thinned.as_bytes()) {
        Ok(()) => {
            tracing::info!(path = %path.display(), lines = after, dropped = before - after, "audit anchors thinned");
        }
        Err(e) => {
            tracing::error!(path = %path.display(), cause = %e, "cannot thin the audit anchors");
        }
    }
}

pub struct Anchors {
    path: PathBuf,
    keeper: Mutex<AnchorKeeper>,
    /// Anchors appended since the file was last thinned (under `keeper`'s
    /// lock).
    appended: std::sync::atomic::AtomicU64,
}

impl Anchors {
    /// The anchors in `dir`, each edge's last read back from the file,
    /// thinned at `now`.
    pub fn open(dir: &Path, every: Duration, now: Timestamp) -> anyhow::Result<Self> {
        let path = dir.join(FILE);
        let mut keeper = AnchorKeeper::new(every);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                thin(dir, &text, now);
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
            appended: std::sync::atomic::AtomicU64::new(0),
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
        let appended = self
            .appended
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if appended.is_multiple_of(THIN_AFTER) {
            match std::fs::read_to_string(&self.path) {
                Ok(text) => thin(self.dir(), &text, now),
                Err(e) => {
                    tracing::error!(path = %self.path.display(), cause = %e, "cannot thin the audit anchors");
                }
            }
        }
        outcome
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
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
        let t0: Timestamp = "2026-11-25T04:00:00Z".parse().expect("time");
        let a = Anchors::open(dir.path(), Duration::from_secs(300), t0).expect("open");
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
        let again = Anchors::open(dir.path(), Duration::from_secs(300), t0).expect("open");
        assert_eq!(
            again.offer("c1", "away/edge", 5, &h(5), at(900)),
            Offered::Skipped
        );
        assert_eq!(
            again.offer("c1", "home/edge", 3, &h(4), at(900)),
            Offered::Skipped
        );
    }

    /// Forty days of anchors every five minutes: at start, the ten oldest
    /// days are thinned to their first anchor; after `THIN_AFTER` more
    /// anchors (three and a half days), the days that aged past the
    /// thirty are thinned too.
    #[test]
    fn the_anchors_file_is_thinned_at_start_and_as_it_grows() {
        let dir = tempfile::tempdir().expect("dir");
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let at = |i: u64| t0 + jiff::SignedDuration::from_secs(300 * i as i64);
        let h = |n: u64| format!("{n:064x}");
        let day = 288;
        let mut text = String::new();
        for i in 0..40 * day {
            let a = Anchor {
                time: at(i).to_string(),
                edge: "home/edge".into(),
                seq: i + 1,
                hash: h(i + 1),
                replica: "c1".into(),
            };
            text.push_str(&serde_json::to_string(&a).expect("json"));
            text.push('\n');
        }
        std::fs::write(dir.path().join(FILE), &text).expect("write");
        let lines = || {
            std::fs::read_to_string(dir.path().join(FILE))
                .expect("read")
                .lines()
                .count() as u64
        };
        let a = Anchors::open(dir.path(), Duration::from_secs(300), at(40 * day)).expect("open");
        assert_eq!(lines(), 10 + 30 * day);
        // The last anchor read back: the same record is not kept again.
        assert_eq!(
            a.offer("c1", "home/edge", 40 * day, &h(40 * day), at(40 * day)),
            Offered::Skipped
        );
        for i in 40 * day..40 * day + THIN_AFTER {
            assert_eq!(
                a.offer("c1", "home/edge", i + 1, &h(i + 1), at(i + 1)),
                Offered::Anchored
            );
        }
        // Thinned at day 40 + 1024 intervals (43.6): anchors within thirty
        // days of it are those after interval 10 days + 1024 (day 13.6);
        // days 0 to 13 keep their first anchor.
        let young_of_the_file = (40 * day - 1) - (10 * day + THIN_AFTER);
        assert_eq!(lines(), 14 + young_of_the_file + THIN_AFTER);
        let now = 40 * day + THIN_AFTER;
        assert_eq!(
            a.of("home/edge").expect("read").last().expect("last").seq,
            now
        );
    }
}
