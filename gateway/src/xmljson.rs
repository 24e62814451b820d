//! Lossless conversion between JSON values and the gateway's XML dialect.
//!
//! XML has no types, JSON has few; this module writes just enough type information for the
//! round trip to be exact:
//! - an object is an element whose children are its keys, in order (`type="dict"` only when
//!   it is empty);
//! - a string is an element's text, with no attribute;
//! - numbers, booleans and null carry `type="int"`, `"float"`, `"bool"`, `"null"`;
//! - an array is `type="list"` with one `<item>` child per element;
//! - a key that is not a valid XML name is written `<field name="the key">`.
//!
//! Reading is lenient where hand-written XML needs it: repeated child elements become an
//! array, and untyped text stays a string. The module does no I/O.

use std::io::Cursor;

use quick_xml::Reader;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event as XmlEvent};
use serde_json::{Map, Number, Value};

/// Why XML could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML.
    #[error("malformed XML: {0}")]
    Syntax(String),
    /// Well-formed, but not what the gateway expects.
    #[error("{0}")]
    Shape(String),
}

/// Whether `name` can be an XML element name as written by this module.
pub fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("xml"))
}

/// Writes `value` as a complete XML document with root element `root` and its attributes.
pub fn to_document(root: &str, attributes: &[(&str, &str)], value: &Value) -> Vec<u8> {
    let mut writer = Writer::new(Cursor::new(Vec::with_capacity(256)));
    // Writing into a Vec cannot fail.
    let _ = writer.write_event(XmlEvent::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let mut start = BytesStart::new(root);
    for (k, v) in attributes {
        start.push_attribute((*k, *v));
    }
    write_value(&mut writer, start, value);
    writer.into_inner().into_inner()
}

/// Writes one value as an element (used for nested content inside a caller's document).
fn write_value(w: &mut Writer<Cursor<Vec<u8>>>, mut start: BytesStart<'_>, value: &Value) {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let text = match value {
        Value::Null => Some(("null", String::new())),
        Value::Bool(b) => Some(("bool", b.to_string())),
        Value::Number(n) if n.is_f64() => Some(("float", n.to_string())),
        Value::Number(n) => Some(("int", n.to_string())),
        Value::String(s) => Some(("", s.clone())),
        Value::Array(_) | Value::Object(_) => None,
    };
    if let Some((ty, text)) = text {
        if !ty.is_empty() {
            start.push_attribute(("type", ty));
        }
        let _ = w.write_event(XmlEvent::Start(start));
        let _ = w.write_event(XmlEvent::Text(BytesText::new(&text)));
        let _ = w.write_event(XmlEvent::End(BytesEnd::new(name)));
        return;
    }
    match value {
        Value::Array(items) => {
            start.push_attribute(("type", "list"));
            let _ = w.write_event(XmlEvent::Start(start));
            for item in items {
                write_value(w, BytesStart::new("item"), item);
            }
        }
        Value::Object(map) => {
            if map.is_empty() {
                start.push_attribute(("type", "dict"));
            }
            let _ = w.write_event(XmlEvent::Start(start));
            for (key, item) in map {
                let child = if is_xml_name(key) {
                    BytesStart::new(key.as_str())
                } else {
                    BytesStart::new("field").with_attributes([("name", key.as_str())])
                };
                write_value(w, child, item);
            }
        }
        _ => unreachable!("scalars were written above"),
    }
    let _ = w.write_event(XmlEvent::End(BytesEnd::new(name)));
}

/// One element read from XML: its name, attributes and value.
#[derive(Debug)]
pub struct Element {
    /// The element name (or, for `<field name="..">`, the name attribute).
    pub name: String,
    /// Attributes other than `type` and `name`.
    pub attributes: Vec<(String, String)>,
    /// The element's content as JSON.
    pub value: Value,
    /// The root's child elements in order, for callers that read an envelope. Deeper elements
    /// hand their values up to their parent and keep no children: each level moves, none
    /// copies, so the work stays proportional to the body whatever the nesting.
    pub children: Vec<Element>,
}

/// Parses a document and returns its root element.
pub fn parse_document(xml: &[u8]) -> Result<Element, XmlError> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(XmlEvent::Start(start)) => {
                let start = start.into_owned();
                return read_element(&mut reader, &start, false, 0);
            }
            Ok(XmlEvent::Empty(start)) => {
                let start = start.into_owned();
                return read_element(&mut reader, &start, true, 0);
            }
            Ok(XmlEvent::Eof) => return Err(XmlError::Shape("the document has no element".into())),
            Ok(XmlEvent::Text(t)) if !t.iter().all(u8::is_ascii_whitespace) => {
                return Err(XmlError::Shape("text outside the root element".into()));
            }
            Ok(_) => {}
            Err(e) => return Err(XmlError::Syntax(e.to_string())),
        }
        buf.clear();
    }
}

