//! `--threads`: an edge relays on as many runtime threads as it is given, one
//! thread (tokio's single-threaded runtime, no worker threads at all) as well
//! as several, and flows cross a pair that runs one of each.

mod common;

use common::*;
use tests::World;

/// Threads of process `pid` named as tokio names its multi-threaded
/// runtime's workers.
fn runtime_workers(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        panic!("cannot list the threads of pid {pid}");
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_relays_on_the_threads_it_is_given() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let threads = |n: &str| vec!["--threads".to_string(), n.to_string()];
    let pair = start_pair_with(&w, &doc, &doc, &threads("1"), &threads("3"));
    let logs = |p: &Pair| format!("away:\n{}\nhome:\n{}", p.away.log_text(), p.home.log_text());

    // Several flows at once through away (3 workers) and home (1 thread).
    let vip = addr(&w, 130, 7007);
    let flows = (0..8u8).map(|i| {
        let msg = vec![b'a' + i; 1000 + usize::from(i)];
        async move { (echo_through(vip, &msg).await, msg) }
    });
    for (back, sent) in futures_util::future::join_all(flows).await {
        assert_eq!(
            back.as_deref().ok(),
            Some(&sent[..]),
            "{back:?}\n{}",
            logs(&pair)
        );
    }
    let record = audit_record(&w, "home", |r| r["service"] == "home/echo").await;
    assert_eq!(record["result"], "allowed", "{record}");
    assert_eq!(record["transport"], "quic", "{record}");

    assert_eq!(
        runtime_workers(pair.home.pid()),
        0,
        "home runs --threads 1: tokio's single-threaded runtime, no worker threads"
    );
    assert_eq!(runtime_workers(pair.away.pid()), 3, "away runs --threads 3");
    // Both still serve their admin listeners after the flows.
    for host in [1, 2] {
        let url = format!("http://{}/healthz", addr(&w, host, 9100));
        let (ok, out, err) = curl(vec![url]).await;
        assert!(ok, "healthz of .{host}: {out} {err}\n{}", logs(&pair));
    }
}

#[test]
fn a_thread_count_of_zero_is_refused_with_the_flag_named() {
    let w = World::new();
    let (code, err) = home_edge_refusing(&w, &["--threads", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--threads"), "{err}");
}
