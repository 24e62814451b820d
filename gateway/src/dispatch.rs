//! Dispatch: running due jobs, each only when its own resources are free.
//!
//! The loop asks the [`crate::scheduler`] for due jobs lane by lane; a job is admitted only
//! when its slots are free: for a delivery a global slot, a slot of the receiver's host
//! (scheme, host, port: eight destinations on one host share it) and, for an app's
//! subscription, one of the app's share; for a plugin call a plugin slot, with a cap per
//! subscription. A paused subscription's jobs are set aside. Each admitted job runs in its
//! own task: a delivery is signed and POSTed, a plugin call turns into delivery jobs. The
//! outcome is written back: done, retried later under the one [`RetryPolicy`], or buried in
//! the dead-letter store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::{Snapshot, Subscription};
use crate::delivery::{DestinationPermit, Permit, outbound_auth};
use crate::event::Event;
use crate::scheduler::{Admit, Entry, Lane};
use crate::signing;
use crate::state::{State, now_ms};
use crate::store::{Attempt, CallFailure, DeadReason, Job, JobKind};
use crate::telemetry::Metrics;
use crate::transform::{self, Outcome};

/// Longest sleep when nothing is due: new work wakes the loop earlier.
const IDLE: Duration = Duration::from_millis(500);
/// How often paused subscriptions are looked at again.
const UNPARK_EVERY: Duration = Duration::from_secs(1);
/// Jobs admitted per round of the loop.
const TAKE: usize = 256;
/// How long a job waits after the store failed to read it.
const STORE_RETRY_MS: u64 = 1_000;

/// The slots a running job holds; dropping them frees them.
#[derive(Debug, Default)]
pub struct Slots {
    _delivery: Option<Permit>,
    _app: Option<DestinationPermit>,
    _plugin: Option<Permit>,
}

/// The app a subscription belongs to: `app.<app>.<id>` for those made through the API,
/// `None` for the operator's own.
pub fn owner_app(subscription_id: &str) -> Option<&str> {
    subscription_id.strip_prefix("app.")?.split('.').next()
}

/// Runs until `shutdown`; in-flight jobs finish within the caller's grace.
pub async fn run(state: Arc<State>, shutdown: CancellationToken) {
    let mut next_unpark = 0;
    loop {
        // Register interest first, so a wake-up between the scan and the wait is kept.
        let woken = state.scheduler.notified();
        let snapshot = state.snapshot.load_full();
        let now = now_ms();
        if now >= next_unpark {
            state
                .scheduler
                .unpark(now, |sub| !is_paused(&state, &snapshot, sub));
            next_unpark = now + UNPARK_EVERY.as_millis() as u64;
        }
        let ready = state
            .scheduler
            .take(now, TAKE, |entry| admit(&state, &snapshot, entry));
        let busy = !ready.is_empty();
        for (entry, slots) in ready {
            let state = state.clone();
            state.in_flight.clone().spawn(async move {
                run_job(&state, entry).await;
                drop(slots);
                state.scheduler.notify();
            });
        }
        if shutdown.is_cancelled() {
            return;
        }
        if busy {
            tokio::task::yield_now().await;
            continue;
        }
        let until = state
            .scheduler
            .next_due_ms()
            .unwrap_or(u64::MAX)
            .min(next_unpark);
        let wait = Duration::from_millis(until.saturating_sub(now)).min(IDLE);
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

fn subscription<'a>(snapshot: &'a Snapshot, id: &str) -> Option<&'a Arc<Subscription>> {
    snapshot.subscription(id)
}

fn is_paused(state: &State, snapshot: &Snapshot, sub: &str) -> bool {
    subscription(snapshot, sub).is_some_and(|s| !s.enabled) || state.health.is_disabled(sub)
}

