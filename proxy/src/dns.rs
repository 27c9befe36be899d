//! Split-horizon DNS: the federation's names answered with this edge, the
//! rest forwarded to the member's own resolvers.
//!
//! What it answers (UDP and TCP, one address; see docs/edge.md, "DNS"):
//! - a name in a zone of **another member**: A/AAAA of this edge's ingress
//!   for that service (the ingress addresses, where the SNI listener runs, for
//!   a TLS service; the service's own VIP for a TCP service), authoritative,
//!   with a short TTL; a name there that is no service: NXDOMAIN with the
//!   zone's SOA (synthesised: the edge as `mname`, the snapshot version as
//!   serial);
//! - a name of **this member's** service marked `dns_internal`: its internal
//!   address, to this member's own networks only;
//! - **any other name** (this member's other names included, since its own
//!   resolvers are authoritative for them): forwarded to the member's
//!   `dns.upstreams`, to clients on the member's declared networks only;
//!   REFUSED to anyone else, or where no upstream is set.
//!
//! AXFR/IXFR are refused; EDNS(0) is answered (buffer at most 1232 bytes,
//! BADVERS above version 0); a UDP answer too large for the client's buffer
//! is truncated (TC) so the client retries over TCP, and an upstream's
//! truncated answer is fetched again over TCP. Each client address has a
//! token bucket (`--dns-rate` queries a second); queries over it are dropped
//! and counted.
//!
//! Answers come from a [`DnsView`], an index built once per snapshot and
//! swapped when the node is: a new snapshot changes the answers at once.
//!
//! UDP is one socket read by a thread per core ([`udp`]); a thread takes
//! the queued queries in batches (`recvmmsg`) and sends its answers in
//! batches (`sendmmsg`). A
//! thread answers A/AAAA of an indexed name itself, from bytes encoded once
//! per snapshot ([`fast`]); every other query goes through hickory's request
//! handling, in a task on the runtime. A thread picks up a new view at its
//! next batch. TCP is hickory's server.

mod fast;
#[cfg(any(test, fuzzing))]
mod sample;
#[cfg(test)]
mod tests;
mod udp;

/// The UDP fast path as `fuzz/fuzz_targets/dns_fast.rs` drives it (built
/// only with `--cfg fuzzing`, as cargo-fuzz builds).
#[cfg(fuzzing)]
pub mod fuzzing {
    use super::{DnsConfig, DnsView, fast};

    /// The fast path's index for [`super::sample::DOC`].
    pub struct FastPath {
        view: DnsView,
        /// Holds the upstream exchanges' tasks (never run: the fast path
        /// forwards nothing).
        _runtime: tokio::runtime::Runtime,
    }

    impl FastPath {
        #[expect(clippy::new_without_default, reason = "builds a whole view")]
        pub fn new() -> Self {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let metrics = crate::metrics::Metrics::default();
            let view = {
                let _entered = runtime.enter();
                DnsView::build(
                    &super::sample::node(),
                    &DnsConfig::default(),
                    None,
                    &metrics,
                )
            };
            Self {
                view,
                _runtime: runtime,
            }
        }

        /// The fast path's answer to `packet` from a client on this
        /// member's own networks (`local`) or not; `None` where it leaves
        /// the query to hickory.
        pub fn answer(&self, packet: &[u8], local: bool) -> Option<Vec<u8>> {
            let mut out = Vec::new();
            fast::answer(&self.view.fast, packet, || local, &mut out)?;
            Some(out)
        }
    }
}

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use hickory_net::NetError;
use hickory_net::runtime::{Time, TokioRuntimeProvider};
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsExchange, DnsHandle, Protocol};
use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, Edns, Header, HeaderCounts, LowerQuery, Message, MessageType,
    Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use federation::model::Protocol as ServiceProtocol;

use crate::Ctx;
use crate::metrics::{Counter, Metrics};
use crate::node::Node;

/// The largest UDP answer, and the buffer size advertised (DNS flag day 2020).
const MAX_UDP_PAYLOAD: u16 = 1232;
/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The DNS listener's settings (`fedgate-edge run --dns ...`).
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// UDP and TCP on this address.
    pub listen: SocketAddr,
    /// TTL of every answer, and of the SOA's negative-caching minimum.
    pub ttl: u32,
    /// Queries per second per client address (and the burst); 0 turns the
    /// limit off.
    pub rate: u32,
    /// One upstream attempt (UDP, then TCP when truncated).
    pub upstream_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 53)),
            ttl: 30,
            rate: 1000,
            upstream_timeout: Duration::from_secs(2),
        }
    }
}

