//! `GET /admin/event-types[/{type}][?app=<name>]`: the event catalog as the operator sees it
//! (every type the sources produce), or as one app sees it.

use std::sync::Arc;

use http::StatusCode;
use serde_json::json;

use crate::auth::apps::Lookup;
use crate::catalog::View;
use crate::http_error::{ApiError, Body, json as answer};
use crate::state::State;

/// The catalog, or its type `one`; for the app named in `query`'s `app` if any.
pub(super) async fn show(
    state: &Arc<State>,
    query: Option<&str>,
    one: Option<&str>,
) -> Result<http::Response<Body>, ApiError> {
    let internal = |e: crate::store::StoreError| ApiError::storage("event catalog failed", &e);
    let app_name = query.and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("app="))
            .map(str::to_owned)
    });
    let app = match &app_name {
        Some(name) => Some(
            crate::auth::apps::find(state, Lookup::Name(name))
                .map_err(internal)?
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "no_such_app",
                        format!("no app is named `{name}`"),
                    )
                })?,
        ),
        None => None,
    };
    let view = app.as_deref().map_or(View::Operator, View::App);
    let snapshot = state.snapshot.load_full();
    let entries = state
        .catalog
        .entries(&snapshot, &state.control, view)
        .await
        .map_err(internal)?;
    match one {
        None => Ok(answer(StatusCode::OK, &json!({ "event_types": entries }))),
        Some(event_type) => {
            let entry = entries
                .into_iter()
                .find(|e| e.event_type == event_type)
                .ok_or_else(ApiError::not_found)?;
            Ok(answer(StatusCode::OK, &json!(entry)))
        }
    }
}