/// Whether `entry` may run now, and with which slots.
fn admit(state: &State, snapshot: &Snapshot, entry: &Entry) -> Admit<Slots> {
    let Some(sub) = subscription(snapshot, &entry.subscription) else {
        // Runs without slots, to be buried as `subscription_removed`.
        return Admit::Run(Slots::default());
    };
    if !sub.enabled || state.health.is_disabled(&sub.id) {
        return Admit::Park;
    }
    match &entry.lane {
        Lane::Transform(_) => match state.plugin_limits.try_acquire(&sub.id) {
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
            let limits = state.limits.load();
            let app = match owner_app(&sub.id) {
                Some(app) => match limits.apps.try_acquire_destination(app) {
                    Some(permit) => Some(permit),
                    None => return Admit::Wait,
                },
                None => None,
            };
            match limits.hosts.try_acquire(&dest.authority()) {
                Some(permit) => Admit::Run(Slots {
                    _delivery: Some(permit),
                    _app: app,
                    _plugin: None,
                }),
                None => Admit::Wait,
            }
        }
    }
}

/// What to do after a failed attempt: the one policy for deliveries and plugin calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Try again at this time (ms since the epoch).
    RetryAt(u64),
    /// The subscription's retries are used up.
    GiveUp,
}

impl RetryPolicy {
    /// After the attempt numbered `attempts_before + 1` of a job failed.
    pub fn after_failure(
        state: &State,
        sub: &Subscription,
        attempts_before: u32,
        retry_after: Option<Duration>,
    ) -> Self {
        let failed = attempts_before + 1;
        if failed > sub.retries {
            Self::GiveUp
        } else {
            let delay = state.backoff_delay(failed, retry_after);
            Self::RetryAt(now_ms() + delay.as_millis() as u64)
        }
    }
}

async fn run_job(state: &Arc<State>, mut entry: Entry) {
    let cached = entry.cached.take();
    let stored = match &cached {
        Some(c) => Ok(Some(c.job.clone())),
        None => state.store.job(&entry.id),
    };
    let event = cached.and_then(|c| c.event.clone());
    let job = match stored {
        Ok(Some(job)) => job,
        // Finished through another path (a replayed fan-out wrote it twice).
        Ok(None) => return state.scheduler.finish(&entry.id),
        Err(e) => {
            tracing::error!(error = %e, job = %entry.id, "cannot read a job; it is tried again");
            let now = now_ms();
            return state.scheduler.requeue(entry, now + STORE_RETRY_MS, now);
        }
    };
    let snapshot = state.snapshot.load_full();
    let Some(sub) = subscription(&snapshot, &job.subscription_id).cloned() else {
        // Only a job still stored is dead-lettered: one purged with its app (or already done)
        // is simply forgotten.
        if matches!(state.store.job(&entry.id), Ok(None)) {
            return state.scheduler.finish(&entry.id);
        }
        return bury(state, &entry, &job, None, DeadReason::SubscriptionRemoved);
    };
    match job.kind {
        JobKind::Deliver => {
            let span = crate::trace::job_span(&job);
            deliver(state, &snapshot, &sub, entry, job, event)
                .instrument(span)
                .await;
        }
        JobKind::Transform => call_plugin(state, &sub, entry, job, event).await,
    }
}

/// The job's event: the one kept in memory, or read from the store.
fn event_of(
    state: &State,
    job: &Job,
    cached: Option<Arc<Event>>,
) -> Result<Option<Arc<Event>>, crate::store::StoreError> {
    match cached {
        Some(event) => Ok(Some(event)),
        None => Ok(state.store.event(&job.event_id)?.map(Arc::new)),
    }
}

/// The body of a delivery job: its own, or the stored event in its envelope.
fn body_of(state: &State, job: &Job, event: Option<Arc<Event>>) -> Result<Vec<u8>, DeadReason> {
    let Some(format) = job.envelope else {
        return Ok(job.body.clone());
    };
    match event_of(state, job, event) {
        Ok(Some(event)) => Ok(transform::pass_through(&event, format).body),
        Ok(None) => Err(DeadReason::EventMissing),
        Err(e) => {
            tracing::error!(error = %e, job = %job.id, "cannot read the event of a delivery");
            Err(DeadReason::EventMissing)
        }
    }
}

