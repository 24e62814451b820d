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
//! `config::Source::webhook_change`), and nothing here writes queued work directly: polled events enter like any other
//! accepted event, and fan-out does the rest.

pub mod cursor;
pub mod plan;
pub mod poll;
pub mod shared;
