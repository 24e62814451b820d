//! The sled engine's dispatch: running due jobs, each only when its own resources are free,
//! and writing down what the [`runner`](crate::workplane::runner) made of them.
//!
//! The loop asks the [`scheduler`](super::scheduler) for due jobs lane by lane; a job is
//! admitted only when its slots are free: for a delivery a global slot, a slot of the
//! receiver's host (scheme, host, port: eight destinations on one host share it) and, for an
//! app's subscription, one of the app's share; for a plugin call a plugin slot, with a cap per
//! subscription. A paused subscription's jobs are set aside. Each admitted job runs in its own
//! task; its [`Settle`] is written to the store: done, retried later, replaced by the
//! deliveries a plugin made, or buried in the dead letters.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::SledWork;
use super::scheduler::{Admit, Entry, Lane};
use crate::config::Snapshot;
use crate::delivery::{DestinationPermit, Permit};
use crate::event::Event;
use crate::store::{DeadReason, Job, JobKind};
use crate::time::now_ms;
use crate::workplane::Handles;
use crate::workplane::policy::Admission;
use crate::workplane::runner::{self, Gate, Settle};

/// Longest sleep when nothing is due: new work wakes the loop earlier.
const IDLE: Duration = Duration::from_millis(500);
/// How often paused subscriptions are looked at again.
const UNPARK_EVERY: Duration = Duration::from_secs(1);
/// Jobs admitted per round of the loop.
const TAKE: usize = 256;
/// How long a job waits after the store failed to read it.
const STORE_RETRY_MS: u64 = 1_000;
/// Plugin calls one runner makes in one go once it holds its subscription's plugin slot.
const PLUGIN_BATCH: usize = 32;

/// The slots a running job holds; dropping them frees them.
#[derive(Debug, Default)]
pub(super) struct Slots {
    _delivery: Option<Permit>,
    _app: Option<DestinationPermit>,
    _plugin: Option<Permit>,
    /// The delivery is its receiver host's probe (see [`crate::workplane::policy`]).
    probe: bool,
}

