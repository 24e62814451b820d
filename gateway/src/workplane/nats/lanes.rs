//! This instance's share of the shared work: it fans events out, and runs the delivery and
//! plugin-call lanes of the configuration in force, each lane a durable consumer that every
//! instance pulls from.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::log::Status;
use super::ordered::Turn;
use super::{Item, NatsWork, token};
use crate::config::{Snapshot, Subscription};
use crate::event::Event;
use crate::store::{Attempt, CallFailure, DeadReason, Job, JobKind};
use crate::subscriptions::owner_app;
use crate::time::now_ms;
use crate::workplane::Handles;
use crate::workplane::policy::Admission;
use crate::workplane::runner::{self, Gate, Settle};

/// Longest wait for a policy (a rate limit, an open circuit) a pulled delivery waits out where
/// it is; a longer one moves it to its retry subject.
const HOLD_IN_PLACE: Duration = Duration::from_secs(2);

/// How long one pull request waits for messages.
const PULL_WAIT: Duration = Duration::from_secs(1);
/// Most messages one pull asks for.
const PULL_BATCH: usize = 256;
/// How often the lanes are compared with the configuration, and parked jobs looked at.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// How long a job waits after JetStream could not take its outcome.
const TRY_AGAIN: Duration = Duration::from_secs(1);
/// Pause after a pull that failed without bringing anything.
const ERROR_PAUSE: Duration = Duration::from_millis(200);
/// How long an unreadable message waits before it is handed out again (to an instance that
/// may read it: a newer version during a rolling upgrade).
const UNREADABLE_PAUSE: Duration = Duration::from_secs(60);

/// One lane: a durable consumer on the work stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lane {
    /// The consumer's name.
    consumer: String,
    /// Its filter subject.
    subject: String,
    /// Its jobs in flight in the whole cluster (`max_ack_pending`), and on this instance.
    limit: usize,
    /// What its messages are.
    kind: LaneKind,
}

/// What a lane's messages are, and so which loop pulls them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaneKind {
    /// Jobs to run (deliveries, plugin calls).
    Work,
    /// One destination's jobs waiting out their backoff: each destination has its own, so
    /// that the retries of one receiver (a `Retry-After` of an hour, thousands of jobs) never
    /// hold back another's.
    Retry,
}

/// The lanes `snapshot` needs: one per destination, one per subscription that calls a plugin
/// or reads from Odoo.
fn lanes(work: &NatsWork, snapshot: &Snapshot) -> HashMap<String, Lane> {
    let mut lanes = HashMap::new();
    // A lane of `kind` for `token`: its consumer `<kind>_<token>` filters `work.<kind>.<token>`.
    let mut add = |kind: &str, t: &str, limit: usize, lane_kind: LaneKind| {
        let lane = Lane {
            consumer: format!("{kind}_{t}"),
            subject: format!("{}.work.{kind}.{t}", work.prefix),
            limit,
            kind: lane_kind,
        };
        lanes.insert(lane.consumer.clone(), lane);
    };
    let per_destination = snapshot.delivery.per_destination_concurrency.max(1);
    let per_app = snapshot.delivery.per_app_concurrency.max(1);
    for (name, dest) in &snapshot.destinations {
        // An app's deliveries share its lane; the operator's share their receiver host's.
        match owner_app(name) {
            Some(app) => add("a", &token(app), per_app, LaneKind::Work),
            None => add(
                "d",
                &token(&dest.authority()),
                per_destination,
                LaneKind::Work,
            ),
        }
        add("r", &token(name), RETRY_PENDING, LaneKind::Retry);
    }
    // An app's deliveries are queued on its lane by the subscription's owner (see
    // `NatsWork::job_subject`), whatever its destinations are called: a subscription of the
    // configuration file named `app.<name>.…` with a plain destination has its app's lane too.
    for sub in &snapshot.subscriptions {
        if let Some(app) = owner_app(&sub.id) {
            add("a", &token(app), per_app, LaneKind::Work);
        }
    }
    let source_enrich = snapshot
        .sources
        .values()
        .any(|s| s.odoo.as_ref().is_some_and(|o| !o.enrich.is_empty()));
    for sub in &snapshot.subscriptions {
        if sub.ordering.is_some() {
            // One job in flight per partition, in the whole cluster (see `ordered.rs`).
            for p in 0..super::ordered::PARTITIONS {
                add(
                    "q",
                    &super::ordered::lane_token(&sub.id, p),
                    1,
                    LaneKind::Work,
                );
            }
        } else if sub.plugin.is_some() || !sub.enrich.is_empty() || source_enrich {
            let slots = work.plugin_slots_per_subscription;
            add("c", &token(&sub.id), slots, LaneKind::Work);
        }
    }
    lanes
}

