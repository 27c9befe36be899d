//! The etcd store on one real etcd member: compare-and-swap commits, reads,
//! history; two stores on the same etcd acting as two control-plane
//! replicas (each sees the other's commits through its watch; of two
//! commits on the same head exactly one wins); and etcd going away and
//! coming back (clear errors, no panic, the watch recovers).
#![cfg(feature = "etcd")] // needs `--features etcd` (protoc); CI builds with --all-features

mod support;

use std::time::Duration;

use control_plane::store::etcd::EtcdStore;
use control_plane::store::{Store, StoreError};
use support::etcd::{Cluster, LossyRelay, etcd_installed, version};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

const PREFIX: &str = "/fedgate/single-test/";

async fn store(endpoints: &[String], prefix: &str) -> Store {
    Store::Etcd(
        EtcdStore::connect(endpoints, prefix)
            .await
            .expect("connect to etcd"),
    )
}

/// Wait (bounded) until the head seen by `rx` is at least `version`.
async fn wait_head(rx: &mut watch::Receiver<u64>, version: u64, within: Duration) {
    let seen = timeout(within, rx.wait_for(|h| *h >= version))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(
        seen,
        "head {version} not seen within {within:?} (at {})",
        *rx.borrow()
    );
}

#[tokio::test]
async fn commit_conflict_get_history_and_subscribe() {
    if !etcd_installed() {
        return;
    }
    let etcd = Cluster::start(1).await;
    let store = store(&etcd.endpoints(), PREFIX).await;
    assert!(store.describe().starts_with("etcd http://127.0.0.1:"));
    let mut head = store.subscribe();
    assert_eq!(store.head().await.unwrap(), 0);
    assert!(store.history().await.unwrap().is_empty());
    assert_eq!(store.get(1).await.unwrap(), None);

    store.commit(0, &version(1, "alice")).await.unwrap();
    store.commit(1, &version(2, "alice")).await.unwrap();
    assert_eq!(*head.borrow_and_update(), 2, "a commit moves its own head");
    assert!(matches!(
        store.commit(1, &version(2, "bob")).await,
        Err(StoreError::Conflict {
            expected: 1,
            head: 2
        })
    ));
    assert!(matches!(
        store.commit(0, &version(1, "bob")).await,
        Err(StoreError::Conflict {
            expected: 0,
            head: 2
        })
    ));
    assert!(matches!(
        store.commit(2, &version(4, "alice")).await,
        Err(StoreError::InvalidVersion { .. })
    ));

    assert_eq!(store.head().await.unwrap(), 2);
    assert_eq!(store.get(2).await.unwrap(), Some(version(2, "alice")));
    assert_eq!(store.get(3).await.unwrap(), None);
    assert_eq!(store.get(0).await.unwrap(), None);
    let history = store.history().await.unwrap();
    assert_eq!(
        history,
        [version(1, "alice").meta, version(2, "alice").meta],
        "oldest first"
    );

    // Many versions: history reads them in pages, oldest first.
    for n in 3..=75 {
        store.commit(n - 1, &version(n, "alice")).await.unwrap();
    }
    let history = store.history().await.unwrap();
    assert_eq!(
        history.iter().map(|m| m.version).collect::<Vec<_>>(),
        (1..=75).collect::<Vec<_>>()
    );

    // A new client finds it all; another prefix is another federation.
    let again = self::store(&etcd.endpoints(), PREFIX.trim_end_matches('/')).await;
    assert_eq!(again.head().await.unwrap(), 75);
    assert_eq!(*again.subscribe().borrow(), 75, "connect reads the head");
    assert_eq!(again.get(75).await.unwrap(), Some(version(75, "alice")));
    let other = self::store(&etcd.endpoints(), "/fedgate/another/").await;
    assert_eq!(other.head().await.unwrap(), 0);
    other.commit(0, &version(1, "carol")).await.unwrap();
    assert_eq!(store.get(1).await.unwrap(), Some(version(1, "alice")));
}

