//! The subscription's plugin configuration: a flat map of string keys to
//! string values, read from the host once per call.
//!
//! Every accessor that can fail returns a [`ConfigError`] naming the key, so
//! that `validate-config` and `handle` report the same clear message. This
//! module only reads: a plugin cannot change its configuration.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Bound;
use std::str::FromStr;

use crate::PluginError;

/// A configuration value that is missing or cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required key is not set (or is set to an empty string).
    #[error("config key `{key}` is required but not set")]
    Missing {
        /// The key.
        key: String,
    },
    /// A key is set to a value the plugin cannot use.
    #[error("config key `{key}`: invalid value {value:?}: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// The value as configured.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

impl ConfigError {
    /// Builds an [`ConfigError::Invalid`] for a plugin's own checks.
    pub fn invalid(key: &str, value: &str, reason: impl Display) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// In `handle`, a bad configuration is an `invalid-config` error.
impl From<ConfigError> for PluginError {
    fn from(error: ConfigError) -> Self {
        PluginError::InvalidConfig(error.to_string())
    }
}

/// In `validate_config`, the error is the message itself.
impl From<ConfigError> for String {
    fn from(error: ConfigError) -> Self {
        error.to_string()
    }
}

/// Read-only view of the subscription's `config` table.
///
/// ```
/// use odoo_gateway_plugin_sdk::Config;
///
/// let config = Config::from_pairs([("min_amount_total", "1000"), ("states", "sale, sent")]);
/// assert_eq!(config.parse::<f64>("min_amount_total").unwrap(), Some(1000.0));
/// assert_eq!(config.list_or("states", "sale"), vec!["sale", "sent"]);
/// assert_eq!(config.get_or("root", "record"), "record");
/// assert!(config.required("root").unwrap_err().to_string().contains("`root`"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: BTreeMap<String, String>,
}

impl Config {
    /// Builds a configuration from (key, value) pairs; later pairs win.
    /// This is how plugins are tested on the host.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Reads the whole configuration from the gateway (one host call).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_host() -> Self {
        Self::from_pairs(crate::bindings::odoo_gateway::plugin::config::entries())
    }

    /// On the host there is no gateway: an empty configuration.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn from_host() -> Self {
        Self::default()
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The value of `key`, or `default` when it is not set.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key`; an error naming the key when it is unset or empty.
    pub fn required(&self, key: &str) -> Result<&str, ConfigError> {
        match self.get(key) {
            Some(value) if !value.trim().is_empty() => Ok(value),
            _ => Err(ConfigError::Missing {
                key: key.to_owned(),
            }),
        }
    }

    /// Parses the value of `key` (surrounding spaces ignored); `None` when
    /// it is not set.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(key)
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map_err(|e| ConfigError::invalid(key, value, e))
            })
            .transpose()
    }

    /// Parses the value of `key`, or returns `default` when it is not set.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// Parses the value of `key`, which must be set.
    pub fn parse_required<T>(&self, key: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.required(key)?;
        self.parse(key)?.ok_or_else(|| ConfigError::Missing {
            key: key.to_owned(),
        })
    }

    /// The value of `key` split on commas, each item trimmed, empty items
    /// dropped; empty when the key is not set.
    pub fn list(&self, key: &str) -> Vec<&str> {
        self.get(key).map(split_list).unwrap_or_default()
    }

    /// Like [`Config::list`], with `default` (itself a comma list) used when
    /// the key is not set.
    pub fn list_or<'a>(&'a self, key: &str, default: &'a str) -> Vec<&'a str> {
        split_list(self.get_or(key, default))
    }

    /// Keys starting with `prefix`, with the prefix removed, and their values,
    /// sorted by key. `config.with_prefix("route.")` turns
    /// `route.FastFreight = "fast"` into `("FastFreight", "fast")`.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(move |(k, v)| (&k[prefix.len()..], v.as_str()))
    }

    /// Every (key, value) pair, sorted by key.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn split_list(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_pairs([
            ("amount", " 12.5 "),
            ("bad", "twelve"),
            ("blank", "  "),
            ("list", " a, b ,,c "),
            ("route.Fast", "fast"),
            ("route.Slow", "slow"),
            ("routes", "not a prefix match"),
        ])
    }

    #[test]
    fn get_and_defaults() {
        let c = config();
        assert_eq!(c.get("amount"), Some(" 12.5 "));
        assert_eq!(c.get("nope"), None);
        assert_eq!(c.get_or("nope", "dflt"), "dflt");
        assert_eq!(c.get_or("bad", "dflt"), "twelve");
    }

    #[test]
    fn required_names_the_key() {
        let c = config();
        assert_eq!(c.required("bad"), Ok("twelve"));
        let missing = c.required("nope").unwrap_err();
        assert_eq!(
            missing.to_string(),
            "config key `nope` is required but not set"
        );
        assert!(matches!(
            c.required("blank"),
            Err(ConfigError::Missing { .. })
        ));
    }

    #[test]
    fn typed_parsing() {
        let c = config();
        assert_eq!(c.parse::<f64>("amount"), Ok(Some(12.5)));
        assert_eq!(c.parse::<f64>("nope"), Ok(None));
        assert_eq!(c.parse_or::<u32>("nope", 7), Ok(7));
        let err = c.parse::<f64>("bad").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `bad`: invalid value \"twelve\": invalid float literal"
        );
        assert_eq!(c.parse_required::<f64>("amount"), Ok(12.5));
        assert!(matches!(
            c.parse_required::<f64>("nope"),
            Err(ConfigError::Missing { .. })
        ));
    }

    #[test]
    fn lists_split_on_commas() {
        let c = config();
        assert_eq!(c.list("list"), vec!["a", "b", "c"]);
        assert!(c.list("nope").is_empty());
        assert_eq!(c.list_or("nope", "sale"), vec!["sale"]);
        assert!(c.list("blank").is_empty());
    }

    #[test]
    fn prefix_iteration_is_sorted_and_exact() {
        let c = config();
        let routes: Vec<_> = c.with_prefix("route.").collect();
        assert_eq!(routes, vec![("Fast", "fast"), ("Slow", "slow")]);
        assert_eq!(c.with_prefix("zzz").count(), 0);
    }

    #[test]
    fn errors_convert_for_both_exports() {
        let err = ConfigError::Missing { key: "k".into() };
        assert_eq!(
            PluginError::from(err.clone()),
            PluginError::InvalidConfig("config key `k` is required but not set".into())
        );
        assert_eq!(String::from(err), "config key `k` is required but not set");
    }
}
