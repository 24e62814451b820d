//! Command-line subcommands: `main.rs` calls [`main`], which parses arguments and runs one.

mod admin_client;
pub mod apps;
pub mod config;
pub mod event_types;
pub mod inbox;
pub mod odoo;
pub mod operate;
pub mod plugin;
pub mod scaffold;
pub mod storage;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Webhook gateway for Odoo: durable ingest, WebAssembly plugins, signed deliveries.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// How log lines are written to stderr: `text` (coloured only on a terminal) or `json`
    /// (one object per line, for log collectors).
    #[arg(
        long,
        global = true,
        env = "ODOO_GATEWAY_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (on the embedded example configuration when no --config is given).
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen here instead of `server.listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// A local receiver that prints deliveries and checks their signatures.
    Inbox(crate::cli::inbox::InboxArgs),
    /// Tools for plugin authors.
    #[command(subcommand)]
    Plugin(crate::cli::plugin::PluginCommand),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The database on disk: `compact` gives unused space back (gateway stopped).
    #[command(subcommand)]
    Storage(crate::cli::storage::StorageCommand),
    /// Third-party apps: register, list, remove (through the running gateway's admin API).
    Apps(crate::cli::apps::AppsCommand),
    /// The Odoo connector: polling cursors (through the running gateway's admin API).
    Odoo(crate::cli::odoo::OdooCommand),
    /// The event catalog: the event types, their schemas and examples (through the running
    /// gateway's admin API).
    EventTypes(crate::cli::event_types::EventTypesCommand),
    /// Operating a running gateway: status, events, dead letters, subscriptions.
    #[command(flatten)]
    Operate(crate::cli::operate::Operate),
}

/// The form of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), beside the layer that exports
/// the stage spans over OTLP once `[telemetry.otlp]` starts a pipeline (not filtered by
/// `RUST_LOG`; the stage spans stay out of the log lines). Once per process: a second call
/// changes nothing.
pub fn init_logs(format: LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if let Ok(directive) = format!("{}=off", crate::trace::TARGET).parse() {
        filter = filter.add_directive(directive);
    }
    let log_level =
        tracing_subscriber::Layer::<tracing_subscriber::Registry>::max_level_hint(&filter);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(crate::telemetry::otlp::layer())
        .try_init();
    // `try_init` sets the `log` crate's maximum level from every layer's hint, the OTLP
    // layer's TRACE among them; the `log` records of dependencies (sled, hyper) only ever reach the log
    // lines, so their maximum is the log filter's: below it a record stops at `log`'s own check
    // instead of going through the bridge and the filters.
    if let (Ok(()), Some(level)) = (installed, log_level) {
        log::set_max_level(match level.into_level() {
            None => log::LevelFilter::Off,
            Some(tracing::Level::ERROR) => log::LevelFilter::Error,
            Some(tracing::Level::WARN) => log::LevelFilter::Warn,
            Some(tracing::Level::INFO) => log::LevelFilter::Info,
            Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
            Some(tracing::Level::TRACE) => log::LevelFilter::Trace,
        });
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file, loading every plugin, and summarise what would run.
    Check {
        /// Configuration file (TOML).
        file: PathBuf,
    },
}

/// The whole command line: parses arguments, runs the subcommand, returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Serve { config, listen } => {
            runtime().and_then(|rt| rt.block_on(serve(config, listen)))
        }
        Command::Inbox(args) => runtime()
            .and_then(|rt| rt.block_on(crate::cli::inbox::run(args)))
            .map(|()| ExitCode::SUCCESS),
        Command::Plugin(cmd) => cmd.execute(),
        Command::Config(ConfigCommand::Check { file }) => crate::cli::config::check(&file),
        Command::Storage(cmd) => cmd.execute(&mut std::io::stdout()),
        Command::Operate(cmd) => runtime()
            .and_then(|rt| rt.block_on(cmd.run(&mut std::io::stdout())))
            .map(|()| ExitCode::SUCCESS),
        Command::Odoo(cmd) => runtime()
            .and_then(|rt| rt.block_on(cmd.run(&mut std::io::stdout())))
            .map(|()| ExitCode::SUCCESS),
        Command::EventTypes(cmd) => runtime()
            .and_then(|rt| rt.block_on(cmd.run(&mut std::io::stdout())))
            .map(|()| ExitCode::SUCCESS),
        Command::Apps(cmd) => runtime()
            .and_then(|rt| rt.block_on(cmd.run(&mut std::io::stdout())))
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

async fn serve(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let source = match config {
        Some(path) => crate::reload::ConfigSource::File(path),
        // As if read from ./config/gateway.example.toml: its paths are relative to config/.
        None => crate::reload::ConfigSource::Text {
            text: crate::config::EXAMPLE.to_owned(),
            base: std::env::current_dir()?.join("config"),
            origin: "<embedded example>".to_owned(),
        },
    };
    let (file, _, _) = source.read()?;
    let addr = listen.unwrap_or(file.server.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    crate::run(source, listener, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
