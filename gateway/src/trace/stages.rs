//! The spans of an event's stages that leave the process over OTLP: ingest, fan-out,
//! enrichment and its Odoo calls, each plugin call, each delivery attempt.
//!
//! They are `tracing` spans of target [`TARGET`], turned into OpenTelemetry spans by the
//! layer [`crate::telemetry::otlp`] installs; they are made only while a pipeline exports
//! ([`exporting`]), so an unconfigured gateway makes none. Every stage of an event is in the
//! event's one trace ([`super::of_event`]) and a child of its ingest span, whose span id is
//! derived from the event id: a stage run later, after a restart or on another instance,
//! finds its parent from what is stored, never from memory. A delivery attempt's span id is
//! the one its request's `traceparent` carries, so a receiver's spans hang under it.
//!
//! Deterministic ids reach the SDK through its id generator, which reads the ids set here
//! for the one span being started on this thread ([`next_ids`]). The sampling decision of a
//! trace the gateway started is made on its trace id, so every stage of one event agrees.
//! Never blocks and never fails: without the layer, every call is a no-op.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceState,
};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample as _};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{TraceParent, started_for};
use crate::event::Event;
use crate::store::Job;

/// The `tracing` target of every exported span: the OTLP layer takes these and nothing else,
/// and the log lines leave them out.
pub const TARGET: &str = "odoo_gateway::stage";

/// An attribute set on a span that turned out not to be one (the fan-out of a repeated
/// submission): the sampler drops a span that carries it.
pub(crate) const DISCARD: &str = "odoo_gateway.discard";

static EXPORTING: AtomicBool = AtomicBool::new(false);
/// The sampling ratio, as `f64` bits (1.0 until a pipeline sets its own).
static RATIO: AtomicU64 = AtomicU64::new(0x3FF0_0000_0000_0000);

/// Whether spans are exported now: when not, no stage span is made.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Turns the stage spans on with a sampling ratio, or off (`None`).
pub(crate) fn set_exporting(ratio: Option<f64>) {
    if let Some(ratio) = ratio {
        RATIO.store(ratio.to_bits(), Ordering::Relaxed);
    }
    EXPORTING.store(ratio.is_some(), Ordering::Relaxed);
}

/// Whether a trace the gateway started is sampled: the SDK's ratio sampler on its trace id,
/// the same decision its root span gets.
pub(crate) fn sampled(trace_id: opentelemetry::trace::TraceId) -> bool {
    let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
    let result = Sampler::TraceIdRatioBased(ratio).should_sample(
        None,
        trace_id,
        "",
        &SpanKind::Internal,
        &[],
        &[],
    );
    result.decision == SamplingDecision::RecordAndSample
}

/// Ids for the next span started on this thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ids {
    /// The trace id, for a root span.
    pub trace: Option<[u8; 16]>,
    /// The span id.
    pub span: [u8; 8],
}

thread_local! {
    static NEXT_IDS: Cell<Option<Ids>> = const { Cell::new(None) };
}

/// The ids the span being started on this thread must have, if set (read by the SDK's id
/// generator, [`crate::telemetry::otlp`]).
pub(crate) fn next_ids() -> Option<Ids> {
    NEXT_IDS.with(Cell::get)
}

fn otel_trace_id(trace: &TraceParent) -> opentelemetry::trace::TraceId {
    opentelemetry::trace::TraceId::from_bytes(trace.trace_id.0)
}

fn flags(sampled: bool) -> TraceFlags {
    if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    }
}

/// A caller's span, as a remote parent.
fn remote(trace: &TraceParent) -> SpanContext {
    SpanContext::new(
        otel_trace_id(trace),
        SpanId::from_bytes(trace.parent_id),
        flags(trace.flags & 1 == 1),
        true,
        TraceState::default(),
    )
}

/// The ingest span of event `event_id` in `trace` (its own trace, or the one it continued):
/// the parent of every later stage.
fn ingest_parent(trace: &TraceParent, event_id: &str) -> SpanContext {
    let started = started_for(event_id.as_bytes());
    let continued = trace.parent_id != started.parent_id;
    let sampled = if continued {
        trace.flags & 1 == 1
    } else {
        sampled(otel_trace_id(trace))
    };
    SpanContext::new(
        otel_trace_id(trace),
        SpanId::from_bytes(started.parent_id),
        flags(sampled),
        true,
        TraceState::default(),
    )
}

/// Starts `span`'s OpenTelemetry span now, under `parent` (a root without one), with `ids`.
fn start(span: &tracing::Span, parent: Option<SpanContext>, ids: Option<Ids>) {
    let context = match parent {
        Some(parent) => opentelemetry::Context::new().with_remote_span_context(parent),
        None => opentelemetry::Context::new(),
    };
    let _ = span.set_parent(context);
    NEXT_IDS.with(|next| next.set(ids));
    let _ = span.context();
    NEXT_IDS.with(|next| next.set(None));
}

