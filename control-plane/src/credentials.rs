//! This replica's TLS material, replaced without a restart, as an edge's
//! is: a renewed `--cert`/`--key` is presented from the next handshake on,
//! and a new `--ca` bundle (a CA rollover) checks the next handshakes and
//! every request on a connection made before it: a client whose
//! certificate it does not trust is refused at its next request (403,
//! `untrusted`) and the connection closed, as for an expired or revoked
//! one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use federation::identity::PeerCert;
use federation::mtls::{Credentials, Material, Settled};

use crate::server::read;

/// The TLS material in use, and how many times its CA certificates have
/// been replaced.
#[derive(Debug)]
pub struct Trust {
    pub credentials: Arc<Credentials>,
    generation: AtomicU64,
    /// When the certificate presented expires (Unix seconds).
    not_after: AtomicI64,
}

impl Trust {
    pub fn new(credentials: Arc<Credentials>, not_after: i64) -> Arc<Self> {
        Arc::new(Self {
            credentials,
            generation: AtomicU64::new(0),
            not_after: AtomicI64::new(not_after),
        })
    }

    /// When the certificate presented expires (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Acquire)
    }

    /// Counts replacements of the CA certificates: a connection handshaken
    /// at an earlier count is checked again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Read and check new material ([`Material::replacing`]).
fn renewed(
    [cert, key, ca]: &[PathBuf; 3],
    in_use: &PeerCert,
    trust_domain: &str,
) -> anyhow::Result<(Material, PeerCert)> {
    let m = Material::from_pem(
        &read(cert, "certificate")?,
        &read(key, "private key")?,
        &read(ca, "CA")?,
    )?;
    let found = m.replacing(in_use, trust_domain, rustls::pki_types::UnixTime::now())?;
    Ok((m, found))
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Poll `files` (`--cert`, `--key`, `--ca`) every `every`; use renewed
/// material that passes [`renewed`] from then on, and keep the material in
/// use when it does not.
pub async fn watch(
    trust: Arc<Trust>,
    mut in_use: PeerCert,
    files: [PathBuf; 3],
    trust_domain: String,
    every: Duration,
) {
    let span =
        tracing::info_span!("certificate", path = %files[0].display(), ca = %files[2].display());
    let stamps = || files.each_ref().map(|f| stamp(f));
    let mut settled = Settled::new(stamps());
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some([_, _, new_ca]) = settled.poll(stamps()) else {
            continue;
        };
        let _e = span.enter();
        let outcome = renewed(&files, &in_use, &trust_domain).and_then(|(m, found)| {
            trust.credentials.replace(&m)?;
            Ok(found)
        });
        match outcome {
            Ok(found) => {
                if found.serial != in_use.serial {
                    tracing::info!(
                        identity = %found.identity,
                        serial = %found.serial,
                        previous = %in_use.serial,
                        not_after = %found.not_after,
                        "certificate renewed: new handshakes present it"
                    );
                }
                if new_ca {
                    trust.generation.fetch_add(1, Ordering::AcqRel);
                    tracing::info!(
                        serial = %found.serial,
                        "CA certificates replaced: new handshakes, and requests on connections made before, are checked against them"
                    );
                }
                trust
                    .not_after
                    .store(found.not_after.as_second(), Ordering::Release);
                in_use = found;
            }
            Err(e) => {
                tracing::warn!(cause = %format!("{e:#}"), serial = %in_use.serial, "new TLS material refused; the material in use stays");
            }
        }
    }
}
