//! The transform step: what one subscription makes of one event.
//!
//! Shared by fan-out (subscriptions without a plugin are transformed inline, cheaply), the
//! dispatcher (a plugin call is its own unit of work, run in the subscription's lane) and the
//! API's replay. It turns an outcome into jobs with stable ids, and builds pass-through bodies
//! from the stored event at delivery time. It never writes to the store. [`enrich`] reads the
//! related records a subscription asks for from Odoo before its plugin or pass-through body.

pub mod enrich;

use std::sync::Arc;

use crate::config::{Format, Subscription};
use crate::event::Event;
use crate::plugin::Delivery;
use crate::store::{CallFailure, DeadLetter, DeadReason, Job, JobId, JobKind};
use crate::xmljson;

/// Event header that restricts an event to one subscription (the API's test events). Ingest
/// never copies it from a request, so only the gateway itself can set it.
pub const ONLY_SUBSCRIPTION_HEADER: &str = "x-gateway-only-subscription";

/// The one subscription `event` is meant for, when it is targeted.
pub fn only_subscription(event: &Event) -> Option<&str> {
    event
        .headers
        .iter()
        .find(|(k, _)| k == ONLY_SUBSCRIPTION_HEADER)
        .map(|(_, v)| v.as_str())
}

/// Whether `sub` wants `event` (its patterns match, it is enabled, and a targeted event is
/// aimed at it).
pub fn wants(sub: &Subscription, event: &Event, event_type: &str) -> bool {
    sub.enabled
        && only_subscription(event).is_none_or(|id| id == sub.id)
        && crate::subscriptions::any_matches(&sub.patterns, event_type)
        // An app's subscription gets only the events its app is granted now, from the sources
        // it is granted (its own test events aside).
        && sub
            .grants
            .as_ref()
            .is_none_or(|grants| crate::subscriptions::any_matches(grants, event_type))
        && (only_subscription(event).is_some()
            || sub
                .granted_sources
                .as_ref()
                .is_none_or(|sources| sources.contains(&event.source)))
}

/// What one subscription made of one event.
#[derive(Debug)]
pub enum Outcome {
    /// Deliveries to queue (possibly none: filtered out).
    Deliver(Vec<Delivery>),
    /// Run the plugin again later (it asked to, or hit a limit that may pass).
    RetryLater(CallFailure),
    /// Give up; the reason goes to the dead-letter store.
    GiveUp(CallFailure),
}

/// The event after the subscription's payload filter: `None` when filtered out. A test event
/// aimed at the subscription skips the filter: it exists to show the receiver works.
fn filtered(sub: &Subscription, event: &Arc<Event>) -> Option<Arc<Event>> {
    let Some(filter) = &sub.filter else {
        return Some(event.clone());
    };
    if only_subscription(event).is_some() {
        return Some(event.clone());
    }
    match filter.apply(&event.payload)? {
        std::borrow::Cow::Borrowed(_) => Some(event.clone()),
        std::borrow::Cow::Owned(payload) => Some(Arc::new(Event {
            payload,
            ..Event::clone(event)
        })),
    }
}

/// The jobs for a subscription without a plugin, made in line by fan-out: one delivery whose
/// body is built from the stored event when it is sent (the payload is not copied), or with
/// its body written out when the field filter changed the payload.
pub fn pass_through_jobs(sub: &Subscription, event: &Arc<Event>, now_ms: u64) -> Vec<Job> {
    let Some(event_after) = filtered(sub, event) else {
        return Vec::new();
    };
    let mut job = base_job(event, sub, JobId::delivery(&event.id, &sub.id, 0), now_ms);
    job.destination = sub.destinations[0].clone();
    if Arc::ptr_eq(&event_after, event) {
        job.content_type = content_type(sub.format).to_owned();
        job.envelope = Some(sub.format);
    } else {
        let delivery = pass_through(&event_after, sub.format);
        job.content_type = delivery.content_type;
        job.body = delivery.body;
    }
    vec![job]
}

