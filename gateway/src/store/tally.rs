//! Live data: how many bytes the store holds, by kind of record, counted as it is written
//! and removed.
//!
//! The disk budget is decided on this, not on the folder's size: sled never gives freed
//! space back to the file system, it reuses it, so once pruned the folder stops growing but
//! does not shrink, and a budget measured on it would never be left again.
//!
//! Every write to the work plane's trees (`events`, `dedup`, `queue`) goes through
//! `counted.rs`, which tells the tally exactly what each write replaced. What counts is the
//! bytes of keys and values; sled's own overhead (page headers, its log's free space) is what
//! the folder adds on top.
//!
//! At open the tally comes from the record [`Store::close`] saved, removed as it is read so
//! that a crash later is followed by a count from scratch (a scan of every record). The
//! control plane's trees (apps, tokens, API subscriptions, Odoo cursors) are written by
//! their own modules and are small: maintenance counts them by a scan, now and then.
//! This module decides nothing; maintenance and ingest read it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// What a record is, for the count: its tree and, in the queue, its key's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Events (each payload's one copy).
    Events,
    /// Dedup keys.
    Dedup,
    /// Backlog entries (events waiting for fan-out).
    Backlog,
    /// Job records.
    Jobs,
    /// Group records (an event's jobs without an outcome yet).
    Groups,
    /// Attempt log entries.
    Attempts,
    /// Dead letters.
    DeadLetters,
    /// Delivery index rows.
    Index,
    /// The control plane's trees (apps, tokens, API subscriptions and plugins, nonces,
    /// subscription health, Odoo cursors) and records of no other kind.
    Control,
}

impl Kind {
    /// Every kind, in the order of the counters.
    pub const ALL: [Kind; 9] = [
        Kind::Events,
        Kind::Dedup,
        Kind::Backlog,
        Kind::Jobs,
        Kind::Groups,
        Kind::Attempts,
        Kind::DeadLetters,
        Kind::Index,
        Kind::Control,
    ];

    /// The name the status and the metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Events => "events",
            Kind::Dedup => "dedup",
            Kind::Backlog => "backlog",
            Kind::Jobs => "jobs",
            Kind::Groups => "groups",
            Kind::Attempts => "attempts",
            Kind::DeadLetters => "dead_letters",
            Kind::Index => "index",
            Kind::Control => "control",
        }
    }

    /// The kind of a record of the queue tree, by its key's prefix.
    fn of_queue_key(key: &[u8]) -> Kind {
        use super::queue::{ATTEMPT, DEAD, INDEX, JOB, PENDING};
        match key.first().copied() {
            Some(PENDING) => Kind::Backlog,
            Some(JOB) => Kind::Jobs,
            Some(super::groups::GROUP) => Kind::Groups,
            Some(ATTEMPT) => Kind::Attempts,
            Some(DEAD) => Kind::DeadLetters,
            Some(INDEX) => Kind::Index,
            _ => Kind::Control,
        }
    }
}

/// The work plane's trees, whose writes are counted as they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    Events,
    Dedup,
    Queue,
}

impl Which {
    pub(super) fn kind(self, key: &[u8]) -> Kind {
        match self {
            Which::Events => Kind::Events,
            Which::Dedup => Kind::Dedup,
            Which::Queue => Kind::of_queue_key(key),
        }
    }
}

/// Live bytes and records by kind. Signed: a count that went wrong shows as 0, never wraps.
#[derive(Debug, Default)]
pub(super) struct Tally {
    bytes: [AtomicI64; Kind::ALL.len()],
    records: [AtomicI64; Kind::ALL.len()],
}

/// How much one kind holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCount {
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Records.
    pub records: u64,
}

/// What the store holds, as counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LiveData {
    /// Bytes of keys and values in all.
    pub bytes: u64,
    /// Records in all.
    pub records: u64,
    /// By kind.
    pub by_kind: BTreeMap<&'static str, KindCount>,
}

/// The tally as [`Store::close`] saves it.
#[derive(Serialize, Deserialize)]
struct Saved {
    kinds: BTreeMap<String, KindCount>,
}

fn record_len(key: &[u8], value: usize) -> i64 {
    (key.len() + value) as i64
}

impl Tally {
    /// Counts a change of `key` from `old` to `new` (value lengths; `None`: absent).
    pub(super) fn change(&self, kind: Kind, key: &[u8], old: Option<usize>, new: Option<usize>) {
        let i = kind as usize;
        let before = old.map_or(0, |v| record_len(key, v));
        let after = new.map_or(0, |v| record_len(key, v));
        if after != before {
            self.bytes[i].fetch_add(after - before, Ordering::Relaxed);
        }
        let records = i64::from(new.is_some()) - i64::from(old.is_some());
        if records != 0 {
            self.records[i].fetch_add(records, Ordering::Relaxed);
        }
    }

