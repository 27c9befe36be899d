//! Many light edges in one process, for the control plane's fan-out bench
//! (`bench/control-fanout.sh`); not a shipped binary.
//!
//! Every edge of the federation (or the first `--count`) gets its own
//! certificate from the bench's CA (in memory), one mutual-TLS connection to
//! `fedgate-control` kept alive, and long-polls `GET /v1/snapshot?have=V&wait=30`
//! on it as the real edge does (with the digest of the document it holds, so
//! that an unchanged document comes as a signed header alone); each answer
//! is verified on one verifier thread, in arrival order
//! (`SignedSnapshot::verify` / `SignedHeader::verify`: signature, digest)
//! and checked (its edge, a
//! newer version) before it counts as held. Then, once every edge holds
//! version 1, an admin of `--change-org` applies a real policy change through
//! `POST /v1/apply` and the bench measures, per edge, the delay until it holds
//! the new version: from the moment the apply was sent, and from the moment
//! it was acknowledged. Prints figures; asserts nothing.
//!
//! ```text
//! cargo run --release -p control-plane --example watchers -- --control 127.77.0.1:7443 \
//!   --ca DIR --signing-pub DIR/signing.pub --config federation.yaml --control-pid PID
//! ```
//!
//! Bounded: every wait has a deadline (`--deadline-secs`), every retry loop a
//! count; the process ends when the measurement does.

#![forbid(unsafe_code)]
// A benchmark reads the real clock; paused tokio time is for tests.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use control_plane::certs::Ca;
use federation::identity::Identity;
use federation::signed::{SignedHeader, SignedSnapshot, TrustedKey};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsConnector;

const USAGE: &str = "usage: watchers --control ADDR --ca DIR --signing-pub FILE --config PATH [options]
  --control ADDR        fedgate-control's API address (host:port)
  --ca DIR              the bench CA (ca.pem, ca.key): issues every edge's and the admin's certificate
  --signing-pub FILE    the control plane's snapshot key (signing.pub)
  --config PATH         the federation document (file or directory) the control plane runs
  --count N             watch only the first N edges (default: every edge)
  --control-pid PID     report this process's RSS and CPU (the control plane)
  --change-org ORG      whose admin applies the change (default: the first organisation)
  --change KIND         policy: ORG opens a service to another member (changes the
                        documents of ORG and its partners: the others get a signed
                        header only); revocation: ORG revokes a certificate serial
                        (every snapshot lists every revoked serial: every edge gets
                        a whole snapshot). Default: policy
  --connect-parallel K  TLS handshakes in flight at once (default: 64)
  --deadline-secs S     bound on each phase: connect, version 1, the new version (default: 300)";

struct Args {
    control: String,
    ca: PathBuf,
    signing_pub: PathBuf,
    config: PathBuf,
    count: Option<usize>,
    control_pid: Option<u32>,
    change_org: Option<String>,
    revocation: bool,
    connect_parallel: usize,
    deadline: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .with_context(|| format!("`{flag}` needs a value\n{USAGE}"))?;
        map.insert(flag, value);
    }
    let mut take = |k: &str| map.remove(k);
    let need = |v: Option<String>, k: &str| v.with_context(|| format!("{k} is required\n{USAGE}"));
    let num = |v: Option<String>, k: &str| -> anyhow::Result<Option<u64>> {
        v.map(|s| {
            s.parse::<u64>()
                .with_context(|| format!("{k} {s}: not a number"))
        })
        .transpose()
    };
    let args = Args {
        control: need(take("--control"), "--control")?,
        ca: need(take("--ca"), "--ca")?.into(),
        signing_pub: need(take("--signing-pub"), "--signing-pub")?.into(),
        config: need(take("--config"), "--config")?.into(),
        count: num(take("--count"), "--count")?.map(|n| n as usize),
        control_pid: num(take("--control-pid"), "--control-pid")?.map(|n| n as u32),
        change_org: take("--change-org"),
        revocation: match take("--change").as_deref() {
            None | Some("policy") => false,
            Some("revocation") => true,
            Some(other) => bail!("--change is `policy` or `revocation`, not `{other}`\n{USAGE}"),
        },
        connect_parallel: num(take("--connect-parallel"), "--connect-parallel")?
            .unwrap_or(64)
            .clamp(1, 4096) as usize,
        deadline: Duration::from_secs(
            num(take("--deadline-secs"), "--deadline-secs")?
                .unwrap_or(300)
                .clamp(1, 3600),
        ),
    };
    if let Some(k) = map.keys().next() {
        bail!("unknown argument `{k}`\n{USAGE}");
    }
    Ok(args)
}

