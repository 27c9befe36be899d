//! Live enforcement of a new snapshot on what is already running
//! (ARCHITECTURE.md, static stability, and the control-plane issue):
//! - a peer whose certificate the new snapshot revokes, or which is no longer
//!   an edge of the federation, loses its connections at once;
//! - a flow the new policy no longer allows is closed after the configured
//!   grace ([`crate::Limits::deny_grace`]), unless a later snapshot allows it
//!   again within it;
//! - a flow that stays allowed is left alone.
//!
//! And of the passing of time and of a new CA bundle on peers already
//! connected: a peer loses its connections when its certificate expires, or
//! when the CA certificates this edge trusts no longer include its issuer
//! ([`until_peer_distrusted`]). A link made before either would otherwise
//! live on, on keep-alives, for as long as both edges run.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use federation::Flow;

use crate::node::Node;
use crate::tls::Peer;
use crate::{Ctx, now};

/// Why `peer` may no longer be connected under `node`, if so.
pub fn peer_refused(node: &Node, peer: &Peer) -> Option<&'static str> {
    if node.fed.is_revoked(&peer.cert.serial) {
        Some("revoked")
    } else if node.fed.edge(&peer.edge).is_none() {
        Some("unknown-edge")
    } else {
        None
    }
}

/// Why `peer`'s chain is not trusted now, if so: `expired` (or not yet
/// valid), or `untrusted` (no CA certificate trusted now issued it).
pub fn peer_distrusted(ctx: &Ctx, peer: &Peer) -> Option<&'static str> {
    let at = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(now().as_second()).unwrap_or(0),
    ));
    ctx.credentials.distrusts(&peer.chain, at)
}

/// Resolves, with the reason, once `peer`'s certificate expires or the CA
/// certificates trusted no longer include its issuer ([`peer_distrusted`]).
/// Checked at those two moments only: the handshake checked it before.
pub async fn until_peer_distrusted(ctx: &Ctx, peer: &Peer) -> String {
    let mut trust = ctx.trust_changes();
    // At most an hour asleep: a clock set forward is noticed within it.
    const NAP: Duration = Duration::from_secs(3600);
    loop {
        // A second past the last valid one.
        let left = Duration::try_from(peer.cert.not_after.duration_since(now()))
            .unwrap_or(Duration::ZERO)
            + Duration::from_secs(1);
        tokio::select! {
            changed = trust.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
            () = tokio::time::sleep(left.min(NAP)) => {}
        }
        if let Some(reason) = peer_distrusted(ctx, peer) {
            return reason.to_owned();
        }
    }
}

/// Resolves, with the reason, once a new node refuses `peer`, or it is no
/// longer trusted ([`until_peer_distrusted`]).
pub async fn until_peer_refused(ctx: &Ctx, peer: &Peer) -> String {
    let refused = async {
        let mut nodes = ctx.nodes();
        loop {
            if let Some(reason) = peer_refused(&nodes.borrow_and_update(), peer) {
                return reason.to_owned();
            }
            if nodes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    };
    // Boxed, like the one below: a flow's task holds its guard inline, and
    // this future (a timer and a watch) is only running for some of them.
    tokio::select! {
        reason = refused => reason,
        reason = Box::pin(until_peer_distrusted(ctx, peer)) => reason,
    }
}

/// A flow's particulars, owned, to decide again under each new node.
#[derive(Debug, Clone)]
pub struct FlowKey {
    pub src_network: Option<String>,
    pub src_addr: Option<IpAddr>,
    pub service: String,
    pub port: u16,
}

fn still_allowed(node: &Node, peer: &Peer, flow: &FlowKey) -> Result<(), String> {
    if let Some(reason) = peer_refused(node, peer) {
        return Err(reason.to_owned());
    }
    let decision = node.policies.decide(
        &Flow {
            src_org: &peer.org,
            src_network: flow.src_network.as_deref(),
            src_addr: flow.src_addr,
            service: &flow.service,
            port: flow.port,
        },
        now(),
    );
    if decision.is_allowed() {
        Ok(())
    } else {
        Err(format!("policy:{}", decision.reason.label()))
    }
}

/// Resolves, with the reason, when the home edge must close `flow`: at once
/// for a refused or distrusted peer, after the grace for a flow no longer
/// allowed. A flow on a TLS connection of its own (`own_connection`: TCP)
/// watches its peer's trust itself; the flows on a QUIC connection leave
/// that to the connection's guard, which closes them all at once.
pub async fn until_flow_refused(
    ctx: Arc<Ctx>,
    peer: Arc<Peer>,
    flow: FlowKey,
    own_connection: bool,
) -> String {
    let distrusted = async {
        if own_connection {
            Box::pin(until_peer_distrusted(&ctx, &peer)).await
        } else {
            std::future::pending().await
        }
    };
    tokio::select! {
        reason = until_flow_disallowed(&ctx, &peer, &flow) => reason,
        reason = distrusted => reason,
    }
}

async fn until_flow_disallowed(ctx: &Ctx, peer: &Peer, flow: &FlowKey) -> String {
    let mut nodes = ctx.nodes();
    nodes.borrow_and_update();
    loop {
        if nodes.changed().await.is_err() {
            return std::future::pending().await;
        }
        let node = nodes.borrow_and_update().clone();
        let Err(reason) = still_allowed(&node, peer, flow) else {
            continue;
        };
        if peer_refused(&node, peer).is_some() {
            return reason;
        }
        tracing::info!(%reason, grace_secs = ctx.limits.deny_grace.as_secs(), version = node.version, "flow no longer allowed; closing after the grace");
        // Within the grace, a newer snapshot may allow it again.
        let deadline = tokio::time::Instant::now() + ctx.limits.deny_grace;
        loop {
            match tokio::time::timeout_at(deadline, nodes.changed()).await {
                Err(_) => return reason,
                Ok(Err(_)) => return std::future::pending().await,
                Ok(Ok(())) => {
                    let node = nodes.borrow_and_update().clone();
                    match still_allowed(&node, peer, flow) {
                        Ok(()) => break,
                        Err(r) if peer_refused(&node, peer).is_some() => return r,
                        Err(_) => {}
                    }
                }
            }
        }
    }
}
