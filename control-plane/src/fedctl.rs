//! `fedctl`, the network admin's tool. The offline commands run the pure core
//! on files; online commands (against a control plane) arrive later.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use federation::model::Federation;
use federation::routing::RoutingTable;
use federation::{Decision, EdgeSnapshot, Flow, PolicySet, Verdict};
use jiff::Timestamp;
use serde::Serialize;

use crate::{files, render};

const EXIT_CODES: &str = "\
Exit status:
  0  success (for `check`: no error; warnings allowed)
  1  `check` found errors
  2  the command line was wrong
  3  input could not be used: unreadable file, invalid federation, unknown edge or service";

#[derive(Parser)]
#[command(name = "fedctl", version, about = "Administer a Fedgate federation", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check federation files offline: syntax, references, overlaps, zones,
    /// policies and expiries, printed like a compiler's diagnostics.
    #[command(
        after_help = "Example:\n  fedctl check configs/south-east\n  fedctl check -o json dpft.yaml federation.yaml"
    )]
    Check {
        /// Files, or directories of *.yaml files, that together make one federation.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
        /// Check as of this date or RFC 3339 time instead of now (expiry warnings).
        #[arg(long)]
        at: Option<String>,
    },
    /// Explain the decision on a flow: allowed or denied, by which rule and agreement.
    #[command(
        after_help = "Examples:\n  fedctl explain --config configs/south-east --from wmcc/roaming-staff --to dpft/ehr:443\n  fedctl explain --config configs/south-east --from wmcc/10.40.0.7 --to epr.dpft.example"
    )]
    Explain {
        /// The federation files (or directories).
        #[arg(long, short, required = true, num_args = 1..)]
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
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
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
    /// Development certificates: a CA, and identities it signs. Never for production.
    #[command(
        after_help = "Example:\n  fedctl certs dev --config configs/south-east --out certs-dev/out"
    )]
    Certs {
        #[command(subcommand)]
        command: crate::certs::CertsCommand,
    },
}

/// Run the command line; the binary's `main` is this and nothing else.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fedctl: {err:#}");
            ExitCode::from(3)
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
        Command::Check { paths, output, at } => {
            let now = now_or(at.as_deref())?;
            let sources = files::read_sources(&paths)?;
            let loaded = federation::load(&sources, now);
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&render::json(&sources, &loaded.diagnostics))?
                ),
                Output::Text => {
                    render::human(&sources, &loaded.diagnostics)?;
                    let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
                    let warnings = loaded.diagnostics.len() - errors;
                    let files = sources.len();
                    if errors == 0 {
                        println!("ok: {files} file(s), {warnings} warning(s)");
                    } else {
                        println!(
                            "failed: {errors} error(s), {warnings} warning(s) in {files} file(s)"
                        );
                    }
                }
            }
            Ok(if loaded.has_errors() {
                ExitCode::from(1)
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
        } => {
            let now = now_or(at.as_deref())?;
            let (_, loaded) = files::load_valid(&config, now)?;
            let fed = loaded.federation.as_ref().context("no federation")?;
            let explained = explain(fed, &from, &to, now)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&explained)?),
                Output::Text => print!("{}", explained.text(fed)),
            }
            Ok(ExitCode::SUCCESS)
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
            let json = snap.to_json();
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!("{}.snapshot.json", edge.replace('/', "-")))
            });
            if out.as_os_str() == "-" {
                println!("{}", String::from_utf8_lossy(&json));
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
            print!(
                "{}",
                crate::forwarders::render(format, &fed.name, &org, &zones, &targets)
            );
            Ok(ExitCode::SUCCESS)
        }
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
                    .map(|e| format!(", expires {e}"))
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
                a.id, a.title, a.legal_basis, a.start, a.expires
            );
        }
        s
    }
}
