//! Timestamps as a real Odoo on PostgreSQL has them, and the transactions that write them.
//!
//! PostgreSQL keeps a `timestamp` column to the microsecond, and Odoo stamps `create_date`
//! and `write_date` with the transaction's `now()`: one value for every record a transaction
//! writes, taken when it began, visible only once it commits. The external API shows them to
//! the second (`Datetime.to_string` formats `%Y-%m-%d %H:%M:%S`), and a domain's datetime value
//! is parsed to whole seconds (`Datetime.to_datetime`, which refuses a fraction) and then
//! compared with the column at full precision: `write_date > 'W'` matches `W.250000`, and
//! `write_date = 'W'` matches only a value of exactly `W.000000`.
//!
//! Stored here as text `YYYY-MM-DD HH:MM:SS.ffffff`, so that comparing or sorting the text
//! compares the instants.

use serde_json::{Map, Value};

use super::{FakeOdoo, Fault, fault};

/// Where the clock starts in its first second: no timestamp falls on a whole second, as
/// none does in a real database (whose `now()` is rarely `.000000`).
pub const CLOCK_START_US: u64 = 250_000;

/// The fraction the fixtures' records get (they were written long before the tests ran).
const FIXTURE_FRACTION: &str = ".731058";

/// The stored text of `us` microseconds after `epoch` (seconds since the Unix epoch).
pub fn stored(epoch: i64, us: u64) -> String {
    format!("{}.{:06}", shown_at(epoch, us / 1_000_000), us % 1_000_000)
}

/// `seconds` after `epoch` as the external API shows it.
pub fn shown_at(epoch: i64, seconds: u64) -> String {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    odoo_gateway::odoo::time::from_seconds(epoch.saturating_add(seconds))
}

/// Whether `text` has Odoo's datetime shape, `YYYY-MM-DD HH:MM:SS`.
fn is_shown(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// Whether `text` is a stored timestamp (`YYYY-MM-DD HH:MM:SS.ffffff`).
fn is_stored(text: &str) -> bool {
    text.len() == 26
        && is_shown(&text[..19])
        && text.as_bytes()[19] == b'.'
        && text[20..].bytes().all(|c| c.is_ascii_digit())
}

/// A fixture record with its datetimes stored to the microsecond.
pub(super) fn store_fixture(record: &mut Map<String, Value>) {
    for value in record.values_mut() {
        if let Value::String(text) = value
            && is_shown(text)
        {
            text.push_str(FIXTURE_FRACTION);
        }
    }
}

/// A stored value as the external API shows it: a timestamp to the second.
pub(super) fn shown(value: &Value) -> Value {
    match value {
        Value::String(text) if is_stored(text) => Value::String(text[..19].to_owned()),
        other => other.clone(),
    }
}

/// A domain's value for a datetime column, as Odoo's ORM reads it: `YYYY-MM-DD HH:MM:SS`
/// (or a date, meaning its midnight) and nothing finer; the instant as stored text.
pub(super) fn domain_instant(field: &str, value: &Value) -> Result<String, Fault> {
    let text = value.as_str().unwrap_or("");
    if is_shown(text) {
        return Ok(format!("{text}.000000"));
    }
    let date = text.len() == 10 && is_shown(&format!("{text} 00:00:00"));
    if date {
        return Ok(format!("{text} 00:00:00.000000"));
    }
    Err(fault(
        "builtins.ValueError",
        &format!("time data '{value}' for field {field} does not match format '%Y-%m-%d %H:%M:%S'"),
    ))
}

/// Whether a stored value is a timestamp (then domains compare it as an instant).
pub(super) fn is_timestamp(value: &Value) -> bool {
    value.as_str().is_some_and(is_stored)
}

enum Change {
    Create(String, i64, Map<String, Value>),
    Write(String, i64, Map<String, Value>),
}

/// One transaction: its changes carry the time it began, and are seen once it commits.
/// Dropping it uncommitted rolls it back (its ids stay used, as a sequence's do).
pub struct Transaction {
    odoo: FakeOdoo,
    at: String,
    changes: Vec<Change>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("at", &self.at)
            .field("changes", &self.changes.len())
            .finish()
    }
}

impl Transaction {
    pub(super) fn new(odoo: FakeOdoo, at: String) -> Self {
        Self {
            odoo,
            at,
            changes: Vec::new(),
        }
    }

    /// Its `now()` as stored, to the microsecond.
    pub fn at(&self) -> &str {
        &self.at
    }

    /// Its `now()` as the external API shows it, to the second.
    pub fn shown_at(&self) -> String {
        self.at[..19].to_owned()
    }

    /// Creates a record of `model` (`create_date == write_date`); its id, taken now.
    pub fn create(&mut self, model: &str, fields: Value) -> i64 {
        let id = self.odoo.next_id(model);
        let fields = fields.as_object().cloned().unwrap_or_default();
        self.changes
            .push(Change::Create(model.to_owned(), id, fields));
        id
    }

    /// Changes a record of `model` (one that exists when the transaction commits).
    pub fn write(&mut self, model: &str, id: i64, fields: Value) {
        let fields = fields.as_object().cloned().unwrap_or_default();
        self.changes
            .push(Change::Write(model.to_owned(), id, fields));
    }

    /// Makes its changes seen, all stamped with the time it began.
    pub fn commit(self) {
        let mut inner = self.odoo.lock();
        for change in self.changes {
            match change {
                Change::Create(model, id, mut record) => {
                    record.insert("id".into(), id.into());
                    record.insert("create_date".into(), self.at.clone().into());
                    record.insert("write_date".into(), self.at.clone().into());
                    inner.models.entry(model).or_default().push(record);
                }
                Change::Write(model, id, fields) => {
                    let record = inner
                        .models
                        .get_mut(&model)
                        .and_then(|rs| rs.iter_mut().find(|r| r["id"] == id))
                        .expect("the record exists");
                    record.extend(fields);
                    record.insert("write_date".into(), self.at.clone().into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn timestamps_are_stored_to_the_microsecond_and_shown_to_the_second() {
        let epoch = odoo_gateway::odoo::time::to_seconds("2024-06-01 00:00:00").unwrap();
        let at = stored(epoch, 3 * 1_000_000 + CLOCK_START_US);
        assert_eq!(at, "2024-06-01 00:00:03.250000");
        assert!(is_timestamp(&json!(at)));
        assert_eq!(shown(&json!(at)), json!("2024-06-01 00:00:03"));
        assert_eq!(shown(&json!("2024-06-01")), json!("2024-06-01"));
        assert_eq!(shown(&json!(7)), json!(7));
    }

    #[test]
    fn a_domain_value_is_whole_seconds_or_a_date() {
        let f = |v: Value| domain_instant("write_date", &v);
        assert_eq!(
            f(json!("2024-06-01 00:00:03")).unwrap(),
            "2024-06-01 00:00:03.000000"
        );
        assert_eq!(
            f(json!("2024-06-01")).unwrap(),
            "2024-06-01 00:00:00.000000"
        );
        assert!(f(json!("2024-06-01 00:00:03.250000")).is_err());
        assert!(f(json!("2024-06-01T00:00:03")).is_err());
        assert!(f(json!(5)).is_err());
    }
}
