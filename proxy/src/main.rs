#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use proxy::control::ControlConfig;
use proxy::{Config, Limits, Listen};

/// mimalloc, not the C library's allocator: every flow allocates and frees
/// its task, buffers, audit record and QUIC stream state, and with glibc's
/// malloc that was a fifth of the edge's own CPU time per new connection.
/// Measured through two edges with nginx behind (bench/README.md, "The
/// allocator"): 4-7% more requests/s, new connections/s and bulk.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Fedgate edge proxy: joins this member's network to the federation's
/// mutual-TLS overlay and carries visiting staff's flows to their home
/// organisation's edge, checked at both ends and audited.
#[derive(Parser)]
#[command(
    name = "fedgate-edge",
    version,
    about,
    after_help = "Exit status: 0 stopped cleanly; 1 failed while running; 64 bad configuration (nothing was bound).\nLogging: FEDGATE_LOG (default `warn,proxy=info,fedgate::audit=info`: the audit records too), e.g. FEDGATE_LOG=debug; --log-format json (FEDGATE_LOG_FORMAT) for one JSON object per line."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The log's format: `text`, or `json`, one object per line (for a SIEM).
    #[arg(
        long,
        global = true,
        env = "FEDGATE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge, from a snapshot file (`fedctl snapshot --edge ORG/NAME ...`) or following the control plane (--control).
    #[command(
        after_help = "Examples:\n  fedgate-edge run --edge dpft/core --snapshot dpft-core.snapshot.json \\\n    --cert certs-dev/out/edges/dpft-core.pem --key certs-dev/out/edges/dpft-core.key \\\n    --ca certs-dev/out/ca.pem --connect 127.0.1.1:3128 --sni 127.0.1.1:443 --vips \\\n    --dns 127.0.1.1:53 --admin 127.0.0.1:9101 --audit dpft-core.audit.jsonl\n  fedgate-edge run --edge dpft/core --control 127.0.0.1:7443 \\\n    --control-key certs-dev/out/control/signing.pub \\\n    --cache /var/lib/fedgate-edge/dpft-core.snapshot.json \\\n    --cert certs-dev/out/edges/dpft-core.pem --key certs-dev/out/edges/dpft-core.key \\\n    --ca certs-dev/out/ca.pem ..."
    )]
    Run(Box<RunArgs>),
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that an audit log is complete and unaltered (its hash chain).
    /// Give a rotated log's files oldest first, then the file being
    /// written: each must go on from the one before. A first file that
    /// starts after record 1 is checked from its first record on.
    #[command(
        after_help = "Examples:\n  fedgate-edge audit verify dpft-core.audit.jsonl\n  fedgate-edge audit verify dpft-core.audit.jsonl.0* dpft-core.audit.jsonl\n  fedgate-edge audit verify --partial dpft-core.audit.jsonl"
    )]
    Verify {
        #[arg(required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// The first file may start after record 1 (the files before it
        /// archived elsewhere): check from its first record on, and say
        /// where that is.
        #[arg(long)]
        partial: bool,
        /// The log's anchors: the heads the edge reported to the control
        /// plane (`fedctl audit-anchors --edge ORG/NAME`), or the edge's own
        /// JSON log (`--log-format json`), whose `audit head` lines are
        /// anchors. The log must hold each anchored record as reported and
        /// not end before the last, which shows a log written anew or cut
        /// short at its end.
        #[arg(long, value_name = "FILE")]
        anchors: Option<PathBuf>,
        /// Only the anchors of this log in FILE: an edge's anchors file of
        /// the control plane's admin audit logs holds one per replica
        /// (`control/NAME`).
        #[arg(long, value_name = "OWNER", requires = "anchors")]
        anchors_of: Option<String>,
    },
}

