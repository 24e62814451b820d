//! `[sources.odoo]`, `[sources.odoo.poll]` and a subscription's `enrich` list as written in
//! the configuration file, and their validation into the runtime [`super::OdooSource`].
//!
//! Plain serde data with defaults in one place; [`OdooConfig::validate`] reports every
//! problem with its key, as the rest of the loader does. Secrets never appear in `Debug`.

use std::time::Duration;

use serde::Deserialize;

use crate::time::serde_duration;

/// `[sources.odoo]`: how the gateway reaches one Odoo over its external API (JSON-RPC).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdooConfig {
    /// Base URL of the Odoo server (`https://odoo.example.com`); `/jsonrpc` is added.
    pub url: String,
    /// Database name.
    pub database: String,
    /// Login of the user the gateway acts as.
    pub login: String,
    /// That user's API key (or password, on versions before 14).
    pub api_key: String,
    /// How to call Odoo: `jsonrpc` (`/jsonrpc`, Odoo 9 and later; deprecated from 19) or
    /// `json2` (`/json/2/<model>/<method>` with the key as a bearer token, Odoo 19 and later).
    #[serde(default)]
    pub protocol: Protocol,
    /// Bound on one JSON-RPC call, connect to last byte.
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// Quick retries of a call that failed in a way that may pass (network, timeout, 5xx)
    /// before the unit of work itself is retried under the subscription's backoff.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How long records read for enrichment are reused (`0s`, the default: never).
    #[serde(default, with = "serde_duration")]
    pub cache_ttl: Duration,
    /// Largest JSON-RPC answer read, in bytes.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// `[sources.odoo.enrich]`: per model, the related records every subscription gets
    /// embedded in this source's events (`"sale.order" = [{ field = "order_line", ... }]`).
    /// A subscription's own `enrich` list replaces the source's.
    #[serde(default)]
    pub enrich: std::collections::BTreeMap<String, Vec<EnrichSpec>>,
    /// `[sources.odoo.app_enrich]`: per model, what the subscriptions of third-party apps may
    /// enrich in this source's events. An app's `enrich` entry must name one of these fields
    /// (and its model, if it names one) and only fields listed here; without this table, apps
    /// enrich nothing of their own (they get the `enrich` lists above).
    #[serde(default)]
    pub app_enrich: std::collections::BTreeMap<String, Vec<EnrichSpec>>,
    /// `[sources.odoo.poll]`: poll the models for changes (Odoo 9 to 16, or reconciliation).
    #[serde(default)]
    pub poll: Option<PollConfig>,
}

/// The external API a client speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// JSON-RPC on `/jsonrpc`: `common.authenticate`, then `object.execute_kw`.
    #[default]
    JsonRpc,
    /// JSON-2 on `/json/2/<model>/<method>`: named arguments, `Authorization: bearer <key>`.
    Json2,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_retries() -> u32 {
    2
}

fn default_max_response_bytes() -> usize {
    16 * 1024 * 1024
}

impl std::fmt::Debug for OdooConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdooConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("login", &self.login)
            .field("api_key", &"[redacted]")
            .field("protocol", &self.protocol)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("cache_ttl", &self.cache_ttl)
            .field("enrich", &self.enrich)
            .field("app_enrich", &self.app_enrich)
            .field("poll", &self.poll)
            .finish()
    }
}

/// `[sources.odoo.poll]`: which models are polled, how often, and from when.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// The polled models.
    pub models: Vec<PollModelConfig>,
    /// Pause between two polls of a model.
    #[serde(default = "default_interval", with = "serde_duration")]
    pub interval: Duration,
    /// Records per `search_read` page.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Where a model without a stored cursor starts: `now` (changes from now on, the
    /// default), `beginning` (every record), or a UTC time `YYYY-MM-DD HH:MM:SS`.
    #[serde(default = "default_start")]
    pub start: String,
    /// De-duplicate against the webhook: a native webhook body of this source that carries
    /// `write_date` is the same event as the polled change of that record at that time.
    #[serde(default)]
    pub reconcile: bool,
    /// Each poll reads again the changes of this long before the cursor (their dedup keys
    /// keep them from being delivered twice): Odoo dates a change at the start of its
    /// transaction, so one that commits later than a poll would otherwise be missed.
    #[serde(default, with = "serde_duration")]
    pub overlap: Duration,
    /// How often the models with `detect_deletions` compare their ids.
    #[serde(default = "default_deletions_every", with = "serde_duration")]
    pub deletions_every: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_page_size() -> u32 {
    200
}

fn default_start() -> String {
    "now".to_owned()
}

fn default_deletions_every() -> Duration {
    Duration::from_secs(3600)
}

/// One polled model: `{ model = "sale.order", fields = ["name", "state"] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollModelConfig {
    /// Technical model name.
    pub model: String,
    /// Fields read into the event's payload (`id`, `create_date` and `write_date` always are).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Compare the model's ids every `deletions_every` and send an `unlink` event for each
    /// one gone (polling cannot see deletions otherwise). For small models only.
    #[serde(default)]
    pub detect_deletions: bool,
    /// More ids than this and the deletion check is skipped (with a warning).
    #[serde(default = "default_max_ids")]
    pub max_ids: usize,
}

fn default_max_ids() -> usize {
    10_000
}

/// One entry of a subscription's `enrich` list:
/// `{ field = "order_line", model = "sale.order.line", fields = ["product_id", "route_id"] }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichSpec {
    /// The payload field holding the ids (many2one or x2many).
    pub field: String,
    /// The related model; asked of Odoo (`fields_get`) when left out.
    #[serde(default)]
    pub model: Option<String>,
    /// Fields of the related records to embed; none: a many2one becomes `[id, name]` and
    /// an x2many a list of `[id, name]`.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// Whether `name` can be an Odoo field name (`order_line`, `x_studio_route`).
pub fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `name` can be an Odoo model name (`sale.order.line`).
pub fn is_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// Checks an `enrich` list; each problem names its key under `list` (the list's own key,
/// such as `subscriptions[0].enrich`).
pub fn validate_enrich(list: &str, specs: &[EnrichSpec], problems: &mut Vec<String>) {
    for (i, spec) in specs.iter().enumerate() {
        if !is_field_name(&spec.field) {
            problems.push(format!(
                "{list}[{i}].field: `{}` is not an Odoo field name",
                spec.field
            ));
        }
        if let Some(model) = spec.model.as_deref().filter(|m| !is_model_name(m)) {
            problems.push(format!(
                "{list}[{i}].model: `{model}` is not an Odoo model name"
            ));
        }
        for (j, f) in spec.fields.iter().enumerate() {
            if !is_field_name(f) {
                problems.push(format!(
                    "{list}[{i}].fields[{j}]: `{f}` is not an Odoo field name"
                ));
            }
        }
        if specs[..i].iter().any(|s| s.field == spec.field) {
            problems.push(format!(
                "{list}[{i}].field: `{}` is enriched twice",
                spec.field
            ));
        }
    }
}