/// Runs until `shutdown`: the fan-out, the lanes of the configuration in force (started and
/// stopped as it changes), and the sweep of parked jobs and of lanes no longer configured.
pub async fn run(state: Arc<Handles>, work: Arc<NatsWork>, shutdown: CancellationToken) {
    // Everything started here stops with this run, a panic included (the supervisor then
    // starts a new one).
    let scope = shutdown.child_token();
    let _stop_all = scope.clone().drop_guard();
    let fanout = tokio::spawn(fan_out(state.clone(), work.clone(), scope.clone()));
    tokio::spawn(renew(work.clone(), scope.clone()));
    // The one retry consumer of earlier versions overlaps the per-destination ones (a work
    // queue allows no overlap): gone once, its waiting jobs stay in the stream for them.
    work.remove_legacy_retry_consumer().await;
    // This instance's `concurrency`; a reload that changes it restarts every lane on new
    // slots (running jobs keep their old ones).
    let mut slots = state.snapshot.load().delivery.concurrency.max(1);
    let mut global = Arc::new(Semaphore::new(slots));
    let mut running: HashMap<String, (Lane, CancellationToken)> = HashMap::new();
    let mut orphans = HashMap::new();
    let mut idle = HashMap::new();
    loop {
        let snapshot = state.snapshot.load_full();
        if snapshot.delivery.concurrency.max(1) != slots {
            slots = snapshot.delivery.concurrency.max(1);
            global = Arc::new(Semaphore::new(slots));
            for (_, (_, stop)) in running.drain() {
                stop.cancel();
            }
        }
        let wanted = lanes(&work, &snapshot);
        running.retain(|name, (lane, stop)| {
            let keep = wanted.get(name) == Some(lane);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (name, lane) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            let stop = scope.child_token();
            match lane.kind {
                LaneKind::Work => tokio::spawn(pull(
                    state.clone(),
                    work.clone(),
                    lane.clone(),
                    global.clone(),
                    stop.clone(),
                )),
                LaneKind::Retry => tokio::spawn(retries(
                    state.clone(),
                    work.clone(),
                    lane.clone(),
                    stop.clone(),
                )),
            };
            running.insert(name, (lane, stop));
        }
        let names: HashSet<String> = running.keys().cloned().collect();
        sweep(&state, &work, &snapshot, &names, &mut orphans, &mut idle).await;
        tokio::select! {
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
            () = shutdown.cancelled() => break,
        }
    }
    let _ = fanout.await;
}

/// Runs `open` until it succeeds (JetStream unreachable, a cluster electing leaders), or
/// `None` once `stop` is cancelled.
async fn until_open<T, F, Fut>(what: &str, stop: &CancellationToken, mut open: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
{
    loop {
        match open().await {
            Ok(value) => return Some(value),
            Err(e) => {
                tracing::warn!(error = %e, consumer = what, "cannot open a consumer; trying again");
                tokio::select! {
                    () = tokio::time::sleep(TRY_AGAIN) => {}
                    () = stop.cancelled() => return None,
                }
            }
        }
    }
}

/// Pulls accepted events and fans each out in its own task, until `shutdown`.
async fn fan_out(state: Arc<Handles>, work: Arc<NatsWork>, shutdown: CancellationToken) {
    let open = || work.fanout_consumer();
    pull_each("fanout", &shutdown, open, |message| {
        let (state, work) = (state.clone(), work.clone());
        // The event was accepted before it reached this instance: every control-plane change
        // answered before its acceptance was made before now.
        let received = std::time::Instant::now();
        state
            .in_flight
            .clone()
            .spawn(async move { fan_out_one(&state, &work, message, received).await });
    })
    .await;
}

/// Pulls batches of up to [`PULL_BATCH`] from the consumer `open` makes and passes each
/// message to `each`, until `stop`; the consumer is opened again after [`REOPEN_AFTER`]
/// failed pulls in a row.
async fn pull_each<F, Fut>(
    consumer_name: &str,
    stop: &CancellationToken,
    mut open: F,
    mut each: impl FnMut(jetstream::Message),
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
            Output = Result<jetstream::consumer::PullConsumer, crate::store::StoreError>,
        >,
{
    'open: loop {
        let Some(consumer) = until_open(consumer_name, stop, &mut open).await else {
            return;
        };
        let mut failures = 0;
        loop {
            let batch = consumer
                .batch()
                .max_messages(PULL_BATCH)
                .expires(PULL_WAIT)
                .messages()
                .await;
            let pulled = match batch {
                Ok(batch) => each_pulled(batch, stop, consumer_name, &mut each).await,
                Err(e) => {
                    tracing::warn!(error = %e, consumer = consumer_name, "cannot pull");
                    tokio::select! {
                        () = tokio::time::sleep(TRY_AGAIN) => Pulled::Failed,
                        () = stop.cancelled() => Pulled::Stopped,
                    }
                }
            };
            if pulled == Pulled::Stopped {
                return;
            }
            if failed_in_a_row(&mut failures, pulled) {
                continue 'open;
            }
        }
    }
}

/// How a pull went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pulled {
    /// It ended (expired, or brought what it asked for).
    Ended,
    /// It failed without bringing anything (a consumer gone, no responders).
    Failed,
    /// The caller is stopping.
    Stopped,
}

/// Pulls that fail in a row before a loop opens its consumer again (it may have been deleted
/// as idle by an instance whose configuration lacked the lane).
const REOPEN_AFTER: u32 = 3;

/// Passes each message a pull brings to `each` until the pull ends (what it still brings once
/// `stop` is cancelled is handed back). A pull that failed without bringing anything is
/// followed by a short pause, not tried again at once.
async fn each_pulled(
    mut batch: jetstream::consumer::pull::Batch,
    stop: &CancellationToken,
    consumer: &str,
    mut each: impl FnMut(jetstream::Message),
) -> Pulled {
    let mut got = 0usize;
    loop {
        let next = tokio::select! {
            next = batch.next() => next,
            () = stop.cancelled() => {
                hand_back(batch).await;
                return Pulled::Stopped;
            }
        };
        match next {
            Some(Ok(message)) => {
                got += 1;
                each(message);
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, consumer, "pull ended");
                if got > 0 {
                    return Pulled::Ended;
                }
                tokio::select! {
                    () = tokio::time::sleep(ERROR_PAUSE) => return Pulled::Failed,
                    () = stop.cancelled() => return Pulled::Stopped,
                }
            }
            None => return Pulled::Ended,
        }
    }
}

/// Counts failed pulls in a row: `true` once the consumer should be opened again.
fn failed_in_a_row(failures: &mut u32, pulled: Pulled) -> bool {
    if pulled == Pulled::Failed {
        *failures += 1;
    } else {
        *failures = 0;
    }
    *failures >= REOPEN_AFTER
}

