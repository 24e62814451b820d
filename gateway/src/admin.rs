//! Operator endpoints under `/admin/`: status, one event's journey, dead letters and their
//! replay, attempt logs, subscriptions (health, pause, enable, recent attempts), plugin
//! dry-runs, Odoo polling cursors (`admin/odoo.rs`), the last hour's chart samples, the
//! event catalog (`admin/catalog.rs`); and `/metrics`. The web console ([`crate::console`])
//! calls these.
//!
//! Guarded by `server.admin_token` (a bearer token); without one configured they answer 404,
//! so nothing is exposed by default. `/metrics` also takes a `server.metrics_token`, which
//! opens nothing else (`403 metrics_token_only` here and on the console).

mod catalog;
mod dry_run;
mod journey;
mod odoo;
mod subscriptions;

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::http_error::{ApiError, Body, json};
use crate::state::State;

/// The bearer token a request carries (empty without one).
fn bearer(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Whether `req` carries one of `server.metrics_token`.
pub(crate) fn holds_metrics_token(state: &State, req: &Request<Incoming>) -> bool {
    let given = bearer(req);
    !given.is_empty() && state.snapshot.load().server.metrics_token.accepts(given)
}

/// The answer to a metrics token anywhere but `/metrics`: it is a real token, so not `401`,
/// but it opens nothing else.
pub(crate) fn metrics_token_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "metrics_token_only",
        "this token reads /metrics only; the admin API and the console need server.admin_token",
    )
}

/// The admin token check: 404 when none is configured, 403 for a metrics token, 401 when the
/// request lacks the admin token.
fn authorise(
    state: &State,
    req: &Request<Incoming>,
) -> Result<Arc<crate::config::Snapshot>, ApiError> {
    let snapshot = state.snapshot.load_full();
    let Some(expected) = snapshot.server.admin_token.as_deref() else {
        return Err(ApiError::not_found());
    };
    let given = bearer(req);
    if !crate::config::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        if holds_metrics_token(state, req) {
            return Err(metrics_token_refused());
        }
        return Err(ApiError::unauthorized()
            .with_header(header::WWW_AUTHENTICATE, "Bearer realm=\"admin\""));
    }
    Ok(snapshot)
}

