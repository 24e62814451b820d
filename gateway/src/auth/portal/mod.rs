//! Portal links and sessions: how an app's staff reach the portal ([`crate::portal`]) with a
//! browser, for that one app.
//!
//! 1. A **link** is minted for an app, by the app itself (`POST /v1/portal-sessions` with its
//!    OAuth2 or OAuth1 credentials) or by the operator (`POST /admin/apps/{name}/portal-link`):
//!    a random secret, good once, for a few minutes, carried in the URL's fragment
//!    (`/portal#link=...`), which browsers never send to a server or put in a `Referer`.
//! 2. The portal's page exchanges it (`POST /portal/session`) for a **session**: another
//!    random secret in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/portal` (and
//!    `Secure`, as `__Secure-`, when the gateway is reached over HTTPS), so no script reads
//!    it and it is never sent to `/v1/` or `/admin/`; and a CSRF token the page sends back in
//!    `X-Portal-CSRF` with every request (a form or another site's script cannot).
//! 3. Every portal request is checked as an API request of the app is: the app still
//!    registered with the credentials the link was minted under, the scopes it still holds
//!    (and no more than the link's), its rate limit; the API's own handlers do the rest.
//!
//! Only SHA-256 hashes of links and sessions are stored, in the control plane (shared by
//! every instance on NATS). A session ends when it expires, when the page logs out, when the
//! app or the operator revokes the app's sessions, and when the app is removed.

mod request;
mod web;

pub use request::LinkRequest;
pub(crate) use request::whole_secs;
pub(crate) use web::{base_url, cookie, over_https, url};

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use http::request::Parts;

use sha2::{Digest as _, Sha256};

pub use crate::control::portal::{MAX_LINK_TTL, MAX_SESSION_TTL, PortalLink, PortalSession};

use super::AppIdentity;
use super::apps::{self, App, Lookup};
use crate::http_error::ApiError;
use crate::state::State;
use crate::time::now_ms;

/// A link's life unless asked otherwise.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(600);
/// A session's life unless asked otherwise.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(3600);
/// Shortest life of either.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The session cookie's name over plain HTTP (with `__Secure-` before it over HTTPS).
pub const COOKIE: &str = "odoo_gateway_portal";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-portal-csrf";
/// Failed exchanges per minute from one address.
const FAILED_EXCHANGES_PER_MINUTE: u32 = 30;

/// What a link or session is bound to: the app's credential ids now. An app registered again
/// under the same name gets new ids, so its old links and sessions stop working.
pub(crate) fn binding(app: &App) -> String {
    format!(
        "{}|{}",
        app.oauth2.as_ref().map_or("", |c| c.client_id.as_str()),
        app.oauth1.as_ref().map_or("", |c| c.consumer_key.as_str())
    )
}

fn secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn storage(e: crate::store::StoreError) -> ApiError {
    ApiError::storage("portal sessions storage failed", &e)
}

/// A minted link.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The secret, shown once.
    pub link: String,
    /// When it stops working (ms since the epoch).
    pub expires_ms: u64,
    /// How long its session will live.
    pub session_ttl: Duration,
    /// The scopes its session gets.
    pub scopes: Vec<String>,
}

/// Mints a link for `app`, its session's scopes within `allowed`.
pub(crate) async fn mint(
    state: &State,
    app: &App,
    allowed: &[String],
    request: LinkRequest,
    minted_by: &str,
    invalid: fn(String) -> ApiError,
) -> Result<Minted, ApiError> {
    let scopes = match request.scopes {
        None => allowed.to_vec(),
        Some(asked) => {
            let asked =
                apps::normalize_scopes(&asked).map_err(|e| invalid(format!("scopes: {e}")))?;
            if let Some(extra) = asked.iter().find(|s| !allowed.contains(s)) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    format!("scopes: `{extra}` is more than this caller holds"),
                ));
            }
            asked
        }
    };
    if scopes.is_empty() {
        return Err(invalid("scopes: give at least one scope".into()));
    }
    let bounded = |name: &str, secs: Option<u64>, default: Duration, max: Duration| {
        let ttl = secs.map_or(default, Duration::from_secs);
        if (MIN_TTL..=max).contains(&ttl) {
            Ok(ttl)
        } else {
            Err(invalid(format!(
                "{name}: give {} to {} seconds",
                MIN_TTL.as_secs(),
                max.as_secs()
            )))
        }
    };
    let link_ttl = bounded(
        "link_ttl_secs",
        request.link_ttl_secs,
        DEFAULT_LINK_TTL,
        MAX_LINK_TTL,
    )?;
    let session_ttl = bounded(
        "session_ttl_secs",
        request.session_ttl_secs,
        DEFAULT_SESSION_TTL,
        MAX_SESSION_TTL,
    )?;
    let link = secret();
    let expires_ms = now_ms() + link_ttl.as_millis() as u64;
    let record = PortalLink {
        app: app.name.clone(),
        credentials: binding(app),
        scopes: scopes.clone(),
        expires_ms,
        session_ttl_ms: session_ttl.as_millis() as u64,
        minted_by: minted_by.to_owned(),
    };
    state
        .control
        .put_portal_link(&key(&link), &record)
        .await
        .map_err(storage)?;
    state.store.durable().await.map_err(storage)?;
    tracing::info!(app = %app.name, minted_by, scopes = ?scopes, "portal link minted");
    Ok(Minted {
        link,
        expires_ms,
        session_ttl,
        scopes,
    })
}

