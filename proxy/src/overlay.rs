//! Links to peer edges: one QUIC connection per peer carrying one
//! bidirectional stream per flow; TLS over TCP (one connection per flow) when
//! QUIC to a peer fails, with QUIC retried in the background with backoff.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use federation::model::Edge;
use federation::wire::{FlowAnswer, FlowRequest};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::{self, Peer};
use crate::{Ctx, Listen, enforce, home, now, udp};

/// A byte stream that is not a QUIC stream: TLS over TCP, or TCP to a
/// local service.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A flow's byte stream to or from a peer edge, whatever the transport. A
/// QUIC stream stays visible so that the relay can move its bytes as owned
/// chunks ([`crate::relay::relay_quic`]) instead of copying them through
/// `AsyncRead`/`AsyncWrite`.
pub enum FlowStream {
    /// A stream of the peer's QUIC connection.
    Quic(QuicStream),
    /// TLS over TCP to the peer, or TCP to a service of our own.
    Io(Box<dyn Stream>),
}

impl FlowStream {
    fn quic(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        Self::Quic(QuicStream { send, recv })
    }

    pub fn io(stream: impl Stream + 'static) -> Self {
        Self::Io(Box::new(stream))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Quic,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::Tcp => "tcp",
        }
    }
}

/// The two halves of a flow's QUIC stream.
pub struct QuicStream {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

impl AsyncRead for FlowStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Quic(q) => Pin::new(&mut q.recv).poll_read(cx, buf),
            Self::Io(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for FlowStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Quic(q) => AsyncWrite::poll_write(Pin::new(&mut q.send), cx, buf)
                .map_err(std::io::Error::other),
            Self::Io(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Quic(q) => Pin::new(&mut q.send).poll_flush(cx),
            Self::Io(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Quic(q) => Pin::new(&mut q.send).poll_shutdown(cx),
            Self::Io(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A flow opened to a home edge.
pub struct Opened {
    pub stream: FlowStream,
    pub answer: FlowAnswer,
    /// Bytes read past the answer.
    pub early: Vec<u8>,
    pub transport: Transport,
    /// The verified home edge, for a TLS-over-TCP flow.
    pub tcp_peer: Option<Arc<Peer>>,
}

/// The peer may have the flow (its header, perhaps the client's bytes) but
/// gave no answer: the flow is not to be sent to another edge unless its
/// bytes may arrive twice without harm.
#[derive(Debug, thiserror::Error)]
#[error("{0} may have the flow but gave no answer")]
pub struct Unanswered(pub String);

/// How opening flows to a peer went lately. A peer that failed is tried
/// after its organisation's other edges until `retry_at` (1 s after the
/// first failure in a row, doubling to 30 s), then in its place again.
#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
}

/// A stream to a peer, and what it runs over.
struct Way {
    stream: FlowStream,
    transport: Transport,
    /// For TLS over TCP, the verified peer (a QUIC connection is watched as
    /// a whole by `serve_streams`).
    tcp_peer: Option<Arc<Peer>>,
    quic: Option<quinn::Connection>,
}

/// How long a flow may wait for its answer before the QUIC path is
/// probed, and then how long the probe may go unacknowledged before the
/// path is taken as lost (each four round trips instead, if longer): a
/// flow on a path that fell silent goes elsewhere within twice this. The
/// peer acknowledges within the ACK delay asked of it (1 ms,
/// [`acknowledge_less_often`]; 25 ms if it ignores the ask), whatever it
/// is doing with the flow.
const PATH_PATIENCE: Duration = Duration::from_secs(1);

/// The most bytes of probes ([`silent`]) an edge holds for a peer; it never
/// reads them, and the oldest are dropped to make room.
const PROBE_WINDOW: usize = 1024;

/// Resolves if the QUIC path under `conn` fell silent: after
/// [`PATH_PATIENCE`], a probe (a one-byte datagram, which the peer must
/// acknowledge) is sent, and no acknowledgement of anything comes back for
/// as long again. Never resolves otherwise, or without a QUIC connection.
///
/// The probe is sent, and the count of ACK frames taken, only once the
/// patience has run out, not with the flow's header: by then whatever the
/// peer acknowledged before the path was cut (a busy link's last packets)
/// has arrived, and cannot pass for an answer.
async fn silent(conn: Option<&quinn::Connection>) {
    if let Some(conn) = conn {
        let patience = (conn.rtt() * 4).max(PATH_PATIENCE);
        tokio::time::sleep(patience).await;
        let before = conn.stats().frame_rx.acks;
        match conn.send_datagram(bytes::Bytes::from_static(&[0])) {
            Ok(()) => {
                tokio::time::sleep(patience).await;
                if conn.stats().frame_rx.acks == before {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot probe the QUIC path"),
        }
    }
    std::future::pending().await
}

/// Flow streams a peer may open past its `--max-flows-per-peer`, each to be
/// refused as "overloaded" (see [`transport_config`]).
const REFUSAL_MARGIN: usize = 1024;

/// The peer gave no stream credit in time: it is at its limit of flows from
/// this edge (beyond [`REFUSAL_MARGIN`] of refusals in flight too).
#[derive(Debug, thiserror::Error)]
#[error("{0} takes no more flows from this edge for now")]
pub struct PeerBusy(pub String);

#[derive(Default)]
struct Link {
    quic: Option<quinn::Connection>,
    /// A background task is setting up QUIC (or re-establishing it).
    retrying: bool,
    /// When that task's first attempt started, for the head start.
    since: Option<tokio::time::Instant>,
    /// Counts the task's attempts that ended (up or failed): flows waiting
    /// out the head start watch it.
    attempts: watch::Sender<u64>,
}

pub struct Overlay {
    ctx: Arc<Ctx>,
    endpoint: Option<quinn::Endpoint>,
    connector: TlsConnector,
    links: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Link>>>>,
    health: Mutex<HashMap<String, Health>>,
    accept_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The certificate (fingerprint) each peer last presented over TLS on
    /// TCP, which has a connection per flow: `peer connected` is logged
    /// when a peer first comes so, or with another certificate.
    tcp_certificates: Mutex<HashMap<String, String>>,
}

/// Whether `edge` presents a certificate (`fingerprint`) other than the one
/// `seen` holds for it, which it then holds.
fn another_certificate(seen: &mut HashMap<String, String>, edge: &str, fingerprint: &str) -> bool {
    match seen.get_mut(edge) {
        Some(held) if held == fingerprint => false,
        Some(held) => {
            fingerprint.clone_into(held);
            true
        }
        None => {
            seen.insert(edge.to_owned(), fingerprint.to_owned());
            true
        }
    }
}

fn transport_config(ctx: &Ctx) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(ctx.limits.idle_timeout).ok());
    t.keep_alive_interval(Some(ctx.limits.idle_timeout / 3));
    // Streams past `--max-flows-per-peer` are let in, up to a margin, so
    // that `home::serve` refuses them at once with "overloaded"; at the
    // stream limit itself a peer's flows would wait for credit instead.
    let streams = ctx.limits.max_flows_per_peer.saturating_add(REFUSAL_MARGIN);
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(
        u32::try_from(streams).unwrap_or(u32::MAX),
    ));
    // Bulk transfers: windows large enough for a fast loopback or LAN.
    t.stream_receive_window(quinn::VarInt::from_u32(8 * 1024 * 1024));
    t.receive_window(quinn::VarInt::from_u32(32 * 1024 * 1024));
    t.send_window(32 * 1024 * 1024);
    // Datagrams as large as the path carries: MTU discovery searches up to
    // the largest UDP payload, so loopback and jumbo-frame LANs move 9-64 KB
    // per packet instead of 1,452 bytes, and every per-packet cost (AEAD
    // call, header protection, ACK bookkeeping) falls with the packet count.
    // On a 1,500-byte path the search stops where it does today, after a
    // few lost probes; the socket keeps each GSO send within 64 KiB
    // (`udp::Socket`).
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(udp::MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    acknowledge_less_often(&mut t);
    // Probes of a silent path ([`silent`]) are acknowledged, never read.
    t.datagram_receive_buffer_size(Some(PROBE_WINDOW));
    Arc::new(t)
}

/// Packets asking for an acknowledgement that a peer may take before it
/// must acknowledge them (see [`acknowledge_less_often`]).
const ACK_ELICITING_THRESHOLD: u32 = 4;

/// The longest a peer may hold an acknowledgement back.
const MAX_ACK_DELAY: Duration = Duration::from_millis(1);

/// Ask the peer for fewer acknowledgements (the QUIC ACK frequency
/// extension, which both ends of a link speak): one for every fifth packet
/// that asks for one, or after 1 ms, instead of one for every second packet.
/// A flow's opening, its answer and the service's reply then carry the
/// acknowledgements of the packets before them, where an acknowledgement of
/// its own would be sent, and would wake the other edge, ahead of the flow's
/// work. The 1 ms cap keeps acknowledgements prompt for bulk transfers and
/// loss recovery (quinn's default delay is 25 ms). bench/README.md has the
/// A/B.
pub(crate) fn acknowledge_less_often(t: &mut quinn::TransportConfig) {
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(quinn::VarInt::from_u32(ACK_ELICITING_THRESHOLD));
    ack.max_ack_delay(Some(MAX_ACK_DELAY));
    t.ack_frequency_config(Some(ack));
}

/// The most client bytes sent to the home edge before its answer.
pub const FIRST_MAX: usize = 64 * 1024;

/// Read the home edge's answer off `stream`; meanwhile forward what `client`
/// sends into `stream` (and append it to `sent`) until [`FIRST_MAX`] bytes
/// are sent in all, the client closes its side (the relay sees that again),
/// or the home edge stops reading (a refusal: its answer still comes). Both
/// reads are cancel-safe, so no byte is lost between them.
async fn answer_forwarding(
    stream: &mut FlowStream,
    mut client: Option<&TcpStream>,
    sent: &mut Vec<u8>,
) -> anyhow::Result<(FlowAnswer, Vec<u8>)> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let mut from_client = vec![0u8; 4096];
    loop {
        if let Some((value, used)) = FlowAnswer::decode(&buf)? {
            return Ok((value, buf.split_off(used)));
        }
        let watching = client.filter(|_| sent.len() < FIRST_MAX);
        tokio::select! {
            n = stream.read(&mut chunk) => {
                let n = n?;
                if n == 0 {
                    bail!("peer closed the stream before a whole header");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            ready = async { watching?.readable().await.ok() }, if watching.is_some() => {
                let (Some(c), Some(())) = (watching, ready) else {
                    client = None;
                    continue;
                };
                let room = FIRST_MAX - sent.len();
                match c.try_read(&mut from_client[..room.min(4096)]) {
                    Ok(0) => client = None,
                    Ok(n) => {
                        // Kept first, so another edge gets them if this one fails.
                        sent.extend_from_slice(&from_client[..n]);
                        let wrote = async {
                            stream.write_all(&from_client[..n]).await?;
                            stream.flush().await
                        };
                        if wrote.await.is_err() {
                            // The home edge stopped reading: it has refused
                            // (its answer says why) or the stream is gone
                            // (the read fails). Either way, read on.
                            client = None;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => client = None,
                }
            }
        }
    }
}

/// Read a frame off the front of a stream: the value and any bytes read past it.
pub async fn read_frame<T, S: AsyncRead + Unpin>(
    stream: &mut S,
    decode: fn(&[u8]) -> federation::wire::Decoded<T>,
) -> anyhow::Result<(T, Vec<u8>)> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some((value, used)) = decode(&buf)? {
            return Ok((value, buf.split_off(used)));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("peer closed the stream before a whole header");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl Overlay {
    pub async fn start(ctx: Arc<Ctx>, listen: &Listen) -> anyhow::Result<Arc<Self>> {
        let server = Arc::new(tls::server_config(&ctx.credentials)?);
        let client = Arc::new(tls::client_config(&ctx.credentials)?);
        let mut tasks = Vec::new();
        // QUIC: one endpoint listens and dials, so replies come from the
        // address peers know.
        let quic_addr = listen.overlay_quic;
        let endpoint = match quic_addr {
            Some(addr) => {
                let qsc = QuicServerConfig::try_from((*server).clone())
                    .map_err(|e| anyhow!("QUIC server config: {e}"))?;
                let mut sc = quinn::ServerConfig::with_crypto(Arc::new(qsc));
                sc.transport_config(transport_config(&ctx));
                let runtime: Arc<dyn quinn::Runtime> = Arc::new(udp::Coalescing);
                let socket = std::net::UdpSocket::bind(addr)
                    .and_then(udp::Socket::wrap)
                    .with_context(|| format!("cannot listen on QUIC {addr}"))?;
                // quinn's default (1,472) is also the largest datagram we
                // would accept, and so caps the peer's MTU discovery.
                let mut ec = quinn::EndpointConfig::default();
                ec.max_udp_payload_size(udp::MAX_UDP_PAYLOAD)
                    .map_err(|e| anyhow!("QUIC endpoint config: {e}"))?;
                let mut endpoint =
                    quinn::Endpoint::new_with_abstract_socket(ec, Some(sc), socket, runtime)
                        .with_context(|| format!("cannot listen on QUIC {addr}"))?;
                let qcc = QuicClientConfig::try_from((*client).clone())
                    .map_err(|e| anyhow!("QUIC client config: {e}"))?;
                let mut cc = quinn::ClientConfig::new(Arc::new(qcc));
                cc.transport_config(transport_config(&ctx));
                endpoint.set_default_client_config(cc);
                tracing::info!(kind = "overlay-quic", addr = %endpoint.local_addr()?, "listening");
                Some(endpoint)
            }
            None => None,
        };
        let overlay = Arc::new(Self {
            ctx: ctx.clone(),
            endpoint,
            connector: TlsConnector::from(client),
            links: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            accept_tasks: Mutex::new(Vec::new()),
            tcp_certificates: Mutex::new(HashMap::new()),
        });
        if let Some(endpoint) = overlay.endpoint.clone() {
            let o = overlay.clone();
            tasks.push(tokio::spawn(async move { o.serve_quic(endpoint).await }));
        }
        if let Some(addr) = listen.overlay_tcp {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on TCP {addr}"))?;
            tracing::info!(kind = "overlay-tcp", addr = %listener.local_addr()?, "listening");
            let acceptor = TlsAcceptor::from(server);
            let o = overlay.clone();
            tasks.push(tokio::spawn(async move {
                o.serve_tcp(listener, acceptor).await
            }));
        }
        if let Ok(mut t) = overlay.accept_tasks.lock() {
            t.extend(tasks);
        }
        Ok(overlay)
    }

    pub fn stop_accepting(&self) {
        if let Ok(tasks) = self.accept_tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }

    pub async fn close(&self) {
        if let Some(e) = &self.endpoint {
            e.close(quinn::VarInt::from_u32(0), b"edge stopping");
            let _ = tokio::time::timeout(Duration::from_secs(2), e.wait_idle()).await;
        }
    }

    fn refused(&self, err: &tls::PeerRefused, transport: Transport, remote: SocketAddr) {
        self.ctx.metrics.add(
            "fedgate_handshake_failures_total",
            &[("reason", err.label()), ("transport", transport.as_str())],
            1,
        );
        tracing::warn!(cause = %err, %remote, transport = transport.as_str(), "peer refused");
    }

    async fn serve_quic(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let this = self.clone();
            tokio::spawn(async move {
                let remote = crate::canonical(incoming.remote_address());
                let conn = match tokio::time::timeout(this.ctx.limits.handshake_timeout, incoming)
                    .await
                {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        this.ctx.metrics.add(
                            "fedgate_handshake_failures_total",
                            &[("reason", "tls"), ("transport", "quic")],
                            1,
                        );
                        tracing::warn!(cause = %e, %remote, transport = "quic", "handshake failed");
                        return;
                    }
                    Err(_) => {
                        this.ctx.metrics.add(
                            "fedgate_handshake_failures_total",
                            &[("reason", "timeout"), ("transport", "quic")],
                            1,
                        );
                        tracing::warn!(%remote, transport = "quic", secs = this.ctx.limits.handshake_timeout.as_secs(), "handshake timed out");
                        return;
                    }
                };
                let node = this.ctx.node();
                let certs = conn
                    .peer_identity()
                    .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
                let peer = match tls::check_peer(
                    &node,
                    certs.as_deref().map(Vec::as_slice),
                    None,
                    now(),
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        this.refused(&e, Transport::Quic, remote);
                        conn.close(quinn::VarInt::from_u32(1), e.label().as_bytes());
                        return;
                    }
                };
                tracing::info!(peer = %peer, %remote, transport = "quic", fingerprint = %peer.cert.fingerprint, "peer connected");
                // One connection per pair: flows to this peer use it too, unless
                // a connection we dialed is already up.
                {
                    let link = this.link(&peer.edge);
                    let mut l = link.lock().await;
                    if l.quic.as_ref().is_none_or(|c| c.close_reason().is_some()) {
                        l.quic = Some(conn.clone());
                        this.ctx.metrics.set(
                            "fedgate_peer_link",
                            &[("peer", peer.edge.as_str()), ("transport", "quic")],
                            1.0,
                        );
                    }
                }
                this.serve_streams(conn, peer).await;
            });
        }
    }

    /// Serve the flows a peer opens on a QUIC connection, whichever side
    /// dialed it.
    async fn serve_streams(self: &Arc<Self>, conn: quinn::Connection, peer: Peer) {
        let peer = Arc::new(peer);
        // A new snapshot that revokes the peer's certificate (or drops the
        // peer), the certificate's expiry, or a CA bundle without its issuer
        // closes the connection, and with it every flow on it, at once.
        {
            let ctx = self.ctx.clone();
            let peer = peer.clone();
            let conn = conn.clone();
            tokio::spawn(async move {
                tokio::select! {
                    reason = enforce::until_peer_refused(&ctx, &peer) => {
                        tracing::warn!(peer = %peer, %reason, serial = %peer.cert.serial, "peer connection closed: the peer is refused now");
                        ctx.metrics.add("fedgate_peer_closed_total", &[("reason", reason.as_str())], 1);
                        conn.close(quinn::VarInt::from_u32(2), reason.as_bytes());
                    }
                    _ = conn.closed() => {}
                }
            });
        }
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    tracing::debug!(peer = %peer, "flow stream accepted");
                    let ctx = self.ctx.clone();
                    let peer = peer.clone();
                    tokio::spawn(async move {
                        home::serve(ctx, &peer, FlowStream::quic(send, recv), Transport::Quic)
                            .await;
                    });
                }
                Err(e) => {
                    tracing::info!(peer = %peer, cause = %e, "peer connection closed");
                    // Shown down at once (the idle timeout, say), not when
                    // the next flow finds it closed.
                    let link = self.link(&peer.edge);
                    drop(self.link_down(&peer.edge, &link, &conn).await);
                    return;
                }
            }
        }
    }

    async fn serve_tcp(self: Arc<Self>, listener: TcpListener, acceptor: TlsAcceptor) {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok((tcp, remote)) => (tcp, crate::canonical(remote)),
                Err(e) => {
                    tracing::warn!(cause = %e, kind = "overlay-tcp", "failed to accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let this = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let tls = match tokio::time::timeout(
                    this.ctx.limits.handshake_timeout,
                    acceptor.accept(tcp),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        this.ctx.metrics.add(
                            "fedgate_handshake_failures_total",
                            &[("reason", "tls"), ("transport", "tcp")],
                            1,
                        );
                        tracing::warn!(cause = %e, %remote, transport = "tcp", "handshake failed");
                        return;
                    }
                    Err(_) => {
                        this.ctx.metrics.add(
                            "fedgate_handshake_failures_total",
                            &[("reason", "timeout"), ("transport", "tcp")],
                            1,
                        );
                        tracing::warn!(%remote, transport = "tcp", secs = this.ctx.limits.handshake_timeout.as_secs(), "handshake timed out");
                        return;
                    }
                };
                let node = this.ctx.node();
                let peer = match tls::check_peer(
                    &node,
                    tls.get_ref().1.peer_certificates(),
                    None,
                    now(),
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        this.refused(&e, Transport::Tcp, remote);
                        return;
                    }
                };
                drop(node);
                if this.new_tcp_certificate(&peer) {
                    tracing::info!(peer = %peer, %remote, transport = "tcp", fingerprint = %peer.cert.fingerprint, "peer connected");
                }
                home::serve(
                    this.ctx.clone(),
                    &Arc::new(peer),
                    FlowStream::io(tls),
                    Transport::Tcp,
                )
                .await;
            });
        }
    }

    /// Each peer link's state for the control plane: `quic` (with its RTT),
    /// `tcp` (QUIC failed, flows on TLS over TCP) or `down`.
    pub async fn link_report(&self) -> Vec<serde_json::Value> {
        let links: Vec<(String, Arc<tokio::sync::Mutex<Link>>)> = self
            .links
            .lock()
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(links.len());
        for (peer, link) in links {
            let l = link.lock().await;
            let entry = match l.quic.as_ref().filter(|c| c.close_reason().is_none()) {
                Some(c) => {
                    serde_json::json!({"peer": peer, "transport": "quic", "rtt_ms": c.rtt().as_secs_f64() * 1e3})
                }
                None if l.retrying => serde_json::json!({"peer": peer, "transport": "tcp"}),
                None => serde_json::json!({"peer": peer, "transport": "down"}),
            };
            out.push(entry);
        }
        out
    }

    /// Whether `peer` presents, over TLS on TCP, a certificate other than
    /// the one it last did (or comes so for the first time).
    fn new_tcp_certificate(&self, peer: &Peer) -> bool {
        let mut seen = self
            .tcp_certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        another_certificate(&mut seen, &peer.edge, &peer.cert.fingerprint)
    }

    fn link(&self, edge: &str) -> Arc<tokio::sync::Mutex<Link>> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.entry(edge.to_owned()).or_default().clone()
    }

    async fn quic_connect(self: &Arc<Self>, peer: &Edge) -> anyhow::Result<quinn::Connection> {
        let endpoint = self.endpoint.as_ref().context("QUIC is off on this edge")?;
        let addr = peer.quic.context("the peer has no QUIC endpoint")?;
        let connecting = endpoint.connect(addr, "edge.fedgate.invalid")?;
        let conn = tokio::time::timeout(
            self.ctx
                .limits
                .handshake_timeout
                .min(Duration::from_secs(2)),
            connecting,
        )
        .await
        .map_err(|_| anyhow!("QUIC handshake with {} timed out (UDP blocked?)", peer.id))??;
        let node = self.ctx.node();
        let certs = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
        let verified = match tls::check_peer(
            &node,
            certs.as_deref().map(Vec::as_slice),
            Some(peer.id.as_str()),
            now(),
        ) {
            Ok(p) => p,
            Err(e) => {
                self.refused(&e, Transport::Quic, addr);
                conn.close(quinn::VarInt::from_u32(1), e.label().as_bytes());
                bail!("peer refused: {e}");
            }
        };
        // The peer may open flows to us on this connection too.
        let this = self.clone();
        let served = conn.clone();
        tokio::spawn(async move { this.serve_streams(served, verified).await });
        self.ctx.metrics.set(
            "fedgate_peer_link",
            &[("peer", peer.id.as_str()), ("transport", "quic")],
            1.0,
        );
        tracing::info!(peer = %peer.id, %addr, transport = "quic", "peer link up");
        Ok(conn)
    }

    /// Set up QUIC to `peer` in the background, the first attempt after
    /// `first`, then with backoff (1 s doubling to 30 s) and jitter.
    fn retry_quic(
        self: &Arc<Self>,
        peer: Edge,
        link: Arc<tokio::sync::Mutex<Link>>,
        first: Duration,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut delay = first;
            let mut shutdown = this.ctx.shutdown.clone();
            for attempt in 0..10_000u32 {
                let jitter = Duration::from_millis(
                    u64::from(now().subsec_nanosecond().unsigned_abs()) % 250,
                );
                if attempt > 0 || !delay.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(delay + jitter) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                // A peer that left the snapshot, or whose QUIC endpoint
                // changed or went: stop (a flow to it starts afresh).
                let node = this.ctx.node();
                let now_at = node.fed.edge(peer.id.as_str()).and_then(|e| e.quic);
                if now_at != peer.quic {
                    let mut l = link.lock().await;
                    l.retrying = false;
                    l.since = None;
                    l.attempts.send_modify(|n| *n += 1);
                    tracing::info!(peer = %peer.id, "QUIC retry stopped: the snapshot no longer has this endpoint");
                    return;
                }
                drop(node);
                let result = this.quic_connect(&peer).await;
                let mut l = link.lock().await;
                l.attempts.send_modify(|n| *n += 1);
                match result {
                    Ok(conn) => {
                        if l.quic.as_ref().is_some_and(|c| c.close_reason().is_none()) {
                            // The peer dialed us meanwhile: one connection
                            // per pair, so this new one (no flow yet) goes.
                            conn.close(quinn::VarInt::from_u32(0), b"one connection per pair");
                        } else {
                            l.quic = Some(conn);
                        }
                        l.retrying = false;
                        l.since = None;
                        return;
                    }
                    Err(e) if attempt == 0 => {
                        tracing::warn!(peer = %peer.id, cause = %e, "QUIC to peer failed; using TLS over TCP, retrying QUIC in the background");
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer.id, cause = %e, "QUIC retry failed");
                    }
                }
                drop(l);
                delay = (delay * 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
            }
        });
    }

    /// Open a flow to `peer`: over its QUIC connection if up, else over a
    /// new TLS-over-TCP connection. Returns the stream, the home edge's
    /// answer, bytes read past the answer, and the transport.
    ///
    /// The client's bytes do not wait for the answer: `first` (what is in
    /// hand) goes in the same write as the header, and what `client` sends
    /// while the answer is on its way is forwarded too (and appended to
    /// `first`, so that an attempt at another edge sends it all again), up
    /// to [`FIRST_MAX`] bytes in all. The home edge holds them until it has
    /// decided and connected, and drops them if it refuses; so a client's
    /// first bytes cost no round trip between the edges.
    ///
    /// If the flow went over QUIC and nothing comes back from the peer
    /// ([`silent`]), the path is taken as lost ([`Overlay::path_lost`]) and,
    /// when `replayable` (nothing of the client's sent, or a TLS ClientHello,
    /// which may arrive twice without harm) and no more has been forwarded,
    /// the flow is opened again over TCP.
    pub async fn open(
        self: &Arc<Self>,
        peer: &Edge,
        req: &FlowRequest,
        first: &mut Vec<u8>,
        client: Option<&TcpStream>,
        replayable: bool,
    ) -> anyhow::Result<Opened> {
        let at_start = first.len();
        let way = self.stream_to(peer).await?;
        if let Some(opened) = self.exchange(peer, way, req, first, client).await? {
            return Ok(opened);
        }
        if !(replayable && first.len() == at_start) {
            return Err(anyhow!(
                "QUIC path to {} lost after the client's bytes were sent; not sending them again",
                peer.id
            )
            .context(Unanswered(peer.id.to_string())));
        }
        let way = self.stream_to(peer).await?;
        self.exchange(peer, way, req, first, client)
            .await?
            .with_context(|| format!("QUIC path to {} lost twice", peer.id))
    }

    /// Send the flow's header and `first` on `way`, and wait for the answer;
    /// `None` when the way was QUIC and the path fell silent (now closed).
    async fn exchange(
        self: &Arc<Self>,
        peer: &Edge,
        way: Way,
        req: &FlowRequest,
        first: &mut Vec<u8>,
        client: Option<&TcpStream>,
    ) -> anyhow::Result<Option<Opened>> {
        let Way {
            mut stream,
            transport,
            tcp_peer,
            quic,
        } = way;
        let mut header = Vec::with_capacity(64 + first.len());
        req.encode(&mut header)?;
        header.extend_from_slice(first);
        let answered = async {
            stream.write_all(&header).await?;
            stream.flush().await?;
            let answered = tokio::time::timeout(
                self.ctx.limits.connect_timeout + self.ctx.limits.handshake_timeout,
                async {
                    tokio::select! {
                        r = answer_forwarding(&mut stream, client, first) => r.map(Some),
                        () = silent(quic.as_ref()) => Ok(None),
                    }
                },
            )
            .await
            .map_err(|_| anyhow!("no answer from {} in time", peer.id))??;
            anyhow::Ok(answered)
        }
        .await
        .map_err(|e| e.context(Unanswered(peer.id.to_string())))?;
        let Some((answer, rest)) = answered else {
            if let Some(conn) = &quic {
                self.path_lost(peer, conn).await;
            }
            return Ok(None);
        };
        Ok(Some(Opened {
            stream,
            answer,
            early: rest,
            transport,
            tcp_peer,
        }))
    }

    /// `edges` (one organisation's, in the snapshot's order) in the order
    /// to try them: those that failed lately ([`Health`]) last.
    pub fn by_health<'a>(&self, edges: impl Iterator<Item = &'a Edge>) -> Vec<&'a Edge> {
        let now = tokio::time::Instant::now();
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let mut edges: Vec<&Edge> = edges.collect();
        edges.sort_by_key(|e| {
            health
                .get(e.id.as_str())
                .and_then(|h| h.retry_at)
                .is_some_and(|at| at > now)
        });
        edges
    }

    /// A flow to `peer` was answered (accepted or refused): it is well.
    pub fn answered(&self, peer: &Edge) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if health.remove(peer.id.as_str()).is_some() {
            tracing::info!(peer = %peer.id, "peer answers flows again");
        }
    }

    /// Opening a flow to `peer` failed: try it after the others for a while.
    pub fn failed(&self, peer: &Edge) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let h = health.entry(peer.id.to_string()).or_default();
        h.failures = h.failures.saturating_add(1);
        let backoff = Duration::from_secs(1 << h.failures.min(6).saturating_sub(1))
            .min(Duration::from_secs(30));
        h.retry_at = Some(tokio::time::Instant::now() + backoff);
    }

    /// The QUIC connection to `peer`: the one up, else one being set up if
    /// it comes up within [`crate::Limits::quic_head_start`] (`None`: use
    /// TCP, as also when QUIC is off for it).
    async fn quic_link(
        self: &Arc<Self>,
        peer: &Edge,
        link: &Arc<tokio::sync::Mutex<Link>>,
    ) -> Option<quinn::Connection> {
        let (mut attempts, deadline) = {
            let mut l = link.lock().await;
            if let Some(conn) = self.live(peer, &mut l) {
                return Some(conn);
            }
            if self.endpoint.is_none() || peer.quic.is_none() {
                return None;
            }
            if !l.retrying {
                l.retrying = true;
                l.since = Some(tokio::time::Instant::now());
                // Not up until it is.
                self.ctx.metrics.set(
                    "fedgate_peer_link",
                    &[("peer", peer.id.as_str()), ("transport", "quic")],
                    0.0,
                );
                self.retry_quic(peer.clone(), link.clone(), Duration::ZERO);
            }
            let deadline = l.since? + self.ctx.limits.quic_head_start;
            (l.attempts.subscribe(), deadline)
        };
        // Within the head start: wait for the attempt under way to end.
        let _ = tokio::time::timeout_at(deadline, attempts.changed()).await;
        let mut l = link.lock().await;
        self.live(peer, &mut l)
    }

    /// The link's QUIC connection if it is up (one found closed is taken
    /// out).
    fn live(&self, peer: &Edge, l: &mut Link) -> Option<quinn::Connection> {
        let conn = l.quic.as_ref()?;
        if conn.close_reason().is_none() {
            self.ctx.metrics.set(
                "fedgate_peer_rtt_seconds",
                &[("peer", peer.id.as_str())],
                conn.rtt().as_secs_f64(),
            );
            return Some(conn.clone());
        }
        l.quic = None;
        self.ctx.metrics.set(
            "fedgate_peer_link",
            &[("peer", peer.id.as_str()), ("transport", "quic")],
            0.0,
        );
        None
    }

    /// A stream to `peer`: over its QUIC connection if up, else over a new
    /// TLS-over-TCP connection.
    async fn stream_to(self: &Arc<Self>, peer: &Edge) -> anyhow::Result<Way> {
        let link = self.link(peer.id.as_str());
        // Twice at most: a connection found dead on opening is replaced once.
        for _ in 0..2 {
            let Some(conn) = self.quic_link(peer, &link).await else {
                break;
            };
            // Not under the link's lock: waiting here for stream credit (the
            // peer at its `--max-flows-per-peer`) must not hold up other flows.
            match tokio::time::timeout(self.ctx.limits.connect_timeout, conn.open_bi()).await {
                Ok(Ok((send, recv))) => {
                    tracing::debug!(peer = %peer.id, "flow stream opened");
                    return Ok(Way {
                        stream: FlowStream::quic(send, recv),
                        transport: Transport::Quic,
                        tcp_peer: None,
                        quic: Some(conn),
                    });
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer.id, cause = %e, "QUIC connection lost on opening a flow");
                    drop(self.link_down(peer.id.as_str(), &link, &conn).await);
                }
                Err(_) => return Err(PeerBusy(peer.id.to_string()).into()),
            }
        }
        let way = self.tcp_to(peer).await;
        self.ctx.metrics.set(
            "fedgate_peer_link",
            &[("peer", peer.id.as_str()), ("transport", "tcp")],
            if way.is_ok() { 1.0 } else { 0.0 },
        );
        way
    }

    /// A new TLS-over-TCP connection to `peer`, its certificate checked.
    async fn tcp_to(&self, peer: &Edge) -> anyhow::Result<Way> {
        let addr = peer
            .tcp
            .with_context(|| format!("no QUIC link to {} and it has no TCP endpoint", peer.id))?;
        let tcp = tokio::time::timeout(self.ctx.limits.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("TCP connect to {} ({addr}) timed out", peer.id))?
            .with_context(|| format!("TCP connect to {} ({addr})", peer.id))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(
            self.ctx.limits.handshake_timeout,
            self.connector.connect(tls::peer_server_name(), tcp),
        )
        .await
        .map_err(|_| anyhow!("TLS handshake with {} timed out", peer.id))?
        .with_context(|| format!("TLS handshake with {}", peer.id))?;
        let node = self.ctx.node();
        let verified = match tls::check_peer(
            &node,
            tls.get_ref().1.peer_certificates(),
            Some(peer.id.as_str()),
            now(),
        ) {
            Ok(p) => p,
            Err(e) => {
                self.refused(&e, Transport::Tcp, addr);
                bail!("peer refused: {e}");
            }
        };
        Ok(Way {
            stream: FlowStream::io(tls),
            transport: Transport::Tcp,
            tcp_peer: Some(Arc::new(verified)),
            quic: None,
        })
    }

    /// Take `conn` out of `peer`'s link, if it is still the one there: new
    /// flows then reconnect (or go over TCP).
    async fn link_down<'l>(
        &self,
        peer: &str,
        link: &'l tokio::sync::Mutex<Link>,
        conn: &quinn::Connection,
    ) -> tokio::sync::MutexGuard<'l, Link> {
        let mut l = link.lock().await;
        if l.quic
            .as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            l.quic = None;
            self.ctx.metrics.set(
                "fedgate_peer_link",
                &[("peer", peer), ("transport", "quic")],
                0.0,
            );
        }
        l
    }

    /// Nothing came back on `conn` for a probe of the path ([`silent`]): close
    /// it (its flows could not go on), send new flows over TCP and retry
    /// QUIC in the background, as when QUIC fails at the outset.
    async fn path_lost(self: &Arc<Self>, peer: &Edge, conn: &quinn::Connection) {
        conn.close(quinn::VarInt::from_u32(3), b"path-lost");
        let link = self.link(peer.id.as_str());
        let mut l = self.link_down(peer.id.as_str(), &link, conn).await;
        self.ctx.metrics.add(
            "fedgate_quic_path_lost_total",
            &[("peer", peer.id.as_str())],
            1,
        );
        tracing::warn!(peer = %peer.id, "QUIC path to peer lost: nothing came back for a flow; flows over TLS on TCP, retrying QUIC in the background");
        if !l.retrying && l.quic.is_none() {
            l.retrying = true;
            // No head start: flows go over TCP until QUIC is back.
            l.since = None;
            self.retry_quic(peer.clone(), link.clone(), Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{PATH_PATIENCE, PROBE_WINDOW, acknowledge_less_often, another_certificate, silent};
    use crate::testing::quic_conns;

    /// `peer connected` over TLS on TCP: a peer's first certificate, and
    /// each other one after (a renewal, or back), but not the same again.
    #[test]
    fn a_peer_certificate_is_logged_when_it_is_new_to_the_peer() {
        let mut seen = std::collections::HashMap::new();
        assert!(another_certificate(&mut seen, "a/edge", "f1"));
        assert!(!another_certificate(&mut seen, "a/edge", "f1"));
        assert!(another_certificate(&mut seen, "b/edge", "f1"));
        assert!(another_certificate(&mut seen, "a/edge", "f2"));
        assert!(!another_certificate(&mut seen, "a/edge", "f2"));
        assert!(another_certificate(&mut seen, "a/edge", "f1"));
        assert_eq!(seen.len(), 2);
    }

    /// A healthy link whose far end says nothing (as while a home edge
    /// waits on a slow service) is probed once its patience runs out, and
    /// acknowledges the probe: it is not taken as silent.
    #[tokio::test(flavor = "current_thread")]
    async fn a_quiet_healthy_path_answers_its_probe_and_is_not_silent() {
        let w = ::tests::World::new();
        // The far end holds probes as the edges do.
        let mut far_transport = quinn::TransportConfig::default();
        far_transport.datagram_receive_buffer_size(Some(PROBE_WINDOW));
        let (near, far, _endpoint) = quic_conns(
            &w,
            quinn::TransportConfig::default(),
            far_transport,
            Arc::new(crate::udp::Coalescing),
        )
        .await;
        let acks = near.stats().frame_rx.acks;
        let waited = tokio::time::timeout(PATH_PATIENCE * 3, silent(Some(&near))).await;
        assert!(waited.is_err(), "a healthy path was taken as silent");
        let probe = far.read_datagram().await.unwrap();
        assert_eq!(&probe[..], &[0]);
        assert!(
            near.stats().frame_rx.acks > acks,
            "the probe was not acknowledged"
        );
    }

    /// Datagrams both ends send for `n` exchanges shaped like a flow whose
    /// client writes twice: each on a stream of its own, the near end sends
    /// a first packet, then (once the far end has read it) a second with the
    /// end of its side; the far end answers with what it read and ends its
    /// side. Both ends run with `transport`'s settings.
    async fn datagrams_for_exchanges(transport: fn() -> quinn::TransportConfig, n: u32) -> u64 {
        let w = ::tests::World::new();
        let (near, far, _endpoint) = quic_conns(
            &w,
            transport(),
            transport(),
            Arc::new(crate::udp::Coalescing),
        )
        .await;
        let sent = |near: &quinn::Connection, far: &quinn::Connection| {
            near.stats().udp_tx.datagrams + far.stats().udp_tx.datagrams
        };
        // Let the handshake's acknowledgements settle.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let before = sent(&near, &far);
        let (read_first, mut first_read) = tokio::sync::mpsc::channel(1);
        let far_end = tokio::spawn(async move {
            for _ in 0..n {
                let (mut send, mut recv) = far.accept_bi().await.unwrap();
                let mut first = [0u8; 5];
                recv.read_exact(&mut first).await.unwrap();
                read_first.send(()).await.unwrap();
                let rest = recv.read_to_end(64).await.unwrap();
                send.write_all(&first).await.unwrap();
                send.write_all(&rest).await.unwrap();
                send.finish().unwrap();
            }
            far
        });
        for i in 0..n {
            let (mut send, mut recv) = near.open_bi().await.unwrap();
            send.write_all(b"first").await.unwrap();
            first_read.recv().await.unwrap();
            let rest = format!(" then {i}");
            send.write_all(rest.as_bytes()).await.unwrap();
            send.finish().unwrap();
            let back = recv.read_to_end(64).await.unwrap();
            assert_eq!(back, format!("first then {i}").as_bytes());
        }
        let far = far_end.await.unwrap();
        // Let acknowledgements held back go out (quinn's default delay is
        // 25 ms).
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        sent(&near, &far) - before
    }

    /// With the edges' acknowledgement settings the answer carries the
    /// acknowledgement of the client's two packets; with quinn's defaults
    /// the second packet draws an acknowledgement of its own, sent before
    /// the answer.
    #[tokio::test(flavor = "current_thread")]
    async fn answers_carry_the_acknowledgements_of_the_packets_before_them() {
        let n = 40;
        let edge = datagrams_for_exchanges(
            || {
                let mut t = quinn::TransportConfig::default();
                acknowledge_less_often(&mut t);
                t
            },
            n,
        )
        .await;
        let default = datagrams_for_exchanges(quinn::TransportConfig::default, n).await;
        eprintln!(
            "datagrams for {n} exchanges: {edge} with the edges' settings, {default} with quinn's"
        );
        assert!(
            edge + u64::from(n) / 2 <= default,
            "{edge} datagrams with the edges' settings, {default} with quinn's"
        );
    }
}
