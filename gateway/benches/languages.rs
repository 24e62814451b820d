//! The same plugin, `shipper-router`, in Rust, C, JavaScript and Python: the cost of one call
//! (fresh store + instantiate + call + checks, as the gateway makes it) on the rich order with
//! the sample configuration, and the memory one instance holds, with each component's size and
//! compile time. Prints a table (the figures in BENCHMARKS.md and the README come from it);
//! components not built (`./dev plugins`) are skipped with a notice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use odoo_gateway::event::Event;
use odoo_gateway::plugin::{PluginConfig, PluginHost, PluginLimits};

/// (language, component, calls measured): interpreters get fewer calls, each costs more.
const LANGUAGES: &[(&str, &str, usize)] = &[
    ("Rust", "shipper_router", 5_000),
    ("C", "shipper_router_c", 5_000),
    ("JavaScript", "shipper_router_js", 1_000),
    ("Python", "shipper_router_py", 500),
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let limits = PluginLimits {
        cpu_time: Duration::from_secs(2),
        memory_bytes: 256 << 20,
        ..PluginLimits::default()
    };
    let host = PluginHost::new(limits, None).expect("host");
    let event = Event {
        id: "bench-1".into(),
        source: "odoo".into(),
        model: "sale.order".into(),
        action: "confirmed".into(),
        record_id: Some(12),
        received_at_ms: 1_700_000_000_000,
        seq: 0,
        payload: odoo_gateway_fixtures::RICH_ORDER.into(),
        headers: Vec::new(),
    };
    let config: PluginConfig = Arc::new(BTreeMap::from(
        [
            ("route.Ship: FastFreight", "fastfreight"),
            ("route.6", "parcelpost"),
            ("product.FURN_8888", "fragile-goods"),
            ("default_destination", "warehouse"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    ));
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/plugins"));
    println!(
        "| language | component | compile | median µs | p99 µs | calls/s (1 core) | memory per instance |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (language, name, calls) in LANGUAGES {
        let Ok(wasm) = std::fs::read(root.join(format!("{name}.wasm"))) else {
            eprintln!("{name}.wasm is not built (./dev plugins): skipped");
            continue;
        };
        let started = Instant::now();
        let plugin = host.load(&wasm).expect("loads");
        let compile = started.elapsed();
        let mut memory = 0;
        for _ in 0..calls / 10 {
            let report = plugin.handle_report(&event, &config);
            assert_eq!(report.result.expect("handles").len(), 2);
            memory = report.memory_bytes;
        }
        let mut times = Vec::with_capacity(*calls);
        let all = Instant::now();
        for _ in 0..*calls {
            let started = Instant::now();
            let out = plugin.handle(&event, &config).expect("handles");
            times.push(started.elapsed());
            assert_eq!(out.deliveries.len(), 2);
        }
        let per_second = *calls as f64 / all.elapsed().as_secs_f64();
        times.sort();
        println!(
            "| {language} | {:.1} MB | {:.1} s | {:.0} | {:.0} | {per_second:.0} | {:.1} MiB |",
            wasm.len() as f64 / 1e6,
            compile.as_secs_f64(),
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6,
            memory as f64 / f64::from(1 << 20),
        );
    }
}
