//! Hash-chained logs: each JSON line carries `seq` (1, 2, ...) and `prev`,
//! the SHA-256 of the line before it ([`GENESIS`] for the first), so that a
//! reader can prove a log complete and unaltered. The edges' flow audit and
//! the control plane's admin audit both use it. Pure: lines in, verdicts out.

use std::ops::Bound::{Excluded, Unbounded};

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
    #[error("line {line}: sequence number {found} is past the last a log may use")]
    OutOfRange { line: u64, found: u64 },
    #[error(
        "line {line}: `prev` does not match the hash of the record before it: the log was altered or a record removed"
    )]
    Prev { line: u64 },
}

/// Checks a log line by line; after the last, `records` and `prev` continue
/// the chain. A log may be kept in several files (an edge rotates its audit
/// log): each file's first record goes on from the last of the file before,
/// so the files checked in turn with one verifier prove the whole, and one
/// file alone ([`Verifier::continuing`]) is proved from its first record on.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The `seq` of the last record checked (0 before any); the next must
    /// be one more.
    pub records: u64,
    /// Hash of the last line checked ([`GENESIS`] before any).
    pub prev: String,
    /// Lines checked by this verifier: errors name lines counted from 1.
    pub lines: u64,
    /// The first line's `seq` and `prev`, once one is checked.
    pub start: Option<(u64, String)>,
    /// Take the first line's `seq` and `prev` as given.
    continuing: bool,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::after(0, GENESIS)
    }
}

impl Verifier {
    /// A chain known to end at record `seq` with hash `prev` (the last line
    /// of the file before): the next line must go on from it.
    pub fn after(seq: u64, prev: &str) -> Self {
        Self {
            records: seq,
            prev: prev.to_owned(),
            lines: 0,
            start: None,
            continuing: false,
        }
    }

    /// A file that may go on from one not given (a log rotated before it):
    /// its first line's `seq` and `prev` are taken as they are, and every
    /// line after must follow.
    pub fn continuing() -> Self {
        Self {
            continuing: true,
            ..Self::default()
        }
    }

    pub fn handle_line(&mut self, line: &str) -> Result<(), BrokenChain> {
        let n = self.lines + 1;
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
        if self.continuing && self.lines == 0 && seq > 0 {
            self.records = seq - 1;
            claimed.clone_into(&mut self.prev);
        }
        // The last number is no record's, so that every record has a next
        // (a tampered file may say anything).
        if seq == u64::MAX {
            return Err(BrokenChain::OutOfRange {
                line: n,
                found: seq,
            });
        }
        let expected = self.records.saturating_add(1);
        if seq != expected {
            return Err(BrokenChain::Sequence {
                line: n,
                found: seq,
                expected,
            });
        }
        if claimed != self.prev {
            return Err(BrokenChain::Prev { line: n });
        }
        if self.start.is_none() {
            self.start = Some((seq, claimed.to_owned()));
        }
        self.prev = link(line);
        self.records = seq;
        self.lines = n;
        Ok(())
    }
}

/// The most bytes a record cut short can hold: a record of either log is
/// well under 4 KiB.
pub const CUT_SHORT_MAX: usize = 64 * 1024;

/// Why the bytes after a log's last newline are not a record cut short (a
/// write stopped by a crash or a full disk), and so are not set aside.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotCutShort {
    #[error("line {line} has no newline and {bytes} bytes: not a record cut short")]
    TooLong { line: u64, bytes: usize },
    #[error(
        "line {line} has no newline and is not the start of record {seq}: not a record cut short"
    )]
    NotNext { line: u64, seq: u64 },
}

impl Verifier {
    /// How the record this chain expects next begins: every record of a
    /// chained log starts with its `seq` and `prev`, in that order, so that
    /// one cut short can be told from an altered line.
    pub fn next_opening(&self) -> String {
        format!(
            r#"{{"seq":{},"prev":"{}","#,
            self.records.saturating_add(1),
            self.prev
        )
    }

