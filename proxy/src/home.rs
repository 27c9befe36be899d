//! The home edge's side of a flow: the authoritative decision, egress to the
//! internal address, and the relay.

use std::net::SocketAddr;
use std::sync::Arc;

use federation::Flow;
use federation::wire::{FlowAnswer, FlowRequest};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::Instrument as _;

use crate::audit::FlowRecord;
use crate::node::Node;
use crate::overlay::{FlowStream, Transport, read_frame};
use crate::tls::Peer;
use crate::{Ctx, enforce, now, relay};

async fn answer(stream: &mut FlowStream, answer: &FlowAnswer) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(32);
    answer.encode(&mut buf).map_err(std::io::Error::other)?;
    stream.write_all(&buf).await?;
    stream.flush().await
}

/// Serve one flow opened by `peer`.
pub async fn serve(ctx: Arc<Ctx>, peer: &Arc<Peer>, mut stream: FlowStream, transport: Transport) {
    let start = now();
    let (req, initial) = match tokio::time::timeout(
        ctx.limits.client_hello_timeout,
        read_frame(&mut stream, FlowRequest::decode),
    )
    .await
    {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::warn!(peer = %peer, cause = %e, "bad flow header from peer");
            ctx.metrics.add(
                "fedgate_denials_total",
                &[("role", "home"), ("reason", "bad-header")],
                1,
            );
            return;
        }
        Err(_) => {
            tracing::warn!(peer = %peer, "no flow header from peer in time");
            ctx.metrics.add(
                "fedgate_denials_total",
                &[("role", "home"), ("reason", "header-timeout")],
                1,
            );
            return;
        }
    };
    let node = ctx.node();
    let record = FlowRecord {
        flow_id: format!("{:032x}", req.flow_id),
        role: "home".into(),
        start: start.to_string(),
        end: String::new(),
        src_org: peer.org.clone(),
        src_network: req.src_network.clone(),
        src_addr: req.src_addr.map(|a| a.to_string()),
        service: req.service.clone(),
        port: req.port,
        result: "denied".into(),
        reason: String::new(),
        rules: Vec::new(),
        agreement: None,
        bytes_up: 0,
        bytes_down: 0,
        peer_edge: Some(peer.edge.clone()),
        transport: Some(transport.as_str().into()),
        ingress: None,
        closed: None,
    };
    let span = tracing::info_span!("flow", role = "home", flow_id = %record.flow_id, peer = %peer, service = %req.service, port = req.port);
    authorise(&ctx, peer, stream, &req, initial, &node, record)
        .instrument(span)
        .await;
}

