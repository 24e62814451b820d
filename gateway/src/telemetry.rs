//! Prometheus metrics: what the stages count, and the `/metrics` exposition.
//!
//! Every stage records into one [`Metrics`] (cheap atomic updates, no I/O); values that are
//! a state rather than an event count (schedule depth, per-destination queues, store size)
//! are read when scraped (nothing that walks a tree or a queue). Labels are bounded: a source
//! label only names configured sources (anything else is `unknown`), subscriptions are the
//! configured and API ones, a destination label names a configured destination (the apps'
//! destinations share one, [`APP_DESTINATIONS`]), plugins are named by the first digits of
//! their hash, outcomes and reasons are fixed codes. Counting by subscription keeps its
//! label handles ([`SubscriptionCounters`], [`PluginMetrics`]), so a delivery allocates no
//! label strings.

mod handles;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use handles::{PluginMetrics, SubscriptionCounters};

/// The destination label of every destination made through the app API: they are as many
/// as the apps' subscriptions, so they share one series.
pub const APP_DESTINATIONS: &str = "(apps)";

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
    /// A configured destination, or [`APP_DESTINATIONS`].
    pub destination: String,
}

/// Labels naming a receiver host.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Host {
    /// `scheme://host:port` of an operator's destination, or [`APP_DESTINATIONS`] for the
    /// apps' (whose hosts are the apps' to choose, and would grow the series without bound).
    pub host: String,
}

