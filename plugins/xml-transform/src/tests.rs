//! Host tests: exact output for a native webhook, and for every fixture in
//! tests/fixtures/odoo a parse back (quick-xml, through the SDK's reader) that must
//! give the payload's data.

use super::*;
use odoo_gateway_plugin_sdk::xml;

fn fixture(path: &str) -> String {
    odoo_gateway_fixtures::read_str(&format!("odoo/{path}"))
}

fn event(model: &str, payload: String, record_id: Option<i64>) -> Event {
    Event {
        id: "evt-1".into(),
        source: "odoo-main".into(),
        record_id,
        ..Event::new(model, "confirmed", payload)
    }
}

fn run(event: Event, config: &[(&str, &str)]) -> Result<Vec<Delivery>, PluginError> {
    XmlTransform::handle(event, &Config::from_pairs(config.iter().copied()))
}

fn body(delivery: &Delivery) -> &str {
    std::str::from_utf8(&delivery.body).unwrap()
}

#[test]
fn native_order_exact_output() {
    let event = event(
        "sale.order",
        fixture("native/sale.order.confirmed.json"),
        Some(12),
    );
    let deliveries = run(event, &[]).unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].destination, "");
    assert_eq!(deliveries[0].content_type, "application/xml");
    assert_eq!(
        body(&deliveries[0]),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <sale_order event_id=\"evt-1\" source=\"odoo-main\" model=\"sale.order\" \
         action=\"confirmed\" record_id=\"12\">\
         <_action>SO confirmed(#57)</_action><_id>12</_id><_model>sale.order</_model>\
         <amount_total>1150.0</amount_total><commitment_date/>\
         <date_order>2024-05-14 09:12:33</date_order><id>12</id><name>S00012</name>\
         <order_line><item>31</item><item>32</item></order_line><partner_id>9</partner_id>\
         <state>sale</state></sale_order>"
    );
}

#[test]
fn rich_order_selected_fields() {
    let event = event(
        "sale.order",
        fixture("rich/sale.order.confirmed.json"),
        None,
    );
    let config = [
        ("root", "order"),
        ("fields", "name, partner_id, order_line, missing"),
    ];
    let deliveries = run(event, &config).unwrap();
    let text = body(&deliveries[0]);
    assert!(text.contains("<order event_id=\"evt-1\" source=\"odoo-main\" model=\"sale.order\" action=\"confirmed\"><name>S00012</name>"), "{text}");
    assert!(
        text.contains("<partner_id id=\"9\">Deco Addict</partner_id>"),
        "{text}"
    );
    assert!(
        text.contains("<product_id id=\"27\">[FURN_8888] Office Lamp</product_id>"),
        "{text}"
    );
    assert!(
        text.contains("<display_type>line_note</display_type>"),
        "{text}"
    );
    assert!(
        !text.contains("missing") && !text.contains("amount_total"),
        "{text}"
    );

    let doc = xml::parse(&deliveries[0].body).unwrap();
    let payload: Value = serde_json::from_str(&fixture("rich/sale.order.confirmed.json")).unwrap();
    let expected: Map<String, Value> = ["name", "partner_id", "order_line"]
        .iter()
        .map(|f| (f.to_string(), xml::untyped(&payload[*f])))
        .collect();
    assert_eq!(doc.content, Value::Object(expected));
}

#[test]
fn non_ascii_is_written_as_utf8() {
    let event = event(
        "res.partner",
        fixture("native/res.partner.saved.json"),
        Some(9),
    );
    let deliveries = run(event, &[("fields", "name,vat")]).unwrap();
    assert_eq!(
        body(&deliveries[0]),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><res_partner event_id=\"evt-1\" \
         source=\"odoo-main\" model=\"res.partner\" action=\"confirmed\" record_id=\"9\">\
         <name>Déco Addict – München</name><vat/></res_partner>"
    );
}

/// (model, payload) for every fixture: native bodies as sent, the single
/// record of each `read()` answer, the rich order.
fn all_fixtures() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in ["native", "read", "rich"] {
        for (name, bytes) in odoo_gateway_fixtures::read_dir(&format!("odoo/{dir}")) {
            if !name.ends_with(".json") {
                continue;
            }
            let value: Value = serde_json::from_slice(&bytes).unwrap();
            let record = match value {
                Value::Array(mut records) => records.remove(0),
                record => record,
            };
            let model = match record.get("_model").and_then(Value::as_str) {
                Some(model) => model.to_owned(),
                // read/sale.order.json → sale.order
                None => name.trim_end_matches(".json").to_owned(),
            };
            out.push((model, record.to_string()));
        }
    }
    assert!(out.len() >= 14, "fixtures not found: {out:?}");
    out
}

#[test]
fn every_fixture_parses_back_to_its_data() {
    for (model, payload) in all_fixtures() {
        let original: Value = serde_json::from_str(&payload).unwrap();
        let deliveries = run(event(&model, payload, Some(7)), &[]).unwrap();
        let doc = xml::parse(&deliveries[0].body)
            .unwrap_or_else(|e| panic!("{model}: {e}\n{}", body(&deliveries[0])));
        assert_eq!(doc.root, model.replace('.', "_"));
        let attributes = [
            ("event_id", "evt-1"),
            ("source", "odoo-main"),
            ("model", model.as_str()),
            ("action", "confirmed"),
            ("record_id", "7"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(doc.attributes, attributes.to_vec(), "{model}");
        assert_eq!(doc.content, xml::untyped(&original), "{model}");
    }
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
    assert_eq!(XmlTransform::validate_config(&config), Ok(()));
    let event = event(
        "sale.order",
        fixture("rich/sale.order.confirmed.json"),
        Some(12),
    );
    let deliveries = XmlTransform::handle(event, &config).unwrap();
    let text = body(&deliveries[0]);
    assert!(
        text.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><order event_id=\"evt-1\" \
             source=\"odoo-main\" model=\"sale.order\" action=\"confirmed\" record_id=\"12\">\
             <amount_total>1184.5</amount_total><commitment_date/><name>S00012</name><order_line>"
        ),
        "{text}"
    );
    assert!(text.ends_with("</order_line><partner_id id=\"9\">Deco Addict</partner_id></order>"));
}

#[test]
fn configuration_is_validated() {
    let validate = |pairs: &[(&str, &str)]| {
        XmlTransform::validate_config(&Config::from_pairs(pairs.iter().copied()))
    };
    assert_eq!(validate(&[]), Ok(()));
    assert_eq!(
        validate(&[("root", "order"), ("fields", "id,name")]),
        Ok(())
    );
    let bad_root = validate(&[("root", "1order")]).unwrap_err();
    assert!(bad_root.contains("`root`"), "{bad_root}");
    let bad_field = validate(&[("fields", "id, bad field")]).unwrap_err();
    assert!(
        bad_field.contains("`fields`") && bad_field.contains("`bad field`"),
        "{bad_field}"
    );
    let result = run(event("sale.order", "{}".into(), None), &[("root", "a b")]);
    assert!(
        matches!(result, Err(PluginError::InvalidConfig(_))),
        "{result:?}"
    );
}

#[test]
fn unusable_payloads_are_rejected() {
    let not_object = run(event("sale.order", "[1, 2]".into(), None), &[]);
    assert!(
        matches!(not_object, Err(PluginError::Reject(_))),
        "{not_object:?}"
    );
    let bad_key = run(event("sale.order", r#"{"a b": 1}"#.into(), None), &[]);
    match bad_key {
        Err(PluginError::Reject(reason)) => assert!(reason.contains("`a b`"), "{reason}"),
        other => panic!("expected reject, got {other:?}"),
    }
}
