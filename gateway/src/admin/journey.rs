//! One event's journey, for the operator: the event as stored, the subscriptions it matches
//! under the configuration in force, and everything it made: jobs still queued (with the
//! body they will send), dead letters (with the body that failed), every attempt.
//!
//! Reads only. A delivered job leaves the queue; what it sent is read from its row in the
//! delivery index (a plugin's body as made, a pass-through body rebuilt from the event) until
//! retention removes it with the event.

use http::StatusCode;
use serde_json::{Value, json};

use crate::config::Snapshot;
use crate::event::Event;
use crate::http_error::{ApiError, Body, json as answer};
use crate::state::State;
use crate::store::Job;

/// `GET /admin/events/{id}`.
pub(super) async fn show(
    state: &State,
    snapshot: &Snapshot,
    id: &str,
) -> Result<http::Response<Body>, ApiError> {
    let internal = |e: crate::store::StoreError| ApiError::internal("admin request failed", &e);
    let Some(event) = state.work.event(id).await.map_err(internal)? else {
        return Err(ApiError::not_found());
    };
    let journey = state.work.journey(id).await.map_err(internal)?;
    let event_type = event.event_type();
    let matched: Vec<&str> = snapshot
        .subscriptions
        .iter()
        .filter(|s| crate::transform::wants(s, &event, &event_type))
        .map(|s| s.id.as_str())
        .collect();
    let dead: Vec<_> = journey
        .dead
        .iter()
        .map(|d| {
            let mut shown = json!({ "id": d.job.id, "kind": d.job.kind, "subscription": d.job.subscription_id, "destination": d.job.destination, "attempts": d.job.attempts, "reason": d.reason, "at_ms": d.at_ms });
            with_body(&mut shown, &d.job, &event);
            shown
        })
        .collect();
    let queued: Vec<_> = journey
        .queued
        .iter()
        .map(|j| {
            let mut shown = json!({ "id": j.id, "kind": j.kind, "subscription": j.subscription_id, "destination": j.destination, "attempts": j.attempts, "due_ms": j.due_ms, "last_error": j.last_error });
            with_body(&mut shown, j, &event);
            shown
        })
        .collect();
    let delivered: Vec<_> = journey
        .delivered
        .iter()
        .map(|d| {
            let mut shown = json!({ "id": d.id, "subscription": subscription_of(&d.id), "destination": d.destination });
            add_body(&mut shown, d.envelope, &d.content_type, &d.body, &event);
            shown
        })
        .collect();
    let attempts: Vec<_> = journey
        .attempts
        .iter()
        .map(|(job, a)| json!({ "job": job, "at_ms": a.at_ms, "status": a.status, "latency_ms": a.latency_ms, "error": a.error, "excerpt": a.excerpt }))
        .collect();
    let payload: Value = serde_json::from_str(&event.payload).unwrap_or(Value::Null);
    Ok(answer(
        StatusCode::OK,
        &json!({
            "event": { "id": event.id, "source": event.source, "model": event.model, "action": event.action, "type": event_type, "record_id": event.record_id, "received_at_ms": event.received_at_ms, "trace_id": crate::trace::of_event(&event).trace_id.to_string(), "payload": payload },
            "matched": matched,
            "queued": queued, "dead_letters": dead, "delivered": delivered, "attempts": attempts,
        }),
    ))
}

fn subscription_of(job_id: &str) -> String {
    job_id
        .parse::<crate::store::JobId>()
        .map(|id| id.subscription().to_owned())
        .unwrap_or_default()
}

/// Adds what a delivery job sends to `shown`; a plugin call has no body of its own.
fn with_body(shown: &mut Value, job: &Job, event: &Event) {
    if job.kind == crate::store::JobKind::Deliver {
        add_body(shown, job.envelope, &job.content_type, &job.body, event);
    }
}

/// Adds a delivery's content type and body to `shown`: its own, or built from the stored
/// event in its envelope, as dispatch builds it.
fn add_body(
    shown: &mut Value,
    envelope: Option<crate::config::Format>,
    content_type: &str,
    body: &[u8],
    event: &Event,
) {
    let built;
    let (content_type, body) = match envelope {
        Some(format) => {
            built = crate::transform::pass_through(event, format);
            (built.content_type.as_str(), built.body.as_slice())
        }
        None => (content_type, body),
    };
    shown["content_type"] = json!(content_type);
    shown["body"] = json!(super::dry_run::shown_body(body));
}
