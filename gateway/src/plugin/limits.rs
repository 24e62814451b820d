//! Every bound a plugin call runs under, with its name and default number.
//!
//! This module owns [`PluginLimits`], plain serde data so the gateway's configuration file can
//! embed it (`[plugins.limits]`), and a subscription's own time and memory bounds
//! ([`PluginOverrides`], `plugin_limits` of a subscription), which may not exceed the operator's
//! `max_cpu_time_ms` and `max_memory_bytes`. It does no I/O and never changes a running host: a
//! new host is built for new limits.

use std::time::Duration;

use serde::Deserialize;

/// Bounds for every plugin call. `Default` gives the production values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Wall-clock budget of one call (instantiation + the export), enforced by epoch
    /// interruption with a granularity of [`PluginLimits::TICK`]. Default 100 ms.
    #[serde(with = "millis", rename = "cpu_time_ms")]
    pub cpu_time: Duration,
    /// The most memory a plugin instance may hold: every linear memory and table of the
    /// component together. Default 64 MiB.
    pub memory_bytes: usize,
    /// Most deliveries one `handle` call may return. Default 1024.
    pub max_deliveries: usize,
    /// Largest body of one delivery. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Largest sum of all bodies and headers one call may return. Default 8 MiB.
    pub max_total_output_bytes: usize,
    /// Most headers on one delivery. Default 32.
    pub max_headers: usize,
    /// Largest sum of header name and value bytes on one delivery. Default 8 KiB.
    pub max_header_bytes: usize,
    /// Most log lines kept from one call; later lines are dropped and counted. Default 100.
    pub max_log_lines: usize,
    /// Longest log line kept; longer lines are cut at a character boundary. Default 4 KiB.
    pub max_log_line_bytes: usize,
    /// Most plugin instances alive at once across the host (pooling allocator slots).
    /// Callers must bound their concurrency below this; a call beyond it fails with
    /// `plugin_instantiate_failed` (retryable). Default 64.
    pub max_instances: u32,
    /// The most `cpu_time_ms` a subscription may give its plugin (`plugin_limits`). Default 2 s.
    #[serde(with = "millis", rename = "max_cpu_time_ms")]
    pub max_cpu_time: Duration,
    /// The most `memory_bytes` a subscription may give its plugin; also the size of every
    /// pooled memory slot's reservation. Default 256 MiB.
    pub max_memory_bytes: usize,
}

/// A subscription's own bounds for its plugin (`plugin_limits = { cpu_time_ms, memory_bytes }`),
/// for plugins that need more than the defaults: an interpreter (Python, JavaScript) starts
/// with tens of MiB of memory and takes milliseconds where Rust takes microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginOverrides {
    /// Time budget of each call, in place of `[plugins.limits] cpu_time_ms`.
    #[serde(default, with = "millis_option", rename = "cpu_time_ms")]
    pub cpu_time: Option<Duration>,
    /// Memory limit of each call, in place of `[plugins.limits] memory_bytes`.
    #[serde(default)]
    pub memory_bytes: Option<usize>,
}

/// The time and memory bounds of one plugin's calls: the defaults, or its subscription's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Time budget of each call.
    pub cpu_time: Duration,
    /// Memory limit of each call.
    pub memory_bytes: usize,
}

impl CallLimits {
    /// The epoch deadline for one call: enough ticks to cover `cpu_time`, plus one because the
    /// first tick may come at any moment after the call starts.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = PluginLimits::TICK.as_nanos();
        let ticks = self.cpu_time.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }
}

impl PluginLimits {
    /// How often the host's ticker advances the engine epoch: the resolution of `cpu_time`.
    pub const TICK: Duration = Duration::from_millis(10);

    /// The epoch deadline for one call under the default time budget.
    #[cfg(test)]
    pub(crate) fn deadline_ticks(&self) -> u64 {
        self.defaults().deadline_ticks()
    }

    /// The bounds of a plugin whose subscription sets none of its own.
    pub fn defaults(&self) -> CallLimits {
        CallLimits {
            cpu_time: self.cpu_time,
            memory_bytes: self.memory_bytes,
        }
    }

