//! The API for third-party apps: subscriptions, uploaded plugins and their dry-runs,
//! deliveries and dead letters, the event catalog, and portal links, under `/v1/`. Every route
//! authenticates the app ([`crate::auth::authenticate`]), or is reached from the app portal
//! with a portal session ([`route_portal`], which cannot mint sessions); reads need the `read`
//! scope, writes `write` (minting a portal link and a dry-run, which change nothing, `read`);
//! an app sees only its own records (another app's answer 404, as if they did not exist).
//!
//! A write is stored in the control plane ([`crate::control`]: sled, or NATS shared with the
//! other instances), then joins the running configuration through
//! [`crate::reload::reload`] — the same path as a file change — so it is validated with
//! everything else and swapped in atomically; a reload that fails puts the stored record back
//! and answers 422. [`crate::control::extend_config`] is what the reload calls to turn the stored records into
//! ordinary `[[destinations]]` and `[[subscriptions]]` named `app.<app>.<id>`.
//!
//! - `records`: the stored shapes (and their sled trees `api_subscriptions`, `api_plugins`);
//! - `validate`: request → record, every field checked, and the answer shapes;
//! - `subscriptions`, `secrets` (rotation), `plugins`, `dry_run`, `deliveries`, `catalog`
//!   (the event types, and a filter checked against their schemas), `portal_sessions`: the
//!   handlers.
//!
//! The API never delivers or runs a plugin itself: it writes records and events, and the
//! pipeline does the rest.

mod catalog;
mod deliveries;
mod dry_run;
mod plugins;
mod portal_sessions;
pub use crate::control::records;
mod secrets;
mod subscriptions;
mod validate;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth::{self, AppIdentity};
use crate::http_error::{ApiError, Body};
use crate::state::State;

/// Every API route: method and path template. The router below and `openapi.json` must agree
/// with this table (a test checks both directions).
pub const API_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/subscriptions"),
    ("POST", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions/{id}"),
    ("PUT", "/v1/subscriptions/{id}"),
    ("PATCH", "/v1/subscriptions/{id}"),
    ("DELETE", "/v1/subscriptions/{id}"),
    ("POST", "/v1/subscriptions/{id}/test"),
    ("GET", "/v1/subscriptions/{id}/deliveries"),
    ("POST", "/v1/deliveries/{id}/replay"),
    ("GET", "/v1/dead-letters"),
    ("POST", "/v1/dead-letters/{id}/replay"),
    ("GET", "/v1/plugins"),
    ("POST", "/v1/plugins"),
    ("POST", "/v1/plugins/{id}/dry-run"),
    ("POST", "/v1/subscriptions/{id}/rotate-secret"),
    ("GET", "/v1/event-types"),
    ("GET", "/v1/event-types/{type}"),
    ("POST", "/v1/portal-sessions"),
    ("DELETE", "/v1/portal-sessions"),
];

/// Largest JSON request body.
const MAX_JSON_BODY: usize = 256 * 1024;

/// One write at a time: a write and its reload (or rollback) must not interleave with another.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Plugin uploads read and compiled at once: each holds up to 10 MiB and a compiler thread.
static UPLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Routes `/v1/<rest>` for the API prefixes (`subscriptions`, `plugins`, `deliveries`,
/// `dead-letters`, `event-types`, `portal-sessions`).
pub async fn route(
    state: &Arc<State>,
    req: Request<Incoming>,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let template = allowed(rest, req.method())?;
    let (parts, body) = req.into_parts();
    // The API takes JSON or wasm bodies, never forms, so no body parameter is part of an
    // OAuth1 signature: authenticate before reading a possibly large body from a stranger.
    let app = auth::authenticate(state, &parts, &[]).await?;
    serve(state, parts, body, rest, template, app).await
}

/// The same routes for the app of a portal session, which [`crate::portal`] authenticated
/// (with the same rate limit); a session cannot mint or revoke portal sessions.
pub async fn route_portal(
    state: &Arc<State>,
    parts: http::request::Parts,
    body: Incoming,
    rest: &[&str],
    app: AppIdentity,
) -> Result<Response<Body>, ApiError> {
    let template = allowed(rest, &parts.method)?;
    if template == "/v1/portal-sessions" {
        return Err(ApiError::not_found());
    }
    serve(state, parts, body, rest, template, app).await
}

/// The route template of `rest`, if `method` is one of its methods (404, or 405 with
/// `Allow`).
fn allowed(rest: &[&str], method: &Method) -> Result<&'static str, ApiError> {
    let template = match_route(rest)?;
    let methods: Vec<&str> = API_ROUTES
        .iter()
        .filter(|(_, t)| *t == template)
        .map(|(m, _)| *m)
        .collect();
    if !methods.contains(&method.as_str()) {
        return Err(ApiError::method_not_allowed(&methods.join(", ")));
    }
    Ok(template)
}

/// The scope a route needs: `read` to read, and to mint a portal link or dry-run a plugin
/// (neither changes anything); `write` for the rest.
fn scope_of(method: &Method, template: &str) -> &'static str {
    match (method.as_str(), template) {
        ("GET", _) | (_, "/v1/portal-sessions" | "/v1/plugins/{id}/dry-run") => "read",
        _ => "write",
    }
}

