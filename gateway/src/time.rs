//! The gateway's clock: milliseconds since the Unix epoch, the unit every stored time uses.
//! At the bottom of the layers: it depends on nothing of the gateway's. Durations written for
//! people (`"500ms"`, `"1h30m"`) are read and written here too ([`parse_duration`],
//! [`serde_duration`]), the one place every setting reads them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The next acceptance sequence of this process: microseconds since the Unix epoch, but always
/// above the last one it gave, so that an event accepted after another's answer orders after
/// it even within one microsecond or across a small step back of the clock.
pub fn sequence() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
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
