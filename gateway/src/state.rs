//! The running gateway's shared state: storage, the current configuration snapshot, the
//! plugin host, the delivery client and limits, and the wake-ups between stages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use tokio_util::task::TaskTracker;

use crate::config::{DeliveryConfig, Snapshot};
use crate::delivery::{ConcurrencyLimits, DeliveryClient};
use crate::plugin::PluginHost;
use crate::store::Store;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything the stages share. One per running gateway.
pub struct State {
    /// Durable storage.
    pub store: Store,
    /// The configuration in force; replaced whole on reload.
    pub snapshot: ArcSwap<Snapshot>,
    /// Loads and runs plugins.
    pub host: PluginHost,
    /// Sends deliveries.
    pub client: DeliveryClient,
    /// Deliveries in flight, overall and per destination.
    pub limits: ConcurrencyLimits,
    /// Plugin calls at once (they run on blocking threads).
    pub plugin_slots: Semaphore,
    /// Wakes fan-out when an event is accepted.
    pub fanout_wake: Notify,
    /// Wakes dispatch when jobs are queued.
    pub dispatch_wake: Notify,
    /// Delivery tasks in flight, for graceful shutdown.
    pub in_flight: TaskTracker,
    /// Consecutive failures per subscription.
    pub health: Health,
    /// Deliveries completed since start.
    pub delivered: AtomicU64,
    /// Where the configuration comes from, and how reloads went.
    pub reloader: crate::reload::Reloader,
    /// Rate limits and OAuth1 nonces of the app API.
    pub auth: crate::auth::AuthState,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl State {
    /// The lease on a job being delivered: longer than any attempt can take (the timeout
    /// bounds the whole exchange). A restart recovers leases at once, whatever their length.
    pub fn lease_ms(&self) -> u64 {
        let snapshot = self.snapshot.load();
        let longest = snapshot
            .subscriptions
            .iter()
            .map(|s| s.timeout)
            .max()
            .unwrap_or(snapshot.delivery.timeout);
        (longest + Duration::from_secs(5)).as_millis() as u64
    }

    /// Delay before the next attempt after `failed_attempts` failures, honouring a
    /// receiver's `Retry-After` up to the configured cap.
    pub fn backoff_delay(&self, failed_attempts: u32, retry_after: Option<Duration>) -> Duration {
        self.snapshot
            .load()
            .delivery
            .backoff
            .next_delay(failed_attempts, retry_after)
    }
}

/// Tracks consecutive delivery failures per subscription, to flag (and optionally disable)
/// subscriptions whose receivers keep failing. Kept in memory: it restarts clean.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<HashMap<String, SubscriptionHealth>>,
}

/// What the admin status shows for one subscription.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubscriptionHealth {
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Set once the failures pass the configured threshold.
    pub flagged: bool,
    /// Whether deliveries are paused because of it.
    pub disabled: bool,
    /// The last error seen.
    pub last_error: Option<String>,
}

impl Health {
    /// Records a success: the counter resets and the flag clears.
    pub fn success(&self, sub: &str) {
        if let Ok(mut map) = self.inner.lock()
            && let Some(h) = map.get_mut(sub)
            && !h.disabled
        {
            *h = SubscriptionHealth::default();
        }
    }

    /// Records a failure and flags the subscription past the threshold.
    pub fn failure(&self, sub: &str, error: &str, config: &DeliveryConfig) {
        if let Ok(mut map) = self.inner.lock() {
            let h = map.entry(sub.to_owned()).or_default();
            h.consecutive_failures += 1;
            h.last_error = Some(error.to_owned());
            if h.consecutive_failures >= config.flag_after_failures && !h.flagged {
                h.flagged = true;
                h.disabled = config.disable_flagged;
                tracing::warn!(
                    subscription = sub,
                    failures = h.consecutive_failures,
                    error,
                    disabled = h.disabled,
                    "subscription flagged: its deliveries keep failing"
                );
            }
        }
    }

    /// Whether deliveries for `sub` are paused.
    pub fn is_disabled(&self, sub: &str) -> bool {
        self.inner
            .lock()
            .map(|m| m.get(sub).is_some_and(|h| h.disabled))
            .unwrap_or(false)
    }

    /// Re-enables a disabled subscription.
    pub fn enable(&self, sub: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(sub);
        }
    }

    /// Every subscription with failures.
    pub fn report(&self) -> HashMap<String, SubscriptionHealth> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }
}