#[tokio::test]
async fn two_replicas_see_each_other_and_exactly_one_of_two_commits_wins() {
    if !etcd_installed() {
        return;
    }
    let etcd = Cluster::start(1).await;
    let a = store(&etcd.endpoints(), PREFIX).await;
    let b = store(&etcd.endpoints(), PREFIX).await;
    let mut a_head = a.subscribe();
    let mut b_head = b.subscribe();

    a.commit(0, &version(1, "alice")).await.unwrap();
    wait_head(&mut b_head, 1, Duration::from_secs(1)).await;
    b.commit(1, &version(2, "bob")).await.unwrap();
    wait_head(&mut a_head, 2, Duration::from_secs(1)).await;
    assert_eq!(a.get(2).await.unwrap(), Some(version(2, "bob")));

    // Both replicas commit on the same head at once, 20 times over.
    let mut wins = [0, 0];
    for n in 3..=22 {
        let (va, vb) = (version(n, "alice"), version(n, "bob"));
        let (ra, rb) = tokio::join!(a.commit(n - 1, &va), b.commit(n - 1, &vb));
        let winner = match (ra, rb) {
            (Ok(()), Err(StoreError::Conflict { expected, head })) => {
                assert_eq!((expected, head), (n - 1, n));
                wins[0] += 1;
                va
            }
            (Err(StoreError::Conflict { expected, head }), Ok(())) => {
                assert_eq!((expected, head), (n - 1, n));
                wins[1] += 1;
                vb
            }
            other => panic!("version {n}: not exactly one winner: {other:?}"),
        };
        assert_eq!(a.get(n).await.unwrap(), Some(winner.clone()));
        assert_eq!(b.get(n).await.unwrap(), Some(winner));
    }
    eprintln!("wins: alice {} bob {}", wins[0], wins[1]);
    wait_head(&mut a_head, 22, Duration::from_secs(1)).await;
    wait_head(&mut b_head, 22, Duration::from_secs(1)).await;
    assert_eq!(a.history().await.unwrap(), b.history().await.unwrap());
}

#[tokio::test]
async fn etcd_away_fails_clearly_and_the_watch_recovers() {
    if !etcd_installed() {
        return;
    }
    let mut etcd = Cluster::start(1).await;
    let endpoint = etcd.endpoints()[0].clone();
    let a = store(&etcd.endpoints(), PREFIX).await;
    let mut a_head = a.subscribe();
    a.commit(0, &version(1, "alice")).await.unwrap();

    etcd.kill(0);
    let started = Instant::now();
    let err = a.head().await.expect_err("etcd is down");
    let message = err.to_string();
    eprintln!("etcd down, head: {message}");
    assert!(matches!(err, StoreError::Etcd(_)), "{err:?}");
    assert!(message.contains(&endpoint), "names the endpoint: {message}");
    assert!(message.contains("reading the head"), "says what: {message}");
    let err = a.commit(1, &version(2, "alice")).await.expect_err("down");
    eprintln!("etcd down, commit: {err}");
    assert!(
        err.to_string().contains("committing version 2"),
        "says what: {err}"
    );
    assert!(
        EtcdStore::connect(std::slice::from_ref(&endpoint), PREFIX)
            .await
            .is_err(),
        "connect reports an unreachable etcd"
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "failures are bounded in time: {:?}",
        started.elapsed()
    );
    assert_eq!(*a_head.borrow(), 1, "the last head known is kept");

    etcd.restart(0).await;
    let b = store(&etcd.endpoints(), PREFIX).await;
    b.commit(1, &version(2, "bob")).await.unwrap();
    // The watch comes back by itself (backoff up to a few seconds).
    wait_head(&mut a_head, 2, Duration::from_secs(30)).await;
    assert_eq!(a.head().await.unwrap(), 2, "requests work again");
    a.commit(2, &version(3, "alice")).await.unwrap();
    assert_eq!(b.get(3).await.unwrap(), Some(version(3, "alice")));
}

/// The answer to a commit is lost after etcd applied it: the store's retry
/// finds exactly its version stored and acknowledges it, rather than
/// reporting a conflict with itself or writing it twice.
#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_found_applied() {
    if !etcd_installed() {
        return;
    }
    let etcd = Cluster::start(1).await;
    let relay = LossyRelay::start(&etcd.endpoints()[0]).await;
    let a = store(std::slice::from_ref(&relay.url), PREFIX).await;
    let direct = store(&etcd.endpoints(), PREFIX).await;
    let mut direct_head = direct.subscribe();
    a.commit(0, &version(1, "alice")).await.unwrap();
    wait_head(&mut direct_head, 1, Duration::from_secs(5)).await;

    relay.hold();
    let v2 = version(2, "alice");
    let commit = a.commit(1, &v2);
    let cut_once_applied = async {
        // Applied by etcd, answer held back: now lose it.
        wait_head(&mut direct_head, 2, Duration::from_secs(4)).await;
        relay.cut();
    };
    let (result, ()) = tokio::join!(commit, cut_once_applied);
    result.expect("the retry finds the version applied");
    assert_eq!(direct.get(2).await.unwrap(), Some(v2));
    assert_eq!(direct.head().await.unwrap(), 2);
    assert_eq!(*a.subscribe().borrow(), 2);

    // Someone else's identical-looking head is still a conflict.
    assert!(matches!(
        a.commit(1, &version(2, "alice")).await,
        Err(StoreError::Conflict {
            expected: 1,
            head: 2
        })
    ));
}
