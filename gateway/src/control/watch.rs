//! Following the shared control plane: when another instance changes apps, API subscriptions,
//! plugins or subscription health, this instance takes the change through the same
//! build-and-swap path as a reload ([`crate::reload::rebuild`]), so it serves the change within
//! a second. Changes arriving together are taken together (debounced).
//!
//! With sled there is no one else: the task returns at once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::State;

/// How long to wait after a change for the ones that come with it (a subscription and its
/// plugin record, an app and its subscriptions).
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// How often a snapshot that lacks a shared change is built again.
const BEHIND_RETRY: Duration = Duration::from_secs(1);

/// Rebuilds the snapshot when another instance changed what it is built from, until
/// `shutdown`.
pub async fn run(state: Arc<State>, shutdown: CancellationToken) {
    let Some(plane) = state.control.nats().cloned() else {
        return;
    };
    let changes = plane.changes.clone();
    loop {
        // A build that could not hold every change (a plugin not fetched) is tried again
        // until one does: the fan-out waits for it.
        let behind = !plane.snapshot_current();
        tokio::select! {
            () = changes.notify.notified() => {}
            () = tokio::time::sleep(BEHIND_RETRY), if behind => {
                let _ = crate::reload::rebuild(&state, "catching up with the shared control plane").await;
                continue;
            }
            () = shutdown.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(DEBOUNCE) => {}
            () = shutdown.cancelled() => return,
        }
        let crate::control::nats::Taken { snapshot, health } = changes.take();
        let health_changed = !health.is_empty();
        let mut resumed = Vec::new();
        for (sub, h) in health {
            if !h.as_ref().is_some_and(|h| h.disabled) {
                resumed.push(sub.clone());
            }
            state.health.apply_remote(&sub, h);
        }
        // Enabled elsewhere: the jobs parked here run again, as after a local enable.
        if !resumed.is_empty() {
            let resumed: Vec<&str> = resumed.iter().map(String::as_str).collect();
            state.work.resume(&resumed);
        }
        if snapshot {
            let _ = crate::reload::rebuild(&state, "the shared control plane changed").await;
        } else if health_changed {
            // An enabled subscription's parked jobs may run now.
            state.work.wake();
        }
    }
}
