//! The OAuth2 authorization server: `POST /oauth2/token` (client-credentials grant only,
//! RFC 6749 §4.4), `POST /oauth2/introspect` (RFC 7662) and `POST /oauth2/revoke` (RFC 7009).
//!
//! Errors here have the RFC 6749 §5.2 shape (`{"error", "error_description"}`), not the
//! gateway's usual one, because OAuth2 client libraries read them; only the rate-limit answer
//! (429 `rate_limited`) is the gateway's own. Every answer carries `Cache-Control: no-store`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::apps::{self, App, Lookup};
use super::oauth1::parse_form;
use super::tokens::TokenRecord;
use super::{REALM, rate_limited};
use crate::http_error::{ApiError, Body, json};
use crate::state::State;
use crate::time::now_ms;

/// Largest form accepted by the OAuth2 endpoints.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// An RFC 6749 §5.2 error.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type` or `invalid_scope`.
    pub error: &'static str,
    /// For people.
    pub description: String,
    /// 401 with a `Basic` challenge: client authentication failed or is missing.
    pub challenge: bool,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
            challenge: false,
        }
    }

    /// Always 401 with a `Basic` challenge, however the client tried to authenticate:
    /// RFC 7662 §2.1 asks it of introspection, and RFC 6749 §5.2 (which RFC 7009 §2.2.1 and
    /// the token endpoint follow) allows it for credentials in the form, so that all three
    /// endpoints answer a failed client authentication the same way.
    fn invalid_client() -> Self {
        Self {
            error: "invalid_client",
            description: "client authentication failed".into(),
            challenge: true,
        }
    }

    /// The response.
    pub fn into_response(self) -> Response<Body> {
        let status = if self.challenge {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut response = json(
            status,
            &serde_json::json!({ "error": self.error, "error_description": self.description }),
        );
        if self.challenge {
            let challenge = format!("Basic realm=\"{REALM}\"");
            if let Ok(v) = HeaderValue::try_from(challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        no_store(response)
    }
}

fn no_store(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Routes `/oauth2/<rest>`.
pub(crate) async fn route(
    state: &Arc<State>,
    req: Request<Incoming>,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    let endpoint = match rest {
        ["token"] => Endpoint::Token,
        ["introspect"] => Endpoint::Introspect,
        ["revoke"] => Endpoint::Revoke,
        _ => return Err(ApiError::not_found()),
    };
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let (parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<crate::inbound::Connection>()
        .map(|c| c.peer.ip());
    let body = crate::inbound::read_body(body, &parts.headers, MAX_FORM_BYTES).await?;
    match handle(state, endpoint, &parts.headers, &body, peer).await {
        Ok(response) => Ok(no_store(response)),
        Err(Refusal::OAuth(e)) => Ok(e.into_response()),
        Err(Refusal::Api(e)) => Err(e),
    }
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Token,
    Introspect,
    Revoke,
}

enum Refusal {
    OAuth(OAuthError),
    Api(ApiError),
}

impl From<OAuthError> for Refusal {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Api(ApiError::storage("OAuth2 storage failed", &e))
    }
}

async fn handle(
    state: &Arc<State>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
    peer: Option<std::net::IpAddr>,
) -> Result<Response<Body>, Refusal> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(OAuthError::new(
            "invalid_request",
            "send the parameters as application/x-www-form-urlencoded",
        )
        .into());
    }
    let form = Form::parse(body)?;
    if matches!(endpoint, Endpoint::Token) && form.get("grant_type").is_none() {
        return Err(OAuthError::new("invalid_request", "`grant_type` is missing").into());
    }
    let app = authenticate_client(state, headers, &form, peer)?;
    let client_id = app
        .oauth2
        .as_ref()
        .map(|c| c.client_id.clone())
        .unwrap_or_default();
    let now = now_ms() / 1000;
    let tokens = &state.control;
    match endpoint {
        Endpoint::Token => {
            let grant = form.get("grant_type").unwrap_or_default();
            if grant != "client_credentials" {
                return Err(OAuthError::new(
                    "unsupported_grant_type",
                    "only `client_credentials` is supported",
                )
                .into());
            }
            if app.scopes.is_empty() {
                return Err(
                    OAuthError::new("unauthorized_client", "this client holds no scope").into(),
                );
            }
            // Scopes are separated by spaces only (RFC 6749 §3.3): a tab is part of a scope.
            let scopes = match form
                .get("scope")
                .filter(|s| s.split(' ').any(|w| !w.is_empty()))
            {
                None => app.scopes.clone(),
                Some(requested) => {
                    let requested: Vec<String> = requested
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                    if let Some(bad) = requested.iter().find(|s| !app.scopes.contains(s)) {
                        return Err(OAuthError::new(
                            "invalid_scope",
                            format!("`{bad}` is not a scope of this client"),
                        )
                        .into());
                    }
                    apps::normalize_scopes(&requested)
                        .map_err(|e| OAuthError::new("invalid_scope", e))?
                }
            };
            // The shared token bucket keeps a token at most its `max_age`: the answer says so.
            let ttl = tokens
                .max_token_ttl()
                .map_or(app.token_ttl, |max| app.token_ttl.min(max))
                .as_secs()
                .max(1);
            let record = TokenRecord {
                app: app.name.clone(),
                client_id,
                scopes,
                iat: now,
                exp: now + ttl,
            };
            let token = tokens.issue_token(&record).await?;
            state.store.durable().await?;
            tracing::debug!(app = %app.name, scope = %record.scopes.join(" "), "access token issued");
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({
                    "access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": record.scopes.join(" "),
                }),
            ))
        }
        Endpoint::Introspect => {
            let token = form
                .get("token")
                .ok_or_else(|| OAuthError::new("invalid_request", "`token` is missing"))?;
            let live = tokens
                .token(token, now)
                .await?
                .filter(|r| r.app == app.name && r.client_id == client_id);
            let answer = match live {
                Some(r) => serde_json::json!({
                    "active": true,
                    "scope": r.scopes.iter().filter(|s| app.scopes.contains(s)).cloned().collect::<Vec<_>>().join(" "),
                    "client_id": r.client_id, "token_type": "Bearer", "exp": r.exp, "iat": r.iat,
                }),
                None => serde_json::json!({ "active": false }),
            };
            Ok(json(StatusCode::OK, &answer))
        }
        Endpoint::Revoke => {
            let token = form
                .get("token")
                .ok_or_else(|| OAuthError::new("invalid_request", "`token` is missing"))?;
            // Another client's token is answered like an unknown one (and left alone): the
            // answer must not tell whether a token exists.
            if tokens.revoke_token(token, &client_id, now).await? {
                state.store.durable().await?;
                tracing::debug!(app = %app.name, "access token revoked");
            }
            Ok(json(StatusCode::OK, &serde_json::json!({})))
        }
    }
}