/// An exported span of one stage: a no-op one when nothing is exported. It ends when
/// dropped.
#[derive(Debug)]
pub struct Stage(tracing::Span);

impl Stage {
    fn off() -> Self {
        Self(tracing::Span::none())
    }

    /// The `tracing` span, to enter or to instrument a future with.
    pub fn span(&self) -> &tracing::Span {
        &self.0
    }

    /// Sets an attribute.
    pub fn set(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        self.0.set_attribute(key, value);
    }

    /// Marks the stage failed, with why.
    pub fn fail(&self, why: impl Into<String>) {
        self.0.set_status(Status::error(why.into()));
    }
}

/// The ingest span of one request, from its arrival: made into the event's ingest span once
/// the answer says which event it was ([`Ingest::end`]).
#[derive(Debug)]
pub struct Ingest {
    span: Option<tracing::Span>,
    incoming: Option<TraceParent>,
}

/// What an ingest request came to, for its span.
#[derive(Debug, Clone, Copy)]
pub struct IngestAnswer<'a> {
    /// The HTTP status answered.
    pub status: u16,
    /// The event's id (the first submission's, for a repeat).
    pub event: Option<&'a str>,
    /// The event's type, when known.
    pub event_type: Option<&'a str>,
    /// Whether it repeated an earlier submission.
    pub duplicate: bool,
    /// `accepted`, `duplicate`, or the refusal's error code.
    pub outcome: &'a str,
}

/// The span of an ingest request arriving now with `headers` (not started until its end).
pub fn ingest(headers: &http::HeaderMap) -> Ingest {
    if !exporting() {
        return Ingest {
            span: None,
            incoming: None,
        };
    }
    let incoming = super::incoming(headers)
        .first()
        .and_then(|(_, value)| TraceParent::parse(value));
    Ingest {
        span: Some(
            tracing::info_span!(target: TARGET, parent: None, "ingest", otel.kind = "server"),
        ),
        incoming,
    }
}

impl Ingest {
    /// Ends the span with `answer`: an accepted event's span has the event's ingest span id
    /// (in its own trace or the caller's); a repeat is a child of the first submission's; a
    /// refusal is in the caller's trace, or a trace of its own.
    pub fn end(self, source: &str, answer: IngestAnswer<'_>) {
        let Some(span) = self.span else {
            return;
        };
        let (parent, ids) = match answer.event {
            Some(id) if !answer.duplicate => {
                let own = started_for(id.as_bytes());
                let ids = Ids {
                    trace: self.incoming.is_none().then_some(own.trace_id.0),
                    span: own.parent_id,
                };
                (self.incoming.as_ref().map(remote), Some(ids))
            }
            Some(id) => {
                let trace = self.incoming.unwrap_or_else(|| started_for(id.as_bytes()));
                (Some(ingest_parent(&trace, id)), None)
            }
            None => (self.incoming.as_ref().map(remote), None),
        };
        start(&span, parent, ids);
        let stage = Stage(span);
        stage.set("odoo_gateway.source", source.to_owned());
        stage.set("odoo_gateway.outcome", answer.outcome.to_owned());
        stage.set("http.response.status_code", i64::from(answer.status));
        stage.set("odoo_gateway.duplicate", answer.duplicate);
        if let Some(id) = answer.event {
            stage.set("odoo_gateway.event.id", id.to_owned());
        }
        if let Some(event_type) = answer.event_type {
            stage.set("odoo_gateway.event.type", event_type.to_owned());
        }
        if answer.status >= 400 {
            stage.fail(answer.outcome.to_owned());
        }
    }
}

/// The fan-out of `event`, from now until [`FanOut::planned`]; dropped without it (the
/// event was a repeat), it is never exported.
pub fn fan_out(event: &Event) -> FanOut {
    if !exporting() {
        return FanOut(Stage::off(), false);
    }
    let span = tracing::info_span!(target: TARGET, parent: None, "fan-out");
    let _ = span.set_parent(
        opentelemetry::Context::new()
            .with_remote_span_context(ingest_parent(&super::of_event(event), &event.id)),
    );
    let stage = Stage(span);
    stage.set("odoo_gateway.event.id", event.id.clone());
    FanOut(stage, false)
}

/// An event's fan-out span (see [`fan_out`]).
#[derive(Debug)]
pub struct FanOut(Stage, bool);

impl FanOut {
    /// Ends the fan-out: it queued `jobs` jobs for `event` (also logged at debug level, in
    /// the event's log span).
    pub fn planned(mut self, event: &Event, jobs: usize) {
        self.0
            .set("odoo_gateway.jobs", i64::try_from(jobs).unwrap_or(i64::MAX));
        self.1 = true;
        super::fanned_out(event, jobs);
    }
}