async fn serve(
    state: &Arc<State>,
    parts: http::request::Parts,
    body: Incoming,
    rest: &[&str],
    template: &'static str,
    app: AppIdentity,
) -> Result<Response<Body>, ApiError> {
    auth::require_scope(&app, scope_of(&parts.method, template))?;
    let limit = match template {
        "/v1/plugins" => plugins::MAX_PLUGIN_BYTES,
        "/v1/plugins/{id}/dry-run" => dry_run::MAX_BODY,
        _ => MAX_JSON_BODY,
    };
    let _upload_slot = if template == "/v1/plugins" && parts.method == Method::POST {
        let slot = UPLOADS.acquire().await;
        Some(slot.map_err(|e| ApiError::internal("upload slots closed", &e))?)
    } else {
        None
    };
    let body = crate::inbound::read_body(body, &parts.headers, limit).await?;
    let call = Call {
        state,
        app: &app,
        parts: &parts,
        body,
    };
    match (parts.method.as_str(), rest) {
        ("GET", ["subscriptions"]) => subscriptions::list(&call),
        ("POST", ["subscriptions"]) => subscriptions::create(&call).await,
        ("GET", ["subscriptions", id]) => subscriptions::get(&call, id),
        ("PUT" | "PATCH", ["subscriptions", id]) => subscriptions::update(&call, id).await,
        ("DELETE", ["subscriptions", id]) => subscriptions::delete(&call, id).await,
        ("POST", ["subscriptions", id, "test"]) => deliveries::send_test(&call, id).await,
        ("POST", ["subscriptions", id, "rotate-secret"]) => secrets::rotate(&call, id).await,
        ("GET", ["subscriptions", id, "deliveries"]) => deliveries::list(&call, id).await,
        ("POST", ["deliveries", id, "replay"]) => deliveries::replay(&call, id).await,
        ("GET", ["dead-letters"]) => deliveries::dead_letters(&call).await,
        ("POST", ["dead-letters", id, "replay"]) => deliveries::replay_dead_letter(&call, id).await,
        ("GET", ["plugins"]) => plugins::list(&call),
        ("POST", ["plugins"]) => plugins::upload(&call).await,
        ("POST", ["plugins", id, "dry-run"]) => dry_run::run(&call, id).await,
        ("GET", ["event-types"]) => catalog::list(&call).await,
        ("GET", ["event-types", event_type]) => catalog::get(&call, event_type).await,
        ("POST", ["portal-sessions"]) => portal_sessions::create(&call).await,
        ("DELETE", ["portal-sessions"]) => portal_sessions::revoke(&call).await,
        _ => Err(ApiError::not_found()),
    }
}

/// The template in [`API_ROUTES`] that `rest` (the path after `/v1/`) has, or 404.
fn match_route(rest: &[&str]) -> Result<&'static str, ApiError> {
    let template = match rest {
        ["subscriptions"] => "/v1/subscriptions",
        ["subscriptions", _] => "/v1/subscriptions/{id}",
        ["subscriptions", _, "test"] => "/v1/subscriptions/{id}/test",
        ["subscriptions", _, "rotate-secret"] => "/v1/subscriptions/{id}/rotate-secret",
        ["subscriptions", _, "deliveries"] => "/v1/subscriptions/{id}/deliveries",
        ["deliveries", _, "replay"] => "/v1/deliveries/{id}/replay",
        ["dead-letters"] => "/v1/dead-letters",
        ["dead-letters", _, "replay"] => "/v1/dead-letters/{id}/replay",
        ["plugins"] => "/v1/plugins",
        ["plugins", _, "dry-run"] => "/v1/plugins/{id}/dry-run",
        ["event-types"] => "/v1/event-types",
        ["event-types", _] => "/v1/event-types/{type}",
        ["portal-sessions"] => "/v1/portal-sessions",
        _ => return Err(ApiError::not_found()),
    };
    Ok(template)
}

/// What every handler gets: the request, already authenticated, and its body.
struct Call<'a> {
    state: &'a Arc<State>,
    app: &'a AppIdentity,
    parts: &'a http::request::Parts,
    body: Bytes,
}

impl Call<'_> {
    /// The value of query parameter `name`.
    fn query(&self, name: &str) -> Option<String> {
        self.parts.uri.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| v.to_owned())
        })
    }

    /// `?limit=`, default 100, at most 1000.
    fn limit(&self) -> Result<usize, ApiError> {
        match self.query("limit") {
            None => Ok(100),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(
                    "invalid_query",
                    "limit: give a number from 1 to 1000",
                )),
            },
        }
    }
}

/// A store error: 503 `storage_unavailable` while the disk fails (as documented), else 500.
fn internal(e: crate::store::StoreError) -> ApiError {
    ApiError::storage("API storage request failed", &e)
}

/// Makes a stored change durable and joins it to the running configuration; when the reload
/// fails, `undo` puts the previous state back and the answer is 422 `reload_failed`.
async fn apply(
    state: &Arc<State>,
    written: Option<&str>,
    undo: impl std::future::Future<Output = Result<bool, crate::store::StoreError>>,
) -> Result<(), ApiError> {
    state.store.durable().await.map_err(internal)?;
    // A reload quarantines a stored subscription that does not validate instead of failing;
    // for the one just written that is a refusal, as if the reload had failed.
    let reloaded = crate::reload::reload(state, "api")
        .await
        .and_then(|generation| {
            let snapshot = state.snapshot.load();
            match written.and_then(|id| snapshot.quarantined.iter().find(|(q, _)| q == id)) {
                Some((_, why)) => Err(why.clone()),
                None => Ok(generation),
            }
        });
    match reloaded {
        Ok(_) => Ok(()),
        Err(reason) => {
            if !undo.await.map_err(internal)? {
                tracing::warn!(
                    "a refused API write could not be rolled back: the record changed meanwhile"
                );
            }
            state.store.durable().await.map_err(internal)?;
            if written.is_some() {
                // Out of quarantine and back to what was there before.
                let _ = crate::reload::reload(state, "api rollback").await;
            }
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "reload_failed",
                reason,
            ))
        }
    }
}
