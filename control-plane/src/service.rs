//! `fedgate-control` as a systemd service (`Type=notify`, docs/deploy):
//! ready once its API listens, its status line, stopping, and the
//! watchdog's heartbeat with `WatchdogSec=`. Without `NOTIFY_SOCKET` each
//! call does nothing. (The edge's counterpart is `proxy::service`.)

use std::time::Duration;

use sd_notify::NotifyState;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(cause = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Ready to serve, with the status line.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The status line, as what the replica serves changes.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Stopping: the API no longer accepts connections.
pub fn stopping(status: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The watchdog's heartbeat at half of `WATCHDOG_USEC`; returns at once
/// when systemd asked for none.
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
