//! Real etcd members on loopback for the etcd store's tests: free ports,
//! a temporary data directory each, tracked by PID and killed on drop.
//!
//! etcd comes from Debian's `etcd-server` (`.ci/run` installs it). Without
//! it a test fails under CI (`CI` set) and is skipped loudly otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use control_plane::store::{Change, Version, VersionMeta};
use etcd_client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

/// Whether etcd is installed; panics under CI if it is not.
pub(crate) fn etcd_installed() -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd is not installed (Debian package etcd-server; .ci/run installs it)"
        );
        eprintln!(
            "\n*** SKIPPED: etcd is not installed (apt-get install etcd-server); \
             these tests fail instead when CI is set ***\n"
        );
    }
    found
}

/// One etcd member process.
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) client_url: String,
    peer_url: String,
    log: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of one or more members on 127.0.0.1.
pub(crate) struct Cluster {
    pub(crate) members: Vec<Member>,
    dir: tempfile::TempDir,
    /// `--initial-cluster`: every member's name and peer URL.
    initial: String,
    token: String,
}

fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all are chosen, so the ports differ.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

impl Cluster {
    /// Start `size` members and wait (bounded) until the cluster has a
    /// leader and serves a linearizable read. A port taken between choosing
    /// and binding it makes a member exit: then everything starts again on
    /// other ports, a few times at most.
    pub(crate) async fn start(size: usize) -> Self {
        let mut last = String::new();
        for _ in 0..3 {
            let mut cluster = Self::spawn(size);
            match cluster.wait_ready(Duration::from_secs(60)).await {
                Ok(()) => return cluster,
                Err(e) => last = e,
            }
        }
        panic!("etcd cluster of {size} did not start: {last}");
    }

    fn spawn(size: usize) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ports = free_ports(2 * size);
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", ports[2 * i]),
                peer_url: format!("http://127.0.0.1:{}", ports[2 * i + 1]),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("fedgate-test-{}-{}", std::process::id(), ports[0]);
        let mut cluster = Self {
            members,
            dir,
            initial,
            token,
        };
        for i in 0..size {
            cluster.run(i);
        }
        cluster
    }

    /// Start member `i`: the first time it joins the new cluster, later it
    /// comes back with its data directory.
    fn run(&mut self, i: usize) {
        let data = self.dir.path().join(&self.members[i].name);
        let m = &mut self.members[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(data)
            .args(["--listen-client-urls", &m.client_url])
            .args(["--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // Loopback, but a loaded 2-core machine: a patient election.
            .args(["--heartbeat-interval", "100"])
            .args(["--election-timeout", "1500"])
            .args(["--quota-backend-bytes", "67108864"])
            .args(["--snapshot-count", "10000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        m.child = Some(child);
    }

    /// Start killed member `i` again on its data directory and ports, and
    /// wait (bounded) until every member serves.
    pub(crate) async fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.run(i);
        if let Err(e) = self.wait_ready(Duration::from_secs(60)).await {
            panic!("etcd member {i} did not come back: {e}");
        }
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        for _ in 0..1000 {
            for m in &mut self.members {
                if let Some(Ok(Some(status))) = m.child.as_mut().map(Child::try_wait) {
                    return Err(format!("{} exited ({status}):\n{}", m.name, m.log_text()));
                }
            }
            match self.probe().await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "not ready within {timeout:?}: {last}\n{}",
            self.logs()
        ))
    }

    /// A linearizable read through every live member.
    async fn probe(&self) -> Result<(), String> {
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let mut c = connect(&m.client_url).await?;
            c.get("probe", None)
                .await
                .map_err(|e| format!("{}: {e}", m.name))?;
        }
        Ok(())
    }

    /// The client URLs of the members still running.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url.clone())
            .collect()
    }

    /// The index of the current leader, asked of the live members (bounded).
    pub(crate) async fn leader(&self) -> usize {
        for _ in 0..100 {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                let Ok(mut c) = connect(&m.client_url).await else {
                    continue;
                };
                let Ok(status) = c.status().await else {
                    continue;
                };
                let me = status.header().map(|h| h.member_id());
                if me.is_some() && me == Some(status.leader()) {
                    return i;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no etcd leader found:\n{}", self.logs());
    }

    /// SIGKILL member `i` by its PID and reap it.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().expect("SIGKILL etcd");
            let _ = child.wait();
        }
    }

    pub(crate) fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("--- {} ({})\n{}", m.name, m.client_url, m.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Member {
    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

async fn connect(endpoint: &str) -> Result<Client, String> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(3))
        .with_require_leader(true);
    Client::connect([endpoint], Some(options))
        .await
        .map_err(|e| e.to_string())
}

/// Version `n` as a writer called `who` makes it.
pub(crate) fn version(n: u64, who: &str) -> Version {
    Version {
        meta: VersionMeta {
            version: n,
            author: format!("admin wmcc/{who}"),
            time: "2026-11-23T00:00:00Z".into(),
            message: format!("{who}'s v{n}"),
            changes: vec![Change {
                op: "changed".into(),
                kind: "policy".into(),
                id: format!("wmcc/p{n}"),
            }],
            rollback_of: None,
        },
        files: BTreeMap::from([(
            "wmcc.yaml".to_owned(),
            format!("# {who} {n}\n{}\n", "x".repeat(200)),
        )]),
    }
}

/// A TCP relay on loopback in front of one etcd member that can lose
/// answers: while it holds, what etcd sends back is dropped; a cut closes
/// every connection it carries (the client sees an error) and lets new ones
/// through again. So a request is served while its answer is lost.
pub(crate) struct LossyRelay {
    pub(crate) url: String,
    holding: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl LossyRelay {
    /// Relay to `upstream` (`http://127.0.0.1:port`).
    pub(crate) async fn start(upstream: &str) -> Self {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// URL")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let holding = Arc::new(AtomicBool::new(false));
        let (cuts, _) = watch::channel(0);
        let accept = tokio::spawn(relay(listener, upstream, holding.clone(), cuts.subscribe()));
        Self {
            url,
            holding,
            cuts,
            accept,
        }
    }

    /// Drop etcd's answers from now on, until [`Self::cut`].
    pub(crate) fn hold(&self) {
        self.holding.store(true, Ordering::SeqCst);
    }

    /// Close every connection carried so far, and relay normally again.
    pub(crate) fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
        self.holding.store(false, Ordering::SeqCst);
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(
    listener: tokio::net::TcpListener,
    upstream: String,
    holding: Arc<AtomicBool>,
    cuts: watch::Receiver<u64>,
) {
    // Dropped with this task, so no connection outlives the relay.
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
            continue;
        };
        let (holding, mut cuts) = (holding.clone(), cuts.clone());
        cuts.mark_unchanged();
        connections.spawn(async move {
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = server.into_split();
            let up = tokio::io::copy(&mut client_rx, &mut server_tx);
            let down = async {
                let mut buf = vec![0; 64 * 1024];
                loop {
                    let n = server_rx.read(&mut buf).await?;
                    if n == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    if !holding.load(Ordering::SeqCst) {
                        client_tx.write_all(&buf[..n]).await?;
                    }
                }
            };
            tokio::select! {
                _ = up => {}
                _ = down => {}
                _ = cuts.changed() => {}
            }
        });
        while connections.try_join_next().is_some() {}
    }
}
