//! The plugin host against hostile and well-behaved components.
//!
//! Hand-written WAT components (in `wat/`) cover the shapes a component can be wrong in and the
//! limits, without any Rust guest. `guests` runs the real components built by
//! `cargo run -p xtask -- build-plugins` (hostile and example plugins) and fails, rather than
//! skips, when they have not been built.

#[path = "plugin_host/examples.rs"]
mod examples;
#[path = "plugin_host/guests.rs"]
mod guests;
#[path = "plugin_host/wasi.rs"]
mod wasi;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use odoo_gateway::event::Event;
use odoo_gateway::plugin::{LogLevel, PluginConfig, PluginError, PluginHost, PluginLimits};

const ECHO: &str = include_str!("wat/echo.wat");
const TWO_MEMORIES: &str = include_str!("wat/two_memories.wat");

fn host(limits: PluginLimits) -> PluginHost {
    PluginHost::new(limits, None).expect("host")
}

fn event(payload: &str) -> Event {
    Event {
        id: "evt-1".into(),
        source: "odoo-prod".into(),
        model: "sale.order".into(),
        action: "confirmed".into(),
        record_id: Some(42),
        received_at_ms: 1_700_000_000_000,
        seq: 0,
        payload: payload.into(),
        headers: vec![("user-agent".into(), "python-requests/2.31".into())],
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

fn load_error(wasm: &[u8]) -> PluginError {
    host(PluginLimits::default())
        .load(wasm)
        .expect_err("must be refused at load")
}

#[test]
fn echo_component_delivers_the_payload_and_its_log_line() {
    let plugin = host(PluginLimits::default()).load(ECHO.as_bytes()).unwrap();
    plugin.validate_config(&config(&[])).unwrap();
    let out = plugin
        .handle(&event(r#"{"id": 42}"#), &config(&[]))
        .unwrap();
    assert_eq!(out.deliveries.len(), 1);
    let d = &out.deliveries[0];
    assert_eq!(
        (d.destination.as_str(), d.content_type.as_str()),
        ("", "application/json")
    );
    assert_eq!(d.body, br#"{"id": 42}"#);
    assert!(d.headers.is_empty());
    assert_eq!(out.logs.len(), 1);
    assert_eq!(
        (out.logs[0].level, out.logs[0].message.as_str()),
        (LogLevel::Info, "handling event")
    );
    assert_eq!(plugin.hash().len(), 64);
}

#[test]
fn typed_errors_for_reject_and_trap() {
    let plugin = host(PluginLimits::default()).load(ECHO.as_bytes()).unwrap();
    let err = plugin.handle(&event("R"), &config(&[])).unwrap_err();
    assert_eq!(err, PluginError::Rejected("no thanks".into()));
    assert!(!err.is_retryable());
    let report = plugin.handle_report(&event("U"), &config(&[]));
    let err = report.result.unwrap_err();
    assert_eq!(err.code(), "plugin_trapped");
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert_eq!(
        report.logs.len(),
        1,
        "lines logged before the trap are kept"
    );
}

#[test]
fn endless_loop_is_stopped_within_a_second() {
    let plugin = host(PluginLimits::default()).load(ECHO.as_bytes()).unwrap();
    let started = Instant::now();
    let err = plugin.handle(&event("L"), &config(&[])).unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        err,
        PluginError::CpuExceeded {
            limit: Duration::from_millis(100)
        }
    );
    assert_eq!(err.code(), "plugin_cpu_exceeded");
    assert!(took < Duration::from_secs(1), "loop stopped after {took:?}");
}

#[test]
fn memory_growth_past_the_limit_is_reported_as_such() {
    let limits = PluginLimits {
        memory_bytes: 4 << 20,
        ..PluginLimits::default()
    };
    let plugin = host(limits).load(ECHO.as_bytes()).unwrap();
    let err = plugin.handle(&event("G"), &config(&[])).unwrap_err();
    assert_eq!(
        err,
        PluginError::MemoryExceeded {
            limit_bytes: 4 << 20
        }
    );
    assert_eq!(err.code(), "plugin_memory_exceeded");
    // The store is gone with the failed call: the next call starts from a fresh instance.
    assert_eq!(
        plugin
            .handle(&event("ok"), &config(&[]))
            .unwrap()
            .deliveries[0]
            .body,
        b"ok"
    );
}

/// The limit is for the whole instance: a component has as many memories as it likes (up to the
/// pool's bound), and each of them under the limit must not add up to more.
#[test]
fn the_memory_limit_holds_for_every_memory_together() {
    let limits = PluginLimits {
        memory_bytes: 4 << 20,
        ..PluginLimits::default()
    };
    let plugin = host(limits).load(TWO_MEMORIES.as_bytes()).unwrap();
    // 1 MiB more in each memory: 2 MiB and their first pages in all, within the limit.
    let report = plugin.handle_report(&event("1"), &config(&[]));
    assert_eq!(report.result.unwrap(), Vec::new());
    assert_eq!(report.memory_bytes, (2 << 20) + 2 * 65536);
    // 3 MiB more in each: either memory alone stays under 4 MiB, both together do not.
    let err = plugin.handle(&event("3"), &config(&[])).unwrap_err();
    assert_eq!(
        err,
        PluginError::MemoryExceeded {
            limit_bytes: 4 << 20
        }
    );
}

#[test]
fn output_caps_and_log_caps_apply() {
    let limits = PluginLimits {
        max_body_bytes: 4,
        max_log_lines: 0,
        ..PluginLimits::default()
    };
    let plugin = host(limits).load(ECHO.as_bytes()).unwrap();
    let err = plugin.handle(&event("too long"), &config(&[])).unwrap_err();
    assert_eq!(err.code(), "plugin_output_too_large");
    let out = plugin.handle(&event("fine"), &config(&[])).unwrap();
    assert!(out.logs.is_empty());
    assert_eq!(out.logs_dropped, 1);
}

#[test]
fn component_without_handle_is_refused_at_load() {
    let err = load_error(include_bytes!("wat/missing_export.wat"));
    assert_eq!(err.code(), "plugin_not_a_plugin");
    assert!(err.to_string().contains("handle"), "{err}");
}

#[test]
fn component_with_wrong_export_types_is_refused_at_load() {
    let err = load_error(include_bytes!("wat/wrong_types.wat"));
    assert_eq!(err.code(), "plugin_not_a_plugin", "{err}");
}

#[test]
fn component_importing_wasi_the_host_provides_loads() {
    let wasi = "(import \"wasi:cli/environment@0.2.0\" (instance \
                (export \"get-environment\" (func (result (list (tuple string string)))))))";
    let wat = ECHO.replace(";; EXTRA IMPORTS", wasi);
    host(PluginLimits::default())
        .load(wat.as_bytes())
        .expect("the virtual WASI provides wasi:cli/environment");
}

#[test]
fn component_importing_wasi_the_host_does_not_provide_is_refused_at_load() {
    let wasi = "(import \"wasi:keyvalue/store@0.2.0\" (instance \
                (export \"count\" (func (result u32)))))";
    let wat = ECHO.replace(";; EXTRA IMPORTS", wasi);
    let err = load_error(wat.as_bytes());
    assert_eq!(err.code(), "plugin_not_a_plugin");
    assert!(
        err.to_string().contains("wasi:keyvalue/store@0.2.0"),
        "{err}"
    );
}

#[test]
fn core_module_is_refused_with_a_hint() {
    for wasm in [
        &b"\0asm\x01\0\0\0"[..],
        b"(module (func (export \"handle\")))",
    ] {
        let err = load_error(wasm);
        assert_eq!(err.code(), "plugin_not_a_plugin");
        assert!(err.to_string().contains("core WebAssembly module"), "{err}");
        assert!(err.to_string().contains("build-plugins"), "{err}");
    }
}

#[test]
fn garbage_does_not_compile() {
    assert_eq!(
        load_error(b"\0asm\x0d\0\x01\0garbage").code(),
        "plugin_compile_failed"
    );
    assert_eq!(
        load_error(b"not wasm at all").code(),
        "plugin_compile_failed"
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let err = host(PluginLimits::default())
        .load_file(&PathBuf::from("/nonexistent/p.wasm"))
        .unwrap_err();
    assert_eq!(err.code(), "plugin_io");
}

#[test]
fn disk_cache_is_hit_and_survives_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let cached_host =
        || PluginHost::new(PluginLimits::default(), Some(dir.path().to_path_buf())).unwrap();
    let first = cached_host().load(ECHO.as_bytes()).unwrap();
    assert!(!first.from_cache());
    let second = cached_host().load(ECHO.as_bytes()).unwrap();
    assert!(second.from_cache());
    assert_eq!(second.hash(), first.hash());
    assert_eq!(
        second
            .handle(&event("hi"), &config(&[]))
            .unwrap()
            .deliveries[0]
            .body,
        b"hi"
    );

    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one file, no temporary left: {files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&files[0], &bytes).unwrap();
    let third = cached_host().load(ECHO.as_bytes()).unwrap();
    assert!(!third.from_cache(), "a corrupt file is recompiled, not run");
    assert_eq!(
        third.handle(&event("hi"), &config(&[])).unwrap().deliveries[0].body,
        b"hi"
    );
    std::fs::write(&files[0], b"short").unwrap();
    assert!(!cached_host().load(ECHO.as_bytes()).unwrap().from_cache());
    assert!(
        cached_host().load(ECHO.as_bytes()).unwrap().from_cache(),
        "the cache was rewritten"
    );
}

#[test]
fn looping_plugin_does_not_slow_a_good_one() {
    // A long budget makes any waiting on the loop obvious (it would take a second).
    let limits = PluginLimits {
        cpu_time: Duration::from_secs(1),
        ..PluginLimits::default()
    };
    let good = host(limits).load(ECHO.as_bytes()).unwrap();
    let bad = good.clone();
    let times = beside_a_loop(
        move || bad.handle(&event("L"), &config(&[])).unwrap_err(),
        || {
            assert_eq!(
                good.handle(&event("good"), &config(&[]))
                    .unwrap()
                    .deliveries[0]
                    .body,
                b"good"
            )
        },
    );
    assert!(
        times.len() > 10,
        "only {} good calls beside the loop",
        times.len()
    );
}

/// Runs `good` repeatedly while `looping` runs on another thread; checks the loop was stopped
/// as CPU exceeded and that no good call waited on it. Returns the good calls' durations.
pub(crate) fn beside_a_loop(
    looping: impl FnOnce() -> PluginError + Send + 'static,
    good: impl Fn(),
) -> Vec<Duration> {
    let spinner = std::thread::spawn(looping);
    let mut times = Vec::new();
    while !spinner.is_finished() {
        let started = Instant::now();
        good();
        times.push(started.elapsed());
    }
    assert_eq!(spinner.join().unwrap().code(), "plugin_cpu_exceeded");
    times.sort_unstable();
    let slowest = times.last().copied().unwrap_or_default();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(250),
        "a good call took {slowest:?} beside the loop"
    );
    assert!(
        median < Duration::from_millis(10),
        "good calls took {median:?} (median) beside the loop"
    );
    times
}

#[test]
fn all_instance_slots_busy_is_retryable() {
    let limits = PluginLimits {
        max_instances: 1,
        cpu_time: Duration::from_millis(500),
        ..PluginLimits::default()
    };
    let plugin = host(limits).load(ECHO.as_bytes()).unwrap();
    let busy = plugin.clone();
    let spinner = std::thread::spawn(move || busy.handle(&event("L"), &config(&[])).unwrap_err());
    std::thread::sleep(Duration::from_millis(100));
    let err = plugin.handle(&event("x"), &config(&[])).unwrap_err();
    assert_eq!(err.code(), "plugin_instantiate_failed", "{err}");
    assert!(err.is_retryable());
    assert_eq!(spinner.join().unwrap().code(), "plugin_cpu_exceeded");
    assert!(
        plugin.handle(&event("x"), &config(&[])).is_ok(),
        "the slot is free again"
    );
}
