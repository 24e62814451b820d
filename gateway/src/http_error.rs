//! The one place where errors become HTTP responses.
//!
//! Every error answer is JSON: `{"error": {"code": "...", "message": "..."}}` with a stable,
//! machine-readable code and a message for people. Internal details stay in the log.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// The response body type of the whole server.
pub type Body = Full<Bytes>;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// Extra header (`Allow`, `WWW-Authenticate`, `Retry-After`).
    pub header: Option<(header::HeaderName, String)>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            header: None,
        }
    }

    /// The same error with an extra header.
    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.header = Some((name, value.into()));
        self
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 405 listing the allowed methods.
    pub fn method_not_allowed(allow: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("use {allow}"),
        )
        .with_header(header::ALLOW, allow)
    }

    /// 401: the same answer for an unknown source and a wrong token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown source or wrong token",
        )
    }

    /// 503 `control_plane_unavailable` with `Retry-After`: the shared control plane (NATS)
    /// cannot be reached now; the client retries, maybe on another instance.
    pub fn control_plane_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "control_plane_unavailable",
            "the gateway cannot reach its shared control plane right now; retry later",
        )
        .with_header(header::RETRY_AFTER, "5")
    }

    /// 503 `storage_unavailable` with `Retry-After`: writes cannot be made durable now (the
    /// gateway retries its flushes and recovers by itself).
    pub fn storage_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the gateway cannot make events durable right now (disk full or failing); retry later",
        )
        .with_header(header::RETRY_AFTER, "5")
    }

    /// 507 `storage_full` with `Retry-After`: the disk budget is reached and pruning could not
    /// make room; nothing accepted before is touched.
    pub fn storage_full() -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            "the gateway's disk budget is reached; retry later",
        )
        .with_header(header::RETRY_AFTER, "60")
    }

    /// 500: the details are logged, not sent.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the gateway could not complete the request; it is logged",
        )
    }

    /// The response.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = json(self.status, &body);
        if let Some((name, value)) = self.header
            && let Ok(v) = HeaderValue::try_from(value)
        {
            response.headers_mut().insert(name, v);
        }
        response
    }
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
