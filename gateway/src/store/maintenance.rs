//! The store's maintenance task: retention passes and the disk budget.
//!
//! Runs beside the data path: each pass is bounded ([`PASS_BUDGET`] records) and runs on a
//! blocking thread, with a short pause between passes, so ingest is never held up for long.
//! Above the disk budget it prunes every finished event whatever its age, oldest first, and
//! if that is still not enough it marks the store full: ingest then refuses new events with
//! `507 storage_full` (never touching what was acknowledged) until there is room again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Pruned, Retention, Store};

/// Records removed by one pass at most.
pub const PASS_BUDGET: usize = 2_000;
/// Pause between two passes of one round.
const BETWEEN_PASSES: Duration = Duration::from_millis(5);
/// The store stops being full once it is this far below its budget (hysteresis).
const ROOM_AGAIN: f64 = 0.9;

/// What maintenance is told to do; read again before every round (a reload changes it).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Retention.
    pub retention: Retention,
    /// Pause between rounds.
    pub interval: Duration,
    /// Disk budget, if any.
    pub max_disk_bytes: Option<u64>,
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
    /// Whether new events are refused for lack of room.
    pub full: bool,
}

impl Store {
    /// Whether the disk budget is exhausted: new events are refused.
    pub fn is_full(&self) -> bool {
        self.inner.full.load(Ordering::Acquire)
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

    /// One round: retention, then the disk budget.
    pub async fn maintain(&self, now_ms: u64, policy: &Policy) -> Report {
        let started = std::time::Instant::now();
        let mut pruned = self.prune_round(now_ms, policy.retention).await;
        if let Some(budget) = policy.max_disk_bytes {
            if self.size_on_disk() > budget {
                // Over budget: every finished event may go, oldest first; dead letters and
                // queued work stay.
                let urgent = Retention {
                    delivered: Duration::ZERO,
                    ..policy.retention
                };
                pruned.add(self.prune_round(now_ms, urgent).await);
            }
            let size = self.size_on_disk();
            let was_full = self.is_full();
            let full = if was_full {
                size as f64 > budget as f64 * ROOM_AGAIN
            } else {
                size > budget
            };
            if full != was_full {
                self.inner.full.store(full, Ordering::Release);
                if full {
                    tracing::error!(size, budget, "disk budget reached: new events are refused");
                } else {
                    tracing::info!(
                        size,
                        budget,
                        "back under the disk budget: events accepted again"
                    );
                }
            }
        } else {
            self.inner.full.store(false, Ordering::Release);
        }
        let report = Report {
            at_ms: now_ms,
            pruned,
            took_ms: started.elapsed().as_millis() as u64,
            size_on_disk: self.size_on_disk(),
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
            // With a budget, look more often: a burst can fill a small disk quickly.
            let pause = match current.max_disk_bytes {
                Some(_) => current.interval.min(Duration::from_secs(5)),
                None => current.interval,
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
