//! `fedctl`, the network admin's tool. The offline commands (`check`,
//! `explain --config`, `snapshot`, `dns-forwarders`, `firewall`, `certs`) run
//! the pure core on files; the online ones (`apply`, `diff`, `get`,
//! `history`, `rollback`, `status`, live `explain`) talk to the control plane
//! over mutual TLS ([`conn`]); `demo` runs a whole federation on loopback.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use federation::model::Federation;
use federation::routing::RoutingTable;
use federation::{Decision, EdgeSnapshot, Flow, PolicySet, Verdict};
use jiff::Timestamp;
use serde::Serialize;

use crate::{files, render};

/// `print!` to stdout, without its panic when the reader has gone
/// ([`output::stdout_write`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::fedctl::output::stdout_write(format_args!($($arg)*))
    };
}

/// `println!` to stdout, without its panic when the reader has gone.
macro_rules! outln {
    () => {
        out!("\n")
    };
    ($($arg:tt)*) => {
        $crate::fedctl::output::stdout_write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub mod certcheck;
pub mod conn;
pub mod demo;
pub mod firewall;
pub mod online;
pub mod output;

pub use output::Output;

const EXIT_CODES: &str = "\
Exit status:
  0  success (for `check`: no error; warnings allowed)
  1  `check` found errors; `diff` found differences; `explain`: the flow is denied
  2  the command line was wrong (a missing flag, address or identity)
  3  input could not be used: unreadable file, invalid document (file:line:column shown),
     unknown edge, service or version
  4  the control plane could not be reached or refused the connection (its address,
     the certificate, the CA)
  5  refused: this identity has no right to the change, or is not an admin
  6  conflict: the head is not the version the change was made against (a version applied
     since, or a wrong --expected-version)
  7  applied, but not every edge ran the new version before --timeout

Control plane and identity (online commands): --control, --cert, --key, --ca, or
FEDCTL_CONTROL, FEDCTL_CERT, FEDCTL_KEY, FEDCTL_CA, or a YAML file
(--fedctl-config, FEDCTL_CONFIG, default ~/.config/fedgate/fedctl.yaml) with
`control:`, `cert:`, `key:` and `ca:`.";

/// Exit statuses, as `fedctl --help` lists them.
pub mod exit {
    pub const FOUND: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INPUT: u8 = 3;
    pub const CONNECT: u8 = 4;
    pub const REFUSED: u8 = 5;
    pub const CONFLICT: u8 = 6;
    pub const ROLLOUT: u8 = 7;
}

/// A failure with its exit status and a message that says what to do next.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The wall clock: `fedctl` is a binary, where the clock is read.
pub(crate) fn now() -> Timestamp {
    #[allow(clippy::disallowed_methods)] // the binary is where the clock is read
    Timestamp::now()
}

#[derive(Parser)]
#[command(name = "fedctl", version, about = "Administer a Fedgate federation", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check federation files offline: syntax, references, overlaps, zones,
    /// policies and expiries, printed like a compiler's diagnostics.
    #[command(
        after_help = "Examples:\n  fedctl check configs/south-east\n  fedctl check -o json dpft.yaml federation.yaml\n  fedctl check configs/south-east --certs certs-dev/out"
    )]
    Check {
        /// Files, or directories of *.yaml files, that together make one federation.
        #[arg(required_unless_present = "certs")]
        paths: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        /// Check as of this date or RFC 3339 time instead of now (expiry warnings).
        #[arg(long)]
        at: Option<String>,
        /// Also check the certificates (*.pem) under DIR: expired or expiring
        /// within 30 days, identity not matching the file name or the
        /// federation, a key that is not the certificate's.
        #[arg(long, value_name = "DIR")]
        certs: Option<PathBuf>,
    },
    /// Explain the decision on a flow: allowed or denied, by which rule and
    /// agreement; on files with --config, else on the control plane's head.
    /// Exits 0 when the flow is allowed, 1 when it is denied.
    #[command(
        after_help = "Examples:\n  fedctl explain --config configs/south-east --from wmcc/roaming-staff --to dpft/ehr:443\n  fedctl explain --config configs/south-east --from wmcc/10.40.0.7 --to epr.dpft.example\n  fedctl explain --from wmcc/roaming-staff --to epr.dpft.example   # the live configuration"
    )]
    Explain {
        /// The federation files (or directories); without it, the control
        /// plane's head version.
        #[arg(long, short, num_args = 1..)]
        config: Vec<PathBuf>,
        /// Source: ORG, ORG/NETWORK or ORG/ADDRESS.
        #[arg(long)]
        from: String,
        /// Destination: ORG/SERVICE or a DNS name, with :PORT when it serves several.
        #[arg(long)]
        to: String,
        /// Decide as of this date or RFC 3339 time instead of now.
        #[arg(long)]
        at: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        conn: conn::ConnArgs,
    },
    /// Write the snapshot one edge needs (what it may know, nothing more), so an
    /// edge can run from a file.
    #[command(
        after_help = "Example:\n  fedctl snapshot --edge dpft/core configs/south-east --out dpft-core.snapshot.json"
    )]
    Snapshot {
        /// The edge, ORG/NAME.
        #[arg(long)]
        edge: String,
        /// The federation files (or directories).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output file; `-` for standard output. Default: ORG-NAME.snapshot.json.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Version number to stamp on the snapshot.
        #[arg(long, default_value_t = 1)]
        snapshot_version: u64,
    },
    /// The conditional forwarders a member's resolvers need: the federation's
    /// zones its staff reach, sent to its edges' DNS listeners.
    #[command(
        name = "dns-forwarders",
        after_help = "Examples:\n  fedctl dns-forwarders --config configs/south-east --org wmcc --format unbound\n  fedctl dns-forwarders --config configs/south-east --org dpft --format windows"
    )]
    DnsForwarders {
        /// The federation files (or directories).
        #[arg(long, short, required = true, num_args = 1..)]
        config: Vec<PathBuf>,
        /// The member whose resolvers are configured.
        #[arg(long)]
        org: String,
        #[arg(long, value_enum)]
        format: crate::forwarders::Format,
    },
    /// Validate files locally, show the change by object, apply it on the
    /// control plane and follow the rollout to the edges.
    #[command(
        after_help = "Examples:\n  fedctl apply -f configs/south-east -m \"open the EPR to hcht admin hubs\"\n  fedctl apply -f .fedgate-demo/federation --dry-run\n  fedctl apply -f fed/ --no-wait\n\nThe files are the whole federation document (every file), as `fedctl check` reads them."
    )]
    Apply {
        /// Files, or directories of *.yaml files: the whole document.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Why (kept in the history).
        #[arg(short, long)]
        message: Option<String>,
        /// Check with the control plane (validity and rights) without applying.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        rollout: RolloutArgs,
        /// Apply only if the head is still this version (default: the head
        /// when the diff was computed).
        #[arg(long)]
        expected_version: Option<u64>,
        #[command(flatten)]
        conn: conn::ConnArgs,
    },
    /// Show how local files differ from the control plane's head, by object.
    #[command(
        after_help = "Example:\n  fedctl diff -f configs/south-east\n\nExit status 0: no differences; 1: differences."
    )]
    Diff {
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        conn: conn::ConnArgs,
    },
    /// List objects of the head version: orgs, networks, services, policies,
    /// agreements, edges (with the version each runs), groups, sites.
    #[command(
        after_help = "Examples:\n  fedctl get policies\n  fedctl get services dpft/ehr -o yaml\n  fedctl get edges"
    )]
    Get {
        #[arg(value_enum)]
        kind: online::Kind,
        /// One object, by id (ORG/NAME for networks, services and edges).
        name: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        conn: conn::ConnArgs,
    },
    /// Every version: when, by whom, why, how many objects changed.
    #[command(after_help = "Example:\n  fedctl history -o json")]
    History {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        conn: conn::ConnArgs,
    },
    /// Make a new version holding the document of an earlier one, and follow
    /// its rollout.
    #[command(after_help = "Example:\n  fedctl rollback 3 -m \"undo the kiosk change\"")]
    Rollback {
        /// The version whose document to restore.
        version: u64,
        #[arg(short, long)]
        message: Option<String>,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        rollout: RolloutArgs,
        #[arg(long)]
        expected_version: Option<u64>,
        #[command(flatten)]
        conn: conn::ConnArgs,
    },
    /// The anchors of an edge's audit log: the heads (last record on its
    /// disk) it reported to the control plane, from every replica given,
    /// one JSON object per line, for `fedgate-edge audit verify --anchors`.
    #[command(
        after_help = "Example:\n  fedctl audit-anchors --edge dpft/core > dpft-core.anchors.jsonl\n  fedgate-edge audit verify --anchors dpft-core.anchors.jsonl audit.jsonl.0* audit.jsonl"
    )]
    AuditAnchors {
        /// The edge, ORG/NAME.
        #[arg(long)]
        edge: String,
        /// Write them here instead of to standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Only anchors kept at or after this time (RFC 3339): for a log
        /// started anew after its files were archived, from the control
        /// plane's `edge audit log went back` warning on.
        #[arg(long, value_name = "TIME")]
        since: Option<Timestamp>,
        #[command(flatten)]
        conn: conn::ConnArgs,
    },
    /// The control plane (replica, store, head), every edge's version and last
    /// report, and the link matrix between edges (QUIC with RTT, TCP, down).
    #[command(after_help = "Example:\n  fedctl status\n  fedctl status -o json")]
    Status {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        conn: conn::ConnArgs,
    },
    /// The perimeter openings a member makes for its edges (each peer edge's
    /// addresses, UDP and TCP ports, both directions) and a ruleset that locks
    /// each edge host down to them; on files with --config, else live.
    #[command(
        after_help = "Examples:\n  fedctl firewall --config configs/south-east --org dpft\n  fedctl firewall --config configs/south-east --org wmcc --format nftables > wmcc-edge.nft\n  fedctl firewall --org dpft --format iptables --control-plane 192.0.2.5:7443   # the live configuration\n  fedctl firewall --config configs/south-east --org dpft --format ip6tables > dpft-edge.ip6tables   # IPv6 (iptables is IPv4 only): load both"
    )]
    Firewall {
        /// The federation files (or directories); without it, the control
        /// plane's head version.
        #[arg(long, short, num_args = 1..)]
        config: Vec<PathBuf>,
        /// The member whose edges the rules are for.
        #[arg(long)]
        org: String,
        /// `iptables` is IPv4's ruleset and `ip6tables` IPv6's (load both);
        /// `nftables` covers both families.
        #[arg(long, value_enum, default_value = "table")]
        format: firewall::Format,
        /// Control-plane replicas the edges reach (HOST:PORT as IP:PORT).
        #[arg(long, value_name = "IP:PORT")]
        control_plane: Vec<std::net::SocketAddr>,
        #[command(flatten)]
        conn: conn::ConnArgs,
    },
    /// A whole federation on this machine's loopback: a control plane, one
    /// edge per member's edge and stand-in services, no root needed.
    #[command(after_help = "Examples:\n  fedctl demo up\n  fedctl demo status\n  fedctl demo down")]
    Demo {
        #[command(subcommand)]
        command: demo::DemoCommand,
    },
    /// Development certificates: a CA, and identities it signs. Never for production.
    #[command(
        after_help = "Example:\n  fedctl certs dev --config configs/south-east --out certs-dev/out"
    )]
    Certs {
        #[command(subcommand)]
        command: crate::certs::CertsCommand,
    },
}

