//! The delivery queue: jobs ordered by due time, leases, attempts and dead letters.
//!
//! A job is in exactly one of: the queue (`jobs` + one `schedule` entry), the dead-letter
//! store, or gone (delivered). Taking a job moves its schedule entry to the lease's expiry, so
//! a job whose worker died (crash, kill -9) becomes due again by itself.

use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::{Store, StoreError, decode, encode};

/// What a job does when it comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// POST `body` to the destination.
    Deliver,
    /// Run the subscription's plugin again for the event (the plugin asked for a retry).
    Transform,
}

/// One unit of work in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Stable id; the `webhook-id` header, the same on every attempt.
    pub id: String,
    /// What to do.
    pub kind: JobKind,
    /// The event it came from.
    pub event_id: String,
    /// The subscription it belongs to.
    pub subscription_id: String,
    /// Destination name.
    pub destination: String,
    /// MIME type of the body.
    pub content_type: String,
    /// The body, base64 in storage.
    #[serde(with = "body_b64")]
    pub body: Vec<u8>,
    /// Extra headers from the plugin.
    pub headers: Vec<(String, String)>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the job was created (ms since the epoch).
    pub created_ms: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

mod body_b64 {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(body))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// One delivery attempt, kept for the attempt log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started (ms since the epoch).
    pub at_ms: u64,
    /// HTTP status, when a response came.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// The start of the response body (bounded).
    pub excerpt: String,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// A job that will not be retried any more; kept until replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The job as it was.
    pub job: Job,
    /// Why it was given up.
    pub reason: String,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// What the per-subscription index keeps of a job: enough to list it after it left the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The job id.
    pub id: String,
    /// The event it came from.
    pub event_id: String,
    /// Destination name.
    pub destination: String,
    /// When the job was created (ms since the epoch).
    pub created_ms: u64,
}

impl From<&Job> for JobSummary {
    fn from(job: &Job) -> Self {
        Self {
            id: job.id.clone(),
            event_id: job.event_id.clone(),
            destination: job.destination.clone(),
            created_ms: job.created_ms,
        }
    }
}

fn index_key(subscription_id: &str, job_id: &str) -> Vec<u8> {
    [subscription_id.as_bytes(), b"\0", job_id.as_bytes()].concat()
}

/// A job taken by a worker until `until_ms`; pass it back to finish the job.
#[derive(Debug, Clone)]
pub struct Lease {
    key: Vec<u8>,
    /// The job.
    pub job: Job,
}

/// Marks a schedule entry as a lease (a worker holds the job) rather than a due time.
const LEASED: &[u8] = b"L";

fn schedule_key(due_ms: u64, id: &str) -> Vec<u8> {
    [&due_ms.to_be_bytes()[..], id.as_bytes()].concat()
}

