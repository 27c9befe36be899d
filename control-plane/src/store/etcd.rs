//! The etcd store: several control-plane replicas serve one federation from
//! one etcd cluster.
//!
//! ```text
//! PREFIX/head                          the head version in decimal ("17"); absent = 0
//! PREFIX/versions/00000000000000000017 version 17 as JSON, never rewritten
//! ```
//!
//! A commit is one etcd transaction: *if* the head is the one its author saw
//! (for 0: the head key does not exist) and `versions/N` does not exist,
//! *then* put `versions/N` and `head = N`, *else* read the head and report a
//! conflict. A version is acknowledged only once that transaction succeeded,
//! so it is on a quorum of members.
//!
//! Every replica follows the head key with an etcd watch in a background
//! task, so [`EtcdStore::subscribe`] moves on every commit by any replica.
//! When the watch or its connection breaks, the task waits (exponential
//! backoff with jitter), reads the head again, so nothing is missed, and
//! watches again from the revision it read.
//!
//! The client balances over every endpoint it is given, so a dead member is
//! tolerated as long as the cluster has a quorum. Each operation is tried a
//! few times on an error; when etcd stays unavailable it fails with
//! [`StoreError::Etcd`] naming the endpoints and what failed.
//!
//! An error from a commit's transaction leaves its outcome unknown: it may
//! have been applied while the answer was lost. A retry of the same
//! transaction is safe (at most one can pass the compare) and, when it finds
//! `versions/N` holding exactly this version, takes it as committed. If every
//! try fails, the commit fails with an error that says the version may still
//! appear; whoever applies again then sees a conflict, and can tell their own
//! version by its content.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, GetResponse, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{StoreError, Version, VersionMeta};

/// How long to wait for a TCP connection to one member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may take (a watch only until it is set up).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings find a dead connection under an idle watch. etcd answers
/// pings more often than every 5 s with GOAWAY, so stay above that.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries of one operation before it fails (the client picks a member per try).
const ATTEMPTS: u32 = 4;
/// Versions read per request by `history`; keeps each answer far below
/// gRPC's 4 MiB message limit for documents of a few tens of KiB.
const HISTORY_PAGE: i64 = 32;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct EtcdStore {
    /// Boxed: the client is a few KiB, the other stores far less.
    client: Box<Client>,
    keys: Keys,
    /// `http://a:2379,http://b:2379`, for messages.
    endpoints: String,
    head: watch::Sender<u64>,
    /// Follows the head key; stopped when the store is dropped.
    follower: JoinHandle<()>,
}

/// The keys of one federation under its prefix.
#[derive(Clone)]
struct Keys {
    prefix: String,
    head: String,
    versions: String,
}

impl Keys {
    /// `prefix` gets a trailing `/` if it has none.
    fn new(prefix: &str) -> Result<Self, StoreError> {
        if prefix.trim_matches('/').is_empty() {
            return Err(StoreError::Etcd(format!(
                "key prefix {prefix:?} names no federation; use one like /fedgate/<federation>/"
            )));
        }
        let prefix = if prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        Ok(Self {
            head: format!("{prefix}head"),
            versions: format!("{prefix}versions/"),
            prefix,
        })
    }

    fn version(&self, version: u64) -> String {
        format!("{}{version:020}", self.versions)
    }

    /// The end of the range that holds every version key: the prefix with
    /// its last byte, `/`, raised by one.
    fn versions_end(&self) -> Vec<u8> {
        let mut end = self.versions.clone().into_bytes();
        end.pop();
        end.push(b'/' + 1);
        end
    }
}

/// Raise the watched head to `version` if it is newer.
fn advance(head: &watch::Sender<u64>, version: u64) {
    head.send_if_modified(|h| {
        if version > *h {
            *h = version;
            true
        } else {
            false
        }
    });
}

fn parse_head(key: &str, value: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            StoreError::Etcd(format!(
                "{key} holds {:?}, not a version number",
                String::from_utf8_lossy(value)
            ))
        })
}

fn parse_version(key: &str, version: u64, value: &[u8]) -> Result<Version, StoreError> {
    let v: Version = serde_json::from_slice(value).map_err(|e| StoreError::Damaged {
        version,
        reason: format!("{key}: {e}"),
    })?;
    if v.meta.version != version {
        return Err(StoreError::Damaged {
            version,
            reason: format!("{key} holds version {}", v.meta.version),
        });
    }
    Ok(v)
}

/// The head in a read of the head key, and the etcd revision it was read at.
fn head_of(key: &str, resp: &GetResponse) -> Result<(u64, i64), StoreError> {
    let revision = resp.header().map_or(0, |h| h.revision());
    match resp.kvs().first() {
        None => Ok((0, revision)),
        Some(kv) => Ok((parse_head(key, kv.value())?, revision)),
    }
}

