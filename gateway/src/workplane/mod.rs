//! The work plane behind one interface: accepted events, the queue of deliveries and plugin
//! calls, the delivery log, dead letters and their replay, one event's journey, an app's purge,
//! and the queue's depth. As [`crate::control::ControlPlane`] is for the control plane, every
//! engine choice is made here: callers (the app API, the admin API, the metrics, the stages'
//! wiring) never ask which engine runs.
//!
//! Two engines, chosen by `[storage] engine`:
//! - `sled` ([`SledWork`], over [`crate::store`]): the instance's own database, with an
//!   in-memory schedule and its fan-out and dispatch stages;
//! - `nats` ([`nats`]): JetStream streams and buckets shared by every instance, with its own
//!   pull loops.
//!
//! Both run a due job through the one [`runner`] (one delivery attempt, one plugin-call path,
//! one retry policy) and only write down its outcome their own way.
//!
//! What a caller sees is the same on both: a job is [`JobState::Pending`] (queued, or waiting
//! for a retry), [`JobState::Delivered`] or [`JobState::Dead`], with its attempts oldest first.

pub mod nats;
pub mod policy;
pub mod runner;
mod sled;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Snapshot;
use crate::event::Event;
use crate::store::{Attempt, DeadLetter, Job, JobSummary, Journey, Store, StoreError};

pub use nats::NatsWork;
pub use sled::SledWork;

/// Where a job stands, on either engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Queued: not attempted yet, running, or waiting for its next attempt.
    Pending,
    /// Delivered (a plugin call: its deliveries are queued).
    Delivered,
    /// Given up: in the dead letters.
    Dead,
}

impl JobState {
    /// The name the APIs show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

/// One job of the delivery log.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The job.
    pub job: JobSummary,
    /// Where it stands.
    pub state: JobState,
    /// Why it was given up, when it was.
    pub reason: Option<String>,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

/// How many jobs the queue holds, by what they wait for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Depth {
    /// Due now (waiting for a slot, or running).
    pub due: usize,
    /// Waiting for a later time (retries, backoff).
    pub later: usize,
    /// Set aside while their subscription is paused.
    pub parked: usize,
    /// Every queued job, those running included.
    pub known: usize,
}

/// One destination's queue, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationDepth {
    /// The destination.
    pub destination: String,
    /// Its jobs due or waiting for a retry.
    pub jobs: usize,
    /// Since when its next job has been due, where the engine knows it (ms since the epoch).
    pub head_due_since_ms: Option<u64>,
}

/// What the work plane's stages run with, handed to them when they start: the configuration
/// in force, the control plane, the delivery clients and slots, the plugins, subscription
/// health, the delivery policies, the metrics, and the tracker of deliveries in flight. Each is
/// shared with the rest of the gateway; the work plane names nothing above it.
#[derive(Debug)]
pub struct Handles {
    /// The configuration in force (replaced whole on reload).
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Apps, API subscriptions, plugins and health records.
    pub control: crate::control::ControlPlane,
    /// The delivery clients and slots.
    pub outbound: Arc<crate::delivery::Outbound>,
    /// The plugin host, slots and threads.
    pub plugins: Arc<runner::calls::Plugins>,
    /// Consecutive failures per subscription.
    pub health: Arc<crate::health::Health>,
    /// The delivery policies' state.
    pub policies: Arc<policy::Policies>,
    /// What the stages count.
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// Delivery tasks in flight, for graceful shutdown.
    pub in_flight: TaskTracker,
}

/// A stage the engine runs (fan-out, dispatch, or the shared pull loops), supervised by
/// [`crate::run`].
pub type Stage = Arc<dyn Fn(Arc<Handles>, CancellationToken) -> StageRun + Send + Sync>;

/// One run of a [`Stage`].
pub type StageRun = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why an event from ingest was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The store takes no new event now: live data at its budget, the disk short of room, or
    /// writes failing (it resumes by itself).
    #[error("{reason}: {0}", reason = .0.reason())]
    Refused(crate::store::Refusal),
    /// The event is larger than the shared queue takes, with room for its jobs.
    #[error(
        "the event is larger than the shared queue takes ({limit} bytes with room for its jobs)"
    )]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The shared queue cannot take it now.
    #[error("queue_unavailable: {0}")]
    QueueUnavailable(StoreError),
    /// The store failed to write it.
    #[error("cannot store the event: {0}")]
    Store(StoreError),
}

