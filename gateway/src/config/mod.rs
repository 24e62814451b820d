//! Configuration: the TOML file ([`mod@file`]), and the validated, immutable [`Snapshot`] that
//! the running gateway reads.
//!
//! Start-up and reload go through the same two steps: [`load`] parses the file (errors name
//! the file, line and key), then [`Snapshot::build`] checks cross-references, loads every
//! plugin and asks it to validate its configuration. A snapshot is never changed once built.

pub mod file;
pub mod nats;
pub use crate::telemetry::settings as telemetry;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use file::{ConfigFile, DeliveryConfig, Format, ServerConfig, StorageConfig};

use crate::plugin::{Plugin, PluginConfig, PluginHost};
use crate::signing::SigningSecret;
use crate::subscriptions::EventPattern;

/// The example configuration shipped with the gateway, used when no file is given.
pub const EXAMPLE: &str = include_str!("../../../config/gateway.example.toml");

/// Shortest accepted `server.admin_token`.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was expected.
        message: String,
    },
    /// Parsed, but inconsistent (every problem, each naming its key and, when known, its line).
    #[error("{file}: {}", .problems.join("; "))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem found, each naming its key.
        problems: Vec<String>,
    },
}

impl ConfigError {
    /// Adds the line of each problem's key, found in the configuration `text`, so that an
    /// error reads `file:line: key: what is wrong`.
    pub fn with_lines(self, text: &str) -> Self {
        match self {
            Self::Invalid { file, problems } => {
                let problems = problems
                    .into_iter()
                    .map(|p| match locate(text, p.split(':').next().unwrap_or("")) {
                        Some(line) => format!("line {line}: {p}"),
                        None => p,
                    })
                    .collect();
                Self::Invalid { file, problems }
            }
            other => other,
        }
    }
}

/// The 1-based line where `key` (such as `subscriptions[2].destinations[0]` or
/// `delivery.retries`) is set in `text`, as far as a line-oriented look can tell.
fn locate(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut parts = key.split('.');
    let head = parts.next()?;
    let (table, index) = match head.split_once('[') {
        Some((t, rest)) => (t, rest.trim_end_matches(']').parse::<usize>().ok()?),
        None => (head, 0),
    };
    let header_array = format!("[[{table}]]");
    let header_table = format!("[{table}]");
    let start = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == header_array || **l == header_table)
        .nth(index)
        .map(|(i, _)| i)?;
    let rest: Vec<&str> = parts.collect();
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| l.starts_with("[["))
        .map_or(lines.len(), |(i, _)| i);
    // A key in a sub-table (`sources[0].odoo.poll.page_size`) is looked for under the deepest
    // header of it that is written out (`[sources.odoo.poll]`).
    let (mut start, mut consumed) = (start, 0);
    for depth in (1..rest.len()).rev() {
        let header = format!("[{table}.{}]", rest[..depth].join("."));
        if let Some(i) = lines[start + 1..end].iter().position(|l| *l == header) {
            (start, consumed) = (start + 1 + i, depth);
            break;
        }
    }
    let field = rest
        .get(consumed)
        .map(|f| f.split(['[', ' ', '(']).next().unwrap_or(f));
    let Some(field) = field.filter(|f| !f.is_empty()) else {
        return Some(start + 1);
    };
    let sets = |l: &&str| {
        let l = l.trim_start_matches('"');
        l.strip_prefix(field)
            .is_some_and(|rest| rest.trim_start_matches('"').trim_start().starts_with('='))
    };
    let found = lines[start + 1..end]
        .iter()
        .position(sets)
        .map(|i| start + 1 + i);
    Some(found.unwrap_or(start) + 1)
}

/// Reads and parses a configuration file. Relative paths inside it are resolved against
/// the file's folder.
pub fn load(path: &Path) -> Result<(ConfigFile, PathBuf), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: file.clone(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((parse(&text, &file)?, base))
}

/// Parses configuration text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (line, column)
            })
            .unwrap_or((1, 1));
        ConfigError::Parse {
            file: file.to_owned(),
            line,
            column,
            message: e.message().to_owned(),
        }
    })
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb): ([u8; 32], [u8; 32]) = (Sha256::digest(a).into(), Sha256::digest(b).into());
    ha.ct_eq(&hb).into()
}

