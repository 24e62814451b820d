//! Retry timing: the backoff schedule, jitter, `Retry-After`, and human duration strings.
//!
//! This module owns when the next attempt may happen. It keeps no state and does no I/O: the
//! queue records attempts and asks here for the delay. Duration strings such as `"500ms"` or
//! `"2m"` are read in one place, [`crate::time`].

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

pub use crate::time::{DurationParseError, format_duration, parse_duration, serde_duration};

/// Default retry schedule: 1 s, 5 s, 30 s, 2 min, 10 min, 30 min, then 1 h for every later
/// attempt. Roughly exponential (×5), so a receiver down for a minute is reached again within
/// a minute, and one down for hours is not hammered.
pub const DEFAULT_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
];
/// Default jitter: each delay is moved by up to ±20 %, so retries after an outage spread out.
pub const DEFAULT_JITTER: f64 = 0.2;
/// Default ceiling on a receiver's `Retry-After`: a receiver cannot park a delivery for days.
pub const DEFAULT_RETRY_AFTER_CAP: Duration = Duration::from_secs(60 * 60);

/// When to retry a failed delivery.
///
/// Config shape (every field optional):
/// `{ schedule = ["1s", "5s", "30s"], jitter = 0.2, retry_after_cap = "1h" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "BackoffConfig")]
pub struct Backoff {
    /// Delay before retry n+1 is `schedule[n]`; past the end, the last entry repeats.
    pub schedule: Vec<Duration>,
    /// Fraction in `[0, 1]`: the delay is multiplied by a random factor in `1 ± jitter`.
    pub jitter: f64,
    /// `Retry-After` values above this are cut down to it.
    pub retry_after_cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            schedule: DEFAULT_SCHEDULE.to_vec(),
            jitter: DEFAULT_JITTER,
            retry_after_cap: DEFAULT_RETRY_AFTER_CAP,
        }
    }
}

/// The serde shape of [`Backoff`], validated into it.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BackoffConfig {
    #[serde(with = "serde_duration::vec")]
    schedule: Vec<Duration>,
    jitter: f64,
    #[serde(with = "serde_duration")]
    retry_after_cap: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        let d = Backoff::default();
        Self {
            schedule: d.schedule,
            jitter: d.jitter,
            retry_after_cap: d.retry_after_cap,
        }
    }
}

impl TryFrom<BackoffConfig> for Backoff {
    type Error = String;

    fn try_from(c: BackoffConfig) -> Result<Self, String> {
        if c.schedule.is_empty() {
            return Err("backoff schedule must have at least one delay".into());
        }
        if !(0.0..=1.0).contains(&c.jitter) {
            return Err(format!(
                "backoff jitter must be within 0..=1, got {}",
                c.jitter
            ));
        }
        Ok(Self {
            schedule: c.schedule,
            jitter: c.jitter,
            retry_after_cap: c.retry_after_cap,
        })
    }
}

impl Backoff {
    /// Delay after `failed_attempts` failures (1 after the first failure; 0 is treated as 1),
    /// jittered with the thread-local RNG.
    pub fn delay(&self, failed_attempts: u32) -> Duration {
        self.delay_with(failed_attempts, &mut rand::rng())
    }

    /// [`Backoff::delay`], honouring a receiver's `Retry-After`: never earlier than it asked
    /// (up to [`Backoff::retry_after_cap`]) nor earlier than the schedule says.
    pub fn next_delay(&self, failed_attempts: u32, retry_after: Option<Duration>) -> Duration {
        self.next_delay_with(failed_attempts, retry_after, &mut rand::rng())
    }

    /// [`Backoff::delay`] with a given RNG (deterministic in tests).
    pub fn delay_with<R: Rng + ?Sized>(&self, failed_attempts: u32, rng: &mut R) -> Duration {
        let Some(last) = self.schedule.len().checked_sub(1) else {
            return Duration::ZERO;
        };
        let index = usize::try_from(failed_attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        let base = self.schedule[index.min(last)];
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return base;
        }
        base.mul_f64(1.0 + rng.random_range(-jitter..=jitter))
    }

    /// [`Backoff::next_delay`] with a given RNG.
    pub fn next_delay_with<R: Rng + ?Sized>(
        &self,
        failed_attempts: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        let scheduled = self.delay_with(failed_attempts, rng);
        match retry_after {
            Some(asked) => scheduled.max(asked.min(self.retry_after_cap)),
            None => scheduled,
        }
    }
}

#[cfg(test)]
mod tests;
