//! `/v1/event-types[/{type}]`: the event types the app may subscribe to, each with a
//! description, a JSON Schema of its payload and an example ([`crate::catalog`]); and
//! the check of a subscription's filter against those schemas.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::json;

use super::records::StoredSubscription;
use super::{Call, internal};
use crate::auth::apps::{App, Lookup};
use crate::catalog::schema::{self, PathCheck};
use crate::catalog::{Entry, View};
use crate::http_error::{ApiError, Body, json};
use crate::subscriptions::EventPattern;

/// The calling app, as registered now.
fn app(call: &Call<'_>) -> Result<Arc<App>, ApiError> {
    crate::auth::apps::find(call.state, Lookup::Name(&call.app.app))
        .map_err(internal)?
        .ok_or_else(ApiError::not_found)
}

/// The app's catalog.
async fn entries(call: &Call<'_>) -> Result<Vec<Entry>, ApiError> {
    let app = app(call)?;
    let snapshot = call.state.snapshot.load_full();
    call.state
        .catalog
        .entries(&snapshot, &call.state.control, View::App(&app))
        .await
        .map_err(internal)
}

/// `GET /v1/event-types`.
pub(super) async fn list(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let entries = entries(call).await?;
    Ok(json(StatusCode::OK, &json!({ "event_types": entries })))
}

/// `GET /v1/event-types/{type}`: 404 for a type the app may not subscribe to.
pub(super) async fn get(call: &Call<'_>, event_type: &str) -> Result<Response<Body>, ApiError> {
    let entry = entries(call)
        .await?
        .into_iter()
        .find(|e| e.event_type == event_type)
        .ok_or_else(ApiError::not_found)?;
    Ok(json(StatusCode::OK, &json!(entry)))
}

/// Refuses (422 `unknown_field`) a filter naming a field that no event type the subscription
/// receives has, when Odoo describes every one of them (a schema inferred from the payloads
/// seen so far may lack fields a later payload has: it refuses nothing).
pub(super) async fn check_filter(
    call: &Call<'_>,
    sub: &StoredSubscription,
) -> Result<(), ApiError> {
    let Some(filter) = &sub.filter else {
        return Ok(());
    };
    if filter.fields.is_empty() && filter.matches.is_empty() {
        return Ok(());
    }
    let patterns: Vec<EventPattern> = sub
        .events
        .iter()
        .filter_map(|p| EventPattern::parse(p).ok())
        .collect();
    let entries = entries(call).await?;
    let received: Vec<&Entry> = entries
        .iter()
        .filter(|e| crate::subscriptions::any_matches(&patterns, &e.event_type))
        .collect();
    if received.is_empty() || received.iter().any(|e| e.schema_origin != "odoo") {
        return Ok(());
    }
    let check = |key: String, found: &dyn Fn(&Entry) -> PathCheck| -> Result<(), ApiError> {
        let mut first = None;
        for entry in &received {
            match found(entry) {
                PathCheck::Known | PathCheck::Open => return Ok(()),
                PathCheck::Unknown(why) => {
                    first.get_or_insert((entry.event_type.clone(), why));
                }
            }
        }
        let (event_type, why) = first.unwrap_or_default();
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            format!("{key}: {why} (see GET /v1/event-types/{event_type})"),
        ))
    };
    for (i, field) in filter.fields.iter().enumerate() {
        check(format!("filter.fields[{i}]"), &|e: &Entry| {
            schema::check_key(&e.schema, field)
        })?;
    }
    for path in filter.matches.keys() {
        check(format!("filter.match.{path}"), &|e: &Entry| {
            schema::check_path(&e.schema, path)
        })?;
    }
    Ok(())
}
