//! Reads back a document in the shape [`super::XmlBuilder`] writes, and
//! states what that round trip preserves ([`untyped`]).

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

use super::XmlError;
use super::write::{ITEM, many2one_pair};

/// A parsed document: the root element's name and attributes, and its
/// content as JSON (see [`super::parse`]).
#[derive(Debug, Clone, PartialEq)]
pub struct XmlDocument {
    /// Name of the root element.
    pub root: String,
    /// Attributes of the root element, in document order (an `id` attribute
    /// of the root is always listed here, never read as a many2one).
    pub attributes: Vec<(String, String)>,
    /// The root's content: an object, an array, a string, `[id, "name"]` or
    /// `false`.
    pub content: Value,
}

/// Parses a document written by [`super::XmlBuilder`]: elements whose
/// children are all `<item>` become arrays, other elements with children
/// become objects, an element with an `id` attribute and text becomes
/// `[id, "text"]`, text becomes a string and an empty element `false`.
pub fn parse(xml: &[u8]) -> Result<XmlDocument, XmlError> {
    let text = std::str::from_utf8(xml).map_err(|e| XmlError::Malformed(e.to_string()))?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root_attributes = Vec::new();
    let mut root_seen = false;
    // The document, once the root is closed; reading goes on to the end so
    // that anything after the root is refused.
    let mut done: Option<XmlDocument> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let is_root = stack.is_empty();
                if is_root && root_seen {
                    return Err(XmlError::Structure("more than one root element".into()));
                }
                root_seen = true;
                let frame = Frame::open(start, is_root, &mut root_attributes)?;
                if matches!(event, Event::Start(_)) {
                    stack.push(frame);
                } else if let Some(doc) = close(&mut stack, frame, &root_attributes)? {
                    done = Some(doc);
                }
            }
            Event::End(_) => {
                let frame = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unexpected end tag".into()))?;
                if let Some(doc) = close(&mut stack, frame, &root_attributes)? {
                    done = Some(doc);
                }
            }
            Event::Text(t) => {
                let content = t
                    .xml10_content()
                    .map_err(|e| XmlError::Malformed(e.to_string()))?;
                push_text(&mut stack, &content)?;
            }
            Event::CData(t) => {
                let content = t.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                push_text(&mut stack, &content)?;
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| XmlError::Malformed(format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                    Err(e) => return Err(XmlError::Malformed(e.to_string())),
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Eof => {
                return done.ok_or_else(|| XmlError::Malformed("no complete root element".into()));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}

/// An element being read.
struct Frame {
    name: String,
    /// The `id` attribute of a non-root element (a many2one's id).
    id: Option<String>,
    text: String,
    children: Vec<(String, Value)>,
}

impl Frame {
    fn open(
        start: &BytesStart<'_>,
        is_root: bool,
        root_attributes: &mut Vec<(String, String)>,
    ) -> Result<Self, XmlError> {
        let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
        let mut id = None;
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| XmlError::Malformed(e.to_string()))?;
            let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
            let value = attribute
                .unescape_value()
                .map_err(|e| XmlError::Malformed(e.to_string()))?
                .into_owned();
            match (is_root, key.as_str()) {
                (true, _) => root_attributes.push((key, value)),
                (false, "id") => id = Some(value),
                (false, _) => {
                    return Err(XmlError::Structure(format!(
                        "unexpected attribute `{key}` on <{name}>"
                    )));
                }
            }
        }
        Ok(Self {
            name,
            id,
            text: String::new(),
            children: Vec::new(),
        })
    }

    fn into_value(self) -> Result<Value, XmlError> {
        if !self.children.is_empty() {
            if !self.text.trim().is_empty() {
                return Err(XmlError::Structure(format!(
                    "mixed content in <{}>",
                    self.name
                )));
            }
            if self.children.iter().all(|(name, _)| name == ITEM) {
                return Ok(Value::Array(
                    self.children.into_iter().map(|(_, v)| v).collect(),
                ));
            }
            let mut fields = Map::new();
            for (name, value) in self.children {
                if fields.contains_key(&name) {
                    return Err(XmlError::Structure(format!(
                        "<{}> repeats <{name}>",
                        self.name
                    )));
                }
                fields.insert(name, value);
            }
            return Ok(Value::Object(fields));
        }
        match self.id {
            Some(id) => {
                let id: i64 = id.parse().map_err(|_| {
                    XmlError::Structure(format!("<{}> has a non-integer id {id:?}", self.name))
                })?;
                Ok(Value::Array(vec![id.into(), Value::String(self.text)]))
            }
            None if self.text.is_empty() => Ok(Value::Bool(false)),
            None => Ok(Value::String(self.text)),
        }
    }
}

fn push_text(stack: &mut [Frame], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(frame) => frame.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err(XmlError::Structure("text outside the root element".into())),
    }
    Ok(())
}

