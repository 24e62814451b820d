//! OAuth1: the Authorization header and form parsers, and the signature base string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use odoo_gateway::auth::oauth1;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(params) = oauth1::parse_authorization(&format!("OAuth {text}")) {
        let base = oauth1::signature_base_string("POST", "https://example.com/hook", &params);
        assert!(base.starts_with("POST&"));
    }
    if let Ok(params) = oauth1::parse_form(text) {
        let _ = oauth1::normalized_parameters(&params);
    }
    let _ = oauth1::base_string_uri(text);
});
