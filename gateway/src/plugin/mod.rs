//! The WebAssembly plugin host: loads plugin components and runs one call per (event,
//! subscription), bounded in time, memory and output.
//!
//! It owns everything between an [`Event`](crate::event::Event) plus a subscription's
//! configuration and the checked [`Delivery`] list a plugin returns. It knows nothing about HTTP,
//! matching or queues, and does no I/O on the call path (files are read only at load). Calls are
//! synchronous: the pipeline runs them on blocking threads.
//!
//! - `host`: the engine, its epoch ticker, loading and type-checking plugins.
//! - `call`: one call in a fresh store; turning failures into [`PluginError`].
//! - `output`: the checks a result passes before it leaves the host.
//! - `cache`: compiled plugins on disk.
//! - `wasi`: the virtual WASI 0.2 underneath the plugin world (frozen clocks, seeded random,
//!   captured stdio, nothing else); `log`: a call's log lines, from `log` and from stdio.
//! - `guard`: the memory bound of a call, over every memory and table of the instance.
//! - `limits`, `error`: the bounds and the failures, by name.

mod bindings;
mod cache;
mod call;
mod error;
mod guard;
mod host;
mod limits;
mod log;
mod output;
pub mod wasi;

/// A delivery as a guest returns it: destination, content type, body, headers.
#[doc(hidden)]
pub type RawDelivery = (String, String, Vec<u8>, Vec<(String, String)>);

/// The plugin output checker on raw deliveries under the default limits: what a guest's
/// result goes through (for the fuzz targets).
#[doc(hidden)]
pub fn check_raw_output(raw: Vec<RawDelivery>) -> Result<usize, PluginError> {
    let raw = raw
        .into_iter()
        .map(
            |(destination, content_type, body, headers)| bindings::RawDelivery {
                destination,
                content_type,
                body,
                headers,
                ordering_key: None,
            },
        )
        .collect();
    output::check_deliveries(raw, &PluginLimits::default()).map(|d| d.len())
}

use std::collections::BTreeMap;
use std::sync::Arc;

pub use call::{CallReport, Plugin};
pub use error::PluginError;
pub use host::PluginHost;
pub use limits::{CallLimits, PluginLimits, PluginOverrides};
pub use output::{
    Delivery, LogLevel, LogLine, MAX_ORDERING_KEY_BYTES, PluginOutput, RESERVED_HEADERS,
};

/// The worlds a plugin may implement, oldest first (`wit/plugin.wit`, `wit/v0.2/plugin.wit`).
pub const WORLDS: [&str; 2] = [
    "odoo-gateway:plugin/plugin@0.1.0",
    "odoo-gateway:plugin/plugin@0.2.0",
];

/// The newest world: what new plugins should implement.
pub const WORLD: &str = WORLDS[1];

/// A subscription's plugin settings: string keys to string values, shared by every call.
pub type PluginConfig = Arc<BTreeMap<String, String>>;

/// A wasmtime error with its causes, on one line.
fn error_chain(error: &wasmtime::Error) -> String {
    let mut out = error.to_string();
    for cause in error.chain().skip(1) {
        out.push_str(": ");
        out.push_str(&cause.to_string());
    }
    out
}
