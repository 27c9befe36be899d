//! A replica's monitoring listener (`fedgate-control run --metrics ADDR`):
//! `/metrics` in the Prometheus text format, `/healthz`, and `/readyz`
//! (503, with the reason, while the store cannot be read, no version is
//! published, or the admin audit log cannot be written). Plain HTTP, like
//! the edge's `--admin`: it tells what a monitoring system needs and
//! changes nothing, so bind it to the host's monitoring network.
//!
//! Most figures are read at scrape time from the replica's state (the
//! store's head, the version published, each edge's last report); the
//! counters of changes, publications and audit logs going back are kept in
//! [`Stats`]. An edge reports to the replica it polls, so with several
//! replicas an edge's figures are on one of them: take the newest across
//! replicas (`max by (edge)`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::server::App;

/// Counters a scrape cannot read from the state.
#[derive(Default)]
pub struct Stats {
    /// By (action, result): `accepted`, or the refusal (`forbidden`,
    /// `invalid`, `conflict`, `audit-unavailable`).
    changes: Mutex<BTreeMap<(String, String), u64>>,
    publications: Mutex<Publications>,
    /// By edge: reported audit heads that went back.
    went_back: Mutex<BTreeMap<String, u64>>,
}

#[derive(Default)]
struct Publications {
    published: u64,
    failed: u64,
    /// Time spent cutting and signing the versions published.
    seconds: f64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Stats {
    pub fn change(&self, action: &str, result: &str) {
        *lock(&self.changes)
            .entry((action.to_owned(), result.to_owned()))
            .or_default() += 1;
    }

    pub fn published(&self, seconds: f64) {
        let mut p = lock(&self.publications);
        p.published += 1;
        p.seconds += seconds;
    }

    pub fn publication_failed(&self) {
        lock(&self.publications).failed += 1;
    }

    pub fn went_back(&self, edge: &str) {
        *lock(&self.went_back).entry(edge.to_owned()).or_default() += 1;
    }
}

/// Bind `addr` and serve until `shutdown`.
pub async fn start(
    app: Arc<App>,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    tracing::info!(kind = "metrics", addr = %listener.local_addr()?, "listening");
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(app);
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(cause = %e, "metrics listener failed");
        }
    }))
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&app).await,
    )
}

async fn ready(State(app): State<Arc<App>>) -> impl IntoResponse {
    let why = match app.store.head().await {
        Err(e) => Some(format!("the store cannot be read: {e}")),
        Ok(_) if app.published().version == 0 => Some("no version published yet".to_owned()),
        Ok(_) => app.audit_trouble(),
    };
    match why {
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        None => (StatusCode::OK, "ready\n".to_owned()),
    }
}

/// The text format's writer: `# HELP` and `# TYPE` once per family, then
/// its samples.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn seconds_of(time: &str) -> Option<f64> {
    time.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond() as f64 / 1e3)
}

