//! A replica's monitoring listener (`fedgate-control run --metrics ADDR`),
//! read with curl as a monitoring system would: a real control plane, two
//! real edges following it, `fedctl apply` as two organisations' admins.
//!
//! - `/readyz` says ready once a version is published, `/healthz` ok;
//! - `/metrics` shows the store's head and the version published, the
//!   edges in it, the publications and their time, this replica's
//!   certificate expiry;
//! - each edge's report: the version it runs, when it reported, and once a
//!   flow crossed, its audit log's head and its QUIC link to the peer;
//! - changes by action and result: an accepted apply, a forbidden one;
//!   after the accepted one, the new version published and run by both
//!   edges.

mod kit;

use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

use kit::*;
use tests::{Proc, World};

fn curl(url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(["--write-out", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_owned(), body.trim_end().to_owned())
}

/// The value of the sample `series` (name and labels as written), if any.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Scrape until every series has its value (at most 30 s).
fn wait_for(url: &str, want: &[(&str, f64)]) -> String {
    let start = Instant::now();
    loop {
        let (_, body) = curl(url);
        if want.iter().all(|(s, v)| sample(&body, s) == Some(*v)) {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {want:?} in 30 s:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_replica_shows_its_versions_edges_and_changes_to_monitoring() {
    let w = World::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(tests::echo_origin(addr(&w, 11, 7007)));
    let metrics_addr = addr(&w, 5, 9190);
    let mut args = w.control_args(&document(&w, "", false), control_addr(&w));
    args.extend(["--metrics".into(), metrics_addr.to_string()]);
    let mut control = Proc::start(
        "control",
        std::path::Path::new(CONTROL),
        &args,
        w.path("control.log"),
    );
    control.wait_for("version published", Duration::from_secs(20));
    assert!(
        control
            .log_text()
            .contains(&format!("listening kind=\"metrics\" addr={metrics_addr}")),
        "{}",
        control.log_text()
    );
    let base = format!("http://{metrics_addr}");
    assert_eq!(
        curl(&format!("{base}/healthz")),
        ("200".into(), "ok".into())
    );
    assert_eq!(
        curl(&format!("{base}/readyz")),
        ("200".into(), "ready".into())
    );

    let url = format!("{base}/metrics");
    let (code, m) = curl(&url);
    assert_eq!(code, "200");
    for (series, value) in [
        ("fedgate_control_store_up", 1.0),
        ("fedgate_control_head_version", 1.0),
        ("fedgate_control_published_version", 1.0),
        ("fedgate_control_edges", 2.0),
        (
            "fedgate_control_publications_total{result=\"published\"}",
            1.0,
        ),
        ("fedgate_control_publications_total{result=\"failed\"}", 0.0),
        ("fedgate_control_admin_audit_backlog_records", 0.0),
    ] {
        assert_eq!(sample(&m, series), Some(value), "{series}:\n{m}");
    }
    assert!(
        m.contains("# TYPE fedgate_control_changes_total counter")
            && !m.contains("fedgate_control_changes_total{"),
        "no change asked yet:\n{m}"
    );
    let now = tests::now().as_second() as f64;
    let expiry = sample(&m, "fedgate_control_certificate_expiry_timestamp_seconds")
        .expect("certificate expiry");
    assert!(
        expiry > now,
        "the test certificate is valid: {expiry} <= {now}"
    );
    assert!(
        sample(&m, "fedgate_control_publish_seconds_total").is_some_and(|s| s > 0.0),
        "{m}"
    );

    // The edges report after each poll: their version, audit head, links.
    let _edges = start_edges(&w);
    let m = wait_for(
        &url,
        &[
            ("fedgate_control_edge_version{edge=\"home/edge\"}", 1.0),
            ("fedgate_control_edge_version{edge=\"away/edge\"}", 1.0),
        ],
    );
    for edge in ["home/edge", "away/edge"] {
        let at = sample(
            &m,
            &format!("fedgate_control_edge_report_timestamp_seconds{{edge=\"{edge}\"}}"),
        )
        .expect("report time");
        assert!(
            (at - now).abs() < 120.0,
            "{edge} reported at {at}, now {now}"
        );
    }
    assert!(
        !m.contains("fedgate_control_edge_audit_head_seq{"),
        "no audit record yet, so no head:\n{m}"
    );
    // A flow through the overlay brings away's QUIC link to home up, and
    // files a record at each edge; the next reports show both.
    tunnel(&w, "echo.home.example:7007").expect("echo open");
    wait_for(
        &url,
        &[
            (
                "fedgate_control_edge_audit_head_seq{edge=\"home/edge\"}",
                1.0,
            ),
            (
                "fedgate_control_edge_audit_head_seq{edge=\"away/edge\"}",
                1.0,
            ),
            (
                "fedgate_control_edge_links{edge=\"away/edge\",transport=\"quic\"}",
                1.0,
            ),
            (
                "fedgate_control_edge_links{edge=\"away/edge\",transport=\"down\"}",
                0.0,
            ),
        ],
    );

    // Away's admin may not open home's service; home's may.
    edit(&w, &document(&w, OPEN_SECRET, false));
    let away = w.admin(Some("away"));
    let refused = fedctl(&w, &away, &["apply", "-f", "fed", "--no-wait"]);
    assert_ne!(refused.code, 0, "{refused:?}");
    let home = w.admin(Some("home"));
    let applied = fedctl(&w, &home, &["apply", "-f", "fed", "--no-wait"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    let m = wait_for(
        &url,
        &[
            (
                "fedgate_control_changes_total{action=\"apply\",result=\"forbidden\"}",
                1.0,
            ),
            (
                "fedgate_control_changes_total{action=\"apply\",result=\"accepted\"}",
                1.0,
            ),
            ("fedgate_control_head_version", 2.0),
            ("fedgate_control_published_version", 2.0),
            (
                "fedgate_control_publications_total{result=\"published\"}",
                2.0,
            ),
            ("fedgate_control_edge_version{edge=\"home/edge\"}", 2.0),
            ("fedgate_control_edge_version{edge=\"away/edge\"}", 2.0),
        ],
    );
    assert!(
        !m.contains("fedgate_control_edge_audit_went_back_total{"),
        "no audit log went back:\n{m}"
    );
}
