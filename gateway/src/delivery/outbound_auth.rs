//! Outbound authentication: what a delivery adds to prove itself to a receiver that wants more
//! than the Standard Webhooks signature — a static header, an OAuth2 bearer token (client
//! credentials), or an OAuth1 signature.
//!
//! This module owns checking a destination's `auth` settings and sending one authenticated
//! attempt: fetching (and caching) OAuth2 tokens through the same SSRF-guarded client as
//! deliveries, never following redirects, and refreshing a token once when the receiver
//! answers 401. The subscription's timeout bounds the whole attempt, token fetches included.
//! Secrets never appear in errors.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{DeliveryClient, DeliveryError, DeliveryResponse};
use crate::signing::oauth1::{self, OAuth1Credentials, SignatureMethod};

/// Largest token endpoint answer read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// A token is renewed this long before it expires (or a tenth of its lifetime, if shorter).
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// A token whose answer gave no lifetime is kept this long (or until a 401).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Distinct OAuth2 clients cached at once; past that the cache starts over.
const MAX_CACHED_CLIENTS: usize = 10_000;

/// `auth = { type = "..." }` of a destination: outbound authentication on top of the Standard
/// Webhooks signature. Checked by [`validate`].
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DestinationAuth {
    /// Only the signature. A struct variant, empty, so that `deny_unknown_fields` refuses
    /// keys beside `type` (serde lets a unit variant of a tagged enum ignore them).
    None {},
    /// A fixed header, e.g. an API key.
    StaticHeader {
        /// Header name.
        name: String,
        /// Header value (secret).
        value: String,
    },
    /// OAuth2 client credentials (RFC 6749 §4.4); the token is sent as `Bearer`.
    #[serde(rename = "oauth2")]
    OAuth2 {
        /// The token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
        /// Scopes to ask for.
        #[serde(default)]
        scopes: Vec<String>,
    },
    /// OAuth1 (RFC 5849) signed requests.
    #[serde(rename = "oauth1")]
    OAuth1 {
        /// Consumer key.
        consumer_key: String,
        /// Consumer secret.
        consumer_secret: String,
        /// Token (empty for two-legged use).
        #[serde(default)]
        token: String,
        /// Token secret.
        #[serde(default)]
        token_secret: String,
        /// Only `HMAC-SHA1`.
        #[serde(default = "hmac_sha1")]
        signature_method: String,
    },
}

fn hmac_sha1() -> String {
    "HMAC-SHA1".to_owned()
}

impl Default for DestinationAuth {
    fn default() -> Self {
        Self::None {}
    }
}

impl std::fmt::Debug for DestinationAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const HIDDEN: &str = "[redacted]";
        match self {
            Self::None {} => f.write_str("None"),
            Self::StaticHeader { name, .. } => f
                .debug_struct("StaticHeader")
                .field("name", name)
                .field("value", &HIDDEN)
                .finish(),
            Self::OAuth2 {
                token_url,
                client_id,
                scopes,
                ..
            } => f
                .debug_struct("OAuth2")
                .field("token_url", token_url)
                .field("client_id", client_id)
                .field("client_secret", &HIDDEN)
                .field("scopes", scopes)
                .finish(),
            Self::OAuth1 {
                consumer_key,
                signature_method,
                ..
            } => f
                .debug_struct("OAuth1")
                .field("consumer_key", consumer_key)
                .field("consumer_secret", &HIDDEN)
                .field("token", &HIDDEN)
                .field("token_secret", &HIDDEN)
                .field("signature_method", signature_method)
                .finish(),
        }
    }
}

/// Why an attempt could not be authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token endpoint could not be reached or refused to issue a token.
    #[error("the OAuth2 token request failed: {0}")]
    Token(String),
    /// The request could not be signed or the credential is not a valid header.
    #[error("the request could not be authenticated: {0}")]
    Sign(String),
}

/// Why one authenticated attempt got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Authentication failed before the delivery was sent.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The delivery itself failed.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

