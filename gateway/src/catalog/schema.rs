//! Odoo's field descriptions (`fields_get`) as a JSON Schema (2020-12) of an event's payload,
//! the shapes enrichment gives a relational field, and where a filter's field path leads.
//!
//! The payload holds what Odoo sends: the fields a webhook action selected (read with
//! `load=None`: a many2one is a bare id) or the fields a poll reads (`search_read`: a many2one
//! is `[id, "name"]`), an empty value as `false` (never `null`), dates as `YYYY-MM-DD`,
//! datetimes as `YYYY-MM-DD HH:MM:SS` (UTC). So no field is listed as `required` (a payload
//! holds only the fields asked for); a field Odoo requires is never `false`.
//!
//! Pure: no I/O. The descriptions come from the caller ([`super::Catalog`] asks Odoo).

use serde_json::{Map, Value, json};

use crate::odoo::EnrichSpec;

/// One model's field descriptions, as `fields_get` answers them.
pub type Fields = Map<String, Value>;

/// The JSON Schema dialect every schema names.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The schema of one field as Odoo sends it, with its label (`title`), help (`description`)
/// and Odoo's own type and relation (`x-odoo-type`, `x-odoo-relation`) kept.
pub fn field_schema(description: &Value) -> Value {
    let kind = description["type"].as_str().unwrap_or("");
    let required = description["required"].as_bool().unwrap_or(false);
    let mut schema = match kind {
        "char" | "text" | "html" => json!({ "type": "string" }),
        "selection" => {
            let values: Vec<Value> = description["selection"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|pair| pair.get(0).cloned())
                .collect();
            if values.iter().all(Value::is_string) {
                json!({ "type": "string", "enum": values })
            } else {
                json!({ "enum": values })
            }
        }
        "integer" | "many2one_reference" => json!({ "type": "integer" }),
        "float" | "monetary" => json!({ "type": "number" }),
        "boolean" => json!({ "type": "boolean" }),
        "date" => json!({ "type": "string", "format": "date" }),
        "datetime" => json!({
            "type": "string",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$",
        }),
        "many2one" => json!({ "anyOf": [
            { "type": "integer", "description": "the id (Odoo's webhook)" },
            pair(),
        ]}),
        "one2many" | "many2many" => json!({ "type": "array", "items": { "type": "integer" } }),
        "reference" => json!({ "type": "string", "description": "`<model>,<id>`" }),
        "binary" | "image" => json!({ "type": "string", "contentEncoding": "base64" }),
        // `json`, `properties` and what a module adds: any value.
        _ => json!({}),
    };
    // An empty value is `false`, except where `false` or an empty list is the value itself;
    // numbers read as 0. A field Odoo requires always has a value.
    let may_be_false = matches!(
        kind,
        "char"
            | "text"
            | "html"
            | "selection"
            | "date"
            | "datetime"
            | "many2one"
            | "reference"
            | "binary"
            | "image"
    ) && !required;
    if may_be_false {
        schema = json!({ "anyOf": [schema, { "const": false }] });
    }
    if let Some(object) = schema.as_object_mut() {
        if let Some(label) = description["string"].as_str() {
            object.insert("title".into(), json!(label));
        }
        if let Some(help) = description["help"].as_str() {
            object.insert("description".into(), json!(help));
        }
        if description["readonly"].as_bool() == Some(true) {
            object.insert("readOnly".into(), json!(true));
        }
        object.insert("x-odoo-type".into(), json!(kind));
        if let Some(relation) = description["relation"].as_str() {
            object.insert("x-odoo-relation".into(), json!(relation));
        }
        if required {
            object.insert("x-odoo-required".into(), json!(true));
        }
    }
    schema
}

/// `[id, "display name"]`: a many2one as `read` and `search_read` show it.
fn pair() -> Value {
    json!({
        "type": "array",
        "prefixItems": [{ "type": "integer" }, { "type": "string" }],
        "items": false,
        "minItems": 2,
        "description": "[id, display name] (polled, or read)",
    })
}

/// The payload schema of events of `model`; `webhook` adds the keys Odoo's webhook puts
/// beside the fields (`_model`, `_id`, `_action`).
pub fn payload_schema(model: &str, fields: &Fields, webhook: bool) -> Value {
    let mut properties = Map::new();
    for (name, description) in fields {
        properties.insert(name.clone(), field_schema(description));
    }
    if webhook {
        properties.insert(
            "_model".into(),
            json!({ "const": model, "description": "the model (Odoo's webhook)" }),
        );
        properties.insert(
            "_id".into(),
            json!({ "type": "integer", "description": "the record's id (Odoo's webhook)" }),
        );
        properties.insert(
            "_action".into(),
            json!({ "type": "string", "description": "the server action, as `<name>(#<id>)` (Odoo's webhook)" }),
        );
    }
    json!({
        "$schema": DIALECT,
        "title": model,
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    })
}

/// Who asked for an enrichment the schema shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrichedBy {
    /// The operator, for every subscription without its own list (`[sources.odoo.enrich]`):
    /// deliveries carry it.
    Source,
    /// What an app's subscription may ask for in its own `enrich` list
    /// (`[sources.odoo.app_enrich]`).
    AppAllowance,
}

