//! The durable side of the work queue: the fan-out backlog, jobs, the attempt log, dead
//! letters and the per-subscription delivery index, all in one sled tree.
//!
//! One tree, with a one-byte prefix per kind of record, so that every change that must be
//! atomic (queue an event's jobs and clear its backlog entry; bury a job; replace plugin
//! calls by their deliveries) is a single-tree atomic batch, far cheaper than a sled
//! transaction. A batch still takes sled's process-wide write lock, which stalls every other
//! reader and writer, so what runs once per event or per delivery (an ingested event's jobs,
//! finishing or retrying a job) is plain writes in an order whose crash outcome is a repeated
//! delivery, never a lost one.
//! Batches are bounded: fanning one event out to many subscriptions is several batches, the
//! backlog entry cleared by the last one (job ids are deterministic, so a replayed fan-out
//! rewrites the same jobs).
//!
//! Which job runs when is not stored here: the sled engine's in-memory schedule holds the
//! order, and start-up rebuilds it from the jobs on disk. So taking a job writes nothing,
//! and a job whose worker died with the process is simply due again at the next start.

use super::counted::Batch;
use super::job::{Attempt, DeadLetter, Job, JobSummary};
use super::{Store, StoreError, decode, encode};

/// What one event made: see [`Store::journey`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journey {
    /// Its jobs still queued.
    pub queued: Vec<Job>,
    /// Its dead letters.
    pub dead: Vec<DeadLetter>,
    /// Every attempt of its jobs, with the job id.
    pub attempts: Vec<(String, Attempt)>,
    /// Its deliveries that were made and left the queue (from the delivery index: what each
    /// sent).
    pub delivered: Vec<JobSummary>,
}

/// Largest number of writes in one atomic batch.
pub const MAX_BATCH: usize = 512;

pub(super) const PENDING: u8 = b'p';
pub(super) const JOB: u8 = b'j';
pub(super) const INDEX: u8 = b'x';
pub(super) const DEAD: u8 = b'd';
pub(super) const ATTEMPT: u8 = b'a';

/// `prefix`, then the parts separated by a zero byte.
pub(super) fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    key.push(prefix);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part);
    }
    key
}

fn job_key(id: &str) -> Vec<u8> {
    key(JOB, &[id.as_bytes()])
}

fn dead_key(id: &str) -> Vec<u8> {
    key(DEAD, &[id.as_bytes()])
}

fn index_key(subscription_id: &str, job_id: &str) -> Vec<u8> {
    key(INDEX, &[subscription_id.as_bytes(), job_id.as_bytes()])
}

/// The backlog key of sequence number `seq`.
pub(super) fn pending_key(seq: u64) -> Vec<u8> {
    [&[PENDING][..], &seq.to_be_bytes()].concat()
}

impl Store {
    /// Queues `jobs` (each due at its `due_ms`), writes `dead` letters (plugin rejections), and
    /// removes the events' backlog entries `handled` in the last batch: an event counts as
    /// handled only once its jobs are stored (a crash before that fans it out again, rewriting
    /// the same job ids).
    pub fn enqueue(
        &self,
        jobs: &[Job],
        dead: &[DeadLetter],
        handled: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let last = handled.iter().map(|k| (k.clone(), None)).collect();
        self.write_jobs(jobs, dead, last)
    }

    /// Queues the deliveries plugin calls made and, in the last batch, finishes the calls' own
    /// jobs (`finished`, each with its attempt).
    pub fn enqueue_replacing(
        &self,
        jobs: &[Job],
        dead: &[DeadLetter],
        finished: &[(Job, Attempt)],
    ) -> Result<(), StoreError> {
        // Finished calls still in their event's group: their index row instead of removing
        // a job record, and their bit once written; none of a member purged meanwhile.
        let _purge = self.member_guard();
        let mut last = Vec::with_capacity(finished.len() * 2);
        let mut members = Vec::new();
        for (job, attempt) in finished {
            match job.member {
                Some(member) if !self.member_open(job, member) => continue,
                Some(member) => {
                    let (row, summary) = Self::index_row(job);
                    last.push((row, Some(summary)));
                    members.push((job, member));
                }
                None => last.push((job_key(&job.id), None)),
            }
            last.push((self.attempt_key(&job.id)?, Some(encode(attempt))));
        }
        self.write_jobs(jobs, dead, last)?;
        for (job, member) in members {
            self.close_member(job, member)?;
        }
        Ok(())
    }

