//! The Odoo connector's stages, over the client in [`crate::odoo`] (enrichment is part of the
//! transform step: [`crate::transform::enrich`]).
//!
//! - [`poll`]: a stage that polls models for changes and turns them into events through the
//!   store's accept path, for Odoo versions without the webhook action (9 to 16) or to
//!   reconcile the fire-and-forget webhook of 17+; [`cursor`]: where it stands (a second, as
//!   Odoo shows `write_date`); [`plan`]: how it reads on from there; [`shared`]: on the NATS
//!   engine, the cursors, one lease per model and the changes seen, shared by every instance,
//!   so that one instance polls a model at a time.
//!
//! The event catalog, which reads Odoo's `fields_get` through the same client, is
//! [`crate::catalog`].
//!
//! Nothing here runs on the ingest path (a webhook body's change key in reconcile mode is
//! `config::Source::webhook_change`), and nothing here writes queued work directly: polled
//! events enter like any other accepted event, and fan-out does the rest. The polling stage
//! runs with its [`Handles`], not with the gateway's state.

pub mod cursor;
pub mod plan;
pub mod poll;
pub mod shared;

use std::sync::Arc;

use arc_swap::ArcSwap;

/// What the polling stage runs with, shared with the rest of the gateway: the configuration
/// in force, the work plane that takes polled events, this instance's database (cursors and
/// id sets on sled), and the control plane (on NATS, the connection the shared cursors and
/// leases use).
#[derive(Debug, Clone)]
pub struct Handles {
    /// The configuration in force (replaced whole on reload).
    pub snapshot: Arc<ArcSwap<crate::config::Snapshot>>,
    /// Where polled events go.
    pub work: crate::workplane::WorkPlane,
    /// This instance's database.
    pub store: crate::store::Store,
    /// The control plane.
    pub control: crate::control::ControlPlane,
}
