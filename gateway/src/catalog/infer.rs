//! A payload's shape, learnt from the payloads seen: which JSON types appear where, which
//! keys objects have and how often. Merging two shapes is the shape of both sets of
//! payloads, so instances and restarts add up. Bounded: a few levels deep and a few hundred
//! places in all, whatever a source sends.
//!
//! Only types and key names are kept, never a value: a shape holds no customer data. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::schema::DIALECT;

/// Deepest nesting learnt (the payload is level 0).
const MAX_DEPTH: usize = 4;
/// Most places (keys and list items, at every level) one shape holds.
const MAX_PLACES: usize = 400;

/// The shape of the values seen at one place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// JSON types seen: `null`, `boolean`, `integer`, `number`, `string`, `array`, `object`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub types: BTreeSet<String>,
    /// How many objects were seen here.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub objects: u64,
    /// Their keys: how many of those objects had each, and its shape.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, Key>,
    /// The items of the lists seen here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<Shape>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A key of the objects seen at one place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// Objects that had it.
    pub seen: u64,
    /// Its values' shape.
    pub shape: Shape,
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Shape {
    /// The shape of one payload.
    pub fn of(value: &Value) -> Self {
        let mut shape = Self::default();
        let mut budget = MAX_PLACES;
        shape.learn(value, 0, &mut budget);
        shape
    }

    fn learn(&mut self, value: &Value, depth: usize, budget: &mut usize) {
        self.types.insert(kind(value).to_owned());
        if depth >= MAX_DEPTH {
            return;
        }
        match value {
            Value::Object(map) => {
                self.objects += 1;
                for (k, v) in map {
                    if !self.keys.contains_key(k) {
                        if *budget == 0 {
                            continue;
                        }
                        *budget -= 1;
                    }
                    let key = self.keys.entry(k.clone()).or_default();
                    key.seen += 1;
                    key.shape.learn(v, depth + 1, budget);
                }
            }
            Value::Array(items) => {
                if self.items.is_none() {
                    if *budget == 0 {
                        return;
                    }
                    *budget -= 1;
                }
                let shape = self.items.get_or_insert_with(Box::default);
                for item in items {
                    shape.learn(item, depth + 1, budget);
                }
            }
            _ => {}
        }
    }

    /// Adds what `other` saw.
    pub fn merge(&mut self, other: &Shape) {
        let mut budget = MAX_PLACES.saturating_sub(self.places());
        self.merge_within(other, &mut budget);
    }

    fn merge_within(&mut self, other: &Shape, budget: &mut usize) {
        self.types.extend(other.types.iter().cloned());
        self.objects += other.objects;
        for (k, theirs) in &other.keys {
            if !self.keys.contains_key(k) {
                if *budget == 0 {
                    continue;
                }
                *budget -= 1;
            }
            let mine = self.keys.entry(k.clone()).or_default();
            mine.seen += theirs.seen;
            mine.shape.merge_within(&theirs.shape, budget);
        }
        if let Some(theirs) = &other.items {
            if self.items.is_none() {
                if *budget == 0 {
                    return;
                }
                *budget -= 1;
            }
            self.items
                .get_or_insert_with(Box::default)
                .merge_within(theirs, budget);
        }
    }

    /// Places (keys and list items) held, at every level.
    fn places(&self) -> usize {
        self.keys
            .values()
            .map(|k| 1 + k.shape.places())
            .chain(self.items.iter().map(|i| 1 + i.places()))
            .sum()
    }

    /// The shape as a JSON Schema: each key's types, `required` for the keys every object
    /// had.
    pub fn schema(&self) -> Value {
        let mut schema = self.node_schema();
        if let Some(object) = schema.as_object_mut() {
            object.insert("$schema".into(), json!(DIALECT));
        }
        schema
    }

    fn node_schema(&self) -> Value {
        let mut out = Map::new();
        let types: Vec<&String> = self.types.iter().collect();
        match types.as_slice() {
            [] => {}
            [one] => {
                out.insert("type".into(), json!(one));
            }
            many => {
                out.insert("type".into(), json!(many));
            }
        }
        if self.types.contains("object") {
            let properties: Map<String, Value> = self
                .keys
                .iter()
                .map(|(k, key)| (k.clone(), key.shape.node_schema()))
                .collect();
            let required: Vec<&String> = self
                .keys
                .iter()
                .filter(|(_, key)| key.seen == self.objects)
                .map(|(k, _)| k)
                .collect();
            out.insert("properties".into(), Value::Object(properties));
            if !required.is_empty() {
                out.insert("required".into(), json!(required));
            }
        }
        if let Some(items) = &self.items {
            out.insert("items".into(), items.node_schema());
        }
        Value::Object(out)
    }

    /// A made-up payload of this shape (placeholders, not values seen).
    pub fn example(&self) -> Value {
        let preferred = ["object", "array", "string", "number", "integer", "boolean"];
        let kind = preferred
            .iter()
            .find(|k| self.types.contains(**k))
            .copied()
            .unwrap_or("null");
        match kind {
            "object" => Value::Object(
                self.keys
                    .iter()
                    .map(|(k, key)| (k.clone(), key.shape.example()))
                    .collect(),
            ),
            "array" => Value::Array(self.items.iter().map(|i| i.example()).collect()),
            "string" => json!("text"),
            "number" => json!(1.5),
            "integer" => json!(1),
            "boolean" => json!(false),
            _ => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_learn_types_and_which_keys_are_always_there() {
        let mut shape = Shape::of(&json!({"id": 1, "name": "A", "partner": [9, "Deco"]}));
        shape.merge(&Shape::of(
            &json!({"id": 2, "name": false, "total": 1.5, "partner": [9, "Deco"]}),
        ));
        let schema = shape.schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], json!(["id", "name", "partner"]));
        assert_eq!(
            schema["properties"]["name"]["type"],
            json!(["boolean", "string"])
        );
        assert_eq!(schema["properties"]["total"]["type"], "number");
        assert_eq!(
            schema["properties"]["partner"]["items"]["type"],
            json!(["integer", "string"])
        );
        let example = shape.example();
        assert_eq!(example["name"], "text", "a placeholder, not a value seen");
        assert_eq!(example["id"], 1);
        // Stored and read back, it is the same shape.
        let stored = serde_json::to_string(&shape).unwrap();
        assert_eq!(serde_json::from_str::<Shape>(&stored).unwrap(), shape);
    }

    #[test]
    fn shapes_stay_bounded_whatever_comes() {
        let mut wide = Map::new();
        for i in 0..2000 {
            wide.insert(format!("k{i}"), json!(i));
        }
        let shape = Shape::of(&Value::Object(wide));
        assert_eq!(shape.keys.len(), MAX_PLACES);
        let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}});
        let shape = Shape::of(&deep);
        let mut node = &shape;
        let mut depth = 0;
        while let Some((_, key)) = node.keys.iter().next() {
            node = &key.shape;
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
        let mut merged = Shape::of(&json!({"x": 1}));
        for i in 0..1000 {
            merged.merge(&Shape::of(&json!({ format!("m{i}"): [1] })));
        }
        assert!(merged.places() <= MAX_PLACES);
    }
}
