//! Hot reload: building a new configuration snapshot while the gateway runs, and swapping it in
//! atomically.
//!
//! A reload is triggered by a change of the configuration file or of a plugin file (polled, so
//! it works on every filesystem), by SIGHUP, or by `POST /admin/reload`. It goes through the
//! same code as start-up: read, parse, validate, load plugins (only changed ones are compiled),
//! then one atomic swap. Work in flight keeps the snapshot it started with; work that starts
//! after the swap sees the new one. A failed reload changes nothing and says why: in the log,
//! in `GET /admin/reload`, and in the `reloads_failed` counter.
//!
//! Settings read once at start-up — `server.listen`, `server.max_concurrent_requests`,
//! `[server.tls]`, `storage.path`, `storage.engine` and `[storage.nats]` (on NATS also the
//! storage ages: `retention`, `dead_letter_retention`, `dedup_window`), `[telemetry]`,
//! `[plugins]` — take effect on the next restart; a reload that changes them says so in the log
//! and in `GET /admin/reload` (`restart_needed`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

pub use crate::reloader::{ConfigSource, Parsed, ReloadStatus, Reloader};
use crate::state::State;
use crate::time::now_ms;

/// How often watched files are looked at.
const POLL: Duration = Duration::from_millis(200);

/// Builds a new snapshot from the configuration file and swaps it in; on error the running
/// one stays. Returns the new generation. For a change of the file (the watcher, SIGHUP,
/// `POST /admin/reload`): a broken file is that reload's error.
pub async fn reload(state: &Arc<State>, cause: &str) -> Result<u64, String> {
    swap_in(state, cause, false).await
}

/// Builds a new snapshot for a change another instance made to the shared control plane and
/// swaps it in: from the file, or, while the file does not build, over the last file that did,
/// so that a broken file on disk never keeps this instance from the shared changes (and the
/// fan-out, which waits for them, from every event). A change made here (the app API, the
/// admin API) goes through [`reload`] instead: refused, and rolled back, while the file is
/// broken, so that the caller is told. Returns the new generation.
pub async fn rebuild(state: &Arc<State>, cause: &str) -> Result<u64, String> {
    swap_in(state, cause, true).await
}