/// Resident memory and CPU seconds (user + system) of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    rss_kib: u64,
    /// The peak RSS so far (VmHWM).
    peak_kib: u64,
    cpu_secs: f64,
}

/// Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux).
const CLK_TCK: f64 = 100.0;

fn usage(pid: &str) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let (rss_kib, peak_kib) = (kib("VmRSS:")?, kib("VmHWM:")?);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Usage {
        rss_kib,
        peak_kib,
        cpu_secs: ticks as f64 / CLK_TCK,
    })
}

/// An edge's TLS client and identity.
struct EdgeClient {
    id: String,
    connector: TlsConnector,
}

/// What a watcher reports to the bench.
enum Event {
    /// Holds `version` (verified), received at `received`, verified at `verified`.
    Holds {
        edge: usize,
        version: u64,
        received: Instant,
        verified: Instant,
        /// The verification's own time (an edge's, on its own CPU).
        cost: Duration,
        bytes: usize,
        /// A whole snapshot (not a signed header for the document held).
        whole: bool,
    },
    /// Gave up: the reason.
    Failed { edge: usize, reason: String },
}

async fn connect(
    control: &str,
    connector: &TlsConnector,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(control))
        .await
        .context("connect timed out")??;
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(
        Duration::from_secs(20),
        connector.connect(federation::mtls::server_name(), tcp),
    )
    .await
    .context("TLS handshake timed out")??;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: hyper::Method,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "control.fedgate.invalid");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    tokio::time::timeout(timeout, async {
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, bytes))
    })
    .await
    .context("no answer in time")?
}

/// What a watcher learns from a verified answer: for which edge, which
/// version, the document's digest, and whether it was a whole snapshot.
type Verified = (String, u64, String, bool);

/// Per edge, of the new version: received, verified (out of the queue),
/// size, whole or header only, its own verification time.
type Got = (Instant, Instant, usize, bool, Duration);

/// A verified answer and how long its verification took (on the verifier's
/// thread, queueing aside).
type Checked = Result<(Verified, Duration), String>;

/// Verification on a thread of its own, in arrival order: the watchers'
/// network tasks go on receiving (their `received` time is not delayed by
/// other watchers' verification), and the bench's process uses one core for
/// verifying what, in a real federation, 10,000 machines verify each on
/// their own.
struct Verifier {
    jobs: std::sync::mpsc::Sender<(Bytes, String, tokio::sync::oneshot::Sender<Checked>)>,
}

impl Verifier {
    fn start(key: Arc<TrustedKey>) -> Self {
        let (jobs, rx) =
            std::sync::mpsc::channel::<(Bytes, String, tokio::sync::oneshot::Sender<Checked>)>();
        std::thread::spawn(move || {
            // Ends when every sender is gone.
            while let Ok((body, digest, reply)) = rx.recv() {
                let t = Instant::now();
                let checked = verify(&body, &digest, &key).map(|v| (v, t.elapsed()));
                let _ = reply.send(checked);
            }
        });
        Self { jobs }
    }

    async fn verify(&self, body: Bytes, digest: String) -> Checked {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send((body, digest, tx))
            .map_err(|_| "the verifier stopped".to_owned())?;
        rx.await.map_err(|_| "the verifier stopped".to_owned())?
    }
}

