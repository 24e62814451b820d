//! Checking the credentials of one API request: a bearer token (RFC 6750 §2.1, header only)
//! or an OAuth1 signature (RFC 5849 §3.2, protocol parameters in the `Authorization` header).
//!
//! Answers follow RFC 6750 §3 (bearer) and RFC 5849 §3.2 (OAuth1: 400 for a malformed
//! request, 401 for credentials that do not verify); bodies keep the gateway's error shape.

use std::sync::Arc;

use http::request::Parts;
use http::{StatusCode, header};

use super::REALM;
use super::apps::{self, App, Lookup};
use super::oauth1::{self, SignatureMethod};
use crate::guards::NonceError;
use crate::http_error::ApiError;
use crate::state::State;
use crate::time::now_ms;

use crate::signing::oauth1::TIMESTAMP_WINDOW_SECS;

fn invalid_token(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", message).with_header(
        header::WWW_AUTHENTICATE,
        format!(
            "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{message}\""
        ),
    )
}

fn storage(e: crate::store::StoreError) -> ApiError {
    ApiError::storage("authentication storage failed", &e)
}

/// A bearer token: live, and its app still registered with the client id it was issued to.
/// The scopes are those of the token that the app still holds.
pub(super) async fn bearer(
    state: &Arc<State>,
    authorization: &str,
) -> Result<(Arc<App>, Vec<String>), ApiError> {
    let token = authorization
        .trim()
        .split_once(' ')
        .map_or("", |(_, t)| t.trim());
    if token.is_empty() || token.contains(' ') {
        // RFC 6750 §3.1: a malformed request is `invalid_request`, answered 400.
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed bearer credentials",
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            format!("Bearer realm=\"{REALM}\", error=\"invalid_request\""),
        ));
    }
    let now = now_ms() / 1000;
    let record = state
        .control
        .token(token, now)
        .await
        .map_err(storage)?
        .ok_or_else(|| invalid_token("the access token is unknown, expired or revoked"))?;
    let mut app = apps::find(state, Lookup::Name(&record.app)).map_err(storage)?;
    if app.is_none() && state.snapshot.load().apps.get(&record.app).is_none() {
        // A shared control plane's mirror may not have caught up with an app registered on
        // another instance: the bucket decides.
        app = state
            .control
            .app_now(&record.app)
            .await
            .map_err(storage)?
            .map(Arc::new);
    }
    let app = app
        .filter(|a| {
            a.oauth2
                .as_ref()
                .is_some_and(|c| c.client_id == record.client_id)
        })
        .ok_or_else(|| invalid_token("the access token's app is no longer registered"))?;
    let scopes = record
        .scopes
        .into_iter()
        .filter(|s| app.scopes.contains(s))
        .collect();
    Ok((app, scopes))
}

fn oauth1_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
        .with_header(header::WWW_AUTHENTICATE, format!("OAuth realm=\"{REALM}\""))
}