/// Anchors from `path`: one JSON object per line (as `fedctl
/// audit-anchors` writes them), or one JSON array.
fn read_anchors(path: &Path) -> Result<Vec<federation::chain::Anchor>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read anchors {}: {e}", path.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}:{}: not a list of anchors: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        });
    }
    let mut anchors = Vec::new();
    let mut log_lines = 0;
    for (i, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(l).map_err(|e| {
            format!(
                "{}:{}:{}: not an anchor ({e}); write the file with `fedctl audit-anchors --edge ORG/NAME`, or give the edge's log as JSON (`--log-format json`)",
                path.display(),
                i + 1,
                e.column()
            )
        })?;
        // A line of the edge's own JSON log: its `audit head` lines are
        // anchors, witnessed by whoever kept the log; the others are skipped.
        if let Some(fields) = value.get("fields") {
            log_lines += 1;
            if fields["message"] == proxy::audit::HEAD_MESSAGE {
                anchors.push(head_anchor(&value, fields).ok_or_else(|| {
                    format!(
                        "{}:{}: an `audit head` line without edge, seq or hash",
                        path.display(),
                        i + 1
                    )
                })?);
            }
            continue;
        }
        anchors.push(serde_json::from_value(value).map_err(|e| {
            format!(
                "{}:{}: not an anchor ({e}); write the file with `fedctl audit-anchors --edge ORG/NAME`",
                path.display(),
                i + 1
            )
        })?);
    }
    if anchors.is_empty() && log_lines > 0 {
        return Err(format!(
            "{}: {log_lines} log lines and no `audit head` among them: the edge logs its head every --audit-head-log-secs (300 by default) once it has records, and at stop",
            path.display()
        ));
    }
    Ok(anchors)
}

/// An anchor from an `audit head` line of an edge's JSON log: witnessed by
/// the log (`replica` "log").
fn head_anchor(
    line: &serde_json::Value,
    fields: &serde_json::Value,
) -> Option<federation::chain::Anchor> {
    Some(federation::chain::Anchor {
        time: line["timestamp"].as_str().unwrap_or_default().to_owned(),
        edge: fields["edge"].as_str()?.to_owned(),
        seq: fields["seq"].as_u64()?,
        hash: fields["hash"].as_str()?.to_owned(),
        replica: "log".to_owned(),
    })
}

