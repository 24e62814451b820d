//! The example plugins through the real host, on the Odoo fixtures: the key facts of each
//! result. Their exact outputs are tested in the plugins' own crates; here the point is that
//! the built components behave the same under the host's limits and checks.

use std::process::ExitCode;
use std::sync::OnceLock;

use odoo_gateway::cli::plugin::{RunArgs, run};
use odoo_gateway::event::Event;
use odoo_gateway::plugin::Plugin;

use super::config;
use super::guests::{built, shared_host};

use odoo_gateway_fixtures::{NATIVE_ORDER, RICH_ORDER};

fn example(name: &'static str) -> Plugin {
    static PLUGINS: OnceLock<std::sync::Mutex<Vec<(&'static str, Plugin)>>> = OnceLock::new();
    let mut plugins = PLUGINS.get_or_init(Default::default).lock().unwrap();
    if let Some((_, p)) = plugins.iter().find(|(n, _)| *n == name) {
        return p.clone();
    }
    let plugin = shared_host()
        .load(&built(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    plugins.push((name, plugin.clone()));
    plugin
}

fn order_event(payload: &str) -> Event {
    Event {
        id: "evt-1".into(),
        source: "odoo-main".into(),
        model: "sale.order".into(),
        action: "confirmed".into(),
        record_id: Some(12),
        received_at_ms: 1_715_677_960_000,
        seq: 0,
        payload: payload.into(),
        headers: Vec::new(),
    }
}

#[test]
fn order_filter_keeps_big_confirmed_orders_only() {
    let plugin = example("order_filter");
    let keep = config(&[("min_amount_total", "1000")]);
    plugin.validate_config(&keep).unwrap();
    let out = plugin.handle(&order_event(NATIVE_ORDER), &keep).unwrap();
    assert_eq!(out.deliveries.len(), 1);
    let d = &out.deliveries[0];
    assert_eq!(
        (d.destination.as_str(), d.content_type.as_str()),
        ("", "application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
    assert_eq!(body["name"], "S00012");
    assert_eq!(body["amount_total"], 1150.0);

    let too_small = config(&[("min_amount_total", "2000")]);
    assert!(
        plugin
            .handle(&order_event(NATIVE_ORDER), &too_small)
            .unwrap()
            .deliveries
            .is_empty()
    );
    let err = plugin.validate_config(&config(&[])).unwrap_err();
    assert_eq!(err.code(), "plugin_invalid_config");
    assert!(err.to_string().contains("min_amount_total"), "{err}");
}

/// A plugin of world 0.2.0 (the Rust SDK's) may choose its deliveries' ordering key; one of
/// world 0.1.0 (the hostile Python test plugin, built against `wit/plugin.wit`) still loads and
/// runs, its deliveries without a key.
#[test]
fn both_versions_of_the_world_load_and_a_newer_plugin_sets_ordering_keys() {
    let plugin = example("order_filter");
    assert_eq!(plugin.world(), "odoo-gateway:plugin/plugin@0.2.0");
    let by_partner = config(&[
        ("min_amount_total", "0"),
        ("ordering_key_field", "partner_id"),
    ]);
    let out = plugin
        .handle(&order_event(NATIVE_ORDER), &by_partner)
        .unwrap();
    assert_eq!(
        out.deliveries[0].ordering_key.as_deref(),
        Some("partner_id:9")
    );
    let plain = config(&[("min_amount_total", "0")]);
    let out = plugin.handle(&order_event(NATIVE_ORDER), &plain).unwrap();
    assert_eq!(out.deliveries[0].ordering_key, None);

    let older = super::wasi::python();
    assert_eq!(older.world(), "odoo-gateway:plugin/plugin@0.1.0");
    let out = older
        .handle(&order_event(NATIVE_ORDER), &config(&[("mode", "observe")]))
        .unwrap();
    assert_eq!(out.deliveries.len(), 1);
    assert!(out.deliveries.iter().all(|d| d.ordering_key.is_none()));
}

#[test]
fn xml_transform_writes_one_xml_document() {
    let plugin = example("xml_transform");
    let out = plugin
        .handle(&order_event(NATIVE_ORDER), &config(&[]))
        .unwrap();
    assert_eq!(out.deliveries.len(), 1);
    let d = &out.deliveries[0];
    assert_eq!(d.content_type, "application/xml");
    let text = std::str::from_utf8(&d.body).unwrap();
    assert!(text.contains("<sale_order"), "{text}");
    assert!(text.contains(r#"event_id="evt-1""#), "{text}");
    assert!(text.contains("S00012"), "{text}");
    let err = plugin
        .validate_config(&config(&[("root", "not a name")]))
        .unwrap_err();
    assert_eq!(err.code(), "plugin_invalid_config");
}

#[test]
fn shipper_router_splits_the_rich_order_by_route() {
    let plugin = example("shipper_router");
    let routes = config(&[
        ("route.Ship: FastFreight", "fastfreight"),
        ("route.6", "parcelpost"),
    ]);
    plugin.validate_config(&routes).unwrap();
    let out = plugin.handle(&order_event(RICH_ORDER), &routes).unwrap();
    let summary: Vec<(String, Vec<i64>)> = out
        .deliveries
        .iter()
        .map(|d| {
            let body: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
            let lines = body["order_line"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_i64().unwrap());
            (d.destination.clone(), lines.collect())
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("fastfreight".to_string(), vec![31]),
            ("parcelpost".to_string(), vec![32])
        ]
    );
    // The native body carries only line ids: the plugin says it cannot route them.
    let err = plugin
        .handle(&order_event(NATIVE_ORDER), &routes)
        .unwrap_err();
    assert_eq!(err.code(), "plugin_rejected");
}

#[test]
fn cli_run_exits_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("order.json");
    std::fs::write(&event, NATIVE_ORDER).unwrap();
    let wasm = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/plugins/order_filter.wasm"
    ));
    built("order_filter");
    let args = |min: &str| RunArgs {
        wasm: wasm.clone(),
        event: event.clone(),
        config_file: None,
        config: vec![("min_amount_total".into(), min.into())],
        event_type: Some("sale.order.confirmed".into()),
        cpu_time_ms: None,
        memory_mib: None,
        cache_dir: None,
    };
    assert_eq!(run(&args("1000")).unwrap(), ExitCode::SUCCESS);
    assert_eq!(run(&args("lots")).unwrap(), ExitCode::from(2));
    let missing = RunArgs {
        event: dir.path().join("nope.json"),
        ..args("1")
    };
    assert!(run(&missing).is_err());
    assert!(odoo_gateway::cli::plugin::check(&wasm, None).is_ok());
}
