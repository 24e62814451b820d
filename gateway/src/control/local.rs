//! The control plane in the instance's own sled database (`[storage] engine = "sled"`, the
//! default): the trees `apps` and `apps_index` (`AppStore`), `oauth2_tokens` and
//! `oauth2_token_expiry` (`TokenStore`), `api_subscriptions` and `api_plugins`
//! ([`crate::api::records`]), `oauth1_nonces` and `subscription_health` (opened by their
//! owners, `auth` and `state`). Every write is made durable by the store's flushes.

use crate::api::records::{self, StoredPlugin, StoredSubscription};
use crate::auth::apps::AppStore;
use crate::auth::tokens::TokenStore;
use crate::store::{Store, StoreError};

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
}
