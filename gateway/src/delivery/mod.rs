//! Outbound delivery: HTTP client, SSRF guard.
