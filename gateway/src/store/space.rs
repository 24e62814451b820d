//! Room for the store on disk: the live-data budget, the file system's free space and the
//! reserve file; whether new events are paused for lack of room, and why.
//!
//! Ingest asks `Store::refusal` (`room.rs`) before it writes: a few atomic reads, live data compared
//! with the limit, and at most every [`LOOK_EVERY_MS`] a look at the file system's free
//! space. A pause ends only in maintenance ([`Space::review`], after pruning), once live data
//! is below [`ROOM_AGAIN`] of the limit, so it does not flap.
//!
//! The limit on live data ([`super::tally`]) is the lower of:
//! - the budget (`max_disk_bytes`), the operator's;
//! - the learned capacity: the live data held when the database grew into the file system's
//!   last `min_free_bytes`. sled reuses what pruning frees, so below that much live data the
//!   folder need not grow again; a database that still grows while the disk is that full
//!   teaches a lower capacity. It is forgotten once the disk has room again (the reserve in
//!   place and twice `min_free_bytes` free).
//!
//! The reserve file ([`RESERVE_FILE`], `reserve_bytes` preallocated in the folder) is room
//! kept for when the disk fills anyway (another program, a burst between two looks): it goes
//! when free space falls below half of `min_free_bytes`, when writes fail, and at start-up on
//! a full disk (so that sled can open and write its snapshot); it is made again when there is
//! room. It never holds data.
//!
//! This module deletes nothing but the reserve file, and on the ingest path does no I/O but
//! a `statvfs` and a `stat` now and then.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::reserve::{self, RESERVE_FILE};
use super::room::{Refusal, Room, RoomStatus};

/// Ingest looks at the file system's free space at most this often (milliseconds).
const LOOK_EVERY_MS: u64 = 50;
/// A pause ends once live data is below this share of the limit (hysteresis).
pub(super) const ROOM_AGAIN: f64 = 0.9;
/// Growth of the folder that counts as growing (sled allocates 512 KiB segments).
const GROWTH_SLACK: u64 = 1 << 20;

const ACCEPTING: u8 = 0;
const BUDGET: u8 = 1;
const DISK: u8 = 2;

/// The store's room on disk and the pause it decides.
#[derive(Debug)]
pub(super) struct Space {
    dir: PathBuf,
    cause: AtomicU8,
    /// The limit on live data; `u64::MAX` without one.
    limit: AtomicU64,
    min_free: AtomicU64,
    /// Free bytes at the last look; `u64::MAX` before the first.
    free: AtomicU64,
    looked_ms: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    room: Room,
    learned: Option<u64>,
    /// The folder's size when the last pause for the disk ended.
    resumed_size: Option<u64>,
    since_ms: u64,
    reserve_in_place: bool,
}

/// Free bytes for unprivileged writers on the file system holding `dir`.
pub(super) fn free_space(dir: &Path) -> Option<u64> {
    fs2::available_space(dir).ok()
}

/// `room` fitted to the file system holding `dir`: at most a quarter of it kept free and an
/// eighth in the reserve, so that defaults meant for a server's disk do not leave a small
/// one with no room at all.
pub(super) fn fitted(dir: &Path, room: Room) -> Room {
    let Ok(total) = fs2::total_space(dir) else {
        return room;
    };
    Room {
        min_free_bytes: room.min_free_bytes.min(total / 4),
        reserve_bytes: room.reserve_bytes.min(total / 8),
        ..room
    }
}

impl Space {
    /// Room for the database in `dir`, before it is opened (`room` as [`fitted`]): a reserve
    /// file of another size than the configuration's goes; on a disk with less than `min_free_bytes` free the reserve is
    /// released, so that sled can open; with room, it is made.
    pub(super) fn open(dir: &Path, room: Room) -> Self {
        let _ = std::fs::create_dir_all(dir);
        let space = Self {
            dir: dir.to_owned(),
            cause: AtomicU8::new(ACCEPTING),
            limit: AtomicU64::new(room.max_live_bytes.unwrap_or(u64::MAX)),
            min_free: AtomicU64::new(room.min_free_bytes),
            free: AtomicU64::new(u64::MAX),
            looked_ms: AtomicU64::new(0),
            state: Mutex::new(State {
                room,
                ..State::default()
            }),
        };
        let path = space.reserve_path();
        let _ = reserve::remove(&path.with_extension("partial"));
        let present = std::fs::metadata(&path).map(|m| m.len()).ok();
        let mut state = space.lock();
        state.reserve_in_place = present == Some(room.reserve_bytes) && room.reserve_bytes > 0;
        if present.is_some() && !state.reserve_in_place {
            let _ = reserve::remove(&path);
        }
        if let Some(free) = free_space(dir) {
            space.free.store(free, Ordering::Relaxed);
            if state.reserve_in_place && free < room.min_free_bytes {
                space.release(&mut state, "the disk is full at start-up");
            } else {
                space.make_reserve(&mut state, free);
            }
        }
        drop(state);
        space
    }

