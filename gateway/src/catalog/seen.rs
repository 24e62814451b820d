//! The event types seen at ingest, with the shape of their payloads, for the catalog's types
//! that no configuration names and its inferred schemas.
//!
//! Ingest calls [`Seen::observe`] for every accepted event: a look in a small map, and at
//! most once a second per type a payload parsed into a [`Shape`] (off the lock). A stage
//! ([`run`]) writes what changed to the control plane every few seconds and at shutdown,
//! merged with what is stored there, so the catalog survives restarts and every instance of
//! a shared control plane sees what the others saw. Bounded: [`MAX_TYPES`] types, each shape
//! bounded by [`Shape`] itself. It never keeps a payload or a value from one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::infer::Shape;
use crate::control::ControlPlane;
use crate::event::Event;
use crate::store::StoreError;
use crate::time::now_ms;

/// Most event types remembered (per instance, and in the control plane).
pub const MAX_TYPES: usize = 1024;
/// A type's payload is parsed at most this often.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often what changed is written to the control plane.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// One event type seen from one source, as the control plane keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeenType {
    /// The source it came from.
    pub source: String,
    /// `<model>.<action>`.
    pub event_type: String,
    /// When it was last seen (ms since the epoch).
    pub seen_ms: u64,
    /// The shape of the payloads sampled.
    pub shape: Shape,
}

impl SeenType {
    /// The model and action of its type.
    pub fn model_action(&self) -> (&str, &str) {
        self.event_type
            .rsplit_once('.')
            .unwrap_or((&self.event_type, ""))
    }
}

#[derive(Debug)]
struct Local {
    sampled: Instant,
    seen_ms: u64,
    /// Sampled since the last write to the control plane.
    pending: Shape,
    dirty: bool,
}

/// How long the control plane's records are reused by catalog reads.
const STORED_FOR: Duration = Duration::from_secs(2);

/// What this instance saw and has not written yet, and the control plane's records as last
/// read.
#[derive(Debug, Default)]
pub struct Seen {
    types: Mutex<HashMap<(String, String), Local>>,
    stored: Mutex<Option<(Instant, Vec<SeenType>)>>,
}

