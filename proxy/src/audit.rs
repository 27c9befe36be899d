//! The flow audit log: one JSON line per flow, each carrying the SHA-256 of
//! the line before it, so that an information-governance team can prove the
//! log is complete and unaltered (`fedgate-edge audit verify FILE`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use federation::chain::{Anchor, AnchorCheck, Anchored, CUT_SHORT_MAX, Verifier, link};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

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
///
/// When the file cannot be written (a full disk, an I/O error) the writer
/// keeps every record taken, to the byte, and tries again every [`RETRY`]:
/// once there is room the records, the rest of one cut short included, reach
/// the file in order and the chain is whole. Meanwhile [`AuditLog::trouble`]
/// says why (`/readyz` answers 503), and past `backlog` records kept
/// [`AuditLog::accepting`] is false: the edge refuses new flows as
/// [`UNAVAILABLE`] rather than let a crossing go unaudited.
pub struct AuditLog {
    chain: Mutex<Chain>,
    writer: Mutex<Option<Writer>>,
    backlog: Arc<Backlog>,
    head: Head,
}

/// The last record on file and flushed to the disk: its `seq` and hash.
/// The edge reports it to the control plane, which keeps it as an
/// [`Anchor`] of the log.
type Head = Arc<Mutex<Option<(u64, String)>>>;

/// Records given to the writer and not yet on file, shared with it.
#[derive(Default)]
struct Backlog {
    /// Records taken and not yet written whole.
    records: AtomicU64,
    /// Past this many while writes fail, new flows are refused.
    limit: u64,
    /// Writes that failed since the edge started.
    errors: AtomicU64,
    /// Why the last write failed, while writes fail.
    failing: Mutex<Option<String>>,
}

/// How the audit log is kept.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Records kept in memory while the file cannot be written; past it new
    /// flows are refused ([`UNAVAILABLE`]).
    pub backlog: u64,
    /// Rotate the file past this many bytes; 0: never.
    pub rotate_at: u64,
    /// Rotate the file at each multiple of this since the Unix epoch (24 h:
    /// at midnight UTC), when it holds a record; `None`: by size only.
    pub rotate_every: Option<Duration>,
    /// Flush the records written to the disk (`fdatasync`) at most every
    /// [`SYNC_EVERY`], so that a power cut loses at most that much.
    pub sync: bool,
    /// Log the log's head (`audit head`, [`log_head`]) this often when it
    /// has moved, and at stop: anchors that whoever collects the edge's
    /// log (journald, a SIEM) witnesses, with or without a control plane.
    /// `None`: never.
    pub head_log_every: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backlog: DEFAULT_BACKLOG,
            rotate_at: 0,
            rotate_every: None,
            sync: true,
            head_log_every: None,
        }
    }
}

/// The reason a flow is refused while the audit log is past its backlog.
pub const UNAVAILABLE: &str = "audit-unavailable";

/// Records kept in memory while the file cannot be written, by default:
/// about 60 MB at some 600 bytes a record.
pub const DEFAULT_BACKLOG: u64 = 100_000;

