//! One plugin call: a fresh store and instance, the export, and the verdict.
//!
//! This module owns [`Plugin`] and what a call's store holds ([`CallState`]: the configuration,
//! the memory guard, the log, the call's virtual WASI). Every call gets a new store, so nothing leaks from one event
//! to the next and a trapped instance is simply dropped. It turns every wasmtime failure into a
//! [`PluginError`] and never lets an unchecked guest result out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};

use super::bindings::{RawDelivery, RawError, v1, v2};
use super::guard::MemoryGuard;
use super::host::HostInner;
use super::log::LogSink;
use super::output::{check_deliveries, truncate_line};
use super::wasi::{CallWasi, Seed};
use super::{
    CallLimits, Delivery, LogLevel, LogLine, PluginConfig, PluginError, PluginOutput,
    PluginOverrides, error_chain,
};
use crate::event::Event;

/// A loaded plugin: compiled, type-checked, ready to call from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
    /// Time and memory of each call: the host's defaults or the subscription's own.
    limits: CallLimits,
}

struct PluginInner {
    host: Arc<HostInner>,
    /// The first digits of `hash`, naming the plugin in log lines.
    short_hash: Arc<str>,
    pre: Pre,
    hash: String,
    size: usize,
    from_cache: bool,
    load_time: Duration,
}

/// The outcome of one call with the log lines it wrote, whether it succeeded or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReport<T> {
    /// What the export returned, checked, or why the call failed.
    pub result: Result<T, PluginError>,
    /// Lines the plugin logged before returning or failing.
    pub logs: Vec<LogLine>,
    /// Lines dropped past `max_log_lines`.
    pub logs_dropped: usize,
    /// The most memory the instance held at once, in bytes (every linear memory and table of
    /// the component together, from instantiation on).
    pub memory_bytes: usize,
    /// How long making the call's fresh instance took (the rest of the call is the guest's).
    pub instantiate_time: Duration,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("hash", &self.inner.hash)
            .field("size", &self.inner.size)
            .field("from_cache", &self.inner.from_cache)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub(crate) fn new(
        host: Arc<HostInner>,
        pre: Pre,
        hash: String,
        size: usize,
        from_cache: bool,
        load_time: Duration,
    ) -> Self {
        Self {
            limits: host.limits.defaults(),
            inner: Arc::new(PluginInner {
                host,
                short_hash: short_hash(&hash),
                pre,
                hash,
                size,
                from_cache,
                load_time,
            }),
        }
    }

    /// The same plugin, its calls bounded by `overrides` (a subscription's `plugin_limits`)
    /// instead of the defaults; refused above the operator's maximum.
    pub fn with_limits(&self, overrides: &PluginOverrides) -> Result<Self, String> {
        Ok(Self {
            inner: self.inner.clone(),
            limits: self.inner.host.limits.with_overrides(overrides)?,
        })
    }

    /// The time and memory bounds of this plugin's calls.
    pub fn limits(&self) -> CallLimits {
        self.limits
    }

    /// The first digits of [`Plugin::hash`]: what names the plugin in log lines and metrics.
    pub fn short_hash(&self) -> &str {
        &self.inner.short_hash
    }

    /// Hex SHA-256 of the plugin's bytes: its version identity.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// Size of the plugin's bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// The world this plugin implements (one of [`super::WORLDS`], checked at load).
    pub fn world(&self) -> &'static str {
        match self.inner.pre {
            Pre::V1(_) => super::WORLDS[0],
            Pre::V2(_) => super::WORLDS[1],
        }
    }

    /// Whether the compiled code came from the disk cache rather than a compilation.
    pub fn from_cache(&self) -> bool {
        self.inner.from_cache
    }

    /// How long compiling (or loading from the cache) took.
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// Runs `validate-config` against `config`.
    pub fn validate_config(&self, config: &PluginConfig) -> Result<(), PluginError> {
        self.validate_config_report(config).result
    }

    /// [`Plugin::validate_config`], also returning the log lines.
    pub fn validate_config_report(&self, config: &PluginConfig) -> CallReport<()> {
        let seed = Seed {
            event_id: String::new(),
            received_at_ms: 0,
        };
        self.call(
            seed,
            config,
            |store, plugin| plugin.validate_config(store),
            |result, _| result.map_err(PluginError::InvalidConfig),
        )
    }

    /// Runs `handle` on `event` with `config`; the deliveries are checked against the limits.
    pub fn handle(
        &self,
        event: &Event,
        config: &PluginConfig,
    ) -> Result<PluginOutput, PluginError> {
        let report = self.handle_report(event, config);
        report.result.map(|deliveries| PluginOutput {
            deliveries,
            logs: report.logs,
            logs_dropped: report.logs_dropped,
        })
    }

    /// [`Plugin::handle`], also returning the log lines when the call fails.
    pub fn handle_report(&self, event: &Event, config: &PluginConfig) -> CallReport<Vec<Delivery>> {
        let limits = &self.inner.host.limits;
        let seed = Seed {
            event_id: event.id.clone(),
            received_at_ms: event.received_at_ms,
        };
        self.call(
            seed,
            config,
            |store, plugin| plugin.handle(store, event),
            |result, max_message| match result {
                Ok(raw) => check_deliveries(raw, limits),
                Err(RawError::Reject(m)) => {
                    Err(PluginError::Rejected(truncate_line(m, max_message)))
                }
                Err(RawError::Retry(m)) => Err(PluginError::Retry(truncate_line(m, max_message))),
                Err(RawError::InvalidConfig(m)) => {
                    Err(PluginError::InvalidConfig(truncate_line(m, max_message)))
                }
            },
        )
    }

    /// Instantiates into a fresh store under the limits, calls `export`, and converts its result
    /// with `finish` (which gets the longest message length to keep).
    fn call<R, T>(
        &self,
        seed: Seed,
        config: &PluginConfig,
        export: impl FnOnce(&mut Store<CallState>, Instance) -> wasmtime::Result<R>,
        finish: impl FnOnce(R, usize) -> Result<T, PluginError>,
    ) -> CallReport<T> {
        let host = &self.inner.host;
        let limits = &host.limits;
        let sink = LogSink::new(
            self.inner.short_hash.clone(),
            limits.max_log_lines,
            limits.max_log_line_bytes,
        );
        let state = CallState {
            config: config.clone(),
            memory: MemoryGuard::new(self.limits.memory_bytes),
            seed,
            wasi: None,
            logs: sink,
        };
        let mut store = Store::new(&host.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        store.epoch_deadline_trap();
        // Bounds what the host copies out of the guest in one go (the call's result, a `log`
        // line) to what the output limits could ever accept: a 16 MiB body or 100,000
        // deliveries are refused while being lifted, before they are copied whole.
        store.set_hostcall_fuel(hostcall_fuel(limits));
        let started = Instant::now();
        let instance = self.inner.pre.instantiate(&mut store);
        let instantiate_time = started.elapsed();
        let returned = instance.and_then(|plugin| export(&mut store, plugin));
        let result = match returned {
            Ok(value) => finish(value, limits.max_log_line_bytes),
            Err(e) => Err(classify(&e, store.data(), self.limits.cpu_time)),
        };
        let state = store.into_data();
        let memory_bytes = state.memory.peak();
        let (logs, logs_dropped) = state.logs.finish();
        if logs_dropped > 0 {
            tracing::warn!(
                target: "plugin",
                plugin = &*self.inner.short_hash,
                dropped = logs_dropped,
                "plugin log lines over the limit were dropped"
            );
        }
        CallReport {
            result,
            logs,
            logs_dropped,
            memory_bytes,
            instantiate_time,
        }
    }
}

