//! Fan-out: turning each accepted event into queued delivery jobs.
//!
//! A background task walks the backlog of accepted events in order. For every subscription
//! whose patterns match, it runs the plugin (or formats the payload when there is none) and
//! queues the resulting jobs; the event leaves the backlog only after they are written, so
//! after a crash fan-out resumes where it stopped. Plugins run on blocking threads, a bounded
//! number at a time; this module never makes a network call.

pub mod filter;

use std::sync::Arc;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::config::{Format, Snapshot, Subscription};
use crate::event::Event;
use crate::plugin::PluginError;
use crate::state::{State, now_ms};
use crate::store::{DeadLetter, Job, JobKind, StoreError};
use crate::subscriptions::any_matches;
use crate::xmljson;

/// Events fanned out concurrently (each may run several plugins).
const CONCURRENT_EVENTS: usize = 8;
/// Backlog entries read per round.
const BATCH: usize = 256;

/// Event header that restricts an event to one subscription (the API's test events). Ingest
/// never copies it from a request, so only the gateway itself can set it.
pub const ONLY_SUBSCRIPTION_HEADER: &str = "x-gateway-only-subscription";

/// The one subscription `event` is meant for, when it is targeted.
fn only_subscription(event: &Event) -> Option<&str> {
    event
        .headers
        .iter()
        .find(|(k, _)| k == ONLY_SUBSCRIPTION_HEADER)
        .map(|(_, v)| v.as_str())
}

/// Runs until `shutdown`, fanning out every pending event.
pub async fn run(state: Arc<State>, shutdown: CancellationToken) {
    loop {
        // Register interest before reading, so a wake between the read and the wait is kept.
        let woken = state.fanout_wake.notified();
        let batch = match state.store.pending(None, BATCH) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the fan-out backlog");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = woken => continue,
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
            }
        }
        let mut done = futures_util::stream::iter(batch)
            .map(|(key, event)| {
                let state = state.clone();
                async move { fan_out_one(&state, &key, event).await }
            })
            .buffer_unordered(CONCURRENT_EVENTS);
        while let Some(result) = done.next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "fan-out failed; the event stays in the backlog");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        state.dispatch_wake.notify_one();
        if shutdown.is_cancelled() {
            return;
        }
    }
}

async fn fan_out_one(
    state: &Arc<State>,
    pending_key: &[u8],
    event: Event,
) -> Result<(), StoreError> {
    let snapshot = state.snapshot.load_full();
    let event = Arc::new(event);
    let event_type = event.event_type();
    let mut jobs = Vec::new();
    let mut dead = Vec::new();
    let only = only_subscription(&event);
    let wanted = |s: &&Arc<Subscription>| {
        only.is_none_or(|id| id == s.id) && any_matches(&s.patterns, &event_type)
    };
    for sub in snapshot.subscriptions.iter().filter(wanted) {
        let outcome = transform(state, &snapshot, sub, &event).await;
        collect(state, &event, sub, outcome, &mut jobs, &mut dead);
    }
    state.store.enqueue(&jobs, &dead, Some(pending_key))?;
    Ok(())
}

/// What one subscription made of one event.
pub(crate) enum Outcome {
    /// Deliveries to queue (possibly none: filtered out).
    Deliver(Vec<crate::plugin::Delivery>),
    /// Run the plugin again later.
    RetryLater(String),
    /// Give up; the reason goes to the dead-letter store.
    GiveUp(String),
}

