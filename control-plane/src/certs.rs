//! Development certificates: a CA, and identities it signs (rcgen).
//!
//! A Fedgate identity is an X.509 certificate with one URI SAN naming its
//! holder (see [`federation::identity`]). [`Ca`] makes or loads a CA and
//! issues such certificates; [`write_dev_identities`] writes a CA and a
//! certificate for every edge of a federation, one admin per organisation
//! and one control-plane replica, for the demo and the tests. `fedctl certs`
//! ([`CertsCommand`]) is the command line over both. Never for production.
//!
//! The CA carries its trust domain as a URI SAN `spiffe://<trust domain>`, so
//! a CA loaded from files knows which identities it issues.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Subcommand};
use federation::Federation;
use federation::identity::Identity;
use federation::validate::normalise_serial;
use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use crate::files;

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    #[error(
        "`{trust_domain}` is not a trust domain: use lower-case letters, digits, `.`, `-` and `_`, like `south-east.fedgate.example`"
    )]
    TrustDomain { trust_domain: String },
    #[error("validity {not_before} to {not_after}: {reason}")]
    Validity {
        not_before: Timestamp,
        not_after: Timestamp,
        reason: &'static str,
    },
    #[error("a serial is 1-20 bytes and not zero; {len} byte(s) given")]
    Serial { len: usize },
    #[error("rcgen could not make the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// A CA certificate and key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCa {
    #[error("the CA certificate is not a PEM certificate: {reason}")]
    CertPem { reason: String },
    #[error("the CA key is not a PEM private key: {reason}")]
    KeyPem { reason: String },
    #[error("the CA certificate is not a CA (no basicConstraints CA:TRUE)")]
    NotCa,
    #[error(
        "the CA certificate names no trust domain: a Fedgate CA has exactly one URI SAN `spiffe://TRUST_DOMAIN`"
    )]
    NoTrustDomain,
    #[error("the CA key does not belong to the CA certificate")]
    KeyMismatch,
}

/// A certificate authority that issues Fedgate identities.
pub struct Ca {
    trust_domain: String,
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    /// Without the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// A certificate and its new key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS #8.
    pub key_pem: String,
    /// Lower-case hex, no colons, no leading zeros (as revocations and
    /// [`federation::identity::PeerCert::serial`] write it).
    pub serial_hex: String,
}

fn check_trust_domain(trust_domain: &str) -> Result<(), IssueError> {
    let ok = !trust_domain.is_empty()
        && trust_domain.len() <= 255
        && trust_domain.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(IssueError::TrustDomain {
            trust_domain: trust_domain.to_owned(),
        })
    }
}

fn offset_times(
    (not_before, not_after): (Timestamp, Timestamp),
) -> Result<(OffsetDateTime, OffsetDateTime), IssueError> {
    let invalid = |reason| IssueError::Validity {
        not_before,
        not_after,
        reason,
    };
    if not_after <= not_before {
        return Err(invalid("the end is not after the start"));
    }
    let convert = |t: Timestamp| {
        OffsetDateTime::from_unix_timestamp(t.as_second())
            .map_err(|_| invalid("a time is out of range"))
    };
    Ok((convert(not_before)?, convert(not_after)?))
}

/// A serial from the caller, or 16 bytes from the new key: the SHA-256 of a
/// freshly generated public key, so as random as the key (rcgen does the
/// same for its default serials). The top bit is clear so the DER integer
/// stays 16 bytes and positive.
fn serial_for(given: Option<&[u8]>, key: &KeyPair) -> Result<Vec<u8>, IssueError> {
    match given {
        Some(bytes) => {
            let significant = &bytes[bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len())..];
            if significant.is_empty() || significant.len() > 20 {
                return Err(IssueError::Serial { len: bytes.len() });
            }
            Ok(significant.to_vec())
        }
        None => {
            let hash = Sha256::digest(key.subject_public_key_info());
            let mut serial = hash[..16].to_vec();
            serial[0] &= 0x7f;
            Ok(serial)
        }
    }
}

fn serial_hex(serial: &[u8]) -> String {
    let hex = federation::hex::encode(serial);
    normalise_serial(&hex).unwrap_or(hex)
}

