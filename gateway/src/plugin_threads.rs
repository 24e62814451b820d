//! The threads plugin calls run on: a few, at a lower CPU priority than the rest.
//!
//! A plugin call is CPU work bounded by the plugin limits (time, memory, output), but a
//! plugin that spends its whole allowance on every call (a loop, a memory bomb) would still
//! take a core from ingest and delivery for as long as its events keep coming. So plugin
//! calls run on their own threads, as many as there are plugin slots, niced
//! ([`PLUGIN_NICE`]): when the CPU is contended, the scheduler serves ingest and delivery
//! first, and a hostile plugin slows its own subscription, not everyone's. When the CPU is
//! not contended the nice level changes nothing, so plugins run at full speed.
//!
//! This module knows nothing of plugins: it runs closures and hands back their results.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How much lower the plugin threads' priority is (Linux nice levels, 0 to 19): at 10 a busy
/// plugin thread gets about a tenth of the CPU a normal thread does when both want it.
pub const PLUGIN_NICE: i32 = 10;

type Work = Box<dyn FnOnce() + Send>;

/// Why a closure did not return a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    /// It panicked (the thread survives).
    #[error("the plugin call panicked")]
    Panicked,
    /// The threads are gone (shutdown).
    #[error("the plugin threads have stopped")]
    Stopped,
}

/// A fixed set of low-priority threads. Dropping it lets the threads end once their queue is
/// empty.
pub struct PluginThreads {
    tx: Mutex<Sender<Work>>,
}

impl std::fmt::Debug for PluginThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginThreads").finish_non_exhaustive()
    }
}

impl PluginThreads {
    /// Starts `threads` threads (at least one), each `nice` levels below the caller.
    pub fn new(threads: usize, nice: i32) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Work>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("plugin-{n}"))
                .spawn(move || {
                    lower_priority(nice);
                    work(&rx);
                })?;
        }
        Ok(Self { tx: Mutex::new(tx) })
    }

    /// Runs `f` on one of the threads and waits (asynchronously) for its result.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Lost> {
        let (done, result) = oneshot::channel();
        let work: Work = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = done.send(outcome.map_err(|_| Lost::Panicked));
        });
        self.tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(work)
            .map_err(|_| Lost::Stopped)?;
        result.await.map_err(|_| Lost::Stopped)?
    }
}

fn work(rx: &Mutex<Receiver<Work>>) {
    loop {
        // The lock is held only while waiting for the next closure, not while running it.
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match next {
            Ok(work) => work(),
            Err(_) => return,
        }
    }
}

/// Lowers the calling thread's priority. On Linux a thread's nice level is its own
/// (`setpriority` with the thread id); elsewhere this does nothing.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
        let result = unsafe {
            let tid = libc::gettid() as libc::id_t;
            // Relative to the level the gateway was started at (an unprivileged process may
            // only go up, to 19 at most).
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, (current + nice).min(19))
        };
        if result != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot lower the plugin threads' priority; plugins compete with ingest as equals"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_closures_and_survives_a_panic() {
        let threads = PluginThreads::new(2, PLUGIN_NICE).expect("threads");
        assert_eq!(threads.run(|| 6 * 7).await, Ok(42));
        let panicked = threads.run(|| -> u8 { panic!("boom") }).await;
        assert_eq!(panicked, Err(Lost::Panicked));
        // Both threads are still there.
        let (a, b) = tokio::join!(threads.run(|| 1), threads.run(|| 2));
        assert_eq!((a, b), (Ok(1), Ok(2)));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_threads_run_niced() {
        // SAFETY: reads the calling thread's own priority.
        let ours = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let threads = PluginThreads::new(1, PLUGIN_NICE).expect("threads");
        let nice = threads
            .run(|| {
                // SAFETY: reads the calling thread's own priority.
                unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
            })
            .await
            .expect("ran");
        assert_eq!(nice, (ours + PLUGIN_NICE).min(19));
    }
}