/// Attempts are numbered by a database-wide sequence, not by the job's attempt count: a
/// replayed job starts counting again, and its earlier attempts must stay in the log.
fn attempt_key(db: &sled::Db, id: &str) -> Result<Vec<u8>, StoreError> {
    Ok([id.as_bytes(), b"\0", &db.generate_id()?.to_be_bytes()[..]].concat())
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

impl Store {
    /// Queues each job at its due time and, in the same transaction, removes the event's backlog
    /// entry `pending_key` (when given): the event counts as handled exactly when its jobs are
    /// queued. Dead letters from the fan-out (plugin rejections) are written in the same step.
    pub fn enqueue(
        &self,
        jobs: &[(Job, u64)],
        dead: &[DeadLetter],
        pending_key: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let encoded: Vec<_> = jobs
            .iter()
            .map(|(j, due_ms)| (j.id.as_bytes(), encode(j), schedule_key(*due_ms, &j.id)))
            .collect();
        let dead_encoded: Vec<_> = dead
            .iter()
            .map(|d| (d.job.id.as_bytes(), encode(d)))
            .collect();
        let indexed: Vec<_> = jobs
            .iter()
            .map(|(j, _)| j)
            .chain(dead.iter().map(|d| &d.job))
            .map(|j| {
                (
                    index_key(&j.subscription_id, &j.id),
                    encode(&JobSummary::from(j)),
                )
            })
            .collect();
        let trees = (
            &inner.jobs,
            &inner.schedule,
            &inner.pending,
            &inner.dead,
            &inner.by_subscription,
        );
        trees.transaction(|(jt, st, pt, dt, it)| {
            for (id, record, key) in &encoded {
                if jt.insert(*id, record.as_slice())?.is_some() {
                    // Already queued (a replayed fan-out): keep the one schedule entry.
                    continue;
                }
                st.insert(key.as_slice(), &[])?;
            }
            for (id, record) in &dead_encoded {
                dt.insert(*id, record.as_slice())?;
            }
            for (key, summary) in &indexed {
                it.insert(key.as_slice(), summary.as_slice())?;
            }
            if let Some(k) = pending_key {
                pt.remove(k)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Takes up to `limit` jobs due at or before `now_ms`, leasing each until `lease_until_ms`.
    pub fn take_due(
        &self,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let inner = &*self.inner;
        let end = (now_ms + 1).to_be_bytes();
        let mut leases = Vec::new();
        for entry in inner.schedule.range(..end.as_slice()).take(limit) {
            let (key, _) = entry?;
            let id = &key[8..];
            let Some(record) = inner.jobs.get(id)? else {
                // A schedule entry whose job was finished by a write a crash cut short.
                inner.schedule.remove(&key)?;
                continue;
            };
            let new_key = [&lease_until_ms.to_be_bytes()[..], id].concat();
            // One atomic batch on one tree: the job is due or leased, never both or neither.
            // Only the dispatcher takes jobs, and only the lease holder touches a leased entry,
            // so no transaction is needed.
            let mut batch = sled::Batch::default();
            batch.remove(key);
            batch.insert(new_key.as_slice(), LEASED);
            inner.schedule.apply_batch(batch)?;
            leases.push(Lease {
                key: new_key,
                job: decode("jobs", &record)?,
            });
        }
        Ok(leases)
    }

    /// Makes every lease left by a previous process due at `now_ms`. Called once at start-up:
    /// the database is locked to one process, so no worker can still hold them.
    pub fn recover_leases(&self, now_ms: u64) -> Result<usize, StoreError> {
        let inner = &*self.inner;
        let mut recovered = 0;
        for entry in inner.schedule.iter() {
            let (key, value) = entry?;
            if value.as_ref() != LEASED {
                continue;
            }
            let fresh = [&now_ms.to_be_bytes()[..], &key[8..]].concat();
            inner.schedule.transaction(|st| {
                st.remove(&key)?;
                st.insert(fresh.as_slice(), &[])?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })?;
            recovered += 1;
        }
        Ok(recovered)
    }

    /// The earliest due time in the queue, if any.
    pub fn next_due_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.inner.schedule.first()?.map(|(k, _)| {
            let mut due = [0u8; 8];
            due.copy_from_slice(&k[..8]);
            u64::from_be_bytes(due)
        }))
    }

    /// The leased job was delivered: remove it and log the attempt.
    ///
    /// Written in an order that a crash cannot turn into a loss: the attempt first, then the
    /// job, then its schedule entry (an entry left without its job is dropped when it comes due).
    pub fn complete(&self, lease: &Lease, attempt: &Attempt) -> Result<(), StoreError> {
        let inner = &*self.inner;
        inner
            .attempts
            .insert(attempt_key(&inner.db, &lease.job.id)?, encode(attempt))?;
        inner.jobs.remove(lease.job.id.as_bytes())?;
        inner.schedule.remove(lease.key.as_slice())?;
        Ok(())
    }

    /// The attempt failed and the job is retried at `due_ms`.
    pub fn retry_later(
        &self,
        lease: &Lease,
        attempt: &Attempt,
        due_ms: u64,
    ) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let mut job = lease.job.clone();
        job.attempts += 1;
        job.last_error = attempt.error.clone();
        inner
            .attempts
            .insert(attempt_key(&inner.db, &job.id)?, encode(attempt))?;
        inner.jobs.insert(job.id.as_bytes(), encode(&job))?;
        let mut batch = sled::Batch::default();
        batch.remove(lease.key.as_slice());
        batch.insert(schedule_key(due_ms, &job.id), &[]);
        inner.schedule.apply_batch(batch)?;
        Ok(())
    }

    /// Gives the job up: it moves to the dead-letter store with `reason`.
    pub fn bury(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let mut job = lease.job.clone();
        if attempt.is_some() {
            job.attempts += 1;
        }
        let akey = attempt_key(&inner.db, &job.id)?;
        let arec = attempt.map(encode);
        let dead = encode(&DeadLetter {
            job: job.clone(),
            reason: reason.to_owned(),
            at_ms: now_ms,
        });
        (&inner.schedule, &inner.jobs, &inner.attempts, &inner.dead).transaction(
            |(st, jt, at, dt)| {
                st.remove(lease.key.as_slice())?;
                jt.remove(job.id.as_bytes())?;
                if let Some(a) = &arec {
                    at.insert(akey.as_slice(), a.as_slice())?;
                }
                dt.insert(job.id.as_bytes(), dead.as_slice())?;
                Ok(())
            },
        )?;
        Ok(())
    }

    /// Releases a lease without an attempt (shutdown): the job is due again at `due_ms`.
    pub fn release(&self, lease: &Lease, due_ms: u64) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let skey = schedule_key(due_ms, &lease.job.id);
        inner.schedule.transaction(|st| {
            if st.remove(lease.key.as_slice())?.is_some() {
                st.insert(skey.as_slice(), &[])?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        Ok(())
    }

    /// Dead letters, oldest first by id.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner
            .dead
            .iter()
            .take(limit)
            .map(|e| decode("dead", &e?.1))
            .collect()
    }

    /// Moves a dead letter back into the queue, due at `due_ms`, with a fresh attempt count.
    pub fn replay(&self, job_id: &str, due_ms: u64) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let skey = schedule_key(due_ms, job_id);
        let replayed =
            (&inner.dead, &inner.jobs, &inner.schedule).transaction(|(dt, jt, st)| {
                let Some(record) = dt.remove(job_id.as_bytes())? else {
                    return Ok(false);
                };
                let mut job = decode::<DeadLetter>("dead", &record).map_err(abort)?.job;
                job.attempts = 0;
                jt.insert(job_id.as_bytes(), encode(&job))?;
                st.insert(skey.as_slice(), &[])?;
                Ok(true)
            })?;
        Ok(replayed)
    }

    /// The attempts of one job, in order.
    pub fn attempts(&self, job_id: &str) -> Result<Vec<Attempt>, StoreError> {
        let prefix = [job_id.as_bytes(), b"\0"].concat();
        self.inner
            .attempts
            .scan_prefix(prefix)
            .map(|e| decode("attempts", &e?.1))
            .collect()
    }

    /// A queued job by id.
    pub fn job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        self.inner
            .jobs
            .get(job_id.as_bytes())?
            .map(|b| decode("jobs", &b))
            .transpose()
    }

    /// A dead letter by job id.
    pub fn dead_letter(&self, job_id: &str) -> Result<Option<DeadLetter>, StoreError> {
        self.inner
            .dead
            .get(job_id.as_bytes())?
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
        for entry in self.inner.dead.iter() {
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
    /// the time-ordered event id).
    pub fn jobs_of_subscription(
        &self,
        subscription_id: &str,
        limit: usize,
    ) -> Result<Vec<JobSummary>, StoreError> {
        let prefix = [subscription_id.as_bytes(), b"\0"].concat();
        self.inner
            .by_subscription
            .scan_prefix(prefix)
            .rev()
            .take(limit)
            .map(|e| decode("deliveries_by_subscription", &e?.1))
            .collect()
    }

    /// One job of `subscription_id` from the index, if it was ever queued.
    pub fn job_summary(
        &self,
        subscription_id: &str,
        job_id: &str,
    ) -> Result<Option<JobSummary>, StoreError> {
        let key = index_key(subscription_id, job_id);
        self.inner
            .by_subscription
            .get(key)?
            .map(|b| decode("deliveries_by_subscription", &b))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> Job {
        Job {
            id: id.into(),
            kind: JobKind::Deliver,
            event_id: "evt".into(),
            subscription_id: "sub".into(),
            destination: "d".into(),
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
            headers: vec![],
            attempts: 0,
            created_ms: 1,
            last_error: None,
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

    #[test]
    fn lease_retry_complete_and_bury() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .enqueue(&[(job("a"), 10), (job("b"), 10)], &[], None)
            .expect("enqueue");
        let listed: Vec<_> = store
            .jobs_of_subscription("sub", 10)
            .expect("index")
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(listed, ["b", "a"], "newest first");
        assert!(
            store
                .jobs_of_subscription("su", 10)
                .expect("index")
                .is_empty(),
            "the whole id, not a prefix"
        );
        assert!(store.take_due(9, 100, 10).expect("take").is_empty());
        let leases = store.take_due(10, 100, 10).expect("take");
        assert_eq!(leases.len(), 2);
        // Leased jobs are not due again until the lease expires.
        assert!(store.take_due(99, 200, 10).expect("take").is_empty());
        assert_eq!(store.next_due_ms().expect("next"), Some(100));

        store
            .retry_later(&leases[0], &attempt(500), 150)
            .expect("retry");
        store.complete(&leases[1], &attempt(200)).expect("complete");
        assert_eq!(store.job("b").expect("read"), None);
        assert_eq!(store.attempts("b").expect("attempts"), vec![attempt(200)]);

        let again = store.take_due(150, 300, 10).expect("take");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].job.attempts, 1);
        store
            .bury(&again[0], Some(&attempt(503)), "gave up", 160)
            .expect("bury");
        let dead = store.dead_letters(10).expect("dead");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, "gave up");
        assert_eq!(store.dead_letters_of("su", 10).expect("dead").len(), 1);
        assert!(store.dead_letters_of("other", 10).expect("dead").is_empty());
        assert_eq!(
            store
                .dead_letter("a")
                .expect("dead")
                .map(|d| d.job.id)
                .as_deref(),
            Some("a")
        );
        assert!(store.job_summary("sub", "a").expect("index").is_some());
        assert_eq!(store.attempts("a").expect("attempts").len(), 2);

        assert!(store.replay("a", 200).expect("replay"));
        assert!(!store.replay("a", 200).expect("second replay"));
        assert_eq!(
            store.take_due(200, 400, 10).expect("take")[0].job.attempts,
            0
        );
    }

    #[test]
    fn an_expired_lease_makes_the_job_due_again_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .enqueue(&[(job("a"), 10)], &[], None)
                .expect("enqueue");
            assert_eq!(store.take_due(10, 50, 10).expect("take").len(), 1);
            store.flush().expect("flush");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert!(store.take_due(49, 100, 10).expect("take").is_empty());
        assert_eq!(store.take_due(50, 100, 10).expect("take").len(), 1);
        // A restart does not wait for the lease to expire.
        assert_eq!(store.recover_leases(20).expect("recover"), 1);
        assert_eq!(store.take_due(20, 100, 10).expect("take").len(), 1);
    }
}
