//! `/v1/subscriptions[/{id}]`: create, list, read, replace or update, delete.
//!
//! Writes go through [`super::apply`]: stored, reloaded into the running snapshot, and rolled
//! back when the reload refuses them. Before that, a request is checked against what the app
//! is granted and allowed to enrich, its filter against the event catalog's schemas, and its
//! plugin's settings by the plugin.

use http::{Response, StatusCode};
use serde_json::json;

use super::records::{self, StoredSubscription};
use super::validate::{self, SubscriptionRequest};
use super::{Call, WRITES, apply, internal};
use crate::http_error::{ApiError, Body, json};
use crate::time::now_ms;

/// Most subscriptions one app may have.
const MAX_PER_APP: usize = 1000;

pub(super) fn list(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let app = &call.app.app;
    let subs = call.state.control.subscriptions(app).map_err(internal)?;
    let items: Vec<_> = subs
        .iter()
        .map(|s| {
            validate::render(
                s,
                &records::qualified_id(app, &s.id),
                false,
                &circuit_of(call, s),
            )
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "subscriptions": items })))
}

pub(super) fn get(call: &Call<'_>, id: &str) -> Result<Response<Body>, ApiError> {
    let sub = find(call, id)?;
    Ok(json(
        StatusCode::OK,
        &validate::render(
            &sub,
            &records::qualified_id(&call.app.app, id),
            false,
            &circuit_of(call, &sub),
        ),
    ))
}

pub(super) async fn create(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let req: SubscriptionRequest = validate::parse_json(&call.body)?;
    let sub = validate::build(req, None, &|r| lookup_plugin(call, r), now_ms())?;
    check_grants(call, &sub.events)?;
    check_enrich(call, &sub.enrich)?;
    super::catalog::check_filter(call, &sub).await?;
    let app = &call.app.app;
    let _one_write = WRITES.lock().await;
    let control = &call.state.control;
    let existing = control.subscriptions(app).map_err(internal)?;
    if existing.iter().any(|s| s.id == sub.id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("id: a subscription `{}` exists", sub.id),
        ));
    }
    if existing.len() >= MAX_PER_APP {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_subscriptions",
            format!("an app may have at most {MAX_PER_APP} subscriptions"),
        ));
    }
    check_plugin_config(call, &sub).await?;
    // Refused when another instance created the same id meanwhile.
    if !control
        .create_subscription(app, &sub)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("id: a subscription `{}` exists", sub.id),
        ));
    }
    let written = records::qualified_id(app, &sub.id);
    apply(
        call.state,
        Some(&written),
        control.replace_subscription(app, &sub.id, &sub, None),
    )
    .await?;
    // The only time the secret is shown: the receiver needs it to verify signatures.
    Ok(json(
        StatusCode::CREATED,
        &validate::render(
            &sub,
            &records::qualified_id(app, &sub.id),
            true,
            &circuit_of(call, &sub),
        ),
    ))
}

/// PUT replaces the subscription (a missing `secret` keeps the current one); PATCH merges the
/// body into it (RFC 7396: `null` removes a field).
pub(super) async fn update(call: &Call<'_>, id: &str) -> Result<Response<Body>, ApiError> {
    let app = &call.app.app;
    let _one_write = WRITES.lock().await;
    let old = find(call, id)?;
    let req: SubscriptionRequest = if call.parts.method == http::Method::PATCH {
        let patch: serde_json::Value = validate::parse_json(&call.body)?;
        if !patch.is_object() {
            return Err(validate::invalid("the body must be a JSON object"));
        }
        serde_json::from_value(validate::patched(&old, patch))
            .map_err(|e| validate::invalid(e.to_string()))?
    } else {
        validate::parse_json(&call.body)?
    };
    let sub = validate::build(req, Some(&old), &|r| lookup_plugin(call, r), now_ms())?;
    check_enrich(call, &sub.enrich)?;
    check_grants(call, &sub.events)?;
    super::catalog::check_filter(call, &sub).await?;
    check_plugin_config(call, &sub).await?;
    let control = &call.state.control;
    if !control
        .replace_subscription(app, id, &old, Some(&sub))
        .await
        .map_err(internal)?
    {
        return Err(changed_meanwhile(id));
    }
    let written = records::qualified_id(app, id);
    apply(
        call.state,
        Some(&written),
        control.replace_subscription(app, id, &sub, Some(&old)),
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &validate::render(
            &sub,
            &records::qualified_id(app, id),
            false,
            &circuit_of(call, &sub),
        ),
    ))
}

pub(super) async fn delete(call: &Call<'_>, id: &str) -> Result<Response<Body>, ApiError> {
    let app = &call.app.app;
    let _one_write = WRITES.lock().await;
    let old = find(call, id)?;
    let control = &call.state.control;
    if !control
        .replace_subscription(app, id, &old, None)
        .await
        .map_err(internal)?
    {
        return Err(changed_meanwhile(id));
    }
    apply(call.state, None, control.create_subscription(app, &old)).await?;
    Ok(json(StatusCode::OK, &json!({ "deleted": id })))
}

