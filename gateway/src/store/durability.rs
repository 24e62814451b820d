//! Group commit: many writers, one fsync; and what happens when the disk fails.
//!
//! A writer takes a ticket after its write is applied and waits until a flush that started
//! after the ticket completes. One background thread runs flushes back to back, so under load
//! each fsync covers every write that arrived while the previous one ran.
//!
//! A failed flush (a full disk, an I/O error) fails the writers waiting on it, is reported,
//! and is retried with backoff; [`Durability::failing`] says meanwhile that it cannot make
//! anything durable (ingest answers `503 storage_unavailable`, `/readyz` is not ready). sled
//! itself takes no writes after an I/O error until the database is opened again, so a
//! failing flusher is what tells `lib.rs::run` to reopen it (see [`super::Store::needs_reopen`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::StoreError;

/// First pause after a failed flush; doubled on each further failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between two attempts to flush a failing disk.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What makes writes durable: `sled::Db::flush`, or a stand-in in tests.
pub(super) type FlushFn = Box<dyn Fn() -> Result<(), String> + Send>;

/// Batches flushes of one sled database.
pub struct Durability {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    flushed: watch::Receiver<Result<u64, String>>,
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("failing", &self.failing())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Shared {
    written: AtomicU64,
    wake: Notify,
    closed: AtomicBool,
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Under load, the shortest time between the starts of two flushes, in microseconds.
    commit_delay_us: AtomicU64,
}

impl Drop for Durability {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        // Join so that the database is closed (and its lock released) when the store is.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Durability {
    pub(super) fn new(db: sled::Db) -> Self {
        Self::with_flush(Box::new(move || {
            db.flush().map(drop).map_err(|e| e.to_string())
        }))
    }

    /// Group commit over `flush`.
    pub(super) fn with_flush(flush: FlushFn) -> Self {
        let shared = Arc::new(Shared::default());
        let (tx, flushed) = watch::channel(Ok(0));
        let worker = shared.clone();
        // A thread, not a task: the flusher must run even when called from outside a runtime
        // and must not hold a runtime worker during fsync.
        let thread = std::thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || flusher(flush, worker, tx))
            .expect("spawn the flusher thread");
        Self {
            shared,
            thread: Some(thread),
            flushed,
        }
    }

    /// Waits until every write applied before this call is durable.
    pub async fn wait(&self) -> Result<(), StoreError> {
        let ticket = self.shared.written.fetch_add(1, Ordering::AcqRel) + 1;
        self.shared.wake.notify_one();
        let mut rx = self.flushed.clone();
        let outcome = rx
            .wait_for(|state| state.as_ref().map_or(true, |done| *done >= ticket))
            .await
            .map_err(|_| StoreError::Unavailable("the flusher stopped".into()))?;
        match &*outcome {
            Ok(_) => Ok(()),
            Err(message) => Err(StoreError::Unavailable(message.clone())),
        }
    }

    /// Sets the shortest time between the starts of two flushes under load (when the last
    /// flush served more than one writer): fewer, larger flushes, at the cost of up to that
    /// much acknowledgement latency. A lone writer is flushed at once.
    pub fn set_commit_delay(&self, delay: Duration) {
        self.shared
            .commit_delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Whether the last flush failed (and flushes are being retried).
    pub fn failing(&self) -> bool {
        self.shared.failing.load(Ordering::Acquire)
    }

    /// The last flush error, while flushes fail.
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn flusher(flush: FlushFn, shared: Arc<Shared>, tx: watch::Sender<Result<u64, String>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("flusher runtime");
    let mut done = 0;
    let mut backoff = FIRST_BACKOFF;
    let mut last_start: Option<Instant> = None;
    let mut busy = false;
    loop {
        let target = shared.written.load(Ordering::Acquire);
        if target == done {
            if shared.closed.load(Ordering::Acquire) {
                let _ = flush();
                return;
            }
            rt.block_on(shared.wake.notified());
            continue;
        }
        // Under load (the last flush served several writers), flushes start at most once per
        // commit delay: each one costs an fsync and wakes sled's I/O threads, so fewer and
        // larger ones leave the CPU to the work. A lone writer is flushed at once.
        let delay = Duration::from_micros(shared.commit_delay_us.load(Ordering::Relaxed));
        if let Some(started) = last_start.filter(|_| busy) {
            let wait = (started + delay).saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        let target = shared.written.load(Ordering::Acquire);
        last_start = Some(Instant::now());
        match flush() {
            Ok(()) => {
                busy = target - done > 1;
                done = target;
                backoff = FIRST_BACKOFF;
                if shared.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("storage flushes succeed again");
                    *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                if tx.send(Ok(done)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let message = format!("flush failed: {e}");
                if !shared.failing.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %e, "storage flush failed; retrying with backoff");
                }
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(message.clone());
                // Fails everyone waiting now, and every writer until a flush succeeds again.
                // Their writes are still in memory: `done` stays behind, so the loop tries
                // again and the next successful flush covers them.
                if tx.send(Err(message)).is_err() || shared.closed.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_failing_disk_fails_its_waiters_then_recovers_by_itself() {
        let failures_left = Arc::new(AtomicUsize::new(3));
        let calls = Arc::new(AtomicUsize::new(0));
        let (left, counted) = (failures_left.clone(), calls.clone());
        let durability = Durability::with_flush(Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let failing = left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                Err("No space left on device".into())
            } else {
                Ok(())
            }
        }));
        let first = durability.wait().await;
        assert!(
            matches!(&first, Err(StoreError::Unavailable(m)) if m.contains("No space")),
            "{first:?}"
        );
        assert!(durability.failing());
        assert!(durability.last_error().is_some());
        // The flusher keeps trying on its own; a later writer succeeds once the disk does.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if durability.wait().await.is_ok() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never recovered");
        }
        assert!(!durability.failing());
        assert_eq!(durability.last_error(), None);
        assert!(calls.load(Ordering::SeqCst) >= 4);
    }
}
