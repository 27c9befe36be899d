//! Applying a new snapshot without a restart.
//!
//! [`watch`] polls the snapshot file (its modification time and length);
//! when it changes, [`apply`] loads it through the same checks as at start
//! (integrity, edge, validation) and swaps the node whole. A snapshot that
//! fails to load, is older than the one running, or differs from it under
//! the same version is refused with a logged reason and a metric, and the
//! running node stays (the succession rules are the core's:
//! [`federation::signed::check_succession`], as for snapshots from the
//! control plane, [`crate::control`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use federation::EdgeSnapshot;
use federation::signed::{Held, Succession, SuccessionError, check_succession};

use crate::node::Node;
use crate::{Ctx, now};

/// Why a snapshot was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    #[error("cannot read the snapshot: {0}")]
    Unreadable(#[from] std::io::Error),
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    #[error("version {found} is older than the running version {running}")]
    Older { found: u64, running: u64 },
    #[error("version {0} is the running version but its content differs")]
    SameVersionDiffers(u64),
}

impl Refused {
    /// The `reason` label of `fedgate_snapshot_reloads_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unreadable(_) => "unreadable",
            Self::Invalid(_) => "invalid",
            Self::Older { .. } => "older",
            Self::SameVersionDiffers(_) => "same-version-differs",
        }
    }
}

/// What the running snapshot is, to compare a new one against.
#[derive(Debug, Clone, Default)]
pub struct Running {
    pub version: u64,
    pub digest: String,
}

/// The outcome of a snapshot that passed.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new version now runs.
    Swapped,
    /// The same snapshot as the running one: nothing to do.
    Unchanged,
}

/// Load `bytes` as the snapshot of `edge` and, if it may replace `running`,
/// swap it in.
pub fn apply(
    ctx: &Ctx,
    running: &mut Running,
    bytes: &[u8],
    edge: &str,
) -> Result<Applied, Refused> {
    let snap = EdgeSnapshot::from_json(bytes).map_err(|e| Refused::Invalid(e.into()))?;
    let held = Held {
        version: running.version,
        digest: running.digest.clone(),
    };
    match check_succession(edge, Some(&held), &snap) {
        Ok(Succession::Newer) => {}
        Ok(Succession::Same) => return Ok(Applied::Unchanged),
        Err(SuccessionError::Older { offered, held }) => {
            return Err(Refused::Older {
                found: offered,
                running: held,
            });
        }
        Err(SuccessionError::Conflicting { version, .. }) => {
            return Err(Refused::SameVersionDiffers(version));
        }
        Err(e) => return Err(Refused::Invalid(e.into())),
    }
    let node = Node::from_snapshot(&snap, edge, now()).map_err(Refused::Invalid)?;
    ctx.set_node(node);
    *running = Running {
        version: snap.version,
        digest: snap.digest,
    };
    Ok(Applied::Swapped)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Poll `path` every `every` and apply each change; runs until aborted.
pub async fn watch(ctx: Arc<Ctx>, path: PathBuf, edge: String, every: Duration) {
    let span = tracing::info_span!("config", path = %path.display());
    let mut last = stamp(&path);
    let mut running = Running {
        version: ctx.node().version,
        digest: std::fs::read(&path)
            .ok()
            .and_then(|b| EdgeSnapshot::from_json(&b).ok())
            .map(|s| s.digest)
            .unwrap_or_default(),
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now_stamp = stamp(&path);
        if now_stamp == last {
            continue;
        }
        last = now_stamp;
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => Ok(b),
            Err(e) => Err(Refused::Unreadable(e)),
        };
        let (ctx2, edge2, mut r) = (ctx.clone(), edge.clone(), running.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let out = bytes.and_then(|b| apply(&ctx2, &mut r, &b, &edge2));
            (out, r)
        })
        .await;
        let _e = span.enter();
        match outcome {
            // The swap logged `snapshot applied`, in this span.
            Ok((Ok(Applied::Swapped), r)) => {
                running = r;
                ctx.metrics.add(
                    "fedgate_snapshot_reloads_total",
                    &[("result", "applied"), ("reason", "newer")],
                    1,
                );
            }
            Ok((Ok(Applied::Unchanged), _)) => {
                tracing::debug!(version = running.version, "snapshot unchanged");
            }
            Ok((Err(e), _)) => {
                ctx.metrics.add(
                    "fedgate_snapshot_reloads_total",
                    &[("result", "refused"), ("reason", e.label())],
                    1,
                );
                tracing::warn!(cause = %e, version = running.version, "snapshot refused");
            }
            Err(e) => tracing::error!(cause = %e, "snapshot check failed"),
        }
    }
}