/// The work plane of one running gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub enum WorkPlane {
    /// In the instance's sled database.
    Sled(SledWork),
    /// In NATS JetStream, shared with the other instances.
    Nats(Arc<NatsWork>),
}

impl WorkPlane {
    /// Opens the engine `storage` names: the queue in `store` (its schedule rebuilt from the
    /// jobs on disk), or the streams and buckets on the NATS connection of `control`.
    pub async fn open(
        storage: &crate::config::StorageConfig,
        control: &crate::control::ControlPlane,
        store: &Store,
        plugin_slots_per_subscription: usize,
    ) -> Result<Self, StoreError> {
        match control.nats() {
            Some(plane) => Ok(Self::Nats(Arc::new(
                NatsWork::open(
                    plane.jetstream().clone(),
                    &storage.nats,
                    storage,
                    plugin_slots_per_subscription,
                )
                .await?,
            ))),
            None => Ok(Self::Sled(SledWork::open(store.clone())?)),
        }
    }

    /// The delivery policies' state: this instance's own on sled, shared through JetStream on
    /// NATS.
    pub async fn policies(&self) -> Result<Arc<policy::Policies>, StoreError> {
        match self {
            Self::Sled(_) => Ok(Arc::new(policy::Policies::local())),
            Self::Nats(w) => w.policies().await,
        }
    }

    /// The engine's stages, by name.
    pub fn stages(&self) -> Vec<(&'static str, Stage)> {
        match self {
            Self::Sled(w) => w.stages(),
            Self::Nats(w) => {
                let work = w.clone();
                vec![(
                    "shared-work",
                    Arc::new(move |state, stop| {
                        Box::pin(nats::run(state, work.clone(), stop)) as StageRun
                    }),
                )]
            }
        }
    }

    /// Accepts an event from ingest, durably (on NATS: acknowledged by JetStream), and hands
    /// it to the fan-out; the answer names the first submission's id for a repeat.
    pub async fn accept(
        &self,
        snapshot: &Snapshot,
        event: &Arc<Event>,
        dedup: &crate::store::DedupKey,
    ) -> Result<crate::store::Accepted, AcceptError> {
        match self {
            Self::Sled(w) => w.accept(snapshot, event, dedup).await,
            Self::Nats(w) => w.accept(event, dedup).await.map_err(|e| match e {
                StoreError::TooLarge { limit, .. } => AcceptError::TooLarge { limit },
                e => AcceptError::QueueUnavailable(e),
            }),
        }
    }

    /// Looks again at the jobs set aside for `subscriptions`, paused until now; how many are resumed (on NATS, where the sweep moves them
    /// back within a second, how many were set aside as of its last look).
    pub fn resume(&self, subscriptions: &[&str]) -> usize {
        match self {
            Self::Sled(w) => w.resume(|sub| subscriptions.contains(&sub)),
            Self::Nats(w) => {
                let depths = w.depths();
                subscriptions.iter().map(|sub| depths.of('p', sub)).sum()
            }
        }
    }

    /// Tells the stages that the configuration changed (they may have work under it).
    pub fn wake(&self) {
        if let Self::Sled(w) = self {
            w.wake();
        }
    }

    /// Takes the configuration `snapshot` now in force (on NATS: where each destination's
    /// deliveries queue).
    pub fn configured(&self, snapshot: &Snapshot) {
        if let Self::Nats(w) = self {
            w.configured(snapshot);
        }
    }

    /// Why events cannot be taken now, if they cannot (NATS unreachable; the sled store's own
    /// conditions are its own, see [`Store::unavailable`]).
    pub fn unavailable(&self) -> Option<String> {
        match self {
            Self::Sled(_) => None,
            Self::Nats(w) => w.unavailable(),
        }
    }

    /// Whether this instance is connected to the shared work plane (`None` on sled, where
    /// there is nothing to connect to).
    pub fn connected(&self) -> Option<bool> {
        match self {
            Self::Sled(_) => None,
            Self::Nats(w) => Some(w.unavailable().is_none()),
        }
    }

    /// Why new events are refused now, if they are: on sled writes failing, live data at its
    /// budget or the disk short of room (`<reason>: <why>`); NATS unreachable.
    pub fn refuses(&self) -> Option<String> {
        match self {
            Self::Sled(w) => w
                .store()
                .refusal()
                .map(|refusal| format!("{}: {refusal}", refusal.reason())),
            Self::Nats(w) => w
                .unavailable()
                .map(|why| format!("queue_unavailable: {why}")),
        }
    }

