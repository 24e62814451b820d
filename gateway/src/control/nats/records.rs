//! Reads and writes of the shared records: apps, API subscriptions and plugins.
//!
//! A write that must not clash with another instance's is a KV `create` (refused when the key
//! exists) or an update or delete that names the revision it read (refused when the key
//! changed since). A successful write goes into the mirror at once, so this instance reads its
//! own writes before the watch brings them back.

use std::path::Path;

use async_nats::jetstream::kv;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use super::mirror::{self, read};
use super::{NatsPlane, encode, shared};
use crate::apps::{App, Lookup};
use crate::control::records::{self as api_records, StoredPlugin, StoredSubscription};
use crate::store::StoreError;

/// Largest plugin component fetched from the object store (the upload limit).
const MAX_COMPONENT_BYTES: u64 = 10 * 1024 * 1024;

fn credential_key(lookup: Lookup<'_>) -> Option<String> {
    match lookup {
        Lookup::Name(_) => None,
        Lookup::ClientId(id) => Some(format!("c.{}", hex::encode(id))),
        Lookup::ConsumerKey(k) => Some(format!("k.{}", hex::encode(k))),
    }
}

fn credential_keys(app: &App) -> Vec<String> {
    [
        app.oauth2
            .as_ref()
            .and_then(|c| credential_key(Lookup::ClientId(&c.client_id))),
        app.oauth1
            .as_ref()
            .and_then(|c| credential_key(Lookup::ConsumerKey(&c.consumer_key))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn record_key(app: &str, id: &str) -> String {
    format!("{app}.{id}")
}

fn is_conflict(kind: kv::UpdateErrorKind) -> bool {
    kind == kv::UpdateErrorKind::WrongLastRevision
}

impl NatsPlane {
    // Apps.

    pub(crate) fn app(&self, key: Lookup<'_>) -> Option<App> {
        let apps = read(&self.mirror.apps);
        match key {
            Lookup::Name(name) => apps.get(name).cloned(),
            // The index is for uniqueness across instances; the mirror finds the app by its
            // own fields.
            Lookup::ClientId(id) => apps
                .prefixed("")
                .find(|(_, a)| a.oauth2.as_ref().is_some_and(|c| c.client_id == id))
                .map(|(_, a)| a.clone()),
            Lookup::ConsumerKey(k) => apps
                .prefixed("")
                .find(|(_, a)| a.oauth1.as_ref().is_some_and(|c| c.consumer_key == k))
                .map(|(_, a)| a.clone()),
        }
    }

    /// App `name` as the bucket holds it now, not as the mirror last saw it: for a token that
    /// names an app the mirror has not caught up with (after a NATS node restarted).
    pub(crate) async fn app_now(&self, name: &str) -> Result<Option<App>, StoreError> {
        let bytes = self
            .apps
            .get(name)
            .await
            .map_err(|e| super::shared("bucket apps", e))?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    pub(crate) fn apps(&self) -> Vec<App> {
        read(&self.mirror.apps)
            .prefixed("")
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// Claims the credential ids, then the name; releases what it claimed when something is
    /// taken. A crash between the two leaves an unused index entry (random ids: harmless),
    /// never an app without its index.
    pub(crate) async fn insert_app(&self, app: &App) -> Result<bool, StoreError> {
        let name_bytes = Bytes::from(app.name.clone().into_bytes());
        let mut claimed: Vec<(String, u64)> = Vec::new();
        let mut taken = false;
        for key in credential_keys(app) {
            match self.credentials.create(&key, name_bytes.clone()).await {
                Ok(revision) => claimed.push((key, revision)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    taken = true;
                    break;
                }
                Err(e) => {
                    self.release(&claimed).await;
                    return Err(shared("app_credentials", e));
                }
            }
        }
        if !taken {
            match self.apps.create(&app.name, encode(app)).await {
                Ok(revision) => {
                    mirror_write(&self.mirror.apps).apply(
                        "apps",
                        &app.name,
                        revision,
                        Some(encode(app)),
                    );
                    return Ok(true);
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => {
                    self.release(&claimed).await;
                    return Err(shared("apps", e));
                }
            }
        }
        self.release(&claimed).await;
        Ok(false)
    }

    async fn release(&self, claimed: &[(String, u64)]) {
        for (key, revision) in claimed {
            if let Err(e) = self
                .credentials
                .delete_expect_revision(key, Some(*revision))
                .await
            {
                tracing::warn!(error = %e, "cannot release a claimed credential id");
            }
        }
    }

    /// Deletes the app if it is still what was read, then its index entries.
    pub(crate) async fn remove_app(&self, name: &str) -> Result<bool, StoreError> {
        let Some(entry) = self
            .apps
            .entry(name)
            .await
            .map_err(|e| shared("apps", e))?
            .filter(|e| e.operation == kv::Operation::Put)
        else {
            return Ok(false);
        };
        match self
            .apps
            .delete_expect_revision(name, Some(entry.revision))
            .await
        {
            Ok(()) => {}
            Err(e) if is_conflict(e.kind()) => return Ok(false),
            Err(e) => return Err(shared("apps", e)),
        }
        mirror_write(&self.mirror.apps).forget(name);
        if let Ok(app) = serde_json::from_slice::<App>(&entry.value) {
            for key in credential_keys(&app) {
                if let Err(e) = self.credentials.delete(&key).await {
                    tracing::warn!(app = name, error = %e, "cannot release a credential id");
                }
            }
        }
        Ok(true)
    }

    // API subscriptions and plugins.

    pub(crate) fn all_subscriptions(&self) -> Vec<(String, StoredSubscription)> {
        read(&self.mirror.subscriptions)
            .prefixed("")
            .filter_map(|(k, s)| Some((k.split_once('.')?.0.to_owned(), s.clone())))
            .collect()
    }

    pub(crate) fn subscription(&self, app: &str, id: &str) -> Option<StoredSubscription> {
        read(&self.mirror.subscriptions)
            .get(&record_key(app, id))
            .cloned()
    }

    pub(crate) async fn create_subscription(
        &self,
        app: &str,
        sub: &StoredSubscription,
    ) -> Result<bool, StoreError> {
        let key = record_key(app, &sub.id);
        match self.subscriptions.create(&key, encode(sub)).await {
            Ok(revision) => {
                mirror_write(&self.mirror.subscriptions).apply(
                    "api_subscriptions",
                    &key,
                    revision,
                    Some(encode(sub)),
                );
                Ok(true)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(shared("api_subscriptions", e)),
        }
    }

    pub(crate) async fn replace_subscription(
        &self,
        app: &str,
        id: &str,
        old: &StoredSubscription,
        new: Option<&StoredSubscription>,
    ) -> Result<bool, StoreError> {
        let key = record_key(app, id);
        let Some(entry) = self
            .subscriptions
            .entry(key.clone())
            .await
            .map_err(|e| shared("api_subscriptions", e))?
            .filter(|e| e.operation == kv::Operation::Put)
        else {
            return Ok(false);
        };
        if serde_json::from_slice::<StoredSubscription>(&entry.value)
            .ok()
            .as_ref()
            != Some(old)
        {
            return Ok(false);
        }
        match new {
            Some(sub) => match self
                .subscriptions
                .update(&key, encode(sub), entry.revision)
                .await
            {
                Ok(revision) => {
                    mirror_write(&self.mirror.subscriptions).apply(
                        "api_subscriptions",
                        &key,
                        revision,
                        Some(encode(sub)),
                    );
                    Ok(true)
                }
                Err(e) if is_conflict(e.kind()) => Ok(false),
                Err(e) => Err(shared("api_subscriptions", e)),
            },
            None => match self
                .subscriptions
                .delete_expect_revision(&key, Some(entry.revision))
                .await
            {
                Ok(()) => {
                    mirror_write(&self.mirror.subscriptions).forget(&key);
                    Ok(true)
                }
                Err(e) if is_conflict(e.kind()) => Ok(false),
                Err(e) => Err(shared("api_subscriptions", e)),
            },
        }
    }

    pub(crate) fn plugins(&self, app: &str) -> Vec<StoredPlugin> {
        let prefix = format!("{app}.");
        read(&self.mirror.plugins)
            .prefixed(&prefix)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Puts the component in the object store under its hash, unless it is there already.
    pub(crate) async fn store_plugin_bytes(
        &self,
        hash: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        if self.components.info(hash).await.is_ok() {
            return Ok(());
        }
        let mut reader = bytes;
        self.components
            .put(hash, &mut reader)
            .await
            .map_err(|e| shared("plugin_components", e))?;
        Ok(())
    }

    pub(crate) async fn put_plugin(
        &self,
        app: &str,
        plugin: &StoredPlugin,
    ) -> Result<(), StoreError> {
        if let Some(name) = &plugin.name {
            for mut other in self.plugins(app) {
                if other.hash != plugin.hash && other.name.as_deref() == Some(name) {
                    other.name = None;
                    self.put_plugin_record(app, &other).await?;
                }
            }
        }
        self.put_plugin_record(app, plugin).await
    }

    async fn put_plugin_record(&self, app: &str, plugin: &StoredPlugin) -> Result<(), StoreError> {
        let key = record_key(app, &plugin.hash);
        let revision = self
            .plugins
            .put(&key, encode(plugin))
            .await
            .map_err(|e| shared("api_plugins", e))?;
        mirror_write(&self.mirror.plugins).apply(
            "api_plugins",
            &key,
            revision,
            Some(encode(plugin)),
        );
        Ok(())
    }

    /// Deletes the app's subscription and plugin records (the components stay: another app
    /// may have uploaded the same bytes).
    pub(crate) async fn remove_app_records(&self, app: &str) -> Result<usize, StoreError> {
        let prefix = format!("{app}.");
        let mut removed = 0;
        for key in self.mirror.subscriptions_keys(&prefix) {
            self.subscriptions
                .delete(&key)
                .await
                .map_err(|e| shared("api_subscriptions", e))?;
            mirror_write(&self.mirror.subscriptions).forget(&key);
            removed += 1;
        }
        for key in self.mirror.plugins_keys(&prefix) {
            self.plugins
                .delete(&key)
                .await
                .map_err(|e| shared("api_plugins", e))?;
            mirror_write(&self.mirror.plugins).forget(&key);
            removed += 1;
        }
        Ok(removed)
    }

    /// Fetches every recorded component that is not yet a file under `storage`, checking
    /// its hash. One that cannot be fetched is logged and the others are still fetched; the
    /// answer is then the first failure: a snapshot built now would quarantine a subscription
    /// that uses it, so it must not count as holding the shared changes.
    pub(crate) async fn fetch_plugin_files(&self, storage: &Path) -> Result<(), StoreError> {
        let hashes: std::collections::BTreeSet<String> = read(&self.mirror.plugins)
            .prefixed("")
            .map(|(_, p)| p.hash.clone())
            .chain(
                read(&self.mirror.subscriptions)
                    .prefixed("")
                    .filter_map(|(_, s)| s.plugin.clone()),
            )
            .collect();
        let mut first_failure = None;
        for hash in hashes {
            let path = api_records::plugin_file(storage, &hash);
            if path.exists() {
                continue;
            }
            if let Err(e) = self.fetch_component(&hash, &path).await {
                tracing::error!(plugin = %hash, error = %e, "cannot fetch an uploaded plugin from the shared object store");
                first_failure.get_or_insert(e);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    async fn fetch_component(&self, hash: &str, path: &Path) -> Result<(), StoreError> {
        let object = self
            .components
            .get(hash)
            .await
            .map_err(|e| shared("plugin_components", e))?;
        let mut bytes = Vec::new();
        object
            .take(MAX_COMPONENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| shared("plugin_components", e))?;
        if hex::encode(Sha256::digest(&bytes)) != hash {
            return Err(StoreError::Corrupt {
                tree: "plugin_components",
                message: format!("the bytes stored as {hash} have another hash"),
            });
        }
        crate::control::records::write_atomically(path, &bytes)
            .await
            .map_err(|e| shared("plugin file", e))
    }
}

impl super::Mirror {
    fn subscriptions_keys(&self, prefix: &str) -> Vec<String> {
        read(&self.subscriptions)
            .prefixed(prefix)
            .map(|(k, _)| k.to_owned())
            .collect()
    }

    fn plugins_keys(&self, prefix: &str) -> Vec<String> {
        read(&self.plugins)
            .prefixed(prefix)
            .map(|(k, _)| k.to_owned())
            .collect()
    }
}

fn mirror_write<T>(table: &mirror::Shared<T>) -> std::sync::RwLockWriteGuard<'_, mirror::Table<T>> {
    table.write().unwrap_or_else(|p| p.into_inner())
}