async fn deliver(
    state: &Arc<State>,
    snapshot: &Snapshot,
    sub: &Subscription,
    entry: Entry,
    job: Job,
    event: Option<Arc<Event>>,
) {
    match send(state, snapshot, sub, &job, event).await {
        Sent::Delivered(attempt) => {
            if let Err(e) = state.store.complete(&job, &attempt) {
                tracing::error!(error = %e, job = %job.id, "delivered, but cannot record it; it may be delivered again");
            }
            state.scheduler.finish(&entry.id);
        }
        Sent::Failed(attempt, failure) => failed(state, sub, entry, &job, attempt, failure),
        Sent::Unsendable(reason) => bury(state, &entry, &job, None, reason),
    }
}

/// What one delivery attempt came to.
#[derive(Debug)]
pub(crate) enum Sent {
    /// The receiver took it (counted in the metrics and the subscription's health).
    Delivered(Attempt),
    /// It failed (counted in the metrics; the subscription's health is the caller's).
    Failed(Attempt, Failure),
    /// It cannot be sent at all: the job goes to the dead letters without an attempt.
    Unsendable(DeadReason),
}

/// Makes one attempt of delivery `job`: builds its body and headers, signs it and POSTs it
/// with the destination's outbound authentication, in the attempt's span. Whatever engine
/// keeps the queue records the outcome.
pub(crate) async fn send(
    state: &State,
    snapshot: &Snapshot,
    sub: &Subscription,
    job: &Job,
    event: Option<Arc<Event>>,
) -> Sent {
    let stage = crate::trace::attempt(job);
    let sent = make_attempt(state, snapshot, sub, job, event)
        .instrument(stage.span().clone())
        .await;
    let (outcome, attempt) = match &sent {
        Sent::Delivered(attempt) => ("delivered", Some(attempt)),
        Sent::Failed(attempt, _) => ("failed", Some(attempt)),
        Sent::Unsendable(reason) => {
            stage.fail(reason.to_string());
            ("unsendable", None)
        }
    };
    stage.set("odoo_gateway.outcome", outcome);
    if let Some(attempt) = attempt {
        if let Some(status) = attempt.status {
            stage.set("http.response.status_code", i64::from(status));
        }
        if let Some(error) = &attempt.error {
            stage.fail(error.clone());
        }
    }
    sent
}