#[derive(Args)]
struct RunArgs {
    /// This edge, ORG/NAME.
    #[arg(long, env = "FEDGATE_EDGE")]
    edge: String,
    /// A snapshot file (`fedctl snapshot`), for air-gapped sites and tests.
    #[arg(long, env = "FEDGATE_SNAPSHOT", required_unless_present = "control")]
    snapshot: Option<PathBuf>,
    /// A control-plane replica, HOST:PORT; repeat for failover. The edge
    /// then follows its signed snapshot (and --snapshot is not needed).
    #[arg(long, env = "FEDGATE_CONTROL", value_delimiter = ',', requires_all = ["control_key", "cache"])]
    control: Vec<String>,
    /// The control plane's snapshot-signing public key (`signing.pub`).
    #[arg(long, env = "FEDGATE_CONTROL_KEY")]
    control_key: Option<PathBuf>,
    /// The last-known-good snapshot, kept for restarts while the control
    /// plane is away.
    #[arg(long, env = "FEDGATE_CACHE")]
    cache: Option<PathBuf>,
    /// Keep the service VIPs given out here, so that a restart gives each
    /// service the address it had; default with --cache: the cache's path
    /// with `.vips` added.
    #[arg(long, env = "FEDGATE_VIP_STATE")]
    vip_state: Option<PathBuf>,
    /// Keep anchors of the control plane's admin audit log here: the head
    /// each replica tells this edge in answer to its reports, so that the
    /// log of every change to the federation can be proved complete from
    /// outside the control plane's hosts (`fedgate-edge audit verify
    /// --anchors FILE --anchors-of control/NAME`); default with --cache:
    /// the cache's path with `.anchors` added.
    #[arg(long, env = "FEDGATE_CONTROL_ANCHORS")]
    control_anchors: Option<PathBuf>,
    /// Keep at most one anchor per replica this often, in seconds; a head
    /// that went back is kept at once.
    #[arg(long, default_value_t = 300)]
    control_anchor_secs: u64,
    /// Seconds a long poll to the control plane is held open.
    #[arg(long, default_value_t = 25)]
    poll_secs: u64,
    /// Seconds to keep trying the control plane at start without a cache.
    #[arg(long, default_value_t = 60)]
    start_wait_secs: u64,
    /// Seconds a flow that a new snapshot no longer allows may go on.
    #[arg(long, default_value_t = 30)]
    deny_grace_secs: u64,
    /// This edge's certificate chain (PEM), issued by the federation CA with
    /// the edge's URI SAN identity (`fedctl certs`).
    #[arg(long, env = "FEDGATE_CERT")]
    cert: PathBuf,
    /// The certificate's private key (PEM).
    #[arg(long, env = "FEDGATE_KEY")]
    key: PathBuf,
    /// The federation CA certificates trusted (PEM; during a CA rollover,
    /// the old and the new).
    #[arg(long, env = "FEDGATE_CA")]
    ca: PathBuf,
    /// Append one JSON line per flow here (hash-chained).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Rotate the --audit file once it holds this much (e.g. 256MiB, 64KiB;
    /// 0: never): it is renamed FILE.FIRST-LAST (its first and last record
    /// numbers) and a new FILE goes on with the chain.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    audit_rotate_size: u64,
    /// Also rotate the --audit file at each multiple of this since the Unix
    /// epoch, when it holds a record: 24h at midnight UTC, 1h on the hour
    /// (units s, m, h, d).
    #[arg(long, value_parser = parse_interval)]
    audit_rotate_every: Option<Duration>,
    /// Do not flush the audit records to the disk (fdatasync, otherwise at
    /// most every 100 ms): a power cut may then lose the last seconds of
    /// records.
    #[arg(long)]
    audit_no_sync: bool,
    /// Log the audit log's head (`audit head`: its last record's seq and
    /// hash) this often, in seconds, when it has moved, and at stop: an
    /// anchor in the edge's own log, for whoever keeps that log off the host
    /// (journald, a SIEM). `fedgate-edge audit verify --anchors` reads them
    /// from the JSON log (`--log-format json`). 0: never
    #[arg(long, default_value_t = 300)]
    audit_head_log_secs: u64,
    /// QUIC overlay listener; default: the snapshot's `overlay.quic` for this edge.
    #[arg(long)]
    overlay_quic: Option<SocketAddr>,
    /// TLS-over-TCP overlay listener; default: the snapshot's `overlay.tcp`.
    #[arg(long)]
    overlay_tcp: Option<SocketAddr>,
    /// Neither listen on nor dial QUIC (as where UDP is blocked).
    #[arg(long)]
    no_quic: bool,
    /// TLS listener routing by SNI.
    #[arg(long)]
    sni: Option<SocketAddr>,
    /// HTTP CONNECT proxy (also serves /proxy.pac).
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// SOCKS5 listener (CONNECT to a service name or VIP; no authentication:
    /// the source network comes from the client's address).
    #[arg(long)]
    socks: Option<SocketAddr>,
    /// Listen on each remote TCP service's VIP from the ingress prefix.
    #[arg(long)]
    vips: bool,
    /// Metrics, /healthz and /readyz.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Flows at once, in total; past it new ones are refused as "overloaded".
    #[arg(long, default_value_t = 100_000)]
    max_flows: usize,
    /// Flows at once that one peer edge brings to this edge as their home;
    /// past it new ones are refused as "overloaded".
    #[arg(long, default_value_t = 50_000)]
    max_flows_per_peer: usize,
    /// Audit records kept in memory while the --audit file cannot be
    /// written (a full disk): each is written, in order, once it can be.
    /// Past this many, new flows are refused as "audit-unavailable" until
    /// the file takes them.
    #[arg(long, default_value_t = proxy::audit::DEFAULT_BACKLOG)]
    audit_backlog: u64,
    /// New client connections per second per source address.
    #[arg(long, default_value_t = 200)]
    conn_rate: u32,
    /// Seconds flows may take to finish after SIGTERM.
    #[arg(long, default_value_t = 10)]
    drain_secs: u64,
    /// QUIC idle timeout in seconds.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Seconds a peer edge has to finish its TLS (or QUIC) handshake.
    #[arg(long, default_value_t = 5)]
    handshake_secs: u64,
    /// Seconds a client has to send its first bytes (ClientHello, CONNECT or
    /// SOCKS request), and a peer edge its flow header.
    #[arg(long, default_value_t = 10)]
    client_hello_secs: u64,
    /// Close a flow on which nothing has moved for this many seconds.
    #[arg(long, default_value_t = 300)]
    flow_idle_secs: u64,
    /// Milliseconds a flow that finds no QUIC connection to its peer up
    /// waits for the one being set up before it goes over TLS on TCP
    /// (QUIC goes on being set up, and later flows take it). Where UDP is
    /// blocked, the first flow is late by this much only; raise it where
    /// a QUIC handshake takes longer (a far peer, a busy host). 0: flows
    /// take QUIC only once it is up.
    #[arg(long, default_value_t = 300)]
    quic_head_start_ms: u64,
    /// Split-horizon DNS on this address (UDP and TCP); default: the
    /// snapshot's `dns` for this edge, else off. Not `0.0.0.0` or `[::]`: an
    /// answer over UDP must leave from the address it was asked at.
    #[arg(long, value_parser = parse_dns_listen)]
    dns: Option<SocketAddr>,
    /// TTL in seconds of the DNS answers (and of negative answers).
    #[arg(long, default_value_t = 30)]
    dns_ttl: u32,
    /// DNS queries per second per client address (also the burst); 0: no limit.
    #[arg(long, default_value_t = 1000)]
    dns_rate: u32,
    /// Check the snapshot file, --cert/--key for a renewed certificate and
    /// --ca for a new CA bundle, this often (milliseconds); 0: never.
    #[arg(long, default_value_t = 200)]
    reload_ms: u64,
    /// Threads that relay flows; default: one per core. With 1, every flow,
    /// the overlay's connections and the listeners run on one thread: no
    /// hand-over between threads, so the least latency and CPU per flow,
    /// for an edge given one core (or sharing a small machine).
    #[arg(long, env = "FEDGATE_THREADS")]
    threads: Option<NonZeroUsize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FEDGATE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,proxy=info,fedgate::audit=info")
    });
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => log.json().with_span_list(true).init(),
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match cli.command {
        Command::Audit {
            command:
                AuditCommand::Verify {
                    files,
                    partial,
                    anchors,
                    anchors_of,
                },
        } => {
            let mut given = match anchors.as_deref().map(read_anchors).transpose() {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("fedgate-edge: {e}");
                    return ExitCode::from(64);
                }
            };
            if let (Some(list), Some(owner)) = (&mut given, &anchors_of) {
                list.retain(|a| &a.edge == owner);
                if list.is_empty() {
                    eprintln!(
                        "fedgate-edge: {} holds no anchor of {owner}",
                        anchors.as_deref().unwrap_or(Path::new("")).display()
                    );
                    return ExitCode::from(64);
                }
            }
            verify_command(&files, partial, given)
        }
        Command::Run(args) => run(*args),
    }
}

