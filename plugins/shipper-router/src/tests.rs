//! Host tests on the rich sale order fixture (two product lines on two
//! routes, one note line) with exact expected deliveries.

use super::*;
use serde_json::json;

use odoo_gateway_fixtures::{NATIVE_ORDER, RICH_ORDER};

fn run(payload: &str, config: &[(&str, &str)]) -> Result<Vec<Delivery>, PluginError> {
    let config = Config::from_pairs(config.iter().copied());
    ShipperRouter::handle(Event::new("sale.order", "confirmed", payload), &config)
}

/// The rich order with `order_line` narrowed to the lines with these ids.
fn order_with_lines(ids: &[i64]) -> Value {
    let mut order: Value = serde_json::from_str(RICH_ORDER).unwrap();
    let lines: Vec<Value> = order["order_line"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|line| ids.contains(&line["id"].as_i64().unwrap()))
        .cloned()
        .collect();
    assert_eq!(lines.len(), ids.len());
    order["order_line"] = Value::Array(lines);
    order
}

fn summary(deliveries: &[Delivery]) -> Vec<(String, Vec<i64>)> {
    deliveries
        .iter()
        .map(|d| {
            let body: Value = serde_json::from_slice(&d.body).unwrap();
            let ids = body["order_line"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_i64().unwrap())
                .collect();
            (d.destination.clone(), ids)
        })
        .collect()
}

#[test]
fn routes_by_route_name_and_id() {
    let config = [
        ("route.Ship: FastFreight", "fastfreight"),
        ("route.6", "parcelpost"),
    ];
    let deliveries = run(RICH_ORDER, &config).unwrap();
    assert_eq!(
        deliveries,
        vec![
            Delivery::json("fastfreight", &order_with_lines(&[31])),
            Delivery::json("parcelpost", &order_with_lines(&[32])),
        ]
    );
    // Header fields are kept as received; the note line is gone.
    let body = std::str::from_utf8(&deliveries[0].body).unwrap();
    assert!(body.contains(r#""amount_total":1184.5"#), "{body}");
    assert!(body.contains(r#""partner_id":[9,"Deco Addict"]"#), "{body}");
    assert!(body.contains(r#""name":"S00012""#), "{body}");
    assert!(!body.contains("loading dock"), "{body}");
    assert_eq!(deliveries[0].content_type, "application/json");
}

#[test]
fn product_rules_beat_route_rules() {
    let config = [
        ("route.5", "fastfreight"),
        ("route.6", "parcelpost"),
        ("product.FURN_8888", "parcelpost"),
    ];
    let deliveries = run(RICH_ORDER, &config).unwrap();
    assert_eq!(
        summary(&deliveries),
        vec![("parcelpost".into(), vec![31, 32])]
    );
    assert_eq!(
        deliveries[0],
        Delivery::json("parcelpost", &order_with_lines(&[31, 32]))
    );
}

#[test]
fn product_id_rules_and_default_destination() {
    let config = [
        ("product.28", "special"),
        ("default_destination", "warehouse"),
    ];
    let deliveries = run(RICH_ORDER, &config).unwrap();
    // Sorted by destination name, whatever the line order.
    assert_eq!(
        summary(&deliveries),
        vec![("special".into(), vec![32]), ("warehouse".into(), vec![31])]
    );
    let config = [
        ("product.28", "a-first"),
        ("default_destination", "warehouse"),
    ];
    let deliveries = run(RICH_ORDER, &config).unwrap();
    assert_eq!(
        summary(&deliveries),
        vec![("a-first".into(), vec![32]), ("warehouse".into(), vec![31])]
    );
}

#[test]
fn unmatched_lines_are_rejected_by_name() {
    let result = run(RICH_ORDER, &[("route.5", "fastfreight")]);
    assert_eq!(
        result,
        Err(PluginError::Reject(
            "no shipper for line 32 ([E-COM11] Cabinet with Doors): add a `product.*` or \
             `route.*` rule or set `default_destination`"
                .into()
        ))
    );
}

#[test]
fn bare_line_ids_are_rejected() {
    let result = run(NATIVE_ORDER, &[("default_destination", "warehouse")]);
    match result {
        Err(PluginError::Reject(reason)) => {
            assert!(
                reason.contains("[31, 32]") && reason.contains("embedded"),
                "{reason}"
            )
        }
        other => panic!("expected reject, got {other:?}"),
    }
    let no_lines = run(r#"{"id": 1}"#, &[("default_destination", "w")]);
    assert!(
        matches!(no_lines, Err(PluginError::Reject(_))),
        "{no_lines:?}"
    );
}

#[test]
fn nothing_to_ship_gives_no_delivery() {
    let config = [("default_destination", "warehouse")];
    let notes_only = json!({"id": 1, "order_line": [{"id": 5, "display_type": "line_section",
                                                     "name": "Section", "product_id": false}]});
    assert_eq!(run(&notes_only.to_string(), &config), Ok(vec![]));
    assert_eq!(run(r#"{"id": 1, "order_line": []}"#, &config), Ok(vec![]));
    let invoice = Event::new("account.move", "posted", r#"{"id": 41}"#);
    let result = ShipperRouter::handle(invoice, &Config::from_pairs(config));
    assert_eq!(result, Ok(vec![]));
}

/// The README's sample configuration, as the gateway would pass it.
fn sample_config() -> Config {
    let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sample-config.toml"));
    let pairs: std::collections::BTreeMap<String, String> = toml::from_str(text).unwrap();
    Config::from_pairs(pairs)
}

#[test]
fn sample_config_gives_the_readme_example() {
    let config = sample_config();
    assert_eq!(ShipperRouter::validate_config(&config), Ok(()));
    let event = Event::new("sale.order", "confirmed", RICH_ORDER);
    let deliveries = ShipperRouter::handle(event, &config).unwrap();
    assert_eq!(
        summary(&deliveries),
        vec![
            ("fragile-goods".into(), vec![31]),
            ("parcelpost".into(), vec![32])
        ]
    );
}

#[test]
fn configuration_is_validated() {
    let validate = |pairs: &[(&str, &str)]| {
        ShipperRouter::validate_config(&Config::from_pairs(pairs.iter().copied()))
    };
    assert_eq!(
        validate(&[("route.5", "fast"), ("product.FURN_8888", "slow")]),
        Ok(())
    );
    assert_eq!(validate(&[("default_destination", "warehouse")]), Ok(()));
    let nothing = validate(&[]).unwrap_err();
    assert!(nothing.contains("default_destination"), "{nothing}");
    let typo = validate(&[("routes.5", "fast")]).unwrap_err();
    assert!(
        typo.contains("`routes.5`") && typo.contains("unknown key"),
        "{typo}"
    );
    let empty = validate(&[("route.5", " ")]).unwrap_err();
    assert!(
        empty.contains("`route.5`") && empty.contains("empty"),
        "{empty}"
    );
    let unnamed = validate(&[("product.", "x")]).unwrap_err();
    assert!(unnamed.contains("`product.`"), "{unnamed}");
    let result = run(RICH_ORDER, &[("bogus", "x")]);
    assert!(
        matches!(result, Err(PluginError::InvalidConfig(_))),
        "{result:?}"
    );
}
