//! One delivery attempt: the body built, signed and POSTed with the destination's outbound
//! authentication, through the client whose address policy fits the subscription's owner. It
//! counts the attempt (metrics, the subscription's health on success); what becomes of the job
//! is [`super`]'s decision, and the engine's to write down.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{Snapshot, Subscription};
use crate::delivery::outbound_auth;
use crate::event::Event;
use crate::signing;
use crate::store::{Attempt, DeadReason, Job};
use crate::time::now_ms;
use crate::transform;
use crate::workplane::Handles;
use tracing::Instrument as _;

/// The body of a delivery job: its own, or its event in the job's envelope.
fn body_of(job: &Job, event: Option<Arc<Event>>) -> Result<Vec<u8>, DeadReason> {
    let Some(format) = job.envelope else {
        return Ok(job.body.clone());
    };
    match event {
        Some(event) => Ok(transform::pass_through(&event, format).body),
        None => Err(DeadReason::EventMissing),
    }
}

/// What one delivery attempt came to.
#[derive(Debug)]
pub(super) enum Sent {
    /// The receiver took it (counted in the metrics and the subscription's health).
    Delivered(Attempt),
    /// It failed (counted in the metrics; the subscription's health is the caller's).
    Failed(Attempt, Failure),
    /// It cannot be sent at all: the job goes to the dead letters without an attempt.
    Unsendable(DeadReason),
}

/// Makes one attempt of delivery `job`: builds its body and headers, signs it and POSTs it
/// with the destination's outbound authentication. Whatever engine keeps the queue records
/// the outcome.
pub(super) async fn send(
    state: &Handles,
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
    state: &Handles,
    snapshot: &Snapshot,
    sub: &Subscription,
    job: &Job,
    event: Option<Arc<Event>>,
) -> Sent {
    let Some(dest) = snapshot.destinations.get(&job.destination) else {
        return Sent::Unsendable(DeadReason::DestinationRemoved);
    };
    let body = match body_of(job, event) {
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
    let client = state
        .outbound
        .client(crate::subscriptions::owner_app(&sub.id).is_some());
    let result = outbound_auth::send(
        &client,
        &dest.url,
        &dest.auth,
        headers,
        Bytes::from(body),
        sub.timeout,
    )
    .await;
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
                state.outbound.delivered_one();
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
