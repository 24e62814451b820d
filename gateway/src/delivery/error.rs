//! Delivery errors: what went wrong with one attempt, with a stable code for the attempt log.
//!
//! This module owns turning hyper, rustls and resolver errors into [`DeliveryError`]. The
//! messages name the host and the cause, never a credential (headers are not echoed).

use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::Duration;

use super::connector::{ResolveError, SsrfBlocked};

/// Why an attempt got no HTTP answer. A non-2xx answer is not an error: see
/// [`super::DeliveryResponse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The destination URL cannot be used (scheme, host).
    #[error("invalid destination URL {0}")]
    InvalidUrl(String),
    /// The request could not be built (for example a bad header).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The SSRF policy refused every address of the host.
    #[error(transparent)]
    Ssrf(#[from] SsrfBlocked),
    /// The host name did not resolve.
    #[error("{0}")]
    Dns(String),
    /// No TCP connection could be opened (refused, unreachable, connect timeout).
    #[error("connect failed: {0}")]
    Connect(String),
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS failed: {0}")]
    Tls(String),
    /// No response head within the attempt's timeout.
    #[error("no response within {after:?}")]
    Timeout {
        /// The attempt's timeout.
        after: Duration,
    },
    /// The connection broke or the response was malformed.
    #[error("request failed: {0}")]
    Request(String),
}

impl DeliveryError {
    /// Stable machine-readable code, for the attempt log, metrics and the admin API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_url",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Ssrf(_) => "ssrf_blocked",
            Self::Dns(_) => "dns_failed",
            Self::Connect(_) => "connect_failed",
            Self::Tls(_) => "tls_failed",
            Self::Timeout { .. } => "timeout",
            Self::Request(_) => "request_failed",
        }
    }

    /// Whether another attempt could succeed without a configuration change. The queue may
    /// still retry the others (a DNS answer or a policy can change), but these will not heal.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::InvalidUrl(_) | Self::InvalidRequest(_) | Self::Ssrf(_)
        )
    }

    pub(crate) fn from_client(err: hyper_util::client::legacy::Error) -> Self {
        let connect = err.is_connect();
        let mut causes = Vec::new();
        let mut is_tls = false;
        for cause in chain(&err).skip(1) {
            if let Some(blocked) = cause.downcast_ref::<SsrfBlocked>() {
                return Self::Ssrf(blocked.clone());
            }
            if let Some(resolve) = cause.downcast_ref::<ResolveError>() {
                if let ResolveError::Blocked(blocked) = resolve {
                    return Self::Ssrf(blocked.clone());
                }
                return Self::Dns(resolve.to_string());
            }
            is_tls |= cause.is::<rustls::Error>();
            let text = cause.to_string();
            if causes.last() != Some(&text) {
                causes.push(text);
            }
        }
        let message = if causes.is_empty() {
            err.to_string()
        } else {
            causes.join(": ")
        };
        if is_tls {
            Self::Tls(message)
        } else if connect {
            Self::Connect(message)
        } else {
            Self::Request(message)
        }
    }
}

/// The error's causes, looking inside `io::Error`s (whose `source` skips the wrapped error).
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e: &&'a (dyn StdError + 'static)| match e
        .downcast_ref::<std::io::Error>()
    {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

/// Why a [`super::DeliveryClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The custom CA file is missing, unreadable or holds no usable certificate.
    #[error("custom CA {path}: {reason}")]
    CustomCa {
        /// The configured file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
}
