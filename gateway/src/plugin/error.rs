//! Everything that can go wrong loading or calling a plugin, as one typed enum.
//!
//! This module owns [`PluginError`] and its stable codes. Codes are part of the gateway's
//! interface (attempt logs, admin API, `plugin run` output): never rename one.

use std::path::PathBuf;
use std::time::Duration;

/// Why loading a plugin or one call of it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The plugin refused the event (`plugin-error::reject`); it must not be retried.
    #[error("plugin rejected the event: {0}")]
    Rejected(String),
    /// The plugin asked for a later retry (`plugin-error::retry`).
    #[error("plugin asked to retry later: {0}")]
    Retry(String),
    /// The subscription's configuration cannot work (from `validate-config` or
    /// `plugin-error::invalid-config`).
    #[error("invalid plugin configuration: {0}")]
    InvalidConfig(String),
    /// The guest trapped (panic, `unreachable`, out-of-bounds access, stack overflow, ...).
    #[error("plugin trapped: {0}")]
    Trapped(String),
    /// The call ran past its time budget and was interrupted.
    #[error("plugin exceeded its CPU time limit of {limit:?}")]
    CpuExceeded {
        /// The budget that was exceeded.
        limit: Duration,
    },
    /// The guest tried to grow its memory past the limit.
    #[error("plugin exceeded its memory limit of {limit_bytes} bytes")]
    MemoryExceeded {
        /// The limit that was exceeded.
        limit_bytes: usize,
    },
    /// The result breaks a size cap (deliveries, body, headers, total).
    #[error("plugin output too large: {0}")]
    OutputTooLarge(String),
    /// The result is malformed: an invalid or reserved header, a bad content type.
    #[error("plugin output invalid: {0}")]
    InvalidOutput(String),
    /// The file is WebAssembly but not a component of world `odoo-gateway:plugin/plugin@0.2.0`
    /// or `@0.1.0` (a core module, a missing or mistyped export, an import the host does not
    /// provide).
    #[error("not a plugin of world {world} or @0.1.0: {0}", world = super::WORLD)]
    NotAPlugin(String),
    /// The bytes could not be compiled (not WebAssembly, invalid, unsupported feature).
    #[error("plugin failed to compile: {0}")]
    Compile(String),
    /// No instance could be created for this call, typically because every pooling slot is in
    /// use; retrying later can succeed.
    #[error("plugin could not be instantiated: {0}")]
    Instantiate(String),
    /// The host itself could not be set up (engine configuration, cache directory).
    #[error("plugin host setup failed: {0}")]
    Host(String),
    /// Reading the plugin file failed.
    #[error("cannot read plugin {}: {message}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The operating system's message.
        message: String,
    },
}

impl PluginError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected(_) => "plugin_rejected",
            Self::Retry(_) => "plugin_retry",
            Self::InvalidConfig(_) => "plugin_invalid_config",
            Self::Trapped(_) => "plugin_trapped",
            Self::CpuExceeded { .. } => "plugin_cpu_exceeded",
            Self::MemoryExceeded { .. } => "plugin_memory_exceeded",
            Self::OutputTooLarge(_) => "plugin_output_too_large",
            Self::InvalidOutput(_) => "plugin_invalid_output",
            Self::NotAPlugin(_) => "plugin_not_a_plugin",
            Self::Compile(_) => "plugin_compile_failed",
            Self::Instantiate(_) => "plugin_instantiate_failed",
            Self::Host(_) => "plugin_host_failed",
            Self::Io { .. } => "plugin_io",
        }
    }

    /// Whether the same call may succeed later: an explicit `retry` from the plugin, a
    /// momentary lack of instance slots, and a CPU-time overrun (the bound is wall-clock time,
    /// which a loaded machine can exhaust). Traps, memory and output limits and invalid output
    /// are properties of the plugin and the event: retrying them would only repeat the failure.
    /// The one place fan-out, dispatch and replay decide this.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Retry(_) | Self::Instantiate(_) | Self::CpuExceeded { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_prefixed() {
        let all = [
            PluginError::Rejected(String::new()),
            PluginError::Retry(String::new()),
            PluginError::InvalidConfig(String::new()),
            PluginError::Trapped(String::new()),
            PluginError::CpuExceeded {
                limit: Duration::ZERO,
            },
            PluginError::MemoryExceeded { limit_bytes: 0 },
            PluginError::OutputTooLarge(String::new()),
            PluginError::InvalidOutput(String::new()),
            PluginError::NotAPlugin(String::new()),
            PluginError::Compile(String::new()),
            PluginError::Instantiate(String::new()),
            PluginError::Host(String::new()),
            PluginError::Io {
                path: PathBuf::new(),
                message: String::new(),
            },
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(PluginError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes.iter().all(|c| c.starts_with("plugin_")));
        let retryable: Vec<_> = all
            .iter()
            .filter(|e| e.is_retryable())
            .map(|e| e.code())
            .collect();
        assert_eq!(
            retryable,
            [
                "plugin_retry",
                "plugin_cpu_exceeded",
                "plugin_instantiate_failed"
            ]
        );
    }
}
