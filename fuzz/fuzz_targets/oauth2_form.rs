//! The OAuth2 token endpoint's form parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = odoo_gateway::auth::oauth2::parse_form_body(data);
});
