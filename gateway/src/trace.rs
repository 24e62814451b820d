//! One trace per event, in the W3C Trace Context format: the trace id that ties an event's
//! fan-out, plugin calls and every delivery attempt together, in the logs and at the receivers.
//!
//! An event's trace id is the one of a valid `traceparent` header it was ingested with (the
//! gateway continues the caller's trace, and passes its `tracestate` on), else derived from
//! the event id, so it never has to be stored apart from the event: ingest keeps the incoming
//! headers among the event's headers.
//! Every job carries the event's `traceparent` among its own headers, so retries, replays and
//! a restart send the same trace id; each delivery attempt gets a span id of its own (derived
//! from the job id and the attempt number), so a receiver can tell attempts apart.
//!
//! Pure: no I/O, nothing stored here; the log spans are [`tracing`] spans with a `trace_id`
//! field, so `--log-format json` lines can be grepped for it. The spans exported over OTLP,
//! in the same trace, are made by `trace/stages.rs` ([`Stage`], [`ingest`], [`attempt`], ...).

mod stages;

use std::fmt;

use http::{HeaderMap, HeaderValue};
use sha2::{Digest as _, Sha256};

use crate::event::Event;
use crate::store::Job;

pub(crate) use stages::{DISCARD, next_ids, sampled, set_exporting};
pub use stages::{
    FanOut, Ingest, IngestAnswer, Stage, TARGET, attempt, enrich, exporting, fan_out, ingest,
    odoo_call, plugin_call,
};

/// The W3C header, in lower case as stored and sent.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header of vendor-specific trace data, passed on with a continued trace.
pub const TRACESTATE: &str = "tracestate";
/// Longest `tracestate` passed on (W3C Trace Context §3.3.1.1: 512 bytes is what every
/// participant must propagate).
const MAX_TRACESTATE: usize = 512;

/// Flags of a trace the gateway starts: sampled, so that receivers that trace record theirs.
const SAMPLED: u8 = 0x01;

/// A 16-byte trace id, never all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 16]);

impl fmt::Display for TraceId {
    /// Lower-case hex, written digit by digit: a log span's field costs no allocation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A parsed `traceparent` (version 00 fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span.
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value (W3C Trace Context §3.2): `00-<32 hex>-<16 hex>-<2 hex>`,
    /// lower-case hex, neither id all zeros. A later version is read by its version-00 prefix
    /// when what follows is `-`; version `ff` is invalid.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        let version = bytes.get(..2)?;
        if !is_lower_hex(version) || version == b"ff" {
            return None;
        }
        let exact = bytes.len() == 55;
        let longer = version != b"00" && bytes.len() > 55 && bytes[55] == b'-';
        if !(exact || longer) {
            return None;
        }
        let fields = &value[..55];
        let mut parts = fields.split('-');
        let (_, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
            return None;
        }
        if ![trace, parent, flags]
            .iter()
            .all(|p| is_lower_hex(p.as_bytes()))
        {
            return None;
        }
        let trace_id: [u8; 16] = hex::decode(trace).ok()?.try_into().ok()?;
        let parent_id: [u8; 8] = hex::decode(parent).ok()?.try_into().ok()?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace_id),
            parent_id,
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// The version-00 header value.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            hex::encode(self.parent_id),
            self.flags
        )
    }
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// The first `N` bytes of SHA-256 over `parts`, with the last byte forced non-zero if all
/// were zero (W3C forbids all-zero ids).
fn derived<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut id = [0; N];
    id.copy_from_slice(&digest[..N]);
    if id == [0; N] {
        id[N - 1] = 1;
    }
    id
}

/// The trace an event belongs to: the incoming one it was ingested with, else one of its own,
/// derived from its id.
pub fn of_event(event: &Event) -> TraceParent {
    event
        .headers
        .iter()
        .find(|(name, _)| name == TRACEPARENT)
        .and_then(|(_, value)| TraceParent::parse(value))
        .unwrap_or_else(|| started_for(event.id.as_bytes()))
}

