//! `order-filter`: forwards `sale.order` events whose `amount_total` is at
//! least `min_amount_total` and whose `state` is one of `states`, unchanged,
//! as JSON to the subscription's default destination. Every other event is
//! filtered out (zero deliveries). With `ordering_key_field`, a delivery is
//! ordered by that field's value (for subscriptions with `ordering`). See
//! README.md for the configuration.

use odoo_gateway_plugin_sdk::{
    CONTENT_TYPE_JSON, Config, ConfigError, Delivery, Event, Plugin, PluginError, Record, debug,
};

/// The only model this plugin keeps.
const MODEL: &str = "sale.order";
/// States kept when `states` is not set.
const DEFAULT_STATES: &str = "sale";

/// The plugin.
#[derive(Debug)]
pub struct OrderFilter;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Orders below this total are dropped.
    pub min_amount_total: f64,
    /// Order states that are kept.
    pub states: Vec<String>,
    /// The field whose value orders the deliveries, if set.
    pub ordering_key_field: Option<String>,
}

impl Settings {
    /// Reads and checks `min_amount_total` (required, a finite number) and
    /// `states` (comma list, default `sale`, not empty).
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let min_amount_total: f64 = config.parse_required("min_amount_total")?;
        if !min_amount_total.is_finite() {
            return Err(ConfigError::invalid(
                "min_amount_total",
                config.get_or("min_amount_total", ""),
                "must be a finite number",
            ));
        }
        let states = config.list_or("states", DEFAULT_STATES);
        if states.is_empty() {
            return Err(ConfigError::invalid(
                "states",
                config.get_or("states", ""),
                "must list at least one state, e.g. \"sale\"",
            ));
        }
        let ordering_key_field = config.get("ordering_key_field").map(str::trim);
        if ordering_key_field == Some("") {
            return Err(ConfigError::invalid(
                "ordering_key_field",
                "",
                "must name a field of the order, e.g. \"partner_id\"",
            ));
        }
        Ok(Self {
            min_amount_total,
            states: states.into_iter().map(str::to_owned).collect(),
            ordering_key_field: ordering_key_field.map(str::to_owned),
        })
    }

    /// The ordering key of `order`'s delivery: `<field>:<value>` (a many2one's id, a
    /// number or a text as written; `<field>:` when the order does not set it), or none
    /// without `ordering_key_field` (the event's key then applies).
    pub fn ordering_key(&self, order: &Record<'_>) -> Option<String> {
        let field = self.ordering_key_field.as_deref()?;
        let value = match order.get(field) {
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(value) => match order.many2one(field) {
                Some(m2o) => m2o.id.to_string(),
                None => value.to_string(),
            },
            None => String::new(),
        };
        Some(format!("{field}:{value}"))
    }

    /// Whether the order passes the filter; an order without a numeric
    /// `amount_total` or a `state` does not.
    pub fn keeps(&self, order: &Record<'_>) -> bool {
        let total_ok = order
            .f64("amount_total")
            .is_some_and(|total| total >= self.min_amount_total);
        let state_ok = order
            .str("state")
            .is_some_and(|state| self.states.iter().any(|s| s == state));
        total_ok && state_ok
    }
}

impl Plugin for OrderFilter {
    fn handle(event: Event, config: &Config) -> Result<Vec<Delivery>, PluginError> {
        let settings = Settings::from_config(config)?;
        if event.model != MODEL {
            return Ok(Vec::new());
        }
        let payload = event.payload_json()?;
        let order = Record::new(&payload)?;
        if !settings.keeps(&order) {
            debug!("event {} filtered out", event.id);
            return Ok(Vec::new());
        }
        let key = settings.ordering_key(&order);
        // The original text, byte for byte: receivers see what Odoo sent.
        let delivery = Delivery::new("", CONTENT_TYPE_JSON, event.payload.clone());
        Ok(vec![match key {
            Some(key) => delivery.with_ordering_key(key),
            None => delivery,
        }])
    }

    fn validate_config(config: &Config) -> Result<(), String> {
        Settings::from_config(config)?;
        Ok(())
    }
}

odoo_gateway_plugin_sdk::export_plugin!(OrderFilter);

#[cfg(test)]
mod tests {
    use super::*;

    use odoo_gateway_fixtures::{NATIVE_INVOICE as INVOICE, NATIVE_ORDER, RICH_ORDER};

    fn run(
        model: &str,
        payload: &str,
        config: &[(&str, &str)],
    ) -> Result<Vec<Delivery>, PluginError> {
        let config = Config::from_pairs(config.iter().copied());
        OrderFilter::handle(Event::new(model, "confirmed", payload), &config)
    }

