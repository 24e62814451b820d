//! Group records: an event's new jobs stored as one record, not one record each.
//!
//! An event that matches eleven subscriptions makes eleven jobs. Stored one by one, each is a
//! job record and an index row, and every sled write copies a tree node: one app with ten
//! subscriptions made ingest write 22 records per event, and every other app paid for them.
//! So an event's fresh jobs are written together as one *group* record (`g` + event id +
//! chunk number, at most [`GROUP_SIZE`] jobs each), and a job gets records of its own only
//! when it has an outcome:
//! - delivered, or buried: its attempt and its index row (and the dead letter);
//! - to be retried: its job record, attempt and index row; from then on it is an ordinary job.
//!
//! A job still in its group is a *member* ([`Member`]: which record, which slot). Which members
//! are still open lives in memory (a bit per slot); the group record goes when its last member
//! has an outcome. At start-up the bits are rebuilt from the records: a member is open unless
//! it has an index row or a job record. Each outcome writes its own records before its bit is
//! cleared, so a crash in between repeats a delivery (same `webhook-id`), never loses one.
//!
//! Removing an app's subscriptions ([`Store::purge_subscriptions`]) rewrites the groups without
//! their members, holding the purge lock that every member's outcome takes shared, so an
//! attempt that finishes meanwhile writes nothing for a purged job.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};

use super::Format;
use super::counted::Batch;
use super::job::{Attempt, DeadLetter, Job, JobId, JobKind, JobPart, JobSummary, Member};
use super::queue::{DEAD, INDEX, JOB, key};
use super::{Store, StoreError, decode, encode};

/// The key prefix of group records.
pub(super) const GROUP: u8 = b'g';

/// Most jobs in one group record (one bit each in its open mask).
pub const GROUP_SIZE: usize = 64;

/// How many of the newest group records a listing of one subscription's deliveries reads for
/// deliveries not yet attempted.
const LISTED_GROUPS: usize = 1_000;

/// The key of group record `chunk` of `event_id`.
fn group_key(event_id: &str, chunk: u32) -> Vec<u8> {
    let mut key = group_prefix(event_id);
    key.extend_from_slice(&chunk.to_be_bytes());
    key
}

/// The prefix of every group record of `event_id`.
pub(super) fn group_prefix(event_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(event_id.len() + 6);
    key.push(GROUP);
    key.extend_from_slice(event_id.as_bytes());
    key.push(0);
    key
}

/// The event id and chunk number of a group record's key.
fn parse_group_key(key: &[u8]) -> Option<(String, u32)> {
    let body = key.strip_prefix(&[GROUP])?;
    let (event, rest) = body.split_at(body.len().checked_sub(5)?);
    let chunk = u32::from_be_bytes(rest.get(1..)?.try_into().ok()?);
    Some((String::from_utf8(event.to_vec()).ok()?, chunk))
}

/// A group record as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Group {
    #[serde(rename = "c")]
    created_ms: u64,
    #[serde(rename = "t")]
    due_ms: u64,
    /// Headers every member has (an event's jobs share its `traceparent`): stored once, and a
    /// member's own list is then empty.
    #[serde(rename = "h", default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
    /// By slot; `None` once its subscription was purged.
    #[serde(rename = "m")]
    members: Vec<Option<Stored>>,
}

/// One job in a group record: what differs from job to job.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    #[serde(rename = "s")]
    subscription: String,
    /// Delivery number, or `None` for the plugin call.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    delivery: Option<usize>,
    #[serde(rename = "k")]
    kind: JobKind,
    #[serde(rename = "d")]
    destination: String,
    #[serde(rename = "y")]
    content_type: String,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    envelope: Option<Format>,
    #[serde(
        rename = "b",
        with = "super::job::body_b64",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    body: Vec<u8>,
    #[serde(rename = "h", default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    order: Option<super::Order>,
}

impl Stored {
    /// The stored form of `job`, if it can live in a group: a fresh job whose id is its own.
    fn of(job: &Job, created_ms: u64, due_ms: u64) -> Option<Self> {
        let id = &job.id;
        let fresh = job.attempts == 0
            && job.last_error.is_none()
            && job.created_ms == created_ms
            && job.due_ms == due_ms;
        if !fresh || id.event() != job.event_id || id.subscription() != job.subscription_id {
            return None;
        }
        Some(Self {
            delivery: match id.part() {
                JobPart::Delivery(n) => Some(n),
                JobPart::Transform => None,
            },
            subscription: job.subscription_id.clone(),
            kind: job.kind,
            destination: job.destination.clone(),
            content_type: job.content_type.clone(),
            envelope: job.envelope,
            body: job.body.clone(),
            headers: job.headers.clone(),
            order: job.order.clone(),
        })
    }