/// A whole snapshot, or (the document unchanged) a newer version's signed
/// header naming the digest of the one held (`digest`): verified as the
/// edge does (signature, digest).
fn verify(body: &[u8], digest: &str, key: &TrustedKey) -> Result<Verified, String> {
    let refused = |e: federation::signed::SignatureError| format!("snapshot refused: {e}");
    if serde_json::from_slice::<SignedHeader>(body).is_ok() {
        let h = SignedHeader::verify(body, key).map_err(refused)?.header;
        if h.digest != digest {
            return Err(refused(
                federation::signed::SignatureError::DocumentNotHeld {
                    signed: h.digest,
                    held: digest.to_owned(),
                },
            ));
        }
        Ok((h.edge, h.version, h.digest, false))
    } else {
        let s = SignedSnapshot::verify(body, key).map_err(refused)?;
        Ok((s.edge, s.version, s.digest, true))
    }
}

/// One light edge: connect (at most `permits` handshakes at once), then
/// long-poll on the same connection until `stop`. Reconnects at most 3 times.
async fn watch_edge(
    i: usize,
    edge: Arc<EdgeClient>,
    control: Arc<str>,
    verifier: Arc<Verifier>,
    permits: Arc<Semaphore>,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut have = 0u64;
    let mut digest = String::new();
    let mut last_error = String::new();
    for _attempt in 0..4 {
        let sender = {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            connect(&control, &edge.connector).await
        };
        let mut sender = match sender {
            Ok(s) => s,
            Err(e) => {
                last_error = format!("{e:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // Bounded: each poll lasts at most 40 s and the bench stops us.
        for _poll in 0..100_000u32 {
            let path = format!("/v1/snapshot?have={have}&digest={digest}&wait=30");
            let answer = tokio::select! {
                r = get(&mut sender, hyper::Method::GET, &path, None, Duration::from_secs(40)) => r,
                _ = stop.changed() => return,
            };
            let (status, body) = match answer {
                Ok(a) => a,
                Err(e) => {
                    last_error = format!("{e:#}");
                    break;
                }
            };
            let received = Instant::now();
            match status {
                hyper::StatusCode::NO_CONTENT => continue,
                hyper::StatusCode::OK => {}
                s => {
                    last_error = format!("{s}: {}", String::from_utf8_lossy(&body));
                    break;
                }
            }
            let verified = verifier.verify(body.clone(), digest.clone()).await;
            let ((for_edge, version, new_digest, whole), cost) = match verified {
                Ok(v) => v,
                Err(e) => {
                    last_error = e;
                    break;
                }
            };
            if for_edge != edge.id || version <= have {
                last_error =
                    format!("snapshot for {for_edge} at version {version} when holding {have}");
                break;
            }
            have = version;
            digest = new_digest;
            let _ = events.send(Event::Holds {
                edge: i,
                version: have,
                received,
                verified: Instant::now(),
                cost,
                bytes: body.len(),
                whole,
            });
        }
    }
    let _ = events.send(Event::Failed {
        edge: i,
        reason: last_error,
    });
}

/// Percentile `p` (0-100) of sorted `v`, nearest rank.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn line(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "   {name:<34} p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms   (n = {})",
        pct(&ms, 50.0),
        pct(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN),
        ms.len()
    );
}

fn ms_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}

