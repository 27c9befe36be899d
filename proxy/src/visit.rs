//! The visited edge's side of a flow: the client's network, the pre-check,
//! the overlay to the home edge (or egress, for this organisation's own
//! services), and the relay.

use std::net::SocketAddr;
use std::sync::Arc;

use federation::Flow;
use federation::model::ServiceId;
use federation::wire::{FlowAnswer, FlowRequest};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::audit::FlowRecord;
use crate::overlay::{FlowStream, Overlay, PeerBusy, Transport, Unanswered};
use crate::tls::Peer;
use crate::{Ctx, FlowPermit, enforce, now, relay};

/// Why a client's flow was refused, for the ingress to answer in its own
/// protocol (403, SOCKS code, close).
#[derive(Debug)]
pub struct Refused {
    /// `denied` (by policy, here or at home) or `failed` (unreachable, limits).
    pub denied: bool,
    pub reason: String,
    pub rule: Option<String>,
}

impl Refused {
    /// Refused for want of a free slot (`--max-flows` here, or
    /// `--max-flows-per-peer` at the home edge), or while an audit log
    /// cannot be written (here or there): worth retrying soon.
    pub fn try_later(&self) -> bool {
        !self.denied
            && matches!(
                self.reason.strip_prefix("home:").unwrap_or(&self.reason),
                "overloaded" | crate::audit::UNAVAILABLE
            )
    }
}

/// A flow accepted at both ends, ready to relay.
pub struct Opened {
    stream: FlowStream,
    /// Bytes the home side sent after its answer.
    early: Vec<u8>,
    /// The client's bytes sent with the flow's opening (`first`).
    sent: u64,
    /// The home edge, verified, for a TLS-over-TCP flow (watched for
    /// revocation; a QUIC link is watched as a whole).
    tcp_peer: Option<Arc<Peer>>,
    record: FlowRecord,
    _permit: FlowPermit,
}

fn flow_id() -> u128 {
    // Unique enough to correlate two edges' records: time and a counter.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    static PID: std::sync::LazyLock<u32> = std::sync::LazyLock::new(std::process::id);
    (now().as_nanosecond() as u128) << 32 ^ u128::from(n) ^ (u128::from(*PID) << 100)
}

