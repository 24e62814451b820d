//! The virtual WASI 0.2 a plugin's language runtime sees underneath the `plugin` world.
//!
//! Python, JavaScript and C guests are built on WASI (their runtimes read clocks, ask for random
//! bytes, write to stdout). This module gives them exactly enough of it to run while keeping the
//! sandbox's promise: a call is a pure function of the event and the configuration, and it reaches
//! nothing outside its instance. What each interface does is listed in [`INTERFACES`], which
//! `plugin check` prints and the README's table repeats:
//!
//! - clocks: wall and monotonic clocks are frozen at the event's `received-at-ms`; sleeping and
//!   waiting on a clock return at once (time does not pass inside a call);
//! - random: a stream seeded from the event id (SHA-256 in counter mode), so the same event gets
//!   the same bytes in every call and every replay, and two reads in one call differ;
//! - stdout and stderr: captured line by line into the call's log (info and error level), under
//!   the same caps as the `log` interface;
//! - stdin is empty, the environment and the arguments are empty, there is no working directory;
//! - filesystem: no preopened directory, so there is nothing to open;
//! - sockets: TCP, UDP and name lookups are refused (`access-denied`);
//! - `wasi:cli/exit` ends the call as a trap.
//!
//! It never touches the host's clock, entropy, files, environment or network on a guest's behalf.

use std::convert::Infallible;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxBuilder};

use super::call::CallState;
use super::log::{LogSink, Stdio, StdioCapture};

/// Largest `get-random-bytes` request served at once; a larger one traps instead of making the
/// host allocate it.
const MAX_RANDOM_REQUEST: u64 = 1 << 20;

/// How each WASI 0.2 interface behaves for plugins: (interface without version, behaviour).
/// A component importing anything not listed here is refused at load.
pub const INTERFACES: &[(&str, &str)] = &[
    (
        "wasi:cli/environment",
        "empty: no variables, no arguments, no working directory",
    ),
    ("wasi:cli/exit", "ends the call as a trap (plugin_trapped)"),
    ("wasi:cli/stdin", "empty: reads see end of stream"),
    (
        "wasi:cli/stdout",
        "captured into the call's log at info level, capped like `log`",
    ),
    (
        "wasi:cli/stderr",
        "captured into the call's log at error level, capped like `log`",
    ),
    ("wasi:cli/terminal-input", "no terminal"),
    ("wasi:cli/terminal-output", "no terminal"),
    ("wasi:cli/terminal-stdin", "no terminal"),
    ("wasi:cli/terminal-stdout", "no terminal"),
    ("wasi:cli/terminal-stderr", "no terminal"),
    (
        "wasi:clocks/wall-clock",
        "frozen at the event's received-at-ms",
    ),
    (
        "wasi:clocks/monotonic-clock",
        "frozen at received-at-ms (in ns); waits return at once",
    ),
    ("wasi:filesystem/preopens", "no preopened directories"),
    (
        "wasi:filesystem/types",
        "present, but nothing can be opened without a directory",
    ),
    ("wasi:io/error", "provided"),
    (
        "wasi:io/poll",
        "provided (every pollable a plugin can make is ready at once)",
    ),
    ("wasi:io/streams", "provided (stdio only)"),
    (
        "wasi:random/random",
        "seeded from the event id: same event, same bytes",
    ),
    (
        "wasi:random/insecure",
        "seeded from the event id: same event, same bytes",
    ),
    ("wasi:random/insecure-seed", "derived from the event id"),
    (
        "wasi:sockets/instance-network",
        "present; every use of it is refused",
    ),
    (
        "wasi:sockets/network",
        "present; every use of it is refused",
    ),
    ("wasi:sockets/tcp", "refused: access-denied"),
    ("wasi:sockets/tcp-create-socket", "refused: access-denied"),
    ("wasi:sockets/udp", "refused: access-denied"),
    ("wasi:sockets/udp-create-socket", "refused: access-denied"),
    ("wasi:sockets/ip-name-lookup", "refused: access-denied"),
];

/// What the host does for `interface` (a WASI import name, with or without `@version`), or
/// `None` when the host does not provide it.
pub fn describe(interface: &str) -> Option<&'static str> {
    let bare = interface.split('@').next().unwrap_or(interface);
    INTERFACES
        .iter()
        .find(|(name, _)| *name == bare)
        .map(|(_, behaviour)| *behaviour)
}

/// The per-call WASI state kept in the store: the context and its resource table.
pub(crate) struct CallWasi {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    /// The frozen monotonic clock, in nanoseconds.
    monotonic_now: u64,
}

/// What the call being set up is about: the seed of its clocks and random stream.
#[derive(Debug, Clone)]
pub(crate) struct Seed {
    /// The event id (empty for `validate-config`, which has no event).
    pub(crate) event_id: String,
    /// The event's `received-at-ms` (0 for `validate-config`).
    pub(crate) received_at_ms: u64,
}