/// A configured Odoo instance.
pub struct Source {
    /// Name used in URLs.
    pub name: String,
    /// SHA-256 of each accepted token: compared in constant time, never kept in clear.
    token_hashes: Vec<[u8; 32]>,
    /// Odoo server-action names mapped to event actions.
    pub actions: BTreeMap<String, String>,
    /// Action when nothing else gives one.
    pub default_action: String,
    /// Its Odoo's external API (enrichment, polling), when `[sources.odoo]` is set.
    pub odoo: Option<Arc<crate::odoo::OdooSource>>,
}

impl Source {
    /// Builds a source that accepts `tokens`.
    pub fn new(
        name: &str,
        tokens: &[String],
        actions: BTreeMap<String, String>,
        default_action: &str,
    ) -> Self {
        Self {
            name: name.to_owned(),
            token_hashes: tokens
                .iter()
                .map(|t| Sha256::digest(t.as_bytes()).into())
                .collect(),
            actions,
            default_action: default_action.to_owned(),
            odoo: None,
        }
    }

    /// Whether a native webhook body of this source is the same event as the polled change
    /// with the same model, id and `write_date` (`[sources.odoo.poll] reconcile = true`).
    pub fn reconciles(&self) -> bool {
        self.odoo
            .as_ref()
            .and_then(|o| o.poll.as_ref())
            .is_some_and(|p| p.reconcile)
    }

    /// In reconcile mode, the change key of a webhook body of a polled model that carries
    /// `write_date` and the fields that model polls (select them in the server action): the
    /// polled change of the same write is then a duplicate.
    pub fn webhook_change(
        &self,
        model: &str,
        record_id: Option<i64>,
        payload: &str,
    ) -> Option<String> {
        use crate::odoo::change::{change_key, fingerprint};
        if !self.reconciles() {
            return None;
        }
        let poll = self.odoo.as_ref()?.poll.as_ref()?;
        let polled = poll.models.iter().find(|m| m.model == model)?;
        let Ok(serde_json::Value::Object(payload)) =
            serde_json::from_str::<serde_json::Value>(payload)
        else {
            return None;
        };
        let write_date = payload.get("write_date")?.as_str()?;
        let state = fingerprint(&payload, &polled.fields)?;
        Some(change_key(model, record_id?, write_date, &state))
    }

