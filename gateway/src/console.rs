//! The operator's web console: a static shell (HTML, one script, one style sheet) built into
//! the binary, served at `/console` without authentication because it holds no data.
//!
//! Everything it shows comes from the `/admin/` JSON endpoints, which the script calls with
//! the admin token the operator pastes at login (kept in the tab's `sessionStorage`). Every
//! answer carries a strict Content-Security-Policy (only this origin's own script, style and
//! requests; no inline script, no frames) and `X-Content-Type-Options: nosniff`.

use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::http_error::{ApiError, Body};

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/app.css");
const ICON: &str = include_str!("../console/icon.svg");

/// The policy of every console answer: nothing but this origin's own script, style, images
/// and requests; no plugins, frames, inline code or form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// `GET /console[/<asset>]`.
pub fn serve(method: &Method, asset: Option<&str>) -> Result<Response<Body>, ApiError> {
    let (body, content_type) = match asset {
        None | Some("" | "index.html") => (INDEX, "text/html; charset=utf-8"),
        Some("app.js") => (SCRIPT, "text/javascript; charset=utf-8"),
        Some("app.css") => (STYLE, "text/css; charset=utf-8"),
        Some("icon.svg") => (ICON, "image/svg+xml"),
        Some(_) => return Err(ApiError::not_found()),
    };
    asset_response(method, body, content_type)
}

/// A built-in page or asset (the console's, the portal's): GET or HEAD only, this origin's
/// own resources only, never sniffed, no referrer, revalidated at each load (a new build's
/// page replaces the old one at once).
pub(crate) fn asset_response(
    method: &Method,
    body: &'static str,
    content_type: &'static str,
) -> Result<Response<Body>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed("GET, HEAD"));
    }
    // For HEAD, hyper sends the headers (with the length) and leaves the body out.
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_has_no_inline_script_and_names_its_assets() {
        assert!(INDEX.contains(r#"<script src="/console/app.js" defer></script>"#));
        assert!(INDEX.contains(r#"href="/console/app.css""#));
        // Every <script> has a src: the policy would block an inline one anyway.
        assert_eq!(
            INDEX.matches("<script").count(),
            INDEX.matches("<script src=").count()
        );
        assert!(!INDEX.contains(" style=") && !INDEX.contains(" onclick="));
    }

    #[test]
    fn assets_carry_the_policy_and_unknown_ones_are_404() {
        let js = serve(&Method::GET, Some("app.js")).expect("served");
        assert_eq!(
            js.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(js.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            js.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ASCII")
                .contains("script-src 'self'")
        );
        let missing = serve(&Method::GET, Some("secret.txt")).expect_err("404");
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let post = serve(&Method::POST, None).expect_err("405");
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