    /// The bounds of a plugin whose subscription sets `overrides`, or why they are refused:
    /// each must be above zero and within the operator's maximum.
    pub fn with_overrides(&self, overrides: &PluginOverrides) -> Result<CallLimits, String> {
        let cpu_time = overrides.cpu_time.unwrap_or(self.cpu_time);
        let memory_bytes = overrides.memory_bytes.unwrap_or(self.memory_bytes);
        if cpu_time.is_zero() || cpu_time > self.max_cpu_time.max(self.cpu_time) {
            return Err(format!(
                "cpu_time_ms = {}: must be between 1 and the operator's maximum, \
                 [plugins.limits] max_cpu_time_ms = {}",
                cpu_time.as_millis(),
                self.max_cpu_time.max(self.cpu_time).as_millis()
            ));
        }
        if memory_bytes < 1 << 16 || memory_bytes > self.memory_ceiling() {
            return Err(format!(
                "memory_bytes = {memory_bytes}: must be between 65536 and the operator's maximum, \
                 [plugins.limits] max_memory_bytes = {}",
                self.memory_ceiling()
            ));
        }
        Ok(CallLimits {
            cpu_time,
            memory_bytes,
        })
    }

    /// The largest memory any call may have: what each pooled memory slot is sized for.
    pub(crate) fn memory_ceiling(&self) -> usize {
        self.max_memory_bytes.max(self.memory_bytes)
    }
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_millis(100),
            memory_bytes: 64 << 20,
            max_deliveries: 1024,
            max_body_bytes: 1 << 20,
            max_total_output_bytes: 8 << 20,
            max_headers: 32,
            max_header_bytes: 8 << 10,
            max_log_lines: 100,
            max_log_line_bytes: 4 << 10,
            max_instances: 64,
            max_cpu_time: Duration::from_secs(2),
            max_memory_bytes: 256 << 20,
        }
    }
}

/// `Duration` as a whole number of milliseconds in configuration files.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// An optional `Duration` as a whole number of milliseconds.
mod millis_option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_covers_the_budget_plus_one_tick() {
        let limits = PluginLimits::default();
        assert_eq!(limits.deadline_ticks(), 11);
        let odd = PluginLimits {
            cpu_time: Duration::from_millis(25),
            ..limits
        };
        assert_eq!(odd.deadline_ticks(), 4);
    }

    #[test]
    fn config_file_may_set_some_limits_and_nothing_unknown() {
        let limits: PluginLimits = toml::from_str("cpu_time_ms = 50\nmax_deliveries = 3").unwrap();
        assert_eq!(limits.cpu_time, Duration::from_millis(50));
        assert_eq!(limits.max_deliveries, 3);
        assert_eq!(limits.memory_bytes, PluginLimits::default().memory_bytes);
        assert!(toml::from_str::<PluginLimits>("cpu_time = 5").is_err());
    }

    #[test]
    fn a_subscription_may_raise_its_bounds_up_to_the_maximum_only() {
        let limits = PluginLimits::default();
        let own: PluginOverrides =
            toml::from_str("cpu_time_ms = 500\nmemory_bytes = 134217728").unwrap();
        let call = limits.with_overrides(&own).unwrap();
        assert_eq!(call.cpu_time, Duration::from_millis(500));
        assert_eq!(call.memory_bytes, 128 << 20);
        assert_eq!(
            limits.with_overrides(&PluginOverrides::default()).unwrap(),
            limits.defaults()
        );
        let too_slow = PluginOverrides {
            cpu_time: Some(Duration::from_secs(3)),
            ..PluginOverrides::default()
        };
        let err = limits.with_overrides(&too_slow).unwrap_err();
        assert!(err.contains("max_cpu_time_ms = 2000"), "{err}");
        let too_big = PluginOverrides {
            memory_bytes: Some(1 << 30),
            ..PluginOverrides::default()
        };
        assert!(
            limits
                .with_overrides(&too_big)
                .unwrap_err()
                .contains("max_memory_bytes")
        );
        assert!(toml::from_str::<PluginOverrides>("fuel = 1").is_err());
    }
}
