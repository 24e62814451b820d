//! Read-your-writes across instances: whether this instance's snapshot holds every change of
//! the buckets that shape it (apps, API subscriptions, plugins) made before a given moment.
//!
//! An app told `201 Created` by one instance expects every event accepted after that answer to
//! reach its new subscription, whichever instance fans the event out. The fan-out therefore
//! asks, before it plans an event, for the buckets' last revisions as of a moment after the
//! event was accepted ([`Freshness::latest_since`], one request per bucket shared by every
//! event waiting at the time), and waits until this instance has both applied those revisions
//! (the mirror's high-water marks) and swapped in a snapshot built after every change they
//! brought ([`Built`]).
//!
//! The bookkeeping is two counters: `dirty` counts the visible changes the watches applied,
//! raised before a mirror's high-water mark passes the change's revision; a build reads it
//! before it reads the tables, and once its snapshot is in force marks that value as built. So
//! "marks reached and built ≥ dirty" means the snapshot in force holds every change up to the
//! marks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;

use crate::store::StoreError;

/// How long a waiter gives the look in progress before it looks itself (that look may have
/// failed and sent nothing).
const RETRY_LOOK: Duration = Duration::from_millis(50);

/// Least time between the starts of two looks: under load, the events that arrive meanwhile
/// share the next one, for at most this much more latency before their fan-out (their
/// acceptance is not delayed). A look is three `STREAM.INFO` requests, and each costs
/// `nats-server` as much CPU as six to nine published events (`BENCHMARKS.md`).
const SPACING: Duration = Duration::from_millis(10);

/// The visible changes applied by the watches, and how many of them the snapshot in force
/// was built after.
#[derive(Debug, Default)]
pub(crate) struct Built {
    dirty: AtomicU64,
    built: AtomicU64,
}

impl Built {
    /// A watch applied a change that alters the snapshot: called before the mirror's mark
    /// passes its revision.
    pub(crate) fn changed(&self) {
        self.dirty.fetch_add(1, Ordering::SeqCst);
    }

    /// The count a build about to read the tables starts from.
    pub(crate) fn generation(&self) -> u64 {
        self.dirty.load(Ordering::SeqCst)
    }

    /// The snapshot built from generation `generation` is in force.
    pub(crate) fn built(&self, generation: u64) {
        self.built.fetch_max(generation, Ordering::SeqCst);
    }

    /// Whether the snapshot in force holds every change applied so far.
    pub(crate) fn current(&self) -> bool {
        self.holds(self.generation())
    }

    /// Whether the snapshot in force holds the changes counted up to `generation`.
    pub(crate) fn holds(&self, generation: u64) -> bool {
        self.built.load(Ordering::SeqCst) >= generation
    }
}

/// The last look at the buckets' revisions: when it started and what it found.
#[derive(Debug, Clone, Copy)]
struct Look {
    started: Instant,
    revisions: [u64; 3],
}

/// One look at a time at the buckets' last revisions, shared by everyone who needs one that
/// started after a given moment.
#[derive(Debug)]
pub(crate) struct Freshness {
    last: tokio::sync::watch::Sender<Option<Look>>,
    looking: Mutex<bool>,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            last: tokio::sync::watch::Sender::new(None),
            looking: Mutex::new(false),
        }
    }
}

impl Freshness {
    /// The last revisions of `buckets` as read by a look that started at or after `since`.
    pub(crate) async fn latest_since(
        &self,
        since: Instant,
        buckets: [&kv::Store; 3],
    ) -> Result<[u64; 3], StoreError> {
        self.latest_since_by(since, || last_revisions(buckets))
            .await
    }

