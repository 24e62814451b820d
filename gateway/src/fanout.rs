//! Fan-out: turning each accepted event into queued work, cheaply.
//!
//! [`plan`] is the whole decision, pure matching: ingest calls it for every event and, when
//! the event makes few jobs, writes them itself with the event. The others (an event that
//! matches many subscriptions) wait on the backlog for the task below.
//!
//! A background task walks the backlog of accepted events in order. For every enabled
//! subscription whose patterns match, it queues either the deliveries themselves (a
//! subscription without a plugin: the body is built from the stored event when sent) or one
//! plugin-call job (a subscription with a plugin: the call runs later in that subscription's
//! lane, see [`crate::dispatch`]). So no plugin runs here, and a slow or hostile plugin
//! holds back nobody else. A round of events leaves the backlog in the last of the atomic
//! batches that store their jobs, so after a crash fan-out resumes where it stopped; this
//! module never makes a network call.

pub mod filter;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Snapshot;
use crate::event::Event;
use crate::state::{State, now_ms};
use crate::store::Job;
use crate::transform;

/// Backlog entries read per round.
const BATCH: usize = 256;

/// Runs until `shutdown`, fanning out every pending event.
pub async fn run(state: Arc<State>, shutdown: CancellationToken) {
    loop {
        // Register interest before reading, so a wake between the read and the wait is kept.
        let woken = state.fanout_wake.notified();
        let batch = match state.store.pending(BATCH) {
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
        let store = state.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut jobs = jobs;
            store.enqueue_new(&mut jobs, &handled).map(|()| jobs)
        })
        .await;
        match written {
            Ok(Ok(jobs)) => {
                for (job, event) in jobs.iter().zip(&events) {
                    state.scheduler.schedule_with(job, Some(event), now);
                }
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

/// The jobs `event` makes under `snapshot`: deliveries for subscriptions without a plugin,
/// a plugin-call job for each one with a plugin.
pub fn plan(snapshot: &Snapshot, event: &Arc<Event>, now_ms: u64) -> Vec<Job> {
    plan_at_most(snapshot, event, now_ms, usize::MAX).unwrap_or_default()
}

/// [`plan`], or `None` as soon as the event makes more than `limit` jobs.
pub fn plan_at_most(
    snapshot: &Snapshot,
    event: &Arc<Event>,
    now_ms: u64,
    limit: usize,
) -> Option<Vec<Job>> {
    let event_type = event.event_type();
    let mut jobs = Vec::new();
    for sub in &snapshot.subscriptions {
        if !transform::wants(sub, event, &event_type) {
            continue;
        }
        // Enrichment reads from Odoo: it runs in the plugin-call unit of work, never here.
        if sub.plugin.is_some() || crate::odoo::enrich::wanted(snapshot, sub, event) {
            jobs.push(transform::transform_job(sub, event, now_ms, now_ms));
        } else {
            jobs.extend(transform::pass_through_jobs(sub, event, now_ms));
        }
        if jobs.len() > limit {
            return None;
        }
    }
    Some(jobs)
}