/// Runs until `shutdown`; in-flight jobs finish within the caller's grace.
pub(super) async fn run(state: Arc<Handles>, work: SledWork, shutdown: CancellationToken) {
    let scheduler = work.scheduler.clone();
    let mut next_unpark = 0;
    loop {
        // The earliest time a delivery held back by a policy may go.
        let held_until = std::cell::Cell::new(u64::MAX);
        // Register interest first, so a wake-up between the scan and the wait is kept.
        let woken = scheduler.notified();
        let snapshot = state.snapshot.load_full();
        let now = now_ms();
        if now >= next_unpark {
            scheduler.unpark(now, |sub| !runner::is_paused(&state, &snapshot, sub));
            next_unpark = now + UNPARK_EVERY.as_millis() as u64;
        }
        let ready = scheduler.take(now, TAKE, |entry| {
            admit(&state, &snapshot, entry, now, &held_until)
        });
        let busy = !ready.is_empty();
        for (entry, slots) in ready {
            let (state, work) = (state.clone(), work.clone());
            state.in_flight.clone().spawn(async move {
                run_job(&state, &work, entry, slots.probe).await;
                drop(slots);
                work.scheduler.notify();
            });
        }
        if shutdown.is_cancelled() {
            return;
        }
        if busy {
            tokio::task::yield_now().await;
            continue;
        }
        let until = scheduler
            .next_due_ms()
            .unwrap_or(u64::MAX)
            .min(next_unpark)
            .min(held_until.get());
        let wait = Duration::from_millis(until.saturating_sub(now)).min(IDLE);
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Whether `entry` may run now, and with which slots. A delivery whose slots are free but
/// which a policy holds back (its destination's rate limit, its host's open circuit) waits
/// holding none; `held_until` learns when it may go.
fn admit(
    state: &Handles,
    snapshot: &Snapshot,
    entry: &Entry,
    now_ms: u64,
    held_until: &std::cell::Cell<u64>,
) -> Admit<Slots> {
    let sub = match runner::gate(state, snapshot, &entry.subscription) {
        // Runs without slots, to be buried as `subscription_removed`.
        Gate::Unknown => return Admit::Run(Slots::default()),
        Gate::Park => return Admit::Park,
        Gate::Run(sub) => sub,
    };
    match &entry.lane {
        Lane::Transform(_) => match state.plugins.try_slot(&sub.id) {
            Some(permit) => Admit::Run(Slots {
                _plugin: Some(permit),
                ..Slots::default()
            }),
            None => Admit::Wait,
        },
        Lane::Deliver(destination) => {
            let Some(dest) = snapshot.destinations.get(&**destination) else {
                return Admit::Run(Slots::default());
            };
            let limits = state.outbound.limits();
            let app = match crate::subscriptions::owner_app(&sub.id) {
                Some(app) => match limits.apps.try_acquire_destination(app) {
                    Some(permit) => Some(permit),
                    None => return Admit::Wait,
                },
                None => None,
            };
            let Some(permit) = limits.hosts.try_acquire(&dest.authority()) else {
                return Admit::Wait;
            };
            match state
                .policies
                .admit_here(dest, &snapshot.delivery.circuit, now_ms)
            {
                Admission::Go { probe } => Admit::Run(Slots {
                    _delivery: Some(permit),
                    _app: app,
                    _plugin: None,
                    probe,
                }),
                Admission::WaitUntil { at_ms, .. } => {
                    held_until.set(held_until.get().min(at_ms));
                    Admit::Wait
                }
            }
        }
    }
}

/// A job read for running, with its event where it needs one.
struct Ready {
    entry: Entry,
    job: Job,
    event: Option<Arc<Event>>,
}

/// Reads the job of `entry` (from the schedule's memory, or the store) and its event where it
/// needs one; `None` when it was settled instead (gone, its event missing, unreadable now).
fn ready(state: &Handles, work: &SledWork, mut entry: Entry) -> Option<Ready> {
    let cached = entry.cached.take();
    let stored = match &cached {
        Some(c) => Ok(Some(c.job.clone())),
        None => work.store.job(&entry.id),
    };
    let job = match stored {
        Ok(Some(job)) => job,
        // Finished through another path (a replayed fan-out wrote it twice).
        Ok(None) => {
            work.scheduler.finish(&entry.id);
            return None;
        }
        Err(e) => {
            tracing::error!(error = %e, job = %entry.id, "cannot read a job; it is tried again");
            later(work, entry);
            return None;
        }
    };
    let mut event = cached.and_then(|c| c.event.clone());
    if event.is_none() && runner::needs_event(&job) {
        match work.store.event(&job.event_id) {
            Ok(Some(stored)) => event = Some(Arc::new(stored)),
            // Without its event it cannot run: a delivery's envelope or a plugin call.
            Ok(None) => {
                let missing = Settle::bury(DeadReason::EventMissing);
                settle(state, work, entry, &job, missing);
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, job = %job.id, "cannot read the event of a job; it is tried again");
                later(work, entry);
                return None;
            }
        }
    }
    Some(Ready { entry, job, event })
}

/// Puts `entry` back for a little later, after the store could not be read.
fn later(work: &SledWork, entry: Entry) {
    let now = now_ms();
    work.scheduler.requeue(entry, now + STORE_RETRY_MS, now);
}

async fn run_job(state: &Arc<Handles>, work: &SledWork, entry: Entry, probe: bool) {
    let Some(Ready { entry, job, event }) = ready(state, work, entry) else {
        return;
    };
    let snapshot = state.snapshot.load_full();
    let sub = match runner::gate(state, &snapshot, &job.subscription_id) {
        Gate::Run(sub) => sub,
        // Paused since it was admitted: set aside again.
        Gate::Park => return later(work, entry),
        Gate::Unknown => {
            // Only a job still stored is dead-lettered: one purged with its app (or already
            // done) is simply forgotten.
            if matches!(work.store.job(&entry.id), Ok(None)) {
                return work.scheduler.finish(&entry.id);
            }
            let reason = DeadReason::SubscriptionRemoved;
            return settle(state, work, entry, &job, Settle::bury(reason));
        }
    };
    match job.kind {
        JobKind::Deliver => {
            let settled = runner::deliver(state, &snapshot, &sub, &job, event, probe).await;
            settle(state, work, entry, &job, settled);
        }
        JobKind::Transform => {
            let Some(event) = event else { return };
            let mut calls = vec![(entry, job, event)];
            // Up to a batch of the same subscription's due calls, on this one slot; its
            // part of them when the subscription may have several calls at once.
            let lane = calls[0].0.lane.clone();
            let runners = state.plugins.per_subscription();
            for more in work.scheduler.take_more(&lane, PLUGIN_BATCH - 1, runners) {
                if let Some(Ready {
                    entry,
                    job,
                    event: Some(event),
                }) = ready(state, work, more)
                {
                    calls.push((entry, job, event));
                }
            }
            call_plugins(state, work, &snapshot, &sub, calls).await;
        }
    }
}

/// Writes down what became of one job and takes it off the schedule (or puts it back for its
/// retry).
fn settle(state: &Handles, work: &SledWork, entry: Entry, job: &Job, settled: Settle) {
    match settled {
        Settle::Delivered(attempt) => {
            if let Err(e) = work.store.complete(job, &attempt) {
                tracing::error!(error = %e, job = %job.id, "delivered, but cannot record it; it may be delivered again");
            }
            work.scheduler.finish(&entry.id);
        }
        Settle::Retry { attempt, due_ms } => {
            if let Err(e) = work.store.retry_later(job, &attempt, due_ms) {
                tracing::error!(error = %e, job = %job.id, "cannot reschedule; it is tried again");
            }
            work.scheduler.requeue(entry, due_ms, now_ms());
        }
        Settle::Bury { attempt, reason } => {
            runner::buried(state, job, &reason);
            if let Err(e) = work
                .store
                .bury(job, attempt.as_ref(), &reason.to_string(), now_ms())
            {
                tracing::error!(error = %e, job = %job.id, "cannot dead-letter a job; it is tried again at the next start");
            }
            work.scheduler.finish(&entry.id);
        }
        Settle::Replaced {
            attempt,
            jobs,
            letters,
        } => replaced(
            work,
            vec![(entry, job.clone(), attempt, jobs, letters, None)],
        ),
    }
}

/// Plugin calls: runs the plugin for each of `calls` (one subscription's, on one plugin slot),
/// then queues all the deliveries they made and finishes the calls in one atomic write. Calls
/// that ask for a retry or fail are settled one by one.
async fn call_plugins(
    state: &Handles,
    work: &SledWork,
    snapshot: &Arc<Snapshot>,
    sub: &Arc<crate::config::Subscription>,
    calls: Vec<(Entry, Job, Arc<Event>)>,
) {
    let inputs: Vec<(Job, Arc<Event>)> = calls
        .iter()
        .map(|(_, job, event)| (job.clone(), event.clone()))
        .collect();
    let settled = runner::call_plugins(state, snapshot, sub, &inputs).await;
    let mut made = Vec::new();
    for ((entry, job, event), settled) in calls.into_iter().zip(settled) {
        match settled {
            Settle::Replaced {
                attempt,
                jobs,
                letters,
            } => made.push((entry, job, attempt, jobs, letters, Some(event))),
            other => settle(state, work, entry, &job, other),
        }
    }
    replaced(work, made);
}

/// A plugin call that made its deliveries: its entry, job and attempt, the deliveries, those
/// refused at once, and its event (kept in the schedule's memory with the deliveries).
type Made = (
    Entry,
    Job,
    crate::store::Attempt,
    Vec<Job>,
    Vec<crate::store::DeadLetter>,
    Option<Arc<Event>>,
);

/// Queues the deliveries plugin calls made and finishes the calls, in one atomic write; if it
/// fails, the calls run again a little later.
fn replaced(work: &SledWork, made: Vec<Made>) {
    if made.is_empty() {
        return;
    }
    let mut deliveries = Vec::new();
    let mut dead = Vec::new();
    let mut finished = Vec::new();
    let mut done = Vec::new();
    for (entry, job, attempt, jobs, letters, event) in made {
        deliveries.extend(jobs.into_iter().map(|j| (j, event.clone())));
        dead.extend(letters);
        finished.push((job, attempt));
        done.push(entry);
    }
    let jobs: Vec<Job> = deliveries.iter().map(|(j, _)| j.clone()).collect();
    if let Err(e) = work.store.enqueue_replacing(&jobs, &dead, &finished) {
        tracing::error!(error = %e, "cannot queue plugins' deliveries; the calls run again");
        for entry in done {
            later(work, entry);
        }
        return;
    }
    let now = now_ms();
    for (delivery, event) in &deliveries {
        work.scheduler.schedule_with(delivery, event.as_ref(), now);
    }
    for entry in &done {
        work.scheduler.finish(&entry.id);
    }
}
