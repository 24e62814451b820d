//! What the polling source keeps in sled (tree `odoo_poll`): per source and model, the cursor
//! (the last change made durable), the start point (the floor of the overlap window) and,
//! for the deletion check, the ids seen last time.
//!
//! Plain reads and writes; the poller decides when. Writes here are made durable by the
//! store's next flush like everyone else's: a cursor lost in a crash only means a page read
//! again, whose events the dedup keys recognise.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::Snapshot;
use crate::store::{Store, StoreError};

/// The sled tree of cursors, start points and id sets.
const TREE: &str = "odoo_poll";

/// How far a model has been read: the last change made durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Its `write_date`.
    pub write_date: String,
    /// Its id.
    pub id: i64,
}

impl Cursor {
    /// Whether `self` comes after `other` in `(write_date, id)` order.
    pub fn is_after(&self, other: &Cursor) -> bool {
        (self.write_date.as_str(), self.id) > (other.write_date.as_str(), other.id)
    }

    /// Where a poll starts: `overlap` before the cursor (from the first id of that second),
    /// but never before `floor`.
    pub fn rewound(&self, overlap: Duration, floor: Option<&Cursor>) -> Cursor {
        let seconds = i64::try_from(overlap.as_secs()).unwrap_or(i64::MAX);
        let at = match super::time::to_seconds(&self.write_date) {
            Some(at) if seconds > 0 => Cursor {
                write_date: super::time::from_seconds(at.saturating_sub(seconds).max(0)),
                id: 0,
            },
            _ => self.clone(),
        };
        match floor {
            Some(floor) if floor.is_after(&at) => floor.clone(),
            _ => at,
        }
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

/// Records the first cursor of `source`'s `model`, as its cursor and its floor.
pub fn save_start(store: &Store, source: &str, model: &str, c: &Cursor) -> Result<(), StoreError> {
    put(store, "start", source, model, c)?;
    save_cursor(store, source, model, c)
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
/// `/admin/status`.
pub fn status(store: &Store, snapshot: &Snapshot) -> Vec<Value> {
    let mut polled = Vec::new();
    for source in snapshot.sources.values() {
        let Some(poll) = source.odoo.as_ref().and_then(|o| o.poll.as_ref()) else {
            continue;
        };
        for model in &poll.models {
            let at = cursor(store, &source.name, &model.model).ok().flatten();
            polled.push(json!({ "source": source.name, "model": model.model, "cursor": at }));
        }
    }
    polled.sort_by_key(|v| (v["source"].to_string(), v["model"].to_string()));
    polled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(write_date: &str, id: i64) -> Cursor {
        Cursor {
            write_date: write_date.into(),
            id,
        }
    }

    #[test]
    fn the_overlap_rewinds_to_the_first_id_but_not_past_the_floor() {
        let c = at("2024-05-14 09:12:40", 12);
        assert_eq!(c.rewound(Duration::ZERO, None), c);
        assert_eq!(
            c.rewound(Duration::from_secs(60), None),
            at("2024-05-14 09:11:40", 0)
        );
        let floor = at("2024-05-14 09:12:00", 7);
        assert_eq!(c.rewound(Duration::from_secs(60), Some(&floor)), floor);
        assert!(c.is_after(&floor) && !floor.is_after(&c) && !c.is_after(&c));
    }
}