/// The rest of [`serve`], in the flow's span: decide, connect, relay, audit.
async fn authorise(
    ctx: &Arc<Ctx>,
    peer: &Arc<Peer>,
    mut stream: FlowStream,
    req: &FlowRequest,
    initial: Vec<u8>,
    node: &Node,
    mut record: FlowRecord,
) {
    let deny = |record: &mut FlowRecord, reason: &str, rules: Vec<String>| {
        ctx.record_denied(record, reason, rules);
    };
    // No flow starts that this edge could not audit (its log is out of
    // reach and its backlog full); nor is its refusal filed.
    if !ctx.audit.accepting() {
        let _ = answer(
            &mut stream,
            &FlowAnswer::Denied {
                rule: None,
                reason: crate::audit::UNAVAILABLE.into(),
            },
        )
        .await;
        tracing::warn!("flow refused: this edge's audit log cannot be written");
        deny(&mut record, crate::audit::UNAVAILABLE, Vec::new());
        return;
    }

    let owned = node
        .fed
        .service(&req.service)
        .filter(|s| s.org == *node.org());
    let Some(service) = owned else {
        let _ = answer(
            &mut stream,
            &FlowAnswer::Denied {
                rule: None,
                reason: "not-owner".into(),
            },
        )
        .await;
        deny(&mut record, "not-owner", Vec::new());
        return;
    };
    let decision = node.policies.decide(
        &Flow {
            src_org: &peer.org,
            src_network: req.src_network.as_deref(),
            src_addr: req.src_addr,
            service: &req.service,
            port: req.port,
        },
        now(),
    );
    record.agreement = decision.agreement.as_ref().map(ToString::to_string);
    let rules: Vec<String> = decision.rules.iter().map(ToString::to_string).collect();
    if !decision.is_allowed() {
        let reason = decision.reason.label();
        let _ = answer(
            &mut stream,
            &FlowAnswer::Denied {
                rule: rules.first().cloned(),
                reason: reason.into(),
            },
        )
        .await;
        tracing::info!(
            reason,
            rule = rules.first().map_or("-", String::as_str),
            "flow denied"
        );
        deny(&mut record, reason, rules);
        return;
    }
    record.rules = rules;
    let Some(_permit) = ctx.admit(Some(&peer.edge)) else {
        let _ = answer(
            &mut stream,
            &FlowAnswer::Denied {
                rule: None,
                reason: "overloaded".into(),
            },
        )
        .await;
        deny(&mut record, "overloaded", Vec::new());
        return;
    };
    let Some(ip) = service.address else {
        let _ = answer(
            &mut stream,
            &FlowAnswer::Denied {
                rule: None,
                reason: "no-address".into(),
            },
        )
        .await;
        deny(&mut record, "no-address", Vec::new());
        return;
    };
    let target = SocketAddr::new(ip, req.port);
    let connecting = tokio::time::Instant::now();
    let mut upstream =
        match tokio::time::timeout(ctx.limits.connect_timeout, TcpStream::connect(target)).await {
            Ok(Ok(s)) => {
                ctx.metrics
                    .histogram(
                        "fedgate_service_connect_seconds",
                        &[("service", &req.service)],
                        crate::metrics::SETUP_BUCKETS,
                    )
                    .observe(connecting.elapsed());
                s
            }
            Ok(Err(e)) => {
                tracing::warn!(service_addr = %target, cause = %e, "cannot reach the service");
                let _ = answer(
                    &mut stream,
                    &FlowAnswer::Denied {
                        rule: None,
                        reason: "upstream-unreachable".into(),
                    },
                )
                .await;
                let rules = std::mem::take(&mut record.rules);
                deny(&mut record, "upstream-unreachable", rules);
                return;
            }
            Err(_) => {
                tracing::warn!(service_addr = %target, "connecting to the service timed out");
                let _ = answer(
                    &mut stream,
                    &FlowAnswer::Denied {
                        rule: None,
                        reason: "upstream-timeout".into(),
                    },
                )
                .await;
                let rules = std::mem::take(&mut record.rules);
                deny(&mut record, "upstream-timeout", rules);
                return;
            }
        };
    let _ = upstream.set_nodelay(true);
    if answer(&mut stream, &FlowAnswer::Accepted).await.is_err() {
        return;
    }
    let up = initial.len() as u64;
    if !initial.is_empty() && upstream.write_all(&initial).await.is_err() {
        return;
    }
    let own_connection = record.transport.as_deref() == Some(Transport::Tcp.as_str());
    let guard = enforce::until_flow_refused(
        ctx.clone(),
        peer.clone(),
        enforce::FlowKey {
            src_network: req.src_network.clone(),
            src_addr: req.src_addr,
            service: req.service.clone(),
            port: req.port,
        },
        own_connection,
    );
    let (b, a, ended) =
        relay::relay_flow(&mut upstream, &mut stream, ctx.limits.flow_idle, guard).await;
    match &ended {
        relay::Ended::Idle => {
            tracing::info!(
                idle_secs = ctx.limits.flow_idle.as_secs(),
                "flow closed: idle"
            );
            record.closed = Some("idle".into());
        }
        relay::Ended::Stopped(reason) => {
            tracing::info!(%reason, "flow closed: refused now");
            record.closed = Some(reason.clone());
        }
        _ => {}
    }
    ctx.record_allowed(&mut record, up + a, b);
}
