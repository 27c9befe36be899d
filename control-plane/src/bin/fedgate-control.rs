#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use control_plane::server::{self, Options};
use control_plane::store::Store;
use control_plane::store::embedded::EmbeddedStore;

/// The Fedgate control plane: keeps the federation document's versions and
/// hands every edge its signed snapshot.
#[derive(Parser)]
#[command(name = "fedgate-control", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// The log's format: `text`, or `json`, one object per line (for a
    /// SIEM); FEDGATE_LOG sets what is logged.
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
    /// Serve the API (HTTPS, mutual TLS) until SIGTERM.
    #[command(
        after_help = "Example (development identities from `fedctl certs dev`):\n  fedgate-control run --data /var/lib/fedgate-control --listen 127.0.0.1:7443 \\\n    --cert certs-dev/out/control/control-1.pem --key certs-dev/out/control/control-1.key \\\n    --ca certs-dev/out/ca.pem --signing-key certs-dev/out/control/signing.key --init configs/south-east\n\nExit status: 0 stopped cleanly, 1 failed, 64 bad configuration."
    )]
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Data directory: the embedded store and the admin audit log.
    #[arg(long, env = "FEDGATE_CONTROL_DATA")]
    data: PathBuf,
    /// Address of the API.
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// This replica's certificate (URI SAN spiffe://TD/control/NAME).
    #[arg(long, env = "FEDGATE_CERT")]
    cert: PathBuf,
    #[arg(long, env = "FEDGATE_KEY")]
    key: PathBuf,
    /// The federation CA.
    #[arg(long, env = "FEDGATE_CA")]
    ca: PathBuf,
    /// The ed25519 key that signs snapshots (`fedctl certs signing-key`).
    #[arg(long, env = "FEDGATE_SIGNING_KEY")]
    signing_key: PathBuf,
    /// Seed an empty store with these files or directories as version 1.
    #[arg(long, num_args = 1..)]
    init: Vec<PathBuf>,
    /// Keep versions in this etcd cluster instead of the data directory, so
    /// that several replicas serve one federation (comma-separated client
    /// URLs). Needs a build with `--features etcd`.
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    etcd: Vec<String>,
    /// The key prefix of this federation in etcd.
    #[arg(long, default_value = "/fedgate/federation")]
    etcd_prefix: String,
    /// The longest an edge's snapshot request is held open, in seconds.
    #[arg(long, default_value_t = 30)]
    long_poll_secs: u64,
    /// Check --cert/--key for a renewed certificate and --ca for a new CA
    /// bundle this often (milliseconds); 0: never.
    #[arg(long, default_value_t = 1000)]
    reload_ms: u64,
    /// Keep each edge's audit log head (which it reports after each poll)
    /// as an anchor of its log at most this often, in seconds
    /// (DATA/audit-anchors.jsonl; `fedctl audit-anchors`). A head that goes
    /// back is kept, and logged, at once.
    #[arg(long, default_value_t = 300)]
    audit_anchor_secs: u64,
    /// Serve /metrics (Prometheus text), /healthz and /readyz on this
    /// address, over plain HTTP: bind it to the host's monitoring network.
    #[arg(long, env = "FEDGATE_CONTROL_METRICS", value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

async fn open_store(run: &RunArgs) -> Result<Store, String> {
    if run.etcd.is_empty() {
        return EmbeddedStore::open(&run.data)
            .map(Store::Embedded)
            .map_err(|e| e.to_string());
    }
    #[cfg(feature = "etcd")]
    {
        control_plane::store::etcd::EtcdStore::connect(&run.etcd, &run.etcd_prefix)
            .await
            .map(Store::Etcd)
            .map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = &run.etcd_prefix;
        Err("--etcd needs a build with the etcd store: cargo build --release -p control-plane --features etcd (needs protoc)".into())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FEDGATE_LOG")
                .unwrap_or_else(|_| "warn,control_plane=info,fedgate_control=info".into()),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => log.json().with_span_list(true).init(),
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let Command::Run(run) = args.command;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fedgate-control: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let init = if run.init.is_empty() {
            None
        } else {
            match control_plane::files::read_sources(&run.init) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("fedgate-control: {e:#}");
                    return ExitCode::from(64);
                }
            }
        };
        let store = match open_store(&run).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("fedgate-control: {e}");
                return ExitCode::from(64);
            }
        };
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                    let _ = tx.send(true);
                }
                Err(e) => {
                    // Run on (SIGTERM then stops the process outright); a
                    // dropped sender would stop it now.
                    tracing::error!(cause = %e, "cannot watch SIGTERM");
                    std::future::pending::<()>().await;
                    drop(tx);
                }
            }
        });
        let opts = Options {
            data: run.data,
            listen: run.listen,
            cert: run.cert,
            key: run.key,
            ca: run.ca,
            signing_key: run.signing_key,
            init,
            long_poll_max: Duration::from_secs(run.long_poll_secs),
            reload_every: (run.reload_ms > 0).then(|| Duration::from_millis(run.reload_ms)),
            anchor_every: Duration::from_secs(run.audit_anchor_secs),
            metrics: run.metrics,
        };
        match server::run(opts, store, rx).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fedgate-control: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}
