//! Ingest: the HTTP endpoints that accept events.
//!
//! Every request is checked completely (method, source and token, content type, size,
//! syntax) before anything is written; an accepted event is answered `202` only once it is
//! durable. Ingest never runs a plugin or calls a destination: it plans the jobs of an event
//! that matches few subscriptions (pure matching) and writes them with the event, or leaves
//! the event on the backlog and wakes the fan-out.
//!
//! - `POST /v1/odoo/{source}/{token}[?event=<action>]`: Odoo's built-in webhook, verbatim.
//! - `POST /v1/events/{source}` with `Authorization: Bearer <token>` (or
//!   `/v1/events/{source}/{token}`): the generic envelope, JSON or XML.

pub mod parse;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};

use arc_swap::ArcSwap;

use crate::catalog::seen::Seen;
use crate::config::Snapshot;
use crate::event::Event;
use crate::http_error::{ApiError, Body, json};
use crate::store::DedupKey;
use crate::telemetry::Metrics;
use crate::time::now_ms;
use crate::workplane::WorkPlane;

/// What ingest works with, lent by the running gateway for one request: the configuration in
/// force (sources, their tokens, the dedup window), the work plane that takes the events, the
/// event catalog's note of the types seen, and the metrics of refusals.
#[derive(Debug, Clone, Copy)]
pub struct Intake<'a> {
    /// The configuration in force.
    pub snapshot: &'a ArcSwap<Snapshot>,
    /// Where accepted events go.
    pub work: &'a WorkPlane,
    /// The event types seen, for the catalog.
    pub seen: &'a Seen,
    /// Refusals are counted here.
    pub metrics: &'a Metrics,
}

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Odoo's native webhook.
    Native,
    /// The generic envelope.
    Envelope,
}

/// The request parts ingest looks at.
#[derive(Debug)]
pub struct IngestRequest<'a> {
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Source name from the path.
    pub source: &'a str,
    /// `event` query parameter.
    pub url_action: Option<String>,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

/// Body formats the envelope endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    Json,
    Xml,
}

fn body_format(headers: &HeaderMap, endpoint: Endpoint) -> Result<BodyFormat, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        // Odoo always sets it; a bare POST from curl is taken as JSON.
        return Ok(BodyFormat::Json);
    };
    let essence = ct
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "text/json" => Ok(BodyFormat::Json),
        e if e.ends_with("+json") => Ok(BodyFormat::Json),
        "application/xml" | "text/xml" if endpoint == Endpoint::Envelope => Ok(BodyFormat::Xml),
        e if e.ends_with("+xml") && endpoint == Endpoint::Envelope => Ok(BodyFormat::Xml),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            match endpoint {
                Endpoint::Native => "Odoo webhooks are JSON: send Content-Type: application/json",
                Endpoint::Envelope => "send Content-Type: application/json or application/xml",
            },
        )),
    }
}