impl Ca {
    /// A new self-signed CA (ECDSA P-256, path length 0, may sign
    /// certificates and CRLs) for `trust_domain`.
    pub fn new(
        trust_domain: &str,
        common_name: &str,
        validity: (Timestamp, Timestamp),
    ) -> Result<Self, IssueError> {
        check_trust_domain(trust_domain)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names =
            vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.not_before, params.not_after) = offset_times(validity)?;
        params.serial_number = Some(SerialNumber::from_slice(&serial_for(None, &key)?));
        let cert = params.self_signed(&key)?;
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Load a CA written by [`Ca::cert_pem`] and [`Ca::key_pem`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, InvalidCa> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| {
            InvalidCa::CertPem {
                reason: e.to_string(),
            }
        })?;
        if pem.label != "CERTIFICATE" {
            return Err(InvalidCa::CertPem {
                reason: format!("it holds a `{}`", pem.label),
            });
        }
        let (_, cert) =
            x509_parser::parse_x509_certificate(&pem.contents).map_err(|e| InvalidCa::CertPem {
                reason: e.to_string(),
            })?;
        if !cert.is_ca() {
            return Err(InvalidCa::NotCa);
        }
        let san = cert
            .subject_alternative_name()
            .map_err(|e| InvalidCa::CertPem {
                reason: e.to_string(),
            })?;
        let domains: Vec<&str> = san
            .iter()
            .flat_map(|s| s.value.general_names.iter())
            .filter_map(|n| match n {
                GeneralName::URI(uri) => uri.strip_prefix("spiffe://"),
                _ => None,
            })
            .collect();
        let trust_domain = match domains.as_slice() {
            [one] if check_trust_domain(one).is_ok() => (*one).to_owned(),
            _ => return Err(InvalidCa::NoTrustDomain),
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| InvalidCa::KeyPem {
            reason: e.to_string(),
        })?;
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(InvalidCa::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&pem.contents.clone().into(), key).map_err(|e| {
            InvalidCa::CertPem {
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            trust_domain,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issue `identity` a certificate and a new ECDSA P-256 key: its URI SAN
    /// is `identity.uri(trust domain)`, with a DNS SAN (`NAME.ORG.<trust
    /// domain>`, or `NAME.control.<trust domain>`) for TLS server names, and
    /// it serves as both TLS server and client. The serial is `serial` when
    /// given (to revoke a known serial in tests), else 16 random bytes. Any
    /// validity is allowed, past ones included (for expiry tests).
    pub fn issue(
        &self,
        identity: &Identity,
        validity: (Timestamp, Timestamp),
        serial: Option<&[u8]>,
    ) -> Result<Issued, IssueError> {
        let td = &self.trust_domain;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let serial = serial_for(serial, &key)?;
        let dns = match identity {
            Identity::Edge { org, name } | Identity::Admin { org, name } => {
                format!("{name}.{org}.{td}")
            }
            Identity::FederationAdmin { name } => format!("{name}.federation.{td}"),
            Identity::Control { name } => format!("{name}.control.{td}"),
        };
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, identity.to_string());
        params.subject_alt_names = vec![
            SanType::URI(identity.uri(td).try_into()?),
            SanType::DnsName(dns.try_into()?),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = offset_times(validity)?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            serial_hex: serial_hex(&serial),
        })
    }
}

/// Write `contents` to `path` through a temporary file, readable only by
/// the owner when `private`.
fn write_file(path: &Path, contents: &str, private: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}

/// Write `DIR/STEM.pem` and `DIR/STEM.key` (mode 0600); returns both paths.
pub fn write_issued(dir: &Path, stem: &str, issued: &Issued) -> anyhow::Result<[PathBuf; 2]> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    write_file(&cert, &issued.cert_pem, false)
        .with_context(|| format!("cannot write {}", cert.display()))?;
    write_file(&key, &issued.key_pem, true)
        .with_context(|| format!("cannot write {}", key.display()))?;
    Ok([cert, key])
}

