//! Values read when `/metrics` is scraped rather than counted: per-destination queues,
//! readiness, the disk budget, NATS, flagged subscriptions. Each family is rebuilt from the
//! [`Scrape`] at every scrape, so a destination or subscription that went away loses its series
//! at once. Reads only what is in memory (nothing walks a tree or a queue).

use std::collections::HashMap;

use super::{APP_DESTINATIONS, Destination, Metrics, Scrape, SubscriptionLabel};

impl Metrics {
    /// Per-destination queues: every configured destination (0 when idle), the apps' together.
    pub(super) fn render_destinations(&self, scrape: &Scrape<'_>) {
        let label = |name: &str| {
            if crate::subscriptions::owner_app(name).is_some() {
                APP_DESTINATIONS.to_owned()
            } else {
                name.to_owned()
            }
        };
        let mut queues: HashMap<String, (usize, u64)> = scrape
            .destinations
            .iter()
            .map(|(name, _)| (label(name), (0, 0)))
            .collect();
        let now = crate::time::now_ms();
        for (destination, queued, due_since_ms) in &scrape.queues {
            let (jobs, age_ms) = queues.entry(label(destination)).or_default();
            *jobs += queued;
            let age = due_since_ms.map_or(0, |since| now.saturating_sub(since));
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
    pub(super) fn render_health(&self, scrape: &Scrape<'_>) {
        self.ready.set(i64::from(scrape.ready));
        self.store_full.set(i64::from(scrape.store.is_full()));
        if let Some(connected) = scrape.nats_connected {
            self.nats_connected
                .get_or_create(&Vec::new())
                .set(i64::from(connected));
        }
        self.flagged.clear();
        for subscription in &scrape.flagged {
            self.flagged
                .get_or_create(&SubscriptionLabel {
                    subscription: subscription.clone(),
                })
                .set(1);
        }
    }
}
