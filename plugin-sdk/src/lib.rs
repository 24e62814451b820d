//! SDK for writing Odoo gateway plugins in Rust.
//!
//! A plugin is a WebAssembly component implementing the `plugin` world of
//! `wit/plugin.wit`. This crate owns the guest side of that contract: it
//! generates the bindings, hides them behind the [`Plugin`] trait and the
//! [`export_plugin!`] macro, and offers the helpers every Odoo plugin needs:
//!
//! - [`Event::payload_json`] parses the payload; [`Record`] reads Odoo fields
//!   (`false` as "no value", [`Many2one`] pairs or bare ids, [`X2many`] id lists
//!   or embedded records);
//! - [`Config`] reads the subscription's settings with errors that name the key;
//! - [`Delivery::json`] and [`Delivery::xml`] build bodies, [`xml::XmlBuilder`]
//!   turns an Odoo record into an XML document;
//! - [`info!`], [`warn!`] and friends write to the gateway's log.
//!
//! It must never give a plugin a way to reach the network, the filesystem, a
//! clock or randomness: the only imports are `log` and `config`.
//!
//! # Example
//!
//! A plugin that forwards confirmed orders as JSON to the default destination:
//!
//! ```
//! use odoo_gateway_plugin_sdk::{Config, Delivery, Event, Plugin, PluginError, Record};
//!
//! struct ConfirmedOnly;
//!
//! impl Plugin for ConfirmedOnly {
//!     fn handle(event: Event, config: &Config) -> Result<Vec<Delivery>, PluginError> {
//!         let payload = event.payload_json()?;
//!         let state = config.get_or("state", "sale");
//!         if Record::new(&payload)?.str("state") != Some(state) {
//!             return Ok(Vec::new()); // filtered out
//!         }
//!         Ok(vec![Delivery::json("", &payload)])
//!     }
//! }
//!
//! odoo_gateway_plugin_sdk::export_plugin!(ConfirmedOnly);
//!
//! // Plugin logic runs on the host too, which is how plugins are unit tested.
//! let event = Event::new("sale.order", "confirmed", r#"{"id": 12, "state": "sale"}"#);
//! let deliveries = ConfirmedOnly::handle(event, &Config::default()).unwrap();
//! assert_eq!(deliveries.len(), 1);
//! assert_eq!(deliveries[0].content_type, "application/json");
//! ```

mod config;
mod delivery;
mod event;
mod export;
pub mod log;
pub mod odoo;
pub mod xml;

pub use config::{Config, ConfigError};
pub use delivery::{CONTENT_TYPE_JSON, CONTENT_TYPE_XML};
pub use log::Level;
pub use odoo::{Many2one, Record, X2many};

/// Bindings generated from `wit/v0.2/plugin.wit` (world `odoo-gateway:plugin/plugin@0.2.0`). Plugin code uses the re-exports
/// at the crate root; the module is public only so that [`export_plugin!`]
/// can reach it from the plugin's crate.
#[doc(hidden)]
#[allow(missing_debug_implementations, unreachable_pub, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.2",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "odoo_gateway_plugin_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

/// One outgoing HTTP POST for the gateway to queue, sign and deliver.
pub use bindings::odoo_gateway::plugin::types::Delivery;
/// One business event received from Odoo (see `wit/v0.2/plugin.wit`).
pub use bindings::odoo_gateway::plugin::types::Event;
/// Why a plugin produced no deliveries: `Reject` (dead-letter, never retried),
/// `Retry` (transient) or `InvalidConfig` (the subscription's settings are wrong).
pub use bindings::odoo_gateway::plugin::types::PluginError;

/// What a plugin implements. Both functions get the subscription's
/// configuration; neither has access to anything else outside the event.
pub trait Plugin {
    /// Handles one event: the deliveries to queue, none to filter the event
    /// out, or a [`PluginError`].
    fn handle(event: Event, config: &Config) -> Result<Vec<Delivery>, PluginError>;

    /// Checks the configuration when a subscription is loaded or reloaded.
    /// The message should name the offending key. Accepts everything by
    /// default.
    fn validate_config(config: &Config) -> Result<(), String> {
        let _ = config;
        Ok(())
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::bindings::Guest;
    pub use crate::bindings::export;
    pub use crate::export::{handle, validate_config};
}