/// Write a new ed25519 snapshot-signing key for the control plane:
/// `dir/signing.key` (PKCS#8 PEM, mode 0600) and `dir/signing.pub` (the
/// line edges are given with `--control-key`). An existing key is kept, so
/// that edges keep trusting it. Returns both paths.
pub fn write_signing_key(dir: &Path) -> anyhow::Result<[PathBuf; 2]> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (key_path, pub_path) = (dir.join("signing.key"), dir.join("signing.pub"));
    let pem = if key_path.exists() {
        fs::read_to_string(&key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?
    } else {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let pem = pair.serialize_pem();
        write_file(&key_path, &pem, true)
            .with_context(|| format!("cannot write {}", key_path.display()))?;
        pem
    };
    let der = KeyPair::from_pem(&pem)
        .with_context(|| format!("{} is not a PKCS#8 PEM key", key_path.display()))?
        .serialize_der();
    let key = federation::signed::SigningKey::from_pkcs8(&der)
        .with_context(|| format!("{} is not an ed25519 key", key_path.display()))?;
    let public = key.public();
    write_file(
        &pub_path,
        &format!(
            "# Fedgate control-plane snapshot key {}; give it to edges with --control-key\n{}\n",
            public.id(),
            public.to_text()
        ),
        false,
    )
    .with_context(|| format!("cannot write {}", pub_path.display()))?;
    Ok([key_path, pub_path])
}

/// Load the CA in `dir` (`ca.pem`, `ca.key`), if there is one.
pub fn read_ca(dir: &Path) -> anyhow::Result<Option<Ca>> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    match (cert.exists(), key.exists()) {
        (false, false) => Ok(None),
        (true, true) => {
            let cert_pem = fs::read_to_string(&cert)
                .with_context(|| format!("cannot read {}", cert.display()))?;
            let key_pem = fs::read_to_string(&key)
                .with_context(|| format!("cannot read {}", key.display()))?;
            let ca = Ca::from_pem(&cert_pem, &key_pem)
                .with_context(|| format!("cannot use the CA in {}", dir.display()))?;
            Ok(Some(ca))
        }
        _ => bail!(
            "{} holds only one of ca.pem and ca.key; restore the other, or remove both to make a new CA",
            dir.display()
        ),
    }
}

/// Write `ca` to `DIR/ca.pem` and `DIR/ca.key` (mode 0600).
pub fn write_ca(dir: &Path, ca: &Ca) -> anyhow::Result<[PathBuf; 2]> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    write_file(&cert, ca.cert_pem(), false)
        .with_context(|| format!("cannot write {}", cert.display()))?;
    write_file(&key, ca.key_pem(), true)
        .with_context(|| format!("cannot write {}", key.display()))?;
    Ok([cert, key])
}

fn days_from(now: Timestamp, days: u32) -> anyhow::Result<(Timestamp, Timestamp)> {
    // Start an hour back so small clock differences between hosts do not
    // make a fresh certificate "not yet valid".
    let start = now.checked_sub(SignedDuration::from_hours(1))?;
    let end = now.checked_add(SignedDuration::from_hours(24 * i64::from(days)))?;
    Ok((start, end))
}

/// How long development CAs and identities last.
const DEV_CA_DAYS: u32 = 3650;
const DEV_LEAF_DAYS: u32 = 365;

/// Write development identities for `fed` under `out_dir`: a CA (`ca.pem`,
/// `ca.key`; an existing one is reused), `edges/ORG-NAME.pem/.key` for every
/// edge, `admins/ORG-admin.pem/.key` (admin `ORG/admin`) for every
/// organisation, `admins/federation-admin.pem/.key` (federation admin
/// `admin`), `control/control-1.pem/.key`, and the snapshot-signing key
/// `control/signing.key` with `control/signing.pub` (kept if present). Key files are mode 0600.
/// Leaves are issued afresh on each run, valid from an hour before `now` for
/// a year. Returns every file written or reused, the CA first.
pub fn write_dev_identities(
    fed: &Federation,
    out_dir: &Path,
    now: Timestamp,
) -> anyhow::Result<Vec<PathBuf>> {
    let td = &fed.trust_domain;
    let (ca, mut paths) = match read_ca(out_dir)? {
        Some(ca) => {
            if ca.trust_domain() != td {
                bail!(
                    "the CA in {} is for trust domain `{}`, not `{td}`; use another --out, or remove its ca.pem and ca.key",
                    out_dir.display(),
                    ca.trust_domain()
                );
            }
            (ca, vec![out_dir.join("ca.pem"), out_dir.join("ca.key")])
        }
        None => {
            let ca = Ca::new(
                td,
                &format!("{} development CA", fed.name),
                days_from(now, DEV_CA_DAYS)?,
            )?;
            let paths = write_ca(out_dir, &ca)?.to_vec();
            (ca, paths)
        }
    };
    let validity = days_from(now, DEV_LEAF_DAYS)?;
    let mut holders = Vec::new();
    for edge in &fed.edges {
        let identity = Identity::edge(edge.org.as_str(), &edge.name)
            .with_context(|| format!("edge {}", edge.id))?;
        holders.push(("edges", format!("{}-{}", edge.org, edge.name), identity));
    }
    for org in &fed.orgs {
        let identity = Identity::admin(org.id.as_str(), "admin")
            .with_context(|| format!("organisation {}", org.id))?;
        holders.push(("admins", format!("{}-admin", org.id), identity));
    }
    holders.push((
        "admins",
        "federation-admin".to_owned(),
        Identity::federation_admin("admin")?,
    ));
    holders.push((
        "control",
        "control-1".to_owned(),
        Identity::control("control-1")?,
    ));
    for (dir, stem, identity) in holders {
        let issued = ca
            .issue(&identity, validity, None)
            .with_context(|| format!("cannot issue {identity}"))?;
        paths.extend(write_issued(&out_dir.join(dir), &stem, &issued)?);
    }
    paths.extend(write_signing_key(&out_dir.join("control"))?);
    Ok(paths)
}

