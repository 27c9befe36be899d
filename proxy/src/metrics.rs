//! Counters, gauges and histograms, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    gauges: Mutex<BTreeMap<(&'static str, String), f64>>,
    /// Counters on hot paths (a DNS query): a handle is taken once and
    /// incremented without a lock.
    handles: Mutex<BTreeMap<(&'static str, String), Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<(&'static str, String), Histogram>>,
}

/// Bucket bounds (seconds) of `fedgate_flow_setup_seconds` and
/// `fedgate_service_connect_seconds`: from a flow on loopback (under a
/// millisecond) to a connect timeout.
pub const SETUP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

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
        "Whether the peer is reached: for quic, 1 while a QUIC connection is up; for tcp, 1 if the last TLS-over-TCP connection to it succeeded, 0 if it failed.",
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
        "fedgate_control_admin_audit_went_back_total",
        "counter",
        "Heads of a control-plane replica's admin audit log, as told to this edge, that went back: the log of changes was cut, replaced or started anew.",
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
        "fedgate_certificate_expiry_timestamp_seconds",
        "gauge",
        "When the certificate this edge presents expires (Unix time, seconds): alert on it before a renewal is due.",
    ),
    (
        "fedgate_certificate_reloads_total",
        "counter",
        "Renewed certificates found in --cert/--key, by result (applied; refused: the one in use stays).",
    ),
    (
        "fedgate_quic_path_lost_total",
        "counter",
        "QUIC connections to a peer closed because nothing came back for a flow (UDP blocked under a link that was up); new flows go over TLS on TCP while QUIC is retried.",
    ),
    (
        "fedgate_audit_backlog_records",
        "gauge",
        "Audit records not yet on file: above 0 for long, the audit log cannot be written (see /readyz); past --audit-backlog new flows are refused.",
    ),
    (
        "fedgate_audit_write_errors_total",
        "counter",
        "Writes of the audit log that failed (a full disk, an I/O error); the records are kept and written when it can be.",
    ),
    (
        "fedgate_audit_head_seq",
        "gauge",
        "The audit log's last record on file and flushed to the disk: the head the edge reports to the control plane, which keeps it as an anchor of the log.",
    ),
    (
        "fedgate_snapshot_version",
        "gauge",
        "Version of the snapshot in force.",
    ),
    (
        "fedgate_control_connections_total",
        "counter",
        "Mutual-TLS connections opened to the control plane (polls and reports share one while it lasts).",
    ),
    (
        "fedgate_control_requests_total",
        "counter",
        "Requests made to the control plane (long polls and reports).",
    ),
    (
        "fedgate_flow_setup_seconds",
        "histogram",
        "Time from a client's flow at the visited edge to the home edge's answer (accepted or refused), by peer and transport.",
    ),
    (
        "fedgate_service_connect_seconds",
        "histogram",
        "Time the home edge took to connect to one of its services, by service (connections made).",
    ),
];

/// `{a="x",b="y"}` from label pairs, values escaped.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    // One allocation: this runs for every counter a flow touches.
    let len = pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum::<usize>();
    let mut out = String::with_capacity(len + 2);
    out.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
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

    /// A histogram with `bounds` (seconds, ascending), observed without a
    /// lock ([`Histogram::observe`]).
    pub fn histogram(
        &self,
        name: &'static str,
        pairs: &[(&str, &str)],
        bounds: &'static [f64],
    ) -> Histogram {
        let mut h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        h.entry((name, labels(pairs)))
            .or_insert_with(|| Histogram::new(bounds))
            .clone()
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
        let histograms = self
            .histograms
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
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
            for ((n, l), h) in &histograms {
                if n == name {
                    h.render(&mut out, n, l);
                }
            }
        }
        out
    }
}

/// A histogram from [`Metrics::histogram`]: a count per bucket, the sum.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<Cells>);

#[derive(Debug)]
struct Cells {
    bounds: &'static [f64],
    /// One per bound, then the overflow (`+Inf`); not cumulative.
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self(Arc::new(Cells {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .0
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.0.bounds.len());
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// `NAME_bucket{..,le="B"}` (cumulative), `NAME_sum`, `NAME_count`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let with_le = |le: &str| match labels.strip_suffix('}') {
            Some(inner) => format!("{inner},le=\"{le}\"}}"),
            None => format!("{{le=\"{le}\"}}"),
        };
        let mut total = 0u64;
        for (i, count) in self.0.counts.iter().enumerate() {
            total += count.load(Ordering::Relaxed);
            let le = self
                .0
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            let _ = writeln!(out, "{name}_bucket{} {total}", with_le(&le));
        }
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{labels} {sum}");
        let _ = writeln!(out, "{name}_count{labels} {total}");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Label values are escaped as the Prometheus text format asks:
    /// backslash, double quote and line feed.
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[]), "");
        assert_eq!(labels(&[("role", "home")]), r#"{role="home"}"#);
        assert_eq!(
            labels(&[("reason", "a\\b \"c\"\nd"), ("peer", "wmcc/edge")]),
            r#"{reason="a\\b \"c\"\nd",peer="wmcc/edge"}"#
        );
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let m = Metrics::default();
        let h = m.histogram(
            "fedgate_flow_setup_seconds",
            &[("peer", "home/edge"), ("transport", "quic")],
            &[0.001, 0.01],
        );
        h.observe(Duration::from_micros(400));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(20));
        let text = m.render();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("fedgate_flow_setup_seconds"))
            .collect();
        assert_eq!(
            lines,
            [
                "fedgate_flow_setup_seconds_bucket{peer=\"home/edge\",transport=\"quic\",le=\"0.001\"} 1",
                "fedgate_flow_setup_seconds_bucket{peer=\"home/edge\",transport=\"quic\",le=\"0.01\"} 2",
                "fedgate_flow_setup_seconds_bucket{peer=\"home/edge\",transport=\"quic\",le=\"+Inf\"} 3",
                "fedgate_flow_setup_seconds_sum{peer=\"home/edge\",transport=\"quic\"} 0.0254",
                "fedgate_flow_setup_seconds_count{peer=\"home/edge\",transport=\"quic\"} 3",
            ]
        );
        assert!(text.contains("# TYPE fedgate_flow_setup_seconds histogram"));
        // The same name and labels: the same histogram.
        m.histogram(
            "fedgate_flow_setup_seconds",
            &[("peer", "home/edge"), ("transport", "quic")],
            &[0.001, 0.01],
        )
        .observe(Duration::from_micros(1));
        assert!(
            m.render().contains(
                "fedgate_flow_setup_seconds_count{peer=\"home/edge\",transport=\"quic\"} 4"
            )
        );
    }
}