    /// Whether `token` is one of the source's tokens (time independent of where it differs).
    pub fn accepts(&self, token: &str) -> bool {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.token_hashes
            .iter()
            .fold(0u8, |ok, h| ok | h.ct_eq(&hash).unwrap_u8())
            == 1
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A receiver of deliveries.
#[derive(Debug)]
pub struct Destination {
    /// Name.
    pub name: String,
    /// Where to POST.
    pub url: http::Uri,
    /// Signing secrets; every one signs.
    pub secrets: Vec<SigningSecret>,
    /// Outbound authentication on top of the signature.
    pub auth: file::DestinationAuth,
    /// Deliveries at most this often, in the whole cluster.
    pub rate_limit: Option<crate::delivery::policy::rate::Rate>,
}

impl Destination {
    /// The receiver's authority, `scheme://host:port`: the key of its concurrency limit, so
    /// that every destination pointing at one host shares it.
    pub fn authority(&self) -> String {
        authority(&self.url)
    }
}

/// A URL's receiver host, `scheme://host:port` (the port spelled out).
pub fn authority(url: &http::Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("http");
    let port = url
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let host = url.host().unwrap_or("").to_ascii_lowercase();
    format!("{scheme}://{host}:{port}")
}

/// A subscription, validated.
#[derive(Debug)]
pub struct Subscription {
    /// Stable id.
    pub id: String,
    /// Event-type patterns.
    pub patterns: Vec<EventPattern>,
    /// Destination names; the first is the default.
    pub destinations: Vec<String>,
    /// The plugin, loaded and validated.
    pub plugin: Option<Plugin>,
    /// The plugin's file name without its extension (`shipper_router`): what the operator's
    /// console and dry-run call it.
    pub plugin_name: Option<String>,
    /// The plugin's configuration.
    pub plugin_config: PluginConfig,
    /// Pass-through format when there is no plugin.
    pub format: Format,
    /// Attempt timeout.
    pub timeout: Duration,
    /// Retries before dead-lettering.
    pub retries: u32,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Record and field filter, applied before the plugin or pass-through.
    pub filter: Option<crate::subscriptions::filter::PayloadFilter>,
    /// Related records embedded before the plugin or pass-through (see [`crate::transform::enrich`]).
    pub enrich: Vec<crate::odoo::EnrichSpec>,
    /// Ordered delivery: the key of an event's jobs.
    pub ordering: Option<crate::delivery::policy::order::KeyTemplate>,
    /// For an app's subscription, the events its app is granted: fan-out delivers only those
    /// (an operator who narrows a grant narrows the app's existing subscriptions at once).
    pub grants: Option<Vec<EventPattern>>,
    /// For an app's subscription, the sources its app may receive events from (`None`: all).
    pub granted_sources: Option<Vec<String>>,
}

/// One immutable, validated configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// Where it came from (for messages).
    pub origin: String,
    /// Server settings.
    pub server: ServerConfig,
    /// Storage settings (absolute path).
    pub storage: StorageConfig,
    /// Delivery defaults.
    pub delivery: DeliveryConfig,
    /// Plugin cache folder.
    pub plugin_cache: PathBuf,
    /// `[plugins]` as written: the plugin host, its slots and threads are made at start-up
    /// from it, so a reload only compares it.
    pub plugins: file::PluginsConfig,
    /// The console's chart samples and OTLP export (read at start-up).
    pub telemetry: telemetry::TelemetryConfig,
    /// Sources by name.
    pub sources: HashMap<String, Source>,
    /// Destinations by name.
    pub destinations: HashMap<String, Arc<Destination>>,
    /// Subscriptions in file order.
    pub subscriptions: Vec<Arc<Subscription>>,
    /// Position of each subscription in `subscriptions`, by id (dispatch looks one up per job).
    by_id: HashMap<String, usize>,
    /// Files whose change means a reload: the configuration file and every plugin.
    pub watched: Vec<PathBuf>,
    /// API subscriptions left out because they no longer validate: (id, why).
    pub quarantined: Vec<(String, String)>,
    /// Third-party apps of the file (those stored through `/admin/apps` are looked up in sled).
    pub apps: crate::apps::ConfigApps,
}

impl Snapshot {
    /// The subscription `id`, if configured.
    pub fn subscription(&self, id: &str) -> Option<&Arc<Subscription>> {
        self.by_id.get(id).map(|&i| &self.subscriptions[i])
    }

    /// Each subscription's id with the short hash of its plugin (`"none"` without one), as
    /// the metrics label them.
    pub fn plugin_labels(&self) -> Vec<(&str, &str)> {
        self.subscriptions
            .iter()
            .map(|s| {
                let plugin = s.plugin.as_ref().map_or("none", |p| p.short_hash());
                (s.id.as_str(), plugin)
            })
            .collect()
    }
}

impl Snapshot {
    /// Validates `file` (paths relative to `base`) and loads its plugins with `host`.
    /// Every problem is reported, not just the first.
    ///
    /// Plugins whose bytes are unchanged since `previous` are reused as they are; only new or
    /// changed ones are compiled (or taken from the host's disk cache).
    pub fn build(
        file: ConfigFile,
        base: &Path,
        origin: &str,
        host: &PluginHost,
        previous: Option<&Snapshot>,
    ) -> Result<Self, ConfigError> {
        let known: HashMap<String, Plugin> = previous
            .into_iter()
            .flat_map(|p| p.subscriptions.iter())
            .filter_map(|s| s.plugin.as_ref())
            .map(|p| (p.hash().to_owned(), p.clone()))
            .collect();
        let mut problems = Vec::new();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        // An empty or guessable admin token would open `/admin/` to anyone.
        if let Some(token) = &file.server.admin_token
            && token.trim().len() < MIN_ADMIN_TOKEN_LEN
        {
            problems.push(format!(
                "server.admin_token: give at least {MIN_ADMIN_TOKEN_LEN} characters (or leave it out to turn `/admin/` off)"
            ));
        }
        // A scraper's token must not open `/admin/`: never the admin token, never guessable.
        for (i, token) in file.server.metrics_token.0.iter().enumerate() {
            if token.trim().len() < MIN_ADMIN_TOKEN_LEN {
                problems.push(format!(
                    "server.metrics_token[{i}]: give at least {MIN_ADMIN_TOKEN_LEN} characters"
                ));
            }
            if file.server.admin_token.as_deref() == Some(token.as_str()) {
                problems.push(format!(
                    "server.metrics_token[{i}]: the admin token cannot be a metrics token (it already reads /metrics)"
                ));
            }
        }
        file.telemetry.validate(&mut problems);
        problems.extend(file.plugins.problem());
        let mut sources = HashMap::new();
        for (i, s) in file.sources.iter().enumerate() {
            if s.tokens.is_empty() || s.tokens.iter().any(|t| t.len() < 16) {
                problems.push(format!(
                    "sources[{i}].tokens: give at least one token of 16 or more characters"
                ));
            }
            let name_ok = !s.name.is_empty()
                && s.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                problems.push(format!(
                    "sources[{i}].name: `{}` must be letters, digits, `-` or `_`",
                    s.name
                ));
            }
            let mut source = Source::new(&s.name, &s.tokens, s.actions.clone(), &s.default_action);
            source.odoo = s
                .odoo
                .as_ref()
                .and_then(|o| o.validate(&format!("sources[{i}]"), &mut problems))
                .map(Arc::new);
            if sources.insert(s.name.clone(), source).is_some() {
                problems.push(format!("sources[{i}].name: `{}` is used twice", s.name));
            }
        }