/// `fedctl certs`: development certificates.
#[derive(Subcommand)]
pub enum CertsCommand {
    /// Make a CA for a trust domain: OUT/ca.pem and OUT/ca.key (mode 0600).
    #[command(
        after_help = "Example:\n  fedctl certs init-ca --trust-domain south-east.fedgate.example --out certs-dev/out"
    )]
    InitCa {
        /// The federation's trust domain (`federation.trust_domain` in its config).
        #[arg(long)]
        trust_domain: String,
        /// Directory to write ca.pem and ca.key to.
        #[arg(long)]
        out: PathBuf,
        /// Days the CA is valid.
        #[arg(long, default_value_t = DEV_CA_DAYS)]
        days: u32,
    },
    /// Issue one identity, signed by the CA in --ca: OUT/STEM.pem and
    /// OUT/STEM.key (mode 0600), STEM being ORG-NAME, or NAME for a
    /// control-plane replica.
    #[command(
        group(ArgGroup::new("holder").required(true).args(["edge", "admin", "federation_admin", "control"])),
        after_help = "Examples:\n  fedctl certs issue --ca certs-dev/out --edge dpft/core --trust-domain south-east.fedgate.example --out certs-dev/out/edges\n  fedctl certs issue --ca certs-dev/out --admin wmcc/alice --out /tmp/alice --days 30\n  fedctl certs issue --ca certs-dev/out --federation-admin fiona --out /tmp/fiona\n  fedctl certs issue --ca certs-dev/out --control control-2 --out certs-dev/out/control --serial 0a:1b"
    )]
    Issue {
        /// Directory holding ca.pem and ca.key.
        #[arg(long)]
        ca: PathBuf,
        /// An edge, ORG/NAME.
        #[arg(long, value_name = "ORG/NAME")]
        edge: Option<String>,
        /// An admin, ORG/NAME.
        #[arg(long, value_name = "ORG/NAME")]
        admin: Option<String>,
        /// A federation admin (membership, groups, agreements), NAME.
        #[arg(long, value_name = "NAME")]
        federation_admin: Option<String>,
        /// A control-plane replica, NAME.
        #[arg(long, value_name = "NAME")]
        control: Option<String>,
        /// The trust domain; checked against the CA's when given.
        #[arg(long)]
        trust_domain: Option<String>,
        /// Directory to write the certificate and key to.
        #[arg(long)]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = DEV_LEAF_DAYS)]
        days: u32,
        /// Serial in hex (colons allowed) instead of a random one.
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
    },
    /// A snapshot-signing key for the control plane: OUT/signing.key (mode
    /// 0600) and OUT/signing.pub (for the edges' --control-key). Kept if
    /// present.
    #[command(after_help = "Example:\n  fedctl certs signing-key --out certs-dev/out/control")]
    SigningKey {
        /// Directory to write signing.key and signing.pub to.
        #[arg(long)]
        out: PathBuf,
    },
    /// The one command: a CA (reused if OUT has one), a certificate for every
    /// edge of the federation, an admin per organisation and a control-plane
    /// replica. For development and tests, never production.
    #[command(
        after_help = "Example:\n  fedctl certs dev --config configs/south-east --out certs-dev/out\n\nWrites OUT/ca.pem, OUT/ca.key, OUT/edges/ORG-NAME.pem/.key, OUT/admins/ORG-admin.pem/.key,\nOUT/admins/federation-admin.pem/.key, OUT/control/control-1.pem/.key and the snapshot-signing\nkey OUT/control/signing.key with OUT/control/signing.pub. Inspect one with\n  openssl x509 -noout -text -in OUT/edges/dpft-core.pem"
    )]
    Dev {
        /// The federation files (or directories).
        #[arg(long, short, required = true, num_args = 1..)]
        config: Vec<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

fn org_name<'a>(s: &'a str, flag: &str) -> anyhow::Result<(&'a str, &'a str)> {
    s.split_once('/')
        .ok_or_else(|| anyhow::anyhow!("`--{flag} {s}`: write ORG/NAME, e.g. `dpft/core`"))
}

