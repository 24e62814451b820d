//! The one job runner: what a due job comes to, whichever engine queued it.
//!
//! An engine takes a job (sled from its schedule, NATS from a lane), asks `gate` whether it
//! may run, runs it with `deliver` or `call_plugins`, and writes down the `Settle` it gets
//! back: that write is the only part each engine has of its own. The retry policy, the
//! subscription's health, the metrics and the trace are decided here, once, so that both
//! engines behave the same. This module never touches storage; it never decides where a job
//! waits.

pub(crate) mod attempt;
pub mod calls;

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use crate::config::{Snapshot, Subscription};
use crate::event::Event;
use crate::store::{Attempt, CallFailure, DeadLetter, DeadReason, Job};
use crate::telemetry::Metrics;
use crate::time::now_ms;
use crate::transform::{self, Outcome};
use crate::workplane::Handles;
use crate::workplane::policy::Admission;

pub(crate) use attempt::Failure;

/// Whether a job may run now.
#[derive(Debug)]
pub(crate) enum Gate {
    /// Yes, under this subscription.
    Run(Arc<Subscription>),
    /// Its subscription is paused (by the operator, or flagged and disabled): it waits, set
    /// aside, until the subscription runs again.
    Park,
    /// Its subscription is not in this snapshot.
    Unknown,
}

/// Whether a job of subscription `id` may run under `snapshot`.
pub(crate) fn gate(state: &Handles, snapshot: &Snapshot, id: &str) -> Gate {
    match snapshot.subscription(id) {
        None => Gate::Unknown,
        Some(sub) if !sub.enabled || state.health.is_disabled(id) => Gate::Park,
        Some(sub) => Gate::Run(sub.clone()),
    }
}

/// Whether subscription `id` is paused under `snapshot`.
pub(crate) fn is_paused(state: &Handles, snapshot: &Snapshot, id: &str) -> bool {
    matches!(gate(state, snapshot, id), Gate::Park)
}

/// What one run of a job came to: what the engine must write down.
#[derive(Debug)]
pub(crate) enum Settle {
    /// The receiver took the delivery.
    Delivered(Attempt),
    /// The plugin call made its deliveries: they take the call's place (`letters`: those it
    /// made that cannot be sent, dead at once).
    Replaced {
        /// The call, as an attempt.
        attempt: Attempt,
        /// The deliveries to queue.
        jobs: Vec<Job>,
        /// Deliveries refused at once.
        letters: Vec<DeadLetter>,
    },
    /// The attempt failed; the job runs again at `due_ms` (ms since the epoch).
    Retry {
        /// The failed attempt.
        attempt: Attempt,
        /// When it runs again.
        due_ms: u64,
    },
    /// Given up: to the dead letters.
    Bury {
        /// The last attempt, if one was made.
        attempt: Option<Attempt>,
        /// Why.
        reason: DeadReason,
    },
}

impl Settle {
    /// A job given up for `reason` without an attempt.
    pub(crate) fn bury(reason: DeadReason) -> Self {
        Self::Bury {
            attempt: None,
            reason,
        }
    }
}

/// The job `job` becomes after the failed `attempt`, with its attempts counted: what a
/// retry queues.
pub(crate) fn retried(job: &Job, attempt: &Attempt, due_ms: u64) -> Job {
    let mut next = job.clone();
    next.attempts += 1;
    next.last_error = attempt.error.clone();
    next.due_ms = due_ms;
    next
}

/// Counts and logs a job going to the dead letters; each engine calls it as it buries.
pub(crate) fn buried(state: &Handles, job: &Job, reason: &DeadReason) {
    Metrics::count(
        &state.metrics.dead_letters,
        &job.subscription_id,
        reason.code(),
    );
    tracing::warn!(job = %job.id, reason = %reason, "job moved to the dead-letter store");
}

/// What to do after a failed attempt: the one policy for deliveries and plugin calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryPolicy {
    /// Try again at this time (ms since the epoch).
    RetryAt(u64),
    /// The subscription's retries are used up.
    GiveUp,
}

impl RetryPolicy {
    /// After the attempt numbered `attempts_before + 1` of a job failed.
    fn after_failure(
        snapshot: &Snapshot,
        sub: &Subscription,
        attempts_before: u32,
        retry_after: Option<Duration>,
    ) -> Self {
        let failed = attempts_before + 1;
        if failed > sub.retries {
            Self::GiveUp
        } else {
            let delay = snapshot.delivery.backoff.next_delay(failed, retry_after);
            Self::RetryAt(now_ms() + delay.as_millis() as u64)
        }
    }
}

/// What becomes of a job after a failed attempt: the failure counts against the
/// subscription's health, then the job is retried (counted in the metrics) or given up.
fn after_failure(
    state: &Handles,
    snapshot: &Snapshot,
    sub: &Subscription,
    job: &Job,
    attempt: Attempt,
    failure: Failure,
) -> Settle {
    let error = attempt.error.clone().unwrap_or_else(|| "failed".into());
    state.health.failure(&sub.id, &error, &snapshot.delivery);
    let next = match failure {
        Failure::Retryable(retry_after) => {
            RetryPolicy::after_failure(snapshot, sub, job.attempts, retry_after)
        }
        Failure::Final => RetryPolicy::GiveUp,
    };
    match next {
        RetryPolicy::GiveUp => Settle::Bury {
            attempt: Some(attempt),
            reason: DeadReason::GaveUp {
                attempts: job.attempts + 1,
                last_error: error,
            },
        },
        RetryPolicy::RetryAt(due_ms) => {
            Metrics::count(&state.metrics.retries, &sub.id, "retried");
            Settle::Retry { attempt, due_ms }
        }
    }
}

