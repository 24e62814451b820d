//! What the server knows of an inbound request before any stage sees it: its connection (a
//! request extension the listener sets) and its body, read within a limit. Below every stage
//! that answers HTTP.

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};

use crate::http_error::ApiError;

/// What a request's connection was (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// The address it came from.
    pub peer: std::net::SocketAddr,
    /// Whether it came over TLS (the HTTPS listener).
    pub tls: bool,
}

/// Reads at most `limit` bytes of body; more is a 413.
pub async fn read_body<B>(body: B, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::bad_request(
            "body_read_failed",
            format!("the body could not be read: {e}"),
        )),
    }
}
