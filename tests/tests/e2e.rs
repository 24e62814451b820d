//! Every end-to-end suite in one test binary (each suite a module), so that wasmtime and the
//! gateway are linked once, not once per suite. Run one suite with a filter:
//! `cargo test -p odoo-gateway-tests --test e2e pipeline::`.

mod api;
mod cluster;
mod cluster_faults;
mod console;
mod crash;
mod disk_full;
mod ingest;
mod isolation;
mod languages;
mod logs;
mod metrics;
#[path = "oauth/main.rs"]
mod oauth;
#[path = "odoo/main.rs"]
mod odoo;
mod odoo_client;
mod openapi_fuzz;
mod operate;
mod otlp;
mod pipeline;
mod policies;
#[path = "portal/main.rs"]
mod portal;
mod reload;
mod storage;
mod tls;
mod trace;