/// Closes `frame`: adds it to its parent, or returns the document when it
/// is the root.
fn close(
    stack: &mut [Frame],
    frame: Frame,
    root_attributes: &[(String, String)],
) -> Result<Option<XmlDocument>, XmlError> {
    let name = frame.name.clone();
    let value = frame.into_value()?;
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push((name, value));
            Ok(None)
        }
        None => Ok(Some(XmlDocument {
            root: name,
            attributes: root_attributes.to_vec(),
            content: value,
        })),
    }
}

/// What `parse(build(value))` gives back for an element's value: scalars
/// become strings, every "no value" (`false`, `null`, `""`, `[]`, `{}`)
/// becomes `false`, many2one pairs stay pairs, characters XML cannot carry
/// become U+FFFD.
pub fn untyped(value: &Value) -> Value {
    if many2one_pair(value).is_some() {
        return value.clone();
    }
    match value {
        Value::Bool(false) | Value::Null => Value::Bool(false),
        Value::String(s) if s.is_empty() => Value::Bool(false),
        Value::Array(a) if a.is_empty() => Value::Bool(false),
        Value::Object(o) if o.is_empty() => Value::Bool(false),
        Value::Bool(true) => Value::String("true".into()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::String(s) => Value::String(s.chars().map(carried).collect()),
        Value::Array(items) => Value::Array(items.iter().map(untyped).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), untyped(v)))
                .collect(),
        ),
    }
}

/// The character an XML 1.0 document carries in place of `c`.
fn carried(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => c,
        '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::XmlBuilder;
    use serde_json::json;

    fn round_trip(value: &Value) -> Value {
        let xml = XmlBuilder::new("r")
            .attribute("event_id", "e")
            .build(value)
            .unwrap();
        let doc = parse(&xml).unwrap();
        assert_eq!(doc.root, "r");
        assert_eq!(doc.attributes, vec![("event_id".into(), "e".into())]);
        doc.content
    }

    #[test]
    fn tricky_values_come_back() {
        let value = json!({
            "text": " spaced\ttext\r\nwith <markup> & \"quotes\" ",
            "unicode": "Déco – München ✓ 日本",
            "control": "a\u{1}b",
            "pair": [9, "Deco Addict"],
            "empty_pair": [9, ""],
            "ids": [1, 2],
            "nested": {"lines": [{"id": 31, "product_id": [27, "Lamp"], "tax_id": []}]},
            "empties": [false, null, "", [], {}],
            "flags": [true, false],
            "numbers": [0, -1.5, 1e300, 12345678901234i64],
        });
        let back = round_trip(&value);
        assert_eq!(back, untyped(&value));
        assert_eq!(back["text"], " spaced\ttext\r\nwith <markup> & \"quotes\" ");
        assert_eq!(back["control"], "a\u{fffd}b");
        assert_eq!(back["pair"], json!([9, "Deco Addict"]));
        assert_eq!(back["empties"], json!([false, false, false, false, false]));
        assert_eq!(
            back["numbers"],
            json!(["0", "-1.5", "1e+300", "12345678901234"])
        );
    }

    #[test]
    fn root_attributes_with_special_characters() {
        let xml = XmlBuilder::new("r")
            .attribute("note", "a\"b'c\n\td&<>")
            .build(&json!("x"))
            .unwrap();
        let doc = parse(&xml).unwrap();
        assert_eq!(
            doc.attributes,
            vec![("note".into(), "a\"b'c\n\td&<>".into())]
        );
        assert_eq!(doc.content, json!("x"));
    }

    #[test]
    fn hand_written_documents() {
        let doc = parse(b"<?xml version=\"1.0\"?>\n<!-- c --><a><b><![CDATA[<x>]]></b><c/></a>\n")
            .unwrap();
        assert_eq!(doc.content, json!({"b": "<x>", "c": false}));
        let doc = parse(b"<a>caf&#233; &amp; &#x2013;</a>").unwrap();
        assert_eq!(doc.content, json!("café & –"));
    }

    #[test]
    fn malformed_and_unexpected_documents_are_errors() {
        let cases: [(&[u8], &str); 8] = [
            (b"<a><b></a>", "malformed"),
            (b"<a>", "malformed"),
            (b"", "malformed"),
            (b"<a/><b/>", "more than one root"),
            (b"<a>x<b/></a>", "mixed content"),
            (b"<a><b/><b/></a>", "repeats"),
            (b"<a><b foo=\"1\"/></a>", "unexpected attribute"),
            (b"<a><b id=\"x\">n</b></a>", "non-integer id"),
        ];
        for (xml, expected) in cases {
            let err = parse(xml).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{}: {err}",
                String::from_utf8_lossy(xml)
            );
        }
        assert!(matches!(parse(&[0xff, 0xfe]), Err(XmlError::Malformed(_))));
    }
}