/// How long the fan-out of an event waits for this instance's snapshot to catch up with the
/// shared control plane before it hands the event back (to itself later, or to an instance
/// that is up to date).
const CATCH_UP: Duration = Duration::from_secs(5);

/// Plans one event, queues its jobs and, once JetStream holds them, acknowledges the event.
/// Planned only on a snapshot that holds every control-plane change made before `received`
/// (so before the event was accepted), on whichever instance made it: an app told `201
/// Created` gets every event accepted after that answer.
async fn fan_out_one(
    state: &Handles,
    work: &NatsWork,
    message: jetstream::Message,
    received: std::time::Instant,
) {
    let mut event: Event = match serde_json::from_slice(&message.payload) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(error = %e, "an unreadable event waits for an instance that reads it");
            ack(&message, AckKind::Nak(Some(UNREADABLE_PAUSE))).await;
            return;
        }
    };
    // Its acceptance order, for ordered subscriptions: its place in the events stream.
    let seq = message.info().map_or(0, |i| i.stream_sequence);
    event.seq = seq;
    let event = Arc::new(event);
    // Its lease held while it waits (the wait may be longer than a short lease).
    let waiting = Renewal::start(work, &message);
    let caught_up = state.control.caught_up(received, CATCH_UP).await;
    drop(waiting);
    if !caught_up {
        tracing::warn!(event = %event.id, "this instance's configuration is behind the shared control plane; the event is fanned out later");
        ack(&message, AckKind::Nak(Some(TRY_AGAIN))).await;
        return;
    }
    let snapshot = state.snapshot.load_full();
    let fan_out = crate::trace::fan_out(&event);
    let jobs = crate::fanout::plan(&snapshot, &event, now_ms());
    fan_out.planned(&event, jobs.len());
    let mut items = Vec::with_capacity(jobs.len());
    let mut ordered = Vec::new();
    for job in jobs {
        let item = Item {
            job,
            event: (*event).clone(),
        };
        // A job that can never be a message (a field-filtered body with its event, over
        // `max_payload`) is dead-lettered with the reason, its body left out; its event's other
        // jobs go on.
        if let Some(size) = work.too_large(&item) {
            let limit = work.message_limit();
            let Item { mut job, event } = item;
            job.body = Vec::new();
            let reason = crate::store::DeadReason::TooLarge { size, limit };
            runner::buried(state, &job, &reason);
            if let Err(e) = work.bury(&job, &event, None, reason.to_string()).await {
                tracing::error!(error = %e, event = %event.id, "cannot dead-letter a job too large for the queue; the event is fanned out again");
                ack(&message, AckKind::Nak(Some(TRY_AGAIN))).await;
                return;
            }
            continue;
        }
        let subject = work.job_subject(&item.job);
        if item.job.order.is_some() {
            ordered.push((subject, item));
        } else {
            items.push((subject, item));
        }
    }
    let mut published = work.publish(items).await;
    if published.is_ok() && !ordered.is_empty() {
        // Ordered jobs after every earlier event's: in acceptance order on their lanes.
        let waiting = Renewal::start(work, &message);
        if !work.wait_for_turn(seq).await {
            tracing::warn!(event = %event.id, "earlier events are not fanned out yet; this one's ordered jobs are queued now, possibly ahead of an earlier one of their key");
        }
        drop(waiting);
        published = work.publish(ordered).await;
    }
    match published {
        Ok(()) => ack(&message, AckKind::Ack).await,
        Err(e) => {
            tracing::error!(error = %e, event = %event.id, "cannot queue an event's jobs; it is fanned out again");
            ack(&message, AckKind::Nak(Some(TRY_AGAIN))).await;
        }
    }
}

/// Hands back at once what a stopping pull still receives (until the pull expires), instead
/// of leaving it to come back after the lease.
async fn hand_back(mut batch: jetstream::consumer::pull::Batch) {
    while let Ok(Some(Ok(message))) = tokio::time::timeout(PULL_WAIT, batch.next()).await {
        ack(&message, AckKind::Nak(None)).await;
    }
}

/// Sends `kind` for `message`; a lost acknowledgement only means the message comes back.
async fn ack(message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        tracing::warn!(error = %e, "cannot settle a message; it will be handed out again");
    }
}

/// The leases of the messages whose jobs wait or run on this instance, renewed together by one
/// task ([`renew`]): a job holds its message's lease by holding a [`Renewal`], at the cost of
/// a map entry (a task and a copy of the message each cost more than the rest of a short job's
/// bookkeeping).
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// Each held message's reply subject and when it was last renewed (or taken).
    held: std::sync::Mutex<HashMap<u64, (async_nats::Subject, std::time::Instant)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Leases {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, (async_nats::Subject, std::time::Instant)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps a message's lease while its job waits for a slot or runs (`in-progress` every third
/// of the lease), so that no other instance takes it meanwhile: one attempt in flight per job.
struct Renewal<'a> {
    leases: &'a Leases,
    id: Option<u64>,
}

impl<'a> Renewal<'a> {
    fn start(work: &'a NatsWork, message: &jetstream::Message) -> Self {
        let leases = &work.leases;
        let id = message.reply.clone().map(|reply| {
            let id = leases
                .next
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            leases.lock().insert(id, (reply, std::time::Instant::now()));
            id
        });
        Self { leases, id }
    }
}

impl Drop for Renewal<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.leases.lock().remove(&id);
        }
    }
}

