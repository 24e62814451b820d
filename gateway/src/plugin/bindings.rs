//! Rust bindings generated from `wit/plugin.wit` (world `odoo-gateway:plugin/plugin@0.1.0`).
//!
//! Only the host's call code uses these names; everything else sees the gateway's own types
//! ([`crate::event::Event`], [`super::Delivery`]), converted at the edge of a call.

// Generated code: its visibility and lints are the macro's, not ours.
#![allow(unreachable_pub, missing_debug_implementations, dead_code, clippy::all)]

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
});

pub(crate) use self::odoo_gateway::plugin::log::Level;
pub(crate) use self::odoo_gateway::plugin::types::{
    Delivery as WitDelivery, Event as WitEvent, PluginError as WitPluginError,
};