impl Seen {
    /// Notes an accepted event.
    pub fn observe(&self, event: &Event) {
        let key = (event.source.clone(), event.event_type());
        let now = Instant::now();
        {
            let mut types = self.lock();
            let full = types.len() >= MAX_TYPES;
            match types.get_mut(&key) {
                Some(local) if now.duration_since(local.sampled) < SAMPLE_EVERY => {
                    local.seen_ms = now_ms();
                    local.dirty = true;
                    return;
                }
                Some(local) => local.sampled = now,
                None if full => return,
                None => {
                    types.insert(
                        key.clone(),
                        Local {
                            sampled: now,
                            seen_ms: now_ms(),
                            pending: Shape::default(),
                            dirty: true,
                        },
                    );
                }
            }
        }
        // Parsed outside the lock: ingest's other events need not wait for it.
        let Ok(payload) = serde_json::from_str::<serde_json::Value>(&event.payload) else {
            return;
        };
        let shape = Shape::of(&payload);
        if let Some(local) = self.lock().get_mut(&key) {
            local.pending.merge(&shape);
            local.seen_ms = now_ms();
            local.dirty = true;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Local>> {
        self.types.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What this instance saw and has not written yet, as records.
    pub fn pending(&self) -> Vec<SeenType> {
        self.lock()
            .iter()
            .filter(|(_, l)| l.dirty)
            .map(|((source, event_type), l)| SeenType {
                source: source.clone(),
                event_type: event_type.clone(),
                seen_ms: l.seen_ms,
                shape: l.pending.clone(),
            })
            .collect()
    }

    /// Writes what changed to `control`, each merged with what it holds; what could not be
    /// written stays pending.
    pub async fn flush(&self, control: &ControlPlane) -> Result<usize, StoreError> {
        let taken: Vec<SeenType> = {
            let mut types = self.lock();
            types
                .iter_mut()
                .filter(|(_, l)| l.dirty)
                .map(|((source, event_type), l)| {
                    l.dirty = false;
                    SeenType {
                        source: source.clone(),
                        event_type: event_type.clone(),
                        seen_ms: l.seen_ms,
                        shape: std::mem::take(&mut l.pending),
                    }
                })
                .collect()
        };
        let mut written = 0;
        let mut failed = None;
        for (n, record) in taken.iter().enumerate() {
            match write_one(control, record).await {
                Ok(()) => written += 1,
                Err(e) => {
                    // Back into memory, for the next round.
                    let mut types = self.lock();
                    for again in &taken[n..] {
                        let key = (again.source.clone(), again.event_type.clone());
                        if let Some(local) = types.get_mut(&key) {
                            local.pending.merge(&again.shape);
                            local.dirty = true;
                        }
                    }
                    failed = Some(e);
                    break;
                }
            }
        }
        if written > 0 {
            // What was pending is in the control plane now: read it from there next time.
            *self.stored.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }
}

async fn write_one(control: &ControlPlane, record: &SeenType) -> Result<(), StoreError> {
    let mut merged = record.clone();
    if let Some(stored) = control
        .seen_type::<SeenType>(&record.source, &record.event_type)
        .await?
    {
        merged.shape.merge(&stored.shape);
        merged.seen_ms = merged.seen_ms.max(stored.seen_ms);
    } else if control.seen_types::<SeenType>(MAX_TYPES).await?.len() >= MAX_TYPES {
        return Ok(());
    }
    control
        .put_seen_type(&merged.source, &merged.event_type, &merged)
        .await
}

/// The stage that writes what ingest saw to the control plane, every `FLUSH_EVERY` and
/// once more at shutdown.
pub async fn run(catalog: Arc<super::Catalog>, control: ControlPlane, stop: CancellationToken) {
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(FLUSH_EVERY) => false,
            () = stop.cancelled() => true,
        };
        if let Err(e) = catalog.seen.flush(&control).await {
            tracing::warn!(error = %e, "cannot write the event types seen; trying again later");
        }
        if stopping {
            return;
        }
    }
}

/// Every type seen: what the control plane holds, with what this instance has not written
/// yet merged in.
pub async fn all(seen: &Seen, control: &ControlPlane) -> Result<Vec<SeenType>, StoreError> {
    let recent = seen
        .stored
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .filter(|(at, _)| at.elapsed() < STORED_FOR)
        .map(|(_, records)| records.clone());
    let stored = match recent {
        Some(records) => records,
        None => {
            // Read at most every STORED_FOR: on NATS the bucket is one read per type.
            let records = control.seen_types::<SeenType>(MAX_TYPES).await?;
            *seen.stored.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), records.clone()));
            records
        }
    };
    let mut by_key: HashMap<(String, String), SeenType> = stored
        .into_iter()
        .map(|s| ((s.source.clone(), s.event_type.clone()), s))
        .collect();
    for pending in seen.pending() {
        let key = (pending.source.clone(), pending.event_type.clone());
        match by_key.get_mut(&key) {
            Some(stored) => {
                stored.shape.merge(&pending.shape);
                stored.seen_ms = stored.seen_ms.max(pending.seen_ms);
            }
            None => {
                by_key.insert(key, pending);
            }
        }
    }
    Ok(by_key.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, model: &str, payload: &str) -> Event {
        Event {
            id: "evt_1".into(),
            source: source.into(),
            model: model.into(),
            action: "create".into(),
            record_id: None,
            received_at_ms: 1,
            seq: 0,
            payload: payload.into(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn a_type_is_sampled_once_a_second_and_new_types_stop_at_the_bound() {
        let seen = Seen::default();
        seen.observe(&event("shop", "cart", r#"{"id": 1}"#));
        seen.observe(&event("shop", "cart", r#"{"id": 2, "total": 3.5}"#));
        let pending = seen.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].event_type, "cart.create");
        assert_eq!(
            pending[0].shape.objects, 1,
            "the second came within the second"
        );
        for i in 0..MAX_TYPES + 10 {
            seen.observe(&event("shop", &format!("m{i}"), "{}"));
        }
        assert_eq!(seen.lock().len(), MAX_TYPES);
    }
}
