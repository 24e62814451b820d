//! The sled engine of the work plane: the queue in the instance's own database
//! ([`crate::store`]) and the in-memory schedule of what runs next (`scheduler.rs`), kept in
//! step: whatever this engine queues is scheduled at once. Its stages are the fan-out of the
//! backlog (`fanout.rs`) and `dispatch.rs`, which runs due jobs through the one job runner and
//! writes down their outcome.

mod dispatch;
mod fanout;
mod ordered;
mod scheduler;

use std::collections::HashMap;
use std::sync::Arc;

use super::{AcceptError, Delivery, DestinationDepth, JobState};
use crate::event::Event;
use crate::store::{Accepted, DedupKey, Job, JobSummary, Store, StoreError};
use crate::time::now_ms;
use scheduler::{Lane, Scheduler};

/// Most jobs an event may make for ingest to write them itself; an event that makes more is
/// left to the fan-out stage.
const INLINE_JOBS: usize = 16;

/// The sled engine's handle: the database and the schedule. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SledWork {
    store: Store,
    scheduler: Arc<Scheduler>,
    fan_out: Arc<tokio::sync::Notify>,
    /// Events on the fan-out backlog, not yet fanned out: while there are any, an event for an
    /// ordered subscription goes there too, so that its jobs are queued after theirs.
    backlog: Arc<std::sync::atomic::AtomicUsize>,
}

impl SledWork {
    /// The engine over `store`, its schedule rebuilt from the jobs on disk: what was running at
    /// the last stop (even a kill -9) is due again now, retries keep their due times.
    pub fn open(store: Store) -> Result<Self, StoreError> {
        let scheduler = Arc::new(Scheduler::default());
        let queued = scheduler.rebuild(store.queued_jobs(), now_ms())?;
        let backlog = store.backlog_len();
        if queued > 0 {
            tracing::info!(queued, "queued jobs from the last run are scheduled again");
        }
        Ok(Self {
            store,
            scheduler,
            fan_out: Arc::default(),
            backlog: Arc::new(backlog.into()),
        })
    }

    /// The engine's stages: the fan-out of the backlog and dispatch.
    pub(super) fn stages(&self) -> Vec<(&'static str, super::Stage)> {
        let (fan_out, dispatch) = (self.clone(), self.clone());
        vec![
            (
                "fan-out",
                Arc::new(move |state, stop| {
                    Box::pin(fanout::run(state, fan_out.clone(), stop)) as super::StageRun
                }),
            ),
            (
                "dispatch",
                Arc::new(move |state, stop| {
                    Box::pin(dispatch::run(state, dispatch.clone(), stop)) as super::StageRun
                }),
            ),
        ]
    }

    /// Accepts an event from ingest: refused at once when the disk cannot keep it; planned
    /// here and written with its jobs when it makes few (matching is pure and cheap), else
    /// left on the backlog for the fan-out, so that acknowledging it never waits for a large
    /// write; answered once durable.
    pub(super) async fn accept(
        &self,
        snapshot: &crate::config::Snapshot,
        event: &Arc<Event>,
        dedup: &DedupKey,
    ) -> Result<Accepted, AcceptError> {
        // Refuse quickly what cannot be kept: writes failing, live data at its budget, a disk
        // short of room (see `store/space.rs`). Nothing acknowledged before is touched.
        if let Some(refusal) = self.store.refusal() {
            return Err(AcceptError::Refused(refusal));
        }
        let fan_out = crate::trace::fan_out(event);
        // Behind events still on the backlog, for ordered subscriptions' sake.
        let inline = if self.backlog.load(std::sync::atomic::Ordering::Acquire) > 0
            && snapshot.subscriptions.iter().any(|s| s.ordering.is_some())
        {
            0
        } else {
            INLINE_JOBS
        };
        let mut planned = crate::fanout::plan_at_most(snapshot, event, now_ms(), inline);
        let accepted = match &mut planned {
            Some(jobs) => self.store.accept_planned(event, dedup, jobs),
            None => self.store.accept(event, dedup),
        }
        .map_err(|e| self.write_failed(e))?;
        let durable = self.store.durable().await;
        if !accepted.duplicate {
            match &planned {
                // Written, so scheduled even if the flush failed: the flusher retries until
                // the disk takes them, and a retry of this request is answered as a duplicate.
                Some(jobs) => {
                    fan_out.planned(event, jobs.len());
                    let now = now_ms();
                    for job in jobs {
                        self.scheduler.schedule_with(job, Some(event), now);
                    }
                }
                None => {
                    self.backlog
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    self.wake_fan_out();
                }
            }
        }
        durable.map_err(|e| self.write_failed(e))?;
        Ok(accepted)
    }

