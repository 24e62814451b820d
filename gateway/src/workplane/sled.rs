//! The sled engine of the work plane: the queue in the instance's own database
//! ([`crate::store`]) and the in-memory schedule of what runs next ([`crate::scheduler`]),
//! kept in step: whatever this engine queues is scheduled at once.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Delivery, DestinationDepth, JobState};
use crate::scheduler::{Lane, Scheduler};
use crate::state::now_ms;
use crate::store::{Job, JobSummary, Store, StoreError};

/// The sled engine's handle: the database and the schedule. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SledWork {
    store: Store,
    scheduler: Arc<Scheduler>,
    fan_out: Arc<tokio::sync::Notify>,
}

impl SledWork {
    /// The engine over `store`, scheduling into `scheduler`, waking the fan-out through
    /// `fan_out`.
    pub fn new(store: Store, scheduler: Arc<Scheduler>, fan_out: Arc<tokio::sync::Notify>) -> Self {
        Self {
            store,
            scheduler,
            fan_out,
        }
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
                let attempts = self.store.attempts(&job.id)?;
                let (state, reason) = self.state_of(&job.id)?;
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
