//! The in-memory schedule: which queued job runs next.
//!
//! Jobs are durable in the [`crate::store`]; their order lives here, rebuilt from the store
//! at start-up. Each job waits in a *lane*: deliveries in the lane of their destination,
//! plugin calls in the lane of their subscription. The dispatcher visits the lanes that have
//! due work round-robin and takes a lane's next job only when the resources that job needs
//! (a global slot, a slot of the receiver's host, the app's share, a plugin slot) are free:
//! a busy or dead receiver, or a slow plugin, holds its own lane and nobody else's, and
//! waiting costs no write to the store.
//!
//! A job is known here from the moment it is queued until it is finished (delivered, buried
//! or forgotten): queueing it twice is a no-op, so it never runs twice at once.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::event::Event;
use crate::store::{Job, JobKind};

/// Where a job waits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// A delivery, by destination name.
    Deliver(Arc<str>),
    /// A plugin call, by subscription id.
    Transform(Arc<str>),
}

/// A job as the schedule knows it: enough to choose it without reading the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The job id.
    pub(crate) id: Arc<str>,
    /// Its subscription.
    pub(crate) subscription: Arc<str>,
    /// Its lane.
    pub(crate) lane: Lane,
    /// Since when it is due (ms since the epoch), once it is: what the metrics call the
    /// age of a lane's next job.
    pub(crate) due_since_ms: u64,
    /// The job (and its event) as just written, when the schedule's memory budget allowed
    /// keeping them: running it then reads nothing back from the store.
    pub(crate) cached: Option<Arc<Cached>>,
    /// For an ordered subscription's job: its key (with its subscription) and its event's
    /// acceptance order.
    pub(crate) order: Option<(Arc<str>, u64)>,
}

/// A job and its event, kept in memory from queueing to running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cached {
    /// The job as stored.
    pub(crate) job: Job,
    /// Its event, when the caller had it at hand.
    pub(crate) event: Option<Arc<Event>>,
}

impl Cached {
    fn bytes(&self) -> usize {
        let event = self
            .event
            .as_ref()
            .map_or(0, |e| e.payload.len() + e.id.len() + 128);
        self.job.body.len() + self.job.id.len() * 2 + 256 + event
    }
}

/// Memory the schedule may spend keeping queued jobs and events at hand.
const CACHE_BUDGET_BYTES: usize = 32 << 20;

impl Entry {
    /// The schedule entry of `job`.
    pub(crate) fn of(job: &Job) -> Self {
        let subscription: Arc<str> = job.subscription_id.as_str().into();
        let lane = match job.kind {
            JobKind::Deliver => Lane::Deliver(job.destination.as_str().into()),
            JobKind::Transform => Lane::Transform(subscription.clone()),
        };
        let order = job.order.as_ref().map(|o| {
            let key: Arc<str> = format!("{}\u{0}{}", job.subscription_id, o.key).into();
            (key, o.seq)
        });
        Self {
            id: job.id.as_str().into(),
            subscription,
            lane,
            due_since_ms: 0,
            cached: None,
            order,
        }
    }
}

/// One lane's share of the schedule, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaneDepth {
    /// The lane.
    pub(crate) lane: Lane,
    /// Its jobs due now.
    pub(crate) due: usize,
    /// Its jobs waiting for a retry time.
    pub(crate) waiting: usize,
    /// Since when its next job is due, if one is.
    pub(crate) head_due_since_ms: Option<u64>,
}

/// What the dispatcher says of a lane's next job.
#[derive(Debug)]
pub(crate) enum Admit<P> {
    /// Run it now, holding `P` (its slots).
    Run(P),
    /// Its resources are busy: leave it, and the lane, where they are.
    Wait,
    /// Its subscription is paused: set it aside until [`Scheduler::unpark`].
    Park,
}

/// How much work the schedule holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Depth {
    /// Due now, waiting for a slot.
    pub(crate) due: usize,
    /// Waiting for a later time (retries, backoff).
    pub(crate) later: usize,
    /// Set aside while their subscription is paused.
    pub(crate) parked: usize,
    /// Known in all, including those running.
    pub(crate) known: usize,
}

