//! Writes a JSON value as an XML document, following the mapping described
//! in the parent module. Escaping is done here rather than by quick-xml so
//! that carriage returns, tabs and newlines in attributes survive a parse.

use std::borrow::Cow;

use quick_xml::Writer;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::QName;
use serde_json::Value;

use super::{XmlError, is_xml_name};
use crate::Many2one;

/// Name of the element wrapping each array element.
pub(super) const ITEM: &str = "item";

/// Builds an XML document from a JSON value: a root element with optional
/// attributes, whose content is the value.
#[derive(Debug, Clone)]
pub struct XmlBuilder {
    root: String,
    attributes: Vec<(String, String)>,
}

impl XmlBuilder {
    /// A document whose root element is `root` (checked by [`Self::build`]).
    pub fn new(root: &str) -> Self {
        Self {
            root: root.to_owned(),
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute to the root element, in order.
    pub fn attribute(mut self, name: &str, value: impl Into<String>) -> Self {
        self.attributes.push((name.to_owned(), value.into()));
        self
    }

    /// Writes the document: declaration, then the root element holding
    /// `value` (an object's fields, an array's items or a scalar's text).
    pub fn build(&self, value: &Value) -> Result<Vec<u8>, XmlError> {
        let mut out = Out(Writer::new(Vec::new()));
        out.emit(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        let attributes: Vec<(&str, &str)> = self
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        out.element(&self.root, &attributes, value)?;
        Ok(out.0.into_inner())
    }
}

/// The writer; writing to a `Vec` cannot fail, so its I/O errors are dropped.
struct Out(Writer<Vec<u8>>);

impl Out {
    fn emit(&mut self, event: Event<'_>) {
        let _infallible_for_vec = self.0.write_event(event);
    }

    fn element(
        &mut self,
        name: &str,
        attributes: &[(&str, &str)],
        value: &Value,
    ) -> Result<(), XmlError> {
        let mut start = BytesStart::new(checked(name)?);
        for (key, attr_value) in attributes {
            start.push_attribute(Attribute {
                key: QName(checked(key)?.as_bytes()),
                value: Cow::Owned(escape(attr_value, true).into_bytes()),
            });
        }
        // A pair's id goes in an `id` attribute, unless the caller already
        // set one on this (root) element.
        let pair = match attributes.iter().any(|(k, _)| *k == "id") {
            true => None,
            false => many2one_pair(value),
        };
        if let Some(Many2one {
            id,
            name: Some(display),
        }) = pair
        {
            let id = id.to_string();
            start.push_attribute(Attribute {
                key: QName(b"id"),
                value: Cow::Borrowed(id.as_bytes()),
            });
            self.text_element(start, name, &display);
            return Ok(());
        }
        match value {
            Value::Bool(false) | Value::Null => self.emit(Event::Empty(start)),
            Value::Bool(true) => self.text_element(start, name, "true"),
            Value::Number(n) => self.text_element(start, name, &n.to_string()),
            Value::String(s) if s.is_empty() => self.emit(Event::Empty(start)),
            Value::String(s) => self.text_element(start, name, s),
            Value::Array(items) if items.is_empty() => self.emit(Event::Empty(start)),
            Value::Object(fields) if fields.is_empty() => self.emit(Event::Empty(start)),
            Value::Array(items) => {
                self.emit(Event::Start(start));
                for item in items {
                    self.element(ITEM, &[], item)?;
                }
                self.emit(Event::End(BytesEnd::new(name)));
            }
            Value::Object(fields) => {
                self.emit(Event::Start(start));
                // serde_json's map is sorted unless its `preserve_order`
                // feature is on; sort anyway so the output never depends on
                // feature unification.
                let mut keys: Vec<&String> = fields.keys().collect();
                keys.sort();
                for key in keys {
                    self.element(key, &[], &fields[key])?;
                }
                self.emit(Event::End(BytesEnd::new(name)));
            }
        }
        Ok(())
    }

    fn text_element(&mut self, start: BytesStart<'_>, name: &str, text: &str) {
        self.emit(Event::Start(start));
        self.emit(Event::Text(BytesText::from_escaped(escape(text, false))));
        self.emit(Event::End(BytesEnd::new(name)));
    }
}

/// `[id, "name"]`: the only two-element array shape that is a many2one.
pub(super) fn many2one_pair(value: &Value) -> Option<Many2one> {
    match value.as_array()?.as_slice() {
        [Value::Number(_), Value::String(_)] => Many2one::from_value(value),
        _ => None,
    }
}

fn checked(name: &str) -> Result<&str, XmlError> {
    if is_xml_name(name) {
        Ok(name)
    } else {
        Err(XmlError::InvalidName(name.to_owned()))
    }
}

/// Escapes text (or an attribute value) so that a conforming parser gives
/// back exactly `raw`, except for characters XML 1.0 cannot carry.
fn escape(raw: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\t' | '\n' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(root: &str, value: &Value) -> String {
        String::from_utf8(XmlBuilder::new(root).build(value).unwrap()).unwrap()
    }

    const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    #[test]
    fn scalars_and_empties() {
        let value = json!({"a": true, "b": false, "c": null, "d": "", "e": [], "f": {},
                           "g": 2.0, "h": -7, "i": "x"});
        assert_eq!(
            build("r", &value),
            format!("{DECL}<r><a>true</a><b/><c/><d/><e/><f/><g>2.0</g><h>-7</h><i>x</i></r>")
        );
    }

    #[test]
    fn nested_records_lists_and_pairs() {
        let value = json!({"lines": [{"id": 31, "product_id": [27, "Lamp"]}, {"id": 32}],
                           "tax_id": [1], "m": [1, 2, 3], "n": {"x": [9, "y"]}});
        assert_eq!(
            build("order", &value),
            format!(
                "{DECL}<order><lines><item><id>31</id><product_id id=\"27\">Lamp</product_id>\
                 </item><item><id>32</id></item></lines><m><item>1</item><item>2</item>\
                 <item>3</item></m><n><x id=\"9\">y</x></n><tax_id><item>1</item></tax_id></order>"
            )
        );
    }

    #[test]
    fn escaping_and_non_ascii() {
        let value = json!({"t": "a<b & c>d \"q\" 's'\r\nz\u{1}", "u": "Déco – München ✓"});
        let xml = XmlBuilder::new("r")
            .attribute("note", "x\"y\n\tz&<")
            .build(&value)
            .unwrap();
        assert_eq!(
            String::from_utf8(xml).unwrap(),
            format!(
                "{DECL}<r note=\"x&quot;y&#10;&#9;z&amp;&lt;\"><t>a&lt;b &amp; c&gt;d \"q\" 's'\
                 &#13;\nz\u{fffd}</t><u>Déco – München ✓</u></r>"
            )
        );
    }

    #[test]
    fn scalar_and_array_roots() {
        assert_eq!(build("r", &json!("hi")), format!("{DECL}<r>hi</r>"));
        assert_eq!(
            build("r", &json!([1, "a"])),
            format!("{DECL}<r id=\"1\">a</r>")
        );
        assert_eq!(
            build("r", &json!([1, 2])),
            format!("{DECL}<r><item>1</item><item>2</item></r>")
        );
    }

    #[test]
    fn invalid_names_are_refused() {
        let err = XmlBuilder::new("bad root").build(&json!({})).unwrap_err();
        assert_eq!(err, XmlError::InvalidName("bad root".into()));
        let err = XmlBuilder::new("r").build(&json!({"1x": 1})).unwrap_err();
        assert_eq!(err, XmlError::InvalidName("1x".into()));
        let err = XmlBuilder::new("r")
            .attribute("a b", "v")
            .build(&json!({}))
            .unwrap_err();
        assert_eq!(err, XmlError::InvalidName("a b".into()));
    }
}
