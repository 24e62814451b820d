//! `GET /admin/odoo/cursors/{source}/{model}` and `POST .../reset`: where a polled model
//! stands, and moving it (`odoo-gateway odoo cursor show|reset`).
//!
//! A reset takes effect at the model's next poll. Without `to` the cursor and its start floor
//! are forgotten, so the next poll starts as a first one (from the source's `start`); with
//! `to` the next poll reads the changes from that second on, and nothing before it (not even
//! by the overlap). Changes read again are recognised by their dedup keys while their events
//! are kept, so a reset to an earlier time delivers what was missed, not everything again.

use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::config::Snapshot;
use crate::connector::cursor::{Cursor, Keeper};
use crate::http_error::{ApiError, Body, json};
use crate::state::State;

/// Largest reset body.
const MAX_BODY: usize = 4096;

/// `source`'s `model` when the source polls it, else 404.
fn polled(snapshot: &Snapshot, source: &str, model: &str) -> Result<(), ApiError> {
    let polls = snapshot
        .sources
        .get(source)
        .and_then(|s| s.odoo.as_ref())
        .and_then(|o| o.poll.as_ref())
        .is_some_and(|p| p.models.iter().any(|m| m.model == model));
    if polls {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_polled",
            format!("source `{source}` does not poll `{model}`"),
        ))
    }
}

fn storage(e: crate::store::StoreError) -> ApiError {
    ApiError::storage("odoo cursor", &e)
}

/// The answer for `source`'s `model`: its cursor and start floor (`null` before its first
/// poll).
async fn shown(state: &State, source: &str, model: &str) -> Result<http::Response<Body>, ApiError> {
    let keeper = Keeper::of(&state.store, &state.control, &state.snapshot.load_full())
        .await
        .map_err(storage)?;
    let at = keeper.load(source, model).await.map_err(storage)?;
    let floor = keeper.load_floor(source, model).await.map_err(storage)?;
    let body = json!({ "source": source, "model": model, "cursor": at, "start": floor });
    Ok(json(StatusCode::OK, &body))
}

/// `GET /admin/odoo/cursors/{source}/{model}`.
pub(super) async fn show(
    state: &Arc<State>,
    snapshot: &Snapshot,
    source: &str,
    model: &str,
) -> Result<http::Response<Body>, ApiError> {
    polled(snapshot, source, model)?;
    shown(state, source, model).await
}

/// `POST /admin/odoo/cursors/{source}/{model}/reset` with `{}` or `{"to": "YYYY-MM-DD HH:MM:SS"}`.
pub(super) async fn reset(
    state: &Arc<State>,
    snapshot: &Snapshot,
    req: Request<Incoming>,
    source: &str,
    model: &str,
) -> Result<http::Response<Body>, ApiError> {
    polled(snapshot, source, model)?;
    let (parts, body) = req.into_parts();
    let body = crate::inbound::read_body(body, &parts.headers, MAX_BODY).await?;
    let request: serde_json::Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("expected a JSON object: {e}")))?
    };
    let to = match request.get("to") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(t)) => {
            Some(crate::odoo::time::to_seconds(t).ok_or_else(|| {
                invalid(format!(
                    "`to`: `{t}` is not a UTC time `YYYY-MM-DD HH:MM:SS`"
                ))
            })?)
        }
        Some(other) => return Err(invalid(format!("`to`: expected a string, not {other}"))),
    };
    let keeper = Keeper::of(&state.store, &state.control, &state.snapshot.load_full())
        .await
        .map_err(storage)?;
    match to {
        // The second `to` and after: the floor covers what is before it.
        Some(second) => {
            let at = Cursor::at(second, 0);
            let floor = Cursor::at(second - 1, i64::MAX);
            keeper
                .store_start(source, model, &floor, &at)
                .await
                .map_err(storage)?;
        }
        None => keeper.forget(source, model).await.map_err(storage)?,
    }
    tracing::info!(source, model, to = ?to.map(crate::odoo::time::from_seconds), "odoo cursor reset");
    shown(state, source, model).await
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_cursor_reset", message)
}