/// Renews every lease held for a third of the lease since its last renewal, until `stop`.
async fn renew(work: Arc<NatsWork>, stop: CancellationToken) {
    let every = work.lease / 3;
    let tick = (every / 4).max(Duration::from_millis(50));
    let client = work.js.client();
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = stop.cancelled() => return,
        }
        let now = std::time::Instant::now();
        let due: Vec<async_nats::Subject> = work
            .leases
            .lock()
            .values_mut()
            .filter(|(_, at)| now.duration_since(*at) >= every)
            .map(|(reply, at)| {
                *at = now;
                reply.clone()
            })
            .collect();
        for reply in due {
            if let Err(e) = client
                .publish(reply, bytes::Bytes::from_static(b"+WPI"))
                .await
            {
                tracing::debug!(error = %e, "cannot renew a lease; it is tried again");
            }
        }
    }
}

/// Runs one lane until `stop`: pulls as many jobs as it has free slots (its own, and the
/// instance's `concurrency`) and runs each in its own task.
async fn pull(
    state: Arc<Handles>,
    work: Arc<NatsWork>,
    lane: Lane,
    global: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(lane.limit));
    'open: loop {
        let Some(consumer) = until_open(&lane.consumer, &stop, || {
            work.consumer(&lane.consumer, lane.subject.clone(), lane.limit)
        })
        .await
        else {
            return;
        };
        let mut failures = 0;
        loop {
            let first = tokio::select! {
                slot = slots.clone().acquire_owned() => slot,
                () = stop.cancelled() => return,
            };
            let Ok(first) = first else { return };
            let mut permits: Vec<OwnedSemaphorePermit> = vec![first];
            // No more than the instance has free; its slot is taken per job, once the job is here,
            // so an idle lane holds none.
            let want = global.available_permits().clamp(1, PULL_BATCH);
            while permits.len() < want {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    break;
                };
                permits.push(slot);
            }
            let batch = consumer
                .batch()
                .max_messages(permits.len())
                .expires(PULL_WAIT)
                .messages()
                .await;
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, lane = %lane.consumer, "cannot pull jobs");
                    if failed_in_a_row(&mut failures, Pulled::Failed) {
                        continue 'open;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(TRY_AGAIN) => continue,
                        () = stop.cancelled() => return,
                    }
                }
            };
            let pulled = each_pulled(batch, &stop, &lane.consumer, |message| {
                let held = permits.pop();
                let (state, work, global) = (state.clone(), work.clone(), global.clone());
                state.in_flight.clone().spawn(async move {
                    run_job(&state, &work, message, Some(global)).await;
                    drop(held);
                });
            })
            .await;
            if pulled == Pulled::Stopped {
                return;
            }
            if failed_in_a_row(&mut failures, pulled) {
                continue 'open;
            }
        }
    }
}

/// Jobs waiting out their backoff at once on one destination, in the whole cluster (a retry
/// lane's `max_ack_pending`).
const RETRY_PENDING: usize = 100_000;

/// Moves each of one destination's retries that is due back to its lane; one that is not yet
/// due is `nak`ed with what remains of its backoff, so JetStream hands it out again then.
/// Pulled by every instance.
async fn retries(state: Arc<Handles>, work: Arc<NatsWork>, lane: Lane, stop: CancellationToken) {
    let open = || work.consumer(&lane.consumer, lane.subject.clone(), lane.limit);
    pull_each(&lane.consumer, &stop, open, |message| {
        let work = work.clone();
        state.in_flight.clone().spawn(async move {
            let Ok(item) = serde_json::from_slice::<Item>(&message.payload) else {
                tracing::error!("an unreadable retry is left for an operator");
                ack(&message, AckKind::Nak(Some(UNREADABLE_PAUSE))).await;
                return;
            };
            let wait = item.job.due_ms.saturating_sub(now_ms());
            if wait > 0 {
                ack(&message, AckKind::Nak(Some(Duration::from_millis(wait)))).await;
                return;
            }
            match work
                .publish_moved(work.job_subject(&item.job), &item, &message)
                .await
            {
                Ok(()) => ack(&message, AckKind::Ack).await,
                Err(_) => ack(&message, AckKind::Nak(Some(TRY_AGAIN))).await,
            }
        });
    })
    .await;
}

/// Moves `job` (with `attempts` made) to the retry subject, due at `due_ms`, and acknowledges
/// `message`; if that fails, `message` is `nak`ed to come back at `due_ms` instead.
async fn retry_at(
    work: &NatsWork,
    message: &jetstream::Message,
    mut job: Job,
    event: &Event,
    due_ms: u64,
) {
    job.due_ms = due_ms;
    let item = Item {
        job,
        event: event.clone(),
    };
    match work
        .publish_moved(work.retry_subject(&item.job), &item, message)
        .await
    {
        Ok(()) => ack(message, AckKind::Ack).await,
        Err(e) => {
            tracing::warn!(error = %e, job = %item.job.id, "cannot move a job to its retry; it waits on its lane");
            let delay = Duration::from_millis(due_ms.saturating_sub(now_ms()));
            ack(message, AckKind::Nak(Some(delay))).await;
        }
    }
}

