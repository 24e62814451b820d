//! Room on disk as the rest of the gateway sees it: what the configuration gives the store
//! ([`Room`]), why ingest refuses new events ([`Refusal`], one reason each), what
//! `/admin/status` shows ([`RoomStatus`]), and the store's calls for them. The decisions are
//! `space.rs`'s; this module only carries them.

use serde::Serialize;

use super::{Store, StoreError};

/// How much room the store is given (`[storage]`); read again by every maintenance round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Room {
    /// The budget of live data (`max_disk_bytes`), if any.
    pub max_live_bytes: Option<u64>,
    /// Free space the file system must keep (`min_free_bytes`); 0: not watched.
    pub min_free_bytes: u64,
    /// Size of the reserve file (`reserve_bytes`); 0: none.
    pub reserve_bytes: u64,
}

/// Why new events are refused now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Live data reached the budget (`507 storage_full`).
    StorageFull {
        /// Live data now.
        live_bytes: u64,
        /// The budget.
        budget: u64,
    },
    /// The disk is full or nearly (`503 storage_unavailable`).
    DiskFull {
        /// Free space on the file system at the last look.
        free_bytes: u64,
        /// The free space it must keep.
        min_free_bytes: u64,
    },
    /// Writes cannot be made durable (`503 storage_unavailable`).
    Unavailable(String),
}

impl Refusal {
    /// The reason's fixed code (metrics, `/readyz`).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::StorageFull { .. } => "storage_full",
            Refusal::DiskFull { .. } => "disk_full",
            Refusal::Unavailable(_) => "storage_unavailable",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::StorageFull { live_bytes, budget } => write!(
                f,
                "the store holds {live_bytes} bytes of live data, its budget is {budget}; \
                 new events wait until deliveries and retention make room"
            ),
            Refusal::DiskFull {
                free_bytes,
                min_free_bytes,
            } => write!(
                f,
                "the disk holding the database has {free_bytes} bytes free, less than the \
                 {min_free_bytes} it must keep; new events wait until deliveries and retention \
                 make room"
            ),
            Refusal::Unavailable(why) => write!(f, "writes cannot be made durable: {why}"),
        }
    }
}

/// Room on disk, for `/admin/status`.
#[derive(Debug, Clone, Serialize)]
pub struct RoomStatus {
    /// The budget of live data.
    pub budget_bytes: Option<u64>,
    /// The learned capacity, while the disk is short of room.
    pub learned_capacity_bytes: Option<u64>,
    /// Free space on the file system at the last look.
    pub free_bytes: Option<u64>,
    /// The free space it must keep.
    pub min_free_bytes: u64,
    /// The reserve file's size, and whether it is in place.
    pub reserve_bytes: u64,
    /// Whether the reserve file is in place.
    pub reserve_in_place: bool,
    /// Why new events are paused, if they are: `storage_full` or `disk_full`.
    pub paused: Option<&'static str>,
    /// Since when (ms since the epoch).
    pub paused_since_ms: Option<u64>,
}

impl Store {
    /// Why new events are refused now, if they are: writes failing, live data at its budget,
    /// or the disk short of room (see `space.rs`). Cheap enough for every ingest request.
    pub fn refusal(&self) -> Option<Refusal> {
        if let Some(why) = self.unavailable() {
            return Some(Refusal::Unavailable(why));
        }
        self.inner.space.check(
            self.live_bytes(),
            || self.size_on_disk(),
            crate::time::now_ms(),
        )
    }

    /// Room on disk, for `/admin/status`.
    pub fn room(&self) -> RoomStatus {
        self.inner.space.status()
    }

    /// A write failed for lack of space or an I/O error: the reserve file goes now, so that
    /// what must still be written (deliveries' outcomes, pruning, the flush) has room.
    pub fn write_failed(&self, error: &StoreError) {
        if let StoreError::Sled(sled::Error::Io(_)) = error {
            self.inner
                .poisoned
                .store(true, std::sync::atomic::Ordering::Release);
        }
        if matches!(
            error,
            StoreError::Sled(sled::Error::Io(_)) | StoreError::Unavailable(_)
        ) {
            self.inner.space.release_reserve("a write failed");
        }
    }

    /// Whether the database cannot take writes again until it is reopened: sled stops every
    /// write for good after an I/O error (a full disk included), so a failed flush or write
    /// means closing it and opening it again (`lib.rs::run` does).
    pub fn needs_reopen(&self) -> bool {
        self.inner.durability.failing()
            || self
                .inner
                .poisoned
                .load(std::sync::atomic::Ordering::Acquire)
    }
}
