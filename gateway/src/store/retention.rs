//! Retention: what is deleted, and when, so that an edge gateway's disk levels off.
//!
//! [`Store::prune`] is one bounded pass, driven by the time it is given (tests pass their
//! own clock). Event ids begin with their reception time, and job ids with their event's id,
//! so the events and dead letters are visited oldest first and a pass stops at the first one
//! too young to go. What goes:
//! - a dead letter older than `dead_letters`, with its attempts and index row;
//! - an event older than `delivered` that no queued job and no dead letter refers to (nor the
//!   fan-out backlog), with its attempts and index rows;
//! - a body-hash dedup key older than the dedup window, an explicit-id key older than
//!   `delivered`.
//!
//! Nothing queued is ever deleted, whatever its age.

use std::time::Duration;

use serde::Serialize;

use super::counted::Batch;
use super::job::{DeadLetter, JobId};
use super::queue::{ATTEMPT, DEAD, INDEX, JOB, PENDING, key};
use super::{Store, StoreError, decode};

/// How long records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events whose work is done, their attempt logs and delivery index rows, and explicit-id
    /// dedup keys.
    pub delivered: Duration,
    /// Dead letters (replaying one puts it back in the queue, where nothing expires).
    pub dead_letters: Duration,
    /// Body-hash dedup keys.
    pub dedup_window: Duration,
}

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Events.
    pub events: usize,
    /// Dead letters.
    pub dead_letters: usize,
    /// Attempt log entries.
    pub attempts: usize,
    /// Delivery index rows.
    pub index_rows: usize,
    /// Dedup keys.
    pub dedup_keys: usize,
    /// Whether the pass stopped at its budget with more to do.
    pub more: bool,
}

impl Pruned {
    /// Records removed in all.
    pub fn total(&self) -> usize {
        self.events + self.dead_letters + self.attempts + self.index_rows + self.dedup_keys
    }

    /// Adds `other`'s counts (and its `more`) to these.
    pub(super) fn add(&mut self, other: Pruned) {
        self.events += other.events;
        self.dead_letters += other.dead_letters;
        self.attempts += other.attempts;
        self.index_rows += other.index_rows;
        self.dedup_keys += other.dedup_keys;
        self.more |= other.more;
    }
}

/// The reception time (ms) an event id carries: `evt_` + 12 hex digits of milliseconds.
pub fn event_time_ms(event_id: &str) -> Option<u64> {
    let hex = event_id.strip_prefix("evt_")?.get(..12)?;
    u64::from_str_radix(hex, 16).ok()
}

