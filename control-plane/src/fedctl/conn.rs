//! How `fedctl` finds and talks to the control plane: the admin identity and
//! the address, from flags, the environment or a small YAML file, and the
//! API's answers turned into errors that say what to do next, each with its
//! exit status ([`Failure`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use federation::identity::{Identity, peer_cert, trust_domain_of};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Deserialize;
use serde_json::Value;

use super::{Failure, exit, now};
use crate::client::{CallError, ControlClient};

/// Where the control plane is and who is asking.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Control plane")]
pub struct ConnArgs {
    /// The control plane's API, HOST:PORT; several replicas comma-separated
    /// (tried in turn; `status` asks each).
    #[arg(long, env = "FEDCTL_CONTROL", value_name = "HOST:PORT")]
    pub control: Option<String>,
    /// The admin's certificate (PEM), e.g. admins/dpft-admin.pem from `fedctl certs dev`.
    #[arg(long, env = "FEDCTL_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The admin's private key (PEM).
    #[arg(long, env = "FEDCTL_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The federation CA (PEM).
    #[arg(long, env = "FEDCTL_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A YAML file with `control`, `cert`, `key` and `ca` (paths relative to
    /// the file); flags and FEDCTL_* variables override it. Default:
    /// ~/.config/fedgate/fedctl.yaml when it exists.
    #[arg(long = "fedctl-config", env = "FEDCTL_CONFIG", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub control: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// Everything needed to connect, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub control: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn default_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("fedgate").join("fedctl.yaml")).filter(|p| p.exists())
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            exit::INPUT,
            format!(
                "cannot read the fedctl config file {}: {e}; fix FEDCTL_CONFIG / --fedctl-config",
                path.display()
            ),
        )
    })?;
    let mut cfg: FileConfig = serde_saphyr::from_str(&text).map_err(|e| {
        Failure::new(
            exit::INPUT,
            format!(
                "{}: {e}; the file holds `control: HOST:PORT`, `cert:`, `key:` and `ca:` paths",
                path.display()
            ),
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for p in [&mut cfg.cert, &mut cfg.key, &mut cfg.ca]
        .into_iter()
        .flatten()
    {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
    Ok(cfg)
}

impl ConnArgs {
    /// Flags and environment first, then the file.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let file = match self.file.as_ref().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => read_file(p)?,
            None => match default_file() {
                Some(p) => read_file(&p)?,
                None => FileConfig::default(),
            },
        };
        let missing = |what: &str, flag: &str, env: &str| {
            Failure::new(
                exit::USAGE,
                format!(
                    "no {what}: give --{flag}, set {env}, or put `{flag}:` in a fedctl config file (FEDCTL_CONFIG); `fedctl demo up` prints one for the demo"
                ),
            )
        };
        Ok(Resolved {
            control: self
                .control
                .clone()
                .or(file.control)
                .ok_or_else(|| missing("control-plane address", "control", "FEDCTL_CONTROL"))?,
            cert: self
                .cert
                .clone()
                .or(file.cert)
                .ok_or_else(|| missing("admin certificate", "cert", "FEDCTL_CERT"))?,
            key: self
                .key
                .clone()
                .or(file.key)
                .ok_or_else(|| missing("admin key", "key", "FEDCTL_KEY"))?,
            ca: self
                .ca
                .clone()
                .or(file.ca)
                .ok_or_else(|| missing("federation CA", "ca", "FEDCTL_CA"))?,
        })
    }
}

fn read(path: &Path, what: &str, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Failure::new(
            exit::INPUT,
            format!(
                "cannot read the {what} {}: {e}; check --{flag}",
                path.display()
            ),
        )
        .into()
    })
}

/// The API of the control plane (one or more replicas), as an admin.
pub struct Api {
    clients: Vec<ControlClient>,
    /// The replica that answered last.
    current: std::sync::atomic::AtomicUsize,
    /// Who we are, from our certificate.
    pub identity: Identity,
    res: Resolved,
}

