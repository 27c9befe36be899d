//! The edge proxy, `fedgate-edge`.
//!
//! What it does: joins this member's network to the federation's mutual-TLS
//! overlay (QUIC, with TLS over TCP when UDP is blocked), accepts visiting
//! staff's connections on its ingress listeners (TLS SNI, service VIPs, HTTP
//! CONNECT with a PAC file, SOCKS5), pre-checks each flow and carries it to
//! the home organisation's edge, which decides with authority and connects
//! to the internal address. Every flow is audited at both ends.
//!
//! It also serves split-horizon DNS ([`dns`]): the federation's names
//! answered with this edge, the rest forwarded to the member's resolvers.
//!
//! Its configuration is a signed snapshot it follows from the control plane
//! ([`control`], kept for restarts), or a snapshot file written by `fedctl
//! snapshot` for air-gapped sites and tests; [`reload`] puts a new one in
//! force without a restart.
//!
//! Layout: [`node`] what the edge knows, [`reload`] how a new snapshot
//! replaces it; [`tls`] mutual TLS and peer checks;
//! [`overlay`] links to peer edges, [`udp`] its QUIC socket; [`visit`] the
//! visited edge's side of a flow, [`home`] the home edge's; [`ingress`] the
//! client-facing listeners;
//! [`dns`] split-horizon DNS; [`audit`] the hash-chained flow log;
//! [`metrics`] and [`admin`] operations.
//!
//! A connection's life:
//! ```text
//! client --ingress (SNI | VIP | CONNECT | SOCKS5)--> visit: source network, pre-check
//!        --overlay stream + FlowRequest--> home: peer cert -> org, decide, egress connect
//!        <--FlowAnswer-- ; then bytes both ways, half-close, one audit record per edge
//! ```
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod control;
pub mod credentials;
pub mod dns;
pub mod enforce;
pub mod home;
pub mod ingress;
pub mod metrics;
pub mod node;
pub mod overlay;
pub mod relay;
pub mod reload;
pub mod service;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod udp;
pub mod visit;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use federation::EdgeSnapshot;
use jiff::Timestamp;
use tokio::sync::{Semaphore, watch};

use crate::audit::AuditLog;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::tls::Credentials;

/// An accepted connection's peer as the edge names it (logs, audit, rate
/// limit, source network): an IPv4 peer of a dual-stack (`[::]`) listener
/// arrives as `::ffff:a.b.c.d` and is `a.b.c.d`.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Operating limits; every one has a sensible default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TLS (and QUIC) handshake with a peer edge.
    pub handshake_timeout: Duration,
    /// Reading a client's first bytes (ClientHello, CONNECT, SOCKS request).
    pub client_hello_timeout: Duration,
    /// QUIC idle timeout (keep-alives are sent at a third of it).
    pub idle_timeout: Duration,
    /// Connecting to an internal address.
    pub connect_timeout: Duration,
    /// A flow on which no byte moves either way for this long is closed.
    pub flow_idle: Duration,
    pub max_flows: usize,
    pub max_flows_per_peer: usize,
    /// New client connections per second from one source address.
    pub conn_rate_per_source: u32,
    /// How long flows may finish after SIGTERM.
    pub drain: Duration,
    /// How long a flow a new snapshot no longer allows may go on.
    pub deny_grace: Duration,
    /// How long a flow that finds no QUIC connection to its peer up waits
    /// for the one being set up before it goes over TLS on TCP (QUIC goes
    /// on being set up, and later flows take it): where UDP is blocked, the
    /// first flow is late by this much only.
    pub quic_head_start: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(5),
            client_hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            flow_idle: Duration::from_secs(300),
            max_flows: 100_000,
            max_flows_per_peer: 50_000,
            conn_rate_per_source: 200,
            drain: Duration::from_secs(10),
            deny_grace: Duration::from_secs(30),
            quic_head_start: Duration::from_millis(300),
        }
    }
}

