//! The store's maintenance task: retention passes, room on disk, and the end of a pause.
//!
//! Runs beside the data path: each pass is bounded ([`PASS_BUDGET`] records) and runs on a
//! blocking thread, with a short pause between passes, so ingest is never held up for long.
//! While new events are paused for lack of room (live data at its limit, or the disk short of
//! free space; see `space.rs`), or live data is at the limit, it prunes every finished event
//! whatever its age, oldest first; it never touches what is queued or dead-lettered. After
//! each round it lets `space.rs` look at the disk and end the pause once there is room. It
//! never refuses anything itself.

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Pruned, Retention, Room, Store, space};

/// Records removed by one pass at most.
pub const PASS_BUDGET: usize = 2_000;
/// Pause between two passes of one round.
const BETWEEN_PASSES: Duration = Duration::from_millis(5);
/// Pause between rounds while new events are paused for lack of room: a pause ends only in a
/// round, so it is not left waiting for the configured interval.
const WHILE_PAUSED: Duration = Duration::from_secs(1);
/// With a budget or a free-space floor, rounds come at least this often: a burst can fill a
/// small disk quickly.
const WITH_LIMITS: Duration = Duration::from_secs(5);
/// The control plane's trees are counted again at most this often (a scan of each).
const CONTROL_COUNT_EVERY_MS: u64 = 30_000;

/// What maintenance is told to do; read again before every round (a reload changes it).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Retention.
    pub retention: Retention,
    /// Pause between rounds.
    pub interval: Duration,
    /// Room on disk: the budget of live data, the free space to keep, the reserve file.
    pub room: Room,
}

/// What the last round did, for `/admin/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// When it ended (ms since the epoch).
    pub at_ms: u64,
    /// Records it removed.
    pub pruned: Pruned,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
    /// Database size on disk afterwards.
    pub size_on_disk: u64,
    /// Live data afterwards (keys and values of every record).
    pub live_bytes: u64,
    /// Whether new events are refused for lack of room.
    pub full: bool,
}

impl Store {
    /// Whether new events are paused for lack of room (live data at its limit, or the disk
    /// short of free space).
    pub fn is_full(&self) -> bool {
        self.inner.space.paused()
    }

    /// The last maintenance round.
    pub fn maintenance_report(&self) -> Option<Report> {
        self.inner
            .report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The database's size on disk (0 if it cannot be read).
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }

    /// Prunes in bounded passes until nothing more is due at `now_ms` under `retention`.
    async fn prune_round(&self, now_ms: u64, retention: Retention) -> Pruned {
        let mut total = Pruned::default();
        loop {
            let store = self.clone();
            let pass =
                tokio::task::spawn_blocking(move || store.prune(now_ms, &retention, PASS_BUDGET))
                    .await;
            match pass {
                Ok(Ok(pass)) => {
                    total.add(pass);
                    if !pass.more {
                        // The round is complete: nothing more is due.
                        total.more = false;
                        return total;
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "retention pass failed; next round retries");
                    return total;
                }
                Err(e) => {
                    tracing::error!(error = %e, "retention pass panicked");
                    return total;
                }
            }
            tokio::time::sleep(BETWEEN_PASSES).await;
        }
    }

    /// One round: retention (every finished event while room is short), then room on disk.
    pub async fn maintain(&self, now_ms: u64, policy: &Policy) -> Report {
        let started = std::time::Instant::now();
        let mut pruned = self.prune_round(now_ms, policy.retention).await;
        let at_limit = |store: &Store| {
            store.inner.space.paused()
                || policy
                    .room
                    .max_live_bytes
                    .into_iter()
                    .chain(store.inner.space.limit())
                    .any(|limit| store.live_bytes() >= limit)
        };
        if at_limit(self) {
            // Short of room: every finished event may go, oldest first; dead letters and
            // queued work stay.
            let urgent = Retention {
                delivered: Duration::ZERO,
                ..policy.retention
            };
            pruned.add(self.prune_round(now_ms, urgent).await);
        }
        let last = self
            .inner
            .control_counted_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if now_ms >= last + CONTROL_COUNT_EVERY_MS || self.inner.space.paused() {
            let store = self.clone();
            match tokio::task::spawn_blocking(move || store.count_control()).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot count the control plane's trees"),
                Err(e) => tracing::error!(error = %e, "counting the control plane panicked"),
                Ok(Ok(())) => self
                    .inner
                    .control_counted_ms
                    .store(now_ms, std::sync::atomic::Ordering::Relaxed),
            }
        }
        // What pruning removed is made durable, and a database that takes no more writes is
        // found even when nothing else waits for a flush.
        if let Err(e) = self.durable().await {
            tracing::warn!(error = %e, "maintenance could not flush the database");
        }
        let size = self.size_on_disk();
        let live_bytes = self.live_bytes();
        let failing = self.needs_reopen();
        let space = (
            self.clone(),
            space::fitted(self.inner.space.dir(), policy.room),
        );
        let reviewed = tokio::task::spawn_blocking(move || {
            let (store, room) = space;
            store
                .inner
                .space
                .review(room, live_bytes, size, failing, now_ms);
        })
        .await;
        if let Err(e) = reviewed {
            tracing::error!(error = %e, "the review of room on disk panicked");
        }
        let report = Report {
            at_ms: now_ms,
            pruned,
            took_ms: started.elapsed().as_millis() as u64,
            size_on_disk: size,
            live_bytes,
            full: self.is_full(),
        };
        if pruned.total() > 0 {
            tracing::info!(
                events = pruned.events,
                dead_letters = pruned.dead_letters,
                attempts = pruned.attempts,
                took_ms = report.took_ms,
                "retention pruned old records"
            );
        }
        *self.inner.report.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
        report
    }

    /// Runs maintenance rounds until `shutdown`, each with the policy `policy` gives then;
    /// `done` hears of each round (the metrics count it).
    pub async fn run_maintenance(
        self,
        policy: impl Fn() -> Policy + Send + 'static,
        done: impl Fn(&Report) + Send + 'static,
        shutdown: CancellationToken,
    ) {
        loop {
            let current = policy();
            done(&self.maintain(crate::time::now_ms(), &current).await);
            let room = current.room;
            let pause = if self.is_full() || self.needs_reopen() {
                current.interval.min(WHILE_PAUSED)
            } else if room.max_live_bytes.is_some() || room.min_free_bytes > 0 {
                current.interval.min(WITH_LIMITS)
            } else {
                current.interval
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