fn refused(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The app `name` as it is registered now, if it still has `credentials`.
async fn bound_app(
    state: &State,
    name: &str,
    credentials: &str,
) -> Result<Option<std::sync::Arc<App>>, ApiError> {
    let mut app = apps::find(state, Lookup::Name(name)).map_err(storage)?;
    if app.is_none() {
        // A shared control plane's mirror may lag behind an app registered elsewhere.
        app = state
            .control
            .app_now(name)
            .await
            .map_err(storage)?
            .filter(|a| state.snapshot.load().apps.get(&a.name).is_none())
            .map(std::sync::Arc::new);
    }
    Ok(app.filter(|a| binding(a) == credentials))
}

/// Exchanges a link for a session: the session's secret (for the cookie) and the session.
/// A link works once.
pub(crate) async fn exchange(
    state: &State,
    parts: &Parts,
    link: &str,
) -> Result<(String, PortalSession), ApiError> {
    let failed = |code: &'static str, message: &str| -> ApiError {
        let peer = parts
            .extensions
            .get::<crate::inbound::Connection>()
            .map_or_else(|| "-".to_owned(), |c| c.peer.ip().to_string());
        let limited = state.auth.failure_limiter.check(
            &format!("portal {peer}"),
            FAILED_EXCHANGES_PER_MINUTE,
            std::time::Instant::now(),
        );
        match limited {
            Err(wait) => super::rate_limited(wait),
            Ok(()) => refused(code, message),
        }
    };
    let taken = state
        .control
        .take_portal_link(&key(link))
        .await
        .map_err(storage)?;
    let Some(record) = taken else {
        return Err(failed(
            "invalid_link",
            "this portal link is unknown or was already used: ask for a new one",
        ));
    };
    let now = now_ms();
    if record.expires_ms <= now {
        return Err(failed(
            "link_expired",
            "this portal link has expired: ask for a new one",
        ));
    }
    let Some(app) = bound_app(state, &record.app, &record.credentials).await? else {
        return Err(failed(
            "invalid_link",
            "the app this link was made for is no longer registered",
        ));
    };
    let token = secret();
    let session = PortalSession {
        id: hex::encode(rand::random::<[u8; 8]>()),
        app: app.name.clone(),
        credentials: record.credentials,
        scopes: record.scopes,
        created_ms: now,
        expires_ms: now + record.session_ttl_ms,
        csrf: secret(),
        minted_by: record.minted_by,
    };
    state
        .control
        .put_portal_session(&key(&token), &session)
        .await
        .map_err(storage)?;
    state.store.durable().await.map_err(storage)?;
    tracing::info!(app = %session.app, session = %session.id, "portal session opened");
    Ok((token, session))
}

/// The session of a portal request, checked as an API request of its app is: live, its app
/// still registered under the same credentials, the CSRF token when `csrf` (every request but
/// reading the session itself), and the app's rate limit. Its identity holds the scopes the
/// app still has, within the session's. Also the key it is stored under.
pub(crate) async fn authenticate(
    state: &State,
    parts: &Parts,
    csrf: bool,
) -> Result<(AppIdentity, PortalSession, String), ApiError> {
    let Some(token) = web::cookie_token(parts) else {
        return Err(refused(
            "no_session",
            "no portal session: open a portal link",
        ));
    };
    let stored_key = key(&token);
    let session = state
        .control
        .portal_session(&stored_key)
        .await
        .map_err(storage)?
        .ok_or_else(|| {
            refused(
                "invalid_session",
                "this portal session ended (revoked, or logged out): open a new portal link",
            )
        })?;
    if session.expires_ms <= now_ms() {
        let _ = state.control.remove_portal_session(&stored_key).await;
        return Err(refused(
            "session_expired",
            "this portal session has expired: open a new portal link",
        ));
    }
    if csrf {
        let given = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !crate::config::constant_time_eq(given.as_bytes(), session.csrf.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                format!("a portal request must carry the session's {CSRF_HEADER} header"),
            ));
        }
    }
    let Some(app) = bound_app(state, &session.app, &session.credentials).await? else {
        return Err(refused(
            "invalid_session",
            "the app of this portal session is no longer registered",
        ));
    };
    super::check_rate_limit(state, &app)?;
    let scopes = session
        .scopes
        .iter()
        .filter(|s| app.scopes.contains(s))
        .cloned()
        .collect();
    Ok((
        AppIdentity {
            app: app.name.clone(),
            scopes,
        },
        session,
        stored_key,
    ))
}

/// Ends the session stored under `stored_key`.
pub(crate) async fn end(state: &State, stored_key: &str) -> Result<(), ApiError> {
    state
        .control
        .remove_portal_session(stored_key)
        .await
        .map_err(storage)?;
    state.store.durable().await.map_err(storage)
}

/// Ends every link and session of `app`; how many.
pub(crate) async fn revoke_app(state: &State, app: &str) -> Result<usize, ApiError> {
    let removed = state
        .control
        .remove_portal_sessions(app)
        .await
        .map_err(storage)?;
    state.store.durable().await.map_err(storage)?;
    tracing::info!(app, removed, "portal links and sessions revoked");
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_stored_by_hash_only() {
        let s = secret();
        assert!(URL_SAFE_NO_PAD.decode(&s).unwrap().len() == 32);
        assert_eq!(key(&s).len(), 64);
        assert_ne!(key(&s), s);
    }
}