/// Where the edge listens; `None` turns a listener off. Port 0 picks a free
/// port; the chosen address is logged as `listening`.
#[derive(Debug, Clone, Default)]
pub struct Listen {
    /// Overlay listeners; `None` takes the snapshot's endpoint for this edge.
    pub overlay_quic: Option<SocketAddr>,
    pub overlay_tcp: Option<SocketAddr>,
    /// Neither listen on nor dial QUIC (as where UDP is blocked).
    pub no_quic: bool,
    pub sni: Option<SocketAddr>,
    pub connect: Option<SocketAddr>,
    pub socks: Option<SocketAddr>,
    /// Bind a listener on every service VIP of the snapshot.
    pub vips: bool,
    pub admin: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `ORG/NAME` of this edge.
    pub edge: String,
    /// A snapshot file (`fedctl snapshot`): air-gapped sites and tests.
    pub snapshot: Option<PathBuf>,
    /// The control plane, instead of (or after) a snapshot file.
    pub control: Option<control::ControlConfig>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub audit: Option<PathBuf>,
    /// How the audit log is kept (backlog, rotation, sync).
    pub audit_settings: audit::Settings,
    pub listen: Listen,
    pub limits: Limits,
    /// Split-horizon DNS settings (TTL, rate); see `dns_listen`.
    pub dns: dns::DnsConfig,
    /// The DNS listener; `None` takes the snapshot's `dns` address for this
    /// edge, and with neither DNS is off.
    pub dns_listen: Option<SocketAddr>,
    /// How often the snapshot file is checked for a change; `None`: never.
    pub reload_every: Option<Duration>,
    /// Where the service VIPs given out are kept, so that a restart gives
    /// each service the address it had; `None`: given afresh at start.
    pub vip_state: Option<PathBuf>,
}

/// State shared by every task of the edge.
pub struct Ctx {
    /// What the edge knows now; replaced whole by [`Ctx::set_node`].
    node: watch::Sender<Arc<Node>>,
    pub audit: AuditLog,
    pub metrics: Metrics,
    pub limits: Limits,
    flows: Arc<Semaphore>,
    per_peer: Mutex<HashMap<String, Arc<Semaphore>>>,
    rates: Mutex<HashMap<IpAddr, (u64, u32)>>,
    pub shutdown: watch::Receiver<bool>,
    /// Where the VIP table is kept across restarts ([`Config::vip_state`]).
    vip_state: Option<PathBuf>,
    /// This edge's certificate, key and trusted CA certificates
    /// ([`credentials::watch`] replaces them).
    pub credentials: Arc<Credentials>,
    /// Counts replacements of the trusted CA certificates: peers already
    /// connected are checked again ([`enforce`]).
    trust: watch::Sender<u64>,
}

impl Ctx {
    pub fn node(&self) -> Arc<Node> {
        self.node.borrow().clone()
    }

    /// Told of every new node: flows and peer links re-check themselves.
    pub fn nodes(&self) -> watch::Receiver<Arc<Node>> {
        self.node.subscribe()
    }

    /// Run `node` from now on (a new snapshot, already checked); flows in
    /// progress keep the one they hold, and re-check themselves against it.
    /// Every VIP given out stays with its service ([`node::VipTable`]).
    pub fn set_node(&self, mut node: Node) {
        let running = self.node();
        node.keep_vips(&running);
        let old = running.version;
        warn_unassigned(&node);
        if node.vip_table != running.vip_table {
            save_vip_state(self.vip_state.as_deref(), &node);
        }
        self.metrics
            .set("fedgate_snapshot_version", &[], node.version as f64);
        tracing::info!(
            from = old,
            to = node.version,
            services = node.fed.services.len(),
            policies = node.fed.policies.len(),
            "snapshot applied"
        );
        service::status(&service::serving(&node));
        self.node.send_replace(Arc::new(node));
    }

    /// Told of every new set of trusted CA certificates.
    pub fn trust_changes(&self) -> watch::Receiver<u64> {
        self.trust.subscribe()
    }