async fn make_attempt(
    state: &State,
    snapshot: &Snapshot,
    sub: &Subscription,
    job: &Job,
    event: Option<Arc<Event>>,
) -> Sent {
    let Some(dest) = snapshot.destinations.get(&job.destination) else {
        return Sent::Unsendable(DeadReason::DestinationRemoved);
    };
    let body = match body_of(state, job, event) {
        Ok(body) => body,
        Err(reason) => return Sent::Unsendable(reason),
    };
    let started = now_ms();
    let mut headers = HeaderMap::new();
    for (name, value) in &job.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.append(n, v);
        }
    }
    if let Ok(ct) = HeaderValue::try_from(job.content_type.as_str()) {
        headers.insert(http::header::CONTENT_TYPE, ct);
    }
    crate::trace::stamp_attempt(&mut headers, job, job.attempts);
    let timestamp = (started / 1000) as i64;
    match signing::webhook_headers(&dest.secrets, &job.id, timestamp, &body) {
        Ok(signed) => headers.extend(signed),
        Err(e) => return Sent::Unsendable(DeadReason::Unsignable(e.to_string())),
    }
    // With the destination's outbound authentication (OAuth2 token, OAuth1 signature, header),
    // through the client whose address policy fits the subscription's owner.
    let client = if owner_app(&sub.id).is_some() {
        state.app_client.load()
    } else {
        state.client.load()
    };
    let result = outbound_auth::send(&client, dest, headers, Bytes::from(body), sub.timeout).await;
    let latency_ms = now_ms().saturating_sub(started);
    state
        .metrics
        .attempt_seconds
        .observe(latency_ms as f64 / 1000.0);
    let (attempt, failure) = match result {
        Ok(resp) => {
            let ok = resp.is_success();
            let attempt = Attempt {
                at_ms: started,
                status: Some(resp.status.as_u16()),
                latency_ms,
                excerpt: String::from_utf8_lossy(&resp.body_excerpt).into_owned(),
                error: (!ok).then(|| {
                    format!(
                        "http_status: the receiver answered {}",
                        resp.status.as_u16()
                    )
                }),
            };
            if ok {
                tracing::debug!(
                    status = resp.status.as_u16(),
                    latency_ms,
                    attempt = job.attempts + 1,
                    "delivered"
                );
                state.metrics.attempt(&sub.id, true);
                state.health.success(&sub.id);
                state
                    .delivered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Sent::Delivered(attempt);
            }
            (attempt, Failure::Retryable(resp.retry_after))
        }
        Err(e) => {
            let attempt = Attempt {
                at_ms: started,
                status: None,
                latency_ms,
                excerpt: String::new(),
                error: Some(format!("{}: {e}", e.code())),
            };
            // An invalid URL or request, or an address the SSRF policy refuses, will fail the
            // same way every time: dead-lettered at once (replay it once the config is fixed).
            let failure = if e.is_retryable() {
                Failure::Retryable(None)
            } else {
                Failure::Final
            };
            (attempt, failure)
        }
    };
    tracing::info!(
        error = attempt.error.as_deref().unwrap_or("failed"),
        latency_ms,
        attempt = job.attempts + 1,
        "delivery attempt failed"
    );
    state.metrics.attempt(&sub.id, false);
    Sent::Failed(attempt, failure)
}

/// Whether a failed attempt may succeed if tried again.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Failure {
    /// Yes; the receiver may have said when (`Retry-After`).
    Retryable(Option<Duration>),
    /// No: trying again would fail the same way.
    Final,
}

/// What becomes of a job after a failed attempt, on either engine: the failure counts
/// against the subscription's health, then the job is retried at `Ok(due)` (counted in the
/// metrics) or buried for `Err(reason)`.
pub(crate) fn after_failure(
    state: &State,
    sub: &Subscription,
    job: &Job,
    attempt: &Attempt,
    failure: Failure,
) -> Result<u64, DeadReason> {
    let error = attempt.error.clone().unwrap_or_else(|| "failed".into());
    state
        .health
        .failure(&sub.id, &error, &state.snapshot.load().delivery);
    let next = match failure {
        Failure::Retryable(retry_after) => {
            RetryPolicy::after_failure(state, sub, job.attempts, retry_after)
        }
        Failure::Final => RetryPolicy::GiveUp,
    };
    match next {
        RetryPolicy::GiveUp => Err(DeadReason::GaveUp {
            attempts: job.attempts + 1,
            last_error: error,
        }),
        RetryPolicy::RetryAt(due) => {
            Metrics::count(&state.metrics.retries, &sub.id, "retried");
            Ok(due)
        }
    }
}

/// A plugin call that gave up: a rejection is the plugin's decision about the event; anything
/// else (a trap, a memory or output limit) counts against the subscription's health.
pub(crate) fn plugin_gave_up(state: &State, sub: &Subscription, reason: &CallFailure) {
    if !reason.is_rejection() {
        state.health.failure(
            &sub.id,
            &reason.to_string(),
            &state.snapshot.load().delivery,
        );
    }
}

