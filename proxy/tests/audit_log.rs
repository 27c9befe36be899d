//! An edge restarted on its audit log, as after a crash: the real
//! `fedgate-edge` processes, flows through a service VIP, and
//! `fedgate-edge audit verify`:
//! - the chain goes on across a restart;
//! - a record cut short (the edge stopped while writing it: power cut, full
//!   disk) fails `audit verify` with the line named; the edge, started on
//!   that log, sets the cut bytes aside in `FILE.cut-short-SECONDS`, says so,
//!   and goes on from the last whole record, so the log verifies again and
//!   nothing written is lost;
//! - a log altered before its end stops the edge (exit status 64) with the
//!   reason, and the file is left as it was.

mod common;

use std::time::Duration;

use common::*;
use tests::World;

/// `fedgate-edge audit verify FILE`: (success, stdout and stderr).
fn verify(file: &std::path::Path) -> (bool, String) {
    verify_files(&[file.to_path_buf()], &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_restarted_on_its_audit_log_goes_on_and_sets_a_record_cut_short_aside() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let mut pair = start_pair(&w, &doc, &doc, &[]);
    let _ = echo_record(&w, "first").await;
    let status = pair.away.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "away stopped: {status:?}"
    );
    let log = w.path("away.audit.jsonl");
    let (ok, out) = verify(&log);
    assert!(ok && out.contains("ok: 1 records"), "{out}");

    // The edge stopped in the middle of the next record: its `seq`, the
    // hash of the line before, and the start of its flow id.
    let whole = std::fs::read(&log).expect("audit log");
    let first = std::str::from_utf8(&whole).expect("UTF-8");
    let prev = federation::chain::link(first.trim_end_matches('\n'));
    let torn = format!(r#"{{"seq":2,"prev":"{prev}","flow_id":"00"#);
    let torn = torn.as_bytes();
    let mut cut = whole.clone();
    cut.extend_from_slice(torn);
    std::fs::write(&log, &cut).expect("write the cut log");
    let (ok, out) = verify(&log);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "line 2 is cut short ({} bytes and no newline",
            torn.len()
        )),
        "{out}"
    );

    // Started on it, the edge sets the cut bytes aside and goes on.
    let away_again = || spawn_pair_edge(&w, "away", &[]);
    let mut away = away_again();
    away.wait_for("ready", Duration::from_secs(20));
    assert!(
        away.log_text().contains(
            "audit log ended in a record cut short; set it aside and continued the chain"
        ),
        "{}",
        away.log_text()
    );
    let second = echo_record(&w, "second!").await;
    assert_eq!(second["seq"], 2, "{second:#}");
    let (ok, out) = verify(&log);
    assert!(ok && out.contains("ok: 2 records"), "{out}");
    assert_eq!(
        &std::fs::read(&log).expect("audit log")[..whole.len()],
        &whole[..],
        "the whole records are as they were"
    );
    let aside: Vec<_> = std::fs::read_dir(log.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains("away.audit.jsonl.cut-short-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).expect("set aside"), torn);
    drop(away);

    // A record altered before the end: the edge does not start on it.
    let text = std::fs::read_to_string(&log).expect("audit log");
    let altered = text.replacen("\"bytes_up\":5", "\"bytes_up\":6", 1);
    assert_ne!(altered, text);
    std::fs::write(&log, &altered).expect("alter the log");
    let mut refused = away_again();
    let status = refused.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(64),
        "{}",
        refused.log_text()
    );
    let said = refused.log_text();
    assert!(
        said.contains("does not verify; move it aside") && said.contains("line 2"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).expect("audit log"),
        altered,
        "a refused log is left as it was"
    );
}

/// Every file of `name`'s audit log, oldest first: its rotated files
/// (`FILE.FIRST-LAST`), then the file being written.
fn log_files(w: &World, name: &str) -> Vec<std::path::PathBuf> {
    let live = w.path(&format!("{name}.audit.jsonl"));
    let mut rotated: Vec<_> = std::fs::read_dir(live.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&format!("{name}.audit.jsonl.")))
                .is_some_and(|r| r.len() == 25 && r.as_bytes()[12] == b'-')
        })
        .collect();
    rotated.sort();
    rotated.push(live);
    rotated
}