/// The trace the gateway starts for the event `event_id` (no incoming `traceparent`).
fn started_for(event_id: &[u8]) -> TraceParent {
    TraceParent {
        trace_id: TraceId(derived(&[b"odoo-gateway trace\0", event_id])),
        parent_id: derived(&[b"odoo-gateway ingest\0", event_id]),
        flags: SAMPLED,
    }
}

/// The `traceparent` an ingest request carried, normalised, and its `tracestate` (several
/// joined with `,`, up to 512 bytes), if the `traceparent` is valid: what ingest keeps among
/// the event's headers. An invalid `traceparent` is ignored with its `tracestate`, as W3C
/// asks.
pub fn incoming(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Vec::new();
    };
    let Some(parsed) = value.to_str().ok().and_then(TraceParent::parse) else {
        return Vec::new();
    };
    let mut kept = vec![(TRACEPARENT.to_owned(), parsed.header())];
    let state: Option<Vec<&str>> = headers
        .get_all(TRACESTATE)
        .iter()
        .map(|v| v.to_str().ok().map(str::trim))
        .collect();
    let state = state.map(|parts| parts.join(",")).unwrap_or_default();
    if !state.is_empty() && state.len() <= MAX_TRACESTATE {
        kept.push((TRACESTATE.to_owned(), state));
    }
    kept
}

/// The headers a new job of `event` carries, stored with the job: its `traceparent`, and the
/// `tracestate` it came with, if any.
pub fn job_headers(event: &Event) -> Vec<(String, String)> {
    let mut headers = vec![(TRACEPARENT.to_owned(), of_event(event).header())];
    headers.extend(
        event
            .headers
            .iter()
            .filter(|(name, _)| name == TRACESTATE)
            .cloned(),
    );
    headers
}

/// The trace of a stored job: its own header, or (a job queued before jobs carried one) the
/// trace started for its event.
pub fn of_job(job: &Job) -> TraceParent {
    job.headers
        .iter()
        .find(|(name, _)| name == TRACEPARENT)
        .and_then(|(_, value)| TraceParent::parse(value))
        .unwrap_or_else(|| started_for(job.event_id.as_bytes()))
}

/// The span id of attempt `attempt` (from 0) of `job`: sent in its `traceparent`, and the id
/// of its exported span.
fn attempt_span_id(job: &Job, attempt: u32) -> [u8; 8] {
    derived(&[
        b"odoo-gateway attempt\0",
        job.id.as_bytes(),
        &attempt.to_be_bytes(),
    ])
}

/// Sets the attempt's `traceparent` in `headers`: the job's trace, with a span id for this
/// attempt (`attempt` counts from 0).
pub fn stamp_attempt(headers: &mut HeaderMap, job: &Job, attempt: u32) {
    let trace = TraceParent {
        parent_id: attempt_span_id(job, attempt),
        ..of_job(job)
    };
    if let Ok(value) = HeaderValue::try_from(trace.header()) {
        headers.insert(TRACEPARENT, value);
    }
}

/// The log span of everything done for `event`.
pub fn event_span(event: &Event) -> tracing::Span {
    tracing::info_span!("event", event = %event.id, trace_id = %of_event(event).trace_id)
}

/// The log span of everything done for `job`.
pub fn job_span(job: &Job) -> tracing::Span {
    tracing::info_span!(
        "job",
        job = %job.id,
        event = %job.event_id,
        trace_id = %of_job(job).trace_id,
    )
}

/// Logs, in the event's span, that fan-out queued `jobs` jobs for it (at debug level: the
/// span is not even made on ingest's path when that level is off).
fn fanned_out(event: &Event, jobs: usize) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let _span = event_span(event).entered();
    tracing::debug!(jobs, "fan-out queued the event's jobs");
}

#[cfg(test)]
mod tests {
    use super::*;

