//! The virtual WASI under real interpreters: the Python hostile plugin (`tests/hostile-plugin-py`)
//! misbehaves on command, and says what it saw of the world; the JavaScript one
//! (`tests/hostile-plugin-js`) does the same for SpiderMonkey's clocks and random numbers. Each
//! is one large component, loaded once (from a disk cache under `target/` after the first run):
//! the calls are what is tested.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use odoo_gateway::event::Event;
use odoo_gateway::plugin::{LogLevel, Plugin, PluginError, PluginHost, PluginLimits, PluginOutput};
use serde_json::Value;

use super::{config, event};

/// Long enough for a Python call on a busy machine, shorter than the one-second sleep the
/// `observe` mode asks for: a sleep that really slept would fail the call.
const CPU_TIME: Duration = Duration::from_millis(900);

/// The hostile Python plugin (world 0.1.0), with a Python call's room.
pub(super) fn python() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| load("hostile_plugin_py"))
}

fn javascript() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| load("hostile_plugin_js"))
}

fn load(name: &str) -> Plugin {
    let limits = PluginLimits {
        cpu_time: CPU_TIME,
        memory_bytes: 128 << 20,
        max_log_lines: 20,
        ..PluginLimits::default()
    };
    let target = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target"));
    let host = PluginHost::new(limits, Some(target.join("plugin-test-cache"))).expect("host");
    host.load_file(&target.join(format!("plugins/{name}.wasm")))
        .unwrap_or_else(|e| panic!("{e}. Build the plugins first: ./dev plugins"))
}

fn run(mode: &str, event: &Event) -> Result<PluginOutput, PluginError> {
    python().handle(event, &config(&[("mode", mode)]))
}

fn observe(event: &Event) -> Value {
    let out = run("observe", event).expect("observe");
    serde_json::from_slice(&out.deliveries[0].body).expect("JSON")
}

#[test]
fn clocks_are_frozen_at_the_event_time_and_sleeping_returns_at_once() {
    let event = event("{}");
    python();
    let started = Instant::now();
    let seen = observe(&event);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let at_ns = event.received_at_ms * 1_000_000;
    assert_eq!(seen["wall_ns"], serde_json::json!([at_ns, at_ns]), "{seen}");
    assert_eq!(
        seen["monotonic_ns"],
        serde_json::json!([at_ns, at_ns]),
        "{seen}"
    );
}

#[test]
fn random_differs_between_reads_and_repeats_for_the_same_event() {
    let first = observe(&event("{}"));
    let reads = first["random"].as_array().unwrap();
    assert_ne!(reads[0], reads[1], "two reads in one call");
    assert_eq!(
        observe(&event("{}"))["random"],
        first["random"],
        "the same event again"
    );
    let other = Event {
        id: "evt-2".into(),
        ..event("{}")
    };
    assert_ne!(observe(&other)["random"], first["random"], "another event");
}

#[test]
fn no_environment_no_stdin_no_files_no_sockets() {
    let seen = observe(&event("{}"));
    assert_eq!(seen["environ"], serde_json::json!({}), "{seen}");
    assert_eq!(seen["stdin"], serde_json::json!({"ok": "''"}), "{seen}");
    for denied in ["open_file", "list_root", "socket"] {
        assert!(seen[denied].get("error").is_some(), "{denied}: {seen}");
    }
}

#[test]
fn an_endless_loop_is_stopped() {
    python();
    let started = Instant::now();
    let err = run("loop", &event("{}")).unwrap_err();
    assert_eq!(err.code(), "plugin_cpu_exceeded", "{err}");
    assert!(
        started.elapsed() < CPU_TIME + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let err = run("allocate", &event("{}")).unwrap_err();
    assert_eq!(err.code(), "plugin_memory_exceeded", "{err}");
}

#[test]
fn printing_forever_is_capped_then_stopped() {
    let report = python().handle_report(&event("{}"), &config(&[("mode", "print-forever")]));
    assert_eq!(report.result.unwrap_err().code(), "plugin_cpu_exceeded");
    assert_eq!(report.logs.len(), 20, "max_log_lines");
    assert!(report.logs_dropped > 0);
    assert!(
        report
            .logs
            .iter()
            .all(|l| l.message == "all work and no play" && l.level == LogLevel::Info)
    );
}

#[test]
fn stdout_and_stderr_go_to_the_log() {
    let out = run("print", &event("{}")).unwrap();
    let lines: Vec<_> = out
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert!(lines.contains(&(LogLevel::Info, "to stdout")), "{lines:?}");
    assert!(lines.contains(&(LogLevel::Error, "to stderr")), "{lines:?}");
}

#[test]
fn exit_and_uncaught_exceptions_are_traps() {
    let err = run("exit", &event("{}")).unwrap_err();
    assert_eq!(err.code(), "plugin_trapped", "{err}");
    let report = python().handle_report(&event("{}"), &config(&[("mode", "raise")]));
    let err = report.result.unwrap_err();
    assert_eq!(err.code(), "plugin_trapped", "{err}");
    assert!(
        err.to_string().contains("ValueError: raised on purpose"),
        "{err}: {:?}",
        report.logs
    );
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.level == LogLevel::Error && l.message.contains("Traceback")),
        "the traceback is in the log: {:?}",
        report.logs
    );
}

#[test]
fn javascript_sees_the_same_frozen_clocks_and_seeded_random() {
    let event = event("{}");
    let observe = |event: &Event| -> Value {
        let out = javascript()
            .handle(event, &config(&[("mode", "observe")]))
            .expect("observe");
        assert!(
            out.logs.iter().any(|l| l.message.starts_with("observed")),
            "{:?}",
            out.logs
        );
        serde_json::from_slice(&out.deliveries[0].body).expect("JSON")
    };
    let seen = observe(&event);
    let at = event.received_at_ms;
    assert_eq!(seen["date"], serde_json::json!([at, at]), "{seen}");
    assert_eq!(seen["performance"][0], seen["performance"][1], "{seen}");
    assert_ne!(seen["random"][0], seen["random"][1], "{seen}");
    assert_eq!(
        observe(&event)["random"],
        seen["random"],
        "the same event again"
    );
    let err = javascript()
        .handle(&event, &config(&[("mode", "loop")]))
        .unwrap_err();
    assert_eq!(err.code(), "plugin_cpu_exceeded", "{err}");
}