fn malformed(message: impl Into<String>) -> ApiError {
    oauth1_error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// An OAuth1-signed request, verified against the app's consumer and token credentials, its
/// timestamp within the window and its nonce unused.
pub(super) async fn oauth1(
    state: &Arc<State>,
    parts: &Parts,
    body: &[u8],
) -> Result<(Arc<App>, Vec<String>), ApiError> {
    let header_value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let header_params =
        oauth1::parse_authorization(header_value).map_err(|e| malformed(e.to_string()))?;
    let mut protocol = std::collections::HashMap::new();
    for (name, value) in &header_params {
        if name.starts_with("oauth_") && protocol.insert(name.as_str(), value.as_str()).is_some() {
            return Err(malformed(
                oauth1::OAuth1Error::Duplicate(name.clone()).to_string(),
            ));
        }
    }
    let required = |name: &'static str| {
        protocol
            .get(name)
            .copied()
            .ok_or_else(|| malformed(oauth1::OAuth1Error::Missing(name).to_string()))
    };
    let (consumer_key, token, signature) = (
        required("oauth_consumer_key")?,
        required("oauth_token")?,
        required("oauth_signature")?,
    );
    let (nonce, timestamp) = (required("oauth_nonce")?, required("oauth_timestamp")?);
    let method = required("oauth_signature_method")?;
    let method = SignatureMethod::parse(method)
        .filter(|m| *m != SignatureMethod::Plaintext)
        .ok_or_else(|| {
            malformed(format!(
                "unsupported oauth_signature_method `{method}` (use HMAC-SHA1 or HMAC-SHA256)"
            ))
        })?;
    if protocol.get("oauth_version").is_some_and(|v| *v != "1.0") {
        return Err(malformed("oauth_version must be 1.0"));
    }
    let timestamp: u64 = timestamp
        .parse()
        .map_err(|_| malformed("oauth_timestamp must be whole seconds"))?;
    if nonce.is_empty() {
        return Err(malformed("oauth_nonce is empty"));
    }

    // Signed parameters (§3.4.1.3.1): the header's (without realm and the signature), the
    // query's, and a form body's.
    let mut params: Vec<(String, String)> = header_params
        .iter()
        .filter(|(n, _)| n != "realm" && n != "oauth_signature")
        .cloned()
        .collect();
    let mut others = parts
        .uri
        .query()
        .map(oauth1::parse_form)
        .transpose()
        .map_err(|e| malformed(e.to_string()))?
        .unwrap_or_default();
    let form_body = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if form_body {
        let text =
            std::str::from_utf8(body).map_err(|_| malformed("the form body is not UTF-8"))?;
        others.extend(oauth1::parse_form(text).map_err(|e| malformed(e.to_string()))?);
    }
    if others.iter().any(|(n, _)| n.starts_with("oauth_")) {
        return Err(malformed(
            "OAuth protocol parameters belong in the Authorization header only",
        ));
    }
    params.extend(others);

    let now = now_ms() / 1000;
    if now.abs_diff(timestamp) > TIMESTAMP_WINDOW_SECS {
        return Err(oauth1_error(
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_window",
            format!(
                "oauth_timestamp is more than {TIMESTAMP_WINDOW_SECS} s away from the gateway's clock ({now})"
            ),
        ));
    }
    let unknown = || {
        oauth1_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "unknown consumer key or token",
        )
    };
    let app = apps::find(state, Lookup::ConsumerKey(consumer_key))
        .map_err(storage)?
        .ok_or_else(unknown)?;
    let Some(credentials) = app.oauth1.as_ref() else {
        return Err(unknown());
    };
    let expected_token = credentials.token.as_deref().unwrap_or("");
    if !oauth1::signature_matches(expected_token, token) {
        return Err(unknown());
    }

    let url = request_url(state, parts)?;
    let base_uri = oauth1::base_string_uri(&url).map_err(|e| malformed(e.to_string()))?;
    let base = oauth1::signature_base_string(parts.method.as_str(), &base_uri, &params);
    let expected = oauth1::sign(
        &base,
        &credentials.consumer_secret,
        &credentials.token_secret,
        method,
    );
    if !oauth1::signature_matches(&expected, signature) {
        tracing::debug!(app = %app.name, base_string = %base, "OAuth1 signature mismatch");
        return Err(oauth1_error(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "the OAuth1 signature does not verify",
        ));
    }
    // The app's rate limit before its nonce is remembered: an app over its limit cannot fill
    // the nonce memory, let alone other apps' share of it.
    super::check_rate_limit(state, &app)?;
    match state
        .auth
        .nonces
        .check(consumer_key, nonce, timestamp, now, TIMESTAMP_WINDOW_SECS)
    {
        Ok(()) => {}
        Err(NonceError::Replayed) => {
            return Err(oauth1_error(
                StatusCode::UNAUTHORIZED,
                "nonce_reused",
                "this oauth_nonce was already used",
            ));
        }
        Err(NonceError::Full) => {
            return Err(super::rate_limited(std::time::Duration::from_secs(1)));
        }
    }
    // New to this instance; with a shared control plane, also to every other one.
    if !state
        .control
        .claim_nonce(consumer_key, nonce, timestamp)
        .await
        .map_err(storage)?
    {
        return Err(oauth1_error(
            StatusCode::UNAUTHORIZED,
            "nonce_reused",
            "this oauth_nonce was already used",
        ));
    }
    let scopes = app.scopes.clone();
    Ok((app, scopes))
}

/// The URL the client signed: `server.public_url`'s scheme and authority if set, else the
/// listener's scheme (`https` on the TLS listener) and the `Host` header; then the path.
fn request_url(state: &Arc<State>, parts: &Parts) -> Result<String, ApiError> {
    let public = state.snapshot.load().server.public_url.clone();
    let path = parts.uri.path();
    if let Some(public) = public {
        let uri: http::Uri = public
            .parse()
            .map_err(|_| malformed("server.public_url is not a URL"))?;
        if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
            return Ok(format!("{scheme}://{authority}{path}"));
        }
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .ok_or_else(|| malformed("the request has no Host header"))?;
    // The scheme the client used to reach this listener.
    let tls = parts
        .extensions
        .get::<crate::inbound::Connection>()
        .is_some_and(|c| c.tls);
    let scheme = if tls { "https" } else { "http" };
    Ok(format!("{scheme}://{host}{path}"))
}
