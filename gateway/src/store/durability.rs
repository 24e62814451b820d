//! Group commit: many writers, one fsync.
//!
//! A writer takes a ticket after its write is applied and waits until a flush that started
//! after the ticket completes. One background task runs flushes back to back, so under load
//! each fsync covers every write that arrived while the previous one ran.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

use super::StoreError;

/// Batches flushes of one sled database.
#[derive(Debug)]
pub struct Durability {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    flushed: watch::Receiver<Result<u64, String>>,
}

#[derive(Debug)]
struct Shared {
    written: AtomicU64,
    wake: Notify,
    closed: AtomicBool,
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
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let (tx, flushed) = watch::channel(Ok(0));
        let worker = shared.clone();
        // A thread, not a task: the flusher must run even when called from outside a runtime
        // and must not hold a runtime worker during fsync.
        let thread = std::thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || flusher(db, worker, tx))
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
            .map_err(|_| StoreError::Corrupt {
                tree: "-",
                message: "the flusher stopped".into(),
            })?;
        match &*outcome {
            Ok(_) => Ok(()),
            Err(message) => Err(StoreError::Corrupt {
                tree: "-",
                message: message.clone(),
            }),
        }
    }
}

fn flusher(db: sled::Db, shared: Arc<Shared>, tx: watch::Sender<Result<u64, String>>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("flusher runtime");
    let mut done = 0;
    loop {
        let target = shared.written.load(Ordering::Acquire);
        if target == done {
            if shared.closed.load(Ordering::Acquire) {
                let _ = db.flush();
                return;
            }
            rt.block_on(shared.wake.notified());
            continue;
        }
        match db.flush() {
            Ok(_) => {
                done = target;
                if tx.send(Ok(done)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(format!("flush failed: {e}")));
                return;
            }
        }
    }
}
