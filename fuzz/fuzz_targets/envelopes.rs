//! The generic JSON and XML envelopes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = odoo_gateway::ingest::parse::json_envelope(data, "odoo");
    let _ = odoo_gateway::ingest::parse::xml_envelope(data, "odoo");
});