/// The schedule. One per gateway.
#[derive(Debug, Default)]
pub(crate) struct Scheduler {
    queues: Mutex<Queues>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Queues {
    known: HashSet<Arc<str>>,
    later: BTreeMap<(u64, u64), Entry>,
    seq: u64,
    lanes: HashMap<Lane, VecDeque<Entry>>,
    /// Lanes with due work, in visiting order.
    ring: VecDeque<Lane>,
    parked: HashMap<Arc<str>, Vec<Entry>>,
    due: usize,
    parked_count: usize,
    cached_bytes: usize,
    /// How many of `later` each lane has.
    later_per_lane: HashMap<Lane, usize>,
    /// Ordered subscriptions' jobs waiting behind an older one of their key.
    keyed: super::ordered::Keyed,
    /// While the schedule is rebuilt, ordered jobs are held until all are in.
    rebuilding: bool,
}

impl Queues {
    fn push_due(&mut self, mut entry: Entry, due_ms: u64) {
        entry.due_since_ms = due_ms;
        let lane = self.lanes.entry(entry.lane.clone()).or_default();
        if lane.is_empty() {
            self.ring.push_back(entry.lane.clone());
        }
        lane.push_back(entry);
        self.due += 1;
    }

    /// Queues a new job: an ordered one behind the older ones of its key.
    fn add(&mut self, entry: Entry, due_ms: u64, now_ms: u64) {
        match entry.order.clone() {
            Some((key, seq)) => {
                let hold = self.rebuilding;
                if let Some((entry, due_ms)) = self.keyed.add(key, seq, entry, due_ms, hold) {
                    self.push(entry, due_ms, now_ms);
                }
            }
            None => self.push(entry, due_ms, now_ms),
        }
    }

    fn push(&mut self, entry: Entry, due_ms: u64, now_ms: u64) {
        if due_ms <= now_ms {
            self.push_due(entry, due_ms);
        } else {
            *self.later_per_lane.entry(entry.lane.clone()).or_default() += 1;
            self.seq += 1;
            self.later.insert((due_ms, self.seq), entry);
        }
    }

