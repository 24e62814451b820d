//! Every bound a plugin call runs under, with its name and default number.
//!
//! This module owns [`PluginLimits`], plain serde data so the gateway's configuration file can
//! embed it (`[plugins.limits]`). It does no I/O and never changes a running host: a new host is
//! built for new limits.

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
    /// Largest linear memory a plugin instance may grow to. Default 64 MiB.
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
}

impl PluginLimits {
    /// How often the host's ticker advances the engine epoch: the resolution of `cpu_time`.
    pub const TICK: Duration = Duration::from_millis(10);

    /// The epoch deadline for one call: enough ticks to cover `cpu_time`, plus one because the
    /// first tick may come at any moment after the call starts.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = Self::TICK.as_nanos();
        let ticks = self.cpu_time.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
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
}