    #[test]
    fn keeps_large_confirmed_orders_unchanged() {
        for payload in [NATIVE_ORDER, RICH_ORDER] {
            let deliveries = run("sale.order", payload, &[("min_amount_total", "1000")]).unwrap();
            assert_eq!(
                deliveries,
                vec![Delivery::new("", "application/json", payload)]
            );
        }
        // The bound is inclusive: the native order totals exactly 1150.
        let kept = run("sale.order", NATIVE_ORDER, &[("min_amount_total", "1150")]).unwrap();
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn drops_small_orders_other_states_and_other_models() {
        let small = run(
            "sale.order",
            NATIVE_ORDER,
            &[("min_amount_total", "1150.01")],
        );
        assert_eq!(small, Ok(vec![]));
        let drafts_only = [("min_amount_total", "0"), ("states", "draft, sent")];
        assert_eq!(run("sale.order", RICH_ORDER, &drafts_only), Ok(vec![]));
        let invoice = run("account.move", INVOICE, &[("min_amount_total", "0")]);
        assert_eq!(invoice, Ok(vec![]));
        let no_total = run(
            "sale.order",
            r#"{"id": 1, "state": "sale"}"#,
            &[("min_amount_total", "0")],
        );
        assert_eq!(no_total, Ok(vec![]));
    }

    #[test]
    fn ordering_key_field_orders_by_its_value() {
        let by_partner = [
            ("min_amount_total", "0"),
            ("ordering_key_field", "partner_id"),
        ];
        let keys = |payload: &str| {
            run("sale.order", payload, &by_partner).unwrap()[0]
                .ordering_key
                .clone()
        };
        assert_eq!(keys(NATIVE_ORDER), Some("partner_id:9".into()));
        let pair = r#"{"amount_total": 1, "state": "sale", "partner_id": [7, "Azure"]}"#;
        assert_eq!(keys(pair), Some("partner_id:7".into()));
        let text = r#"{"amount_total": 1, "state": "sale", "partner_id": "ACME"}"#;
        assert_eq!(keys(text), Some("partner_id:ACME".into()));
        let unset = r#"{"amount_total": 1, "state": "sale", "partner_id": false}"#;
        assert_eq!(keys(unset), Some("partner_id:".into()));
        let plain = run("sale.order", NATIVE_ORDER, &[("min_amount_total", "0")]).unwrap();
        assert_eq!(plain[0].ordering_key, None);
        let blank = [("min_amount_total", "0"), ("ordering_key_field", " ")];
        let err = OrderFilter::validate_config(&Config::from_pairs(blank)).unwrap_err();
        assert!(err.contains("`ordering_key_field`"), "{err}");
    }

    #[test]
    fn states_list_is_honoured() {
        let config = [("min_amount_total", "0"), ("states", "draft,sale")];
        assert_eq!(run("sale.order", RICH_ORDER, &config).unwrap().len(), 1);
    }

    #[test]
    fn bad_payload_is_rejected() {
        let result = run("sale.order", "[1, 2", &[("min_amount_total", "0")]);
        assert!(matches!(result, Err(PluginError::Reject(_))), "{result:?}");
    }

    /// The README's sample configuration, as the gateway would pass it.
    fn sample_config() -> Config {
        let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sample-config.toml"));
        let pairs: std::collections::BTreeMap<String, String> = toml::from_str(text).unwrap();
        Config::from_pairs(pairs)
    }

    #[test]
    fn sample_config_keeps_the_native_order() {
        let config = sample_config();
        assert_eq!(OrderFilter::validate_config(&config), Ok(()));
        let event = Event::new("sale.order", "confirmed", NATIVE_ORDER);
        assert_eq!(OrderFilter::handle(event, &config).unwrap().len(), 1);
    }

    #[test]
    fn configuration_is_validated() {
        let validate = |pairs: &[(&str, &str)]| {
            OrderFilter::validate_config(&Config::from_pairs(pairs.iter().copied()))
        };
        assert_eq!(validate(&[("min_amount_total", "500")]), Ok(()));
        assert_eq!(
            validate(&[]),
            Err("config key `min_amount_total` is required but not set".into())
        );
        let not_a_number = validate(&[("min_amount_total", "lots")]).unwrap_err();
        assert!(
            not_a_number.contains("`min_amount_total`"),
            "{not_a_number}"
        );
        let nan = validate(&[("min_amount_total", "NaN")]).unwrap_err();
        assert!(nan.contains("finite"), "{nan}");
        let no_states = validate(&[("min_amount_total", "1"), ("states", " , ")]).unwrap_err();
        assert!(no_states.contains("`states`"), "{no_states}");
        // handle refuses to run with the same configuration.
        let result = run("sale.order", NATIVE_ORDER, &[]);
        assert!(
            matches!(result, Err(PluginError::InvalidConfig(_))),
            "{result:?}"
        );
    }
}
