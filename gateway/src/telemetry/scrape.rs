//! Values read when `/metrics` is scraped rather than counted: per-destination queues,
//! readiness, the disk budget, NATS, flagged subscriptions. Each family is rebuilt from the
//! state at every scrape, so a destination or subscription that went away loses its series
//! at once. Reads only what is in memory (nothing walks a tree or a queue).

use std::collections::HashMap;

use super::{APP_DESTINATIONS, Destination, Metrics, SubscriptionLabel};
use crate::state::State;

impl Metrics {
    /// Per-destination queues: every configured destination (0 when idle), the apps' together.
    pub(super) fn render_destinations(&self, state: &State) {
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

    /// Readiness, the disk budget, the NATS connection and flagged subscriptions.
    pub(super) fn render_health(&self, state: &State) {
        self.ready
            .set(i64::from(crate::server::not_ready(state).is_empty()));
        self.store_full.set(i64::from(state.store.is_full()));
        if let Some(connected) = state.work.connected() {
            self.nats_connected
                .get_or_create(&Vec::new())
                .set(i64::from(connected));
        }
        self.flagged.clear();
        let snapshot = state.snapshot.load();
        for (subscription, health) in state.health.report() {
            // Only subscriptions in force: a flag kept for a removed one names nothing.
            if health.flagged && snapshot.subscription(&subscription).is_some() {
                self.flagged
                    .get_or_create(&SubscriptionLabel { subscription })
                    .set(1);
            }
        }
    }
}
