//! The control plane's admin audit log anchored at the edges: each replica
//! answers an edge's report with its log's head, and the edge keeps it
//! (`--control-anchors`, by default beside its cache), off the control
//! plane's host and out of the federation operator's reach. With a real
//! control plane, two real edges following it and `fedctl apply`:
//!
//! - both edges anchor the head after an accepted and a forbidden change;
//! - `fedgate-edge audit verify --anchors FILE --anchors-of control/c1`
//!   proves the log with either edge's anchors;
//! - the log cut at its end, or written anew, verifies alone and fails
//!   with the anchors, saying which;
//! - a control plane restarted on a cut log: the edges log that its log
//!   went back, count it in their metrics, and anchor the new head.

mod kit;

use std::path::{Path, PathBuf};
use std::time::Duration;

use federation::chain::{GENESIS, link};
use kit::*;
use tests::{Proc, World};
use tokio::time::Instant;

fn anchors_file(w: &World, name: &str) -> PathBuf {
    w.path(&format!("{name}.cache.json.anchors"))
}

/// The `seq`s of control/c1's anchors in `file`.
fn anchored(file: &Path) -> Vec<u64> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|a| a["edge"] == "control/c1")
        .filter_map(|a| a["seq"].as_u64())
        .collect()
}

/// Wait (at most 30 s) until `file` holds an anchor of record `seq`.
fn wait_anchored(file: &Path, seq: u64) {
    let start = Instant::now();
    while !anchored(file).contains(&seq) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no anchor of record {seq} in {} in 30 s: {:?}",
            file.display(),
            anchored(file)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `audit verify --anchors ANCHORS --anchors-of OWNER LOG`: success, and
/// what it said.
fn verify_of(log: &Path, anchors: &Path, owner: &str) -> (bool, String) {
    let edge = edge_bin();
    let (ok, out, err) = tests::run(
        edge.to_str().expect("path"),
        &[
            "audit",
            "verify",
            "--anchors",
            anchors.to_str().expect("path"),
            "--anchors-of",
            owner,
            log.to_str().expect("path"),
        ],
    );
    (ok, format!("{out}{err}"))
}

fn verify(log: &Path, anchors: &Path) -> (bool, String) {
    verify_of(log, anchors, "control/c1")
}

fn verify_alone(log: &Path) -> bool {
    let edge = edge_bin();
    tests::run(
        edge.to_str().expect("path"),
        &["audit", "verify", log.to_str().expect("path")],
    )
    .0
}

#[test]
fn edges_anchor_the_control_planes_admin_audit_log() {
    let w = World::new();
    let doc = document(&w, "", false);
    let args = w.control_args(&doc, control_addr(&w));
    let mut control = Proc::start("control", Path::new(CONTROL), &args, w.path("control.log"));
    control.wait_for("version published", Duration::from_secs(20));
    let mut edges = Vec::new();
    for (name, host) in [("home", 2), ("away", 1)] {
        let (c, k, _) = w.edge_cert(name, "edge", &format!("{name}-edge"), None, None);
        let extra = [
            "--control-anchor-secs".to_string(),
            "0".into(),
            "--admin".into(),
            addr(&w, host, 9100).to_string(),
        ];
        let mut p = w.spawn_edge_following(
            &edge_bin(),
            name,
            &format!("{name}/edge"),
            control_addr(&w),
            &c,
            &k,
            &extra,
        );
        p.wait_for("ready", Duration::from_secs(20));
        edges.push(p);
    }

    // Record 1: home's admin opens secret; record 2: away's may not.
    edit(&w, &document(&w, OPEN_SECRET, false));
    let home = w.admin(Some("home"));
    let away = w.admin(Some("away"));
    let run = fedctl(&w, &away, &["apply", "-f", "fed", "--no-wait"]);
    assert_ne!(run.code, 0, "{run:?}");
    let run = fedctl(&w, &home, &["apply", "-f", "fed", "--no-wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    for name in ["home", "away"] {
        wait_anchored(&anchors_file(&w, name), 2);
    }

    let log = w.path("control-data/admin-audit.jsonl");
    for name in ["home", "away"] {
        let (ok, out) = verify(&log, &anchors_file(&w, name));
        assert!(ok && out.contains("anchors: "), "{name}'s anchors:\n{out}");
    }
    let (ok, out) = verify_of(&log, &anchors_file(&w, "home"), "control/c9");
    assert!(
        !ok && out.contains("holds no anchor of control/c9"),
        "{out}"
    );

    // The log cut at its end: whole alone, short of the anchors.
    assert!(control.terminate(Duration::from_secs(20)).is_some());
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let cut = w.path("cut.jsonl");
    std::fs::write(&cut, format!("{}\n", lines[0])).expect("write");
    assert!(verify_alone(&cut));
    let (ok, out) = verify(&cut, &anchors_file(&w, "home"));
    assert!(
        !ok && out
            .contains("the log ends at record 1, but home/edge anchored record 2 of control/c1")
            && out.contains("records were removed from its end"),
        "{out}"
    );

    // Written anew: two records with their chain, other content.
    let first = format!(r#"{{"seq":1,"prev":"{GENESIS}","result":"accepted"}}"#);
    let second = format!(
        r#"{{"seq":2,"prev":"{}","result":"accepted"}}"#,
        link(&first)
    );
    let forged = w.path("forged.jsonl");
    std::fs::write(&forged, format!("{first}\n{second}\n")).expect("write");
    assert!(verify_alone(&forged));
    let (ok, out) = verify(&forged, &anchors_file(&w, "away"));
    assert!(
        !ok && out.contains("is not the record away/edge anchored for control/c1")
            && out.contains("the log was rewritten"),
        "{out}"
    );

    // The control plane restarted on the cut log: its head went back, and
    // each edge says so and anchors it.
    std::fs::write(&log, format!("{}\n", lines[0])).expect("cut the log");
    let mut control = Proc::start("control", Path::new(CONTROL), &args, w.path("control2.log"));
    control.wait_for("version published", Duration::from_secs(20));
    for edge in &mut edges {
        edge.wait_for(
            "control plane's admin audit log went back",
            Duration::from_secs(60),
        );
        let line = edge
            .log_text()
            .lines()
            .find(|l| l.contains("admin audit log went back"))
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(
            line.contains("held_seq=2") && line.contains("seq=1"),
            "{line}"
        );
    }
    for (name, host) in [("home", 2), ("away", 1)] {
        assert_eq!(anchored(&anchors_file(&w, name)).last(), Some(&1));
        // And counted, for monitoring.
        let (ok, metrics, err) = tests::run(
            "curl",
            &[
                "--silent",
                "--show-error",
                "--max-time",
                "10",
                &format!("http://{}/metrics", addr(&w, host, 9100)),
            ],
        );
        assert!(ok, "{err}");
        assert!(
            metrics
                .lines()
                .any(|l| l == "fedgate_control_admin_audit_went_back_total{replica=\"c1\"} 1"),
            "{name}: {metrics}"
        );
    }
}
