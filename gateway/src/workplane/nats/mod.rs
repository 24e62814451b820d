//! The work plane on NATS JetStream (`[storage] engine = "nats"`): accepted events, the
//! fan-out, the delivery queue, the delivery log and the dead letters, shared by every
//! instance with the same servers and `bucket_prefix`.
//!
//! | where | subject or key | what | kept |
//! |---|---|---|---|
//! | stream `<prefix>_events` | `<prefix>.events.<event id>` | each accepted event, `Nats-Msg-Id` its dedup key | `[storage] retention` |
//! | stream `<prefix>_work` (work queue) | `<prefix>.work.d.<receiver host>` | the operator's delivery jobs, by receiver host (scheme, host, port) | until acknowledged |
//! | | `<prefix>.work.a.<app>` | an app's delivery jobs | until acknowledged |
//! | | `<prefix>.work.c.<subscription>` | plugin calls (and enrichment) | until acknowledged |
//! | | `<prefix>.work.r.<destination>` | jobs waiting out their backoff | until due, then back on their lane |
//! | | `<prefix>.work.p.<subscription>` | jobs of a paused subscription | until it runs again |
//! | | `<prefix>.work.q.<subscription and partition>` | an ordered subscription's jobs, 32 lanes by key (`o` before held keys: moved to `q`) | until acknowledged |
//! | | `<prefix>.work.h.<lane>_<key>` | the jobs of an ordered key held by a failing one (no consumer) | until their turn |
//! | bucket `<prefix>_deliveries` | `<subscription>.<event id>.<n \| transform>` | the delivery log: one revision per attempt, 16 kept | `[storage] retention` |
//! | bucket `<prefix>_dead_letters` | the same key | dead letters, with their event | `dead_letter_retention` |
//!
//! (`<receiver host>`, `<app>`, `<destination>` and `<subscription>` in subjects are 24 hex
//! digits of the SHA-256 of the name, so that any name makes a valid subject token.)
//!
//! The limits hold for the whole cluster because they are consumers' `max_ack_pending`: a
//! receiver host's lane takes `per_destination_concurrency` (every destination on that host
//! shares it, as on sled), an app's lane `per_app_concurrency` (whatever its subscriptions'
//! receivers do, an app holds no more of the cluster's deliveries), a plugin subscription's
//! lane its plugin slots. An app's deliveries also take a slot of their receiver host on the
//! instance that runs them.
//!
//! The flow, and who is where if an instance dies:
//! - **Ingest** publishes the event and answers `202` once JetStream acknowledged it (its
//!   replicas hold it). A repeat within the dedup window is recognised by JetStream
//!   (`Nats-Msg-Id`) and answered with the first event's id.
//! - **Fan-out**: every instance pulls from one durable consumer on the events stream. It
//!   waits until its snapshot holds every control-plane change made before the event reached
//!   it (read-your-writes, `control/nats/fresh.rs`), plans the event (pure matching,
//!   [`crate::fanout::plan`]), publishes its jobs with the job id as `Nats-Msg-Id`, and
//!   acknowledges the event only after JetStream acknowledged every job. An instance that
//!   dies in between leaves the event unacknowledged: it is handed to another after the lease
//!   (`[storage.nats] lease`), and the jobs already published are recognised as duplicates.
//! - **Delivery**: one durable consumer per receiver host and per app, pulled by every
//!   instance (see the limits above). A pulled job holds its lease and renews it
//!   (`in-progress`) while it waits for a slot and while its attempt runs. A delivered job is
//!   acknowledged. A failed one moves to its destination's retry subject with its attempts and
//!   due time, so that it holds no slot of its lane while it waits; that destination's retry
//!   consumer (`max_ack_pending` 100,000, pulled by every instance) `nak`s it with what remains
//!   of the backoff, so JetStream hands it out again when it is due, and then puts it back on
//!   its lane. Every move carries a `Nats-Msg-Id` naming the message it moves, so a move made
//!   again after a crash queues nothing twice. After the retries a job is written to the dead
//!   letters and terminated. A job whose instance died comes back after the lease: the one
//!   attempt it was making may have reached the receiver, so that delivery may be repeated
//!   (receivers deduplicate on `webhook-id`), and it counts as an attempt.
//! - **Plugin calls**: one durable consumer per subscription with a plugin (or enrichment),
//!   `max_ack_pending` the plugin slots per subscription; the deliveries a call makes are
//!   published like the fan-out's before the call is acknowledged.
//! - **Paused subscriptions**: their jobs are moved to the parked subject, with the attempts
//!   made so far, and moved back once the subscription runs again.
//!
//! Attempts are counted from JetStream's delivery count: a message carries the attempts made
//! before it was published, and each delivery of it after the first was an attempt (or one
//! cut short). A job of a subscription this instance does not know yet, and younger than the
//! orphan grace (another instance made it under a newer configuration), waits a second on the
//! retry subject instead of being dead-lettered; an app is taken as deleted only when the
//! apps bucket says so. A message no instance can read is handed out again every minute (a
//! newer version may read it), never dropped.

