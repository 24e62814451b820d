//! The control plane's records for the apps' own side: portal links and sessions (see
//! [`crate::auth::portal`]) and the event types ingest saw (see
//! [`crate::catalog::seen`]). Same engines as the rest: sled trees `portal_links`,
//! `portal_sessions` and `event_catalog`, or the NATS buckets `<prefix>_portal_links`,
//! `<prefix>_portal_sessions` and `<prefix>_event_catalog`, shared by every instance.
//!
//! Links and sessions are keyed by the SHA-256 of their secret (hex), never the secret; a link
//! is taken once: of two exchanges of one link, on one instance or two, one gets it. Expired
//! records are refused by their owner and pruned here (on sled when new ones are written, on
//! NATS by the buckets' `max_age`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ControlPlane;
use crate::control::portal::{PortalLink, PortalSession};
use crate::store::StoreError;

impl ControlPlane {
    /// Stores a new portal link under `key`.
    pub(crate) async fn put_portal_link(
        &self,
        key: &str,
        link: &PortalLink,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sled(p) => p.put_expiring(super::local::PORTAL_LINKS, key, link),
            Self::Nats(p) => p.put_portal_link(key, link).await,
        }
    }

    /// Takes the link stored under `key`: it is gone for everyone once this answers it.
    pub(crate) async fn take_portal_link(
        &self,
        key: &str,
    ) -> Result<Option<PortalLink>, StoreError> {
        match self {
            Self::Sled(p) => p.take(super::local::PORTAL_LINKS, key),
            Self::Nats(p) => p.take_portal_link(key).await,
        }
    }

    /// Stores a new portal session under `key`.
    pub(crate) async fn put_portal_session(
        &self,
        key: &str,
        session: &PortalSession,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sled(p) => p.put_expiring(super::local::PORTAL_SESSIONS, key, session),
            Self::Nats(p) => p.put_portal_session(key, session).await,
        }
    }

    /// The session stored under `key`, expired or not.
    pub(crate) async fn portal_session(
        &self,
        key: &str,
    ) -> Result<Option<PortalSession>, StoreError> {
        match self {
            Self::Sled(p) => p.get(super::local::PORTAL_SESSIONS, key),
            Self::Nats(p) => p.portal_session(key).await,
        }
    }

    /// Removes the session stored under `key`; whether there was one.
    pub(crate) async fn remove_portal_session(&self, key: &str) -> Result<bool, StoreError> {
        match self {
            Self::Sled(p) => Ok(p
                .take::<PortalSession>(super::local::PORTAL_SESSIONS, key)?
                .is_some()),
            Self::Nats(p) => p.remove_portal_session(key).await,
        }
    }

    /// Removes every portal link and session of `app`; how many.
    pub(crate) async fn remove_portal_sessions(&self, app: &str) -> Result<usize, StoreError> {
        match self {
            Self::Sled(p) => p.remove_portal_records(app),
            Self::Nats(p) => p.remove_portal_records(app).await,
        }
    }

    /// Every event type seen, as stored (at most `limit` of them). The records are the
    /// event catalog's (`catalog::seen`); the control plane only keeps them.
    pub(crate) async fn seen_types<T: DeserializeOwned>(
        &self,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        match self {
            Self::Sled(p) => p.seen_types(limit),
            Self::Nats(p) => p.seen_types(limit).await,
        }
    }

    /// The stored record of `event_type` seen from `source`.
    pub(crate) async fn seen_type<T: DeserializeOwned>(
        &self,
        source: &str,
        event_type: &str,
    ) -> Result<Option<T>, StoreError> {
        let key = seen_key(source, event_type);
        match self {
            Self::Sled(p) => p.get(super::local::EVENT_CATALOG, &key),
            Self::Nats(p) => p.seen_type(&key).await,
        }
    }

    /// Stores `record` of `event_type` seen from `source` (replacing what was stored).
    pub(crate) async fn put_seen_type<T: Serialize>(
        &self,
        source: &str,
        event_type: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        let key = seen_key(source, event_type);
        match self {
            Self::Sled(p) => p.put(super::local::EVENT_CATALOG, &key, record),
            Self::Nats(p) => p.put_seen_type(&key, record).await,
        }
    }
}

/// A seen type's key: hex of source and type, so any name is a valid key everywhere.
fn seen_key(source: &str, event_type: &str) -> String {
    hex::encode([source.as_bytes(), b"\0", event_type.as_bytes()].concat())
}