impl AuditLog {
    /// Open (or create) the log, continuing the chain of what is there,
    /// with the default [`Settings`].
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        Self::open_with(path, &Settings::default())
    }

    /// Open (or create) the log, continuing the chain of what is there (or,
    /// when the file is new or empty, of its newest rotated file).
    pub fn open_with(path: Option<&Path>, settings: &Settings) -> anyhow::Result<Self> {
        let Settings {
            backlog,
            rotate_at,
            rotate_every,
            sync,
            // Logged by the edge's runtime (`log_head`), not the writer.
            head_log_every: _,
        } = *settings;
        let mut chain = Chain {
            seq: 0,
            prev: GENESIS.to_owned(),
        };
        let backlog = Arc::new(Backlog {
            limit: backlog.max(1),
            ..Backlog::default()
        });
        let mut writer = None;
        let head: Head = Arc::default();
        if let Some(path) = path {
            // The file goes on from the newest rotated one; without one, it
            // is proved from its own first record on.
            let before = match rotated(path)?.last() {
                Some(last) => {
                    let (seq, hash) = last_record(last).with_context(|| {
                        format!("cannot go on from the rotated audit log {}", last.display())
                    })?;
                    Verifier::after(seq, &hash)
                }
                None => Verifier::continuing(),
            };
            chain.seq = before.records;
            chain.prev.clone_from(&before.prev);
            let mut size = 0;
            let mut first = chain.seq + 1;
            if path.exists() {
                let summary =
                    scan(path, before, &mut AnchorCheck::default()).with_context(|| {
                        format!(
                            "existing audit log {} does not verify; move it aside",
                            path.display()
                        )
                    })?;
                if summary.cut_short > 0 {
                    set_aside(path, &summary)?;
                }
                chain.seq = summary.last_seq;
                chain.prev = summary.last_hash;
                size = summary.complete;
                first = summary.first.map_or(chain.seq + 1, |(seq, _)| seq);
            }
            if chain.seq == 0 {
                tracing::info!(path = %path.display(), "audit log starts a chain at record 1");
            } else {
                tracing::info!(path = %path.display(), next = chain.seq + 1, "audit log goes on");
                *lock(&head) = Some((chain.seq, chain.prev.clone()));
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open audit log {}", path.display()))?;
            let log_file = LogFile {
                path: path.to_path_buf(),
                rotate_at,
                rotate_every,
                next_rotation: rotate_every.map(next_boundary),
                sync,
                dirty: false,
                synced: tokio::time::Instant::now(),
                size,
                first,
                last: chain.seq,
                last_hash: chain.prev.clone(),
                partial: LastLine::default(),
                head: head.clone(),
            };
            writer = Some(spawn_writer(
                file,
                path.display().to_string(),
                &backlog,
                log_file,
            )?);
        }
        Ok(Self {
            chain: Mutex::new(chain),
            writer: Mutex::new(writer),
            backlog,
            head,
        })
    }

    /// The last record on file and flushed to the disk (with
    /// `--audit-no-sync`, written to the file): its `seq` and the hash of
    /// its line. `None` before any, or without a file.
    pub fn head(&self) -> Option<(u64, String)> {
        lock(&self.head).clone()
    }

    /// Write out every record taken so far and stop the writer. If the file
    /// still cannot be written after [`CLOSE_TRIES`], the records left are
    /// logged as lost (they are in the edge's log, target `fedgate::audit`)
    /// and counted: the result.
    pub fn close(&self) -> u64 {
        let taken = self.writer.lock().ok().and_then(|mut w| w.take());
        match taken {
            Some((tx, handle)) => {
                drop(tx);
                handle.join().unwrap_or(0)
            }
            None => 0,
        }
    }

    /// Whether a new flow may start: false while the file cannot be
    /// written and the backlog's limit of records wait for it (records
    /// merely gathering for their next write do not count against it).
    pub fn accepting(&self) -> bool {
        self.backlog.records.load(Ordering::Relaxed) < self.backlog.limit
            || self.backlog.failing.lock().is_ok_and(|f| f.is_none())
    }

    /// Why records are not reaching the file, while they are not.
    pub fn trouble(&self) -> Option<String> {
        let cause = self.backlog.failing.lock().ok()?.clone()?;
        Some(format!(
            "audit log not writable ({cause}); {} records kept until it is",
            self.backlog.records.load(Ordering::Relaxed)
        ))
    }

    /// Put the writer's figures on the metrics page.
    pub fn publish(&self, metrics: &Metrics) {
        let b = &self.backlog;
        metrics.set(
            "fedgate_audit_backlog_records",
            &[],
            b.records.load(Ordering::Relaxed) as f64,
        );
        metrics.set(
            "fedgate_audit_write_errors_total",
            &[],
            b.errors.load(Ordering::Relaxed) as f64,
        );
        if let Some((seq, _)) = self.head() {
            metrics.set("fedgate_audit_head_seq", &[], seq as f64);
        }
    }

    /// Log a record without filing it: a flow refused because records
    /// cannot be filed ([`UNAVAILABLE`]); nothing crossed, and the chain
    /// does not grow while the file is out of reach.
    pub fn log_only(&self, record: &FlowRecord) {
        trace(record, false);
    }

    pub fn record(&self, record: &FlowRecord) {
        trace(record, true);
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
        {
            self.backlog.records.fetch_add(1, Ordering::Relaxed);
            if tx.send(text).is_err() {
                self.backlog.records.fetch_sub(1, Ordering::Relaxed);
                tracing::error!("audit writer stopped; record not written");
                return;
            }
        }
        chain.seq += 1;
        chain.prev = hash;
    }
}

/// The writer's end of the channel, and its thread.
type Writer = (mpsc::Sender<String>, std::thread::JoinHandle<u64>);

/// Start the thread that writes the records to `file` ([`write_lines`]),
/// `after` each write ([`LogFile`]).
fn spawn_writer<W, R>(
    file: W,
    shown: String,
    backlog: &Arc<Backlog>,
    after: R,
) -> anyhow::Result<Writer>
where
    W: Write + Send + 'static,
    R: AfterWrite<W> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<String>();
    let shared = backlog.clone();
    let handle = std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || write_lines(file, &rx, &shown, &shared, after))
        .context("cannot start the audit writer")?;
    Ok((tx, handle))
}

