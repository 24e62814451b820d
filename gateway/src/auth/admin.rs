//! `/admin/apps`: the operator's view of the registered apps, and registering or removing the
//! stored ones. `odoo-gateway apps` calls these (sled is single-process, so the CLI goes
//! through the running gateway; with NATS, any instance). The caller is already
//! authenticated as the operator.
//!
//! - `GET /admin/apps`: every app, from the file and from the store, without secrets;
//! - `POST /admin/apps` `{"name", "scopes": ["read", "write"]}` (optionally
//!   `rate_limit_per_minute`, `token_rate_limit_per_minute`, `token_ttl` as in `[[apps]]`):
//!   registers an app with fresh credentials and answers them, the only time they are shown
//!   (201);
//! - `DELETE /admin/apps/{name}`: removes a stored app (its tokens stop working at once);
//! - `POST /admin/apps/{name}/portal-link` (optionally `{"scopes", "link_ttl",
//!   "session_ttl"}`): a link to the app's portal, for any app, shown once (201);
//! - `DELETE /admin/apps/{name}/portal-sessions`: ends every portal link and session of the
//!   app.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;

use super::apps::{self, App};
use crate::http_error::{ApiError, Body, json};
use crate::state::State;

/// Routes `/admin/apps[/<name>]`.
pub(crate) async fn route(
    state: &Arc<State>,
    req: Request<Incoming>,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let internal = |e: crate::store::StoreError| ApiError::storage("app registry failed", &e);
    let control = &state.control;
    let snapshot = state.snapshot.load_full();
    match (req.method().clone(), rest) {
        (Method::GET, []) => {
            let mut listed: Vec<serde_json::Value> = snapshot
                .apps
                .iter()
                .map(|a| describe(a, "config", false))
                .collect();
            for app in control.apps().map_err(internal)? {
                let shadowed = snapshot.apps.get(&app.name).is_some();
                listed.push(describe(&app, "store", shadowed));
            }
            listed.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            Ok(json(StatusCode::OK, &serde_json::json!({ "apps": listed })))
        }
        (Method::POST, []) => {
            let (parts, body) = req.into_parts();
            let body = crate::inbound::read_body(body, &parts.headers, 16 * 1024).await?;
            let new: NewApp = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(
                    "invalid_app",
                    format!("expected {{\"name\", \"scopes\"}}: {e}"),
                )
            })?;
            if !apps::valid_name(&new.name) {
                return Err(ApiError::bad_request(
                    "invalid_app",
                    "the name must be 1 to 64 letters, digits, `-` or `_`",
                ));
            }
            let scopes = apps::normalize_scopes(&new.scopes)
                .map_err(|e| ApiError::bad_request("invalid_app", e))?;
            if snapshot.apps.get(&new.name).is_some() {
                return Err(conflict(format!(
                    "the configuration file defines an app named `{}`",
                    new.name
                )));
            }
            let (mut app, issued) = apps::generate(&new.name, scopes);
            if let Some(n) = new.rate_limit_per_minute {
                app.rate_limit_per_minute = n;
            }
            if let Some(n) = new.token_rate_limit_per_minute {
                app.token_rate_limit_per_minute = n;
            }
            if let Some(ttl) = new.token_ttl {
                app.token_ttl = ttl;
            }
            for (i, pattern) in new.events.iter().enumerate() {
                crate::subscriptions::EventPattern::parse(pattern).map_err(|why| {
                    ApiError::bad_request("invalid_app", format!("events[{i}]: {why}"))
                })?;
            }
            app.events = new.events.clone();
            app.sources = new.sources.clone();
            if app.rate_limit_per_minute == 0
                || app.token_rate_limit_per_minute == 0
                || app.token_ttl.is_zero()
            {
                return Err(ApiError::bad_request(
                    "invalid_app",
                    "rate limits and token_ttl must be above zero",
                ));
            }
            if !control.insert_app(&app).await.map_err(internal)? {
                return Err(conflict(format!(
                    "an app named `{}` is already registered",
                    new.name
                )));
            }
            state.store.durable().await.map_err(internal)?;
            tracing::info!(app = %app.name, scopes = ?app.scopes, "app registered");
            let mut response = json(StatusCode::CREATED, &serde_json::json!(issued));
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        }
        (Method::DELETE, [name]) => {
            if snapshot.apps.get(name).is_some() {
                return Err(conflict(format!(
                    "`{name}` is defined in the configuration file: remove it there"
                )));
            }
            if !control.remove_app(name).await.map_err(internal)? {
                return Err(ApiError::not_found());
            }
            // Everything the app owned goes with it, so that nothing keeps delivering and an
            // app registered later under the same name starts from nothing: its subscriptions
            // and plugins (then a reload takes the subscriptions out of the running
            // configuration), its queued deliveries, delivery log and dead letters, its tokens.
            let records = control.remove_app_records(name).await.map_err(internal)?;
            if let Err(e) = crate::reload::reload(state, "app removed").await {
                tracing::warn!(app = %name, error = %e, "reload after removing an app failed");
            }
            let prefix = crate::control::records::app_prefix(name);
            let purged = state.work.purge(&prefix).await.map_err(internal)?;
            let tokens = control.revoke_app_tokens(name).await.map_err(internal)?;
            let portal = control
                .remove_portal_sessions(name)
                .await
                .map_err(internal)?;
            state.store.durable().await.map_err(internal)?;
            tracing::info!(app = %name, records, purged, tokens, portal, "app removed with everything it owned");
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({
                    "removed": name,
                    "subscriptions_and_plugins": records,
                    "queue_records": purged,
                    "tokens": tokens,
                    "portal_sessions": portal,
                }),
            ))
        }
        (Method::POST, [name, "portal-link"]) => portal_link(state, req, name).await,
        (Method::DELETE, [name, "portal-sessions"]) => {
            apps::find(state, apps::Lookup::Name(name))
                .map_err(internal)?
                .ok_or_else(ApiError::not_found)?;
            let revoked = crate::auth::portal::revoke_app(state, name).await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "app": name, "revoked": revoked }),
            ))
        }
        (_, []) => Err(ApiError::method_not_allowed("GET, POST")),
        (_, [_]) => Err(ApiError::method_not_allowed("DELETE")),
        (_, [_, "portal-link"]) => Err(ApiError::method_not_allowed("POST")),
        (_, [_, "portal-sessions"]) => Err(ApiError::method_not_allowed("DELETE")),
        _ => Err(ApiError::not_found()),
    }
}

