//! The delivery log and the dead letters on NATS, readable from every instance.
//!
//! Each outcome of a job (an attempt delivered, failed and retried, or given up) is a new
//! revision of the job's record in `<prefix>_deliveries`; the bucket keeps the last 16, which
//! are the job's attempt history. Listing a subscription's deliveries reads the latest
//! revision of each of its keys through a short-lived consumer.

use std::time::Duration;

use async_nats::jetstream::consumer;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::{NatsWork, StoredDeadLetter, shared, token};
use crate::event::Event;
use crate::store::{
    Attempt, DeadLetter, Job, JobId, JobKind, JobPart, JobSummary, Journey, StoreError,
};

/// Records one fetch of a scan asks for.
const SCAN_BATCH: usize = 1_000;

/// The newest `limit` items offered, by key: what a listing keeps while it scans every
/// record, so that its memory is bounded by what it answers.
struct Newest<K: Ord, T> {
    limit: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Keyed<K, T>>>,
}

/// An item ordered by its key only.
struct Keyed<K, T>(K, T);

impl<K: Ord, T> PartialEq for Keyed<K, T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: Ord, T> Eq for Keyed<K, T> {}
impl<K: Ord, T> PartialOrd for Keyed<K, T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord, T> Ord for Keyed<K, T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<K: Ord, T> Newest<K, T> {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: std::collections::BinaryHeap::with_capacity(limit.min(SCAN_BATCH) + 1),
        }
    }

    fn offer(&mut self, key: K, item: T) {
        if self.limit == 0 {
            return;
        }
        if self.heap.len() < self.limit {
            self.heap.push(std::cmp::Reverse(Keyed(key, item)));
        } else if self.heap.peek().is_some_and(|oldest| key > oldest.0.0) {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(Keyed(key, item)));
        }
    }

    /// Newest first.
    fn into_sorted(self) -> Vec<T> {
        // Ascending order of `Reverse` is descending order of the keys.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|std::cmp::Reverse(Keyed(_, item))| item)
            .collect()
    }
}

/// Where a job stands after its latest outcome (stored in each record, lowercase).
pub use crate::workplane::JobState as Status;

/// One revision of a job's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The job.
    pub job: JobSummary,
    /// Its subscription.
    pub subscription: String,
    /// A delivery or a plugin call.
    pub kind: JobKind,
    /// Where it stands.
    pub status: Status,
    /// Why it was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The attempt this revision records (none for a job buried unattempted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
    /// When it was written.
    pub at_ms: u64,
}

/// A job as the delivery log lists it: its latest record and every attempt kept.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The latest record.
    pub latest: Record,
    /// Attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

/// The key of `job_id`'s records, if it is a job id.
pub(crate) fn key(job_id: &str) -> Option<String> {
    job_id.parse().ok().map(|id| key_of(&id))
}

/// The key of a job's records: `<subscription token>.<event id>.<n | transform>`.
fn key_of(id: &JobId) -> String {
    let part = match id.part() {
        JobPart::Delivery(n) => n.to_string(),
        JobPart::Transform => "transform".to_owned(),
    };
    format!("{}.{}.{part}", token(id.subscription()), id.event())
}

impl NatsWork {
    /// Records an outcome of `job`, published without asking JetStream for an acknowledgement:
    /// a record of an attempt is not worth a wait, and the acknowledgement (an answer from the
    /// server, a task here to read it) cost more than the rest of the write. It goes out before
    /// the job's own acknowledgement, on the same connection; a record JetStream could not
    /// store leaves no trace (the rare records that must not be missed go through
    /// [`Self::record_acknowledged`]).
    pub(crate) async fn record(
        &self,
        job: &Job,
        status: Status,
        attempt: Option<Attempt>,
        reason: Option<String>,
    ) {
        let (subject, payload) = self.record_message(job, status, attempt, reason);
        if let Err(e) = self.js.client().publish(subject, payload).await {
            tracing::warn!(error = %e, "a delivery-log record was not written");
        }
    }

