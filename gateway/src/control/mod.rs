//! The control plane: what the operator and the apps configure at run time, as opposed to the
//! work plane (events, queue, attempts, dead letters), which stays in [`crate::store`].
//!
//! Records: apps and their credential index ([`apps`], the records themselves being
//! [`crate::apps`]), OAuth2 token hashes ([`tokens`]), API subscriptions and uploaded plugins
//! (records and component bytes: [`records`]), OAuth1 nonces, the stored side of subscription
//! health (flags and pauses: [`SubscriptionHealth`]), and (`extra.rs`) portal links and
//! sessions ([`portal`]) and the event types seen (kept as the event catalog gives them). The
//! shapes live here, below the stages that use them. Two engines keep them, chosen by
//! `[storage] engine`:
//!
//! - [`local`]: the instance's own sled database; one binary, nothing else to run;
//! - [`nats`]: JetStream key-value buckets and the object store, shared by every instance
//!   with the same servers and bucket prefix. Writes that must be unique across instances use
//!   KV `create` and revision-checked updates; the buckets that alter the snapshot are
//!   mirrored in memory and watched, and `reload::follow_control_plane` rebuilds the snapshot
//!   through the same build-and-swap path as a reload when another instance changes them.
//!
//! Reads of apps, subscriptions and plugins are synchronous (the snapshot build and the
//! request path call them); token lookups, nonce claims and every write are `async`.
//! This module never delivers, never runs a plugin and never touches the queue.

pub mod apps;
mod extend;
mod extra;
pub mod local;
pub mod nats;
pub mod portal;
pub mod records;
pub mod tokens;

pub use extend::extend_config;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::apps::{App, Lookup};
use crate::config::StorageConfig;
use crate::config::nats::Engine;
use crate::control::records::{StoredPlugin, StoredSubscription};
use crate::control::tokens::TokenRecord;
use crate::store::{Store, StoreError};

/// Longest wait at shutdown for background writes to reach the shared control plane.
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// The control plane of one running gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub enum ControlPlane {
    /// In the instance's sled database.
    Sled(local::SledPlane),
    /// In NATS JetStream, shared with the other instances.
    Nats(Arc<nats::NatsPlane>),
}

impl ControlPlane {
    /// Opens the engine `storage` names: sled trees in `store`, or a connection to NATS with
    /// its buckets created (or reused) and mirrored.
    pub async fn open(storage: &StorageConfig, store: &Store) -> Result<Self, StoreError> {
        match storage.engine {
            Engine::Sled => Ok(Self::Sled(local::SledPlane::open(store)?)),
            Engine::Nats => Ok(Self::Nats(Arc::new(
                nats::NatsPlane::connect(&storage.nats).await?,
            ))),
        }
    }

    /// The shared engine, when it is NATS.
    pub fn nats(&self) -> Option<&Arc<nats::NatsPlane>> {
        match self {
            Self::Sled(_) => None,
            Self::Nats(plane) => Some(plane),
        }
    }

    /// Whether the control plane is shared with other instances (its nonces, its changes).
    pub fn is_shared(&self) -> bool {
        self.nats().is_some()
    }

    /// The shared control plane's JetStream and this instance's name in it, for a stage that
    /// keeps shared state of its own (Odoo polling's cursors and leases); `None` when the
    /// control plane is this instance's own.
    pub(crate) fn shared_jetstream(&self) -> Option<(&async_nats::jetstream::Context, &str)> {
        self.nats()
            .map(|plane| (plane.jetstream(), plane.instance()))
    }

    /// The engine's name, for logs and the admin status.
    pub fn engine(&self) -> Engine {
        match self {
            Self::Sled(_) => Engine::Sled,
            Self::Nats(_) => Engine::Nats,
        }
    }

    // Apps.

    /// One stored app (not those of the configuration file).
    pub(crate) fn app(&self, key: Lookup<'_>) -> Result<Option<App>, StoreError> {
        match self {
            Self::Sled(p) => p.apps.get(key),
            Self::Nats(p) => Ok(p.app(key)),
        }
    }

    /// Stored app `name`, read from where it is kept rather than from a mirror that may lag.
    pub(crate) async fn app_now(&self, name: &str) -> Result<Option<App>, StoreError> {
        match self {
            Self::Sled(p) => p.apps.get(Lookup::Name(name)),
            Self::Nats(p) => p.app_now(name).await,
        }
    }

    /// Every stored app, by name.
    pub(crate) fn apps(&self) -> Result<Vec<App>, StoreError> {
        match self {
            Self::Sled(p) => p.apps.list(),
            Self::Nats(p) => Ok(p.apps()),
        }
    }