    /// Sets one kind's count (a scan's result).
    pub(super) fn set(&self, kind: Kind, count: KindCount) {
        let i = kind as usize;
        self.bytes[i].store(count.bytes as i64, Ordering::Relaxed);
        self.records[i].store(count.records as i64, Ordering::Relaxed);
    }

    fn get(&self, kind: Kind) -> KindCount {
        let i = kind as usize;
        let read = |v: &AtomicI64| u64::try_from(v.load(Ordering::Relaxed)).unwrap_or(0);
        KindCount {
            bytes: read(&self.bytes[i]),
            records: read(&self.records[i]),
        }
    }

    /// Bytes held in all (keys and values).
    pub(super) fn live_bytes(&self) -> u64 {
        Kind::ALL.iter().map(|k| self.get(*k).bytes).sum()
    }

    /// Everything, by kind.
    pub(super) fn live(&self) -> LiveData {
        let by_kind: BTreeMap<_, _> = Kind::ALL
            .iter()
            .map(|k| (k.as_str(), self.get(*k)))
            .collect();
        LiveData {
            bytes: by_kind.values().map(|c| c.bytes).sum(),
            records: by_kind.values().map(|c| c.records).sum(),
            by_kind,
        }
    }

    /// The tally as saved at a clean close.
    pub(super) fn encode(&self) -> Vec<u8> {
        let kinds = Kind::ALL
            .iter()
            .map(|k| (k.as_str().to_owned(), self.get(*k)))
            .collect();
        serde_json::to_vec(&Saved { kinds }).unwrap_or_default()
    }

    /// Takes a saved tally; false if it cannot be read (then the store counts from scratch).
    pub(super) fn restore(&self, saved: &[u8]) -> bool {
        let Ok(saved) = serde_json::from_slice::<Saved>(saved) else {
            return false;
        };
        for kind in Kind::ALL {
            self.set(
                kind,
                saved.kinds.get(kind.as_str()).copied().unwrap_or_default(),
            );
        }
        true
    }

    /// Counts one of the work plane's trees from scratch.
    pub(super) fn count_tree(&self, tree: &sled::Tree, which: Which) -> sled::Result<()> {
        let mut counts: BTreeMap<Kind, KindCount> = BTreeMap::new();
        for entry in tree.iter() {
            let (key, value) = entry?;
            let count = counts.entry(which.kind(&key)).or_default();
            count.bytes += (key.len() + value.len()) as u64;
            count.records += 1;
        }
        let kinds: &[Kind] = match which {
            Which::Events => &[Kind::Events],
            Which::Dedup => &[Kind::Dedup],
            Which::Queue => &[
                Kind::Backlog,
                Kind::Jobs,
                Kind::Groups,
                Kind::Attempts,
                Kind::DeadLetters,
                Kind::Index,
            ],
        };
        for kind in kinds {
            self.set(*kind, counts.get(kind).copied().unwrap_or_default());
        }
        Ok(())
    }
}

/// The tree of the store's own bookkeeping (the tally saved at a clean close).
pub(super) const META: &str = "store_meta";
/// The saved tally's key in [`META`].
pub(super) const SAVED_TALLY: &[u8] = b"tally";