    /// Queues the jobs of fanned-out events and removes their backlog entries `handled` in
    /// the last batch. Each event's fresh jobs go into its group records (see `groups.rs`):
    /// one write per [`super::GROUP_SIZE`] jobs, not two per job. `jobs` get their
    /// [`super::Member`] places; those of one event must be next to each other.
    pub fn enqueue_new(&self, jobs: &mut [Job], handled: &[Vec<u8>]) -> Result<(), StoreError> {
        let grouped = Self::group(jobs);
        let own: Vec<Job> = jobs
            .iter()
            .filter(|j| j.member.is_none())
            .cloned()
            .collect();
        // The groups first, then the jobs with records of their own, the backlog entries
        // removed in the last batch: a crash before that fans the events out again, rewriting
        // the same keys.
        let groups: Vec<_> = grouped.writes().collect();
        for chunk in groups.chunks(MAX_BATCH) {
            let mut batch = Batch::default();
            for (k, v) in chunk {
                batch.insert(*k, *v);
            }
            self.inner.queue.apply_batch(batch)?;
        }
        let last = handled.iter().map(|k| (k.clone(), None)).collect();
        self.write_jobs(&own, &[], last)?;
        self.open_groups(&grouped);
        Ok(())
    }

    /// Writes jobs and dead letters (with their index rows) in batches of at most
    /// [`MAX_BATCH`] writes; the writes in `last` (key, value or `None` to remove) join the
    /// final batch, so they happen exactly when the last job is stored.
    fn write_jobs(
        &self,
        jobs: &[Job],
        dead: &[DeadLetter],
        last: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let queue = &self.inner.queue;
        let records = jobs
            .iter()
            .map(|job| (job_key(&job.id), encode(job), job))
            .chain(
                dead.iter()
                    .map(|d| (dead_key(&d.job.id), encode(d), &d.job)),
            );
        let mut batch = Batch::default();
        let mut writes = 0;
        for (key, record, job) in records {
            if writes + 2 > MAX_BATCH {
                queue.apply_batch(std::mem::take(&mut batch))?;
                writes = 0;
            }
            // New keys (a job id is written once, but again after a crash: then the live-data
            // count overstates until it is next counted from scratch).
            batch.insert_new(key, record);
            batch.insert_new(
                index_key(&job.subscription_id, &job.id),
                encode(&JobSummary::from(job)),
            );
            writes += 2;
        }
        for (key, value) in last {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        queue.apply_batch(batch)?;
        Ok(())
    }

    /// Writes jobs one by one, each before its index row, without a batch: for ingest, whose
    /// events are not acknowledged until later (a crash in between leaves jobs of an
    /// unacknowledged event, delivered anyway). sled's batches take a process-wide write lock
    /// that stalls every other reader and writer, so the per-event path avoids them.
    pub(super) fn insert_jobs(&self, jobs: &[Job]) -> Result<(), StoreError> {
        let queue = &self.inner.queue;
        for job in jobs.iter().filter(|j| j.member.is_none()) {
            queue.insert(job_key(&job.id), encode(job))?;
            queue.insert(
                index_key(&job.subscription_id, &job.id),
                encode(&JobSummary::from(job)),
            )?;
        }
        Ok(())
    }

    /// Every queued job: those with their own record in key order, then the open members of
    /// group records (start-up rebuilds the schedule from it, and which members are open).
    pub fn queued_jobs(&self) -> impl Iterator<Item = Result<Job, StoreError>> + '_ {
        let members = match self.reopen_groups() {
            Ok(members) => members.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        };
        self.inner
            .queue
            .scan_prefix([JOB])
            .map(|entry| decode("jobs", &entry?.1))
            .chain(members)
    }

