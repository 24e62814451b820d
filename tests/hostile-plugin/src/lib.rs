//! A deliberately misbehaving plugin for the gateway's sandbox tests (never
//! deployed). Config key `mode` chooses what `handle` does:
//!
//! | mode | behaviour |
//! |---|---|
//! | `ok` | echoes the payload as one JSON delivery to `""` (well behaved) |
//! | `loop` | spins forever |
//! | `grow` | allocates 1 MiB blocks until allocation fails (the instance traps) |
//! | `panic` | panics (the instance traps) |
//! | `huge-body` | one delivery with a 16 MiB body |
//! | `many` | 100 000 tiny deliveries |
//! | `logs` | 10 000 log lines, then one delivery |
//! | `invalid-config` | `validate-config` fails; `handle` returns `invalid-config` |
//! | `reject` | returns `reject` |
//! | `retry` | returns `retry` |
//!
//! An unknown or missing `mode` fails `validate-config` and makes `handle`
//! return `invalid-config`. Optional `validate_mode` = `loop` | `grow` |
//! `panic` makes `validate-config` itself misbehave that way.

use std::hint::black_box;
use std::str::FromStr;

use odoo_gateway_plugin_sdk::{Config, Delivery, Event, Plugin, PluginError, info};

/// Size of the `huge-body` delivery.
pub const HUGE_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Number of `many` deliveries.
pub const MANY_DELIVERIES: usize = 100_000;
/// Number of `logs` lines.
pub const LOG_LINES: usize = 10_000;

/// What the plugin does; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Echo the payload.
    Ok,
    /// Spin forever.
    Loop,
    /// Allocate until allocation fails.
    Grow,
    /// Panic.
    Panic,
    /// One 16 MiB body.
    HugeBody,
    /// 100 000 deliveries.
    Many,
    /// 10 000 log lines.
    Logs,
    /// Bad configuration.
    InvalidConfig,
    /// Reject the event.
    Reject,
    /// Ask for a retry.
    Retry,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ok" => Self::Ok,
            "loop" => Self::Loop,
            "grow" => Self::Grow,
            "panic" => Self::Panic,
            "huge-body" => Self::HugeBody,
            "many" => Self::Many,
            "logs" => Self::Logs,
            "invalid-config" => Self::InvalidConfig,
            "reject" => Self::Reject,
            "retry" => Self::Retry,
            other => return Err(format!("unknown mode {other:?}")),
        })
    }
}

/// The hostile plugin.
#[derive(Debug)]
pub struct Hostile;

impl Plugin for Hostile {
    fn handle(event: Event, config: &Config) -> Result<Vec<Delivery>, PluginError> {
        match config.parse_required::<Mode>("mode")? {
            Mode::Ok => Ok(vec![Delivery::new("", "application/json", event.payload)]),
            Mode::Loop => spin(),
            Mode::Grow => grow(),
            Mode::Panic => panic!("hostile plugin panics on purpose (event {})", event.id),
            Mode::HugeBody => Ok(vec![Delivery::new(
                "",
                "application/octet-stream",
                vec![b'x'; HUGE_BODY_BYTES],
            )]),
            Mode::Many => Ok((0..MANY_DELIVERIES)
                .map(|_| Delivery::new("", "application/json", "{}"))
                .collect()),
            Mode::Logs => {
                for line in 0..LOG_LINES {
                    info!("hostile log line {line}");
                }
                Ok(vec![Delivery::new("", "application/json", "{}")])
            }
            Mode::InvalidConfig => Err(PluginError::InvalidConfig(
                "config key `mode`: invalid-config mode always fails".into(),
            )),
            Mode::Reject => Err(PluginError::Reject(
                "hostile plugin rejects every event".into(),
            )),
            Mode::Retry => Err(PluginError::Retry("hostile plugin asks for a retry".into())),
        }
    }

    fn validate_config(config: &Config) -> Result<(), String> {
        match config.get("validate_mode") {
            Some("loop") => spin(),
            Some("grow") => grow(),
            Some("panic") => panic!("hostile plugin panics in validate-config"),
            _ => {}
        }
        match config.parse_required::<Mode>("mode")? {
            Mode::InvalidConfig => {
                Err("config key `mode`: invalid-config mode always fails".into())
            }
            _ => Ok(()),
        }
    }
}

odoo_gateway_plugin_sdk::export_plugin!(Hostile);

/// Never returns; `black_box` keeps the optimiser from proving the loop
/// side-effect free.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates and touches 1 MiB blocks until the allocator fails, which
/// aborts the instance.
fn grow() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(black_box(vec![1u8; 1024 * 1024]));
        black_box(&blocks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: &str) -> Result<Vec<Delivery>, PluginError> {
        let config = Config::from_pairs([("mode", mode)]);
        Hostile::handle(Event::new("sale.order", "write", r#"{"id": 1}"#), &config)
    }

    #[test]
    fn well_behaved_modes() {
        let ok = run("ok").unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].body, br#"{"id": 1}"#);
        assert_eq!(run("huge-body").unwrap()[0].body.len(), HUGE_BODY_BYTES);
        assert_eq!(run("many").unwrap().len(), MANY_DELIVERIES);
        assert!(matches!(run("reject"), Err(PluginError::Reject(_))));
        assert!(matches!(run("retry"), Err(PluginError::Retry(_))));
        assert!(matches!(
            run("invalid-config"),
            Err(PluginError::InvalidConfig(_))
        ));
        assert!(matches!(run("bogus"), Err(PluginError::InvalidConfig(_))));
    }

    #[test]
    fn validate_config_checks_mode() {
        let validate = |pairs: &[(&str, &str)]| {
            Hostile::validate_config(&Config::from_pairs(pairs.iter().copied()))
        };
        assert_eq!(validate(&[("mode", "ok")]), Ok(()));
        assert!(validate(&[("mode", "invalid-config")]).is_err());
        assert_eq!(
            validate(&[]),
            Err("config key `mode` is required but not set".to_owned())
        );
        assert!(
            validate(&[("mode", "nope")])
                .unwrap_err()
                .contains("unknown mode")
        );
    }

    #[test]
    #[should_panic(expected = "on purpose")]
    fn panic_mode_panics() {
        let _ = run("panic");
    }
}
