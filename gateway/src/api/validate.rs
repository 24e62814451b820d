//! Turning a subscription request (JSON) into a [`StoredSubscription`], checking every field,
//! and rendering a stored one back without its secrets.
//!
//! Every refusal names the field (`destination.url`, `events[2]`, `filter.match.state`) and is
//! a 422 `invalid_subscription`; a body that is not JSON at all is a 400 `malformed_json`.

use std::collections::BTreeMap;
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::records::{StoredDestination, StoredSubscription};
use crate::config::Format;
use crate::config::file::DestinationAuth;
use crate::http_error::ApiError;
use crate::signing::SigningSecret;
use crate::subscriptions::EventPattern;
use crate::subscriptions::filter::PayloadFilter;

/// Most event patterns per subscription.
const MAX_EVENTS: usize = 64;
/// Most plugin settings per subscription.
const MAX_CONFIG: usize = 64;
/// Longest attempt timeout an app may ask for.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest attempt timeout.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Most retries an app may ask for.
const MAX_RETRIES: u32 = 20;
/// Most `enrich` entries per subscription.
const MAX_ENRICH: usize = 64;

/// A create, replace or (merged) update request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionRequest {
    id: Option<String>,
    events: Option<Vec<String>>,
    destination: Option<DestinationRequest>,
    #[serde(default)]
    format: Format,
    filter: Option<PayloadFilter>,
    plugin: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, Value>,
    #[serde(default = "yes")]
    enabled: bool,
    timeout: Option<Value>,
    #[serde(default, deserialize_with = "whole_number")]
    retries: Option<u32>,
    #[serde(default)]
    enrich: Vec<crate::odoo::EnrichSpec>,
    ordering: Option<String>,
}

/// A count given as any JSON number without a fraction: `5` and `5.0` are one value in JSON
/// (and in JSON Schema's `integer`), so both are accepted.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|v| u32::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("retries: `{n}` is not a whole number")))
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationRequest {
    url: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    auth: DestinationAuth,
    rate_limit: Option<String>,
}

/// 422 naming the field.
pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_subscription",
        message,
    )
}

/// Parses a JSON body: 400 when it is not JSON, 422 when its shape is wrong.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => invalid(e.to_string()),
        _ => ApiError::bad_request("malformed_json", format!("the body is not JSON: {e}")),
    })
}