/// Whether delivery `job` may make its attempt now, under its destination's rate limit and
/// its receiver host's circuit ([`policy`](super::policy)); a job whose destination is gone
/// goes (to be buried by its attempt).
pub(crate) async fn admit(state: &Handles, snapshot: &Snapshot, job: &Job) -> Admission {
    match snapshot.destinations.get(&job.destination) {
        Some(dest) => {
            state
                .policies
                .admit(dest, &snapshot.delivery.circuit, now_ms())
                .await
        }
        None => Admission::Go { probe: false },
    }
}

/// Makes one attempt of delivery `job` of `sub` (its body built from `event` when it is an
/// envelope), tells the policies how it went (`probe`: it was its host's probe) and says what
/// becomes of the job.
pub(crate) async fn deliver(
    state: &Handles,
    snapshot: &Snapshot,
    sub: &Subscription,
    job: &Job,
    event: Option<Arc<Event>>,
    probe: bool,
) -> Settle {
    let span = crate::trace::job_span(job);
    let sent = attempt::send(state, snapshot, sub, job, event)
        .instrument(span)
        .await;
    // What the host did: an answer, or none. A failure that is the gateway's own (an address
    // the SSRF policy refuses, an invalid request) says nothing of the host.
    let seen = match &sent {
        attempt::Sent::Delivered(a) => Some((a.status, None)),
        attempt::Sent::Failed(a, Failure::Retryable(retry_after)) => Some((a.status, *retry_after)),
        attempt::Sent::Failed(_, Failure::Final) | attempt::Sent::Unsendable(_) => None,
    };
    if let (Some((status, retry_after)), Some(dest)) =
        (seen, snapshot.destinations.get(&job.destination))
    {
        state
            .policies
            .record(
                dest,
                status,
                probe,
                retry_after,
                &snapshot.delivery.circuit,
                now_ms(),
            )
            .await;
    }
    match sent {
        attempt::Sent::Delivered(attempt) => Settle::Delivered(attempt),
        attempt::Sent::Failed(attempt, failure) => {
            after_failure(state, snapshot, sub, job, attempt, failure)
        }
        attempt::Sent::Unsendable(reason) => Settle::bury(reason),
    }
}

/// Whether running `job` needs its event: a plugin call, or a delivery whose body is the
/// event in its envelope.
pub(crate) fn needs_event(job: &Job) -> bool {
    job.kind == crate::store::JobKind::Transform || job.envelope.is_some()
}

/// Runs `sub`'s plugin (after its enrichment) for each of `calls`, on the plugin threads, and
/// says what becomes of each call. The caller holds the subscription's plugin slot.
pub(crate) async fn call_plugins(
    state: &Handles,
    snapshot: &Arc<Snapshot>,
    sub: &Arc<Subscription>,
    calls: &[(Job, Arc<Event>)],
) -> Vec<Settle> {
    let events = calls.iter().map(|(_, event)| event.clone()).collect();
    let called = calls::call(&state.plugins, snapshot, sub, events).await;
    let mut settled = Vec::with_capacity(calls.len());
    let mut any_made = false;
    for ((job, event), called) in calls.iter().zip(called) {
        let _span = crate::trace::job_span(job).entered();
        let outcome_name = count_plugin_call(state, sub, &called.outcome, called.latency_ms);
        tracing::debug!(
            outcome = outcome_name,
            latency_ms = called.latency_ms,
            "plugin called"
        );
        let attempt = |error: Option<String>| Attempt {
            at_ms: called.started_ms,
            status: None,
            latency_ms: called.latency_ms,
            excerpt: String::new(),
            error,
        };
        settled.push(match called.outcome {
            Outcome::Deliver(made) => {
                any_made = true;
                let (jobs, letters) = transform::delivery_jobs(event, sub, made, now_ms());
                Settle::Replaced {
                    attempt: attempt(None),
                    jobs,
                    letters,
                }
            }
            Outcome::RetryLater(reason) => after_failure(
                state,
                snapshot,
                sub,
                job,
                attempt(Some(reason.to_string())),
                Failure::Retryable(None),
            ),
            Outcome::GiveUp(reason) => {
                plugin_gave_up(state, snapshot, sub, &reason);
                Settle::Bury {
                    attempt: Some(attempt(Some(reason.to_string()))),
                    reason: DeadReason::Plugin(reason),
                }
            }
        });
    }
    if any_made {
        state.health.success(&sub.id);
    }
    settled
}

/// A plugin call that gave up: a rejection is the plugin's decision about the event; anything
/// else (a trap, a memory or output limit) counts against the subscription's health.
pub(crate) fn plugin_gave_up(
    state: &Handles,
    snapshot: &Snapshot,
    sub: &Subscription,
    reason: &CallFailure,
) {
    if !reason.is_rejection() {
        state
            .health
            .failure(&sub.id, &reason.to_string(), &snapshot.delivery);
    }
}

/// The dead-letter reason of a plugin call whose deliveries can never be queued: together with
/// their event they are over the queue's message limit.
pub(crate) fn output_too_large(size: usize, limit: usize) -> CallFailure {
    CallFailure::Plugin(crate::plugin::PluginError::OutputTooLarge(format!(
        "a delivery with its event is {size} bytes, over the queue's message limit of {limit}"
    )))
}

/// Counts a plugin call in the metrics (by outcome, with its error code and duration); the
/// outcome's name.
fn count_plugin_call(
    state: &Handles,
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
