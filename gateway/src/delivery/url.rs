//! The http(s) URL an app may give as a destination or an OAuth2 token URL: a scheme, a host
//! name or IPv4 address, an optional port, a path and query of plain or percent-encoded URL
//! characters; no user info or fragment. The same pattern is in `openapi.json`, so what the
//! document allows and what the API accepts are one set.

use std::sync::LazyLock;

use regex::Regex;

/// The pattern, as written in `openapi.json` (`destination.url`, `auth.token_url`).
pub const HTTP_URL_PATTERN: &str = concat!(
    r"^https?://[A-Za-z0-9.-]+",
    r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r"([/?]([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$",
);

/// Longest URL.
const MAX_URL: usize = 2048;

static HTTP_URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(HTTP_URL_PATTERN).expect("the URL pattern compiles"));

/// Whether `url` is such a URL (and one the HTTP client can parse).
pub fn is_http_url(url: &str) -> bool {
    url.len() <= MAX_URL
        && HTTP_URL.is_match(url)
        && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "https://example.com/hooks?x=1",
            "http://127.0.0.1:65535",
            "http://a:0/",
            "http://a/b%20c",
        ] {
            assert!(is_http_url(ok), "{ok}");
        }
        for bad in [
            "ftp://example.com",
            "http://",
            "http://host*/",
            "http://user@host/",
            "http://host:65536/",
            "http://[::1]/",
            "http://host/#top",
            "http://host/%4",
            "http://host/\n",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }

    #[test]
    fn the_document_has_the_same_pattern() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../openapi.json")).expect("JSON");
        let schemas = &doc["components"]["schemas"];
        let url = &schemas["SubscriptionRequest"]["properties"]["destination"]["properties"]["url"];
        assert_eq!(url["pattern"], HTTP_URL_PATTERN);
        assert_eq!(url["maxLength"], MAX_URL);
    }
}
