//! `fedctl demo up|down|status`: a whole federation on this machine's
//! loopback, no root needed.
//!
//! `up` copies a federation (default `configs/south-east`) into the state
//! directory with every address moved onto loopback and every port above
//! 1023, mints development certificates, and starts, as background processes
//! whose PIDs it records, `fedgate-control` (embedded store), one
//! `fedgate-edge` per edge and `fedctl demo origins`, small servers standing
//! in for each member's systems. `down` stops exactly the recorded PIDs.
//!
//! ```text
//! control plane        127.80.0.1:7443
//! edge E of member M   127.80.M.E   overlay :4433 (QUIC) :4443 (TLS/TCP), CONNECT :3128,
//!                                   SOCKS :1080, SNI :8443, DNS :5353, metrics :9100
//! its VIPs             127.(80+E).M.0/24
//! service S of M       127.90.M.S   ports below 1024 moved up by 8000 (443 -> 8443)
//! roaming staff        every member's roaming-staff networks also hold 127.0.0.0/8,
//!                      so a local client counts as staff visiting that member
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use federation::spec::{DocumentSpec, NetworkPurpose, PortRangeSpec, Protocol, S};
use federation::{Flow, PolicySet, Sources, Verdict};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{Failure, exit, now};

/// The second octet of the demo's loopback addresses (`127.B.M.E`).
const BASE: u8 = 80;

/// Where the demo's addresses start: 127.B.0.0/16 for the control plane
/// and edges, 127.(B+E).M.0/24 for VIPs, 127.(B+10).M.S for services.
#[derive(Clone, Copy, Debug)]
struct Net(u8);

impl Net {
    fn control(self) -> String {
        format!("127.{}.0.1:7443", self.0)
    }
}
const DEFAULT_STATE: &str = ".fedgate-demo";
const DEFAULT_CONFIG: &str = "configs/south-east";

#[derive(Subcommand)]
pub enum DemoCommand {
    /// Start the demo: a control plane, one edge per member's edge and
    /// stand-in services, all on loopback; print how to use it.
    #[command(
        after_help = "Example (from a fresh clone; nothing to install but the Rust toolchain):\n  cargo build -q -p proxy -p control-plane && ./target/debug/fedctl demo up"
    )]
    Up {
        /// The federation to run (files or a directory).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Where the demo keeps its files, logs and PIDs.
        #[arg(long, default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// The second octet of its loopback addresses (127.B.x.y), so that
        /// two demos (or a demo and its test) can run at once.
        #[arg(long, default_value_t = BASE, value_parser = clap::value_parser!(u8).range(1..=200), hide = true)]
        base_octet: u8,
    },
    /// Stop the demo's processes (exactly the PIDs it recorded).
    #[command(after_help = "Example:\n  fedctl demo down")]
    Down {
        #[arg(long, default_value = DEFAULT_STATE)]
        state: PathBuf,
    },
    /// The demo's processes, and the control plane's view of its edges.
    #[command(after_help = "Example:\n  fedctl demo status")]
    Status {
        #[arg(long, default_value = DEFAULT_STATE)]
        state: PathBuf,
    },
    /// Serve the stand-in origin services of a demo (started by `up`).
    #[command(hide = true)]
    Origins {
        #[arg(long, default_value = DEFAULT_STATE)]
        state: PathBuf,
    },
}

pub fn run(command: DemoCommand) -> anyhow::Result<ExitCode> {
    match command {
        DemoCommand::Up {
            config,
            state,
            base_octet,
        } => up(&config, &state, Net(base_octet)),
        DemoCommand::Down { state } => down(&state).map(|_| ExitCode::SUCCESS),
        DemoCommand::Status { state } => status(&state),
        DemoCommand::Origins { state } => origins(&state),
    }
}

/// A stand-in service the origins process serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Origin {
    service: String,
    org_name: String,
    names: Vec<String>,
    addr: IpAddr,
    ports: Vec<u16>,
    tls: bool,
}

/// An edge of the demo and where it listens.
#[derive(Debug, Clone)]
struct DemoEdge {
    id: String,
    ip: Ipv4Addr,
}

/// The demo copy of a federation.
struct Plan {
    files: Vec<(String, String)>,
    edges: Vec<DemoEdge>,
    origins: Vec<Origin>,
}