/// The log file being written, after each batch of records: flushed to
/// the disk (with `sync`; at most every [`SYNC_EVERY`]), and rotated past `rotate_at` bytes: once every
/// record taken is on file, it is renamed `FILE.FIRST-LAST` (the `seq` of
/// its first and last records, twelve digits each) and a new `FILE` goes on
/// with the chain: its first record's `prev` is the hash of the rotated
/// file's last line.
struct LogFile {
    path: PathBuf,
    rotate_at: u64,
    /// Rotate at each multiple of this since the Unix epoch (24 h: at
    /// midnight UTC), when the file holds a record.
    rotate_every: Option<Duration>,
    next_rotation: Option<SystemTime>,
    sync: bool,
    /// Written since the last flush to the disk, and when that was.
    dirty: bool,
    synced: tokio::time::Instant,
    size: u64,
    first: u64,
    last: u64,
    /// Hash of the last record's line.
    last_hash: String,
    /// The start of a record the disk took only part of, until the rest.
    partial: LastLine,
    /// Where the last record flushed to the disk is told.
    head: Head,
}

/// Bytes written after the last newline: the start of a record whose
/// rest is still to come.
#[derive(Default)]
struct LastLine(Vec<u8>);

impl LastLine {
    /// `bytes` follow what came before: the hash of the last whole line
    /// they end, if they end one.
    fn feed(&mut self, bytes: &[u8]) -> Option<String> {
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            self.0.extend_from_slice(bytes);
            return None;
        };
        let hash = match bytes[..end].iter().rposition(|&b| b == b'\n') {
            Some(start) => link(&String::from_utf8_lossy(&bytes[start + 1..end])),
            None => {
                self.0.extend_from_slice(&bytes[..end]);
                link(&String::from_utf8_lossy(&self.0))
            }
        };
        self.0.clear();
        self.0.extend_from_slice(&bytes[end + 1..]);
        Some(hash)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the writer does after each write that took every record it had,
/// and while it waits for records.
trait AfterWrite<W> {
    /// `bytes` reached `file`: whole records, except when the disk took
    /// only part of what was written (then the rest follows in the next).
    fn wrote(&mut self, file: &mut W, bytes: &[u8]);
    /// How long the writer may wait for records before [`AfterWrite::idle`]
    /// is due; `None`: as long as it takes.
    fn due(&self) -> Option<Duration>;
    /// No record came: finish what is due (and at the writer's end).
    fn idle(&mut self, file: &mut W);
}

/// How often, at most, the records written are flushed to the disk: a
/// power cut loses at most the records of about this long (and a busy
/// edge pays for a few flushes a second, not one per batch: one per batch
/// cost 5-10% of new connections per second on 2 cores).
pub const SYNC_EVERY: Duration = Duration::from_millis(100);

impl LogFile {
    fn flush(&mut self, file: &File) {
        if let Err(e) = file.sync_data() {
            tracing::error!(path = %self.path.display(), cause = %e, "cannot flush audit records to the disk");
        }
        self.dirty = false;
        self.synced = tokio::time::Instant::now();
        self.publish_head();
    }

    /// The last record written is the log's head from now on.
    fn publish_head(&self) {
        if self.last > 0 {
            *lock(&self.head) = Some((self.last, self.last_hash.clone()));
        }
    }
}

impl LogFile {
    /// Whether the file holds a record and is past its size or its time.
    fn rotation_due(&self) -> bool {
        // Never between the parts of a record the disk took in two writes.
        self.partial.0.is_empty()
            && self.last >= self.first
            && ((self.rotate_at > 0 && self.size >= self.rotate_at)
                || self.next_rotation.is_some_and(|t| SystemTime::now() >= t))
    }

    /// Rename the file `FILE.FIRST-LAST` and go on in a new one.
    fn rotate(&mut self, file: &mut File) {
        let mut kept = self.path.as_os_str().to_owned();
        kept.push(format!(".{:012}-{:012}", self.first, self.last));
        let kept = PathBuf::from(kept);
        let rotated = file
            .sync_all()
            .and_then(|()| std::fs::rename(&self.path, &kept))
            .and_then(|()| {
                let opened = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path);
                if opened.is_err() {
                    // Back as it was: the records go on in the same file.
                    let _ = std::fs::rename(&kept, &self.path);
                }
                opened
            });
        // Past as many bytes more, or at the next boundary, again.
        self.next_rotation = self.rotate_every.map(next_boundary);
        match rotated {
            Ok(new) => {
                *file = new;
                tracing::info!(
                    path = %self.path.display(),
                    kept = %kept.display(),
                    first = self.first,
                    last = self.last,
                    bytes = self.size,
                    "audit log rotated"
                );
                self.size = 0;
                self.first = self.last + 1;
                // The rotated file was flushed whole; the new one is empty.
                self.dirty = false;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), cause = %e, "cannot rotate the audit log; writing on to it");
                self.size = 0;
            }
        }
    }
}

