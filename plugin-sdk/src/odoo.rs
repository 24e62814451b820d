//! Readers for Odoo's JSON conventions, which every plugin meets: `false`
//! (never `null`) means "no value" whatever the field type, many2one is
//! `[id, "display name"]` from `read()` or a bare id from the native webhook,
//! and x2many is a list of ids or, in richer payloads, of embedded records.
//!
//! Readers never fail: a field that is absent, unset or of an unexpected
//! shape reads as `None`, and the plugin decides whether that is an error.

use serde_json::{Map, Value};

use crate::PluginError;

/// A many2one value: the id of the related record and, when the payload
/// carries it (`read()` style), its display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Many2one {
    /// Database id of the related record.
    pub id: i64,
    /// Display name, absent when Odoo sent a bare id.
    pub name: Option<String>,
}

impl Many2one {
    /// Reads `[id, "name"]`, `[id]` or a bare id; `None` for `false`, `null`
    /// and any other shape.
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Number(n) => Some(Self {
                id: n.as_i64()?,
                name: None,
            }),
            Value::Array(items) => match items.as_slice() {
                [id] => Some(Self {
                    id: id.as_i64()?,
                    name: None,
                }),
                [id, name] => Some(Self {
                    id: id.as_i64()?,
                    name: match name {
                        Value::String(s) => Some(s.clone()),
                        Value::Bool(false) | Value::Null => None,
                        _ => return None,
                    },
                }),
                _ => None,
            },
            _ => None,
        }
    }
}

/// An x2many value (one2many or many2many).
#[derive(Debug, Clone, PartialEq)]
pub enum X2many<'a> {
    /// A list of ids, as the native webhook and `read()` send it. An empty
    /// list reads as `Ids(vec![])`.
    Ids(Vec<i64>),
    /// Embedded records, as richer payloads send them.
    Records(Vec<Record<'a>>),
}

impl<'a> X2many<'a> {
    /// Reads a list of ids or a list of objects; `None` for `false`, mixed
    /// lists and anything else (Odoo command triplets included).
    pub fn from_value(value: &'a Value) -> Option<Self> {
        let items = value.as_array()?;
        if let Some(ids) = items.iter().map(Value::as_i64).collect::<Option<Vec<_>>>() {
            return Some(Self::Ids(ids));
        }
        items
            .iter()
            .map(|item| item.as_object().map(Record::from_map))
            .collect::<Option<Vec<_>>>()
            .map(Self::Records)
    }

    /// The ids, whichever form the list has (embedded records without an
    /// integer `id` are skipped).
    pub fn ids(&self) -> Vec<i64> {
        match self {
            Self::Ids(ids) => ids.clone(),
            Self::Records(records) => records.iter().filter_map(Record::id).collect(),
        }
    }

    /// The embedded records, or `None` when the payload only has ids.
    pub fn records(&self) -> Option<&[Record<'a>]> {
        match self {
            Self::Ids(_) => None,
            Self::Records(records) => Some(records),
        }
    }

    /// Number of related records.
    pub fn len(&self) -> usize {
        match self {
            Self::Ids(ids) => ids.len(),
            Self::Records(records) => records.len(),
        }
    }

    /// Whether there are no related records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An Odoo record (a JSON object) with readers that apply Odoo's conventions.
///
/// ```
/// use odoo_gateway_plugin_sdk::{Many2one, Record};
///
/// let value = serde_json::json!({"id": 12, "partner_id": [9, "Deco Addict"],
///                                "commitment_date": false, "order_line": [31, 32]});
/// let order = Record::new(&value).unwrap();
/// assert_eq!(order.id(), Some(12));
/// assert_eq!(order.many2one("partner_id"),
///            Some(Many2one { id: 9, name: Some("Deco Addict".into()) }));
/// assert_eq!(order.get("commitment_date"), None); // `false` is "no value"
/// assert_eq!(order.x2many("order_line").unwrap().ids(), vec![31, 32]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    fields: &'a Map<String, Value>,
}

impl<'a> Record<'a> {
    /// Views `value` as a record; a `reject` error when it is not an object.
    pub fn new(value: &'a Value) -> Result<Self, PluginError> {
        value
            .as_object()
            .map(Self::from_map)
            .ok_or_else(|| PluginError::Reject("payload is not a JSON object".to_owned()))
    }

    /// Views a JSON object as a record.
    pub fn from_map(fields: &'a Map<String, Value>) -> Self {
        Self { fields }
    }

