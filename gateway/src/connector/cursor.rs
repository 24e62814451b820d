//! Where polling stands, and what it keeps in sled (tree `odoo_poll`): per source and
//! model, the cursor, the start floor and, for the deletion check, the ids seen last time.
//!
//! Odoo keeps `write_date` to the microsecond but shows it, and reads a domain's datetime, to
//! the second; domains compare at full precision (`write_date > 'W'` matches `W.25`). So the
//! cursor is a second, not a record: *every change dated before second `W` was read*
//! ([`super::plan`] reads on from it). The cursor never passes the last second seen: changes
//! can still come into it (another write later in that second), so the next poll reads it
//! again, and the dedup keys recognise what was delivered, until it has settled
//! ([`SETTLE`]). A change that commits after a later second was read is dated before the
//! cursor: the `overlap` option reads that far back at every poll.
//!
//! Plain reads and writes ([`Keeper`]: in sled, or on the NATS engine in the bucket every
//! instance shares, see [`super::shared`]); the poller decides when. Writes to sled are made
//! durable by the store's next flush like everyone else's: a cursor lost in a crash only
//! means a stretch read again, whose events the dedup keys recognise.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::shared::{Shared, Stored};
use crate::config::Snapshot;
use crate::control::ControlPlane;
use crate::odoo::time::{from_seconds, to_seconds};
use crate::store::{Store, StoreError};

/// The sled tree of cursors, start points and id sets.
const TREE: &str = "odoo_poll";

/// How far a model has been read: every change dated before the second `write_date` was,
/// and of that second the changes up to `id` (the next poll reads that second again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The second (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub write_date: String,
    /// The highest id read in that second so far (`0`: none).
    pub id: i64,
    /// Seconds up to this one (since the epoch) were read by a poll that began once they had
    /// settled ([`settled_before`]): no poll reads them again, even within the overlap or as
    /// the open second.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub settled: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// How long after a second, beyond the overlap, the gateway's clock must be before that
/// second is taken to get no more changes: room for a clock that differs from Odoo's and
/// for a commit's lag. Until then the open second and the overlap are read again at every
/// poll; after, an idle model costs one empty read per poll, and nothing is read again once
/// the dedup keys that recognise it may be gone (`[storage] retention`).
pub const SETTLE: Duration = Duration::from_secs(300);

/// The last second that had settled when a poll began at `began` (seconds since the epoch,
/// by the gateway's clock) with `overlap`.
pub fn settled_before(began: i64, overlap: Duration) -> i64 {
    began - whole_seconds(overlap) - whole_seconds(SETTLE)
}

/// `d` in seconds, rounded up.
fn whole_seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i64::MAX)
}

impl Cursor {
    /// The cursor at `second` (seconds since the epoch), id `id`.
    pub fn at(second: i64, id: i64) -> Self {
        Self {
            write_date: from_seconds(second),
            id,
            settled: 0,
        }
    }

    /// Its second, since the epoch (`0` for a cursor of another shape, which then reads
    /// everything again: duplicates are recognised, nothing is skipped).
    pub fn second(&self) -> i64 {
        to_seconds(&self.write_date).unwrap_or(0)
    }

    /// Whether `self` comes after `other` in `(second, id)` order.
    pub fn is_after(&self, other: &Cursor) -> bool {
        (self.second(), self.id) > (other.second(), other.id)
    }

    /// The second a poll starts reading at: `overlap` (rounded up to whole seconds) before
    /// the cursor, but never before `floor` nor at a second that settled before it was read.
    pub fn start(&self, overlap: Duration, floor: Option<&Cursor>) -> i64 {
        let at = self.second().saturating_sub(whole_seconds(overlap)).max(0);
        let at = floor.map_or(at, |f| at.max(f.second()));
        at.max(self.settled.saturating_add(1).min(self.second() + 1))
    }

    /// Whether a change at `second`, id `id` is at or before this cursor taken as a start
    /// floor (so not to be delivered).
    pub fn covers(&self, second: i64, id: i64) -> bool {
        (second, id) <= (self.second(), self.id)
    }
}

fn key(kind: &str, source: &str, model: &str) -> Vec<u8> {
    [kind, source, model].join("\0").into_bytes()
}