/// A JSON answer with its status.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Api {
    /// Read the identity and check it is an admin's before connecting.
    pub fn connect(args: &ConnArgs) -> anyhow::Result<Self> {
        let res = args.resolve()?;
        let cert_pem = read(&res.cert, "certificate", "cert")?;
        let key_pem = read(&res.key, "private key", "key")?;
        let ca_pem = read(&res.ca, "CA certificate", "ca")?;
        let material =
            federation::mtls::Material::from_pem(&cert_pem, &key_pem, &ca_pem).map_err(|e| {
                Failure::new(
                    exit::INPUT,
                    format!(
                        "cannot use --cert {}, --key {} and --ca {}: {e}",
                        res.cert.display(),
                        res.key.display(),
                        res.ca.display()
                    ),
                )
            })?;
        let leaf = CertificateDer::pem_slice_iter(&cert_pem)
            .next()
            .context("no certificate")?
            .context("malformed certificate")?;
        let td = trust_domain_of(leaf.as_ref()).map_err(|e| {
            Failure::new(
                exit::INPUT,
                format!(
                    "{} is not a Fedgate identity ({e}); use an admin certificate from `fedctl certs issue --admin ORG/NAME`",
                    res.cert.display()
                ),
            )
        })?;
        let me = peer_cert(leaf.as_ref(), &td)
            .map_err(|e| Failure::new(exit::INPUT, format!("{}: {e}", res.cert.display())))?;
        if let Err(e) = me.check_validity(now()) {
            return Err(Failure::new(
                exit::CONNECT,
                format!(
                    "{} cannot be used: {e}; issue a new one with `fedctl certs issue`",
                    res.cert.display()
                ),
            )
            .into());
        }
        if !matches!(
            me.identity,
            Identity::Admin { .. } | Identity::FederationAdmin { .. }
        ) {
            return Err(Failure::new(
                exit::REFUSED,
                format!(
                    "{} is the certificate of {}, not of an admin: the control plane serves admins only; use an admin's (`fedctl certs issue --admin ORG/NAME`, or admins/ORG-admin.pem from `fedctl certs dev`)",
                    res.cert.display(),
                    me.identity
                ),
            )
            .into());
        }
        let clients = res
            .control
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|addr| {
                ControlClient::new(addr, &material, leaf.as_ref())
                    .map_err(|e| Failure::new(exit::INPUT, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if clients.is_empty() {
            return Err(
                Failure::new(exit::USAGE, "--control names no address; give HOST:PORT").into(),
            );
        }
        Ok(Self {
            clients,
            current: std::sync::atomic::AtomicUsize::new(0),
            identity: me.identity,
            res,
        })
    }

    fn client(&self) -> &ControlClient {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.clients[i % self.clients.len()]
    }

    /// The replica that answers (the first listed until one fails).
    pub fn addr(&self) -> &str {
        self.client().addr()
    }

    /// Every replica listed with `--control`, with its `/v1/status` or why
    /// it did not answer.
    pub async fn each_status(&self) -> Vec<(String, Result<Value, String>)> {
        self.each_get("/v1/status").await
    }

    /// `GET path` of every replica listed with `--control`: its answer, or
    /// why there was none.
    pub async fn each_get(&self, path: &str) -> Vec<(String, Result<Value, String>)> {
        let mut out = Vec::new();
        for c in &self.clients {
            let answer = c
                .send(
                    hyper::Method::GET,
                    path,
                    None,
                    Duration::from_secs(10),
                    now(),
                )
                .await;
            let result = match answer {
                Ok((s, bytes)) if s.is_success() => {
                    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
                }
                Ok((s, bytes)) => {
                    // The server's `message` where it gave one, not its JSON.
                    let message = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v["message"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
                    Err(format!("{s}: {message}"))
                }
                Err(e) => Err(e.to_string()),
            };
            out.push((c.addr().to_owned(), result));
        }
        out
    }

    /// One call; the answer whatever its status, or why there was none.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let method = hyper::Method::from_bytes(method.as_bytes()).context("method")?;
        let body = body.map(|b| b.to_string().into_bytes());
        let n = self.clients.len();
        let start = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let mut answer = None;
        for k in 0..n {
            let i = (start + k) % n;
            match self.clients[i]
                .send(
                    method.clone(),
                    path,
                    body.clone(),
                    Duration::from_secs(30),
                    now(),
                )
                .await
            {
                Ok(a) => {
                    self.current.store(i, std::sync::atomic::Ordering::Relaxed);
                    answer = Some(Ok(a));
                    break;
                }
                // Nothing listening there: the next replica.
                Err(e @ CallError::Connect { .. }) if k + 1 < n => {
                    eprintln!("fedctl: {e}; trying the next replica");
                }
                Err(e) => {
                    answer = Some(Err(e));
                    break;
                }
            }
        }
        let (status, bytes) = match answer {
            Some(Ok(a)) => a,
            Some(Err(e)) => return Err(self.unreachable(&e).into()),
            None => return Err(Failure::new(exit::CONNECT, "no replica answered").into()),
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Answer {
            status: status.as_u16(),
            body,
        })
    }

    /// A GET that must succeed.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let a = self.call("GET", path, None).await?;
        if a.status == 200 {
            return Ok(a.body);
        }
        Err(self.refused(&a).into())
    }

    /// An answer other than success, as a failure that says what to do.
    pub fn refused(&self, a: &Answer) -> Failure {
        let message = a.body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| a.body.to_string());
        match a.status {
            403 => Failure::new(
                exit::REFUSED,
                format!(
                    "refused: {message}\n  you are {}; ask an admin who holds that right, or change only your organisation's objects",
                    self.identity
                ),
            ),
            409 => Failure::new(
                exit::CONFLICT,
                format!(
                    "{message}\n  see what changed with `fedctl history` and `fedctl diff -f FILES`, then apply again"
                ),
            ),
            404 => Failure::new(exit::INPUT, format!("not found: {message}")),
            422 => Failure::new(exit::INPUT, format!("invalid: {message}")),
            s => Failure::new(
                exit::CONNECT,
                format!(
                    "the control plane at {} answered {s}: {message}",
                    self.addr()
                ),
            ),
        }
    }

    fn unreachable(&self, e: &CallError) -> Failure {
        let hint = match e {
            CallError::Connect { .. } | CallError::Timeout { .. } => {
                "is the control plane running and listening there? check --control / FEDCTL_CONTROL (for the demo: `fedctl demo status`)".to_owned()
            }
            CallError::Handshake { reason, .. }
                if reason.contains("UnknownIssuer")
                    || reason.contains("invalid peer certificate") =>
            {
                format!(
                    "its certificate is not from the CA in {}: check --ca / FEDCTL_CA",
                    self.res.ca.display()
                )
            }
            CallError::Handshake { .. } | CallError::Closed { .. } => format!(
                "it refused this certificate ({}): is it issued by the federation's CA, unexpired and not revoked? check --cert / FEDCTL_CERT and --ca",
                self.res.cert.display()
            ),
            CallError::NotControl { .. } => {
                "check --control: that address is not the control plane".to_owned()
            }
            _ => String::new(),
        };
        Failure::new(
            exit::CONNECT,
            format!("cannot talk to the control plane: {e}\n  {hint}"),
        )
    }
}