/// Labels naming what retention pruned.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Pruned {
    /// `events`, `dead_letters`, `attempts`, `index_rows` or `dedup_keys`.
    pub kind: String,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    /// Ingest requests by source and outcome.
    pub events: Family<SourceOutcome, Counter>,
    /// Time from request to answer on the ingest endpoints, in seconds.
    pub ingest_seconds: Histogram,
    /// Delivery attempts by subscription and outcome (`delivered`, `failed`).
    pub attempts: SubscriptionCounters,
    /// Time of one delivery attempt, in seconds.
    pub attempt_seconds: Histogram,
    /// Jobs retried later, by subscription.
    pub retries: SubscriptionCounters,
    /// Jobs dead-lettered, by subscription and reason code.
    pub dead_letters: SubscriptionCounters,
    /// Plugin calls by subscription, plugin and outcome, their duration and limit hits.
    pub plugins: PluginMetrics,
    /// Reloads by outcome.
    pub reloads: Family<Outcome, Counter>,
    /// Records pruned by retention, by kind.
    pruned: Family<Pruned, Counter>,
    /// Duration of one maintenance round (retention and the disk budget), in seconds.
    maintenance_seconds: Histogram,
    due: Gauge,
    waiting: Gauge,
    parked: Gauge,
    disk_bytes: Gauge,
    destination_jobs: Family<Destination, Gauge>,
    destination_due_age: Family<Destination, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Receiver hosts whose circuit is open or half-open (1), by host.
    circuit_open: Family<Host, Gauge>,
    /// Changes of a receiver host's circuit, by the state it changed to.
    pub circuit_changes: Family<Outcome, Counter>,
    /// One scrape at a time fills the scrape-time values.
    rendering: std::sync::Mutex<()>,
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
            attempts: SubscriptionCounters::default(),
            attempt_seconds: latency(),
            retries: SubscriptionCounters::default(),
            dead_letters: SubscriptionCounters::default(),
            plugins: PluginMetrics::new(|| Histogram::new(exponential_buckets(0.00001, 2.0, 16))),
            reloads: Family::default(),
            pruned: Family::default(),
            maintenance_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            due: Gauge::default(),
            waiting: Gauge::default(),
            parked: Gauge::default(),
            disk_bytes: Gauge::default(),
            destination_jobs: Family::default(),
            destination_due_age: Family::default(),
            circuit_open: Family::default(),
            circuit_changes: Family::default(),
            rendering: std::sync::Mutex::new(()),
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
            metrics.attempts.family(),
        );
        r.register(
            "delivery_attempt_seconds",
            "Delivery attempt latency",
            metrics.attempt_seconds.clone(),
        );
        r.register(
            "retries",
            "Jobs scheduled for a later retry",
            metrics.retries.family(),
        );
        r.register(
            "dead_letters",
            "Jobs moved to the dead-letter store, by reason",
            metrics.dead_letters.family(),
        );
        let (calls, seconds, limit_hits) = metrics.plugins.families();
        r.register(
            "plugin_calls",
            "Plugin calls by subscription, plugin and outcome",
            calls,
        );
        r.register(
            "plugin_call_seconds",
            "Plugin call duration, by subscription and plugin",
            seconds,
        );
        r.register(
            "plugin_limit_hits",
            "Plugin calls stopped by a limit (CPU time, memory, output), by subscription and plugin",
            limit_hits,
        );
        r.register("reloads", "Configuration reloads", metrics.reloads.clone());
        r.register(
            "pruned",
            "Records removed by retention and the disk budget, by kind",
            metrics.pruned.clone(),
        );
        r.register(
            "maintenance_round_seconds",
            "Duration of a maintenance round (retention, then the disk budget)",
            metrics.maintenance_seconds.clone(),
        );
        r.register(
            "destination_queued_jobs",
            "Queued deliveries by destination, due now or waiting for a retry",
            metrics.destination_jobs.clone(),
        );
        r.register(
            "destination_oldest_due_seconds",
            "How long the next due delivery of a destination has been due",
            metrics.destination_due_age.clone(),
        );
        r.register(
            "receiver_circuit_open",
            "Receiver hosts whose circuit is open or half-open: their deliveries wait",
            metrics.circuit_open.clone(),
        );
        r.register(
            "receiver_circuit_changes",
            "Changes of a receiver host's circuit, by the state it changed to",
            metrics.circuit_changes.clone(),
        );
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

    /// Counts one outcome for a subscription in `counters`.
    pub fn count(counters: &SubscriptionCounters, subscription: &str, outcome: &str) {
        counters.inc(subscription, outcome);
    }

    /// Counts what a maintenance round pruned, and its duration.
    pub fn maintained(&self, report: &crate::store::Report) {
        let p = &report.pruned;
        for (kind, n) in [
            ("events", p.events),
            ("dead_letters", p.dead_letters),
            ("attempts", p.attempts),
            ("index_rows", p.index_rows),
            ("dedup_keys", p.dedup_keys),
        ] {
            let counter = self.pruned.get_or_create(&Pruned { kind: kind.into() });
            counter.inc_by(n as u64);
        }
        self.maintenance_seconds
            .observe(report.took_ms as f64 / 1000.0);
    }

    /// The text exposition, with the scrape-time values filled in first.
    pub fn render(&self, state: &crate::state::State) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        let depth = state.work.depth();
        let gauge = |g: &Gauge, v: usize| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.due, depth.due);
        gauge(&self.waiting, depth.later);
        gauge(&self.parked, depth.parked);
        self.render_destinations(state);
        self.render_circuits(state);
        self.disk_bytes
            .set(i64::try_from(state.store.size_on_disk()).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The hosts whose circuit is not closed (an operator's host by name, the apps' together).
    fn render_circuits(&self, state: &crate::state::State) {
        let snapshot = state.snapshot.load();
        let operators: std::collections::HashSet<String> = snapshot
            .destinations
            .iter()
            .filter(|(name, _)| crate::subscriptions::owner_app(name).is_none())
            .map(|(_, d)| d.authority())
            .collect();
        self.circuit_open.clear();
        for circuit in state.policies.circuits() {
            let host = if operators.contains(&circuit.host) {
                circuit.host
            } else {
                APP_DESTINATIONS.to_owned()
            };
            self.circuit_open.get_or_create(&Host { host }).set(1);
        }
    }

    /// Per-destination queues: every configured destination (0 when idle), the apps' together.
    fn render_destinations(&self, state: &crate::state::State) {
        use std::collections::HashMap;
        let label = |name: &str| {
            if crate::subscriptions::owner_app(name).is_some() {
                APP_DESTINATIONS.to_owned()
            } else {
                name.to_owned()
            }
        };
        let snapshot = state.snapshot.load();
        let mut queues: HashMap<String, (usize, u64)> = snapshot
            .destinations
            .keys()
            .map(|name| (label(name), (0, 0)))
            .collect();
        let now = crate::time::now_ms();
        for queue in state.work.destination_depths(&snapshot) {
            let (jobs, age_ms) = queues.entry(label(&queue.destination)).or_default();
            *jobs += queue.jobs;
            let age = queue
                .head_due_since_ms
                .map_or(0, |since| now.saturating_sub(since));
            *age_ms = (*age_ms).max(age);
        }
        // Destinations removed since the last scrape lose their series.
        self.destination_jobs.clear();
        self.destination_due_age.clear();
        for (destination, (jobs, age_ms)) in queues {
            let labels = Destination { destination };
            self.destination_jobs
                .get_or_create(&labels)
                .set(i64::try_from(jobs).unwrap_or(i64::MAX));
            self.destination_due_age
                .get_or_create(&labels)
                .set(age_ms as f64 / 1000.0);
        }
    }
}
