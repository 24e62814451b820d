//! Odoo's external API, as the gateway's client of it: the lower half of the Odoo connector
//! (the stages that use it are in [`crate::connector`]).
//!
//! - [`client`]: JSON-RPC (`/jsonrpc`) with one source's database, login and API key;
//!   typed errors ([`OdooError`]) that say whether trying again may help.
//! - [`config`]: `[sources.odoo]` as written, validated here into an [`OdooSource`] (the client,
//!   what to enrich, what to poll).
//! - [`time`]: Odoo's datetimes (stored to the microsecond, shown to the second); [`change`]:
//!   the dedup key of a changed record; [`json2`]: the JSON-2 API of Odoo 19.
//!
//! Nothing here knows the stages: it is configured by [`crate::config`] and used by them.

pub mod change;
pub mod client;
pub mod config;
pub mod error;
pub mod json2;
pub mod time;

pub use client::OdooClient;
pub use config::{EnrichSpec, OdooConfig, PollConfig, PollModelConfig, Protocol};
pub use error::OdooError;

/// Most quick retries of one call (`[sources.odoo] retries`).
pub const MAX_QUICK_RETRIES: u32 = 5;

/// A source's Odoo, validated: the client and what to poll.
#[derive(Debug)]
pub struct OdooSource {
    /// The JSON-RPC client (its caches live as long as this configuration).
    pub client: OdooClient,
    /// Per model, what every subscription gets enriched (unless it has its own list).
    pub enrich: std::collections::BTreeMap<String, Vec<EnrichSpec>>,
    /// Per model, the most an app's subscription may enrich (`[sources.odoo.app_enrich]`).
    pub app_enrich: std::collections::BTreeMap<String, Vec<EnrichSpec>>,
    /// Polling, when configured.
    pub poll: Option<Poll>,
}

/// `[sources.odoo.poll]`, validated.
#[derive(Debug, Clone)]
pub struct Poll {
    /// The polled models.
    pub models: Vec<PollModelConfig>,
    /// Pause between two polls.
    pub interval: std::time::Duration,
    /// Records per page.
    pub page_size: u32,
    /// Where a model without a cursor starts.
    pub start: Start,
    /// De-duplicate against webhook events.
    pub reconcile: bool,
    /// How far before the cursor each poll starts reading.
    pub overlap: std::time::Duration,
    /// How often deletions are looked for.
    pub deletions_every: std::time::Duration,
}

/// Where a model without a stored cursor starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Changes from the first poll on.
    Now,
    /// Every record.
    Beginning,
    /// Changes after this UTC time (`YYYY-MM-DD HH:MM:SS`).
    After(String),
}

impl Start {
    /// Reads `now`, `beginning` or a time in Odoo's datetime format.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "now" => Ok(Self::Now),
            "beginning" => Ok(Self::Beginning),
            t if time::is_odoo_datetime(t) => Ok(Self::After(t.to_owned())),
            t => Err(format!(
                "`{t}`: give `now`, `beginning` or a UTC time `YYYY-MM-DD HH:MM:SS`"
            )),
        }
    }
}

impl OdooConfig {
    /// The runtime form of `[sources.odoo]`; each problem names its key under `key`.
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) -> Option<OdooSource> {
        let before = problems.len();
        for (name, value) in [
            ("database", &self.database),
            ("login", &self.login),
            ("api_key", &self.api_key),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{key}.odoo.{name}: must not be empty"));
            }
        }
        if self.timeout.is_zero() {
            problems.push(format!("{key}.odoo.timeout: must be more than 0s"));
        }
        // Quick retries hold the unit of work; longer outages are the backoff's business.
        if self.retries > MAX_QUICK_RETRIES {
            problems.push(format!(
                "{key}.odoo.retries: at most {MAX_QUICK_RETRIES} (longer outages are retried under the subscription's backoff)"
            ));
        }
        let client = OdooClient::new(self)
            .map_err(|e| problems.push(format!("{key}.odoo.url: {e}")))
            .ok();
        for (table, lists) in [("enrich", &self.enrich), ("app_enrich", &self.app_enrich)] {
            for (model, specs) in lists {
                if !config::is_model_name(model) {
                    problems.push(format!(
                        "{key}.odoo.{table}: `{model}` is not an Odoo model name"
                    ));
                }
                let list = format!("{key}.odoo.{table}.\"{model}\"");
                config::validate_enrich(&list, specs, problems);
            }
        }
        let poll = self.poll.as_ref().and_then(|p| p.validate(key, problems));
        let client = client?;
        (problems.len() == before).then_some(OdooSource {
            client,
            enrich: self.enrich.clone(),
            app_enrich: self.app_enrich.clone(),
            poll,
        })
    }
}

impl PollConfig {
    fn validate(&self, key: &str, problems: &mut Vec<String>) -> Option<Poll> {
        let key = format!("{key}.odoo.poll");
        if self.models.is_empty() {
            problems.push(format!("{key}.models: give at least one model"));
        }
        for (i, m) in self.models.iter().enumerate() {
            if !config::is_model_name(&m.model) {
                problems.push(format!(
                    "{key}.models[{i}].model: `{}` is not an Odoo model name",
                    m.model
                ));
            }
            if self.models[..i].iter().any(|o| o.model == m.model) {
                problems.push(format!(
                    "{key}.models[{i}].model: `{}` is polled twice",
                    m.model
                ));
            }
            // A webhook body is matched on the fields polled: all of them is no list to match.
            if self.reconcile && m.fields.is_empty() {
                problems.push(format!(
                    "{key}.models[{i}].fields: `reconcile` needs the polled fields listed (select the same ones in the webhook action)"
                ));
            }
            for (j, f) in m.fields.iter().enumerate() {
                if !config::is_field_name(f) {
                    problems.push(format!(
                        "{key}.models[{i}].fields[{j}]: `{f}` is not an Odoo field name"
                    ));
                }
            }
        }
        if !(1..=10_000).contains(&self.page_size) {
            problems.push(format!("{key}.page_size: between 1 and 10000"));
        }
        if self.interval < std::time::Duration::from_millis(10) {
            problems.push(format!("{key}.interval: at least 10ms"));
        }
        let start = Start::parse(&self.start)
            .map_err(|e| problems.push(format!("{key}.start: {e}")))
            .ok()?;
        Some(Poll {
            models: self.models.clone(),
            interval: self.interval,
            page_size: self.page_size,
            start,
            reconcile: self.reconcile,
            overlap: self.overlap,
            deletions_every: self.deletions_every,
        })
    }
}

#[cfg(test)]
mod tests;