/// Counts a plugin call in the metrics (by outcome, with its error code and duration); the
/// outcome's name.
pub(crate) fn count_plugin_call(
    state: &State,
    sub: &Subscription,
    outcome: &Outcome,
    latency_ms: u64,
) -> &'static str {
    let (counted, code) = match outcome {
        Outcome::Deliver(_) => ("ok", None),
        Outcome::RetryLater(reason) => ("retry", Some(reason.code())),
        Outcome::GiveUp(reason) => (reason.code(), Some(reason.code())),
    };
    let plugin = sub.plugin.as_ref().map_or("none", |p| p.short_hash());
    state
        .metrics
        .plugins
        .call(&sub.id, plugin, counted, code, latency_ms as f64 / 1000.0);
    match outcome {
        Outcome::Deliver(_) => "ok",
        Outcome::RetryLater(_) => "retry",
        Outcome::GiveUp(_) => "gave_up",
    }
}

/// Records a failed attempt (delivery or plugin call) and retries or buries the job.
fn failed(
    state: &State,
    sub: &Subscription,
    entry: Entry,
    job: &Job,
    attempt: Attempt,
    failure: Failure,
) {
    match after_failure(state, sub, job, &attempt, failure) {
        Err(reason) => bury(state, &entry, job, Some(&attempt), reason),
        Ok(due) => {
            if let Err(e) = state.store.retry_later(job, &attempt, due) {
                tracing::error!(error = %e, job = %job.id, "cannot reschedule; it is tried again");
            }
            state.scheduler.requeue(entry, due, now_ms());
        }
    }
}

/// Plugin calls one runner makes in one go once it holds its subscription's plugin slot.
const PLUGIN_BATCH: usize = 32;

/// Plugin-call jobs: runs the plugin for this job and up to [`PLUGIN_BATCH`] more due ones of
/// the same subscription, on one blocking thread, then queues all their deliveries and
/// finishes the calls in one atomic write. Calls that ask for a retry or fail are settled one
/// by one.
async fn call_plugin(
    state: &Arc<State>,
    sub: &Arc<Subscription>,
    entry: Entry,
    job: Job,
    event: Option<Arc<Event>>,
) {
    let mut calls = Vec::new();
    if let Some(call) = prepare_call(state, entry, job, event) {
        calls.push(call);
    }
    let lane = calls.first().map(|(entry, ..)| entry.lane.clone());
    if let Some(lane) = lane {
        for mut more in state.scheduler.take_more(&lane, PLUGIN_BATCH - 1) {
            let cached = more.cached.take();
            let job = match &cached {
                Some(c) => Some(c.job.clone()),
                None => state.store.job(&more.id).ok().flatten(),
            };
            let Some(job) = job else {
                state.scheduler.finish(&more.id);
                continue;
            };
            let event = cached.and_then(|c| c.event.clone());
            if let Some(call) = prepare_call(state, more, job, event) {
                calls.push(call);
            }
        }
    }
    if calls.is_empty() {
        return;
    }
    let runner = sub.clone();
    let events: Vec<Arc<Event>> = calls.iter().map(|(_, _, e)| e.clone()).collect();
    // The subscription's `enrich` list, read from Odoo before the plugin sees the events.
    let snapshot = state.snapshot.load_full();
    let inputs = crate::odoo::enrich::prepare(&snapshot, sub, events).await;
    // On the low-priority plugin threads: a plugin that burns its whole CPU allowance on
    // every call yields the CPU to ingest and delivery.
    let ran = state
        .plugin_threads
        .run(move || {
            inputs
                .into_iter()
                .map(|input| {
                    let started = now_ms();
                    let outcome = match input {
                        Ok(event) => {
                            // The plugin's own log lines carry the event's trace.
                            let _span = crate::trace::event_span(&event).entered();
                            transform::call_plugin(&runner, &event)
                        }
                        Err(instead) => instead,
                    };
                    (outcome, started, now_ms().saturating_sub(started))
                })
                .collect::<Vec<_>>()
        })
        .await;
    let outcomes = match ran {
        Ok(outcomes) => outcomes,
        Err(join) => {
            let reason = CallFailure::Task(join.to_string());
            let now = now_ms();
            calls
                .iter()
                .map(|_| (Outcome::RetryLater(reason.clone()), now, 0))
                .collect()
        }
    };
    let mut deliveries = Vec::new();
    let mut dead = Vec::new();
    let mut finished = Vec::new();
    let mut done = Vec::new();
    for ((entry, job, event), (outcome, started, latency_ms)) in calls.into_iter().zip(outcomes) {
        let _span = crate::trace::job_span(&job).entered();
        let attempt = |error: Option<String>| Attempt {
            at_ms: started,
            status: None,
            latency_ms,
            excerpt: String::new(),
            error,
        };
        let counted = count_plugin_call(state, sub, &outcome, latency_ms);
        tracing::debug!(outcome = counted, latency_ms, "plugin called");
        match outcome {
            Outcome::Deliver(made) => {
                let (jobs, letters) = transform::delivery_jobs(&event, sub, made, now_ms());
                deliveries.extend(jobs.into_iter().map(|j| (j, event.clone())));
                dead.extend(letters);
                finished.push((job, attempt(None)));
                done.push(entry);
            }
            Outcome::RetryLater(reason) => {
                failed(
                    state,
                    sub,
                    entry,
                    &job,
                    attempt(Some(reason.to_string())),
                    Failure::Retryable(None),
                );
            }
            Outcome::GiveUp(reason) => {
                plugin_gave_up(state, sub, &reason);
                let attempt = attempt(Some(reason.to_string()));
                bury(
                    state,
                    &entry,
                    &job,
                    Some(&attempt),
                    DeadReason::Plugin(reason),
                );
            }
        }
    }
    if done.is_empty() {
        return;
    }
    let jobs: Vec<Job> = deliveries.iter().map(|(j, _)| j.clone()).collect();
    if let Err(e) = state.store.enqueue_replacing(&jobs, &dead, &finished) {
        tracing::error!(error = %e, "cannot queue plugins' deliveries; the calls run again");
        let now = now_ms();
        for entry in done {
            state.scheduler.requeue(entry, now + STORE_RETRY_MS, now);
        }
        return;
    }
    let now = now_ms();
    for (delivery, event) in &deliveries {
        state.scheduler.schedule_with(delivery, Some(event), now);
    }
    for entry in &done {
        state.scheduler.finish(&entry.id);
    }
    state.health.success(&sub.id);
}

