//! The local admin listener: `/metrics` (Prometheus text), `/healthz`,
//! `/readyz` (503 while draining, or while the audit log cannot be written).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinSet;

use crate::Ctx;

pub async fn start(ctx: Arc<Ctx>, addr: SocketAddr, tasks: &mut JoinSet<()>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for admin on {addr}"))?;
    tracing::info!(kind = "admin", addr = %listener.local_addr()?, "listening");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(ctx);
    tasks.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(cause = %e, "admin listener failed");
        }
    });
    Ok(())
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    ctx.audit.publish(&ctx.metrics);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
}

async fn ready(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    if *ctx.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned())
    } else if let Some(why) = ctx.audit.trouble() {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
    } else {
        (StatusCode::OK, "ready\n".to_owned())
    }
}