    /// The job was done (delivered, or its plugin's deliveries queued): log the attempt and
    /// remove it.
    ///
    /// Two writes, not a batch (a sled batch stalls every other writer and reader, and this
    /// runs once per delivery): the attempt first, so a crash in between leaves the job queued
    /// and delivered again (at least once, same `webhook-id`), never a job gone unlogged.
    pub fn complete(&self, job: &Job, attempt: &Attempt) -> Result<(), StoreError> {
        if let Some(member) = job.member {
            return self.complete_member(job, member, attempt);
        }
        let queue = &self.inner.queue;
        queue.insert(self.attempt_key(&job.id)?, encode(attempt))?;
        queue.remove(job_key(&job.id))?;
        Ok(())
    }

    /// The attempt failed and the job is retried at `due_ms`; returns the job as stored.
    pub fn retry_later(
        &self,
        job: &Job,
        attempt: &Attempt,
        due_ms: u64,
    ) -> Result<Job, StoreError> {
        let mut job = job.clone();
        job.attempts += 1;
        job.last_error = attempt.error.clone();
        job.due_ms = due_ms;
        if let Some(member) = job.member.take() {
            self.retry_member(&job, member, attempt)?;
            return Ok(job);
        }
        // Two writes, not a batch (see `complete`): a crash in between leaves the attempt
        // logged and the job as it was, tried again. The job is only updated if it is still
        // stored: one purged meanwhile (its app deleted) stays gone.
        let queue = &self.inner.queue;
        queue.insert(self.attempt_key(&job.id)?, encode(attempt))?;
        let record = encode(&job);
        queue.update_and_fetch(job_key(&job.id), |old| old.map(|_| record.clone()))?;
        Ok(job)
    }

    /// Gives the job up: it moves to the dead-letter store with `reason`, atomically.
    pub fn bury(
        &self,
        job: &Job,
        attempt: Option<&Attempt>,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if let Some(member) = job.member {
            let mut job = job.clone();
            job.member = None;
            if attempt.is_some() {
                job.attempts += 1;
            }
            let letter = DeadLetter {
                job,
                reason: reason.to_owned(),
                at_ms: now_ms,
            };
            return self.bury_member(letter, member, attempt);
        }
        // A job purged while its attempt ran (its app deleted) is not brought back as a dead
        // letter.
        if !self.inner.queue.contains_key(job_key(&job.id))? {
            return Ok(());
        }
        let mut job = job.clone();
        let mut batch = Batch::default();
        if let Some(attempt) = attempt {
            job.attempts += 1;
            batch.insert(self.attempt_key(&job.id)?, encode(attempt));
        }
        batch.remove(job_key(&job.id));
        let id = job.id.clone();
        let letter = DeadLetter {
            job,
            reason: reason.to_owned(),
            at_ms: now_ms,
        };
        batch.insert(dead_key(&id), encode(&letter));
        self.inner.queue.apply_batch(batch)?;
        Ok(())
    }

    /// Moves a dead letter back into the queue, due at `due_ms`, with a fresh attempt count.
    /// Returns the queued job, or `None` when there is no such dead letter.
    ///
    /// The job is written before the dead letter is removed (by compare-and-swap, so only one
    /// of two concurrent replays wins): a crash in between leaves both, never neither.
    pub fn replay(&self, job_id: &str, due_ms: u64) -> Result<Option<Job>, StoreError> {
        let queue = &self.inner.queue;
        let dkey = dead_key(job_id);
        let Some(record) = queue.get(&dkey)? else {
            return Ok(None);
        };
        let mut job = decode::<DeadLetter>("dead", &record)?.job;
        job.attempts = 0;
        job.due_ms = due_ms;
        // An ordered job replayed goes behind its key's newer jobs.
        if let Some(order) = &mut job.order {
            order.seq = crate::time::sequence();
            order.held = None;
        }
        queue.insert(job_key(job_id), encode(&job))?;
        match queue.compare_and_swap(&dkey, Some(&record[..]), None)? {
            Ok(()) => Ok(Some(job)),
            // Replayed concurrently by someone else: theirs stands.
            Err(_) => Ok(None),
        }
    }

    /// Attempts are numbered by a database-wide sequence, not by the job's attempt count: a
    /// replayed job starts counting again, and its earlier attempts must stay in the log.
    pub(super) fn attempt_key(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        let seq = self.inner.db.generate_id()?.to_be_bytes();
        Ok(key(ATTEMPT, &[id.as_bytes(), &seq]))
    }

