//! `POST /v1/plugins/{id}/dry-run`: an app tries one of its own plugins (by hash or name) on
//! an event, nothing queued or sent.
//!
//! With `subscription`, the plugin runs as that subscription of the app runs it (its payload
//! filter, then the plugin with its settings); else with the `config` given. Either way on the
//! low-priority plugin threads, under the operator's plugin limits, and **without
//! enrichment**: a dry-run reads nothing from Odoo, so an app cannot use one to read records
//! no event brought it. The event is a bundled sample (`sample`) or one the app gives
//! (`event`: an Odoo webhook body or `{"model", "action", "payload"}`).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::records::{self, qualified_id};
use super::subscriptions::find;
use super::{Call, internal};
use crate::http_error::{ApiError, Body, json};
use crate::transform::Outcome;

/// Largest dry-run request body.
pub(super) const MAX_BODY: usize = 1 << 20;
/// The most of a delivery's body an answer shows.
const MAX_SHOWN_BODY: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRun {
    event: Option<Value>,
    sample: Option<String>,
    event_type: Option<String>,
    subscription: Option<String>,
    config: Option<BTreeMap<String, Value>>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_dry_run", message)
}

pub(super) async fn run(call: &Call<'_>, reference: &str) -> Result<Response<Body>, ApiError> {
    let app = &call.app.app;
    let state = call.state;
    let all = state.control.plugins(app).map_err(internal)?;
    let plugin = records::find_plugin(all, reference).ok_or_else(ApiError::not_found)?;
    let request: DryRun = match serde_json::from_slice(&call.body) {
        Ok(r) => r,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return Err(invalid(e.to_string()));
        }
        Err(e) => {
            return Err(ApiError::bad_request(
                "malformed_json",
                format!("the body is not JSON: {e}"),
            ));
        }
    };
    let event = match (&request.event, &request.sample) {
        (Some(event), None) => {
            crate::samples::event_from_json(&event.to_string(), request.event_type.as_deref())
                .map_err(|e| invalid(format!("event: {e:#}")))?
        }
        (None, Some(name)) => {
            let sample = crate::samples::sample(name)
                .ok_or_else(|| invalid(format!("sample: no sample is named `{name}`")))?;
            let body_type = request.event_type.as_deref().unwrap_or(sample.event_type);
            crate::samples::event_from_json(sample.body, Some(body_type))
                .map_err(|e| invalid(format!("event_type: {e:#}")))?
        }
        _ => return Err(invalid("give either `event` or `sample`")),
    };
    let event = Arc::new(event);
    let started = std::time::Instant::now();
    let (outcome, subscription) = match (&request.subscription, &request.config) {
        (Some(_), Some(_)) => return Err(invalid("give `subscription` or `config`, not both")),
        (Some(id), None) => {
            let stored = find(call, id)?;
            if stored.plugin.as_deref() != Some(plugin.hash.as_str()) {
                return Err(invalid(format!(
                    "subscription: `{id}` does not use this plugin"
                )));
            }
            let qualified = qualified_id(app, id);
            let snapshot = state.snapshot.load_full();
            let sub = snapshot
                .subscriptions
                .iter()
                .find(|s| s.id == qualified)
                .cloned()
                .ok_or_else(|| invalid(format!("subscription: `{id}` is not in force")))?;
            let _slot = state.plugins.slot(&sub.id).await;
            let event = event.clone();
            let ran = state
                .plugins
                .run_low(move || crate::transform::call_plugin(&sub, &event))
                .await;
            (ran, Some(id.clone()))
        }
        (None, config) => {
            let mut settings = BTreeMap::new();
            for (k, v) in config.clone().unwrap_or_default() {
                let text = match v {
                    Value::String(s) => s,
                    Value::Number(_) | Value::Bool(_) => v.to_string(),
                    _ => {
                        return Err(invalid(format!(
                            "config.{k}: plugin settings are strings, numbers or booleans"
                        )));
                    }
                };
                settings.insert(k, text);
            }
            let storage = state.snapshot.load().storage.path.clone();
            // Uploaded on another instance, it may not be a file here yet.
            let fetched = state.control.fetch_plugin_files(&storage).await;
            let path = records::plugin_file(&storage, &plugin.hash);
            if let Err(e) = fetched
                && !path.exists()
            {
                return Err(ApiError::storage("cannot fetch the plugin", &e));
            }
            let host = state.plugins.host().clone();
            let settings = Arc::new(settings);
            let event = event.clone();
            let _slot = state
                .plugins
                .slot(&format!("{}dry-run", records::app_prefix(app)))
                .await;
            let ran = state
                .plugins
                .run_low(move || match host.load_file(&path) {
                    Ok(loaded) => match loaded.handle(&event, &settings) {
                        Ok(output) => Outcome::Deliver(output.deliveries),
                        Err(e) if e.is_retryable() => Outcome::RetryLater(e.into()),
                        Err(e) => Outcome::GiveUp(e.into()),
                    },
                    Err(e) => Outcome::GiveUp(e.into()),
                })
                .await;
            (ran, None)
        }
    };
    let took_ms = started.elapsed().as_secs_f64() * 1e3;
    let outcome = outcome.map_err(|e| ApiError::internal("a dry-run was lost", &e))?;
    let (result, deliveries, error) = match outcome {
        Outcome::Deliver(deliveries) => {
            let shown: Vec<Value> = deliveries
                .iter()
                .map(|d| {
                    json!({
                        "destination": d.destination, "content_type": d.content_type,
                        "headers": d.headers, "body": shown_body(&d.body),
                    })
                })
                .collect();
            ("deliver", shown, None)
        }
        Outcome::RetryLater(e) => ("retry_later", Vec::new(), Some(e.to_string())),
        Outcome::GiveUp(e) => ("give_up", Vec::new(), Some(e.to_string())),
    };
    Ok(json(
        StatusCode::OK,
        &json!({
            "plugin": plugin.hash,
            "name": plugin.name,
            "subscription": subscription,
            "event": { "id": event.id, "type": event.event_type(), "record_id": event.record_id },
            "outcome": result,
            "error": error,
            "took_ms": took_ms,
            "deliveries": deliveries,
        }),
    ))
}

/// A body as text for people, cut at [`MAX_SHOWN_BODY`].
fn shown_body(body: &[u8]) -> String {
    let end = body.len().min(MAX_SHOWN_BODY);
    let mut text = String::from_utf8_lossy(&body[..end]).into_owned();
    if body.len() > end {
        text.push_str(&format!("\n… ({} more bytes)", body.len() - end));
    }
    text
}
