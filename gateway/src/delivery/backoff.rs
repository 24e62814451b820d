//! Retry timing: the backoff schedule, jitter, `Retry-After`, and human duration strings.
//!
//! This module owns when the next attempt may happen. It keeps no state and does no I/O: the
//! queue records attempts and asks here for the delay. [`parse_duration`] and
//! [`serde_duration`] are the one place duration strings such as `"500ms"` or `"2m"` are read,
//! so the config module reuses them.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

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

/// A duration string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{0}`: expected e.g. 500ms, 5s, 2m, 1h30m, 1d")]
pub struct DurationParseError(String);

/// Reads `500ms`, `5s`, `2m`, `1h`, `1d`, and sums like `1h30m` or `1m 30s`.
///
/// Units are required (a bare `5` is ambiguous); `s` also accepts a decimal part (`1.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationParseError> {
    let err = || DurationParseError(text.to_owned());
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(err()),
        };
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
            return Err(err());
        }
        let value: f64 = number.parse().map_err(|_| err())?;
        let part = Duration::try_from_secs_f64(value * scale).map_err(|_| err())?;
        total = total.checked_add(part).ok_or_else(err)?;
        rest = tail.trim_start();
    }
    Ok(total)
}

/// Writes a duration in the largest unit that divides it exactly (`2m`, `90s`, `1500ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// `#[serde(with = "serde_duration")]` for `Duration` fields written as `"5s"`; `::vec` and
/// `::option` for lists and optional fields.
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    /// Writes a duration string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// For `Vec<Duration>`.
    pub mod vec {
        use super::*;

        /// Reads a list of duration strings.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
            let v = Vec::<String>::deserialize(d)?;
            v.iter()
                .map(|s| super::super::parse_duration(s).map_err(serde::de::Error::custom))
                .collect()
        }

        /// Writes a list of duration strings.
        pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|d| super::super::format_duration(*d)))
        }
    }

    /// For `Option<Duration>` (pair with `#[serde(default)]`).
    pub mod option {
        use super::*;

        /// Reads an optional duration string.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            let v = Option::<String>::deserialize(d)?;
            v.map(|s| super::super::parse_duration(&s).map_err(serde::de::Error::custom))
                .transpose()
        }

        /// Writes an optional duration string.
        pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(d) => s.serialize_some(&super::super::format_duration(*d)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests;
