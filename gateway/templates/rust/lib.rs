//! {{name}}: keeps `sale.order` events whose `amount_total` is at least `min_amount_total`.

use odoo_gateway_plugin_sdk::{Config, Delivery, Event, Plugin, PluginError, Record};
use serde_json::json;

pub struct Summary;

impl Plugin for Summary {
    fn handle(event: Event, config: &Config) -> Result<Vec<Delivery>, PluginError> {
        let minimum: f64 = config.parse("min_amount_total")?.unwrap_or(0.0);
        if event.model != "sale.order" {
            return Ok(Vec::new());
        }
        let payload = event.payload_json()?;
        let order = Record::new(&payload)?;
        let total = order.f64("amount_total").unwrap_or(0.0);
        if total < minimum {
            return Ok(Vec::new());
        }
        let summary = json!({"amount_total": total, "id": order.id(), "name": order.str("name")});
        Ok(vec![Delivery::json("", &summary)])
    }

    fn validate_config(config: &Config) -> Result<(), String> {
        config.parse::<f64>("min_amount_total")?;
        Ok(())
    }
}

odoo_gateway_plugin_sdk::export_plugin!(Summary);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_above_the_minimum_is_summarised() {
        let event = Event::new("sale.order", "confirmed", r#"{"id": 12, "name": "S00012", "amount_total": 1184.5}"#);
        let config = Config::from_pairs([("min_amount_total", "100")]);
        let deliveries = Summary::handle(event.clone(), &config).unwrap();
        assert_eq!(deliveries[0].body, br#"{"amount_total":1184.5,"id":12,"name":"S00012"}"#);
        let config = Config::from_pairs([("min_amount_total", "5000")]);
        assert!(Summary::handle(event, &config).unwrap().is_empty());
    }
}
