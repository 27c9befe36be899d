//! Per-client DNS rate limiting: a client over `--dns-rate` queries a second
//! has the excess dropped (dig times out on them) and counted; another
//! client is unaffected.

mod common;

use std::fmt::Write as _;

use common::*;
use tests::{World, dig, dig_addresses, ip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_dropped_and_counted() {
    if !tests::require_tool("dig") {
        return;
    }
    let w = World::new();
    let doc = document(&w, &Options::default());
    let dns = dns_addr(&w);
    let extra = vec![
        "--dns".to_string(),
        dns.to_string(),
        "--dns-rate".into(),
        "5".into(),
    ];
    let pair = start_pair_with(&w, &doc, &doc, &[], &extra);

    // One dig process, 20 queries back to back from one address.
    let mut batch = String::new();
    for _ in 0..20 {
        let _ = writeln!(batch, "web.home.example A");
    }
    let file = w.path("batch.txt");
    std::fs::write(&file, batch).expect("batch file");
    let client = ip(w.net, 77).to_string();
    let file = file.display().to_string();
    let (_, out) =
        tokio::task::spawn_blocking(move || dig(dns, &["-b", &client, "+time=1", "-f", &file]))
            .await
            .expect("dig");
    let answered = out.matches("status: NOERROR").count();
    let dropped = out.matches("timed out").count();
    assert!(answered >= 5, "the burst is answered: {out}");
    assert!(dropped >= 1, "some queries dropped: {out}");

    // Another client has its own bucket.
    let other = ip(w.net, 78).to_string();
    let (_, out) = dig(dns, &["-b", &other, "web.home.example", "A"]);
    assert_eq!(dig_addresses(&out), vec![ip(w.net, 1).to_string()], "{out}");

    let (ok, metrics, _) = curl(vec![format!("http://{}/metrics", addr(&w, 1, 9100))]).await;
    assert!(ok, "metrics");
    let limited: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fedgate_dns_rate_limited_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        limited >= dropped as u64,
        "{limited} < {dropped}:\n{metrics}"
    );
    drop(pair);
}
