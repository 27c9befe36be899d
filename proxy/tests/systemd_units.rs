//! The systemd units of docs/deploy, as a host runs them: a control plane
//! and two edges started from `fedgate-control.service` and
//! `fedgate-edge.service`, each with the unit's environment, its
//! `EnvironmentFile` (written as the example beside the unit says), its
//! `ExecStart` expanded as systemd expands it, and its user and
//! capabilities: an unprivileged user (`nobody` here, `fedgate` on a host)
//! with the unit's ambient capabilities and no new privileges (`setpriv`).
//! Each says on its notify socket (`NOTIFY_SOCKET`, `Type=notify`) when it
//! is ready, its status, its watchdog heartbeat (`WATCHDOG_USEC`) and when
//! it stops. Visiting staff then reach a home service through the edges
//! (split-horizon DNS on port 53, which the unit's one capability allows),
//! and without that capability the edge refuses to start and says why.
//!
//! `systemd-analyze verify` checks each unit's syntax and settings. The
//! sandboxing settings (`ProtectSystem=` and the rest) need systemd as the
//! service manager, which this machine does not run: they are verified, not
//! exercised. Paths under `/etc`, `/var` and `/usr/local/bin` are mapped
//! into the test's directory; everything listens on the test's loopback /24.

mod common;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use tests::{Proc, World};

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy");
/// The user the test runs the units as (`nobody`): unprivileged, as the
/// units' `fedgate`.
const UID: &str = "65534";

/// The `[Service]` settings of a unit that starting it takes.
struct Unit {
    /// `Environment=` assignments, in order.
    env: Vec<(String, String)>,
    env_file: String,
    exec: String,
    user: String,
    ambient: String,
    bounding: String,
    no_new_privs: bool,
    state_dirs: Vec<String>,
    watchdog: String,
}

fn read_unit(name: &str) -> (String, Unit) {
    let path = Path::new(UNITS).join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut unit = Unit {
        env: Vec::new(),
        env_file: String::new(),
        exec: String::new(),
        user: String::new(),
        ambient: String::new(),
        bounding: String::new(),
        no_new_privs: false,
        state_dirs: Vec::new(),
        watchdog: String::new(),
    };
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        let value = value.to_owned();
        match key {
            "Environment" => {
                assert!(!value.contains('"'), "quoted Environment= in {name}");
                for pair in value.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("VAR=VALUE");
                    unit.env.push((k.to_owned(), v.to_owned()));
                }
            }
            "EnvironmentFile" => unit.env_file = value,
            "ExecStart" => unit.exec = value,
            "User" => unit.user = value,
            "AmbientCapabilities" => unit.ambient = value,
            "CapabilityBoundingSet" => unit.bounding = value,
            "NoNewPrivileges" => unit.no_new_privs = value == "yes",
            "StateDirectory" => unit.state_dirs.push(format!("/var/lib/{value}")),
            "LogsDirectory" => unit.state_dirs.push(format!("/var/log/{value}")),
            "WatchdogSec" => unit.watchdog = value,
            _ => {}
        }
    }
    (text, unit)
}

/// `KEY=VALUE` lines of an environment file.
fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// A host of the test's own: `/etc`, `/var` and `/usr/local/bin` mapped
/// into `root`.
struct Host {
    root: PathBuf,
}

impl Host {
    fn new(w: &World, name: &str) -> Self {
        let root = w.path(name);
        std::fs::create_dir_all(root.join("etc/fedgate")).expect("etc");
        Self { root }
    }

    fn map(&self, s: &str) -> String {
        for bin in ["fedgate-edge", "fedgate-control"] {
            if s == format!("/usr/local/bin/{bin}") {
                return Path::new(EDGE).with_file_name(bin).display().to_string();
            }
        }
        if s.starts_with("/etc/") || s.starts_with("/var/") {
            format!("{}{s}", self.root.display())
        } else {
            s.to_owned()
        }
    }

    /// Put `from` at `/etc/fedgate/NAME`, owned by root and readable by the
    /// service's group, as docs/deployment.md says (`install -g fedgate -m 0640`).
    fn install(&self, from: &Path, name: &str) {
        let to = self.root.join("etc/fedgate").join(name);
        if from.is_dir() {
            std::fs::create_dir_all(&to).expect("dir");
            for e in std::fs::read_dir(from).expect("read dir").flatten() {
                std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
            }
        } else {
            std::fs::copy(from, &to).expect("copy");
        }
        let (ok, _, err) = tests::run("chown", &["-R", &format!("0:{UID}"), &path(&to)]);
        assert!(ok, "chown: {err}");
        let (ok, _, err) = tests::run("chmod", &["-R", "u=rwX,g=rX,o=", &path(&to)]);
        assert!(ok, "chmod: {err}");
    }