fn print_usage(label: &str, pid: Option<&str>) -> Option<Usage> {
    let u = usage(pid?)?;
    println!(
        "   {label:<34} RSS {:>8.1} MiB   CPU {:>8.2} s   (peak RSS {:.1} MiB)",
        u.rss_kib as f64 / 1024.0,
        u.cpu_secs,
        u.peak_kib as f64 / 1024.0
    );
    Some(u)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let (sources, loaded) =
        control_plane::files::load_valid(std::slice::from_ref(&args.config), now)?;
    let fed = loaded.federation.as_ref().context("no federation")?;
    let yaml_bytes: usize = sources.iter().map(|(_, f)| f.text.len()).sum();
    let doc_json = serde_json::to_vec_pretty(&loaded.spec.to_document())?.len();
    let count = args.count.unwrap_or(fed.edges.len()).min(fed.edges.len());
    let edges: Vec<(String, String)> = fed.edges[..count]
        .iter()
        .map(|e| (e.org.to_string(), e.name.clone()))
        .collect();
    let change_org = args
        .change_org
        .clone()
        .or_else(|| fed.orgs.first().map(|o| o.id.to_string()))
        .context("no organisation")?;
    let target = fed
        .orgs
        .iter()
        .map(|o| o.id.to_string())
        .find(|o| *o != change_org)
        .context("the change needs a second organisation")?;
    let service = fed
        .services
        .iter()
        .find(|s| s.org.as_str() == change_org)
        .map(|s| s.id.to_string())
        .with_context(|| format!("{change_org} has no service to open"))?;
    let agreement = fed
        .agreements
        .iter()
        .find(|a| {
            a.parties.iter().any(|p| p.as_str() == change_org)
                && a.parties.iter().any(|p| p.as_str() == target)
        })
        .map(|a| a.id.to_string());
    println!(
        "== {count} watchers of {} edges; document {} organisations, {} services, {} policies: {:.1} MiB YAML, {:.1} MiB as JSON",
        fed.edges.len(),
        fed.orgs.len(),
        fed.services.len(),
        fed.policies.len(),
        yaml_bytes as f64 / 1048576.0,
        doc_json as f64 / 1048576.0,
    );

    // Certificates, in memory, on every core.
    let t = Instant::now();
    let ca_pem = std::fs::read_to_string(args.ca.join("ca.pem")).context("ca.pem")?;
    let ca_key = std::fs::read_to_string(args.ca.join("ca.key")).context("ca.key")?;
    let ca = Ca::from_pem(&ca_pem, &ca_key)?;
    let validity = (
        now.checked_sub(SignedDuration::from_hours(1))?,
        now.checked_add(SignedDuration::from_hours(24))?,
    );
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let clients: Vec<EdgeClient> =
        std::thread::scope(|scope| -> anyhow::Result<Vec<EdgeClient>> {
            let handles: Vec<_> = (0..threads)
                .map(|share| {
                    let (ca, ca_pem, edges) = (&ca, &ca_pem, &edges);
                    scope.spawn(move || -> anyhow::Result<Vec<(usize, EdgeClient)>> {
                        let mut out = Vec::new();
                        for (i, (org, name)) in
                            edges.iter().enumerate().skip(share).step_by(threads)
                        {
                            let issued = ca.issue(&Identity::edge(org, name)?, validity, None)?;
                            let material = federation::mtls::Material::from_pem(
                                issued.cert_pem.as_bytes(),
                                issued.key_pem.as_bytes(),
                                ca_pem.as_bytes(),
                            )?;
                            let tls = federation::mtls::client_config(&material, b"http/1.1")?;
                            out.push((
                                i,
                                EdgeClient {
                                    id: format!("{org}/{name}"),
                                    connector: TlsConnector::from(Arc::new(tls)),
                                },
                            ));
                        }
                        Ok(out)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for h in handles {
                all.extend(
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a certificate thread panicked"))??,
                );
            }
            all.sort_by_key(|(i, _)| *i);
            Ok(all.into_iter().map(|(_, c)| c).collect())
        })?;
    let admin = {
        let issued = ca.issue(&Identity::admin(&change_org, "bench")?, validity, None)?;
        let material = federation::mtls::Material::from_pem(
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            ca_pem.as_bytes(),
        )?;
        TlsConnector::from(Arc::new(federation::mtls::client_config(
            &material,
            b"http/1.1",
        )?))
    };
    println!(
        "   {count} edge certificates (ECDSA P-256) issued in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let pid = args.control_pid.map(|p| p.to_string());
    let pid = pid.as_deref();
    println!("== the control plane, idle, version 1 published");
    let idle = print_usage("before the watchers", pid);

    // The watchers.
    let key = Arc::new(TrustedKey::from_text(&std::fs::read_to_string(
        &args.signing_pub,
    )?)?);
    let control: Arc<str> = Arc::from(args.control.as_str());
    let permits = Arc::new(Semaphore::new(args.connect_parallel));
    let verifier = Arc::new(Verifier::start(key.clone()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for (i, c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(watch_edge(
            i,
            Arc::new(c),
            control.clone(),
            verifier.clone(),
            permits.clone(),
            tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(tx);
    let mut held = vec![0u64; count];
    let mut got: Vec<Option<Got>> = vec![None; count];
    let mut failed: Vec<String> = Vec::new();
    let mut v1_sizes = Vec::new();
    let mut v1_at = Vec::new();
    // Phase 1: every watcher holds version 1.
    let deadline = tokio::time::Instant::now() + args.deadline;
    let mut holding = 0usize;
    while holding + failed.len() < count {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Event::Holds {
                edge,
                version,
                verified,
                bytes,
                ..
            })) => {
                if held[edge] == 0 {
                    holding += 1;
                    v1_sizes.push(bytes);
                    v1_at.push(ms_between(started, verified));
                }
                held[edge] = version;
            }
            Ok(Some(Event::Failed { edge, reason })) => {
                failed.push(format!("{}: {reason}", edges[edge].0));
            }
            Ok(None) | Err(_) => break,
        }
    }
    let head = held.iter().copied().max().unwrap_or(0);
    println!(
        "== {holding} of {count} watchers hold version {head} after {:.2} s (connect, TLS, first snapshot, verify); {} failed",
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    for f in failed.iter().take(5) {
        println!("   failed: {f}");
    }
    line("first snapshot held, from start", v1_at);
    // Let every watcher park its next long poll.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = print_usage("with every watcher connected", pid);
    if let (Some(a), Some(b)) = (idle, connected) {
        println!(
            "   {:<34} {:>8.1} KiB RSS per watcher connection",
            "",
            (b.rss_kib as f64 - a.rss_kib as f64) / count.max(1) as f64
        );
    }

    // The change: the admin of `change_org` opens `service` to `target`.
    let mut admin_conn = connect(&args.control, &admin)
        .await
        .context("admin connect")?;
    let (status, body) = get(
        &mut admin_conn,
        hyper::Method::GET,
        "/v1/document",
        None,
        Duration::from_secs(60),
    )
    .await?;
    if !status.is_success() {
        bail!(
            "GET /v1/document: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let doc: Value = serde_json::from_slice(&body)?;
    let version = doc["version"]
        .as_u64()
        .context("document without a version")?;
    let mut files: serde_json::Map<String, Value> =
        doc["files"].as_object().cloned().context("no files")?;
    let (name, text) = files
        .iter()
        .find(|(_, t)| t.as_str().is_some_and(|t| t.contains("\npolicies:\n")))
        .map(|(n, t)| (n.clone(), t.as_str().unwrap_or_default().to_owned()))
        .context("no file holds the policies")?;
    let agreement = agreement
        .map(|a| format!(", agreement: {a}"))
        .unwrap_or_default();
    let policy = format!(
        "  - {{id: bench-change-{version}, description: Fan-out bench change, from: {{orgs: [{target}]}}, to: {{services: [{service}]}}, action: allow{agreement}}}\n"
    );
    let text = if text.ends_with('\n') {
        text
    } else {
        format!("{text}\n")
    };
    let (new_text, message) = if args.revocation {
        if text.contains("\nrevoked_certificates:") {
            bail!(
                "the bench's revocation change appends `revoked_certificates:`; the document has one already"
            );
        }
        (
            format!(
                "{text}revoked_certificates:\n  - {{serial: \"0b:e1:c4:{version:02x}\", holder: {change_org}/lost-laptop, reason: fan-out bench}}\n"
            ),
            format!("fan-out bench: {change_org} revokes a certificate"),
        )
    } else {
        (
            format!("{text}{policy}"),
            format!("fan-out bench: open {service} to {target}"),
        )
    };
    files.insert(name, Value::String(new_text));
    let request = serde_json::to_vec(&json!({
        "expected_version": version,
        "message": message,
        "files": files,
    }))?;
    let before = usage_opt(pid);
    let sent = Instant::now();
    let (status, body) = get(
        &mut admin_conn,
        hyper::Method::POST,
        "/v1/apply",
        Some(request),
        Duration::from_secs(120),
    )
    .await?;
    let acked = Instant::now();
    if !status.is_success() {
        bail!(
            "POST /v1/apply: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let answer: Value = serde_json::from_slice(&body)?;
    let new_version = answer["version"]
        .as_u64()
        .context("apply answered no version")?;
    println!(
        "== apply by admin {change_org}/bench: version {new_version} acknowledged {:.1} ms after it was sent (validate, authorise, commit, cut and sign every snapshot)",
        ms_between(sent, acked)
    );

    // Phase 2: every watcher holds the new version.
    let deadline = tokio::time::Instant::now() + args.deadline;
    let mut holding = held.iter().filter(|v| **v >= new_version).count();
    while holding + failed.len() < count {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Event::Holds {
                edge,
                version,
                received,
                verified,
                bytes,
                whole,
                cost,
            })) => {
                if version >= new_version && held[edge] < new_version {
                    holding += 1;
                    got[edge] = Some((received, verified, bytes, whole, cost));
                }
                held[edge] = version;
            }
            Ok(Some(Event::Failed { edge, reason })) => {
                failed.push(format!("{}: {reason}", edges[edge].0));
            }
            Ok(None) | Err(_) => break,
        }
    }
    let all_done = Instant::now();
    let _ = stop_tx.send(true);
    println!(
        "== {holding} of {count} watchers hold version {new_version}, the last {:.1} ms after the apply was sent; {} failed",
        ms_between(sent, all_done),
        failed.len()
    );
    let got: Vec<Got> = got.into_iter().flatten().collect();
    line(
        "received, from apply sent",
        got.iter().map(|g| ms_between(sent, g.0)).collect(),
    );
    line(
        "received and verified, from sent",
        got.iter().map(|g| ms_between(sent, g.1)).collect(),
    );
    line(
        "received, from apply acknowledged",
        got.iter().map(|g| ms_between(acked, g.0)).collect(),
    );
    line(
        "received and verified, from ack",
        got.iter().map(|g| ms_between(acked, g.1)).collect(),
    );
    // Each of 10,000 edges verifies on its own CPU: its own verification
    // time after receipt, not the bench's queue of everyone's.
    line(
        "received + own verification, ack",
        got.iter()
            .map(|g| ms_between(acked, g.0) + g.4.as_secs_f64() * 1e3)
            .collect(),
    );
    for (whole, what) in [
        (true, "whole snapshots (document changed)"),
        (false, "signed headers only (document held)"),
    ] {
        let mut sizes: Vec<usize> = got.iter().filter(|g| g.3 == whole).map(|g| g.2).collect();
        sizes.sort_unstable();
        if let (Some(min), Some(max)) = (sizes.first(), sizes.last()) {
            println!(
                "   {what}: {} edges, min {:.1} KiB, median {:.1} KiB, max {:.1} KiB",
                sizes.len(),
                *min as f64 / 1024.0,
                sizes[sizes.len() / 2] as f64 / 1024.0,
                *max as f64 / 1024.0,
            );
        }
    }
    let after = print_usage("after the new version", pid);
    if let (Some(a), Some(b)) = (before, after) {
        println!(
            "   {:<34} {:>8.2} CPU s for apply + fan-out ({:.0} % of one core over {:.2} s)",
            "control plane",
            b.cpu_secs - a.cpu_secs,
            100.0 * (b.cpu_secs - a.cpu_secs) / ms_between(sent, all_done).max(1.0) * 1e3,
            ms_between(sent, all_done) / 1e3
        );
    }
    if let Some(me) = usage("self") {
        println!(
            "   {:<34} RSS {:>8.1} MiB   CPU {:>8.2} s   (peak RSS {:.1} MiB; whole run)",
            "this watcher process",
            me.rss_kib as f64 / 1024.0,
            me.cpu_secs,
            me.peak_kib as f64 / 1024.0
        );
    }
    v1_sizes.sort_unstable();
    match (v1_sizes.first(), v1_sizes.last()) {
        (Some(min), Some(max)) => {
            let median = v1_sizes[v1_sizes.len() / 2];
            println!(
                "   version 1 signed snapshot size: min {:.1} KiB, median {:.1} KiB, max {:.1} KiB (the whole document as pretty JSON: {:.1} KiB, {:.0}x the median)",
                *min as f64 / 1024.0,
                median as f64 / 1024.0,
                *max as f64 / 1024.0,
                doc_json as f64 / 1024.0,
                doc_json as f64 / median.max(1) as f64
            );
        }
        _ => println!("   no watcher got version 1"),
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

fn usage_opt(pid: Option<&str>) -> Option<Usage> {
    usage(pid?)
}
