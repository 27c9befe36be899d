//! The control-plane client: the edge's signed snapshot, kept current.
//!
//! - At start, the last-known-good snapshot in the cache file is used if it
//!   verifies (signature by the trusted key, digest, addressed to this edge);
//!   a cache that does not verify is refused with the reason and the edge
//!   fetches afresh. With neither, the edge does not start.
//! - Then a long poll (`GET /v1/snapshot?have=V&digest=D&wait=S`) to the
//!   control plane, over mutual TLS, the server being a control-plane
//!   replica of the federation; on failure the next replica address, with
//!   backoff and jitter so that a restart does not stampede. When the newer
//!   version leaves this edge's document as it is (digest D), the answer is
//!   the newer version's signed header alone, completed here with the
//!   document held and then checked as a whole snapshot.
//! - An offered snapshot is verified, checked against the one held
//!   ([`federation::signed::check_succession`]: never older, never the same
//!   version with other content, never another edge's), validated, and then
//!   applied whole ([`Ctx::set_node`]) and written to the cache (temporary
//!   file, fsync, rename) — or refused whole, the running one untouched.
//! - After each poll the edge reports the version it runs, its peer links
//!   and its audit log's head (kept by the control plane as an anchor).
//! - Polls and reports share one kept-alive mutual-TLS connection to the
//!   replica in use (the control plane re-checks the edge's certificate on
//!   every request); a new one is made when it closes, when the replica
//!   changes, or when the replica's certificate has expired.
//!   `fedgate_control_connections_total` and `fedgate_control_requests_total`
//!   count both.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use federation::EdgeSnapshot;
use federation::chain::{AnchorKeeper, KEEP_EVERY_ANCHOR, Offered, THIN_AFTER, thin_anchors};
use federation::identity::{Identity, peer_cert, trust_domain_of};
use federation::signed::{
    Held, SignedHeader, SignedSnapshot, Succession, TrustedKey, check_succession,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::metrics::{Counter, Metrics};
use crate::node::Node;
use crate::overlay::Overlay;
use crate::tls::{Credentials, Material};
use crate::{Ctx, now};

/// Where the control plane is and whom to trust.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Replica addresses (`host:port`), tried in turn.
    pub addrs: Vec<String>,
    /// The control plane's snapshot-signing public key file.
    pub key: PathBuf,
    /// The last-known-good snapshot, as received (signed).
    pub cache: PathBuf,
    /// How long one long poll may be held open.
    pub poll_wait: Duration,
    /// How long to keep trying at start when there is no usable cache.
    pub start_wait: Duration,
    /// Where this edge keeps anchors of the control plane's admin audit
    /// log, and at most how often (per replica).
    pub anchors: PathBuf,
    pub anchor_every: Duration,
}

pub struct Client {
    config: ControlConfig,
    key: TrustedKey,
    edge: String,
    trust_domain: String,
    connector: TlsConnector,
    /// The snapshot the edge runs, to complete a header-only answer with.
    held: std::sync::Mutex<Option<Arc<EdgeSnapshot>>>,
    /// The connection the next request may reuse.
    kept: std::sync::Mutex<Option<Kept>>,
    connections: Counter,
    requests: Counter,
    /// Anchors of the replicas' admin audit logs.
    anchors: std::sync::Mutex<AnchorKeeper>,
    /// Anchors appended since the file was last thinned.
    anchors_appended: AtomicU64,
}

/// A mutual-TLS HTTP/1.1 connection to a replica, kept for the next request.
struct Kept {
    addr: String,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
    /// When the replica's certificate expires: the connection is not reused
    /// past it.
    server_not_after: jiff::Timestamp,
    /// The replica's name, from the certificate it presented.
    replica: String,
}

