//! Standard Webhooks v1 signatures (HMAC-SHA256 over `msg_id.timestamp.body`).
//!
//! This module owns the signing secret type, the `webhook-signature` header format and its
//! verification. It does no I/O and reads no clock: callers pass the time in, so signing is
//! deterministic and verification is testable.
//!
//! [`oauth1`] holds the other signature the gateway makes and checks: OAuth 1.0a request
//! signing, for apps calling the API (`auth`) and for receivers that want it (`delivery`).

pub mod oauth1;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the message id (stable across retries: receivers deduplicate on it).
pub const HEADER_ID: HeaderName = HeaderName::from_static("webhook-id");
/// Header carrying the signing time, in seconds since the Unix epoch.
pub const HEADER_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// Header carrying one or more space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// How far a timestamp may be from "now" before verification refuses it (replay window).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Secrets shorter than this are refused: an HMAC key of fewer than 128 bits is too weak.
const MIN_SECRET_LEN: usize = 16;
const SECRET_PREFIX: &str = "whsec_";
const VERSION_PREFIX: &str = "v1,";

/// A Standard Webhooks signing key, written `whsec_<base64>` in configuration.
///
/// `Debug` and `Display` never show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    key: Vec<u8>,
}

/// Why a `whsec_...` string is not a usable secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretParseError {
    /// The string does not start with `whsec_`.
    #[error("signing secret must start with `whsec_`")]
    MissingPrefix,
    /// The part after the prefix is not standard base64.
    #[error("signing secret is not valid base64 after `whsec_`")]
    InvalidBase64,
    /// The decoded key is too short.
    #[error("signing secret must decode to at least {MIN_SECRET_LEN} bytes, got {0}")]
    TooShort(usize),
}

impl SigningSecret {
    /// Wraps raw key bytes (at least 16).
    pub fn from_bytes(key: &[u8]) -> Result<Self, SecretParseError> {
        if key.len() < MIN_SECRET_LEN {
            return Err(SecretParseError::TooShort(key.len()));
        }
        Ok(Self { key: key.to_vec() })
    }

    /// A fresh random 32-byte secret.
    pub fn generate() -> Self {
        let key: [u8; 32] = rand::random();
        Self { key: key.to_vec() }
    }

    /// The secret in its `whsec_<base64>` form. Named loudly: this is the one way to reveal it.
    pub fn expose_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.key))
    }

    fn mac(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("hmac takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl FromStr for SigningSecret {
    type Err = SecretParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let encoded = s
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretParseError::MissingPrefix)?;
        let key = B64
            .decode(encoded)
            .map_err(|_| SecretParseError::InvalidBase64)?;
        Self::from_bytes(&key)
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(whsec_<redacted>)")
    }
}

impl fmt::Display for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("whsec_<redacted>")
    }
}

impl<'de> serde::Deserialize<'de> for SigningSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `webhook-signature` value: one `v1,<base64>` per secret, space-separated.
///
/// During a rotation pass both the old and the new secret: receivers holding either accept.
pub fn sign(secrets: &[SigningSecret], msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let timestamp = timestamp_secs.to_string();
    secrets
        .iter()
        .map(|s| {
            let tag = s.mac(msg_id, &timestamp, body).finalize().into_bytes();
            format!("{VERSION_PREFIX}{}", B64.encode(tag))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a header value cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The message id holds characters not allowed in an HTTP header.
    #[error("message id is not a valid header value")]
    InvalidMsgId,
}

/// The three Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`), ready for `HeaderMap::insert` or `HeaderMap::extend`.
pub fn webhook_headers(
    secrets: &[SigningSecret],
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> Result<[(HeaderName, HeaderValue); 3], SignError> {
    let id = HeaderValue::from_str(msg_id).map_err(|_| SignError::InvalidMsgId)?;
    let signature = sign(secrets, msg_id, timestamp_secs, body);
    let signature =
        HeaderValue::from_str(&signature).expect("base64 and spaces are valid header bytes");
    Ok([
        (HEADER_ID, id),
        (HEADER_TIMESTAMP, HeaderValue::from(timestamp_secs)),
        (HEADER_SIGNATURE, signature),
    ])
}

/// Why a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No secret to verify with.
    #[error("no signing secret configured")]
    NoSecrets,
    /// `webhook-timestamp` is not an integer.
    #[error("webhook-timestamp is not an integer")]
    InvalidTimestamp,
    /// The timestamp is older than the tolerance allows.
    #[error("webhook-timestamp is too old ({age_secs} s)")]
    TooOld {
        /// Seconds between the timestamp and now.
        age_secs: i64,
    },
    /// The timestamp is further in the future than the tolerance allows.
    #[error("webhook-timestamp is in the future ({ahead_secs} s)")]
    InFuture {
        /// Seconds between now and the timestamp.
        ahead_secs: i64,
    },
    /// The signature header holds no `v1,` entry.
    #[error("webhook-signature holds no v1 signature")]
    NoSignature,
    /// No signature matched any secret.
    #[error("no signature matches")]
    Mismatch,
}

impl VerifyError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSecrets => "no_secrets",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::TooOld { .. } => "timestamp_too_old",
            Self::InFuture { .. } => "timestamp_in_future",
            Self::NoSignature => "no_signature",
            Self::Mismatch => "signature_mismatch",
        }
    }
}

/// Checks a received message: the timestamp is within `tolerance` of `now_secs` and at least
/// one `v1` signature matches one of `secrets` (compared in constant time).
pub fn verify(
    secrets: &[SigningSecret],
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecrets);
    }
    let timestamp_header = timestamp_header.trim();
    let timestamp: i64 = timestamp_header
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let age = now_secs.saturating_sub(timestamp);
    if age > tolerance {
        return Err(VerifyError::TooOld { age_secs: age });
    }
    if -age > tolerance {
        return Err(VerifyError::InFuture { ahead_secs: -age });
    }
    let candidates: Vec<&str> = signature_header
        .split_ascii_whitespace()
        .filter_map(|s| s.strip_prefix(VERSION_PREFIX))
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::NoSignature);
    }
    for secret in secrets {
        let mac = secret.mac(msg_id, timestamp_header, body);
        for candidate in &candidates {
            let Ok(tag) = B64.decode(candidate) else {
                continue;
            };
            // `verify_slice` compares in constant time and refuses wrong lengths.
            if mac.clone().verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
    }
    Err(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests;