    /// Dead letters, oldest first by id.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner
            .queue
            .scan_prefix([DEAD])
            .take(limit)
            .map(|e| decode("dead", &e?.1))
            .collect()
    }

    /// The attempts of one job, in order.
    pub fn attempts(&self, job_id: &str) -> Result<Vec<Attempt>, StoreError> {
        let prefix = key(ATTEMPT, &[job_id.as_bytes(), b""]);
        self.inner
            .queue
            .scan_prefix(prefix)
            .map(|e| decode("attempts", &e?.1))
            .collect()
    }

    /// Everything one event made, for the operator: its queued jobs, its dead letters, and
    /// every attempt of each of its jobs (job id, attempt), in key order. Job ids begin with
    /// the event id and a dot, so each is one prefix scan.
    pub fn journey(&self, event_id: &str) -> Result<Journey, StoreError> {
        let queue = &self.inner.queue;
        let prefix = |kind: u8| [&[kind][..], event_id.as_bytes(), b"."].concat();
        let mut queued: Vec<Job> = queue
            .scan_prefix(prefix(JOB))
            .map(|e| decode("jobs", &e?.1))
            .collect::<Result<_, _>>()?;
        queued.extend(self.open_members_of(event_id)?);
        let dead: Vec<DeadLetter> = queue
            .scan_prefix(prefix(DEAD))
            .map(|e| decode("dead", &e?.1))
            .collect::<Result<_, _>>()?;
        let mut attempts = Vec::new();
        for entry in queue.scan_prefix(prefix(ATTEMPT)) {
            let (key, value) = entry?;
            // `a` + job id + NUL + sequence number.
            let id = key[1..].split(|b| *b == 0).next().unwrap_or_default();
            attempts.push((
                String::from_utf8_lossy(id).into_owned(),
                decode("attempts", &value)?,
            ));
        }
        // Every job that ran has attempts; those neither queued nor dead were delivered.
        let mut delivered: Vec<JobSummary> = Vec::new();
        for (id, _) in &attempts {
            let settled = queued.iter().any(|j| &j.id == id)
                || dead.iter().any(|d| &d.job.id == id)
                || delivered.iter().any(|d| &d.id == id);
            let Ok(parsed) = id.parse::<super::JobId>() else {
                continue;
            };
            if settled || parsed.part() == super::JobPart::Transform {
                continue;
            }
            if let Some(row) = queue.get(index_key(parsed.subscription(), id))? {
                delivered.push(decode("deliveries_by_subscription", &row)?);
            }
        }
        Ok(Journey {
            queued,
            dead,
            attempts,
            delivered,
        })
    }

    /// A queued job by id: its own record, or its place in its event's group.
    pub fn job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        match self.inner.queue.get(job_key(job_id))? {
            Some(record) => decode("jobs", &record).map(Some),
            None => self.open_member(job_id),
        }
    }

    /// A dead letter by job id.
    pub fn dead_letter(&self, job_id: &str) -> Result<Option<DeadLetter>, StoreError> {
        self.inner
            .queue
            .get(dead_key(job_id))?
            .map(|b| decode("dead", &b))
            .transpose()
    }

    /// Up to `limit` dead letters whose subscription id starts with `prefix`, oldest first by id.
    pub fn dead_letters_of(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        for entry in self.inner.queue.scan_prefix([DEAD]) {
            let letter: DeadLetter = decode("dead", &entry?.1)?;
            if letter.job.subscription_id.starts_with(prefix) {
                out.push(letter);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` jobs ever queued for `subscription_id`, newest first (job ids begin with
    /// the time-ordered event id): those not attempted yet (from the newest group records),
    /// then those with an outcome.
    pub fn jobs_of_subscription(
        &self,
        subscription_id: &str,
        limit: usize,
    ) -> Result<Vec<JobSummary>, StoreError> {
        let mut out: Vec<JobSummary> = self
            .open_members_of_subscription(subscription_id, limit)?
            .iter()
            .map(JobSummary::from)
            .collect();
        let prefix = key(INDEX, &[subscription_id.as_bytes(), b""]);
        for entry in self
            .inner
            .queue
            .scan_prefix(prefix)
            .rev()
            .take(limit - out.len())
        {
            out.push(decode("deliveries_by_subscription", &entry?.1)?);
        }
        Ok(out)
    }

    /// One job of `subscription_id` from the index, if it was ever queued.
    pub fn job_summary(
        &self,
        subscription_id: &str,
        job_id: &str,
    ) -> Result<Option<JobSummary>, StoreError> {
        if let Some(row) = self.inner.queue.get(index_key(subscription_id, job_id))? {
            return decode("deliveries_by_subscription", &row).map(Some);
        }
        Ok(self
            .open_member(job_id)?
            .filter(|job| job.subscription_id == subscription_id)
            .map(|job| JobSummary::from(&job)))
    }

    /// Removes everything kept for the subscriptions whose id starts with `prefix` (an app's,
    /// `app.<name>.`): queued jobs, dead letters, delivery index rows and attempt logs.
    /// Returns how many records went. Walks the queue: for rare operator actions only.
    pub fn purge_subscriptions(&self, prefix: &str) -> Result<usize, StoreError> {
        let queue = &self.inner.queue;
        let members = self.purge_members(prefix)?;
        let mut doomed: Vec<sled::IVec> = Vec::new();
        let mut jobs: Vec<String> = Vec::new();
        // The index names every job ever made for these subscriptions.
        for entry in queue.scan_prefix(key(INDEX, &[prefix.as_bytes()])) {
            let (k, value) = entry?;
            let summary: JobSummary = decode("deliveries_by_subscription", &value)?;
            jobs.push(summary.id);
            doomed.push(k);
        }
        for kind in [JOB, DEAD] {
            for entry in queue.scan_prefix([kind]) {
                let (k, value) = entry?;
                let subscription = if kind == JOB {
                    decode::<Job>("jobs", &value)?.subscription_id
                } else {
                    decode::<DeadLetter>("dead", &value)?.job.subscription_id
                };
                if subscription.starts_with(prefix) {
                    doomed.push(k);
                }
            }
        }
        for job in &jobs {
            for entry in queue.scan_prefix(key(ATTEMPT, &[job.as_bytes(), b""])) {
                doomed.push(entry?.0);
            }
        }
        for chunk in doomed.chunks(MAX_BATCH) {
            let mut batch = Batch::default();
            for k in chunk {
                batch.remove(k.clone());
            }
            queue.apply_batch(batch)?;
        }
        Ok(members + doomed.len())
    }

    /// Counts of queued jobs and dead letters (walks the tree: not for the data path).
    pub(super) fn queue_counts(&self) -> (usize, usize, usize) {
        let count = |prefix: u8| self.inner.queue.scan_prefix([prefix]).count();
        (
            count(PENDING),
            count(JOB) + self.inner.open.count(),
            count(DEAD),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{JobId, JobKind};

    /// A job named `name`: a whole job id, or an event name for delivery 0 to `sub`.
    fn job(name: &str) -> Job {
        Job {
            id: name
                .parse()
                .unwrap_or_else(|_| JobId::delivery(name, "sub", 0)),
            kind: JobKind::Deliver,
            event_id: "evt".into(),
            subscription_id: "sub".into(),
            destination: "d".into(),
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
            envelope: None,
            headers: vec![],
            attempts: 0,
            created_ms: 1,
            due_ms: 10,
            last_error: None,
            member: None,
            order: None,
        }
    }

    fn attempt(status: u16) -> Attempt {
        Attempt {
            at_ms: 5,
            status: Some(status),
            latency_ms: 1,
            excerpt: String::new(),
            error: None,
        }
    }

    fn queued(store: &Store) -> Vec<Job> {
        store.queued_jobs().collect::<Result<_, _>>().expect("scan")
    }

    #[test]
    fn retry_complete_bury_and_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .enqueue(&[job("a"), job("b")], &[], &[])
            .expect("enqueue");
        let listed: Vec<_> = store
            .jobs_of_subscription("sub", 10)
            .expect("index")
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(listed, ["b.sub.0", "a.sub.0"], "newest first");
        assert!(
            store
                .jobs_of_subscription("su", 10)
                .expect("index")
                .is_empty(),
            "the whole id, not a prefix"
        );
        assert_eq!(queued(&store).len(), 2);

        let a = store
            .retry_later(&job("a"), &attempt(500), 150)
            .expect("retry");
        assert_eq!((a.attempts, a.due_ms), (1, 150));
        store.complete(&job("b"), &attempt(200)).expect("complete");
        assert_eq!(store.job("b.sub.0").expect("read"), None);
        assert_eq!(
            store.attempts("b.sub.0").expect("attempts"),
            vec![attempt(200)]
        );
        assert_eq!(
            queued(&store),
            vec![a.clone()],
            "the retry is stored with its due time"
        );

        store
            .bury(&a, Some(&attempt(503)), "gave up", 160)
            .expect("bury");
        assert!(queued(&store).is_empty());
        let dead = store.dead_letters(10).expect("dead");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, "gave up");
        assert_eq!(dead[0].job.attempts, 2);
        assert_eq!(store.dead_letters_of("su", 10).expect("dead").len(), 1);
        assert!(store.dead_letters_of("other", 10).expect("dead").is_empty());
        assert!(
            store
                .job_summary("sub", "a.sub.0")
                .expect("index")
                .is_some()
        );
        assert_eq!(store.attempts("a.sub.0").expect("attempts").len(), 2);

        let replayed = store
            .replay("a.sub.0", 200)
            .expect("replay")
            .expect("was dead");
        assert_eq!((replayed.attempts, replayed.due_ms), (0, 200));
        assert_eq!(store.replay("a.sub.0", 200).expect("second replay"), None);
        assert_eq!(queued(&store), vec![replayed]);
        assert!(store.dead_letters(10).expect("dead").is_empty());
    }

    #[test]
    fn an_events_journey_is_its_jobs_dead_letters_and_attempts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let of = |event: &str, n: usize| Job {
            id: JobId::delivery(event, "sub", n),
            event_id: event.into(),
            ..job("x")
        };
        store
            .enqueue(&[of("evt_a", 0), of("evt_a", 1), of("evt_ab", 0)], &[], &[])
            .expect("enqueue");
        store
            .complete(&of("evt_a", 0), &attempt(200))
            .expect("complete");
        store
            .bury(&of("evt_a", 1), Some(&attempt(500)), "gave up", 20)
            .expect("bury");
        let journey = store.journey("evt_a").expect("journey");
        assert!(journey.queued.is_empty(), "{journey:?}");
        assert_eq!(journey.dead.len(), 1);
        let ids: Vec<&str> = journey.attempts.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["evt_a.sub.0", "evt_a.sub.1"], "not evt_ab's");
        // The delivered one, with what it sent (the job's body here).
        let delivered: Vec<(&str, &[u8])> = journey
            .delivered
            .iter()
            .map(|d| (d.id.as_str(), d.body.as_slice()))
            .collect();
        assert_eq!(delivered, [("evt_a.sub.0", of("evt_a", 0).body.as_slice())]);
        let other = store.journey("evt_ab").expect("journey");
        assert_eq!(other.queued, vec![of("evt_ab", 0)]);
    }

    #[test]
    fn a_job_purged_while_it_ran_is_not_brought_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut doomed = job("evt.app.shop.orders.0");
        doomed.subscription_id = "app.shop.orders".into();
        store.enqueue(&[doomed.clone()], &[], &[]).expect("enqueue");
        // The app is deleted while an attempt is in flight; then the attempt fails.
        assert!(store.purge_subscriptions("app.shop.").expect("purge") > 0);
        store
            .retry_later(&doomed, &attempt(503), 99)
            .expect("retry");
        store
            .bury(&doomed, Some(&attempt(503)), "gave up", 99)
            .expect("bury");
        assert!(queued(&store).is_empty());
        assert!(store.dead_letters(10).expect("dead").is_empty());
    }

    #[test]
    fn jobs_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.enqueue(&[job("a")], &[], &[]).expect("enqueue");
            store.flush().expect("flush");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(queued(&store), vec![job("a")]);
    }

    #[test]
    fn a_large_fan_out_is_split_into_bounded_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let jobs: Vec<Job> = (0..MAX_BATCH * 2 + 7)
            .map(|i| job(&format!("j{i}")))
            .collect();
        store.enqueue(&jobs, &[], &[]).expect("enqueue");
        assert_eq!(queued(&store).len(), jobs.len());
    }
}
