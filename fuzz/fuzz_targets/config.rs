//! The TOML configuration loader: any text parses into a configuration or an error that names
//! a place.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = odoo_gateway::config::parse(text, "fuzz.toml") {
        let _ = e.with_lines(text).to_string();
    }
});
