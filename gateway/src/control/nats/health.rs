//! Subscription health in the shared bucket: written in the background, in order, the latest
//! state of each subscription winning; an instance skips the echoes of its own writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use tokio_util::sync::CancellationToken;

use super::{PendingHealth, StoredHealth, encode, mirror};
use crate::control::SubscriptionHealth;

impl super::NatsPlane {
    /// The stored flags and pauses, for [`crate::health::Health`] at start-up.
    pub(crate) fn stored_health(&self) -> HashMap<String, SubscriptionHealth> {
        let table = mirror::read(&self.mirror.health);
        table
            .prefixed("")
            .map(|(_, r)| (r.subscription.clone(), r.health.clone()))
            .filter(|(_, h)| h.flagged || h.disabled)
            .collect()
    }

    /// Queues a health write for the writer task.
    pub(crate) fn write_health(&self, sub: &str, health: Option<&SubscriptionHealth>) {
        let PendingHealth { queue, wake, .. } = &*self.pending_health;
        queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sub.to_owned(), health.cloned());
        wake.notify_one();
    }

    /// Waits (up to `within`) until every queued health write is stored: at shutdown, so that
    /// a pause made just before it is not lost.
    pub(crate) async fn flush_health(&self, within: Duration) {
        let PendingHealth {
            queue,
            wake,
            writing,
        } = &*self.pending_health;
        let drained = tokio::time::timeout(within, async {
            loop {
                {
                    let _idle = writing.lock().await;
                    if queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                        return;
                    }
                }
                wake.notify_one();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "subscription health changes not yet stored in the shared bucket at shutdown"
            );
        }
    }
}

/// Writes queued health records, the latest per subscription, until `shutdown`; a write that
/// fails is tried again unless a newer one replaced it.
pub(super) async fn write_health(
    bucket: kv::Store,
    table: mirror::Shared<StoredHealth>,
    instance: String,
    pending: Arc<PendingHealth>,
    shutdown: CancellationToken,
) {
    let PendingHealth {
        queue,
        wake,
        writing,
    } = &*pending;
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = shutdown.cancelled() => return,
        }
        // Held while a batch is out of the queue and not yet written (see `flush_health`).
        let writing = writing.lock().await;
        let batch = std::mem::take(&mut *queue.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failed = false;
        for (sub, health) in batch {
            let record = StoredHealth {
                subscription: sub.clone(),
                origin: instance.clone(),
                health: health.clone().unwrap_or_default(),
            };
            let key = hex::encode(&sub);
            match bucket.put(&key, encode(&record)).await {
                Ok(revision) => {
                    table.write().unwrap_or_else(|p| p.into_inner()).apply(
                        "subscription_health",
                        &key,
                        revision,
                        Some(encode(&record)),
                    );
                }
                Err(e) => {
                    tracing::error!(subscription = %sub, error = %e, "cannot store a subscription's health in the shared bucket; retrying");
                    queue
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(sub)
                        .or_insert(health);
                    failed = true;
                }
            }
        }
        drop(writing);
        if failed {
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => wake.notify_one(),
                () = shutdown.cancelled() => return,
            }
        }
    }
}
