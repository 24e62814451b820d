//! Rate limits per destination (`rate_limit = "10/s"`): the generic cell rate algorithm, one
//! number per destination (its *theoretical arrival time*, `tat`), so that the state several
//! instances share is one value changed with compare-and-set. Pure: the callers keep `tat`
//! (in memory on sled, in a key-value bucket on NATS).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A rate: `count` deliveries per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many.
    pub count: u32,
    /// Per how long.
    pub per: Duration,
}

/// Why a rate does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a rate: write a count from 1 to 999999 and a unit, such as \"10/s\", \"600/min\" or \"1000/h\""
)]
pub struct RateParseError(String);

impl FromStr for Rate {
    type Err = RateParseError;

    /// `<count>/<unit>`: a count from 1 to 999,999 written without leading zeros, and `s`,
    /// `min` or `h` ([`RATE_PATTERN`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || RateParseError(s.to_owned());
        let (count, unit) = s.split_once('/').ok_or_else(err)?;
        let digits_ok = !count.is_empty()
            && count.len() <= 6
            && count.bytes().all(|b| b.is_ascii_digit())
            && !count.starts_with('0');
        if !digits_ok {
            return Err(err());
        }
        let count: u32 = count.parse().map_err(|_| err())?;
        let per = match unit {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(err()),
        };
        Ok(Self { count, per })
    }
}

/// The grammar of a rate, as `openapi.json` states it.
pub const RATE_PATTERN: &str = "^[1-9][0-9]{0,5}/(s|min|h)$";

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Rate {
    /// The time between two deliveries, in microseconds.
    pub fn interval_us(&self) -> u64 {
        (self.per.as_micros() as u64 / u64::from(self.count)).max(1)
    }

    /// How far ahead of now the state may run: a burst of up to a second's worth of the rate
    /// (at least one delivery), so that a limit holds over any window longer than a second.
    fn tolerance_us(&self) -> u64 {
        let per_second = (u64::from(self.count) * 1_000_000 / self.per.as_micros() as u64).max(1);
        (per_second - 1) * self.interval_us()
    }

    /// Takes `n` deliveries at `now_us` from the state `tat_us`: the new state, or when the
    /// first of them may go (microseconds since the epoch) if that is later than now.
    pub fn take(&self, tat_us: u64, now_us: u64, n: u32) -> Result<u64, u64> {
        let start = tat_us.max(now_us);
        let new_tat = start + u64::from(n) * self.interval_us();
        let allowed_from =
            new_tat.saturating_sub(self.tolerance_us() + u64::from(n) * self.interval_us());
        if allowed_from <= now_us {
            Ok(new_tat)
        } else {
            Err(allowed_from)
        }
    }

    /// The state after a receiver said `Retry-After: wait` at `now_us`: nobody goes before
    /// then, and then without a burst.
    pub fn slowed(&self, tat_us: u64, now_us: u64, wait: Duration) -> u64 {
        tat_us.max(now_us + wait.as_micros() as u64 + self.tolerance_us())
    }

    /// How many deliveries one claim of a shared state takes: a tenth of a second's worth (at
    /// least one), so that a busy destination costs a few writes per second, not one per
    /// delivery.
    pub fn batch(&self) -> u32 {
        let per_tenth = u64::from(self.count) * 100_000 / self.per.as_micros() as u64;
        u32::try_from(per_tenth.max(1)).unwrap_or(u32::MAX)
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let r: Rate = "10/s".parse().expect("rate");
        assert_eq!(r.interval_us(), 100_000);
        assert_eq!(r.to_string(), "10/s");
        let m: Rate = "600/min".parse().expect("rate");
        assert_eq!(m.interval_us(), 100_000);
        assert_eq!("30/h".parse::<Rate>().expect("rate").to_string(), "30/h");
        for bad in [
            "",
            "10",
            "0/s",
            "ten/s",
            "10/day",
            "-1/s",
            "10 /s",
            "010/s",
            "1000000/s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_limit_holds_over_any_window_longer_than_a_second() {
        let r: Rate = "10/s".parse().expect("rate");
        // Callers as eager as can be: every microsecond someone asks.
        let mut tat = 0;
        let mut sent = Vec::new();
        let mut now = 1_000_000_000;
        let end = now + 20_000_000;
        while now < end {
            match r.take(tat, now, 1) {
                Ok(t) => {
                    tat = t;
                    sent.push(now);
                }
                Err(at) => now = at,
            }
        }
        // 20 s at 10/s, plus at most the one-second burst.
        assert!((200..=210).contains(&sent.len()), "{}", sent.len());
        for (i, t) in sent.iter().enumerate() {
            let in_a_second = sent[i..].iter().take_while(|u| **u < t + 1_000_000).count();
            assert!(in_a_second <= 20, "{in_a_second} within a second of {t}");
        }
        let last_ten_seconds = sent.iter().filter(|t| **t >= end - 10_000_000).count();
        assert!(
            (100..=101).contains(&last_ten_seconds),
            "{last_ten_seconds}"
        );
    }

    #[test]
    fn batches_take_a_tenth_of_a_second_and_retry_after_pushes_everyone_back() {
        let r: Rate = "100/s".parse().expect("rate");
        assert_eq!(r.batch(), 10);
        assert_eq!("1/min".parse::<Rate>().expect("rate").batch(), 1);
        let now = 5_000_000;
        let tat = r.slowed(0, now, Duration::from_secs(3));
        assert_eq!(
            r.take(tat, now, 1),
            Err(now + 3_000_000),
            "nobody before then"
        );
        let later = now + 3_000_000;
        let tat = r.take(tat, later, 1).expect("then one");
        assert_eq!(r.take(tat, later, 1), Err(later + 10_000), "and no burst");
    }
}