        let mut destinations = HashMap::new();
        for (i, d) in file.destinations.iter().enumerate() {
            let url = match d.url.parse::<http::Uri>() {
                Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                    u
                }
                _ => {
                    problems.push(format!(
                        "destinations[{i}].url: `{}` is not an http(s) URL",
                        d.url
                    ));
                    continue;
                }
            };
            let mut secrets = Vec::new();
            for (j, s) in d.secrets.iter().enumerate() {
                match s.parse::<SigningSecret>() {
                    Ok(secret) => secrets.push(secret),
                    Err(e) => problems.push(format!("destinations[{i}].secrets[{j}]: {e}")),
                }
            }
            if let Err(e) = crate::delivery::outbound_auth::validate(&d.auth) {
                problems.push(format!("destinations[{i}].{e}"));
            }
            let rate_limit = match d.rate_limit.as_deref().map(str::parse) {
                Some(Ok(rate)) => Some(rate),
                Some(Err(e)) => {
                    problems.push(format!("destinations[{i}].rate_limit: {e}"));
                    None
                }
                None => None,
            };
            let dest = Destination {
                name: d.name.clone(),
                url,
                secrets,
                auth: d.auth.clone(),
                rate_limit,
            };
            if destinations
                .insert(d.name.clone(), Arc::new(dest))
                .is_some()
            {
                problems.push(format!(
                    "destinations[{i}].name: `{}` is used twice",
                    d.name
                ));
            }
        }

