//! A made-up payload for an Odoo-described event type, as Odoo would send it: placeholders
//! by field type (labels for text, the first selection value, id 1), never data read from
//! Odoo. Pure.

use serde_json::{Map, Value, json};

use super::schema::Fields;
use crate::odoo::EnrichSpec;

/// Most fields an example shows when nothing says which the payload holds.
const MAX_GUESSED: usize = 12;

/// Which fields an example shows: those a poll reads, else those seen in payloads, else the
/// model's required fields and its name and state.
pub fn pick(fields: &Fields, polled: Option<&[String]>, seen_keys: &[String]) -> Vec<String> {
    if let Some(listed) = polled {
        return listed.to_vec();
    }
    let seen: Vec<String> = seen_keys
        .iter()
        .filter(|k| fields.contains_key(k.as_str()))
        .cloned()
        .collect();
    if !seen.is_empty() {
        return seen;
    }
    let mut picked: Vec<String> = ["name", "state"]
        .into_iter()
        .filter(|f| fields.contains_key(*f))
        .map(str::to_owned)
        .collect();
    for (name, description) in fields {
        if picked.len() >= MAX_GUESSED {
            break;
        }
        let required = description["required"].as_bool() == Some(true);
        if required && name != "id" && !picked.contains(name) {
            picked.push(name.clone());
        }
    }
    picked
}

/// A value of the type `description` gives; `polled`: a many2one as `search_read` shows it.
pub fn value(description: &Value, polled: bool) -> Value {
    let label = description["string"].as_str().unwrap_or("text");
    match description["type"].as_str().unwrap_or("") {
        "char" | "text" => json!(label),
        "html" => json!(format!("<p>{label}</p>")),
        "selection" => description["selection"]
            .get(0)
            .and_then(|pair| pair.get(0))
            .cloned()
            .unwrap_or(Value::Bool(false)),
        "integer" | "many2one_reference" => json!(1),
        "float" | "monetary" => json!(100.0),
        "boolean" => json!(true),
        "date" => json!("2024-05-14"),
        "datetime" => json!("2024-05-14 09:12:33"),
        "many2one" if polled => json!([1, label]),
        "many2one" => json!(1),
        "one2many" | "many2many" => json!([1, 2]),
        "reference" => json!(format!(
            "{},1",
            description["relation"].as_str().unwrap_or("res.partner")
        )),
        "binary" | "image" => Value::Bool(false),
        _ => json!({}),
    }
}

/// What enrichment makes of a field the operator enriches for every subscription.
#[derive(Debug)]
pub struct Enriched<'a> {
    /// The list entry.
    pub spec: &'a EnrichSpec,
    /// The related model's descriptions, when known.
    pub related: Option<&'a Fields>,
}

/// The example payload of `model`: `id` and the `picked` fields; with `webhook_action`, the
/// keys Odoo's webhook adds; `enriched` fields shaped as enrichment delivers them.
pub fn example(
    model: &str,
    fields: &Fields,
    picked: &[String],
    webhook_action: Option<&str>,
    polled: bool,
    enriched: &[Enriched<'_>],
) -> Value {
    let mut out = Map::new();
    if let Some(action) = webhook_action {
        out.insert("_action".into(), json!(action));
        out.insert("_id".into(), json!(1));
        out.insert("_model".into(), json!(model));
    }
    out.insert("id".into(), json!(1));
    for name in picked {
        let Some(description) = fields.get(name) else {
            continue;
        };
        let shown = match enriched.iter().find(|e| &e.spec.field == name) {
            Some(e) => enriched_value(e, description),
            None => value(description, polled),
        };
        out.insert(name.clone(), shown);
    }
    Value::Object(out)
}

fn enriched_value(e: &Enriched<'_>, description: &Value) -> Value {
    let record = if e.spec.fields.is_empty() {
        json!([1, description["string"].as_str().unwrap_or("name")])
    } else {
        let mut record = Map::new();
        record.insert("id".into(), json!(1));
        for f in &e.spec.fields {
            let v = e
                .related
                .and_then(|r| r.get(f))
                .map_or(Value::Bool(false), |d| value(d, true));
            record.insert(f.clone(), v);
        }
        Value::Object(record)
    };
    if description["type"] == "many2one" {
        record
    } else {
        json!([record])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_example_is_made_of_placeholders_in_odoo_shapes() {
        let fields: Fields = serde_json::from_value(json!({
            "name": {"type": "char", "string": "Order Reference", "required": true},
            "state": {"type": "selection", "string": "Status", "selection": [["draft", "Quotation"]]},
            "partner_id": {"type": "many2one", "string": "Customer", "required": true},
            "note": {"type": "html", "string": "Terms"},
        }))
        .unwrap();
        let picked = pick(&fields, None, &[]);
        assert_eq!(picked, ["name", "state", "partner_id"]);
        let spec = EnrichSpec {
            field: "partner_id".into(),
            model: None,
            fields: vec!["zip".into()],
        };
        let related: Fields =
            serde_json::from_value(json!({"zip": {"type": "char", "string": "Zip"}})).unwrap();
        let shown = example(
            "sale.order",
            &fields,
            &picked,
            Some("SO confirmed(#1)"),
            false,
            &[Enriched {
                spec: &spec,
                related: Some(&related),
            }],
        );
        assert_eq!(
            shown,
            json!({"_action": "SO confirmed(#1)", "_id": 1, "_model": "sale.order", "id": 1,
                "name": "Order Reference", "state": "draft", "partner_id": {"id": 1, "zip": "Zip"}})
        );
        assert_eq!(
            pick(&fields, None, &["note".into(), "colour".into()]),
            ["note"]
        );
        assert_eq!(value(&fields["partner_id"], true), json!([1, "Customer"]));
    }
}
