//! JSON ⇄ XML for Odoo records: [`XmlBuilder`] writes the XML document a
//! plugin delivers, [`parse`] reads such a document back (tests, and
//! receivers written in Rust).
//!
//! The mapping, chosen so that the XML reads like the record and parses back
//! to the same data:
//!
//! | JSON value | XML |
//! |---|---|
//! | object | one child element per key, keys in sorted order |
//! | `[id, "name"]` (many2one) | `<partner_id id="9">Deco Addict</partner_id>` |
//! | other array | one `<item>` child per element |
//! | string, number, `true` | text: `S00012`, `1184.5`, `true` |
//! | `false`, `null`, `""`, `[]`, `{}` | empty element: `<commitment_date/>` (Odoo's "no value") |
//!
//! The document is UTF-8 with a declaration, compact (no indentation, so
//! that whitespace in values is never ambiguous). Text escapes `&`, `<`, `>`
//! and `\r`; attributes also escape quotes, tabs and newlines. Characters
//! that XML 1.0 cannot carry (control characters other than tab, newline and
//! carriage return) become U+FFFD. Object keys must be XML names (every
//! Odoo field name is); others make [`XmlBuilder::build`] fail.
//!
//! XML is untyped, so the data comes back with every scalar as a string and
//! every kind of "no value" as `false`: [`untyped`] gives what [`parse`]
//! returns for a value.
//!
//! ```
//! use odoo_gateway_plugin_sdk::xml::{self, XmlBuilder};
//! use serde_json::json;
//!
//! let order = json!({"name": "S00012", "partner_id": [9, "Déco Addict"],
//!                    "order_line": [31, 32], "origin": false});
//! let body = XmlBuilder::new("sale_order").attribute("id", "12").build(&order).unwrap();
//! assert_eq!(
//!     std::str::from_utf8(&body).unwrap(),
//!     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
//!      <sale_order id=\"12\"><name>S00012</name>\
//!      <order_line><item>31</item><item>32</item></order_line>\
//!      <origin/><partner_id id=\"9\">Déco Addict</partner_id></sale_order>"
//! );
//! let doc = xml::parse(&body).unwrap();
//! assert_eq!(doc.root, "sale_order");
//! assert_eq!(doc.content, xml::untyped(&order));
//! ```

mod read;
mod write;

pub use read::{XmlDocument, parse, untyped};
pub use write::XmlBuilder;

/// Why a document could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// An element or attribute name is not a valid XML name.
    #[error("`{0}` is not a valid XML element or attribute name")]
    InvalidName(String),
    /// The document is not well-formed XML.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// The document is XML but not in the shape [`XmlBuilder`] writes.
    #[error("unexpected XML structure: {0}")]
    Structure(String),
}

/// Whether `name` can be used as an element or attribute name: a letter or
/// `_`, then letters, digits, `_`, `-` or `.`. Colons (namespaces) are
/// refused on purpose.
pub fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::is_xml_name;

    #[test]
    fn xml_names() {
        for ok in ["sale_order", "_model", "a.b-c", "Straße", "x1"] {
            assert!(is_xml_name(ok), "{ok}");
        }
        for bad in ["", "1x", "a b", "a:b", "-x", ".x", "a<b", "a&b"] {
            assert!(!is_xml_name(bad), "{bad}");
        }
    }
}
