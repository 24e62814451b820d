//! The ORM methods of the fake Odoo: `read`, `search`, `search_read` and `fields_get` over
//! records held in memory, with Odoo's faults for unknown models and fields. `fields_get`
//! answers from a model's field definitions (`tests/fixtures/odoo/fields/`, in the shape of
//! Odoo 17's answer: `type`, `string`, `required`, `readonly`, `selection`, `relation`,
//! `help`...), cut to the fields and attributes asked, as Odoo's `get_description` does; a
//! model without definitions gets `many2one` or `char` per field. Domains are in
//! Odoo's prefix notation (`&` and `|` take the next two terms, `!` the next one, the top
//! level is an implicit `&`); a timestamp is compared as an instant, at full precision, with
//! a domain value of whole seconds (see [`super::time`]); records are shown with their
//! timestamps to the second.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::time::{domain_instant, is_timestamp, shown};
use super::{Fault, fault};

type Records = Vec<Map<String, Value>>;

/// Runs `model.method(*positional, **kwargs)`.
pub(super) fn execute(
    models: &BTreeMap<String, Records>,
    relations: &BTreeMap<(String, String), String>,
    definitions: &BTreeMap<String, Map<String, Value>>,
    model: &str,
    method: &str,
    positional: &Value,
    kwargs: &Value,
) -> Result<Value, Fault> {
    let Some(records) = models.get(model) else {
        return Err(fault("builtins.KeyError", &format!("'{model}'")));
    };
    let known: BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.keys().map(String::as_str))
        .chain(["id", "display_name", "create_date", "write_date"])
        .collect();
    let fields = field_list(kwargs.get("fields"), &known, model)?;
    match method {
        "read" => {
            let ids = positional[0].as_array().cloned().unwrap_or_default();
            let found = ids
                .iter()
                .filter_map(|id| records.iter().find(|r| r["id"] == *id))
                .map(|r| project(r, &fields))
                .collect();
            Ok(Value::Array(found))
        }
        "search" | "search_read" => {
            let domain = positional[0].as_array().cloned().unwrap_or_default();
            let mut matching = Vec::new();
            for r in records {
                let mut terms = domain.iter();
                if matches(&mut terms, r, &known, model)? {
                    matching.push(r);
                }
            }
            sort(&mut matching, kwargs["order"].as_str().unwrap_or("id"));
            let offset = kwargs["offset"].as_u64().unwrap_or(0) as usize;
            let limit = kwargs["limit"].as_u64().map_or(usize::MAX, |l| l as usize);
            let page = matching.into_iter().skip(offset).take(limit);
            Ok(if method == "search" {
                Value::Array(page.map(|r| r["id"].clone()).collect())
            } else {
                Value::Array(page.map(|r| project(r, &fields)).collect())
            })
        }
        "fields_get" => {
            // `allfields`: none or empty means every field; `attributes`: none means all.
            let asked: Vec<&str> = positional[0]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let attributes: Option<Vec<&str>> = kwargs["attributes"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect());
            let wanted = |f: &str| asked.is_empty() || asked.contains(&f);
            let mut out = Map::new();
            if let Some(defined) = definitions.get(model) {
                for (name, description) in defined.iter().filter(|(n, _)| wanted(n)) {
                    let mut shown = description.as_object().cloned().unwrap_or_default();
                    if let Some(keep) = &attributes {
                        shown.retain(|k, _| keep.contains(&k.as_str()));
                    }
                    out.insert(name.clone(), Value::Object(shown));
                }
                return Ok(Value::Object(out));
            }
            for f in known.iter().copied().filter(|f| wanted(f)) {
                let relation = relations.get(&(model.to_owned(), f.to_owned()));
                out.insert(
                    f.to_owned(),
                    match relation {
                        Some(rel) => json!({"type": "many2one", "relation": rel}),
                        None => json!({"type": "char"}),
                    },
                );
            }
            Ok(Value::Object(out))
        }
        other => Err(fault(
            "builtins.AttributeError",
            &format!("The method '{model}.{other}' does not exist"),
        )),
    }
}

