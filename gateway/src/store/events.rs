//! Accepted events, their deduplication, and the fan-out backlog.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, decode, encode};
use crate::event::Event;

/// How a repeated submission is recognised.
#[derive(Debug, Clone)]
pub enum DedupKey {
    /// The producer's explicit id, per source: a duplicate forever.
    Explicit {
        /// Source name.
        source: String,
        /// The producer's id.
        id: String,
    },
    /// The same body from the same source within the window.
    Body {
        /// Source name.
        source: String,
        /// SHA-256 of the body.
        hash: [u8; 32],
        /// Window in milliseconds.
        window_ms: u64,
    },
}

impl DedupKey {
    /// The body-hash key for `body` from `source`.
    pub fn body(source: &str, body: &[u8], window_ms: u64) -> Self {
        Self::Body {
            source: source.to_owned(),
            hash: Sha256::digest(body).into(),
            window_ms,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Explicit { source, id } => {
                [b"i\0", source.as_bytes(), b"\0", id.as_bytes()].concat()
            }
            Self::Body { source, hash, .. } => {
                [b"h\0", source.as_bytes(), b"\0", hash.as_slice()].concat()
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Seen {
    id: String,
    at_ms: u64,
}

/// The outcome of accepting an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The event's id (the first submission's, for a duplicate).
    pub id: String,
    /// Whether this was a repeat of an earlier submission.
    pub duplicate: bool,
}

impl Store {
    /// Stores `event` and puts it on the fan-out backlog, unless `dedup` says it was seen.
    /// Not yet durable: call [`Store::durable`] before acknowledging.
    ///
    /// No transaction, for speed (a sled transaction costs more than the rest of ingest put
    /// together), yet nothing acknowledged can be lost: the event and its backlog entry are
    /// written first, then the dedup key is claimed with a compare-and-swap. A writer that
    /// loses the claim to a concurrent identical request withdraws its own event and answers
    /// with the winner's id. A crash between the steps leaves an unacknowledged event that is
    /// delivered anyway (at least once) or a claim whose event is missing, which the next
    /// submission overwrites.
    pub fn accept(&self, event: &Event, dedup: &DedupKey) -> Result<Accepted, StoreError> {
        let inner = &*self.inner;
        let key = dedup.bytes();
        let fresh = |previous: &Seen| match dedup {
            DedupKey::Explicit { .. } => true,
            DedupKey::Body { window_ms, .. } => {
                event.received_at_ms.saturating_sub(previous.at_ms) < *window_ms
            }
        };
        let known = |raw: &Option<sled::IVec>| -> Result<Option<Seen>, StoreError> {
            let Some(raw) = raw else { return Ok(None) };
            let previous: Seen = decode("dedup", raw)?;
            Ok(
                (fresh(&previous) && inner.events.contains_key(previous.id.as_bytes())?)
                    .then_some(previous),
            )
        };
        let mut current = inner.dedup.get(&key)?;
        if let Some(previous) = known(&current)? {
            return Ok(Accepted {
                id: previous.id,
                duplicate: true,
            });
        }
        let seq = inner.db.generate_id()?.to_be_bytes();
        inner.events.insert(event.id.as_bytes(), encode(event))?;
        inner.pending.insert(seq, event.id.as_bytes())?;
        let seen = encode(&Seen {
            id: event.id.clone(),
            at_ms: event.received_at_ms,
        });
        loop {
            match inner
                .dedup
                .compare_and_swap(&key, current.as_ref(), Some(seen.as_slice()))?
            {
                Ok(()) => {
                    return Ok(Accepted {
                        id: event.id.clone(),
                        duplicate: false,
                    });
                }
                Err(conflict) => {
                    current = conflict.current;
                    if let Some(winner) = known(&current)? {
                        inner.pending.remove(seq)?;
                        inner.events.remove(event.id.as_bytes())?;
                        return Ok(Accepted {
                            id: winner.id,
                            duplicate: true,
                        });
                    }
                }
            }
        }
    }

    /// Reads an event.
    pub fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        self.inner
            .events
            .get(id.as_bytes())?
            .map(|b| decode("events", &b))
            .transpose()
    }

    /// Up to `limit` events waiting for fan-out, oldest first, with their backlog keys.
    pub fn pending(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Event)>, StoreError> {
        let range = match after {
            Some(k) => self.inner.pending.range((
                std::ops::Bound::Excluded(k.to_vec()),
                std::ops::Bound::Unbounded,
            )),
            None => self.inner.pending.iter(),
        };
        let mut out = Vec::with_capacity(limit);
        for entry in range.take(limit) {
            let (key, id) = entry?;
            let id = String::from_utf8_lossy(&id).into_owned();
            match self.event(&id)? {
                Some(event) => out.push((key.to_vec(), event)),
                None => {
                    self.inner.pending.remove(&key)?;
                }
            }
        }
        Ok(out)
    }

    /// Forgets body-hash dedup entries older than `window_ms` (explicit ids are kept).
    pub fn prune_dedup(&self, now_ms: u64, window_ms: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.inner.dedup.scan_prefix(b"h\0") {
            let (key, value) = entry?;
            let seen: Seen = decode("dedup", &value)?;
            if now_ms.saturating_sub(seen.at_ms) >= window_ms {
                self.inner.dedup.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, at: u64) -> Event {
        Event {
            id: id.into(),
            source: "odoo".into(),
            model: "sale.order".into(),
            action: "write".into(),
            record_id: Some(1),
            received_at_ms: at,
            payload: "{}".into(),
            headers: vec![],
        }
    }

    #[test]
    fn concurrent_identical_submissions_store_one_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let dedup = DedupKey::body("odoo", b"same body", 60_000);
        let outcomes: Vec<Accepted> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (store, dedup) = (&store, &dedup);
                    s.spawn(move || {
                        store
                            .accept(&event(&format!("evt_{i}"), 10), dedup)
                            .expect("accept")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(
            outcomes.iter().filter(|a| !a.duplicate).count(),
            1,
            "{outcomes:?}"
        );
        assert!(
            outcomes.iter().all(|a| a.id == outcomes[0].id),
            "{outcomes:?}"
        );
        assert_eq!(store.counts().events, 1);
        assert_eq!(store.counts().pending, 1);
    }

    #[test]
    fn the_body_window_expires_and_explicit_ids_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let body = DedupKey::body("odoo", b"b", 100);
        assert!(
            !store
                .accept(&event("e1", 1_000), &body)
                .expect("accept")
                .duplicate
        );
        assert!(
            store
                .accept(&event("e2", 1_050), &body)
                .expect("accept")
                .duplicate
        );
        assert!(
            !store
                .accept(&event("e3", 1_200), &body)
                .expect("accept")
                .duplicate,
            "window passed"
        );
        let explicit = DedupKey::Explicit {
            source: "odoo".into(),
            id: "x".into(),
        };
        assert!(
            !store
                .accept(&event("e4", 1_000), &explicit)
                .expect("accept")
                .duplicate
        );
        assert!(
            store
                .accept(&event("e5", 9_999_999), &explicit)
                .expect("accept")
                .duplicate
        );
    }

    #[test]
    fn a_claim_whose_event_is_missing_does_not_swallow_the_next_submission() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let dedup = DedupKey::body("odoo", b"b", 60_000);
        // What a crash between the claim and the event write would leave behind.
        let stale = encode(&Seen {
            id: "evt_lost".into(),
            at_ms: 10,
        });
        store
            .inner
            .dedup
            .insert(dedup.bytes(), stale)
            .expect("insert");
        let accepted = store.accept(&event("evt_new", 20), &dedup).expect("accept");
        assert_eq!(
            accepted,
            Accepted {
                id: "evt_new".into(),
                duplicate: false
            }
        );
    }
}