/// Bytes of lifted record structure allowed per delivery beyond its body (names, headers).
const FUEL_PER_DELIVERY: usize = 512;
/// Room for the result's own framing.
const FUEL_SLACK: usize = 64 * 1024;

/// The most data one lift from the guest may copy: the largest output the limits accept.
fn hostcall_fuel(limits: &super::PluginLimits) -> usize {
    limits
        .max_total_output_bytes
        .saturating_add(limits.max_deliveries.saturating_mul(FUEL_PER_DELIVERY))
        .saturating_add(FUEL_SLACK)
}

/// How wasmtime says a lift ran out of hostcall fuel (its error type is private).
const FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Names the failure of a call that did not return normally.
fn classify(error: &wasmtime::Error, state: &CallState, cpu_time: Duration) -> PluginError {
    // The guard's record comes first: a refused growth surfaces as a trap or as the guest's own
    // abort, depending on how the guest handles allocation failure.
    if state.memory.exceeded() {
        return PluginError::MemoryExceeded {
            limit_bytes: state.memory.limit(),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::CpuExceeded { limit: cpu_time },
        Some(trap) => {
            let place = error
                .downcast_ref::<wasmtime::WasmBacktrace>()
                .and_then(|bt| {
                    bt.frames()
                        .first()
                        .and_then(|f| f.func_name().map(str::to_owned))
                });
            let mut message = trap.to_string();
            if let Some(func) = place {
                message.push_str(&format!(" in {func}"));
            }
            // A guest that panics logs why just before it aborts (the SDK's panic hook, an
            // interpreter's traceback on stderr): the trap alone would only say `unreachable`.
            if let Some(line) = state.logs.last_error() {
                message.push_str(&format!(" (last error logged: {line})"));
            }
            PluginError::Trapped(message)
        }
        // `wasi:cli/exit`: the guest's runtime ended the call itself.
        None if error.downcast_ref::<wasmtime_wasi::I32Exit>().is_some() => {
            let status = error
                .downcast_ref::<wasmtime_wasi::I32Exit>()
                .map_or(0, |e| e.0);
            PluginError::Trapped(format!(
                "the plugin exited (wasi:cli/exit) with status {status}"
            ))
        }
        // The result (or a log line) was larger than any output the limits accept.
        None if error_chain(error).contains(FUEL_EXHAUSTED) => PluginError::OutputTooLarge(
            "the plugin returned more data than the output limits allow; it was not copied".into(),
        ),
        // Not a trap: instantiation itself failed (no free pooling slot, for one).
        None => PluginError::Instantiate(error_chain(error)),
    }
}

/// First 12 hex digits of a plugin hash: enough to tell versions apart in logs.
fn short_hash(hash: &str) -> Arc<str> {
    Arc::from(&hash[..hash.len().min(12)])
}

/// What a call's store holds: the guest's view of the host.
pub(crate) struct CallState {
    config: PluginConfig,
    memory: MemoryGuard,
    logs: LogSink,
    seed: Seed,
    /// Built at the guest's first WASI call: a Rust plugin, which imports none, never pays
    /// for it.
    wasi: Option<CallWasi>,
}

impl CallState {
    /// The call's virtual WASI.
    pub(crate) fn wasi(&mut self) -> &mut CallWasi {
        let Self {
            seed, logs, wasi, ..
        } = self;
        wasi.get_or_insert_with(|| CallWasi::new(seed, logs))
    }
}

impl wasmtime_wasi::WasiView for CallState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        let wasi = self.wasi();
        wasmtime_wasi::WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

/// The host side of the plugin world's imports, for each version of the world (they differ in
/// the `delivery` record only).
macro_rules! world_imports {
    ($world:ident) => {
        impl $world::odoo_gateway::plugin::log::Host for CallState {
            fn log(&mut self, level: $world::Level, message: String) {
                self.logs.log(LogLevel::from(level), message);
            }
        }

        impl $world::odoo_gateway::plugin::config::Host for CallState {
            fn get(&mut self, key: String) -> Option<String> {
                self.config.get(&key).cloned()
            }

            fn entries(&mut self) -> Vec<(String, String)> {
                self.config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }
        }

        impl $world::odoo_gateway::plugin::types::Host for CallState {}
    };
}

world_imports!(v1);
world_imports!(v2);

/// A loaded plugin's component, linked and type-checked against the world it implements.
pub(crate) enum Pre {
    /// `odoo-gateway:plugin/plugin@0.1.0`.
    V1(v1::PluginPre<CallState>),
    /// `odoo-gateway:plugin/plugin@0.2.0`.
    V2(v2::PluginPre<CallState>),
}

impl Pre {
    fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Self::V1(pre) => Instance::V1(pre.instantiate(store)?),
            Self::V2(pre) => Instance::V2(pre.instantiate(store)?),
        })
    }
}