/// The first multiple of `every` since the Unix epoch after now: with 24 h,
/// the next midnight (UTC); with 1 h, the next hour.
fn next_boundary(every: Duration) -> SystemTime {
    let every = every.as_secs().max(1);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs((now / every + 1) * every)
}

impl AfterWrite<File> for LogFile {
    fn due(&self) -> Option<Duration> {
        let flush =
            (self.sync && self.dirty).then(|| SYNC_EVERY.saturating_sub(self.synced.elapsed()));
        let rotation = self
            .next_rotation
            .filter(|_| self.last >= self.first)
            .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default());
        match (flush, rotation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn idle(&mut self, file: &mut File) {
        if self.sync && self.dirty {
            self.flush(file);
        }
        if self.rotation_due() {
            self.rotate(file);
        }
    }

    fn wrote(&mut self, file: &mut File, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.last += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        if let Some(hash) = self.partial.feed(bytes) {
            self.last_hash = hash;
        }
        self.dirty = true;
        if !self.sync {
            self.publish_head();
        } else if self.synced.elapsed() >= SYNC_EVERY {
            self.flush(file);
        }
        if self.rotation_due() {
            self.rotate(file);
        }
    }
}

/// The message of the log line that carries an audit log's head: what
/// `fedgate-edge audit verify --anchors` reads as an anchor from the edge's
/// JSON log.
pub const HEAD_MESSAGE: &str = "audit head";

/// Log `edge`'s audit log head (target `fedgate::audit`, message
/// [`HEAD_MESSAGE`], fields `edge`, `seq`, `hash`): an anchor in the edge's
/// own log. Whoever keeps that log off the edge's host (journald
/// forwarding, a SIEM) can then show the audit log complete up to it, as the
/// control plane's anchors do, also for an edge run from a snapshot file.
pub fn log_head(edge: &str, seq: u64, hash: &str) {
    tracing::info!(target: "fedgate::audit", edge, seq, hash, "audit head");
}

/// The record in the edge's log (target `fedgate::audit`, message `flow`).
fn trace(record: &FlowRecord, filed: bool) {
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
        filed,
        "flow"
    );
}

/// How long the writer, woken by a record, lets more gather before writing
/// them: a record reaches the file about this much later, and a busy edge
/// wakes the writer once per interval rather than once per flow (a wake-up
/// and a `write` that took about 5% of the CPU of each new flow).
pub const GATHER: Duration = Duration::from_millis(5);

/// How often the writer tries again while the file cannot be written.
pub const RETRY: Duration = Duration::from_millis(500);

/// How long the writer goes on trying, once the edge stops, to write the
/// records it kept.
pub const CLOSE_TRIES: Duration = Duration::from_secs(3);

/// How often the writer says again that the file still cannot be written.
const REMIND: Duration = Duration::from_secs(60);

/// The writer thread: woken by a record, let more gather for [`GATHER`],
/// append them all. What a write leaves (a full disk) is kept, to the byte,
/// and tried again every [`RETRY`]. Returns the records it could not write
/// before giving up at close.
fn write_lines<W: Write>(
    mut file: W,
    rx: &mpsc::Receiver<String>,
    path: &str,
    backlog: &Backlog,
    mut after: impl AfterWrite<W>,
) -> u64 {
    // Outside the runtime, tokio's clock is the system's monotonic one.
    use tokio::time::Instant;
    let mut pending: Vec<u8> = Vec::new();
    let mut failing_since: Option<Instant> = None;
    let mut reminded = Instant::now();
    let mut closing: Option<Instant> = None;
    loop {
        if pending.is_empty() {
            // Wait for a record, or until the file is due a flush.
            let next = match after.due() {
                Some(wait) => rx.recv_timeout(wait),
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            };
            let line = match next {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    after.idle(&mut file);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    after.idle(&mut file);
                    return 0;
                }
            };
            pending.extend_from_slice(line.as_bytes());
            std::thread::sleep(GATHER);
        } else {
            std::thread::sleep(RETRY);
        }
        loop {
            match rx.try_recv() {
                Ok(more) => pending.extend_from_slice(more.as_bytes()),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closing.get_or_insert_with(Instant::now);
                    break;
                }
            }
        }
        let (written, error) = append(&mut file, &pending);
        let whole = pending[..written].iter().filter(|&&b| b == b'\n').count() as u64;
        if written > 0 {
            after.wrote(&mut file, &pending[..written]);
        }
        pending.drain(..written);
        backlog.records.fetch_sub(whole, Ordering::Relaxed);
        let kept = backlog.records.load(Ordering::Relaxed);
        match error {
            None => {
                if let Some(since) = failing_since.take() {
                    if let Ok(mut f) = backlog.failing.lock() {
                        *f = None;
                    }
                    tracing::warn!(
                        path,
                        after_secs = since.elapsed().as_secs(),
                        "audit log writable again; every record kept is on file"
                    );
                }
            }
            Some(e) => {
                backlog.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut f) = backlog.failing.lock() {
                    *f = Some(e.to_string());
                }
                if failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    reminded = Instant::now();
                    tracing::error!(
                        cause = %e,
                        path,
                        records = kept,
                        limit = backlog.limit,
                        "cannot write audit records; keeping them and trying again"
                    );
                } else if reminded.elapsed() >= REMIND {
                    reminded = Instant::now();
                    tracing::warn!(cause = %e, path, records = kept, "audit log still not writable");
                }
            }
        }
        if let Some(since) = closing
            && !pending.is_empty()
            && since.elapsed() >= CLOSE_TRIES
        {
            let lost = pending.iter().filter(|&&b| b == b'\n').count() as u64;
            tracing::error!(
                path,
                records = lost,
                "stopping with audit records not written; they are in this log (target fedgate::audit)"
            );
            return lost;
        }
    }
}