    /// Records an outcome of `job` and waits until JetStream holds it (a dead letter's, which
    /// is how an event's history finds the letter; a replay's, which its delivery must
    /// follow). A failure is logged: the letter or the replayed job itself is written either
    /// way.
    pub(crate) async fn record_acknowledged(
        &self,
        job: &Job,
        status: Status,
        attempt: Option<Attempt>,
        reason: Option<String>,
    ) {
        let (subject, payload) = self.record_message(job, status, attempt, reason);
        let stored = match self.js.publish(subject, payload).await {
            Ok(ack) => tokio::time::timeout(super::REQUEST_TIMEOUT, ack)
                .await
                .map_err(|_| "JetStream did not answer".to_owned())
                .and_then(|acked| acked.map(drop).map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, job = %job.id, "a delivery-log record was not written");
        }
    }

    /// The subject and body of a record of `job`.
    fn record_message(
        &self,
        job: &Job,
        status: Status,
        attempt: Option<Attempt>,
        reason: Option<String>,
    ) -> (String, Bytes) {
        let key = key_of(&job.id);
        let record = Record {
            job: JobSummary::from(job),
            subscription: job.subscription_id.clone(),
            kind: job.kind,
            status,
            reason,
            attempt,
            at_ms: crate::time::now_ms(),
        };
        let payload = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
        (format!("$KV.{}.{key}", self.deliveries.name), payload)
    }

    /// Puts `job` in the dead letters (waiting for JetStream) and records it in the log.
    pub(crate) async fn bury(
        &self,
        job: &Job,
        event: &Event,
        attempt: Option<Attempt>,
        reason: String,
    ) -> Result<(), StoreError> {
        let key = key_of(&job.id);
        // The letter counts the attempt that gave up, as the sled engine's does.
        let mut buried = job.clone();
        if attempt.is_some() {
            buried.attempts += 1;
        }
        let letter = StoredDeadLetter {
            letter: DeadLetter {
                job: buried,
                reason: reason.clone(),
                at_ms: crate::time::now_ms(),
            },
            event: event.clone(),
        };
        self.dead
            .put(
                &key,
                Bytes::from(serde_json::to_vec(&letter).unwrap_or_default()),
            )
            .await
            .map_err(|e| shared("cannot write a dead letter", e))?;
        self.record_acknowledged(job, Status::Dead, attempt, Some(reason))
            .await;
        Ok(())
    }

    /// Passes the latest value of every key matching `filter` in `bucket`'s stream to `each`
    /// (subject, value), as it reads them: every key, in batches, so that a listing is
    /// complete however many records there are and holds only what `each` keeps.
    async fn scan(
        &self,
        bucket: &async_nats::jetstream::kv::Store,
        filter: String,
        mut each: impl FnMut(&str, &Bytes),
    ) -> Result<(), StoreError> {
        let consumer = bucket
            .stream
            .create_consumer(consumer::pull::Config {
                filter_subject: filter,
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(10),
                ..Default::default()
            })
            .await
            .map_err(|e| shared("cannot read the delivery log", e))?;
        let mut pending = consumer.cached_info().num_pending as usize;
        let read = async {
            while pending > 0 {
                let mut batch = consumer
                    .fetch()
                    .max_messages(pending.min(SCAN_BATCH))
                    .expires(Duration::from_secs(2))
                    .messages()
                    .await
                    .map_err(|e| shared("cannot read the delivery log", e))?;
                let mut got = 0;
                while let Some(message) = batch.next().await {
                    let message = message.map_err(|e| shared("cannot read the delivery log", e))?;
                    got += 1;
                    // A delete or purge marker: the key is gone.
                    let gone = message
                        .headers
                        .as_ref()
                        .is_some_and(|h| h.get("KV-Operation").is_some());
                    if !gone {
                        each(message.subject.as_str(), &message.payload);
                    }
                }
                if got == 0 {
                    break;
                }
                pending = pending.saturating_sub(got);
            }
            Ok::<_, StoreError>(())
        };
        let read = read.await;
        let _ = bucket
            .stream
            .delete_consumer(&consumer.cached_info().name)
            .await;
        read
    }

