//! Subscription health: consecutive failures (deliveries and plugin calls) per subscription,
//! the flags of those that keep failing and the pauses (set by the operator, or by a flag with
//! `disable_flagged`). Counted by the job runner; read by dispatch and the lanes (a paused
//! subscription's jobs wait), the admin API and the console.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::DeliveryConfig;
pub use crate::control::SubscriptionHealth;
use crate::control::{ControlPlane, HealthSink};
use crate::store::Store;

/// Tracks consecutive failures (deliveries and plugin calls) per subscription, to flag (and
/// optionally pause) subscriptions that keep failing. Counters live in memory (each
/// instance's own); a flag or a pause is written to the store when it is set or cleared, so
/// it survives a restart, and with a shared control plane it reaches every instance.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<HashMap<String, SubscriptionHealth>>,
    tree: Option<sled::Tree>,
    shared: Option<HealthSink>,
}

impl Health {
    /// Where `control` keeps the flags and pauses of subscriptions (the sled tree of `store`,
    /// or the shared buckets), loaded.
    pub fn load(control: &ControlPlane, store: &Store) -> Result<Self, crate::store::StoreError> {
        match control.health_sink() {
            None => Self::open(store),
            Some((stored, sink)) => Ok(Self::shared(stored, sink)),
        }
    }

    /// Health kept in the `subscription_health` tree of `store`, loaded from it.
    pub fn open(store: &Store) -> Result<Self, crate::store::StoreError> {
        let tree = store.db().open_tree("subscription_health")?;
        let mut map = HashMap::new();
        for entry in tree.iter() {
            let (key, value) = entry?;
            if let Ok(health) = serde_json::from_slice::<SubscriptionHealth>(&value) {
                map.insert(String::from_utf8_lossy(&key).into_owned(), health);
            }
        }
        Ok(Self {
            inner: Mutex::new(map),
            tree: Some(tree),
            shared: None,
        })
    }

    /// Health kept in the shared control plane, starting from what it holds.
    pub(crate) fn shared(stored: HashMap<String, SubscriptionHealth>, sink: HealthSink) -> Self {
        Self {
            inner: Mutex::new(stored),
            tree: None,
            shared: Some(sink),
        }
    }

    /// Takes a flag or pause set (`Some`) or cleared (`None`) by another instance. This
    /// instance's failure count is kept: it is its own.
    pub fn apply_remote(&self, sub: &str, health: Option<SubscriptionHealth>) {
        let mut map = self.lock();
        match health {
            Some(remote) => {
                let local = map.entry(sub.to_owned()).or_default();
                local.flagged = remote.flagged;
                local.disabled = remote.disabled;
                local.last_error = remote.last_error.or(local.last_error.take());
                local.consecutive_failures =
                    local.consecutive_failures.max(remote.consecutive_failures);
            }
            None => {
                map.remove(sub);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SubscriptionHealth>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, sub: &str, health: Option<&SubscriptionHealth>) {
        if let Some(shared) = &self.shared {
            shared.write(sub, health);
        }
        let Some(tree) = &self.tree else { return };
        let result = match health {
            Some(h) => tree
                .insert(sub, serde_json::to_vec(h).unwrap_or_default())
                .map(drop),
            None => tree.remove(sub).map(drop),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, subscription = sub, "cannot store a subscription's health");
        }
    }

    /// Records a success: the counter resets and the flag clears (a paused subscription stays
    /// paused until it is enabled).
    pub fn success(&self, sub: &str) {
        let mut map = self.lock();
        if let Some(h) = map.get_mut(sub)
            && !h.disabled
        {
            let was_flagged = h.flagged;
            map.remove(sub);
            if was_flagged {
                self.persist(sub, None);
            }
        }
    }

    /// Records a failure and flags the subscription past the threshold.
    pub fn failure(&self, sub: &str, error: &str, config: &DeliveryConfig) {
        let mut map = self.lock();
        let h = map.entry(sub.to_owned()).or_default();
        h.consecutive_failures += 1;
        h.last_error = Some(error.to_owned());
        if h.consecutive_failures >= config.flag_after_failures && !h.flagged {
            h.flagged = true;
            // An operator's pause stays in force whatever the configuration says of flags.
            h.disabled |= config.disable_flagged;
            tracing::warn!(
                subscription = sub,
                failures = h.consecutive_failures,
                error,
                disabled = h.disabled,
                "subscription flagged: it keeps failing"
            );
            let snapshot = h.clone();
            self.persist(sub, Some(&snapshot));
        }
    }

    /// Whether deliveries for `sub` are paused.
    pub fn is_disabled(&self, sub: &str) -> bool {
        self.lock().get(sub).is_some_and(|h| h.disabled)
    }

    /// Re-enables a subscription and clears its record; returns whether it was paused.
    pub fn enable(&self, sub: &str) -> bool {
        let removed = self.lock().remove(sub);
        if removed.as_ref().is_some_and(|h| h.flagged || h.disabled) {
            self.persist(sub, None);
        }
        removed.is_some_and(|h| h.disabled)
    }

    /// Pauses a subscription on the operator's word: its jobs wait (dispatch parks them)
    /// until [`Self::enable`]. Stored, so a restart keeps it paused. Returns whether it was
    /// already paused.
    pub fn pause(&self, sub: &str) -> bool {
        let mut map = self.lock();
        let h = map.entry(sub.to_owned()).or_default();
        let was_paused = h.disabled;
        h.disabled = true;
        let snapshot = h.clone();
        drop(map);
        if !was_paused {
            self.persist(sub, Some(&snapshot));
        }
        was_paused
    }

    /// One subscription's record (the default when it has none: healthy, not paused).
    pub fn of(&self, sub: &str) -> SubscriptionHealth {
        self.lock().get(sub).cloned().unwrap_or_default()
    }

    /// Every subscription with failures.
    pub fn report(&self) -> HashMap<String, SubscriptionHealth> {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(flag_after_failures: u32, disable_flagged: bool) -> DeliveryConfig {
        let mut config: DeliveryConfig = toml::from_str("").expect("defaults");
        config.flag_after_failures = flag_after_failures;
        config.disable_flagged = disable_flagged;
        config
    }

    #[test]
    fn a_pause_is_stored_and_survives_a_reopen_until_enabled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let health = Health::open(&store).expect("health");
        assert!(!health.pause("orders"), "not paused before");
        assert!(health.pause("orders"), "paused already");
        assert!(health.is_disabled("orders"));
        // A success does not lift an operator's pause.
        health.success("orders");
        drop(health);
        let reopened = Health::open(&store).expect("health");
        assert!(reopened.is_disabled("orders"), "the pause survives");
        assert!(reopened.enable("orders"), "it was paused");
        drop(reopened);
        let again = Health::open(&store).expect("health");
        assert!(!again.is_disabled("orders"), "the enable is stored too");
    }

    #[test]
    fn flagging_a_paused_subscription_keeps_it_paused() {
        let health = Health::default();
        health.pause("orders");
        health.failure("orders", "boom", &delivery(1, false));
        let h = health.of("orders");
        assert!(h.flagged && h.disabled, "{h:?}");
        health.failure("other", "boom", &delivery(1, false));
        let other = health.of("other");
        assert!(other.flagged && !other.disabled, "{other:?}");
    }
}
