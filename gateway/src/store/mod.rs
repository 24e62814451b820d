//! Durable state on sled: accepted events, the fan-out backlog, jobs, attempt history and
//! dead letters.
//!
//! This module owns every byte on disk and the rules that keep it consistent. Sled
//! transactions cost more than the rest of the data path, so every multi-record change is a
//! single-tree atomic batch (see `queue.rs`) or a write order chosen so that a crash between
//! two writes can cause a repeated delivery but never a lost one; each function says how.
//! It never talks to the network and never runs plugins.
//!
//! Trees:
//! - `events`: event id → event (JSON), the one copy of each payload;
//! - `dedup`: source + explicit id, or source + body hash → first event id and time;
//! - `queue`: the backlog of events not yet fanned out, jobs, attempts, dead letters and the
//!   per-subscription delivery index, by key prefix (`queue.rs`), and the group records that
//!   hold an event's new jobs until each has an outcome (`groups.rs`);
//! - `store_meta`: the live-data tally saved at a clean close (`tally.rs`).
//!
//! Besides the trees, the folder holds the reserve file (`space.rs`), room kept for when the
//! disk fills.

mod answers;
mod compact;
mod counted;
mod durability;
mod events;
mod groups;
mod job;
mod maintenance;
mod queue;
mod reserve;
mod retention;
mod room;
mod space;
mod tally;

use std::path::Path;
use std::sync::Arc;

pub use compact::{Compacted, compact};
pub use durability::Durability;
pub use events::{Accepted, DedupKey};
pub use groups::GROUP_SIZE;
pub use job::{
    Attempt, BadJobId, CallFailure, DeadLetter, DeadReason, Format, Job, JobId, JobKind, JobPart,
    JobSummary, Member, Order,
};
pub use maintenance::{PASS_BUDGET, Policy, Report};
pub use queue::{Journey, MAX_BATCH};
pub use reserve::RESERVE_FILE;
pub use retention::{Pruned, Retention, event_time_ms};
pub use room::{Refusal, Room, RoomStatus};
pub use tally::{Kind, KindCount, LiveData};

use counted::Counted;
use tally::{META, SAVED_TALLY, Tally, Which};

/// Why storage failed. These are server errors: the client is not at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// Writes cannot be made durable now (a failed flush: a full disk, an I/O error); they are
    /// retried, and the store recovers by itself.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A record is larger than the shared work plane takes (NATS `max_payload`).
    #[error("{size} bytes is more than the shared queue takes ({limit} bytes)")]
    TooLarge {
        /// The record's size.
        size: usize,
        /// The most it may be.
        limit: usize,
    },
    /// The shared control plane (NATS JetStream, `[storage] engine = "nats"`) failed or could
    /// not be reached.
    #[error("shared control plane error: {0}")]
    Shared(String),
    /// A stored record could not be decoded.
    #[error("corrupt record in `{tree}`: {message}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// The decoding error.
        message: String,
    },
}

impl StoreError {
    /// Whether the disk had no room for a write.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            Self::Sled(sled::Error::Io(e)) => e.kind() == std::io::ErrorKind::StorageFull,
            Self::Unavailable(message) => message.contains("No space left"),
            _ => false,
        }
    }

    /// Whether the database is held by another handle (another process, or this one's
    /// previous handle still closing).
    pub fn is_locked(&self) -> bool {
        matches!(self, Self::Sled(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock"))
    }
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => Self::Sled(e),
        }
    }
}

/// Handle on the gateway's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    events: Counted,
    dedup: Counted,
    queue: Counted,
    meta: sled::Tree,
    /// Live data, by kind (see `tally.rs`).
    tally: Arc<Tally>,
    /// Room on disk and the pause it decides (see `space.rs`).
    space: space::Space,
    /// When the control plane's trees were last counted (ms since the epoch).
    control_counted_ms: std::sync::atomic::AtomicU64,
    /// Set when a write failed with an I/O error: sled takes no more until reopened.
    poisoned: std::sync::atomic::AtomicBool,
    durability: Durability,
    /// Serialises identical submissions (see [`Store::accept`]).
    accept_locks: Vec<std::sync::Mutex<()>>,
    /// Where the last retention pass stopped in the dedup tree.
    dedup_cursor: std::sync::Mutex<Vec<u8>>,
    /// The last maintenance round.
    report: std::sync::Mutex<Option<Report>>,
    /// Which jobs kept in group records are still open (see `groups.rs`).
    open: groups::OpenMembers,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// How long opening waits for the database's lock: a store just closed in this process (a