    /// [`Self::latest_since`], with `look` reading the revisions.
    async fn latest_since_by<F, Fut>(&self, since: Instant, look: F) -> Result<[u64; 3], StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<[u64; 3], StoreError>>,
    {
        loop {
            let mut seen = self.last.subscribe();
            if let Some(look) = *seen.borrow_and_update()
                && look.started >= since
            {
                return Ok(look.revisions);
            }
            let lead = {
                let mut looking = self.looking.lock().unwrap_or_else(|p| p.into_inner());
                !std::mem::replace(&mut *looking, true)
            };
            if lead {
                // Cleared however the look ends, a caller's timeout dropping it included (in
                // the wait for its turn as well): otherwise nobody would ever look again.
                let _done = LookDone(&self.looking);
                let previous = *seen.borrow();
                if let Some(previous) = previous {
                    tokio::time::sleep_until((previous.started + SPACING).into()).await;
                }
                let started = Instant::now();
                let revisions = look().await?;
                self.last.send_replace(Some(Look { started, revisions }));
                if started >= since {
                    return Ok(revisions);
                }
                continue;
            }
            // Someone else is looking: wait for what they find (or, if their look fails and
            // sends nothing, look again shortly).
            let _ = tokio::time::timeout(RETRY_LOOK, seen.changed()).await;
        }
    }
}

/// Clears the "a look is in progress" flag when dropped.
struct LookDone<'a>(&'a Mutex<bool>);

impl Drop for LookDone<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = false;
    }
}

/// Each bucket's last revision, asked of the servers together.
async fn last_revisions(buckets: [&kv::Store; 3]) -> Result<[u64; 3], StoreError> {
    let [a, b, c] = buckets;
    let (a, b, c) = tokio::try_join!(
        super::mirror::last_revision(a),
        super::mirror::last_revision(b),
        super::mirror::last_revision(c)
    )?;
    Ok([a, b, c])
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_caller_giving_up_while_waiting_its_turn_does_not_stop_later_looks() {
        let freshness = Freshness::default();
        let looks = AtomicUsize::new(0);
        let look = || async {
            let n = looks.fetch_add(1, Ordering::SeqCst) as u64;
            Ok([n, n, n])
        };
        let first = freshness
            .latest_since_by(Instant::now(), look)
            .await
            .expect("a look");
        assert_eq!(first, [0, 0, 0]);
        // This caller leads the next look and gives up in it: while it waits out the spacing
        // or, on a machine slow enough to be past it, in a look that never answers.
        let never = || std::future::pending::<Result<[u64; 3], StoreError>>();
        let gave_up = tokio::time::timeout(
            SPACING / 10,
            freshness.latest_since_by(Instant::now(), never),
        )
        .await;
        assert!(gave_up.is_err(), "the caller gave up");
        // Had the flag stayed set, every caller would wait for a look nobody makes.
        let next = tokio::time::timeout(
            Duration::from_secs(5),
            freshness.latest_since_by(Instant::now(), look),
        )
        .await
        .expect("a later caller still gets a look")
        .expect("a look");
        assert_eq!(next, [1, 1, 1]);
    }

    #[tokio::test]
    async fn callers_waiting_at_once_share_one_look_and_a_failed_look_is_made_again() {
        let freshness = Freshness::default();
        let looks = AtomicUsize::new(0);
        let look = || async {
            let n = looks.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if n == 0 {
                return Err(StoreError::Unavailable("the servers did not answer".into()));
            }
            Ok([7, 8, 9])
        };
        let since = Instant::now();
        let (a, b, c) = tokio::join!(
            freshness.latest_since_by(since, look),
            freshness.latest_since_by(since, look),
            freshness.latest_since_by(since, look),
        );
        assert!(a.is_err(), "the leader's failed look is its error");
        assert_eq!(b.expect("a look"), [7, 8, 9]);
        assert_eq!(c.expect("a look"), [7, 8, 9]);
        assert_eq!(
            looks.load(Ordering::SeqCst),
            2,
            "the two waiters shared the second look"
        );
    }

    #[test]
    fn a_snapshot_is_current_only_once_built_after_every_change() {
        let built = Built::default();
        assert!(built.current(), "nothing changed yet");
        built.changed();
        let generation = built.generation();
        assert!(!built.current(), "a change not yet in a snapshot");
        built.changed();
        built.built(generation);
        assert!(
            !built.current(),
            "a build that started before the second change does not hold it"
        );
        built.built(built.generation());
        assert!(built.current());
        built.built(0);
        assert!(
            built.current(),
            "an older build finishing late changes nothing"
        );
    }
}
