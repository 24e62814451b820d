//! The real guest components (built by xtask): hostile behaviours and the example plugins.
//!
//! These tests fail when `target/plugins/*.wasm` is missing: CI builds the components first, and
//! a skipped sandbox test would hide exactly the regressions it exists for.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use odoo_gateway::plugin::{LogLevel, Plugin, PluginError, PluginHost, PluginLimits, PluginOutput};

use super::{beside_a_loop, config, event};

/// Reads a built component, or fails with the command that builds it.
pub(crate) fn built(name: &str) -> Vec<u8> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/plugins"))
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The plugin components are not built: run `cargo run -p xtask -- build-plugins` first",
            path.display()
        )
    })
}

/// One host for the guest tests; compiling a Rust guest takes a moment, so load each once.
pub(crate) fn shared_host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new(PluginLimits::default(), None).expect("host"))
}

/// A host whose time budget is generous, for the tests about memory and output: on a busy CI
/// machine filling 64 MiB can take longer than the production 100 ms, and these tests are about
/// which limit is reported, not about time.
fn roomy_hostile() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let limits = PluginLimits {
            cpu_time: Duration::from_secs(5),
            ..PluginLimits::default()
        };
        let host = PluginHost::new(limits, None).expect("host");
        host.load(&built("hostile_plugin"))
            .expect("hostile plugin loads")
    })
}

fn hostile() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        shared_host()
            .load(&built("hostile_plugin"))
            .expect("hostile plugin loads")
    })
}

fn run_hostile(mode: &str) -> Result<PluginOutput, PluginError> {
    hostile().handle(&event(r#"{"id": 7}"#), &config(&[("mode", mode)]))
}

fn run_roomy(mode: &str) -> Result<PluginOutput, PluginError> {
    roomy_hostile().handle(&event(r#"{"id": 7}"#), &config(&[("mode", mode)]))
}

#[test]
fn hostile_ok_mode_echoes() {
    let out = run_hostile("ok").unwrap();
    assert_eq!(out.deliveries.len(), 1);
    assert_eq!(out.deliveries[0].body, br#"{"id": 7}"#);
    assert!(
        hostile()
            .validate_config(&config(&[("mode", "ok")]))
            .is_ok()
    );
}

#[test]
fn hostile_loop_is_stopped_within_a_second() {
    let started = Instant::now();
    let err = run_hostile("loop").unwrap_err();
    assert_eq!(err.code(), "plugin_cpu_exceeded");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "stopped after {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let err = hostile()
        .validate_config(&config(&[("mode", "ok"), ("validate_mode", "loop")]))
        .unwrap_err();
    assert_eq!(err.code(), "plugin_cpu_exceeded");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn hostile_grow_is_memory_exceeded() {
    assert_eq!(
        run_roomy("grow").unwrap_err().code(),
        "plugin_memory_exceeded"
    );
    let err = roomy_hostile()
        .validate_config(&config(&[("mode", "ok"), ("validate_mode", "grow")]))
        .unwrap_err();
    assert_eq!(err.code(), "plugin_memory_exceeded");
}

#[test]
fn hostile_panic_is_a_trap_with_the_panic_message() {
    let report = hostile().handle_report(&event("{}"), &config(&[("mode", "panic")]));
    let err = report.result.unwrap_err();
    assert_eq!(err.code(), "plugin_trapped");
    assert!(err.to_string().contains("panics on purpose"), "{err}");
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.level == LogLevel::Error && l.message.contains("on purpose"))
    );
}

#[test]
fn hostile_oversized_outputs_are_refused() {
    assert_eq!(
        run_roomy("huge-body").unwrap_err().code(),
        "plugin_output_too_large"
    );
    assert_eq!(
        run_roomy("many").unwrap_err().code(),
        "plugin_output_too_large"
    );
}

#[test]
fn hostile_log_flood_is_capped() {
    let out = run_hostile("logs").unwrap();
    let max = PluginLimits::default().max_log_lines;
    assert_eq!(out.logs.len(), max);
    assert_eq!(out.logs_dropped, 10_000 - max);
    assert_eq!(out.deliveries.len(), 1);
}

#[test]
fn hostile_typed_plugin_errors() {
    let err = run_hostile("reject").unwrap_err();
    assert_eq!(err.code(), "plugin_rejected");
    let err = run_hostile("retry").unwrap_err();
    assert_eq!(err.code(), "plugin_retry");
    assert!(err.is_retryable());
    assert_eq!(
        run_hostile("invalid-config").unwrap_err().code(),
        "plugin_invalid_config"
    );
    let err = hostile()
        .validate_config(&config(&[("mode", "bogus")]))
        .unwrap_err();
    assert_eq!(err.code(), "plugin_invalid_config");
    assert!(err.to_string().contains("mode"), "{err}");
}

#[test]
fn hostile_loop_beside_a_good_plugin() {
    let limits = PluginLimits {
        cpu_time: Duration::from_secs(1),
        ..PluginLimits::default()
    };
    let host = PluginHost::new(limits, None).unwrap();
    let plugin = host.load(&built("hostile_plugin")).unwrap();
    let bad = plugin.clone();
    let times = beside_a_loop(
        move || {
            bad.handle(&event("{}"), &config(&[("mode", "loop")]))
                .unwrap_err()
        },
        || {
            let out = plugin
                .handle(&event(r#"{"id": 7}"#), &config(&[("mode", "ok")]))
                .unwrap();
            assert_eq!(out.deliveries[0].body, br#"{"id": 7}"#);
        },
    );
    assert!(
        times.len() > 10,
        "only {} good calls beside the loop",
        times.len()
    );
}