mod lanes;
pub mod log;
pub(crate) mod ordered;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::config::nats::NatsConfig;
use crate::event::Event;
use crate::store::{Accepted, DedupKey, Job, JobKind, StoreError};

pub use lanes::run;

/// Revisions of each delivery-log record kept: the attempt history of one job.
const LOG_HISTORY: i64 = 16;

/// Room left in a message for what a job adds to its event (the job, its own body).
const JOB_HEADROOM: usize = 64 * 1024;

/// Room left in a message for its headers.
const HEADER_ROOM: usize = 1024;

/// How long a request to JetStream may take before the caller is told it is unavailable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One queued unit of work as published: the job (with the attempts made before this message)
/// and the event it needs, so any instance can run it without another read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    /// The job.
    pub job: Job,
    /// Its event.
    pub event: Event,
}

/// A dead letter as stored: the letter and the event a replay needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredDeadLetter {
    /// The letter.
    pub letter: crate::store::DeadLetter,
    /// The event.
    pub event: Event,
}

/// What the work stream holds, by lane, as of the last look (every second, by the sweep):
/// the queue depths `/metrics`, `/admin/status` and `/admin/subscriptions` show.
#[derive(Debug, Clone, Default)]
pub struct Depths {
    /// Jobs per subject kind (`d`, `c`, `r`, `p`) and name token.
    by_lane: std::collections::HashMap<(char, String), usize>,
    /// Since when the oldest job of a delivery lane (`d`, `a`) has been due, ms since the epoch.
    since: std::collections::HashMap<(char, String), u64>,
}

impl Depths {
    /// Counts `count` messages on work-stream `subject`.
    pub(crate) fn add(&mut self, subject: &str, count: usize) {
        let mut tokens = subject.rsplit('.');
        if let (Some(t), Some(kind)) = (tokens.next(), tokens.next())
            && let Some(kind) = kind.chars().next()
        {
            *self.by_lane.entry((kind, t.to_owned())).or_default() += count;
        }
    }

    /// Takes `n` jobs of work-stream `subject` as running (handed out, not acknowledged yet):
    /// they are not queued.
    pub(crate) fn running(&mut self, subject: &str, n: usize) {
        let mut tokens = subject.rsplit('.');
        if let (Some(t), Some(kind)) = (tokens.next(), tokens.next())
            && let Some(kind) = kind.chars().next()
            && let Some(count) = self.by_lane.get_mut(&(kind, t.to_owned()))
        {
            *count = count.saturating_sub(n);
        }
    }

    /// Notes that the oldest job on work-stream `subject` has been due since `ms`.
    pub(crate) fn due_since(&mut self, subject: &str, ms: u64) {
        let mut tokens = subject.rsplit('.');
        if let (Some(t), Some(kind)) = (tokens.next(), tokens.next())
            && let Some(kind) = kind.chars().next()
        {
            self.since.insert((kind, t.to_owned()), ms);
        }
    }

    /// Since when the oldest job on the lane of `kind` for `name` has been due.
    pub fn since(&self, kind: char, name: &str) -> Option<u64> {
        self.since.get(&(kind, token(name))).copied()
    }

    /// Jobs on lanes of `kind` for `name` (a destination for `d` and `r`, a subscription for
    /// `c` and `p`).
    pub fn of(&self, kind: char, name: &str) -> usize {
        self.by_lane.get(&(kind, token(name))).copied().unwrap_or(0)
    }

