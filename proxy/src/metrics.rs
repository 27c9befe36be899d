//! Counters and gauges, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    gauges: Mutex<BTreeMap<(&'static str, String), f64>>,
    /// Counters on hot paths (a DNS query): a handle is taken once and
    /// incremented without a lock.
    handles: Mutex<BTreeMap<(&'static str, String), Arc<AtomicU64>>>,
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "fedgate_flows_total",
        "counter",
        "Flows by role (visited, home) and result.",
    ),
    (
        "fedgate_bytes_total",
        "counter",
        "Bytes relayed by direction (up: client to service).",
    ),
    (
        "fedgate_denials_total",
        "counter",
        "Denied flows by role and reason.",
    ),
    (
        "fedgate_handshake_failures_total",
        "counter",
        "Overlay handshakes refused or failed, by reason.",
    ),
    (
        "fedgate_peer_link",
        "gauge",
        "1 when a QUIC connection to the peer is up, by peer and transport.",
    ),
    (
        "fedgate_peer_rtt_seconds",
        "gauge",
        "Smoothed RTT of the QUIC connection to the peer.",
    ),
    ("fedgate_active_flows", "gauge", "Flows being relayed now."),
    (
        "fedgate_dns_queries_total",
        "counter",
        "DNS queries answered, by kind (federation, internal, forwarded, refused, transfer, other) and response code.",
    ),
    (
        "fedgate_dns_rate_limited_total",
        "counter",
        "DNS queries dropped by the per-client rate limit.",
    ),
    (
        "fedgate_dns_upstream_failures_total",
        "counter",
        "Forwarded DNS queries an upstream resolver did not answer usably, by upstream.",
    ),
    (
        "fedgate_snapshot_reloads_total",
        "counter",
        "Snapshot files read after a change, by result (applied, refused) and reason.",
    ),
    (
        "fedgate_snapshot_refused_total",
        "counter",
        "Snapshots from the control plane refused (signature, succession or content); the running one stays.",
    ),
    (
        "fedgate_peer_closed_total",
        "counter",
        "Peer connections closed because a new snapshot refuses the peer, by reason (revoked, unknown-edge).",
    ),
    (
        "fedgate_snapshot_version",
        "gauge",
        "Version of the snapshot in force.",
    ),
];

/// `{a="x",b="y"}` from label pairs, values escaped.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    pub fn add(&self, name: &'static str, pairs: &[(&str, &str)], n: u64) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((name, labels(pairs))).or_default() += n;
        }
    }

    /// A counter to increment without a lock (`Counter::inc`).
    pub fn counter(&self, name: &'static str, pairs: &[(&str, &str)]) -> Counter {
        let mut h = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        Counter(h.entry((name, labels(pairs))).or_default().clone())
    }

    pub fn set(&self, name: &'static str, pairs: &[(&str, &str)], v: f64) {
        if let Ok(mut g) = self.gauges.lock() {
            g.insert((name, labels(pairs)), v);
        }
    }

    pub fn gauge_add(&self, name: &'static str, pairs: &[(&str, &str)], delta: f64) {
        if let Ok(mut g) = self.gauges.lock() {
            *g.entry((name, labels(pairs))).or_default() += delta;
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counters = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        if let Ok(handles) = self.handles.lock() {
            for (k, v) in handles.iter() {
                *counters.entry(k.clone()).or_default() += v.load(Ordering::Relaxed);
            }
        }
        let gauges = self.gauges.lock().map(|g| g.clone()).unwrap_or_default();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, l), v) in &counters {
                if n == name {
                    let _ = writeln!(out, "{n}{l} {v}");
                }
            }
            for ((n, l), v) in &gauges {
                if n == name {
                    let _ = writeln!(out, "{n}{l} {v}");
                }
            }
        }
        out
    }
}

/// A lock-free counter from [`Metrics::counter`].
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}
