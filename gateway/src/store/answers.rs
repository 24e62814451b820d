//! How storage errors and refusals are answered over HTTP (the answers themselves are in
//! [`crate::http_error`], which knows nothing of the store).

use super::{Refusal, StoreError};
use http::{StatusCode, header};

use crate::http_error::ApiError;

impl ApiError {
    /// A storage error: 503 when the store is failing (retry later; an I/O error, a full
    /// disk included, is one), else a logged 500.
    pub fn storage(context: &str, error: &StoreError) -> Self {
        match error {
            // Logged once where the store finds it failing, not once per request.
            StoreError::Unavailable(_) | StoreError::Sled(sled::Error::Io(_)) => {
                Self::storage_unavailable()
            }
            StoreError::Shared(_) => {
                tracing::warn!(%error, "{context}");
                Self::control_plane_unavailable()
            }
            other => Self::internal(context, other),
        }
    }

    /// 503 `queue_unavailable` with `Retry-After`: the shared work plane (NATS JetStream)
    /// did not take the event, so it is not accepted; the client retries, maybe on another
    /// instance.
    pub fn queue_unavailable(error: &StoreError) -> Self {
        tracing::warn!(%error, "an event could not be queued on JetStream");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            "the gateway cannot reach its shared queue right now, so the event was not accepted; retry later",
        )
        .with_header(header::RETRY_AFTER, "1")
    }

    /// Why ingest refuses new events now: `507 storage_full` for the live-data budget, `503
    /// storage_unavailable` for a disk short of room or writes that fail; each says why.
    pub fn refused(refusal: &Refusal) -> Self {
        let base = match refusal {
            Refusal::StorageFull { .. } => Self::storage_full(),
            _ => Self::storage_unavailable(),
        };
        Self {
            message: format!("new events are paused: {refusal}; retry later"),
            ..base
        }
    }
}
