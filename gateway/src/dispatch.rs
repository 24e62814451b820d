//! Dispatch: taking due jobs from the queue and delivering them, a bounded number at a time.
//!
//! The loop leases due jobs, checks the global and per-destination limits, and hands each job
//! to a task that signs and POSTs it (or re-runs a plugin that asked for a retry). The outcome
//! is written back to the queue: done, retried later with backoff, or dead-lettered after the
//! subscription's retry count. A slow destination holds only its own permits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;

use crate::config::Subscription;
use crate::delivery::outbound_auth;
use crate::fanout::{Outcome, collect, transform};
use crate::signing;
use crate::state::{State, now_ms};
use crate::store::{Attempt, JobKind, Lease};

/// Longest sleep when nothing is due: new work wakes the loop earlier.
const IDLE: Duration = Duration::from_millis(500);
/// How long a deferred job (its destination is busy) waits before it is looked at again.
const DEFER: Duration = Duration::from_millis(50);

/// Runs until `shutdown`; in-flight deliveries finish or are released by the caller's grace.
pub async fn run(state: Arc<State>, shutdown: CancellationToken) {
    loop {
        // Register interest first, so a wake-up between the scan and the wait is kept.
        let woken = state.dispatch_wake.notified();
        let free = state.limits.available_global();
        let now = now_ms();
        let leases = if free == 0 {
            Vec::new()
        } else {
            let lease_until = now + state.lease_ms();
            state
                .store
                .take_due(now, lease_until, free.min(256))
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot read the delivery queue");
                    Vec::new()
                })
        };
        if leases.is_empty() {
            let wait = match state.store.next_due_ms() {
                Ok(Some(due)) if free > 0 => {
                    Duration::from_millis(due.saturating_sub(now)).min(IDLE)
                }
                _ => IDLE,
            };
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        for lease in leases {
            // A busy destination (or a full gateway) defers the job a little; it keeps its
            // place in the queue and holds no slot while it waits.
            let Some(permit) = state.limits.try_acquire(&lease.job.destination) else {
                release(&state, &lease, now + DEFER.as_millis() as u64);
                continue;
            };
            let state = state.clone();
            state.in_flight.clone().spawn(async move {
                handle(&state, lease).await;
                drop(permit);
                state.dispatch_wake.notify_one();
            });
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

fn release(state: &State, lease: &Lease, due_ms: u64) {
    if let Err(e) = state.store.release(lease, due_ms) {
        tracing::error!(error = %e, job = %lease.job.id, "cannot release a job; it is retried when its lease expires");
    }
}

async fn handle(state: &Arc<State>, lease: Lease) {
    let snapshot = state.snapshot.load_full();
    let now = now_ms();
    let Some(sub) = snapshot
        .subscriptions
        .iter()
        .find(|s| s.id == lease.job.subscription_id)
        .cloned()
    else {
        bury(
            state,
            &lease,
            None,
            "subscription_removed: the subscription is no longer configured",
        );
        return;
    };
    if !sub.enabled || state.health.is_disabled(&sub.id) {
        release(state, &lease, now + 60_000);
        return;
    }
    match lease.job.kind {
        JobKind::Deliver => deliver(state, &snapshot, &sub, lease).await,
        JobKind::Transform => retransform(state, &sub, lease).await,
    }
}

async fn deliver(
    state: &Arc<State>,
    snapshot: &crate::config::Snapshot,
    sub: &Subscription,
    lease: Lease,
) {
    let job = &lease.job;
    let Some(dest) = snapshot.destinations.get(&job.destination) else {
        bury(
            state,
            &lease,
            None,
            "destination_removed: the destination is no longer configured",
        );
        return;
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
    let timestamp = (started / 1000) as i64;
    match signing::webhook_headers(&dest.secrets, &job.id, timestamp, &job.body) {
        Ok(signed) => headers.extend(signed),
        Err(e) => return bury(state, &lease, None, &format!("unsignable: {e}")),
    }
    let body = Bytes::from(job.body.clone());
    // With the destination's outbound authentication (OAuth2 token, OAuth1 signature, header).
    let result = outbound_auth::send(&state.client, dest, headers, body, sub.timeout).await;
    let latency_ms = now_ms().saturating_sub(started);
    let (attempt, retry_after) = match result {
        Ok(resp) if resp.is_success() => {
            let attempt = Attempt {
                at_ms: started,
                status: Some(resp.status.as_u16()),
                latency_ms,
                excerpt: String::from_utf8_lossy(&resp.body_excerpt).into_owned(),
                error: None,
            };
            if let Err(e) = state.store.complete(&lease, &attempt) {
                tracing::error!(error = %e, job = %job.id, "delivered, but cannot record it; it may be delivered again");
            }
            state.health.success(&sub.id);
            state
                .delivered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        Ok(resp) => {
            let error = format!(
                "http_status: the receiver answered {}",
                resp.status.as_u16()
            );
            let attempt = Attempt {
                at_ms: started,
                status: Some(resp.status.as_u16()),
                latency_ms,
                excerpt: String::from_utf8_lossy(&resp.body_excerpt).into_owned(),
                error: Some(error),
            };
            (attempt, resp.retry_after)
        }
        Err(e) => {
            let attempt = Attempt {
                at_ms: started,
                status: None,
                latency_ms,
                excerpt: String::new(),
                error: Some(format!("{}: {e}", e.code())),
            };
            (attempt, None)
        }
    };
    state.health.failure(
        &sub.id,
        attempt.error.as_deref().unwrap_or("failed"),
        &state.snapshot.load().delivery,
    );
    if job.attempts + 1 > sub.retries {
        let reason = format!(
            "gave up after {} attempts; last error: {}",
            job.attempts + 1,
            attempt.error.as_deref().unwrap_or("")
        );
        bury(state, &lease, Some(&attempt), &reason);
    } else {
        let due = now_ms()
            + state
                .backoff_delay(job.attempts + 1, retry_after)
                .as_millis() as u64;
        if let Err(e) = state.store.retry_later(&lease, &attempt, due) {
            tracing::error!(error = %e, job = %job.id, "cannot reschedule; the job is retried when its lease expires");
        }
    }
}

async fn retransform(state: &Arc<State>, sub: &Arc<Subscription>, lease: Lease) {
    let snapshot = state.snapshot.load_full();
    let event = match state.store.event(&lease.job.event_id) {
        Ok(Some(e)) => Arc::new(e),
        Ok(None) => {
            return bury(
                state,
                &lease,
                None,
                "event_missing: the event is no longer stored",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read an event for a plugin retry");
            return;
        }
    };
    let outcome = transform(state, &snapshot, sub, &event).await;
    let outcome = match outcome {
        Outcome::RetryLater(reason) if lease.job.attempts + 1 > sub.retries => {
            Outcome::GiveUp(reason)
        }
        Outcome::RetryLater(reason) => {
            let attempt = Attempt {
                at_ms: now_ms(),
                status: None,
                latency_ms: 0,
                excerpt: String::new(),
                error: Some(reason),
            };
            let due = now_ms()
                + state
                    .backoff_delay(lease.job.attempts + 2, None)
                    .as_millis() as u64;
            if let Err(e) = state.store.retry_later(&lease, &attempt, due) {
                tracing::error!(error = %e, "cannot reschedule a plugin retry");
            }
            return;
        }
        other => other,
    };
    if let Outcome::GiveUp(reason) = &outcome {
        return bury(state, &lease, None, reason);
    }
    let (mut jobs, mut dead) = (Vec::new(), Vec::new());
    collect(state, &event, sub, outcome, &mut jobs, &mut dead);
    let attempt = Attempt {
        at_ms: now_ms(),
        status: None,
        latency_ms: 0,
        excerpt: String::new(),
        error: None,
    };
    let result = state
        .store
        .enqueue(&jobs, &dead, None)
        .and_then(|()| state.store.complete(&lease, &attempt));
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot queue the deliveries of a plugin retry");
    }
    state.dispatch_wake.notify_one();
}

fn bury(state: &State, lease: &Lease, attempt: Option<&Attempt>, reason: &str) {
    tracing::warn!(job = %lease.job.id, reason, "delivery moved to the dead-letter store");
    if let Err(e) = state.store.bury(lease, attempt, reason, now_ms()) {
        tracing::error!(error = %e, job = %lease.job.id, "cannot dead-letter a job; it is retried when its lease expires");
    }
}
