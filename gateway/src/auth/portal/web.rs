//! The HTTP side of portal sessions: the cookie that carries a session (set and read), and
//! the portal's URL as a link shows it.

use std::time::Duration;

use http::header;
use http::request::Parts;

use super::COOKIE;
use crate::state::State;

/// The session secret the request's cookie carries.
pub(super) fn cookie_token(parts: &Parts) -> Option<String> {
    let secure_name = format!("__Secure-{COOKIE}");
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE || name == secure_name).then(|| value.to_owned())
        })
}

/// Whether the request reached the gateway over HTTPS (the listener's TLS, or a
/// `server.public_url` in `https` for a proxy that ends TLS in front of it).
pub(crate) fn over_https(state: &State, parts: &Parts) -> bool {
    let tls = parts
        .extensions
        .get::<crate::inbound::Connection>()
        .is_some_and(|c| c.tls);
    tls || state
        .snapshot
        .load()
        .server
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

/// The `Set-Cookie` value carrying `token` for `max_age` (zero: removing it).
pub(crate) fn cookie(token: &str, secure: bool, max_age: Duration) -> String {
    let (prefix, flag) = if secure {
        ("__Secure-", "; Secure")
    } else {
        ("", "")
    };
    format!(
        "{prefix}{COOKIE}={token}; Path=/portal; HttpOnly; SameSite=Strict; Max-Age={}{flag}",
        max_age.as_secs()
    )
}

/// The portal URL of a minted link, under `base` (`https://gateway.example.com`).
pub(crate) fn url(base: &str, link: &str) -> String {
    format!("{}/portal#link={link}", base.trim_end_matches('/'))
}

/// Where the portal is served: `server.public_url` if set, else the scheme the request came
/// by and its `Host`.
pub(crate) fn base_url(state: &State, parts: &Parts) -> String {
    if let Some(public) = state.snapshot.load().server.public_url.clone() {
        return public;
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = if over_https(state, parts) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_the_portal() {
        let plain = cookie("abc", false, Duration::from_secs(3600));
        assert_eq!(
            plain,
            "odoo_gateway_portal=abc; Path=/portal; HttpOnly; SameSite=Strict; Max-Age=3600"
        );
        let secure = cookie("abc", true, Duration::ZERO);
        assert!(secure.starts_with("__Secure-odoo_gateway_portal=abc;"));
        assert!(secure.ends_with("; Max-Age=0; Secure"));
    }

    #[test]
    fn a_cookie_is_found_among_others_under_either_name() {
        let request = |cookie: &str| {
            http::Request::builder()
                .header(header::COOKIE, cookie)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let parts = request("a=1; odoo_gateway_portal=tok; b=2");
        assert_eq!(cookie_token(&parts).as_deref(), Some("tok"));
        let parts = request("__Secure-odoo_gateway_portal=sec");
        assert_eq!(cookie_token(&parts).as_deref(), Some("sec"));
        assert_eq!(cookie_token(&request("other=1")), None);
    }
}