    fn write(&self, name: &str, text: &str) {
        let tmp = self.root.join("incoming").join(name);
        std::fs::create_dir_all(tmp.parent().expect("parent")).expect("dir");
        std::fs::write(&tmp, text).expect("write");
        self.install(&tmp, name);
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Words of `ExecStart`, expanded as systemd does: `$VAR` becomes its
/// value split on white space (none when empty), `${VAR}` one word.
fn expand(exec: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for word in exec.split_whitespace() {
        if let Some(var) = word.strip_prefix('$').filter(|v| !v.starts_with('{')) {
            let value = env
                .get(var)
                .unwrap_or_else(|| panic!("${var} of ExecStart is set nowhere"));
            out.extend(value.split_whitespace().map(str::to_owned));
        } else {
            let mut w = word.to_owned();
            for (k, v) in env {
                w = w.replace(&format!("${{{k}}}"), v);
            }
            assert!(!w.contains('$'), "unexpanded `{w}` in ExecStart");
            out.push(w);
        }
    }
    out
}

/// `CAP_NET_BIND_SERVICE CAP_X` as setpriv's `-all,+net_bind_service,+x`.
fn caps(list: &str) -> String {
    let mut s = "-all".to_owned();
    for cap in list.split_whitespace() {
        s.push_str(",+");
        s.push_str(&cap.trim_start_matches("CAP_").to_lowercase());
    }
    s
}

/// The service manager's end of one service: its notify socket.
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl Notify {
    fn new(w: &World, name: &str) -> Self {
        let path = w.path(&format!("{name}.notify"));
        let socket = UnixDatagram::bind(&path).expect("notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let (ok, _, err) = tests::run("chmod", &["0777", &path.display().to_string()]);
        assert!(ok, "chmod: {err}");
        Self {
            socket,
            path,
            seen: Vec::new(),
        }
    }

    /// Wait (bounded) for a message with a line `line`; returns the message.
    fn wait(&mut self, line: &str, timeout: Duration, p: &Proc) -> String {
        if let Some(m) = self.seen.iter().find(|m| m.lines().any(|l| l == line)) {
            return m.clone();
        }
        let deadline = SystemTime::now() + timeout;
        let mut buf = [0u8; 4096];
        while SystemTime::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(m.clone());
                if m.lines().any(|l| l == line) {
                    return m;
                }
            }
        }
        panic!(
            "{} sent no `{line}` within {timeout:?}; it sent {:?}\n{}",
            p.name,
            self.seen,
            p.log_text()
        );
    }

    /// Take what arrives for `d`.
    fn pump(&mut self, d: Duration) {
        let deadline = SystemTime::now() + d;
        let mut buf = [0u8; 4096];
        while SystemTime::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    fn count(&self, line: &str) -> usize {
        self.seen
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}

/// Start `unit` on `host` with `env_text` as its environment file, as
/// systemd would, as the unprivileged user; `ambient` overrides the unit's
/// ambient capabilities (to start it without them).
fn start_unit(
    host: &Host,
    unit: &Unit,
    env_text: &str,
    notify: &Notify,
    name: &str,
    log: PathBuf,
    ambient: Option<&str>,
) -> Proc {
    assert_eq!(unit.user, "fedgate", "{name}: the unit's user");
    let env_name = unit
        .env_file
        .strip_prefix("/etc/fedgate/")
        .expect("EnvironmentFile in /etc/fedgate");
    host.write(env_name, env_text);
    for dir in &unit.state_dirs {
        let d = host.map(dir);
        std::fs::create_dir_all(&d).expect("state dir");
        let (ok, _, err) = tests::run("chown", &[&format!("{UID}:{UID}"), &d]);
        assert!(ok, "chown: {err}");
    }
    // The unit's Environment=, then its EnvironmentFile= over it.
    let mut env: BTreeMap<String, String> = unit.env.iter().cloned().collect();
    env.extend(env_file(env_text));
    let env: BTreeMap<String, String> = env.into_iter().map(|(k, v)| (k, host.map(&v))).collect();
    let words: Vec<String> = expand(&unit.exec, &env)
        .iter()
        .map(|w| host.map(w))
        .collect();
    let watchdog_secs: u64 = unit
        .watchdog
        .trim_end_matches('s')
        .parse()
        .expect("WatchdogSec in seconds");
    assert!(watchdog_secs > 0);
    let mut args = vec![
        "-i".to_owned(),
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        "FEDGATE_LOG=info".to_owned(),
        format!("NOTIFY_SOCKET={}", notify.path.display()),
        // The unit's WatchdogSec= is 30 s; a second here, to see beats.
        "WATCHDOG_USEC=1000000".to_owned(),
    ];
    args.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    args.extend([
        "setpriv".to_owned(),
        format!("--reuid={UID}"),
        format!("--regid={UID}"),
        "--clear-groups".to_owned(),
        format!("--inh-caps={}", caps(ambient.unwrap_or(&unit.ambient))),
        format!("--ambient-caps={}", caps(ambient.unwrap_or(&unit.ambient))),
        format!("--bounding-set={}", caps(&unit.bounding)),
    ]);
    if unit.no_new_privs {
        args.push("--no-new-privs".to_owned());
    }
    args.push("--".to_owned());
    args.extend(words);
    Proc::start(name, Path::new("/usr/bin/env"), &args, log)
}

/// The user, ambient capabilities and no-new-privileges flag a process
/// runs with, from `/proc/PID/status`.
fn credentials(p: &Proc) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    (field("Uid:"), field("CapAmb:"), field("NoNewPrivs:"))
}

fn is_root() -> bool {
    let (_, uid, _) = tests::run("id", &["-u"]);
    let root = uid.trim() == "0";
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the systemd units' test runs the services as another user: it needs root (CI runs as root)"
        );
        eprintln!("SKIPPED: not root; the services are started as another user");
    }
    root
}