/// Write as much of `bytes` as the file takes: how much, and the error
/// that stopped it.
fn append(file: &mut impl Write, bytes: &[u8]) -> (usize, Option<std::io::Error>) {
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return (done, Some(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

#[derive(Debug)]
pub struct Verified {
    /// Records (complete lines) in the file.
    pub records: u64,
    /// The `seq` of the file's first record and the `prev` it starts from
    /// (a rotated log's later files start after record 1).
    pub first: Option<(u64, String)>,
    /// The chain after the file's last complete line: the last `seq` (0 for
    /// none) and its hash.
    pub last_seq: u64,
    pub last_hash: String,
    /// Bytes of the complete lines (each ends with a newline).
    pub complete: u64,
    /// Bytes after the last newline: a record cut short, as when the edge
    /// stopped (power cut, full disk) in the middle of writing it.
    pub cut_short: u64,
}

/// Check every complete line's `seq` and `prev` against `chain` (the
/// chain of the files before, or one that takes the first line as it is),
/// and measure what follows the last newline.
fn scan(path: &Path, mut chain: Verifier, anchors: &mut AnchorCheck) -> anyhow::Result<Verified> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut complete = 0u64;
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read line {}", chain.lines + 1))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(Verified {
                records: chain.lines,
                first: chain.start,
                last_seq: chain.records,
                last_hash: chain.prev,
                complete,
                cut_short: n as u64,
            });
        }
        let line = std::str::from_utf8(&buf[..n - 1])
            .map_err(|_| anyhow::anyhow!("line {} is not UTF-8", chain.lines + 1))?;
        chain.handle_line(line)?;
        anchors.record(chain.records, &chain.prev)?;
        complete += n as u64;
    }
}

/// Check the files of one log, in order (a rotated log's files, oldest
/// first, then the file being written): every line's `seq` and `prev`
/// against the chain, each file going on from the one before, the first
/// from record 1. With `partial` the first file may start later (the files
/// before it archived): it is proved from its first record on, and
/// [`Verified::first`] says where that is. A last line cut short fails
/// (the edge sets it aside when it next starts).
pub fn verify(paths: &[PathBuf], partial: bool) -> anyhow::Result<Vec<Verified>> {
    verify_anchored(paths, partial, Vec::new()).map(|(v, _)| v)
}

/// As [`verify`], and every record the log holds of `anchors` (its heads as
/// the edge reported them to the control plane, `fedctl audit-anchors`)
/// must be the record reported, and the log must not end before the last:
/// what a chain alone cannot show (a log written anew, records cut off its
/// end). Anchors before the first file's first record are counted, not
/// checked.
pub fn verify_anchored(
    paths: &[PathBuf],
    partial: bool,
    anchors: Vec<Anchor>,
) -> anyhow::Result<(Vec<Verified>, Anchored)> {
    let mut anchors = AnchorCheck::new(anchors);
    let mut chain = if partial {
        Verifier::continuing()
    } else {
        Verifier::default()
    };
    let mut out = Vec::new();
    for path in paths {
        let summary =
            scan(path, chain, &mut anchors).with_context(|| format!("{}", path.display()))?;
        anyhow::ensure!(
            summary.cut_short == 0,
            "{}: line {} is cut short ({} bytes and no newline: a record being written when the \
             edge stopped); the {} lines before it verify",
            path.display(),
            summary.records + 1,
            summary.cut_short,
            summary.records
        );
        chain = Verifier::after(summary.last_seq, &summary.last_hash);
        out.push(summary);
    }
    let anchored = anchors.finish()?;
    Ok((out, anchored))
}