/// Bind UDP and TCP on `config.listen`, keep the answers in step with the
/// node, and serve until the tasks are aborted.
pub async fn start(
    ctx: &Arc<Ctx>,
    config: DnsConfig,
    sni: Option<SocketAddr>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let loops = std::thread::available_parallelism().map_or(2, |n| n.get());
    let udp = udp::bind(config.listen, loops)
        .with_context(|| format!("cannot listen for dns (udp) on {}", config.listen))?;
    let local = udp[0].local_addr()?;
    let tcp = TcpListener::bind(local)
        .await
        .with_context(|| format!("cannot listen for dns (tcp) on {local}"))?;
    let sni_ip = sni.map(|a| a.ip()).filter(|ip| !ip.is_unspecified());
    let shared = Arc::new(Shared {
        view: RwLock::new(Arc::new(DnsView::build(
            &ctx.node(),
            &config,
            sni_ip,
            &ctx.metrics,
        ))),
        generation: AtomicU64::new(0),
        limiter: RateLimiter::new(config.rate),
        stats: Stats::new(ctx.clone()),
        config: config.clone(),
    });
    // UDP: a thread per socket, answering the fast path's queries itself and
    // handing the rest to the runtime.
    let handler = Arc::new(Handler {
        shared: shared.clone(),
    });
    let stop = udp::spawn(udp, &handler, &tokio::runtime::Handle::current())
        .context("cannot start the dns (udp) threads")?;
    // The threads stop when this task is aborted with the others.
    tasks.spawn(async move {
        let _stop = stop;
        std::future::pending::<()>().await;
    });
    // TCP: hickory's server (framing, idle timeout, pipelining).
    let mut server = Server::new(Handler {
        shared: shared.clone(),
    });
    server.register_listener(tcp, TCP_IDLE, MAX_UDP_PAYLOAD as usize * 8);
    tracing::info!(kind = "dns", addr = %local, "listening");
    // Rebuild the view whenever the node is swapped.
    let mut changes = ctx.nodes();
    let ctx2 = ctx.clone();
    tasks.spawn(async move {
        while changes.changed().await.is_ok() {
            let node = ctx2.node();
            let view = Arc::new(DnsView::build(&node, &shared.config, sni_ip, &ctx2.metrics));
            tracing::info!(
                version = view.version,
                names = view.names.len(),
                fast = view.fast.len(),
                zones = view.zones.len(),
                "dns answers updated"
            );
            if let Ok(mut v) = shared.view.write() {
                *v = view;
            }
            shared.generation.fetch_add(1, Ordering::Release);
        }
    });
    tasks.spawn(async move {
        if let Err(e) = server.block_until_done().await {
            tracing::error!(cause = %e, "dns listener failed");
        }
    });
    Ok(())
}

/// What the edge answers for a snapshot: an index of names and zones.
pub struct DnsView {
    version: u64,
    node: Arc<Node>,
    /// Service names (and the empty non-terminals above them) with their
    /// records.
    names: HashMap<LowerName, NameEntry>,
    /// Zone apexes, remote and own.
    zones: HashMap<LowerName, Zone>,
    upstreams: Vec<Upstream>,
    /// A/AAAA of `names`, encoded for the UDP fast path.
    fast: fast::FastIndex,
}

struct NameEntry {
    zone: LowerName,
    /// Answered only to this member's own networks.
    internal: bool,
    a: Vec<Record>,
    aaaa: Vec<Record>,
}

struct Zone {
    own: bool,
    soa: Vec<Record>,
    ns: Vec<Record>,
}

struct Upstream {
    addr: SocketAddr,
    /// Owns the exchanges' background tasks (dropped with it).
    provider: TokioRuntimeProvider,
    udp: DnsExchange<TokioRuntimeProvider>,
    failures: Counter,
}

fn dns_name(s: &str) -> Option<Name> {
    Name::from_ascii(s).ok().map(|mut n| {
        n.set_fqdn(true);
        n
    })
}