impl CallWasi {
    /// A fresh context for one call, frozen at `seed`, writing stdio into `sink`.
    pub(crate) fn new(seed: &Seed, sink: &LogSink) -> Self {
        let wall = Duration::from_millis(seed.received_at_ms);
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(StdioCapture::new(sink, Stdio::Stdout))
            .stderr(StdioCapture::new(sink, Stdio::Stderr))
            .wall_clock(FrozenWallClock(wall))
            .secure_random(EventRandom::new(&seed.event_id, b"random"))
            .insecure_random(EventRandom::new(&seed.event_id, b"insecure"))
            .insecure_random_seed(insecure_seed(&seed.event_id))
            .max_random_size(MAX_RANDOM_REQUEST)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        Self {
            ctx: builder.build(),
            table: ResourceTable::new(),
            monotonic_now: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

/// Adds every WASI 0.2 interface of [`INTERFACES`] to `linker`, with the monotonic clock
/// replaced by the frozen one.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    // wasmtime-wasi's monotonic clock sleeps on the host's clock when a guest waits, which no
    // epoch deadline can interrupt: define the interface again, frozen.
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<CallState, FrozenMonotonic>(linker, |state| {
        let wasi = state.wasi();
        FrozenMonotonicView {
            now: wasi.monotonic_now,
            table: &mut wasi.table,
        }
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The wall clock of a call: always the event's time.
struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// [`HasData`] for the frozen monotonic clock.
struct FrozenMonotonic;

impl HasData for FrozenMonotonic {
    type Data<'a> = FrozenMonotonicView<'a>;
}

struct FrozenMonotonicView<'a> {
    now: u64,
    table: &'a mut ResourceTable,
}

impl monotonic_clock::Host for FrozenMonotonicView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.now)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1_000_000)
    }

    fn subscribe_instant(
        &mut self,
        _when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        ready_at_once(self.table)
    }

    fn subscribe_duration(
        &mut self,
        _duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        ready_at_once(self.table)
    }
}

/// A pollable that is always ready: waiting on a frozen clock never blocks the host thread
/// (the epoch deadline cannot interrupt a host call).
struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

fn ready_at_once(table: &mut ResourceTable) -> wasmtime::Result<Resource<DynPollable>> {
    let ready = table.push(Ready)?;
    subscribe(table, ready)
}

/// A random stream that depends only on the event id: SHA-256 of (domain, id, block counter).
/// Deterministic by design: plugins must not use it for secrets, and need none.
pub(crate) struct EventRandom {
    key: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl EventRandom {
    pub(crate) fn new(event_id: &str, domain: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"odoo-gateway plugin wasi ");
        hasher.update(domain);
        hasher.update([0]);
        hasher.update(event_id.as_bytes());
        Self {
            key: hasher.finalize().into(),
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    fn next_byte(&mut self) -> u8 {
        if self.used == self.block.len() {
            let mut hasher = Sha256::new();
            hasher.update(self.key);
            hasher.update(self.counter.to_le_bytes());
            self.block = hasher.finalize().into();
            self.counter += 1;
            self.used = 0;
        }
        let byte = self.block[self.used];
        self.used += 1;
        byte
    }
}

impl rand_core::TryRng for EventRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst {
            *byte = self.next_byte();
        }
        Ok(())
    }
}

fn insecure_seed(event_id: &str) -> u128 {
    let mut bytes = [0; 16];
    let mut random = EventRandom::new(event_id, b"insecure-seed");
    for byte in &mut bytes {
        *byte = random.next_byte();
    }
    u128::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use rand_core::TryRng;

    use super::*;

    #[test]
    fn the_random_stream_depends_on_the_event_only() {
        let read = |id: &str| {
            let mut random = EventRandom::new(id, b"random");
            let mut bytes = [0u8; 80];
            random.try_fill_bytes(&mut bytes).unwrap();
            bytes
        };
        assert_eq!(read("evt-1"), read("evt-1"));
        assert_ne!(read("evt-1"), read("evt-2"));
        let bytes = read("evt-1");
        assert_ne!(bytes[..32], bytes[32..64], "blocks differ within a stream");
        assert_ne!(
            EventRandom::new("e", b"random").try_next_u64().unwrap(),
            EventRandom::new("e", b"insecure").try_next_u64().unwrap()
        );
    }

    #[test]
    fn every_interface_is_described_with_or_without_a_version() {
        assert_eq!(
            describe("wasi:clocks/wall-clock@0.2.3"),
            Some("frozen at the event's received-at-ms")
        );
        assert!(describe("wasi:sockets/tcp").is_some());
        assert_eq!(describe("wasi:http/outgoing-handler@0.2.0"), None);
    }
}