/// `fedgate-edge audit verify EXTRA... FILES...`: (success, stdout and
/// stderr).
fn verify_files(files: &[std::path::PathBuf], extra: &[&str]) -> (bool, String) {
    let mut args = vec!["audit".to_string(), "verify".into()];
    args.extend(extra.iter().map(|s| (*s).to_string()));
    args.extend(files.iter().map(|f| f.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = tests::run(EDGE, &refs);
    (ok, format!("{out}{err}"))
}

/// An edge rotating its audit log (`--audit-rotate-size 1KiB`): past the
/// size the file is renamed `FILE.FIRST-LAST` and a new one goes on with
/// the chain, also across a restart (and, with `--audit-rotate-every 1s`,
/// at the next whole second); `audit verify` proves the files,
/// oldest first, as one log, and the file being written alone only with
/// `--partial`, saying where it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_rotates_its_audit_log_and_the_files_verify_as_one_log() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let rotate = ["--audit-rotate-size".to_string(), "1KiB".into()];
    let mut pair = start_pair_with(&w, &doc, &doc, &[], &rotate);
    // 16 records of some 330 bytes, each on file before the next flow
    // (the writer rotates between the batches it gathers, and on a busy
    // machine it could gather all 16 in one): past 1 KiB every fourth.
    for n in 0..16 {
        let msg = format!("flow {n:02}");
        let back = echo_through(addr(&w, 130, 7007), msg.as_bytes()).await;
        assert_eq!(back.as_deref(), Ok(msg.as_bytes()));
        let on_file = || {
            log_files(&w, "away")
                .iter()
                .map(|f| {
                    std::fs::read_to_string(f)
                        .unwrap_or_default()
                        .lines()
                        .count()
                })
                .sum::<usize>()
        };
        for _ in 0..100 {
            if on_file() > n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(on_file() > n, "record {} not on file in 5 s", n + 1);
    }
    let status = pair.away.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let files = log_files(&w, "away");
    assert!(files.len() >= 3, "rotated past 1 KiB: {files:?}");
    let (ok, out) = verify_files(&files, &[]);
    assert!(ok && out.contains("ok: 16 records, chain intact"), "{out}");
    assert!(out.contains("away.audit.jsonl.000000000001-"), "{out}");
    assert!(
        pair.away.log_text().contains("audit log rotated"),
        "{}",
        pair.away.log_text()
    );
    // Each rotated file holds the records its name says.
    for file in &files[..files.len() - 1] {
        let (ok, out) = verify_files(std::slice::from_ref(file), &["--partial"]);
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let (first, last) = name
            .rsplit_once('.')
            .and_then(|(_, r)| r.split_once('-'))
            .expect("FIRST-LAST");
        let (first, last): (u64, u64) = (first.parse().expect("n"), last.parse().expect("n"));
        assert!(
            ok && out.contains(&format!("ok: {} records", last - first + 1)),
            "{name}: {out}"
        );
    }
    // A later file alone: refused from record 1, proved with --partial.
    let later = &files[1..2];
    let (ok, out) = verify_files(later, &[]);
    assert!(!ok && out.contains("line 1: sequence number"), "{out}");
    let (ok, out) = verify_files(later, &["--partial"]);
    assert!(ok && out.contains("records 1 to"), "{out}");
    // Out of order, the files do not verify.
    let mut shuffled = files.clone();
    shuffled.swap(0, 1);
    let (ok, out) = verify_files(&shuffled, &[]);
    assert!(!ok, "{out}");

    // Started again, the edge goes on with the chain; rotated by the clock
    // only now, at the next whole second after the record.
    let by_clock_only = [
        "--audit-rotate-size".to_string(),
        "0".into(),
        "--audit-rotate-every".into(),
        "1s".into(),
    ];
    let rotated_before = files.len() - 1;
    pair.away = spawn_pair_edge(&w, "away", &by_clock_only);
    pair.away.wait_for("ready", Duration::from_secs(20));
    let back = echo_through(addr(&w, 130, 7007), b"after the restart").await;
    assert_eq!(back.as_deref(), Ok(&b"after the restart"[..]));
    let files = log_files(&w, "away");
    let mut verified = false;
    for _ in 0..40 {
        let (ok, out) = verify_files(&log_files(&w, "away"), &[]);
        if ok && out.contains("ok: 17 records") {
            verified = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(verified, "{:?}", verify_files(&files, &[]));
    // The records left from before the restart go with record 17, or, if
    // a second turned before it came, in a file of their own first.
    let mut by_clock = Vec::new();
    for _ in 0..60 {
        by_clock = log_files(&w, "away");
        let last = by_clock[by_clock.len().saturating_sub(2)]
            .display()
            .to_string();
        if last.ends_with("-000000000017") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotated_now = by_clock.len() - 1;
    assert!(
        (rotated_before + 1..=rotated_before + 2).contains(&rotated_now),
        "{by_clock:?}"
    );
    let last = by_clock[by_clock.len() - 2].display().to_string();
    assert!(last.ends_with("-000000000017"), "{last}");
    let (ok, out) = verify_files(&by_clock, &[]);
    assert!(ok && out.contains("ok: 17 records"), "{out}");
    assert_eq!(
        std::fs::read(&by_clock[by_clock.len() - 1]).expect("live file"),
        b""
    );
}

/// An edge run from a snapshot file reports to no control plane, so nothing
/// outside its host anchors its audit log, unless its own log does: with
/// `--audit-head-log-secs`, the edge logs its audit log's head (`audit
/// head`: seq and hash) when it has moved, and at stop. Its JSON log, as a
/// SIEM keeps it, is then the anchors file for `audit verify --anchors`:
/// the whole log verifies against it; with its last record cut off, it
/// fails and says records were removed from its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edges_own_json_log_anchors_its_audit_log() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let away_args: Vec<String> = ["--log-format", "json", "--audit-head-log-secs", "1"]
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut pair = start_pair_with(&w, &doc, &doc, &[], &away_args);
    let _ = echo_record(&w, "one").await;
    let _ = echo_record(&w, "two!").await;
    // A head logged while running (each second, when it moved) ...
    let away_log = pair.away.log.clone();
    let logged = || heads(&away_log);
    for _ in 0..100 {
        if !logged().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !logged().is_empty(),
        "no audit head logged:\n{}",
        pair.away.log_text()
    );
    let _ = echo_record(&w, "three").await;
    // ... and the last at stop.
    let status = pair.away.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "away stopped: {status:?}"
    );
    let heads = logged();
    assert_eq!(
        heads.last().map(|h| h["fields"]["seq"].clone()),
        Some(3.into()),
        "{heads:#?}"
    );
    assert!(
        heads.iter().all(|h| h["fields"]["edge"] == "away/edge"),
        "{heads:#?}"
    );

    // The edge's whole log as the anchors file: other lines are skipped.
    let log = w.path("away.log.json");
    std::fs::write(&log, pair.away.log_text()).expect("write the log");
    let audit_file = w.path("away.audit.jsonl");
    let (ok, out) = verify_files(
        std::slice::from_ref(&audit_file),
        &["--anchors", &log.display().to_string()],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("ok: 3 records") && out.contains("anchors:"),
        "{out}"
    );

    // The last record cut off: the log ends before its last anchor.
    let text = std::fs::read_to_string(&audit_file).expect("audit log");
    let kept: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&audit_file, kept).expect("cut the audit log");
    let (ok, out) = verify_files(&[audit_file], &["--anchors", &log.display().to_string()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the log ends at record 2, but log anchored record 3 of away/edge")
            && out.contains("records were removed from its end"),
        "{out}"
    );
}

/// The `audit head` lines of an edge's JSON log.
fn heads(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "audit head")
        .collect()
}