/// `GET /metrics`: the Prometheus text exposition, behind a metrics token or the admin
/// token (404 when neither is configured).
pub fn metrics(state: &Arc<State>, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if !holds_metrics_token(state, req) {
        let snapshot = state.snapshot.load();
        if snapshot.server.admin_token.is_none() && snapshot.server.metrics_token.0.is_empty() {
            return Err(ApiError::not_found());
        }
        if snapshot.server.admin_token.is_none() {
            return Err(ApiError::unauthorized()
                .with_header(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\""));
        }
        authorise(state, req)?;
    }
    let mut response = Response::new(Body::from(state.metrics.render(&scrape(state))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    Ok(response)
}

/// What `/metrics` reads from the stages at a scrape.
fn scrape(state: &State) -> crate::telemetry::Scrape<'_> {
    let snapshot = state.snapshot.load_full();
    let depth = state.work.depth();
    let queues = state
        .work
        .destination_depths(&snapshot)
        .into_iter()
        .map(|q| (q.destination, q.jobs, q.head_due_since_ms))
        .collect();
    // Only subscriptions in force: a flag kept for a removed one names nothing.
    let flagged = state
        .health
        .report()
        .into_iter()
        .filter(|(id, health)| health.flagged && snapshot.subscription(id).is_some())
        .map(|(id, _)| id)
        .collect();
    crate::telemetry::Scrape {
        due: depth.due,
        waiting: depth.later,
        parked: depth.parked,
        destinations: snapshot
            .destinations
            .iter()
            .map(|(name, d)| (name.clone(), d.authority()))
            .collect(),
        queues,
        ready: state.not_ready().is_empty(),
        nats_connected: state.work.connected(),
        flagged,
        open_circuits: state
            .policies
            .circuits()
            .into_iter()
            .map(|c| c.host)
            .collect(),
        store: &state.store,
    }
}

/// Room on disk for `/admin/status`: live data by kind next to the folder's size, the free
/// space, the reserve file, and why new events are paused, if they are.
fn storage_status(state: &State) -> serde_json::Value {
    let store = &state.store;
    let refusal = store.refusal();
    serde_json::json!({
        "live": store.live_data(),
        "size_on_disk": store.size_on_disk(),
        "room": store.room(),
        "paused": refusal.map(|r| serde_json::json!({ "reason": r.reason(), "message": r.to_string() })),
    })
}

/// Routes `/admin/<rest>`.
pub async fn route(
    state: &Arc<State>,
    req: Request<Incoming>,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let snapshot = authorise(state, &req)?;
    let internal = |e: crate::store::StoreError| ApiError::internal("admin request failed", &e);
    match (req.method(), rest) {
        (&Method::GET, ["status"]) => {
            let odoo_poll =
                crate::connector::cursor::status(&state.store, &state.control, &snapshot).await;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({
                    "config": snapshot.origin,
                    "control_plane": state.control.engine(),
                    "stored": state.store.counts(),
                    "delivered_since_start": state.outbound.delivered(),
                    "schedule": state.work.depth(),
                    "maintenance": state.store.maintenance_report(),
                    "storage": storage_status(state),
                    "stage_restarts": state.stage_restarts.load(std::sync::atomic::Ordering::Relaxed),
                    "circuits": state.policies.circuits(),
                    "quarantined_subscriptions": snapshot.quarantined.iter().map(|(id, why)| serde_json::json!({"id": id, "reason": why})).collect::<Vec<_>>(),
                    "subscriptions": state.health.report(),
                    "odoo_poll": odoo_poll,
                }),
            ))
        }
        (&Method::GET, ["charts"]) => {
            let history = &state.metrics.history;
            let now = crate::time::now_ms();
            let samples = history.samples(now, state.work.queued());
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({
                    "interval_ms": history.interval_ms(),
                    "capacity": crate::telemetry::history::SAMPLES,
                    "samples": samples,
                }),
            ))
        }
        (_, ["apps", ..]) => crate::auth::admin::route(state, req, &rest[1..]).await,
        (&Method::GET, ["reload"]) => Ok(json(
            StatusCode::OK,
            &serde_json::json!(state.reloader.status()),
        )),
        (&Method::POST, ["reload"]) => {
            match crate::reload::reload(state, "POST /admin/reload").await {
                Ok(generation) => Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({ "reloaded": true, "generation": generation }),
                )),
                Err(message) => Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "reload_failed",
                    message,
                )),
            }
        }
        (&Method::GET, ["dead-letters"]) => {
            let letters = state.work.dead_letters("", 1000).await.map_err(internal)?;
            let items: Vec<_> = letters
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "id": d.job.id, "event_id": d.job.event_id, "subscription": d.job.subscription_id,
                        "destination": d.job.destination, "attempts": d.job.attempts,
                        "reason": d.reason, "at_ms": d.at_ms,
                        "ordering_key": d.job.order.as_ref().map(|o| &o.key),
                    })
                })
                .collect();
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "dead_letters": items }),
            ))
        }
        (&Method::POST, ["dead-letters", id, "replay"]) => {
            let replayed = state.work.replay_dead_letter(id).await.map_err(internal)?;
            if let Some(job) = replayed {
                // An ordered job goes behind its key's newer deliveries: say so.
                let ordering = job.order.as_ref().map(|_| "queued_behind_newer");
                Ok(json(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({ "replayed": id, "ordering": ordering }),
                ))
            } else {
                Err(ApiError::not_found())
            }
        }
        (&Method::GET, ["events", id]) => journey::show(state, &snapshot, id).await,
        (&Method::GET, ["jobs", id, "attempts"]) => {
            let attempts = state.work.attempts(id).await.map_err(internal)?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "id": id, "attempts": attempts }),
            ))
        }
        (&Method::GET, ["subscriptions"]) => Ok(subscriptions::list(state, &snapshot)),
        (&Method::POST, ["subscriptions", id, "enable"]) => {
            subscriptions::enable(state, &snapshot, id)
        }
        (&Method::POST, ["subscriptions", id, "pause"]) => {
            subscriptions::pause(state, &snapshot, id)
        }
        (&Method::GET, ["deliveries"]) => {
            let query = req.uri().query().map(str::to_owned);
            subscriptions::deliveries(state, &snapshot, query.as_deref()).await
        }
        (&Method::GET, ["plugins"]) => Ok(dry_run::plugins(&snapshot)),
        (&Method::POST, ["plugins", name, "dry-run"]) => {
            let name = (*name).to_owned();
            dry_run::dry_run(state, &snapshot, req, &name).await
        }
        (&Method::GET, ["samples"]) => Ok(dry_run::samples()),
        (&Method::GET, ["event-types"]) => catalog::show(state, req.uri().query(), None).await,
        (&Method::GET, ["event-types", event_type]) => {
            catalog::show(state, req.uri().query(), Some(event_type)).await
        }
        (_, ["event-types"] | ["event-types", _]) => Err(ApiError::method_not_allowed("GET")),
        (&Method::GET, ["odoo", "cursors", source, model]) => {
            odoo::show(state, &snapshot, source, model).await
        }
        (&Method::POST, ["odoo", "cursors", source, model, "reset"]) => {
            let (source, model) = ((*source).to_owned(), (*model).to_owned());
            odoo::reset(state, &snapshot, req, &source, &model).await
        }
        (_, ["odoo", "cursors", _, _]) => Err(ApiError::method_not_allowed("GET")),
        (_, ["odoo", "cursors", _, _, "reset"]) => Err(ApiError::method_not_allowed("POST")),
        (_, ["subscriptions", _, "enable" | "pause"] | ["plugins", _, "dry-run"]) => {
            Err(ApiError::method_not_allowed("POST"))
        }
        (_, ["subscriptions"] | ["deliveries"] | ["plugins"] | ["samples"] | ["charts"]) => {
            Err(ApiError::method_not_allowed("GET"))
        }
        (_, ["status"] | ["dead-letters"] | ["jobs", _, "attempts"] | ["events", _]) => {
            Err(ApiError::method_not_allowed("GET"))
        }
        (_, ["dead-letters", _, "replay"]) => Err(ApiError::method_not_allowed("POST")),
        (_, ["reload"]) => Err(ApiError::method_not_allowed("GET, POST")),
        _ => Err(ApiError::not_found()),
    }
}