/// Every figure of this replica, now.
pub async fn render(app: &App) -> String {
    let mut t = Text(String::new());
    let head = app.store.head().await;
    t.family(
        "fedgate_control_store_up",
        "gauge",
        "1 if the store (embedded or etcd) answered this scrape, 0 if not.",
    );
    t.sample(
        "fedgate_control_store_up",
        &[],
        f64::from(u8::from(head.is_ok())),
    );
    if let Ok(head) = head {
        t.family(
            "fedgate_control_head_version",
            "gauge",
            "The newest version committed to the store.",
        );
        t.sample("fedgate_control_head_version", &[], head as f64);
    }
    let published = app.published();
    t.family(
        "fedgate_control_published_version",
        "gauge",
        "The version this replica serves to the edges (0: none yet).",
    );
    t.sample(
        "fedgate_control_published_version",
        &[],
        published.version as f64,
    );
    t.family(
        "fedgate_control_edges",
        "gauge",
        "Edges in the version published.",
    );
    t.sample(
        "fedgate_control_edges",
        &[],
        published.snapshots.len() as f64,
    );
    {
        let p = lock(&app.stats.publications);
        t.family(
            "fedgate_control_publications_total",
            "counter",
            "Versions cut and signed for the edges, by result.",
        );
        t.sample(
            "fedgate_control_publications_total",
            &[("result", "published")],
            p.published as f64,
        );
        t.sample(
            "fedgate_control_publications_total",
            &[("result", "failed")],
            p.failed as f64,
        );
        t.family(
            "fedgate_control_publish_seconds_total",
            "counter",
            "Time spent cutting and signing the versions published.",
        );
        t.sample("fedgate_control_publish_seconds_total", &[], p.seconds);
    }
    t.family(
        "fedgate_control_changes_total",
        "counter",
        "Applies and rollbacks asked of this replica, by action and result (accepted, or why refused).",
    );
    for ((action, result), n) in lock(&app.stats.changes).iter() {
        t.sample(
            "fedgate_control_changes_total",
            &[("action", action), ("result", result)],
            *n as f64,
        );
    }
    t.family(
        "fedgate_control_admin_audit_backlog_records",
        "gauge",
        "Admin audit records kept in memory because the log cannot be written; changes are refused while above 0.",
    );
    t.sample(
        "fedgate_control_admin_audit_backlog_records",
        &[],
        app.audit_backlog() as f64,
    );
    t.family(
        "fedgate_control_certificate_expiry_timestamp_seconds",
        "gauge",
        "When this replica's certificate expires (Unix time).",
    );
    t.sample(
        "fedgate_control_certificate_expiry_timestamp_seconds",
        &[],
        app.certificate_not_after() as f64,
    );
    edges(&mut t, app);
    t.0
}

/// What each edge told this replica in its last report.
fn edges(t: &mut Text, app: &App) {
    let reports = app.reports();
    t.family(
        "fedgate_control_edge_version",
        "gauge",
        "The snapshot version the edge last reported running.",
    );
    for (edge, r) in &reports {
        t.sample(
            "fedgate_control_edge_version",
            &[("edge", edge)],
            r.version as f64,
        );
    }
    t.family(
        "fedgate_control_edge_report_timestamp_seconds",
        "gauge",
        "When the edge last reported (Unix time); an edge reports after every poll, at least every --long-poll-secs.",
    );
    for (edge, r) in &reports {
        if let Some(s) = seconds_of(&r.reported_at) {
            t.sample(
                "fedgate_control_edge_report_timestamp_seconds",
                &[("edge", edge)],
                s,
            );
        }
    }
    t.family(
        "fedgate_control_edge_audit_head_seq",
        "gauge",
        "The last record of the edge's audit log on its disk, as reported.",
    );
    for (edge, r) in &reports {
        if let Some(a) = &r.audit {
            t.sample(
                "fedgate_control_edge_audit_head_seq",
                &[("edge", edge)],
                a.seq as f64,
            );
        }
    }
    t.family(
        "fedgate_control_edge_links",
        "gauge",
        "The edge's links to its peers by transport (quic, tcp: QUIC failed and flows go over TLS on TCP, down), as reported.",
    );
    for (edge, r) in &reports {
        let mut by: BTreeMap<&str, u64> = ["quic", "tcp", "down"].map(|s| (s, 0)).into();
        for link in &r.links {
            if let Some(n) = link["transport"].as_str().and_then(|s| by.get_mut(s)) {
                *n += 1;
            }
        }
        for (transport, n) in by {
            t.sample(
                "fedgate_control_edge_links",
                &[("edge", edge), ("transport", transport)],
                n as f64,
            );
        }
    }
    t.family(
        "fedgate_control_edge_audit_went_back_total",
        "counter",
        "Reported audit log heads that went back (logged as `edge audit log went back`): a log replaced, cut, or archived and started anew.",
    );
    for (edge, n) in lock(&app.stats.went_back).iter() {
        t.sample(
            "fedgate_control_edge_audit_went_back_total",
            &[("edge", edge)],
            *n as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut t = Text(String::new());
        t.sample("m", &[("edge", "a\"b\\c\nd"), ("x", "y")], 1.5);
        assert_eq!(t.0, "m{edge=\"a\\\"b\\\\c\\nd\",x=\"y\"} 1.5\n");
    }
}
