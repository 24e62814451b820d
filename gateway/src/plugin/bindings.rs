//! Rust bindings generated from the two versions of the plugin world: `wit/plugin.wit`
//! (`odoo-gateway:plugin/plugin@0.1.0`) and `wit/v0.2/plugin.wit` (`@0.2.0`, which adds a
//! delivery's ordering key). A component implements one of them; the host links both.
//!
//! Only the host's call code uses these names; everything else sees the gateway's own types
//! ([`crate::event::Event`], [`super::Delivery`]), converted at the edge of a call.

// Generated code: its visibility and lints are the macro's, not ours.
#![allow(unreachable_pub, missing_debug_implementations, dead_code, clippy::all)]

/// World `odoo-gateway:plugin/plugin@0.1.0`.
pub(crate) mod v1 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit/plugin.wit",
    });

    pub(crate) use self::odoo_gateway::plugin::log::Level;
    pub(crate) use self::odoo_gateway::plugin::types::{
        Delivery as WitDelivery, Event as WitEvent, PluginError as WitPluginError,
    };
}

/// World `odoo-gateway:plugin/plugin@0.2.0`.
pub(crate) mod v2 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit/v0.2/plugin.wit",
    });

    pub(crate) use self::odoo_gateway::plugin::log::Level;
    pub(crate) use self::odoo_gateway::plugin::types::{
        Delivery as WitDelivery, Event as WitEvent, PluginError as WitPluginError,
    };
}

/// A delivery as either world returns it, before the host's checks.
#[derive(Debug)]
pub(crate) struct RawDelivery {
    pub destination: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub ordering_key: Option<String>,
}

impl From<v1::WitDelivery> for RawDelivery {
    fn from(d: v1::WitDelivery) -> Self {
        Self {
            destination: d.destination,
            content_type: d.content_type,
            body: d.body,
            headers: d.headers,
            ordering_key: None,
        }
    }
}

impl From<v2::WitDelivery> for RawDelivery {
    fn from(d: v2::WitDelivery) -> Self {
        Self {
            destination: d.destination,
            content_type: d.content_type,
            body: d.body,
            headers: d.headers,
            ordering_key: d.ordering_key,
        }
    }
}

/// A plugin's typed error, from either world.
#[derive(Debug)]
pub(crate) enum RawError {
    Reject(String),
    Retry(String),
    InvalidConfig(String),
}

impl From<v1::WitPluginError> for RawError {
    fn from(e: v1::WitPluginError) -> Self {
        match e {
            v1::WitPluginError::Reject(m) => Self::Reject(m),
            v1::WitPluginError::Retry(m) => Self::Retry(m),
            v1::WitPluginError::InvalidConfig(m) => Self::InvalidConfig(m),
        }
    }
}

impl From<v2::WitPluginError> for RawError {
    fn from(e: v2::WitPluginError) -> Self {
        match e {
            v2::WitPluginError::Reject(m) => Self::Reject(m),
            v2::WitPluginError::Retry(m) => Self::Retry(m),
            v2::WitPluginError::InvalidConfig(m) => Self::InvalidConfig(m),
        }
    }
}