    const W3C: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn event(id: &str, headers: Vec<(String, String)>) -> Event {
        Event {
            id: id.into(),
            source: "odoo".into(),
            model: "sale.order".into(),
            action: "write".into(),
            record_id: None,
            received_at_ms: 0,
            seq: 0,
            payload: "{}".into(),
            headers,
        }
    }

    #[test]
    fn the_specification_example_parses_and_prints_back() {
        let parsed = TraceParent::parse(W3C).expect("valid");
        assert_eq!(
            parsed.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.flags, 1);
        assert_eq!(parsed.header(), W3C);
        // A later version is read by its first fields.
        let future = format!("cc{}-extra", &W3C[2..]);
        assert_eq!(
            TraceParent::parse(&future).map(|p| p.trace_id),
            Some(parsed.trace_id)
        );
    }

    #[test]
    fn invalid_values_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_event_continues_its_incoming_trace_or_has_its_own() {
        let continued = event("evt_1", vec![(TRACEPARENT.into(), W3C.into())]);
        assert_eq!(
            of_event(&continued).trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let own = of_event(&event("evt_1", Vec::new()));
        assert_eq!(own, of_event(&event("evt_1", Vec::new())), "deterministic");
        assert_ne!(own.trace_id, of_event(&event("evt_2", Vec::new())).trace_id);
    }

    #[test]
    fn tracestate_is_kept_only_with_a_valid_traceparent() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        headers.append(
            TRACESTATE,
            HeaderValue::from_static("rojo=00f067aa0ba902b7"),
        );
        assert!(
            incoming(&headers).is_empty(),
            "no traceparent, nothing kept"
        );
        headers.insert(TRACEPARENT, HeaderValue::from_static(W3C));
        let kept = incoming(&headers);
        assert_eq!(
            kept,
            [
                (TRACEPARENT.to_owned(), W3C.to_owned()),
                (
                    TRACESTATE.to_owned(),
                    "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".to_owned()
                ),
            ]
        );
        let ev = event("evt_1", kept.clone());
        assert_eq!(job_headers(&ev), kept);
        headers.insert(
            TRACESTATE,
            HeaderValue::from_str(&"a".repeat(513)).expect("value"),
        );
        assert_eq!(
            incoming(&headers).len(),
            1,
            "an oversized tracestate is dropped"
        );
        headers.append(TRACEPARENT, HeaderValue::from_static(W3C));
        assert!(
            incoming(&headers).is_empty(),
            "two traceparents are invalid"
        );
    }

    #[test]
    fn every_attempt_of_a_job_has_the_trace_and_a_span_of_its_own() {
        let ev = event("evt_1", vec![(TRACEPARENT.into(), W3C.into())]);
        let job = Job {
            id: crate::store::JobId::delivery("evt_1", "sub", 0),
            kind: crate::store::JobKind::Deliver,
            event_id: ev.id.clone(),
            subscription_id: "sub".into(),
            destination: "d".into(),
            content_type: String::new(),
            body: Vec::new(),
            envelope: None,
            headers: job_headers(&ev),
            attempts: 0,
            created_ms: 0,
            due_ms: 0,
            last_error: None,
            member: None,
            order: None,
        };
        let sent = |attempt| {
            let mut headers = HeaderMap::new();
            stamp_attempt(&mut headers, &job, attempt);
            let value = headers[TRACEPARENT].to_str().expect("ASCII").to_owned();
            TraceParent::parse(&value).expect("valid")
        };
        let (first, second) = (sent(0), sent(1));
        assert_eq!(first.trace_id, second.trace_id);
        assert_eq!(
            first.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(first.parent_id, second.parent_id);
        assert_eq!(first, sent(0));
        // A job stored without the header still gets its event's own trace.
        let bare = Job {
            headers: Vec::new(),
            ..job.clone()
        };
        assert_eq!(
            of_job(&bare).trace_id,
            of_event(&event("evt_1", Vec::new())).trace_id
        );
    }
}
