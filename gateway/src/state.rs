//! The running gateway's shared state: one handle per stage (the work plane, the control
//! plane, deliveries, plugins, health, metrics), the configuration in force, and what
//! readiness and shutdown need. `lib.rs::run` builds it; each stage reaches the handles it
//! uses.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
use tokio_util::task::TaskTracker;

use crate::config::Snapshot;
use crate::health::Health;
use crate::store::Store;

/// Everything the stages share. One per running gateway.
pub struct State {
    /// Durable storage of the work plane (events, queue, attempts, dead letters).
    pub store: Store,
    /// Apps, tokens, API subscriptions and plugins, nonces, health: in `store`'s database, or
    /// shared with other instances on NATS (`[storage] engine`).
    pub control: crate::control::ControlPlane,
    /// Events, the queue, the delivery log and dead letters: in `store`, or in JetStream
    /// shared with other instances (`[storage] engine`).
    pub work: crate::workplane::WorkPlane,
    /// The configuration in force; replaced whole on reload.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The delivery clients and slots.
    pub outbound: Arc<crate::delivery::Outbound>,
    /// The plugin host, the plugin slots and the threads plugin calls run on.
    pub plugins: Arc<crate::workplane::runner::calls::Plugins>,
    /// Delivery tasks in flight, for graceful shutdown.
    pub in_flight: TaskTracker,
    /// Consecutive failures per subscription.
    pub health: Arc<Health>,
    /// The delivery policies' state: rate limits and circuits.
    pub policies: Arc<crate::workplane::policy::Policies>,
    /// Times a stage (fan-out, dispatch) panicked and was restarted.
    pub stage_restarts: AtomicU64,
    /// Set once the stages run, cleared at shutdown (readiness).
    pub stages_running: std::sync::atomic::AtomicBool,
    /// Where the configuration comes from, and how reloads went.
    pub reloader: crate::reloader::Reloader,
    /// What the stages count, for `/metrics`.
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// Rate limits and OAuth1 nonces of the app API.
    pub auth: crate::guards::AuthState,
    /// The event catalog's live side: the types ingest saw, Odoo's field descriptions.
    pub catalog: Arc<crate::catalog::Catalog>,
}

impl State {
    /// Why the gateway cannot take events now (none when it can), each `<code>: <why>`: stages
    /// stopped; on sled writes failing, live data at its budget or the disk short of room
    /// (`store/space.rs`); on NATS the queue out of reach. What `/readyz` and the `ready` gauge
    /// say.
    pub fn not_ready(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self
            .stages_running
            .load(std::sync::atomic::Ordering::Acquire)
        {
            reasons.push("stages_not_running".to_owned());
        }
        if let Some(why) = self.work.refuses() {
            reasons.push(why);
        } else if let Some(error) = self.store.unavailable() {
            // On NATS, this instance's own database (polling cursors) failing.
            reasons.push(format!("storage_unavailable: {error}"));
        }
        reasons
    }
}

impl State {
    /// The handles the work plane's stages run with: the same ones, shared.
    pub fn work_handles(&self) -> Arc<crate::workplane::Handles> {
        Arc::new(crate::workplane::Handles {
            snapshot: self.snapshot.clone(),
            control: self.control.clone(),
            outbound: self.outbound.clone(),
            plugins: self.plugins.clone(),
            health: self.health.clone(),
            policies: self.policies.clone(),
            metrics: self.metrics.clone(),
            in_flight: self.in_flight.clone(),
        })
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}