fn field_list(
    fields: Option<&Value>,
    known: &BTreeSet<&str>,
    model: &str,
) -> Result<Vec<String>, Fault> {
    let fields: Vec<String> = fields
        .and_then(Value::as_array)
        .map(|fs| {
            fs.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(bad) = fields.iter().find(|f| !known.contains(f.as_str())) {
        return Err(fault(
            "builtins.ValueError",
            &format!("Invalid field '{bad}' on model '{model}'"),
        ));
    }
    Ok(fields)
}

/// The record with `fields` only (all of them when none), `id` always, `display_name`
/// computed from `name` as Odoo does for most models.
fn project(record: &Map<String, Value>, fields: &[String]) -> Value {
    let mut full = record.clone();
    if !full.contains_key("display_name") {
        let name = full.get("name").cloned().unwrap_or(Value::Bool(false));
        full.insert("display_name".into(), name);
    }
    if fields.is_empty() {
        return Value::Object(full.iter().map(|(k, v)| (k.clone(), shown(v))).collect());
    }
    let mut out = Map::new();
    out.insert("id".into(), full["id"].clone());
    for f in fields {
        out.insert(f.clone(), full.get(f).map_or(Value::Bool(false), shown));
    }
    Value::Object(out)
}

/// Evaluates the next (Polish-notation) term of a domain on `record`; an empty domain is true.
fn matches(
    terms: &mut dyn Iterator<Item = &Value>,
    record: &Map<String, Value>,
    known: &BTreeSet<&str>,
    model: &str,
) -> Result<bool, Fault> {
    // A domain is an implicit `&` of its top-level terms.
    let mut all = true;
    while let Some(term) = terms.next() {
        all &= eval(term, terms, record, known, model)?;
    }
    Ok(all)
}

fn eval<'a>(
    term: &'a Value,
    rest: &mut dyn Iterator<Item = &'a Value>,
    record: &Map<String, Value>,
    known: &BTreeSet<&str>,
    model: &str,
) -> Result<bool, Fault> {
    let operand = |rest: &mut dyn Iterator<Item = &'a Value>| -> Result<bool, Fault> {
        let next = rest
            .next()
            .ok_or_else(|| fault("builtins.ValueError", "Invalid domain: missing operand"))?;
        eval(next, rest, record, known, model)
    };
    match term {
        Value::String(op) if op == "|" => {
            let a = operand(rest)?;
            let b = operand(rest)?;
            Ok(a || b)
        }
        Value::String(op) if op == "&" => {
            let a = operand(rest)?;
            let b = operand(rest)?;
            Ok(a && b)
        }
        Value::String(op) if op == "!" => Ok(!operand(rest)?),
        Value::Array(leaf) if leaf.len() == 3 => {
            let field = leaf[0].as_str().unwrap_or("");
            if !known.contains(field) {
                return Err(fault(
                    "builtins.ValueError",
                    &format!("Invalid field {model}.{field} in leaf {leaf:?}"),
                ));
            }
            let value = record.get(field).unwrap_or(&Value::Bool(false));
            // A timestamp column against a value of whole seconds, compared as instants.
            let instant = |v: &Value| domain_instant(field, v).map(Value::String);
            let wanted = &match &leaf[2] {
                Value::Array(vs) if is_timestamp(value) => {
                    Value::Array(vs.iter().map(instant).collect::<Result<_, _>>()?)
                }
                v if is_timestamp(value) => instant(v)?,
                v => v.clone(),
            };
            let ord = compare(value, wanted);
            Ok(match leaf[1].as_str().unwrap_or("") {
                "=" => value == wanted,
                "!=" => value != wanted,
                ">" => ord == Some(Ordering::Greater),
                ">=" => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                "<" => ord == Some(Ordering::Less),
                "<=" => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                "in" => wanted.as_array().is_some_and(|vs| vs.contains(value)),
                "not in" => wanted.as_array().is_some_and(|vs| !vs.contains(value)),
                op => {
                    return Err(fault(
                        "builtins.ValueError",
                        &format!("Invalid leaf operator {op}"),
                    ));
                }
            })
        }
        other => Err(fault(
            "builtins.ValueError",
            &format!("Invalid leaf {other}"),
        )),
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Sorts by an Odoo `order` clause: `write_date asc, id desc`.
fn sort(records: &mut [&Map<String, Value>], order: &str) {
    let keys: Vec<(String, bool)> = order
        .split(',')
        .filter_map(|part| {
            let mut words = part.split_whitespace();
            let field = words.next()?.to_owned();
            let desc = words.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
            Some((field, desc))
        })
        .collect();
    records.sort_by(|a, b| {
        for (field, desc) in &keys {
            let null = Value::Null;
            let ord = compare(a.get(field).unwrap_or(&null), b.get(field).unwrap_or(&null))
                .unwrap_or(Ordering::Equal);
            let ord = if *desc { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> BTreeMap<String, Records> {
        let r = |id: i64, state: &str, at: &str| {
            json!({"id": id, "state": state, "write_date": at})
                .as_object()
                .cloned()
                .unwrap()
        };
        let rs = vec![
            r(1, "draft", "2024-06-01 00:00:03.000000"),
            r(2, "sale", "2024-06-01 00:00:03.250000"),
            r(3, "draft", "2024-06-01 00:00:03.999999"),
            r(4, "cancel", "2024-06-01 00:00:04.000001"),
        ];
        BTreeMap::from([("sale.order".to_owned(), rs)])
    }

    fn ids(domain: Value, order: &str) -> Result<Vec<i64>, Fault> {
        let found = execute(
            &records(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            "sale.order",
            "search",
            &json!([domain]),
            &json!({"order": order}),
        )?;
        Ok(serde_json::from_value(found).unwrap())
    }

    #[test]
    fn timestamps_compare_at_full_precision_with_whole_seconds() {
        let w = "2024-06-01 00:00:03";
        assert_eq!(ids(json!([["write_date", "=", w]]), "id"), Ok(vec![1]));
        assert_eq!(
            ids(json!([["write_date", ">", w]]), "id"),
            Ok(vec![2, 3, 4])
        );
        let second = json!([
            ["write_date", ">=", w],
            ["write_date", "<", "2024-06-01 00:00:04"]
        ]);
        assert_eq!(ids(second, "id desc"), Ok(vec![3, 2, 1]));
        assert_eq!(
            ids(
                json!([["write_date", ">=", "2024-06-01"]]),
                "write_date desc"
            ),
            Ok(vec![4, 3, 2, 1])
        );
        let fraction = json!([["write_date", ">", "2024-06-01 00:00:03.5"]]);
        assert!(ids(fraction, "id").is_err(), "Odoo refuses a fraction");
    }

    #[test]
    fn domains_are_in_prefix_notation() {
        let draft = json!(["state", "=", "draft"]);
        let late = json!(["write_date", ">=", "2024-06-01 00:00:04"]);
        let sale = json!(["state", "=", "sale"]);
        assert_eq!(ids(json!(["|", draft, late]), "id"), Ok(vec![1, 3, 4]));
        assert_eq!(ids(json!(["!", draft]), "id"), Ok(vec![2, 4]));
        // `|` binds the next two terms; the rest is and-ed.
        assert_eq!(
            ids(json!(["|", sale, late, ["id", ">", 3]]), "id"),
            Ok(vec![4])
        );
        assert_eq!(
            ids(json!(["|", "&", draft, ["id", ">", 1], sale]), "id"),
            Ok(vec![2, 3])
        );
        assert_eq!(ids(json!(["!", "|", draft, sale]), "id"), Ok(vec![4]));
        assert!(ids(json!(["|", draft]), "id").is_err(), "missing operand");
    }
}
