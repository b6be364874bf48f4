//! systemd notification (`Type=notify`): readiness, status text, reloads, the watchdog.
//!
//! Every call is a no-op outside systemd (no `NOTIFY_SOCKET`); a failed notification is
//! logged, never fatal.

use sd_notify::NotifyState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "Could not notify systemd.");
    }
}

/// Configuration and state are loaded, the socket is listening.
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The one-line status `systemctl status` shows.
pub(crate) fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A reload began (`SIGHUP`); [`ready`] ends it.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub(crate) fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing the calls in flight"),
    ]);
}

/// Pings the watchdog at half its period while `WatchdogSec=` is set, until `stop`, as long
/// as `alive` says every part of the daemon runs: when one is gone, the pings stop and
/// systemd restarts the service.
pub(crate) async fn watchdog(stop: CancellationToken, alive: Box<dyn Fn() -> bool + Send + Sync>) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval((period / 2).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if alive() {
                    send(&[NotifyState::Watchdog]);
                } else {
                    tracing::error!("A target's scheduler is gone; the watchdog is no longer notified, so that systemd restarts scimsync.");
                }
            }
        }
    }
}
