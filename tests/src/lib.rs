//! The end-to-end test kit: a federation on loopback made up for one test
//! (its own 127.A.B.0/24 so tests run in parallel), development certificates,
//! real edge processes (tracked by PID, killed on drop), and stand-in
//! origin services (HTTPS, echo, a checksummed blob source).
#![forbid(unsafe_code)]

use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

pub use control_plane::certs::Ca;
use control_plane::certs::{write_ca, write_issued};
pub use control_plane::forwarders::Format;
use federation::identity::Identity;
use federation::validate::parse_time;
use federation::{EdgeSnapshot, Sources};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const TRUST_DOMAIN: &str = "test.fedgate.example";

/// A /24 of loopback of this test's own: `127.A.B.x`.
pub fn subnet() -> [u8; 3] {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let b = NEXT.fetch_add(1, Ordering::Relaxed);
    let a = 100 + (std::process::id() % 100) as u8;
    [127, a, b]
}

pub fn ip(net: [u8; 3], host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], host))
}

/// Every `.rs` file under `dir`, for the tests that hold the docs to the
/// sources.
pub fn rust_sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d).expect("source directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[allow(clippy::disallowed_methods)] // tests read the clock to mint certificates
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// Add `--quic-head-start-ms 2000` to an edge's `args` unless a test gave
/// its own. The edge's default (300 ms) is for production, and
/// `proxy/tests/quic_recovery.rs` tests it; but on a busy 2-core machine a
/// QUIC handshake between two debug-built edges takes longer (865 ms with
/// four busy loops beside it), and CI saw tests that check flows go over
/// QUIC fail on a first flow over TCP. 2 s is the handshake attempt's own
/// limit: a first flow waits for that attempt to end.
pub fn with_test_head_start(args: &mut Vec<String>) {
    if !args.iter().any(|a| a == "--quic-head-start-ms") {
        args.extend(["--quic-head-start-ms".into(), "2000".into()]);
    }
}

/// Directory, CA and certificates of one test.
pub struct World {
    pub dir: tempfile::TempDir,
    pub net: [u8; 3],
    ca: Ca,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = now();
        let ca = Ca::new(
            TRUST_DOMAIN,
            "Fedgate test CA",
            (
                now - SignedDuration::from_hours(1),
                now + SignedDuration::from_hours(24 * 30),
            ),
        )
        .expect("CA");
        write_ca(dir.path(), &ca).expect("write CA");
        Self {
            dir,
            net: subnet(),
            ca,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// Issue `identity` a certificate (valid from an hour ago for a day),
    /// written as `STEM.pem`/`STEM.key`; returns the paths and the serial.
    pub fn issue(&self, identity: &Identity, stem: &str) -> (PathBuf, PathBuf, String) {
        self.issue_from(&self.ca, identity, stem)
    }

    /// As [`World::issue`], issued by `ca`.
    pub fn issue_from(
        &self,
        ca: &Ca,
        identity: &Identity,
        stem: &str,
    ) -> (PathBuf, PathBuf, String) {
        let now = now();
        let issued = ca
            .issue(
                identity,
                (
                    now - SignedDuration::from_hours(1),
                    now + SignedDuration::from_hours(24),
                ),
                None,
            )
            .expect("issue");
        let [cert, key] = write_issued(self.dir.path(), stem, &issued).expect("write cert");
        (cert, key, issued.serial_hex)
    }

    /// Issue an edge certificate; returns (cert, key) paths and the serial.
    pub fn edge_cert(
        &self,
        org: &str,
        name: &str,
        stem: &str,
        validity: Option<(Timestamp, Timestamp)>,
        serial: Option<&[u8]>,
    ) -> (PathBuf, PathBuf, String) {
        self.edge_cert_from(&self.ca, org, name, stem, validity, serial)
    }

    /// The PEM text of this world's CA certificate.
    pub fn ca_cert_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// A second CA of the same trust domain (a CA rollover's new CA); its
    /// files are not written.
    pub fn another_ca(&self, name: &str) -> Ca {
        let now = now();
        Ca::new(
            TRUST_DOMAIN,
            name,
            (
                now - SignedDuration::from_hours(1),
                now + SignedDuration::from_hours(24 * 30),
            ),
        )
        .expect("CA")
    }

    /// As [`World::edge_cert`], issued by `ca`.
    pub fn edge_cert_from(
        &self,
        ca: &Ca,
        org: &str,
        name: &str,
        stem: &str,
        validity: Option<(Timestamp, Timestamp)>,
        serial: Option<&[u8]>,
    ) -> (PathBuf, PathBuf, String) {
        let now = now();
        let validity = validity.unwrap_or((
            now - SignedDuration::from_hours(1),
            now + SignedDuration::from_hours(24),
        ));
        let issued = ca
            .issue(
                &Identity::edge(org, name).expect("identity"),
                validity,
                serial,
            )
            .expect("issue");
        let [cert, key] = write_issued(self.dir.path(), stem, &issued).expect("write cert");
        (cert, key, issued.serial_hex)
    }

    /// Check a federation document (must be valid) and write the snapshot
    /// of `edge` to a file.
    pub fn snapshot(&self, yaml: &str, edge: &str, file: &str) -> PathBuf {
        self.snapshot_version(yaml, edge, file, 1)
    }

    /// As [`World::snapshot`], stamped with `version`. The file is written
    /// whole under a temporary name and renamed over `file`, as a control
    /// plane would, so a watching edge never reads half of it.
    pub fn snapshot_version(&self, yaml: &str, edge: &str, file: &str, version: u64) -> PathBuf {
        let (loaded, fed) = self.load(yaml);
        let snap = EdgeSnapshot::build(&loaded.spec, &fed, edge, version).expect("snapshot");
        let path = self.path(file);
        let tmp = self.path(&format!("{file}.tmp"));
        fs::write(&tmp, snap.to_json()).expect("write snapshot");
        fs::rename(&tmp, &path).expect("rename snapshot");
        path
    }

    /// The conditional-forwarder configuration `fedctl dns-forwarders` prints
    /// for `org` from a valid document.
    pub fn dns_forwarders(&self, yaml: &str, org: &str, format: Format) -> String {
        let (loaded, fed) = self.load(yaml);
        let (zones, targets) =
            control_plane::forwarders::plan(&loaded.spec, &fed, org).expect("forwarders");
        control_plane::forwarders::render(format, &fed.name, org, &zones, &targets)
    }

    fn load(&self, yaml: &str) -> (federation::Loaded, federation::Federation) {
        let mut sources = Sources::new();
        sources.add("test.yaml", yaml);
        let loaded = federation::load(&sources, parse_time("2026-06-01", false).expect("date"));
        let fed = loaded
            .federation
            .clone()
            .unwrap_or_else(|| panic!("test federation invalid: {:#?}", loaded.diagnostics));
        (loaded, fed)
    }
}

impl World {
    /// A control plane (`fedgate-control` at `bin`) on `listen` holding `doc`
    /// (written as `fed/test.yaml`) as version 1: certificate of replica
    /// [`CONTROL_NAME`], snapshot-signing key in `signing/`, data in
    /// `control-data/`, long polls of 5 s. Waits until version 1 is published.
    pub fn start_control(&self, bin: &Path, doc: &str, listen: SocketAddr) -> Proc {
        let args = self.control_args(doc, listen);
        assert!(
            bin.exists(),
            "{} is missing: build it first (`cargo build -p control-plane`, or run `cargo test --workspace`)",
            bin.display()
        );
        let mut p = Proc::start("control", bin, &args, self.path("control.log"));
        p.wait_for("version published", Duration::from_secs(20));
        p
    }

    /// The arguments of [`World::start_control`]'s control plane, its
    /// document, certificate and key written.
    pub fn control_args(&self, doc: &str, listen: SocketAddr) -> Vec<String> {
        let fed = self.path("fed");
        fs::create_dir_all(&fed).expect("fed dir");
        fs::write(fed.join("test.yaml"), doc).expect("write doc");
        let (cert, key, _) = self.issue(&Identity::control(CONTROL_NAME).expect("id"), "control");
        control_plane::certs::write_signing_key(&self.path("signing")).expect("signing key");
        vec![
            "run".into(),
            "--data".into(),
            self.path("control-data").display().to_string(),
            "--listen".into(),
            listen.to_string(),
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
            "--ca".into(),
            self.ca_pem().display().to_string(),
            "--signing-key".into(),
            self.path("signing/signing.key").display().to_string(),
            "--long-poll-secs".into(),
            "5".into(),
            "--init".into(),
            fed.display().to_string(),
        ]
    }

    /// An edge (`fedgate-edge` at `bin`) following the control plane at
    /// `control` (cache `NAME.cache.json`, audit `NAME.audit.jsonl`), not
    /// waited for.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_edge_following(
        &self,
        bin: &Path,
        name: &str,
        edge: &str,
        control: SocketAddr,
        cert: &Path,
        key: &Path,
        extra: &[String],
    ) -> Proc {
        assert!(
            bin.exists(),
            "{} is missing: build it first (`cargo build -p proxy`, or run `cargo test --workspace`)",
            bin.display()
        );
        let mut args: Vec<String> = vec![
            "run".into(),
            "--edge".into(),
            edge.into(),
            "--control".into(),
            control.to_string(),
            "--control-key".into(),
            self.path("signing/signing.pub").display().to_string(),
            "--cache".into(),
            self.path(&format!("{name}.cache.json"))
                .display()
                .to_string(),
            "--poll-secs".into(),
            "5".into(),
            "--start-wait-secs".into(),
            "5".into(),
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
            "--ca".into(),
            self.ca_pem().display().to_string(),
            "--audit".into(),
            self.path(&format!("{name}.audit.jsonl"))
                .display()
                .to_string(),
        ];
        args.extend(extra.iter().cloned());
        with_test_head_start(&mut args);
        Proc::start(name, bin, &args, self.path(&format!("{name}.log")))
    }

    /// Certificate and key of an admin: `Some(org)` for admin `ORG/admin`
    /// (`ORG-admin.pem`), `None` for federation admin `fiona` (`fed-admin.pem`).
    pub fn admin(&self, org: Option<&str>) -> (PathBuf, PathBuf) {
        let (id, stem) = match org {
            Some(o) => (
                Identity::admin(o, "admin").expect("id"),
                format!("{o}-admin"),
            ),
            None => (
                Identity::federation_admin("fiona").expect("id"),
                "fed-admin".into(),
            ),
        };
        let (c, k, _) = self.issue(&id, &stem);
        (c, k)
    }
}

/// The replica name of [`World::start_control`]'s control plane.
pub const CONTROL_NAME: &str = "c1";

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// A process started by a test: stderr to a file, killed by PID on drop.
pub struct Proc {
    child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Proc {
    pub fn start(name: &str, program: &Path, args: &[String], log: PathBuf) -> Self {
        let err = fs::File::create(&log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .env("FEDGATE_LOG", "info,proxy=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self {
            child,
            log,
            name: name.to_owned(),
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (bounded) until the log holds `needle`; panics with the log if not.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_times(needle, 1, timeout);
    }

    /// Wait (bounded) until the log holds `needle` `times` times; panics
    /// with the log if not.
    pub fn wait_for_times(&mut self, needle: &str, times: usize, timeout: Duration) {
        let deadline = std::time::SystemTime::now() + timeout;
        for _ in 0..10_000 {
            if self.log_text().matches(needle).count() >= times {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before `{needle}`:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if std::time::SystemTime::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{} did not log `{needle}` {times} time(s) within {timeout:?}:\n{}",
            self.name,
            self.log_text()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        for _ in 0..(timeout.as_millis() / 20).max(1) {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Send SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(timeout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `program` with `args` and return (status success, stdout, stderr).
pub fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e} (is it installed? CI installs it in .ci/run)")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether `tool` is on the PATH. Missing, a test that needs it fails under
/// `CI=true` (CI installs it in .ci/run) and is skipped, loudly, elsewhere.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`{tool}` is not installed; .ci/run installs it (apt-get)"
        );
        eprintln!("SKIPPED: `{tool}` is not installed (CI=true would fail here)");
    }
    found
}

/// Network namespaces made by one test, each playing a host or a network
/// of its own; deleted on drop (their veths with them), also when the test
/// fails. Names carry this process's id, so parallel runs never share one.
/// Declare it before the [`Proc`]s started in it, so that they are stopped
/// first.
pub struct Namespaces {
    prefix: String,
    made: Vec<String>,
}

impl Namespaces {
    /// Whether network namespaces can be made here (root, iproute2).
    /// Without, a test fails under `CI=true` and is skipped, loudly,
    /// elsewhere.
    pub fn available() -> bool {
        if !require_tool("ip") {
            return false;
        }
        let probe = format!("fg{}probe", std::process::id() % 100_000);
        let (ok, _, err) = run("ip", &["netns", "add", &probe]);
        if ok {
            run("ip", &["netns", "del", &probe]);
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot make a network namespace (CI runs as root): {err}"
        );
        eprintln!("SKIPPED: cannot make a network namespace (not root?): {err}");
        false
    }

    /// Make one namespace per tag, loopback up in each.
    pub fn new(tags: &[&str]) -> Self {
        let mut ns = Self {
            prefix: format!("fg{}", std::process::id() % 100_000),
            made: Vec::new(),
        };
        for tag in tags {
            let name = ns.name(tag);
            // A namespace left by an earlier run of this pid: gone first.
            run("ip", &["netns", "del", &name]);
            let (ok, _, err) = run("ip", &["netns", "add", &name]);
            assert!(ok, "ip netns add {name}: {err}");
            ns.made.push(name);
            ns.ip(tag, &["link", "set", "lo", "up"]);
        }
        ns
    }

    pub fn name(&self, tag: &str) -> String {
        format!("{}{tag}", self.prefix)
    }

    /// `ip -n NS ARGS...`; panics on failure.
    pub fn ip(&self, tag: &str, args: &[&str]) {
        let name = self.name(tag);
        let mut all = vec!["-n", name.as_str()];
        all.extend_from_slice(args);
        let (ok, _, err) = run("ip", &all);
        assert!(ok, "ip {}: {err}", all.join(" "));
    }

    /// A veth pair between two namespaces: `(tag, interface, address/len)`
    /// at each end, both up.
    pub fn link(&self, a: (&str, &str, &str), b: (&str, &str, &str)) {
        let (na, nb) = (self.name(a.0), self.name(b.0));
        let (ok, _, err) = run(
            "ip",
            &[
                "link", "add", a.1, "netns", &na, "type", "veth", "peer", "name", b.1, "netns", &nb,
            ],
        );
        assert!(ok, "veth {}:{} - {}:{}: {err}", a.0, a.1, b.0, b.1);
        for (tag, dev, cidr) in [a, b] {
            self.ip(tag, &["addr", "add", cidr, "dev", dev]);
            self.ip(tag, &["link", "set", dev, "up"]);
        }
    }

    /// Run `program ARGS...` in a namespace to its end.
    pub fn run(&self, tag: &str, program: &str, args: &[&str]) -> (bool, String, String) {
        let name = self.name(tag);
        let mut all = vec!["netns", "exec", name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Start `program ARGS...` in a namespace (`ip netns exec` execs it:
    /// the [`Proc`]'s PID is the program's).
    pub fn start(
        &self,
        tag: &str,
        name: &str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Proc {
        let mut all = vec![
            "netns".to_string(),
            "exec".into(),
            self.name(tag),
            program.display().to_string(),
        ];
        all.extend(args.iter().cloned());
        Proc::start(name, Path::new("ip"), &all, log)
    }

    /// Wait (at most 10 s) until `addr` takes TCP connections, as seen from
    /// inside a namespace.
    pub fn wait_tcp(&self, tag: &str, addr: SocketAddr) {
        let probe = format!("exec 3<>/dev/tcp/{}/{}", addr.ip(), addr.port());
        for _ in 0..100 {
            if self.run(tag, "bash", &["-c", &probe]).0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{addr} takes no connection in {}", self.name(tag));
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            run("ip", &["netns", "del", name]);
        }
    }
}

/// A small filesystem of one test's own (a tmpfs of a set size, mounted on
/// a directory of the test's), to fill as a disk fills; unmounted on drop,
/// also when the test fails. Declare it after the [`World`] whose directory
/// it is in and before the [`Proc`]s writing to it, so that they stop
/// first and the mount goes before the directory.
pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mount a tmpfs of `size` (`mount`'s form: `256k`) on `dir`. Without
    /// root a test fails under `CI=true` (CI runs as root) and is skipped,
    /// loudly, elsewhere: `None`.
    pub fn mount(dir: &Path, size: &str) -> Option<Self> {
        fs::create_dir_all(dir).expect("mount point");
        let shown = dir.display().to_string();
        let options = format!("size={size},mode=0700");
        let (ok, _, err) = run(
            "mount",
            &["-t", "tmpfs", "-o", &options, "fedgate-test", &shown],
        );
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot mount a tmpfs on {shown} (CI runs as root): {err}"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs (not root?): {err}");
            return None;
        }
        Some(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Fill what is left of the disk with a file `name`: the disk is full
    /// when this returns (the error that ended the writing says so).
    pub fn fill(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        let mut file = fs::File::create(&path).expect("filler");
        let chunk = [0x5au8; 4096];
        // Bounded: a disk of 4 GiB at most takes this many chunks.
        for _ in 0..(1 << 20) {
            if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
                assert_eq!(
                    e.raw_os_error(),
                    Some(28),
                    "filling {}: {e} (expected ENOSPC)",
                    path.display()
                );
                return path;
            }
        }
        panic!("{} never filled", self.dir.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let shown = self.dir.display().to_string();
        let (ok, _, err) = run("umount", &[&shown]);
        if !ok {
            eprintln!("umount {shown}: {err}; detaching it");
            run("umount", &["-l", &shown]);
        }
    }
}

/// `dig @server -p PORT ARGS...`, one try of two seconds; returns its output
/// (the answer as text) and whether it exited 0.
pub fn dig(server: SocketAddr, args: &[&str]) -> (bool, String) {
    let port = server.port().to_string();
    let ip = format!("@{}", server.ip());
    let mut all = vec![ip.as_str(), "-p", &port, "+time=2", "+tries=1"];
    all.extend_from_slice(args);
    let (ok, out, err) = run("dig", &all);
    (ok, format!("{out}{err}"))
}

/// The addresses (A and AAAA) in a `dig` answer section.
pub fn dig_addresses(output: &str) -> Vec<String> {
    let mut in_answer = false;
    let mut out = Vec::new();
    for line in output.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            in_answer = true;
            continue;
        }
        if in_answer {
            if line.trim().is_empty() {
                break;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 && (f[3] == "A" || f[3] == "AAAA") {
                out.push(f[4].to_owned());
            }
        }
    }
    out
}

/// A real unbound on `listen` (UDP and TCP), in the foreground, with its
/// config in `dir`: no chroot, no user switch, no remote control, queries to
/// loopback allowed. `extra` is appended to the config (zones, forwards).
/// Waits until it serves.
pub fn start_unbound(dir: &Path, name: &str, listen: SocketAddr, extra: &str) -> Proc {
    let conf = dir.join(format!("{name}.conf"));
    let text = format!(
        "server:\n    interface: {ip}@{port}\n    port: {port}\n    do-daemonize: no\n    chroot: \"\"\n    username: \"\"\n    directory: \"{dir}\"\n    pidfile: \"\"\n    use-syslog: no\n    logfile: \"\"\n    verbosity: 1\n    num-threads: 1\n    access-control: 127.0.0.0/8 allow\n    do-not-query-localhost: no\n    do-ip6: no\n    module-config: \"iterator\"\n    qname-minimisation: no\n    harden-referral-path: no\n    use-caps-for-id: no\nremote-control:\n    control-enable: no\n{extra}",
        ip = listen.ip(),
        port = listen.port(),
        dir = dir.display(),
    );
    fs::write(&conf, text).expect("write unbound.conf");
    let (ok, out, err) = run("unbound-checkconf", &[&conf.display().to_string()]);
    assert!(
        ok,
        "unbound-checkconf refused {}: {out}{err}",
        conf.display()
    );
    let args = vec!["-d".to_string(), "-c".into(), conf.display().to_string()];
    let mut p = Proc::start(
        name,
        Path::new("unbound"),
        &args,
        dir.join(format!("{name}.log")),
    );
    p.wait_for("start of service", Duration::from_secs(20));
    p
}

/// The deterministic bytes of the blob origin: xorshift64 from a seed.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// SHA-256 of `len` bytes of the pattern from `seed`.
pub fn pattern_digest(seed: u64, len: u64) -> [u8; 32] {
    let mut p = Pattern::new(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        p.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        left -= n as u64;
    }
    h.finalize().into()
}

/// An echo server.
pub async fn echo_origin(addr: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.expect("bind echo");
    let local = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    local
}

/// A source of bytes: the client sends a u64 (big endian) length and a u64
/// seed, then receives that many pattern bytes, then EOF.
pub async fn blob_origin(addr: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.expect("bind blob");
    let local = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(len) = s.read_u64().await else { return };
                let Ok(seed) = s.read_u64().await else { return };
                let mut p = Pattern::new(seed);
                let mut buf = vec![0u8; 256 * 1024];
                let mut left = len;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    p.fill(&mut buf[..n]);
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    local
}

/// An HTTPS origin for `name` with a self-signed certificate written to
/// `cert_out` (for `curl --cacert`). Answers every request with `body`.
pub async fn https_origin(
    addr: SocketAddr,
    name: &str,
    cert_out: &Path,
    body: &'static str,
) -> SocketAddr {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("self-signed");
    fs::File::create(cert_out)
        .and_then(|mut f| f.write_all(cert.pem().as_bytes()))
        .expect("write origin cert");
    let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![der], key_der)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind(addr).await.expect("bind https");
    let local = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    local
}
