//! Third-party app authentication: the apps an operator registers, the OAuth2 token
//! endpoint, OAuth1 signatures, and the per-app rate limits. It owns deciding *who* a
//! request comes from; it never decides what an app may see beyond its scopes.

use std::sync::Arc;

use http::request::Parts;

pub mod apps;
pub mod oauth1;

pub use apps::{App, ConfigApps};

use crate::http_error::ApiError;
use crate::state::State;

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
pub async fn authenticate(state: &Arc<State>, parts: &Parts, body: &[u8]) -> Result<AppIdentity, ApiError> {
    let _ = (state, parts, body);
    Err(ApiError::new(http::StatusCode::UNAUTHORIZED, "unauthorized", "authentication is not available yet")
        .with_header(http::header::WWW_AUTHENTICATE, "Bearer realm=\"odoo-gateway\""))
}

/// 403 insufficient_scope per RFC 6750 when `scope` is missing.
pub fn require_scope(id: &AppIdentity, scope: &str) -> Result<(), ApiError> {
    if id.scopes.iter().any(|s| s == scope) {
        return Ok(());
    }
    Err(ApiError::new(http::StatusCode::FORBIDDEN, "insufficient_scope", format!("this request needs the `{scope}` scope"))
        .with_header(
            http::header::WWW_AUTHENTICATE,
            format!("Bearer realm=\"odoo-gateway\", error=\"insufficient_scope\", scope=\"{scope}\""),
        ))
}
