//! A polled change ([`Change`]) and its dedup key: `model/id/write_date/fingerprint`.
//!
//! `write_date` is shown to the second, so two changes of one record within a second share
//! it; the fingerprint (a hash of the values of the fields read) tells them apart, and the
//! same state read again (by the next poll, the overlap, a re-read after a crash) gets the
//! same key. In `reconcile` mode a webhook body gets the key from the same fields of its own
//! payload: a many2one is a bare id in a webhook (`load=None`) and `[id, name]` in
//! `search_read`, and a float may come as `1` or `1.0`, so values are put in one form first.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Fields that never go into a fingerprint: the key has them already, or they are computed
/// from `write_date` (`__last_update`, Odoo before 16).
const NOT_FINGERPRINTED: [&str; 4] = ["id", "create_date", "write_date", "__last_update"];

/// The explicit dedup key of a change of `model`'s record `id` at the second `write_date`
/// with the state `fingerprint`.
pub fn change_key(model: &str, id: i64, write_date: &str, fingerprint: &str) -> String {
    format!("{model}/{id}/{write_date}/{fingerprint}")
}

/// The dedup key of the deletion of `model`'s record `id` (ids are never reused).
pub fn unlink_key(model: &str, id: i64) -> String {
    format!("{model}/{id}/unlink")
}

/// A hash of the values of `fields` in `record` (of every field read when `fields` is
/// empty); `None` when one of `fields` is missing, as in a webhook body that did not select
/// it.
pub fn fingerprint(record: &Map<String, Value>, fields: &[String]) -> Option<String> {
    let mut names: Vec<&str> = if fields.is_empty() {
        record.keys().map(String::as_str).collect()
    } else {
        fields.iter().map(String::as_str).collect()
    };
    names.retain(|f| !NOT_FINGERPRINTED.contains(f));
    names.sort_unstable();
    names.dedup();
    let mut hash = Sha256::new();
    for name in names {
        let value = record.get(name)?;
        let mut text = String::new();
        canonical(value, true, &mut text);
        // Lengths first, so that no two lists of values hash alike.
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    }
    Some(hex::encode(&hash.finalize()[..8]))
}

/// `value` in one form: numbers as `f64`, a many2one `[id, name]` as its id (only at the top:
/// `top`), object keys sorted.
fn canonical(value: &Value, top: bool, out: &mut String) {
    match value {
        Value::Array(items) => match items.as_slice() {
            [Value::Number(id), Value::String(_)] if top => {
                canonical(&Value::Number(id.clone()), false, out)
            }
            _ => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, false, out);
                }
                out.push(']');
            }
        },
        Value::Number(n) => {
            out.push_str(&n.as_f64().map_or_else(|| n.to_string(), |f| f.to_string()))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], false, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A polled record: where it sits, and what it is.
#[derive(Debug)]
pub struct Change<'a> {
    /// The record's id.
    pub id: i64,
    /// `write_date` as Odoo shows it.
    pub write_date: String,
    /// That second, since the epoch.
    pub second: i64,
    /// The record as read.
    pub record: &'a Map<String, Value>,
}

impl<'a> Change<'a> {
    /// The change `record` is (an error for one without Odoo's `id` and `write_date`).
    pub fn of(record: &'a Value) -> Result<Self, super::OdooError> {
        let bad = |reason: &str| super::OdooError::BadResponse {
            url: "search_read".into(),
            reason: reason.to_owned(),
        };
        let map = record
            .as_object()
            .ok_or_else(|| bad("a record that is not an object"))?;
        let id = map
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("a record without an id"))?;
        let write_date = map
            .get("write_date")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Odoo's own shape; anything else would move the cursor to nonsense.
        let second = super::time::to_seconds(write_date).ok_or_else(|| {
            bad(&format!(
                "record {id}: `write_date` {write_date:?} is not `YYYY-MM-DD HH:MM:SS`"
            ))
        })?;
        Ok(Self {
            id,
            write_date: write_date.to_owned(),
            second,
            record: map,
        })
    }

    /// `create` when it was created in the same second as its last change (Odoo shows both
    /// to the second: a record changed within the second of its creation is a `create` too).
    pub fn action(&self) -> &'static str {
        match self.record.get("create_date").and_then(Value::as_str) {
            Some(created) if created == self.write_date => "create",
            _ => "write",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("an object")
    }

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_webhook_body_and_the_polled_record_of_one_write_match() {
        let polled = map(
            json!({"id": 12, "name": "S00012", "state": "sale", "amount_total": 1.0,
            "partner_id": [9, "Deco Addict"], "order_line": [31, 32],
            "write_date": "2024-05-14 09:12:40", "create_date": "2024-05-14 09:10:02"}),
        );
        let webhook = map(
            json!({"_action": "SO confirmed(#57)", "_id": 12, "_model": "sale.order",
            "id": 12, "name": "S00012", "state": "sale", "amount_total": 1, "partner_id": 9,
            "order_line": [31, 32], "write_date": "2024-05-14 09:12:40"}),
        );
        let f = fields(&["name", "state", "amount_total", "partner_id", "order_line"]);
        let a = fingerprint(&polled, &f).expect("all there");
        assert_eq!(Some(a.clone()), fingerprint(&webhook, &f));
        assert_eq!(a.len(), 16);
        // A webhook without one of the fields cannot be matched.
        assert_eq!(
            fingerprint(&webhook, &fields(&["name", "client_order_ref"])),
            None
        );
    }

    #[test]
    fn another_state_within_the_same_second_is_another_change() {
        let f = fields(&["state"]);
        let draft = map(json!({"id": 1, "state": "draft", "write_date": "2024-06-01 00:00:00"}));
        let sale = map(json!({"id": 1, "state": "sale", "write_date": "2024-06-01 00:00:00"}));
        assert_ne!(fingerprint(&draft, &f), fingerprint(&sale, &f));
        // All fields read: the key and computed fields do not count, the others do.
        let later = map(
            json!({"id": 1, "state": "draft", "write_date": "2024-06-01 00:00:09",
            "__last_update": "2024-06-01 00:00:09"}),
        );
        assert_eq!(fingerprint(&draft, &[]), fingerprint(&later, &[]));
        assert_ne!(fingerprint(&draft, &[]), fingerprint(&sale, &[]));
        // Values that only look alike when glued together stay apart.
        let ab = map(json!({"a": "x", "b": "yz"}));
        let ab2 = map(json!({"a": "xy", "b": "z"}));
        assert_ne!(fingerprint(&ab, &[]), fingerprint(&ab2, &[]));
        assert_eq!(
            change_key("sale.order", 12, "2024-05-14 09:12:40", "00ff"),
            "sale.order/12/2024-05-14 09:12:40/00ff"
        );
    }
}
