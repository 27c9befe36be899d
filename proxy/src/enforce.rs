//! Live enforcement of a new snapshot on what is already running
//! (ARCHITECTURE.md, static stability, and the control-plane issue):
//! - a peer whose certificate the new snapshot revokes, or which is no longer
//!   an edge of the federation, loses its connections at once;
//! - a flow the new policy no longer allows is closed after the configured
//!   grace ([`crate::Limits::deny_grace`]), unless a later snapshot allows it
//!   again within it;
//! - a flow that stays allowed is left alone.

use std::net::IpAddr;
use std::sync::Arc;

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

/// Resolves, with the reason, once a new node refuses `peer`.
pub async fn until_peer_refused(ctx: &Ctx, peer: &Peer) -> String {
    let mut nodes = ctx.nodes();
    loop {
        if let Some(reason) = peer_refused(&nodes.borrow_and_update(), peer) {
            return reason.to_owned();
        }
        if nodes.changed().await.is_err() {
            return std::future::pending().await;
        }
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
/// for a refused peer, after the grace for a flow no longer allowed.
pub async fn until_flow_refused(ctx: Arc<Ctx>, peer: Arc<Peer>, flow: FlowKey) -> String {
    let mut nodes = ctx.nodes();
    nodes.borrow_and_update();
    loop {
        if nodes.changed().await.is_err() {
            return std::future::pending().await;
        }
        let node = nodes.borrow_and_update().clone();
        let Err(reason) = still_allowed(&node, &peer, &flow) else {
            continue;
        };
        if peer_refused(&node, &peer).is_some() {
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
                    match still_allowed(&node, &peer, &flow) {
                        Ok(()) => break,
                        Err(r) if peer_refused(&node, &peer).is_some() => return r,
                        Err(_) => {}
                    }
                }
            }
        }
    }
}