/// Runs the subscription's plugin, or formats the payload when it has none.
pub(crate) async fn transform(
    state: &Arc<State>,
    snapshot: &Snapshot,
    sub: &Arc<Subscription>,
    event: &Arc<Event>,
) -> Outcome {
    // The payload filter runs first, so a filtered-out event costs no plugin call. A test
    // event aimed at this subscription skips it: it exists to show the receiver works.
    let filtered;
    let event = match &sub.filter {
        Some(filter) if only_subscription(event).is_none() => match filter.apply(&event.payload) {
            None => return Outcome::Deliver(Vec::new()),
            Some(std::borrow::Cow::Borrowed(_)) => event,
            Some(std::borrow::Cow::Owned(payload)) => {
                filtered = Arc::new(Event {
                    payload,
                    ..Event::clone(event)
                });
                &filtered
            }
        },
        _ => event,
    };
    let Some(plugin) = sub.plugin.clone() else {
        return Outcome::Deliver(vec![pass_through(event, sub.format)]);
    };
    let _ = snapshot;
    let Ok(_permit) = state.plugin_slots.acquire().await else {
        return Outcome::RetryLater("the gateway is shutting down".into());
    };
    let (event, config) = (event.clone(), sub.plugin_config.clone());
    let result = tokio::task::spawn_blocking(move || plugin.handle(&event, &config)).await;
    match result {
        Ok(Ok(output)) => Outcome::Deliver(output.deliveries),
        Ok(Err(e @ (PluginError::Retry(_) | PluginError::CpuExceeded { .. }))) => {
            Outcome::RetryLater(format!("{}: {e}", e.code()))
        }
        Ok(Err(e)) => Outcome::GiveUp(format!("{}: {e}", e.code())),
        Err(join) => Outcome::RetryLater(format!("plugin task failed: {join}")),
    }
}

/// The event as a JSON or XML envelope, for subscriptions without a plugin.
pub fn pass_through(event: &Event, format: Format) -> crate::plugin::Delivery {
    let payload: serde_json::Value =
        serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
    let (content_type, body) = match format {
        Format::Json => {
            let envelope = serde_json::json!({
                "id": event.id,
                "source": event.source,
                "model": event.model,
                "action": event.action,
                "record_id": event.record_id,
                "received_at_ms": event.received_at_ms,
                "payload": payload,
            });
            ("application/json", envelope.to_string().into_bytes())
        }
        Format::Xml => {
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
            (
                "application/xml",
                xmljson::to_document("event", &attrs, &wrapped),
            )
        }
    };
    crate::plugin::Delivery {
        destination: String::new(),
        content_type: content_type.into(),
        body,
        headers: Vec::new(),
    }
}

/// Turns an outcome into queue jobs or dead letters with stable ids.
/// Jobs are due now, except a plugin retry, which waits for the first backoff delay.
pub(crate) fn collect(
    state: &State,
    event: &Event,
    sub: &Subscription,
    outcome: Outcome,
    jobs: &mut Vec<(Job, u64)>,
    dead: &mut Vec<DeadLetter>,
) {
    let now = now_ms();
    let base = |n: usize, kind: JobKind, destination: String| Job {
        id: format!("{}.{}.{n}", event.id, sub.id),
        kind,
        event_id: event.id.clone(),
        subscription_id: sub.id.clone(),
        destination,
        content_type: String::new(),
        body: Vec::new(),
        headers: Vec::new(),
        attempts: 0,
        created_ms: now,
        last_error: None,
    };
    match outcome {
        Outcome::Deliver(deliveries) => {
            for (n, d) in deliveries.into_iter().enumerate() {
                let destination = if d.destination.is_empty() {
                    sub.destinations[0].clone()
                } else {
                    d.destination
                };
                let mut job = base(n, JobKind::Deliver, destination);
                if !sub.destinations.contains(&job.destination) {
                    let reason = format!(
                        "plugin_invalid_output: destination `{}` is not one of the subscription's",
                        job.destination
                    );
                    dead.push(DeadLetter {
                        job,
                        reason,
                        at_ms: now,
                    });
                    continue;
                }
                job.content_type = d.content_type;
                job.body = d.body;
                job.headers = d.headers;
                jobs.push((job, now));
            }
        }
        Outcome::RetryLater(reason) => {
            let mut job = base(0, JobKind::Transform, sub.destinations[0].clone());
            job.id = format!("{}.{}.transform", event.id, sub.id);
            job.last_error = Some(reason);
            let delay = state.backoff_delay(1, None);
            jobs.push((job, now + delay.as_millis() as u64));
        }
        Outcome::GiveUp(reason) => {
            let mut job = base(0, JobKind::Transform, sub.destinations[0].clone());
            job.id = format!("{}.{}.transform", event.id, sub.id);
            dead.push(DeadLetter {
                job,
                reason,
                at_ms: now,
            });
        }
    }
}
