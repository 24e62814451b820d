//! Prometheus metrics: what the stages count, and the `/metrics` exposition.
//!
//! Every stage records into one [`Metrics`] (cheap atomic updates, no I/O); values that are
//! a state rather than an event count (schedule depth, store size) are read when scraped
//! (nothing that walks a tree). Labels are bounded: a source label only names configured sources (anything
//! else is `unknown`), subscriptions are the configured and API ones, outcomes and reasons
//! are fixed codes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

/// Labels naming an outcome only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `ok` or `failed`.
    pub outcome: String,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    /// Ingest requests by source and outcome.
    pub events: Family<SourceOutcome, Counter>,
    /// Time from request to answer on the ingest endpoints, in seconds.
    pub ingest_seconds: Histogram,
    /// Delivery attempts by subscription and outcome (`delivered`, `failed`).
    pub attempts: Family<SubscriptionOutcome, Counter>,
    /// Time of one delivery attempt, in seconds.
    pub attempt_seconds: Histogram,
    /// Jobs retried later, by subscription.
    pub retries: Family<SubscriptionOutcome, Counter>,
    /// Jobs dead-lettered, by subscription and reason code.
    pub dead_letters: Family<SubscriptionOutcome, Counter>,
    /// Plugin calls by subscription and outcome (`ok`, `retry`, or the failure's code).
    pub plugin_calls: Family<SubscriptionOutcome, Counter>,
    /// Time of one plugin call, in seconds.
    pub plugin_seconds: Histogram,
    /// Reloads by outcome.
    pub reloads: Family<Outcome, Counter>,
    due: Gauge,
    waiting: Gauge,
    parked: Gauge,
    disk_bytes: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered under the `odoo_gateway` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("odoo_gateway");
        // 0.1 ms to about 6.5 s for requests and attempts; plugin calls are shorter.
        let latency = || Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        let metrics = Self {
            events: Family::default(),
            ingest_seconds: latency(),
            attempts: Family::default(),
            attempt_seconds: latency(),
            retries: Family::default(),
            dead_letters: Family::default(),
            plugin_calls: Family::default(),
            plugin_seconds: Histogram::new(exponential_buckets(0.00001, 2.0, 16)),
            reloads: Family::default(),
            due: Gauge::default(),
            waiting: Gauge::default(),
            parked: Gauge::default(),
            disk_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "ingest_requests",
            "Ingest requests by source and outcome",
            metrics.events.clone(),
        );
        r.register(
            "ingest_seconds",
            "Ingest request latency, request to answer",
            metrics.ingest_seconds.clone(),
        );
        r.register(
            "delivery_attempts",
            "Delivery attempts by subscription and outcome",
            metrics.attempts.clone(),
        );
        r.register(
            "delivery_attempt_seconds",
            "Delivery attempt latency",
            metrics.attempt_seconds.clone(),
        );
        r.register(
            "retries",
            "Jobs scheduled for a later retry",
            metrics.retries.clone(),
        );
        r.register(
            "dead_letters",
            "Jobs moved to the dead-letter store, by reason",
            metrics.dead_letters.clone(),
        );
        r.register(
            "plugin_calls",
            "Plugin calls by subscription and outcome",
            metrics.plugin_calls.clone(),
        );
        r.register(
            "plugin_call_seconds",
            "Plugin call duration",
            metrics.plugin_seconds.clone(),
        );
        r.register("reloads", "Configuration reloads", metrics.reloads.clone());
        r.register(
            "queue_due_jobs",
            "Queued jobs due now, waiting for a slot",
            metrics.due.clone(),
        );
        r.register(
            "queue_waiting_jobs",
            "Queued jobs waiting for a retry time",
            metrics.waiting.clone(),
        );
        r.register(
            "queue_parked_jobs",
            "Queued jobs of paused subscriptions",
            metrics.parked.clone(),
        );
        r.register(
            "store_disk_bytes",
            "Size of the database on disk",
            metrics.disk_bytes.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts one outcome for a subscription in `family`.
    pub fn count(family: &Family<SubscriptionOutcome, Counter>, subscription: &str, outcome: &str) {
        family
            .get_or_create(&SubscriptionOutcome {
                subscription: subscription.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The text exposition, with the scrape-time values filled in first.
    pub fn render(&self, state: &crate::state::State) -> String {
        let depth = state.scheduler.depth();
        let gauge = |g: &Gauge, v: usize| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.due, depth.due);
        gauge(&self.waiting, depth.later);
        gauge(&self.parked, depth.parked);
        self.disk_bytes
            .set(i64::try_from(state.store.size_on_disk()).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
