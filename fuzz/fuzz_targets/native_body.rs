//! Odoo's native webhook body parser: any bytes give a parsed event or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use odoo_gateway::config::Source;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let mut actions = BTreeMap::new();
    actions.insert("SO confirmed".to_owned(), "confirmed".to_owned());
    let source = Source::new("odoo", &["fuzz-token-0123456789".to_owned()], actions, "write");
    let _ = odoo_gateway::ingest::parse::native(data, &source, None);
    let _ = odoo_gateway::ingest::parse::native(data, &source, Some("confirmed"));
});