    /// Whether `tail`, the bytes after the last complete line checked, is
    /// the record this chain expects next cut short: the start of it, or
    /// (cut after its opening) what begins with that opening.
    pub fn cut_short(&self, tail: &[u8]) -> Result<(), NotCutShort> {
        let line = self.lines + 1;
        if tail.len() > CUT_SHORT_MAX {
            return Err(NotCutShort::TooLong {
                line,
                bytes: tail.len(),
            });
        }
        let opening = self.next_opening();
        if tail.starts_with(opening.as_bytes()) || opening.as_bytes().starts_with(tail) {
            Ok(())
        } else {
            Err(NotCutShort::NotNext {
                line,
                seq: self.records.saturating_add(1),
            })
        }
    }
}

/// A record of a log, as someone else was told of it: an edge reports its
/// audit log's head (the last record flushed to its disk) to the control
/// plane, which keeps it. A chain proves a log whole from one record to
/// the next, but whoever can write the file can write a new chain, or cut
/// the last records off; a log that holds another record at an anchor's
/// `seq`, or ends before it, shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    /// When the holder was told (RFC 3339).
    pub time: String,
    /// The log's owner: an edge (`ORG/NAME`), or a control-plane replica
    /// (`control/NAME`) for its admin audit log.
    pub edge: String,
    pub seq: u64,
    /// Hash of the record's line ([`link`]): the next record's `prev`.
    pub hash: String,
    /// Who was told and keeps the anchor: the control-plane replica (its
    /// name) for an edge's log, the edge (`ORG/NAME`) for a replica's.
    pub replica: String,
}

/// Why a log does not hold what its anchors say it held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorMismatch {
    #[error(
        "record {seq} is not the record {replica} anchored for {edge} at {time}: the log was rewritten, from that record or before"
    )]
    Differs {
        seq: u64,
        edge: String,
        time: String,
        replica: String,
    },
    #[error(
        "the log ends at record {last}, but {replica} anchored record {seq} of {edge} at {time}: records were removed from its end"
    )]
    Beyond {
        last: u64,
        seq: u64,
        edge: String,
        time: String,
        replica: String,
    },
}

/// What the anchors proved of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Anchored {
    /// Anchors whose record the log holds, with the hash reported.
    pub matched: u64,
    /// Anchors of records before the log's first (a log whose earlier
    /// files were archived): not checked.
    pub before: u64,
}

/// Checks a log's records against its anchors, record by record as a
/// [`Verifier`] proves them.
#[derive(Debug, Clone, Default)]
pub struct AnchorCheck {
    wanted: std::collections::BTreeMap<u64, Vec<Anchor>>,
    first: Option<u64>,
    last: u64,
    matched: u64,
}

impl AnchorCheck {
    pub fn new(anchors: impl IntoIterator<Item = Anchor>) -> Self {
        let mut wanted: std::collections::BTreeMap<u64, Vec<Anchor>> =
            std::collections::BTreeMap::new();
        for a in anchors {
            wanted.entry(a.seq).or_default().push(a);
        }
        Self {
            wanted,
            ..Self::default()
        }
    }

    /// Record `seq`, whose line hashes to `hash`, is in the log.
    pub fn record(&mut self, seq: u64, hash: &str) -> Result<(), AnchorMismatch> {
        self.first.get_or_insert(seq);
        self.last = seq;
        for a in self.wanted.get(&seq).into_iter().flatten() {
            if a.hash != hash {
                return Err(AnchorMismatch::Differs {
                    seq,
                    edge: a.edge.clone(),
                    time: a.time.clone(),
                    replica: a.replica.clone(),
                });
            }
            self.matched += 1;
        }
        Ok(())
    }

    /// Every record seen: an anchor past the last fails.
    pub fn finish(&self) -> Result<Anchored, AnchorMismatch> {
        let first = self.first.unwrap_or(self.last.saturating_add(1));
        if let Some((seq, a)) = self
            .wanted
            .range((Excluded(self.last), Unbounded))
            .find_map(|(seq, a)| a.first().map(|a| (*seq, a)))
        {
            return Err(AnchorMismatch::Beyond {
                last: self.last,
                seq,
                edge: a.edge.clone(),
                time: a.time.clone(),
                replica: a.replica.clone(),
            });
        }
        Ok(Anchored {
            matched: self.matched,
            before: self
                .wanted
                .range(..first)
                .map(|(_, a)| a.len() as u64)
                .sum(),
        })
    }
}

