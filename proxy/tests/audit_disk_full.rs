//! An edge whose audit log's disk fills: the real `fedgate-edge` processes,
//! their audit logs on a small tmpfs of the test's own (root, as in CI),
//! flows through a service VIP and curl-free raw CONNECTs:
//! - flows go on while the records wait in memory, `/readyz` answers 503
//!   with the reason, and the backlog and write errors are on `/metrics`;
//! - past `--audit-backlog` records a new flow is refused, at the visited
//!   edge (CONNECT 503 `audit-unavailable`) or at the home edge (CONNECT 503
//!   `home:audit-unavailable`, filed by the visited edge);
//! - once there is room every record kept reaches the file, the rest of one
//!   cut short included, and the log verifies with every flow relayed;
//! - an edge stopped while its disk is still full says how many records it
//!   could not write (exit status 1), and started again on that log goes on.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tests::{SmallDisk, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `fedgate-edge audit verify FILE`: (success, stdout and stderr).
fn verify(file: &std::path::Path) -> (bool, String) {
    let (ok, out, err) = tests::run(EDGE, &["audit", "verify", &file.display().to_string()]);
    (ok, format!("{out}{err}"))
}

/// `/readyz` of the admin listener `admin`: (status code, body).
async fn readyz(admin: SocketAddr) -> (String, String) {
    let (ok, out, err) = curl(vec![
        "--write-out".into(),
        "\n%{http_code}".into(),
        format!("http://{admin}/readyz"),
    ])
    .await;
    assert!(ok, "readyz of {admin}: {err}");
    let (body, code) = out.rsplit_once('\n').expect("code after the body");
    (code.to_string(), body.to_string())
}

/// What away's CONNECT proxy answers to a CONNECT to the echo service, read
/// to the end: a refusal is answered and closed.
async fn connect_answer(w: &World) -> String {
    let mut s = tokio::net::TcpStream::connect(addr(w, 1, 3128))
        .await
        .expect("connect to the proxy");
    s.write_all(b"CONNECT echo.home.example:7007 HTTP/1.1\r\nHost: echo.home.example:7007\r\n\r\n")
        .await
        .expect("send CONNECT");
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        closed.is_ok_and(|r| r.is_ok()),
        "the proxy did not answer and close within 15 s: {answer:?}\n{}",
        std::fs::read_to_string(w.path("home.log")).unwrap_or_default()
    );
    answer
}

/// Echo flows through away's VIP, one after another, until one is refused
/// (closed without its bytes back): how many came back whole. At most 80.
async fn flows_until_refused(w: &World) -> u64 {
    let vip = addr(w, 130, 7007);
    for relayed in 0..80 {
        match echo_through(vip, b"held").await {
            Ok(back) if back == b"held" => {}
            _ => return relayed,
        }
    }
    panic!("80 flows relayed and none refused");
}

/// The value of `series` on `admin`'s metrics page (0 when absent).
async fn metric_of(admin: SocketAddr, series: &str) -> f64 {
    metric(&metrics(admin).await, series).unwrap_or(0.0)
}