/// The token endpoint's form parser on `body` (for the fuzz targets): the number of
/// parameters, or the refusal's error code.
#[doc(hidden)]
pub fn parse_form_body(body: &[u8]) -> Result<usize, String> {
    Form::parse(body)
        .map(|f| f.0.len())
        .map_err(|e| e.error.to_string())
}

/// A form without repeated parameters (RFC 6749 §3.2).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| OAuthError::new("invalid_request", "the body is not UTF-8"))?;
        let pairs =
            parse_form(text).map_err(|e| OAuthError::new("invalid_request", e.to_string()))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(OAuthError::new(
                    "invalid_request",
                    format!("`{name}` is given more than once"),
                ));
            }
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Authenticates the client by HTTP Basic or by `client_id`/`client_secret` in the form (not
/// both), after taking one request from its token-endpoint rate limit.
/// Failed client authentications allowed per minute from one address for one client id.
const FAILED_ATTEMPTS_PER_MINUTE: u32 = 10;

/// Checks the client's credentials. Correct credentials are limited by the app's own token
/// rate only; failures are limited per source address and claimed client id, so that nobody
/// can lock an app out by failing on its behalf.
fn authenticate_client(
    state: &Arc<State>,
    headers: &HeaderMap,
    form: &Form,
    peer: Option<std::net::IpAddr>,
) -> Result<Arc<App>, Refusal> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then(|| rest.trim().to_owned())
        });
    let in_body = (form.get("client_id"), form.get("client_secret"));
    let (client_id, secret) = match (basic, in_body) {
        (Some(_), (Some(_), _) | (_, Some(_))) => {
            return Err(OAuthError::new(
                "invalid_request",
                "authenticate with HTTP Basic or with the body, not both",
            )
            .into());
        }
        (Some(encoded), _) => {
            let decoded = STANDARD
                .decode(encoded)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((id, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(OAuthError::invalid_client().into());
            };
            // RFC 6749 §2.3.1: both are form-encoded before Basic encoding.
            let decode = |s: &str| super::oauth1::percent_decode(s, true);
            let (Ok(id), Ok(secret)) = (decode(id), decode(secret)) else {
                return Err(OAuthError::invalid_client().into());
            };
            (id, secret)
        }
        (None, (Some(id), Some(secret))) => (id.to_owned(), secret.to_owned()),
        (None, (Some(_), None)) => return Err(OAuthError::invalid_client().into()),
        (None, (None, _)) => {
            let mut e = OAuthError::invalid_client();
            e.description =
                "authenticate the client (HTTP Basic, or client_id and client_secret)".into();
            return Err(e.into());
        }
    };
    let app = apps::find(state, Lookup::ClientId(&client_id))?;
    let now = std::time::Instant::now();
    match app {
        Some(app)
            if app
                .oauth2
                .as_ref()
                .is_some_and(|c| c.secret_matches(&secret)) =>
        {
            state
                .auth
                .token_limiter
                .check(&client_id, app.token_rate_limit_per_minute, now)
                .map_err(|wait| Refusal::from(rate_limited(wait)))?;
            Ok(app)
        }
        _ => {
            // Unknown ids share one bucket per address: a stranger cannot grow the limiter.
            let known = app.is_some();
            let who = peer.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
            let key = format!(
                "{who}\0{}",
                if known {
                    client_id.as_str()
                } else {
                    "\0unknown"
                }
            );
            state
                .auth
                .failure_limiter
                .check(&key, FAILED_ATTEMPTS_PER_MINUTE, now)
                .map_err(|wait| Refusal::from(rate_limited(wait)))?;
            Err(OAuthError::invalid_client().into())
        }
    }
}