impl EnrichedBy {
    /// Its name in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::AppAllowance => "app_allowance",
        }
    }
}

/// The shape `spec` gives a field of type `kind` (`many2one`, `one2many`, `many2many`):
/// `[id, name]` per record without `fields`, else the record with `id` and those fields,
/// described by the related model's `related` descriptions when known.
pub fn enriched_shape(spec: &EnrichSpec, kind: &str, related: Option<&Fields>) -> Value {
    let record = if spec.fields.is_empty() {
        pair()
    } else {
        let mut properties = Map::new();
        properties.insert("id".into(), json!({ "type": "integer" }));
        for f in &spec.fields {
            let described = related.and_then(|r| r.get(f)).map(field_schema);
            properties.insert(f.clone(), described.unwrap_or_else(|| json!({})));
        }
        json!({ "type": "object", "properties": properties, "additionalProperties": false })
    };
    if kind == "many2one" {
        // A many2one whose record is gone keeps its id.
        json!({ "anyOf": [record, { "type": "integer" }] })
    } else {
        json!({ "type": "array", "items": record })
    }
}

/// Adds to `schema` (a [`payload_schema`]) what `spec` makes of its field: the property
/// becomes either shape, with `x-enrich` saying who asks for it and which model is read.
pub fn apply_enrich(
    schema: &mut Value,
    spec: &EnrichSpec,
    model: &str,
    related: Option<&Fields>,
    by: EnrichedBy,
) {
    let Some(property) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut(&spec.field))
    else {
        return;
    };
    let kind = property["x-odoo-type"]
        .as_str()
        .unwrap_or("many2one")
        .to_owned();
    let enriched = enriched_shape(spec, &kind, related);
    let mut merged = Map::new();
    for key in [
        "title",
        "description",
        "readOnly",
        "x-odoo-type",
        "x-odoo-relation",
    ] {
        if let Some(v) = property.get(key) {
            merged.insert(key.into(), v.clone());
        }
    }
    let as_sent = property.take();
    merged.insert("anyOf".into(), json!([as_sent, enriched]));
    merged.insert(
        "x-enrich".into(),
        json!({ "by": by.as_str(), "model": model, "fields": spec.fields }),
    );
    *property = Value::Object(merged);
}

/// Where a filter's field path leads in a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathCheck {
    /// The schema has it.
    Known,
    /// The schema says nothing either way (any value, an open object).
    Open,
    /// The schema has no such field; why, for people.
    Unknown(String),
}

/// Whether `path` (dot-separated, as a filter's `match` keys) names something in `schema`.
pub fn check_path(schema: &Value, path: &str) -> PathCheck {
    let segments: Vec<&str> = path.split('.').collect();
    walk(schema, &segments, "")
}

/// Whether `key` is a key of the payload itself (a filter's `fields` entry: a top-level key,
/// dots and all).
pub fn check_key(schema: &Value, key: &str) -> PathCheck {
    walk(schema, &[key], "")
}

