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
//! label strings. At every reload ([`Metrics::configured`]) the series of subscriptions and
//! plugins the new configuration no longer has are removed, so the label set follows the
//! configuration instead of growing with every subscription ever made.
//!
//! Beside the exposition: the console's chart samples ([`history`]) and the OTLP export of
//! spans ([`otlp`]), whose losses are counted here.

mod handles;
pub mod history;
mod labels;
pub mod otlp;
mod scrape;
pub mod settings;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use handles::{PluginMetrics, SubscriptionCounters};
pub use labels::{
    Destination, Host, Kind, Outcome, PluginLabels, PluginLimit, PluginOutcome, Pruned, Reason,
    SourceOutcome, SubscriptionLabel, SubscriptionOutcome,
};

/// The destination label of every destination made through the app API: they are as many
/// as the apps' subscriptions, so they share one series.
pub const APP_DESTINATIONS: &str = "(apps)";

/// The subscription label of counts made for a subscription after the reload that removed
/// it: they share one series, which does not grow.
pub const REMOVED: &str = "(removed)";

/// The reasons ingest refuses for lack of room, each with its pause gauge.
const ROOM_REASONS: [&str; 3] = ["storage_full", "disk_full", "storage_unavailable"];

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
    /// Events refused for lack of room or failing writes, by reason.
    refused: Family<Reason, Counter>,
    paused: Family<Reason, Gauge>,
    live_bytes: Family<Kind, Gauge>,
    free_bytes: Gauge,
    destination_jobs: Family<Destination, Gauge>,
    destination_due_age: Family<Destination, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Receiver hosts whose circuit is open or half-open (1), by host.
    circuit_open: Family<Host, Gauge>,
    /// Changes of a receiver host's circuit, by the state it changed to.
    pub circuit_changes: Family<Outcome, Counter>,
    /// Spans exported over OTLP, and those lost.
    pub otlp: otlp::ExportCounters,
    /// The console's chart samples.
    pub history: history::History,
    ready: Gauge,
    store_full: Gauge,
    /// 1 while connected to NATS, 0 when not; no series on the sled engine.
    nats_connected: Family<Vec<(String, String)>, Gauge>,
    /// 1 for each flagged subscription.
    flagged: Family<SubscriptionLabel, Gauge>,
    /// One scrape at a time fills the scrape-time values.
    rendering: std::sync::Mutex<()>,
    /// Every sample name the exposition may show (see [`Metrics::declared`]).
    declared: Vec<String>,
}

/// The registry being filled, and the names of the samples of what it holds.
struct Declaring<'a> {
    registry: &'a mut Registry,
    names: Vec<String>,
}

