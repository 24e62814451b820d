//! Turning request bodies into events: Odoo's native webhook body, and the generic JSON or
//! XML envelope. Pure functions: no I/O, no clock; the caller adds id and time.

use serde::Deserialize;
use serde_json::Value;

use crate::config::Source;
use crate::xmljson;

/// What a body says, before the gateway gives it an id and a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The producer's own event id, when it sent one.
    pub explicit_id: Option<String>,
    /// Odoo model.
    pub model: String,
    /// Action part of the event type.
    pub action: String,
    /// Record id, when known.
    pub record_id: Option<i64>,
    /// The record as JSON text.
    pub payload: String,
}

/// Why a body was refused; every variant is the client's mistake (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON.
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    /// Not XML.
    #[error("the body is not valid XML: {0}")]
    Xml(String),
    /// Valid syntax, wrong content.
    #[error("{0}")]
    Shape(String),
}

impl ParseError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Json(_) => "malformed_json",
            Self::Xml(_) => "malformed_xml",
            Self::Shape(_) => "invalid_event",
        }
    }
}

/// Parses Odoo's built-in "Send Webhook Notification" body.
///
/// The action comes from `url_action` (the `?event=` query parameter) when given, else from
/// the source's mapping of Odoo server-action names (`"SO confirmed(#57)"`, or the same name
/// without its `(#57)` suffix), else the source's default action.
pub fn native(
    body: &[u8],
    source: &Source,
    url_action: Option<&str>,
) -> Result<Incoming, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| ParseError::Shape("an Odoo webhook body must be a JSON object".into()))?;
    let model = object
        .get("_model")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ParseError::Shape("the body has no `_model` string: is this an Odoo webhook?".into())
        })?;
    let record_id = match object.get("_id").or_else(|| object.get("id")) {
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    };
    let odoo_action = object.get("_action").and_then(Value::as_str);
    let action = match url_action {
        Some(a) => a.to_owned(),
        None => odoo_action
            .and_then(|name| {
                source.actions.get(name).or_else(|| {
                    let short = name.rsplit_once("(#").map_or(name, |(s, _)| s).trim();
                    source.actions.get(short)
                })
            })
            .cloned()
            .unwrap_or_else(|| source.default_action.clone()),
    };
    let payload = std::str::from_utf8(body)
        .map_err(|_| ParseError::Json("the body is not UTF-8".into()))?
        .to_owned();
    checked(Incoming {
        explicit_id: None,
        model: model.to_owned(),
        action,
        record_id,
        payload,
    })
}

/// The generic envelope in JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEnvelope {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    source: Option<String>,
    model: String,
    #[serde(alias = "event")]
    action: String,
    #[serde(default)]
    record_id: Option<i64>,
    #[serde(alias = "data")]
    payload: Value,
    #[serde(default)]
    timestamp: Option<Value>,
}

/// Parses the generic JSON envelope:
/// `{"id"?, "source"?, "model", "action", "record_id"?, "payload"}` (`event` and `data` are
/// accepted for `action` and `payload`, as some Odoo add-ons send them).
pub fn json_envelope(body: &[u8], source_name: &str) -> Result<Incoming, ParseError> {
    let env: JsonEnvelope = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ParseError::Shape(format!("the envelope is not valid: {e}"))
        } else {
            ParseError::Json(e.to_string())
        }
    })?;
    let _ = env.timestamp;
    check_source(env.source.as_deref(), source_name)?;
    checked(Incoming {
        explicit_id: env.id,
        model: env.model,
        action: env.action,
        record_id: env.record_id,
        payload: env.payload.to_string(),
    })
}

