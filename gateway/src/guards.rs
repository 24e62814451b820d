//! The live side of authentication, [`AuthState`]: token-bucket rate limits per app (API) and
//! per client id (token endpoint), and the OAuth1 nonces seen within the timestamp window.
//!
//! Both are bounded: buckets are keyed by registered apps only (unknown client ids share one
//! bucket), and the nonce memory has a fixed capacity, pruned as entries leave the window. When
//! it is full of live nonces, requests are refused rather than memory growing. Both restart
//! clean; a nonce seen before a restart is still refused by the timestamp window only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 10_000;
/// Nonces remembered at most.
pub(crate) const MAX_NONCES: usize = 100_000;

/// Token buckets by key: bursts up to the per-minute limit, refilled continuously.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// Takes one request from `key`'s bucket, or says how long until one is available.
    pub(crate) fn check(&self, key: &str, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(per_minute.max(1));
        let per_second = capacity / 60.0;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            // Drop buckets that have refilled: forgetting them changes nothing.
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < capacity
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

/// Why a nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NonceError {
    /// Seen before with the same consumer and timestamp.
    #[error("this nonce was already used")]
    Replayed,
    /// Too many live nonces to remember another.
    #[error("too many requests in the timestamp window")]
    Full,
}

/// The (consumer key, nonce, timestamp) triples seen, each until its timestamp leaves the
/// window.
#[derive(Debug)]
pub(crate) struct NonceCache {
    inner: Mutex<Nonces>,
    capacity: usize,
    /// Where the triples are also kept, so they outlive a restart.
    tree: Option<sled::Tree>,
}

#[derive(Debug, Default)]
struct Nonces {
    /// Triple → second after which it is forgotten.
    seen: HashMap<(String, String, u64), u64>,
    /// Live triples per consumer key: one app's share is bounded.
    per_consumer: HashMap<String, usize>,
    next_prune: u64,
}

/// Most live nonces one consumer may hold, as a fraction of the whole memory.
const CONSUMER_SHARE: usize = 8;

impl Default for NonceCache {
    fn default() -> Self {
        Self::with_capacity(MAX_NONCES)
    }
}

impl NonceCache {
    /// A cache remembering at most `capacity` nonces.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::default(),
            capacity,
            tree: None,
        }
    }

    /// A cache that also keeps its triples in `tree`, starting with those stored there that
    /// are still within their window.
    pub(crate) fn persistent(tree: sled::Tree) -> Self {
        let now = unix_now();
        let mut seen = HashMap::new();
        let mut per_consumer: HashMap<String, usize> = HashMap::new();
        for (key, value) in tree.iter().flatten() {
            let forget_at = value
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if forget_at <= now {
                let _ = tree.remove(&key);
                continue;
            }
            let mut parts = key.split(|b| *b == 0);
            let (Some(consumer), Some(nonce), Some(ts)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let timestamp = std::str::from_utf8(ts)
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let key = (
                String::from_utf8_lossy(consumer).into_owned(),
                String::from_utf8_lossy(nonce).into_owned(),
                timestamp,
            );
            *per_consumer.entry(key.0.clone()).or_default() += 1;
            seen.insert(key, forget_at);
        }
        Self {
            inner: Mutex::new(Nonces {
                seen,
                per_consumer,
                next_prune: 0,
            }),
            capacity: MAX_NONCES,
            tree: Some(tree),
        }
    }

    /// Remembers the triple, or refuses it when seen already. `window` is the accepted clock
    /// skew in seconds: a triple older than that cannot be replayed anyway.
    pub(crate) fn check(
        &self,
        consumer: &str,
        nonce: &str,
        timestamp: u64,
        now: u64,
        window: u64,
    ) -> Result<(), NonceError> {
        let Ok(mut inner) = self.inner.lock() else {
            return Err(NonceError::Full);
        };
        if now >= inner.next_prune || inner.seen.len() >= self.capacity {
            let tree = self.tree.as_ref();
            let Nonces {
                seen, per_consumer, ..
            } = &mut *inner;
            seen.retain(|(c, n, t), forget_at| {
                let keep = *forget_at > now;
                if !keep {
                    if let Some(tree) = tree {
                        let _ = tree.remove(stored_key(c, n, *t));
                    }
                    if let Some(count) = per_consumer.get_mut(c) {
                        *count = count.saturating_sub(1);
                    }
                }
                keep
            });
            per_consumer.retain(|_, count| *count > 0);
            inner.next_prune = now + 10;
        }
        let key = (consumer.to_owned(), nonce.to_owned(), timestamp);
        if inner.seen.contains_key(&key) {
            return Err(NonceError::Replayed);
        }
        let held = inner.per_consumer.get(consumer).copied().unwrap_or(0);
        if inner.seen.len() >= self.capacity || held >= (self.capacity / CONSUMER_SHARE).max(1) {
            return Err(NonceError::Full);
        }
        let forget_at = timestamp.max(now) + window + 1;
        if let Some(tree) = &self.tree {
            // Best effort: a failing disk must not lock every OAuth1 client out; the memory
            // copy still refuses replays until the next restart.
            let _ = tree.insert(
                stored_key(consumer, nonce, timestamp),
                &forget_at.to_be_bytes(),
            );
        }
        inner.seen.insert(key, forget_at);
        *inner.per_consumer.entry(consumer.to_owned()).or_default() += 1;
        Ok(())
    }
}