fn walk(node: &Value, segments: &[&str], walked: &str) -> PathCheck {
    let Some((segment, rest)) = segments.split_first() else {
        return PathCheck::Known;
    };
    let here = if walked.is_empty() {
        (*segment).to_owned()
    } else {
        format!("{walked}.{segment}")
    };
    if let Some(alternatives) = node.get("anyOf").and_then(Value::as_array) {
        let mut first_unknown = None;
        let mut open = false;
        for alternative in alternatives {
            match walk(alternative, segments, walked) {
                PathCheck::Known => return PathCheck::Known,
                PathCheck::Open => open = true,
                unknown => {
                    first_unknown.get_or_insert(unknown);
                }
            }
        }
        return if open {
            PathCheck::Open
        } else {
            first_unknown.unwrap_or(PathCheck::Open)
        };
    }
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        return match properties.get(*segment) {
            Some(child) => walk(child, rest, &here),
            None if node.get("additionalProperties") == Some(&Value::Bool(false)) => {
                let of = node["title"]
                    .as_str()
                    .map_or_else(|| format!("`{walked}`"), |t| format!("`{t}`"));
                PathCheck::Unknown(format!("`{segment}` is not a field of {of}"))
            }
            None => PathCheck::Open,
        };
    }
    let kind = node.get("type");
    let is_array = kind == Some(&json!("array"));
    if is_array {
        let Ok(index) = segment.parse::<usize>() else {
            return PathCheck::Unknown(format!(
                "`{walked}` is a list: its items are reached by index (`{walked}.0`)"
            ));
        };
        let tuple = node.get("prefixItems").and_then(Value::as_array);
        return match (tuple.and_then(|t| t.get(index)), node.get("items")) {
            (Some(item), _) => walk(item, rest, &here),
            (None, Some(Value::Bool(false))) => {
                PathCheck::Unknown(format!("`{walked}` has no item {index}"))
            }
            (None, Some(items)) if items.is_object() => walk(items, rest, &here),
            _ => PathCheck::Open,
        };
    }
    let scalar = match kind.and_then(Value::as_str) {
        Some(t @ ("string" | "integer" | "number" | "boolean" | "null")) => Some(t),
        _ if node.get("const").is_some() => Some("constant"),
        _ => None,
    };
    match scalar {
        Some(t) if walked.is_empty() => {
            PathCheck::Unknown(format!("the payload is a {t}: it has no `{segment}`"))
        }
        Some(t) => PathCheck::Unknown(format!(
            "`{walked}` is sent as a {t} here, which has no `{segment}`"
        )),
        None => PathCheck::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        serde_json::from_value(json!({
            "name": {"type": "char", "string": "Order Reference", "required": true},
            "state": {"type": "selection", "string": "Status", "selection": [["draft", "Quotation"], ["sale", "Sales Order"]]},
            "partner_id": {"type": "many2one", "string": "Customer", "relation": "res.partner", "required": true},
            "order_line": {"type": "one2many", "string": "Order Lines", "relation": "sale.order.line"},
            "amount_total": {"type": "monetary", "string": "Total", "readonly": true},
            "validity_date": {"type": "date", "string": "Expiration"},
            "note": {"type": "html", "string": "Terms", "help": "Shown on the quotation"},
        }))
        .unwrap()
    }

    #[test]
    fn odoo_types_become_json_schema_with_odoo_false_for_empty() {
        let schema = payload_schema("sale.order", &fields(), true);
        let p = &schema["properties"];
        assert_eq!(p["name"]["type"], "string", "required: never false");
        assert_eq!(p["name"]["title"], "Order Reference");
        assert_eq!(p["state"]["anyOf"][0]["enum"], json!(["draft", "sale"]));
        assert_eq!(p["state"]["anyOf"][1], json!({"const": false}));
        assert_eq!(p["partner_id"]["x-odoo-relation"], "res.partner");
        assert_eq!(p["partner_id"]["anyOf"][0]["type"], "integer");
        assert_eq!(p["order_line"]["items"]["type"], "integer");
        assert_eq!(p["amount_total"]["type"], "number");
        assert_eq!(p["amount_total"]["readOnly"], true);
        assert_eq!(p["note"]["description"], "Shown on the quotation");
        assert_eq!(p["_model"]["const"], "sale.order");
        assert_eq!(schema["additionalProperties"], false);
        assert!(
            payload_schema("sale.order", &fields(), false)["properties"]
                .get("_action")
                .is_none()
        );
    }

    #[test]
    fn enrichment_adds_the_related_records_shape() {
        let mut schema = payload_schema("sale.order", &fields(), false);
        let partner: Fields = serde_json::from_value(json!({
            "zip": {"type": "char", "string": "Zip"},
            "country_id": {"type": "many2one", "string": "Country", "relation": "res.country"},
        }))
        .unwrap();
        let spec = EnrichSpec {
            field: "partner_id".into(),
            model: None,
            fields: vec!["zip".into(), "country_id".into()],
        };
        apply_enrich(
            &mut schema,
            &spec,
            "res.partner",
            Some(&partner),
            EnrichedBy::Source,
        );
        let enriched = &schema["properties"]["partner_id"];
        assert_eq!(enriched["x-enrich"]["model"], "res.partner");
        assert_eq!(enriched["title"], "Customer");
        let record = &enriched["anyOf"][1]["anyOf"][0];
        assert_eq!(record["properties"]["zip"]["title"], "Zip");
        assert_eq!(check_path(&schema, "partner_id.zip"), PathCheck::Known);
        assert_eq!(
            check_path(&schema, "partner_id.country_id.0"),
            PathCheck::Known
        );
        assert!(matches!(
            check_path(&schema, "partner_id.email"),
            PathCheck::Unknown(_)
        ));
        let lines = EnrichSpec {
            field: "order_line".into(),
            model: Some("sale.order.line".into()),
            fields: vec![],
        };
        apply_enrich(
            &mut schema,
            &lines,
            "sale.order.line",
            None,
            EnrichedBy::AppAllowance,
        );
        assert_eq!(check_path(&schema, "order_line.0.1"), PathCheck::Known);
    }

    #[test]
    fn paths_name_fields_the_schema_has() {
        let schema = payload_schema("sale.order", &fields(), true);
        assert_eq!(check_path(&schema, "state"), PathCheck::Known);
        assert_eq!(check_path(&schema, "_action"), PathCheck::Known);
        assert_eq!(check_path(&schema, "partner_id.0"), PathCheck::Known);
        let PathCheck::Unknown(why) = check_path(&schema, "colour") else {
            panic!("unknown field");
        };
        assert_eq!(why, "`colour` is not a field of `sale.order`");
        let PathCheck::Unknown(why) = check_path(&schema, "partner_id.zip") else {
            panic!("a bare id has no fields");
        };
        assert!(why.contains("partner_id"), "{why}");
        assert!(matches!(
            check_path(&schema, "amount_total.x"),
            PathCheck::Unknown(_)
        ));
        assert_eq!(check_path(&json!({}), "anything.at.all"), PathCheck::Open);
    }
}
