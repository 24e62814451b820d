//! `POST /v1/subscriptions/{id}/rotate-secret`: a new signing secret, shown once. The one it
//! replaces goes on signing beside it (Standard Webhooks sends one signature per secret) for
//! `keep_previous_secs` (default a day, at most a week; `0` drops it at once), so a receiver
//! can switch to the new secret without refusing a delivery meanwhile.

use std::time::Duration;

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::records::{PreviousSecret, qualified_id};
use super::subscriptions::{changed_meanwhile, find};
use super::{Call, WRITES, apply, internal, validate};
use crate::http_error::{ApiError, Body, json};
use crate::signing::SigningSecret;
use crate::time::now_ms;

/// How long the previous secret signs unless asked otherwise.
const DEFAULT_KEEP: Duration = Duration::from_secs(24 * 3600);
/// The longest it may.
const MAX_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default, deserialize_with = "crate::auth::portal::whole_secs")]
    keep_previous_secs: Option<u64>,
}

pub(super) async fn rotate(call: &Call<'_>, id: &str) -> Result<Response<Body>, ApiError> {
    let request: Rotate = if call.body.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        validate::parse_json(&call.body)?
    };
    let keep = request
        .keep_previous_secs
        .map_or(DEFAULT_KEEP, Duration::from_secs);
    if keep > MAX_KEEP {
        return Err(validate::invalid(format!(
            "keep_previous_secs: at most {}",
            MAX_KEEP.as_secs()
        )));
    }
    let app = &call.app.app;
    let _one_write = WRITES.lock().await;
    let old = find(call, id)?;
    let now = now_ms();
    let mut sub = old.clone();
    sub.destination.previous_secret = (!keep.is_zero()).then(|| PreviousSecret {
        secret: old.destination.secret.clone(),
        until_ms: now + keep.as_millis() as u64,
    });
    sub.destination.secret = SigningSecret::generate().expose_whsec();
    sub.updated_ms = now;
    let control = &call.state.control;
    if !control
        .replace_subscription(app, id, &old, Some(&sub))
        .await
        .map_err(internal)?
    {
        return Err(changed_meanwhile(id));
    }
    let written = qualified_id(app, id);
    apply(
        call.state,
        Some(&written),
        control.replace_subscription(app, id, &sub, Some(&old)),
    )
    .await?;
    tracing::info!(app = %app, subscription = %id, "signing secret rotated");
    // The only time the new secret is shown.
    Ok(json(
        StatusCode::OK,
        &json!({
            "id": id,
            "subscription": written,
            "secret": sub.destination.secret,
            "previous_secret_until_ms": sub.destination.previous_secret.map(|p| p.until_ms),
        }),
    ))
}