/// Exponential backoff with full jitter, from a seed of the process's
/// random hasher keys (no extra dependency for a few random bits).
struct Backoff {
    next: Duration,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_MIN,
            random: RandomState::new(),
            draws: 0,
        }
    }

    /// A pause between half and all of the current step; the step doubles
    /// up to [`BACKOFF_MAX`].
    fn pause(&mut self) -> Duration {
        self.draws += 1;
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let fraction = (self.random.hash_one(self.draws) % 1000) as u32;
        step / 2 + step / 2 * fraction / 1000
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

impl EtcdStore {
    /// Connect to the etcd cluster at `endpoints` (`http://host:port`) and
    /// use the keys under `prefix` (e.g. `/fedgate/south-east/`). Reads the
    /// head once, so an unreachable cluster is reported here, then starts
    /// following it.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, StoreError> {
        let keys = Keys::new(prefix)?;
        let described = endpoints.join(",");
        if endpoints.is_empty() {
            return Err(StoreError::Etcd("no etcd endpoints given".into()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(true)
            // A member cut off from the others refuses rather than answers stale.
            .with_require_leader(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Etcd(format!("connecting to {described}: {e}")))?;
        let resp = read(
            &client,
            &described,
            "reading the head",
            keys.head.as_bytes(),
            None,
        )
        .await?;
        let (head, revision) = head_of(&keys.head, &resp)?;
        let (sender, _) = watch::channel(head);
        let follower = tokio::spawn(follow(
            client.clone(),
            keys.clone(),
            described.clone(),
            sender.clone(),
            revision + 1,
        ));
        tracing::info!(endpoints = %described, prefix = %keys.prefix, head, "etcd store connected");
        Ok(Self {
            client: Box::new(client),
            keys,
            endpoints: described,
            head: sender,
            follower,
        })
    }

    pub(super) async fn head(&self) -> Result<u64, StoreError> {
        let resp = self.read("reading the head", &self.keys.head, None).await?;
        let (head, _) = head_of(&self.keys.head, &resp)?;
        advance(&self.head, head);
        Ok(head)
    }

    pub(super) async fn get(&self, version: u64) -> Result<Option<Version>, StoreError> {
        let key = self.keys.version(version);
        let resp = self.read(&format!("reading {key}"), &key, None).await?;
        resp.kvs()
            .first()
            .map(|kv| parse_version(&key, version, kv.value()))
            .transpose()
    }

    pub(super) async fn history(&self) -> Result<Vec<VersionMeta>, StoreError> {
        let end = self.keys.versions_end();
        let mut from = self.keys.versions.clone().into_bytes();
        let mut metas = Vec::new();
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(HISTORY_PAGE);
            let resp = self
                .read("reading the history", &from, Some(options))
                .await?;
            for kv in resp.kvs() {
                let key = String::from_utf8_lossy(kv.key());
                let expected = metas.len() as u64 + 1;
                let number = key
                    .strip_prefix(self.keys.versions.as_str())
                    .and_then(|n| n.parse::<u64>().ok());
                if number != Some(expected) {
                    return Err(StoreError::Damaged {
                        version: expected,
                        reason: format!(
                            "missing from {} (found {key} instead)",
                            self.keys.versions
                        ),
                    });
                }
                metas.push(parse_version(&key, expected, kv.value())?.meta);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(metas),
            }
        }
    }

    pub(super) async fn commit(&self, expected: u64, version: &Version) -> Result<(), StoreError> {
        let number = version.meta.version;
        let key = self.keys.version(number);
        let value = serde_json::to_vec(version).map_err(std::io::Error::other)?;
        let head_is_expected = if expected == 0 {
            Compare::create_revision(self.keys.head.as_str(), CompareOp::Equal, 0)
        } else {
            Compare::value(
                self.keys.head.as_str(),
                CompareOp::Equal,
                expected.to_string(),
            )
        };
        let txn = Txn::new()
            .when([
                head_is_expected,
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(key.as_str(), value, None),
                TxnOp::put(self.keys.head.as_str(), number.to_string(), None),
            ])
            .or_else([
                TxnOp::get(self.keys.head.as_str(), None),
                TxnOp::get(key.as_str(), None),
            ]);
        // An error leaves a try's outcome unknown; the next try settles it.
        let (attempt, resp) = retrying(
            &self.endpoints,
            &format!("committing version {number} (outcome unknown: it may yet be stored)"),
            |attempt| {
                let mut kv = self.client.kv_client();
                let txn = txn.clone();
                async move { kv.txn(txn).await.map(|resp| (attempt, resp)) }
            },
        )
        .await?;
        if resp.succeeded() {
            advance(&self.head, number);
            return Ok(());
        }
        let ops = resp.op_responses();
        let value = |i: usize| match ops.get(i) {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.value()),
            _ => None,
        };
        let head = value(0).map_or(Ok(0), |v| parse_head(&self.keys.head, v))?;
        let stored = value(1)
            .map(|v| parse_version(&key, number, v))
            .transpose()?;
        if attempt > 0 && stored.as_ref() == Some(version) {
            // An earlier try was applied and its answer lost.
            tracing::info!(version = number, "etcd commit found applied on a retry");
            advance(&self.head, number);
            return Ok(());
        }
        if head == expected {
            return Err(StoreError::Damaged {
                version: number,
                reason: format!("{key} exists although the head is {expected}"),
            });
        }
        Err(StoreError::Conflict { expected, head })
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    pub(super) fn describe(&self) -> String {
        format!("etcd {} {}", self.endpoints, self.keys.prefix)
    }

    async fn read(
        &self,
        what: &str,
        key: impl AsRef<[u8]>,
        options: Option<GetOptions>,
    ) -> Result<GetResponse, StoreError> {
        read(&self.client, &self.endpoints, what, key.as_ref(), options).await
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// Run `op` up to [`ATTEMPTS`] times, pausing between tries; its argument is
/// the try's number from 0.
async fn retrying<T, F>(
    endpoints: &str,
    what: &str,
    mut op: impl FnMut(u32) -> F,
) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut backoff = Backoff::new();
    let mut attempt = 0;
    loop {
        match op(attempt).await {
            Ok(t) => return Ok(t),
            Err(e) if attempt + 1 >= ATTEMPTS => {
                return Err(StoreError::Etcd(format!(
                    "{what} at {endpoints}: {e} (tried {ATTEMPTS} times)"
                )));
            }
            Err(e) => {
                tracing::debug!(endpoints, cause = %e, attempt, "etcd request failed; trying again");
                attempt += 1;
                tokio::time::sleep(backoff.pause()).await;
            }
        }
    }
}

/// A read of `key` (a range with `options`), tried like every operation.
async fn read(
    client: &Client,
    endpoints: &str,
    what: &str,
    key: &[u8],
    options: Option<GetOptions>,
) -> Result<GetResponse, StoreError> {
    retrying(endpoints, what, |_| {
        let mut kv = client.kv_client();
        let (key, options) = (key.to_vec(), options.clone());
        async move { kv.get(key, options).await }
    })
    .await
}

/// Follow the head key from `revision` on, for as long as the store lives.
async fn follow(
    client: Client,
    keys: Keys,
    endpoints: String,
    head: watch::Sender<u64>,
    mut revision: i64,
) {
    let mut backoff = Backoff::new();
    loop {
        let cause = match watch_head(
            &client,
            &endpoints,
            &keys,
            &head,
            &mut revision,
            &mut backoff,
        )
        .await
        {
            Ok(()) => "the watch ended".to_owned(),
            Err(e) => e,
        };
        tracing::warn!(endpoints = %endpoints, cause = %cause, "etcd watch of the head broke; watching again");
        loop {
            tokio::time::sleep(backoff.pause()).await;
            // Catch up with what was committed while the watch was away.
            match client.kv_client().get(keys.head.as_str(), None).await {
                Ok(resp) => match head_of(&keys.head, &resp) {
                    Ok((h, rev)) => {
                        advance(&head, h);
                        revision = rev + 1;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(endpoints = %endpoints, cause = %e, "etcd head unreadable")
                    }
                },
                Err(e) => {
                    tracing::warn!(endpoints = %endpoints, cause = %e, "etcd unreachable; the head is not followed")
                }
            }
        }
    }
}

/// One watch of the head key from `revision`, until it breaks.
async fn watch_head(
    client: &Client,
    endpoints: &str,
    keys: &Keys,
    head: &watch::Sender<u64>,
    revision: &mut i64,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let options = WatchOptions::new().with_start_revision(*revision);
    let mut stream = client
        .watch_client()
        .watch(keys.head.as_str(), Some(options))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(resp) = stream.message().await.map_err(|e| e.to_string())? {
        if resp.canceled() {
            return Err(format!(
                "cancelled by etcd (compacted at {}): {}",
                resp.compact_revision(),
                resp.cancel_reason()
            ));
        }
        if resp.created() {
            backoff.reset();
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            *revision = (*revision).max(kv.mod_revision() + 1);
            if event.event_type() != EventType::Put {
                tracing::warn!(key = %keys.head, "the etcd head key was deleted");
                continue;
            }
            match parse_head(&keys.head, kv.value()) {
                Ok(h) => advance(head, h),
                Err(e) => tracing::warn!(endpoints, cause = %e, "etcd head unreadable"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_under_the_prefix() {
        let keys = Keys::new("/fedgate/south-east").unwrap();
        assert_eq!(keys.head, "/fedgate/south-east/head");
        assert_eq!(
            keys.version(17),
            "/fedgate/south-east/versions/00000000000000000017"
        );
        assert_eq!(keys.versions_end(), b"/fedgate/south-east/versions0");
        assert!(keys.version(u64::MAX).as_bytes() < keys.versions_end().as_slice());
        assert!(Keys::new("//").is_err());
    }

    /// The control plane runs store calls in spawned tasks.
    #[test]
    fn store_futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let check = |store: &crate::store::Store, v: &Version| {
            send(&store.head());
            send(&store.get(1));
            send(&store.history());
            send(&store.commit(0, v));
        };
        let _ = check;
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_bounded() {
        let mut b = Backoff::new();
        let first = b.pause();
        assert!(first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN);
        for _ in 0..20 {
            assert!(b.pause() <= BACKOFF_MAX);
        }
        b.reset();
        assert!(b.pause() <= BACKOFF_MIN);
    }
}
