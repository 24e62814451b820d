//! Outbound authentication: what a delivery adds to prove itself to a receiver that wants more
//! than the Standard Webhooks signature — a static header, an OAuth2 bearer token (client
//! credentials), or an OAuth1 signature.
//!
//! This module owns checking a destination's `auth` settings.

use http::HeaderName;

use crate::config::file::DestinationAuth;

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
        DestinationAuth::None => Ok(()),
        DestinationAuth::StaticHeader { name, value } => {
            let header = HeaderName::try_from(name.as_str()).map_err(|_| format!("auth.name: `{name}` is not a header name"))?;
            if RESERVED.contains(&header.as_str()) {
                return Err(format!("auth.name: `{name}` is set by the gateway itself"));
            }
            if value.is_empty() || http::HeaderValue::try_from(value.as_str()).is_err() {
                return Err("auth.value: must be a non-empty, printable header value".into());
            }
            Ok(())
        }
        DestinationAuth::OAuth2 { token_url, client_id, client_secret, scopes } => {
            let url_ok = token_url
                .parse::<http::Uri>()
                .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
            if !url_ok {
                return Err(format!("auth.token_url: `{token_url}` is not an http(s) URL"));
            }
            if client_id.is_empty() {
                return Err("auth.client_id: must not be empty".into());
            }
            if client_secret.is_empty() {
                return Err("auth.client_secret: must not be empty".into());
            }
            if let Some(i) = scopes.iter().position(|s| s.is_empty() || s.contains(char::is_whitespace)) {
                return Err(format!("auth.scopes[{i}]: a scope is one non-empty word"));
            }
            Ok(())
        }
        DestinationAuth::OAuth1 { consumer_key, consumer_secret, signature_method, .. } => {
            if consumer_key.is_empty() {
                return Err("auth.consumer_key: must not be empty".into());
            }
            if consumer_secret.is_empty() {
                return Err("auth.consumer_secret: must not be empty".into());
            }
            if signature_method != "HMAC-SHA1" {
                return Err(format!("auth.signature_method: `{signature_method}` is not supported; use HMAC-SHA1"));
            }
            Ok(())
        }
    }
}
