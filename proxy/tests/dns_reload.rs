//! Answers follow the snapshot: a newer snapshot written over the file
//! changes `dig`'s answers within a second, without a restart; a broken
//! snapshot and an older one are refused, logged and counted, and the
//! running answers stay.

mod common;

use std::time::Duration;

use common::*;
use tests::{World, dig, dig_addresses, ip};

fn status(out: &str) -> String {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("?")
        .to_owned()
}

/// Poll (bounded by `within`) until `pred` holds for dig's output.
async fn until(
    dns: std::net::SocketAddr,
    args: &[&str],
    within: Duration,
    pred: impl Fn(&str) -> bool,
) -> (bool, String, Duration) {
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    for _ in 0..200 {
        let (_, out) = dig(dns, args);
        if pred(&out) {
            return (true, out, start.elapsed());
        }
        last = out;
        if start.elapsed() > within {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (false, last, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_snapshot_changes_answers_and_a_bad_one_is_refused() {
    if !tests::require_tool("dig") || !tests::require_tool("unbound") {
        return;
    }
    let w = World::new();
    let (_upstream, up) = start_upstream(&w);
    let v1 = document(
        &w,
        &Options {
            away_dns: format!(", upstreams: [\"{up}\"]"),
            ..Options::default()
        },
    );
    let dns = dns_addr(&w);
    let extra = vec!["--dns".to_string(), dns.to_string()];
    let pair = start_pair_with(&w, &v1, &v1, &[], &extra);
    let (_, out) = dig(dns, &["new.home.example", "A"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    let (_, out) = dig(dns, &["www.elsewhere.test", "A"]);
    assert_eq!(dig_addresses(&out), vec!["127.0.0.99"], "{out}");

    // Version 2: a new service the away staff may reach; no upstream any more.
    let v2 = document(
        &w,
        &Options {
            extra_services: format!(
                "  - {{org: home, name: new, dns: [new.home.example], address: {}, ports: [443], protocol: tls}}\n",
                ip(w.net, 14)
            ),
            extra_policies: "  - {id: roaming-to-new, description: New service, from: {networks: [away/roaming-staff]}, to: {services: [home/new]}, action: allow, agreement: ISA-T}\n",
            ..Options::default()
        },
    );
    w.snapshot_version(&v2, "away/edge", "away.snapshot.json", 2);
    let (ok, out, took) = until(
        dns,
        &["new.home.example", "A"],
        Duration::from_secs(1),
        |o| dig_addresses(o) == vec![ip(w.net, 1).to_string()],
    )
    .await;
    assert!(
        ok,
        "answer did not change within a second: {out}\n{}",
        pair.away.log_text()
    );
    eprintln!("new answer after {took:?}");
    let (_, out) = dig(dns, &["+short", "home.example", "SOA"]);
    assert!(
        out.contains("hostmaster.home.example. 2 "),
        "serial 2: {out}"
    );
    // No upstream now: other names refused.
    let (_, out) = dig(dns, &["www.elsewhere.test", "A"]);
    assert_eq!(status(&out), "REFUSED", "{out}");

    // A damaged file: refused, the running answers stay.
    std::fs::write(
        w.path("away.snapshot.json.tmp"),
        b"{\"format\": 1, \"version\": 9",
    )
    .expect("write");
    std::fs::rename(
        w.path("away.snapshot.json.tmp"),
        w.path("away.snapshot.json"),
    )
    .expect("rename");
    let mut away = pair;
    away.away
        .wait_for("snapshot refused", Duration::from_secs(5));
    // An older version: refused too.
    w.snapshot_version(&v1, "away/edge", "away.snapshot.json", 1);
    for _ in 0..100 {
        if away
            .away
            .log_text()
            .contains("is older than the running version 2")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = away.away.log_text();
    assert!(log.contains("is older than the running version 2"), "{log}");
    let (_, out) = dig(dns, &["new.home.example", "A"]);
    assert_eq!(dig_addresses(&out), vec![ip(w.net, 1).to_string()], "{out}");

    let (ok, metrics, _) = curl(vec![format!("http://{}/metrics", addr(&w, 1, 9100))]).await;
    assert!(ok, "metrics");
    for line in [
        "fedgate_snapshot_version 2\n",
        "fedgate_snapshot_reloads_total{result=\"applied\",reason=\"newer\"} 1\n",
        "fedgate_snapshot_reloads_total{result=\"refused\",reason=\"invalid\"} 1\n",
        "fedgate_snapshot_reloads_total{result=\"refused\",reason=\"older\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}
