//! Durable state on sled: accepted events, the fan-out backlog, the delivery queue, attempt
//! history and dead letters.
//!
//! This module owns every byte on disk and the rules that keep it consistent. Sled
//! transactions cost more than the rest of the data path, so the hottest operations (accept,
//! lease, complete, retry) use single-tree atomic batches and a write order chosen so that a
//! crash between two writes can cause a repeated delivery but never a lost one; each function
//! says how. Queueing an event's jobs (with clearing its backlog entry), dead-lettering and
//! replay are transactions. It never talks to the network and never runs plugins.
//!
//! Trees:
//! - `events`: event id → event (JSON);
//! - `pending`: sequence → event id, events accepted but not yet fanned out;
//! - `dedup`: source + explicit id, or source + body hash → first event id and time;
//! - `jobs`: job id → job; `schedule`: due time + job id → (), the queue order;
//! - `attempts`: job id + attempt number → attempt; `dead`: job id → dead letter;
//! - `deliveries_by_subscription`: subscription id + job id → job summary, written with the
//!   job, so a subscription's deliveries can be listed after they left the queue.

mod durability;
mod events;
mod jobs;

use std::path::Path;
use std::sync::Arc;

pub use durability::Durability;
pub use events::{Accepted, DedupKey};
pub use jobs::{Attempt, DeadLetter, Job, JobKind, JobSummary, Lease};

/// Why storage failed. These are server errors: the client is not at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record in `{tree}`: {message}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// The decoding error.
        message: String,
    },
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
    events: sled::Tree,
    pending: sled::Tree,
    dedup: sled::Tree,
    jobs: sled::Tree,
    schedule: sled::Tree,
    attempts: sled::Tree,
    dead: sled::Tree,
    by_subscription: sled::Tree,
    durability: Durability,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database in `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(128 * 1024 * 1024)
            // Durability comes from our own batched flushes, not from a timer.
            .flush_every_ms(None)
            .open()?;
        let tree = |name: &str| db.open_tree(name);
        let inner = Inner {
            events: tree("events")?,
            pending: tree("pending")?,
            dedup: tree("dedup")?,
            jobs: tree("jobs")?,
            schedule: tree("schedule")?,
            attempts: tree("attempts")?,
            dead: tree("dead")?,
            by_subscription: tree("deliveries_by_subscription")?,
            durability: Durability::new(db.clone()),
            db,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
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

    /// Flushes synchronously (shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// Counts for the admin status (each walks a tree: not for the data path).
    pub fn counts(&self) -> Counts {
        Counts {
            events: self.inner.events.len(),
            pending: self.inner.pending.len(),
            queued: self.inner.schedule.len(),
            dead: self.inner.dead.len(),
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
    /// Jobs queued (due or leased).
    pub queued: usize,
    /// Dead letters.
    pub dead: usize,
}

fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        message: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain data: serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
