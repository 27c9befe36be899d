//! Anchors of the audit log: each edge reports its log's head to the
//! control plane, which keeps it. A hash chain proves a log whole, but
//! whoever can write the file can cut its last records off, or write a
//! new chain: both still verify alone. With the anchors (`fedctl
//! audit-anchors`), `fedgate-edge audit verify --anchors` shows both; the
//! control plane logs a log that went back as soon as the edge reports it;
//! and an organisation's admin gets its own edges' anchors only.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use tests::{Proc, World};

fn fedctl() -> PathBuf {
    Path::new(EDGE).with_file_name("fedctl")
}

/// `fedctl audit-anchors --edge EDGE` as `who`: (exit code, stdout, stderr).
fn anchors(w: &World, who: &(PathBuf, PathBuf), edge: &str) -> (Option<i32>, String, String) {
    anchors_with(w, who, edge, &[])
}

/// The same with more flags (`--since TIME`).
fn anchors_with(
    w: &World,
    who: &(PathBuf, PathBuf),
    edge: &str,
    more: &[&str],
) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(fedctl())
        .args([
            "audit-anchors",
            "--edge",
            edge,
            "--control",
            &addr(w, 5, 7443).to_string(),
            "--cert",
            &who.0.display().to_string(),
            "--key",
            &who.1.display().to_string(),
            "--ca",
            &w.ca_pem().display().to_string(),
        ])
        .args(more)
        .output()
        .expect("fedctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `fedgate-edge audit verify [--anchors FILE] LOG`: (success, output).
fn verify(log: &Path, anchors: Option<&Path>) -> (bool, String) {
    let mut args = vec!["audit".to_string(), "verify".into()];
    if let Some(a) = anchors {
        args.extend(["--anchors".into(), a.display().to_string()]);
    }
    args.push(log.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = tests::run(EDGE, &refs);
    (ok, out + &err)
}

/// The log's lines written again from record `from` on, its `bytes_up`
/// changed by one, each `prev` made to match: a new chain that verifies.
fn rewritten(lines: &[&str], from: usize) -> String {
    let mut out: Vec<String> = lines[..from - 1].iter().map(|l| (*l).to_owned()).collect();
    let mut prev = federation::chain::link(&out[from - 2]);
    for line in &lines[from - 1..] {
        let v: serde_json::Value = serde_json::from_str(line).expect("record");
        let old_prev = v["prev"].as_str().expect("prev");
        let mut line = line.replacen(old_prev, &prev, 1);
        let up = v["bytes_up"].as_u64().expect("bytes_up");
        line = line.replacen(
            &format!("\"bytes_up\":{up}"),
            &format!("\"bytes_up\":{}", up + 1),
            1,
        );
        prev = federation::chain::link(&line);
        out.push(line);
    }
    out.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchors_show_a_log_cut_short_or_written_anew() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    // Every report anchored (by default at most one per edge every 300 s).
    let mut args = w.control_args(&doc, addr(&w, 5, 7443));
    let metrics = addr(&w, 5, 9190);
    args.extend([
        "--audit-anchor-secs".into(),
        "0".into(),
        "--metrics".into(),
        metrics.to_string(),
    ]);
    let mut control = Proc::start("control", &control_bin(), &args, w.path("control.log"));
    control.wait_for("version published", Duration::from_secs(20));
    let (hc, hk, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let (ac, ak, _) = w.edge_cert("away", "edge", "away-edge", None, None);
    let home_args = vec!["--admin".to_string(), home_admin(&w).to_string()];
    let mut home = start_edge_followed(&w, "home", "home/edge", &hc, &hk, &home_args);
    let _away = start_edge_followed(&w, "away", "away/edge", &ac, &ak, &away_ingress(&w));

    // Six flows, each audited at home.
    for i in 0..6 {
        let msg = format!("flow {i}");
        let back = echo_through(addr(&w, 130, 7007), msg.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, msg.as_bytes());
    }
    let log = w.path("home.audit.jsonl");
    for _ in 0..200 {
        if audit(&w, "home").len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(audit(&w, "home").len(), 6, "home's audit records");

    // The control plane has home's head at record 6 within a poll or two
    // (the edges poll every 5 s here, and report after each).
    let home_admin_id = w.admin(Some("home"));
    let mut listed = String::new();
    for _ in 0..60 {
        let (code, out, err) = anchors(&w, &home_admin_id, "home/edge");
        assert_eq!(code, Some(0), "{err}");
        listed = out;
        if listed.lines().any(|l| l.contains("\"seq\":6,")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let last: serde_json::Value =
        serde_json::from_str(listed.lines().last().expect("an anchor")).expect("JSON line");
    assert_eq!(last["seq"], 6, "{listed}\n{}", control.log_text());
    assert_eq!(last["edge"], "home/edge");
    assert_eq!(last["replica"], CONTROL_NAME);
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(last["hash"], federation::chain::link(lines[5]), "{listed}");
    let anchor_file = w.path("home.anchors.jsonl");
    std::fs::write(&anchor_file, &listed).expect("anchors");

    // The log as written verifies against its anchors.
    let (ok, out) = verify(&log, Some(&anchor_file));
    assert!(
        ok && out.contains("anchors: ") && out.contains(" matched"),
        "{out}"
    );

    // Its last two records cut off: the chain alone verifies; not with the
    // anchors.
    let cut = w.path("cut.audit.jsonl");
    std::fs::write(&cut, lines[..4].join("\n") + "\n").expect("cut");
    let (ok, out) = verify(&cut, None);
    assert!(ok, "a cut log's chain verifies alone: {out}");
    let (ok, out) = verify(&cut, Some(&anchor_file));
    assert!(
        !ok && out.contains("the log ends at record 4, but c1 anchored record 6 of home/edge")
            && out.contains("records were removed from its end"),
        "{out}"
    );

    // Records 3 on written anew, each `prev` made to match: the chain
    // verifies; the anchors show it.
    let anew = w.path("anew.audit.jsonl");
    std::fs::write(&anew, rewritten(&lines, 3)).expect("anew");
    let (ok, out) = verify(&anew, None);
    assert!(ok, "a chain written anew verifies alone: {out}");
    let (ok, out) = verify(&anew, Some(&anchor_file));
    assert!(
        !ok && out.contains("is not the record c1 anchored for home/edge")
            && out.contains("the log was rewritten"),
        "{out}"
    );

    // Away's admin may not read home's anchors; a federation admin may.
    let (code, _, err) = anchors(&w, &w.admin(Some("away")), "home/edge");
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("refused: ")
            && err.contains(
                "the audit anchors of home/edge are for the admins of home and of the federation"
            ),
        "the server's reason, not its JSON: {err}"
    );
    assert!(!err.contains("\"error\""), "{err}");
    let (code, out, err) = anchors(&w, &w.admin(None), "home/edge");
    assert_eq!(
        (code, out.lines().count()),
        (Some(0), listed.lines().count()),
        "{err}"
    );

    // Home's log moved away and the edge restarted: a new chain at record
    // 1, which the control plane logs when the edge reports it.
    assert!(home.terminate(Duration::from_secs(15)).is_some());

    // A report whose head is not a hash is refused with the reason, and
    // its version is kept (home's edge is stopped: nothing reports over it).
    let (status, body) = api(
        &w,
        &(hc.clone(), hk.clone()),
        "POST",
        "/v1/report",
        Some(serde_json::json!({"version": 99, "links": [], "audit": {"seq": 7, "hash": "not-a-hash"}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("audit.hash must be 64 hex digits")),
        "{body}"
    );
    let (status, body) = api(&w, &w.admin(None), "GET", "/v1/status", None).await;
    assert_eq!(status, 200, "{body}");
    let reported = body["edges"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["edge"] == "home/edge"))
        .map(|e| e["version"].clone());
    assert_eq!(reported, Some(serde_json::json!(99)), "{body}");

    std::fs::rename(&log, w.path("home.audit.jsonl.moved")).expect("move");
    let _home = start_edge_followed(&w, "home", "home/edge", &hc, &hk, &home_args);
    let back = echo_through(addr(&w, 130, 7007), b"after the move")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, b"after the move");
    control.wait_for("edge audit log went back", Duration::from_secs(20));
    let went_back = control
        .log_text()
        .lines()
        .find(|l| l.contains("edge audit log went back"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        went_back.contains("edge=\"home/edge\"") || went_back.contains("edge=home/edge"),
        "{went_back}"
    );
    assert!(went_back.contains("held_seq=6"), "{went_back}");
    // Counted for monitoring, once.
    let (ok, scraped, err) = curl(vec![format!("http://{metrics}/metrics")]).await;
    assert!(ok, "{err}");
    assert!(
        scraped
            .lines()
            .any(|l| l == "fedgate_control_edge_audit_went_back_total{edge=\"home/edge\"} 1"),
        "{scraped}"
    );

    // The new chain verifies against the anchors kept since it started
    // (`--since` the anchor that went back), not against the old chain's.
    let all = anchors(&w, &home_admin_id, "home/edge").1;
    let restart: serde_json::Value = all
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("anchor"))
        .find(|a| a["seq"].as_u64().is_some_and(|s| s < 6))
        .expect("the anchor that went back");
    let since = restart["time"].as_str().expect("time");
    let (code, recent, err) = anchors_with(&w, &home_admin_id, "home/edge", &["--since", since]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !recent.is_empty() && !recent.lines().any(|l| l.contains("\"seq\":6,")),
        "{recent}"
    );
    let recent_file = w.path("home.recent.anchors.jsonl");
    std::fs::write(&recent_file, &recent).expect("anchors");
    let all_file = w.path("home.all.anchors.jsonl");
    std::fs::write(&all_file, &all).expect("anchors");
    let (ok, out) = verify(&log, Some(&recent_file));
    assert!(ok, "{out}");
    let (ok, out) = verify(&log, Some(&all_file));
    assert!(!ok, "the old chain's anchors do not fit the new log: {out}");
}