/// What became of a log's head offered as an anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// To be kept.
    Anchored,
    /// Not kept: the log's last anchor is the same record, or younger than
    /// the keeper's interval.
    Skipped,
    /// To be kept at once, and told: the log went back from `held` (a
    /// lower `seq`, or the same `seq` with another hash): it was replaced
    /// or cut, or started anew after its files were archived.
    WentBack { held: Anchor },
}

/// Decides which heads of which logs become anchors: at most one per log
/// every interval, and at once a head that went back. Pure: the caller
/// reads its anchors file into [`AnchorKeeper::load`], and appends each
/// anchor [`AnchorKeeper::consider`] gives, telling [`AnchorKeeper::kept`]
/// once it is on file. The control plane keeps the edges' heads this way,
/// and each edge the control plane's.
#[derive(Debug, Clone, Default)]
pub struct AnchorKeeper {
    every: std::time::Duration,
    /// Each log's last anchor, by owner.
    last: std::collections::BTreeMap<String, Anchor>,
}

impl AnchorKeeper {
    pub fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            last: std::collections::BTreeMap::new(),
        }
    }

    /// Read back an anchors file (one JSON [`Anchor`] per line), each log's
    /// last anchor taken; returns the lines that are not anchors (1-based,
    /// with why), such as one cut short by a crash.
    pub fn load(&mut self, text: &str) -> Vec<(usize, String)> {
        let mut skipped = Vec::new();
        for (i, line) in text.lines().enumerate() {
            match serde_json::from_str::<Anchor>(line) {
                Ok(a) => {
                    self.last.insert(a.edge.clone(), a);
                }
                Err(e) => skipped.push((i + 1, e.to_string())),
            }
        }
        skipped
    }

    /// `owner`'s log has record `seq` (its line hashing to `hash`) as its
    /// head, told to `holder` at `now`: the anchor to keep, if any, and
    /// what became of the head.
    pub fn consider(
        &self,
        holder: &str,
        owner: &str,
        seq: u64,
        hash: &str,
        now: jiff::Timestamp,
    ) -> (Offered, Option<Anchor>) {
        let outcome = match self.last.get(owner) {
            Some(h) if seq < h.seq || (seq == h.seq && hash != h.hash) => {
                Offered::WentBack { held: h.clone() }
            }
            Some(h) if seq == h.seq => Offered::Skipped,
            Some(h)
                if h.time
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|t| now.duration_since(t).unsigned_abs() < self.every) =>
            {
                Offered::Skipped
            }
            _ => Offered::Anchored,
        };
        let anchor = (outcome != Offered::Skipped).then(|| Anchor {
            time: now.to_string(),
            edge: owner.to_owned(),
            seq,
            hash: hash.to_owned(),
            replica: holder.to_owned(),
        });
        (outcome, anchor)
    }

    /// `anchor` is on file: the next heads of its log are measured from it.
    pub fn kept(&mut self, anchor: Anchor) {
        self.last.insert(anchor.edge.clone(), anchor);
    }
}

/// How long every anchor is kept before [`thin_anchors`] keeps one a day.
pub const KEEP_EVERY_ANCHOR: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Thin an anchors file again after this many anchors appended to it.
pub const THIN_AFTER: u64 = 1024;

