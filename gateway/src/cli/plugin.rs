//! `odoo-gateway plugin check|run|componentize|new`: load a plugin the way the server does and
//! say what it is made of, run it once on an event file, wrap a core module into a component,
//! or start a plugin project in another repository (`scaffold`).
//!
//! This module owns the plugin subcommands' arguments and output. It builds events and
//! configurations from files for the operator's convenience; the data path never goes through
//! here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::plugin::{
    Delivery, LogLine, Plugin, PluginConfig, PluginError, PluginHost, PluginLimits,
};

/// Exit code when the plugin ran but returned or caused a typed error (a usage or file error
/// exits with 1).
pub const EXIT_PLUGIN_ERROR: u8 = 2;

/// `odoo-gateway plugin ...`
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Checks that a file is a loadable plugin of world odoo-gateway:plugin/plugin@0.2.0 or @0.1.0.
    Check(CheckArgs),
    /// Runs a plugin once on an event file and prints its deliveries and logs.
    Run(RunArgs),
    /// Wraps a core WebAssembly module (clang + wasi-libc, or another compiler) into a plugin
    /// component, embedding the plugin world and adapting WASI preview 1.
    Componentize(ComponentizeArgs),
    /// Writes a ready-to-build plugin project in another directory.
    New(super::scaffold::NewArgs),
}

/// Arguments of `plugin componentize`.
#[derive(Debug, clap::Args)]
pub struct ComponentizeArgs {
    /// The core module.
    pub core: PathBuf,
    /// Where to write the component.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The plugin world version the module's glue implements (0.1.0 or 0.2.0); by default the
    /// one its imports name.
    #[arg(long)]
    pub world: Option<odoo_gateway_plugin_tools::WorldVersion>,
}

/// Arguments of `plugin check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The plugin component (.wasm, or .wat text).
    pub wasm: PathBuf,
    /// Keep compiled plugins in this directory (as `[plugins] cache_dir` does), so a second
    /// check or run of a large component does not compile it again.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// Arguments of `plugin run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The plugin component (.wasm, or .wat text).
    pub wasm: PathBuf,
    /// JSON file: an Odoo native webhook body (with `_model` and `_id`) or a full event
    /// (`model`, `action`, `payload`, and optionally `id`, `source`, `record_id`,
    /// `received_at_ms`, `headers`).
    #[arg(long)]
    pub event: PathBuf,
    /// TOML file with the plugin configuration: `key = "value"` lines, or a `[config]` table.
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// A configuration value, `key=value`; repeatable; overrides the config file.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// Event type `model.action` (for example `sale.order.confirmed`). Overrides the file's;
    /// for a native webhook body without it, the action is `write`.
    #[arg(long)]
    pub event_type: Option<String>,
    /// Time budget of each call in milliseconds (default: the gateway's 100 ms).
    #[arg(long)]
    pub cpu_time_ms: Option<u64>,
    /// Memory limit of each call in MiB (default: the gateway's 64 MiB).
    #[arg(long)]
    pub memory_mib: Option<usize>,
    /// Keep compiled plugins in this directory (see `plugin check --cache-dir`).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

impl PluginCommand {
    /// Runs the subcommand, printing to stdout.
    pub fn execute(&self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Check(args) => check(&args.wasm, args.cache_dir.clone()),
            Self::Run(args) => run(args),
            Self::Componentize(args) => componentize(args),
            Self::New(args) => args.execute(),
        }
    }
}