/// `POST /admin/apps/{name}/portal-link`: a link to the app's portal, with the app's scopes
/// (or fewer), shown once.
async fn portal_link(
    state: &Arc<State>,
    req: Request<Incoming>,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let app = apps::find(state, apps::Lookup::Name(name))
        .map_err(|e| ApiError::storage("app registry failed", &e))?
        .ok_or_else(ApiError::not_found)?;
    let (parts, body) = req.into_parts();
    let body = crate::inbound::read_body(body, &parts.headers, 16 * 1024).await?;
    let invalid = |message: String| ApiError::bad_request("invalid_portal_link", message);
    let request = crate::auth::portal::LinkRequest::parse(&body, invalid)?;
    let minted =
        crate::auth::portal::mint(state, &app, &app.scopes, request, "operator", invalid).await?;
    let base = crate::auth::portal::base_url(state, &parts);
    let mut response = json(
        StatusCode::CREATED,
        &serde_json::json!({
            "app": app.name,
            "url": crate::auth::portal::url(&base, &minted.link),
            "expires_ms": minted.expires_ms,
            "session_ttl_secs": minted.session_ttl.as_secs(),
            "scopes": minted.scopes,
        }),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    rate_limit_per_minute: Option<u32>,
    #[serde(default)]
    token_rate_limit_per_minute: Option<u32>,
    #[serde(default, with = "crate::time::serde_duration::option")]
    token_ttl: Option<std::time::Duration>,
    /// Event patterns the app may subscribe to.
    #[serde(default)]
    events: Vec<String>,
    /// Sources whose events it may receive (all when left out).
    #[serde(default)]
    sources: Option<Vec<String>>,
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", message)
}

/// An app without its secrets.
fn describe(app: &App, source: &str, shadowed: bool) -> serde_json::Value {
    serde_json::json!({
        "name": app.name,
        "source": source,
        "shadowed": shadowed,
        "scopes": app.scopes,
        "oauth2_client_id": app.oauth2.as_ref().map(|c| c.client_id.clone()),
        "oauth1_consumer_key": app.oauth1.as_ref().map(|c| c.consumer_key.clone()),
        "oauth1_token": app.oauth1.as_ref().and_then(|c| c.token.clone()),
        "rate_limit_per_minute": app.rate_limit_per_minute,
        "token_ttl_secs": app.token_ttl.as_secs(),
    })
}