    /// The newest `limit` jobs of `subscription` with an outcome, newest first.
    pub async fn deliveries(
        &self,
        subscription: &str,
        limit: usize,
    ) -> Result<Vec<Listed>, StoreError> {
        let filter = format!("$KV.{}.{}.>", self.deliveries.name, token(subscription));
        // The newest `limit` as the scan goes: a min-heap of (created, id).
        let mut newest = Newest::new(limit);
        self.scan(&self.deliveries, filter, |_, value| {
            if let Ok(record) = serde_json::from_slice::<Record>(value)
                && record.subscription == subscription
            {
                newest.offer((record.job.created_ms, record.job.id.clone()), record);
            }
        })
        .await?;
        let records = newest.into_sorted();
        let mut listed = Vec::with_capacity(records.len());
        for latest in records {
            let attempts = self.attempts(&latest.job.id).await?;
            listed.push(Listed { latest, attempts });
        }
        Ok(listed)
    }

    /// Whether the delivery log says job `job_id` is finished (delivered or dead-lettered).
    pub(crate) async fn finished(&self, job_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .latest_record(job_id)
            .await?
            .is_some_and(|r| matches!(r.status, Status::Delivered | Status::Dead)))
    }

    /// Every attempt of `job_id` the log keeps, oldest first.
    pub async fn attempts(&self, job_id: &str) -> Result<Vec<Attempt>, StoreError> {
        let Some(key) = key(job_id) else {
            return Ok(Vec::new());
        };
        let mut history = match self.deliveries.history(&key).await {
            Ok(history) => history,
            Err(e) if e.to_string().contains("not found") => return Ok(Vec::new()),
            Err(e) => return Err(shared("cannot read the delivery log", e)),
        };
        let mut attempts = Vec::new();
        while let Some(entry) = history.next().await {
            let Ok(entry) = entry else { break };
            if let Ok(record) = serde_json::from_slice::<Record>(&entry.value) {
                attempts.extend(record.attempt);
            }
        }
        Ok(attempts)
    }

    /// The latest record of `job_id`.
    pub async fn latest_record(&self, job_id: &str) -> Result<Option<Record>, StoreError> {
        let Some(key) = key(job_id) else {
            return Ok(None);
        };
        let value = self
            .deliveries
            .get(&key)
            .await
            .map_err(|e| shared("cannot read the delivery log", e))?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// The dead letter of `job_id`.
    pub async fn dead_letter(&self, job_id: &str) -> Result<Option<StoredDeadLetter>, StoreError> {
        let Some(key) = key(job_id) else {
            return Ok(None);
        };
        let value = self
            .dead
            .get(&key)
            .await
            .map_err(|e| shared("cannot read the dead letters", e))?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// The newest `limit` dead letters whose subscription starts with `prefix`.
    pub async fn dead_letters(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let filter = format!("$KV.{}.>", self.dead.name);
        let mut newest = Newest::new(limit);
        self.scan(&self.dead, filter, |_, value| {
            // Only the letter is kept, not the event it carries.
            if let Ok(stored) = serde_json::from_slice::<StoredDeadLetter>(value)
                && stored.letter.job.subscription_id.starts_with(prefix)
            {
                let letter = stored.letter;
                newest.offer((letter.at_ms, letter.job.id.clone()), letter);
            }
        })
        .await?;
        Ok(newest.into_sorted())
    }

    /// Queues dead letter `job_id` again with its attempts reset, and removes it; `None` when
    /// there is no such letter.
    pub async fn replay(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let Some(key) = key(job_id) else {
            return Ok(None);
        };
        let entry = self
            .dead
            .entry(&key)
            .await
            .map_err(|e| shared("cannot read the dead letters", e))?;
        let Some((stored, revision)) = entry.and_then(|e| {
            let stored: StoredDeadLetter = serde_json::from_slice(&e.value).ok()?;
            Some((stored, e.revision))
        }) else {
            return Ok(None);
        };
        let mut job = stored.letter.job;
        job.attempts = 0;
        job.last_error = None;
        // An ordered job replayed goes behind its key's newer jobs.
        if let Some(order) = &mut job.order {
            order.seq = crate::time::sequence();
            order.held = None;
        }
        job.due_ms = crate::time::now_ms();
        // A replayed job is a new message, not a duplicate of the job's first one; the same
        // letter replayed twice at once (or again after a crash before its removal) is.
        let id = format!("replay.{}.{}", job.id, stored.letter.at_ms);
        let subject = self.job_subject(&job);
        let item = super::Item {
            job: job.clone(),
            event: stored.event,
        };
        // Recorded as pending before it is queued: its delivery, recorded by whichever
        // instance makes it, must come after.
        self.record_acknowledged(&job, Status::Pending, None, None)
            .await;
        self.publish_as(subject, &item, id).await?;
        // Only the letter replayed: one written again since (the job failed once more on
        // another instance) is a new letter, kept.
        if let Err(e) = self.dead.delete_expect_revision(&key, Some(revision)).await {
            tracing::debug!(error = %e, job = job_id, "a replayed dead letter was written again meanwhile; the new one is kept");
        }
        Ok(Some(job))
    }

    /// Removes the delivery log and dead letters of every subscription whose id starts with
    /// `prefix` (an app's, when it is deleted); how many records. Its queued jobs are dropped
    /// when a lane pulls them and finds the app gone.
    pub async fn purge_subscriptions(&self, prefix: &str) -> Result<usize, StoreError> {
        let mut purged = 0;
        for bucket in [&self.deliveries, &self.dead] {
            let head = format!("$KV.{}.", bucket.name);
            let mut doomed = Vec::new();
            self.scan(bucket, format!("{head}>"), |subject, value| {
                let subscription = serde_json::from_slice::<Record>(value)
                    .map(|r| r.subscription)
                    .or_else(|_| {
                        serde_json::from_slice::<StoredDeadLetter>(value)
                            .map(|d| d.letter.job.subscription_id)
                    });
                if subscription.is_ok_and(|s| s.starts_with(prefix)) {
                    doomed.push(subject.strip_prefix(&head).unwrap_or(subject).to_owned());
                }
            })
            .await?;
            for key in doomed {
                bucket
                    .purge(&key)
                    .await
                    .map_err(|e| shared("cannot remove an app's records", e))?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// What became of event `event_id`'s jobs: those still pending, the dead letters, every
    /// attempt kept, and the deliveries made.
    pub async fn journey(&self, event_id: &str) -> Result<Journey, StoreError> {
        let filter = format!("$KV.{}.*.{event_id}.*", self.deliveries.name);
        let mut records: Vec<Record> = Vec::new();
        self.scan(&self.deliveries, filter, |_, value| {
            records.extend(serde_json::from_slice::<Record>(value).ok());
        })
        .await?;
        let mut journey = Journey::default();
        for record in records {
            for attempt in self.attempts(&record.job.id).await? {
                journey.attempts.push((record.job.id.clone(), attempt));
            }
            match record.status {
                Status::Delivered => journey.delivered.push(record.job),
                Status::Dead => {
                    if let Some(dead) = self.dead_letter(&record.job.id).await? {
                        journey.dead.push(dead.letter);
                    }
                }
                Status::Pending => journey.queued.extend(pending_job(&record)),
            }
        }
        journey.attempts.sort_by_key(|(_, a)| a.at_ms);
        Ok(journey)
    }
}

/// A pending job as far as its record tells (none if the record's id is not a job id).
fn pending_job(record: &Record) -> Option<Job> {
    let summary = &record.job;
    Some(Job {
        id: summary.id.parse().ok()?,
        kind: record.kind,
        event_id: summary.event_id.clone(),
        subscription_id: record.subscription.clone(),
        destination: summary.destination.clone(),
        content_type: summary.content_type.clone(),
        body: summary.body.clone(),
        envelope: summary.envelope,
        headers: Vec::new(),
        attempts: 0,
        created_ms: summary.created_ms,
        due_ms: 0,
        last_error: record.attempt.as_ref().and_then(|a| a.error.clone()),
        member: None,
        order: None,
    })
}

#[cfg(test)]
mod tests {
    use super::Newest;

    #[test]
    fn a_listing_keeps_the_newest_items_however_many_it_scans() {
        let mut newest = Newest::new(3);
        for n in [5u64, 1, 9, 7, 3, 8, 2] {
            newest.offer(n, n * 10);
        }
        assert_eq!(newest.into_sorted(), vec![90, 80, 70]);
        let mut none = Newest::new(0);
        none.offer(1u64, ());
        assert!(none.into_sorted().is_empty());
    }
}