/// Checks `token` against `source`: the same 401 for an unknown source and a wrong token.
/// Called before the body is read, so strangers cannot make the gateway read large bodies.
pub fn authorise(snapshot: &Snapshot, source: &str, token: Option<&str>) -> Result<(), ApiError> {
    let known = snapshot
        .sources
        .get(source)
        .is_some_and(|s| token.is_some_and(|t| s.accepts(t)));
    if known {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// Handles one ingest request whose source was authorised by [`authorise`] and whose body is
/// read.
pub async fn accept(
    intake: Intake<'_>,
    req: IngestRequest<'_>,
    body: Bytes,
) -> Result<http::Response<Body>, ApiError> {
    let snapshot = intake.snapshot.load_full();
    // The caller checked the token with `authorise`; a reload may have removed the source since.
    let Some(source) = snapshot.sources.get(req.source) else {
        return Err(ApiError::unauthorized());
    };
    let format = body_format(req.headers, req.endpoint)?;
    let incoming = match (req.endpoint, format) {
        (Endpoint::Native, _) => parse::native(&body, source, req.url_action.as_deref()),
        (Endpoint::Envelope, BodyFormat::Json) => parse::json_envelope(&body, &source.name),
        (Endpoint::Envelope, BodyFormat::Xml) => parse::xml_envelope(&body, &source.name),
    }
    .map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
    let window_ms = snapshot.storage.dedup_window.as_millis() as u64;
    let dedup = match &incoming.explicit_id {
        Some(id) => DedupKey::Explicit {
            source: source.name.clone(),
            id: id.clone(),
        },
        // In reconcile mode, a webhook body carrying `write_date` is the polled change too.
        None => match source.webhook_change(&incoming.model, incoming.record_id, &incoming.payload)
        {
            Some(id) if req.endpoint == Endpoint::Native => DedupKey::Explicit {
                source: source.name.clone(),
                id,
            },
            _ => DedupKey::body(&source.name, &body, window_ms),
        },
    };
    let event = Arc::new(Event {
        id: crate::event::new_id(),
        source: source.name.clone(),
        model: incoming.model,
        action: incoming.action,
        record_id: incoming.record_id,
        received_at_ms: now_ms(),
        seq: crate::time::sequence(),
        payload: incoming.payload,
        headers: safe_headers(req.headers),
    });
    // Durable (on NATS: held by JetStream) before it is acknowledged; planned and fanned out
    // by the work plane, never here.
    let accepted = intake
        .work
        .accept(&snapshot, &event, &dedup)
        .await
        .map_err(|e| refused(intake.metrics, e))?;
    if !accepted.duplicate {
        // The event catalog learns the types and payload shapes sources send (cheap: a map
        // look-up, a payload parsed at most once a second per type).
        intake.seen.observe(&event);
    }
    Ok(accepted_response(&accepted, &event))
}

/// The answer to an event the work plane did not accept, counted by reason when it is a
/// refusal for lack of room or a failing disk.
fn refused(metrics: &Metrics, e: crate::workplane::AcceptError) -> ApiError {
    use crate::workplane::AcceptError;
    match e {
        AcceptError::Refused(refusal) => {
            metrics.refused(refusal.reason());
            ApiError::refused(&refusal)
        }
        AcceptError::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the event is larger than the shared queue takes ({limit} bytes with room for its jobs): raise NATS max_payload or send less"
            ),
        ),
        AcceptError::QueueUnavailable(e) => ApiError::queue_unavailable(&e),
        AcceptError::Store(e) => {
            let answer = ApiError::storage("cannot store an event", &e);
            if answer.code == "storage_unavailable" {
                metrics.refused("storage_unavailable");
            }
            answer
        }
    }
}

/// `202` with the event's id (the first submission's, for a repeat).
fn accepted_response(accepted: &crate::store::Accepted, event: &Event) -> http::Response<Body> {
    let mut response = json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "id": accepted.id, "duplicate": accepted.duplicate }),
    );
    // The event's id and type only go to its span: nothing is made when none is exported.
    let traced = crate::trace::exporting().then(|| (accepted.id.clone(), event.event_type()));
    response.extensions_mut().insert(Ingested {
        duplicate: accepted.duplicate,
        event: traced,
    });
    response
}

/// Accepts an event made inside the gateway (a test event), durably, for the fan-out.
pub async fn accept_event(
    work: &WorkPlane,
    event: &Event,
    dedup: &DedupKey,
) -> Result<crate::store::Accepted, crate::store::StoreError> {
    let accepted = work.accept_unflushed(event, dedup).await?;
    work.flush_accepted().await?;
    Ok(accepted)
}

/// What an accepted request was, for the metrics and the ingest span (not sent to the
/// client).
#[derive(Debug, Clone)]
pub struct Ingested {
    /// Whether it repeated an earlier submission.
    pub duplicate: bool,
    /// The event's id (the first submission's, for a repeat) and type, `<model>.<action>`,
    /// while spans are exported.
    pub event: Option<(String, String)>,
}

/// Request headers a plugin may see: never credentials or cookies. A valid `traceparent`
/// is kept too: the event continues the caller's trace (see [`crate::trace`]).
fn safe_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    const SHOWN: [&str; 3] = ["content-type", "user-agent", "x-odoo-database"];
    SHOWN
        .iter()
        .filter_map(|name| {
            Some((
                name.to_string(),
                headers.get(*name)?.to_str().ok()?.to_owned(),
            ))
        })
        .chain(crate::trace::incoming(headers))
        .collect()
}
