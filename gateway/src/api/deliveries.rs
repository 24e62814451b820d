//! Deliveries of an app's subscriptions: a test event, the delivery log with attempts, replay
//! of a delivery, and the app's dead letters.
//!
//! A test event goes through the normal ingest path (stored, made durable, fanned out) but
//! carries the [`ONLY_SUBSCRIPTION_HEADER`], so fan-out gives it to that one subscription.
//! Replaying a dead letter puts it back in the queue as it was; replaying a delivered job runs
//! the subscription on the stored event again and queues the job with the same id (so the
//! receiver can tell it is the same message).

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::records::{app_prefix, qualified_id};
use super::subscriptions::find;
use super::{Call, internal};
use crate::event::Event;
use crate::http_error::{ApiError, Body, json};
use crate::store::{DeadLetter, DedupKey};
use crate::subscriptions::EventPattern;
use crate::time::now_ms;
use crate::transform::ONLY_SUBSCRIPTION_HEADER;

/// The source name of test events.
const TEST_SOURCE: &str = "api-test";

/// `POST /v1/subscriptions/{id}/test`: 202 `{"event_id", "event_type"}`.
pub(super) async fn send_test(call: &Call<'_>, id: &str) -> Result<Response<Body>, ApiError> {
    let sub = find(call, id)?;
    let qualified = qualified_id(&call.app.app, id);
    let event_type = test_event_type(&sub.events);
    let (model, action) = event_type.rsplit_once('.').unwrap_or(("test", "ping"));
    let event = Event {
        id: crate::event::new_id(),
        source: TEST_SOURCE.to_owned(),
        model: model.to_owned(),
        action: action.to_owned(),
        record_id: None,
        received_at_ms: now_ms(),
        seq: crate::time::sequence(),
        payload: json!({ "test": true, "subscription": id }).to_string(),
        headers: vec![(ONLY_SUBSCRIPTION_HEADER.to_owned(), qualified)],
    };
    // Keyed by its own (unique) id, so it is never taken for a duplicate, and the key ages out
    // of the dedup store like any body-hash key.
    let window_ms = call.state.snapshot.load().storage.dedup_window.as_millis() as u64;
    let dedup = DedupKey::body(TEST_SOURCE, event.id.as_bytes(), window_ms);
    crate::ingest::accept_event(&call.state.work, &event, &dedup)
        .await
        .map_err(internal)?;
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({ "event_id": event.id, "event_type": event_type }),
    ))
}

/// A type the subscription's first pattern matches: the exact type, `<prefix>.test`,
/// `test.<suffix>`, or `test.ping`.
fn test_event_type(patterns: &[String]) -> String {
    match patterns.first().map(|p| EventPattern::parse(p)) {
        Some(Ok(EventPattern::Exact(t))) => t,
        Some(Ok(EventPattern::Prefix(p))) => format!("{p}.test"),
        Some(Ok(EventPattern::Suffix(s))) => format!("test.{s}"),
        _ => "test.ping".to_owned(),
    }
}

/// `GET /v1/subscriptions/{id}/deliveries[?limit=N]`: newest first, each with its attempts.
pub(super) async fn list(call: &Call<'_>, id: &str) -> Result<Response<Body>, ApiError> {
    find(call, id)?;
    let listed = call
        .state
        .work
        .deliveries(&qualified_id(&call.app.app, id), call.limit()?)
        .await
        .map_err(internal)?;
    let excerpts = call
        .state
        .snapshot
        .load()
        .delivery
        .show_response_excerpts_to_apps;
    let items: Vec<Value> = listed
        .into_iter()
        .map(|mut delivery| {
            if !excerpts {
                // Status and timing only: the body another host answered is not the app's to
                // read.
                for attempt in &mut delivery.attempts {
                    attempt.excerpt.clear();
                }
            }
            let job = &delivery.job;
            json!({
                "id": job.id, "event_id": job.event_id, "created_ms": job.created_ms,
                "status": delivery.state.as_str(), "reason": delivery.reason,
                "attempts": delivery.attempts,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "deliveries": items })))
}