impl Declaring<'_> {
    fn register(
        &mut self,
        name: &'static str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        use prometheus_client::metrics::MetricType;
        let suffixes: &[&str] = match metric.metric_type() {
            MetricType::Counter => &["_total"],
            MetricType::Histogram => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        let full = format!("odoo_gateway_{name}");
        self.names
            .extend(suffixes.iter().map(|suffix| format!("{full}{suffix}")));
        self.registry.register(name, help, metric);
    }
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
            refused: Family::default(),
            paused: Family::default(),
            live_bytes: Family::default(),
            free_bytes: Gauge::default(),
            destination_jobs: Family::default(),
            destination_due_age: Family::default(),
            circuit_open: Family::default(),
            circuit_changes: Family::default(),
            otlp: otlp::ExportCounters::default(),
            history: history::History::default(),
            ready: Gauge::default(),
            store_full: Gauge::default(),
            nats_connected: Family::default(),
            flagged: Family::default(),
            rendering: std::sync::Mutex::new(()),
            registry: Registry::default(),
            declared: Vec::new(),
        };
        let mut r = Declaring {
            registry: &mut registry,
            names: Vec::new(),
        };
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
            "Size of the database's files on disk (it does not shrink when records are pruned: sled reuses the space)",
            metrics.disk_bytes.clone(),
        );
        r.register(
            "store_full",
            "1 while the disk budget is reached and new events are refused (507 storage_full)",
            metrics.store_full.clone(),
        );
        r.register(
            "ready",
            "1 while the gateway takes events (as /readyz answers 200)",
            metrics.ready.clone(),
        );
        r.register(
            "nats_connected",
            "1 while connected to NATS, 0 while not (engine nats only)",
            metrics.nats_connected.clone(),
        );
        r.register(
            "subscription_flagged",
            "1 for each subscription flagged by consecutive failures",
            metrics.flagged.clone(),
        );
        r.register(
            "otlp_spans_exported",
            "Spans the OTLP collector took",
            metrics.otlp.exported.clone(),
        );
        r.register(
            "otlp_spans_dropped",
            "Spans never exported, by reason (queue_full, export_failed)",
            metrics.otlp.dropped.clone(),
        );
        r.register(
            "store_live_bytes",
            "Live data the store holds (keys and values), by kind of record; the budget counts it",
            metrics.live_bytes.clone(),
        );
        r.register(
            "store_free_bytes",
            "Free space on the file system holding the database, at the last look",
            metrics.free_bytes.clone(),
        );
        r.register(
            "ingest_refused",
            "Events refused for lack of room or failing writes, by reason",
            metrics.refused.clone(),
        );
        r.register(
            "ingest_paused",
            "1 while new events are refused for this reason",
            metrics.paused.clone(),
        );
        for reason in ROOM_REASONS {
            // Every reason shows from the start, at 0.
            let labels = Reason {
                reason: reason.into(),
            };
            let _ = metrics.refused.get_or_create(&labels);
            let _ = metrics.paused.get_or_create(&labels);
        }
        let declared = r.names;
        Self {
            registry,
            declared,
            ..metrics
        }
    }

    /// Every sample name `/metrics` may show (a counter's `_total`, a histogram's `_bucket`,
    /// `_sum` and `_count`), whether or not it was counted yet: a family shows nothing until
    /// its first series, and dashboards and alerts name them all.
    pub fn declared(&self) -> &[String] {
        &self.declared
    }

    /// Counts one outcome for a subscription in `counters`.
    pub fn count(counters: &SubscriptionCounters, subscription: &str, outcome: &str) {
        counters.inc(subscription, outcome);
    }

    /// Counts a delivery attempt of `subscription`: taken by the receiver, or failed.
    pub fn attempt(&self, subscription: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.attempts.inc(subscription, outcome);
        self.history.attempt(delivered);
    }

    /// Follows a new configuration, before it is swapped in: the series of subscriptions it
    /// no longer has, and of plugins its subscriptions no longer run, are removed; a count
    /// for a removed subscription made afterwards (its queued jobs dead-lettered) goes to
    /// [`REMOVED`]. `subscriptions` are its subscriptions, each with the short hash of its
    /// plugin (`"none"` without one): [`crate::config::Snapshot::plugin_labels`].
    pub fn configured(&self, subscriptions: &[(&str, &str)]) {
        let live: std::collections::HashSet<Box<str>> =
            subscriptions.iter().map(|(id, _)| (*id).into()).collect();
        for counters in [&self.attempts, &self.retries, &self.dead_letters] {
            counters.retain(&live);
        }
        let plugins: std::collections::HashMap<&str, &str> =
            subscriptions.iter().copied().collect();
        self.plugins
            .retain(|subscription| plugins.get(subscription).map(|p| (*p).to_owned()));
    }

    /// Counts an event refused for `reason` (a [`crate::store::Refusal::reason`]).
    pub fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
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
    pub fn render(&self, scrape: &Scrape<'_>) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        let gauge = |g: &Gauge, v: usize| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.due, scrape.due);
        gauge(&self.waiting, scrape.waiting);
        gauge(&self.parked, scrape.parked);
        self.render_destinations(scrape);
        self.render_health(scrape);
        self.disk_bytes
            .set(i64::try_from(scrape.store.size_on_disk()).unwrap_or(i64::MAX));
        self.render_room(scrape.store);
        self.render_circuits(scrape);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// What a scrape reads from the stages, gathered by whoever serves `/metrics`: values the
/// stages keep in memory (nothing walks a tree or a queue). Telemetry is handed these rather
/// than the stages themselves, so it depends on none of them.
#[derive(Debug)]
pub struct Scrape<'a> {
    /// Jobs due now (waiting for a slot, or running).
    pub due: usize,
    /// Jobs waiting for a later time (retries, backoff).
    pub waiting: usize,
    /// Jobs set aside while their subscription is paused.
    pub parked: usize,
    /// Every destination in force: its name and its receiver host.
    pub destinations: Vec<(String, String)>,
    /// Queued jobs by destination: its name, its jobs due or waiting for a retry, and since
    /// when its next job has been due (ms since the epoch), where the engine knows it.
    pub queues: Vec<(String, usize, Option<u64>)>,
    /// Whether the instance is ready (`/readyz`).
    pub ready: bool,
    /// Whether the NATS connection is up (`None`: not on NATS).
    pub nats_connected: Option<bool>,
    /// The subscriptions in force that health checks flagged.
    pub flagged: Vec<String>,
    /// The receiver hosts whose circuit is not closed.
    pub open_circuits: Vec<String>,
    /// The store: its size, live data and room.
    pub store: &'a crate::store::Store,
}

impl Metrics {
    /// Live data by kind, free space, and which pause is in force (counters kept by the
    /// store: nothing is walked).
    fn render_room(&self, store: &crate::store::Store) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (kind, count) in store.live_data().by_kind {
            self.live_bytes
                .get_or_create(&Kind { kind: kind.into() })
                .set(as_i64(count.bytes));
        }
        let room = store.room();
        self.free_bytes.set(as_i64(room.free_bytes.unwrap_or(0)));
        let reason = store.refusal().map(|r| r.reason());
        for name in ROOM_REASONS {
            let labels = Reason {
                reason: name.into(),
            };
            self.paused
                .get_or_create(&labels)
                .set(i64::from(reason == Some(name)));
        }
    }
}

impl Metrics {
    /// The hosts whose circuit is not closed (an operator's host by name, the apps' together).
    fn render_circuits(&self, scrape: &Scrape<'_>) {
        let operators: std::collections::HashSet<&str> = scrape
            .destinations
            .iter()
            .filter(|(name, _)| crate::subscriptions::owner_app(name).is_none())
            .map(|(_, host)| host.as_str())
            .collect();
        self.circuit_open.clear();
        for host in &scrape.open_circuits {
            let host = if operators.contains(host.as_str()) {
                host.clone()
            } else {
                APP_DESTINATIONS.to_owned()
            };
            self.circuit_open.get_or_create(&Host { host }).set(1);
        }
    }
}