#[test]
fn the_units_verify() {
    if !tests::require_tool("systemd-analyze") || !tests::require_tool("systemd-sysusers") {
        return;
    }
    let w = World::new();
    let mut files = Vec::new();
    for name in ["fedgate-edge.service", "fedgate-control.service"] {
        let (text, _) = read_unit(name);
        // The binaries where this build put them, as an install would.
        let bin = Path::new(EDGE).parent().expect("target dir");
        let text = text.replace("/usr/local/bin", &bin.display().to_string());
        let file = w.path(name);
        std::fs::write(&file, text).expect("unit");
        files.push(file.display().to_string());
    }
    let args: Vec<&str> = std::iter::once("verify")
        .chain(files.iter().map(String::as_str))
        .collect();
    let (ok, out, err) = tests::run("systemd-analyze", &args);
    assert!(ok, "systemd-analyze verify: {out}{err}");
    // It reports what it does not take (an unknown key, a bad value) as
    // warnings naming the file, and still exits 0.
    assert!(
        !files.iter().any(|f| err.contains(f.as_str())),
        "systemd-analyze verify: {err}"
    );

    // The user both units run as, as systemd-sysusers makes it from the
    // file beside them (into a root of the test's own).
    let root = w.path("sysroot");
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    for f in ["passwd", "group", "shadow", "gshadow"] {
        std::fs::write(root.join("etc").join(f), "").expect("empty");
    }
    let sysusers = Path::new(UNITS).join("fedgate.sysusers");
    let (ok, out, err) = tests::run(
        "systemd-sysusers",
        &[&format!("--root={}", root.display()), &path(&sysusers)],
    );
    assert!(ok, "systemd-sysusers: {out}{err}");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    for name in ["fedgate-edge.service", "fedgate-control.service"] {
        let (_, unit) = read_unit(name);
        assert!(
            passwd.starts_with(&format!("{}:x:", unit.user))
                && passwd.trim_end().ends_with(":/usr/sbin/nologin"),
            "{name} runs as {}; sysusers made {passwd}",
            unit.user
        );
    }

    // Every variable ExecStart takes is set by the unit or by the example
    // environment file beside it, and the example sets nothing else.
    for (unit_name, example) in [
        ("fedgate-edge.service", "edge.env"),
        ("fedgate-control.service", "control.env"),
    ] {
        let (_, unit) = read_unit(unit_name);
        let text = std::fs::read_to_string(Path::new(UNITS).join(example)).expect("example");
        let example_vars = env_file(&text);
        assert!(
            unit.env_file.ends_with(example),
            "{unit_name} reads {}",
            unit.env_file
        );
        let mut env: BTreeMap<String, String> = unit.env.iter().cloned().collect();
        for k in example_vars.keys() {
            assert!(
                !env.contains_key(k),
                "{example} sets {k}, which {unit_name} sets"
            );
        }
        env.extend(example_vars);
        let words = expand(&unit.exec, &env);
        assert!(words.len() > 2, "{words:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_runs_from_the_units_unprivileged() {
    if !is_root() || !tests::require_tool("setpriv") || !tests::require_tool("dig") {
        return;
    }
    let w = World::new();
    // The services, as another user, reach into the test's directory.
    let (ok, _, err) = tests::run("chmod", &["0755", &path(w.dir.path())]);
    assert!(ok, "chmod: {err}");
    let origin_cert = w.path("origin.pem");
    tests::https_origin(
        addr(&w, 10, 8443),
        "web.home.example",
        &origin_cert,
        "hello from home/web\n",
    )
    .await;
    let doc = document(&w, &Options::default());

    // The control plane, seeded from the document on its first start.
    let (_, control_unit) = read_unit("fedgate-control.service");
    let control_host = Host::new(&w, "control-host");
    let control_addr = addr(&w, 5, 7443);
    w.control_args(&doc, control_addr);
    for (from, to) in [
        ("control.pem", "control.pem"),
        ("control.key", "control.key"),
        ("ca.pem", "ca.pem"),
        ("signing/signing.key", "signing.key"),
        ("fed", "federation"),
    ] {
        control_host.install(&w.path(from), to);
    }
    let control_metrics = addr(&w, 5, 9102);
    let mut control_notify = Notify::new(&w, "control");
    let control = start_unit(
        &control_host,
        &control_unit,
        &format!(
            "FEDGATE_CONTROL_ARGS=--listen {control_addr} --init /etc/fedgate/federation --long-poll-secs 5 --metrics {control_metrics}\n"
        ),
        &control_notify,
        "control",
        w.path("control.log"),
        None,
    );
    let ready = control_notify.wait("READY=1", Duration::from_secs(20), &control);
    assert!(ready.contains("STATUS=replica c1: API on"), "{ready}");
    // No capability at all.
    assert_eq!(
        credentials(&control),
        (UID.into(), "0000000000000000".into(), "1".into())
    );
    control_notify.wait(
        "STATUS=replica c1: version 1 published (3 edge snapshots signed)",
        Duration::from_secs(20),
        &control,
    );
    assert!(
        control.log_text().contains("store seeded from --init"),
        "{}",
        control.log_text()
    );

    // Two edges, each on a host of its own; away's DNS listens on port 53.
    let (_, edge_unit) = read_unit("fedgate-edge.service");
    let head_start = if std::env::var("CI").as_deref() == Ok("true") {
        " --quic-head-start-ms 2000"
    } else {
        ""
    };
    let mut edges = Vec::new();
    for (org, host_no, listeners) in [
        ("home", 2, String::new()),
        (
            "away",
            1,
            format!(" --sni {} --dns {}", addr(&w, 1, 8443), addr(&w, 1, 53)),
        ),
    ] {
        let host = Host::new(&w, &format!("{org}-host"));
        let (cert, key, _) = w.edge_cert(org, "edge", &format!("{org}-edge"), None, None);
        host.install(&cert, "edge.pem");
        host.install(&key, "edge.key");
        host.install(&w.ca_pem(), "ca.pem");
        host.install(&w.path("signing/signing.pub"), "signing.pub");
        let env_text = format!(
            "FEDGATE_EDGE={org}/edge\nFEDGATE_CONTROL={control_addr}\nFEDGATE_CONTROL_KEY=/etc/fedgate/signing.pub\nFEDGATE_EDGE_ARGS=--admin {} --poll-secs 5{listeners}{head_start}\n",
            addr(&w, host_no, 9100)
        );
        let mut notify = Notify::new(&w, org);
        let p = start_unit(
            &host,
            &edge_unit,
            &env_text,
            &notify,
            org,
            w.path(&format!("{org}.log")),
            None,
        );
        let ready = notify.wait("READY=1", Duration::from_secs(20), &p);
        assert!(
            ready.contains(&format!("STATUS={org}/edge: snapshot version 1, ")),
            "{ready}"
        );
        // CAP_NET_BIND_SERVICE (bit 10) alone.
        assert_eq!(
            credentials(&p),
            (UID.into(), "0000000000000400".into(), "1".into())
        );
        edges.push((org, host, notify, p, env_text));
    }

    // Staff at away find home's web server by name, on port 53, and reach
    // it through the edges.
    let (ok, answer) = tests::dig(addr(&w, 1, 53), &["web.home.example", "A", "+short"]);
    assert!(
        ok && answer.trim() == tests::ip(w.net, 1).to_string(),
        "dig: {answer}\n{}",
        edges[1].3.log_text()
    );
    let (ok, body, err) = curl(vec![
        "--resolve".into(),
        format!("web.home.example:8443:{}", tests::ip(w.net, 1)),
        "--cacert".into(),
        path(&origin_cert),
        "https://web.home.example:8443/".into(),
    ])
    .await;
    assert!(
        ok && body == "hello from home/web\n",
        "SNI: {body} {err}\n{}",
        edges[1].3.log_text()
    );
    // Each edge wrote its audit record where the unit keeps it, and
    // its snapshot cache in its state directory.
    for (org, host, ..) in &edges {
        let file = host.map("/var/log/fedgate-edge/audit.jsonl");
        let mut audit = String::new();
        for _ in 0..100 {
            audit = std::fs::read_to_string(&file).unwrap_or_default();
            if audit.contains("\"service\":\"home/web\"") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            audit.contains("\"service\":\"home/web\""),
            "{org}'s audit log: {audit}"
        );
        assert!(
            Path::new(&host.map("/var/lib/fedgate-edge/snapshot.json")).exists(),
            "{org}'s snapshot cache"
        );
    }
    // The control plane's monitoring listener, as a monitoring system reads
    // it: ready, and each edge's report (both run version 1).
    let (ok, ready, err) = curl(vec![format!("http://{control_metrics}/readyz")]).await;
    assert!(ok && ready == "ready\n", "readyz: {ready} {err}");
    let reported = |scraped: &str| {
        ["home", "away"].iter().all(|org| {
            scraped
                .lines()
                .any(|l| l == format!("fedgate_control_edge_version{{edge=\"{org}/edge\"}} 1"))
        })
    };
    let mut scraped = String::new();
    for _ in 0..50 {
        let (ok, text, err) = curl(vec![format!("http://{control_metrics}/metrics")]).await;
        assert!(ok, "{err}");
        scraped = text;
        if reported(&scraped) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reported(&scraped), "{scraped}");

    // The watchdog's heartbeat: every half second here.
    for (_, _, notify, ..) in edges.iter_mut() {
        let before = notify.count("WATCHDOG=1");
        for _ in 0..25 {
            if notify.count("WATCHDOG=1") >= before + 2 {
                break;
            }
            notify.pump(Duration::from_millis(200));
        }
        assert!(
            notify.count("WATCHDOG=1") >= before + 2,
            "{:?}",
            notify.seen
        );
    }

    // SIGTERM: each says it is stopping, then exits 0.
    let (_, away_host, mut away_notify, mut away, away_env) = edges.pop().expect("away");
    let (_, _, mut home_notify, mut home, _) = edges.pop().expect("home");
    for (notify, p) in [(&mut away_notify, &mut away), (&mut home_notify, &mut home)] {
        let _ = tests::run("kill", &["-TERM", &p.pid().to_string()]);
        let stopping = notify.wait("STOPPING=1", Duration::from_secs(10), p);
        assert!(stopping.contains("STATUS=draining: "), "{stopping}");
        let status = p.wait_exit(Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "{}: {status:?}\n{}",
            p.name,
            p.log_text()
        );
    }

    // Without the unit's one capability, away's edge cannot listen on port
    // 53: it exits 1 and says why (and says nothing of being ready).
    let mut bare_notify = Notify::new(&w, "away-bare");
    let mut bare = start_unit(
        &away_host,
        &edge_unit,
        &away_env,
        &bare_notify,
        "away-bare",
        w.path("away-bare.log"),
        Some(""),
    );
    let status = bare.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "{}",
        bare.log_text()
    );
    assert!(
        bare.log_text()
            .contains(&format!("{}: Permission denied", addr(&w, 1, 53))),
        "{}",
        bare.log_text()
    );
    bare_notify.pump(Duration::from_millis(200));
    assert_eq!(bare_notify.count("READY=1"), 0, "{:?}", bare_notify.seen);

    let mut control = control;
    let _ = tests::run("kill", &["-TERM", &control.pid().to_string()]);
    control_notify.wait("STOPPING=1", Duration::from_secs(10), &control);
    let status = control.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        control.log_text()
    );
}
