//! The same plugin, `shipper-router`, in Rust, C, JavaScript and Python: the cost of one call
//! (fresh store + instantiate + call + checks, as the gateway makes it) on the rich order with
//! the sample configuration, how much of it is making the fresh instance, the page faults it
//! takes, and the memory one instance holds, with each component's size and compile time.
//! Prints a table (the figures in BENCHMARKS.md and the README come from it); components not
//! built (`./dev plugins`) are skipped with a notice. `cargo bench --bench languages -- Python`
//! measures only the languages named; `LABEL=path.wasm` adds a row for another build of the
//! same plugin (to compare two builds: `-- JavaScript js-before=/tmp/old.wasm`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use odoo_gateway::event::Event;
use odoo_gateway::plugin::{PluginConfig, PluginHost, PluginLimits};

// As in the gateway: the host's side of a call (the store, instance metadata) is allocated as
// it is there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (language, component, calls measured): interpreters get fewer calls, each costs more.
const LANGUAGES: &[(&str, &str, usize)] = &[
    ("Rust", "shipper_router", 5_000),
    ("C", "shipper_router_c", 5_000),
    ("JavaScript", "shipper_router_js", 2_000),
    ("Python", "shipper_router_py", 2_000),
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Minor page faults this process has taken (Linux), to tell the faults a call takes.
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The fields after the command name, which is in parentheses.
            let rest = stat.rsplit_once(')')?.1;
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let only: Vec<&str> = args
        .iter()
        .filter(|a| !a.contains('='))
        .map(String::as_str)
        .collect();
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/plugins"));
    let mut rows: Vec<(String, PathBuf, usize)> = LANGUAGES
        .iter()
        .filter(|(language, _, _)| only.is_empty() || only.contains(language))
        .map(|(language, name, calls)| {
            (
                language.to_string(),
                root.join(format!("{name}.wasm")),
                *calls,
            )
        })
        .collect();
    rows.extend(args.iter().filter_map(|a| {
        let (label, path) = a.split_once('=')?;
        Some((label.to_owned(), PathBuf::from(path), 2_000))
    }));
    let limits = PluginLimits {
        cpu_time: Duration::from_secs(2),
        memory_bytes: 256 << 20,
        ..PluginLimits::default()
    };
    // Compiled components are kept between runs; the compile column says when one was loaded
    // from there instead (remove the folder to measure first compiles).
    let cache = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/bench-cache"
    ));
    let host = PluginHost::new(limits, Some(cache)).expect("host");
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
    println!(
        "| language | component | compile | median µs | of which instantiation | p99 µs | calls/s (1 core) | page faults per call | memory per instance |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (language, path, calls) in &rows {
        let Ok(wasm) = std::fs::read(path) else {
            eprintln!("{} is not built (./dev plugins): skipped", path.display());
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
        let mut instantiation = Vec::with_capacity(*calls);
        let faults = minor_faults();
        let all = Instant::now();
        for _ in 0..*calls {
            let started = Instant::now();
            let report = plugin.handle_report(&event, &config);
            times.push(started.elapsed());
            instantiation.push(report.instantiate_time);
            assert_eq!(report.result.expect("handles").len(), 2);
        }
        let per_second = *calls as f64 / all.elapsed().as_secs_f64();
        let faults = (minor_faults() - faults) as f64 / *calls as f64;
        times.sort();
        instantiation.sort();
        println!(
            "| {language} | {:.1} MB | {} | {:.0} | {:.0} | {:.0} | {per_second:.0} | {faults:.0} | {:.1} MiB |",
            wasm.len() as f64 / 1e6,
            if plugin.from_cache() {
                "(cached)".to_owned()
            } else {
                format!("{:.1} s", compile.as_secs_f64())
            },
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&instantiation, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6,
            memory as f64 / f64::from(1 << 20),
        );
    }
}