    /// A write or flush of an event failed: the store hears of it (its reserve file goes, so
    /// that what must still be written has room).
    fn write_failed(&self, e: StoreError) -> AcceptError {
        self.store.write_failed(&e);
        AcceptError::Store(e)
    }

    /// Looks again at the jobs set aside for paused subscriptions that `resume` says run
    /// again, and wakes dispatch.
    pub(super) fn resume(&self, resume: impl FnMut(&str) -> bool) -> usize {
        let resumed = self.scheduler.unpark(now_ms(), resume);
        self.scheduler.notify();
        resumed
    }

    /// Wakes the stages (a new configuration may have work for them).
    pub(super) fn wake(&self) {
        self.wake_fan_out();
        self.scheduler.notify();
    }

    /// Tells the fan-out that the backlog has new events.
    pub(crate) fn wake_fan_out(&self) {
        self.fan_out.notify_one();
    }

    /// The database.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Where job `job_id` stands: queued, dead, or (neither) delivered.
    fn state_of(&self, job_id: &str) -> Result<(JobState, Option<String>), StoreError> {
        if self.store.job(job_id)?.is_some() {
            return Ok((JobState::Pending, None));
        }
        Ok(match self.store.dead_letter(job_id)? {
            Some(dead) => (JobState::Dead, Some(dead.reason)),
            None => (JobState::Delivered, None),
        })
    }

    pub(super) fn deliveries(
        &self,
        subscription: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.store
            .jobs_of_subscription(subscription, limit)?
            .into_iter()
            .map(|job| {
                // The state before the attempts: a job's attempts are written before it is
                // settled, so a settled state is never shown with fewer attempts than it took.
                let (state, reason) = self.state_of(&job.id)?;
                let attempts = self.store.attempts(&job.id)?;
                Ok(Delivery {
                    job,
                    state,
                    reason,
                    attempts,
                })
            })
            .collect()
    }

    pub(super) fn job(
        &self,
        subscription: &str,
        job_id: &str,
    ) -> Result<Option<(JobSummary, JobState)>, StoreError> {
        let Some(summary) = self.store.job_summary(subscription, job_id)? else {
            return Ok(None);
        };
        let (state, _) = self.state_of(job_id)?;
        Ok(Some((summary, state)))
    }

    pub(super) fn replay_dead_letter(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let job = self.store.replay(job_id, now_ms())?;
        if let Some(job) = &job {
            self.scheduler.schedule(job, now_ms());
        }
        Ok(job)
    }

    pub(super) async fn requeue(&self, jobs: &[Job]) -> Result<(), StoreError> {
        self.store.enqueue(jobs, &[], &[])?;
        self.store.durable().await?;
        let now = now_ms();
        for job in jobs {
            self.scheduler.schedule(job, now);
        }
        Ok(())
    }

    pub(super) fn depth(&self) -> super::Depth {
        let d = self.scheduler.depth();
        super::Depth {
            due: d.due,
            later: d.later,
            parked: d.parked,
            known: d.known,
        }
    }

    pub(super) fn destination_depths(&self) -> Vec<DestinationDepth> {
        self.scheduler
            .lane_depths()
            .into_iter()
            .filter_map(|lane| match lane.lane {
                Lane::Deliver(name) => Some(DestinationDepth {
                    destination: name.to_string(),
                    jobs: lane.due + lane.waiting,
                    head_due_since_ms: lane.head_due_since_ms,
                }),
                Lane::Transform(_) => None,
            })
            .collect()
    }

    pub(super) fn queued_by_subscription(&self) -> HashMap<String, usize> {
        self.scheduler
            .depth_by_subscription()
            .into_iter()
            .map(|(sub, n)| (sub.to_string(), n))
            .collect()
    }
}
