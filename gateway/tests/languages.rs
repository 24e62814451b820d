//! Golden tests: `shipper-router` in Rust, Python, JavaScript and C, through the real host, on
//! the same events and configurations. Every language must return the same deliveries byte for
//! byte, and the same typed errors with the same messages (only the JSON parser's own wording
//! of a syntax error differs between languages, so there the code alone is compared).
//!
//! The components are built by `./dev plugins` (`cargo run -p xtask -- build-plugins`); a
//! missing one fails the test. Each is compiled once per run, into a disk cache under `target/`
//! so that the next run loads the Python and JavaScript components without compiling them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use odoo_gateway::event::Event;
use odoo_gateway::plugin::{Delivery, Plugin, PluginConfig, PluginError, PluginHost, PluginLimits};
use odoo_gateway_fixtures::{NATIVE_ORDER, RICH_ORDER};

/// The reference first, then the other languages.
const LANGUAGES: &[(&str, &str)] = &[
    ("Rust", "shipper_router"),
    ("Python", "shipper_router_py"),
    ("JavaScript", "shipper_router_js"),
    ("C", "shipper_router_c"),
];

fn plugins() -> &'static [(&'static str, Plugin)] {
    static PLUGINS: OnceLock<Vec<(&'static str, Plugin)>> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        // Roomy bounds: this test is about what the plugins return, on a busy CI machine.
        let limits = PluginLimits {
            cpu_time: Duration::from_secs(5),
            memory_bytes: 256 << 20,
            max_cpu_time: Duration::from_secs(5),
            ..PluginLimits::default()
        };
        let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target"));
        let host = PluginHost::new(limits, Some(root.join("plugin-test-cache"))).expect("host");
        LANGUAGES
            .iter()
            .map(|(language, name)| {
                let path = root.join("plugins").join(format!("{name}.wasm"));
                let plugin = host.load_file(&path).unwrap_or_else(|e| {
                    panic!("{language}: {e}. Build the plugins first: ./dev plugins")
                });
                (*language, plugin)
            })
            .collect()
    })
}