/// restart, a stage's supervisor) releases it only once sled's own background threads end.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled in `path`, waiting up to [`LOCK_PATIENCE`] while another handle holds its lock.
fn open_db(path: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(128 * 1024 * 1024)
            // Durability comes from our own batched flushes, not from a timer.
            .flush_every_ms(None)
            .open();
        match opened {
            // sled says so only in its message: the lock is held (by a handle closing, or by
            // another process, which waiting does not help and which the error then names).
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl Store {
    /// Opens (or creates) the database in `path`, with no budget, no watch of the disk's free
    /// space and no reserve file (tools and tests; the gateway uses [`Store::open_with`]).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Room::default())
    }

    /// Opens (or creates) the database in `path` with `room` on disk: the reserve file is
    /// released first on a full disk (so that sled can open), or made when there is room.
    /// Live data is taken from the tally saved at the last clean close, else counted.
    pub fn open_with(path: &Path, room: Room) -> Result<Self, StoreError> {
        compact::recover(path).map_err(sled::Error::Io)?;
        remove_unfinished_snapshots(path).map_err(sled::Error::Io)?;
        let space = space::Space::open(path, space::fitted(path, room));
        let db = open_db(path)?;
        compact::clean_up(path).map_err(sled::Error::Io)?;
        let tree = |name: &str| db.open_tree(name);
        let queue = tree("queue")?;
        migrate_legacy_trees(&db, &queue)?;
        let tally = Arc::new(Tally::default());
        let counted = |tree: sled::Tree, which| Counted::new(tree, which, tally.clone());
        let inner = Inner {
            events: counted(tree("events")?, Which::Events),
            dedup: counted(tree("dedup")?, Which::Dedup),
            queue: counted(queue, Which::Queue),
            meta: tree(META)?,
            tally: tally.clone(),
            space,
            control_counted_ms: Default::default(),
            poisoned: Default::default(),
            durability: Durability::new(db.clone()),
            accept_locks: (0..events::ACCEPT_STRIPES)
                .map(|_| Default::default())
                .collect(),
            dedup_cursor: Default::default(),
            report: Default::default(),
            open: Default::default(),
            db,
        };
        let store = Self {
            inner: Arc::new(inner),
        };
        store.restore_tally()?;
        Ok(store)
    }

    /// The database, for modules that keep their own trees (apps, tokens, API subscriptions).
    /// Their writes are made durable by [`Store::durable`] like everyone else's.
    pub fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    /// Waits until everything written so far is on disk. Concurrent callers share one flush.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.inner.durability.wait().await
    }

    /// Under load, the shortest time between two flushes (see [`Durability::set_commit_delay`]).
    pub fn set_commit_delay(&self, delay: std::time::Duration) {
        self.inner.durability.set_commit_delay(delay);
    }

    /// Why writes cannot be made durable now, while flushes fail (they are retried).
    pub fn unavailable(&self) -> Option<String> {
        if self
            .inner
            .poisoned
            .load(std::sync::atomic::Ordering::Acquire)
            && !self.inner.durability.failing()
        {
            return Some("a write failed with an I/O error".into());
        }
        if self.inner.durability.failing() {
            Some(
                self.inner
                    .durability
                    .last_error()
                    .unwrap_or_else(|| "flush failed".into()),
            )
        } else {
            None
        }
    }

    /// Flushes synchronously.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// At shutdown, when nothing writes any more: saves the tally (so that the next start
    /// need not count every record) and flushes. On a disk short of room, the reserve file
    /// goes first.
    pub fn close(&self) -> Result<(), StoreError> {
        if !self.needs_reopen() {
            let _ = self
                .inner
                .meta
                .insert(SAVED_TALLY, self.inner.tally.encode());
        }
        // sled takes no write after a failed one, so the room comes before the flush.
        if self.inner.space.short_of_room() {
            self.inner
                .space
                .release_reserve("the disk is short of room at shutdown");
        }
        self.flush()
    }

    /// Counts for the admin status (each walks a tree: not for the data path).
    pub fn counts(&self) -> Counts {
        let (pending, queued, dead) = self.queue_counts();
        Counts {
            events: self.inner.events.len(),
            pending,
            queued,
            dead,
        }
    }
}

/// How much is stored, for the admin status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Events stored.
    pub events: usize,
    /// Events waiting for fan-out.
    pub pending: usize,
    /// Jobs queued (due, waiting for a retry, or running).
    pub queued: usize,
    /// Dead letters.
    pub dead: usize,
}

/// Removes the snapshot files sled did not finish writing (`snap.<lsn>.generating`; it renames
/// a snapshot into place once written). sled takes any `snap.` file for a snapshot, so one cut
/// short by a full disk, or by a kill during an open, would make the database unreadable.
pub(super) fn remove_unfinished_snapshots(path: &Path) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %name, "removing a snapshot sled did not finish writing");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Moves the records of the layout before the `queue` tree (one tree per kind) into it, with
/// their prefixes, then drops the old trees. A no-op on a database that has none.
fn migrate_legacy_trees(db: &sled::Db, queue: &sled::Tree) -> Result<(), StoreError> {
    const LEGACY: [(&str, Option<u8>); 6] = [
        ("pending", Some(b'p')),
        ("jobs", Some(b'j')),
        ("attempts", Some(b'a')),
        ("dead", Some(b'd')),
        ("deliveries_by_subscription", Some(b'x')),
        // The old schedule is rebuilt from the jobs: nothing to carry over.
        ("schedule", None),
    ];
    let names = db.tree_names();
    for (name, prefix) in LEGACY {
        if !names.iter().any(|n| n.as_ref() == name.as_bytes()) {
            continue;
        }
        let old = db.open_tree(name)?;
        if let Some(prefix) = prefix {
            let mut moved = 0usize;
            for entry in old.iter() {
                let (key, value) = entry?;
                queue.insert([&[prefix][..], &key].concat(), value)?;
                moved += 1;
            }
            if moved > 0 {
                tracing::info!(tree = name, records = moved, "moved into the queue tree");
            }
        }
        queue.flush()?;
        db.drop_tree(name)?;
    }
    Ok(())
}

/// Reads a JSON record of `tree`; one that does not read is [`StoreError::Corrupt`].
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        message: e.to_string(),
    })
}

/// Writes a record as JSON.
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain data: serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_cut_short_does_not_stop_the_database_from_opening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.db().insert("k", "v").expect("insert");
            store.close().expect("close");
        }
        // What a full disk (or a kill) leaves when sled's snapshot at open is cut short.
        std::fs::write(dir.path().join("snap.00000000000FFFFF.generating"), b"cut").expect("write");
        let store = Store::open(dir.path()).expect("opens all the same");
        assert_eq!(
            store.db().get("k").expect("get").as_deref(),
            Some(&b"v"[..])
        );
    }
}
