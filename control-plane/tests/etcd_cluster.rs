//! The etcd store on a real 3-member etcd cluster on loopback: the leader is
//! killed (SIGKILL) in the middle of a stream of applies from one replica
//! while another replica follows the head as it would to serve edges.
//!
//! Afterwards, read through the surviving members:
//! - every version whose commit was acknowledged is there with exactly the
//!   content committed, and the versions run 1, 2, 3… without a gap;
//! - nothing is stored beyond the acknowledged versions, except possibly
//!   the one the writer gave up on (its answer lost in flight);
//! - every version the following replica saw (what it would hand to edges)
//!   is one that was acknowledged, and holds the same content now.
//!
//! The writer retries each apply, a bounded number of times. An error from
//! a commit leaves its outcome unknown (the transaction may have passed
//! while its answer was lost), so on a later conflict the writer reads
//! version N: if it holds exactly its own content, its earlier try was
//! applied and the version is acknowledged now; anything else is a failure,
//! as nobody else writes.
#![cfg(feature = "etcd")] // needs `--features etcd` (protoc); CI builds with --all-features

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use control_plane::store::etcd::EtcdStore;
use control_plane::store::{Store, StoreError, Version};
use support::etcd::{Cluster, etcd_installed, version};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

const PREFIX: &str = "/fedgate/cluster-test/";
const TOTAL: u64 = 200;
const KILL_AT: u64 = 70;
/// Tries of one apply before the writer gives up on it.
const TRIES: u32 = 30;

async fn store(endpoints: &[String]) -> Store {
    Store::Etcd(
        EtcdStore::connect(endpoints, PREFIX)
            .await
            .expect("connect to etcd"),
    )
}

#[derive(Default)]
struct Outcome {
    /// Version number to the content acknowledged for it.
    acked: BTreeMap<u64, Version>,
    /// Versions acknowledged by reading them back after a lost answer.
    found_later: Vec<u64>,
    /// Errors the writer saw and retried.
    errors: Vec<String>,
    /// The version the writer gave up on, if it did.
    gave_up: Option<Version>,
}

/// Apply versions 1..=TOTAL one after the other, like an admin who applies
/// again after an error; `progress` tells the last acknowledged version.
async fn write_stream(store: Store, progress: watch::Sender<u64>) -> Outcome {
    let mut out = Outcome::default();
    for n in 1..=TOTAL {
        let v = version(n, "writer");
        let mut acked = false;
        for attempt in 0..TRIES {
            match store.commit(n - 1, &v).await {
                Ok(()) => acked = true,
                Err(StoreError::Conflict { head, .. }) => {
                    assert!(head >= n, "the head went back to {head} under {n}");
                    match store.get(n).await {
                        Ok(Some(stored)) if stored == v => {
                            out.found_later.push(n);
                            acked = true;
                        }
                        Ok(stored) => panic!("version {n} is not ours: {stored:?}"),
                        Err(e) => out.errors.push(format!("v{n} read back: {e}")),
                    }
                }
                Err(e @ StoreError::Etcd(_)) => out.errors.push(format!("v{n}: {e}")),
                Err(e) => panic!("version {n}: {e}"),
            }
            if acked {
                break;
            }
            sleep(Duration::from_millis(100) * (attempt + 1).min(10)).await;
        }
        if !acked {
            out.gave_up = Some(v);
            break;
        }
        out.acked.insert(n, v);
        progress.send_replace(n);
        // A little pacing, so the kill lands mid-stream on a fast machine.
        sleep(Duration::from_millis(5)).await;
    }
    out
}