    /// Accepts an event made inside the gateway (a polled change, a test event): written,
    /// and on sled durable only with the next [`Self::flush_accepted`] (so that a page of
    /// changes is one flush); on NATS acknowledged by JetStream before this returns.
    pub async fn accept_unflushed(
        &self,
        event: &Event,
        dedup: &crate::store::DedupKey,
    ) -> Result<crate::store::Accepted, StoreError> {
        match self {
            Self::Sled(w) => w.store().accept(event, dedup),
            Self::Nats(w) => w.accept(event, dedup).await,
        }
    }

    /// Makes what [`Self::accept_unflushed`] wrote durable and hands it to the fan-out.
    pub async fn flush_accepted(&self) -> Result<(), StoreError> {
        match self {
            Self::Sled(w) => {
                w.store().durable().await?;
                w.wake_fan_out();
                Ok(())
            }
            Self::Nats(_) => Ok(()),
        }
    }

    /// The stored event `id`, while it is kept.
    pub async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        match self {
            Self::Sled(w) => w.store().event(id),
            Self::Nats(w) => w.event(id).await,
        }
    }

    /// Up to `limit` jobs of `subscription`, newest first, each with its attempts.
    pub async fn deliveries(
        &self,
        subscription: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        match self {
            Self::Sled(w) => w.deliveries(subscription, limit),
            Self::Nats(w) => Ok(w
                .deliveries(subscription, limit)
                .await?
                .into_iter()
                .map(|listed| Delivery {
                    state: listed.latest.status,
                    reason: listed.latest.reason,
                    job: listed.latest.job,
                    attempts: listed.attempts,
                })
                .collect()),
        }
    }

    /// Job `job_id` of `subscription` and where it stands, if it was ever queued.
    pub async fn job(
        &self,
        subscription: &str,
        job_id: &str,
    ) -> Result<Option<(JobSummary, JobState)>, StoreError> {
        match self {
            Self::Sled(w) => w.job(subscription, job_id),
            Self::Nats(w) => Ok(w
                .latest_record(job_id)
                .await?
                .filter(|r| r.subscription == subscription)
                .map(|r| (r.job, r.status))),
        }
    }

    /// The attempts of `job_id`, oldest first.
    pub async fn attempts(&self, job_id: &str) -> Result<Vec<Attempt>, StoreError> {
        match self {
            Self::Sled(w) => w.store().attempts(job_id),
            Self::Nats(w) => w.attempts(job_id).await,
        }
    }

    /// Up to `limit` dead letters of the subscriptions whose id starts with `prefix` (all
    /// of them for `""`).
    pub async fn dead_letters(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        match self {
            Self::Sled(w) if prefix.is_empty() => w.store().dead_letters(limit),
            Self::Sled(w) => w.store().dead_letters_of(prefix, limit),
            Self::Nats(w) => w.dead_letters(prefix, limit).await,
        }
    }

    /// The dead letter of `job_id`.
    pub async fn dead_letter(&self, job_id: &str) -> Result<Option<DeadLetter>, StoreError> {
        match self {
            Self::Sled(w) => w.store().dead_letter(job_id),
            Self::Nats(w) => Ok(w.dead_letter(job_id).await?.map(|d| d.letter)),
        }
    }

    /// Puts dead letter `job_id` back in the queue with its attempts reset; the job, or
    /// `None` when there is no such letter.
    pub async fn replay_dead_letter(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        match self {
            Self::Sled(w) => w.replay_dead_letter(job_id),
            Self::Nats(w) => w.replay(job_id).await,
        }
    }

    /// Queues `jobs` of `event` again (a delivered job made once more), durably.
    pub async fn requeue(&self, jobs: Vec<Job>, event: &Event) -> Result<(), StoreError> {
        match self {
            Self::Sled(w) => w.requeue(&jobs).await,
            Self::Nats(w) => w.requeue(jobs, event).await,
        }
    }

    /// One event's jobs: queued, dead, delivered, and every attempt.
    pub async fn journey(&self, event_id: &str) -> Result<Journey, StoreError> {
        match self {
            Self::Sled(w) => w.store().journey(event_id),
            Self::Nats(w) => w.journey(event_id).await,
        }
    }

    /// Removes everything kept for the subscriptions whose id starts with `prefix` (an app's):
    /// queued jobs, the delivery log, dead letters. How many records went.
    pub async fn purge(&self, prefix: &str) -> Result<usize, StoreError> {
        match self {
            Self::Sled(w) => {
                let store = w.store().clone();
                let prefix = prefix.to_owned();
                tokio::task::spawn_blocking(move || store.purge_subscriptions(&prefix))
                    .await
                    .map_err(|e| StoreError::Shared(format!("purging panicked: {e}")))?
            }
            Self::Nats(w) => w.purge_subscriptions(prefix).await,
        }
    }

    /// Jobs queued now: due, waiting for a retry, or paused.
    pub fn queued(&self) -> u64 {
        let depth = self.depth();
        (depth.due + depth.later + depth.parked) as u64
    }

    /// How many jobs the queue holds (on NATS, the cluster's, as of the last look).
    pub fn depth(&self) -> Depth {
        match self {
            Self::Sled(w) => w.depth(),
            Self::Nats(w) => {
                let d = w.depths();
                let (due, later, parked) = (
                    d.total('d') + d.total('a') + d.total('c') + d.total('o') + d.total('q'),
                    d.total('r') + d.total('h'),
                    d.total('p'),
                );
                Depth {
                    due,
                    later,
                    parked,
                    known: due + later + parked,
                }
            }
        }
    }

    /// The queue of every destination with jobs.
    pub fn destination_depths(&self, snapshot: &Snapshot) -> Vec<DestinationDepth> {
        match self {
            Self::Sled(w) => w.destination_depths(),
            Self::Nats(w) => {
                // A lane is a receiver host's or an app's, not one destination's: its jobs
                // are counted once, under the first of its destinations by name.
                let d = w.depths();
                let mut counted = std::collections::HashSet::new();
                let mut names: Vec<&String> = snapshot.destinations.keys().collect();
                names.sort();
                names
                    .into_iter()
                    .map(|name| {
                        let lane = match crate::subscriptions::owner_app(name) {
                            Some(app) => ('a', app.to_owned()),
                            None => ('d', snapshot.destinations[name].authority()),
                        };
                        let first = counted.insert(lane.clone());
                        let shared = if first { d.of(lane.0, &lane.1) } else { 0 };
                        DestinationDepth {
                            destination: name.clone(),
                            jobs: shared + d.of('r', name),
                            head_due_since_ms: first.then(|| d.since(lane.0, &lane.1)).flatten(),
                        }
                    })
                    .filter(|q| q.jobs > 0)
                    .collect()
            }
        }
    }

    /// Queued jobs (due, waiting or parked) per subscription. On NATS a lane's jobs (a
    /// receiver host's, an app's, a destination's retries) count for a subscription when it is
    /// the only one delivering there: the stream counts jobs by lane, not by subscription.
    pub fn queued_by_subscription(&self, snapshot: &Snapshot) -> HashMap<String, usize> {
        match self {
            Self::Sled(w) => w.queued_by_subscription(),
            Self::Nats(w) => {
                let d = w.depths();
                let lanes_of = |sub: &crate::config::Subscription| {
                    let mut lanes = Vec::new();
                    for dest in &sub.destinations {
                        lanes.push(('r', dest.clone()));
                        lanes.push(match crate::subscriptions::owner_app(&sub.id) {
                            Some(app) => ('a', app.to_owned()),
                            None => match snapshot.destinations.get(dest) {
                                Some(d) => ('d', d.authority()),
                                None => continue,
                            },
                        });
                    }
                    lanes.sort();
                    lanes.dedup();
                    lanes
                };
                let mut users: HashMap<(char, String), usize> = HashMap::new();
                for sub in &snapshot.subscriptions {
                    for lane in lanes_of(sub) {
                        *users.entry(lane).or_default() += 1;
                    }
                }
                let mut counts = HashMap::new();
                for sub in &snapshot.subscriptions {
                    let mut n = d.of('c', &sub.id) + d.of('p', &sub.id);
                    if sub.ordering.is_some() {
                        n += (0..nats::ordered::PARTITIONS)
                            .map(|p| d.of('o', &format!("{}#{p}", sub.id)))
                            .sum::<usize>();
                    }
                    for lane in lanes_of(sub) {
                        if users.get(&lane) == Some(&1) {
                            n += d.of(lane.0, &lane.1);
                        }
                    }
                    if n > 0 {
                        counts.insert(sub.id.clone(), n);
                    }
                }
                counts
            }
        }
    }
}