fn allowed(records: &[serde_json::Value]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| r["result"] == "allowed")
        .map(|r| r["flow_id"].as_str().expect("flow id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_the_records_and_past_the_backlog_new_flows_are_refused() {
    let w = World::new();
    let Some(disk) = SmallDisk::mount(&w.path("disk"), "128k") else {
        return;
    };
    std::os::unix::fs::symlink(disk.path("away.audit.jsonl"), w.path("away.audit.jsonl"))
        .expect("audit log on the small disk");
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let mut pair = start_pair_with(&w, &doc, &doc, &[], &["--audit-backlog".into(), "8".into()]);
    let away_admin = addr(&w, 1, 9100);
    let _ = echo_record(&w, "first").await;
    assert_eq!(readyz(away_admin).await.0, "200");

    let filler = disk.fill("filler");
    // The records of the flows after this fill what is left of the log's
    // last page, then wait in memory: up to 8, then new flows are refused.
    let relayed = 1 + flows_until_refused(&w).await;
    assert!(relayed > 8, "{relayed} flows relayed before the refusal");
    let (code, body) = readyz(away_admin).await;
    assert_eq!(code, "503", "{body}");
    assert!(
        body.contains("audit log not writable") && body.contains("No space left on device"),
        "{body}"
    );
    let answer = connect_answer(&w).await;
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("audit-unavailable"),
        "{answer}"
    );
    let page = metrics(away_admin).await;
    assert!(
        metric(&page, "fedgate_audit_backlog_records").is_some_and(|n| n >= 8.0),
        "{page}"
    );
    assert!(
        metric(&page, "fedgate_audit_write_errors_total").is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(
        metric(
            &page,
            r#"fedgate_denials_total{role="visited",reason="audit-unavailable"}"#
        )
        .is_some_and(|n| n >= 2.0),
        "{page}"
    );
    assert!(
        pair.away
            .log_text()
            .contains("cannot write audit records; keeping them and trying again"),
        "{}",
        pair.away.log_text()
    );
    // The home edge, whose disk has room, filed every flow relayed.
    assert!(
        eventually(40, Duration::from_millis(100), || async {
            allowed(&audit(&w, "home")).len() as u64 == relayed
        })
        .await,
        "home filed {} of {relayed}",
        allowed(&audit(&w, "home")).len()
    );

    // Room again: every record kept reaches the file, in order.
    std::fs::remove_file(&filler).expect("free the disk");
    assert!(
        eventually(40, Duration::from_millis(250), || async {
            readyz(away_admin).await.0 == "200"
        })
        .await,
        "{:?}",
        readyz(away_admin).await
    );
    assert_eq!(
        metric_of(away_admin, "fedgate_audit_backlog_records").await,
        0.0
    );
    pair.away.wait_for(
        "audit log writable again; every record kept is on file",
        Duration::from_secs(5),
    );
    assert_eq!(
        echo_through(addr(&w, 130, 7007), b"after").await.as_deref(),
        Ok(&b"after"[..])
    );
    let relayed = relayed + 1;
    assert!(
        eventually(40, Duration::from_millis(100), || async {
            audit(&w, "away").len() as u64 == relayed
        })
        .await,
        "away filed {} of {relayed}",
        audit(&w, "away").len()
    );
    let (ok, out) = verify(&w.path("away.audit.jsonl"));
    assert!(
        ok && out.contains(&format!("ok: {relayed} records")),
        "{out}"
    );
    // The head the edge reports (for the control plane's anchors) counted
    // every record, those the full disk took in pieces included.
    assert!(
        eventually(40, Duration::from_millis(100), || async {
            metric_of(away_admin, "fedgate_audit_head_seq").await == relayed as f64
        })
        .await,
        "head at {} of {relayed}",
        metric_of(away_admin, "fedgate_audit_head_seq").await
    );
    // Every record filed is a flow relayed, the same flows as at home; the
    // refusals are in the log only, as nothing crossed.
    let away = audit(&w, "away");
    assert_eq!(allowed(&away).len() as u64, relayed, "{away:#?}");
    assert!(
        eventually(40, Duration::from_millis(100), || async {
            allowed(&audit(&w, "home")) == allowed(&audit(&w, "away"))
        })
        .await
    );
    assert!(
        pair.away.log_text().contains("reason=audit-unavailable"),
        "{}",
        pair.away.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_edge_with_a_full_disk_refuses_new_flows_and_stopped_says_what_it_could_not_write() {
    let w = World::new();
    let Some(disk) = SmallDisk::mount(&w.path("disk"), "128k") else {
        return;
    };
    let log = w.path("home.audit.jsonl");
    std::os::unix::fs::symlink(disk.path("home.audit.jsonl"), &log)
        .expect("audit log on the small disk");
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let home_extra = ["--audit-backlog".to_string(), "4".into()];
    let mut pair = start_pair(&w, &doc, &doc, &home_extra);
    let home_admin = addr(&w, 2, 9100);
    let _ = echo_record(&w, "first").await;

    let filler = disk.fill("filler");
    let relayed = 1 + flows_until_refused(&w).await;
    assert!(relayed > 4, "{relayed} flows relayed before the refusal");
    let answer = connect_answer(&w).await;
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("home:audit-unavailable"),
        "{answer}"
    );
    // The visited edge files the home edge's refusal in its own log.
    let refused = audit_record(&w, "away", |r| r["reason"] == "home:audit-unavailable").await;
    assert_eq!(refused["result"], "denied", "{refused:#}");
    assert_eq!(refused["peer_edge"], "home/edge", "{refused:#}");
    assert!(
        metric_of(
            home_admin,
            r#"fedgate_denials_total{role="home",reason="audit-unavailable"}"#
        )
        .await
            >= 2.0
    );
    let (code, body) = readyz(home_admin).await;
    assert_eq!(code, "503", "{body}");

    // Stopped while the disk is still full: it tries for a while, then
    // says how many records it could not write, and exits 1.
    let status = pair.home.terminate(Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "{}",
        pair.home.log_text()
    );
    let said = pair.home.log_text();
    assert!(
        said.contains("audit records not written to") && said.contains("target fedgate::audit"),
        "{said}"
    );
    let lost: u64 = said
        .lines()
        .find(|l| l.contains("stopping with audit records not written"))
        .and_then(|l| l.split("records=").nth(1))
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("records not written, counted:\n{said}"));
    assert!(lost >= 4, "{lost} records lost; the backlog was 4");
    // Each lost record was logged when it was taken.
    let logged = said.matches("fedgate::audit: flow ").count() as u64;
    assert!(logged >= relayed, "{logged} records logged of {relayed}");

    // Room again, and the edge started on that log: a record cut short is
    // set aside, the rest verifies, and the chain goes on.
    std::fs::remove_file(&filler).expect("free the disk");
    pair.home = spawn_pair_edge(&w, "home", &home_extra);
    pair.home.wait_for("ready", Duration::from_secs(20));
    let (ok, out) = verify(&log);
    let filed = relayed - lost;
    assert!(ok && out.contains(&format!("ok: {filed} records")), "{out}");
    assert!(echo_comes_back(&w, 8).await, "a flow after the restart");
    assert!(
        eventually(40, Duration::from_millis(100), || async {
            allowed(&audit(&w, "home")).len() as u64 > filed
        })
        .await,
        "{:#?}",
        audit(&w, "home")
    );
    let (ok, out) = verify(&log);
    let now_filed = audit(&w, "home").len();
    assert!(
        ok && out.contains(&format!("ok: {now_filed} records")),
        "{out}"
    );
}