impl Store {
    /// One pass of retention at time `now_ms`, removing at most about `budget` records.
    pub fn prune(
        &self,
        now_ms: u64,
        retention: &Retention,
        budget: usize,
    ) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let cutoff = |d: Duration| now_ms.saturating_sub(d.as_millis() as u64);
        pruned.add(self.prune_dead_letters(cutoff(retention.dead_letters), budget)?);
        let left = budget.saturating_sub(pruned.total());
        pruned.add(self.prune_events(cutoff(retention.delivered), left)?);
        let left = budget.saturating_sub(pruned.total());
        pruned.add(self.prune_dedup_keys(now_ms, retention, left)?);
        Ok(pruned)
    }

    /// The attempts and index row of job `id` (of `subscription`), into `batch`.
    fn forget_job_log(
        &self,
        id: &str,
        subscription: &str,
        batch: &mut Batch,
        pruned: &mut Pruned,
    ) -> Result<(), StoreError> {
        for entry in self
            .inner
            .queue
            .scan_prefix(key(ATTEMPT, &[id.as_bytes(), b""]))
        {
            batch.remove(entry?.0);
            pruned.attempts += 1;
        }
        let row = key(INDEX, &[subscription.as_bytes(), id.as_bytes()]);
        if self.inner.queue.contains_key(&row)? {
            batch.remove(row);
            pruned.index_rows += 1;
        }
        Ok(())
    }

    fn prune_dead_letters(&self, cutoff_ms: u64, budget: usize) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let mut batch = Batch::default();
        for entry in self.inner.queue.scan_prefix([DEAD]) {
            if pruned.total() >= budget {
                pruned.more = true;
                break;
            }
            let (k, value) = entry?;
            let letter: DeadLetter = decode("dead", &value)?;
            // A letter is written after its event arrived: one whose event is younger than the
            // cutoff is younger too, and so is every later key.
            if event_time_ms(&letter.job.event_id).is_none_or(|t| t >= cutoff_ms) {
                break;
            }
            if letter.at_ms >= cutoff_ms {
                continue;
            }
            batch.remove(k);
            pruned.dead_letters += 1;
            self.forget_job_log(
                &letter.job.id,
                &letter.job.subscription_id,
                &mut batch,
                &mut pruned,
            )?;
        }
        self.inner.queue.apply_batch(batch)?;
        Ok(pruned)
    }

    fn prune_events(&self, cutoff_ms: u64, budget: usize) -> Result<Pruned, StoreError> {
        let queue = &self.inner.queue;
        // Never an event still waiting for fan-out: stop before the oldest one waiting.
        let mut cutoff_ms = cutoff_ms;
        if let Some(entry) = queue.scan_prefix([PENDING]).next() {
            let id = String::from_utf8_lossy(&entry?.1).into_owned();
            cutoff_ms = cutoff_ms.min(event_time_ms(&id).unwrap_or(0));
        }
        let mut pruned = Pruned::default();
        let mut batch = Batch::default();
        let mut events_batch = Batch::default();
        for entry in self.inner.events.iter() {
            if pruned.total() >= budget {
                pruned.more = true;
                break;
            }
            let (k, _) = entry?;
            let id = String::from_utf8_lossy(&k).into_owned();
            if event_time_ms(&id).is_none_or(|t| t >= cutoff_ms) {
                break;
            }
            let jobs_prefix = |kind: u8| key(kind, &[format!("{id}.").as_bytes()]);
            let busy = queue.scan_prefix(jobs_prefix(JOB)).next().is_some()
                || queue.scan_prefix(jobs_prefix(DEAD)).next().is_some()
                || self.has_groups(&id)?;
            if busy {
                continue;
            }
            // The attempt log names every job that ran; each has its index row.
            let mut jobs: Vec<String> = Vec::new();
            for entry in queue.scan_prefix(jobs_prefix(ATTEMPT)) {
                let (k, _) = entry?;
                let job = String::from_utf8_lossy(&k[1..k.len() - 9]).into_owned();
                if jobs.last() != Some(&job) {
                    jobs.push(job);
                }
            }
            for job in jobs {
                if let Ok(parsed) = job.parse::<JobId>() {
                    self.forget_job_log(&job, parsed.subscription(), &mut batch, &mut pruned)?;
                }
            }
            events_batch.remove(k);
            pruned.events += 1;
        }
        // The log first, then the events: a crash in between leaves events without a log,
        // which the next pass removes; never a log row pointing at nothing that stays.
        queue.apply_batch(batch)?;
        self.inner.events.apply_batch(events_batch)?;
        Ok(pruned)
    }

    fn prune_dedup_keys(
        &self,
        now_ms: u64,
        retention: &Retention,
        budget: usize,
    ) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let mut batch = Batch::default();
        let body_cutoff = now_ms.saturating_sub(retention.dedup_window.as_millis() as u64);
        let id_cutoff = now_ms.saturating_sub(retention.delivered.as_millis() as u64);
        // Not time-ordered: walk on from where the last pass stopped, so each pass is bounded.
        let mut cursor = self
            .inner
            .dedup_cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let start = cursor.clone();
        let mut last = None;
        for entry in self.inner.dedup.range(start.as_slice()..) {
            if pruned.total() >= budget {
                pruned.more = true;
                break;
            }
            let (k, value) = entry?;
            let at_ms = super::events::seen_at_ms(&value)?;
            let cutoff = if k.first() == Some(&b'h') {
                body_cutoff
            } else {
                id_cutoff
            };
            if at_ms < cutoff {
                batch.remove(k.clone());
                pruned.dedup_keys += 1;
            }
            last = Some(k);
        }
        // Past the end: start again from the beginning next time.
        *cursor = match (pruned.more, last) {
            (true, Some(k)) => [k.as_ref(), &[0]].concat(),
            _ => Vec::new(),
        };
        self.inner.dedup.apply_batch(batch)?;
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::store::{Attempt, DedupKey, Job, JobKind};

    const DAY: u64 = 86_400_000;

    fn retention() -> Retention {
        Retention {
            delivered: Duration::from_millis(7 * DAY),
            dead_letters: Duration::from_millis(30 * DAY),
            dedup_window: Duration::from_secs(600),
        }
    }

    fn event_at(ms: u64, n: u64) -> Event {
        Event {
            id: format!("evt_{ms:012x}{n:016x}"),
            source: "odoo".into(),
            model: "sale.order".into(),
            action: "write".into(),
            record_id: Some(1),
            received_at_ms: ms,
            seq: 0,
            payload: "{}".into(),
            headers: vec![],
        }
    }

    fn job_of(event: &Event, sub: &str) -> Job {
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

    fn ok() -> Attempt {
        Attempt {
            at_ms: 0,
            status: Some(200),
            latency_ms: 1,
            excerpt: String::new(),
            error: None,
        }
    }

    /// Accepts `event`, fans it out to `sub` (its backlog entry cleared) and returns its job.
    fn accept(store: &Store, event: &Event, sub: &str) -> Job {
        let dedup = DedupKey::body("odoo", event.id.as_bytes(), 600_000);
        store.accept(event, &dedup).expect("accept");
        let (backlog, _) = store.pending(1).expect("pending").remove(0);
        let job = job_of(event, sub);
        store
            .enqueue(std::slice::from_ref(&job), &[], &[backlog])
            .expect("enqueue");
        job
    }

    #[test]
    fn delivered_events_go_after_the_window_and_queued_or_dead_ones_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let day0 = 1_700_000_000_000;
        let delivered = event_at(day0, 1);
        let job = accept(&store, &delivered, "s");
        store.complete(&job, &ok()).expect("complete");
        let queued = event_at(day0 + 1, 2);
        accept(&store, &queued, "s");
        let dead = event_at(day0 + 2, 3);
        let dead_job = accept(&store, &dead, "s");
        store
            .bury(&dead_job, Some(&ok()), "gave up", day0 + 3)
            .expect("bury");

        // Within the window: nothing goes but nothing else either.
        let early = store.prune(day0 + DAY, &retention(), 1000).expect("prune");
        assert_eq!(early.events, 0);

        let pruned = store
            .prune(day0 + 8 * DAY, &retention(), 1000)
            .expect("prune");
        assert_eq!(pruned.events, 1, "{pruned:?}");
        assert_eq!(pruned.attempts, 1);
        assert_eq!(pruned.index_rows, 1);
        assert!(store.event(&delivered.id).expect("read").is_none());
        assert!(store.attempts(&job.id).expect("attempts").is_empty());
        assert!(
            store
                .jobs_of_subscription("s", 10)
                .expect("index")
                .iter()
                .all(|j| job.id != j.id)
        );
        assert!(
            store.event(&queued.id).expect("read").is_some(),
            "a queued job keeps its event"
        );
        assert!(
            store.event(&dead.id).expect("read").is_some(),
            "a dead letter keeps its event"
        );

        let later = store
            .prune(day0 + 31 * DAY, &retention(), 1000)
            .expect("prune");
        assert_eq!(later.dead_letters, 1, "{later:?}");
        assert_eq!(later.events, 1, "the dead letter's event goes with it");
        assert!(store.dead_letters(10).expect("dead").is_empty());
        assert!(
            store.event(&queued.id).expect("read").is_some(),
            "queued work never expires"
        );
    }

    #[test]
    fn a_pass_is_bounded_and_the_next_one_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let day0 = 1_700_000_000_000;
        for n in 0..50 {
            let event = event_at(day0 + n, n);
            let job = accept(&store, &event, "s");
            store.complete(&job, &ok()).expect("complete");
        }
        let now = day0 + 8 * DAY;
        let first = store.prune(now, &retention(), 20).expect("prune");
        assert!(first.more && first.total() <= 23, "{first:?}");
        let mut events = first.events;
        loop {
            let pass = store.prune(now, &retention(), 20).expect("prune");
            events += pass.events;
            if !pass.more {
                break;
            }
        }
        assert_eq!(events, 50);
        assert_eq!(store.counts().events, 0);
    }

    #[test]
    fn dedup_keys_expire_with_their_windows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let t = 1_700_000_000_000;
        store
            .accept(&event_at(t, 1), &DedupKey::body("odoo", b"x", 600_000))
            .expect("accept");
        let explicit = DedupKey::Explicit {
            source: "odoo".into(),
            id: "ext-1".into(),
        };
        store.accept(&event_at(t, 2), &explicit).expect("accept");
        let pass = store.prune(t + 601_000, &retention(), 1000).expect("prune");
        assert_eq!(
            pass.dedup_keys, 1,
            "the body key is past its window: {pass:?}"
        );
        let pass = store.prune(t + 8 * DAY, &retention(), 1000).expect("prune");
        assert_eq!(
            pass.dedup_keys, 1,
            "the explicit id is past the retention: {pass:?}"
        );
    }

    #[test]
    fn event_ids_carry_their_time() {
        assert_eq!(
            event_time_ms("evt_018f7a3b2c1d0123456789abcdef"),
            Some(0x018f7a3b2c1d)
        );
        assert_eq!(event_time_ms("ext-1"), None);
    }
}