/// Wraps a core module into a component and checks that the gateway can load it.
pub fn componentize(args: &ComponentizeArgs) -> anyhow::Result<ExitCode> {
    let core =
        std::fs::read(&args.core).with_context(|| format!("reading {}", args.core.display()))?;
    let component = odoo_gateway_plugin_tools::componentize(&core, args.world)
        .with_context(|| format!("componentizing {}", args.core.display()))?;
    std::fs::write(&args.output, &component)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "{}: component of {} bytes (core module {} bytes)",
        args.output.display(),
        component.len(),
        core.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Says what the component is made of (language, runtime, every import and whether the host
/// provides it), then loads it as the server would and prints its identity. Fails, with the
/// error code, when it is not a loadable plugin.
pub fn check(path: &Path, cache_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // Text (.wat) and broken files have nothing to inspect: loading says what is wrong.
    if let Ok(inspection) = odoo_gateway_plugin_tools::inspect(&wasm) {
        print_inspection(&inspection);
    }
    let host = PluginHost::new(PluginLimits::default(), cache_dir)?;
    let plugin = host
        .load(&wasm)
        .map_err(|e| anyhow::anyhow!("{}: [{}] {e}", path.display(), e.code()))?;
    println!(
        "{}: loadable plugin of world {}",
        path.display(),
        plugin.world()
    );
    println!("  sha256   {}", plugin.hash());
    println!("  size     {} bytes", plugin.size());
    println!(
        "  compile  {:.1} ms",
        plugin.load_time().as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `validate-config`, then `handle` on the event, printing deliveries, logs or the typed
/// error. Exits with [`EXIT_PLUGIN_ERROR`] when the plugin fails.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let defaults = PluginLimits::default();
    let limits = PluginLimits {
        cpu_time: args
            .cpu_time_ms
            .map_or(defaults.cpu_time, std::time::Duration::from_millis),
        memory_bytes: args
            .memory_mib
            .map_or(defaults.memory_bytes, |mib| mib << 20),
        ..defaults
    };
    let plugin = load(&args.wasm, limits, args.cache_dir.clone())?;
    let config = read_config(args.config_file.as_deref(), &args.config)?;
    let text = std::fs::read_to_string(&args.event)
        .with_context(|| format!("reading {}", args.event.display()))?;
    let event = crate::samples::event_from_json(&text, args.event_type.as_deref())
        .with_context(|| format!("event file {}", args.event.display()))?;
    println!(
        "event {} ({}), record {:?}",
        event.id,
        event.event_type(),
        event.record_id
    );

    let report = plugin.validate_config_report(&config);
    print_logs(&report.logs, report.logs_dropped);
    if let Err(e) = report.result {
        return Ok(plugin_failed("validate-config", &e));
    }
    println!("validate-config: ok");

    let started = Instant::now();
    let report = plugin.handle_report(&event, &config);
    let took = started.elapsed();
    print_logs(&report.logs, report.logs_dropped);
    match report.result {
        Ok(deliveries) => {
            println!(
                "handle: {} deliveries in {:.0} µs (instantiation {:.0} µs), {:.1} MiB of memory",
                deliveries.len(),
                took.as_secs_f64() * 1e6,
                report.instantiate_time.as_secs_f64() * 1e6,
                report.memory_bytes as f64 / f64::from(1 << 20)
            );
            for (i, d) in deliveries.iter().enumerate() {
                print_delivery(i + 1, d);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(plugin_failed("handle", &e)),
    }
}

fn print_inspection(inspection: &odoo_gateway_plugin_tools::Inspection) {
    println!("  language {}", inspection.language);
    for import in &inspection.imports {
        let provided = if import.starts_with("wasi:http/") {
            "NOT PROVIDED: plugins have no network (componentize-js: build with --disable http)"
        } else if import.starts_with("wasi:") {
            crate::plugin::wasi::describe(import)
                .unwrap_or("NOT PROVIDED: the host refuses this import")
        } else if import.starts_with("odoo-gateway:plugin/") {
            "the plugin world"
        } else {
            "NOT PROVIDED: the host refuses this import"
        };
        println!("  import   {import:<40} {provided}");
    }
}

fn load(path: &Path, limits: PluginLimits, cache_dir: Option<PathBuf>) -> anyhow::Result<Plugin> {
    let host = PluginHost::new(limits, cache_dir)?;
    host.load_file(path)
        .map_err(|e| anyhow::anyhow!("{}: [{}] {e}", path.display(), e.code()))
}

fn plugin_failed(export: &str, error: &PluginError) -> ExitCode {
    println!("{export}: error [{}] {error}", error.code());
    ExitCode::from(EXIT_PLUGIN_ERROR)
}

fn print_logs(logs: &[LogLine], dropped: usize) {
    for line in logs {
        println!("log {:5} {}", line.level, line.message);
    }
    if dropped > 0 {
        println!("log ({dropped} more lines dropped: over the limit)");
    }
}

fn print_delivery(n: usize, d: &Delivery) {
    let destination = if d.destination.is_empty() {
        "(default)"
    } else {
        &d.destination
    };
    println!("--- delivery {n} to {destination}");
    println!("content-type: {}", d.content_type);
    if let Some(key) = &d.ordering_key {
        println!("ordering key: {key}");
    }
    for (name, value) in &d.headers {
        println!("{name}: {value}");
    }
    println!();
    println!("{}", String::from_utf8_lossy(&d.body));
}

/// `key=value` on the command line.
fn parse_key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {arg:?}")),
    }
}

/// The configuration from an optional TOML file, then the `key=value` overrides.
pub(crate) fn read_config(
    file: Option<&Path>,
    overrides: &[(String, String)],
) -> anyhow::Result<PluginConfig> {
    let mut config = BTreeMap::new();
    if let Some(file) = file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        config = parse_config(&text).with_context(|| format!("config file {}", file.display()))?;
    }
    config.extend(overrides.iter().cloned());
    Ok(Arc::new(config))
}

/// A flat TOML table, or one under `[config]`. Numbers and booleans become their text, as
/// plugins parse every value from a string anyway.
fn parse_config(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut table: toml::Table = toml::from_str(text)?;
    if table.len() == 1
        && let Some(toml::Value::Table(inner)) = table.get("config")
    {
        table = inner.clone();
    }
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    value.to_string()
                }
                other => bail!("key `{key}`: expected a string, found {}", other.type_str()),
            };
            Ok((key, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_flat_or_nested_then_overrides() {
        let flat = parse_config("mode = \"ok\"\nlimit = 3\nstrict = true").unwrap();
        assert_eq!(flat["mode"], "ok");
        assert_eq!(
            (flat["limit"].as_str(), flat["strict"].as_str()),
            ("3", "true")
        );
        let nested = parse_config("[config]\nmode = \"loop\"").unwrap();
        assert_eq!(nested["mode"], "loop");
        assert!(
            parse_config("list = [1, 2]")
                .unwrap_err()
                .to_string()
                .contains("list")
        );
        let config = read_config(None, &[("mode".into(), "x=y".into())]).unwrap();
        assert_eq!(config["mode"], "x=y");
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(parse_key_value("novalue").is_err());
    }
}