    /// The trusted CA certificates were replaced: peers already connected
    /// check themselves again.
    pub fn trust_replaced(&self) {
        self.trust.send_modify(|n| *n += 1);
    }

    /// Take a slot for one flow, overall and for `peer`; `None` when full.
    pub fn admit(self: &Arc<Self>, peer: Option<&str>) -> Option<FlowPermit> {
        let total = self.flows.clone().try_acquire_owned().ok()?;
        let peer = match peer {
            Some(p) => {
                let mut per_peer = self.per_peer.lock().ok()?;
                let sem = match per_peer.get(p) {
                    Some(sem) => sem.clone(),
                    None => per_peer
                        .entry(p.to_owned())
                        .or_insert_with(|| Arc::new(Semaphore::new(self.limits.max_flows_per_peer)))
                        .clone(),
                };
                drop(per_peer);
                Some(sem.try_acquire_owned().ok()?)
            }
            None => None,
        };
        self.metrics.gauge_add("fedgate_active_flows", &[], 1.0);
        Some(FlowPermit {
            ctx: self.clone(),
            _total: total,
            _peer: peer,
        })
    }

    /// Whether a new connection from `ip` is within its rate (a fixed window
    /// of one second).
    pub fn within_rate(&self, ip: IpAddr) -> Rate {
        let second = now().as_second() as u64;
        let Ok(mut rates) = self.rates.lock() else {
            return Rate::Within;
        };
        if rates.len() > 100_000 {
            rates.retain(|_, (s, _)| *s == second);
        }
        let entry = rates.entry(ip).or_insert((second, 0));
        if entry.0 != second {
            *entry = (second, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        let limit = self.limits.conn_rate_per_source;
        match entry.1.checked_sub(limit) {
            None | Some(0) => Rate::Within,
            Some(over) => Rate::Over { first: over == 1 },
        }
    }
}

/// A new connection against its source's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Within,
    /// Over it; `first`: the first refused in this second, the one logged
    /// (a flood from one address is a line a second, and a count).
    Over {
        first: bool,
    },
}

impl Ctx {
    /// Close a flow's record as denied: counters, then the audit log.
    pub fn record_denied(&self, record: &mut audit::FlowRecord, reason: &str, rules: Vec<String>) {
        record.result = "denied".into();
        record.reason = reason.to_owned();
        record.rules = rules;
        record.end = now().to_string();
        let role = record.role.as_str();
        self.metrics.add(
            "fedgate_flows_total",
            &[("role", role), ("result", "denied")],
            1,
        );
        self.metrics.add(
            "fedgate_denials_total",
            &[("role", role), ("reason", reason)],
            1,
        );
        if reason == audit::UNAVAILABLE {
            self.audit.log_only(record);
        } else {
            self.audit.record(record);
        }
    }

    /// Close a flow's record as allowed and relayed: counters, then the audit log.
    pub fn record_allowed(&self, record: &mut audit::FlowRecord, up: u64, down: u64) {
        record.result = "allowed".into();
        record.reason = "allowed".into();
        record.bytes_up = up;
        record.bytes_down = down;
        record.end = now().to_string();
        let role = record.role.as_str();
        self.metrics.add(
            "fedgate_flows_total",
            &[("role", role), ("result", "allowed")],
            1,
        );
        self.metrics.add(
            "fedgate_bytes_total",
            &[("role", role), ("direction", "up")],
            up,
        );
        self.metrics.add(
            "fedgate_bytes_total",
            &[("role", role), ("direction", "down")],
            down,
        );
        self.audit.record(record);
    }
}

/// Held for the life of a flow.
pub struct FlowPermit {
    ctx: Arc<Ctx>,
    _total: tokio::sync::OwnedSemaphorePermit,
    _peer: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for FlowPermit {
    fn drop(&mut self) {
        self.ctx
            .metrics
            .gauge_add("fedgate_active_flows", &[], -1.0);
    }
}

/// Log the audit log's head every `every` when it has moved
/// ([`audit::log_head`]).
async fn log_audit_heads(ctx: Arc<Ctx>, edge: String, every: Duration) {
    let mut logged = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let head = ctx.audit.head();
        if head.is_some() && head != logged {
            if let Some((seq, hash)) = &head {
                audit::log_head(&edge, *seq, hash);
            }
            logged = head;
        }
    }
}

/// The wall clock, for decisions and audit records (the core takes `now`).
pub fn now() -> Timestamp {
    #[allow(clippy::disallowed_methods)] // the edge is where the clock is read
    Timestamp::now()
}

/// Write `path` so that after a crash it is whole or absent: a temporary
/// file beside it, fsync, rename, fsync of the directory.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The VIP table an edge kept on disk before it stopped, if any. A file that
/// cannot be read is reported and left for the next save to replace: the
/// edge then gives the addresses afresh.
fn load_vip_state(path: &Path) -> Option<node::VipTable> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(path = %path.display(), cause = %e, "cannot read the VIP state; giving VIPs afresh");
            return None;
        }
    };
    match node::VipTable::from_json(&bytes) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(
                path = %path.display(),
                cause = %format!("{e:#}"),
                "VIP state refused; giving VIPs afresh (the file is rewritten with them)"
            );
            None
        }
    }
}