impl SendError {
    /// Stable code for the attempt log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Auth(AuthError::Token(_)) => "auth_token_failed",
            Self::Auth(AuthError::Sign(_)) => "auth_sign_failed",
            Self::Delivery(e) => e.code(),
        }
    }

    /// Whether another attempt could succeed without a configuration change: a token
    /// endpoint may recover, an invalid URL or a refused address will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Auth(AuthError::Token(_)) => true,
            Self::Auth(AuthError::Sign(_)) => false,
            Self::Delivery(e) => e.is_retryable(),
        }
    }
}

/// Headers a static header may not replace: the signature, framing and routing.
const RESERVED: [&str; 9] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
];

/// Checks `auth`; the message names the offending key (relative to `auth`).
pub fn validate(auth: &DestinationAuth) -> Result<(), String> {
    match auth {
        DestinationAuth::None {} => Ok(()),
        DestinationAuth::StaticHeader { name, value } => {
            let header = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("auth.name: `{name}` is not a header name"))?;
            if RESERVED.contains(&header.as_str()) {
                return Err(format!("auth.name: `{name}` is set by the gateway itself"));
            }
            if value.is_empty() || http::HeaderValue::try_from(value.as_str()).is_err() {
                return Err("auth.value: must be a non-empty, printable header value".into());
            }
            Ok(())
        }
        DestinationAuth::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scopes,
        } => {
            if !super::is_http_url(token_url) {
                return Err(format!(
                    "auth.token_url: `{token_url}` is not an http(s) URL"
                ));
            }
            if client_id.is_empty() {
                return Err("auth.client_id: must not be empty".into());
            }
            if client_secret.is_empty() {
                return Err("auth.client_secret: must not be empty".into());
            }
            if let Some(i) = scopes
                .iter()
                .position(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                return Err(format!("auth.scopes[{i}]: a scope is one non-empty word"));
            }
            Ok(())
        }
        DestinationAuth::OAuth1 {
            consumer_key,
            consumer_secret,
            signature_method,
            ..
        } => {
            if consumer_key.is_empty() {
                return Err("auth.consumer_key: must not be empty".into());
            }
            if consumer_secret.is_empty() {
                return Err("auth.consumer_secret: must not be empty".into());
            }
            if !matches!(
                SignatureMethod::parse(signature_method),
                Some(SignatureMethod::HmacSha1 | SignatureMethod::HmacSha256)
            ) {
                return Err(format!(
                    "auth.signature_method: `{signature_method}` is not supported; use HMAC-SHA1"
                ));
            }
            Ok(())
        }
    }
}

/// POSTs `body` to `url` with the outbound authentication `auth`; the whole attempt (token
/// fetch, one refresh after a 401, and the retried POST) takes at most `timeout`.
pub async fn send(
    client: &DeliveryClient,
    url: &http::Uri,
    auth: &DestinationAuth,
    mut headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<DeliveryResponse, SendError> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let used = authorize(client, url, auth, &mut headers, left(), None).await?;
    let response = client
        .post(url, headers.clone(), body.clone(), left())
        .await?;
    let Some(stale) = used.filter(|_| response.status == StatusCode::UNAUTHORIZED) else {
        return Ok(response);
    };
    // The receiver no longer takes the cached token (revoked, rotated, expired early): get a
    // new one and try once more.
    authorize(client, url, auth, &mut headers, left(), Some(&stale)).await?;
    Ok(client.post(url, headers, body, left()).await?)
}

/// Adds the destination's credentials to `headers`. Returns the OAuth2 token used, if any;
/// with `stale`, a cached token equal to it is replaced by a fresh one.
async fn authorize(
    client: &DeliveryClient,
    url: &http::Uri,
    auth: &DestinationAuth,
    headers: &mut HeaderMap,
    timeout: Duration,
    stale: Option<&str>,
) -> Result<Option<String>, AuthError> {
    let value = |v: String| {
        HeaderValue::try_from(v)
            .map_err(|_| AuthError::Sign("the credential is not a valid header value".into()))
    };
    match auth {
        DestinationAuth::None {} => Ok(None),
        DestinationAuth::StaticHeader { name, value: v } => {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| AuthError::Sign("invalid header name".into()))?;
            let mut v = value(v.clone())?;
            v.set_sensitive(true);
            headers.insert(name, v);
            Ok(None)
        }
        DestinationAuth::OAuth2 { .. } => {
            let token = token(client, auth, timeout, stale).await?;
            let mut v = value(format!("Bearer {token}"))?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
            Ok(Some(token))
        }
        DestinationAuth::OAuth1 {
            consumer_key,
            consumer_secret,
            token,
            token_secret,
            signature_method,
        } => {
            let credentials = OAuth1Credentials {
                consumer_key: consumer_key.clone(),
                consumer_secret: consumer_secret.clone(),
                token: (!token.is_empty()).then(|| token.clone()),
                token_secret: token_secret.clone(),
            };
            let method =
                SignatureMethod::parse(signature_method).unwrap_or(SignatureMethod::HmacSha1);
            // The body is never form-encoded, so only the oauth_* and query parameters are signed.
            let signed = oauth1::authorization_header_now(
                "POST",
                &url.to_string(),
                &[],
                &credentials,
                method,
            )
            .map_err(|e| AuthError::Sign(e.to_string()))?;
            headers.insert(header::AUTHORIZATION, value(signed)?);
            Ok(None)
        }
    }
}