fn sp<T>(value: T) -> S<T> {
    S::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn demo_port(p: i64) -> i64 {
    if (1..1024).contains(&p) { p + 8000 } else { p }
}

/// Move `docs` (file name, document) onto loopback.
fn remap(
    docs: &mut [(String, DocumentSpec)],
    net: Net,
) -> anyhow::Result<(Vec<DemoEdge>, Vec<Origin>)> {
    // Members in the order the files name them: M = 1, 2, ...
    let mut members: Vec<(String, String)> = Vec::new();
    for (_, d) in docs.iter() {
        for o in &d.organisations {
            members.push((o.value.id.value.clone(), o.value.name.value.clone()));
        }
    }
    if members.len() > 250 {
        bail!("the demo runs at most 250 members");
    }
    let index = |org: &str| {
        members
            .iter()
            .position(|(id, _)| id == org)
            .map(|i| i as u8 + 1)
    };
    let mut edges = Vec::new();
    let mut origins = Vec::new();
    let mut edge_count: BTreeMap<String, u8> = BTreeMap::new();
    let mut service_count: BTreeMap<String, u8> = BTreeMap::new();
    for (_, d) in docs.iter_mut() {
        for o in &mut d.organisations {
            o.value.dns.upstreams.clear();
        }
        for n in &mut d.networks {
            if n.value.purpose.value == NetworkPurpose::RoamingStaff {
                n.value.cidrs.push(sp("127.0.0.0/8".to_owned()));
            }
        }
        for e in &mut d.edges {
            let org = e.value.org.value.clone();
            let m = index(&org).with_context(|| format!("edge of unknown member {org}"))?;
            let n = edge_count.entry(org.clone()).or_insert(0);
            *n += 1;
            if *n > 9 {
                bail!("the demo runs at most 9 edges per member");
            }
            let ip = Ipv4Addr::new(127, net.0, m, *n);
            e.value.overlay.quic = Some(sp(format!("{ip}:4433")));
            e.value.overlay.tcp = Some(sp(format!("{ip}:4443")));
            e.value.dns = Some(sp(format!("{ip}:5353")));
            e.value.ingress.addresses = vec![sp(ip.to_string())];
            e.value.ingress.vip_prefix = Some(sp(format!("127.{}.{m}.0/24", net.0 + *n)));
            edges.push(DemoEdge {
                id: format!("{org}/{}", e.value.name.value),
                ip,
            });
        }
        for s in &mut d.services {
            let org = s.value.org.value.clone();
            let m = index(&org).with_context(|| format!("service of unknown member {org}"))?;
            let n = service_count.entry(org.clone()).or_insert(0);
            *n += 1;
            let addr = IpAddr::V4(Ipv4Addr::new(127, net.0 + 10, m, *n));
            s.value.address = Some(sp(addr.to_string()));
            for p in &mut s.value.ports {
                p.value = demo_port(p.value);
            }
            origins.push(Origin {
                service: format!("{org}/{}", s.value.name.value),
                org_name: members
                    .iter()
                    .find(|(id, _)| *id == org)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default(),
                names: s.value.dns.iter().map(|n| n.value.clone()).collect(),
                addr,
                ports: s
                    .value
                    .ports
                    .iter()
                    .filter_map(|p| u16::try_from(p.value).ok())
                    .collect(),
                tls: s.value.protocol.value == Protocol::Tls,
            });
        }
        for p in &mut d.policies {
            for r in &mut p.value.ports {
                r.value = PortRangeSpec {
                    start: demo_port(r.value.start),
                    end: demo_port(r.value.end),
                };
            }
        }
    }
    Ok((edges, origins))
}

fn plan(config: &Path, net: Net) -> anyhow::Result<Plan> {
    let sources = crate::files::read_sources(&[config.to_owned()]).map_err(|e| {
        Failure::new(
            exit::INPUT,
            format!(
                "{e:#}; run the demo from the repository's top directory, or give --config DIR"
            ),
        )
    })?;
    let mut docs = Vec::new();
    for (id, f) in sources.iter() {
        let doc = federation::source::parse(id, &f.text)
            .map_err(|d| anyhow::anyhow!("{}: {d}", f.name))?;
        let name = Path::new(&f.name)
            .file_name()
            .map_or_else(|| f.name.clone(), |n| n.to_string_lossy().into_owned());
        docs.push((name, doc));
    }
    let (edges, origins) = remap(&mut docs, net)?;
    let mut files = Vec::new();
    for (name, doc) in &docs {
        let yaml = serde_saphyr::to_string(doc)?;
        files.push((
            name.clone(),
            format!(
                "# The demo's copy of {}/{name}: addresses moved onto loopback, ports above 1023.\n# Edit it and apply with `fedctl apply -f` on this directory.\n{yaml}",
                config.display()
            ),
        ));
    }
    Ok(Plan {
        files,
        edges,
        origins,
    })
}

/// A binary built beside this `fedctl`.
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("where is fedctl?")?;
    let path = me.with_file_name(name);
    if !path.exists() {
        return Err(Failure::new(
            exit::INPUT,
            format!(
                "{name} is not built next to fedctl ({}); build both with `cargo build -p proxy -p control-plane` and run `./target/debug/fedctl demo up`",
                path.display()
            ),
        )
        .into());
    }
    Ok(path)
}