/// One call's instance.
pub(crate) enum Instance {
    V1(v1::Plugin),
    V2(v2::Plugin),
}

/// The world's `event` record of module `$world` for `$event`.
macro_rules! wit_event {
    ($world:ident, $event:expr) => {
        $world::WitEvent {
            id: $event.id.clone(),
            source: $event.source.clone(),
            model: $event.model.clone(),
            action: $event.action.clone(),
            record_id: $event.record_id,
            received_at_ms: $event.received_at_ms,
            payload: $event.payload.clone(),
            headers: $event.headers.clone(),
        }
    };
}

/// What `handle` returned, in either world's terms.
type Handled = Result<Vec<RawDelivery>, RawError>;

impl Instance {
    fn handle(self, store: &mut Store<CallState>, event: &Event) -> wasmtime::Result<Handled> {
        fn raw<D: Into<RawDelivery>, E: Into<RawError>>(result: Result<Vec<D>, E>) -> Handled {
            result
                .map(|d| d.into_iter().map(Into::into).collect())
                .map_err(Into::into)
        }
        Ok(match self {
            Self::V1(plugin) => raw(plugin.call_handle(store, &wit_event!(v1, event))?),
            Self::V2(plugin) => raw(plugin.call_handle(store, &wit_event!(v2, event))?),
        })
    }

    fn validate_config(self, store: &mut Store<CallState>) -> wasmtime::Result<Result<(), String>> {
        match self {
            Self::V1(plugin) => plugin.call_validate_config(store),
            Self::V2(plugin) => plugin.call_validate_config(store),
        }
    }
}