/// A cached OAuth2 access token.
struct Cached {
    token: String,
    renew_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Tokens by client (token URL, id, secret and scopes, hashed). One slot per client, locked
/// while a token is fetched, so concurrent deliveries share one token request. The cache is
/// process-wide so that tokens outlive configuration reloads.
static TOKENS: LazyLock<Mutex<HashMap<[u8; 32], Slot>>> = LazyLock::new(Default::default);

fn slot(auth: &DestinationAuth) -> Slot {
    let mut hasher = Sha256::new();
    if let DestinationAuth::OAuth2 {
        token_url,
        client_id,
        client_secret,
        scopes,
    } = auth
    {
        for part in [token_url, client_id, client_secret]
            .into_iter()
            .chain(scopes)
        {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
    }
    let key: [u8; 32] = hasher.finalize().into();
    let mut map = TOKENS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if map.len() >= MAX_CACHED_CLIENTS && !map.contains_key(&key) {
        map.clear();
    }
    map.entry(key).or_default().clone()
}

/// The client's token: the cached one while it is fresh and not `stale`, else a new one.
async fn token(
    client: &DeliveryClient,
    auth: &DestinationAuth,
    timeout: Duration,
    stale: Option<&str>,
) -> Result<String, AuthError> {
    let slot = slot(auth);
    let mut cached = tokio::time::timeout(timeout, slot.lock())
        .await
        .map_err(|_| AuthError::Token(format!("no token within {timeout:?}")))?;
    let fresh_enough = |c: &Cached| Instant::now() < c.renew_at && stale != Some(c.token.as_str());
    if let Some(c) = cached.as_ref().filter(|c| fresh_enough(c)) {
        return Ok(c.token.clone());
    }
    *cached = None;
    let fresh = fetch(client, auth, timeout).await?;
    let token = fresh.token.clone();
    *cached = Some(fresh);
    Ok(token)
}

/// One client-credentials request (RFC 6749 §4.4), client authenticated with HTTP Basic.
async fn fetch(
    client: &DeliveryClient,
    auth: &DestinationAuth,
    timeout: Duration,
) -> Result<Cached, AuthError> {
    use oauth2::TokenResponse as _;
    let DestinationAuth::OAuth2 {
        token_url,
        client_id,
        client_secret,
        scopes,
    } = auth
    else {
        return Err(AuthError::Token("not an OAuth2 destination".into()));
    };
    let url = oauth2::TokenUrl::new(token_url.clone())
        .map_err(|e| AuthError::Token(format!("token_url: {e}")))?;
    let oauth = oauth2::basic::BasicClient::new(oauth2::ClientId::new(client_id.clone()))
        .set_client_secret(oauth2::ClientSecret::new(client_secret.clone()))
        .set_token_uri(url);
    let started = Instant::now();
    let http = |request: oauth2::HttpRequest| {
        let client = client.clone();
        async move {
            let (parts, body) = request.into_parts();
            let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
            let response = client
                .exchange(request, timeout, MAX_TOKEN_RESPONSE)
                .await?;
            let (parts, body) = response.into_parts();
            Ok::<_, DeliveryError>(http::Response::from_parts(parts, body.to_vec()))
        }
    };
    let response = oauth
        .exchange_client_credentials()
        .add_scopes(scopes.iter().cloned().map(oauth2::Scope::new))
        .request_async(&http)
        .await
        .map_err(|e| AuthError::Token(token_error(&e)))?;
    let lifetime = response.expires_in().unwrap_or(DEFAULT_LIFETIME);
    let margin = EXPIRY_MARGIN.min(lifetime / 10);
    Ok(Cached {
        token: response.access_token().secret().clone(),
        renew_at: started + lifetime.saturating_sub(margin),
    })
}

/// The token error without anything the endpoint echoed beyond its error code.
fn token_error<RE: std::error::Error + 'static>(
    e: &oauth2::RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => {
            format!("the token endpoint answered `{}`", r.error())
        }
        oauth2::RequestTokenError::Request(inner) => inner.to_string(),
        oauth2::RequestTokenError::Parse(_, _) => {
            "the token endpoint's answer is not a token response".into()
        }
        oauth2::RequestTokenError::Other(m) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth2(url: &str, secret: &str) -> DestinationAuth {
        DestinationAuth::OAuth2 {
            token_url: url.into(),
            client_id: "id".into(),
            client_secret: secret.into(),
            scopes: vec!["hooks".into()],
        }
    }

    #[test]
    fn validation_names_the_key() {
        let header = |name: &str, value: &str| DestinationAuth::StaticHeader {
            name: name.into(),
            value: value.into(),
        };
        assert!(validate(&DestinationAuth::None {}).is_ok());
        assert!(validate(&header("x-api-key", "k")).is_ok());
        assert!(
            validate(&header("Webhook-Signature", "k"))
                .unwrap_err()
                .starts_with("auth.name")
        );
        assert!(
            validate(&header("bad header", "k"))
                .unwrap_err()
                .starts_with("auth.name")
        );
        assert!(
            validate(&header("x-api-key", "line\nbreak"))
                .unwrap_err()
                .starts_with("auth.value")
        );
        assert!(validate(&oauth2("https://idp.example.com/token", "s")).is_ok());
        assert!(
            validate(&oauth2("ftp://idp.example.com/token", "s"))
                .unwrap_err()
                .starts_with("auth.token_url")
        );
        assert!(
            validate(&oauth2("https://idp.example.com/token", ""))
                .unwrap_err()
                .starts_with("auth.client_secret")
        );
        let oauth1 = |method: &str| DestinationAuth::OAuth1 {
            consumer_key: "ck".into(),
            consumer_secret: "cs".into(),
            token: String::new(),
            token_secret: String::new(),
            signature_method: method.into(),
        };
        assert!(validate(&oauth1("HMAC-SHA1")).is_ok());
        assert!(
            validate(&oauth1("PLAINTEXT"))
                .unwrap_err()
                .starts_with("auth.signature_method")
        );
    }

    #[test]
    fn the_file_shape_and_its_debug_hide_secrets() {
        let auth: DestinationAuth = toml::from_str(
            "type = \"oauth2\"\ntoken_url = \"https://idp/t\"\nclient_id = \"id\"\nclient_secret = \"s3cret\"",
        )
        .expect("oauth2");
        assert!(!format!("{auth:?}").contains("s3cret"));
        let auth: DestinationAuth = toml::from_str(
            "type = \"oauth1\"\nconsumer_key = \"ck\"\nconsumer_secret = \"cs-secret\"",
        )
        .expect("oauth1");
        assert!(
            matches!(&auth, DestinationAuth::OAuth1 { signature_method, .. } if signature_method == "HMAC-SHA1")
        );
        assert!(!format!("{auth:?}").contains("cs-secret"));
        assert!(
            toml::from_str::<DestinationAuth>(
                "type = \"static_header\"\nname = \"a\"\nvalue = \"b\"\nextra = 1"
            )
            .is_err()
        );
    }

    #[test]
    fn one_cache_slot_per_client() {
        let a = slot(&oauth2("https://idp/t", "one"));
        assert!(Arc::ptr_eq(&a, &slot(&oauth2("https://idp/t", "one"))));
        assert!(
            !Arc::ptr_eq(&a, &slot(&oauth2("https://idp/t", "two"))),
            "another secret is another client"
        );
    }
}