impl DnsView {
    /// Index `node`'s names. `sni` stands in for the ingress addresses of a
    /// TLS service when the snapshot gives none.
    pub fn build(
        node: &Arc<Node>,
        config: &DnsConfig,
        sni: Option<IpAddr>,
        metrics: &Metrics,
    ) -> Self {
        let ttl = config.ttl;
        let local = node.org();
        let fed = &node.fed;
        let mname = dns_name(&format!(
            "{}.{}.edges.{}",
            node.edge.name, node.edge.org, fed.trust_domain
        ))
        .unwrap_or_else(Name::root);
        let serial = u32::try_from(node.version).unwrap_or(u32::MAX);
        let mut zones = HashMap::new();
        for org in &fed.orgs {
            for z in &org.zones {
                let Some(apex) = dns_name(z) else { continue };
                let rname = dns_name(&format!("hostmaster.{z}")).unwrap_or_else(Name::root);
                let soa = SOA::new(
                    mname.clone(),
                    rname,
                    serial,
                    i32::try_from(ttl).unwrap_or(i32::MAX),
                    i32::try_from(ttl).unwrap_or(i32::MAX),
                    86_400,
                    ttl,
                );
                zones.insert(
                    LowerName::from(&apex),
                    Zone {
                        own: &org.id == local,
                        soa: vec![Record::from_rdata(apex.clone(), ttl, RData::SOA(soa))],
                        ns: vec![Record::from_rdata(
                            apex.clone(),
                            ttl,
                            RData::NS(NS(mname.clone())),
                        )],
                    },
                );
            }
        }
        let tls_ingress: Vec<IpAddr> = if node.edge.ingress_addresses.is_empty() {
            sni.into_iter().collect()
        } else {
            node.edge.ingress_addresses.clone()
        };
        let mut vip_of: HashMap<&str, IpAddr> = HashMap::new();
        for (addr, service) in &node.vips {
            vip_of.entry(service.as_str()).or_insert(addr.ip());
        }
        let mut names = HashMap::new();
        for s in &fed.services {
            let own = &s.org == local;
            let addrs: Vec<IpAddr> = if own {
                if !s.dns_internal {
                    continue;
                }
                s.address.into_iter().collect()
            } else {
                match s.protocol {
                    ServiceProtocol::Tls => tls_ingress.clone(),
                    ServiceProtocol::Tcp => {
                        vip_of.get(s.id.as_str()).copied().into_iter().collect()
                    }
                }
            };
            for n in &s.dns {
                let Some(name) = dns_name(n) else { continue };
                let lower = LowerName::from(&name);
                let Some(zone) = enclosing(&zones, &lower) else {
                    continue;
                };
                let mut entry = NameEntry {
                    zone: zone.clone(),
                    internal: own,
                    a: Vec::new(),
                    aaaa: Vec::new(),
                };
                for ip in &addrs {
                    match ip {
                        IpAddr::V4(v4) => {
                            entry
                                .a
                                .push(Record::from_rdata(name.clone(), ttl, RData::A(A(*v4))))
                        }
                        IpAddr::V6(v6) => entry.aaaa.push(Record::from_rdata(
                            name.clone(),
                            ttl,
                            RData::AAAA(AAAA(*v6)),
                        )),
                    }
                }
                // The names between the zone and the service exist (empty
                // non-terminals): NODATA there, not NXDOMAIN.
                let mut up = lower.base_name();
                while up != zone && up.num_labels() > zone.num_labels() {
                    names.entry(up.clone()).or_insert_with(|| NameEntry {
                        zone: zone.clone(),
                        internal: own,
                        a: Vec::new(),
                        aaaa: Vec::new(),
                    });
                    up = up.base_name();
                }
                names.insert(lower, entry);
            }
        }
        let upstreams = fed
            .org(local.as_str())
            .map(|o| o.upstreams.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|addr| {
                let provider = TokioRuntimeProvider::new();
                Upstream {
                    addr,
                    udp: UdpClientStream::builder(addr, provider.clone())
                        .with_timeout(Some(config.upstream_timeout))
                        .with_max_retries(1)
                        .exchange(),
                    provider,
                    failures: metrics.counter(
                        "fedgate_dns_upstream_failures_total",
                        &[("upstream", &addr.to_string())],
                    ),
                }
            })
            .collect();
        let mut view = Self {
            version: node.version,
            node: node.clone(),
            names,
            zones,
            upstreams,
            fast: fast::FastIndex::default(),
        };
        view.fast = fast::FastIndex::build(
            view.names.iter().map(|(name, entry)| {
                let wire = name.to_bytes().unwrap_or_default();
                (wire, entry.internal)
            }),
            MAX_UDP_PAYLOAD,
            |name, qtype| view.template(name, qtype),
        );
        view
    }

