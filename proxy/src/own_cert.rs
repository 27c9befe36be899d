//! Renewing the edge's own certificate without a restart.
//!
//! [`watch`] polls `--cert` and `--key` (modification time and length). A
//! change is read once it has settled for one poll, so that a pair written
//! one file after the other is read whole. The new pair is checked as a
//! peer will check it (chains to `--ca`, valid now, the key matches the
//! certificate) and must name the identity in use: then every handshake
//! from then on presents it ([`OwnCert::replace`]); connections already up
//! keep theirs until they close (revoking the old serial closes them, and
//! they come back with the new certificate). Anything else is refused with
//! the reason logged and counted, and the certificate in use stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use federation::identity::{PeerCert, peer_cert, trust_domain_of};
use federation::mtls::{Material, OwnCert};

use crate::metrics::Metrics;
use crate::{Ctx, tls};

/// What `m`'s certificate says: identity, serial, validity.
pub fn describe(m: &Material) -> anyhow::Result<PeerCert> {
    let leaf = m.leaf().as_ref();
    let domain = trust_domain_of(leaf).context("no identity in the certificate")?;
    Ok(peer_cert(leaf, &domain)?)
}

/// Show when the presented certificate expires.
pub fn show_expiry(metrics: &Metrics, cert: &PeerCert) {
    metrics.set(
        "fedgate_certificate_expiry_timestamp_seconds",
        &[],
        cert.not_after.as_second() as f64,
    );
}

/// Read and check a renewed pair: the material, and what it says.
fn renewed(
    cert: &Path,
    key: &Path,
    ca: &Path,
    in_use: &PeerCert,
) -> anyhow::Result<(Material, PeerCert)> {
    let m = tls::load_material(cert, key, ca)?;
    let found = describe(&m)?;
    if found.identity != in_use.identity {
        bail!(
            "it names {}, not {} (the identity of this edge)",
            found.identity,
            in_use.identity
        );
    }
    m.verify_chain(rustls::pki_types::UnixTime::now())?;
    Ok((m, found))
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Poll `cert` and `key` every `every`; present a renewed pair that passes
/// ([`renewed`]) through `own`.
pub async fn watch(
    ctx: Arc<Ctx>,
    own: Arc<OwnCert>,
    mut in_use: PeerCert,
    files: [PathBuf; 3],
    every: Duration,
) {
    let [cert, key, ca] = files;
    let span = tracing::info_span!("certificate", path = %cert.display());
    let stamps = || (stamp(&cert), stamp(&key));
    let mut last = stamps();
    let mut seen = last;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamps();
        // Read a change once it has settled for one poll.
        if now != seen {
            seen = now;
            continue;
        }
        if now == last {
            continue;
        }
        last = now;
        let _e = span.enter();
        let outcome = renewed(&cert, &key, &ca, &in_use).and_then(|(m, found)| {
            own.replace(&m)?;
            Ok(found)
        });
        match outcome {
            Ok(found) => {
                ctx.metrics.add(
                    "fedgate_certificate_reloads_total",
                    &[("result", "applied")],
                    1,
                );
                show_expiry(&ctx.metrics, &found);
                tracing::info!(
                    identity = %found.identity,
                    serial = %found.serial,
                    previous = %in_use.serial,
                    not_after = %found.not_after,
                    "certificate renewed: new handshakes present it"
                );
                in_use = found;
            }
            Err(e) => {
                ctx.metrics.add(
                    "fedgate_certificate_reloads_total",
                    &[("result", "refused")],
                    1,
                );
                tracing::warn!(cause = %format!("{e:#}"), serial = %in_use.serial, "renewed certificate refused; the one in use stays");
            }
        }
    }
}
