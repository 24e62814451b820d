//! The configuration file as written by people: plain serde data, one struct per table.
//!
//! Every table rejects unknown keys, and defaults live here and nowhere else. Nothing in
//! this module checks cross-references; [`super::Snapshot::build`] does that once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::apps::{
    AppConfig, DEFAULT_APP_RATE_LIMIT_PER_MINUTE, DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE,
    DEFAULT_TOKEN_TTL,
};
pub use crate::delivery::outbound_auth::DestinationAuth;
use crate::delivery::{Backoff, ClientOptions};
use crate::plugin::PluginLimits;
pub use crate::store::Format;

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
    /// The console's chart samples and OTLP export (see [`super::telemetry`]).
    #[serde(default)]
    pub telemetry: super::telemetry::TelemetryConfig,
    /// Odoo instances allowed to send events.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Receivers of deliveries.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    /// What goes where.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
    /// Third-party apps allowed to use the API (see [`crate::auth`]). An app stored with
    /// `odoo-gateway apps add` under the same name is shadowed: the file wins.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

impl ConfigFile {
    /// The sled folder, with a relative path resolved against `base`.
    pub fn storage_dir(&self, base: &std::path::Path) -> PathBuf {
        if self.storage.path.is_absolute() {
            self.storage.path.clone()
        } else {
            base.join(&self.storage.path)
        }
    }

    /// Where compiled plugins are cached, with relative paths resolved against `base`.
    pub fn plugin_cache_dir(&self, base: &std::path::Path) -> PathBuf {
        let dir = match &self.plugins.cache_dir {
            Some(dir) => dir.clone(),
            None => self.storage.path.join("plugin-cache"),
        };
        if dir.is_absolute() {
            dir
        } else {
            base.join(dir)
        }
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
    #[serde(with = "crate::time::serde_duration")]
    pub request_timeout: Duration,
    /// Requests handled at once; more wait (bounded by the kernel's accept queue).
    pub max_concurrent_requests: usize,
    /// How long shutdown waits for in-flight work.
    #[serde(with = "crate::time::serde_duration")]
    pub shutdown_grace: Duration,
    /// Bearer token for `/admin/` endpoints; none disables them.
    pub admin_token: Option<String>,
    /// Bearer tokens (one, or a list) that read `/metrics` and nothing else: what a
    /// Prometheus scraper holds. The admin token reads `/metrics` too.
    pub metrics_token: MetricsTokens,
    /// The gateway's public base URL (`https://gateway.example.com`) when it sits behind a
    /// proxy: its scheme and authority are what OAuth1 signatures cover. Without it, `http`
    /// and the request's `Host` header.
    pub public_url: Option<String>,
    /// `[server.tls]`: serve HTTPS with these PEM files instead of plain HTTP.
    pub tls: Option<TlsConfig>,
}

/// `server.metrics_token`: one token or a list (several while a scraper's token is rotated).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "OneOrMany")]
pub struct MetricsTokens(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for MetricsTokens {
    fn from(value: OneOrMany) -> Self {
        match value {
            OneOrMany::One(token) => Self(vec![token]),
            OneOrMany::Many(tokens) => Self(tokens),
        }
    }
}

impl std::fmt::Debug for MetricsTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} redacted]", self.0.len())
    }
}

impl MetricsTokens {
    /// Whether `given` is one of the tokens (time independent of where it differs).
    pub fn accepts(&self, given: &str) -> bool {
        self.0.iter().fold(false, |ok, t| {
            ok | super::constant_time_eq(given.as_bytes(), t.as_bytes())
        })
    }
}

