//! The control plane on NATS JetStream (`[storage] engine = "nats"`), shared by every
//! instance with the same servers and `bucket_prefix`.
//!
//! Buckets (`<prefix>_<name>`, each with `replicas` copies, history 1):
//!
//! | bucket | key → value | how writes stay consistent |
//! |---|---|---|
//! | `apps` | name → app | `create`: a taken name is refused on every instance |
//! | `app_credentials` | `c.<hex client_id>` / `k.<hex consumer_key>` → name | `create`, claimed before the name and released if it is taken |
//! | `tokens` | hex SHA-256 of the token → record | random keys; `max_age` 24 h ([`TOKEN_MAX_AGE`]) |
//! | `api_subscriptions` | `<app>.<id>` → subscription | `create`, then updates and deletes checked against the revision read |
//! | `api_plugins` | `<app>.<sha256>` → plugin record | content-addressed; the bytes in the object store `plugin_components` |
//! | `oauth1_nonces` | hex SHA-256 of (consumer, nonce, timestamp) → nothing | `create`: a replay is refused on every instance; `max_age` the nonce window |
//! | `subscription_health` | hex subscription id → flags, pause, writer | the latest state wins; an instance skips its own echoes |
//! | `portal_links` | hex SHA-256 of the link → link | random keys; taken by a purge naming the revision read; `max_age` [`crate::control::portal::MAX_LINK_TTL`] |
//! | `portal_sessions` | hex SHA-256 of the session → session | random keys; `max_age` [`crate::control::portal::MAX_SESSION_TTL`] |
//! | `event_catalog` | hex of source and event type → shape seen | each instance merges what it saw into what is stored |
//!
//! `apps`, `api_subscriptions`, `api_plugins` and `subscription_health` are mirrored in memory
//! (`mirror.rs`) and watched: reads on the request path and in the snapshot build never wait on
//! the network, and a change made by another instance wakes [`crate::reload::follow_control_plane`].

mod auth;
mod fresh;
mod health;
mod mirror;
mod portal;
mod records;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::apps::App;
use crate::config::nats::NatsConfig;
use crate::control::SubscriptionHealth;
use crate::control::records::{StoredPlugin, StoredSubscription};
use crate::store::StoreError;

/// Longest life of an OAuth2 token in the shared bucket (its `max_age`): an app's
/// `token_ttl` above it is cut to it, and the token answer says so in `expires_in`.
pub const TOKEN_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// How long a nonce is remembered: a timestamp up to the window ahead of the clock, plus the
/// window.
const NONCE_MAX_AGE: Duration =
    Duration::from_secs(2 * crate::signing::oauth1::TIMESTAMP_WINDOW_SECS + 1);

/// How long a JetStream cluster may take to answer bucket creation at start-up.
const STARTING_CLUSTER: Duration = Duration::from_secs(15);

/// How long connecting may take before start-up fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request to JetStream (a KV read or write) may take: shorter than the
/// server's request timeout, so that a request waiting on an unreachable NATS gets `503
/// control_plane_unavailable` rather than a bare timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The subscription health record in the shared bucket.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredHealth {
    /// The subscription.
    subscription: String,
    /// The instance that wrote it (its own echoes are skipped).
    origin: String,
    /// Flags, pause, last error (all cleared: healthy and running).
    health: SubscriptionHealth,
}

/// What the follower tasks share with the plane.
#[derive(Debug, Default)]
struct Mirror {
    apps: mirror::Shared<App>,
    subscriptions: mirror::Shared<StoredSubscription>,
    plugins: mirror::Shared<StoredPlugin>,
    health: mirror::Shared<StoredHealth>,
}

/// Health records by subscription (`None`: healthy and running).
pub(crate) type HealthUpdates = HashMap<String, Option<SubscriptionHealth>>;

/// Health writes waiting for the writer task, the latest per subscription.
#[derive(Debug, Default)]
pub(crate) struct PendingHealth {
    queue: Mutex<HealthUpdates>,
    wake: Notify,
    /// Held by the writer while it writes a batch it took from `queue`.
    writing: tokio::sync::Mutex<()>,
}

/// What [`Changes::take`] found.
#[derive(Debug, Default)]
pub struct Taken {
    /// Apps, API subscriptions or plugins changed: the snapshot must be rebuilt.
    pub snapshot: bool,
    /// Subscription health set (`Some`) or cleared (`None`) elsewhere.
    pub health: Vec<(String, Option<SubscriptionHealth>)>,
}