fn get<T: serde::de::DeserializeOwned>(
    store: &Store,
    kind: &str,
    source: &str,
    model: &str,
) -> Result<Option<T>, StoreError> {
    let tree = store.db().open_tree(TREE)?;
    Ok(tree
        .get(key(kind, source, model))?
        .and_then(|raw| serde_json::from_slice(&raw).ok()))
}

fn put<T: Serialize>(
    store: &Store,
    kind: &str,
    source: &str,
    model: &str,
    value: &T,
) -> Result<(), StoreError> {
    let tree = store.db().open_tree(TREE)?;
    let raw = serde_json::to_vec(value).unwrap_or_default();
    tree.insert(key(kind, source, model), raw)?;
    Ok(())
}

/// The stored cursor of `source`'s `model`.
pub fn cursor(store: &Store, source: &str, model: &str) -> Result<Option<Cursor>, StoreError> {
    get(store, "cursor", source, model)
}

/// Moves the cursor of `source`'s `model`.
pub fn save_cursor(store: &Store, source: &str, model: &str, c: &Cursor) -> Result<(), StoreError> {
    put(store, "cursor", source, model, c)
}

/// Where `source`'s `model` started being polled: nothing before it is read.
pub fn start_floor(store: &Store, source: &str, model: &str) -> Result<Option<Cursor>, StoreError> {
    get(store, "start", source, model)
}

/// The ids of `source`'s `model` seen at the last deletion check.
pub fn known_ids(
    store: &Store,
    source: &str,
    model: &str,
) -> Result<Option<BTreeSet<i64>>, StoreError> {
    get(store, "ids", source, model)
}

/// Records the ids of `source`'s `model` seen now.
pub fn save_ids(
    store: &Store,
    source: &str,
    model: &str,
    ids: &BTreeSet<i64>,
) -> Result<(), StoreError> {
    put(store, "ids", source, model, ids)
}

/// Forgets where `source`'s `model` was read to: the next poll starts from `start` again
/// (changes already delivered are recognised by their dedup keys while their events are
/// kept). For a replay from the start, or a test of what a crash before a cursor write does.
pub fn reset_cursor(store: &Store, source: &str, model: &str) -> Result<(), StoreError> {
    let tree = store.db().open_tree(TREE)?;
    tree.remove(key("cursor", source, model))?;
    tree.remove(key("start", source, model))?;
    Ok(())
}

/// Every polled model of `snapshot` with its cursor (`null` before its first poll), for
/// `/admin/status`; on the NATS engine also which instance polls it (`polled_by`, and
/// `polled_here` on that one).
pub async fn status(store: &Store, control: &ControlPlane, snapshot: &Snapshot) -> Vec<Value> {
    let mut polled = Vec::new();
    let polls = snapshot
        .sources
        .values()
        .any(|s| s.odoo.as_ref().is_some_and(|o| o.poll.is_some()));
    if !polls {
        // Nothing to show, and no bucket to make.
        return polled;
    }
    let keeper = Keeper::of(store, control, snapshot).await.ok();
    for source in snapshot.sources.values() {
        let Some(poll) = source.odoo.as_ref().and_then(|o| o.poll.as_ref()) else {
            continue;
        };
        for model in &poll.models {
            let at = match &keeper {
                Some(k) => k.load(&source.name, &model.model).await.ok().flatten(),
                None => None,
            };
            let mut entry = json!({ "source": source.name, "model": model.model, "cursor": at });
            if let Some(shared) = keeper.as_ref().and_then(Keeper::shared) {
                let holder = shared
                    .holder(&source.name, &model.model)
                    .await
                    .ok()
                    .flatten();
                entry["polled_by"] = json!(holder.as_ref().map(|h| &h.0));
                entry["polled_here"] = json!(holder.is_some_and(|h| h.1));
            }
            polled.push(entry);
        }
    }
    polled.sort_by_key(|v| (v["source"].to_string(), v["model"].to_string()));
    polled
}

/// Where the running gateway keeps its cursors: this instance's sled, or on the NATS engine
/// the bucket every instance shares ([`Shared`]).
#[derive(Debug, Clone)]
pub enum Keeper {
    /// The `odoo_poll` tree.
    Sled(Store),
    /// The `odoo_cursors` bucket.
    Shared(Arc<Shared>),
}