/// An answer from a replica, and which replica it was by its certificate.
struct Reply {
    status: hyper::StatusCode,
    body: Bytes,
    replica: String,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A snapshot from the control plane (or the cache), verified and loaded.
pub struct Received {
    pub node: Node,
    pub bytes: Vec<u8>,
    pub snapshot: Arc<EdgeSnapshot>,
}

impl Client {
    pub fn new(
        config: ControlConfig,
        edge: &str,
        material: &Material,
        own: &Arc<Credentials>,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let own_cert = material.leaf().as_ref();
        let text = std::fs::read_to_string(&config.key)
            .with_context(|| format!("cannot read the control key {}", config.key.display()))?;
        let key = TrustedKey::from_text(&text)
            .with_context(|| format!("malformed control key {}", config.key.display()))?;
        let trust_domain = trust_domain_of(own_cert).context("this edge's certificate")?;
        let tls = federation::mtls::client_config_with(own.clone(), b"http/1.1")?;
        let mut anchors = AnchorKeeper::new(config.anchor_every);
        match std::fs::read_to_string(&config.anchors) {
            Ok(text) => {
                thin_anchors_file(&config.anchors, &text);
                // A line cut short by a crash: the anchors before it stand.
                for (line, cause) in anchors.load(&text) {
                    tracing::warn!(path = %config.anchors.display(), line, cause, "admin audit anchor line skipped");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot read the control plane's anchors {}",
                        config.anchors.display()
                    )
                });
            }
        }
        Ok(Self {
            config,
            key,
            edge: edge.to_owned(),
            trust_domain,
            connector: TlsConnector::from(Arc::new(tls)),
            held: std::sync::Mutex::new(None),
            kept: std::sync::Mutex::new(None),
            connections: metrics.counter("fedgate_control_connections_total", &[]),
            requests: metrics.counter("fedgate_control_requests_total", &[]),
            anchors: std::sync::Mutex::new(anchors),
            anchors_appended: AtomicU64::new(0),
        })
    }

    /// Replica `replica` (by its certificate) told this edge its admin audit
    /// log's head (in answer to a report): keep it as an anchor of that log,
    /// at most one per replica every `anchor_every`, and at once a head that
    /// went back.
    fn anchor_admin_audit(&self, metrics: &Metrics, replica: &str, answer: &[u8]) {
        let head = match admin_audit_head(answer, replica) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(named) => {
                tracing::warn!(
                    replica,
                    named = %named,
                    "admin audit head refused: the replica named another replica's log"
                );
                return;
            }
        };
        let owner = format!("control/{replica}");
        let mut keeper = self
            .anchors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (outcome, anchor) = keeper.consider(&self.edge, &owner, head.seq, &head.hash, now());
        let Some(anchor) = anchor else { return };
        if let Offered::WentBack { held } = &outcome {
            metrics.add(
                "fedgate_control_admin_audit_went_back_total",
                &[("replica", replica)],
                1,
            );
            tracing::warn!(
                replica,
                seq = head.seq,
                held_seq = held.seq,
                held_time = %held.time,
                "control plane's admin audit log went back: it was replaced or cut, or started anew"
            );
        }
        let appended = serde_json::to_string(&anchor)
            .map_err(std::io::Error::other)
            .and_then(|mut line| {
                use std::io::Write as _;
                line.push('\n');
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.config.anchors)?
                    .write_all(line.as_bytes())
            });
        match appended {
            Ok(()) => {
                keeper.kept(anchor);
                let appended = self.anchors_appended.fetch_add(1, Ordering::Relaxed) + 1;
                if appended.is_multiple_of(THIN_AFTER) {
                    match std::fs::read_to_string(&self.config.anchors) {
                        Ok(text) => thin_anchors_file(&self.config.anchors, &text),
                        Err(e) => {
                            tracing::error!(path = %self.config.anchors.display(), cause = %e, "cannot thin the admin audit anchors");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(path = %self.config.anchors.display(), cause = %e, "cannot keep an admin audit anchor");
            }
        }
    }

    /// Verify `bytes` as a snapshot for this edge, succeeding `held`.
    pub fn check(&self, bytes: &[u8], held: Option<&Held>) -> anyhow::Result<Option<Received>> {
        let snap = SignedSnapshot::verify(bytes, &self.key)?;
        match check_succession(&self.edge, held, &snap)? {
            Succession::Same => Ok(None),
            Succession::Newer => {
                let node = Node::from_snapshot(&snap, &self.edge, now())?;
                Ok(Some(Received {
                    node,
                    bytes: bytes.to_vec(),
                    snapshot: Arc::new(snap),
                }))
            }
        }
    }

    /// The whole signed snapshot from an answer: as sent, or, when the
    /// control plane sent only a newer version's signed header (the
    /// document unchanged), that header with the document held.
    fn expand(&self, bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        // A whole snapshot is refused by this parse at its `snapshot` field.
        let Ok(header) = serde_json::from_slice::<SignedHeader>(&bytes) else {
            return Ok(bytes);
        };
        SignedHeader::verify(&bytes, &self.key)?;
        let held = self
            .held()
            .context("a signed header, but no snapshot is held")?;
        tracing::info!(version = header.header.version, digest = %header.header.digest, "newer version, same document: signed header only");
        Ok(header.complete(&held)?.to_json())
    }

    fn held(&self) -> Option<Arc<EdgeSnapshot>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Record the snapshot the edge now runs.
    fn hold(&self, r: &Received) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.snapshot.clone());
    }

    /// The cached snapshot, if there is one and it verifies.
    pub fn from_cache(&self) -> anyhow::Result<Option<Received>> {
        let path = &self.config.cache;
        if !path.exists() {
            return Ok(None);
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        self.check(&bytes, None)
            .with_context(|| format!("snapshot cache {} refused", path.display()))
    }

    /// Write the cache so that after a crash it is whole or absent.
    pub fn save(&self, bytes: &[u8]) -> std::io::Result<()> {
        crate::write_whole(&self.config.cache, bytes)
    }

    /// The first snapshot: the cache, else the control plane (retrying for
    /// `start_wait`).
    pub async fn initial(&self) -> anyhow::Result<Node> {
        let cache_problem = match self.from_cache() {
            Ok(Some(r)) => {
                tracing::info!(version = r.node.version, cache = %self.config.cache.display(), "starting from the cached snapshot");
                self.hold(&r);
                return Ok(r.node);
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(cause = %format!("{e:#}"), "snapshot cache refused; fetching from the control plane");
                Some(format!("{e:#}"))
            }
        };
        let deadline = tokio::time::Instant::now() + self.config.start_wait;
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 0..10_000usize {
            let addr = &self.config.addrs[attempt % self.config.addrs.len()];
            match self.fetch(addr, 0, None, Duration::ZERO).await {
                Ok(Some(bytes)) => {
                    let r = self
                        .check(&bytes, None)?
                        .context("the control plane sent no snapshot")?;
                    if let Err(e) = self.save(&r.bytes) {
                        tracing::warn!(cause = %e, "cannot write the snapshot cache");
                    }
                    self.hold(&r);
                    return Ok(r.node);
                }
                Ok(None) => last = format!("{addr}: no version published yet"),
                Err(e) => last = format!("{addr}: {e:#}"),
            }
            if tokio::time::Instant::now() + delay > deadline {
                break;
            }
            tokio::time::sleep(delay + jitter(delay)).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        match cache_problem {
            Some(c) => bail!("no usable snapshot: {c}; and no control plane answered ({last})"),
            None => bail!(
                "no snapshot: no cache at {} and no control plane answered within {} s ({last})",
                self.config.cache.display(),
                self.config.start_wait.as_secs()
            ),
        }
    }

    /// A new mutual-TLS connection to replica `addr`, its server checked.
    async fn connect(&self, addr: &str) -> anyhow::Result<Kept> {
        let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect timed out"))??;
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(
            Duration::from_secs(5),
            self.connector.connect(federation::mtls::server_name(), tcp),
        )
        .await
        .map_err(|_| anyhow!("TLS handshake timed out"))??;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .context("the server presented no certificate")?;
        let server = peer_cert(leaf.as_ref(), &self.trust_domain)?;
        server.check_validity(now())?;
        let Identity::Control { name: replica } = server.identity else {
            bail!("{addr} is {}, not a control-plane replica", server.identity);
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        self.connections.inc();
        tracing::debug!(replica = %addr, "control-plane connection opened");
        Ok(Kept {
            addr: addr.to_owned(),
            sender,
            driver,
            server_not_after: server.not_after,
            replica,
        })
    }

    /// The kept connection to `addr` if it can take a request, else none
    /// (a kept connection to another replica is closed).
    fn take_kept(&self, addr: &str) -> Option<Kept> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()?;
        (kept.addr == addr && !kept.sender.is_closed() && now() <= kept.server_not_after)
            .then_some(kept)
    }

    /// One request to replica `addr`, on the kept connection when there is
    /// one; a kept connection that fails before an answer (the replica
    /// closed it while idle) is replaced once by a new one.
    async fn request(
        &self,
        addr: &str,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> anyhow::Result<Reply> {
        let body = Bytes::from(body.unwrap_or_default());
        if let Some(kept) = self.take_kept(addr) {
            match self.send(kept, &method, path, body.clone(), timeout).await {
                Ok(answer) => return Ok(answer),
                Err(Retry::Fresh(e)) => {
                    tracing::debug!(replica = %addr, cause = %format!("{e:#}"), "kept control-plane connection failed; opening a new one");
                }
                Err(Retry::No(e)) => return Err(e),
            }
        }
        let conn = self.connect(addr).await?;
        self.send(conn, &method, path, body, timeout)
            .await
            .map_err(Retry::into_inner)
    }

    /// `method path` on `conn`, which is kept for the next request when the
    /// answer came whole.
    async fn send(
        &self,
        mut conn: Kept,
        method: &hyper::Method,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Reply, Retry> {
        let mut builder = hyper::Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", "control.fedgate.invalid");
        if !body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| Retry::No(e.into()))?;
        self.requests.inc();
        let answer = tokio::time::timeout(timeout, async {
            conn.sender.ready().await.map_err(Retry::fresh)?;
            let resp = conn.sender.send_request(req).await.map_err(Retry::fresh)?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Retry::No(e.into()))?
                .to_bytes();
            Ok((status, bytes))
        })
        .await
        .map_err(|_| Retry::No(anyhow!("no answer within {} s", timeout.as_secs())))??;
        let (status, body) = answer;
        let replica = conn.replica.clone();
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.is_none() {
            *kept = Some(conn);
        }
        Ok(Reply {
            status,
            body,
            replica,
        })
    }

    /// Ask `addr` for a snapshot newer than `have`, waiting up to `wait`;
    /// `digest`, that of the document held, lets the control plane answer
    /// with a signed header alone when the newer document is the same.
    pub async fn fetch(
        &self,
        addr: &str,
        have: u64,
        digest: Option<&str>,
        wait: Duration,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let mut path = format!("/v1/snapshot?have={have}&wait={}", wait.as_secs());
        if let Some(d) = digest.filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit())) {
            path = format!("{path}&digest={d}");
        }
        let Reply { status, body, .. } = self
            .request(
                addr,
                hyper::Method::GET,
                &path,
                None,
                wait + Duration::from_secs(10),
            )
            .await?;
        match status {
            hyper::StatusCode::OK => Ok(Some(body.to_vec())),
            hyper::StatusCode::NO_CONTENT => Ok(None),
            s => bail!(
                "the control plane answered {s}: {}",
                String::from_utf8_lossy(&body).trim()
            ),
        }
    }

    /// Tell `addr` the version this edge runs, its peer links, and its
    /// audit log's head (the control plane keeps it as an anchor of the
    /// log); keep the head of the replica's admin audit log it answers with.
    async fn report(
        &self,
        metrics: &Metrics,
        addr: &str,
        version: u64,
        links: Vec<Value>,
        audit: Option<(u64, String)>,
    ) -> anyhow::Result<()> {
        let mut body = json!({"version": version, "links": links});
        if let Some((seq, hash)) = audit {
            body["audit"] = json!({"seq": seq, "hash": hash});
        }
        let body = serde_json::to_vec(&body)?;
        let Reply {
            status,
            body: text,
            replica,
        } = self
            .request(
                addr,
                hyper::Method::POST,
                "/v1/report",
                Some(body),
                Duration::from_secs(10),
            )
            .await?;
        if !status.is_success() {
            bail!(
                "report refused ({status}): {}",
                String::from_utf8_lossy(&text).trim()
            );
        }
        if status == hyper::StatusCode::OK {
            self.anchor_admin_audit(metrics, &replica, &text);
        }
        Ok(())
    }

    /// Keep the edge's snapshot current until shutdown.
    pub async fn follow(self: Arc<Self>, ctx: Arc<Ctx>, overlay: Arc<Overlay>) {
        let mut shutdown = ctx.shutdown.clone();
        let mut replica = 0usize;
        let mut delay = Duration::from_millis(500);
        let n = self.config.addrs.len().max(1);
        // Say at once which version this edge runs (the first long poll may
        // hold for --poll-secs); the first replica that answers hears it.
        for addr in &self.config.addrs {
            let version = ctx.node().version;
            if self
                .report(&ctx.metrics, addr, version, Vec::new(), ctx.audit.head())
                .await
                .is_ok()
            {
                break;
            }
        }
        while !*shutdown.borrow() {
            let addr = self.config.addrs[replica % n].clone();
            let node = ctx.node();
            let held = Held {
                version: node.version,
                digest: node.digest.clone(),
            };
            drop(node);
            let digest = self.held().map(|h| h.digest.clone());
            let fetched = tokio::select! {
                r = self.fetch(&addr, held.version, digest.as_deref(), self.config.poll_wait) => r,
                _ = shutdown.changed() => return,
            };
            match fetched {
                Ok(Some(bytes)) => {
                    delay = Duration::from_millis(500);
                    let checked = self
                        .expand(bytes)
                        .and_then(|bytes| self.check(&bytes, Some(&held)));
                    match checked {
                        Ok(Some(r)) => {
                            if let Err(e) = self.save(&r.bytes) {
                                tracing::warn!(cause = %e, "cannot write the snapshot cache");
                            }
                            self.hold(&r);
                            ctx.set_node(r.node);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            ctx.metrics.add("fedgate_snapshot_refused_total", &[], 1);
                            tracing::error!(replica = %addr, cause = %format!("{e:#}"), version = held.version, "snapshot refused; keeping the running one");
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                    }
                }
                Ok(None) => delay = Duration::from_millis(500),
                Err(e) => {
                    tracing::warn!(replica = %addr, cause = %format!("{e:#}"), "control plane unreachable; trying the next replica");
                    replica += 1;
                    let wait = delay + jitter(delay);
                    delay = (delay * 2).min(Duration::from_secs(30));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
            }
            let version = ctx.node().version;
            let links = overlay.link_report().await;
            if let Err(e) = self
                .report(&ctx.metrics, &addr, version, links, ctx.audit.head())
                .await
            {
                tracing::debug!(replica = %addr, cause = %format!("{e:#}"), "report not delivered");
            }
        }
    }
}

/// Up to half of `d`, from the clock's nanoseconds: enough to spread a
/// fleet's retries.
fn jitter(d: Duration) -> Duration {
    let nanos = u64::from(now().subsec_nanosecond().unsigned_abs());
    let half = (d.as_millis() as u64 / 2).max(1);
    Duration::from_millis(nanos % half)
}

/// Why a request failed, and whether a new connection may try it again: a
/// request that got no answer head at all (the kept connection was closed
/// under it) may; one that timed out or broke mid-answer may not.
enum Retry {
    Fresh(anyhow::Error),
    No(anyhow::Error),
}

impl Retry {
    fn fresh(e: hyper::Error) -> Self {
        Self::Fresh(e.into())
    }

    fn into_inner(self) -> anyhow::Error {
        match self {
            Self::Fresh(e) | Self::No(e) => e,
        }
    }
}

/// Thin the anchors file at `path`, whose text is `text`, now: anchors older
/// than [`KEEP_EVERY_ANCHOR`] are kept one a day per replica. Written whole
/// in its place, or left as it was on failure (logged).
fn thin_anchors_file(path: &std::path::Path, text: &str) {
    let Some(thinned) = thin_anchors(text, now(), KEEP_EVERY_ANCHOR) else {
        return;
    };
    let (before, after) = (text.lines().count(), thinned.lines().count());
    match crate::write_whole(path, thinned.as_bytes()) {
        Ok(()) => {
            tracing::info!(path = %path.display(), lines = after, dropped = before - after, "admin audit anchors thinned");
        }
        Err(e) => {
            tracing::error!(path = %path.display(), cause = %e, "cannot thin the admin audit anchors");
        }
    }
}

/// The head of its admin audit log that a replica answered a report with.
#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
struct AdminAuditHead {
    replica: String,
    seq: u64,
    hash: String,
}

/// The admin audit head in `answer` from replica `replica` (its name from
/// the certificate it presented), or none when the answer holds none. A
/// replica that names another replica's log gets no anchor kept (`Err`
/// holds the name it gave): anchors filed under another's name would make
/// that replica's log fail to verify.
fn admin_audit_head(answer: &[u8], replica: &str) -> Result<Option<AdminAuditHead>, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        admin_audit: AdminAuditHead,
    }
    let Ok(Answer { admin_audit: head }) = serde_json::from_slice(answer) else {
        return Ok(None);
    };
    if head.replica == replica {
        Ok(Some(head))
    } else {
        Err(head.replica)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_audit_head_is_kept_only_under_the_certificates_replica() {
        let answer = br#"{"admin_audit":{"replica":"c1","seq":7,"hash":"ab"}}"#;
        assert_eq!(
            admin_audit_head(answer, "c1"),
            Ok(Some(AdminAuditHead {
                replica: "c1".into(),
                seq: 7,
                hash: "ab".into()
            }))
        );
        assert_eq!(admin_audit_head(answer, "c2"), Err("c1".into()));
        assert_eq!(admin_audit_head(b"", "c1"), Ok(None));
        assert_eq!(admin_audit_head(br#"{"other":1}"#, "c1"), Ok(None));
    }

    /// A year-old day of anchors every five minutes, and one anchor cut
    /// short: the day keeps its first and the replica's last, the cut line
    /// stays, and the file ends in a newline.
    #[test]
    fn an_old_anchors_file_is_thinned_in_place() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cache.anchors");
        let start: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().expect("time");
        let mut text = String::new();
        for i in 0..288u64 {
            let a = federation::chain::Anchor {
                time: (start + jiff::SignedDuration::from_secs(300 * i as i64)).to_string(),
                edge: "control/c1".into(),
                seq: i + 1,
                hash: format!("{:064x}", i + 1),
                replica: "home/edge".into(),
            };
            text.push_str(&serde_json::to_string(&a).expect("json"));
            text.push('\n');
        }
        text.push_str(r#"{"time":"2025-01-02T00:00:00Z","ed"#);
        std::fs::write(&path, &text).expect("write");
        thin_anchors_file(&path, &text);
        let after = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = after.lines().collect();
        assert_eq!(lines.len(), 3, "{after}");
        assert!(lines[0].contains(r#""seq":1,"#) && lines[1].contains(r#""seq":288,"#));
        assert!(after.ends_with("\"ed\n"));
    }
}