/// Converts an XML document to JSON (the root element's value).
pub fn from_document(xml: &[u8]) -> Result<Value, XmlError> {
    parse_document(xml).map(|e| e.value)
}

/// Deepest nesting accepted; deeper documents are refused rather than overflowing the stack.
pub const MAX_DEPTH: usize = 64;

fn read_element(
    reader: &mut Reader<&[u8]>,
    start: &BytesStart<'_>,
    empty: bool,
    depth: usize,
) -> Result<Element, XmlError> {
    if depth > MAX_DEPTH {
        return Err(XmlError::Shape(format!(
            "elements nest deeper than {MAX_DEPTH} levels"
        )));
    }
    let mut name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut ty = None;
    let mut attributes = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| XmlError::Syntax(e.to_string()))?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr
            .unescape_value()
            .map_err(|e| XmlError::Syntax(e.to_string()))?
            .into_owned();
        match key.as_str() {
            "type" => ty = Some(value),
            "name" if name == "field" => name = value,
            _ => attributes.push((key, value)),
        }
    }
    let mut text = String::new();
    let mut children = Vec::new();
    if !empty {
        let mut buf = Vec::new();
        loop {
            match reader.read_event_into(&mut buf) {
                Ok(XmlEvent::Start(s)) => {
                    let s = s.into_owned();
                    children.push(read_element(reader, &s, false, depth + 1)?);
                }
                Ok(XmlEvent::Empty(s)) => {
                    let s = s.into_owned();
                    children.push(read_element(reader, &s, true, depth + 1)?);
                }
                Ok(XmlEvent::Text(t)) => {
                    let t = t.decode().map_err(|e| XmlError::Syntax(e.to_string()))?;
                    text.push_str(
                        &quick_xml::escape::unescape(&t)
                            .map_err(|e| XmlError::Syntax(e.to_string()))?,
                    );
                }
                Ok(XmlEvent::GeneralRef(r)) => {
                    let r = r.decode().map_err(|e| XmlError::Syntax(e.to_string()))?;
                    let entity = format!("&{r};");
                    text.push_str(
                        &quick_xml::escape::unescape(&entity)
                            .map_err(|e| XmlError::Syntax(e.to_string()))?,
                    );
                }
                Ok(XmlEvent::CData(c)) => text.push_str(&String::from_utf8_lossy(&c)),
                Ok(XmlEvent::End(_)) => break,
                Ok(XmlEvent::Eof) => {
                    return Err(XmlError::Syntax(format!("element <{name}> is not closed")));
                }
                Ok(_) => {}
                Err(e) => return Err(XmlError::Syntax(e.to_string())),
            }
            buf.clear();
        }
    }
    let keep_children = depth == 0;
    let value = element_value(&name, ty.as_deref(), text, &mut children, keep_children)?;
    if !keep_children {
        children = Vec::new();
    }
    Ok(Element {
        name,
        attributes,
        value,
        children,
    })
}

/// The element's value. With `keep`, the children's values are copied (the root keeps its
/// children for envelope readers: one copy of the document); without, they are moved.
fn element_value(
    name: &str,
    ty: Option<&str>,
    text: String,
    children: &mut [Element],
    keep: bool,
) -> Result<Value, XmlError> {
    let bad = |what: &str| {
        XmlError::Shape(format!(
            "<{name}> has type=\"{what}\" but its text is not one"
        ))
    };
    let scalar = text.trim();
    Ok(match ty {
        Some("null") => Value::Null,
        Some("bool") => match scalar {
            "true" | "True" | "1" => Value::Bool(true),
            "false" | "False" | "0" => Value::Bool(false),
            _ => return Err(bad("bool")),
        },
        // Whole numbers above i64::MAX are u64 in JSON (serde_json keeps them exact).
        Some("int") => match scalar.parse::<i64>() {
            Ok(n) => Value::Number(n.into()),
            Err(_) => Value::Number(scalar.parse::<u64>().map_err(|_| bad("int"))?.into()),
        },
        Some("float") => Number::from_f64(scalar.parse::<f64>().map_err(|_| bad("float"))?)
            .map(Value::Number)
            .ok_or_else(|| bad("float"))?,
        Some("list") => Value::Array(children.iter_mut().map(|c| take_value(c, keep)).collect()),
        Some("dict") => object(children, keep),
        Some("string") => Value::String(text),
        Some(other) => {
            return Err(XmlError::Shape(format!(
                "<{name}> has an unknown type \"{other}\" (use string, int, float, bool, null, list or dict)"
            )));
        }
        None if children.is_empty() => Value::String(text),
        None => object(children, keep),
    })
}