/// Runs one pulled job through the one job runner and settles its message. It waits first
/// for the slots it needs here: an app's delivery a slot of its receiver host, then any job
/// one of the instance's `concurrency` (`global`), in that order, so that a job waiting for a
/// busy host holds none of the instance's slots; its lease is held meanwhile (without it, a
/// wait past the lease let another instance run the same job at once).
async fn run_job(
    state: &Handles,
    work: &NatsWork,
    message: jetstream::Message,
    global: Option<Arc<Semaphore>>,
) {
    let delivered = message.info().map_or(1, |i| i.delivered.max(1)) as u32;
    let Item { mut job, event } = match serde_json::from_slice(&message.payload) {
        Ok(item) => item,
        Err(e) => {
            tracing::error!(error = %e, "an unreadable job on the work stream waits for an instance that reads it");
            ack(&message, AckKind::Nak(Some(UNREADABLE_PAUSE))).await;
            return;
        }
    };
    // Every earlier delivery of this message was an attempt (or one cut short by a crash).
    job.attempts += delivered - 1;
    let snapshot = state.snapshot.load_full();
    // An ordered job keeps its place on its lane whatever it waits for (see `ordered.rs`).
    let ordered = job.order.is_some();
    let sub = match runner::gate(state, &snapshot, &job.subscription_id) {
        Gate::Run(sub) => sub,
        Gate::Park if ordered => return ack(&message, AckKind::Nak(Some(TRY_AGAIN))).await,
        Gate::Park => return park(work, &message, job, event).await,
        Gate::Unknown => return unknown(state, work, &message, job, event).await,
    };
    // An ordered job runs only in its key's turn (see `ordered.rs`).
    if ordered {
        match work.turn(&job).await {
            Turn::Run(held) => {
                if let Some(order) = job.order.as_mut() {
                    order.held = held;
                }
            }
            Turn::Hold => return hold(work, &message, job, event).await,
            Turn::Done => return ack(&message, AckKind::Ack).await,
            Turn::Later => return ack(&message, AckKind::Nak(Some(TRY_AGAIN))).await,
        }
    }
    // A policy may hold a delivery back (its destination's rate limit, its host's open
    // circuit): a short wait is waited here, its lease held; a longer one on the retry subject,
    // off its lane (no slot held, no attempt counted).
    let mut probe = false;
    if job.kind == JobKind::Deliver {
        loop {
            match runner::admit(state, &snapshot, &job).await {
                Admission::Go { probe: p } => {
                    probe = p;
                    break;
                }
                Admission::WaitUntil { at_ms, .. } => {
                    let wait = at_ms.saturating_sub(now_ms());
                    if !ordered && wait > HOLD_IN_PLACE.as_millis() as u64 {
                        return retry_at(work, &message, job, &event, at_ms).await;
                    }
                    let _lease = Renewal::start(work, &message);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
    }
    let waiting = Renewal::start(work, &message);
    // An app's delivery waits for a slot of its receiver host here (its lane is the app's,
    // not the host's).
    let _host_slot = match (job.kind, owner_app(&sub.id)) {
        (JobKind::Deliver, Some(_)) => match snapshot.destinations.get(&job.destination) {
            Some(dest) => {
                let limits = state.outbound.limits();
                Some(limits.hosts.acquire_destination(&dest.authority()).await)
            }
            None => None,
        },
        _ => None,
    };
    let _instance_slot = match global {
        Some(global) => global.acquire_owned().await.ok(),
        None => None,
    };
    drop(waiting);
    let lease = Renewal::start(work, &message);
    let event = Arc::new(event);
    let settled = match job.kind {
        JobKind::Deliver => {
            runner::deliver(state, &snapshot, &sub, &job, Some(event.clone()), probe).await
        }
        JobKind::Transform => {
            let calls = [(job.clone(), event.clone())];
            let mut settled = runner::call_plugins(state, &snapshot, &sub, &calls).await;
            settled.pop().unwrap_or_else(|| {
                let lost = CallFailure::Task("no plugin outcome".into());
                Settle::bury(DeadReason::Plugin(lost))
            })
        }
    };
    // Settled without the lease: a renewal sent after a delayed `nak` would undo the delay.
    drop(lease);
    settle_job(state, work, &message, &sub, &job, &event, settled).await;
}

/// Writes down what became of a job run from `message`, and settles the message: the delivery
/// log and an ack; a move to the retry subject; the dead letters and `term`; or the
/// deliveries a plugin call made published before the call's ack.
async fn settle_job(
    state: &Handles,
    work: &NatsWork,
    message: &jetstream::Message,
    sub: &Subscription,
    job: &Job,
    event: &Event,
    settled: Settle,
) {
    match settled {
        Settle::Delivered(attempt) => {
            work.record(job, Status::Delivered, Some(attempt), None)
                .await;
            release_and_ack(work, message, job, AckKind::Ack).await;
        }
        Settle::Retry { attempt, due_ms } if job.order.is_some() => {
            let next = runner::retried(job, &attempt, due_ms);
            work.record(job, Status::Pending, Some(attempt), None).await;
            hold_key(work, message, job, next, event, due_ms).await;
        }
        Settle::Retry { attempt, due_ms } => {
            let next = runner::retried(job, &attempt, due_ms);
            work.record(job, Status::Pending, Some(attempt), None).await;
            retry_at(work, message, next, event, due_ms).await;
        }
        Settle::Bury { attempt, reason } => {
            bury(state, work, message, job, event, attempt, reason).await;
        }
        Settle::Replaced {
            attempt,
            jobs,
            letters,
        } => {
            let mut queued = work.enqueue(jobs, event).await;
            for letter in letters {
                if queued.is_ok() {
                    queued = work
                        .bury(&letter.job, event, None, letter.reason.clone())
                        .await;
                }
            }
            match queued {
                Ok(()) => {
                    work.record(job, Status::Delivered, Some(attempt), None)
                        .await;
                    release_and_ack(work, message, job, AckKind::Ack).await;
                }
                Err(crate::store::StoreError::TooLarge { size, limit }) => {
                    // It would be refused every time: the call's outcome is final.
                    let reason = runner::output_too_large(size, limit);
                    let snapshot = state.snapshot.load();
                    runner::plugin_gave_up(state, &snapshot, sub, &reason);
                    let attempt = Attempt {
                        error: Some(reason.to_string()),
                        ..attempt
                    };
                    let reason = DeadReason::Plugin(reason);
                    bury(state, work, message, job, event, Some(attempt), reason).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, job = %job.id, "cannot queue a plugin's deliveries; the call runs again");
                    ack(message, AckKind::Nak(Some(TRY_AGAIN))).await;
                }
            }
        }
    }
}

/// An ordered job whose key is held by an earlier one goes behind it, off its lane.
async fn hold(work: &NatsWork, message: &jetstream::Message, job: Job, event: Event) {
    match work.hold(&Item { job, event }, message).await {
        Ok(_) => ack(message, AckKind::Ack).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot put an ordered job behind its key's held jobs; it waits on its lane");
            ack(message, AckKind::Nak(Some(TRY_AGAIN))).await;
        }
    }
}

/// An ordered job waits for its next attempt (`next`, due at `due_ms`) holding only its own
/// key: its entry heads the key's held jobs (made now unless it is already the key's head),
/// and it waits on its destination's retry subject, off its lane, whose other keys go on. A
/// plugin call, whose retry subject is not its destination's, waits on its lane.
async fn hold_key(
    work: &NatsWork,
    message: &jetstream::Message,
    job: &Job,
    mut next: Job,
    event: &Event,
    due_ms: u64,
) {
    let in_place = |e: Option<crate::store::StoreError>| async move {
        if let Some(e) = e {
            tracing::warn!(error = %e, job = %job.id, "cannot hold an ordered job's key; it waits on its lane");
        }
        let delay = Duration::from_millis(due_ms.saturating_sub(now_ms()));
        ack(message, AckKind::Nak(Some(delay))).await;
    };
    if job.kind != JobKind::Deliver {
        return in_place(None).await;
    }
    let entry = match job.order.as_ref().and_then(|o| o.held) {
        Some(seq) => Ok(seq),
        None => {
            let item = Item {
                job: job.clone(),
                event: event.clone(),
            };
            work.hold(&item, message).await
        }
    };
    match entry {
        Ok(seq) => {
            if let Some(order) = next.order.as_mut() {
                order.held = Some(seq);
            }
            retry_at(work, message, next, event, due_ms).await;
        }
        Err(e) => in_place(Some(e)).await,
    }
}

/// How many times handing an ordered key on is tried before its job is run again.
const RELEASE_TRIES: u32 = 5;

/// Hands `job`'s key to its next held job if `job` was the key's head, then settles `message`
/// with `kind`. JetStream failing, the hand-over is tried again (its lease held) rather than
/// the job run again; only if it keeps failing does the job come back (and its key with it).
async fn release_and_ack(work: &NatsWork, message: &jetstream::Message, job: &Job, kind: AckKind) {
    let _lease = Renewal::start(work, message);
    let mut pause = Duration::from_millis(100);
    for tries in 1..=RELEASE_TRIES {
        match work.release(job).await {
            Ok(()) => return ack(message, kind).await,
            Err(e) if tries == RELEASE_TRIES => {
                tracing::warn!(error = %e, job = %job.id, "cannot hand an ordered key to its next job; the job runs again");
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    ack(message, AckKind::Nak(Some(TRY_AGAIN))).await;
}

/// A job of a subscription this instance's snapshot lacks. One made moments ago (by an instance
/// that already knows the subscription), or whose subscription the shared control plane still
/// holds while this instance's snapshot lacks it (behind, or the subscription quarantined here
/// because its plugin could not be fetched), waits on the retry subject for an instance that
/// knows it. Otherwise the subscription is gone: see [`removed`].
async fn unknown(
    state: &Handles,
    work: &NatsWork,
    message: &jetstream::Message,
    job: Job,
    event: Event,
) {
    let young = now_ms().saturating_sub(job.created_ms) < ORPHAN_GRACE.as_millis() as u64;
    let held = crate::subscriptions::app_and_id(&job.subscription_id)
        .is_some_and(|(app, id)| matches!(state.control.subscription(app, id), Ok(Some(_))));
    if young || held || !state.control.snapshot_current() {
        if job.order.is_some() {
            // An ordered job keeps its place on its lane.
            return ack(message, AckKind::Nak(Some(TRY_AGAIN))).await;
        }
        if !young {
            tracing::warn!(job = %job.id, subscription = %job.subscription_id, "this instance's configuration lacks a subscription the shared control plane holds; its job waits");
        }
        let due = now_ms() + TRY_AGAIN.as_millis() as u64;
        return retry_at(work, message, job, &event, due).await;
    }
    removed(state, work, message, job, event).await;
}

/// A job whose subscription is gone: dead-lettered, unless its app was deleted (then simply
/// dropped, as the app's queue is purged on a single instance).
async fn removed(
    state: &Handles,
    work: &NatsWork,
    message: &jetstream::Message,
    job: Job,
    event: Event,
) {
    // The bucket decides, not this instance's mirror of it, which may lag.
    let app_gone = match owner_app(&job.subscription_id) {
        Some(app) if state.snapshot.load().apps.get(app).is_none() => {
            match state.control.app_now(app).await {
                Ok(stored) => stored.is_none(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot tell whether an app is gone; asking again later");
                    return ack(message, AckKind::Nak(Some(TRY_AGAIN))).await;
                }
            }
        }
        _ => false,
    };
    if app_gone {
        ack(message, AckKind::Term).await;
        return;
    }
    bury(
        state,
        work,
        message,
        &job,
        &event,
        None,
        DeadReason::SubscriptionRemoved,
    )
    .await;
}

/// Moves a paused subscription's job to its parked subject, with the attempts made so far.
async fn park(work: &NatsWork, message: &jetstream::Message, job: Job, event: Event) {
    let subject = work.parked_subject(&job.subscription_id);
    match work
        .publish_moved(subject, &Item { job, event }, message)
        .await
    {
        Ok(()) => ack(message, AckKind::Ack).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot park a paused subscription's job");
            ack(message, AckKind::Nak(Some(TRY_AGAIN))).await;
        }
    }
}

/// How long this instance must have seen jobs on a lane its configuration lacks before it
/// settles them: instances' configurations may differ for a moment (a rolling change of the
/// files, an API change on its way), and a lane another instance still runs is not orphaned.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// Looks at every subject of the work stream that holds jobs: moves the parked jobs of a
/// subscription that runs again back to their lanes, and settles the jobs of a lane the
/// configuration has lacked for [`ORPHAN_GRACE`] (a destination or plugin subscription
/// removed) and that no other instance pulls from: each is run as any job, so it goes to the
/// dead letters with the reason, never dropped. `orphans` remembers since when each such
/// subject was seen.
async fn sweep(
    state: &Handles,
    work: &NatsWork,
    snapshot: &Snapshot,
    lanes: &HashSet<String>,
    orphans: &mut HashMap<String, Orphan>,
    idle: &mut HashMap<String, Orphan>,
) {
    let filter = format!("{}.work.>", work.prefix);
    let Ok(mut subjects) = work.work.info_with_subjects(&filter).await else {
        return;
    };
    let mut held = Vec::new();
    let mut depths = super::Depths::default();
    while let Some(Ok((subject, count))) = subjects.next().await {
        if count > 0 {
            depths.add(&subject, count);
            held.push(subject);
        }
    }
    // A delivery lane's jobs being attempted are still in the stream: they are running, not
    // queued. And since when its oldest job has been due: the time its message reached the
    // lane (a retry reaches it when due), for the metrics' age of a lane's next job.
    for subject in &held {
        let mut tokens = subject.rsplit('.');
        let (Some(t), Some(kind @ ("d" | "a"))) = (tokens.next(), tokens.next()) else {
            continue;
        };
        if let Ok(consumer) = work
            .work
            .get_consumer::<jetstream::consumer::pull::Config>(&format!("{kind}_{t}"))
            .await
        {
            depths.running(subject, consumer.cached_info().num_ack_pending);
        }
        if let Ok(first) = work.work.get_first_raw_message_by_subject(subject, 0).await {
            let ms = first.time.unix_timestamp_nanos() / 1_000_000;
            depths.due_since(subject, u64::try_from(ms).unwrap_or(0));
        }
    }
    work.set_depths(depths);
    let now = std::time::Instant::now();
    let mut seen = HashMap::new();
    let held_lanes: HashSet<String> = held
        .iter()
        .filter_map(|subject| {
            let mut tokens = subject.rsplit('.');
            let (t, kind) = (tokens.next()?, tokens.next()?);
            Some(format!("{kind}_{t}"))
        })
        .collect();
    for subject in held {
        let mut tokens = subject.rsplit('.');
        let (Some(t), Some(kind)) = (tokens.next(), tokens.next()) else {
            continue;
        };
        let name = format!("{kind}_{t}");
        let orphan = match kind {
            "p" => {
                let sub = snapshot.subscriptions.iter().find(|s| token(&s.id) == t);
                if sub.is_some_and(|s| s.enabled && !state.health.is_disabled(&s.id)) {
                    drain(work, &name, subject, PULL_BATCH, |message| {
                        unpark_one(work, message)
                    })
                    .await;
                    continue;
                }
                if sub.is_some() {
                    continue;
                }
                // A subscription removed: its jobs go back to be dead-lettered.
                true
            }
            // `o`: ordered lanes of the version before held keys, whose jobs go to their `q`
            // lane once no instance of that version runs them.
            "d" | "a" | "c" | "r" | "o" | "q" => !lanes.contains(&name),
            // An ordered key's held jobs, of a lane no longer configured (its subscription
            // removed, or no longer ordered): back to their lane, where they are settled as its
            // other jobs. Judged below by the activity of the lane's own consumer: another
            // instance still running the lane keeps them held.
            "h" => t
                .split_once('_')
                .is_some_and(|(lane, _)| !lanes.contains(&format!("q_{lane}"))),
            _ => false,
        };
        if !orphan {
            continue;
        }
        // Someone pulls from it (a pull waiting, or a delivery since the last look): not an
        // orphan yet. Held jobs have no consumer of their own: their lane's counts.
        let watched = match (kind, t.split_once('_')) {
            ("h", Some((lane, _))) => format!("q_{lane}"),
            _ => name.clone(),
        };
        let (waiting, delivered) = consumer_activity(work, &watched).await;
        let mut entry = orphans.remove(&subject).unwrap_or(Orphan {
            since: now,
            delivered,
        });
        if waiting || entry.delivered != delivered {
            entry = Orphan {
                since: now,
                delivered,
            };
        } else if now.duration_since(entry.since) >= ORPHAN_GRACE {
            let limit = match kind {
                "d" => snapshot.delivery.per_destination_concurrency.max(1),
                "a" => snapshot.delivery.per_app_concurrency.max(1),
                "c" => work.plugin_slots_per_subscription,
                "o" | "q" => 1,
                _ => PULL_BATCH,
            };
            if kind == "p" || kind == "r" || kind == "h" {
                // Back to their lane at once (a retry no longer waits its backoff there): if
                // that lane is gone too, the next sweeps dead-letter them with the reason.
                drain(work, &name, subject.clone(), limit, |message| {
                    unpark_one(work, message)
                })
                .await;
            } else {
                drain(work, &name, subject.clone(), limit, |message| {
                    rehome(state, work, message)
                })
                .await;
            }
            // What this drain itself pulled is not someone else's activity.
            entry.delivered = consumer_activity(work, &watched).await.1;
        }
        seen.insert(subject, entry);
    }
    *orphans = seen;
    remove_idle_consumers(work, lanes, &held_lanes, idle).await;
}

/// The one retry consumer of earlier versions.
const LEGACY_RETRY: &str = "retry";

/// Deletes the consumers of lanes that no instance runs any more (a destination or a
/// subscription removed, an app's churn) once their subject is empty and nobody has pulled
/// from them for [`ORPHAN_GRACE`], so that consumers do not grow without bound. `idle`
/// remembers since when each was seen so.
async fn remove_idle_consumers(
    work: &NatsWork,
    lanes: &HashSet<String>,
    held: &HashSet<String>,
    idle: &mut HashMap<String, Orphan>,
) {
    let mut names = work.work.consumer_names();
    let mut candidates = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        if name == LEGACY_RETRY {
            // Made again by an instance of an earlier version (a rolling upgrade): it overlaps
            // the per-destination retry lanes, so it goes again.
            work.remove_legacy_retry_consumer().await;
            continue;
        }
        let lane_like = name.len() > 2
            && matches!(
                &name[..2],
                "d_" | "a_" | "c_" | "r_" | "p_" | "o_" | "q_" | "h_"
            );
        if lane_like && !lanes.contains(&name) && !held.contains(&name) {
            candidates.push(name);
        }
    }
    let now = std::time::Instant::now();
    let mut seen = HashMap::new();
    for name in candidates {
        let (waiting, delivered) = consumer_activity(work, &name).await;
        let entry = match idle.remove(&name) {
            Some(entry) if !waiting && entry.delivered == delivered => entry,
            _ => Orphan {
                since: now,
                delivered,
            },
        };
        if now.duration_since(entry.since) >= ORPHAN_GRACE {
            match work.work.delete_consumer(&name).await {
                Ok(_) => {
                    tracing::info!(consumer = %name, "the consumer of a lane no instance runs any more is deleted")
                }
                Err(e) => {
                    tracing::debug!(consumer = %name, error = %e, "cannot delete an idle consumer yet")
                }
            }
            continue;
        }
        seen.insert(name, entry);
    }
    *idle = seen;
}

/// Since when a lane's subject has held jobs with nobody pulling them, as of which count of
/// deliveries by its consumer.
#[derive(Debug, Clone, Copy)]
struct Orphan {
    since: std::time::Instant,
    delivered: u64,
}

/// Whether consumer `name` has a pull waiting, and how many deliveries it has made (0 when it
/// does not exist).
async fn consumer_activity(work: &NatsWork, name: &str) -> (bool, u64) {
    match work
        .work
        .get_consumer::<jetstream::consumer::pull::Config>(name)
        .await
    {
        Ok(consumer) => {
            let info = consumer.cached_info();
            (info.num_waiting > 0, info.delivered.consumer_sequence)
        }
        Err(_) => (false, 0),
    }
}

/// Runs `each` on the jobs waiting on `subject`, one pull's worth, through consumer `name` as
/// it is (its limits are the lane's), or made with `limit` when there is none.
async fn drain<F, Fut>(work: &NatsWork, name: &str, subject: String, limit: usize, each: F)
where
    F: Fn(jetstream::Message) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let existing = work
        .work
        .get_consumer::<jetstream::consumer::pull::Config>(name)
        .await;
    let consumer = match existing {
        Ok(consumer) => consumer,
        Err(_) => match work.consumer(name, subject, limit).await {
            Ok(consumer) => consumer,
            Err(_) => return,
        },
    };
    let Ok(mut batch) = consumer
        .fetch()
        .max_messages(PULL_BATCH)
        .expires(PULL_WAIT)
        .messages()
        .await
    else {
        return;
    };
    while let Ok(Some(Ok(message))) = tokio::time::timeout(PULL_WAIT * 2, batch.next()).await {
        each(message).await;
    }
}

/// Settles a job found on a lane no instance runs: moved to the lane it belongs on now (a
/// destination known since, a lane layout of an earlier version), or, where that is the same
/// lane (its subscription or destination removed), run here, which dead-letters it with the
/// reason without an attempt.
async fn rehome(state: &Handles, work: &NatsWork, message: jetstream::Message) {
    let Ok(item) = serde_json::from_slice::<Item>(&message.payload) else {
        ack(&message, AckKind::Nak(Some(UNREADABLE_PAUSE))).await;
        return;
    };
    let lane = work.job_subject(&item.job);
    if lane == message.subject.as_str() {
        return run_job(state, work, message, None).await;
    }
    match work.publish_moved(lane, &item, &message).await {
        Ok(()) => ack(&message, AckKind::Ack).await,
        Err(_) => ack(&message, AckKind::Nak(Some(TRY_AGAIN))).await,
    }
}

/// Moves one parked job back to its lane, with its attempts.
async fn unpark_one(work: &NatsWork, message: jetstream::Message) {
    let Ok(item) = serde_json::from_slice::<Item>(&message.payload) else {
        ack(&message, AckKind::Nak(Some(UNREADABLE_PAUSE))).await;
        return;
    };
    match work
        .publish_moved(work.job_subject(&item.job), &item, &message)
        .await
    {
        Ok(()) => ack(&message, AckKind::Ack).await,
        Err(_) => ack(&message, AckKind::Nak(Some(TRY_AGAIN))).await,
    }
}

/// Writes the dead letter, then terminates the message.
async fn bury(
    state: &Handles,
    work: &NatsWork,
    message: &jetstream::Message,
    job: &Job,
    event: &Event,
    attempt: Option<Attempt>,
    reason: DeadReason,
) {
    runner::buried(state, job, &reason);
    match work.bury(job, event, attempt, reason.to_string()).await {
        Ok(()) => release_and_ack(work, message, job, AckKind::Term).await,
        Err(e) => {
            tracing::error!(error = %e, job = %job.id, "cannot dead-letter a job; it is tried again");
            ack(message, AckKind::Nak(Some(TRY_AGAIN))).await;
        }
    }
}