/// A valid id: 1 to 64 letters, digits, `-` or `_`.
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the plugin reference resolves to, given by the caller (it knows the app's uploads).
pub(crate) type PluginLookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>, ApiError>;

/// Checks `req`; `existing` is the subscription being replaced (its secret and creation time
/// are kept when the request gives none).
pub(crate) fn build(
    req: SubscriptionRequest,
    existing: Option<&StoredSubscription>,
    plugin_hash: PluginLookup<'_>,
    now_ms: u64,
) -> Result<StoredSubscription, ApiError> {
    let id = match (req.id, existing) {
        (Some(id), Some(old)) if id != old.id => return Err(invalid("id: cannot be changed")),
        (Some(id), _) => id,
        (None, Some(old)) => old.id.clone(),
        (None, None) => format!("sub_{:016x}", rand::random::<u64>()),
    };
    if !valid_id(&id) {
        return Err(invalid("id: use 1 to 64 letters, digits, `-` or `_`"));
    }
    let events = req
        .events
        .ok_or_else(|| invalid("events: give at least one event pattern"))?;
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(invalid(format!(
            "events: give 1 to {MAX_EVENTS} event patterns"
        )));
    }
    for (i, e) in events.iter().enumerate() {
        EventPattern::parse(e).map_err(|why| invalid(format!("events[{i}]: {why}")))?;
    }
    let dest = req
        .destination
        .ok_or_else(|| invalid("destination: required, with at least `url`"))?;
    let url = dest
        .url
        .ok_or_else(|| invalid("destination.url: required"))?;
    if !crate::delivery::is_http_url(&url) {
        return Err(invalid(format!(
            "destination.url: `{url}` is not an http(s) URL"
        )));
    }
    let secret = match (dest.secret, existing) {
        (Some(s), _) => {
            s.parse::<SigningSecret>()
                .map_err(|e| invalid(format!("destination.secret: {e}")))?;
            s
        }
        (None, Some(old)) => old.destination.secret.clone(),
        (None, None) => SigningSecret::generate().expose_whsec(),
    };
    // A rotation's previous secret goes on signing unless the secret is replaced again.
    let previous_secret = existing
        .filter(|old| old.destination.secret == secret)
        .and_then(|old| old.destination.previous_secret.clone());
    crate::delivery::outbound_auth::validate(&dest.auth)
        .map_err(|e| invalid(format!("destination.{e}")))?;
    if let Some(filter) = &req.filter {
        filter.validate().map_err(invalid)?;
    }
    if req.config.len() > MAX_CONFIG {
        return Err(invalid(format!("config: at most {MAX_CONFIG} settings")));
    }
    let mut config = BTreeMap::new();
    for (k, v) in req.config {
        let text = match v {
            Value::String(s) => s,
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => {
                return Err(invalid(format!(
                    "config.{k}: plugin settings are strings, numbers or booleans"
                )));
            }
        };
        config.insert(k, text);
    }
    let plugin = match req.plugin {
        Some(reference) => Some(plugin_hash(&reference)?.ok_or_else(|| {
            invalid(format!(
                "plugin: `{reference}` is not one of your uploaded plugins (POST /v1/plugins)"
            ))
        })?),
        None => None,
    };
    if plugin.is_none() && !config.is_empty() {
        return Err(invalid("config: plugin settings need a `plugin`"));
    }
    let timeout_ms = req.timeout.map(parse_timeout).transpose()?;
    if req.retries.is_some_and(|r| r > MAX_RETRIES) {
        return Err(invalid(format!("retries: at most {MAX_RETRIES}")));
    }
    if req.enrich.len() > MAX_ENRICH {
        return Err(invalid(format!("enrich: at most {MAX_ENRICH} entries")));
    }
    // Entries naming one field are one entry: the document allows any list, and a repeat
    // asks for nothing the merged entry does not give.
    let enrich = merge_enrich(req.enrich);
    let mut problems = Vec::new();
    crate::odoo::config::validate_enrich("enrich", &enrich, &mut problems);
    if let Some(first) = problems.into_iter().next() {
        return Err(invalid(first));
    }
    if let Some(ordering) = &req.ordering {
        crate::workplane::policy::KeyTemplate::parse(ordering).map_err(invalid)?;
    }
    if let Some(rate) = &dest.rate_limit {
        rate.parse::<crate::workplane::policy::Rate>()
            .map_err(|e| invalid(format!("destination.rate_limit: {e}")))?;
    }
    Ok(StoredSubscription {
        id,
        events,
        destination: StoredDestination {
            url,
            secret,
            auth: dest.auth,
            previous_secret,
            rate_limit: dest.rate_limit,
        },
        format: req.format,
        filter: req.filter,
        plugin,
        config,
        enabled: req.enabled,
        timeout_ms,
        retries: req.retries,
        enrich,
        ordering: req.ordering,
        created_ms: existing.map_or(now_ms, |old| old.created_ms),
        updated_ms: now_ms,
    })
}

/// `"5s"`, `"250ms"` or a number of seconds.
fn parse_timeout(v: Value) -> Result<u64, ApiError> {
    let parsed = match &v {
        Value::String(s) => crate::delivery::parse_duration(s).ok(),
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64),
        _ => None,
    };
    match parsed {
        Some(d) if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) => Ok(d.as_millis() as u64),
        _ => Err(invalid(format!(
            "timeout: give a duration from {MIN_TIMEOUT:?} to {MAX_TIMEOUT:?}, like \"5s\""
        ))),
    }
}