/// One recorded process: name, PID and program.
#[derive(Debug, Clone)]
struct Recorded {
    name: String,
    pid: u32,
    program: String,
}

fn pids_file(state: &Path) -> PathBuf {
    state.join("pids")
}

fn read_pids(state: &Path) -> Vec<Recorded> {
    fs::read_to_string(pids_file(state))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ' ');
            Some(Recorded {
                name: f.next()?.to_owned(),
                pid: f.next()?.parse().ok()?,
                program: f.next()?.to_owned(),
            })
        })
        .collect()
}

/// Whether `r` still runs: the PID exists, is not a zombie, and runs the
/// recorded program (so that a reused PID is never taken for ours).
fn alive(r: &Recorded) -> bool {
    let proc = PathBuf::from(format!("/proc/{}", r.pid));
    let stat = fs::read_to_string(proc.join("stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, None | Some("Z" | "X")) {
        return false;
    }
    let cmdline = fs::read(proc.join("cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    argv0 == r.program.as_bytes()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The demo's processes while `up` starts them.
struct Started {
    state: PathBuf,
    children: Vec<(Recorded, Child, PathBuf)>,
}

impl Started {
    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> anyhow::Result<()> {
        let logs = self.state.join("logs");
        fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{}.log", name.replace('/', "-")));
        let out =
            fs::File::create(&log).with_context(|| format!("cannot write {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .env("FEDGATE_LOG", "info")
            // Its own process group: a Ctrl-C in this terminal later does
            // not stop the demo; `fedctl demo down` does.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let rec = Recorded {
            name: name.to_owned(),
            pid: child.id(),
            program: program.display().to_string(),
        };
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pids_file(&self.state))?;
        writeln!(f, "{} {} {}", rec.name, rec.pid, rec.program)?;
        self.children.push((rec, child, log));
        Ok(())
    }

    /// Wait (bounded) until every process started so far has logged `needle`.
    fn wait_all(
        &mut self,
        needle: &str,
        range: std::ops::Range<usize>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = std::time::SystemTime::now() + timeout;
        for _ in 0..(timeout.as_millis() / 50 + 1) {
            let mut waiting = None;
            let (skip, take) = (range.start, range.len());
            for (rec, child, log) in self.children.iter_mut().skip(skip).take(take) {
                let text = fs::read_to_string(&*log).unwrap_or_default();
                if text.contains(needle) {
                    continue;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "{} exited ({status}) while starting; its log {}:\n{}",
                        rec.name,
                        log.display(),
                        tail(&text)
                    );
                }
                waiting = Some((rec.name.clone(), log.clone()));
            }
            let Some((name, log)) = waiting else {
                return Ok(());
            };
            if std::time::SystemTime::now() > deadline {
                bail!(
                    "{name} did not start within {} s; its log {}:\n{}",
                    timeout.as_secs(),
                    log.display(),
                    tail(&fs::read_to_string(&log).unwrap_or_default())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The lines a visiting member of staff uses, chosen from the policies: a
/// TLS service of one member that another member's roaming staff may reach,
/// preferring the trust's patient record visited from the county council.
fn visit_lines(state: &Path, plan: &Plan) -> anyhow::Result<Vec<String>> {
    let mut sources = Sources::new();
    for (name, text) in &plan.files {
        sources.add(name.clone(), text.clone());
    }
    let loaded = federation::load(&sources, now());
    let fed = loaded
        .federation
        .as_ref()
        .context("the demo's federation does not validate")?;
    let policies = PolicySet::compile(fed);
    let mut candidates: Vec<(&Origin, &DemoEdge, String)> = Vec::new();
    for o in plan.origins.iter().filter(|o| o.tls && !o.names.is_empty()) {
        let owner = o.service.split('/').next().unwrap_or_default();
        for e in &plan.edges {
            let visited = e.id.split('/').next().unwrap_or_default();
            if visited == owner {
                continue;
            }
            let visited_id = federation::model::OrgId::new(visited);
            let Some(net) = fed
                .networks_of(&visited_id)
                .find(|n| n.purpose == NetworkPurpose::RoamingStaff)
            else {
                continue;
            };
            let Some(&port) = o.ports.first() else {
                continue;
            };
            let d = policies.decide(
                &Flow {
                    src_org: visited,
                    src_network: Some(&net.label),
                    src_addr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    service: &o.service,
                    port,
                },
                now(),
            );
            if d.verdict == Verdict::Allow {
                candidates.push((o, e, visited.to_owned()));
            }
        }
    }
    candidates.sort_by_key(|(o, e, _)| !(o.service == "dpft/ehr" && e.id.starts_with("wmcc/")));
    let Some((o, e, visited)) = candidates.first() else {
        return Ok(vec![
            "no policy lets one member's roaming staff reach another's TLS service here".into(),
        ]);
    };
    let port = o.ports.first().copied().unwrap_or(8443);
    let name = &o.names[0];
    let ca = state.join("origins").join("ca.pem");
    Ok(vec![
        format!(
            "A member of staff of {} ({}) visiting {visited} reaches their home system {} through {visited}'s edge:",
            o.org_name,
            o.service.split('/').next().unwrap_or_default(),
            o.service
        ),
        format!(
            "  curl --cacert {} --proxy http://{}:3128 https://{name}:{port}/",
            ca.display(),
            e.ip
        ),
        format!("{visited}'s edge answers for the name with its own address (if you have dig):"),
        format!("  dig @{} -p 5353 {name}", e.ip),
    ])
}

fn up(config: &Path, state: &Path, net: Net) -> anyhow::Result<ExitCode> {
    let running: Vec<Recorded> = read_pids(state).into_iter().filter(alive).collect();
    if !running.is_empty() {
        outln!(
            "the demo already runs from {} ({} processes); `fedctl demo status` shows it, `fedctl demo down` stops it",
            state.display(),
            running.len()
        );
        return status(state);
    }
    let control_bin = sibling("fedgate-control")?;
    let edge_bin = sibling("fedgate-edge")?;
    let me = std::env::current_exe().context("where is fedctl?")?;
    let plan = plan(config, net)?;
    // A fresh state: the demo's federation, certificates, store and logs.
    if state.exists() {
        fs::remove_dir_all(state)
            .with_context(|| format!("cannot clear the old demo state {}", state.display()))?;
    }
    let fed_dir = state.join("federation");
    fs::create_dir_all(&fed_dir).with_context(|| format!("cannot create {}", fed_dir.display()))?;
    for (name, text) in &plan.files {
        fs::write(fed_dir.join(name), text)?;
    }
    let (_, loaded) = crate::files::load_valid(std::slice::from_ref(&fed_dir), now())
        .context("the demo's copy of the federation does not validate")?;
    let fed = loaded.federation.as_ref().context("no federation")?;
    let certs = state.join("certs");
    crate::certs::write_dev_identities(fed, &certs, now())?;
    write_origin_certs(state, &plan.origins)?;
    fs::write(
        state.join("fedctl.yaml"),
        format!(
            "# fedctl's connection to the demo: export FEDCTL_CONFIG={}\ncontrol: {}\ncert: certs/admins/dpft-admin.pem\nkey: certs/admins/dpft-admin.key\nca: certs/ca.pem\n",
            absolute(&state.join("fedctl.yaml")).display(),
            net.control()
        ),
    )?;
    let mut started = Started {
        state: state.to_owned(),
        children: Vec::new(),
    };
    let result = start_all(
        &mut started,
        state,
        &control_bin,
        &edge_bin,
        &me,
        &plan,
        net,
    );
    if let Err(e) = result {
        eprintln!("fedctl: the demo did not start; stopping what did");
        let _ = down(state);
        return Err(e);
    }
    let edges = plan.edges.len();
    outln!(
        "Fedgate demo: a control plane, {edges} edges and {} stand-in services on loopback; state in {}",
        plan.origins.len(),
        state.display()
    );
    print_guide(state, &plan, net)?;
    Ok(ExitCode::SUCCESS)
}

fn start_all(
    started: &mut Started,
    state: &Path,
    control_bin: &Path,
    edge_bin: &Path,
    me: &Path,
    plan: &Plan,
    net: Net,
) -> anyhow::Result<()> {
    let certs = state.join("certs");
    let p = |p: PathBuf| p.display().to_string();
    started.spawn(
        "control",
        control_bin,
        &[
            "run".into(),
            "--data".into(),
            p(state.join("control-data")),
            "--listen".into(),
            net.control(),
            "--cert".into(),
            p(certs.join("control/control-1.pem")),
            "--key".into(),
            p(certs.join("control/control-1.key")),
            "--ca".into(),
            p(certs.join("ca.pem")),
            "--signing-key".into(),
            p(certs.join("control/signing.key")),
            "--init".into(),
            p(state.join("federation")),
        ],
    )?;
    started.wait_all("version published", 0..1, Duration::from_secs(30))?;
    started.spawn(
        "origins",
        me,
        &[
            "demo".into(),
            "origins".into(),
            "--state".into(),
            p(state.to_owned()),
        ],
    )?;
    let first_edge = started.children.len();
    for e in &plan.edges {
        let stem = e.id.replace('/', "-");
        let at = |port: u16| SocketAddr::new(IpAddr::V4(e.ip), port).to_string();
        started.spawn(
            &format!("edge-{stem}"),
            edge_bin,
            &[
                "run".into(),
                "--edge".into(),
                e.id.clone(),
                "--control".into(),
                net.control(),
                "--control-key".into(),
                p(certs.join("control/signing.pub")),
                "--cache".into(),
                p(state.join(format!("edges/{stem}.cache.json"))),
                // Short long polls: each edge reports its version and links
                // to the control plane after every poll.
                "--poll-secs".into(),
                "5".into(),
                "--cert".into(),
                p(certs.join(format!("edges/{stem}.pem"))),
                "--key".into(),
                p(certs.join(format!("edges/{stem}.key"))),
                "--ca".into(),
                p(certs.join("ca.pem")),
                "--connect".into(),
                at(3128),
                "--socks".into(),
                at(1080),
                "--sni".into(),
                at(8443),
                "--vips".into(),
                "--admin".into(),
                at(9100),
                "--audit".into(),
                p(state.join(format!("edges/{stem}.audit.jsonl"))),
            ],
        )?;
    }
    let all = started.children.len();
    started.wait_all(
        "origins ready",
        first_edge - 1..first_edge,
        Duration::from_secs(30),
    )?;
    started.wait_all("ready", first_edge..all, Duration::from_secs(60))?;
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    std::env::current_dir().map_or_else(|_| p.to_owned(), |d| d.join(p))
}

fn print_guide(state: &Path, plan: &Plan, net: Net) -> anyhow::Result<()> {
    outln!("  control plane  {}", net.control());
    for e in &plan.edges {
        outln!(
            "  edge {:<12} {}  (CONNECT :3128, SOCKS :1080, DNS :5353, metrics http://{}:9100/metrics)",
            e.id,
            e.ip,
            e.ip
        );
    }
    outln!();
    for line in visit_lines(state, plan)? {
        outln!("{line}");
    }
    let me = std::env::current_exe()
        .ok()
        .and_then(|m| {
            std::env::current_dir()
                .ok()
                .and_then(|d| m.strip_prefix(&d).ok().map(|r| Path::new(".").join(r)))
        })
        .map_or_else(|| "fedctl".to_owned(), |p| p.display().to_string());
    outln!();
    outln!(
        "Administer it, as the trust's admin (certificates for every member in {}/certs/admins):",
        state.display()
    );
    outln!(
        "  export FEDCTL_CONFIG={}",
        absolute(&state.join("fedctl.yaml")).display()
    );
    outln!("  {me} status");
    outln!("  {me} get policies");
    outln!("  {me} explain --from wmcc/127.0.0.1 --to epr.dpft.example");
    outln!(
        "  edit {}/dpft.yaml, then: {me} apply -f {}",
        state.join("federation").display(),
        state.join("federation").display()
    );
    outln!("Stop it: {me} demo down{}", state_flag(state));
    Ok(())
}

fn state_flag(state: &Path) -> String {
    if state == Path::new(DEFAULT_STATE) {
        String::new()
    } else {
        format!(" --state {}", state.display())
    }
}

/// Stop exactly the recorded PIDs: SIGTERM, then SIGKILL after 10 s.
fn down(state: &Path) -> anyhow::Result<usize> {
    let recorded = read_pids(state);
    if recorded.is_empty() {
        outln!("no demo processes recorded in {}", state.display());
        return Ok(0);
    }
    let running: Vec<&Recorded> = recorded.iter().filter(|r| alive(r)).collect();
    for r in running.iter().rev() {
        signal(r.pid, "-TERM");
    }
    for _ in 0..200 {
        if running.iter().all(|r| !alive(r)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for r in running.iter().filter(|r| alive(r)) {
        eprintln!("{} (PID {}) ignored SIGTERM; killing it", r.name, r.pid);
        signal(r.pid, "-KILL");
    }
    let _ = fs::remove_file(pids_file(state));
    outln!(
        "stopped {} demo process(es) recorded in {}",
        running.len(),
        pids_file(state).display()
    );
    Ok(running.len())
}

fn status(state: &Path) -> anyhow::Result<ExitCode> {
    let recorded = read_pids(state);
    if recorded.is_empty() {
        outln!(
            "no demo in {}; start one with `fedctl demo up`",
            state.display()
        );
        return Ok(ExitCode::from(exit::INPUT));
    }
    let rows: Vec<Vec<String>> = recorded
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.pid.to_string(),
                if alive(r) { "running" } else { "stopped" }.to_owned(),
            ]
        })
        .collect();
    out!(
        "{}",
        super::output::table(&["PROCESS", "PID", "STATE"], &rows)
    );
    let all_up = recorded.iter().all(alive);
    if recorded.iter().any(|r| r.name == "control" && alive(r)) {
        outln!();
        let conn = super::conn::ConnArgs {
            file: Some(state.join("fedctl.yaml")),
            ..Default::default()
        };
        super::with_api(&conn, |api| async move {
            super::online::status(&api, super::Output::Table).await
        })?;
    }
    Ok(if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::CONNECT)
    })
}

/// A CA for the stand-in services and a certificate for each TLS one, so
/// that curl checks the origin's certificate end to end through the edges.
fn write_origin_certs(state: &Path, origins: &[Origin]) -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = state.join("origins");
    fs::create_dir_all(&dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Fedgate demo origins CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    let issuer = Issuer::new(ca_params, ca_key);
    for o in origins.iter().filter(|o| o.tls) {
        let key = KeyPair::generate()?;
        let params = CertificateParams::new(o.names.clone())?;
        let cert = params.signed_by(&key, &issuer)?;
        let stem = o.service.replace('/', "-");
        fs::write(dir.join(format!("{stem}.pem")), cert.pem())?;
        fs::write(dir.join(format!("{stem}.key")), key.serialize_pem())?;
    }
    fs::write(dir.join("plan.json"), serde_json::to_vec_pretty(origins)?)?;
    Ok(())
}

/// `fedctl demo origins`: serve every stand-in service until killed.
fn origins(state: &Path) -> anyhow::Result<ExitCode> {
    let dir = state.join("origins");
    let plan: Vec<Origin> = serde_json::from_slice(
        &fs::read(dir.join("plan.json")).context("no origins plan; start with `fedctl demo up`")?,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        for o in &plan {
            let tls = if o.tls {
                let stem = o.service.replace('/', "-");
                let cert = fs::read(dir.join(format!("{stem}.pem")))?;
                let key = fs::read(dir.join(format!("{stem}.key")))?;
                Some(tls_acceptor(&cert, &key)?)
            } else {
                None
            };
            let body: Arc<str> = Arc::from(format!(
                "Hello from {} of {} ({}): you reached it through the federation.\n",
                o.service,
                o.org_name,
                o.names.join(", ")
            ));
            for port in &o.ports {
                let addr = SocketAddr::new(o.addr, *port);
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for {}", o.service))?;
                tokio::spawn(serve(listener, tls.clone(), body.clone()));
            }
        }
        eprintln!("origins ready: {} services", plan.len());
        std::future::pending::<()>().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn tls_acceptor(cert: &[u8], key: &[u8]) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key)?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    body: Arc<str>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (tls, body) = (tls.clone(), body.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            answer(s, &body).await;
                        }
                    }
                    None => answer(tcp, &body).await,
                }
            })
            .await;
        });
    }
}

/// Read a request head (at most 8 KiB) and answer `body`.
async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S, body: &str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 8192 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}
