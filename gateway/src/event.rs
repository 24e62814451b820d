//! The normalised event: what every ingest format becomes and what plugins see.
//!
//! This module owns the in-memory and stored shape of an event. It does no I/O.

use serde::{Deserialize, Serialize};

/// One business event from Odoo, normalised from whichever wire format it came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable identifier; the idempotency key and the base of every delivery id.
    pub id: String,
    /// Configured source (Odoo instance) name.
    pub source: String,
    /// Odoo model, for example `sale.order`.
    pub model: String,
    /// `create`, `write`, `unlink` or a business action such as `confirmed`.
    pub action: String,
    /// Record id, when known.
    pub record_id: Option<i64>,
    /// Reception time in milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// Acceptance order: an event accepted after another's answer has a larger one (on sled a
    /// clock of the instance's, in microseconds, that never goes back; on NATS the events
    /// stream's sequence, set by the fan-out). What ordered delivery orders by.
    #[serde(default)]
    pub seq: u64,
    /// The record as JSON text.
    pub payload: String,
    /// Ingest request headers safe to show to plugins (never credentials).
    pub headers: Vec<(String, String)>,
}

impl Event {
    /// The event type subscriptions match on: `<model>.<action>`.
    pub fn event_type(&self) -> String {
        format!("{}.{}", self.model, self.action)
    }
}

/// A time-ordered, random event id: `evt_` + 12 hex digits of milliseconds + 16 random.
pub fn new_id() -> String {
    format!(
        "evt_{:012x}{:016x}",
        crate::time::now_ms(),
        rand::random::<u64>()
    )
}