    /// The hickory path's UDP answer to an EDNS query for `name` (wire
    /// format) and `qtype`, with ID 0 and no flags, asked from this member's
    /// own networks: [`fast`]'s template.
    fn template(&self, name: &[u8], qtype: RecordType) -> Option<Vec<u8>> {
        let mut query = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        query.extend_from_slice(name);
        query.extend_from_slice(&u16::from(qtype).to_be_bytes());
        query.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
        query.extend_from_slice(&[0]);
        query.extend_from_slice(&u16::from(RecordType::OPT).to_be_bytes());
        query.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        query.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let src = SocketAddr::from(([0, 0, 0, 0], 0));
        let request = Request::from_bytes(query, src, Protocol::Udp).ok()?;
        let info = request.request_info().ok()?;
        let entry = self.names.get(info.query.name())?;
        let kind = if entry.internal {
            Kind::Internal
        } else {
            Kind::Federation
        };
        let answer = name_answer(self, entry, qtype, kind)?;
        let edns = response_edns(request.edns.as_ref()?);
        let msg = authoritative(self, &request, Some(&edns), &answer);
        udp::encode(msg).ok().map(|(bytes, _)| bytes)
    }

    /// Whether `ip` is on one of this member's declared networks.
    fn is_local_client(&self, ip: IpAddr) -> bool {
        self.node
            .routing
            .classify(self.node.org().as_str(), ip)
            .is_some()
    }
}

/// The apex of the closest zone holding `name`, if any.
fn enclosing(zones: &HashMap<LowerName, Zone>, name: &LowerName) -> Option<LowerName> {
    let mut n = name.clone();
    loop {
        if zones.contains_key(&n) {
            return Some(n);
        }
        if n.is_root() {
            return None;
        }
        n = n.base_name();
    }
}

/// The kinds of answer, as counted in `fedgate_dns_queries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Federation = 0,
    Internal,
    Forwarded,
    Refused,
    Transfer,
    Other,
}

const KINDS: [&str; 6] = [
    "federation",
    "internal",
    "forwarded",
    "refused",
    "transfer",
    "other",
];
const RCODES: [&str; 8] = [
    "noerror", "nxdomain", "refused", "servfail", "formerr", "notimp", "badvers", "other",
];

fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::NXDomain => 1,
        ResponseCode::Refused => 2,
        ResponseCode::ServFail => 3,
        ResponseCode::FormErr => 4,
        ResponseCode::NotImp => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
}

/// Lock-free query counters, created on first use.
struct Stats {
    ctx: Arc<Ctx>,
    queries: [[OnceLock<Counter>; RCODES.len()]; KINDS.len()],
    limited: Counter,
}

impl Stats {
    fn new(ctx: Arc<Ctx>) -> Self {
        let limited = ctx.metrics.counter("fedgate_dns_rate_limited_total", &[]);
        Self {
            ctx,
            queries: Default::default(),
            limited,
        }
    }

    fn count(&self, kind: Kind, rcode: ResponseCode) {
        let (k, r) = (kind as usize, rcode_index(rcode));
        self.queries[k][r]
            .get_or_init(|| {
                self.ctx.metrics.counter(
                    "fedgate_dns_queries_total",
                    &[("kind", KINDS[k]), ("rcode", RCODES[r])],
                )
            })
            .inc();
    }
}