    fn job_id(&self, event_id: &str) -> JobId {
        match self.delivery {
            Some(n) => JobId::delivery(event_id, &self.subscription, n),
            None => JobId::transform(event_id, &self.subscription),
        }
    }

    fn job(&self, event_id: &str, group: &Group, member: Member) -> Job {
        Job {
            id: self.job_id(event_id),
            kind: self.kind,
            event_id: event_id.to_owned(),
            subscription_id: self.subscription.clone(),
            destination: self.destination.clone(),
            content_type: self.content_type.clone(),
            body: self.body.clone(),
            envelope: self.envelope,
            headers: if self.headers.is_empty() {
                group.headers.clone()
            } else {
                self.headers.clone()
            },
            attempts: 0,
            created_ms: group.created_ms,
            due_ms: group.due_ms,
            last_error: None,
            member: Some(member),
            order: self.order.clone(),
        }
    }
}

/// Which members are open, in memory.
#[derive(Debug, Default)]
pub(super) struct OpenMembers {
    /// Event id → one mask per chunk (bit = slot).
    masks: Mutex<HashMap<String, Vec<u64>>>,
    /// Shared while a member's outcome is written, exclusive while members are purged.
    purge: RwLock<()>,
}

impl OpenMembers {
    fn masks(&self) -> MutexGuard<'_, HashMap<String, Vec<u64>>> {
        self.masks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.purge.read().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, event_id: &str, chunk: u32, mask: u64) {
        let mut masks = self.masks();
        let chunks = masks.entry(event_id.to_owned()).or_default();
        let chunk = chunk as usize;
        if chunks.len() <= chunk {
            chunks.resize(chunk + 1, 0);
        }
        chunks[chunk] = mask;
    }

    fn is_open(&self, event_id: &str, member: Member) -> bool {
        self.masks()
            .get(event_id)
            .and_then(|chunks| chunks.get(member.chunk as usize))
            .is_some_and(|mask| mask & (1 << member.slot) != 0)
    }

    /// Clears the member's bit; returns whether its group has no open member left.
    fn close(&self, event_id: &str, member: Member) -> bool {
        let mut masks = self.masks();
        let Some(chunks) = masks.get_mut(event_id) else {
            return false;
        };
        let Some(mask) = chunks.get_mut(member.chunk as usize) else {
            return false;
        };
        let was_open = *mask != 0;
        *mask &= !(1 << member.slot);
        let emptied = was_open && *mask == 0;
        if chunks.iter().all(|m| *m == 0) {
            masks.remove(event_id);
        }
        emptied
    }

    /// How many members are open.
    pub(super) fn count(&self) -> usize {
        self.masks()
            .values()
            .flatten()
            .map(|m| m.count_ones() as usize)
            .sum()
    }
}

/// One group record, built and not yet written.
struct Built {
    key: Vec<u8>,
    record: Vec<u8>,
    event_id: String,
    chunk: u32,
    /// Its members, all open.
    mask: u64,
}

/// Group records built for some jobs (see [`Store::group`]).
pub(super) struct Grouped {
    records: Vec<Built>,
}

impl Grouped {
    /// The records to write, as (key, value).
    pub(super) fn writes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.records
            .iter()
            .map(|b| (b.key.as_slice(), b.record.as_slice()))
    }
}

