//! The sled engine's fan-out stage: walks the backlog of accepted events (those that made
//! too many jobs for ingest to write them itself) in order, plans each with
//! [`crate::fanout::plan`] and queues the jobs. A round of events leaves the backlog in the
//! last of the atomic batches that store their jobs, so after a crash fan-out resumes where it
//! stopped; this module never makes a network call.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::fanout::plan;
use crate::time::now_ms;
use crate::workplane::Handles;

/// Backlog entries read per round.
const BATCH: usize = 256;

/// Runs until `shutdown`, fanning out every pending event.
pub(super) async fn run(state: Arc<Handles>, work: super::SledWork, shutdown: CancellationToken) {
    loop {
        // Register interest before reading, so a wake between the read and the wait is kept.
        let woken = work.fan_out.notified();
        let batch = match work.store.pending(BATCH) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the fan-out backlog");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = woken => continue,
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
            }
        }
        let snapshot = state.snapshot.load_full();
        let now = now_ms();
        let mut jobs = Vec::new();
        let mut events = Vec::new();
        let round = batch.len();
        let mut handled = Vec::with_capacity(batch.len());
        for (key, event) in batch {
            let event = Arc::new(event);
            let fan_out = crate::trace::fan_out(&event);
            let planned = plan(&snapshot, &event, now);
            fan_out.planned(&event, planned.len());
            for job in planned {
                jobs.push(job);
                events.push(event.clone());
            }
            handled.push(key);
        }
        // The whole round in as few atomic batches as the bound allows.
        let store = work.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut jobs = jobs;
            store.enqueue_new(&mut jobs, &handled).map(|()| jobs)
        })
        .await;
        match written {
            Ok(Ok(jobs)) => {
                for (job, event) in jobs.iter().zip(&events) {
                    work.scheduler.schedule_with(job, Some(event), now);
                }
                let _ = work.backlog.fetch_update(
                    std::sync::atomic::Ordering::AcqRel,
                    std::sync::atomic::Ordering::Acquire,
                    |n| Some(n.saturating_sub(round)),
                );
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "fan-out failed; the events stay in the backlog");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => tracing::error!(error = %e, "fan-out write panicked"),
        }
        if shutdown.is_cancelled() {
            return;
        }
        tokio::task::yield_now().await;
    }
}