/// Write `text` to stdout; when the reader has gone (`... | head -1`), end
/// at once with status 0, where `print!` would panic.
fn print_stdout(text: &str) {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// `fedgate-edge audit verify`.
fn verify_command(
    files: &[PathBuf],
    partial: bool,
    anchors: Option<Vec<federation::chain::Anchor>>,
) -> ExitCode {
    let given = anchors.is_some();
    match proxy::audit::verify_anchored(files, partial, anchors.unwrap_or_default()) {
        Ok((checked, anchored)) => {
            use std::fmt::Write as _;
            let mut text = String::new();
            if files.len() > 1 {
                for (file, v) in files.iter().zip(&checked) {
                    let range = match &v.first {
                        Some((first, _)) => format!("records {first} to {}", v.last_seq),
                        None => "no records".into(),
                    };
                    let _ = writeln!(text, "{}: {range}", file.display());
                }
            }
            let records: u64 = checked.iter().map(|v| v.records).sum();
            let last = checked.last().map_or("", |v| v.last_hash.as_str());
            let _ = writeln!(
                text,
                "ok: {records} records, chain intact, last hash {last}"
            );
            if let Some((first, prev)) = checked.first().and_then(|v| v.first.as_ref())
                && *first > 1
            {
                let _ = writeln!(
                    text,
                    "from record {first} on, after a record with hash {prev}: records 1 to {} are in the files before it",
                    first - 1
                );
            }
            if given {
                let _ = writeln!(
                    text,
                    "anchors: {} matched, the log not cut before the last{}",
                    anchored.matched,
                    if anchored.before > 0 {
                        format!(
                            "; {} of records before this log's first, not checked",
                            anchored.before
                        )
                    } else {
                        String::new()
                    }
                );
            }
            print_stdout(&text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            eprintln!(
                "fedgate-edge: audit log {} does not verify: {e:#}",
                shown.join(" ")
            );
            ExitCode::from(1)
        }
    }
}

/// `text` as a whole number and the unit after it; `what` and `hint` make
/// the error when there is no number.
fn number_and_unit<'a>(text: &'a str, what: &str, hint: &str) -> Result<(u64, &'a str), String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n = digits
        .parse()
        .map_err(|_| format!("`{text}` is not {what}: give a number with {hint}"))?;
    Ok((n, unit.trim()))
}

/// A size in bytes: a number with an optional unit (K, KiB, M, MiB, G,
/// GiB: powers of 1,024).
/// `--dns`: an address of the edge host's own. From a socket on every
/// address an answer over UDP leaves from whichever address the route to
/// the resolver picks, and a resolver drops an answer from an address it
/// did not ask.
fn parse_dns_listen(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("`{text}` is not IP:PORT (e.g. 10.20.0.5:53 or [2001:db8::5]:53)"))?;
    if addr.ip().is_unspecified() {
        return Err(format!(
            "`{text}` is every address: a DNS answer over UDP would leave from whichever address the route picks, and resolvers drop it; give the address the member's resolvers query, e.g. 10.20.0.5:{}",
            addr.port()
        ));
    }
    Ok(addr)
}