/// How long to follow a rollout.
#[derive(clap::Args, Clone, Debug)]
struct RolloutArgs {
    /// Do not wait for the edges to run the new version.
    #[arg(long)]
    no_wait: bool,
    /// Seconds to wait for every edge to run the new version (exit 7 after).
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

impl RolloutArgs {
    fn rollout(&self) -> online::Rollout {
        online::Rollout {
            no_wait: self.no_wait,
            timeout: std::time::Duration::from_secs(self.timeout),
        }
    }
}

/// Run `f` with the control plane's API on a small runtime of its own.
fn with_api<T, F>(conn: &conn::ConnArgs, f: impl FnOnce(conn::Api) -> F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let api = conn::Api::connect(conn)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(f(api))
}

/// The federation from files, or else the control plane's head.
fn files_or_live(
    config: &[PathBuf],
    conn: &conn::ConnArgs,
    now: Timestamp,
) -> anyhow::Result<federation::Loaded> {
    if !config.is_empty() {
        return Ok(files::load_valid(config, now)?.1);
    }
    if let Err(e) = conn.resolve() {
        let code = e.downcast_ref::<Failure>().map_or(exit::USAGE, |f| f.code);
        return Err(Failure::new(
            code,
            format!("{e:#}; or give --config PATH to work on files"),
        )
        .into());
    }
    let head = with_api(conn, |api| async move {
        let head = online::fetch_document(&api, None).await?;
        eprintln!("on version {} (the head) of {}", head.version, api.addr());
        Ok(head)
    })?;
    Ok(federation::load(&head.sources, now))
}

/// An online command: its exit status.
fn online<F>(conn: &conn::ConnArgs, f: impl FnOnce(conn::Api) -> F) -> anyhow::Result<ExitCode>
where
    F: Future<Output = anyhow::Result<u8>>,
{
    with_api(conn, f).map(ExitCode::from)
}

/// Run the command line; the binary's `main` is this and nothing else.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // Stdout's reader went away while a writer other than `out!` had it
        // (the diagnostics' renderer): as `out!` does, end quietly. (The
        // control plane's connections fail as a `Failure`, which has its
        // own status and no I/O error inside.)
        Err(err)
            if err.downcast_ref::<Failure>().is_none()
                && err.chain().any(|e| {
                    e.downcast_ref::<std::io::Error>()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
                }) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("fedctl: {err:#}");
            ExitCode::from(
                err.downcast_ref::<Failure>()
                    .map_or(exit::INPUT, |f| f.code),
            )
        }
    }
}

