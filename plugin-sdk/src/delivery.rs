//! Builders for the generated [`Delivery`] record, so that a plugin never
//! spells a content type or serialises a body by hand.

use serde_json::Value;

use crate::Delivery;

/// Content type of [`Delivery::json`] bodies.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// Content type of [`Delivery::xml`] bodies.
pub const CONTENT_TYPE_XML: &str = "application/xml";

impl Delivery {
    /// A delivery to `destination` (`""` is the subscription's default
    /// destination) with any body, without extra headers.
    pub fn new(destination: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            destination: destination.to_owned(),
            content_type: content_type.to_owned(),
            body: body.into(),
            headers: Vec::new(),
            ordering_key: None,
        }
    }

    /// A JSON delivery of `value`, serialised compactly.
    pub fn json(destination: &str, value: &Value) -> Self {
        // `Value`'s Display is its compact JSON text and cannot fail, unlike
        // the generic serialiser.
        Self::new(destination, CONTENT_TYPE_JSON, value.to_string())
    }

    /// An XML delivery; see [`crate::xml::XmlBuilder`] to build the body.
    pub fn xml(destination: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new(destination, CONTENT_TYPE_XML, body)
    }

    /// Adds a request header. The gateway refuses to let a plugin override
    /// its own signature and authentication headers.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Orders this delivery by `key` instead of its event's key, for a
    /// subscription with `ordering`: deliveries with the same key are
    /// attempted one at a time, in their events' acceptance order (at most
    /// 256 bytes; ignored by subscriptions without `ordering`). The order is
    /// strict when the subscription's own key is coarser than this one (each
    /// of these keys comes from events of one subscription key): the plugin's
    /// calls for one subscription key run one at a time, in order.
    pub fn with_ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = Some(key.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_body_round_trips() {
        let value = serde_json::json!({"name": "Déco Addict – München", "amount_total": 1184.5,
                                       "order_line": [31, 32], "origin": false});
        let delivery = Delivery::json("", &value).with_header("x-shop", "eu");
        assert_eq!(delivery.destination, "");
        assert_eq!(delivery.content_type, "application/json");
        assert_eq!(
            delivery.headers,
            vec![("x-shop".to_owned(), "eu".to_owned())]
        );
        let text = std::str::from_utf8(&delivery.body).unwrap();
        assert_eq!(
            text,
            r#"{"amount_total":1184.5,"name":"Déco Addict – München","order_line":[31,32],"origin":false}"#
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&delivery.body).unwrap(),
            value
        );
    }

    #[test]
    fn xml_delivery_has_xml_content_type() {
        let delivery = Delivery::xml("erp", "<a/>");
        assert_eq!(delivery.destination, "erp");
        assert_eq!(delivery.content_type, CONTENT_TYPE_XML);
        assert_eq!(delivery.body, b"<a/>");
    }
}
