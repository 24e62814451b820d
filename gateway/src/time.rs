//! The gateway's clock: milliseconds since the Unix epoch, the unit every stored time uses.
//! At the bottom of the layers: it depends on nothing of the gateway's.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