        let mut subscriptions = Vec::new();
        let mut watched = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (i, s) in file.subscriptions.iter().enumerate() {
            let key = format!("subscriptions[{i}]");
            if s.id.is_empty() {
                // It names every job of the subscription (`<event>.<id>.<n>`).
                problems.push(format!("{key}.id: give the subscription an id"));
            } else if !ids.insert(s.id.clone()) {
                problems.push(format!("{key}.id: `{}` is used twice", s.id));
            }
            let mut patterns = Vec::new();
            for (j, p) in s.events.iter().enumerate() {
                match EventPattern::parse(p) {
                    Ok(p) => patterns.push(p),
                    Err(e) => problems.push(format!("{key}.events[{j}]: {e}")),
                }
            }
            if patterns.is_empty() && s.events.is_empty() {
                problems.push(format!("{key}.events: give at least one event pattern"));
            }
            if s.destinations.is_empty() {
                problems.push(format!("{key}.destinations: give at least one destination"));
            }
            for (j, d) in s.destinations.iter().enumerate() {
                if !destinations.contains_key(d) {
                    problems.push(format!(
                        "{key}.destinations[{j}]: no destination is named `{d}`"
                    ));
                }
            }
            let mut config = BTreeMap::new();
            for (k, v) in &s.config {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                        v.to_string()
                    }
                    _ => {
                        problems.push(format!(
                            "{key}.config.{k}: plugin settings are strings, numbers or booleans"
                        ));
                        continue;
                    }
                };
                config.insert(k.clone(), text);
            }
            if let Some(Err(e)) = s.filter.as_ref().map(|f| f.validate()) {
                problems.push(format!("{key}.{e}"));
            }
            crate::odoo::config::validate_enrich(
                &format!("{key}.enrich"),
                &s.enrich,
                &mut problems,
            );
            if !s.enrich.is_empty() && file.sources.iter().all(|src| src.odoo.is_none()) {
                problems.push(format!(
                    "{key}.enrich: no source has [sources.odoo] to read the records from"
                ));
            }
            let ordering = match s
                .ordering
                .as_deref()
                .map(crate::delivery::policy::order::KeyTemplate::parse)
            {
                Some(Ok(template)) => Some(template),
                Some(Err(e)) => {
                    problems.push(format!("{key}.{e}"));
                    None
                }
                None => None,
            };
            let plugin_config: PluginConfig = Arc::new(config);
            let plugin = s.plugin.as_ref().and_then(|p| {
                let path = resolve(p);
                watched.push(path.clone());
                let loaded = std::fs::read(&path)
                    .map_err(|e| crate::plugin::PluginError::Io {
                        path: path.clone(),
                        message: e.to_string(),
                    })
                    .and_then(
                        |wasm| match known.get(&hex::encode(Sha256::digest(&wasm))) {
                            Some(plugin) => Ok(plugin.clone()),
                            None => host.load(&wasm),
                        },
                    )
                    .map_err(|e| format!("{key}.plugin ({}): {e}", path.display()))
                    .and_then(|plugin| {
                        plugin
                            .with_limits(&s.plugin_limits.unwrap_or_default())
                            .map_err(|e| format!("{key}.plugin_limits: {e}"))
                    })
                    .and_then(|plugin| {
                        plugin
                            .validate_config(&plugin_config)
                            .map(|()| plugin)
                            .map_err(|e| format!("{key}.plugin ({}): {e}", path.display()))
                    });
                loaded.map_err(|problem| problems.push(problem)).ok()
            });
            subscriptions.push(Arc::new(Subscription {
                id: s.id.clone(),
                patterns,
                destinations: s.destinations.clone(),
                plugin,
                plugin_name: s
                    .plugin
                    .as_ref()
                    .and_then(|p| p.file_stem())
                    .map(|stem| stem.to_string_lossy().into_owned()),
                plugin_config,
                format: s.format,
                timeout: s.timeout.unwrap_or(file.delivery.timeout),
                retries: s.retries.unwrap_or(file.delivery.retries),
                enabled: s.enabled,
                filter: s.filter.clone(),
                enrich: s.enrich.clone(),
                ordering,
                granted_sources: s.granted_sources.clone(),
                grants: s.grants.as_ref().map(|grants| {
                    grants
                        .iter()
                        .filter_map(|g| EventPattern::parse(g).ok())
                        .collect()
                }),
            }));
        }

        if let Err(e) = file.delivery.circuit.check() {
            problems.push(e);
        }
        let apps = crate::apps::ConfigApps::build(&file.apps, &mut problems);
        file.storage
            .nats
            .validate(file.storage.engine, &mut problems);

        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                file: origin.to_owned(),
                problems,
            });
        }
        let plugin_cache = file.plugin_cache_dir(base);
        let mut storage = file.storage.clone();
        storage.path = file.storage_dir(base);
        storage.nats.creds_file = storage.nats.creds_file.as_deref().map(resolve);
        Ok(Self {
            quarantined: Vec::new(),
            origin: origin.to_owned(),
            server: file.server,
            storage,
            delivery: file.delivery,
            plugin_cache,
            plugins: file.plugins,
            telemetry: file.telemetry,
            sources,
            destinations,
            by_id: subscriptions
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect(),
            subscriptions,
            watched,
            apps,
        })
    }
}

/// The snapshot of `text`, read as `/tmp/gw.toml` with a plugin host of default limits, for
/// the tests of the modules that read one.
#[cfg(test)]
pub(crate) fn build_for_test(text: &str) -> Result<Snapshot, ConfigError> {
    let file = parse(text, "gw.toml")?;
    let host = PluginHost::new(crate::plugin::PluginLimits::default(), None).expect("host");
    Snapshot::build(file, Path::new("/tmp"), "gw.toml", &host, None).map_err(|e| e.with_lines(text))
}

#[cfg(test)]
mod tests;