    /// Jobs on every lane of `kind`.
    pub fn total(&self, kind: char) -> usize {
        self.by_lane
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The work plane's handle on JetStream. Cheap to share.
pub struct NatsWork {
    js: jetstream::Context,
    prefix: String,
    events: stream::Stream,
    work: stream::Stream,
    deliveries: kv::Store,
    dead: kv::Store,
    replicas: usize,
    /// How long a pulled message is this instance's without word from it.
    pub(crate) lease: Duration,
    /// The queue depths as of the last look.
    depths: std::sync::Mutex<Depths>,
    /// Each destination's receiver host (scheme, host, port), from the snapshot in force.
    hosts: std::sync::RwLock<std::collections::HashMap<String, String>>,
    /// Plugin calls of one subscription at once, in the whole cluster.
    plugin_slots_per_subscription: usize,
    /// The fan-out's progress, for ordered subscriptions' jobs.
    floor: ordered::Floor,
    /// The leases of the messages whose jobs wait or run here.
    leases: lanes::Leases,
}

impl std::fmt::Debug for NatsWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsWork")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// 24 hex digits naming `name` in a subject or key.
pub(crate) fn token(name: &str) -> String {
    hex::encode(&sha2::Sha256::digest(name.as_bytes())[..12])
}

fn shared(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Shared(format!("{what}: {e}"))
}

impl NatsWork {
    /// Creates (or reuses) the streams and buckets on `js`.
    pub async fn open(
        js: jetstream::Context,
        config: &NatsConfig,
        storage: &crate::config::StorageConfig,
        plugin_slots_per_subscription: usize,
    ) -> Result<Self, StoreError> {
        let prefix = config.bucket_prefix.clone();
        let replicas = config.replicas;
        let retention = storage.retention;
        let events = crate::control::nats::retry_starting(|| {
            crate::control::nats::reconcile_stream(
                &js,
                stream::Config {
                    name: format!("{prefix}_events"),
                    subjects: vec![format!("{prefix}.events.*")],
                    max_age: retention,
                    // A repeat within the dedup window is recognised by JetStream itself.
                    duplicate_window: storage.dedup_window.min(retention),
                    num_replicas: replicas,
                    storage: stream::StorageType::File,
                    allow_direct: false,
                    ..Default::default()
                },
            )
        })
        .await
        .map_err(|e| shared(&format!("stream {prefix}_events"), e))?;
        let work = crate::control::nats::retry_starting(|| {
            crate::control::nats::reconcile_stream(
                &js,
                stream::Config {
                    name: format!("{prefix}_work"),
                    subjects: vec![format!("{prefix}.work.>")],
                    retention: stream::RetentionPolicy::WorkQueue,
                    // A fan-out or plugin call run again after its instance died within this
                    // window publishes nothing twice.
                    duplicate_window: Duration::from_secs(600),
                    num_replicas: replicas,
                    storage: stream::StorageType::File,
                    allow_direct: false,
                    ..Default::default()
                },
            )
        })
        .await
        .map_err(|e| shared(&format!("stream {prefix}_work"), e))?;
        let deliveries = crate::control::nats::open_bucket_with(
            &js,
            format!("{prefix}_deliveries"),
            retention,
            replicas,
            LOG_HISTORY,
        )
        .await?;
        let dead = crate::control::nats::open_bucket_with(
            &js,
            format!("{prefix}_dead_letters"),
            storage.dead_letter_retention,
            replicas,
            1,
        )
        .await?;
        tracing::info!(prefix = %prefix, replicas, "work plane on NATS JetStream");
        Ok(Self {
            js,
            prefix,
            events,
            work,
            deliveries,
            dead,
            replicas,
            lease: config.lease,
            depths: Default::default(),
            hosts: Default::default(),
            plugin_slots_per_subscription: plugin_slots_per_subscription.max(1),
            floor: Default::default(),
            leases: Default::default(),
        })
    }

    fn event_subject(&self, id: &str) -> String {
        format!("{}.events.{id}", self.prefix)
    }

    /// The subject a job is queued on: its app's lane, its receiver host's, or its plugin
    /// subscription's.
    pub fn job_subject(&self, job: &Job) -> String {
        if let Some(order) = &job.order {
            let p = ordered::partition(&order.key);
            return format!(
                "{}.work.q.{}",
                self.prefix,
                ordered::lane_token(&job.subscription_id, p)
            );
        }
        match job.kind {
            JobKind::Deliver => format!(
                "{}.work.{}",
                self.prefix,
                self.lane_of(&job.subscription_id, &job.destination)
            ),
            JobKind::Transform => {
                format!("{}.work.c.{}", self.prefix, token(&job.subscription_id))
            }
        }
    }

    /// The lane (`a.<app>` or `d.<receiver host>`) of a delivery of `subscription` to
    /// `destination`. A destination this instance does not know (yet) is given a lane of its
    /// own name, which no instance runs: the sweep settles its jobs after the orphan grace
    /// (delivered, if the destination exists by then).
    pub(crate) fn lane_of(&self, subscription: &str, destination: &str) -> String {
        if let Some(app) = crate::subscriptions::owner_app(subscription) {
            return format!("a.{}", token(app));
        }
        let hosts = self.hosts.read().unwrap_or_else(|p| p.into_inner());
        match hosts.get(destination) {
            Some(host) => format!("d.{}", token(host)),
            None => format!("d.{}", token(destination)),
        }
    }

    /// The delivery policies' state, shared with the other instances.
    pub(crate) async fn policies(
        &self,
    ) -> Result<std::sync::Arc<crate::workplane::policy::Policies>, StoreError> {
        crate::workplane::policy::Policies::shared(&self.js, &self.prefix, self.replicas).await
    }

    /// Takes the receiver host of every destination of `snapshot`, for [`Self::lane_of`].
    pub(crate) fn configured(&self, snapshot: &crate::config::Snapshot) {
        let hosts = snapshot
            .destinations
            .iter()
            .map(|(name, dest)| (name.clone(), dest.authority()))
            .collect();
        *self.hosts.write().unwrap_or_else(|p| p.into_inner()) = hosts;
    }

    /// Where a job waits out its backoff, off its lane, so that it holds none of its lane's
    /// slots meanwhile.
    pub(crate) fn retry_subject(&self, job: &Job) -> String {
        format!("{}.work.r.{}", self.prefix, token(&job.destination))
    }

    /// Removes the single retry consumer of earlier versions, if there is one.
    pub(crate) async fn remove_legacy_retry_consumer(&self) {
        if self.work.delete_consumer("retry").await.is_ok() {
            tracing::info!(
                "the single retry consumer of an earlier version was replaced by one per destination"
            );
        }
    }

    pub(crate) fn parked_subject(&self, subscription: &str) -> String {
        format!("{}.work.p.{}", self.prefix, token(subscription))
    }

    /// The queue depths as of the last look.
    pub fn depths(&self) -> Depths {
        self.depths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_depths(&self, depths: Depths) {
        *self.depths.lock().unwrap_or_else(|p| p.into_inner()) = depths;
    }

    /// Why events cannot be taken now, if they cannot: the connection to NATS is down.
    pub fn unavailable(&self) -> Option<String> {
        let state = self.js.client().connection_state();
        (state != async_nats::connection::State::Connected)
            .then(|| format!("not connected to NATS ({state})"))
    }

    /// Accepts `event`: answered once JetStream holds it. A repeat of `dedup` within the
    /// window answers the first event's id.
    pub async fn accept(&self, event: &Event, dedup: &DedupKey) -> Result<Accepted, StoreError> {
        // Refused at once while disconnected: a publish the client buffered would reach
        // JetStream after the caller was told it failed.
        if let Some(why) = self.unavailable() {
            return Err(shared("cannot queue an event", why));
        }
        let payload = Bytes::from(serde_json::to_vec(event).unwrap_or_default());
        // Each of its jobs carries the event: refused now rather than stuck at fan-out.
        let limit = (self.js.client().server_info().max_payload).saturating_sub(JOB_HEADROOM);
        if payload.len() > limit {
            return Err(StoreError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        let message = jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(hex::encode(sha2::Sha256::digest(dedup.bytes())));
        let ack = self
            .js
            .send_publish(self.event_subject(&event.id), message)
            .await
            .map_err(|e| shared("cannot queue an event", e))?;
        let ack = tokio::time::timeout(REQUEST_TIMEOUT, ack)
            .await
            .map_err(|_| shared("cannot queue an event", "JetStream did not answer"))?
            .map_err(|e| shared("cannot queue an event", e))?;
        if !ack.duplicate {
            return Ok(Accepted {
                id: event.id.clone(),
                duplicate: false,
            });
        }
        // The first submission's id is the last token of its subject.
        let first = self
            .events
            .get_raw_message(ack.sequence)
            .await
            .map_err(|e| shared("cannot read the first submission", e))?;
        let id = first
            .subject
            .rsplit('.')
            .next()
            .unwrap_or(&event.id)
            .to_owned();
        Ok(Accepted {
            id,
            duplicate: true,
        })
    }

    /// The stored event `id`, while the events stream keeps it.
    pub async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        match self
            .events
            .get_last_raw_message_by_subject(&self.event_subject(id))
            .await
        {
            Ok(message) => Ok(serde_json::from_slice(&message.payload).ok()),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(shared("cannot read an event", e)),
        }
    }

    /// The largest message the work stream takes: NATS `max_payload`, less room for the
    /// headers (`Nats-Msg-Id`, the client's own).
    pub(crate) fn message_limit(&self) -> usize {
        self.js
            .client()
            .server_info()
            .max_payload
            .saturating_sub(HEADER_ROOM)
    }

    /// The size of `item` as a message, when that is over [`Self::message_limit`].
    pub(crate) fn too_large(&self, item: &Item) -> Option<usize> {
        let size = serde_json::to_vec(item).map_or(usize::MAX, |b| b.len());
        (size > self.message_limit()).then_some(size)
    }

    /// Publishes `items` on their subjects (the job id as `Nats-Msg-Id`) and waits until
    /// JetStream acknowledged them all.
    ///
    /// A job too large for one message (NATS `max_payload`) is refused with
    /// [`StoreError::TooLarge`] before anything is published: it would never be accepted.
    pub(crate) async fn publish(&self, items: Vec<(String, Item)>) -> Result<(), StoreError> {
        let limit = self.message_limit();
        let encoded: Vec<(String, Bytes, Item)> = items
            .into_iter()
            .map(|(subject, item)| {
                let payload = Bytes::from(serde_json::to_vec(&item).unwrap_or_default());
                (subject, payload, item)
            })
            .collect();
        if let Some(size) = encoded
            .iter()
            .map(|(_, p, _)| p.len())
            .find(|size| *size > limit)
        {
            return Err(StoreError::TooLarge { size, limit });
        }
        let mut acks = Vec::with_capacity(encoded.len());
        for (subject, payload, item) in encoded {
            let message = jetstream::message::PublishMessage::build()
                .payload(payload)
                .message_id(&item.job.id);
            acks.push(
                self.js
                    .send_publish(subject, message)
                    .await
                    .map_err(|e| shared("cannot queue a job", e))?,
            );
        }
        for ack in acks {
            tokio::time::timeout(REQUEST_TIMEOUT, ack)
                .await
                .map_err(|_| shared("cannot queue a job", "JetStream did not answer"))?
                .map_err(|e| shared("cannot queue a job", e))?;
        }
        Ok(())
    }

    /// Publishes `item` moved from the work-stream message `from` (to its retry, parked or
    /// lane subject) and waits for JetStream. The move's `Nats-Msg-Id` names the message it
    /// moves, so that a move made again (its acknowledgement lost, its instance dead before
    /// it) within the dedup window is recognised and queues nothing twice.
    pub(crate) async fn publish_moved(
        &self,
        subject: String,
        item: &Item,
        from: &jetstream::Message,
    ) -> Result<(), StoreError> {
        let id = match from.info() {
            Ok(info) => format!("mv.{}", info.stream_sequence),
            // Not from a pull (cannot happen for a pulled message): a move of its own.
            Err(_) => format!(
                "mv.{}.{}",
                item.job.id,
                hex::encode(rand::random::<[u8; 8]>())
            ),
        };
        self.publish_as(subject, item, id).await
    }

    /// Publishes `item` with `Nats-Msg-Id` `id` and waits for JetStream.
    pub async fn publish_as(
        &self,
        subject: String,
        item: &Item,
        id: String,
    ) -> Result<(), StoreError> {
        self.publish_for_sequence(subject, item, id)
            .await
            .map(|_| ())
    }

    /// Publishes `item` with `Nats-Msg-Id` `id`, waits for JetStream and returns the message's
    /// sequence in the work stream (the first one's, for a repeat within the dedup window).
    pub(crate) async fn publish_for_sequence(
        &self,
        subject: String,
        item: &Item,
        id: String,
    ) -> Result<u64, StoreError> {
        let payload = Bytes::from(serde_json::to_vec(item).unwrap_or_default());
        let message = jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(id);
        let ack = self
            .js
            .send_publish(subject, message)
            .await
            .map_err(|e| shared("cannot queue a job", e))?;
        let ack = tokio::time::timeout(REQUEST_TIMEOUT, ack)
            .await
            .map_err(|_| shared("cannot queue a job", "JetStream did not answer"))?
            .map_err(|e| shared("cannot queue a job", e))?;
        Ok(ack.sequence)
    }

    /// Queues `jobs` of `event` once more (a delivered job made again): new messages, never
    /// taken for the jobs' first ones.
    pub(crate) async fn requeue(&self, jobs: Vec<Job>, event: &Event) -> Result<(), StoreError> {
        let now = crate::time::now_ms();
        for job in jobs {
            let id = format!("again.{}.{now}", job.id);
            let item = Item {
                job,
                event: event.clone(),
            };
            self.publish_as(self.job_subject(&item.job), &item, id)
                .await?;
        }
        Ok(())
    }

    /// Queues `jobs` of `event` (replays and plugin outputs).
    pub(crate) async fn enqueue(&self, jobs: Vec<Job>, event: &Event) -> Result<(), StoreError> {
        let items = jobs
            .into_iter()
            .map(|job| {
                (
                    self.job_subject(&job),
                    Item {
                        job,
                        event: event.clone(),
                    },
                )
            })
            .collect();
        self.publish(items).await
    }

    /// A durable pull consumer on the work stream (created on first use, by any instance).
    pub(crate) async fn consumer(
        &self,
        name: &str,
        subject: String,
        max_ack_pending: usize,
    ) -> Result<consumer::PullConsumer, StoreError> {
        let config = consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subject: subject,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.lease,
            max_deliver: -1,
            max_ack_pending: max_ack_pending as i64,
            num_replicas: self.replicas,
            ..Default::default()
        };
        let created = self.work.get_or_create_consumer(name, config.clone()).await;
        match created {
            Ok(consumer) => {
                // A limit, the lease or the replicas changed since the consumer was made:
                // update it.
                let info = consumer.cached_info();
                if info.config.max_ack_pending != config.max_ack_pending
                    || info.config.ack_wait != config.ack_wait
                    || info.config.num_replicas != config.num_replicas
                {
                    return self
                        .work
                        .create_consumer(config)
                        .await
                        .map_err(|e| shared(&format!("consumer {name}"), e));
                }
                Ok(consumer)
            }
            Err(e) => Err(shared(&format!("consumer {name}"), e)),
        }
    }

    /// The consumer every instance fans events out from.
    pub(crate) async fn fanout_consumer(&self) -> Result<consumer::PullConsumer, StoreError> {
        let name = "fanout";
        let config = consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.lease,
            max_deliver: -1,
            max_ack_pending: 8192,
            num_replicas: self.replicas,
            ..Default::default()
        };
        let consumer = self
            .events
            .get_or_create_consumer(name, config.clone())
            .await
            .map_err(|e| shared("consumer fanout", e))?;
        let info = consumer.cached_info();
        if info.config.ack_wait != config.ack_wait
            || info.config.num_replicas != config.num_replicas
        {
            // The lease or the replicas changed since it was made: update it.
            return self
                .events
                .create_consumer(config)
                .await
                .map_err(|e| shared("consumer fanout", e));
        }
        Ok(consumer)
    }
}
