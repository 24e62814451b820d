//! Portal links and sessions and the event types seen, in their shared buckets: not mirrored
//! (each is read by the request that needs it), one KV read or write per request. A link is
//! taken by a purge that names the revision read, so only one exchange gets it.

use async_nats::jetstream::kv;

use super::mirror::keys;
use super::{NatsPlane, encode, shared};
use crate::control::portal::{PortalLink, PortalSession};
use crate::store::{StoreError, decode};

impl NatsPlane {
    pub(crate) async fn put_portal_link(
        &self,
        key: &str,
        link: &PortalLink,
    ) -> Result<(), StoreError> {
        self.portal_links
            .put(key, encode(link))
            .await
            .map_err(|e| shared("portal_links", e))?;
        Ok(())
    }

    pub(crate) async fn take_portal_link(
        &self,
        key: &str,
    ) -> Result<Option<PortalLink>, StoreError> {
        let Some(entry) = self
            .portal_links
            .entry(key)
            .await
            .map_err(|e| shared("portal_links", e))?
        else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let link: PortalLink = decode("portal_links", &entry.value)?;
        // Only the exchange whose purge names the revision it read gets the link.
        match self
            .portal_links
            .purge_expect_revision(key, Some(entry.revision))
            .await
        {
            Ok(()) => Ok(Some(link)),
            Err(e) => {
                tracing::debug!(error = %e, "a portal link was taken by another exchange");
                Ok(None)
            }
        }
    }

    pub(crate) async fn put_portal_session(
        &self,
        key: &str,
        session: &PortalSession,
    ) -> Result<(), StoreError> {
        self.portal_sessions
            .put(key, encode(session))
            .await
            .map_err(|e| shared("portal_sessions", e))?;
        Ok(())
    }

    pub(crate) async fn portal_session(
        &self,
        key: &str,
    ) -> Result<Option<PortalSession>, StoreError> {
        self.portal_sessions
            .get(key)
            .await
            .map_err(|e| shared("portal_sessions", e))?
            .map(|bytes| decode("portal_sessions", &bytes))
            .transpose()
    }

    pub(crate) async fn remove_portal_session(&self, key: &str) -> Result<bool, StoreError> {
        let existed = self.portal_session(key).await?.is_some();
        self.portal_sessions
            .purge(key)
            .await
            .map_err(|e| shared("portal_sessions", e))?;
        Ok(existed)
    }

    /// Walks both buckets: for revoking an app's access, not for the request path.
    pub(crate) async fn remove_portal_records(&self, app: &str) -> Result<usize, StoreError> {
        let mut removed = 0;
        for (bucket, what) in [
            (&self.portal_links, "portal_links"),
            (&self.portal_sessions, "portal_sessions"),
        ] {
            for key in keys(bucket, usize::MAX).await? {
                let Some(bytes) = bucket.get(&key).await.map_err(|e| shared(what, e))? else {
                    continue;
                };
                let owner = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|r| r["app"].as_str().map(str::to_owned));
                if owner.as_deref() == Some(app) {
                    bucket.purge(&key).await.map_err(|e| shared(what, e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    pub(crate) async fn seen_types<T: serde::de::DeserializeOwned>(
        &self,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for key in keys(&self.event_catalog, limit).await? {
            if let Some(record) = self.seen_type(&key).await? {
                out.push(record);
            }
        }
        Ok(out)
    }

    pub(crate) async fn seen_type<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.event_catalog
            .get(key)
            .await
            .map_err(|e| shared("event_catalog", e))?
            .map(|bytes| decode("event_catalog", &bytes))
            .transpose()
    }

    pub(crate) async fn put_seen_type<T: serde::Serialize>(
        &self,
        key: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        self.event_catalog
            .put(key, encode(record))
            .await
            .map_err(|e| shared("event_catalog", e))?;
        Ok(())
    }
}
