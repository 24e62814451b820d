//! Ordered delivery on NATS, for the whole cluster. An ordered subscription's jobs queue on
//! [`PARTITIONS`] lanes by the hash of their key (`<prefix>.work.q.<subscription and
//! partition>`; `o` was the version before held keys, whose instances know nothing of them), each with one job in flight in the whole cluster (its consumer's
//! `max_ack_pending` is 1), so the jobs of one key are attempted one at a time, in the order
//! they were published. That is the order their events were accepted because the fan-out
//! publishes an event's ordered jobs only once every earlier event of the events stream was
//! fanned out (the fan-out consumer's acknowledgement floor has reached it); the event's
//! stream sequence is its acceptance order. A pause, a policy's wait and a plugin call's retry
//! are waited out on the lane, holding back the other keys of its partition (one in
//! [`PARTITIONS`]), never another partition's or subscription's; a delivery's retry holds only
//! its key (below). With a plugin (or enrichment), the jobs the fan-out publishes
//! are calls, one per event, on the lane of the event's key; a call's deliveries are published
//! to the lanes of their keys (the event's, or the one the plugin chose) before the call is
//! acknowledged, so before the key's next call runs: each key's deliveries reach its lane in
//! acceptance order, behind only calls, which deliver nothing themselves.
//!
//! A failing delivery holds back only its own key. When an ordered delivery must wait for its
//! next attempt, its key is *held*: the job leaves its lane for its destination's retry subject
//! (as unordered retries do), leaving an entry for itself on the key's held subject
//! (`<prefix>.work.h.<lane>_<key>`, no consumer: read and deleted by sequence); every later
//! job of the key the lane meets goes behind it there, in order, and the lane goes on with
//! other keys. A job runs as its key's *head* when its entry is the first of its key's held
//! subject (the entry's sequence travels with it, [`Order::held`]); once the head is done
//! (delivered or dead-lettered) the next entry's job goes back to the lane as the new head
//! and the head's entry is deleted; the key is free again when none is left. Every step is
//! made on the key's lane, whose jobs are run one at a time in the whole cluster, before the
//! lane's message is acknowledged; a step made twice after a crash is recognised (the moves'
//! `Nats-Msg-Id`, a head's own entry, a head's copy whose entry is gone).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::RawMessageErrorKind;

use super::{Item, NatsWork, shared, token};
use crate::store::{Job, StoreError};
#[cfg(doc)]
use crate::workplane::policy::Order;

/// Lanes of one ordered subscription: the share of its keys a failing key holds back is one in
/// this many.
pub(crate) const PARTITIONS: u64 = 32;

/// How long the fan-out of an event waits for the earlier ones before it publishes its ordered
/// jobs anyway (an earlier event stuck for good would otherwise stop ordered delivery): what
/// it costs is that order, and it is logged.
const TURN_PATIENCE: Duration = Duration::from_secs(30);

/// How long a look at the fan-out consumer's acknowledgement floor is taken as current.
const FLOOR_FRESH: Duration = Duration::from_millis(2);

/// The partition of `key`: FNV-1a, stable across instances and versions.
pub(crate) fn partition(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % PARTITIONS
}

/// The name token of partition `p` of `subscription`'s lanes.
pub(crate) fn lane_token(subscription: &str, p: u64) -> String {
    token(&format!("{subscription}#{p}"))
}

/// The fan-out consumer's acknowledgement floor as last looked at.
#[derive(Debug, Default)]
pub(crate) struct Floor {
    last: Mutex<Option<(Instant, u64)>>,
}

