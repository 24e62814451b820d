//! Portal links and sessions as the control plane stores them (under the SHA-256 of their
//! secrets; `auth::portal` mints, exchanges and checks them).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest a link may live.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(3600);
/// Longest a session may live (the NATS bucket's `max_age`).
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(24 * 3600);

/// A link, as stored (under the hash of its secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalLink {
    /// The app it opens.
    pub app: String,
    /// The app's credential ids when it was minted (see `binding`).
    pub credentials: String,
    /// The scopes its session gets (within the app's).
    pub scopes: Vec<String>,
    /// When it stops working (ms since the epoch).
    pub expires_ms: u64,
    /// How long its session lives.
    pub session_ttl_ms: u64,
    /// `app` or `operator`.
    pub minted_by: String,
}

/// A session, as stored (under the hash of its secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalSession {
    /// Its public id (logs, answers).
    pub id: String,
    /// The app it acts for.
    pub app: String,
    /// The app's credential ids when its link was minted.
    pub credentials: String,
    /// Its scopes (within the app's).
    pub scopes: Vec<String>,
    /// When it began (ms since the epoch).
    pub created_ms: u64,
    /// When it ends (ms since the epoch).
    pub expires_ms: u64,
    /// The token its page sends in `X-Portal-CSRF`.
    pub csrf: String,
    /// Who minted its link: `app` or `operator`.
    pub minted_by: String,
}

impl std::fmt::Debug for PortalLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalLink")
            .field("app", &self.app)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PortalSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalSession")
            .field("id", &self.id)
            .field("app", &self.app)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}