    fn promote(&mut self, now_ms: u64) {
        while let Some(first) = self.later.first_entry() {
            let due_ms = first.key().0;
            if due_ms > now_ms {
                break;
            }
            let entry = first.remove();
            if let Some(n) = self.later_per_lane.get_mut(&entry.lane) {
                *n -= 1;
                if *n == 0 {
                    self.later_per_lane.remove(&entry.lane);
                }
            }
            self.push_due(entry, due_ms);
        }
    }
}

impl Scheduler {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` at its `due_ms`, unless it is already known (queued or running).
    pub(crate) fn schedule(&self, job: &Job, now_ms: u64) {
        self.schedule_with(job, None, now_ms);
    }

    /// Queues `job`, keeping it and `event` in memory while the budget allows, so that running
    /// it reads neither back from the store.
    pub(crate) fn schedule_with(&self, job: &Job, event: Option<&Arc<Event>>, now_ms: u64) {
        let mut entry = Entry::of(job);
        let mut q = self.lock();
        if !q.known.insert(entry.id.clone()) {
            return;
        }
        let cached = Cached {
            job: job.clone(),
            event: event.cloned(),
        };
        let bytes = cached.bytes();
        if q.cached_bytes + bytes <= CACHE_BUDGET_BYTES {
            q.cached_bytes += bytes;
            entry.cached = Some(Arc::new(cached));
        }
        q.add(entry, job.due_ms, now_ms);
        drop(q);
        self.wake.notify_one();
    }

    /// Puts a running job back, due at `due_ms` (a retry). What it kept in memory is dropped:
    /// the stored job has changed.
    pub(crate) fn requeue(&self, mut entry: Entry, due_ms: u64, now_ms: u64) {
        entry.cached = None;
        let mut q = self.lock();
        q.known.insert(entry.id.clone());
        q.push(entry, due_ms, now_ms);
        drop(q);
        self.wake.notify_one();
    }

    /// Forgets a running job: it is done (delivered, buried, or gone from the store). The
    /// next job of its key, for an ordered one, may go.
    pub(crate) fn finish(&self, id: &str) {
        let mut q = self.lock();
        q.known.remove(id);
        if let Some((next, due_ms)) = q.keyed.finished(id) {
            q.push(next, due_ms, crate::time::now_ms());
        }
        drop(q);
        self.wake.notify_one();
    }

    /// Queues the jobs on disk at start-up: every ordered key's jobs are in before its oldest
    /// goes, whatever order the store gives them in.
    pub(crate) fn rebuild(
        &self,
        jobs: impl Iterator<Item = Result<Job, crate::store::StoreError>>,
        now_ms: u64,
    ) -> Result<usize, crate::store::StoreError> {
        self.lock().rebuilding = true;
        let mut queued = 0;
        let result = jobs.into_iter().try_for_each(|job| {
            self.schedule(&job?, now_ms);
            queued += 1;
            Ok(())
        });
        let mut q = self.lock();
        q.rebuilding = false;
        for (entry, due_ms) in q.keyed.release_idle() {
            q.push(entry, due_ms, now_ms);
        }
        drop(q);
        result.map(|()| queued)
    }

    /// Takes up to `limit` due jobs, visiting lanes round-robin: each lane's next job is
    /// offered to `admit`, which decides whether it runs now (and with which slots).
    pub(crate) fn take<P>(
        &self,
        now_ms: u64,
        limit: usize,
        mut admit: impl FnMut(&Entry) -> Admit<P>,
    ) -> Vec<(Entry, P)> {
        let mut q = self.lock();
        q.promote(now_ms);
        let mut out = Vec::new();
        // Visit each lane at most once per round; stop when a round admits nothing.
        loop {
            let mut progressed = false;
            let lanes = q.ring.len();
            for _ in 0..lanes {
                if out.len() == limit {
                    return out;
                }
                let Some(lane) = q.ring.pop_front() else {
                    break;
                };
                let Some(queue) = q.lanes.get_mut(&lane) else {
                    continue;
                };
                let Some(head) = queue.front() else {
                    q.lanes.remove(&lane);
                    continue;
                };
                match admit(head) {
                    Admit::Run(permit) => {
                        let entry = queue.pop_front().expect("head exists");
                        let empty = queue.is_empty();
                        let freed = entry.cached.as_ref().map_or(0, |c| c.bytes());
                        out.push((entry, permit));
                        q.due -= 1;
                        q.cached_bytes -= freed;
                        progressed = true;
                        if empty {
                            q.lanes.remove(&lane);
                        } else {
                            q.ring.push_back(lane);
                        }
                    }
                    Admit::Wait => q.ring.push_back(lane),
                    Admit::Park => {
                        let entry = queue.pop_front().expect("head exists");
                        let empty = queue.is_empty();
                        q.due -= 1;
                        q.parked_count += 1;
                        q.parked
                            .entry(entry.subscription.clone())
                            .or_default()
                            .push(entry);
                        progressed = true;
                        if empty {
                            q.lanes.remove(&lane);
                        } else {
                            q.ring.push_back(lane);
                        }
                    }
                }
            }
            if !progressed || q.ring.is_empty() {
                return out;
            }
        }
    }

    /// Up to `n` more due jobs of `lane`, for a runner that already holds the lane's slot and
    /// works through several jobs in one go (plugin calls: one thread hand-off and one write
    /// for the lot). When the lane may have `runners` at once, a runner takes at most its
    /// part of the lane's due jobs (rounded up) and leaves the rest to the others, so that
    /// a burst of slow calls runs on all of them instead of one after another on the first.
    pub(crate) fn take_more(&self, lane: &Lane, n: usize, runners: usize) -> Vec<Entry> {
        let mut q = self.lock();
        let Some(queue) = q.lanes.get_mut(lane) else {
            return Vec::new();
        };
        let part = queue.len().div_ceil(runners.max(1));
        let taken: Vec<Entry> = queue.drain(..n.min(part)).collect();
        if queue.is_empty() {
            // A lane is in the ring exactly while it has due work.
            q.lanes.remove(lane);
            q.ring.retain(|l| l != lane);
        }
        q.due -= taken.len();
        let freed: usize = taken
            .iter()
            .filter_map(|e| e.cached.as_ref())
            .map(|c| c.bytes())
            .sum();
        q.cached_bytes -= freed;
        taken
    }

    /// Makes the parked jobs of every subscription for which `resume` says so due again.
    pub(crate) fn unpark(&self, now_ms: u64, mut resume: impl FnMut(&str) -> bool) -> usize {
        let mut q = self.lock();
        let subs: Vec<Arc<str>> = q.parked.keys().filter(|s| resume(s)).cloned().collect();
        let mut n = 0;
        for sub in subs {
            for entry in q.parked.remove(&sub).unwrap_or_default() {
                q.push(entry, now_ms, now_ms);
                q.parked_count -= 1;
                n += 1;
            }
        }
        drop(q);
        if n > 0 {
            self.wake.notify_one();
        }
        n
    }

    /// The earliest time a waiting job comes due.
    pub(crate) fn next_due_ms(&self) -> Option<u64> {
        self.lock()
            .later
            .first_key_value()
            .map(|((due, _), _)| *due)
    }

    /// How much work is waiting.
    pub(crate) fn depth(&self) -> Depth {
        let q = self.lock();
        Depth {
            due: q.due,
            later: q.later.len() + q.keyed.waiting(),
            parked: q.parked_count,
            known: q.known.len(),
        }
    }

    /// Queued jobs (due, waiting or parked; not those running) per subscription. Walks the
    /// whole schedule under its lock: for an operator's occasional look, not the data path.
    pub(crate) fn depth_by_subscription(&self) -> HashMap<Arc<str>, usize> {
        let q = self.lock();
        let mut counts: HashMap<Arc<str>, usize> = HashMap::new();
        let waiting = q
            .lanes
            .values()
            .flatten()
            .chain(q.later.values())
            .chain(q.keyed.entries());
        for entry in waiting.chain(q.parked.values().flatten()) {
            *counts.entry(entry.subscription.clone()).or_default() += 1;
        }
        counts
    }

    /// Every lane with queued work (due or waiting; parked jobs are counted by
    /// [`Scheduler::depth`] only). Reads a few numbers per lane and changes nothing: cheap
    /// enough for every scrape.
    pub(crate) fn lane_depths(&self) -> Vec<LaneDepth> {
        let q = self.lock();
        let mut out: Vec<LaneDepth> = q
            .lanes
            .iter()
            .map(|(lane, queue)| LaneDepth {
                lane: lane.clone(),
                due: queue.len(),
                waiting: q.later_per_lane.get(lane).copied().unwrap_or(0),
                head_due_since_ms: queue.front().map(|e| e.due_since_ms),
            })
            .collect();
        for (lane, &waiting) in &q.later_per_lane {
            if !q.lanes.contains_key(lane) {
                out.push(LaneDepth {
                    lane: lane.clone(),
                    due: 0,
                    waiting,
                    head_due_since_ms: None,
                });
            }
        }
        out
    }

    /// Resolves when work may have become runnable (a job queued, a slot freed).
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Wakes the dispatcher (a slot was freed).
    pub(crate) fn notify(&self) {
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job named `name`: a whole job id, or an event (its id's event part, which `ids`
    /// lists) for delivery 0 to `sub`.
    fn job(name: &str, sub: &str, dest: &str, kind: JobKind, due_ms: u64) -> Job {
        Job {
            id: name
                .parse()
                .unwrap_or_else(|_| crate::store::JobId::delivery(name, sub, 0)),
            kind,
            event_id: "evt".into(),
            subscription_id: sub.into(),
            destination: dest.into(),
            content_type: String::new(),
            body: Vec::new(),
            envelope: None,
            headers: Vec::new(),
            attempts: 0,
            created_ms: 0,
            due_ms,
            last_error: None,
            member: None,
            order: None,
        }
    }

    fn ids(taken: &[(Entry, ())]) -> Vec<&str> {
        taken
            .iter()
            .map(|(e, ())| e.id.split_once('.').map_or(&*e.id, |(event, _)| event))
            .collect()
    }

    fn ordered(id: &str, key: &str, seq: u64, due_ms: u64) -> Job {
        let mut j = job(id, "s", "d", JobKind::Deliver, due_ms);
        j.order = Some(crate::workplane::policy::Order {
            key: key.into(),
            seq,
            held: None,
        });
        j
    }

    #[test]
    fn an_ordered_key_runs_one_job_at_a_time_in_acceptance_order() {
        let s = Scheduler::default();
        // Queued out of order, as a rebuild from the store may give them.
        s.schedule(&ordered("k1-b", "k1", 2, 0), 0);
        s.schedule(&ordered("k1-a", "k1", 1, 0), 0);
        s.schedule(&ordered("k2-a", "k2", 3, 0), 0);
        // k1-b went first, as nothing older of its key was known then: a rebuild holds keys
        // until all are in (below).
        let taken = s.take(0, 10, |_| Admit::Run(()));
        assert_eq!(ids(&taken), ["k1-b", "k2-a"]);

        let s = Scheduler::default();
        let jobs = [
            ordered("k1-b", "k1", 2, 0),
            ordered("k1-a", "k1", 1, 0),
            ordered("k2-a", "k2", 3, 0),
        ];
        s.rebuild(jobs.into_iter().map(Ok), 0).expect("rebuild");
        let taken = s.take(0, 10, |_| Admit::Run(()));
        assert_eq!(ids(&taken), ["k1-a", "k2-a"], "one per key, the oldest");
        assert_eq!(s.depth().later, 1, "k1-b waits behind k1-a");
        // k1-a fails: retried later, it holds its key.
        let (a, ()) = taken.into_iter().next().expect("k1-a");
        s.requeue(a, 50, 0);
        assert!(s.take(10, 10, |_| Admit::Run(())).is_empty());
        let again = s.take(50, 10, |_| Admit::Run(()));
        assert_eq!(ids(&again), ["k1-a"]);
        s.finish("k1-a.s.0");
        assert_eq!(ids(&s.take(60, 10, |_| Admit::Run(()))), ["k1-b"]);
    }

    #[test]
    fn lanes_are_visited_round_robin() {
        let s = Scheduler::default();
        for i in 0..3 {
            s.schedule(&job(&format!("a{i}"), "s1", "a", JobKind::Deliver, 0), 0);
        }
        s.schedule(&job("b0", "s2", "b", JobKind::Deliver, 0), 0);
        s.schedule(&job("p0", "s3", "b", JobKind::Transform, 0), 0);
        let taken = s.take(0, 10, |_| Admit::Run(()));
        assert_eq!(ids(&taken), ["a0", "b0", "p0", "a1", "a2"]);
        assert_eq!(s.depth().due, 0);
    }

    #[test]
    fn a_blocked_lane_does_not_hold_the_others() {
        let s = Scheduler::default();
        for i in 0..100 {
            s.schedule(
                &job(&format!("dead{i}"), "s1", "blackhole", JobKind::Deliver, 0),
                0,
            );
        }
        s.schedule(&job("ok", "s2", "fine", JobKind::Deliver, 0), 0);
        let mut offered = 0;
        let taken = s.take(0, 10, |e| {
            offered += 1;
            match &e.lane {
                Lane::Deliver(d) if &**d == "blackhole" => Admit::<()>::Wait,
                _ => Admit::Run(()),
            }
        });
        assert_eq!(ids(&taken), ["ok"]);
        assert!(
            offered <= 3,
            "the blocked lane is asked once per round, not per job"
        );
        assert_eq!(s.depth().due, 100);
    }

    #[test]
    fn lane_depths_count_due_and_waiting_jobs_per_lane() {
        let s = Scheduler::default();
        s.schedule(&job("a", "sub", "d1", JobKind::Deliver, 3), 10);
        s.schedule(&job("b", "sub", "d1", JobKind::Deliver, 100), 10);
        s.schedule(&job("c", "sub", "d2", JobKind::Deliver, 200), 10);
        s.schedule(&job("t", "sub", "d1", JobKind::Transform, 0), 10);
        let mut depths = s.lane_depths();
        depths.sort_by_key(|d| format!("{:?}", d.lane));
        let d1 = Lane::Deliver("d1".into());
        let d2 = Lane::Deliver("d2".into());
        let t = Lane::Transform("sub".into());
        let expected = [(&d1, 1, 1, Some(3)), (&d2, 0, 1, None), (&t, 1, 0, Some(0))];
        assert_eq!(depths.len(), 3, "{depths:?}");
        for (lane, due, waiting, since) in expected {
            let d = depths.iter().find(|d| &d.lane == lane).expect("lane");
            assert_eq!(
                (d.due, d.waiting, d.head_due_since_ms),
                (due, waiting, since),
                "{lane:?}"
            );
        }
        // Once `b` comes due it moves from waiting to due, with its own due time behind `a`.
        let taken = s.take(150, 10, |_| Admit::Run(()));
        assert_eq!(taken.len(), 3);
        let after = s.lane_depths();
        assert_eq!(after.len(), 1, "{after:?}");
        assert_eq!((after[0].due, after[0].waiting), (0, 1));
    }

    #[test]
    fn later_jobs_come_due_in_time_order_and_duplicates_are_ignored() {
        let s = Scheduler::default();
        s.schedule(&job("late", "s", "d", JobKind::Deliver, 200), 0);
        s.schedule(&job("early", "s", "d", JobKind::Deliver, 100), 0);
        s.schedule(&job("early", "s", "d", JobKind::Deliver, 0), 0);
        assert_eq!(s.next_due_ms(), Some(100));
        assert!(s.take(99, 10, |_| Admit::Run(())).is_empty());
        assert_eq!(ids(&s.take(150, 10, |_| Admit::Run(()))), ["early"]);
        assert_eq!(ids(&s.take(200, 10, |_| Admit::Run(()))), ["late"]);
        // Running jobs stay known until finished.
        s.schedule(&job("late", "s", "d", JobKind::Deliver, 0), 0);
        assert_eq!(s.depth().due, 0);
        s.finish("late.s.0");
        s.schedule(&job("late", "s", "d", JobKind::Deliver, 0), 0);
        assert_eq!(s.depth().due, 1);
    }

    #[test]
    fn a_runner_can_take_more_of_its_lane() {
        let s = Scheduler::default();
        for i in 0..5 {
            s.schedule(&job(&format!("p{i}"), "s", "d", JobKind::Transform, 0), 0);
        }
        s.schedule(&job("other", "t", "d", JobKind::Transform, 0), 0);
        let first = s.take(0, 1, |_| Admit::Run(()));
        assert_eq!(ids(&first), ["p0"]);
        let more: Vec<String> = s
            .take_more(&first[0].0.lane, 10, 1)
            .iter()
            .map(|e| e.id.replace(".s.0", ""))
            .collect();
        assert_eq!(more, ["p1", "p2", "p3", "p4"]);
        assert_eq!(s.depth().due, 1);
        // The emptied lane left the ring: the other one is next, once.
        assert_eq!(ids(&s.take(0, 10, |_| Admit::Run(()))), ["other"]);
        s.schedule(&job("p5", "s", "d", JobKind::Transform, 0), 0);
        assert_eq!(ids(&s.take(0, 10, |_| Admit::Run(()))), ["p5"]);
    }

    #[test]
    fn a_runner_leaves_their_part_to_the_lanes_other_runners() {
        let s = Scheduler::default();
        for i in 0..8 {
            s.schedule(&job(&format!("p{i}"), "s", "d", JobKind::Transform, 0), 0);
        }
        let first = s.take(0, 1, |_| Admit::Run(()));
        let lane = &first[0].0.lane;
        // Seven due, two runners: four for this one (rounded up), then at most the cap.
        assert_eq!(s.take_more(lane, 31, 2).len(), 4);
        assert_eq!(s.take_more(lane, 1, 2).len(), 1);
        assert_eq!(s.take_more(lane, 31, 2).len(), 1);
        assert_eq!(s.take_more(lane, 31, 2).len(), 1);
        assert!(s.take_more(lane, 31, 2).is_empty());
        assert_eq!(s.depth().due, 0);
    }

    #[test]
    fn depth_by_subscription_counts_due_later_and_parked_jobs() {
        let s = Scheduler::default();
        s.schedule(&job("e1.a.0", "a", "d1", JobKind::Deliver, 0), 10);
        s.schedule(&job("e2.a.0", "a", "d1", JobKind::Deliver, 500), 10);
        s.schedule(&job("e1.b.0", "b", "d2", JobKind::Deliver, 0), 10);
        let _ = s.take::<()>(10, 10, |e| {
            if &*e.subscription == "b" {
                Admit::Park
            } else {
                Admit::Wait
            }
        });
        let depth = s.depth_by_subscription();
        assert_eq!(depth.get("a"), Some(&2));
        assert_eq!(depth.get("b"), Some(&1));
        assert_eq!(s.depth().parked, 1);
    }

    #[test]
    fn parked_jobs_wait_for_their_subscription() {
        let s = Scheduler::default();
        s.schedule(&job("x", "paused", "d", JobKind::Deliver, 0), 0);
        s.schedule(&job("y", "live", "d", JobKind::Deliver, 0), 0);
        let taken = s.take(0, 10, |e| {
            if &*e.subscription == "paused" {
                Admit::Park
            } else {
                Admit::Run(())
            }
        });
        assert_eq!(ids(&taken), ["y"]);
        assert_eq!(s.depth().parked, 1);
        assert_eq!(s.unpark(5, |sub| sub == "other"), 0);
        assert_eq!(s.unpark(5, |sub| sub == "paused"), 1);
        assert_eq!(ids(&s.take(5, 10, |_| Admit::Run(()))), ["x"]);
    }
}