/// Pre-check a client's flow to `service:port` and open it, sending `first`
/// (the client's bytes already read) with the opening, and, with `stream`
/// (the client's connection), what the client sends while the home edge
/// decides ([`Overlay::open`]).
#[allow(clippy::too_many_arguments)]
pub async fn open(
    ctx: &Arc<Ctx>,
    overlay: &Arc<Overlay>,
    client: SocketAddr,
    service: &ServiceId,
    port: u16,
    ingress: &str,
    first: &[u8],
    stream: Option<&TcpStream>,
) -> Result<Opened, Refused> {
    let node = ctx.node();
    let network = node.source_network(client.ip());
    let id = flow_id();
    let mut record = FlowRecord {
        flow_id: format!("{id:032x}"),
        role: "visited".into(),
        start: now().to_string(),
        end: String::new(),
        src_org: node.org().to_string(),
        src_network: network.clone(),
        src_addr: Some(client.ip().to_string()),
        service: service.to_string(),
        port,
        result: "denied".into(),
        reason: String::new(),
        rules: Vec::new(),
        agreement: None,
        bytes_up: 0,
        bytes_down: 0,
        peer_edge: None,
        transport: None,
        ingress: Some(ingress.to_owned()),
        closed: None,
    };
    let refuse = |record: &mut FlowRecord, denied: bool, reason: &str, rule: Option<String>| {
        ctx.record_denied(record, reason, rule.iter().cloned().collect());
        tracing::info!(flow_id = %record.flow_id, remote = %client, %service, port, reason, rule = rule.as_deref().unwrap_or("-"), "flow refused");
        Refused {
            denied,
            reason: reason.to_owned(),
            rule,
        }
    };
    // No flow starts that this edge could not audit (its log is out of
    // reach and its backlog full); nor is its refusal filed.
    if !ctx.audit.accepting() {
        return Err(refuse(&mut record, false, crate::audit::UNAVAILABLE, None));
    }
    let Some(network) = network else {
        return Err(refuse(&mut record, true, "unknown-source-network", None));
    };
    let decision = node.policies.decide(
        &Flow {
            src_org: node.org().as_str(),
            src_network: Some(&network),
            src_addr: Some(client.ip()),
            service: service.as_str(),
            port,
        },
        now(),
    );
    record.agreement = decision.agreement.as_ref().map(ToString::to_string);
    if !decision.is_allowed() {
        let rule = decision.rules.first().map(ToString::to_string);
        return Err(refuse(&mut record, true, decision.reason.label(), rule));
    }
    record.rules = decision.rules.iter().map(ToString::to_string).collect();
    let Some(permit) = ctx.admit(None) else {
        return Err(refuse(&mut record, false, "overloaded", None));
    };
    let Some(svc) = node.fed.service(service.as_str()) else {
        return Err(refuse(&mut record, true, "unknown-service", None));
    };
    // Our own service: this edge is the home edge too.
    if svc.org == *node.org() {
        let Some(ip) = svc.address else {
            return Err(refuse(&mut record, false, "no-address", None));
        };
        return match tokio::time::timeout(
            ctx.limits.connect_timeout,
            TcpStream::connect(SocketAddr::new(ip, port)),
        )
        .await
        {
            Ok(Ok(mut s)) => {
                let _ = s.set_nodelay(true);
                record.transport = Some("local".into());
                if s.write_all(first).await.is_err() {
                    return Err(refuse(&mut record, false, "upstream-unreachable", None));
                }
                Ok(Opened {
                    stream: FlowStream::io(s),
                    early: Vec::new(),
                    sent: first.len() as u64,
                    tcp_peer: None,
                    record,
                    _permit: permit,
                })
            }
            _ => Err(refuse(&mut record, false, "upstream-unreachable", None)),
        };
    }
    let req = FlowRequest {
        flow_id: id,
        service: service.to_string(),
        port,
        src_network: Some(network),
        src_addr: Some(client.ip()),
    };
    let mut last_error = String::from("no edge of the owner");
    // The last home edge that gave no stream credit in time.
    let mut busy = None;
    // Bytes that may reach the home edge twice without harm, if a QUIC path
    // is lost under the flow's opening: none, or a TLS ClientHello.
    let replayable = first.is_empty() || ingress == "sni";
    let mut first = first.to_vec();
    let setup = tokio::time::Instant::now();
    let at_start = first.len();
    for edge in overlay.by_health(node.fed.edges_of(&svc.org)) {
        match overlay
            .open(edge, &req, &mut first, stream, replayable)
            .await
        {
            Ok(opened) => {
                overlay.answered(edge);
                ctx.metrics
                    .histogram(
                        "fedgate_flow_setup_seconds",
                        &[
                            ("peer", edge.id.as_str()),
                            ("transport", opened.transport.as_str()),
                        ],
                        crate::metrics::SETUP_BUCKETS,
                    )
                    .observe(setup.elapsed());
                record.peer_edge = Some(edge.id.to_string());
                record.transport = Some(opened.transport.as_str().into());
                let FlowAnswer::Denied { rule, reason } = opened.answer else {
                    return Ok(Opened {
                        stream: opened.stream,
                        early: opened.early,
                        sent: first.len() as u64,
                        tcp_peer: opened.tcp_peer,
                        record,
                        _permit: permit,
                    });
                };
                let denied = !reason.starts_with("upstream")
                    && reason != "overloaded"
                    && reason != crate::audit::UNAVAILABLE;
                return Err(refuse(&mut record, denied, &format!("home:{reason}"), rule));
            }
            Err(e) => {
                last_error = format!("{e:#}");
                tracing::warn!(peer = %edge.id, cause = %last_error, "cannot open a flow to the home edge");
                if e.is::<PeerBusy>() {
                    busy = Some(edge);
                    continue;
                }
                overlay.failed(edge);
                // Refused as unreachable, the record names the last edge tried.
                record.peer_edge = Some(edge.id.to_string());
                if e.is::<Unanswered>() && !(replayable && first.len() == at_start) {
                    // It may have reached that edge: not to another as well.
                    break;
                }
            }
        }
    }
    if let Some(edge) = busy {
        // A home edge at its limit of flows from us, as if it had answered.
        record.peer_edge = Some(edge.id.to_string());
        record.transport = Some(Transport::Quic.as_str().into());
        return Err(refuse(&mut record, false, "home:overloaded", None));
    }
    tracing::warn!(%service, cause = %last_error, "no home edge reachable");
    Err(refuse(&mut record, false, "home-unreachable", None))
}

/// Relay between the client and an opened flow; audits the flow at its end.
pub async fn relay(ctx: &Ctx, mut opened: Opened, mut client: TcpStream) {
    let up = opened.sent;
    let mut down = 0u64;
    if !opened.early.is_empty() {
        if client.write_all(&opened.early).await.is_err() {
            return;
        }
        down += opened.early.len() as u64;
    }
    let guard = async {
        match &opened.tcp_peer {
            Some(peer) => enforce::until_peer_refused(ctx, peer).await,
            None => std::future::pending().await,
        }
    };
    let (a, b, ended) =
        relay::relay_flow(&mut client, &mut opened.stream, ctx.limits.flow_idle, guard).await;
    match &ended {
        relay::Ended::Idle => {
            tracing::info!(flow_id = %opened.record.flow_id, idle_secs = ctx.limits.flow_idle.as_secs(), "flow closed: idle");
            opened.record.closed = Some("idle".into());
        }
        relay::Ended::Stopped(reason) => {
            tracing::info!(flow_id = %opened.record.flow_id, %reason, "flow closed: refused now");
            opened.record.closed = Some(reason.clone());
        }
        _ => {}
    }
    ctx.record_allowed(&mut opened.record, up + a, down + b);
}
