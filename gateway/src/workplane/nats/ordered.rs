//! Ordered delivery on NATS, for the whole cluster. An ordered subscription's jobs queue on
//! [`PARTITIONS`] lanes by the hash of their key (`<prefix>.work.o.<subscription and
//! partition>`), each with one job in flight in the whole cluster (its consumer's
//! `max_ack_pending` is 1), so the jobs of one key are attempted one at a time, in the order
//! they were published. That is the order their events were accepted because the fan-out
//! publishes an event's ordered jobs only once every earlier event of the events stream was
//! fanned out (the fan-out consumer's acknowledgement floor has reached it); the event's
//! stream sequence is its acceptance order. An ordered job never leaves its lane but to be
//! done or dead-lettered: a retry, a pause or a policy's wait is waited out on the lane, which
//! holds back the other keys of its partition (one in [`PARTITIONS`]), never another
//! partition's or subscription's. Ordered subscriptions deliver what they receive as it is (no
//! plugin, no enrichment): a plugin's deliveries would queue behind later jobs of the key.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{NatsWork, token};

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