/// `POST /v1/deliveries/{id}/replay`.
pub(super) async fn replay(call: &Call<'_>, job_id: &str) -> Result<Response<Body>, ApiError> {
    let state = call.state;
    let work = &state.work;
    let subscription = owned_subscription(call, job_id)?;
    let (summary, job_state) = work
        .job(&subscription, job_id)
        .await
        .map_err(internal)?
        .ok_or_else(ApiError::not_found)?;
    if work
        .replay_dead_letter(job_id)
        .await
        .map_err(internal)?
        .is_some()
    {
        return Ok(json(
            StatusCode::ACCEPTED,
            &json!({ "replayed": job_id, "from": "dead_letter" }),
        ));
    }
    if job_state == crate::workplane::JobState::Pending {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "delivery_pending",
            "the delivery is still queued; it will be attempted",
        ));
    }
    let snapshot = state.snapshot.load_full();
    let Some(sub) = snapshot
        .subscriptions
        .iter()
        .find(|s| s.id == subscription)
        .cloned()
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "subscription_removed",
            "the subscription no longer exists",
        ));
    };
    let stored = work.event(&summary.event_id).await.map_err(internal)?;
    let Some(event) = stored else {
        return Err(ApiError::new(
            StatusCode::GONE,
            "event_missing",
            "the event is no longer stored",
        ));
    };
    let event = Arc::new(event);
    let now = now_ms();
    // The delivery is made again as it was made the first time: the pass-through body, or
    // the plugin run once more (in a plugin slot of the subscription's, like any call).
    let mut jobs =
        if sub.plugin.is_none() && !crate::transform::enrich::wanted(&snapshot, &sub, &event) {
            crate::transform::pass_through_jobs(&sub, &event, now)
        } else {
            // Enriched from Odoo again first, as the first time, through the one plugin-call path.
            let called = crate::workplane::runner::calls::call_one(
                &state.plugins,
                &snapshot,
                &sub,
                event.clone(),
            )
            .await;
            let outcome = called.outcome;
            match outcome {
                crate::transform::Outcome::Deliver(deliveries) => {
                    crate::transform::delivery_jobs(&event, &sub, deliveries, now).0
                }
                _ => Vec::new(),
            }
        };
    jobs.retain(|j| j.id == job_id);
    if jobs.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_replay",
            "the subscription no longer makes this delivery from the event",
        ));
    }
    work.requeue(jobs, &event).await.map_err(internal)?;
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({ "replayed": job_id, "from": "delivered" }),
    ))
}

/// The subscription a job id names (`<event id>.<subscription>.<n>`) when it is the app's;
/// else 404.
fn owned_subscription(call: &Call<'_>, job_id: &str) -> Result<String, ApiError> {
    let (_event, rest) = job_id.split_once('.').ok_or_else(ApiError::not_found)?;
    let (subscription, _n) = rest.rsplit_once('.').ok_or_else(ApiError::not_found)?;
    if !subscription.starts_with(&app_prefix(&call.app.app)) {
        return Err(ApiError::not_found());
    }
    Ok(subscription.to_owned())
}

/// `GET /v1/dead-letters[?limit=N]`: the app's dead letters.
pub(super) async fn dead_letters(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let prefix = app_prefix(&call.app.app);
    let letters = call
        .state
        .work
        .dead_letters(&prefix, call.limit()?)
        .await
        .map_err(internal)?;
    let items: Vec<Value> = letters.iter().map(|d| render_dead(d, &prefix)).collect();
    Ok(json(StatusCode::OK, &json!({ "dead_letters": items })))
}

fn render_dead(d: &DeadLetter, prefix: &str) -> Value {
    json!({
        "id": d.job.id,
        "subscription": d.job.subscription_id.strip_prefix(prefix).unwrap_or(&d.job.subscription_id),
        "event_id": d.job.event_id,
        "attempts": d.job.attempts,
        "reason": d.reason,
        "at_ms": d.at_ms,
        // An ordered subscription's letter: its key's later deliveries went on without it.
        "ordering_key": d.job.order.as_ref().map(|o| &o.key),
    })
}

/// `POST /v1/dead-letters/{id}/replay`.
pub(super) async fn replay_dead_letter(
    call: &Call<'_>,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let work = &call.state.work;
    let owned = work
        .dead_letter(id)
        .await
        .map_err(internal)?
        .is_some_and(|d| {
            d.job
                .subscription_id
                .starts_with(&app_prefix(&call.app.app))
        });
    if !owned
        || work
            .replay_dead_letter(id)
            .await
            .map_err(internal)?
            .is_none()
    {
        return Err(ApiError::not_found());
    }
    Ok(json(StatusCode::ACCEPTED, &json!({ "replayed": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_event_matches_the_first_pattern() {
        let types = |p: &str| test_event_type(&[p.to_owned()]);
        assert_eq!(types("sale.order.confirmed"), "sale.order.confirmed");
        assert_eq!(types("sale.order.*"), "sale.order.test");
        assert_eq!(types("*.unlink"), "test.unlink");
        assert_eq!(types("*"), "test.ping");
        for p in ["sale.order.*", "*.unlink", "*", "a.b"] {
            let pattern = EventPattern::parse(p).unwrap();
            assert!(pattern.matches(&types(p)), "{p}");
        }
    }
}