fn take_value(child: &mut Element, keep: bool) -> Value {
    if keep {
        child.value.clone()
    } else {
        std::mem::take(&mut child.value)
    }
}

/// Children as an object; a repeated name becomes an array of all its values.
fn object(children: &mut [Element], keep: bool) -> Value {
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for child in children.iter() {
        *counts.entry(child.name.clone()).or_default() += 1;
    }
    let mut map = Map::new();
    for child in children.iter_mut() {
        let repeated = counts[child.name.as_str()] > 1;
        let value = take_value(child, keep);
        match map.get_mut(&child.name) {
            Some(Value::Array(items)) if repeated => items.push(value),
            _ if repeated => {
                map.insert(child.name.clone(), Value::Array(vec![value]));
            }
            _ => {
                map.insert(child.name.clone(), value);
            }
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn whole_numbers_beyond_i64_round_trip() {
        // Found by the `xmljson` fuzz target: our own document for this number did not read back.
        for value in [
            json!(11_331_666_666_331_666_666_u64),
            json!(u64::MAX),
            json!(i64::MIN),
        ] {
            let xml = to_document("root", &[], &value);
            assert_eq!(from_document(&xml).expect("parses"), value);
        }
    }

    #[test]
    fn deep_nesting_moves_values_up_instead_of_copying_them() {
        // 64 levels around a large leaf: every level used to keep a copy of everything below.
        let leaf = "x".repeat(64 * 1024);
        let mut xml = String::from("<event><payload>");
        for _ in 0..60 {
            xml.push_str("<a>");
        }
        xml.push_str(&leaf);
        for _ in 0..60 {
            xml.push_str("</a>");
        }
        xml.push_str("</payload></event>");
        let root = parse_document(xml.as_bytes()).expect("parses");
        let payload = &root.children[0];
        assert_eq!(payload.name, "payload");
        assert!(
            payload.children.is_empty(),
            "only the root keeps its children"
        );
        let mut value = &payload.value;
        for _ in 0..60 {
            value = &value["a"];
        }
        assert_eq!(value.as_str().map(str::len), Some(leaf.len()));
        assert_eq!(
            root.value["payload"], payload.value,
            "the root's own value is whole"
        );
    }

    #[test]
    fn odoo_record_round_trips() {
        let value = json!({
            "id": 12, "name": "S00012", "amount_total": 1184.5, "commitment_date": false,
            "partner_id": [9, "Déco Addict – München"], "order_line": [31, 32],
            "tax_id": [], "note": null, "c@": "odd key", "nested": {"a": {"b": "<&>"}},
            "empty": {}, "blank": ""
        });
        let xml = to_document("sale_order", &[("id", "evt_1")], &value);
        let text = String::from_utf8(xml.clone()).expect("utf-8");
        assert!(
            text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><sale_order id=\"evt_1\">")
        );
        assert!(
            text.contains("<field name=\"c@\">odd key</field>"),
            "{text}"
        );
        assert_eq!(from_document(&xml).expect("parses"), value);
    }

    #[test]
    fn hand_written_xml_is_read_leniently() {
        let xml = br#"<order><name>S1</name><line><id type="int">1</id></line><line><id type="int">2</id></line><line><id type="int">3</id></line></order>"#;
        assert_eq!(
            from_document(xml).expect("parses"),
            json!({"name": "S1", "line": [{"id": 1}, {"id": 2}, {"id": 3}]})
        );
    }

    #[test]
    fn malformed_and_mistyped_xml_is_refused() {
        assert!(matches!(
            from_document(b"<a><b></a>"),
            Err(XmlError::Syntax(_))
        ));
        assert!(matches!(
            from_document(b"<a type=\"int\">x</a>"),
            Err(XmlError::Shape(_))
        ));
        assert!(matches!(from_document(b""), Err(XmlError::Shape(_))));
        assert!(from_document(b"<a><b>").is_err());
        let deep = "<a>".repeat(MAX_DEPTH + 2) + &"</a>".repeat(MAX_DEPTH + 2);
        assert!(matches!(
            from_document(deep.as_bytes()),
            Err(XmlError::Shape(_))
        ));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            (-1.0e9f64..1.0e9).prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[^\u{0}-\u{8}\u{b}\u{c}\u{e}-\u{1f}\u{fffe}\u{ffff}\r]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_@ 0-9]{1,6}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_round_trips(value in json_value()) {
            let xml = to_document("root", &[], &value);
            prop_assert_eq!(from_document(&xml).expect("own output parses"), value);
        }
    }
}