/// The rotated files of the log at `path` (`FILE.FIRST-LAST`, the `seq` of
/// their first and last records, twelve digits each), oldest first.
pub fn rotated(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(stem) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{stem}.");
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(range) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((first, last)) = range.split_once('-') else {
            continue;
        };
        let digits = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
        if digits(first) && digits(last) {
            found.push((first.parse().unwrap_or(0), entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The chain after the last line of a rotated file: its `seq` and hash.
fn last_record(path: &Path) -> anyhow::Result<(u64, String)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(CUT_SHORT_MAX as u64)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let text = std::str::from_utf8(&tail).unwrap_or_default();
    let line = text
        .strip_suffix('\n')
        .and_then(|t| t.rsplit('\n').next())
        .filter(|l| !l.is_empty())
        .with_context(|| format!("{} does not end in a whole record", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("the last line of {} is not a record", path.display()))?;
    let seq = value["seq"]
        .as_u64()
        .with_context(|| format!("the last line of {} has no `seq`", path.display()))?;
    Ok((seq, link(line)))
}

/// Move the bytes after the last complete line of `path` to a file of
/// their own beside it (`FILE.cut-short-UNIXSECONDS`), so that the chain
/// goes on from the last whole record and nothing written is lost. Only
/// the start of the record the chain expects next is taken for one cut
/// short ([`Verifier::cut_short`]); anything else (not our log, or
/// altered) is refused as before.
fn set_aside(path: &Path, summary: &Verified) -> anyhow::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open audit log {}", path.display()))?;
    file.seek(SeekFrom::Start(summary.complete))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let mut chain = Verifier::after(summary.last_seq, &summary.last_hash);
    chain.lines = summary.records;
    chain.cut_short(&tail)?;
    let secs = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".cut-short-{secs}"));
    let aside = PathBuf::from(aside);
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

    fn verify_one(path: &Path) -> anyhow::Result<Verified> {
        verify(&[path.to_path_buf()], false).map(|mut v| v.remove(0))
    }

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
    fn three_records(dir: &Path) -> PathBuf {
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
        assert_eq!(verify_one(&path).unwrap().records, 4);

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let check = |body: String| {
            let p = dir.path().join("tampered.jsonl");
            std::fs::write(&p, body).unwrap();
            format!("{:#}", verify_one(&p).unwrap_err())
        };
        // A removed record.
        let removed = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]);
        assert!(check(removed).contains("line 2: sequence number 3"));
        // The first record removed: the log no longer starts at record 1,
        // which only a check of part of a log (`partial`) lets pass, and
        // then it says where that part starts.
        let headless = format!("{}\n{}\n{}\n", lines[1], lines[2], lines[3]);
        assert!(check(headless.clone()).contains("line 1: sequence number 2, expected 1"));
        let part = dir.path().join("part.jsonl");
        std::fs::write(&part, headless).unwrap();
        let checked = verify(&[part], true).unwrap();
        assert_eq!(checked[0].records, 3);
        assert_eq!(checked[0].first, Some((2, link(lines[0]))));
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
    /// The head the edge reports is the last record on file and flushed,
    /// with the hash of its line; an edge started again on the log has it
    /// at once.
    #[test]
    fn the_head_is_the_last_record_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(Some(&path)).unwrap();
        assert_eq!(log.head(), None);
        for n in 1..=3 {
            log.record(&record(n));
        }
        let mut head = None;
        for _ in 0..300 {
            head = log.head();
            if head.as_ref().is_some_and(|(seq, _)| *seq == 3) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let third = text.lines().nth(2).unwrap();
        assert_eq!(head, Some((3, link(third))));
        assert_eq!(log.close(), 0);
        let again = AuditLog::open(Some(&path)).unwrap();
        assert_eq!(again.head(), Some((3, link(third))));
    }

    /// Records the disk took in pieces: the head's hash is still that of
    /// the last whole line.
    #[test]
    fn the_last_line_is_hashed_whole_across_writes() {
        let lines = [
            "{\"seq\":1,\"x\":\"a\"}",
            "{\"seq\":2,\"x\":\"bb\"}",
            "{\"seq\":3}",
        ];
        let all = lines.join("\n") + "\n";
        let bytes = all.as_bytes();
        for cut in 1..bytes.len() {
            let mut last = LastLine::default();
            let mut hash = None;
            for part in [&bytes[..cut], &bytes[cut..]] {
                if let Some(h) = last.feed(part) {
                    hash = Some(h);
                }
            }
            assert_eq!(hash, Some(link(lines[2])), "cut at {cut}");
            assert!(last.0.is_empty());
        }
        let mut last = LastLine::default();
        assert_eq!(last.feed(&bytes[..5]), None);
        assert_eq!(last.feed(&bytes[5..20]), Some(link(lines[0])));
    }

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
        let err = format!("{:#}", verify_one(&path).unwrap_err());
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
        let summary = verify_one(&path).unwrap();
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

    /// Nothing after a write: a writer that writes no file.
    /// Every byte the writer says reached the file, fed as it comes to a
    /// [`LastLine`], as the log file's head is kept.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Told>>);

    /// The bytes told of, the last line's start, and its hash.
    type Told = (Vec<u8>, LastLine, Option<String>);

    impl<W> AfterWrite<W> for Seen {
        fn wrote(&mut self, _: &mut W, bytes: &[u8]) {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(bytes);
            if let Some(h) = s.1.feed(bytes) {
                s.2 = Some(h);
            }
        }

        fn due(&self) -> Option<Duration> {
            None
        }

        fn idle(&mut self, _: &mut W) {}
    }

    /// Counts the writer's idle calls; due 10 ms after each write.
    #[derive(Clone, Default)]
    struct Flushes(Arc<Mutex<(bool, u32)>>);

    impl<W> AfterWrite<W> for Flushes {
        fn wrote(&mut self, _: &mut W, _: &[u8]) {
            self.0.lock().unwrap().0 = true;
        }

        fn due(&self) -> Option<Duration> {
            self.0
                .lock()
                .unwrap()
                .0
                .then_some(Duration::from_millis(10))
        }

        fn idle(&mut self, _: &mut W) {
            let mut f = self.0.lock().unwrap();
            if f.0 {
                *f = (false, f.1 + 1);
            }
        }
    }

    /// A flush due after a write comes without another record to wake the
    /// writer, and once only; the writer's end flushes what is left.
    #[test]
    fn the_writer_flushes_when_due_without_more_records() {
        let flushes = Flushes::default();
        let backlog = Arc::new(Backlog {
            limit: 10,
            ..Backlog::default()
        });
        let (tx, handle) =
            spawn_writer(Vec::new(), "memory".into(), &backlog, flushes.clone()).unwrap();
        tx.send("{}\n".into()).unwrap();
        for _ in 0..300 {
            if flushes.0.lock().unwrap().1 == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(*flushes.0.lock().unwrap(), (false, 1));
        tx.send("{}\n".into()).unwrap();
        drop(tx);
        assert_eq!(handle.join().unwrap(), 0);
        assert_eq!(*flushes.0.lock().unwrap(), (false, 2));
    }

    /// A disk of `room` bytes more, written in place of a file: a write
    /// takes what fits, as a full filesystem's does, then fails.
    #[derive(Clone, Default)]
    struct Disk {
        room: Arc<Mutex<usize>>,
        data: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(std::io::ErrorKind::StorageFull.into());
            }
            let n = buf.len().min(*room);
            *room -= n;
            self.data.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A disk that fills in the middle of a record: the records are kept,
    /// to the byte, and new flows refused past the backlog; once there is
    /// room the rest of the record cut short and the ones after it follow
    /// in order, and the chain is whole.
    #[test]
    fn records_the_disk_cannot_take_are_kept_and_written_when_it_can() {
        let seen = Seen::default();
        let disk = Disk::default();
        *disk.room.lock().unwrap() = 1000;
        let backlog = Arc::new(Backlog {
            limit: 3,
            ..Backlog::default()
        });
        let log = AuditLog {
            chain: Mutex::new(Chain {
                seq: 0,
                prev: GENESIS.to_owned(),
            }),
            writer: Mutex::new(Some(
                spawn_writer(disk.clone(), "disk".into(), &backlog, seen.clone()).unwrap(),
            )),
            backlog,
            head: Arc::default(),
        };
        let within = |what: &str, check: &dyn Fn() -> bool| {
            for _ in 0..300 {
                if check() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("{what} within 3 s");
        };
        for n in 1..=6 {
            log.record(&record(n));
            // Records gathering for a write that has not failed do not
            // count against the backlog.
            assert!(
                log.accepting() || log.trouble().is_some(),
                "refused with {} records gathering and no write failed",
                log.backlog.records.load(Ordering::Relaxed)
            );
        }
        within("a failed write", &|| log.trouble().is_some());
        let written = disk.data.lock().unwrap().clone();
        assert_eq!(written.len(), 1000, "the disk took what fitted");
        assert_ne!(written.last(), Some(&b'\n'), "a record cut short on disk");
        let on_disk = written.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(log.backlog.records.load(Ordering::Relaxed), 6 - on_disk);
        assert!(on_disk < 3, "records of about 400 bytes: {on_disk} fitted");
        assert!(!log.accepting(), "past the backlog of 3");
        let why = log.trouble().unwrap();
        assert!(why.contains("audit log not writable"), "{why}");
        let metrics = Metrics::default();
        log.publish(&metrics);
        let page = metrics.render();
        assert!(
            page.contains(&format!("fedgate_audit_backlog_records {}", 6 - on_disk)),
            "{page}"
        );
        assert!(
            !page.contains("fedgate_audit_write_errors_total 0\n"),
            "{page}"
        );

        *disk.room.lock().unwrap() = usize::MAX;
        within("the records kept on disk", &|| log.trouble().is_none());
        assert!(log.accepting());
        log.record(&record(7));
        assert_eq!(log.close(), 0);
        let text = String::from_utf8(disk.data.lock().unwrap().clone()).unwrap();
        let mut chain = Verifier::default();
        for line in text.lines() {
            chain.handle_line(line).unwrap();
        }
        assert_eq!(chain.records, 7);
        assert!(text.ends_with('\n'));
        // The writer told of every byte on disk, the record the full disk
        // cut included, so the head is the last record, hashed whole.
        let seen = seen.0.lock().unwrap();
        assert!(
            seen.0 == text.as_bytes(),
            "the writer told of {} of the {} bytes on disk",
            seen.0.len(),
            text.len()
        );
        assert_eq!(seen.2, Some(link(text.lines().last().unwrap())));
    }

    /// Past its size the log is renamed `FILE.FIRST-LAST` and a new file
    /// goes on with the chain, also across a restart that finds the new
    /// file empty: the files, oldest first, verify as one log, each alone
    /// from its first record on.
    #[test]
    fn a_rotated_log_goes_on_in_a_new_file_and_verifies_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        // Rotated after every write: each batch of records in a file.
        let every_write = Settings {
            rotate_at: 1,
            ..Settings::default()
        };
        let log = AuditLog::open_with(Some(&path), &every_write).unwrap();
        for n in 1..=3 {
            log.record(&record(n));
            std::thread::sleep(GATHER * 4);
        }
        log.close();
        let files = rotated(&path).unwrap();
        assert!(!files.is_empty(), "{files:?}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"",
            "a new file after the last rotation"
        );
        let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name(&files[0]).starts_with("audit.jsonl.000000000001-"),
            "{files:?}"
        );

        // Started again on the empty file: the chain goes on from the
        // newest rotated file.
        let log = AuditLog::open_with(Some(&path), &Settings::default()).unwrap();
        log.record(&record(4));
        log.close();
        let mut all = rotated(&path).unwrap();
        all.push(path.clone());
        let checked = verify(&all, false).unwrap();
        assert_eq!(checked.iter().map(|v| v.records).sum::<u64>(), 4);
        assert_eq!(checked.last().unwrap().first.as_ref().unwrap().0, 4);
        for (file, v) in all.iter().zip(&checked).take(all.len() - 1) {
            let (first, _) = v.first.as_ref().unwrap();
            assert_eq!(
                name(file),
                format!("audit.jsonl.{first:012}-{:012}", v.last_seq)
            );
        }
        // The live file alone: from its first record on, with `partial`.
        assert!(verify(std::slice::from_ref(&path), false).is_err());
        let alone = verify(std::slice::from_ref(&path), true).unwrap();
        assert_eq!(alone[0].first.as_ref().unwrap().0, 4);
        // Out of order, the files do not verify.
        let mut shuffled = all.clone();
        shuffled.swap(0, 1);
        let err = format!("{:#}", verify(&shuffled, false).unwrap_err());
        assert!(err.contains("sequence number"), "{err}");
    }

    /// Rotated by the clock: at the next whole second past a record, with
    /// no other record to wake the writer; a file with no record is not
    /// rotated.
    #[test]
    fn a_log_rotated_by_the_clock_goes_on_in_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let every_second = Settings {
            rotate_every: Some(Duration::from_secs(1)),
            ..Settings::default()
        };
        let log = AuditLog::open_with(Some(&path), &every_second).unwrap();
        log.record(&record(1));
        let mut files = Vec::new();
        for _ in 0..300 {
            files = rotated(&path).unwrap();
            if !files.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(files.len(), 1, "rotated within 3 s");
        // Nothing more to rotate: the new file stays, empty.
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(rotated(&path).unwrap().len(), 1);
        log.record(&record(2));
        log.close();
        let mut all = rotated(&path).unwrap();
        all.push(path.clone());
        let checked = verify(&all, false).unwrap();
        assert_eq!(checked.iter().map(|v| v.records).sum::<u64>(), 2);
    }

    /// Records of many flows at once, gathered by the writer, all reach the
    /// file soon after they were taken, without waiting for close, with the
    /// chain intact.
    #[test]
    fn records_from_many_flows_reach_the_file_soon_without_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::open(Some(&path)).unwrap());
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
        assert_eq!(verify_one(&path).unwrap().records, 1000);
    }
}
