//! Sample events for trying a plugin without Odoo: the event a sample body stands for (an
//! Odoo webhook body or a full event, as `odoo-gateway plugin run` and the admin dry-run take
//! them), and a few bundled Odoo bodies (from `tests/fixtures/odoo/`) for the console's picker.
//!
//! Pure: it builds events and never stores one.

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::event::Event;

/// A bundled sample: an Odoo body and the event type it is sent as.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Its name in the picker and in a dry-run request.
    pub name: &'static str,
    /// `<model>.<action>`.
    pub event_type: &'static str,
    /// What it stands for.
    pub description: &'static str,
    /// The body, as Odoo (or a richer add-on) sends it.
    pub body: &'static str,
}

/// The bundled samples, built into the binary.
pub const SAMPLES: &[Sample] = &[
    Sample {
        name: "sale.order.confirmed",
        event_type: "sale.order.confirmed",
        description: "a confirmed order, as Odoo's webhook sends it (bare ids)",
        body: include_str!("../../tests/fixtures/odoo/native/sale.order.confirmed.json"),
    },
    Sample {
        name: "sale.order.confirmed.rich",
        event_type: "sale.order.confirmed",
        description: "the same order with its lines and routes embedded (a richer add-on, or enrichment)",
        body: include_str!("../../tests/fixtures/odoo/rich/sale.order.confirmed.json"),
    },
    Sample {
        name: "account.move.posted",
        event_type: "account.move.posted",
        description: "a posted invoice, as Odoo's webhook sends it",
        body: include_str!("../../tests/fixtures/odoo/native/account.move.posted.json"),
    },
    Sample {
        name: "res.partner.saved",
        event_type: "res.partner.write",
        description: "a contact saved, as Odoo's webhook sends it",
        body: include_str!("../../tests/fixtures/odoo/native/res.partner.saved.json"),
    },
    Sample {
        name: "product.template.price_changed",
        event_type: "product.template.price_changed",
        description: "a product's sales price changed",
        body: include_str!("../../tests/fixtures/odoo/native/product.template.price_changed.json"),
    },
    Sample {
        name: "stock.quant.quantity_changed",
        event_type: "stock.quant.quantity_changed",
        description: "stock on hand changed",
        body: include_str!("../../tests/fixtures/odoo/native/stock.quant.quantity_changed.json"),
    },
];

/// The bundled sample `name`.
pub fn sample(name: &str) -> Option<&'static Sample> {
    SAMPLES.iter().find(|s| s.name == name)
}

impl Sample {
    /// The event it stands for.
    pub fn event(&self) -> anyhow::Result<Event> {
        event_from_json(self.body, Some(self.event_type))
    }
}

/// A full event as a file may spell it; missing fields get CLI defaults.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFile {
    id: Option<String>,
    source: Option<String>,
    model: String,
    action: String,
    record_id: Option<i64>,
    received_at_ms: Option<u64>,
    payload: serde_json::Value,
    #[serde(default)]
    headers: Vec<(String, String)>,
}

/// Builds the event `plugin run` and the console's dry-run send: from an Odoo native webhook body (the payload is the
/// file as is) or from a full event. The id is derived from the content, so two runs on the
/// same file see the same event.
pub fn event_from_json(text: &str, event_type: Option<&str>) -> anyhow::Result<Event> {
    let json: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let object = json.as_object().context("expected a JSON object")?;
    let id = format!(
        "cli-{}",
        &hex::encode(Sha256::digest(text.as_bytes()))[..16]
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut event = if let Some(model) = object.get("_model") {
        Event {
            id,
            source: "cli".into(),
            model: model
                .as_str()
                .context("`_model` must be a string")?
                .to_owned(),
            action: "write".into(),
            record_id: object.get("_id").and_then(serde_json::Value::as_i64),
            received_at_ms: now,
            seq: 0,
            payload: text.to_owned(),
            headers: vec![("content-type".into(), "application/json".into())],
        }
    } else if object.contains_key("model") {
        let file: EventFile = serde_json::from_value(json).context("not a valid event")?;
        Event {
            id: file.id.unwrap_or(id),
            source: file.source.unwrap_or_else(|| "cli".into()),
            model: file.model,
            action: file.action,
            record_id: file.record_id,
            received_at_ms: file.received_at_ms.unwrap_or(now),
            seq: 0,
            payload: match file.payload {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            },
            headers: file.headers,
        }
    } else {
        bail!(
            "expected an Odoo webhook body (with `_model`) or an event (with `model`, `action`, `payload`)"
        );
    };
    if let Some(event_type) = event_type {
        let (model, action) = event_type
            .rsplit_once('.')
            .filter(|(m, a)| !m.is_empty() && !a.is_empty())
            .with_context(|| format!("event type {event_type:?} is not `model.action`"))?;
        event.model = model.to_owned();
        event.action = action.to_owned();
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NATIVE: &str = odoo_gateway_fixtures::NATIVE_ORDER;

    #[test]
    fn native_body_becomes_an_event_with_the_body_as_payload() {
        let event = event_from_json(NATIVE, Some("sale.order.confirmed")).unwrap();
        assert_eq!(
            (event.model.as_str(), event.action.as_str()),
            ("sale.order", "confirmed")
        );
        assert!(event.record_id.is_some());
        assert_eq!(event.payload, NATIVE);
        assert_eq!(
            event.id,
            event_from_json(NATIVE, None).unwrap().id,
            "ids are stable"
        );
        assert_eq!(event_from_json(NATIVE, None).unwrap().action, "write");
    }

    #[test]
    fn full_event_keeps_its_fields() {
        let text = r#"{"id": "e1", "model": "res.partner", "action": "create", "record_id": 7,
                       "received_at_ms": 5, "payload": {"name": "Azure"}}"#;
        let event = event_from_json(text, None).unwrap();
        assert_eq!(event.id, "e1");
        assert_eq!(event.event_type(), "res.partner.create");
        assert_eq!((event.record_id, event.received_at_ms), (Some(7), 5));
        assert_eq!(event.payload, r#"{"name":"Azure"}"#);
        assert!(event_from_json(r#"{"name": "x"}"#, None).is_err());
        assert!(event_from_json(NATIVE, Some("nodot")).is_err());
    }

    #[test]
    fn every_bundled_sample_is_an_event_of_its_type() {
        for sample in SAMPLES {
            let event = sample
                .event()
                .unwrap_or_else(|e| panic!("{}: {e:#}", sample.name));
            assert_eq!(event.event_type(), sample.event_type, "{}", sample.name);
            assert_eq!(event.payload, sample.body);
        }
        assert_eq!(
            sample("sale.order.confirmed.rich").map(|s| s.body),
            Some(odoo_gateway_fixtures::RICH_ORDER)
        );
        assert!(sample("nope").is_none());
    }
}