/// A plugin call ready to run: its entry, job and event; `None` (settled) when the event is
/// gone or cannot be read now.
fn prepare_call(
    state: &State,
    entry: Entry,
    job: Job,
    event: Option<Arc<Event>>,
) -> Option<(Entry, Job, Arc<Event>)> {
    match event_of(state, &job, event) {
        Ok(Some(event)) => Some((entry, job, event)),
        Ok(None) => {
            bury(state, &entry, &job, None, DeadReason::EventMissing);
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read an event for a plugin call");
            let now = now_ms();
            state.scheduler.requeue(entry, now + STORE_RETRY_MS, now);
            None
        }
    }
}

fn bury(state: &State, entry: &Entry, job: &Job, attempt: Option<&Attempt>, reason: DeadReason) {
    Metrics::count(
        &state.metrics.dead_letters,
        &job.subscription_id,
        reason.code(),
    );
    let reason = reason.to_string();
    tracing::warn!(job = %job.id, reason, "job moved to the dead-letter store");
    if let Err(e) = state.store.bury(job, attempt, &reason, now_ms()) {
        tracing::error!(error = %e, job = %job.id, "cannot dead-letter a job; it is tried again at the next start");
    }
    state.scheduler.finish(&entry.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_subscription_is_its_app() {
        assert_eq!(owner_app("app.shop.orders"), Some("shop"));
        assert_eq!(owner_app("app.shop.a.b"), Some("shop"));
        assert_eq!(owner_app("orders"), None);
        assert_eq!(owner_app("application"), None);
    }
}
