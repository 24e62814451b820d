//! Ordered delivery on sled: the jobs of one (subscription, key) wait here in their events'
//! acceptance order, and only the oldest is ever in the schedule's lanes. It stays there while
//! it is retried (its key's later jobs wait behind it); once it is finished (delivered, or
//! dead-lettered: the order is then broken, and its letter says so) the next one goes. Other
//! keys, and every unordered job, never wait for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::scheduler::Entry;

/// One key's jobs.
#[derive(Debug, Default)]
struct KeyQueue {
    /// Waiting, by (acceptance order, job id), with their due times.
    waiting: BTreeMap<(u64, Arc<str>), (Entry, u64)>,
    /// Its oldest job is in the lanes, running, or set aside (paused).
    busy: bool,
}

/// Every ordered key's jobs.
#[derive(Debug, Default)]
pub(super) struct Keyed {
    queues: HashMap<Arc<str>, KeyQueue>,
    /// The key of each job let into the lanes, until it is finished.
    released: HashMap<Arc<str>, Arc<str>>,
    waiting: usize,
}

impl Keyed {
    /// Takes `entry` (due at `due_ms`) of `key` in acceptance order `seq`: it comes back when
    /// it may go into the lanes now (its key is idle), unless `hold` (a rebuild in progress:
    /// see [`Keyed::release_idle`]).
    pub(super) fn add(
        &mut self,
        key: Arc<str>,
        seq: u64,
        entry: Entry,
        due_ms: u64,
        hold: bool,
    ) -> Option<(Entry, u64)> {
        let queue = self.queues.entry(key.clone()).or_default();
        queue
            .waiting
            .insert((seq, entry.id.clone()), (entry, due_ms));
        self.waiting += 1;
        if queue.busy || hold {
            return None;
        }
        self.next(&key)
    }

    /// Lets the oldest job of `key` into the lanes, if it has one.
    fn next(&mut self, key: &Arc<str>) -> Option<(Entry, u64)> {
        let queue = self.queues.get_mut(key)?;
        match queue.waiting.pop_first() {
            Some((_, (entry, due_ms))) => {
                queue.busy = true;
                self.waiting -= 1;
                self.released.insert(entry.id.clone(), key.clone());
                Some((entry, due_ms))
            }
            None => {
                self.queues.remove(key);
                None
            }
        }
    }

    /// Job `id` is finished: the next job of its key, if it was an ordered one with a next.
    pub(super) fn finished(&mut self, id: &str) -> Option<(Entry, u64)> {
        let key = self.released.remove(id)?;
        if let Some(queue) = self.queues.get_mut(&key) {
            queue.busy = false;
        }
        self.next(&key)
    }

    /// The oldest job of every idle key (after the schedule was rebuilt with `hold`), the
    /// keys taken in their oldest events' acceptance order: the backlog resumes oldest first.
    pub(super) fn release_idle(&mut self) -> Vec<(Entry, u64)> {
        let mut idle: Vec<(u64, Arc<str>)> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.busy)
            .filter_map(|(k, q)| Some((q.waiting.first_key_value()?.0.0, k.clone())))
            .collect();
        idle.sort_unstable();
        idle.iter().filter_map(|(_, key)| self.next(key)).collect()
    }

    /// Jobs waiting behind an older one of their key.
    pub(super) fn waiting(&self) -> usize {
        self.waiting
    }

    /// The jobs waiting behind an older one of their key.
    pub(super) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.queues
            .values()
            .flat_map(|q| q.waiting.values().map(|(e, _)| e))
    }
}