/// The holder named by `fedctl certs issue`'s flags (clap's `holder` group
/// lets exactly one through).
struct Holder<'a> {
    edge: Option<&'a str>,
    admin: Option<&'a str>,
    federation_admin: Option<&'a str>,
    control: Option<&'a str>,
}

fn holder(h: &Holder<'_>) -> anyhow::Result<(Identity, String)> {
    if let Some(e) = h.edge {
        let (org, name) = org_name(e, "edge")?;
        return Ok((Identity::edge(org, name)?, format!("{org}-{name}")));
    }
    if let Some(a) = h.admin {
        let (org, name) = org_name(a, "admin")?;
        return Ok((Identity::admin(org, name)?, format!("{org}-{name}")));
    }
    if let Some(f) = h.federation_admin {
        return Ok((Identity::federation_admin(f)?, format!("federation-{f}")));
    }
    if let Some(c) = h.control {
        return Ok((Identity::control(c)?, c.to_owned()));
    }
    bail!("give --edge, --admin, --federation-admin or --control")
}

fn serial_bytes(serial: &str) -> anyhow::Result<Vec<u8>> {
    let hex = normalise_serial(serial).ok_or_else(|| {
        anyhow::anyhow!("`--serial {serial}`: write 1-20 bytes of hex, colons allowed")
    })?;
    let hex = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    };
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).context("hex digit"))
        .collect()
}