fn now_or(at: Option<&str>) -> anyhow::Result<Timestamp> {
    match at {
        Some(s) => federation::validate::parse_time(s, false).ok_or_else(|| {
            anyhow!("`--at {s}`: not a date or time; write `2027-03-31` or `2027-03-31T17:00:00Z`")
        }),
        #[allow(clippy::disallowed_methods)] // the binary is where the clock is read
        None => Ok(Timestamp::now()),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check {
            paths,
            output,
            at,
            certs,
        } => {
            let now = now_or(at.as_deref())?;
            let mut failed = false;
            let mut report = serde_json::Value::Null;
            let mut fed = None;
            if !paths.is_empty() {
                let sources = files::read_sources(&paths)?;
                let loaded = federation::load(&sources, now);
                report = serde_json::to_value(render::json(&sources, &loaded.diagnostics))?;
                if output == Output::Table {
                    render::human(&sources, &loaded.diagnostics)?;
                    let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
                    let warnings = loaded.diagnostics.len() - errors;
                    let files = sources.len();
                    if errors == 0 {
                        outln!("ok: {files} file(s), {warnings} warning(s)");
                    } else {
                        outln!(
                            "failed: {errors} error(s), {warnings} warning(s) in {files} file(s)"
                        );
                    }
                }
                failed = loaded.has_errors();
                fed = loaded.federation;
            }
            let certs_report = match &certs {
                Some(dir) => {
                    let r = certcheck::check(dir, fed.as_ref(), now)?;
                    if output == Output::Table {
                        certcheck::print(dir, &r);
                    }
                    failed |= r.errors() > 0;
                    Some(r)
                }
                None => None,
            };
            match certs_report {
                Some(r) => {
                    output.machine(&serde_json::json!({"config": report, "certificates": r}))?;
                }
                None => {
                    output.machine(&report)?;
                }
            }
            Ok(if failed {
                ExitCode::from(exit::FOUND)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Explain {
            config,
            from,
            to,
            at,
            output,
            conn,
        } => {
            let now = now_or(at.as_deref())?;
            let loaded = files_or_live(&config, &conn, now)?;
            let fed = loaded
                .federation
                .as_ref()
                .context("the federation does not validate now; `fedctl check` shows why")?;
            let explained = explain(fed, &from, &to, now)?;
            if !output.machine(&explained)? {
                out!("{}", explained.text(fed));
            }
            // A script asks `fedctl explain ... && ...`: 1 when denied.
            Ok(match explained.decision.verdict {
                Verdict::Allow => ExitCode::SUCCESS,
                Verdict::Deny => ExitCode::from(exit::FOUND),
            })
        }
        Command::Apply {
            files,
            message,
            dry_run,
            rollout,
            expected_version,
            conn,
        } => online(&conn, |api| async move {
            online::apply(
                &api,
                &files,
                message,
                dry_run,
                expected_version,
                &rollout.rollout(),
            )
            .await
        }),
        Command::Diff {
            files,
            output,
            conn,
        } => online(&conn, |api| async move {
            online::diff(&api, &files, output).await
        }),
        Command::Get {
            kind,
            name,
            output,
            conn,
        } => online(&conn, |api| async move {
            online::get(&api, kind, name.as_deref(), output).await
        }),
        Command::History { output, conn } => {
            online(
                &conn,
                |api| async move { online::history(&api, output).await },
            )
        }
        Command::Rollback {
            version,
            message,
            dry_run,
            rollout,
            expected_version,
            conn,
        } => online(&conn, |api| async move {
            online::rollback(
                &api,
                version,
                message,
                dry_run,
                expected_version,
                &rollout.rollout(),
            )
            .await
        }),
        Command::AuditAnchors {
            edge,
            out,
            since,
            conn,
        } => online(&conn, |api| async move {
            online::audit_anchors(&api, &edge, out.as_deref(), since).await
        }),
        Command::Status { output, conn } => {
            online(
                &conn,
                |api| async move { online::status(&api, output).await },
            )
        }
        Command::Snapshot {
            edge,
            paths,
            out,
            snapshot_version,
        } => {
            #[allow(clippy::disallowed_methods)] // the binary is where the clock is read
            let (_, loaded) = files::load_valid(&paths, Timestamp::now())?;
            let fed = loaded.federation.as_ref().context("no federation")?;
            let snap =
                EdgeSnapshot::build(&loaded.spec, fed, &edge, snapshot_version).map_err(|e| {
                    let edges: Vec<&str> = fed.edges.iter().map(|e| e.id.as_str()).collect();
                    anyhow!("{e}; the edges are: {}", edges.join(", "))
                })?;
            let json = snap.to_json_pretty();
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!("{}.snapshot.json", edge.replace('/', "-")))
            });
            if out.as_os_str() == "-" {
                outln!("{}", String::from_utf8_lossy(&json));
            } else {
                std::fs::write(&out, &json)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                eprintln!(
                    "wrote {} (edge {}, version {}, {} services, {} policies, {} bytes)",
                    out.display(),
                    snap.edge,
                    snap.version,
                    snap.document.services.len(),
                    snap.document.policies.len(),
                    json.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DnsForwarders {
            config,
            org,
            format,
        } => {
            #[allow(clippy::disallowed_methods)] // the binary is where the clock is read
            let (_, loaded) = files::load_valid(&config, Timestamp::now())?;
            let fed = loaded.federation.as_ref().context("no federation")?;
            let (zones, targets) = crate::forwarders::plan(&loaded.spec, fed, &org)?;
            out!(
                "{}",
                crate::forwarders::render(format, &fed.name, &org, &zones, &targets)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Firewall {
            config,
            org,
            format,
            control_plane,
            conn,
        } => {
            let loaded = files_or_live(&config, &conn, now())?;
            let fed = loaded
                .federation
                .as_ref()
                .context("the federation does not validate now; `fedctl check` shows why")?;
            let openings = firewall::plan(&loaded.spec, fed, &org, &control_plane)?;
            out!("{}", firewall::render(format, &fed.name, &org, &openings)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { command } => demo::run(command),
        Command::Certs { command } => {
            #[allow(clippy::disallowed_methods)] // the binary is where the clock is read
            crate::certs::run(command, Timestamp::now())
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Explained {
    pub from_org: String,
    pub from_network: Option<String>,
    pub from_address: Option<IpAddr>,
    pub service: String,
    pub owner: String,
    pub port: u16,
    pub at: Timestamp,
    pub decision: Decision,
}

fn explain(fed: &Federation, from: &str, to: &str, now: Timestamp) -> anyhow::Result<Explained> {
    let routing = RoutingTable::new(fed);
    let policies = PolicySet::compile(fed);
    let (org, rest) = match from.split_once('/') {
        Some((o, r)) => (o, Some(r)),
        None => (from, None),
    };
    if fed.org(org).is_none() {
        let ids: Vec<&str> = fed.orgs.iter().map(|o| o.id.as_str()).collect();
        bail!(
            "unknown organisation `{org}` in --from; the members are: {}",
            ids.join(", ")
        );
    }
    let (network, address) = match rest {
        None => (None, None),
        Some(r) => match r.parse::<IpAddr>() {
            Ok(ip) => {
                let m = routing.classify(org, ip).ok_or_else(|| {
                    anyhow!("{ip} is in none of `{org}`'s networks; give ORG/NETWORK, or an address inside one of its ranges")
                })?;
                (Some(m.label.clone()), Some(ip))
            }
            Err(_) => {
                if fed.network(&format!("{org}/{r}")).is_none() {
                    let labels: Vec<String> = fed
                        .networks_of(&federation::model::OrgId::new(org))
                        .map(|n| n.label.clone())
                        .collect();
                    bail!(
                        "`{org}` has no network `{r}`; its networks are: {}",
                        labels.join(", ")
                    );
                }
                (Some(r.to_owned()), None)
            }
        },
    };
    let (target, port) = match to.rsplit_once(':') {
        Some((t, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => (
            t,
            Some(
                p.parse::<u16>()
                    .map_err(|_| anyhow!("port `{p}` is outside 1-65535"))?,
            ),
        ),
        _ => (to, None),
    };
    let route = routing.resolve(target).ok_or_else(|| {
        anyhow!("no service `{target}`: give ORG/NAME (e.g. `dpft/ehr`) or one of its DNS names")
    })?;
    let port = match (port, route.ports.as_slice()) {
        (Some(p), _) => p,
        (None, [only]) => *only,
        (None, many) => bail!(
            "`{}` serves several ports ({}); add `:PORT` to --to",
            route.service,
            many.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let decision = policies.decide(
        &Flow {
            src_org: org,
            src_network: network.as_deref(),
            src_addr: address,
            service: route.service.as_str(),
            port,
        },
        now,
    );
    Ok(Explained {
        from_org: org.to_owned(),
        from_network: network,
        from_address: address,
        service: route.service.to_string(),
        owner: route.owner.to_string(),
        port,
        at: now,
        decision,
    })
}

impl Explained {
    fn text(&self, fed: &Federation) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let verdict = match self.decision.verdict {
            Verdict::Allow => "ALLOW",
            Verdict::Deny => "DENY",
        };
        let mut src = self.from_org.clone();
        if let Some(n) = &self.from_network {
            let _ = write!(src, " network {n}");
        }
        if let Some(a) = &self.from_address {
            let _ = write!(src, " address {a}");
        }
        let _ = writeln!(
            s,
            "{verdict}: {src} -> {}:{} (owned by {}) at {}",
            self.service, self.port, self.owner, self.at
        );
        let _ = writeln!(s, "  reason: {}", self.decision.reason);
        for id in &self.decision.rules {
            if let Some(p) = fed.policies.iter().find(|p| &p.id == id) {
                let expiry = p
                    .expires
                    .map(|e| format!(", expires {}", shown_end(e)))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  rule: {} ({}{expiry}): {}",
                    p.id,
                    p.action.as_str(),
                    p.description
                );
            }
        }
        if let Some(a) = self
            .decision
            .agreement
            .as_ref()
            .and_then(|a| fed.agreement(a.as_str()))
        {
            let _ = writeln!(
                s,
                "  agreement: {} \"{}\" ({}), in force {} to {}",
                a.id,
                a.title,
                a.legal_basis,
                shown_start(a.start),
                shown_end(a.expires)
            );
        }
        s
    }
}

/// A start as the document gives it: a date where it is a midnight UTC
/// (`start: 2025-04-01`), else the instant.
fn shown_start(t: Timestamp) -> String {
    midnight_utc(t).map_or_else(|| t.to_string(), |d| d.to_string())
}

/// An end as the document gives it: a date-only `expires: 2030-03-31` is
/// held as the next midnight (docs/config.md §2), and shown as the date
/// written, its last day, not the instant after it.
fn shown_end(t: Timestamp) -> String {
    midnight_utc(t)
        .and_then(|d| d.yesterday().ok())
        .map_or_else(|| t.to_string(), |d| format!("{d} (its last day, UTC)"))
}

fn midnight_utc(t: Timestamp) -> Option<jiff::civil::Date> {
    let dt = t.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    (dt.time() == jiff::civil::Time::midnight()).then(|| dt.date())
}
