//! Payload filters of a subscription: which events it wants (`match`) and which payload fields
//! it receives (`fields`).
//!
//! This module owns the filter's shape and its evaluation. It is pure: no I/O, and the event is
//! never changed in place (a trimmed copy is made when `fields` is set).
//!
//! Shape (JSON from the API, the same keys in TOML):
//! `{"match": {"state": ["sale", "done"], "partner_id": 9}, "fields": ["id", "name", "state"]}`.
//! - `match`: every key must match; a key names a payload field (`a.b` walks into objects and
//!   arrays); a list means "any of these", a single value means "this one". A many2one pair
//!   `[id, "name"]` in the payload matches its id.
//! - `fields`: the payload keeps only these top-level keys.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most `fields` entries and most `match` keys.
pub const MAX_FILTER_ENTRIES: usize = 256;

/// A subscription's record and field filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadFilter {
    /// Top-level payload keys to keep; empty keeps everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Field path → accepted value (or list of accepted values).
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matches: BTreeMap<String, Value>,
}

impl PayloadFilter {
    /// Checks the filter's own shape; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.fields.len() > MAX_FILTER_ENTRIES || self.matches.len() > MAX_FILTER_ENTRIES {
            return Err(format!(
                "filter: at most {MAX_FILTER_ENTRIES} fields and {MAX_FILTER_ENTRIES} match keys"
            ));
        }
        if let Some(i) = self.fields.iter().position(|f| f.is_empty()) {
            return Err(format!("filter.fields[{i}]: must not be empty"));
        }
        for (key, expected) in &self.matches {
            if key.is_empty() || key.split('.').any(str::is_empty) {
                return Err(format!("filter.match: `{key}` is not a field path"));
            }
            if expected
                .as_array()
                .is_some_and(|a| a.is_empty() || a.len() > MAX_FILTER_ENTRIES)
            {
                return Err(format!(
                    "filter.match.{key}: give 1 to {MAX_FILTER_ENTRIES} accepted values"
                ));
            }
        }
        Ok(())
    }

    /// Whether `payload` passes every `match` condition.
    pub fn accepts(&self, payload: &Value) -> bool {
        self.matches.iter().all(|(path, expected)| {
            let actual = lookup(payload, path);
            match expected {
                Value::Array(options) => options.iter().any(|o| same(actual, o)),
                one => same(actual, one),
            }
        })
    }

    /// The payload with only the `fields` kept (unchanged when `fields` is empty or the payload
    /// is not an object).
    pub fn trim(&self, payload: Value) -> Value {
        match payload {
            Value::Object(map) if !self.fields.is_empty() => Value::Object(
                map.into_iter()
                    .filter(|(k, _)| self.fields.iter().any(|f| f == k))
                    .collect(),
            ),
            other => other,
        }
    }

    /// Applies the filter to a payload given as JSON text: `None` when the event is filtered
    /// out, else the payload text, trimmed (owned) or as it was (borrowed). A payload that is
    /// not JSON only passes a filter without `match`.
    pub fn apply<'a>(&self, payload: &'a str) -> Option<Cow<'a, str>> {
        let Ok(value) = serde_json::from_str::<Value>(payload) else {
            return self.matches.is_empty().then_some(Cow::Borrowed(payload));
        };
        if !self.accepts(&value) {
            return None;
        }
        if self.fields.is_empty() {
            return Some(Cow::Borrowed(payload));
        }
        Some(Cow::Owned(self.trim(value).to_string()))
    }
}

/// The value at `path`: the key itself when the payload has it, else the dotted walk.
fn lookup<'a>(payload: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = payload.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(payload, |v, seg| match v {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => items.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Equality, plus Odoo's many2one pair `[id, "name"]` matching its id.
fn same(actual: Option<&Value>, expected: &Value) -> bool {
    let Some(actual) = actual else {
        return expected.is_null();
    };
    if actual == expected || numbers_equal(actual, expected) {
        return true;
    }
    match actual.as_array().map(Vec::as_slice) {
        Some([id, Value::String(_)]) => id == expected || numbers_equal(id, expected),
        _ => false,
    }
}

/// `9` and `9.0` are the same number.
fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if a.is_number() && b.is_number() && x == y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(v: Value) -> PayloadFilter {
        serde_json::from_value(v).expect("filter")
    }

    #[test]
    fn match_is_equality_or_any_of_a_list() {
        let f = filter(
            json!({"match": {"state": ["sale", "done"], "partner_id": 9, "amount_total": 10}}),
        );
        let order =
            json!({"state": "sale", "partner_id": [9, "Deco Addict"], "amount_total": 10.0});
        assert!(f.accepts(&order));
        assert!(!f.accepts(&json!({"state": "draft", "partner_id": 9, "amount_total": 10})));
        assert!(
            !f.accepts(&json!({"state": "sale", "partner_id": [7, "Other"], "amount_total": 10}))
        );
        assert!(
            !f.accepts(&json!({"state": "sale"})),
            "a missing field does not match"
        );
    }

    #[test]
    fn dotted_paths_walk_objects_and_arrays() {
        let f = filter(json!({"match": {"partner.country": "BE", "lines.0.sku": "A"}}));
        assert!(f.accepts(&json!({"partner": {"country": "BE"}, "lines": [{"sku": "A"}]})));
        assert!(!f.accepts(&json!({"partner": {"country": "FR"}, "lines": [{"sku": "A"}]})));
    }

    #[test]
    fn fields_trim_the_payload() {
        let f = filter(json!({"fields": ["id", "state"]}));
        let out = f
            .apply(r#"{"id": 1, "state": "sale", "note": "secret"}"#)
            .expect("passes");
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"id": 1, "state": "sale"})
        );
        assert_eq!(f.apply("not json").as_deref(), Some("not json"));
        assert!(matches!(
            filter(json!({"match": {"id": 1}})).apply(r#"{"id": 1}"#),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(filter(json!({"match": {"a": 1}})).apply("not json"), None);
    }

    #[test]
    fn the_configuration_file_shape() {
        let f: PayloadFilter =
            toml::from_str("fields = [\"id\"]\n[match]\nstate = [\"sale\"]\npartner_id = 9")
                .expect("toml");
        assert_eq!(
            f,
            filter(json!({"fields": ["id"], "match": {"state": ["sale"], "partner_id": 9}}))
        );
    }

    #[test]
    fn validation_names_the_key() {
        assert!(
            filter(json!({"fields": ["id", ""]}))
                .validate()
                .unwrap_err()
                .contains("filter.fields[1]")
        );
        assert!(
            filter(json!({"match": {"a..b": 1}}))
                .validate()
                .unwrap_err()
                .contains("a..b")
        );
        assert!(
            filter(json!({"match": {"state": []}}))
                .validate()
                .unwrap_err()
                .contains("filter.match.state")
        );
        assert!(serde_json::from_value::<PayloadFilter>(json!({"where": {}})).is_err());
    }
}
