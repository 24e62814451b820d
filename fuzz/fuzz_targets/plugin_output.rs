//! The plugin output checker, on deliveries built from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Split the input into fields at 0xFF bytes: destination, content type, body, then header
    // name/value pairs; a 0xFE byte starts another delivery.
    let deliveries = data
        .split(|b| *b == 0xFE)
        .map(|d| {
            let mut fields = d.split(|b| *b == 0xFF);
            let text = |f: Option<&[u8]>| String::from_utf8_lossy(f.unwrap_or_default()).into_owned();
            let destination = text(fields.next());
            let content_type = text(fields.next());
            let body = fields.next().unwrap_or_default().to_vec();
            let rest: Vec<String> = fields.map(|f| text(Some(f))).collect();
            let headers = rest
                .chunks(2)
                .map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default()))
                .collect();
            (destination, content_type, body, headers)
        })
        .collect();
    let _ = odoo_gateway::plugin::check_raw_output(deliveries);
});