async fn swap_in(state: &Arc<State>, cause: &str, over_last_good: bool) -> Result<u64, String> {
    let _one_at_a_time = state.reloader.lock.lock().await;
    // Read before the build reads the control plane: the snapshot holds at least the shared
    // changes counted so far.
    let generation = state.control.change_generation();
    // Plugins uploaded on other instances become files here before the build reads them.
    let storage = state.snapshot.load().storage.path.clone();
    let fetched = match state.control.fetch_plugin_files(&storage).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot fetch the shared plugins; the build goes on without them");
            false
        }
    };
    let worker = state.clone();
    let built = tokio::task::spawn_blocking(move || {
        let current = worker.snapshot.load_full();
        let reloader = &worker.reloader;
        let build = |parsed: Parsed| {
            reloader
                .source
                .build_parsed(parsed, &worker.control, worker.plugins.host(), Some(&current))
        };
        let from_file = reloader.source.read().and_then(|parsed| {
            let snapshot = build(parsed.clone())?;
            *reloader.good.lock().unwrap_or_else(|p| p.into_inner()) = Some(parsed);
            Ok(snapshot)
        });
        let good = reloader.good.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match (from_file, good) {
            (Err(e), Some(good)) if over_last_good => {
                tracing::warn!(error = %e, "the configuration file does not build; the change is built over the last file that did");
                build(good)
            }
            (built, _) => built,
        }
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let mut status = state
        .reloader
        .status
        .lock()
        .map_err(|_| "reload status poisoned".to_owned())?;
    status.last_attempt_ms = Some(now_ms());
    status.last_cause = Some(cause.to_owned());
    match built {
        Ok(snapshot) => {
            let current = state.snapshot.load();
            let restart_needed = state.reloader.started.changed_by(&snapshot);
            // Said once per change of the list, not at every rebuild while it stands.
            if !restart_needed.is_empty() && restart_needed != status.restart_needed {
                tracing::warn!(
                    settings = restart_needed.join(", "),
                    "these settings differ from what the gateway started with; they take effect at the next restart"
                );
            }
            // The delivery client and slots follow the new settings; deliveries in flight
            // finish with the ones they started with.
            if let Err(e) = state.outbound.reconfigure(
                &current.delivery.client,
                &snapshot.delivery.client,
                snapshot.delivery.slots(),
            ) {
                status.reloads_failed += 1;
                state
                    .metrics
                    .reloads
                    .get_or_create(&crate::telemetry::Outcome {
                        outcome: "failed".into(),
                    })
                    .inc();
                let error = format!("delivery.client: {e}");
                status.last_error = Some(error.clone());
                return Err(error);
            }
            state.store.set_commit_delay(snapshot.storage.commit_delay);
            drop(current);
            // Before the swap: whatever the new snapshot makes is queued where it belongs,
            // and the metrics of what it no longer has are gone.
            state.work.configured(&snapshot);
            state.metrics.configured(&snapshot.plugin_labels());
            state.snapshot.store(Arc::new(snapshot));
            // A build that had to go on without a plugin another instance uploaded may lack
            // that subscription: it does not count as caught up with the shared changes, so
            // the fan-out waits for one that is.
            if fetched {
                state.control.snapshot_built(generation);
            }
            prune_plugin_cache(state);
            status.generation += 1;
            status.reloads_ok += 1;
            state
                .metrics
                .reloads
                .get_or_create(&crate::telemetry::Outcome {
                    outcome: "ok".into(),
                })
                .inc();
            status.last_error = None;
            status.restart_needed = restart_needed;
            tracing::info!(
                cause,
                generation = status.generation,
                "configuration reloaded"
            );
            // Paused subscriptions may be enabled now; the stages look at once.
            state.work.wake();
            Ok(status.generation)
        }
        Err(error) => {
            status.reloads_failed += 1;
            state
                .metrics
                .reloads
                .get_or_create(&crate::telemetry::Outcome {
                    outcome: "failed".into(),
                })
                .inc();
            status.last_error = Some(error.clone());
            tracing::error!(cause, %error, "reload failed; the running configuration is unchanged");
            Err(error)
        }
    }
}

/// A cheap fingerprint of a file: its modification time and size (missing files count too).
fn fingerprint(paths: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Watches the configuration file and every plugin file until `shutdown`; a change that has
/// settled (the same fingerprint on two looks in a row, so half-written files are not read)
/// triggers a reload.
pub async fn watch(state: Arc<State>, shutdown: CancellationToken) {
    let files = |state: &State| -> Vec<PathBuf> {
        let snapshot = state.snapshot.load();
        state
            .reloader
            .source
            .path()
            .map(Path::to_path_buf)
            .into_iter()
            .chain(snapshot.watched.iter().cloned())
            .collect()
    };
    let mut paths = files(&state);
    let mut seen = fingerprint(&paths);
    let mut pending: Option<Vec<Option<(SystemTime, u64)>>> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = shutdown.cancelled() => return,
        }
        let now = fingerprint(&paths);
        if now == seen {
            pending = None;
            continue;
        }
        if pending.as_ref() != Some(&now) {
            pending = Some(now);
            continue;
        }
        pending = None;
        let _ = reload(&state, "a watched file changed").await;
        // Watch what the configuration names now, and remember what was seen whatever the
        // outcome (a failed reload is not retried until the files change again). What was
        // seen is the look taken *before* the reload: a file changed while the reload ran
        // differs from it, and is reloaded at the next look instead of being missed.
        let new_paths = files(&state);
        seen = seen_after_reload(&paths, &now, &new_paths, || fingerprint(&new_paths));
        paths = new_paths;
    }
}