    /// Stores a new app; false (and nothing stored) when its name or a credential id is taken.
    pub(crate) async fn insert_app(&self, app: &App) -> Result<bool, StoreError> {
        match self {
            Self::Sled(p) => p.apps.insert(app),
            Self::Nats(p) => p.insert_app(app).await,
        }
    }

    /// Removes a stored app and its credential index; false when there was none.
    pub(crate) async fn remove_app(&self, name: &str) -> Result<bool, StoreError> {
        match self {
            Self::Sled(p) => p.apps.remove(name),
            Self::Nats(p) => p.remove_app(name).await,
        }
    }

    // OAuth2 tokens.

    /// Issues a token for `record`; the token in clear (only its hash is stored).
    pub(crate) async fn issue_token(&self, record: &TokenRecord) -> Result<String, StoreError> {
        match self {
            Self::Sled(p) => p.tokens.issue(record),
            Self::Nats(p) => p.issue_token(record).await,
        }
    }

    /// The live record of `token` at `now` (seconds).
    pub(crate) async fn token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        match self {
            Self::Sled(p) => p.tokens.lookup(token, now),
            Self::Nats(p) => p.token(token, now).await,
        }
    }

    /// Revokes `token` if it was issued to `client_id`.
    pub(crate) async fn revoke_token(
        &self,
        token: &str,
        client_id: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sled(p) => p.tokens.revoke(token, client_id, now),
            Self::Nats(p) => p.revoke_token(token, client_id, now).await,
        }
    }

    /// Revokes every token of `app`; how many.
    pub(crate) async fn revoke_app_tokens(&self, app: &str) -> Result<usize, StoreError> {
        match self {
            Self::Sled(p) => p.tokens.revoke_app(app),
            Self::Nats(p) => p.revoke_app_tokens(app).await,
        }
    }

    /// The longest lifetime a token can have in this engine (the NATS bucket's `max_age`).
    pub(crate) fn max_token_ttl(&self) -> Option<std::time::Duration> {
        match self {
            Self::Sled(_) => None,
            Self::Nats(_) => Some(nats::TOKEN_MAX_AGE),
        }
    }

    // API subscriptions and plugins.

    /// Every app's subscriptions: (app, subscription), by app then id.
    pub(crate) fn all_subscriptions(
        &self,
    ) -> Result<Vec<(String, StoredSubscription)>, StoreError> {
        match self {
            Self::Sled(p) => p.all_subscriptions(),
            Self::Nats(p) => Ok(p.all_subscriptions()),
        }
    }

    /// One app's subscriptions, by id.
    pub(crate) fn subscriptions(&self, app: &str) -> Result<Vec<StoredSubscription>, StoreError> {
        Ok(self
            .all_subscriptions()?
            .into_iter()
            .filter(|(a, _)| a == app)
            .map(|(_, s)| s)
            .collect())
    }

    /// One subscription of `app`.
    pub(crate) fn subscription(
        &self,
        app: &str,
        id: &str,
    ) -> Result<Option<StoredSubscription>, StoreError> {
        match self {
            Self::Sled(p) => p.subscription(app, id),
            Self::Nats(p) => Ok(p.subscription(app, id)),
        }
    }

    /// Stores a new subscription; false when `app` has one with its id already.
    pub(crate) async fn create_subscription(
        &self,
        app: &str,
        sub: &StoredSubscription,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sled(p) => p.replace_subscription(app, &sub.id, None, Some(sub)),
            Self::Nats(p) => p.create_subscription(app, sub).await,
        }
    }

    /// Replaces subscription `id` of `app` (removes it with `new` = `None`) if it is still
    /// `old`; false when it changed meanwhile (another request, another instance).
    pub(crate) async fn replace_subscription(
        &self,
        app: &str,
        id: &str,
        old: &StoredSubscription,
        new: Option<&StoredSubscription>,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sled(p) => p.replace_subscription(app, id, Some(old), new),
            Self::Nats(p) => p.replace_subscription(app, id, old, new).await,
        }
    }

    /// One app's plugin records, by hash.
    pub(crate) fn plugins(&self, app: &str) -> Result<Vec<StoredPlugin>, StoreError> {
        match self {
            Self::Sled(p) => p.plugins(app),
            Self::Nats(p) => Ok(p.plugins(app)),
        }
    }

    /// Keeps an uploaded component's bytes where every instance finds them (the NATS object
    /// store; with sled the file under the storage folder is the only copy).
    pub(crate) async fn store_plugin_bytes(
        &self,
        hash: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        match self {
            Self::Sled(_) => Ok(()),
            Self::Nats(p) => p.store_plugin_bytes(hash, bytes).await,
        }
    }

    /// Records an upload; another upload of the app with the same name loses the name.
    pub(crate) async fn put_plugin(
        &self,
        app: &str,
        plugin: &StoredPlugin,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sled(p) => p.put_plugin(app, plugin),
            Self::Nats(p) => p.put_plugin(app, plugin).await,
        }
    }

    /// Removes every subscription and plugin record of `app`; how many.
    pub(crate) async fn remove_app_records(&self, app: &str) -> Result<usize, StoreError> {
        match self {
            Self::Sled(p) => p.remove_app_records(app),
            Self::Nats(p) => p.remove_app_records(app).await,
        }
    }

    /// The count of shared changes a snapshot build about to start reads (0 on sled, where
    /// every change is this instance's own and rebuilt before it is answered).
    pub(crate) fn change_generation(&self) -> u64 {
        match self {
            Self::Sled(_) => 0,
            Self::Nats(p) => p.change_generation(),
        }
    }

    /// Whether the snapshot in force holds every shared change applied so far (always on
    /// sled).
    pub(crate) fn snapshot_current(&self) -> bool {
        match self {
            Self::Sled(_) => true,
            Self::Nats(p) => p.snapshot_current(),
        }
    }

    /// The snapshot built from `generation` is in force.
    pub(crate) fn snapshot_built(&self, generation: u64) {
        if let Self::Nats(p) = self {
            p.snapshot_built(generation);
        }
    }

    /// Read-your-writes for the work built on the snapshot: waits until the snapshot in force
    /// holds every change to apps, API subscriptions and plugins made before `since` on any
    /// instance; false when that takes longer than `patience` (the caller must not act on a
    /// snapshot that may lack a subscription). At once on sled.
    pub(crate) async fn caught_up(
        &self,
        since: std::time::Instant,
        patience: std::time::Duration,
    ) -> bool {
        match self {
            Self::Sled(_) => true,
            Self::Nats(p) => p.caught_up(since, patience).await,
        }
    }

    /// Makes sure every stored plugin's component is a file under `storage` (the folder the
    /// snapshot loads them from), fetching those uploaded on other instances. A no-op on sled.
    pub(crate) async fn fetch_plugin_files(&self, storage: &Path) -> Result<(), StoreError> {
        match self {
            Self::Sled(_) => Ok(()),
            Self::Nats(p) => p.fetch_plugin_files(storage).await,
        }
    }

    // OAuth1 nonces.

    /// Claims a (consumer key, nonce, timestamp) triple across instances: false when another
    /// instance (or this one) used it within the window. On sled the instance's own nonce
    /// memory, kept in its database, is the whole check, and this always answers true.
    pub(crate) async fn claim_nonce(
        &self,
        consumer: &str,
        nonce: &str,
        timestamp: u64,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sled(_) => Ok(true),
            Self::Nats(p) => p.claim_nonce(consumer, nonce, timestamp).await,
        }
    }

    /// Waits, briefly, for writes still queued in the background (subscription health) to be
    /// stored: at shutdown.
    pub(crate) async fn flush(&self) {
        if let Self::Nats(p) = self {
            p.flush_health(SHUTDOWN_FLUSH).await;
        }
    }

    // Subscription health.

    /// On the shared control plane, the flags and pauses of subscriptions it holds and where
    /// to write them (`None` on sled: the `health` module keeps them in the store's tree).
    pub(crate) fn health_sink(&self) -> Option<(HashMap<String, SubscriptionHealth>, HealthSink)> {
        match self {
            Self::Sled(_) => None,
            Self::Nats(p) => Some((p.stored_health(), HealthSink(p.clone()))),
        }
    }
}

/// Writes a subscription's health to the shared buckets (in the background, in order, the
/// latest state of each subscription winning).
#[derive(Debug, Clone)]
pub struct HealthSink(Arc<nats::NatsPlane>);

impl HealthSink {
    /// Stores `health` for `sub` (`None`: healthy and not paused).
    pub(crate) fn write(&self, sub: &str, health: Option<&SubscriptionHealth>) {
        self.0.write_health(sub, health);
    }
}

/// A subscription's health as kept and shown (`health` counts it; the admin status shows it).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SubscriptionHealth {
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Set once the failures pass the configured threshold.
    pub flagged: bool,
    /// Whether deliveries are paused because of it.
    pub disabled: bool,
    /// The last error seen.
    pub last_error: Option<String>,
}