    /// The storage folder.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reserve_path(&self) -> PathBuf {
        self.dir.join(RESERVE_FILE)
    }

    /// Why new events are refused, from the ingest path: `live` is live data now, `size`
    /// gives the folder's size (only read when the disk is short of room).
    pub(super) fn check(
        &self,
        live: u64,
        size: impl FnOnce() -> u64,
        now_ms: u64,
    ) -> Option<Refusal> {
        if self.cause.load(Ordering::Acquire) == ACCEPTING {
            if live >= self.limit.load(Ordering::Acquire) {
                self.pause_at_limit(live, now_ms);
            } else {
                self.look(live, size, now_ms);
            }
        }
        self.refusal(live)
    }

    /// The refusal of the pause in force, if any.
    fn refusal(&self, live: u64) -> Option<Refusal> {
        match self.cause.load(Ordering::Acquire) {
            ACCEPTING => None,
            cause => Some(self.refusal_locked(&self.lock(), cause, live)),
        }
    }

    /// Looks at the free space if the last look is old enough, and pauses if the database is
    /// growing into the file system's last `min_free_bytes`.
    fn look(&self, live: u64, size: impl FnOnce() -> u64, now_ms: u64) {
        let min_free = self.min_free.load(Ordering::Relaxed);
        let last = self.looked_ms.load(Ordering::Relaxed);
        if min_free == 0 || now_ms < last + LOOK_EVERY_MS {
            return;
        }
        // One look per period, whoever claims it.
        if self
            .looked_ms
            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let Some(free) = free_space(&self.dir) else {
            return;
        };
        self.free.store(free, Ordering::Relaxed);
        if free < min_free {
            self.disk_short(live, free, size(), now_ms);
        }
    }

    /// The file system has less than `min_free_bytes` free: if the database grew since the
    /// last pause for the disk ended, it learns its capacity and pauses.
    fn disk_short(&self, live: u64, free: u64, size: u64, now_ms: u64) {
        let mut state = self.lock();
        if free < state.room.min_free_bytes / 2 && state.reserve_in_place {
            self.release(&mut state, "the disk is almost full");
        }
        let growing = state
            .resumed_size
            .is_none_or(|resumed| size > resumed + GROWTH_SLACK);
        if !growing || self.cause.load(Ordering::Acquire) != ACCEPTING {
            return;
        }
        state.learned = Some(state.learned.map_or(live, |l| l.min(live)));
        self.set_limit(&state);
        self.pause(&mut state, DISK, live, now_ms);
    }

    /// Live data reached the limit: pauses for the budget or for the disk, whichever limit it
    /// is.
    fn pause_at_limit(&self, live: u64, now_ms: u64) {
        let mut state = self.lock();
        if self.cause.load(Ordering::Acquire) != ACCEPTING {
            return;
        }
        let budget = state.room.max_live_bytes.unwrap_or(u64::MAX);
        let cause = if live >= budget { BUDGET } else { DISK };
        self.pause(&mut state, cause, live, now_ms);
    }

    fn pause(&self, state: &mut State, cause: u8, live: u64, now_ms: u64) {
        state.since_ms = now_ms;
        self.cause.store(cause, Ordering::Release);
        let refusal = self.refusal_locked(state, cause, live);
        tracing::warn!(
            reason = refusal.reason(),
            learned_capacity = state.learned,
            "ingest paused: {refusal}"
        );
    }

    fn refusal_locked(&self, state: &State, cause: u8, live: u64) -> Refusal {
        match cause {
            BUDGET => Refusal::StorageFull {
                live_bytes: live,
                budget: state.room.max_live_bytes.unwrap_or(0),
            },
            _ => Refusal::DiskFull {
                free_bytes: self.free.load(Ordering::Relaxed),
                min_free_bytes: state.room.min_free_bytes,
            },
        }
    }

    fn set_limit(&self, state: &State) {
        let budget = state.room.max_live_bytes.unwrap_or(u64::MAX);
        let limit = state.learned.map_or(budget, |l| l.min(budget));
        self.limit.store(limit, Ordering::Release);
    }

    /// After a maintenance round: takes the configuration's `room`, looks at the disk, keeps
    /// the reserve (released while writes fail or the disk is almost full, made again with
    /// room), and ends a pause once live data is below [`ROOM_AGAIN`] of the limit and writes
    /// succeed. `size` is the folder's size; `failing`, whether flushes fail.
    pub(super) fn review(&self, room: Room, live: u64, size: u64, failing: bool, now_ms: u64) {
        let mut state = self.lock();
        if state.room.reserve_bytes != room.reserve_bytes && state.reserve_in_place {
            self.release(&mut state, "its size changed");
        }
        state.room = room;
        self.min_free.store(room.min_free_bytes, Ordering::Relaxed);
        let free = free_space(&self.dir);
        if let Some(free) = free {
            self.free.store(free, Ordering::Relaxed);
            self.looked_ms.store(now_ms, Ordering::Relaxed);
        }
        if state.reserve_in_place && (failing || free.is_some_and(|f| f < room.min_free_bytes / 2))
        {
            let why = if failing {
                "writes fail"
            } else {
                "the disk is almost full"
            };
            self.release(&mut state, why);
        } else if !failing && let Some(free) = free {
            self.make_reserve(&mut state, free);
        }
        let free = self.free.load(Ordering::Relaxed);
        let reserve_ok = state.reserve_in_place || room.reserve_bytes == 0;
        if state.learned.is_some() && reserve_ok && free >= 2 * room.min_free_bytes {
            tracing::info!(
                free,
                "the disk has room again: its learned capacity is forgotten"
            );
            state.learned = None;
        }
        self.set_limit(&state);
        let cause = self.cause.load(Ordering::Acquire);
        let limit = self.limit.load(Ordering::Acquire);
        if cause == ACCEPTING {
            drop(state);
            if live >= limit {
                self.pause_at_limit(live, now_ms);
            } else if room.min_free_bytes > 0 && free < room.min_free_bytes {
                self.disk_short(live, free, size, now_ms);
            }
            return;
        }
        let room_again = limit == u64::MAX || (live as f64) < limit as f64 * ROOM_AGAIN;
        if room_again && !failing {
            if cause == DISK {
                state.resumed_size = Some(size);
            }
            self.cause.store(ACCEPTING, Ordering::Release);
            let paused_s = now_ms.saturating_sub(state.since_ms) / 1000;
            tracing::info!(
                live,
                limit = (limit != u64::MAX).then_some(limit),
                paused_s,
                "ingest resumed: there is room again"
            );
        }
    }

    /// Whether the file system has less free space than `min_free_bytes` now.
    pub(super) fn short_of_room(&self) -> bool {
        let min_free = self.min_free.load(Ordering::Relaxed);
        free_space(&self.dir).is_some_and(|free| free < min_free)
    }

    /// Whether a pause is in force (maintenance then prunes every finished event).
    pub(super) fn paused(&self) -> bool {
        self.cause.load(Ordering::Acquire) != ACCEPTING
    }

    /// The limit on live data, if any.
    pub(super) fn limit(&self) -> Option<u64> {
        Some(self.limit.load(Ordering::Acquire)).filter(|l| *l != u64::MAX)
    }

    /// For `/admin/status`.
    pub(super) fn status(&self) -> RoomStatus {
        let state = self.lock();
        let cause = self.cause.load(Ordering::Acquire);
        let free = self.free.load(Ordering::Relaxed);
        RoomStatus {
            budget_bytes: state.room.max_live_bytes,
            learned_capacity_bytes: state.learned,
            free_bytes: (free != u64::MAX).then_some(free),
            min_free_bytes: state.room.min_free_bytes,
            reserve_bytes: state.room.reserve_bytes,
            reserve_in_place: state.reserve_in_place,
            paused: match cause {
                ACCEPTING => None,
                BUDGET => Some("storage_full"),
                _ => Some("disk_full"),
            },
            paused_since_ms: (cause != ACCEPTING).then_some(state.since_ms),
        }
    }

    /// Releases the reserve now (a write failed for lack of space): deliveries, pruning and
    /// sled's own flushes get its room.
    pub(super) fn release_reserve(&self, why: &str) {
        let mut state = self.lock();
        if state.reserve_in_place {
            self.release(&mut state, why);
        }
    }

    fn release(&self, state: &mut State, why: &str) {
        match reserve::remove(&self.reserve_path()) {
            Ok(()) => tracing::warn!(
                bytes = state.room.reserve_bytes,
                "reserve file released ({why}): its room is for deliveries, pruning and flushes"
            ),
            Err(e) => tracing::error!(error = %e, "cannot release the reserve file"),
        }
        state.reserve_in_place = false;
    }

    /// Makes the reserve file if it is missing and the disk has room for it and twice
    /// `min_free_bytes` more (and at least its own size more: a reserve just released for a
    /// full disk is not taken back from what it freed).
    fn make_reserve(&self, state: &mut State, free: u64) {
        let room = state.room;
        let margin = (2 * room.min_free_bytes).max(room.reserve_bytes);
        if state.reserve_in_place || room.reserve_bytes == 0 || free < room.reserve_bytes + margin {
            return;
        }
        match reserve::preallocate(&self.dir, &self.reserve_path(), room.reserve_bytes) {
            Ok(()) => {
                state.reserve_in_place = true;
                self.free
                    .store(free - room.reserve_bytes, Ordering::Relaxed);
                tracing::info!(bytes = room.reserve_bytes, "reserve file in place");
            }
            Err(e) => tracing::warn!(error = %e, "cannot make the reserve file; tried again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn room(budget: Option<u64>, min_free: u64, reserve: u64) -> Room {
        Room {
            max_live_bytes: budget,
            min_free_bytes: min_free,
            reserve_bytes: reserve,
        }
    }

    #[test]
    fn at_the_budget_ingest_pauses_and_resumes_below_its_low_mark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let room = room(Some(1_000), 0, 0);
        let space = Space::open(dir.path(), room);
        assert_eq!(space.check(999, || 0, NOW), None);
        let refused = space.check(1_000, || 0, NOW);
        assert_eq!(
            refused,
            Some(Refusal::StorageFull {
                live_bytes: 1_000,
                budget: 1_000
            })
        );
        // Pruned a little: still paused until 10 % below the budget.
        space.review(room, 950, 0, false, NOW + 1);
        assert!(space.check(950, || 0, NOW + 2).is_some());
        space.review(room, 899, 0, false, NOW + 3);
        assert_eq!(space.check(899, || 0, NOW + 4), None);
        // Writes failing: no resuming, whatever the room.
        space.check(1_200, || 0, NOW + 5);
        space.review(room, 0, 0, true, NOW + 6);
        assert!(space.paused());
    }

    #[test]
    fn a_disk_short_of_room_teaches_a_capacity_and_only_a_growing_folder_pauses_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Whatever the disk holds, less than this is free.
        let room = room(None, u64::MAX / 4, 0);
        let space = Space::open(dir.path(), room);
        let refused = space.check(10_000, || 5 * GROWTH_SLACK, NOW);
        assert!(
            matches!(refused, Some(Refusal::DiskFull { .. })),
            "{refused:?}"
        );
        assert_eq!(space.status().learned_capacity_bytes, Some(10_000));
        space.review(room, 9_500, 5 * GROWTH_SLACK, false, NOW + 100);
        assert!(space.paused(), "not yet 10 % below what the disk held");
        space.review(room, 8_000, 5 * GROWTH_SLACK, false, NOW + 200);
        assert!(!space.paused(), "room in the database again");
        // Free space is still short, but the folder does not grow: sled reuses its room.
        let later = NOW + 1_000;
        assert_eq!(space.check(9_000, || 5 * GROWTH_SLACK, later), None);
        // Up to what the disk held: paused again, without a look at the disk.
        assert!(
            space
                .check(10_000, || 5 * GROWTH_SLACK, later + 1)
                .is_some()
        );
        space.review(room, 1_000, 5 * GROWTH_SLACK, false, later + 2);
        // The folder grows into the short free space: a lower capacity is learned.
        let refused = space.check(2_000, || 7 * GROWTH_SLACK, later + 1_000);
        assert!(refused.is_some());
        assert_eq!(space.status().learned_capacity_bytes, Some(2_000));
    }

    #[test]
    fn settings_meant_for_a_large_disk_are_fitted_to_a_small_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let total = fs2::total_space(dir.path()).expect("total");
        let fitted = fitted(dir.path(), room(Some(7), u64::MAX, u64::MAX));
        assert_eq!(fitted, room(Some(7), total / 4, total / 8));
        let small = room(None, 1024, 512);
        assert_eq!(super::fitted(dir.path(), small), small);
    }

    #[test]
    fn the_reserve_is_made_with_room_released_while_writes_fail_and_made_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let room = room(None, 0, 64 * 1024);
        let space = Space::open(dir.path(), room);
        let reserve = dir.path().join(RESERVE_FILE);
        assert_eq!(std::fs::metadata(&reserve).expect("made").len(), 64 * 1024);
        assert!(space.status().reserve_in_place);
        space.review(room, 0, 0, true, NOW);
        assert!(!reserve.exists(), "released while writes fail");
        space.review(room, 0, 0, false, NOW + 1);
        assert!(reserve.exists(), "made again once writes succeed");
        // Turned off in the configuration: it goes.
        let none = Room {
            reserve_bytes: 0,
            ..room
        };
        space.review(none, 0, 0, false, NOW + 2);
        assert!(!reserve.exists());
    }
}
