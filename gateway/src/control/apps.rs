//! The sled side of the app registry: apps stored through `/admin/apps`, indexed by their
//! credential ids so that a request finds its app without a scan.

use crate::apps::{App, Lookup};
use crate::store::{StoreError, decode};

/// The sled trees `apps` (name → app) and `apps_index` (`c\0<client_id>` or
/// `k\0<consumer_key>` → name).
#[derive(Debug, Clone)]
pub(crate) struct AppStore {
    apps: sled::Tree,
    index: sled::Tree,
}

impl AppStore {
    /// Opens the trees.
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            apps: db.open_tree("apps")?,
            index: db.open_tree("apps_index")?,
        })
    }

    /// Stores a new app; false (and nothing stored) when the name or a credential id is taken.
    pub(crate) fn insert(&self, app: &App) -> Result<bool, StoreError> {
        use sled::Transactional as _;
        let encoded = serde_json::to_vec(app).unwrap_or_default();
        let keys: Vec<Vec<u8>> = [
            app.oauth2
                .as_ref()
                .and_then(|c| Lookup::ClientId(&c.client_id).index_key()),
            app.oauth1
                .as_ref()
                .and_then(|c| Lookup::ConsumerKey(&c.consumer_key).index_key()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let inserted = (&self.apps, &self.index).transaction(|(apps, index)| {
            if apps.get(app.name.as_bytes())?.is_some() {
                return Ok(false);
            }
            for k in &keys {
                if index.get(k.as_slice())?.is_some() {
                    return Ok(false);
                }
            }
            apps.insert(app.name.as_bytes(), encoded.as_slice())?;
            for k in &keys {
                index.insert(k.as_slice(), app.name.as_bytes())?;
            }
            Ok(true)
        });
        inserted.map_err(|e: sled::transaction::TransactionError<()>| match e {
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            sled::transaction::TransactionError::Abort(()) => StoreError::Corrupt {
                tree: "apps",
                message: "aborted".into(),
            },
        })
    }

    /// Removes an app and its index entries; false when there was none.
    pub(crate) fn remove(&self, name: &str) -> Result<bool, StoreError> {
        use sled::Transactional as _;
        let removed = (&self.apps, &self.index).transaction(|(apps, index)| {
            let Some(bytes) = apps.remove(name.as_bytes())? else {
                return Ok(false);
            };
            if let Ok(app) = serde_json::from_slice::<App>(&bytes) {
                for k in [
                    app.oauth2
                        .as_ref()
                        .and_then(|c| Lookup::ClientId(&c.client_id).index_key()),
                    app.oauth1
                        .as_ref()
                        .and_then(|c| Lookup::ConsumerKey(&c.consumer_key).index_key()),
                ]
                .into_iter()
                .flatten()
                {
                    index.remove(k)?;
                }
            }
            Ok(true)
        });
        removed.map_err(|e: sled::transaction::TransactionError<()>| match e {
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            sled::transaction::TransactionError::Abort(()) => StoreError::Corrupt {
                tree: "apps",
                message: "aborted".into(),
            },
        })
    }

    /// Every stored app, by name.
    pub(crate) fn list(&self) -> Result<Vec<App>, StoreError> {
        self.apps
            .iter()
            .values()
            .map(|v| decode("apps", &v?))
            .collect()
    }

    /// One stored app.
    pub(crate) fn get(&self, key: Lookup<'_>) -> Result<Option<App>, StoreError> {
        let name = match (key, key.index_key()) {
            (Lookup::Name(n), _) => n.as_bytes().to_vec(),
            (_, Some(k)) => match self.index.get(k)? {
                Some(name) => name.to_vec(),
                None => return Ok(None),
            },
            (_, None) => return Ok(None),
        };
        self.apps.get(name)?.map(|v| decode("apps", &v)).transpose()
    }
}