fn config(pairs: &[(&str, &str)]) -> PluginConfig {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// The sample configuration of the shipper-router README.
fn sample_config() -> PluginConfig {
    config(&[
        ("route.Ship: FastFreight", "fastfreight"),
        ("route.6", "parcelpost"),
        ("product.FURN_8888", "fragile-goods"),
        ("default_destination", "warehouse"),
    ])
}

fn event(model: &str, payload: &str) -> Event {
    Event {
        id: "evt-golden".into(),
        source: "odoo-main".into(),
        model: model.into(),
        action: "confirmed".into(),
        record_id: Some(12),
        received_at_ms: 1_715_677_960_000,
        seq: 0,
        payload: payload.into(),
        headers: Vec::new(),
    }
}

/// What a call gave, comparable across languages.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Deliveries(Vec<Delivery>),
    Error { code: &'static str, message: String },
}

fn outcome(result: Result<Vec<Delivery>, PluginError>, compare_message: bool) -> Outcome {
    match result {
        Ok(deliveries) => Outcome::Deliveries(deliveries),
        Err(e) => Outcome::Error {
            code: e.code(),
            message: if compare_message {
                e.to_string()
            } else {
                String::new()
            },
        },
    }
}

/// Runs every language on `event` with `config` and asserts they all agree with Rust; returns
/// Rust's outcome for the case's own assertions.
fn all_agree(event: &Event, config: &PluginConfig, compare_message: bool) -> Outcome {
    let mut outcomes = plugins().iter().map(|(language, plugin)| {
        let result = plugin.handle(event, config).map(|out| out.deliveries);
        (*language, outcome(result, compare_message))
    });
    let (_, reference) = outcomes.next().expect("Rust first");
    for (language, got) in outcomes {
        assert_eq!(got, reference, "{language} differs from Rust");
    }
    reference
}

fn bodies(outcome: &Outcome) -> Vec<(String, String)> {
    match outcome {
        Outcome::Deliveries(d) => d
            .iter()
            .map(|d| {
                (
                    d.destination.clone(),
                    String::from_utf8_lossy(&d.body).into_owned(),
                )
            })
            .collect(),
        Outcome::Error { code, message } => panic!("expected deliveries, got [{code}] {message}"),
    }
}

#[test]
fn the_rich_order_splits_the_same_way_in_every_language() {
    let reference = all_agree(&event("sale.order", RICH_ORDER), &sample_config(), true);
    let bodies = bodies(&reference);
    let destinations: Vec<_> = bodies.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(destinations, ["fragile-goods", "parcelpost"]);
    assert!(
        bodies[0].1.contains(r#""order_line":[{"#),
        "{}",
        bodies[0].1
    );
    assert!(
        bodies[1].1.contains(r#""product_uom_qty":5.0"#),
        "{}",
        bodies[1].1
    );
}

#[test]
fn strings_numbers_and_nesting_survive_byte_for_byte() {
    let payload = r#"{"name": "D\u00e9co \"Addict\" \u2013 M\u00fcnchen\n\ttab \u0001 \ud83d\ude9a",
        "amount_total": 1184.5, "amount_tax": 0.0, "big": 9007199254740993, "neg": -12,
        "exp": 1.5e-7, "nested": {"z": [1, 2.5, {"b": null, "a": true}], "a": {}},
        "order_line": [
          {"id": 1, "product_id": [27, "[FURN_8888] Office Lamp"], "display_type": false, "x": []},
          {"id": 2, "product_id": 28, "route_id": [6, false], "qty": 3.0},
          {"id": 3, "display_type": "line_note", "name": "a note"},
          {"id": 4, "product_id": [29, "[X] Ünïcödé"], "default_code": "MUG", "route_id": [5, "Ship: FastFreight"]}
        ]}"#;
    let reference = all_agree(&event("sale.order", payload), &sample_config(), true);
    let bodies = bodies(&reference);
    let destinations: Vec<_> = bodies.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(destinations, ["fastfreight", "fragile-goods", "parcelpost"]);
    assert!(
        bodies[0]
            .1
            .contains(r#""name":"Déco \"Addict\" – München\n\ttab \u0001 🚚""#),
        "{}",
        bodies[0].1
    );
}

/// Keys sort by code point everywhere (JavaScript orders integer-like keys first and its own
/// sort by UTF-16 units), a `__proto__` key is data like any other, and floats are written as
/// Rust writes them whatever their text (`1e2` is `100.0`).
#[test]
fn keys_sort_alike_in_every_language() {
    let payload = r#"{"\u00e9": 1, "10": 2, "9": 3, "\uff5a": 4, "\ud83d\ude00": 5, "Z": 6, "a": 7,
        "__proto__": {"x": 1.0}, "order_line": [
          {"id": 1, "product_id": [27, "[FURN_8888] Lamp"], "2": [], "10": {"\u00e9": 0.5, "e": 1e2, "f": 1.50, "g": 1E5}}
        ]}"#;
    let reference = all_agree(&event("sale.order", payload), &sample_config(), true);
    let bodies = bodies(&reference);
    assert_eq!(bodies.len(), 1);
    assert!(
        bodies[0].1.starts_with(r#"{"10":2,"9":3,"Z":6,"__proto__":{"x":1.0},"a":7,"order_line":[{"10":{"e":100.0,"f":1.5,"g":100000.0,"é":0.5},"2":[]"#),
        "{}",
        bodies[0].1
    );
    assert!(
        bodies[0].1.ends_with(r#""é":1,"ｚ":4,"😀":5}"#),
        "{}",
        bodies[0].1
    );
}

#[test]
fn rejections_name_the_same_lines_in_every_language() {
    let no_default = config(&[("route.5", "fastfreight")]);
    let reference = all_agree(&event("sale.order", RICH_ORDER), &no_default, true);
    let Outcome::Error { code, message } = reference else {
        panic!("expected a rejection, got {reference:?}");
    };
    assert_eq!(code, "plugin_rejected");
    assert!(
        message.contains("no shipper for line 32 ([E-COM11] Cabinet with Doors)"),
        "{message}"
    );

    let reference = all_agree(&event("sale.order", NATIVE_ORDER), &sample_config(), true);
    assert!(
        matches!(&reference, Outcome::Error { message, .. } if message.contains("holds only ids [31, 32]")),
        "{reference:?}"
    );

    for payload in [
        r#"[1, 2]"#,
        r#"{"order_line": "none"}"#,
        r#"{"order_line": [1, {"id": 2}]}"#,
    ] {
        let reference = all_agree(&event("sale.order", payload), &sample_config(), true);
        assert!(
            matches!(
                reference,
                Outcome::Error {
                    code: "plugin_rejected",
                    ..
                }
            ),
            "{payload}: {reference:?}"
        );
    }
    // Each language words a JSON syntax error its own way: the code is what must agree.
    let reference = all_agree(&event("sale.order", "{not json"), &sample_config(), false);
    assert!(
        matches!(
            reference,
            Outcome::Error {
                code: "plugin_rejected",
                ..
            }
        ),
        "{reference:?}"
    );
}

#[test]
fn nothing_to_route_is_zero_deliveries_everywhere() {
    for (model, payload) in [
        ("res.partner", r#"{"id": 9}"#),
        ("sale.order", r#"{"order_line": []}"#),
        (
            "sale.order",
            r#"{"order_line": [{"id": 3, "display_type": "line_section"}]}"#,
        ),
    ] {
        let reference = all_agree(&event(model, payload), &sample_config(), true);
        assert_eq!(
            reference,
            Outcome::Deliveries(Vec::new()),
            "{model} {payload}"
        );
    }
}

#[test]
fn configuration_errors_are_worded_alike() {
    for pairs in [
        &[("routes.5", "x")][..],
        &[("route.5", "  ")][..],
        &[("route. ", "x")][..],
        &[("product.\"q\"\n", "")][..],
        &[][..],
    ] {
        let config = config(pairs);
        let reference = all_agree(&event("sale.order", RICH_ORDER), &config, true);
        assert!(
            matches!(
                reference,
                Outcome::Error {
                    code: "plugin_invalid_config",
                    ..
                }
            ),
            "{pairs:?}: {reference:?}"
        );
        let mut messages = plugins().iter().map(|(language, plugin)| {
            (
                *language,
                plugin.validate_config(&config).map_err(|e| e.to_string()),
            )
        });
        let (_, reference) = messages.next().unwrap();
        assert!(reference.is_err(), "{pairs:?}");
        for (language, got) in messages {
            assert_eq!(got, reference, "{language}: validate-config of {pairs:?}");
        }
    }
    for (_, plugin) in plugins() {
        plugin.validate_config(&sample_config()).unwrap();
    }
}

#[test]
fn check_tells_each_language_and_every_import_is_provided() {
    let expected = [
        ("shipper_router", "Rust"),
        ("shipper_router_py", "Python 3."),
        ("shipper_router_js", "JavaScript"),
        ("shipper_router_c", "C (wasi-libc)"),
    ];
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/plugins"));
    for (name, language) in expected {
        let wasm = std::fs::read(root.join(format!("{name}.wasm"))).expect("built");
        let inspection = odoo_gateway_plugin_tools::inspect(&wasm).expect("inspect");
        assert!(
            inspection.language.starts_with(language),
            "{name}: {}",
            inspection.language
        );
        for import in &inspection.imports {
            assert!(
                import.starts_with("odoo-gateway:plugin/")
                    || odoo_gateway::plugin::wasi::describe(import).is_some(),
                "{name} imports {import}, which the host does not describe"
            );
        }
        assert!(inspection.exports.iter().any(|e| e == "handle"), "{name}");
    }
}

#[test]
fn componentize_wraps_a_c_core_module_and_refuses_a_component() {
    let core = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/shipper-router-c/build/shipper_router_c.core.wasm"
    ))
    .expect("the C plugin's core module (./dev plugins builds it)");
    let component = odoo_gateway_plugin_tools::componentize(&core, None).expect("componentize");
    let host = PluginHost::new(PluginLimits::default(), None).expect("host");
    let plugin = host.load(&component).expect("a loadable plugin");
    assert_eq!(
        plugin.world(),
        "odoo-gateway:plugin/plugin@0.2.0",
        "the version its imports name"
    );
    let out = plugin
        .handle(&event("sale.order", RICH_ORDER), &sample_config())
        .expect("handle");
    assert_eq!(out.deliveries.len(), 2);
    // The 0.2.0 glue imports `log@0.2.0` and `config@0.2.0`, which world 0.1.0 lacks: refused.
    let err = odoo_gateway_plugin_tools::componentize(
        &core,
        Some(odoo_gateway_plugin_tools::WorldVersion::V0_1),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot build a plugin component"),
        "{err}"
    );
    let err = odoo_gateway_plugin_tools::componentize(&component, None).unwrap_err();
    assert!(
        err.to_string().contains("not a core WebAssembly module"),
        "{err}"
    );
    let empty = b"\0asm\x01\0\0\0";
    let err = odoo_gateway_plugin_tools::componentize(empty, None).unwrap_err();
    assert!(err.to_string().contains("--world"), "{err}");
    let err = odoo_gateway_plugin_tools::componentize(
        empty,
        Some(odoo_gateway_plugin_tools::WorldVersion::V0_2),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot build a plugin component"),
        "{err}"
    );
}

/// The Python and JavaScript plugins' own tests of their logic, without WebAssembly.
#[test]
fn the_python_and_javascript_logic_tests_pass() {
    let plugins = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins"));
    for (dir, program, args) in [
        (
            "shipper-router-py",
            "python3",
            &["-m", "unittest", "-q"][..],
        ),
        ("shipper-router-js", "node", &["--test"][..]),
    ] {
        let out = std::process::Command::new(program)
            .args(args)
            .current_dir(plugins.join(dir))
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{dir}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
