//! Renewing the edge's own certificate, and replacing the CA certificates
//! it trusts, without a restart.
//!
//! [`watch`] polls `--cert`, `--key` and `--ca` (modification time and
//! length). A change is read once it has settled for one poll, so that a
//! pair written one file after the other is read whole. The new material is
//! checked as a peer will check it (the certificate chains to the CA
//! certificates of `--ca`, is valid now, the key matches it) and must name
//! the identity in use: then every handshake from then on uses it
//! ([`federation::mtls::Credentials::replace`]). Anything else is refused with the reason
//! logged and counted, and the material in use stays.
//!
//! Connections already up keep the certificates they were made with, until
//! they close (revoking the old serial closes them, and they come back with
//! the new certificate). A new CA bundle is the exception: every peer
//! already connected is checked against it at once, and one whose chain it
//! no longer trusts is disconnected ([`crate::enforce`]). A CA rollover is
//! then: the old and new CA in every edge's `--ca`; certificates from the
//! new CA; the old CA out of `--ca`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use federation::identity::{PeerCert, peer_cert, trust_domain_of};
use federation::mtls::Material;

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

/// Read and check new material ([`Material::replacing`]): the material,
/// and what its certificate says.
fn renewed(
    [cert, key, ca]: &[PathBuf; 3],
    in_use: &PeerCert,
    trust_domain: &str,
) -> anyhow::Result<(Material, PeerCert)> {
    let m = tls::load_material(cert, key, ca)?;
    let found = m.replacing(in_use, trust_domain, rustls::pki_types::UnixTime::now())?;
    Ok((m, found))
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Poll `cert`, `key` and `ca` every `every`; use renewed material that
/// passes ([`renewed`]) from then on.
pub async fn watch(
    ctx: Arc<Ctx>,
    mut in_use: PeerCert,
    trust_domain: String,
    files: [PathBuf; 3],
    every: Duration,
) {
    let span =
        tracing::info_span!("certificate", path = %files[0].display(), ca = %files[2].display());
    let stamps = || files.each_ref().map(|f| stamp(f));
    let mut settled = federation::mtls::Settled::new(stamps());
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some([_, _, new_ca]) = settled.poll(stamps()) else {
            continue;
        };
        let _e = span.enter();
        let outcome = renewed(&files, &in_use, &trust_domain).and_then(|(m, found)| {
            ctx.credentials.replace(&m)?;
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
                    tracing::info!(
                        serial = %found.serial,
                        "CA certificates replaced: new handshakes are checked against them, and peers already connected are checked again"
                    );
                    ctx.trust_replaced();
                }
                in_use = found;
            }
            Err(e) => {
                ctx.metrics.add(
                    "fedgate_certificate_reloads_total",
                    &[("result", "refused")],
                    1,
                );
                tracing::warn!(cause = %format!("{e:#}"), serial = %in_use.serial, "new TLS material refused; the material in use stays");
            }
        }
    }
}
