//! Third-party apps and how their requests are authenticated: the registered [`apps`], the
//! OAuth2 authorization server ([`oauth2`], opaque tokens in `tokens`), OAuth1 signatures
//! ([`oauth1`], checked against a request in `request`), the per-app rate limits and
//! nonce memory (`limits`), and the app portal's links and sessions ([`portal`]).
//!
//! It owns deciding *who* an API request comes from and which scopes it holds
//! ([`authenticate`], [`require_scope`]); what an app may then see or change is the API's
//! business. It never logs a secret or a token.
//!
//! `GET /v1/whoami` is a small protected route that answers the caller's identity (app and
//! scopes); it needs the `read` scope. It lets apps (and the tests) check their credentials;
//! `POST` works too, so that an OAuth1 client can check how it signs a form body.

pub(crate) mod admin;
pub mod apps;
pub use crate::guards::AuthState;
pub mod oauth2;
pub mod portal;
mod request;
pub(crate) use crate::control::tokens;

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

pub use crate::signing::oauth1;
pub use apps::{App, ConfigApps};
pub use oauth1::{
    OAuth1Credentials, SignatureMethod, authorization_header, authorization_header_now,
    sign_request,
};

use crate::http_error::{ApiError, Body, json};
use crate::state::State;

/// The realm of every challenge.
pub const REALM: &str = "odoo-gateway";

/// Who an authenticated API request comes from, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppIdentity {
    /// The app's name.
    pub app: String,
    /// The scopes granted (`read`, `write`).
    pub scopes: Vec<String>,
}

impl AppIdentity {
    /// Whether the app may read.
    pub fn can_read(&self) -> bool {
        self.scopes.iter().any(|s| s == "read")
    }

    /// Whether the app may write.
    pub fn can_write(&self) -> bool {
        self.scopes.iter().any(|s| s == "write")
    }
}

/// Authenticates an API request by Bearer token (RFC 6750) or OAuth1 signature (RFC 5849), applies the app's rate limit.
pub async fn authenticate(
    state: &Arc<State>,
    parts: &Parts,
    body: &[u8],
) -> Result<AppIdentity, ApiError> {
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let scheme = authorization.map(|a| a.trim_start().split(' ').next().unwrap_or(""));
    let (app, scopes) = match scheme {
        Some(s) if s.eq_ignore_ascii_case("bearer") => {
            let (app, scopes) = request::bearer(state, authorization.unwrap_or("")).await?;
            check_rate_limit(state, &app)?;
            (app, scopes)
        }
        // Rate-limited inside, before the nonce is stored.
        Some(s) if s.eq_ignore_ascii_case("oauth") => request::oauth1(state, parts, body).await?,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "authenticate with an OAuth2 bearer token or an OAuth1 signature",
            )
            .with_header(
                header::WWW_AUTHENTICATE,
                format!("Bearer realm=\"{REALM}\""),
            ));
        }
    };
    Ok(AppIdentity {
        app: app.name.clone(),
        scopes,
    })
}

/// 403 insufficient_scope per RFC 6750 when `scope` is missing.
pub fn require_scope(id: &AppIdentity, scope: &str) -> Result<(), ApiError> {
    if id.scopes.iter().any(|s| s == scope) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        format!("this request needs the `{scope}` scope"),
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\""),
    ))
}

/// 429 `rate_limited` with `Retry-After` in whole seconds (at least 1).
/// Spends one of `app`'s API requests, or answers 429.
pub(crate) fn check_rate_limit(state: &State, app: &App) -> Result<(), ApiError> {
    state
        .auth
        .api_limiter
        .check(
            &app.name,
            app.rate_limit_per_minute,
            std::time::Instant::now(),
        )
        .map_err(rate_limited)
}

pub(crate) fn rate_limited(wait: Duration) -> ApiError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests; retry later",
    )
    .with_header(header::RETRY_AFTER, seconds.max(1).to_string())
}

/// `GET|POST /v1/whoami`: the caller's identity; needs the `read` scope.
pub(crate) async fn whoami(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("GET, POST"));
    }
    let (parts, body) = req.into_parts();
    let limit = state.snapshot.load().server.max_body_bytes;
    let body = crate::inbound::read_body(body, &parts.headers, limit).await?;
    let id = authenticate(state, &parts, &body).await?;
    require_scope(&id, "read")?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "app": id.app, "scopes": id.scopes }),
    ))
}
