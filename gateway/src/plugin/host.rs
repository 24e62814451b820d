//! The plugin host: one wasmtime engine, its epoch ticker, and loading plugins into it.
//!
//! This module owns engine and pooling-allocator settings, the ticker thread that gives every
//! call its CPU deadline, and turning bytes into a [`Plugin`] (compile or load from the disk
//! cache, then type-check against the world, so a component of the wrong world is refused here
//! and never at its first event). It never runs a plugin's code: see `call`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy,
};

use super::bindings::{v1, v2};
use super::cache::DiskCache;
use super::call::CallState;
use super::call::Pre;
use super::{Plugin, PluginError, PluginLimits, error_chain};

/// Dirty linear-memory bytes reset in place (not unmapped) when a pooled slot is freed, when the
/// kernel can tell which pages a call dirtied. Measured (`benches/plugin_call.rs`): a Rust guest
/// dirties a few hundred KiB per call; unmapping them and faulting them back on the next call
/// was the largest part of a call's cost.
const KEEP_RESIDENT_WITH_PAGEMAP: usize = 32 << 20;

/// Without PAGEMAP_SCAN, the first bytes of memory are reset with `memset` whether dirty or not.
/// Rust guests put a 1 MiB stack first and touch only its top, so a large value would clear
/// mostly clean memory: measured slower than unmapping above 64 KiB.
const KEEP_RESIDENT_WITHOUT_PAGEMAP: usize = 64 << 10;

/// Table bytes reset in place when a slot is freed (measured: faster than unmapping).
const TABLE_KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Freed slots whose memory must be unmapped are batched, so one flush serves several calls
/// (measured: about 3 µs less per call than 1). Slots in a batch are flushed early when the pool
/// runs out.
const DECOMMIT_BATCH: usize = 8;

/// Core instances one component may contain. A Rust guest has two or three (the module and
/// wit-component's shims); componentize-py makes 14 (CPython's libraries are linked as separate
/// modules, plus the WASI adapter), componentize-js about 6.
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;

/// Core instances in the pool, per plugin slot: a mix of small and large components fits.
const CORE_INSTANCES_PER_SLOT: u32 = 16;

/// Tables one component may contain (function tables of the modules plus shim tables).
const TABLES_PER_COMPONENT: u32 = 32;

/// Tables in the pool, per plugin slot.
const TABLES_PER_SLOT: u32 = 8;

/// Linear memories one component may contain: the guest's, and the WASI adapter's own when a
/// toolchain keeps it separate.
const MEMORIES_PER_COMPONENT: u32 = 4;

/// Memories in the pool, per plugin slot. Each is an address-space reservation, not memory.
const MEMORIES_PER_SLOT: u32 = 2;

/// Set (to anything) in the environment, the host writes the names of the plugin functions it
/// compiles to /tmp/perf-<pid>.map, so that `perf report` names them.
pub(crate) const PERFMAP_ENV: &str = "ODOO_GATEWAY_PLUGIN_PERFMAP";

/// Elements one table may hold: CPython's function table is tens of thousands of entries.
const TABLE_ELEMENTS: usize = 100_000;

/// Loads plugins and owns what they share. Cheap to clone; the engine and its ticker thread live
/// until the last host handle and the last [`Plugin`] loaded from it are dropped.
#[derive(Clone, Debug)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub(crate) engine: Engine,
    pub(crate) limits: PluginLimits,
    linker: Linker<CallState>,
    cache: Option<DiskCache>,
    _ticker: Ticker,
}

impl PluginHost {
    /// Builds the engine for `limits` and starts its epoch ticker. With `cache_dir`, compiled
    /// plugins are kept there across restarts (the directory is created if needed).
    pub fn new(limits: PluginLimits, cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let engine =
            Engine::new(&engine_config(&limits)).map_err(|e| PluginError::Host(error_chain(&e)))?;
        let mut linker = Linker::new(&engine);
        // Both versions of the world: their interfaces' names differ by version.
        v1::Plugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .and_then(|()| {
                v2::Plugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
            })
            .map_err(|e| PluginError::Host(error_chain(&e)))?;
        super::wasi::add_to_linker(&mut linker).map_err(|e| PluginError::Host(error_chain(&e)))?;
        let cache = cache_dir
            .map(|dir| {
                DiskCache::open(dir.clone(), &engine).map_err(|e| {
                    PluginError::Host(format!("plugin cache directory {}: {e}", dir.display()))
                })
            })
            .transpose()?;
        let ticker = Ticker::start(engine.clone())
            .map_err(|e| PluginError::Host(format!("epoch ticker: {e}")))?;
        Ok(Self {
            inner: Arc::new(HostInner {
                engine,
                limits,
                linker,
                cache,
                _ticker: ticker,
            }),
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &PluginLimits {
        &self.inner.limits
    }

    /// Removes cached compilations of plugins not in `in_use` (wasm hashes) that are older than
    /// `grace`; returns how many. A no-op without a cache.
    pub fn prune_cache(
        &self,
        in_use: &std::collections::HashSet<String>,
        grace: std::time::Duration,
    ) -> usize {
        self.inner
            .cache
            .as_ref()
            .map_or(0, |cache| cache.prune(in_use, grace))
    }

    /// Compiles (or loads from the cache) and type-checks a plugin. `wasm` is a component binary
    /// or its text form.
    pub fn load(&self, wasm: &[u8]) -> Result<Plugin, PluginError> {
        refuse_core_module(wasm)?;
        let hash = hex::encode(Sha256::digest(wasm));
        let started = Instant::now();
        let cached = self
            .inner
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.inner.engine, &hash));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => {
                let component = Component::new(&self.inner.engine, wasm)
                    .map_err(|e| PluginError::Compile(error_chain(&e)))?;
                if let Some(cache) = &self.inner.cache {
                    cache.store(&hash, &component);
                }
                component
            }
        };
        let load_time = started.elapsed();
        let pre = self.pre(&component)?;
        Ok(Plugin::new(
            self.inner.clone(),
            pre,
            hash,
            wasm.len(),
            from_cache,
            load_time,
        ))
    }

