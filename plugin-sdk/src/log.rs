//! Logging to the gateway, which attributes each line to the subscription
//! and event being handled and caps how many lines one call may write.
//!
//! Use the macros, which format like `format!`; they are at the crate root
//! and re-exported here, so `log::info!` reads as it does with the `log` crate:
//!
//! ```
//! use odoo_gateway_plugin_sdk::{info, log, warn};
//!
//! let order = "S00012";
//! info!("routing order {order}");
//! warn!("line {} has no product", 33);
//! log::debug!("{} lines", 3);
//! log::log(log::Level::Error, "plain message");
//! ```
//!
//! On the host (unit tests, doc examples) lines go to standard error.

pub use crate::bindings::odoo_gateway::plugin::log::Level;
pub use crate::{debug, error, info, trace, warn};

/// Writes one log line at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::odoo_gateway::plugin::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[plugin {level:?}] {message}");
}

/// Logs at an explicit [`Level`]: `log!(Level::Info, "x = {}", x)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log::log($level, &::std::format!($($arg)+))
    };
}

/// Logs at trace level, formatting like `format!`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Trace, $($arg)+) };
}

/// Logs at debug level, formatting like `format!`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Debug, $($arg)+) };
}

/// Logs at info level, formatting like `format!`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Info, $($arg)+) };
}

/// Logs at warn level, formatting like `format!`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Warn, $($arg)+) };
}

/// Logs at error level, formatting like `format!`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Error, $($arg)+) };
}
