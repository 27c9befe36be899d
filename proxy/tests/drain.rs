//! SIGTERM drains: the edge stops accepting and reports not ready, flows in
//! progress finish, then it exits cleanly.

mod common;

use std::time::Duration;

use common::*;
use tests::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_flows_in_progress_finish() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let mut pair = start_pair(&w, &doc, &doc, &[]);
    let vip = addr(&w, 130, 7007);
    let mut flow = tokio::net::TcpStream::connect(vip).await.expect("connect");
    flow.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    flow.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"before");

    let pid = pair.away.pid().to_string();
    let (ok, _, err) = tests::run("kill", &["-TERM", &pid]);
    assert!(ok, "kill -TERM {pid}: {err}");
    pair.away.wait_for("draining", Duration::from_secs(5));
    // New connections are no longer accepted.
    let refused = tokio::time::timeout(Duration::from_secs(2), async {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(vip).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(refused, "the VIP still accepts connections while draining");
    // The flow in progress still works, and closes cleanly.
    flow.write_all(b"after!").await.unwrap();
    flow.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after!");
    flow.shutdown().await.unwrap();
    let mut rest = Vec::new();
    flow.read_to_end(&mut rest).await.unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let s = pair.away.terminate(Duration::from_secs(15));
        (s, pair)
    })
    .await
    .unwrap();
    assert!(
        status.0.is_some_and(|s| s.success()),
        "edge did not exit cleanly after draining: {:?}\n{}",
        status.0,
        status.1.away.log_text()
    );
    // The drained flow's record: every byte, both ways. (Probing connections
    // accepted in the instant before the listener closed have records too.)
    let r = audit_record(&w, "away", |r| {
        r["service"] == "home/echo" && r["bytes_up"] == 12
    })
    .await;
    assert_eq!(r["result"], "allowed");
    assert_eq!(r["bytes_down"], 12);
}