/// A token bucket per client address: `rate` queries a second, bursts of
/// `rate`.
struct RateLimiter {
    rate: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    fn new(rate: u32) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn allow(&self, ip: IpAddr) -> bool {
        if self.rate == 0 {
            return true;
        }
        let now = Instant::now();
        let rate = f64::from(self.rate);
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if buckets.len() >= 100_000 {
            // Full buckets of clients quiet for a while carry no state.
            buckets.retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(2));
        }
        let (tokens, last) = buckets.entry(ip).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Shared {
    view: RwLock<Arc<DnsView>>,
    /// Bumped after each new view: a serving thread keeps its own `Arc` until
    /// this changes.
    generation: AtomicU64,
    limiter: RateLimiter,
    stats: Stats,
    config: DnsConfig,
}

impl Shared {
    fn view(&self) -> Arc<DnsView> {
        match self.view.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

struct Handler {
    shared: Arc<Shared>,
}

/// The answer to one query, before it is encoded.
struct Answer<'a> {
    kind: Kind,
    rcode: ResponseCode,
    authoritative: bool,
    answers: &'a [Record],
    answers2: &'a [Record],
    soa: &'a [Record],
}

impl Answer<'_> {
    fn error(kind: Kind, rcode: ResponseCode) -> Self {
        Self {
            kind,
            rcode,
            authoritative: false,
            answers: &[],
            answers2: &[],
            soa: &[],
        }
    }
}

fn no_response(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::Refused;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let shared = &self.shared;
        let src = request.src().ip();
        if !shared.limiter.allow(src) {
            shared.stats.limited.inc();
            tracing::debug!(client = %src, "dns rate limit exceeded; dropped");
            return no_response(request);
        }
        // EDNS: answer in kind, never above MAX_UDP_PAYLOAD, version 0 only.
        let mut resp_edns = None;
        if let Some(req) = &request.edns {
            let e = response_edns(req);
            if req.version() > 0 {
                let builder = MessageResponseBuilder::new(&request.queries, Some(&e));
                let msg = builder.error_msg(&request.metadata, ResponseCode::BADVERS);
                shared.stats.count(Kind::Other, ResponseCode::BADVERS);
                return send(&mut response, msg, request).await;
            }
            resp_edns = Some(e);
        }
        let edns = resp_edns.as_ref();
        if request.metadata.op_code != OpCode::Query
            || request.metadata.message_type != MessageType::Query
        {
            return error(
                shared,
                &mut response,
                request,
                edns,
                Kind::Other,
                ResponseCode::NotImp,
            )
            .await;
        }
        let Ok(info) = request.request_info() else {
            return error(
                shared,
                &mut response,
                request,
                edns,
                Kind::Other,
                ResponseCode::FormErr,
            )
            .await;
        };
        let query = info.query;
        let view = shared.view();
        let qtype = query.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return error(
                shared,
                &mut response,
                request,
                edns,
                Kind::Transfer,
                ResponseCode::Refused,
            )
            .await;
        }
        if query.query_class() != DNSClass::IN {
            return error(
                shared,
                &mut response,
                request,
                edns,
                Kind::Refused,
                ResponseCode::Refused,
            )
            .await;
        }
        let answer = lookup(&view, query, src);
        let Some(answer) = answer else {
            // Not ours to answer: forward, for this member's own staff.
            if view.upstreams.is_empty() || !view.is_local_client(src) {
                return error(
                    shared,
                    &mut response,
                    request,
                    edns,
                    Kind::Refused,
                    ResponseCode::Refused,
                )
                .await;
            }
            return forward(shared, &view, &mut response, request, query, edns).await;
        };
        shared.stats.count(answer.kind, answer.rcode);
        let msg = authoritative(&view, request, edns, &answer);
        send(&mut response, msg, request).await
    }
}

/// The EDNS of an answer to a query with `req`: in kind, never above
/// MAX_UDP_PAYLOAD, version 0.
fn response_edns(req: &Edns) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    e.set_version(0);
    e
}

/// The message for an answer from the view.
fn authoritative<'q, 'a>(
    view: &DnsView,
    request: &'q Request,
    edns: Option<&'q Edns>,
    answer: &Answer<'a>,
) -> MessageResponse<
    'q,
    'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
> {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = answer.rcode;
    metadata.authoritative = answer.authoritative;
    metadata.recursion_available = !view.upstreams.is_empty();
    MessageResponseBuilder::new(&request.queries, edns).build(
        metadata,
        answer.answers.iter().chain(answer.answers2.iter()),
        std::iter::empty(),
        answer.soa.iter(),
        std::iter::empty(),
    )
}

/// The authoritative answer for `query` from `view`, or `None` when the
/// name is to be forwarded.
fn lookup<'v>(view: &'v DnsView, query: &LowerQuery, src: IpAddr) -> Option<Answer<'v>> {
    let name = query.name();
    let qtype = query.query_type();
    if let Some(entry) = view.names.get(name) {
        let kind = if entry.internal {
            if !view.is_local_client(src) {
                return Some(Answer::error(Kind::Refused, ResponseCode::Refused));
            }
            Kind::Internal
        } else {
            Kind::Federation
        };
        return name_answer(view, entry, qtype, kind);
    }
    let apex = enclosing(&view.zones, name)?;
    let zone = view.zones.get(&apex)?;
    if zone.own {
        // The member's own resolvers are authoritative for its own zones.
        return None;
    }
    if *name == apex {
        let (answers, soa): (&[Record], &[Record]) = match qtype {
            RecordType::SOA => (&zone.soa, &[]),
            RecordType::NS => (&zone.ns, &[]),
            _ => (&[], &zone.soa),
        };
        return Some(Answer {
            kind: Kind::Federation,
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            answers2: &[],
            soa,
        });
    }
    Some(Answer {
        kind: Kind::Federation,
        rcode: ResponseCode::NXDomain,
        authoritative: true,
        answers: &[],
        answers2: &[],
        soa: &zone.soa,
    })
}