/// What another instance changed, for [`crate::reload::follow_control_plane`].
#[derive(Debug, Default)]
pub struct Changes {
    /// Woken on every change below.
    pub notify: Notify,
    /// Apps, API subscriptions or plugins changed: the snapshot must be rebuilt.
    snapshot: std::sync::atomic::AtomicBool,
    /// Subscription health set elsewhere, by subscription (`None`: cleared).
    health: Mutex<HealthUpdates>,
}

impl Changes {
    /// Takes what changed since the last call.
    pub fn take(&self) -> Taken {
        let snapshot = self
            .snapshot
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        let health = std::mem::take(&mut *self.health.lock().unwrap_or_else(|p| p.into_inner()));
        Taken {
            snapshot,
            health: health.into_iter().collect(),
        }
    }
}

/// The buckets, the mirror and the tasks that follow them. Dropping it stops the tasks.
pub struct NatsPlane {
    /// The JetStream context, shared with the work plane.
    js: jetstream::Context,
    apps: kv::Store,
    credentials: kv::Store,
    tokens: kv::Store,
    subscriptions: kv::Store,
    plugins: kv::Store,
    nonces: kv::Store,
    portal_links: kv::Store,
    portal_sessions: kv::Store,
    event_catalog: kv::Store,
    components: object_store::ObjectStore,
    mirror: Mirror,
    /// This instance's name in health records.
    instance: String,
    /// What other instances changed.
    pub changes: Arc<Changes>,
    /// Health writes waiting for the writer task.
    pending_health: Arc<PendingHealth>,
    /// The changes the watches applied, and those the snapshot in force holds.
    built: Arc<fresh::Built>,
    /// Looks at the buckets' last revisions, shared by the fan-out's events.
    freshness: fresh::Freshness,
    _tasks: DropGuard,
}