/// Parses the generic XML envelope:
/// `<event id=".." source=".." model=".." action=".." record-id=".."><payload>..</payload></event>`
/// where the payload is in the dialect of [`crate::xmljson`].
pub fn xml_envelope(body: &[u8], source_name: &str) -> Result<Incoming, ParseError> {
    let root = xmljson::parse_document(body).map_err(|e| match e {
        xmljson::XmlError::Syntax(m) => ParseError::Xml(m),
        xmljson::XmlError::Shape(m) => ParseError::Shape(m),
    })?;
    if root.name != "event" {
        return Err(ParseError::Shape(format!(
            "the root element is <{}>, expected <event>",
            root.name
        )));
    }
    let attr = |name: &str| {
        root.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let required = |name: &str| {
        attr(name).ok_or_else(|| ParseError::Shape(format!("<event> has no `{name}` attribute")))
    };
    check_source(attr("source").as_deref(), source_name)?;
    let record_id = attr("record-id")
        .map(|v| v.trim().parse::<i64>())
        .transpose()
        .map_err(|_| ParseError::Shape("`record-id` is not a whole number".into()))?;
    let payload = root
        .children
        .iter()
        .find(|c| c.name == "payload")
        .ok_or_else(|| ParseError::Shape("<event> has no <payload> element".into()))?;
    checked(Incoming {
        explicit_id: attr("id"),
        model: required("model")?,
        action: required("action")?,
        record_id,
        payload: payload.value.to_string(),
    })
}

fn check_source(claimed: Option<&str>, actual: &str) -> Result<(), ParseError> {
    match claimed {
        Some(c) if c != actual => Err(ParseError::Shape(format!(
            "the envelope names source `{c}` but was sent to source `{actual}`"
        ))),
        _ => Ok(()),
    }
}

/// Model and action must form a clean event type; the id must be printable and short.
fn checked(incoming: Incoming) -> Result<Incoming, ParseError> {
    let model_ok = !incoming.model.is_empty()
        && incoming.model.len() <= 128
        && incoming
            .model
            .split('.')
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if !model_ok {
        return Err(ParseError::Shape(format!(
            "`{}` is not an Odoo model name",
            incoming.model
        )));
    }
    let action_ok = !incoming.action.is_empty()
        && incoming.action.len() <= 64
        && incoming
            .action
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !action_ok {
        return Err(ParseError::Shape(format!(
            "`{}` is not an action name (letters, digits and `_`)",
            incoming.action
        )));
    }
    if let Some(id) = &incoming.explicit_id
        && (id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ParseError::Shape(
            "`id` must be 1 to 128 printable ASCII characters".into(),
        ));
    }
    Ok(incoming)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn source() -> Source {
        let actions = BTreeMap::from([("SO confirmed".to_owned(), "confirmed".to_owned())]);
        Source::new("odoo", &["t".repeat(16)], actions, "write")
    }

    fn fixture(name: &str) -> Vec<u8> {
        odoo_gateway_fixtures::read(&format!("odoo/{name}"))
    }

    #[test]
    fn every_native_fixture_parses_with_its_model_and_id() {
        for (name, body) in odoo_gateway_fixtures::read_dir("odoo/native") {
            let parsed = native(&body, &source(), None).expect("parses");
            let value: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(
                parsed.model,
                value["_model"].as_str().expect("model"),
                "{name}"
            );
            assert_eq!(parsed.record_id, value["_id"].as_i64(), "{name}");
            assert_eq!(
                parsed.payload.as_bytes(),
                body.as_slice(),
                "payload is kept verbatim"
            );
        }
    }

    #[test]
    fn native_action_comes_from_url_then_mapping_then_default() {
        let body = fixture("native/sale.order.confirmed.json");
        assert_eq!(
            native(&body, &source(), Some("done")).expect("ok").action,
            "done"
        );
        assert_eq!(
            native(&body, &source(), None).expect("ok").action,
            "confirmed"
        );
        let partner = fixture("native/res.partner.saved.json");
        assert_eq!(
            native(&partner, &source(), None).expect("ok").action,
            "write"
        );
    }

    #[test]
    fn bad_native_bodies_are_explained() {
        assert_eq!(
            native(b"{", &source(), None).expect_err("bad").code(),
            "malformed_json"
        );
        assert_eq!(
            native(b"[1]", &source(), None).expect_err("bad").code(),
            "invalid_event"
        );
        assert!(
            native(b"{\"id\": 1}", &source(), None)
                .expect_err("bad")
                .to_string()
                .contains("_model")
        );
        let bad_action = native(b"{\"_model\": \"sale.order\"}", &source(), Some("no way"));
        assert_eq!(bad_action.expect_err("bad").code(), "invalid_event");
    }

    #[test]
    fn json_and_xml_envelopes_normalise_to_the_same_event() {
        let payload: Value =
            serde_json::from_slice(&fixture("rich/sale.order.confirmed.json")).expect("json");
        let json = serde_json::json!({
            "id": "ext-1", "model": "sale.order", "action": "confirmed", "record_id": 12, "payload": payload,
        });
        let from_json = json_envelope(json.to_string().as_bytes(), "odoo").expect("json envelope");
        let wrapped = serde_json::json!({ "payload": payload });
        let xml = crate::xmljson::to_document(
            "event",
            &[
                ("id", "ext-1"),
                ("model", "sale.order"),
                ("action", "confirmed"),
                ("record-id", "12"),
            ],
            &wrapped,
        );
        let from_xml = xml_envelope(&xml, "odoo").expect("xml envelope");
        assert_eq!(from_json, from_xml);
        assert_eq!(from_json.explicit_id.as_deref(), Some("ext-1"));
    }

    #[test]
    fn addon_style_envelopes_are_accepted() {
        let body = br#"{"event": "create", "model": "res.partner", "record_id": 9, "data": {"name": "X"}, "timestamp": "2024-05-14T09:00:00Z"}"#;
        let parsed = json_envelope(body, "odoo").expect("ok");
        assert_eq!(
            (parsed.action.as_str(), parsed.record_id),
            ("create", Some(9))
        );
    }

    #[test]
    fn envelope_mistakes_are_explained() {
        assert_eq!(
            json_envelope(b"{\"model\": 1}", "odoo")
                .expect_err("bad")
                .code(),
            "invalid_event"
        );
        assert_eq!(
            json_envelope(b"not json", "odoo").expect_err("bad").code(),
            "malformed_json"
        );
        let other = br#"{"source": "elsewhere", "model": "a.b", "action": "x", "payload": {}}"#;
        assert!(
            json_envelope(other, "odoo")
                .expect_err("bad")
                .to_string()
                .contains("elsewhere")
        );
        assert_eq!(
            xml_envelope(b"<event", "odoo").expect_err("bad").code(),
            "malformed_xml"
        );
        let no_payload = br#"<event model="a.b" action="x"/>"#;
        assert!(
            xml_envelope(no_payload, "odoo")
                .expect_err("bad")
                .to_string()
                .contains("payload")
        );
        let wrong_root = br#"<order/>"#;
        assert!(
            xml_envelope(wrong_root, "odoo")
                .expect_err("bad")
                .to_string()
                .contains("<event>")
        );
    }
}
