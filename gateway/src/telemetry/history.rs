//! The console's charts: an in-memory ring of samples (60 of `telemetry.chart_interval`, the
//! last hour by default) of deliveries and failed attempts per second, ingest acknowledgement
//! latency (median and 99th percentile) and queue depth, served by `GET /admin/charts`.
//!
//! Counting is a few relaxed atomic additions (no lock, no allocation); a sample is closed
//! by the sampler task ([`History::close`]) from the counts' differences since the previous
//! one. Percentiles are estimated from latency buckets 25% wide. Nothing is stored: a restart
//! starts an empty ring.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Samples kept.
pub const SAMPLES: usize = 60;
/// Upper bound of the first latency bucket, in seconds.
const FIRST_BOUND: f64 = 0.000_05;
/// Each bucket's bound is this times the one before.
const GROWTH: f64 = 1.25;
/// Latency buckets: 50 µs to about 11 s, then one for everything slower.
const BUCKETS: usize = 56;

/// One sample of the charts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// Start of the sample (Unix milliseconds).
    pub start_ms: u64,
    /// End of the sample (now, for the one in progress).
    pub end_ms: u64,
    /// Deliveries the receivers took, per second.
    pub deliveries_per_sec: f64,
    /// Delivery attempts that failed, per second.
    pub failures_per_sec: f64,
    /// Median time to acknowledge an accepted event, in milliseconds (none without one).
    pub ingest_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub ingest_p99_ms: Option<f64>,
    /// Jobs queued at the end of the sample (due, waiting for a retry, or paused).
    pub queue_depth: u64,
    /// Whether the sample is still in progress.
    pub partial: bool,
}

/// What the counters said when the current sample started.
#[derive(Debug)]
struct Marks {
    start_ms: u64,
    delivered: u64,
    failed: u64,
    ingest: [u64; BUCKETS + 1],
}

/// The ring and the counters it samples.
#[derive(Debug)]
pub struct History {
    /// The width of a sample, in milliseconds, as the sampler runs it.
    interval_ms: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    ingest: [AtomicU64; BUCKETS + 1],
    state: Mutex<(VecDeque<Sample>, Marks)>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            interval_ms: AtomicU64::new(60_000),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ingest: std::array::from_fn(|_| AtomicU64::new(0)),
            state: Mutex::new((
                VecDeque::with_capacity(SAMPLES),
                Marks {
                    start_ms: crate::time::now_ms(),
                    delivered: 0,
                    failed: 0,
                    ingest: [0; BUCKETS + 1],
                },
            )),
        }
    }
}

/// The bucket of `seconds`.
fn bucket(seconds: f64) -> usize {
    if seconds <= FIRST_BOUND {
        return 0;
    }
    let index = (seconds / FIRST_BOUND).ln() / GROWTH.ln();
    (index.ceil() as usize).min(BUCKETS)
}

/// The upper bound of bucket `i`, in seconds (the last is unbounded: twice the one before).
fn bound(i: usize) -> f64 {
    FIRST_BOUND * GROWTH.powi(i.min(BUCKETS) as i32) * if i >= BUCKETS { 2.0 } else { 1.0 }
}

/// The `q` quantile of `counts`, in milliseconds, interpolated within its bucket.
fn quantile(counts: &[u64; BUCKETS + 1], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, &n) in counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let next = seen + n as f64;
        if next >= rank {
            let low = if i == 0 { 0.0 } else { bound(i - 1) };
            let within = ((rank - seen) / n as f64).clamp(0.0, 1.0);
            return Some((low + (bound(i) - low) * within) * 1000.0);
        }
        seen = next;
    }
    Some(bound(BUCKETS) * 1000.0)
}

/// Closes a sample of `history` every `interval` until `stop`; `queued` tells how many jobs
/// are queued at each close.
pub async fn sample(
    history: &History,
    interval: std::time::Duration,
    queued: impl Fn() -> u64,
    stop: CancellationToken,
) {
    history
        .interval_ms
        .store(interval.as_millis() as u64, Ordering::Relaxed);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => history.close(crate::time::now_ms(), queued()),
            () = stop.cancelled() => return,
        }
    }
}

