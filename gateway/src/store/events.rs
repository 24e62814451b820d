//! Accepted events, their deduplication, and the fan-out backlog.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Job, Store, StoreError, decode, encode};
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

    /// The key as bytes: equal for two submissions that are the same event.
    pub fn bytes(&self) -> Vec<u8> {
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

/// Number of locks that serialise identical submissions (striped by dedup key).
pub(super) const ACCEPT_STRIPES: usize = 64;

fn stripe_of(key: &[u8]) -> usize {
    // The key ends with a SHA-256 or a producer id: its last bytes spread well enough.
    let tail = key
        .iter()
        .rev()
        .take(8)
        .fold(0usize, |h, b| h.wrapping_mul(31) ^ *b as usize);
    tail % ACCEPT_STRIPES
}

impl Store {
    /// Stores `event` and puts it on the fan-out backlog, unless `dedup` says it was seen.
    /// Not yet durable: call [`Store::durable`] before acknowledging.
    ///
    /// No transaction, for speed (a sled transaction costs more than the rest of ingest put
    /// together). Identical submissions are serialised by a lock striped on the dedup key, so
    /// of two concurrent twins exactly one writes anything: a duplicate never reaches the
    /// backlog, not even for a moment. Nothing acknowledged can be lost: the event and its
    /// backlog entry are written before the dedup claim, so a crash between the steps leaves
    /// an unacknowledged event that is delivered anyway (at least once), or a claim whose
    /// event is missing, which the next submission overwrites.
    pub fn accept(&self, event: &Event, dedup: &DedupKey) -> Result<Accepted, StoreError> {
        self.accept_with(event, dedup, None)
    }

    /// Like [`Store::accept`], but with the event's jobs already planned (ingest plans an
    /// event that matches few subscriptions itself): the jobs are written instead of a backlog
    /// entry, so the event skips the fan-out stage. Same guarantees: the jobs are written
    /// before the dedup claim, and only by the one of two twins that wins.
    ///
    /// The jobs are written as the event's group record (one write for all of them, see
    /// `groups.rs`); each gets its [`super::Member`] place, which the schedule must be given.
    pub fn accept_planned(
        &self,
        event: &Event,
        dedup: &DedupKey,
        jobs: &mut [Job],
    ) -> Result<Accepted, StoreError> {
        self.accept_with(event, dedup, Some(jobs))
    }

    fn accept_with(
        &self,
        event: &Event,
        dedup: &DedupKey,
        planned: Option<&mut [Job]>,
    ) -> Result<Accepted, StoreError> {
        let inner = &*self.inner;
        let key = dedup.bytes();
        let stripe = &inner.accept_locks[stripe_of(&key)];
        let _serialised = stripe
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(raw) = inner.dedup.get(&key)? {
            let previous: Seen = decode("dedup", &raw)?;
            let fresh = match dedup {
                DedupKey::Explicit { .. } => true,
                DedupKey::Body { window_ms, .. } => {
                    event.received_at_ms.saturating_sub(previous.at_ms) < *window_ms
                }
            };
            if fresh && inner.events.contains_key(previous.id.as_bytes())? {
                return Ok(Accepted {
                    id: previous.id,
                    duplicate: true,
                });
            }
        }
        inner.events.insert(event.id.as_bytes(), encode(event))?;
        match planned {
            Some(jobs) => {
                let grouped = Self::group(jobs);
                for (key, record) in grouped.writes() {
                    inner.queue.insert(key, record)?;
                }
                self.insert_jobs(jobs)?;
                self.open_groups(&grouped);
            }
            None => {
                let backlog = super::queue::pending_key(inner.db.generate_id()?);
                inner
                    .queue
                    .insert(backlog.as_slice(), event.id.as_bytes())?;
            }
        }
        let seen = encode(&Seen {
            id: event.id.clone(),
            at_ms: event.received_at_ms,
        });
        inner.dedup.insert(key, seen)?;
        Ok(Accepted {
            id: event.id.clone(),
            duplicate: false,
        })
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
    /// How many events wait on the fan-out backlog (a walk of its keys: for start-up).
    pub fn backlog_len(&self) -> usize {
        self.inner
            .queue
            .scan_prefix([super::queue::PENDING])
            .keys()
            .count()
    }

    pub fn pending(&self, limit: usize) -> Result<Vec<(Vec<u8>, Event)>, StoreError> {
        let mut out = Vec::with_capacity(limit);
        let backlog = self.inner.queue.scan_prefix([super::queue::PENDING]);
        for entry in backlog.take(limit) {
            let (key, id) = entry?;
            let id = String::from_utf8_lossy(&id).into_owned();
            match self.event(&id)? {
                Some(event) => out.push((key.to_vec(), event)),
                None => {
                    self.inner.queue.remove(&key)?;
                }
            }
        }
        Ok(out)
    }
}

/// When the submission a dedup record stands for arrived.
pub(super) fn seen_at_ms(record: &[u8]) -> Result<u64, StoreError> {
    Ok(decode::<Seen>("dedup", record)?.at_ms)
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
            seq: 0,
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
    fn planned_jobs_are_written_by_the_one_twin_that_wins_and_skip_the_backlog() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let dedup = DedupKey::body("odoo", b"same body", 60_000);
        let job = |event: &str| Job {
            id: crate::store::JobId::delivery(event, "orders", 0),
            kind: crate::store::JobKind::Deliver,
            event_id: event.into(),
            subscription_id: "orders".into(),
            destination: "d".into(),
            content_type: "application/json".into(),
            body: Vec::new(),
            envelope: Some(crate::store::Format::Json),
            headers: vec![],
            attempts: 0,
            created_ms: 10,
            due_ms: 10,
            last_error: None,
            member: None,
            order: None,
        };
        let outcomes: Vec<Accepted> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (store, dedup) = (&store, &dedup);
                    s.spawn(move || {
                        let id = format!("evt_{i}");
                        store
                            .accept_planned(&event(&id, 10), dedup, &mut [job(&id)])
                            .expect("accept")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let winner = outcomes.iter().find(|a| !a.duplicate).expect("one winner");
        assert_eq!(outcomes.iter().filter(|a| !a.duplicate).count(), 1);
        let queued: Vec<Job> = store.queued_jobs().collect::<Result<_, _>>().expect("scan");
        let grouped = Job {
            member: Some(crate::store::Member { chunk: 0, slot: 0 }),
            ..job(&winner.id)
        };
        assert_eq!(queued, vec![grouped], "only the winner's job, in its group");
        assert!(
            store
                .job_summary("orders", &queued[0].id)
                .expect("index")
                .is_some()
        );
        let counts = store.counts();
        assert_eq!((counts.events, counts.pending), (1, 0), "no backlog entry");
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