/// The plugin call of `sub` for `event`, as a job of its own, due at `due_ms`.
pub fn transform_job(sub: &Subscription, event: &Event, now_ms: u64, due_ms: u64) -> Job {
    let mut job = base_job(event, sub, JobId::transform(&event.id, &sub.id), now_ms);
    job.kind = JobKind::Transform;
    job.destination = sub.destinations[0].clone();
    job.due_ms = due_ms;
    job
}

/// Runs the subscription's plugin on a blocking thread (after the payload filter). The caller
/// holds the plugin slot.
pub async fn run_plugin(sub: &Arc<Subscription>, event: &Arc<Event>) -> Outcome {
    let (sub, event) = (sub.clone(), event.clone());
    tokio::task::spawn_blocking(move || call_plugin(&sub, &event))
        .await
        .unwrap_or_else(|join| Outcome::RetryLater(CallFailure::Task(join.to_string())))
}

/// Runs the subscription's plugin here (after the payload filter): blocking, bounded by the
/// plugin limits. The caller holds the plugin slot.
pub fn call_plugin(sub: &Subscription, event: &Arc<Event>) -> Outcome {
    let stage =
        crate::trace::plugin_call(event, &sub.id, sub.plugin.as_ref().map(|p| p.short_hash()));
    let _entered = stage.span().enter();
    let outcome = call_plugin_here(sub, event);
    let (name, failure) = match &outcome {
        Outcome::Deliver(made) => {
            stage.set(
                "odoo_gateway.deliveries",
                i64::try_from(made.len()).unwrap_or(i64::MAX),
            );
            ("deliver", None)
        }
        Outcome::RetryLater(why) => ("retry", Some(why)),
        Outcome::GiveUp(why) => ("gave_up", Some(why)),
    };
    stage.set("odoo_gateway.outcome", name);
    if let Some(why) = failure {
        stage.set("odoo_gateway.error_code", why.code());
        stage.fail(why.to_string());
    }
    outcome
}

fn call_plugin_here(sub: &Subscription, event: &Arc<Event>) -> Outcome {
    let Some(event) = filtered(sub, event) else {
        return Outcome::Deliver(Vec::new());
    };
    let Some(plugin) = &sub.plugin else {
        return Outcome::Deliver(vec![pass_through(&event, sub.format)]);
    };
    match plugin.handle(&event, &sub.plugin_config) {
        Ok(output) => Outcome::Deliver(output.deliveries),
        Err(e) if e.is_retryable() => Outcome::RetryLater(e.into()),
        Err(e) => Outcome::GiveUp(e.into()),
    }
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        Format::Xml => "application/xml",
    }
}

/// The event as a JSON or XML envelope, for subscriptions without a plugin.
pub fn pass_through(event: &Event, format: Format) -> Delivery {
    let body = match format {
        Format::Json => json_envelope(event),
        Format::Xml => {
            let payload: serde_json::Value =
                serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
            let record_id = event.record_id.map(|r| r.to_string()).unwrap_or_default();
            let received = event.received_at_ms.to_string();
            let mut attrs = vec![
                ("id", event.id.as_str()),
                ("source", event.source.as_str()),
                ("model", event.model.as_str()),
                ("action", event.action.as_str()),
                ("received-at-ms", received.as_str()),
            ];
            if event.record_id.is_some() {
                attrs.push(("record-id", record_id.as_str()));
            }
            let wrapped = serde_json::json!({ "payload": payload });
            xmljson::to_document("event", &attrs, &wrapped)
        }
    };
    Delivery {
        destination: String::new(),
        content_type: content_type(format).into(),
        body,
        headers: Vec::new(),
        ordering_key: None,
    }
}

