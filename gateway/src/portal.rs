//! The app portal: for one third-party app at a time, in a browser, what the app's API allows
//! and nothing more (its subscriptions, the event catalog, the delivery log, dead letters and
//! replays, dry-runs of its own plugins).
//!
//! - `GET /portal[/<asset>]`: the static shell (`gateway/portal/`: HTML, one script, one
//!   style sheet, built in), holding no data, served without a session and with the
//!   console's strict Content-Security-Policy;
//! - `/portal/session`: `POST {"link"}` exchanges a portal link for a session (the cookie,
//!   and the CSRF token the page keeps in memory), `GET` tells the page whose session it has,
//!   `DELETE` ends it (see [`crate::auth::portal`]);
//! - `/portal/api/v1/<rest>`: the app API itself ([`crate::api::route_portal`]), for the
//!   session's app, with the session's scopes and the app's rate limit. A session reaches
//!   nothing else: not `/admin/` (its cookie is scoped to `/portal`, and the admin API takes
//!   only the admin token), and not another portal session.
//!
//! This module never decides what an app may see: the API's handlers do, as for any call.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;

use crate::auth::portal::{self, PortalSession};
use crate::http_error::{ApiError, Body};
use crate::state::State;

const INDEX: &str = include_str!("../portal/index.html");
const SCRIPT: &str = include_str!("../portal/app.js");
const STYLE: &str = include_str!("../portal/app.css");
const ICON: &str = include_str!("../portal/icon.svg");

/// Largest body of `POST /portal/session`.
const MAX_EXCHANGE_BODY: usize = 4096;

/// Routes `/portal/<rest>`.
pub async fn route(
    state: &Arc<State>,
    req: Request<Incoming>,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    match rest {
        [] | ["" | "index.html"] => shell(req.method(), INDEX, "text/html; charset=utf-8"),
        ["app.js"] => shell(req.method(), SCRIPT, "text/javascript; charset=utf-8"),
        ["app.css"] => shell(req.method(), STYLE, "text/css; charset=utf-8"),
        ["icon.svg"] => shell(req.method(), ICON, "image/svg+xml"),
        ["session"] => session(state, req).await,
        ["api", "v1", api @ ..] => {
            let (parts, body) = req.into_parts();
            let (app, _, _) = portal::authenticate(state, &parts, true).await?;
            let mut response = crate::api::route_portal(state, parts, body, api, app).await?;
            no_store(&mut response);
            Ok(response)
        }
        _ => Err(ApiError::not_found()),
    }
}

/// The policy of every portal answer, as the console's: this origin's own script, style,
/// images and requests only.
pub const CONTENT_SECURITY_POLICY: &str = crate::console::CONTENT_SECURITY_POLICY;

fn shell(
    method: &Method,
    body: &'static str,
    content_type: &'static str,
) -> Result<Response<Body>, ApiError> {
    // The link is in the fragment, which is never sent; no referrer leaves either way.
    crate::console::asset_response(method, body, content_type)
}

fn no_store(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// What the page learns of its session.
fn described(session: &PortalSession) -> serde_json::Value {
    json!({
        "session": session.id,
        "app": session.app,
        "scopes": session.scopes,
        "expires_ms": session.expires_ms,
        "minted_by": session.minted_by,
        "csrf": session.csrf,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    link: String,
}

/// `/portal/session`: exchange (`POST`), read (`GET`), end (`DELETE`).
async fn session(state: &Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let secure = portal::over_https(state, &parts);
    let mut response = match method {
        Method::POST => {
            // A JSON body cannot come from another site's form, and a browser says when a
            // request is another site's: neither may log someone into a portal.
            let json_body = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
            if !json_body {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send {\"link\": \"...\"} as application/json",
                ));
            }
            let cross_site = parts
                .headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes() == b"cross-site");
            if cross_site {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "cross_site",
                    "a portal link is exchanged from the portal's own page",
                ));
            }
            let body = crate::inbound::read_body(body, &parts.headers, MAX_EXCHANGE_BODY).await?;
            let asked: Exchange = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request("invalid_request", format!("expected {{\"link\"}}: {e}"))
            })?;
            let (token, session) = portal::exchange(state, &parts, asked.link.trim()).await?;
            let ttl = std::time::Duration::from_millis(
                session.expires_ms.saturating_sub(session.created_ms),
            );
            let mut response = crate::http_error::json(StatusCode::CREATED, &described(&session));
            set_cookie(&mut response, &portal::cookie(&token, secure, ttl));
            response
        }
        Method::GET | Method::HEAD => {
            let (_, session, _) = portal::authenticate(state, &parts, false).await?;
            crate::http_error::json(StatusCode::OK, &described(&session))
        }
        Method::DELETE => {
            let (_, session, key) = portal::authenticate(state, &parts, true).await?;
            portal::end(state, &key).await?;
            tracing::info!(app = %session.app, session = %session.id, "portal session ended");
            let mut response =
                crate::http_error::json(StatusCode::OK, &json!({ "ended": session.id }));
            set_cookie(
                &mut response,
                &portal::cookie("", secure, std::time::Duration::ZERO),
            );
            response
        }
        _ => return Err(ApiError::method_not_allowed("GET, POST, DELETE")),
    };
    no_store(&mut response);
    Ok(response)
}

fn set_cookie(response: &mut Response<Body>, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_has_no_inline_script_and_names_its_assets() {
        assert!(INDEX.contains(r#"<script src="/portal/app.js" defer></script>"#));
        assert!(INDEX.contains(r#"href="/portal/app.css""#));
        assert_eq!(
            INDEX.matches("<script").count(),
            INDEX.matches("<script src=").count()
        );
        assert!(!INDEX.contains(" style=") && !INDEX.contains(" onclick="));
        // Text from the gateway is set as text, never parsed as HTML.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
    }

    #[test]
    fn assets_carry_the_policy() {
        let js = shell(&Method::GET, SCRIPT, "text/javascript; charset=utf-8").expect("served");
        assert_eq!(js.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            js.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ASCII")
                .contains("script-src 'self'")
        );
        let post = shell(&Method::POST, INDEX, "text/html").expect_err("405");
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
