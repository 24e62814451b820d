//! Cost of one plugin call: fresh store + instantiate + call + checking and copying the result.
//!
//! Criterion measures each example plugin on its sample event; then a plain loop of
//! `TABLE_CALLS` calls per plugin prints median, p99 and single-core throughput, which
//! criterion does not report. Plugins not yet built (`cargo run -p xtask -- build-plugins`)
//! are skipped with a notice; the hand-written WAT echo component always runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use odoo_gateway::event::Event;
use odoo_gateway::plugin::{Plugin, PluginConfig, PluginHost, PluginLimits};

const TABLE_CALLS: usize = 5_000;

/// A plugin with the event and configuration it is measured on.
struct Case {
    name: &'static str,
    plugin: Plugin,
    event: Event,
    config: PluginConfig,
}

fn fixture(relative: &str) -> String {
    odoo_gateway_fixtures::read_str(&format!("odoo/{relative}"))
}

fn event(model: &str, action: &str, payload: String) -> Event {
    Event {
        id: "bench-1".into(),
        source: "odoo".into(),
        model: model.into(),
        action: action.into(),
        record_id: Some(42),
        received_at_ms: 1_700_000_000_000,
        seq: 0,
        payload,
        headers: Vec::new(),
    }
}

fn config(pairs: &[(&str, &str)]) -> PluginConfig {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn cases(host: &PluginHost) -> Vec<Case> {
    let mut cases = vec![Case {
        name: "wat_echo",
        plugin: host
            .load(include_bytes!("../tests/wat/echo.wat"))
            .expect("echo.wat loads"),
        event: event("sale.order", "write", r#"{"id": 42}"#.into()),
        config: config(&[]),
    }];
    let built = [
        (
            "hostile_plugin",
            event("sale.order", "write", r#"{"id": 42}"#.into()),
            config(&[("mode", "ok")]),
        ),
        (
            "order_filter",
            event(
                "sale.order",
                "confirmed",
                fixture("native/sale.order.confirmed.json"),
            ),
            config(&[("min_amount_total", "1000")]),
        ),
        (
            "xml_transform",
            event(
                "sale.order",
                "confirmed",
                fixture("native/sale.order.confirmed.json"),
            ),
            config(&[]),
        ),
        (
            "shipper_router",
            event(
                "sale.order",
                "confirmed",
                fixture("rich/sale.order.confirmed.json"),
            ),
            config(&[
                ("route.Ship: FastFreight", "fastfreight"),
                ("route.6", "parcelpost"),
            ]),
        ),
    ];
    for (name, event, config) in built {
        let path = plugins_dir().join(format!("{name}.wasm"));
        match host.load_file(&path) {
            Ok(plugin) => cases.push(Case {
                name,
                plugin,
                event,
                config,
            }),
            Err(e) => {
                eprintln!("skipping {name}: {e} (build with `cargo run -p xtask -- build-plugins`)")
            }
        }
    }
    cases
}

/// Where the built components are: `PLUGINS_DIR` (to compare builds, e.g. other optimisation
/// levels), or `target/plugins`.
fn plugins_dir() -> PathBuf {
    std::env::var_os("PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/plugins")))
}

fn bench(c: &mut Criterion) {
    let host = PluginHost::new(PluginLimits::default(), None).expect("host");
    let cases = cases(&host);
    for case in &cases {
        // A call that fails would measure the failure path: refuse to report it.
        if let Err(e) = case.plugin.handle(&case.event, &case.config) {
            panic!(
                "{} fails on its sample event: [{}] {e}",
                case.name,
                e.code()
            );
        }
    }
    let mut group = c.benchmark_group("plugin_call");
    for case in &cases {
        group.bench_function(case.name, |b| {
            b.iter(|| case.plugin.handle(&case.event, &case.config))
        });
    }
    group.finish();
    print_table(&cases);
}

fn print_table(cases: &[Case]) {
    println!(
        "\n{:<16} {:>10} {:>10} {:>14}",
        "plugin", "median µs", "p99 µs", "calls/s (1 core)"
    );
    for case in cases {
        let mut times: Vec<Duration> = (0..TABLE_CALLS)
            .map(|_| {
                let started = Instant::now();
                let out = case.plugin.handle(&case.event, &case.config);
                let took = started.elapsed();
                std::hint::black_box(out).ok();
                took
            })
            .collect();
        let total: Duration = times.iter().sum();
        times.sort_unstable();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "{:<16} {:>10.1} {:>10.1} {:>14.0}",
            case.name,
            at(0.5).as_secs_f64() * 1e6,
            at(0.99).as_secs_f64() * 1e6,
            TABLE_CALLS as f64 / total.as_secs_f64()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
