//! `fedctl check --certs DIR`: the certificates in a directory (as `fedctl
//! certs dev` or `certs issue` write them) against the federation: expired
//! or expiring within 30 days, a file named for one holder holding
//! another's identity, a key that is not the certificate's, an identity the
//! federation does not have, another trust domain, a revoked serial.

use std::fs;
use std::path::{Path, PathBuf};

use federation::Federation;
use federation::identity::{Identity, peer_cert, trust_domain_of};
use jiff::{SignedDuration, Timestamp};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Serialize;

/// What is wrong with one certificate file.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: &'static str,
    pub file: String,
    pub message: String,
}

/// The result of checking a directory.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub checked: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == "error")
            .count()
    }
}

/// Warn this many days before a certificate expires.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

fn pems(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            pems(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "pem") {
            out.push(p);
        }
    }
    Ok(())
}

/// The holder a file name promises, as `fedctl certs` names its files:
/// `edges/ORG-NAME.pem`, `admins/ORG-NAME.pem`, `admins/federation-NAME.pem`,
/// `control/NAME.pem`. `None` when the name says nothing.
fn promised(path: &Path, identity: &Identity) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let expected = match identity {
        Identity::Edge { org, name } | Identity::Admin { org, name } => format!("{org}-{name}"),
        Identity::FederationAdmin { name } => format!("federation-{name}"),
        Identity::Control { name } => name.clone(),
    };
    (stem != expected).then_some(expected)
}

/// Check every `*.pem` under `dir` as of `now`.
pub fn check(dir: &Path, fed: Option<&Federation>, now: Timestamp) -> anyhow::Result<Report> {
    let mut files = Vec::new();
    pems(dir, &mut files).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
    let mut report = Report::default();
    let ca_pem = fs::read(dir.join("ca.pem")).ok();
    for path in files {
        let shown = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut find = |severity, message: String| {
            report.findings.push(Finding {
                severity,
                file: shown.clone(),
                message,
            });
        };
        let Ok(bytes) = fs::read(&path) else {
            find("error", "cannot be read".into());
            continue;
        };
        let Some(Ok(leaf)) = CertificateDer::pem_slice_iter(&bytes).next() else {
            find("error", "holds no PEM certificate".into());
            continue;
        };
        report.checked += 1;
        let is_ca = path.file_name().is_some_and(|n| n == "ca.pem");
        if is_ca {
            let not_after = x509_parser::parse_x509_certificate(leaf.as_ref())
                .ok()
                .and_then(|(_, c)| Timestamp::from_second(c.validity().not_after.timestamp()).ok());
            if let Some(not_after) = not_after {
                expiry(&mut find, "the CA", not_after, now);
            }
            continue;
        }
        let td = match trust_domain_of(leaf.as_ref()) {
            Ok(td) => td,
            Err(e) => {
                find("error", format!("not a Fedgate certificate: {e}"));
                continue;
            }
        };
        if let Some(f) = fed
            && td != f.trust_domain
        {
            find(
                "error",
                format!(
                    "trust domain `{td}`, not the federation's `{}`",
                    f.trust_domain
                ),
            );
        }
        let (holder, not_after) = {
            match peer_cert(leaf.as_ref(), &td) {
                Ok(pc) => {
                    if let Some(expected) = promised(&path, &pc.identity) {
                        find(
                            "error",
                            format!(
                                "holds the identity of {}, whose file would be {expected}.pem: a certificate in the wrong place",
                                pc.identity
                            ),
                        );
                    }
                    if let Some(f) = fed {
                        let known = match &pc.identity {
                            Identity::Edge { .. } => pc
                                .identity
                                .edge_id()
                                .is_some_and(|id| f.edge(&id).is_some()),
                            Identity::Admin { org, .. } => f.org(org).is_some(),
                            _ => true,
                        };
                        if !known {
                            find(
                                "warning",
                                format!("{} is not in the federation", pc.identity),
                            );
                        }
                        if f.revoked.iter().any(|r| r.serial == pc.serial) {
                            find(
                                "warning",
                                format!("serial {} is revoked in the federation", pc.serial),
                            );
                        }
                    }
                    (pc.identity.to_string(), Some(pc.not_after))
                }
                Err(e) => {
                    find("error", format!("unreadable identity: {e}"));
                    continue;
                }
            }
        };
        if let Some(not_after) = not_after {
            expiry(&mut find, &holder, not_after, now);
        }
        // The key beside the certificate must be its key.
        let key_path = path.with_extension("key");
        if let (Ok(key), Some(ca)) = (fs::read(&key_path), ca_pem.as_ref()) {
            let usable = federation::mtls::Material::from_pem(&bytes, &key, ca)
                .and_then(|m| federation::mtls::client_config(&m, b"http/1.1"));
            if let Err(e) = usable {
                find(
                    "error",
                    format!(
                        "{} is not this certificate's key: {e}",
                        key_path.file_name().unwrap_or_default().to_string_lossy()
                    ),
                );
            }
        }
    }
    Ok(report)
}

/// An error once expired, a warning within [`EXPIRY_WARNING_DAYS`].
fn expiry(
    find: &mut impl FnMut(&'static str, String),
    holder: &str,
    not_after: Timestamp,
    now: Timestamp,
) {
    let left = not_after.duration_since(now);
    if left <= SignedDuration::ZERO {
        find(
            "error",
            format!("{holder}: expired on {not_after}; issue a new one with `fedctl certs issue`"),
        );
    } else if left < SignedDuration::from_hours(24 * EXPIRY_WARNING_DAYS) {
        find(
            "warning",
            format!(
                "{holder}: expires on {not_after}, in {} day(s); issue a new one with `fedctl certs issue` before then",
                left.as_hours() / 24
            ),
        );
    }
}

/// Print the findings like diagnostics, and a summary line.
pub fn print(dir: &Path, report: &Report) {
    for f in &report.findings {
        outln!(
            "{}: {}/{}: {}",
            f.severity,
            dir.display(),
            f.file,
            f.message
        );
    }
    let warnings = report.findings.len() - report.errors();
    outln!(
        "certificates: {} checked in {}, {} error(s), {} warning(s)",
        report.checked,
        dir.display(),
        report.errors(),
        warnings
    );
}