fn stored_key(consumer: &str, nonce: &str, timestamp: u64) -> Vec<u8> {
    [
        consumer.as_bytes(),
        b"\0",
        nonce.as_bytes(),
        b"\0",
        timestamp.to_string().as_bytes(),
    ]
    .concat()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The live side of authentication: rate-limit buckets (in memory) and the OAuth1 nonces seen
/// (in memory and in the store, so a restart does not reopen a replay window).
#[derive(Debug, Default)]
pub struct AuthState {
    /// API requests, per app.
    pub(crate) api_limiter: RateLimiter,
    /// OAuth2 endpoint requests with correct credentials, per client id.
    pub(crate) token_limiter: RateLimiter,
    /// Failed OAuth2 client authentications, per source address and claimed client id.
    pub(crate) failure_limiter: RateLimiter,
    /// OAuth1 (consumer, nonce, timestamp) triples within the window.
    pub(crate) nonces: NonceCache,
}

impl AuthState {
    /// Authentication state whose OAuth1 nonces are kept in `store` (and loaded from it), or
    /// only in memory when the control plane remembers them for every instance
    /// (`shared_nonces`).
    pub fn open(
        store: &crate::store::Store,
        shared_nonces: bool,
    ) -> Result<Self, crate::store::StoreError> {
        let nonces = if shared_nonces {
            NonceCache::default()
        } else {
            NonceCache::persistent(store.db().open_tree("oauth1_nonces")?)
        };
        Ok(Self {
            nonces,
            ..Self::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_bursts_then_refill() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("a", 3, t0).is_ok());
        }
        let wait = limiter.check("a", 3, t0).expect_err("the burst is spent");
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limiter.check("b", 3, t0).is_ok(), "buckets are per key");
        assert!(
            limiter.check("a", 3, t0 + Duration::from_secs(20)).is_ok(),
            "one request refilled in 20 s"
        );
        assert!(limiter.check("a", 3, t0 + Duration::from_secs(21)).is_err());
    }

    #[test]
    fn stored_nonces_are_refused_after_a_restart_until_their_window_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("open");
        let now = unix_now();
        {
            let cache = NonceCache::persistent(db.open_tree("n").expect("tree"));
            assert_eq!(cache.check("app", "n1", now, now, 300), Ok(()));
        }
        let cache = NonceCache::persistent(db.open_tree("n").expect("tree"));
        assert_eq!(
            cache.check("app", "n1", now, now, 300),
            Err(NonceError::Replayed),
            "remembered across the restart"
        );
        assert_eq!(cache.check("app", "n2", now, now, 300), Ok(()));
        // Past the window the triple is forgotten, in memory and on disk.
        let later = now + 400;
        assert_eq!(cache.check("other", "n3", later, later, 300), Ok(()));
        let reopened = NonceCache::persistent(db.open_tree("n").expect("tree"));
        assert_eq!(
            reopened.inner.lock().expect("lock").seen.len(),
            1,
            "only the live one is loaded"
        );
    }

    #[test]
    fn nonces_are_refused_once_seen_and_forgotten_after_the_window() {
        // 16 in all, 2 per consumer.
        let cache = NonceCache::with_capacity(16);
        assert_eq!(cache.check("ck", "n1", 1000, 1000, 300), Ok(()));
        assert_eq!(
            cache.check("ck", "n1", 1000, 1001, 300),
            Err(NonceError::Replayed)
        );
        assert_eq!(
            cache.check("ck", "n1", 1001, 1001, 300),
            Ok(()),
            "another timestamp is another request"
        );
        assert_eq!(
            cache.check("ck", "n3", 1000, 1002, 300),
            Err(NonceError::Full),
            "one consumer's share is bounded"
        );
        assert_eq!(
            cache.check("other", "n2", 1000, 1002, 300),
            Ok(()),
            "another consumer is not held back by the first one's share"
        );
        assert_eq!(
            cache.check("ck", "n4", 1400, 1400, 300),
            Ok(()),
            "expired entries make room"
        );
    }
}