/// 409: the subscription changed between our read and our write (another request, maybe on
/// another instance); the client reads it again.
pub(super) fn changed_meanwhile(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("subscription `{id}` changed meanwhile; read it again and retry"),
    )
}

/// The app's subscription `id`, or 404 (also for another app's).
pub(super) fn find(call: &Call<'_>, id: &str) -> Result<StoredSubscription, ApiError> {
    if !validate::valid_id(id) {
        return Err(ApiError::not_found());
    }
    call.state
        .control
        .subscription(&call.app.app, id)
        .map_err(internal)?
        .ok_or_else(ApiError::not_found)
}

fn lookup_plugin(call: &Call<'_>, reference: &str) -> Result<Option<String>, ApiError> {
    let all = call
        .state
        .control
        .plugins(&call.app.app)
        .map_err(internal)?;
    Ok(records::find_plugin(all, reference).map(|p| p.hash))
}

/// Asks the plugin to validate the subscription's settings, so a bad `config` is a clear 422
/// naming the plugin's reason rather than a failed reload.
async fn check_plugin_config(call: &Call<'_>, sub: &StoredSubscription) -> Result<(), ApiError> {
    let Some(hash) = &sub.plugin else {
        return Ok(());
    };
    let storage = call.state.snapshot.load().storage.path.clone();
    // Uploaded on another instance, it may not be a file here yet.
    let fetched = call.state.control.fetch_plugin_files(&storage).await;
    let path = records::plugin_file(&storage, hash);
    if let Err(e) = fetched
        && !path.exists()
    {
        return Err(ApiError::storage("cannot fetch the plugin", &e));
    }
    let host = call.state.plugins.host().clone();
    let config = std::sync::Arc::new(sub.config.clone());
    let checked =
        tokio::task::spawn_blocking(move || host.load_file(&path)?.validate_config(&config))
            .await
            .map_err(|e| ApiError::internal("plugin check failed", &e))?;
    checked.map_err(|e| {
        let field = if matches!(e, crate::plugin::PluginError::InvalidConfig(_)) {
            "config"
        } else {
            "plugin"
        };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.code(),
            format!("{field}: {e}"),
        )
    })
}

/// Every event pattern of a subscription must be covered by one the operator granted the app
/// (`events` of the app); `403 event_not_granted` names the first that is not.
fn check_grants(call: &Call<'_>, events: &[String]) -> Result<(), ApiError> {
    let app = crate::auth::apps::find(call.state, crate::auth::apps::Lookup::Name(&call.app.app))
        .map_err(internal)?;
    let grants = app.map(|a| a.grants()).unwrap_or_default();
    for (i, text) in events.iter().enumerate() {
        let pattern = crate::subscriptions::EventPattern::parse(text)
            .map_err(|why| validate::invalid(format!("events[{i}]: {why}")))?;
        if !crate::subscriptions::granted(&grants, &pattern) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "event_not_granted",
                format!(
                    "events[{i}]: `{text}` is not among the events this app may subscribe to ({})",
                    if grants.is_empty() {
                        "none granted".to_owned()
                    } else {
                        grants
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// Every `enrich` entry of an app's subscription must be within what the operator allows
/// apps for some model of a source the app may receive (`[sources.odoo.app_enrich]`);
/// `403 enrich_not_allowed` names the first that is not. (At run time each event is enriched
/// only with what is allowed for its own source and model.)
fn check_enrich(call: &Call<'_>, specs: &[crate::odoo::EnrichSpec]) -> Result<(), ApiError> {
    if specs.is_empty() {
        return Ok(());
    }
    let app = crate::auth::apps::find(call.state, crate::auth::apps::Lookup::Name(&call.app.app))
        .map_err(internal)?;
    let sources = app.and_then(|a| a.sources.clone());
    let snapshot = call.state.snapshot.load();
    let allowances: Vec<&[crate::odoo::EnrichSpec]> = snapshot
        .sources
        .values()
        .filter(|s| sources.as_ref().is_none_or(|only| only.contains(&s.name)))
        .filter_map(|s| s.odoo.as_ref())
        .flat_map(|o| o.app_enrich.values().map(Vec::as_slice))
        .collect();
    for (i, spec) in specs.iter().enumerate() {
        let ok = allowances
            .iter()
            .any(|a| crate::transform::enrich::allowed(spec, a).is_some());
        if !ok {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "enrich_not_allowed",
                format!(
                    "enrich[{i}]: `{}` with fields [{}] is not among what the operator lets apps enrich ([sources.odoo.app_enrich])",
                    spec.field,
                    spec.fields.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The circuit of the receiver host `sub` delivers to.
fn circuit_of(call: &Call<'_>, sub: &StoredSubscription) -> crate::workplane::policy::CircuitState {
    match sub.destination.url.parse::<http::Uri>() {
        Ok(url) => call.state.policies.circuit(&crate::config::authority(&url)),
        Err(_) => crate::workplane::policy::CircuitState::Closed,
    }
}
