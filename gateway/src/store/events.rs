//! Accepted events, their deduplication, and the fan-out backlog.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

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
    pub fn accept(&self, event: &Event, dedup: &DedupKey) -> Result<Accepted, StoreError> {
        let inner = &*self.inner;
        let key = dedup.bytes();
        let seq = inner.db.generate_id()?.to_be_bytes();
        let record = encode(event);
        let seen = encode(&Seen {
            id: event.id.clone(),
            at_ms: event.received_at_ms,
        });
        let outcome = (&inner.events, &inner.pending, &inner.dedup).transaction(
            |(events, pending, dd)| {
                if let Some(previous) = dd.get(&key)? {
                    let previous: Seen =
                        decode("dedup", &previous).map_err(ConflictableTransactionError::Abort)?;
                    let fresh = match dedup {
                        DedupKey::Explicit { .. } => true,
                        DedupKey::Body { window_ms, .. } => {
                            event.received_at_ms.saturating_sub(previous.at_ms) < *window_ms
                        }
                    };
                    if fresh {
                        return Ok(Accepted {
                            id: previous.id,
                            duplicate: true,
                        });
                    }
                }
                if events.get(event.id.as_bytes())?.is_some() {
                    // The same explicit id from another source would collide: refuse to overwrite.
                    return Ok(Accepted {
                        id: event.id.clone(),
                        duplicate: true,
                    });
                }
                events.insert(event.id.as_bytes(), record.as_slice())?;
                pending.insert(&seq, event.id.as_bytes())?;
                dd.insert(key.as_slice(), seen.as_slice())?;
                Ok(Accepted {
                    id: event.id.clone(),
                    duplicate: false,
                })
            },
        )?;
        Ok(outcome)
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
