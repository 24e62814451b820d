//! Odoo webhook gateway (modules being assembled).

pub mod cli;
pub mod delivery;
pub mod event;
pub mod plugin;
pub mod signing;
pub mod subscriptions;
pub mod xmljson;