/// Keep `node`'s VIP table on disk, when the edge is configured to.
fn save_vip_state(path: Option<&Path>, node: &Node) {
    if let Some(path) = path
        && let Err(e) = write_whole(path, &node.vip_table.to_json())
    {
        tracing::warn!(path = %path.display(), cause = %e, "cannot write the VIP state");
    }
}

/// Say which remote services have no VIP because the prefix is full.
fn warn_unassigned(node: &Node) {
    if !node.vip_table.unassigned.is_empty() {
        let services: Vec<&str> = node
            .vip_table
            .unassigned
            .iter()
            .map(|s| s.as_str())
            .collect();
        tracing::warn!(
            prefix = %node.edge.vip_prefix.map(|p| p.to_string()).unwrap_or_default(),
            given = node.vip_table.hosts.len(),
            without = %services.join(", "),
            "the VIP prefix is full: these services have no VIP; widen ingress.vip_prefix"
        );
    }
}

/// Load and check the snapshot file for `edge`.
pub fn load_node(path: &Path, edge: &str) -> anyhow::Result<Node> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read snapshot {}", path.display()))?;
    let snap = EdgeSnapshot::from_json(&bytes)
        .with_context(|| format!("snapshot {} refused", path.display()))?;
    Node::from_snapshot(&snap, edge, now())
}