impl History {
    /// The width of a sample, in milliseconds.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms.load(Ordering::Relaxed)
    }

    /// Counts a delivery attempt: taken by the receiver, or failed.
    pub fn attempt(&self, delivered: bool) {
        let counter = if delivered {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an accepted event acknowledged after `seconds`.
    pub fn acknowledged(&self, seconds: f64) {
        self.ingest[bucket(seconds)].fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<Sample>, Marks)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sample from `marks` to now.
    fn sample(&self, marks: &Marks, now_ms: u64, depth: u64, partial: bool) -> (Sample, Marks) {
        let delivered = self.delivered.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let ingest: [u64; BUCKETS + 1] =
            std::array::from_fn(|i| self.ingest[i].load(Ordering::Relaxed));
        let window: [u64; BUCKETS + 1] =
            std::array::from_fn(|i| ingest[i].saturating_sub(marks.ingest[i]));
        let seconds = (now_ms.saturating_sub(marks.start_ms) as f64 / 1000.0).max(0.001);
        let sample = Sample {
            start_ms: marks.start_ms,
            end_ms: now_ms,
            deliveries_per_sec: delivered.saturating_sub(marks.delivered) as f64 / seconds,
            failures_per_sec: failed.saturating_sub(marks.failed) as f64 / seconds,
            ingest_p50_ms: quantile(&window, 0.5),
            ingest_p99_ms: quantile(&window, 0.99),
            queue_depth: depth,
            partial,
        };
        let marks = Marks {
            start_ms: now_ms,
            delivered,
            failed,
            ingest,
        };
        (sample, marks)
    }

    /// Closes the sample in progress at `now_ms`, with the queue `depth` now; the oldest
    /// goes once [`SAMPLES`] are kept.
    pub fn close(&self, now_ms: u64, depth: u64) {
        let mut state = self.lock();
        let (ring, marks) = &mut *state;
        let (sample, next) = self.sample(marks, now_ms, depth, false);
        if ring.len() == SAMPLES {
            ring.pop_front();
        }
        ring.push_back(sample);
        *marks = next;
    }

    /// Every closed sample, oldest first, then the one in progress (up to `now_ms`).
    pub fn samples(&self, now_ms: u64, depth: u64) -> Vec<Sample> {
        let state = self.lock();
        let (ring, marks) = &*state;
        let (current, _) = self.sample(marks, now_ms, depth, true);
        ring.iter().cloned().chain([current]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_and_quantiles_fall_in_the_right_bucket() {
        assert_eq!(bucket(0.0), 0);
        assert_eq!(bucket(FIRST_BOUND), 0);
        assert_eq!(bucket(100.0), BUCKETS);
        for seconds in [0.0002, 0.001, 0.0123, 0.5, 3.0] {
            let i = bucket(seconds);
            assert!(
                bound(i - 1) < seconds && seconds <= bound(i) * 1.000_001,
                "{seconds}"
            );
        }
        let mut counts = [0; BUCKETS + 1];
        counts[bucket(0.001)] += 98;
        counts[bucket(0.2)] += 2;
        let p50 = quantile(&counts, 0.5).expect("some");
        let p99 = quantile(&counts, 0.99).expect("some");
        assert!((0.9..=1.14).contains(&p50), "{p50}");
        assert!((191.0..=240.0).contains(&p99), "{p99}");
        assert_eq!(quantile(&[0; BUCKETS + 1], 0.5), None);
    }

    #[test]
    fn a_closed_sample_holds_the_rates_of_its_own_interval() {
        let history = History::default();
        let start = history.lock().1.start_ms;
        for _ in 0..120 {
            history.attempt(true);
        }
        history.attempt(false);
        history.acknowledged(0.002);
        history.close(start + 60_000, 7);
        history.attempt(true);
        let samples = history.samples(start + 90_000, 3);
        assert_eq!(samples.len(), 2);
        let (first, now) = (&samples[0], &samples[1]);
        assert!(!first.partial && now.partial);
        assert!((first.deliveries_per_sec - 2.0).abs() < 1e-9);
        assert!((first.failures_per_sec - 1.0 / 60.0).abs() < 1e-9);
        assert_eq!(first.queue_depth, 7);
        assert!(
            first
                .ingest_p50_ms
                .is_some_and(|ms| (1.7..=2.3).contains(&ms))
        );
        assert!((now.deliveries_per_sec - 1.0 / 30.0).abs() < 1e-9);
        assert_eq!(now.ingest_p50_ms, None, "no event acknowledged since");
        for n in 0..SAMPLES as u64 + 5 {
            history.close(start + 60_000 * (n + 2), 0);
        }
        assert_eq!(history.samples(start, 0).len(), SAMPLES + 1);
    }
}