/// Follow the head as a replica serving edges would, and read each version
/// it announces; stop once `target` (0 = not yet known) is reached.
async fn follow(store: Store, mut target: watch::Receiver<u64>) -> Vec<(u64, Version)> {
    let mut head = store.subscribe();
    let mut seen: Vec<(u64, Version)> = Vec::new();
    for _ in 0..100_000 {
        let h = *head.borrow_and_update();
        if h > 0 && seen.last().is_none_or(|(s, _)| *s != h) {
            let mut read = None;
            for _ in 0..50 {
                match store.get(h).await {
                    Ok(Some(v)) => {
                        read = Some(v);
                        break;
                    }
                    Ok(None) => panic!("head {h} announced but not stored"),
                    Err(_) => sleep(Duration::from_millis(200)).await,
                }
            }
            seen.push((h, read.unwrap_or_else(|| panic!("version {h} unreadable"))));
        }
        let goal = *target.borrow_and_update();
        if goal > 0 && h >= goal {
            break;
        }
        tokio::select! {
            changed = head.changed() => changed.expect("the store is alive"),
            changed = target.changed() => changed.expect("the test is alive"),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_during_applies_loses_no_acknowledged_version() {
    if !etcd_installed() {
        return;
    }
    let started = Instant::now();
    let mut etcd = Cluster::start(3).await;
    let endpoints = etcd.endpoints();
    let writer = store(&endpoints).await;
    let follower = store(&endpoints).await;
    let (target_tx, target_rx) = watch::channel(0);
    let follower = tokio::spawn(follow(follower, target_rx));
    let leader = etcd.leader().await;
    let (progress_tx, mut progress) = watch::channel(0);
    let writer = tokio::spawn(write_stream(writer, progress_tx));

    let reached = timeout(
        Duration::from_secs(120),
        progress.wait_for(|n| *n >= KILL_AT),
    )
    .await;
    assert!(
        reached.is_ok_and(|r| r.is_ok()),
        "version {KILL_AT} not reached:\n{}",
        etcd.logs()
    );
    etcd.kill(leader);
    let killed_at = *progress.borrow();
    eprintln!(
        "killed the leader {} after version {killed_at}",
        etcd.members[leader].name
    );
    assert!(killed_at < TOTAL, "the kill came after the stream ended");

    let out = timeout(Duration::from_secs(400), writer)
        .await
        .expect("the writer finishes in bounded time")
        .expect("the writer did not panic");
    eprintln!(
        "acknowledged {} versions ({} read back after a lost answer), {} errors retried{}",
        out.acked.len(),
        out.found_later.len(),
        out.errors.len(),
        if out.gave_up.is_some() {
            ", gave up on one"
        } else {
            ""
        }
    );
    for e in out.errors.iter().take(5) {
        eprintln!("  {e}");
    }

    // Read back through the survivors only, with a new client.
    let check = store(&etcd.endpoints()).await;
    let head = check.head().await.unwrap();
    let history = check.history().await.expect("no gap, nothing damaged");
    assert_eq!(
        history.iter().map(|m| m.version).collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>()
    );
    let last_acked = out.acked.keys().next_back().copied().unwrap_or(0);
    assert_eq!(
        out.acked.keys().copied().collect::<Vec<_>>(),
        (1..=last_acked).collect::<Vec<_>>()
    );
    for (n, v) in &out.acked {
        assert_eq!(
            check.get(*n).await.unwrap().as_ref(),
            Some(v),
            "acknowledged version {n} survives with its content"
        );
    }
    match &out.gave_up {
        None => assert_eq!(head, last_acked, "nothing beyond what was acknowledged"),
        Some(v) => {
            assert!(head == last_acked || head == last_acked + 1);
            if head > last_acked {
                assert_eq!(check.get(head).await.unwrap().as_ref(), Some(v));
            }
        }
    }
    assert!(
        out.gave_up.is_none() && last_acked == TOTAL,
        "with two of three members up every apply goes through; errors: {:#?}",
        out.errors
    );

    // The following replica learnt the last version, across the failure,
    // and saw only acknowledged versions with their final content.
    target_tx.send_replace(head);
    let seen = timeout(Duration::from_secs(60), follower)
        .await
        .expect("the following replica reaches the head")
        .expect("the follower did not panic");
    assert_eq!(seen.last().map(|(h, _)| *h), Some(head));
    assert!(
        seen.iter().any(|(h, _)| *h > killed_at),
        "the follower saw versions after the kill"
    );
    for (h, v) in &seen {
        assert_eq!(out.acked.get(h), Some(v), "the follower saw version {h}");
    }

    // The killed member comes back and serves the same history.
    etcd.restart(leader).await;
    let back = store(std::slice::from_ref(&etcd.members[leader].client_url)).await;
    let mut caught_up = false;
    for _ in 0..100 {
        if back.head().await.is_ok_and(|h| h == head) {
            caught_up = true;
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    assert!(caught_up, "the restarted member catches up");
    assert_eq!(back.history().await.unwrap(), history);
    eprintln!("took {:?}", started.elapsed());
}