fn parse_size(text: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(text, "a size", "K, M or G (e.g. 256MiB)")?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`: use K, M or G (KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A time interval: a number with a unit (s, m, h, d).
fn parse_interval(text: &str) -> Result<Duration, String> {
    let (n, unit) = number_and_unit(text, "an interval", "s, m, h or d (e.g. 24h)")?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`: use s, m, h or d"
            ));
        }
    };
    match n.checked_mul(secs) {
        Some(0) => Err(format!(
            "`{text}`: an interval of 0 rotates nothing; leave the flag out"
        )),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Err(format!("`{text}` is too long")),
    }
}

/// The runtime the edge runs on: tokio's multi-threaded one with `threads`
/// workers (default: one per core), or with one thread its single-threaded
/// one, which hands no task between threads.
fn runtime(threads: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    match threads.map(NonZeroUsize::get) {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

fn run(args: RunArgs) -> ExitCode {
    // Fail on a bad snapshot file before any port is bound.
    if let (Some(path), true) = (&args.snapshot, args.control.is_empty())
        && let Err(e) = proxy::load_node(path, &args.edge)
    {
        eprintln!("fedgate-edge: {e:#}");
        return ExitCode::from(64);
    }
    let control = match (&args.control_key, &args.cache) {
        (Some(key), Some(cache)) if !args.control.is_empty() => Some(ControlConfig {
            addrs: args.control.clone(),
            key: key.clone(),
            cache: cache.clone(),
            poll_wait: Duration::from_secs(args.poll_secs),
            start_wait: Duration::from_secs(args.start_wait_secs),
            anchors: args.control_anchors.clone().unwrap_or_else(|| {
                let mut p = cache.clone().into_os_string();
                p.push(".anchors");
                PathBuf::from(p)
            }),
            anchor_every: Duration::from_secs(args.control_anchor_secs),
        }),
        _ => None,
    };
    let listen = Listen {
        overlay_quic: args.overlay_quic,
        overlay_tcp: args.overlay_tcp,
        no_quic: args.no_quic,
        sni: args.sni,
        connect: args.connect,
        socks: args.socks,
        vips: args.vips,
        admin: args.admin,
    };
    let dns = proxy::dns::DnsConfig {
        ttl: args.dns_ttl,
        rate: args.dns_rate,
        ..proxy::dns::DnsConfig::default()
    };
    let vip_state = args.vip_state.clone().or_else(|| {
        control.as_ref().map(|c| {
            let mut p = c.cache.clone().into_os_string();
            p.push(".vips");
            PathBuf::from(p)
        })
    });
    let config = Config {
        vip_state,
        control,
        edge: args.edge,
        snapshot: args.snapshot,
        cert: args.cert,
        key: args.key,
        ca: args.ca,
        audit: args.audit,
        audit_settings: proxy::audit::Settings {
            backlog: args.audit_backlog,
            rotate_at: args.audit_rotate_size,
            rotate_every: args.audit_rotate_every,
            sync: !args.audit_no_sync,
            head_log_every: (args.audit_head_log_secs > 0)
                .then(|| Duration::from_secs(args.audit_head_log_secs)),
        },
        listen,
        dns,
        dns_listen: args.dns,
        reload_every: (args.reload_ms > 0).then(|| Duration::from_millis(args.reload_ms)),
        limits: Limits {
            max_flows: args.max_flows,
            max_flows_per_peer: args.max_flows_per_peer,
            conn_rate_per_source: args.conn_rate,
            drain: Duration::from_secs(args.drain_secs),
            idle_timeout: Duration::from_secs(args.idle_secs.max(1)),
            handshake_timeout: Duration::from_secs(args.handshake_secs.max(1)),
            client_hello_timeout: Duration::from_secs(args.client_hello_secs.max(1)),
            flow_idle: Duration::from_secs(args.flow_idle_secs.max(1)),
            deny_grace: Duration::from_secs(args.deny_grace_secs),
            quic_head_start: Duration::from_millis(args.quic_head_start_ms),
            ..Limits::default()
        },
    };
    let runtime = match runtime(args.threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fedgate-edge: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        // Run on (SIGTERM then stops the process outright);
                        // a dropped sender would drain it now.
                        tracing::error!(cause = %e, "cannot watch SIGTERM");
                        std::future::pending::<()>().await;
                        drop(tx);
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let _ = tx.send(true);
        });
        match proxy::run(config, rx).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fedgate-edge: {e:#}");
                let bad_config = e.chain().any(|c| {
                    c.to_string().contains("cannot read")
                        || c.to_string().contains("malformed")
                        || c.to_string().contains("do not match")
                        || c.to_string().contains("does not verify")
                });
                ExitCode::from(if bad_config { 64 } else { 1 })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_interval, parse_size};
    use std::time::Duration;

    #[test]
    fn intervals_take_a_unit_and_name_a_bad_one() {
        assert_eq!(parse_interval("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_interval("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_interval("90s"), Ok(Duration::from_secs(90)));
        assert!(
            parse_interval("24")
                .unwrap_err()
                .contains("unknown unit ``")
        );
        assert!(
            parse_interval("0h")
                .unwrap_err()
                .contains("leave the flag out")
        );
        assert!(
            parse_interval("h")
                .unwrap_err()
                .contains("is not an interval")
        );
    }

    #[test]
    fn sizes_take_binary_units_and_name_a_bad_one() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(
            parse_size("12XB")
                .unwrap_err()
                .contains("unknown unit `xb`")
        );
        assert!(parse_size("MiB").unwrap_err().contains("is not a size"));
        assert!(
            parse_size("99999999999G")
                .unwrap_err()
                .contains("too large")
        );
    }
}