/// `[server.tls]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("shutdown_grace", &self.shutdown_grace)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "[redacted]"),
            )
            .field("metrics_token", &self.metrics_token)
            .field("public_url", &self.public_url)
            .field("tls", &self.tls)
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
            metrics_token: MetricsTokens::default(),
            public_url: None,
            tls: None,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where the gateway's state lives: `sled` (this instance's database) or `nats`
    /// (JetStream, shared by several instances; see `[storage.nats]`).
    pub engine: super::nats::Engine,
    /// `[storage.nats]`: servers, credentials, bucket prefix, replicas (engine `nats` only).
    pub nats: super::nats::NatsConfig,
    /// The sled folder (relative paths are relative to the config file). With engine `nats`,
    /// each instance's own: its Odoo polling cursors and caches.
    pub path: PathBuf,
    /// Same source and same body within this window is the same event.
    #[serde(with = "crate::time::serde_duration")]
    pub dedup_window: Duration,
    /// How long an event whose work is done is kept, with its attempt log and delivery index
    /// rows (and explicit-id dedup keys).
    #[serde(with = "crate::time::serde_duration")]
    pub retention: Duration,
    /// How long a dead letter is kept (a replayed one is queued again and does not expire).
    #[serde(with = "crate::time::serde_duration")]
    pub dead_letter_retention: Duration,
    /// How often the maintenance task prunes and checks the disk budget.
    #[serde(with = "crate::time::serde_duration")]
    pub maintenance_interval: Duration,
    /// Budget of live data for the database (the bytes of what it holds, counted as it is
    /// written and pruned; the folder on disk is larger, see the README): at it the oldest
    /// finished events are pruned first, and if that is not enough new events are refused
    /// (`507 storage_full`) until live data is 10 % below it.
    pub max_disk_bytes: Option<u64>,
    /// Free space the file system holding the database must keep (at most a quarter of the
    /// file system): when the database grows into it, new events are refused (`503
    /// storage_unavailable`) until deliveries and retention make room in the database. 0
    /// turns the watch off.
    pub min_free_bytes: u64,
    /// Size of the reserve file (`reserve.bin` in the storage folder; at most an eighth of the
    /// file system), preallocated room released when the disk fills anyway, so that
    /// deliveries, pruning and a restart can still write; made again when there is room. 0:
    /// none.
    pub reserve_bytes: u64,
    /// Under load (the last flush served several writers), the shortest time between the
    /// starts of two flushes: fewer, larger fsyncs for at most this much added acknowledgement
    /// latency. A lone writer is flushed at once.
    #[serde(with = "crate::time::serde_duration")]
    pub commit_delay: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            engine: super::nats::Engine::Sled,
            nats: super::nats::NatsConfig::default(),
            path: PathBuf::from("data"),
            dedup_window: Duration::from_secs(600),
            retention: Duration::from_secs(7 * 86_400),
            dead_letter_retention: Duration::from_secs(30 * 86_400),
            maintenance_interval: Duration::from_secs(60),
            max_disk_bytes: None,
            min_free_bytes: 64 * 1024 * 1024,
            reserve_bytes: 32 * 1024 * 1024,
            commit_delay: Duration::from_millis(2),
        }
    }
}

impl StorageConfig {
    /// The room on disk these settings give the store.
    pub fn room(&self) -> crate::store::Room {
        crate::store::Room {
            max_live_bytes: self.max_disk_bytes,
            min_free_bytes: self.min_free_bytes,
            reserve_bytes: self.reserve_bytes,
        }
    }

    /// The retention these settings describe.
    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            delivered: self.retention,
            dead_letters: self.dead_letter_retention,
            dedup_window: self.dedup_window,
        }
    }
}

/// `[delivery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Timeout of one delivery attempt.
    #[serde(with = "crate::time::serde_duration")]
    pub timeout: Duration,
    /// Retries after the first attempt before a delivery is dead-lettered.
    pub retries: u32,
    /// Deliveries in flight overall.
    pub concurrency: usize,
    /// Deliveries in flight to one receiver host (scheme, host and port), whichever
    /// destinations point there.
    pub per_destination_concurrency: usize,
    /// Deliveries in flight for the subscriptions of one app (its share of `concurrency`).
    pub per_app_concurrency: usize,
    /// Consecutive failed deliveries after which a subscription is flagged.
    pub flag_after_failures: u32,
    /// Pause (stop delivering for) a flagged subscription until it is re-enabled.
    pub disable_flagged: bool,
    /// Whether an app's delivery log shows the start of its receiver's response bodies. Off by
    /// default: an app sees status and timing only, never what another host answered.
    pub show_response_excerpts_to_apps: bool,
    /// `[delivery.backoff]`: delays between attempts (`schedule`, `jitter`, `retry_after_cap`).
    pub backoff: Backoff,
    /// `[delivery.client]`: TLS roots, connection pool and the SSRF guard (`[delivery.client.ssrf]`).
    pub client: ClientOptions,
    /// `[delivery.circuit]`: when a receiver host that keeps failing gets a rest.
    pub circuit: crate::delivery::policy::circuit::CircuitConfig,
}

