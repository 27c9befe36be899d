//! The local admin listener: `/metrics` (Prometheus text), `/healthz`,
//! `/readyz` (503 while draining).

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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
}

async fn ready(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    if *ctx.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
