//! Trying a plugin on a sample event without queueing anything: the plugins in force (by
//! file name, with the subscriptions that use them), the bundled sample events, and the
//! dry-run itself.
//!
//! A dry-run goes through the same transform step as dispatch ([`crate::transform`]): the
//! subscription's payload filter, its plugin with its configuration, on a plugin thread and
//! in one of its plugin slots; then the deliveries become jobs as they would be queued
//! (a destination the subscription lacks is shown refused). It never writes to the store,
//! never delivers, and does not read Odoo (no enrichment).

use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::config::{Snapshot, Subscription};
use crate::http_error::{ApiError, Body, json as answer};
use crate::state::State;
use crate::time::now_ms;
use crate::transform::{self, Outcome};

/// Largest dry-run request body.
const MAX_BODY: usize = 1 << 20;
/// The most of a delivery's body an answer shows.
const MAX_SHOWN_BODY: usize = 64 * 1024;

/// `GET /admin/plugins`: each plugin in force by name, with the subscriptions that use it.
pub(super) fn plugins(snapshot: &Snapshot) -> http::Response<Body> {
    let mut by_name: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for sub in &snapshot.subscriptions {
        if let Some(name) = &sub.plugin_name {
            by_name.entry(name).or_default().push(&sub.id);
        }
    }
    let items: Vec<Value> = by_name
        .into_iter()
        .map(|(name, subs)| json!({ "name": name, "subscriptions": subs }))
        .collect();
    answer(StatusCode::OK, &json!({ "plugins": items }))
}

/// `GET /admin/samples`: the bundled sample events.
pub(super) fn samples() -> http::Response<Body> {
    answer(
        StatusCode::OK,
        &json!({ "samples": crate::samples::SAMPLES }),
    )
}

/// A dry-run request.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRun {
    /// An Odoo webhook body or a full event.
    event: Option<Value>,
    /// Or a bundled sample, by name.
    sample: Option<String>,
    /// `<model>.<action>`, for an `event` that is an Odoo webhook body.
    event_type: Option<String>,
    /// Whose configuration to run the plugin with (default: the first that uses it).
    subscription: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_dry_run", message)
}

/// `POST /admin/plugins/{name}/dry-run`.
pub(super) async fn dry_run(
    state: &Arc<State>,
    snapshot: &Arc<Snapshot>,
    req: Request<Incoming>,
    name: &str,
) -> Result<http::Response<Body>, ApiError> {
    let mut users = snapshot
        .subscriptions
        .iter()
        .filter(|s| s.plugin_name.as_deref() == Some(name) && s.plugin.is_some());
    let Some(first) = users.next() else {
        return Err(ApiError::not_found());
    };
    let (parts, body) = req.into_parts();
    let body = crate::inbound::read_body(body, &parts.headers, MAX_BODY).await?;
    let request: DryRun = serde_json::from_slice(&body).map_err(|e| {
        invalid(format!(
            "expected {{\"event\": <Odoo body or event>}} or {{\"sample\": \"<name>\"}}: {e}"
        ))
    })?;
    let sub: &Arc<Subscription> = match &request.subscription {
        None => first,
        Some(id) => std::iter::once(first)
            .chain(users)
            .find(|s| s.id == *id)
            .ok_or_else(|| invalid(format!("subscription `{id}` does not use plugin `{name}`")))?,
    };
    let event = match (&request.event, &request.sample) {
        (Some(event), None) => {
            crate::samples::event_from_json(&event.to_string(), request.event_type.as_deref())
                .map_err(|e| invalid(format!("event: {e:#}")))?
        }
        (None, Some(sample)) => {
            let sample = crate::samples::sample(sample).ok_or_else(|| {
                invalid(format!(
                    "no sample is named `{sample}` (GET /admin/samples)"
                ))
            })?;
            let mut event = sample.event().map_err(|e| invalid(format!("{e:#}")))?;
            if let Some(event_type) = &request.event_type {
                event = crate::samples::event_from_json(sample.body, Some(event_type))
                    .map_err(|e| invalid(format!("event_type: {e:#}")))?;
            }
            event
        }
        _ => return Err(invalid("give either `event` or `sample`")),
    };
    let event = Arc::new(event);
    let matches = transform::wants(sub, &event, &event.event_type());

    // Through the one plugin-call path (enrichment included), in one of the subscription's
    // plugin slots as a queued call would.
    let started = std::time::Instant::now();
    let outcome =
        crate::workplane::runner::calls::call_one(&state.plugins, snapshot, sub, event.clone())
            .await
            .outcome;
    let took_ms = started.elapsed().as_secs_f64() * 1e3;

    let (result, deliveries, refused, error) = match outcome {
        Outcome::Deliver(deliveries) => {
            let (jobs, dead) = transform::delivery_jobs(&event, sub, deliveries, now_ms());
            let shown: Vec<Value> = jobs
                .iter()
                .map(|job| {
                    json!({
                        "id": job.id, "destination": job.destination,
                        "url": snapshot.destinations.get(&job.destination).map(|d| d.url.to_string()),
                        "content_type": job.content_type, "headers": job.headers,
                        "body": shown_body(&job.body),
                    })
                })
                .collect();
            let refused: Vec<Value> = dead
                .iter()
                .map(|d| json!({ "destination": d.job.destination, "reason": d.reason }))
                .collect();
            ("deliver", shown, refused, None)
        }
        Outcome::RetryLater(e) => ("retry_later", Vec::new(), Vec::new(), Some(e.to_string())),
        Outcome::GiveUp(e) => ("give_up", Vec::new(), Vec::new(), Some(e.to_string())),
    };
    Ok(answer(
        StatusCode::OK,
        &json!({
            "plugin": name,
            "subscription": sub.id,
            "event": { "id": event.id, "type": event.event_type(), "record_id": event.record_id },
            "subscription_matches": matches,
            "outcome": result,
            "error": error,
            "took_ms": took_ms,
            "deliveries": deliveries,
            "refused": refused,
        }),
    ))
}

/// A body as text for people, cut at [`MAX_SHOWN_BODY`].
pub(super) fn shown_body(body: &[u8]) -> String {
    let end = body.len().min(MAX_SHOWN_BODY);
    let mut text = String::from_utf8_lossy(&body[..end]).into_owned();
    if body.len() > end {
        text.push_str(&format!("\n… ({} more bytes)", body.len() - end));
    }
    text
}
