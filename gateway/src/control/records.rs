//! What the API keeps: apps' subscriptions and uploaded plugins. The shapes are here, with
//! their sled side (trees `api_subscriptions` and `api_plugins`, both keyed by app name then
//! id, so one app's records are one prefix scan); [`crate::control`] chooses the engine.
//!
//! This module owns the stored shapes and their reads and writes. It does not validate (see
//! `api::validate`) and never touches the running snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Format;
use crate::config::file::DestinationAuth;
use crate::store::{StoreError, decode, encode};
use crate::subscriptions::filter::PayloadFilter;

const SUBSCRIPTIONS: &str = "api_subscriptions";
const PLUGINS: &str = "api_plugins";

/// A subscription created through the API, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSubscription {
    /// The app's own id for it.
    pub id: String,
    /// Event-type patterns.
    pub events: Vec<String>,
    /// Where deliveries go.
    pub destination: StoredDestination,
    /// Pass-through format.
    pub format: Format,
    /// Record and field filter.
    pub filter: Option<PayloadFilter>,
    /// SHA-256 (hex) of the app's uploaded plugin.
    pub plugin: Option<String>,
    /// Plugin settings.
    pub config: BTreeMap<String, String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Attempt timeout in milliseconds (default: the gateway's).
    pub timeout_ms: Option<u64>,
    /// Retries (default: the gateway's).
    pub retries: Option<u32>,
    /// Related records embedded before the plugin or pass-through, within what the
    /// operator allows apps (`[sources.odoo.app_enrich]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enrich: Vec<crate::odoo::EnrichSpec>,
    /// Ordered delivery per key (`"record"` or a key template), if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<String>,
    /// Creation time (ms since the epoch).
    pub created_ms: u64,
    /// Last change (ms since the epoch).
    pub updated_ms: u64,
}

/// The receiver of an API subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDestination {
    /// Where to POST.
    pub url: String,
    /// The signing secret (`whsec_...`).
    pub secret: String,
    /// Outbound authentication.
    pub auth: DestinationAuth,
    /// The secret a rotation replaced, still signing beside `secret` for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
    /// Deliveries at most this often (`"10/s"`), if the app asked for a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
}

/// A replaced signing secret and until when it still signs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// The secret (`whsec_...`).
    pub secret: String,
    /// When it stops signing (ms since the epoch).
    pub until_ms: u64,
}

/// An uploaded plugin component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPlugin {
    /// SHA-256 of the bytes, hex; also the file name.
    pub hash: String,
    /// The name the app gave it, if any.
    pub name: Option<String>,
    /// Size in bytes.
    pub size: usize,
    /// Upload time (ms since the epoch).
    pub uploaded_ms: u64,
}

/// The id every snapshot entry of an app's subscription uses: `app.<app>.<id>`.
pub fn qualified_id(app: &str, id: &str) -> String {
    format!("app.{app}.{id}")
}

/// The prefix of every qualified id of `app`.
pub fn app_prefix(app: &str) -> String {
    format!("app.{app}.")
}

/// Where uploaded plugins are kept, under the storage folder.
pub fn plugin_dir(storage: &Path) -> PathBuf {
    storage.join("plugins")
}

/// The file of an uploaded plugin.
pub fn plugin_file(storage: &Path, hash: &str) -> PathBuf {
    plugin_dir(storage).join(format!("{hash}.wasm"))
}

fn key(app: &str, id: &str) -> Vec<u8> {
    [app.as_bytes(), b"\0", id.as_bytes()].concat()
}

/// Writes `bytes` to `path` through a temporary file made durable, then renamed over it:
/// a reader finds the old file or the whole new one.
pub(crate) async fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("plugin path has no folder"))?;
    tokio::fs::create_dir_all(dir).await?;
    let tmp = path.with_extension(format!("tmp{:08x}", rand::random::<u32>()));
    tokio::fs::write(&tmp, bytes).await?;
    let file = tokio::fs::File::open(&tmp).await?;
    file.sync_all().await?;
    tokio::fs::rename(&tmp, path).await
}