    /// Links `component` and checks its exports against the world it imports (a component
    /// names the version in its imports: `odoo-gateway:plugin/types@0.2.0`); one importing
    /// neither is tried against both, newest first.
    fn pre(&self, component: &Component) -> Result<Pre, PluginError> {
        let not_a_plugin = |e: wasmtime::Error| PluginError::NotAPlugin(error_chain(&e));
        let linked = self
            .inner
            .linker
            .instantiate_pre(component)
            .map_err(not_a_plugin)?;
        let imports = component.component_type();
        let mut names = imports.imports(&self.inner.engine).map(|(name, _)| name);
        let older =
            names.any(|name| name.starts_with("odoo-gateway:plugin/") && name.ends_with("@0.1.0"));
        let v2 = || v2::PluginPre::new(linked.clone()).map(Pre::V2);
        let v1 = || v1::PluginPre::new(linked.clone()).map(Pre::V1);
        if older {
            v1().map_err(not_a_plugin)
        } else {
            v2().or_else(|e| v1().map_err(|_| e)).map_err(not_a_plugin)
        }
    }

    /// Reads and loads a plugin file.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, PluginError> {
        let wasm = std::fs::read(path).map_err(|e| PluginError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        self.load(&wasm)
    }
}

/// A clear message for the most common mistake: shipping the core module that `cargo build`
/// produced instead of the component `xtask build-plugins` wraps it into.
fn refuse_core_module(wasm: &[u8]) -> Result<(), PluginError> {
    const CORE_HEADER: [u8; 8] = *b"\0asm\x01\0\0\0";
    let is_core_text =
        std::str::from_utf8(wasm).is_ok_and(|text| text.trim_start().starts_with("(module"));
    if wasm.starts_with(&CORE_HEADER) || is_core_text {
        return Err(PluginError::NotAPlugin(
            "this is a core WebAssembly module, not a component; build plugins with \
             `cargo run -p xtask -- build-plugins`, which wraps the module into a component"
                .into(),
        ));
    }
    Ok(())
}

fn engine_config(limits: &PluginLimits) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    let instances = limits.max_instances.max(1);
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_SLOT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(instances.saturating_mul(MEMORIES_PER_SLOT))
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(instances.saturating_mul(TABLES_PER_SLOT))
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .max_memory_size(limits.memory_ceiling())
        .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES)
        .decommit_batch_size(DECOMMIT_BATCH);
    // With PAGEMAP_SCAN (Linux 6.7+) only the pages a call dirtied are reset, by copying, up to
    // the keep-resident bound: nothing is unmapped, so the next call takes no page faults.
    // Without it the first `keep_resident` bytes are reset whole, so keep that small.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT_WITH_PAGEMAP);
    } else {
        pool.linear_memory_keep_resident(KEEP_RESIDENT_WITHOUT_PAGEMAP);
    }
    // The default 4 GiB reservation per memory is kept: it is address space, not memory, and it
    // lets compiled code skip bounds checks.
    let mut config = Config::new();
    if std::env::var_os(PERFMAP_ENV).is_some() {
        // For `perf`: the names of compiled plugin functions in /tmp/perf-<pid>.map.
        config.profiler(ProfilingStrategy::PerfMap);
    }
    config
        .epoch_interruption(true)
        .parallel_compilation(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every [`PluginLimits::TICK`] on its own thread, which stops when
/// this value is dropped.
#[derive(Debug)]
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                // Dropping the sender wakes this at once with `Disconnected`.
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(PluginLimits::TICK)
                {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for HostInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostInner")
            .field("limits", &self.limits)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ticker_stops_at_once_when_dropped() {
        let ticker = Ticker::start(Engine::default()).unwrap();
        std::thread::sleep(PluginLimits::TICK * 2);
        let started = Instant::now();
        drop(ticker);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn core_modules_are_told_apart_from_components() {
        assert!(refuse_core_module(b"\0asm\x01\0\0\0").is_err());
        assert!(refuse_core_module(b"  (module)").is_err());
        assert!(refuse_core_module(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(refuse_core_module(b"(component)").is_ok());
    }
}