/// Build the edge and run it until `shutdown` turns true, then drain.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let material = tls::load_material(&config.cert, &config.key, &config.ca)?;
    let own = Credentials::new(&material)?;
    let own_cert = credentials::describe(&material)
        .with_context(|| format!("malformed certificate {}", config.cert.display()))?;
    let metrics = Metrics::default();
    credentials::show_expiry(&metrics, &own_cert);
    let (mut node, client) = match (&config.control, &config.snapshot) {
        (Some(cc), _) => {
            let client = control::Client::new(cc.clone(), &config.edge, &material, &own, &metrics)?;
            (client.initial().await?, Some(Arc::new(client)))
        }
        (None, Some(path)) => (load_node(path, &config.edge)?, None),
        (None, None) => anyhow::bail!("give --snapshot FILE or --control ADDR"),
    };
    let audit = AuditLog::open_with(config.audit.as_deref(), &config.audit_settings)?;
    metrics.set("fedgate_snapshot_version", &[], node.version as f64);
    metrics.set("fedgate_active_flows", &[], 0.0);
    tracing::info!(edge = %config.edge, version = node.version, services = node.fed.services.len(), policies = node.fed.policies.len(), "snapshot loaded");
    if let Some(path) = &config.vip_state {
        if let Some(kept) = load_vip_state(path) {
            node.keep_vips_from(&kept);
            tracing::info!(path = %path.display(), vips = node.vip_table.hosts.len(), "VIP state restored");
        }
        save_vip_state(Some(path), &node);
    }
    warn_unassigned(&node);
    let ctx = Arc::new(Ctx {
        node: watch::channel(Arc::new(node)).0,
        audit,
        metrics,
        flows: Arc::new(Semaphore::new(config.limits.max_flows)),
        per_peer: Mutex::new(HashMap::new()),
        rates: Mutex::new(HashMap::new()),
        limits: config.limits.clone(),
        shutdown: shutdown.clone(),
        vip_state: config.vip_state.clone(),
        credentials: own,
        trust: watch::channel(0).0,
    });
    let mut listen = config.listen.clone();
    {
        let node = ctx.node();
        listen.overlay_quic = if listen.no_quic {
            None
        } else {
            listen.overlay_quic.or(node.edge.quic)
        };
        listen.overlay_tcp = listen.overlay_tcp.or(node.edge.tcp);
    }
    let overlay = overlay::Overlay::start(ctx.clone(), &listen).await?;
    if let Some(client) = client {
        let (ctx, overlay) = (ctx.clone(), overlay.clone());
        tokio::spawn(client.follow(ctx, overlay));
    }
    let mut tasks = tokio::task::JoinSet::new();
    ingress::start(&ctx, &overlay, &listen, &mut tasks).await?;
    if let Some(addr) = listen.admin {
        admin::start(ctx.clone(), addr, &mut tasks).await?;
    }
    let dns_listen = config.dns_listen.or(ctx.node().edge.dns);
    if let Some(listen) = dns_listen {
        let dns = dns::DnsConfig {
            listen,
            ..config.dns.clone()
        };
        dns::start(&ctx, dns, config.listen.sni, &mut tasks).await?;
    }
    // A snapshot file is watched for changes; the control plane, when
    // configured, is the source instead.
    if let (Some(every), Some(path), None) =
        (config.reload_every, &config.snapshot, &config.control)
    {
        tasks.spawn(reload::watch(
            ctx.clone(),
            path.clone(),
            config.edge.clone(),
            every,
        ));
    }
    // A renewed certificate, or a new CA bundle, is used from then on,
    // without a restart.
    if let Some(every) = config.reload_every {
        let trust_domain = federation::identity::trust_domain_of(material.leaf().as_ref())?;
        tasks.spawn(credentials::watch(
            ctx.clone(),
            own_cert,
            trust_domain,
            [config.cert.clone(), config.key.clone(), config.ca.clone()],
            every,
        ));
    }
    if let Some(every) = config.audit_settings.head_log_every {
        tasks.spawn(log_audit_heads(ctx.clone(), config.edge.clone(), every));
    }
    tracing::info!(edge = %config.edge, "ready");
    service::ready(&service::serving(&ctx.node()));
    let heartbeat = tokio::spawn(service::watchdog());
    let mut shutdown = shutdown;
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    tracing::info!(drain_secs = config.limits.drain.as_secs(), "draining");
    let in_flight = config
        .limits
        .max_flows
        .saturating_sub(ctx.flows.available_permits());
    service::stopping(&format!(
        "draining: {in_flight} flows may take up to {} s to finish",
        config.limits.drain.as_secs()
    ));
    overlay.stop_accepting();
    tasks.abort_all();
    let deadline = tokio::time::Instant::now() + config.limits.drain;
    while ctx.flows.available_permits() < config.limits.max_flows
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    overlay.close().await;
    heartbeat.abort();
    let lost = ctx.audit.close();
    // The last head, at stop: the log must not end before it.
    if let (Some(_), Some((seq, hash))) = (config.audit_settings.head_log_every, ctx.audit.head()) {
        audit::log_head(&config.edge, seq, &hash);
    }
    anyhow::ensure!(
        lost == 0,
        "stopped with {lost} audit records not written to {} (it could not be written); they are in this log (target fedgate::audit)",
        config
            .audit
            .as_deref()
            .map_or_else(|| "-".into(), |p| p.display().to_string())
    );
    tracing::info!("stopped");
    Ok(())
}
