//! The label sets of the gateway's metrics: each a fixed set of names, with values that are
//! configured names or fixed codes, so that no stranger can grow them.

use prometheus_client::encoding::EncodeLabelSet;

/// Labels naming a source and an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceOutcome {
    /// A configured source, or `unknown`.
    pub source: String,
    /// `accepted`, `duplicate`, or the refusal's error code.
    pub outcome: String,
}

/// Labels naming a subscription and an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionOutcome {
    /// The subscription id.
    pub subscription: String,
    /// A fixed code (`delivered`, `failed`, `retried`, a dead-letter reason, ...).
    pub outcome: String,
}

/// Labels naming a subscription and the plugin it runs.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// The subscription id.
    pub subscription: String,
    /// The plugin: the first digits of its SHA-256 (`none` for a call without one, to enrich).
    pub plugin: String,
}

/// Labels naming a subscription, its plugin and an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginOutcome {
    /// The subscription id.
    pub subscription: String,
    /// The plugin, as in [`PluginLabels`].
    pub plugin: String,
    /// `ok`, `retry`, or the failure's code.
    pub outcome: String,
}

/// Labels naming a subscription, its plugin and a limit.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLimit {
    /// The subscription id.
    pub subscription: String,
    /// The plugin, as in [`PluginLabels`].
    pub plugin: String,
    /// `cpu_time`, `memory` or `output`.
    pub limit: String,
}

/// Labels naming an outcome only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `ok` or `failed`.
    pub outcome: String,
}

/// Labels naming a destination.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Destination {
    /// A configured destination, or [`super::APP_DESTINATIONS`].
    pub destination: String,
}

/// Labels naming what retention pruned.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Pruned {
    /// `events`, `dead_letters`, `attempts`, `index_rows` or `dedup_keys`.
    pub kind: String,
}

/// Labels naming a subscription.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabel {
    /// The subscription id.
    pub subscription: String,
}

/// Labels naming why something was lost.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// A fixed code.
    pub reason: String,
}

/// Labels naming a kind of stored record.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// A [`crate::store::Kind`].
    pub kind: String,
}

/// Labels naming a receiver host.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Host {
    /// `scheme://host:port` of an operator's destination, or [`super::APP_DESTINATIONS`] for
    /// the apps' (whose hosts are the apps' to choose, and would grow the series without
    /// bound).
    pub host: String,
}