/// The request form of a stored subscription (secrets included): what a PATCH merges into.
pub(crate) fn as_request(sub: &StoredSubscription) -> Value {
    json!({
        "id": sub.id,
        "events": sub.events,
        "destination": { "url": sub.destination.url, "secret": sub.destination.secret, "auth": sub.destination.auth, "rate_limit": sub.destination.rate_limit },
        "format": sub.format,
        "filter": sub.filter,
        "plugin": sub.plugin,
        "config": sub.config,
        "enabled": sub.enabled,
        "timeout": sub.timeout_ms.map(|ms| format!("{ms}ms")),
        "retries": sub.retries,
        "enrich": sub.enrich,
        "ordering": sub.ordering,
    })
}

/// A PATCH body merged into the request form of `current`: RFC 7396, except that a
/// `destination.auth` in the patch replaces the current one whole (the fields of one kind of
/// authentication mean nothing to another, and its secrets are never shown to merge with).
pub(crate) fn patched(current: &StoredSubscription, patch: Value) -> Value {
    let mut merged = as_request(current);
    let replaces_auth = patch
        .pointer("/destination/auth")
        .is_some_and(|a| !a.is_null());
    if replaces_auth
        && let Some(dest) = merged.get_mut("destination").and_then(Value::as_object_mut)
    {
        dest.remove("auth");
    }
    merge_patch(&mut merged, patch);
    merged
}

/// RFC 7396 JSON merge patch: objects merge, `null` removes, anything else replaces. An
/// object merged into something that is not one is merged into `{}`, so its `null`s remove
/// nothing and are dropped.
pub(crate) fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(p) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(&k);
            } else {
                merge_patch(t.entry(k).or_insert(Value::Null), v);
            }
        }
    }
}

/// The answer shape: everything but secrets (`secret` only when `reveal_secret`, on create).
/// The answer's form of a stored subscription; `circuit`: its receiver host's circuit.
pub(crate) fn render(
    sub: &StoredSubscription,
    qualified: &str,
    reveal_secret: bool,
    circuit: &crate::workplane::policy::CircuitState,
) -> Value {
    let auth = match &sub.destination.auth {
        DestinationAuth::None {} => json!({ "type": "none" }),
        DestinationAuth::StaticHeader { name, .. } => {
            json!({ "type": "static_header", "name": name })
        }
        DestinationAuth::OAuth2 {
            token_url,
            client_id,
            scopes,
            ..
        } => {
            json!({ "type": "oauth2", "token_url": token_url, "client_id": client_id, "scopes": scopes })
        }
        DestinationAuth::OAuth1 {
            consumer_key,
            signature_method,
            ..
        } => {
            json!({ "type": "oauth1", "consumer_key": consumer_key, "signature_method": signature_method })
        }
    };
    let mut destination = json!({ "url": sub.destination.url, "auth": auth, "rate_limit": sub.destination.rate_limit });
    if reveal_secret {
        destination["secret"] = json!(sub.destination.secret);
    }
    if let Some(previous) = &sub.destination.previous_secret {
        destination["previous_secret_until_ms"] = json!(previous.until_ms);
    }
    json!({
        "id": sub.id,
        "subscription": qualified,
        "events": sub.events,
        "destination": destination,
        "format": sub.format,
        "filter": sub.filter,
        "plugin": sub.plugin,
        "config": sub.config,
        "enabled": sub.enabled,
        "timeout": sub.timeout_ms.map(|ms| format!("{ms}ms")),
        "retries": sub.retries,
        "enrich": sub.enrich,
        "ordering": sub.ordering,
        "destination_state": destination_state(circuit),
        "created_ms": sub.created_ms,
        "updated_ms": sub.updated_ms,
    })
}

/// What the app's API says of its destination's receiver host: its circuit, and until when an
/// open one holds deliveries back.
fn destination_state(circuit: &crate::workplane::policy::CircuitState) -> Value {
    use crate::workplane::policy::CircuitState;
    let until = match circuit {
        CircuitState::Open { until_ms } => Some(*until_ms),
        _ => None,
    };
    json!({ "circuit": circuit.name(), "open_until_ms": until })
}