impl Drop for FanOut {
    fn drop(&mut self) {
        if !self.1 {
            self.0.set(DISCARD, true);
        }
    }
}

/// A stage of `event` started now, as a child of its ingest span.
fn child_of_ingest(
    span: tracing::Span,
    trace: &TraceParent,
    event_id: &str,
    ids: Option<Ids>,
) -> Stage {
    start(&span, Some(ingest_parent(trace, event_id)), ids);
    let stage = Stage(span);
    stage.set("odoo_gateway.event.id", event_id.to_owned());
    stage
}

/// The reading of `event`'s related records from Odoo for `subscription` (its Odoo calls are
/// its children).
pub fn enrich(event: &Event, subscription: &str) -> Stage {
    if !exporting() {
        return Stage::off();
    }
    let span = tracing::info_span!(target: TARGET, "enrich");
    let stage = child_of_ingest(span, &super::of_event(event), &event.id, None);
    stage.set("odoo_gateway.subscription", subscription.to_owned());
    stage
}

/// One call of Odoo's external API (a child of the stage it runs in, if any).
pub fn odoo_call(model: &str, method: &str) -> Stage {
    if !exporting() {
        return Stage::off();
    }
    let stage = Stage(tracing::info_span!(target: TARGET, "odoo call", otel.kind = "client"));
    stage.set("odoo_gateway.odoo.model", model.to_owned());
    stage.set("odoo_gateway.odoo.method", method.to_owned());
    stage
}

/// One call of `subscription`'s plugin (`plugin`: its short hash) on `event`.
pub fn plugin_call(event: &Event, subscription: &str, plugin: Option<&str>) -> Stage {
    if !exporting() {
        return Stage::off();
    }
    let span = tracing::info_span!(target: TARGET, "plugin call");
    let stage = child_of_ingest(span, &super::of_event(event), &event.id, None);
    stage.set("odoo_gateway.subscription", subscription.to_owned());
    stage.set("odoo_gateway.plugin", plugin.unwrap_or("none").to_owned());
    stage
}

/// Attempt `job.attempts` (from 0) of delivery `job`: its span id is the one the attempt's
/// `traceparent` carries.
pub fn attempt(job: &Job) -> Stage {
    if !exporting() {
        return Stage::off();
    }
    let span = tracing::info_span!(target: TARGET, "delivery attempt", otel.kind = "client");
    let ids = Ids {
        trace: None,
        span: super::attempt_span_id(job, job.attempts),
    };
    let stage = child_of_ingest(span, &super::of_job(job), &job.event_id, Some(ids));
    stage.set("odoo_gateway.job", job.id.to_string());
    stage.set("odoo_gateway.subscription", job.subscription_id.clone());
    stage.set("odoo_gateway.destination", job.destination.clone());
    stage.set("odoo_gateway.attempt", i64::from(job.attempts) + 1);
    stage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_stages_hang_under_the_ingest_span_of_their_event() {
        let started = started_for(b"evt_1");
        // A trace the gateway started: the ingest span has the derived id, and the sampling
        // decision is the ratio's on the trace id (all of them at the default ratio).
        let parent = ingest_parent(&started, "evt_1");
        assert_eq!(parent.span_id(), SpanId::from_bytes(started.parent_id));
        assert_eq!(parent.trace_id().to_bytes(), started.trace_id.0);
        assert!(parent.is_sampled() && parent.is_remote());
        // A continued trace: the caller's trace and flags, still the event's ingest span.
        let caller = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
            .expect("valid");
        let parent = ingest_parent(&caller, "evt_1");
        assert_eq!(parent.trace_id().to_bytes(), caller.trace_id.0);
        assert_eq!(parent.span_id(), SpanId::from_bytes(started.parent_id));
        assert!(!parent.is_sampled(), "the caller did not sample it");
    }

    #[test]
    fn nothing_is_made_while_nothing_is_exported() {
        assert!(!exporting());
        assert!(ingest(&http::HeaderMap::new()).span.is_none());
        assert!(attempt_stub().0.is_none());
        assert_eq!(next_ids().map(|ids| ids.span), None);
    }

    fn attempt_stub() -> Stage {
        let job = Job {
            id: crate::store::JobId::delivery("evt_1", "sub", 0),
            kind: crate::store::JobKind::Deliver,
            event_id: "evt_1".into(),
            subscription_id: "sub".into(),
            destination: "d".into(),
            content_type: String::new(),
            body: Vec::new(),
            envelope: None,
            headers: Vec::new(),
            attempts: 0,
            created_ms: 0,
            due_ms: 0,
            last_error: None,
            member: None,
            order: None,
        };
        attempt(&job)
    }
}