impl DeliveryConfig {
    /// The delivery slots these settings describe.
    pub fn slots(&self) -> crate::delivery::Slots {
        crate::delivery::Slots {
            concurrency: self.concurrency,
            per_destination: self.per_destination_concurrency,
            per_app: self.per_app_concurrency,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            retries: 5,
            concurrency: 256,
            per_destination_concurrency: 32,
            per_app_concurrency: 64,
            flag_after_failures: 20,
            disable_flagged: false,
            show_response_excerpts_to_apps: false,
            backoff: Backoff::default(),
            client: ClientOptions::default(),
            circuit: Default::default(),
        }
    }
}

/// `[plugins]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Folder for compiled plugins (default: `<storage>/plugin-cache`).
    pub cache_dir: Option<PathBuf>,
    /// CPU, memory and output bounds of every plugin call.
    pub limits: PluginLimits,
    /// Plugin calls at once (default: the number of CPU cores).
    pub concurrency: Option<usize>,
    /// Plugin calls at once for one subscription (default: half of `concurrency`, at least
    /// one), so that a slow or hostile plugin leaves room for the others. Up to `concurrency`,
    /// for an instance where one plugin subscription does most of the work.
    pub per_subscription: Option<usize>,
}

impl PluginsConfig {
    /// Plugin calls at once, overall and for one subscription.
    pub fn slots(&self) -> (usize, usize) {
        let total = self
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1);
        let share = self.per_subscription.unwrap_or(total / 2).clamp(1, total);
        (total, share)
    }

    /// What is wrong with these settings, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        let (total, _) = self.slots();
        match self.per_subscription? {
            0 => Some("plugins.per_subscription: give at least 1".to_owned()),
            n if n > total => Some(format!(
                "plugins.per_subscription: {n} is more than the {total} plugin calls at once (`plugins.concurrency`)"
            )),
            _ => None,
        }
    }
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
    /// `[sources.odoo]`: reach this Odoo over its external API, for enrichment and polling.
    #[serde(default)]
    pub odoo: Option<crate::odoo::OdooConfig>,
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
            .field("odoo", &self.odoo)
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
    /// How deliveries authenticate to the receiver, on top of the signature.
    #[serde(default)]
    pub auth: DestinationAuth,
    /// Deliveries at most this often (`"10/s"`, `"600/min"`, `"1000/h"`), whatever
    /// subscriptions and instances deliver here.
    #[serde(default)]
    pub rate_limit: Option<String>,
}

impl std::fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("auth", &self.auth)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
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
    /// The plugin's own time and memory bounds, within `[plugins.limits]`'s maximum.
    #[serde(default)]
    pub plugin_limits: Option<crate::plugin::PluginOverrides>,
    /// Body format when there is no plugin.
    #[serde(default)]
    pub format: Format,
    /// Per-subscription attempt timeout.
    #[serde(default, with = "crate::time::serde_duration::option")]
    pub timeout: Option<Duration>,
    /// Per-subscription retry count.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Whether the subscription is active.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Record and field filter, applied before the plugin or pass-through.
    #[serde(default)]
    pub filter: Option<crate::subscriptions::filter::PayloadFilter>,
    /// Ordered delivery: the deliveries of one key go one at a time, in the order their events
    /// were accepted. `"record"` (one key per record) or a template over the event such as
    /// `"{model}:{record_id}"` or `"{payload.partner_id}"`.
    #[serde(default)]
    pub ordering: Option<String>,
    /// Related records read from the event's Odoo and embedded before the plugin (or the
    /// pass-through body) sees the event: `[{ field = "order_line", model = "sale.order.line",
    /// fields = ["product_id", "route_id"] }]`. Needs `[sources.odoo]` on the event's source.
    #[serde(default)]
    pub enrich: Vec<crate::odoo::EnrichSpec>,
    /// For a subscription an app made through the API: the event patterns the app is granted
    /// now. Never read from the file.
    #[serde(skip)]
    pub grants: Option<Vec<String>>,
    /// For an app's subscription: the sources its app may receive events from (`None`: all).
    #[serde(skip)]
    pub granted_sources: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}