/// Removes every subscription and plugin record of `app`; returns how many.
pub(crate) fn remove_app_records(db: &sled::Db, app: &str) -> Result<usize, StoreError> {
    let mut removed = 0;
    for name in [SUBSCRIPTIONS, PLUGINS] {
        let tree = db.open_tree(name)?;
        let mut batch = sled::Batch::default();
        for entry in tree.scan_prefix(key(app, "")) {
            batch.remove(entry?.0);
            removed += 1;
        }
        tree.apply_batch(batch)?;
    }
    Ok(removed)
}

/// Every app's subscriptions: (app, subscription), by app then id.
pub(crate) fn all_subscriptions(
    db: &sled::Db,
) -> Result<Vec<(String, StoredSubscription)>, StoreError> {
    let tree = db.open_tree(SUBSCRIPTIONS)?;
    let mut out = Vec::new();
    for entry in tree.iter() {
        let (k, v) = entry?;
        let app = k
            .split(|b| *b == 0)
            .next()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        out.push((app, decode(SUBSCRIPTIONS, &v)?));
    }
    Ok(out)
}

/// One subscription of `app`.
pub(crate) fn subscription(
    db: &sled::Db,
    app: &str,
    id: &str,
) -> Result<Option<StoredSubscription>, StoreError> {
    let tree = db.open_tree(SUBSCRIPTIONS)?;
    tree.get(key(app, id))?
        .map(|v| decode(SUBSCRIPTIONS, &v))
        .transpose()
}

/// Writes (`Some`) or removes (`None`) a subscription if what is stored is still `old`
/// (`None`: nothing); false, and nothing written, when it is not.
pub(crate) fn replace_subscription(
    db: &sled::Db,
    app: &str,
    id: &str,
    old: Option<&StoredSubscription>,
    new: Option<&StoredSubscription>,
) -> Result<bool, StoreError> {
    let tree = db.open_tree(SUBSCRIPTIONS)?;
    let k = key(app, id);
    let current = tree.get(&k)?;
    let stored: Option<StoredSubscription> = current
        .as_ref()
        .map(|v| decode(SUBSCRIPTIONS, v))
        .transpose()?;
    if stored.as_ref() != old {
        return Ok(false);
    }
    let swapped = tree.compare_and_swap(k, current, new.map(encode))?;
    Ok(swapped.is_ok())
}

/// One app's plugins, by hash.
pub(crate) fn plugins(db: &sled::Db, app: &str) -> Result<Vec<StoredPlugin>, StoreError> {
    let tree = db.open_tree(PLUGINS)?;
    tree.scan_prefix(key(app, ""))
        .map(|e| decode(PLUGINS, &e?.1))
        .collect()
}

/// Among an app's plugins, the one named `reference`, by hash or by name (the newest upload
/// with that name).
pub fn find_plugin(all: Vec<StoredPlugin>, reference: &str) -> Option<StoredPlugin> {
    let by_hash = all.iter().find(|p| p.hash == reference).cloned();
    by_hash.or_else(|| {
        all.into_iter()
            .filter(|p| p.name.as_deref() == Some(reference))
            .max_by_key(|p| p.uploaded_ms)
    })
}

/// Records an upload; another upload of the app with the same name loses the name.
pub(crate) fn put_plugin(
    db: &sled::Db,
    app: &str,
    plugin: &StoredPlugin,
) -> Result<(), StoreError> {
    let tree = db.open_tree(PLUGINS)?;
    if let Some(name) = &plugin.name {
        for mut other in plugins(db, app)? {
            if other.hash != plugin.hash && other.name.as_deref() == Some(name) {
                other.name = None;
                tree.insert(key(app, &other.hash), encode(&other))?;
            }
        }
    }
    tree.insert(key(app, &plugin.hash), encode(plugin))?;
    Ok(())
}