/// Run `fedctl certs ...` as of `now`.
pub fn run(command: CertsCommand, now: Timestamp) -> anyhow::Result<ExitCode> {
    match command {
        CertsCommand::InitCa {
            trust_domain,
            out,
            days,
        } => {
            if out.join("ca.pem").exists() || out.join("ca.key").exists() {
                bail!(
                    "{} already holds a CA; remove ca.pem and ca.key to make a new one (certificates it issued will no longer verify)",
                    out.display()
                );
            }
            let ca = Ca::new(
                &trust_domain,
                &format!("{trust_domain} development CA"),
                days_from(now, days)?,
            )?;
            for path in write_ca(&out, &ca)? {
                eprintln!("wrote {}", path.display());
            }
        }
        CertsCommand::Issue {
            ca,
            edge,
            admin,
            federation_admin,
            control,
            trust_domain,
            out,
            days,
            serial,
        } => {
            let authority = read_ca(&ca)?.with_context(|| {
                format!(
                    "no CA in {}: make one with `fedctl certs init-ca --trust-domain TD --out {}`",
                    ca.display(),
                    ca.display()
                )
            })?;
            if let Some(td) = trust_domain
                && td != authority.trust_domain()
            {
                bail!(
                    "the CA in {} is for trust domain `{}`, not `{td}`",
                    ca.display(),
                    authority.trust_domain()
                );
            }
            let (identity, stem) = holder(&Holder {
                edge: edge.as_deref(),
                admin: admin.as_deref(),
                federation_admin: federation_admin.as_deref(),
                control: control.as_deref(),
            })?;
            let serial = serial.as_deref().map(serial_bytes).transpose()?;
            let validity = days_from(now, days)?;
            let issued = authority.issue(&identity, validity, serial.as_deref())?;
            let [cert, key] = write_issued(&out, &stem, &issued)?;
            eprintln!(
                "wrote {} and {} ({identity}, {}, serial {}, valid until {})",
                cert.display(),
                key.display(),
                identity.uri(authority.trust_domain()),
                issued.serial_hex,
                validity.1
            );
        }
        CertsCommand::SigningKey { out } => {
            for path in write_signing_key(&out)? {
                eprintln!("wrote {}", path.display());
            }
        }
        CertsCommand::Dev { config, out } => {
            let (_, loaded) = files::load_valid(&config, now)?;
            let fed = loaded.federation.as_ref().context("no federation")?;
            let paths = write_dev_identities(fed, &out, now)?;
            for path in &paths {
                eprintln!("wrote {}", path.display());
            }
            eprintln!(
                "{} files for trust domain {} in {}; development only, never production",
                paths.len(),
                fed.trust_domain,
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use federation::identity::{PeerCert, peer_cert};

    use super::*;

    const TD: &str = "south-east.fedgate.example";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn year_2030() -> (Timestamp, Timestamp) {
        (ts("2026-01-01T00:00:00Z"), ts("2030-01-01T00:00:00Z"))
    }

    fn read(issued: &Issued) -> PeerCert {
        peer_cert(&issued.cert_der, TD).unwrap()
    }

    #[test]
    fn issued_identity_reads_back() {
        let ca = Ca::new(TD, "test CA", year_2030()).unwrap();
        let id = Identity::edge("dpft", "core").unwrap();
        let issued = ca.issue(&id, year_2030(), None).unwrap();
        let peer = read(&issued);
        assert_eq!(peer.identity, id);
        assert_eq!(peer.serial, issued.serial_hex);
        assert!(issued.serial_hex.len() > 20, "{}", issued.serial_hex);
        assert_eq!(peer.not_after, ts("2030-01-01T00:00:00Z"));
        assert!(issued.key_pem.contains("PRIVATE KEY"));
        let other = ca.issue(&id, year_2030(), None).unwrap();
        assert_ne!(other.serial_hex, issued.serial_hex);
    }

    #[test]
    fn given_serial_and_past_validity() {
        let ca = Ca::new(TD, "test CA", year_2030()).unwrap();
        let id = Identity::control("control-1").unwrap();
        let past = (ts("2020-01-01T00:00:00Z"), ts("2021-01-01T00:00:00Z"));
        let issued = ca.issue(&id, past, Some(&[0x00, 0xab, 0x01])).unwrap();
        assert_eq!(issued.serial_hex, "ab01");
        let peer = read(&issued);
        assert_eq!(peer.serial, "ab01");
        assert!(peer.check_validity(ts("2026-01-01T00:00:00Z")).is_err());
        assert!(matches!(
            ca.issue(&id, past, Some(&[0, 0])),
            Err(IssueError::Serial { .. })
        ));
        assert!(matches!(
            ca.issue(&id, (past.1, past.0), None),
            Err(IssueError::Validity { .. })
        ));
    }

    #[test]
    fn ca_round_trips_through_pem() {
        let ca = Ca::new(TD, "test CA", year_2030()).unwrap();
        let loaded = Ca::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(loaded.trust_domain(), TD);
        let id = Identity::admin("wmcc", "alice").unwrap();
        let issued = loaded.issue(&id, year_2030(), None).unwrap();
        assert_eq!(read(&issued).identity, id);

        let other = Ca::new(TD, "other CA", year_2030()).unwrap();
        assert!(matches!(
            Ca::from_pem(ca.cert_pem(), other.key_pem()),
            Err(InvalidCa::KeyMismatch)
        ));
        assert!(matches!(
            Ca::from_pem(&issued.cert_pem, &issued.key_pem),
            Err(InvalidCa::NotCa)
        ));
        assert!(matches!(
            Ca::from_pem("not pem", ca.key_pem()),
            Err(InvalidCa::CertPem { .. })
        ));
    }

    #[test]
    fn bad_trust_domain_is_refused() {
        assert!(matches!(
            Ca::new("South East", "x", year_2030()),
            Err(IssueError::TrustDomain { .. })
        ));
    }

    #[test]
    fn serial_flag_parses_hex() {
        assert_eq!(serial_bytes("0a:1b").unwrap(), vec![0x0a, 0x1b]);
        assert_eq!(serial_bytes("abc").unwrap(), vec![0x0a, 0xbc]);
        assert!(serial_bytes("xyz").is_err());
    }
}