/// `specs` with the entries that name one field merged into the first of them: their
/// `fields` together (in order, once each), the last `model` given.
fn merge_enrich(specs: Vec<crate::odoo::EnrichSpec>) -> Vec<crate::odoo::EnrichSpec> {
    let mut merged: Vec<crate::odoo::EnrichSpec> = Vec::with_capacity(specs.len());
    for spec in specs {
        match merged.iter_mut().find(|m| m.field == spec.field) {
            Some(first) => {
                for f in spec.fields {
                    if !first.fields.contains(&f) {
                        first.fields.push(f);
                    }
                }
                if spec.model.is_some() {
                    first.model = spec.model;
                }
            }
            None => merged.push(spec),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_plugins(_: &str) -> Result<Option<String>, ApiError> {
        Ok(None)
    }

    fn check(v: Value) -> Result<StoredSubscription, ApiError> {
        let req: SubscriptionRequest =
            serde_json::from_value(v).map_err(|e| invalid(e.to_string()))?;
        build(req, None, &no_plugins, 1)
    }

    #[test]
    fn a_minimal_request_gets_an_id_and_a_secret() {
        let sub = check(
            json!({"events": ["sale.order.*"], "destination": {"url": "https://example.com/h"}}),
        )
        .unwrap();
        assert!(sub.id.starts_with("sub_"));
        assert!(sub.destination.secret.starts_with("whsec_"));
        assert_eq!((sub.enabled, sub.format), (true, Format::Json));
    }

    #[test]
    fn each_refusal_names_its_field() {
        let base =
            || json!({"events": ["sale.order.*"], "destination": {"url": "https://example.com/h"}});
        let cases = [
            (json!({"id": "no spaces"}), "id:"),
            (json!({"events": []}), "events:"),
            (
                json!({"events": ["sale.order.*", "bad pattern"]}),
                "events[1]",
            ),
            (
                json!({"destination": {"url": "ftp://x"}}),
                "destination.url",
            ),
            (
                json!({"destination": {"url": "https://x", "secret": "plain"}}),
                "destination.secret",
            ),
            (
                json!({"destination": {"url": "https://x", "auth": {"type": "oauth2", "token_url": "nope", "client_id": "a", "client_secret": "b"}}}),
                "destination.auth.token_url",
            ),
            (
                json!({"destination": {"url": "https://x", "auth": {"type": "static_header", "name": "webhook-signature", "value": "x"}}}),
                "destination.auth.name",
            ),
            (json!({"filter": {"fields": [""]}}), "filter.fields[0]"),
            (json!({"plugin": "missing"}), "plugin:"),
            (json!({"config": {"a": "b"}}), "config:"),
            (json!({"timeout": "2h"}), "timeout:"),
            (json!({"retries": 99}), "retries:"),
        ];
        for (patch, field) in cases {
            let mut req = base();
            merge_patch(&mut req, patch);
            let err = check(req).unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert!(err.message.starts_with(field), "{field}: {}", err.message);
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut doc, json!({"a": null, "b": {"c": 5}, "e": [1]}));
        assert_eq!(doc, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
        // Into a value that is not an object, an object's nulls remove nothing (RFC 7396 §2).
        let mut doc = json!({"filter": null});
        merge_patch(
            &mut doc,
            json!({"filter": {"match": null, "fields": ["id"]}}),
        );
        assert_eq!(doc, json!({"filter": {"fields": ["id"]}}));
    }

    #[test]
    fn rendering_hides_secrets() {
        let mut sub = check(json!({"events": ["*"], "destination": {"url": "https://x/h", "auth": {"type": "oauth2", "token_url": "https://x/t", "client_id": "a", "client_secret": "s3cret"}}})).unwrap();
        sub.config.insert("k".into(), "v".into());
        let closed = crate::workplane::policy::CircuitState::Closed;
        let shown = render(&sub, "app.a.x", false, &closed).to_string();
        assert!(
            !shown.contains("s3cret") && !shown.contains("whsec_"),
            "{shown}"
        );
        assert!(
            render(&sub, "app.a.x", true, &closed)
                .to_string()
                .contains("whsec_")
        );
    }
}
