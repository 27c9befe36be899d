//! The edge as a systemd service (`Type=notify`, docs/deploy): it says
//! when it is ready (its listeners bound, a snapshot in force), what it
//! serves (the status line `systemctl status` shows), when it starts to
//! drain, and, with `WatchdogSec=`, that its runtime still turns. Without
//! `NOTIFY_SOCKET` (not started by systemd) each call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::node::Node;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(cause = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Ready to serve, with the status line.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The status line, as what the edge serves changes.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// The status line for `node`: the edge, its snapshot, what it holds.
pub fn serving(node: &Node) -> String {
    format!(
        "{}: snapshot version {}, {} services, {} policies",
        node.edge.id,
        node.version,
        node.fed.services.len(),
        node.fed.policies.len()
    )
}

/// Draining: no new flows; flows in progress finish.
pub fn stopping(status: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The watchdog's heartbeat, at half the interval systemd asked for
/// (`WATCHDOG_USEC`); returns at once when it asked for none. A runtime
/// stuck on a task misses its beats, and systemd restarts the edge.
pub async fn watchdog() {
    let Some(every) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval((every / 2).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}