impl NatsWork {
    /// The highest stream sequence below which every event was fanned out (and its jobs
    /// published), looked up at most every [`FLOOR_FRESH`].
    async fn fanned_out_floor(&self) -> Option<u64> {
        if let Some((at, floor)) = *self.floor.last.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < FLOOR_FRESH
        {
            return Some(floor);
        }
        let info = self.events.consumer_info("fanout").await.ok()?;
        let floor = info.ack_floor.stream_sequence;
        *self.floor.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), floor));
        Some(floor)
    }

    /// Waits until every event before stream sequence `seq` was fanned out, so that an ordered
    /// job of `seq` is published after its key's earlier ones; false if that took longer than
    /// [`TURN_PATIENCE`].
    pub(super) async fn wait_for_turn(&self, seq: u64) -> bool {
        let deadline = Instant::now() + TURN_PATIENCE;
        let mut pause = Duration::from_millis(1);
        loop {
            if self
                .fanned_out_floor()
                .await
                .is_some_and(|floor| floor + 1 >= seq)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// Where a pulled job of an ordered lane stands with its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// It runs: its key is free, or it is its key's head (with its entry's sequence).
    Run(Option<u64>),
    /// Its key is held by an earlier job: it goes behind it, off the lane.
    Hold,
    /// A copy of a head whose key has moved on (a step made twice after a crash): the delivery
    /// log says it was done.
    Done,
    /// Not known now (JetStream did not answer, or a head whose entry is not the first yet):
    /// it waits on its lane.
    Later,
}

/// Whether a JetStream read found nothing.
fn not_found(kind: &RawMessageErrorKind) -> bool {
    matches!(kind, RawMessageErrorKind::NoMessageFound)
}

impl NatsWork {
    /// The subject where the jobs of `job`'s key wait while the key is held, for an ordered job.
    pub(crate) fn held_subject(&self, job: &Job) -> Option<String> {
        let order = job.order.as_ref()?;
        let lane = lane_token(&job.subscription_id, partition(&order.key));
        Some(format!(
            "{}.work.h.{lane}_{}",
            self.prefix,
            token(&order.key)
        ))
    }

    /// The first entry of `subject` at or after sequence `from`, if there is one.
    async fn held_entry(
        &self,
        subject: &str,
        from: u64,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, StoreError> {
        match self
            .work
            .get_first_raw_message_by_subject(subject, from)
            .await
        {
            Ok(entry) => Ok(Some(entry)),
            Err(e) if not_found(&e.kind()) => Ok(None),
            Err(e) => Err(shared("cannot read an ordered key's held jobs", e)),
        }
    }

    /// Where ordered `job`, pulled from its lane, stands with its key.
    pub(super) async fn turn(&self, job: &Job) -> Turn {
        let Some(subject) = self.held_subject(job) else {
            return Turn::Run(None);
        };
        let first = match self.held_entry(&subject, 0).await {
            Ok(first) => first,
            Err(e) => {
                tracing::warn!(error = %e, job = %job.id, "cannot tell whether an ordered job's key is held; it waits");
                return Turn::Later;
            }
        };
        match (job.order.as_ref().and_then(|o| o.held), first) {
            (None, None) => Turn::Run(None),
            (None, Some(first)) => {
                // Its own entry first: it was made its key's head, and its instance died before
                // it left the lane.
                let own = serde_json::from_slice::<Item>(&first.payload)
                    .is_ok_and(|entry| entry.job.id == job.id && entry.job.order == job.order);
                if own {
                    Turn::Run(Some(first.sequence))
                } else {
                    Turn::Hold
                }
            }
            (Some(seq), Some(first)) if first.sequence == seq => Turn::Run(Some(seq)),
            (Some(seq), first) => match self.work.get_raw_message(seq).await {
                // Its entry is still there, behind another: not its turn yet.
                Ok(_) => Turn::Later,
                // Its entry is gone: its key moved on after it was done (a copy made twice
                // after a crash), unless the entry went otherwise (its lane's held jobs put
                // back on the lane by the sweep): then it is a job like any other.
                Err(e) if not_found(&e.kind()) => match self.finished(&job.id).await {
                    Ok(true) => Turn::Done,
                    Ok(false) if first.is_some() => Turn::Hold,
                    Ok(false) => Turn::Run(None),
                    Err(_) => Turn::Later,
                },
                Err(_) => Turn::Later,
            },
        }
    }

    /// Puts `item`'s job, pulled as work-stream message `from`, behind the held jobs of its key
    /// (the key's head when it is the first): the sequence of its entry. The entry's
    /// `Nats-Msg-Id` names `from`, so the same message held again (its acknowledgement lost)
    /// makes no second entry, and any other copy of the job makes its own.
    pub(super) async fn hold(
        &self,
        item: &Item,
        from: &async_nats::jetstream::Message,
    ) -> Result<u64, StoreError> {
        let Some(subject) = self.held_subject(&item.job) else {
            return Err(StoreError::Shared("only an ordered job is held".into()));
        };
        let from = from
            .info()
            .map_err(|e| shared("cannot hold a job without its message", e))?
            .stream_sequence;
        self.publish_for_sequence(subject, item, format!("held.{from}"))
            .await
    }

    /// `job`, its key's head, is done: the next held job of its key goes to its lane as the new
    /// head (its entry's sequence with it), then the head's entry is deleted. Nothing for a job
    /// that was not a head.
    pub(super) async fn release(&self, job: &Job) -> Result<(), StoreError> {
        let (Some(subject), Some(seq)) = (
            self.held_subject(job),
            job.order.as_ref().and_then(|o| o.held),
        ) else {
            return Ok(());
        };
        if let Some(next) = self.held_entry(&subject, seq + 1).await? {
            let mut item: Item = serde_json::from_slice(&next.payload)
                .map_err(|e| shared("cannot read an ordered key's next held job", e))?;
            if let Some(order) = item.job.order.as_mut() {
                order.held = Some(next.sequence);
            }
            let id = format!("resume.{}", next.sequence);
            self.publish_as(self.job_subject(&item.job), &item, id)
                .await?;
        }
        match self.work.delete_message(seq).await {
            Ok(_) => Ok(()),
            // Gone already (the release made twice).
            Err(_)
                if self
                    .work
                    .get_raw_message(seq)
                    .await
                    .is_err_and(|e| not_found(&e.kind())) =>
            {
                Ok(())
            }
            Err(e) => Err(shared("cannot release an ordered key", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_the_partitions_and_stay_put() {
        let mut used = std::collections::HashSet::new();
        for record in 0..1_000 {
            used.insert(partition(&format!("sale.order:{record}")));
        }
        assert_eq!(used.len() as u64, PARTITIONS);
        assert_eq!(partition("sale.order:57"), partition("sale.order:57"));
        assert_ne!(lane_token("a", 1), lane_token("a", 2));
    }
}
