//! What a portal link is asked with (`POST /v1/portal-sessions`, `POST
//! /admin/apps/{name}/portal-link`): scopes and lifetimes, read as the API reads numbers
//! (a whole number of seconds is `600` or `600.0`; `null` is not a value).

use serde::Deserialize;

use crate::http_error::ApiError;

/// What a link is asked with: scopes (none: the caller's) and lifetimes in whole seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Scopes of the session, within the app's (or the caller's).
    #[serde(default, deserialize_with = "present")]
    pub scopes: Option<Vec<String>>,
    /// How long the link works, in seconds.
    #[serde(default, deserialize_with = "whole_secs")]
    pub link_ttl_secs: Option<u64>,
    /// How long the session lives, in seconds.
    #[serde(default, deserialize_with = "whole_secs")]
    pub session_ttl_secs: Option<u64>,
}

/// A value that, when given, is not `null` (left out, it is `None`: the default).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A count of seconds given as any JSON number without a fraction (`600` and `600.0` are one
/// value in JSON, and in JSON Schema's `integer`); left out, the default; never `null`.
pub(crate) fn whole_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=1e15).contains(f))
                .map(|f| f as u64)
        })
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("`{n}` is not a whole number of seconds")))
}

impl LinkRequest {
    /// Parses a request body (empty: every default): 400 `malformed_json` when it is not JSON,
    /// `invalid` when its shape is wrong.
    pub fn parse(body: &[u8], invalid: fn(String) -> ApiError) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => invalid(e.to_string()),
            _ => ApiError::bad_request("malformed_json", format!("the body is not JSON: {e}")),
        })
    }
}
