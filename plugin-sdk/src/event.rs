//! Helpers on the generated [`Event`] record: building one for host tests
//! and reading its payload.

use serde_json::Value;

use crate::{Event, PluginError};

impl Event {
    /// An event as the gateway would pass it, for host-side tests: id
    /// `"test-event"`, source `"test"`, no record id, time 0, no headers.
    pub fn new(model: &str, action: &str, payload: impl Into<String>) -> Self {
        Self {
            id: "test-event".to_owned(),
            source: "test".to_owned(),
            model: model.to_owned(),
            action: action.to_owned(),
            record_id: None,
            received_at_ms: 0,
            payload: payload.into(),
            headers: Vec::new(),
        }
    }

    /// The payload parsed as JSON; a `reject` error when it is not JSON
    /// (the gateway always sends JSON, so retrying would not help).
    pub fn payload_json(&self) -> Result<Value, PluginError> {
        serde_json::from_str(&self.payload)
            .map_err(|e| PluginError::Reject(format!("payload is not valid JSON: {e}")))
    }

    /// The event type, `<model>.<action>`, as subscriptions match it.
    pub fn event_type(&self) -> String {
        format!("{}.{}", self.model, self.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_parses_or_rejects() {
        let event = Event::new("sale.order", "confirmed", r#"{"id": 12}"#);
        assert_eq!(event.payload_json().unwrap(), serde_json::json!({"id": 12}));
        assert_eq!(event.event_type(), "sale.order.confirmed");

        let bad = Event::new("sale.order", "confirmed", "{not json");
        match bad.payload_json() {
            Err(PluginError::Reject(reason)) => {
                assert!(reason.starts_with("payload is not valid JSON"), "{reason}")
            }
            other => panic!("expected reject, got {other:?}"),
        }
    }
}