type Fingerprint = Vec<Option<(SystemTime, u64)>>;

/// What the watcher counts as seen after a reload triggered by the look `before` at `paths`,
/// now that the configuration names `new_paths`: for a file it watched already, the look from
/// before the reload; for a newly named one, a fresh look (`current`).
fn seen_after_reload(
    paths: &[PathBuf],
    before: &Fingerprint,
    new_paths: &[PathBuf],
    current: impl FnOnce() -> Fingerprint,
) -> Fingerprint {
    let current = current();
    new_paths
        .iter()
        .zip(current)
        .map(|(path, now)| match paths.iter().position(|p| p == path) {
            Some(i) => before[i],
            None => now,
        })
        .collect()
}

/// Reloads on SIGHUP until `shutdown`.
pub async fn on_sighup(state: Arc<State>, shutdown: CancellationToken) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!(
            "cannot listen for SIGHUP; reload with the file watcher or POST /admin/reload"
        );
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => { let _ = reload(&state, "SIGHUP").await; }
            () = shutdown.cancelled() => return,
        }
    }
}

/// How long a compiled plugin no configuration uses stays in the cache (a reload that brings it
/// back within that time does not recompile it).
const UNUSED_PLUGIN_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How long to wait after a change for the ones that come with it (a subscription and its
/// plugin record, an app and its subscriptions).
const SHARED_DEBOUNCE: Duration = Duration::from_millis(100);

/// How often a snapshot that lacks a shared change is built again.
const SHARED_BEHIND_RETRY: Duration = Duration::from_secs(1);

/// Follows the shared control plane until `shutdown`: when another instance changes apps,
/// API subscriptions, plugins or subscription health, this instance takes the change through
/// the same build-and-swap path as a reload ([`rebuild`]), so it serves the change within a
/// second. Changes arriving together are taken together (debounced). With sled there is no
/// one else: it returns at once.
pub async fn follow_control_plane(state: Arc<State>, shutdown: CancellationToken) {
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
            () = tokio::time::sleep(SHARED_BEHIND_RETRY), if behind => {
                let _ = rebuild(&state, "catching up with the shared control plane").await;
                continue;
            }
            () = shutdown.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(SHARED_DEBOUNCE) => {}
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
            let _ = rebuild(&state, "the shared control plane changed").await;
        } else if health_changed {
            // An enabled subscription's parked jobs may run now.
            state.work.wake();
        }
    }
}

/// Removes cached compilations of plugins the running configuration no longer uses.
pub fn prune_plugin_cache(state: &State) {
    let in_use: std::collections::HashSet<String> = state
        .snapshot
        .load()
        .subscriptions
        .iter()
        .filter_map(|s| s.plugin.as_ref())
        .map(|p| p.hash().to_owned())
        .collect();
    let removed = state
        .plugins
        .host()
        .prune_cache(&in_use, UNUSED_PLUGIN_GRACE);
    if removed > 0 {
        tracing::info!(removed, "unused compiled plugins removed from the cache");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_made_during_a_reload_is_not_taken_as_seen() {
        let t = |s: u64| Some((SystemTime::UNIX_EPOCH + Duration::from_secs(s), 10));
        let config = PathBuf::from("gateway.toml");
        let plugin = PathBuf::from("p.wasm");
        let added = PathBuf::from("new.wasm");
        // The reload was triggered by the look at t=1; the config was written again (t=2)
        // while it ran, and the new configuration names one more plugin.
        let seen = seen_after_reload(
            &[config.clone(), plugin.clone()],
            &vec![t(1), t(1)],
            &[config, plugin, added],
            || vec![t(2), t(1), t(5)],
        );
        assert_eq!(seen, vec![t(1), t(1), t(5)]);
        assert_ne!(
            seen,
            vec![t(2), t(1), t(5)],
            "the next look sees the change"
        );
    }
}
