//! Ordered delivery per key: a subscription with `ordering` delivers the jobs of one key one
//! at a time, in the order their events were accepted. The key is a template over the event
//! (`"record"` is `"{model}:{record_id}"`); a job carries its key and its event's acceptance
//! sequence (`store::Order`). Pure: the engines keep the queues.

use crate::event::Event;

/// The shorthand for one key per record.
pub const RECORD: &str = "{model}:{record_id}";

/// Longest key kept; a longer one is cut (its order then covers more jobs, never fewer).
const MAX_KEY: usize = 256;

/// Longest template.
const MAX_TEMPLATE: usize = 256;

/// The grammar of `ordering`, as `openapi.json` states it.
pub const ORDERING_PATTERN: &str =
    r"^(record|([^{}]*\{(model|record_id|action|source|event_type|payload(\.[^{}.]+)+)\})+[^{}]*)$";

/// Text between placeholders: anything but braces.
fn text_part(text: &str) -> Result<Part, String> {
    if text.contains('}') {
        return Err(format!("ordering: `{text}` has a `}}` without its `{{`"));
    }
    Ok(Part::Text(text.to_owned()))
}

/// A validated key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Model,
    RecordId,
    Action,
    Source,
    EventType,
    /// A payload field: `a.b` walks into objects.
    Payload(Vec<String>),
}

impl KeyTemplate {
    /// Parses `ordering` as written: `"record"` or a template with `{model}`, `{record_id}`,
    /// `{action}`, `{source}`, `{event_type}` and `{payload.<field>}`.
    pub fn parse(ordering: &str) -> Result<Self, String> {
        let text = if ordering == "record" {
            RECORD
        } else {
            ordering
        };
        if text.len() > MAX_TEMPLATE {
            return Err(format!("ordering: at most {MAX_TEMPLATE} bytes"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(text_part(&rest[..open])?);
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("ordering: `{text}` has a `{{` without its `}}`"))?;
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "model" => Part::Model,
                "record_id" => Part::RecordId,
                "action" => Part::Action,
                "source" => Part::Source,
                "event_type" => Part::EventType,
                _ => match name.strip_prefix("payload.") {
                    Some(path)
                        if !path.is_empty()
                            && !path.contains('{')
                            && path.split('.').all(|p| !p.is_empty()) =>
                    {
                        Part::Payload(path.split('.').map(str::to_owned).collect())
                    }
                    _ => {
                        return Err(format!(
                            "ordering: `{{{name}}}` is not a field: use {{model}}, {{record_id}}, {{action}}, {{source}}, {{event_type}} or {{payload.<field>}}"
                        ));
                    }
                },
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(text_part(rest)?);
        }
        if !parts.iter().any(|p| !matches!(p, Part::Text(_))) {
            return Err(format!(
                "ordering: `{text}` names no field of the event, so every job would wait for every other"
            ));
        }
        Ok(Self {
            parts,
            text: text.to_owned(),
        })
    }

    /// The template as written (with `record` spelled out).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key of `event`.
    pub fn key(&self, event: &Event) -> String {
        // The payload is parsed only for a template that reads it.
        let payload: serde_json::Value = if self.parts.iter().any(|p| matches!(p, Part::Payload(_)))
        {
            serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Null
        };
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => key.push_str(t),
                Part::Model => key.push_str(&event.model),
                Part::RecordId => {
                    if let Some(id) = event.record_id {
                        key.push_str(&id.to_string());
                    }
                }
                Part::Action => key.push_str(&event.action),
                Part::Source => key.push_str(&event.source),
                Part::EventType => key.push_str(&event.event_type()),
                Part::Payload(path) => {
                    let mut value = &payload;
                    for step in path {
                        value = value.get(step).unwrap_or(&serde_json::Value::Null);
                    }
                    match value {
                        serde_json::Value::String(s) => key.push_str(s),
                        serde_json::Value::Null => {}
                        // A many2one `[id, "name"]` orders by its id.
                        serde_json::Value::Array(a) if a.len() == 2 && a[0].is_u64() => {
                            key.push_str(&a[0].to_string());
                        }
                        other => key.push_str(&other.to_string()),
                    }
                }
            }
        }
        if key.len() > MAX_KEY {
            let mut cut = MAX_KEY;
            while !key.is_char_boundary(cut) {
                cut -= 1;
            }
            key.truncate(cut);
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: serde_json::Value) -> Event {
        let payload = payload.to_string();
        Event {
            id: "evt_1".into(),
            source: "odoo".into(),
            model: "sale.order".into(),
            action: "confirmed".into(),
            record_id: Some(57),
            received_at_ms: 0,
            seq: 0,
            payload,
            headers: Vec::new(),
        }
    }

    #[test]
    fn the_documented_pattern_says_exactly_what_parses() {
        let pattern = regex::Regex::new(ORDERING_PATTERN).expect("pattern");
        for t in [
            "record",
            "{model}:{record_id}",
            "x{payload.a.b}y",
            "{event_type}",
            "{model",
            "{colour}",
            "constant",
            "a}{model}",
            "{payload.a{b}",
            "{payload.}",
            "{payload..a}",
            "",
        ] {
            assert_eq!(pattern.is_match(t), KeyTemplate::parse(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn record_orders_by_model_and_id() {
        let t = KeyTemplate::parse("record").expect("template");
        assert_eq!(t.key(&event(serde_json::json!({}))), "sale.order:57");
        assert_eq!(t.as_str(), RECORD);
    }

    #[test]
    fn payload_fields_and_many2one_ids_make_keys() {
        let t = KeyTemplate::parse("partner-{payload.partner_id}/{payload.x.y}").expect("template");
        let e = event(serde_json::json!({"partner_id": [9, "Deco Addict"], "x": {"y": "z"}}));
        assert_eq!(t.key(&e), "partner-9/z");
        assert_eq!(t.key(&event(serde_json::json!({}))), "partner-/");
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        for (bad, says) in [
            ("{model", "without its"),
            ("{colour}", "is not a field"),
            ("{payload.}", "is not a field"),
            ("a}{model}", "without its"),
            ("{payload.a{b}", "is not a field"),
            ("constant", "names no field"),
        ] {
            let e = KeyTemplate::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