    /// All fields as sent, `false` values included.
    pub fn fields(&self) -> &'a Map<String, Value> {
        self.fields
    }

    /// The value of `name`; `None` when absent, `false` or `null`.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.fields.get(name).filter(|v| is_set(v))
    }

    /// A string field.
    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.get(name)?.as_str()
    }

    /// A numeric field (integer or float) as `f64`.
    pub fn f64(&self, name: &str) -> Option<f64> {
        self.get(name)?.as_f64()
    }

    /// An integer field.
    pub fn i64(&self, name: &str) -> Option<i64> {
        self.get(name)?.as_i64()
    }

    /// A boolean field: `true` only when the payload says `true`.
    pub fn bool(&self, name: &str) -> bool {
        self.fields.get(name) == Some(&Value::Bool(true))
    }

    /// The record's `id`.
    pub fn id(&self) -> Option<i64> {
        self.i64("id")
    }

    /// A many2one field, `[id, "name"]` or a bare id.
    pub fn many2one(&self, name: &str) -> Option<Many2one> {
        Many2one::from_value(self.get(name)?)
    }

    /// An x2many field, ids or embedded records.
    pub fn x2many(&self, name: &str) -> Option<X2many<'a>> {
        X2many::from_value(self.get(name)?)
    }
}

/// Whether an Odoo value is set: `false` and `null` mean "no value".
pub fn is_set(value: &Value) -> bool {
    !matches!(value, Value::Bool(false) | Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use odoo_gateway_fixtures::{NATIVE_ORDER, RICH_ORDER};

    fn m2o(id: i64, name: Option<&str>) -> Option<Many2one> {
        Some(Many2one {
            id,
            name: name.map(str::to_owned),
        })
    }

    #[test]
    fn many2one_shapes() {
        assert_eq!(
            Many2one::from_value(&json!([9, "Deco Addict"])),
            m2o(9, Some("Deco Addict"))
        );
        assert_eq!(Many2one::from_value(&json!(9)), m2o(9, None));
        assert_eq!(Many2one::from_value(&json!([9])), m2o(9, None));
        assert_eq!(Many2one::from_value(&json!([9, false])), m2o(9, None));
        for none in [
            json!(false),
            json!(null),
            json!("9"),
            json!([]),
            json!([1, 2, 3]),
            json!(["x", "y"]),
            json!(1.5),
            json!([9, 10]),
        ] {
            assert_eq!(Many2one::from_value(&none), None, "{none}");
        }
    }

    #[test]
    fn x2many_shapes() {
        assert_eq!(
            X2many::from_value(&json!([31, 32])),
            Some(X2many::Ids(vec![31, 32]))
        );
        assert_eq!(X2many::from_value(&json!([])), Some(X2many::Ids(vec![])));
        assert!(X2many::from_value(&json!([])).unwrap().is_empty());
        let embedded = json!([{"id": 31}, {"name": "no id"}]);
        let lines = X2many::from_value(&embedded).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines.ids(), vec![31]);
        assert_eq!(lines.records().unwrap()[1].str("name"), Some("no id"));
        for none in [
            json!(false),
            json!([1, {"id": 2}]),
            json!([[6, 0, [1, 2]]]),
            json!(3),
        ] {
            assert_eq!(X2many::from_value(&none), None, "{none}");
        }
    }

    #[test]
    fn record_readers_on_the_rich_fixture() {
        let value: Value = serde_json::from_str(RICH_ORDER).unwrap();
        let order = Record::new(&value).unwrap();
        assert_eq!(order.id(), Some(12));
        assert_eq!(order.str("name"), Some("S00012"));
        assert_eq!(order.f64("amount_total"), Some(1184.5));
        assert_eq!(order.f64("id"), Some(12.0));
        assert_eq!(order.many2one("partner_id"), m2o(9, Some("Deco Addict")));
        assert_eq!(order.get("commitment_date"), None);
        assert_eq!(order.str("commitment_date"), None);
        assert!(order.fields().contains_key("commitment_date"));
        assert!(!order.bool("locked"));
        assert_eq!(order.get("no_such_field"), None);

        let lines = order.x2many("order_line").unwrap();
        assert_eq!(lines.ids(), vec![31, 32, 33]);
        let lines = lines.records().unwrap();
        assert_eq!(
            lines[0].many2one("route_id"),
            m2o(5, Some("Ship: FastFreight"))
        );
        assert_eq!(lines[0].get("display_type"), None);
        assert_eq!(lines[2].str("display_type"), Some("line_note"));
        assert_eq!(lines[2].many2one("product_id"), None);
        assert_eq!(lines[0].x2many("tax_id"), Some(X2many::Ids(vec![1])));
    }

    #[test]
    fn record_readers_on_the_native_fixture() {
        let value: Value = serde_json::from_str(NATIVE_ORDER).unwrap();
        let order = Record::new(&value).unwrap();
        assert_eq!(order.many2one("partner_id"), m2o(9, None));
        assert_eq!(order.x2many("order_line"), Some(X2many::Ids(vec![31, 32])));
        assert_eq!(order.x2many("order_line").unwrap().records(), None);
        assert_eq!(order.str("_model"), Some("sale.order"));
        assert_eq!(order.i64("amount_total"), None); // 1150.0 is a float
    }

    #[test]
    fn non_objects_are_rejected() {
        let err = Record::new(&json!([1])).unwrap_err();
        assert_eq!(
            err,
            PluginError::Reject("payload is not a JSON object".into())
        );
        assert!(is_set(&json!(0)) && is_set(&json!("")) && !is_set(&json!(false)));
    }
}
