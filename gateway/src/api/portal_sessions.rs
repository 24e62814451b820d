//! `/v1/portal-sessions`: an app mints a link to its own portal (`POST`, answered with the
//! link's URL, shown once), or ends every link and session of its portal (`DELETE`). See
//! [`crate::auth::portal`].

use http::{Response, StatusCode, header};
use serde_json::json;

use super::{Call, internal};
use crate::auth::apps::Lookup;
use crate::auth::portal::{self, LinkRequest};
use crate::http_error::{ApiError, Body, json};

fn invalid(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_portal_session",
        message,
    )
}

/// `POST /v1/portal-sessions` `{"scopes"?, "link_ttl"?, "session_ttl"?}`: 201 with the link.
pub(super) async fn create(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let request = LinkRequest::parse(&call.body, invalid)?;
    let app = crate::auth::apps::find(call.state, Lookup::Name(&call.app.app))
        .map_err(internal)?
        .ok_or_else(ApiError::not_found)?;
    let minted = portal::mint(call.state, &app, &call.app.scopes, request, "app", invalid).await?;
    let base = portal::base_url(call.state, call.parts);
    let mut response = json(
        StatusCode::CREATED,
        &json!({
            "url": portal::url(&base, &minted.link),
            "link": minted.link,
            "expires_ms": minted.expires_ms,
            "session_ttl_secs": minted.session_ttl.as_secs(),
            "scopes": minted.scopes,
        }),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// `DELETE /v1/portal-sessions`: every link and session of the app's portal ends.
pub(super) async fn revoke(call: &Call<'_>) -> Result<Response<Body>, ApiError> {
    let removed = portal::revoke_app(call.state, &call.app.app).await?;
    Ok(json(StatusCode::OK, &json!({ "revoked": removed })))
}
