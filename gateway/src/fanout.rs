//! Fan-out: planning each accepted event's jobs, cheaply.
//!
//! [`plan`] is the whole decision, pure matching: for every enabled subscription whose
//! patterns match, either the deliveries themselves (a subscription without a plugin: the body
//! is built from the stored event when sent) or one plugin-call job (a subscription with a
//! plugin or enrichment: the call runs later in that subscription's lane). So no plugin runs
//! here, and a slow or hostile plugin holds back nobody else. Each engine of the work plane
//! calls it where it fans out (ingest itself for an event that makes few jobs, then the
//! engine's fan-out stage); this module does no I/O.

use std::sync::Arc;

use crate::config::Snapshot;
use crate::event::Event;
use crate::store::Job;
use crate::transform;

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
        if sub.plugin.is_some() || crate::transform::enrich::wanted(snapshot, sub, event) {
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