impl Store {
    /// Sorts `jobs` into group records: each job that can live in one (a fresh job of an event)
    /// gets its [`Member`] place; the others keep `member: None` and need records of their own.
    /// Jobs of one event must be next to each other. Nothing is written: write
    /// [`Grouped::writes`], then [`Store::open_groups`].
    pub(super) fn group(jobs: &mut [Job]) -> Grouped {
        let mut records = Vec::new();
        let mut start = 0;
        while start < jobs.len() {
            let event_id = jobs[start].event_id.clone();
            let end = start
                + jobs[start..]
                    .iter()
                    .take_while(|j| j.event_id == event_id)
                    .count();
            let (created_ms, due_ms) = (jobs[start].created_ms, jobs[start].due_ms);
            let mut chunk = 0u32;
            let mut members = Vec::new();
            for job in &mut jobs[start..end] {
                let Some(stored) = Stored::of(job, created_ms, due_ms) else {
                    continue;
                };
                job.member = Some(Member {
                    chunk,
                    slot: members.len() as u8,
                });
                members.push(Some(stored));
                if members.len() == GROUP_SIZE {
                    records.push(group_record(&event_id, chunk, created_ms, due_ms, members));
                    members = Vec::new();
                    chunk += 1;
                }
            }
            if !members.is_empty() {
                records.push(group_record(&event_id, chunk, created_ms, due_ms, members));
            }
            start = end;
        }
        Grouped { records }
    }

    /// Marks the members of written group records open.
    pub(super) fn open_groups(&self, grouped: &Grouped) {
        for built in &grouped.records {
            self.inner
                .open
                .set(&built.event_id, built.chunk, built.mask);
        }
    }

    /// Whether `job` is a member still waiting for its outcome.
    pub(super) fn member_open(&self, job: &Job, member: Member) -> bool {
        self.inner.open.is_open(&job.event_id, member)
    }