/// The answer for an indexed name (a service, or an empty non-terminal).
fn name_answer<'v>(
    view: &'v DnsView,
    entry: &'v NameEntry,
    qtype: RecordType,
    kind: Kind,
) -> Option<Answer<'v>> {
    let zone = view.zones.get(&entry.zone)?;
    let (answers, answers2): (&[Record], &[Record]) = match qtype {
        RecordType::A => (&entry.a, &[]),
        RecordType::AAAA => (&entry.aaaa, &[]),
        RecordType::ANY => (&entry.a, &entry.aaaa),
        _ => (&[], &[]),
    };
    let empty = answers.is_empty() && answers2.is_empty();
    Some(Answer {
        kind,
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers,
        answers2,
        soa: if empty { &zone.soa } else { &[] },
    })
}

async fn error<R: ResponseHandler>(
    shared: &Shared,
    response: &mut R,
    request: &Request,
    edns: Option<&Edns>,
    kind: Kind,
    rcode: ResponseCode,
) -> ResponseInfo {
    shared.stats.count(kind, rcode);
    let msg =
        MessageResponseBuilder::new(&request.queries, edns).error_msg(&request.metadata, rcode);
    send(response, msg, request).await
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    msg: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(cause = %e, client = %request.src(), "cannot send dns answer");
            no_response(request)
        }
    }
}

/// Ask the upstreams in order; the first usable answer is relayed.
async fn forward<R: ResponseHandler>(
    shared: &Shared,
    view: &DnsView,
    response: &mut R,
    request: &Request,
    query: &LowerQuery,
    edns: Option<&Edns>,
) -> ResponseInfo {
    let mut last: Option<Message> = None;
    for upstream in &view.upstreams {
        match ask(upstream, query, shared.config.upstream_timeout).await {
            Some(m)
                if matches!(
                    m.metadata.response_code,
                    ResponseCode::NoError | ResponseCode::NXDomain
                ) =>
            {
                last = Some(m);
                break;
            }
            other => {
                upstream.failures.inc();
                if other.is_some() {
                    last = other;
                }
            }
        }
    }
    let Some(upstream) = last else {
        return error(
            shared,
            response,
            request,
            edns,
            Kind::Forwarded,
            ResponseCode::ServFail,
        )
        .await;
    };
    let rcode = upstream.metadata.response_code;
    shared.stats.count(Kind::Forwarded, rcode);
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    metadata.recursion_available = true;
    let msg = MessageResponseBuilder::new(&request.queries, edns).build(
        metadata,
        upstream.answers.iter(),
        upstream.authorities.iter(),
        std::iter::empty(),
        upstream.additionals.iter(),
    );
    send(response, msg, request).await
}

/// One upstream's answer: over UDP, and again over TCP when truncated.
async fn ask(upstream: &Upstream, query: &LowerQuery, timeout: Duration) -> Option<Message> {
    let request = || {
        let mut q = Query::query(Name::from(query.name()), query.query_type());
        q.set_query_class(query.query_class());
        let mut options = DnsRequestOptions::default();
        options.edns_payload_len = MAX_UDP_PAYLOAD;
        DnsRequest::from_query(q, options)
    };
    let first = tokio::time::timeout(timeout, upstream.udp.send(request()).next()).await;
    let message = match first {
        Ok(Some(Ok(resp))) => resp.into_message(),
        Ok(Some(Err(e))) => {
            tracing::debug!(upstream = %upstream.addr, cause = %e, "upstream failed");
            return None;
        }
        _ => {
            tracing::debug!(upstream = %upstream.addr, "upstream timed out");
            return None;
        }
    };
    if !message.metadata.truncation {
        return Some(message);
    }
    let tcp = async {
        let exchange = TcpClientStream::exchange(
            upstream.addr,
            None,
            timeout,
            None,
            upstream.provider.clone(),
        )
        .await?;
        match exchange.send(request()).next().await {
            Some(resp) => resp.map(|r| r.into_message()),
            None => Err(NetError::from("no answer")),
        }
    };
    match tokio::time::timeout(timeout, tcp).await {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => {
            tracing::debug!(upstream = %upstream.addr, cause = %e, "upstream over tcp failed");
            None
        }
        Err(_) => {
            tracing::debug!(upstream = %upstream.addr, "upstream over tcp timed out");
            None
        }
    }
}