impl Keeper {
    /// The keeper of the engine the gateway runs on: `store`, or on NATS the buckets of
    /// `control`'s connection (opened, and made when missing, with `snapshot`'s settings).
    pub async fn of(
        store: &Store,
        control: &ControlPlane,
        snapshot: &Snapshot,
    ) -> Result<Self, StoreError> {
        Ok(match Shared::open(control, snapshot).await? {
            Some(shared) => Self::Shared(shared),
            None => Self::Sled(store.clone()),
        })
    }

    /// The shared buckets, on the NATS engine.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        match self {
            Self::Sled(_) => None,
            Self::Shared(s) => Some(s),
        }
    }

    /// The cursor of `source`'s `model`.
    pub async fn load(&self, source: &str, model: &str) -> Result<Option<Cursor>, StoreError> {
        match self {
            Self::Sled(store) => cursor(store, source, model),
            Self::Shared(s) => Ok(s.stored(source, model).await?.cursor),
        }
    }

    /// The start floor of `source`'s `model`.
    pub async fn load_floor(
        &self,
        source: &str,
        model: &str,
    ) -> Result<Option<Cursor>, StoreError> {
        match self {
            Self::Sled(store) => start_floor(store, source, model),
            Self::Shared(s) => Ok(s.stored(source, model).await?.start),
        }
    }

    /// Moves the cursor of `source`'s `model` to `at`.
    pub async fn save(&self, source: &str, model: &str, at: &Cursor) -> Result<(), StoreError> {
        match self {
            Self::Sled(store) => save_cursor(store, source, model, at),
            Self::Shared(s) => {
                let mut stored = s.stored(source, model).await?;
                stored.cursor = Some(at.clone());
                s.store(source, model, &stored).await
            }
        }
    }

    /// Sets the start floor and the cursor of `source`'s `model`.
    pub async fn store_start(
        &self,
        source: &str,
        model: &str,
        floor: &Cursor,
        at: &Cursor,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sled(store) => {
                put(store, "start", source, model, floor)?;
                save_cursor(store, source, model, at)
            }
            Self::Shared(s) => {
                let stored = Stored {
                    cursor: Some(at.clone()),
                    start: Some(floor.clone()),
                };
                s.store(source, model, &stored).await
            }
        }
    }

    /// Forgets the cursor and start floor of `source`'s `model`: its next poll is a first one.
    pub async fn forget(&self, source: &str, model: &str) -> Result<(), StoreError> {
        match self {
            Self::Sled(store) => reset_cursor(store, source, model),
            Self::Shared(s) => s.store(source, model, &Stored::default()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 1_717_200_000;

    #[test]
    fn the_start_is_the_overlap_before_the_cursor_but_not_before_the_floor() {
        let c = Cursor::at(W, 12);
        assert_eq!(c.start(Duration::ZERO, None), W);
        assert_eq!(c.start(Duration::from_secs(60), None), W - 60);
        assert_eq!(c.start(Duration::from_millis(1500), None), W - 2);
        let floor = Cursor::at(W - 30, 7);
        assert_eq!(c.start(Duration::from_secs(60), Some(&floor)), W - 30);
        assert!(floor.covers(W - 30, 7) && !floor.covers(W - 30, 8) && floor.covers(W - 31, 99));
        assert!(c.is_after(&floor) && !floor.is_after(&c) && !c.is_after(&c));
        assert!(Cursor::at(W, 0).is_after(&Cursor::at(W - 1, i64::MAX)));
    }

    #[test]
    fn settled_seconds_are_not_read_again() {
        let overlap = Duration::from_secs(10);
        // Settled inside the overlap: the poll starts after them.
        let c = Cursor {
            settled: W - 4,
            ..Cursor::at(W, 3)
        };
        assert_eq!(c.start(overlap, None), W - 3);
        // The open second settled too: only the seconds after it are read.
        let idle = Cursor {
            settled: W + 500,
            ..Cursor::at(W, 3)
        };
        assert_eq!(idle.start(overlap, None), W + 1);
        // A poll that began now: what is older than the overlap and the settling time.
        let now = W + 1000;
        assert_eq!(settled_before(now, overlap), W + 1000 - 10 - 300);
        assert_eq!(
            settled_before(now, Duration::from_millis(1500)),
            W + 1000 - 2 - 300
        );
        // What is written shows nothing when nothing settled.
        let shown = serde_json::to_value(Cursor::at(W, 3)).unwrap();
        assert!(shown.get("settled").is_none(), "{shown}");
    }
}
