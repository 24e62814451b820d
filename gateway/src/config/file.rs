//! The configuration file as written by people: plain serde data, one struct per table.
//!
//! Every table rejects unknown keys, and defaults live here and nowhere else. Nothing in
//! this module checks cross-references; [`super::Snapshot::build`] does that once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::delivery::{Backoff, ClientOptions};
use crate::plugin::PluginLimits;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where events and the delivery queue are kept.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Defaults for every subscription's deliveries.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Plugin host limits and cache.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Odoo instances allowed to send events.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Receivers of deliveries.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    /// What goes where.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
}

impl ConfigFile {
    /// The sled folder, with a relative path resolved against `base`.
    pub fn storage_dir(&self, base: &std::path::Path) -> PathBuf {
        if self.storage.path.is_absolute() { self.storage.path.clone() } else { base.join(&self.storage.path) }
    }

    /// Where compiled plugins are cached, with relative paths resolved against `base`.
    pub fn plugin_cache_dir(&self, base: &std::path::Path) -> PathBuf {
        let dir = match &self.plugins.cache_dir {
            Some(dir) => dir.clone(),
            None => self.storage.path.join("plugin-cache"),
        };
        if dir.is_absolute() { dir } else { base.join(dir) }
    }
}

/// `[server]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest time one request may take, body included.
    #[serde(with = "crate::delivery::backoff::serde_duration")]
    pub request_timeout: Duration,
    /// Requests handled at once; more wait (bounded by the kernel's accept queue).
    pub max_concurrent_requests: usize,
    /// How long shutdown waits for in-flight work.
    #[serde(with = "crate::delivery::backoff::serde_duration")]
    pub shutdown_grace: Duration,
    /// Bearer token for `/admin/` endpoints; none disables them.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 1024,
            shutdown_grace: Duration::from_secs(10),
            admin_token: None,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The sled folder (relative paths are relative to the config file).
    pub path: PathBuf,
    /// Same source and same body within this window is the same event.
    #[serde(with = "crate::delivery::backoff::serde_duration")]
    pub dedup_window: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { path: PathBuf::from("data"), dedup_window: Duration::from_secs(600) }
    }
}

/// `[delivery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Timeout of one delivery attempt.
    #[serde(with = "crate::delivery::backoff::serde_duration")]
    pub timeout: Duration,
    /// Retries after the first attempt before a delivery is dead-lettered.
    pub retries: u32,
    /// Deliveries in flight overall.
    pub concurrency: usize,
    /// Deliveries in flight to one destination.
    pub per_destination_concurrency: usize,
    /// Consecutive failed deliveries after which a subscription is flagged.
    pub flag_after_failures: u32,
    /// Pause (stop delivering for) a flagged subscription until it is re-enabled.
    pub disable_flagged: bool,
    /// `[delivery.backoff]`: delays between attempts (`schedule`, `jitter`, `retry_after_cap`).
    pub backoff: Backoff,
    /// `[delivery.client]`: TLS roots, connection pool and the SSRF guard (`[delivery.client.ssrf]`).
    pub client: ClientOptions,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            retries: 5,
            concurrency: 256,
            per_destination_concurrency: 32,
            flag_after_failures: 20,
            disable_flagged: false,
            backoff: Backoff::default(),
            client: ClientOptions::default(),
        }
    }
}

/// `[plugins]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Folder for compiled plugins (default: `<storage>/plugin-cache`).
    pub cache_dir: Option<PathBuf>,
    /// CPU, memory and output bounds of every plugin call.
    pub limits: PluginLimits,
}

/// `[[sources]]`: one Odoo instance.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name used in ingest URLs.
    pub name: String,
    /// Accepted secret tokens (several during a rotation).
    pub tokens: Vec<String>,
    /// Odoo server-action names (`"SO confirmed(#57)"`) mapped to event actions.
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
    /// Action when neither the URL nor `actions` gives one.
    #[serde(default = "default_action")]
    pub default_action: String,
}

fn default_action() -> String {
    "write".to_owned()
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field("actions", &self.actions)
            .field("default_action", &self.default_action)
            .finish()
    }
}

/// `[[destinations]]`: one receiver.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Name that subscriptions and plugins refer to.
    pub name: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Standard Webhooks secrets (`whsec_...`); all sign during a rotation.
    #[serde(default)]
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secrets", &format_args!("[{} redacted]", self.secrets.len()))
            .finish()
    }
}

/// Body format of a subscription without a plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The payload as JSON.
    #[default]
    Json,
    /// The payload converted to XML.
    Xml,
}

/// `[[subscriptions]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Stable id; part of every delivery id.
    pub id: String,
    /// Event-type patterns: `sale.order.confirmed`, `sale.order.*`, `*.unlink`, `*`.
    pub events: Vec<String>,
    /// Destinations by name; the first is the default.
    pub destinations: Vec<String>,
    /// Plugin component (`.wasm`); none means pass-through in `format`.
    #[serde(default)]
    pub plugin: Option<PathBuf>,
    /// The plugin's configuration (string values).
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Body format when there is no plugin.
    #[serde(default)]
    pub format: Format,
    /// Per-subscription attempt timeout.
    #[serde(default, with = "crate::delivery::backoff::serde_duration::option")]
    pub timeout: Option<Duration>,
    /// Per-subscription retry count.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Whether the subscription is active.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}