/// An anchors file thinned at `now`: what to write in its place, or `None`
/// when it stays as it is.
///
/// A log's latest anchor proves every record before it (each record holds
/// the hash of the one before), so the older ones add only when a record
/// was on file. Every anchor younger than `recent` stays; of the older
/// ones, per log, the first of each UTC day, the two on either side of a
/// head that went back (evidence of the log before and after), and the
/// log's last. A line that is not an anchor (cut short by a crash) stays
/// where it was, and every line ends in a newline, so that the next
/// anchor appended is not glued to a cut one.
pub fn thin_anchors(
    text: &str,
    now: jiff::Timestamp,
    recent: std::time::Duration,
) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let anchors: Vec<Option<Anchor>> = lines
        .iter()
        .map(|l| serde_json::from_str::<Anchor>(l).ok())
        .collect();
    let mut keep: Vec<bool> = anchors.iter().map(Option::is_none).collect();
    // Per log: the previous anchor's index, and its UTC day.
    let mut previous: std::collections::BTreeMap<&str, (usize, Option<jiff::civil::Date>)> =
        std::collections::BTreeMap::new();
    for (i, anchor) in anchors.iter().enumerate() {
        let Some(a) = anchor else { continue };
        let time = a.time.parse::<jiff::Timestamp>().ok();
        let day = time.map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date());
        let young = time.is_none_or(|t| now.duration_since(t).unsigned_abs() < recent);
        match previous.get(a.edge.as_str()) {
            None => keep[i] = true,
            Some(&(p, p_day)) => {
                let held = anchors[p].as_ref().expect("an anchor's index");
                let went_back = a.seq < held.seq || (a.seq == held.seq && a.hash != held.hash);
                if went_back {
                    keep[p] = true;
                }
                keep[i] |= young || went_back || day.is_none() || day != p_day;
            }
        }
        previous.insert(&a.edge, (i, day));
    }
    for &(last, _) in previous.values() {
        keep[last] = true;
    }
    if keep.iter().all(|k| *k) && (text.is_empty() || text.ends_with('\n')) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    for (line, _) in lines.iter().zip(&keep).filter(|(_, k)| **k) {
        out.push_str(line);
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(first: u64, prev: &str, n: u64) -> Vec<String> {
        let mut prev = prev.to_owned();
        (first..first + n)
            .map(|seq| {
                let line = format!(r#"{{"seq":{seq},"prev":"{prev}","x":{seq}}}"#);
                prev = link(&line);
                line
            })
            .collect()
    }

    /// A log in two files: checked in turn, the second must go on from the
    /// first; alone, the second is proved from its first record on.
    #[test]
    fn a_log_in_two_files_is_proved_whole_and_each_file_alone() {
        let first = chain(1, GENESIS, 3);
        let second = chain(4, &link(&first[2]), 2);
        let mut whole = Verifier::default();
        for line in first.iter().chain(&second) {
            whole.handle_line(line).unwrap();
        }
        assert_eq!((whole.records, whole.lines), (5, 5));

        let mut alone = Verifier::continuing();
        for line in &second {
            alone.handle_line(line).unwrap();
        }
        assert_eq!(alone.records, 5);
        assert_eq!(alone.lines, 2);
        assert_eq!(alone.start, Some((4, link(&first[2]))));

        // From the start, the second file alone is missing records 1 to 3.
        let err = Verifier::default().handle_line(&second[0]).unwrap_err();
        assert_eq!(
            err,
            BrokenChain::Sequence {
                line: 1,
                found: 4,
                expected: 1
            }
        );
        // After a file that is not the one before it.
        let other = chain(1, GENESIS, 3);
        let mut after = Verifier::after(3, &link(&format!("{} ", other[2])));
        assert_eq!(
            after.handle_line(&second[0]).unwrap_err(),
            BrokenChain::Prev { line: 1 }
        );
        // A record removed inside a continuing file.
        let mut gap = Verifier::continuing();
        gap.handle_line(&second[0]).unwrap();
        let third = chain(6, &link(&second[1]), 1);
        assert_eq!(
            gap.handle_line(&third[0]).unwrap_err(),
            BrokenChain::Sequence {
                line: 2,
                found: 6,
                expected: 5
            }
        );
    }

    /// The bytes after the last newline are set aside only when they are
    /// the start of the record the chain expects next.
    #[test]
    fn a_record_cut_short_is_told_from_other_bytes() {
        let lines = chain(1, GENESIS, 2);
        let mut v = Verifier::default();
        for line in &lines {
            v.handle_line(line).unwrap();
        }
        let next = &chain(3, &link(&lines[1]), 1)[0];
        for cut in [1, 5, 40, next.len() / 2, next.len() - 1] {
            assert_eq!(v.cut_short(&next.as_bytes()[..cut]), Ok(()), "cut at {cut}");
        }
        // The record after the next, or one altered, is not cut short.
        let later = chain(4, &link(next), 1).remove(0);
        assert_eq!(
            v.cut_short(&later.as_bytes()[..30]),
            Err(NotCutShort::NotNext { line: 3, seq: 3 })
        );
        let altered = next.replacen(&link(&lines[1])[..8], "ffffffff", 1);
        assert_eq!(
            v.cut_short(&altered.as_bytes()[..altered.len() - 1]),
            Err(NotCutShort::NotNext { line: 3, seq: 3 })
        );
        let long = [b'x'; CUT_SHORT_MAX + 1];
        assert_eq!(
            v.cut_short(&long),
            Err(NotCutShort::TooLong {
                line: 3,
                bytes: CUT_SHORT_MAX + 1
            })
        );
    }

    fn anchor(seq: u64, hash: &str) -> Anchor {
        Anchor {
            time: "2026-11-25T04:00:00Z".into(),
            edge: "home/edge".into(),
            seq,
            hash: hash.into(),
            replica: "c1".into(),
        }
    }

    /// Anchors catch what the chain cannot: a log rewritten whole (a new
    /// chain that verifies), and records cut off its end.
    /// Found by `fuzz/` (audit_chain): a number at the end of the range
    /// overflowed the next record's.
    #[test]
    fn a_sequence_number_at_the_end_of_the_range_is_refused() {
        let line = format!(r#"{{"seq":{},"prev":"{GENESIS}"}}"#, u64::MAX);
        let mut chain = Verifier::continuing();
        assert_eq!(
            chain.handle_line(&line),
            Err(BrokenChain::OutOfRange {
                line: 1,
                found: u64::MAX
            })
        );
        let last = Verifier::after(u64::MAX, GENESIS);
        assert!(
            last.next_opening()
                .starts_with(&format!(r#"{{"seq":{}"#, u64::MAX))
        );
        assert!(last.cut_short(b"x").is_err());
        let anchor = |seq| Anchor {
            time: "2026-11-25T00:00:00Z".into(),
            edge: "home/edge".into(),
            seq,
            hash: link(&line),
            replica: "c1".into(),
        };
        let mut check = AnchorCheck::new([anchor(u64::MAX), anchor(3)]);
        check.record(u64::MAX, &link(&line)).expect("its hash");
        assert_eq!(
            check.finish(),
            Ok(Anchored {
                matched: 1,
                before: 1
            })
        );
    }

    #[test]
    fn anchors_catch_a_rewritten_log_and_a_cut_end() {
        let log = chain(1, GENESIS, 5);
        let check = |lines: &[String], anchors: Vec<Anchor>| {
            let mut v = Verifier::continuing();
            let mut a = AnchorCheck::new(anchors);
            for line in lines {
                v.handle_line(line).unwrap();
                a.record(v.records, &v.prev)?;
            }
            a.finish()
        };
        let anchors = vec![anchor(2, &link(&log[1])), anchor(4, &link(&log[3]))];
        assert_eq!(
            check(&log, anchors.clone()),
            Ok(Anchored {
                matched: 2,
                before: 0
            })
        );
        // Records 4 and 5 cut off: the chain of 1 to 3 verifies, the anchor
        // of record 4 does not.
        assert!(matches!(
            check(&log[..3], anchors.clone()),
            Err(AnchorMismatch::Beyond {
                last: 3,
                seq: 4,
                ..
            })
        ));
        // Record 3 altered and the chain written again from there: it
        // verifies, but record 4 is not the one reported.
        let mut rewritten = log[..2].to_vec();
        let mut prev = link(&log[1]);
        for seq in 3..=5 {
            let line = format!(r#"{{"seq":{seq},"prev":"{prev}","x":{}}}"#, seq * 10);
            prev = link(&line);
            rewritten.push(line);
        }
        assert!(matches!(
            check(&rewritten, anchors.clone()),
            Err(AnchorMismatch::Differs { seq: 4, .. })
        ));
        // Only the later files, the earlier archived: earlier anchors are
        // counted, not checked.
        assert_eq!(
            check(&log[2..], anchors),
            Ok(Anchored {
                matched: 1,
                before: 1
            })
        );
    }

    /// Anchors of `edge` every `every_secs` from `start`, of records 1, 2,
    /// ..., `n` of them, as file lines.
    fn anchor_lines(edge: &str, start: jiff::Timestamp, every_secs: i64, n: u64) -> Vec<String> {
        (0..n)
            .map(|i| {
                let a = Anchor {
                    time: (start + jiff::SignedDuration::from_secs(every_secs * i as i64))
                        .to_string(),
                    edge: edge.into(),
                    seq: i + 1,
                    hash: format!("{:064x}", i + 1),
                    replica: "c1".into(),
                };
                serde_json::to_string(&a).unwrap()
            })
            .collect()
    }

    fn parsed(text: &str) -> Vec<Anchor> {
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Ten days of anchors every five minutes: the last seven days stay
    /// whole, the three before keep the first of each day; a log's last
    /// anchor stays however old; thinning again changes nothing.
    #[test]
    fn old_anchors_are_thinned_to_one_a_day_and_recent_ones_stay() {
        let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let now: jiff::Timestamp = "2026-01-11T00:00:00Z".parse().unwrap();
        let week = std::time::Duration::from_secs(7 * 86_400);
        let mut lines = anchor_lines("home/edge", start, 300, 10 * 288);
        // A log that stopped on day 1: its last anchor stays.
        lines.extend(anchor_lines("quiet/edge", start, 3600, 30));
        let text = lines.join("\n") + "\n";
        let thinned = thin_anchors(&text, now, week).expect("thinned");
        let home: Vec<u64> = parsed(&thinned)
            .iter()
            .filter(|a| a.edge == "home/edge")
            .map(|a| a.seq)
            .collect();
        // Days 0, 1, 2: their first anchors (records 1, 289, 577); then all
        // of the last seven days (records 865 onwards).
        assert_eq!(home[..4], [1, 289, 577, 865]);
        assert_eq!(home.len(), 3 + 7 * 288);
        assert_eq!(*home.last().unwrap(), 10 * 288);
        let quiet: Vec<u64> = parsed(&thinned)
            .iter()
            .filter(|a| a.edge == "quiet/edge")
            .map(|a| a.seq)
            .collect();
        assert_eq!(quiet, [1, 25, 30]);
        assert_eq!(thin_anchors(&thinned, now, week), None);

        // The thinned anchors still prove the whole log, and still catch
        // it cut short of its last anchor.
        let check = |upto: u64| {
            let mut c = AnchorCheck::new(
                parsed(&thinned)
                    .into_iter()
                    .filter(|a| a.edge == "home/edge"),
            );
            for seq in 1..=upto {
                c.record(seq, &format!("{seq:064x}")).unwrap();
            }
            c.finish()
        };
        assert!(check(10 * 288).is_ok());
        assert!(matches!(
            check(10 * 288 - 1),
            Err(AnchorMismatch::Beyond { .. })
        ));
    }

    /// A head that went back, long ago: the anchors on both sides of it
    /// stay, as evidence of the log before and after.
    #[test]
    fn the_anchors_around_a_head_that_went_back_stay() {
        let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let now: jiff::Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let week = std::time::Duration::from_secs(7 * 86_400);
        let mut lines = anchor_lines("home/edge", start, 300, 100);
        // At 10:00 on day 0 the log starts anew from record 1.
        lines.extend(anchor_lines(
            "home/edge",
            start + jiff::SignedDuration::from_hours(10),
            300,
            50,
        ));
        let text = lines.join("\n") + "\n";
        let seqs: Vec<u64> = parsed(&thin_anchors(&text, now, week).unwrap())
            .iter()
            .map(|a| a.seq)
            .collect();
        // The first of the day, the last before the restart and the first
        // after it, the log's last.
        assert_eq!(seqs, [1, 100, 1, 50]);
    }

    /// A line cut short by a crash stays where it was, and gets its
    /// newline, so the next anchor appended is a line of its own; a file
    /// with nothing to thin and whole lines stays as it is.
    #[test]
    fn a_cut_line_stays_and_is_ended() {
        let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let week = std::time::Duration::from_secs(7 * 86_400);
        let lines = anchor_lines("home/edge", start, 300, 3);
        let whole = lines.join("\n") + "\n";
        assert_eq!(thin_anchors(&whole, start, week), None);
        assert_eq!(thin_anchors("", start, week), None);
        let cut = format!("{whole}{}", &lines[0][..20]);
        assert_eq!(thin_anchors(&cut, start, week), Some(format!("{cut}\n")));
        let torn_inside = format!("{}\n{}\n{}", lines[0], &lines[1][..20], lines[2]);
        assert_eq!(
            thin_anchors(&torn_inside, start, week),
            Some(format!("{torn_inside}\n"))
        );
    }
}