/// The JSON envelope, its keys in alphabetical order, the payload written as it was received
/// (it is JSON, checked without building it; `null` if it is not): made once per delivery, so
/// it is written straight out rather than built as a tree first.
fn json_envelope(event: &Event) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, key: &str, value: &str) {
        out.extend_from_slice(key.as_bytes());
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
    let payload = event.payload.trim();
    let valid = serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok();
    let mut out = Vec::with_capacity(payload.len() + 160);
    text(&mut out, "{\"action\":", &event.action);
    text(&mut out, ",\"id\":", &event.id);
    text(&mut out, ",\"model\":", &event.model);
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(if valid { payload.as_bytes() } else { b"null" });
    out.extend_from_slice(format!(",\"received_at_ms\":{}", event.received_at_ms).as_bytes());
    match event.record_id {
        Some(id) => out.extend_from_slice(format!(",\"record_id\":{id}").as_bytes()),
        None => out.extend_from_slice(b",\"record_id\":null"),
    }
    text(&mut out, ",\"source\":", &event.source);
    out.push(b'}');
    out
}

fn base_job(event: &Event, sub: &Subscription, id: JobId, now_ms: u64) -> Job {
    Job {
        id,
        kind: JobKind::Deliver,
        event_id: event.id.clone(),
        subscription_id: sub.id.clone(),
        destination: String::new(),
        content_type: String::new(),
        body: Vec::new(),
        envelope: None,
        // The event's trace, kept with the job so that retries and replays carry it.
        headers: crate::trace::job_headers(event),
        attempts: 0,
        created_ms: now_ms,
        due_ms: now_ms,
        last_error: None,
        member: None,
        // Ordered delivery: the event's key and its acceptance order.
        order: sub.ordering.as_ref().map(|template| crate::store::Order {
            key: template.key(event),
            seq: event.seq,
            held: None,
        }),
    }
}

/// Turns a plugin's deliveries into jobs due now, and deliveries to a destination the
/// subscription does not have into dead letters.
pub fn delivery_jobs(
    event: &Event,
    sub: &Subscription,
    deliveries: Vec<Delivery>,
    now_ms: u64,
) -> (Vec<Job>, Vec<DeadLetter>) {
    let (mut jobs, mut dead) = (Vec::new(), Vec::new());
    for (n, d) in deliveries.into_iter().enumerate() {
        let mut job = base_job(event, sub, JobId::delivery(&event.id, &sub.id, n), now_ms);
        job.destination = if d.destination.is_empty() {
            sub.destinations[0].clone()
        } else {
            d.destination
        };
        if !sub.destinations.contains(&job.destination) {
            let reason = DeadReason::PluginInvalidOutput(format!(
                "destination `{}` is not one of the subscription's",
                job.destination
            ));
            dead.push(DeadLetter {
                job,
                reason: reason.to_string(),
                at_ms: now_ms,
            });
            continue;
        }
        job.content_type = d.content_type;
        job.body = d.body;
        job.headers.extend(d.headers);
        // A key the plugin chose replaces its event's (the acceptance order stays the event's).
        if let (Some(order), Some(key)) = (job.order.as_mut(), d.ordering_key) {
            order.key = key;
        }
        jobs.push(job);
    }
    (jobs, dead)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str, record_id: Option<i64>) -> Event {
        Event {
            id: "evt_1".into(),
            source: "odoo \"main\"".into(),
            model: "sale.order".into(),
            action: "confirmed".into(),
            record_id,
            received_at_ms: 1_715_677_960_000,
            seq: 0,
            payload: payload.into(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn the_json_envelope_holds_the_event_and_its_payload_as_received() {
        let payload = r#"{"b": 1.50, "a": [1, 2], "big": 123456789012345678901234567890}"#;
        let body = pass_through(&event(payload, Some(12)), Format::Json).body;
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.contains(payload), "{text}");
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (value["id"].as_str(), value["source"].as_str()),
            (Some("evt_1"), Some("odoo \"main\""))
        );
        assert_eq!(value["model"], "sale.order");
        assert_eq!(value["action"], "confirmed");
        assert_eq!(value["record_id"], 12);
        assert_eq!(value["received_at_ms"], 1_715_677_960_000_u64);
        assert_eq!(value["payload"]["a"], serde_json::json!([1, 2]));

        let body = pass_through(&event("not json {", None), Format::Json).body;
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            value["payload"].is_null() && value["record_id"].is_null(),
            "{value}"
        );
    }
}