impl Store {
    /// Takes the tally saved at the last clean close and removes it (a crash from now on must
    /// be followed by a count from scratch), or counts every record.
    pub(super) fn restore_tally(&self) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let saved = inner.meta.remove(SAVED_TALLY)?;
        if saved.is_some_and(|saved| inner.tally.restore(&saved)) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        inner.tally.count_tree(inner.events.raw(), Which::Events)?;
        inner.tally.count_tree(inner.dedup.raw(), Which::Dedup)?;
        inner.tally.count_tree(inner.queue.raw(), Which::Queue)?;
        self.count_control()?;
        let live = inner.tally.live();
        tracing::info!(
            bytes = live.bytes,
            records = live.records,
            took_ms = started.elapsed().as_millis() as u64,
            "live data counted (no tally saved at the last stop)"
        );
        Ok(())
    }

    /// Counts the control plane's trees (every tree but the work plane's) from scratch.
    pub(super) fn count_control(&self) -> Result<(), StoreError> {
        const COUNTED: [&str; 4] = ["events", "dedup", "queue", META];
        let mut count = KindCount::default();
        for name in self.inner.db.tree_names() {
            if COUNTED.iter().any(|n| name.as_ref() == n.as_bytes()) {
                continue;
            }
            for entry in self.inner.db.open_tree(&name)?.iter() {
                let (key, value) = entry?;
                count.bytes += (key.len() + value.len()) as u64;
                count.records += 1;
            }
        }
        self.inner.tally.set(Kind::Control, count);
        Ok(())
    }

    /// What the store holds, as counted, by kind.
    pub fn live_data(&self) -> LiveData {
        self.inner.tally.live()
    }

    /// Live data in bytes (keys and values of every record).
    pub fn live_bytes(&self) -> u64 {
        self.inner.tally.live_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::store::{Attempt, DedupKey, Job, JobId, JobKind, Retention, Store};
    use std::time::Duration;

    fn event(n: u64) -> Event {
        Event {
            id: format!("evt_{:012x}{n:016x}", 1_700_000_000_000 + n),
            source: "odoo".into(),
            model: "sale.order".into(),
            action: "write".into(),
            record_id: Some(n as i64),
            received_at_ms: 1_700_000_000_000 + n,
            seq: 0,
            payload: "x".repeat(100 + n as usize),
            headers: vec![],
        }
    }

    fn job(event: &Event, sub: &str) -> Job {
        Job {
            id: JobId::delivery(&event.id, sub, 0),
            kind: JobKind::Deliver,
            event_id: event.id.clone(),
            subscription_id: sub.into(),
            destination: "d".into(),
            content_type: String::new(),
            body: Vec::new(),
            envelope: None,
            headers: vec![],
            attempts: 0,
            created_ms: event.received_at_ms,
            due_ms: event.received_at_ms,
            last_error: None,
            member: None,
            order: None,
        }
    }

    fn attempt(status: u16) -> Attempt {
        Attempt {
            at_ms: 0,
            status: Some(status),
            latency_ms: 1,
            excerpt: "e".repeat(status as usize % 7),
            error: None,
        }
    }

    /// The work plane's kinds, counted from scratch.
    fn scanned(store: &Store) -> LiveData {
        let fresh = Tally::default();
        let inner = &store.inner;
        fresh
            .count_tree(inner.events.raw(), Which::Events)
            .expect("scan");
        fresh
            .count_tree(inner.dedup.raw(), Which::Dedup)
            .expect("scan");
        fresh
            .count_tree(inner.queue.raw(), Which::Queue)
            .expect("scan");
        fresh.live()
    }

    fn work_plane(live: LiveData) -> Vec<(&'static str, KindCount)> {
        live.by_kind
            .into_iter()
            .filter(|(kind, _)| *kind != "control")
            .collect()
    }

    #[test]
    fn the_tally_matches_a_count_from_scratch_after_every_kind_of_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut jobs = Vec::new();
        for n in 0..40 {
            let event = event(n);
            let dedup = DedupKey::body("odoo", event.id.as_bytes(), 1);
            if n % 2 == 0 {
                let mut planned = vec![job(&event, "a"), job(&event, "b")];
                store
                    .accept_planned(&event, &dedup, &mut planned)
                    .expect("accept");
                jobs.extend(planned);
            } else {
                store.accept(&event, &dedup).expect("accept");
            }
        }
        // The backlog fanned out in batches, each event's entry cleared with its jobs.
        for (key, event) in store.pending(100).expect("pending") {
            let mut fresh = vec![job(&event, "c")];
            store.enqueue_new(&mut fresh, &[key]).expect("enqueue");
            jobs.extend(fresh);
        }
        for (i, job) in jobs.iter().enumerate() {
            match i % 4 {
                0 => store.complete(job, &attempt(200)).expect("complete"),
                1 => {
                    let retried = store.retry_later(job, &attempt(503), 10).expect("retry");
                    store.complete(&retried, &attempt(200)).expect("complete");
                }
                2 => store
                    .bury(job, Some(&attempt(500)), "gave up", 20)
                    .expect("bury"),
                _ => {}
            }
        }
        let dead = store.dead_letters(3).expect("dead");
        store.replay(&dead[0].job.id, 30).expect("replay");
        store.purge_subscriptions("b").expect("purge");
        assert_eq!(work_plane(store.live_data()), work_plane(scanned(&store)));

        let retention = Retention {
            delivered: Duration::ZERO,
            dead_letters: Duration::ZERO,
            dedup_window: Duration::ZERO,
        };
        store
            .prune(1_800_000_000_000, &retention, 10_000)
            .expect("prune");
        let live = store.live_data();
        assert_eq!(work_plane(live.clone()), work_plane(scanned(&store)));
        assert!(live.by_kind["events"].records > 0, "queued work stays");

        // A clean close saves the tally; the next open takes it (and removes it).
        store.close().expect("close");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.live_data(), live);
        assert!(store.inner.meta.get(SAVED_TALLY).expect("read").is_none());
        drop(store);
        // No tally saved (a crash): counted from scratch, the same.
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(work_plane(store.live_data()), work_plane(live));
    }
}
