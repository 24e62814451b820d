//! `shipper-router`: splits a confirmed sale order into one JSON delivery
//! per shipper. Each delivery is the order as received, with `order_line`
//! narrowed to the product lines that shipper handles ([`rules`] says which).
//! Note and section lines are dropped. See README.md for the configuration.

pub mod rules;

use std::collections::BTreeMap;

use odoo_gateway_plugin_sdk::{
    Config, Delivery, Event, Plugin, PluginError, Record, X2many, debug,
};
use serde_json::Value;

pub use rules::Rules;

/// The model this plugin routes.
const MODEL: &str = "sale.order";
const LINES: &str = "order_line";

/// The plugin.
#[derive(Debug)]
pub struct ShipperRouter;

/// Splits `order` by shipper: one delivery per destination, in destination
/// name order, each holding every order field and only that destination's
/// product lines (in their original order).
pub fn route(order: &Value, rules: &Rules) -> Result<Vec<Delivery>, PluginError> {
    let record = Record::new(order)?;
    let lines = match record.x2many(LINES) {
        Some(X2many::Records(lines)) => lines,
        Some(X2many::Ids(ids)) if ids.is_empty() => return Ok(Vec::new()),
        Some(X2many::Ids(ids)) => {
            return Err(PluginError::Reject(format!(
                "`{LINES}` holds only ids {ids:?}: shipper-router needs the line records \
                 embedded in the payload (a richer Odoo payload or an enrichment step)"
            )));
        }
        None => {
            return Err(PluginError::Reject(format!(
                "the order has no `{LINES}` list of line records"
            )));
        }
    };

    let mut by_destination: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut unmatched = Vec::new();
    for line in &lines {
        if line.get("display_type").is_some() {
            continue; // a section or note line: nothing to ship
        }
        match rules.destination_for(line) {
            Some(destination) => by_destination
                .entry(destination)
                .or_default()
                .push(Value::Object(line.fields().clone())),
            None => unmatched.push(describe(line)),
        }
    }
    if !unmatched.is_empty() {
        return Err(PluginError::Reject(format!(
            "no shipper for {}: add a `product.*` or `route.*` rule or set `default_destination`",
            unmatched.join(", ")
        )));
    }

    Ok(by_destination
        .into_iter()
        .map(|(destination, lines)| {
            let mut part = record.fields().clone();
            part.insert(LINES.to_owned(), Value::Array(lines));
            Delivery::json(destination, &Value::Object(part))
        })
        .collect())
}

/// "line 31 ([FURN_8888] Office Lamp)", for error messages.
fn describe(line: &Record<'_>) -> String {
    let id = line
        .id()
        .map_or_else(|| "?".to_owned(), |id| id.to_string());
    let product = line
        .many2one("product_id")
        .and_then(|p| p.name)
        .or_else(|| line.str("name").map(str::to_owned))
        .unwrap_or_else(|| "no product".to_owned());
    format!("line {id} ({product})")
}

impl Plugin for ShipperRouter {
    fn handle(event: Event, config: &Config) -> Result<Vec<Delivery>, PluginError> {
        let rules = Rules::from_config(config)?;
        if event.model != MODEL {
            debug!("event {} is not a {MODEL}: nothing to route", event.id);
            return Ok(Vec::new());
        }
        route(&event.payload_json()?, &rules)
    }

    fn validate_config(config: &Config) -> Result<(), String> {
        Rules::from_config(config)?;
        Ok(())
    }
}

odoo_gateway_plugin_sdk::export_plugin!(ShipperRouter);

#[cfg(test)]
mod tests;
