//! The control plane in the instance's own sled database (`[storage] engine = "sled"`, the
//! default): the trees `apps` and `apps_index` (`AppStore`), `oauth2_tokens` and
//! `oauth2_token_expiry` (`TokenStore`), `api_subscriptions` and `api_plugins`
//! ([`crate::control::records`]), `oauth1_nonces` and `subscription_health` (opened by their
//! owners, `auth` and `state`), and `portal_links`, `portal_sessions` and `event_catalog`
//! (`extra.rs`). Every write is made durable by the store's flushes.

use super::apps::AppStore;
use crate::control::records::{self, StoredPlugin, StoredSubscription};
use crate::control::tokens::TokenStore;
use crate::store::{Store, StoreError, decode, encode};

/// The tree of portal links.
pub(crate) const PORTAL_LINKS: &str = "portal_links";
/// The tree of portal sessions.
pub(crate) const PORTAL_SESSIONS: &str = "portal_sessions";
/// The tree of the event types seen.
pub(crate) const EVENT_CATALOG: &str = "event_catalog";
/// Records looked at, at most, when expired ones are pruned.
const PRUNE_SCAN: usize = 1000;

/// The sled trees of the control plane.
#[derive(Debug, Clone)]
pub struct SledPlane {
    db: sled::Db,
    pub(crate) apps: AppStore,
    pub(crate) tokens: TokenStore,
}

impl SledPlane {
    /// Opens the trees in `store`'s database.
    pub(crate) fn open(store: &Store) -> Result<Self, StoreError> {
        let db = store.db().clone();
        Ok(Self {
            apps: AppStore::open(&db)?,
            tokens: TokenStore::open(&db)?,
            db,
        })
    }

    pub(crate) fn all_subscriptions(
        &self,
    ) -> Result<Vec<(String, StoredSubscription)>, StoreError> {
        records::all_subscriptions(&self.db)
    }

    pub(crate) fn subscription(
        &self,
        app: &str,
        id: &str,
    ) -> Result<Option<StoredSubscription>, StoreError> {
        records::subscription(&self.db, app, id)
    }

    pub(crate) fn replace_subscription(
        &self,
        app: &str,
        id: &str,
        old: Option<&StoredSubscription>,
        new: Option<&StoredSubscription>,
    ) -> Result<bool, StoreError> {
        records::replace_subscription(&self.db, app, id, old, new)
    }

    pub(crate) fn plugins(&self, app: &str) -> Result<Vec<StoredPlugin>, StoreError> {
        records::plugins(&self.db, app)
    }

    pub(crate) fn put_plugin(&self, app: &str, plugin: &StoredPlugin) -> Result<(), StoreError> {
        records::put_plugin(&self.db, app, plugin)
    }

    pub(crate) fn remove_app_records(&self, app: &str) -> Result<usize, StoreError> {
        records::remove_app_records(&self.db, app)
    }

    /// The record under `key` in `tree`.
    pub(crate) fn get<T: serde::de::DeserializeOwned>(
        &self,
        tree: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.db
            .open_tree(tree)?
            .get(key)?
            .map(|bytes| decode(tree, &bytes))
            .transpose()
    }

    /// Writes `value` under `key` in `tree`.
    pub(crate) fn put<T: serde::Serialize>(
        &self,
        tree: &'static str,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(value);
        self.db.open_tree(tree)?.insert(key, bytes)?;
        Ok(())
    }

    /// Writes a record with an `expires_ms`, first removing records of `tree` expired now.
    pub(crate) fn put_expiring<T: serde::Serialize>(
        &self,
        tree: &'static str,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let handle = self.db.open_tree(tree)?;
        let now = crate::time::now_ms();
        for entry in handle.iter().take(PRUNE_SCAN) {
            let (k, v) = entry?;
            let expires = serde_json::from_slice::<serde_json::Value>(&v)
                .ok()
                .and_then(|r| r["expires_ms"].as_u64())
                .unwrap_or(0);
            if expires <= now {
                handle.remove(k)?;
            }
        }
        self.put(tree, key, value)
    }

    /// Removes the record under `key` and answers it: of two takers, one gets it.
    pub(crate) fn take<T: serde::de::DeserializeOwned>(
        &self,
        tree: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.db
            .open_tree(tree)?
            .remove(key)?
            .map(|bytes| decode(tree, &bytes))
            .transpose()
    }

    /// Removes every portal link and session of `app`; how many.
    pub(crate) fn remove_portal_records(&self, app: &str) -> Result<usize, StoreError> {
        let mut removed = 0;
        for tree in [PORTAL_LINKS, PORTAL_SESSIONS] {
            let handle = self.db.open_tree(tree)?;
            for entry in handle.iter() {
                let (k, v) = entry?;
                let owner = serde_json::from_slice::<serde_json::Value>(&v)
                    .ok()
                    .and_then(|r| r["app"].as_str().map(str::to_owned));
                if owner.as_deref() == Some(app) {
                    handle.remove(k)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Every event type seen, at most the catalog's bound.
    pub(crate) fn seen_types<T: serde::de::DeserializeOwned>(
        &self,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        self.db
            .open_tree(EVENT_CATALOG)?
            .iter()
            .take(limit)
            .map(|entry| decode(EVENT_CATALOG, &entry?.1))
            .collect()
    }
}