    /// Holds off purges while a member's outcome is written.
    pub(super) fn member_guard(&self) -> RwLockReadGuard<'_, ()> {
        self.inner.open.shared()
    }

    /// The member has its outcome stored: clears its bit and, if it was its group's last
    /// open one, removes the group record.
    pub(super) fn close_member(&self, job: &Job, member: Member) -> Result<(), StoreError> {
        if self.inner.open.close(&job.event_id, member) {
            self.inner
                .queue
                .remove(group_key(&job.event_id, member.chunk))?;
        }
        Ok(())
    }

    /// The index row every job gets once it has an outcome.
    pub(super) fn index_row(job: &Job) -> (Vec<u8>, Vec<u8>) {
        (
            key(INDEX, &[job.subscription_id.as_bytes(), job.id.as_bytes()]),
            encode(&JobSummary::from(job)),
        )
    }

    /// The open members of the groups of `event_id`.
    pub(super) fn open_members_of(&self, event_id: &str) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        for entry in self.inner.queue.scan_prefix(group_prefix(event_id)) {
            let (k, v) = entry?;
            let Some((event, chunk)) = parse_group_key(&k) else {
                continue;
            };
            let group: Group = decode("groups", &v)?;
            for (slot, stored) in group.members.iter().enumerate() {
                let member = Member {
                    chunk,
                    slot: slot as u8,
                };
                if let Some(stored) = stored
                    && self.inner.open.is_open(&event, member)
                {
                    out.push(stored.job(&event, &group, member));
                }
            }
        }
        Ok(out)
    }

    /// The open member with id `job_id`, if there is one.
    pub(super) fn open_member(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let Ok(id) = job_id.parse::<JobId>() else {
            return Ok(None);
        };
        if !self.inner.open.masks().contains_key(id.event()) {
            return Ok(None);
        }
        Ok(self
            .open_members_of(id.event())?
            .into_iter()
            .find(|job| job.id == job_id))
    }

    /// Open members of `subscription_id` in the newest [`LISTED_GROUPS`] group records,
    /// newest first.
    pub(super) fn open_members_of_subscription(
        &self,
        subscription_id: &str,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        for entry in self
            .inner
            .queue
            .scan_prefix([GROUP])
            .rev()
            .take(LISTED_GROUPS)
        {
            let (k, v) = entry?;
            let Some((event, chunk)) = parse_group_key(&k) else {
                continue;
            };
            let group: Group = decode("groups", &v)?;
            for (slot, stored) in group.members.iter().enumerate().rev() {
                let member = Member {
                    chunk,
                    slot: slot as u8,
                };
                if let Some(stored) = stored
                    && stored.subscription == subscription_id
                    && self.inner.open.is_open(&event, member)
                {
                    out.push(stored.job(&event, &group, member));
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// At start-up: rebuilds which members are open from the group records (a member is open
    /// unless it has an index row or a job record), removes groups with none, and returns the
    /// open ones.
    pub(super) fn reopen_groups(&self) -> Result<Vec<Job>, StoreError> {
        let queue = &self.inner.queue;
        let mut open = Vec::new();
        let mut settled = Vec::new();
        for entry in queue.scan_prefix([GROUP]) {
            let (k, v) = entry?;
            let Some((event, chunk)) = parse_group_key(&k) else {
                continue;
            };
            let group: Group = decode("groups", &v)?;
            let mut mask = 0u64;
            for (slot, stored) in group.members.iter().enumerate() {
                let Some(stored) = stored else { continue };
                let id = stored.job_id(&event);
                let has_outcome = queue
                    .contains_key(key(INDEX, &[stored.subscription.as_bytes(), id.as_bytes()]))?
                    || queue.contains_key(key(JOB, &[id.as_bytes()]))?;
                if has_outcome {
                    continue;
                }
                let member = Member {
                    chunk,
                    slot: slot as u8,
                };
                mask |= 1 << slot;
                open.push(stored.job(&event, &group, member));
            }
            if mask == 0 {
                settled.push(k);
            } else {
                self.inner.open.set(&event, chunk, mask);
            }
        }
        for k in settled {
            queue.remove(k)?;
        }
        Ok(open)
    }

    /// A member is delivered (or its plugin's deliveries are stored elsewhere): its attempt and
    /// index row, then its bit. Nothing for a member purged meanwhile.
    pub(super) fn complete_member(
        &self,
        job: &Job,
        member: Member,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        let _purge = self.member_guard();
        if !self.member_open(job, member) {
            return Ok(());
        }
        let queue = &self.inner.queue;
        queue.insert(self.attempt_key(&job.id)?, encode(attempt))?;
        let (row, summary) = Self::index_row(job);
        queue.insert(row, summary)?;
        self.close_member(job, member)
    }

    /// A member's attempt failed: it becomes an ordinary job (job record, attempt, index row),
    /// then leaves its group. Nothing for a member purged meanwhile.
    pub(super) fn retry_member(
        &self,
        job: &Job,
        member: Member,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        let _purge = self.member_guard();
        if !self.member_open(job, member) {
            return Ok(());
        }
        let queue = &self.inner.queue;
        queue.insert(key(JOB, &[job.id.as_bytes()]), encode(job))?;
        queue.insert(self.attempt_key(&job.id)?, encode(attempt))?;
        let (row, summary) = Self::index_row(job);
        queue.insert(row, summary)?;
        self.close_member(job, member)
    }

    /// A member is given up: its dead letter, attempt and index row in one batch, then its bit.
    pub(super) fn bury_member(
        &self,
        letter: DeadLetter,
        member: Member,
        attempt: Option<&Attempt>,
    ) -> Result<(), StoreError> {
        let _purge = self.member_guard();
        if !self.member_open(&letter.job, member) {
            return Ok(());
        }
        let mut batch = Batch::default();
        if let Some(attempt) = attempt {
            batch.insert(self.attempt_key(&letter.job.id)?, encode(attempt));
        }
        let (row, summary) = Self::index_row(&letter.job);
        batch.insert(row, summary);
        batch.insert(key(DEAD, &[letter.job.id.as_bytes()]), encode(&letter));
        self.inner.queue.apply_batch(batch)?;
        self.close_member(&letter.job, member)
    }

    /// Drops the open members of subscriptions whose id starts with `prefix` from their
    /// groups (rewriting or removing each record); returns how many went. Members that have
    /// an outcome are purged through their index rows.
    pub(super) fn purge_members(&self, prefix: &str) -> Result<usize, StoreError> {
        let _exclusive = self
            .inner
            .open
            .purge
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let queue = &self.inner.queue;
        let mut purged = 0;
        for entry in queue.scan_prefix([GROUP]) {
            let (k, v) = entry?;
            let Some((event, chunk)) = parse_group_key(&k) else {
                continue;
            };
            let mut group: Group = decode("groups", &v)?;
            let mut changed = false;
            for (slot, stored) in group.members.iter_mut().enumerate() {
                if stored
                    .as_ref()
                    .is_some_and(|s| s.subscription.starts_with(prefix))
                {
                    *stored = None;
                    changed = true;
                    purged += 1;
                    let member = Member {
                        chunk,
                        slot: slot as u8,
                    };
                    self.inner.open.close(&event, member);
                }
            }
            if !changed {
                continue;
            }
            let open_left = group.members.iter().enumerate().any(|(slot, s)| {
                s.is_some()
                    && self.inner.open.is_open(
                        &event,
                        Member {
                            chunk,
                            slot: slot as u8,
                        },
                    )
            });
            if open_left {
                queue.insert(k, encode(&group))?;
            } else {
                queue.remove(k)?;
            }
        }
        Ok(purged)
    }

    /// Whether any group record of `event_id` remains (its event must stay stored).
    pub(super) fn has_groups(&self, event_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .queue
            .scan_prefix(group_prefix(event_id))
            .next()
            .transpose()?
            .is_some())
    }
}

fn group_record(
    event_id: &str,
    chunk: u32,
    created_ms: u64,
    due_ms: u64,
    mut members: Vec<Option<Stored>>,
) -> Built {
    let mask = if members.len() == 64 {
        u64::MAX
    } else {
        (1u64 << members.len()) - 1
    };
    // Headers all members share are kept once. (A member whose own list is empty gets the
    // shared one back, so sharing is only done when every member has the same non-empty list.)
    let first = members.iter().flatten().next().map(|m| m.headers.clone());
    let shared = match first {
        Some(first)
            if !first.is_empty() && members.iter().flatten().all(|m| m.headers == first) =>
        {
            for member in members.iter_mut().flatten() {
                member.headers = Vec::new();
            }
            first
        }
        _ => Vec::new(),
    };
    let group = Group {
        created_ms,
        due_ms,
        headers: shared,
        members,
    };
    Built {
        key: group_key(event_id, chunk),
        record: encode(&group),
        event_id: event_id.to_owned(),
        chunk,
        mask,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::store::DedupKey;

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            source: "odoo".into(),
            model: "sale.order".into(),
            action: "write".into(),
            record_id: Some(1),
            received_at_ms: 10,
            seq: 0,
            payload: "{}".into(),
            headers: vec![],
        }
    }

    fn job(event: &str, sub: &str) -> Job {
        Job {
            id: JobId::delivery(event, sub, 0),
            kind: JobKind::Deliver,
            event_id: event.into(),
            subscription_id: sub.into(),
            destination: "d".into(),
            content_type: "application/json".into(),
            body: Vec::new(),
            envelope: Some(Format::Json),
            headers: vec![],
            attempts: 0,
            created_ms: 10,
            due_ms: 10,
            last_error: None,
            member: None,
            order: None,
        }
    }

    fn attempt(status: u16) -> Attempt {
        Attempt {
            at_ms: 20,
            status: Some(status),
            latency_ms: 1,
            excerpt: String::new(),
            error: (status >= 300).then(|| format!("http_status: {status}")),
        }
    }

    /// Accepts `event_id` with one job per subscription; returns the jobs as scheduled.
    fn accept(store: &Store, event_id: &str, subs: &[&str]) -> Vec<Job> {
        let mut jobs: Vec<Job> = subs.iter().map(|s| job(event_id, s)).collect();
        let dedup = DedupKey::body("odoo", event_id.as_bytes(), 60_000);
        store
            .accept_planned(&event(event_id), &dedup, &mut jobs)
            .expect("accept");
        jobs
    }

    fn records(store: &Store, prefix: u8) -> usize {
        store.inner.queue.scan_prefix([prefix]).count()
    }

    fn ids(jobs: &[Job]) -> Vec<&str> {
        jobs.iter().map(|j| j.id.as_str()).collect()
    }

    #[test]
    fn an_events_jobs_are_one_record_until_each_has_an_outcome() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let jobs = accept(&store, "evt_1", &["a", "b", "c"]);
        assert!(jobs.iter().all(|j| j.member.is_some()), "{jobs:?}");
        assert_eq!(records(&store, GROUP), 1, "one group record");
        assert_eq!(
            records(&store, JOB) + records(&store, INDEX),
            0,
            "no job records"
        );
        assert_eq!(store.counts().queued, 3);
        assert_eq!(store.job(&jobs[1].id).expect("read"), Some(jobs[1].clone()));
        assert!(store.job_summary("b", &jobs[1].id).expect("read").is_some());
        assert_eq!(store.journey("evt_1").expect("journey").queued.len(), 3);

        store.complete(&jobs[0], &attempt(200)).expect("complete");
        let retried = store
            .retry_later(&jobs[1], &attempt(503), 99)
            .expect("retry");
        assert_eq!((retried.member, retried.attempts), (None, 1));
        assert_eq!(store.job(&jobs[0].id).expect("read"), None, "delivered");
        assert_eq!(
            store.job(&jobs[1].id).expect("read"),
            Some(retried.clone()),
            "an ordinary job now"
        );
        assert_eq!(records(&store, GROUP), 1, "one member still open");
        store
            .bury(&jobs[2], Some(&attempt(400)), "gave up", 30)
            .expect("bury");
        assert_eq!(
            records(&store, GROUP),
            0,
            "the last outcome removes the group"
        );
        let letter = store.dead_letter(&jobs[2].id).expect("read").expect("dead");
        assert_eq!((letter.job.attempts, letter.job.member), (1, None));
        // Every job is listed for its subscription with its attempts.
        for (sub, job) in [("a", &jobs[0]), ("b", &jobs[1]), ("c", &jobs[2])] {
            assert_eq!(
                ids(&[store.job(&job.id).ok().flatten().unwrap_or(job.clone())]),
                [job.id.as_str()]
            );
            let listed = store.jobs_of_subscription(sub, 10).expect("list");
            assert_eq!(listed.len(), 1, "{sub}");
            assert_eq!(store.attempts(&job.id).expect("attempts").len(), 1, "{sub}");
        }
        // A second outcome of a settled member writes nothing.
        store.complete(&jobs[0], &attempt(200)).expect("again");
        assert_eq!(store.attempts(&jobs[0].id).expect("attempts").len(), 1);
    }

    #[test]
    fn reopening_brings_back_exactly_the_members_without_an_outcome() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs = {
            let store = Store::open(dir.path()).expect("open");
            let jobs = accept(&store, "evt_1", &["a", "b", "c"]);
            store.complete(&jobs[0], &attempt(200)).expect("complete");
            store
                .retry_later(&jobs[1], &attempt(503), 99)
                .expect("retry");
            store.flush().expect("flush");
            jobs
        };
        let store = Store::open(dir.path()).expect("reopen");
        let queued: Vec<Job> = store.queued_jobs().collect::<Result<_, _>>().expect("scan");
        assert_eq!(ids(&queued), [jobs[1].id.as_str(), jobs[2].id.as_str()]);
        assert_eq!(queued[0].member, None, "the retried one has its own record");
        assert_eq!(queued[1], jobs[2], "the open member, in its place");
        store.complete(&queued[1], &attempt(200)).expect("complete");
        assert_eq!(records(&store, GROUP), 0);
        assert_eq!(store.counts().queued, 1);
    }

    #[test]
    fn a_group_whose_outcomes_were_all_written_goes_at_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let jobs = accept(&store, "evt_1", &["a"]);
            // As if the process died between the outcome and the removal of the group.
            let (row, summary) = Store::index_row(&jobs[0]);
            store.inner.queue.insert(row, summary).expect("index");
            store.flush().expect("flush");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.queued_jobs().count(), 0);
        assert_eq!(records(&store, GROUP), 0);
    }

    #[test]
    fn purged_members_are_not_brought_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let jobs = accept(&store, "evt_1", &["app.x.a", "app.y.b", "app.x.c"]);
        store.complete(&jobs[2], &attempt(200)).expect("complete");
        let purged = store.purge_subscriptions("app.x.").expect("purge");
        assert!(
            purged >= 3,
            "the open member, the index row and the attempt: {purged}"
        );
        // Attempts that were running when the app went write nothing.
        store.complete(&jobs[0], &attempt(200)).expect("complete");
        store
            .retry_later(&jobs[0], &attempt(503), 9)
            .expect("retry");
        store.bury(&jobs[0], None, "gave up", 9).expect("bury");
        assert_eq!(store.job(&jobs[0].id).expect("read"), None);
        assert_eq!(store.dead_letter(&jobs[0].id).expect("read"), None);
        assert!(
            store
                .jobs_of_subscription("app.x.a", 10)
                .expect("list")
                .is_empty()
        );
        assert_eq!(store.job(&jobs[1].id).expect("read"), Some(jobs[1].clone()));
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let queued: Vec<Job> = store.queued_jobs().collect::<Result<_, _>>().expect("scan");
        assert_eq!(ids(&queued), [jobs[1].id.as_str()]);
    }

    #[test]
    fn a_large_fan_out_takes_one_record_per_group_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let subs: Vec<String> = (0..150).map(|i| format!("s{i}")).collect();
        let mut jobs: Vec<Job> = subs.iter().map(|s| job("evt_1", s)).collect();
        // One job that cannot live in a group (already attempted) keeps its own record.
        jobs[7].attempts = 1;
        store.enqueue_new(&mut jobs, &[]).expect("enqueue");
        assert_eq!(
            records(&store, GROUP),
            3,
            "150 jobs in groups of {GROUP_SIZE}"
        );
        assert_eq!(records(&store, JOB), 1);
        assert_eq!(jobs[7].member, None);
        assert_eq!(jobs[149].member, Some(Member { chunk: 2, slot: 20 }));
        assert_eq!(store.counts().queued, 150);
        let listed = store.jobs_of_subscription("s149", 10).expect("list");
        assert_eq!(listed.len(), 1);
        for job in &jobs {
            store.complete(job, &attempt(200)).expect("complete");
        }
        assert_eq!(records(&store, GROUP) + records(&store, JOB), 0);
        assert_eq!(store.counts().queued, 0);
    }

    #[test]
    fn an_event_with_open_members_outlives_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        // Event ids carry their time: this one is from 1970, far past any window.
        let jobs = accept(&store, "evt_000000000001aaaa", &["a", "b"]);
        let retention = crate::store::Retention {
            delivered: std::time::Duration::from_secs(1),
            dead_letters: std::time::Duration::from_secs(1),
            dedup_window: std::time::Duration::from_secs(1),
        };
        let now = 10_000_000;
        store.complete(&jobs[0], &attempt(200)).expect("complete");
        store.prune(now, &retention, 1000).expect("prune");
        assert!(store.event(&jobs[1].event_id).expect("read").is_some());
        store.complete(&jobs[1], &attempt(200)).expect("complete");
        let pruned = store.prune(now, &retention, 1000).expect("prune");
        assert_eq!(pruned.events, 1, "{pruned:?}");
        assert!(
            store
                .jobs_of_subscription("a", 10)
                .expect("list")
                .is_empty()
        );
    }

    #[test]
    fn headers_every_member_shares_are_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let traced = |sub: &str| Job {
            headers: vec![("traceparent".into(), "00-aa-bb-01".into())],
            ..job("evt_1", sub)
        };
        {
            let store = Store::open(dir.path()).expect("open");
            let mut jobs = vec![traced("a"), traced("b"), traced("c")];
            store.enqueue_new(&mut jobs, &[]).expect("enqueue");
            let (_, record) = store
                .inner
                .queue
                .scan_prefix([GROUP])
                .next()
                .expect("a group")
                .expect("read");
            let text = String::from_utf8_lossy(&record).into_owned();
            assert_eq!(text.matches("traceparent").count(), 1, "{text}");
            assert_eq!(store.job(&jobs[2].id).expect("read"), Some(jobs[2].clone()));
            // Members with different headers keep their own.
            let mut mixed = vec![
                traced("x"),
                Job {
                    headers: vec![],
                    ..job("evt_3", "y")
                },
            ];
            mixed[0].event_id = "evt_3".into();
            mixed[0].id = JobId::delivery("evt_3", "x", 0);
            store.enqueue_new(&mut mixed, &[]).expect("enqueue");
            assert_eq!(
                store.job(&mixed[0].id).expect("read"),
                Some(mixed[0].clone())
            );
            assert_eq!(
                store.job(&mixed[1].id).expect("read"),
                Some(mixed[1].clone())
            );
            store.flush().expect("flush");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let queued: Vec<Job> = store.queued_jobs().collect::<Result<_, _>>().expect("scan");
        assert_eq!(queued.len(), 5);
        assert!(
            queued
                .iter()
                .all(|j| (j.subscription_id == "y") == j.headers.is_empty()),
            "{queued:?}"
        );
    }

    #[test]
    fn group_keys_round_trip() {
        for (event, chunk) in [("evt_1", 0), ("evt_0190abc", 70_000)] {
            assert_eq!(
                parse_group_key(&group_key(event, chunk)),
                Some((event.to_owned(), chunk))
            );
        }
        assert_eq!(parse_group_key(b"g"), None);
    }
}
