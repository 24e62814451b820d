//! Concurrency limits for outbound deliveries: one global bound and one per destination.
//!
//! This module owns the semaphores. A slow destination fills only its own slots and never
//! holds global ones while waiting, so it cannot starve the others. The per-destination map is
//! bounded: idle entries are dropped when it grows past its bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default number of idle destinations remembered before pruning.
const DEFAULT_MAX_KEYS: usize = 1024;

/// Hands out delivery slots: a global one plus one for the destination.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    global: Arc<Semaphore>,
    per_destination: usize,
    max_keys: usize,
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Both slots for one delivery; dropping it frees them.
#[derive(Debug)]
pub struct Permit {
    // Field order is drop order: the global slot goes back first.
    _global: GlobalPermit,
    _destination: DestinationPermit,
}

/// A global slot alone (for a loop that takes one before it knows the destination).
#[derive(Debug)]
pub struct GlobalPermit {
    _slot: OwnedSemaphorePermit,
}

/// A destination slot alone.
#[derive(Debug)]
pub struct DestinationPermit {
    _slot: OwnedSemaphorePermit,
}

impl ConcurrencyLimits {
    /// At most `global` deliveries at once, at most `per_destination` to any one key.
    /// Zero is raised to one: a limit of zero would wedge the queue.
    pub fn new(global: usize, per_destination: usize) -> Self {
        Self::with_max_keys(global, per_destination, DEFAULT_MAX_KEYS)
    }

    /// As [`ConcurrencyLimits::new`], remembering at most `max_keys` idle destinations.
    pub fn with_max_keys(global: usize, per_destination: usize, max_keys: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                global: Arc::new(Semaphore::new(global.max(1))),
                per_destination: per_destination.max(1),
                max_keys: max_keys.max(1),
                destinations: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Waits for a slot for `key` (destination name or host), then for a global slot.
    pub async fn acquire(&self, key: &str) -> Permit {
        let destination = self.acquire_destination(key).await;
        let global = self.acquire_global().await;
        Permit {
            _global: global,
            _destination: destination,
        }
    }

    /// Both slots now, or `None` (and nothing held) if either is taken.
    pub fn try_acquire(&self, key: &str) -> Option<Permit> {
        let destination = self.try_acquire_destination(key)?;
        let global = GlobalPermit {
            _slot: self.inner.global.clone().try_acquire_owned().ok()?,
        };
        Some(Permit {
            _global: global,
            _destination: destination,
        })
    }

    /// Waits for a global slot only.
    pub async fn acquire_global(&self) -> GlobalPermit {
        let permit = self.inner.global.clone().acquire_owned().await;
        GlobalPermit {
            _slot: permit.expect("limit semaphores are never closed"),
        }
    }

    /// Waits for a slot for `key` only.
    pub async fn acquire_destination(&self, key: &str) -> DestinationPermit {
        let permit = self.destination(key).acquire_owned().await;
        DestinationPermit {
            _slot: permit.expect("limit semaphores are never closed"),
        }
    }

    /// A slot for `key` now, or `None` if the destination is at its limit.
    pub fn try_acquire_destination(&self, key: &str) -> Option<DestinationPermit> {
        let permit = self.destination(key).try_acquire_owned().ok()?;
        Some(DestinationPermit { _slot: permit })
    }

    /// Free global slots (for metrics and tests).
    pub fn available_global(&self) -> usize {
        self.inner.global.available_permits()
    }

    /// Number of destinations currently remembered.
    pub fn tracked_destinations(&self) -> usize {
        self.lock().len()
    }

    fn destination(&self, key: &str) -> Arc<Semaphore> {
        let mut map = self.lock();
        if let Some(s) = map.get(key) {
            return s.clone();
        }
        if map.len() >= self.inner.max_keys {
            // An entry only this map refers to has no holder and no waiter: forgetting it
            // loses nothing, the next caller starts a fresh one with every slot free.
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let s = Arc::new(Semaphore::new(self.inner.per_destination));
        map.insert(key.to_owned(), s.clone());
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.inner
            .destinations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn per_destination_limit_blocks_only_that_destination() {
        let limits = ConcurrencyLimits::new(10, 1);
        let a = limits.acquire("a").await;
        assert!(timeout(SHORT, limits.acquire("a")).await.is_err());
        let b = timeout(SHORT, limits.acquire("b")).await;
        assert!(b.is_ok(), "another destination is not blocked");
        drop(a);
        assert!(timeout(SHORT, limits.acquire("a")).await.is_ok());
    }

    #[tokio::test]
    async fn global_limit_spans_destinations() {
        let limits = ConcurrencyLimits::new(2, 5);
        let _a = limits.acquire("a").await;
        let _b = limits.acquire("b").await;
        assert_eq!(limits.available_global(), 0);
        assert!(timeout(SHORT, limits.acquire("c")).await.is_err());
        drop(_a);
        assert!(timeout(SHORT, limits.acquire("c")).await.is_ok());
    }

    #[tokio::test]
    async fn waiting_on_a_busy_destination_holds_no_global_slot() {
        let limits = ConcurrencyLimits::new(2, 1);
        let _busy = limits.acquire("slow").await;
        let waiter = tokio::spawn({
            let limits = limits.clone();
            async move { limits.acquire("slow").await }
        });
        tokio::time::sleep(SHORT).await;
        assert_eq!(limits.available_global(), 1);
        assert!(timeout(SHORT, limits.acquire("fast")).await.is_ok());
        waiter.abort();
    }

    #[tokio::test]
    async fn non_blocking_acquire_takes_both_or_nothing() {
        let limits = ConcurrencyLimits::new(2, 1);
        let a = limits.try_acquire("a").expect("free");
        assert!(limits.try_acquire("a").is_none(), "destination full");
        assert_eq!(limits.available_global(), 1, "the failed try held nothing");
        let global = limits.acquire_global().await;
        assert!(limits.try_acquire("b").is_none(), "global full");
        // The destination slot is still free: the failed try gave it back.
        let b = limits.try_acquire_destination("b").expect("b is free");
        drop((a, global, b));
        assert_eq!(limits.available_global(), 2);
        assert!(limits.try_acquire("a").is_some());
    }

    #[tokio::test]
    async fn idle_destinations_are_pruned_at_the_bound() {
        let limits = ConcurrencyLimits::with_max_keys(100, 1, 4);
        let held = limits.acquire("held").await;
        for i in 0..20 {
            drop(limits.acquire(&format!("d{i}")).await);
        }
        assert!(limits.tracked_destinations() <= 4);
        // The held destination survived pruning: its limit still applies.
        assert!(timeout(SHORT, limits.acquire("held")).await.is_err());
        drop(held);
    }
}