impl std::fmt::Debug for NatsPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsPlane")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Creates the stream of key-value bucket `bucket` (one value per key, `max_age` if not
/// zero), or takes it as it is when it exists, and opens the bucket on it.
///
/// The stream is made here, with the key-value layout JetStream defines (`KV_<bucket>` on
/// `$KV.<bucket>.>`), rather than by the client's bucket creation: that first asks for the
/// account's details in a shape servers before 2.10 do not answer.
async fn open_bucket(
    js: &jetstream::Context,
    bucket: String,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, StoreError> {
    open_bucket_with(js, bucket, max_age, replicas, 1).await
}

/// Runs `attempt` until it succeeds or [`STARTING_CLUSTER`] has passed: a cluster starting at
/// the same time answers "temporarily unavailable" until it has elected its leaders.
pub(crate) async fn retry_starting<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + STARTING_CLUSTER;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "JetStream not ready yet; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates stream `desired`, or brings an existing one to it: a stream made by an earlier
/// version or under other settings (`replicas`, `retention`, `dedup_window`) is updated, so
/// that what the configuration says is what runs. A change JetStream refuses (a subject or
/// retention policy of another kind) is a clear error naming the stream, not a silent
/// difference.
pub(crate) async fn reconcile_stream(
    js: &jetstream::Context,
    desired: jetstream::stream::Config,
) -> Result<jetstream::stream::Stream, String> {
    let mut stream = js
        .get_or_create_stream(desired.clone())
        .await
        .map_err(|e| e.to_string())?;
    let current = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .config
        .clone();
    let differs = current.num_replicas != desired.num_replicas
        || current.max_age != desired.max_age
        || current.duplicate_window != desired.duplicate_window
        // The server keeps "no limit" as -1 where the request said 0.
        || current.max_messages_per_subject.max(0) != desired.max_messages_per_subject.max(0)
        || current.subjects != desired.subjects;
    if differs {
        js.update_stream(desired.clone()).await.map_err(|e| {
            format!(
                "stream {} exists with other settings and cannot be brought to the configured ones                  (replicas {} → {}, max age {:?} → {:?}, dedup window {:?} → {:?}): {e}",
                desired.name,
                current.num_replicas,
                desired.num_replicas,
                current.max_age,
                desired.max_age,
                current.duplicate_window,
                desired.duplicate_window
            )
        })?;
        tracing::info!(stream = %desired.name, "stream settings updated to the configuration");
        stream = js
            .get_stream(&desired.name)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(stream)
}

/// A bucket keeping `history` revisions of each key.
pub(crate) async fn open_bucket_with(
    js: &jetstream::Context,
    bucket: String,
    max_age: Duration,
    replicas: usize,
    history: i64,
) -> Result<kv::Store, StoreError> {
    let stream = jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history,
        max_age,
        num_replicas: replicas,
        storage: jetstream::stream::StorageType::File,
        discard: jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        // Reads go through the stream's leader: a direct get may be answered by any replica,
        // and one that has just restarted and not caught up yet answers from the past.
        allow_direct: false,
        duplicate_window: if max_age.is_zero() {
            Duration::from_secs(120)
        } else {
            max_age.min(Duration::from_secs(120))
        },
        ..Default::default()
    };
    // A cluster starting at the same time answers "temporarily unavailable" until it has
    // elected its leaders: try again for a while before giving up.
    let deadline = tokio::time::Instant::now() + STARTING_CLUSTER;
    loop {
        let opened = match reconcile_stream(js, stream.clone()).await {
            Ok(_) => js
                .get_key_value(&bucket)
                .await
                .map_err(|e| shared(&format!("bucket {bucket}"), e)),
            Err(e) => Err(shared(&format!("bucket {bucket}"), e)),
        };
        match opened {
            Ok(store) => return Ok(store),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "JetStream not ready yet; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A record as stored: JSON (plain data: serialising cannot fail).
fn encode<T: serde::Serialize>(value: &T) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

pub(crate) fn shared(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Shared(format!("{what}: {e}"))
}

impl NatsPlane {
    /// The JetStream context (the work plane opens its streams on it).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// This instance's name (random, for the life of the process's connection): who wrote
    /// a health record, who holds a polling lease.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Connects, creates (or reuses) the buckets, reads the watched ones and starts following
    /// them.
    pub async fn connect(config: &NatsConfig) -> Result<Self, StoreError> {
        let mut options = async_nats::ConnectOptions::new()
            .name("odoo-gateway")
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT));
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let Some(path) = &config.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| shared(&format!("storage.nats.creds_file {}", path.display()), e))?;
        }
        let client = options
            .connect(config.urls.as_slice())
            .await
            .map_err(|e| shared(&format!("cannot connect to {}", config.urls.join(", ")), e))?;
        let js = jetstream::new(client);
        let prefix = &config.bucket_prefix;
        let open = |name: &str, max_age: Duration| {
            let js = js.clone();
            let bucket = format!("{prefix}_{name}");
            let replicas = config.replicas;
            async move { open_bucket(&js, bucket, max_age, replicas).await }
        };
        let none = Duration::ZERO;
        let apps = open("apps", none).await?;
        let credentials = open("app_credentials", none).await?;
        let tokens = open("tokens", TOKEN_MAX_AGE).await?;
        let subscriptions = open("api_subscriptions", none).await?;
        let plugins = open("api_plugins", none).await?;
        let nonces = open("oauth1_nonces", NONCE_MAX_AGE).await?;
        let health = open("subscription_health", none).await?;
        let portal_links = open("portal_links", crate::control::portal::MAX_LINK_TTL).await?;
        let portal_sessions =
            open("portal_sessions", crate::control::portal::MAX_SESSION_TTL).await?;
        let event_catalog = open("event_catalog", none).await?;
        let components_name = format!("{prefix}_plugin_components");
        let components = match js
            .create_object_store(object_store::Config {
                bucket: components_name.clone(),
                num_replicas: config.replicas,
                ..Default::default()
            })
            .await
        {
            Ok(store) => store,
            // Another instance made it first (or with other settings): use it as it is.
            Err(_) => js
                .get_object_store(&components_name)
                .await
                .map_err(|e| shared(&format!("object store {components_name}"), e))?,
        };

        let instance = hex::encode(rand::random::<[u8; 8]>());
        let changes = Arc::new(Changes::default());
        let built = Arc::new(fresh::Built::default());
        let mirror = Mirror::default();
        let cancel = CancellationToken::new();
        let snapshot_changed: Arc<dyn Fn(&str) + Send + Sync> = {
            let changes = changes.clone();
            let built = built.clone();
            Arc::new(move |_key: &str| {
                built.changed();
                changes
                    .snapshot
                    .store(true, std::sync::atomic::Ordering::Release);
                changes.notify.notify_one();
            })
        };
        let app_changed: Arc<dyn Fn(&str) + Send + Sync> = {
            let changes = changes.clone();
            let built = built.clone();
            // An app removed elsewhere needs nothing more here than the rebuild: its work is
            // in the shared work plane, purged once by the instance that removed it (a purge
            // repeated here could reach an app made again under the same name meanwhile).
            Arc::new(move |_key: &str| {
                built.changed();
                changes
                    .snapshot
                    .store(true, std::sync::atomic::Ordering::Release);
                changes.notify.notify_one();
            })
        };
        let health_changed: Arc<dyn Fn(&str) + Send + Sync> = {
            let changes = changes.clone();
            let table = mirror.health.clone();
            let me = instance.clone();
            Arc::new(move |key: &str| {
                let Some(sub) = hex::decode(key)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                else {
                    return;
                };
                let record = mirror::read(&table).get(key).cloned();
                if record.as_ref().is_some_and(|r| r.origin == me) {
                    return;
                }
                let health = record.map(|r| r.health).filter(|h| h.flagged || h.disabled);
                changes
                    .health
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(sub, health);
                changes.notify.notify_one();
            })
        };
        // The first read of each watched bucket happens before the first snapshot is built;
        // what it finds is not a change.
        let quiet = |_: &str| {};
        let watches = (
            mirror::load(&apps, &mirror.apps, &quiet).await?,
            mirror::load(&subscriptions, &mirror.subscriptions, &quiet).await?,
            mirror::load(&plugins, &mirror.plugins, &quiet).await?,
            mirror::load(&health, &mirror.health, &quiet).await?,
        );
        mirror::spawn(
            &apps,
            &mirror.apps,
            watches.0,
            app_changed,
            &cancel,
            &instance,
        );
        mirror::spawn(
            &subscriptions,
            &mirror.subscriptions,
            watches.1,
            snapshot_changed.clone(),
            &cancel,
            &instance,
        );
        mirror::spawn(
            &plugins,
            &mirror.plugins,
            watches.2,
            snapshot_changed,
            &cancel,
            &instance,
        );
        mirror::spawn(
            &health,
            &mirror.health,
            watches.3,
            health_changed,
            &cancel,
            &instance,
        );
        let pending_health = Arc::new(PendingHealth::default());
        tokio::spawn(health::write_health(
            health.clone(),
            mirror.health.clone(),
            instance.clone(),
            pending_health.clone(),
            cancel.clone(),
        ));
        tracing::info!(servers = %config.urls.join(", "), prefix = %prefix, replicas = config.replicas, "shared control plane on NATS JetStream");
        Ok(Self {
            js,
            apps,
            credentials,
            tokens,
            subscriptions,
            plugins,
            nonces,
            portal_links,
            portal_sessions,
            event_catalog,
            components,
            mirror,
            instance,
            changes,
            pending_health,
            built,
            freshness: fresh::Freshness::default(),
            _tasks: cancel.drop_guard(),
        })
    }

    /// The count of applied changes a snapshot build about to read the mirror starts from;
    /// pass it to [`Self::snapshot_built`] once that snapshot is in force.
    pub(crate) fn change_generation(&self) -> u64 {
        self.built.generation()
    }

    /// The snapshot built from `generation` ([`Self::change_generation`]) is in force.
    pub(crate) fn snapshot_built(&self, generation: u64) {
        self.built.built(generation);
    }

    /// Whether the snapshot in force holds every change the watches applied.
    pub(crate) fn snapshot_current(&self) -> bool {
        self.built.current()
    }

    /// Waits until the snapshot in force holds every change made to the apps, API
    /// subscriptions and plugins before `since` on any instance; false if that takes longer
    /// than `patience` (this instance is behind: its watches lag, or its last build failed) or
    /// the buckets cannot be asked.
    pub(crate) async fn caught_up(&self, since: std::time::Instant, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        let buckets = [&self.apps, &self.subscriptions, &self.plugins];
        let latest =
            tokio::time::timeout_at(deadline, self.freshness.latest_since(since, buckets)).await;
        let Ok(Ok(latest)) = latest else {
            return false;
        };
        // Once the marks are there, the changes counted then are the ones to wait for: later
        // changes (made after the event) must not keep it waiting.
        let mut target = None;
        loop {
            if target.is_none() {
                let marks = [
                    mirror::read(&self.mirror.apps).high(),
                    mirror::read(&self.mirror.subscriptions).high(),
                    mirror::read(&self.mirror.plugins).high(),
                ];
                if marks.iter().zip(latest).all(|(mark, last)| *mark >= last) {
                    target = Some(self.built.generation());
                }
            }
            if target.is_some_and(|t| self.built.holds(t)) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
