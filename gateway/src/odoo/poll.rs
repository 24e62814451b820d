//! The polling source: changes read from Odoo, for versions without the webhook action
//! (9 to 16) and to reconcile the fire-and-forget webhook of 17+.
//!
//! Per polled model, `search_read` pages of the records changed after the cursor, ordered by
//! `write_date, id` (keyset paging: `write_date > w or (write_date = w and id > i)`, so a page
//! boundary inside one second loses nothing). A record whose `create_date` equals its
//! `write_date` is a `create`, any other a `write`. Each change enters through the store's
//! accept path like an ingested event, with the explicit dedup key `model/id/write_date`; the
//! cursor (in sled) moves only once the page's events are durable. So a crash re-reads at
//! most one page, and the dedup keys make the re-read deliver nothing twice.
//!
//! Polling cannot see deletions. For small models, `detect_deletions` compares the model's
//! ids every `deletions_every` and sends an `unlink` event for each id gone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::cursor::{self, Cursor};
use super::{OdooError, OdooSource, Poll, PollModelConfig};
use crate::event::Event;
use crate::state::{State, now_ms};
use crate::store::{DedupKey, StoreError};

/// How often the configuration is looked at for models to start polling.
const TICK: Duration = Duration::from_millis(500);
/// Longest pause after failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The time before every `write_date` Odoo can have.
const EPOCH: &str = "1970-01-01 00:00:00";

/// Where a model without a stored cursor starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Changes from the first poll on.
    Now,
    /// Every record.
    Beginning,
    /// Changes after this UTC time (`YYYY-MM-DD HH:MM:SS`).
    After(String),
}

impl Start {
    /// Reads `now`, `beginning` or a time in Odoo's datetime format.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "now" => Ok(Self::Now),
            "beginning" => Ok(Self::Beginning),
            t if super::time::is_odoo_datetime(t) => Ok(Self::After(t.to_owned())),
            t => Err(format!(
                "`{t}`: give `now`, `beginning` or a UTC time `YYYY-MM-DD HH:MM:SS`"
            )),
        }
    }
}

/// Why one poll of a model stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Odoo failed.
    #[error(transparent)]
    Odoo(#[from] OdooError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The store refuses new events (disk budget, failing disk).
    #[error("the store takes no new events now")]
    StoreRefuses,
}

impl From<sled::Error> for PollError {
    fn from(e: sled::Error) -> Self {
        Self::Store(e.into())
    }
}

/// The explicit dedup key of a change: the same for the polled change and, in reconcile
/// mode, for a webhook body of the same record carrying the same `write_date`.
pub fn change_key(model: &str, id: i64, write_date: &str) -> String {
    format!("{model}/{id}/{write_date}")
}

/// In reconcile mode, the change key of a webhook body that carries `write_date` (select
/// that field in the server action): the polled change of the same record is then a duplicate.
pub fn webhook_change(
    source: &crate::config::Source,
    incoming: &crate::ingest::parse::Incoming,
) -> Option<String> {
    if !source.reconciles() {
        return None;
    }
    let payload: Value = serde_json::from_str(&incoming.payload).ok()?;
    let write_date = payload.get("write_date")?.as_str()?;
    Some(change_key(&incoming.model, incoming.record_id?, write_date))
}

/// Runs until `shutdown`: one task per polled model, so that a slow or unreachable Odoo
/// delays the polling of its own models only. Tasks start and stop with the configuration
/// (a reload that adds or removes a model); one that ended (its model removed, or a panic) is
/// started again while its model is configured.
pub async fn run(state: Arc<State>, shutdown: CancellationToken) {
    let mut tasks: HashMap<(String, String), tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let snapshot = state.snapshot.load_full();
        tasks.retain(|_, task| !task.is_finished());
        for source in snapshot.sources.values() {
            let Some(poll) = source.odoo.as_ref().and_then(|o| o.poll.as_ref()) else {
                continue;
            };
            for model in &poll.models {
                let k = (source.name.clone(), model.model.clone());
                if let std::collections::hash_map::Entry::Vacant(free) = tasks.entry(k) {
                    let task = poll_loop(state.clone(), free.key().clone(), shutdown.clone());
                    free.insert(tokio::spawn(task));
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = shutdown.cancelled() => break,
        }
    }
    for (_, task) in tasks {
        let _ = task.await;
    }
}

/// Polls one model every `interval` (backing off after failures) until `shutdown` or until
/// a reload removes it. A poll cut short by shutdown loses nothing: its cursor has not moved
/// past what is durable.
async fn poll_loop(
    state: Arc<State>,
    (source, model): (String, String),
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut last_deletions: Option<Instant> = None;
    loop {
        let snapshot = state.snapshot.load_full();
        let found = snapshot.sources.get(&source).and_then(|s| {
            let odoo = s.odoo.as_ref()?;
            let poll = odoo.poll.as_ref()?;
            Some((odoo, poll, poll.models.iter().find(|m| m.model == model)?))
        });
        let Some((odoo, poll, polled)) = found else {
            return;
        };
        let outcome = tokio::select! {
            outcome = poll_model(&state, &source, odoo, poll, polled, &shutdown) => outcome,
            () = shutdown.cancelled() => return,
        };
        match outcome {
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(source, model, changes = n, "polled");
                }
                failures = 0;
            }
            Err(e) => {
                tracing::warn!(source, model, error = %e, "polling failed; tried again later");
                failures += 1;
            }
        }
        let deletions_due = last_deletions.is_none_or(|t| t.elapsed() >= poll.deletions_every);
        if failures == 0 && polled.detect_deletions && deletions_due {
            let checked = tokio::select! {
                checked = find_deletions(&state, &source, odoo, polled) => checked,
                () = shutdown.cancelled() => return,
            };
            match checked {
                Ok(_) => last_deletions = Some(Instant::now()),
                Err(e) => tracing::warn!(source, model, error = %e, "deletion check failed"),
            }
        }
        let pause = if failures == 0 {
            poll.interval
        } else {
            (poll.interval * 2u32.pow(failures.min(10))).min(MAX_BACKOFF.max(poll.interval))
        };
        drop(snapshot);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One poll of one model: every change after the cursor, page by page. The number of
/// changes read.
pub async fn poll_model(
    state: &State,
    source: &str,
    odoo: &OdooSource,
    poll: &Poll,
    model: &PollModelConfig,
    shutdown: &CancellationToken,
) -> Result<usize, PollError> {
    let client = &odoo.client;
    let name = model.model.as_str();
    let store = &state.store;
    let mut stored = match cursor::cursor(store, source, name)? {
        Some(c) => c,
        None => {
            let first = initial_cursor(odoo, poll, name).await?;
            cursor::save_start(store, source, name, &first)?;
            first
        }
    };
    let floor = cursor::start_floor(store, source, name)?;
    let mut at = stored.rewound(poll.overlap, floor.as_ref());
    let mut fields = model.fields.clone();
    if !fields.is_empty() {
        for always in ["id", "create_date", "write_date"] {
            if !fields.iter().any(|f| f == always) {
                fields.push(always.to_owned());
            }
        }
    }
    let mut read = 0;
    loop {
        let domain = json!([
            "|",
            ["write_date", ">", at.write_date],
            "&",
            ["write_date", "=", at.write_date],
            ["id", ">", at.id]
        ]);
        let page = client
            .search_read(
                name,
                domain,
                &fields,
                "write_date asc, id asc",
                poll.page_size,
            )
            .await?;
        let Some(last) = page.last().and_then(change_of) else {
            return Ok(read);
        };
        let full = page.len() >= poll.page_size as usize;
        let mut accepted = false;
        for record in &page {
            let Some((id, write_date)) = change_of(record) else {
                continue;
            };
            let action = if record["create_date"].as_str() == Some(write_date.as_str()) {
                "create"
            } else {
                "write"
            };
            accept(
                state,
                source,
                name,
                action,
                id,
                &write_date,
                record.to_string(),
            )
            .await?;
            accepted = true;
        }
        if accepted {
            state.store.durable().await?;
            state.fanout_wake.notify_one();
        }
        read += page.len();
        at = Cursor {
            write_date: last.1,
            id: last.0,
        };
        // Re-reading the overlap never moves the stored cursor back.
        if at.is_after(&stored) {
            cursor::save_cursor(store, source, name, &at)?;
            stored = at.clone();
        }
        if !full || shutdown.is_cancelled() {
            return Ok(read);
        }
    }
}

/// The id and `write_date` of a polled record.
fn change_of(record: &Value) -> Option<(i64, String)> {
    Some((
        record["id"].as_i64()?,
        record["write_date"].as_str()?.to_owned(),
    ))
}

async fn initial_cursor(odoo: &OdooSource, poll: &Poll, model: &str) -> Result<Cursor, OdooError> {
    let from = |write_date: &str, id| Cursor {
        write_date: write_date.to_owned(),
        id,
    };
    match &poll.start {
        Start::Beginning => Ok(from(EPOCH, 0)),
        Start::After(t) => Ok(from(t, i64::MAX)),
        Start::Now => {
            let fields = ["write_date".to_owned()];
            let latest = odoo
                .client
                .search_read(model, json!([]), &fields, "write_date desc, id desc", 1)
                .await?;
            Ok(match latest.first().and_then(change_of) {
                Some((id, write_date)) => from(&write_date, id),
                None => from(EPOCH, 0),
            })
        }
    }
}

/// Stores one change as an event (not yet durable). A change already stored is skipped.
async fn accept(
    state: &State,
    source: &str,
    model: &str,
    action: &str,
    id: i64,
    write_date: &str,
    payload: String,
) -> Result<(), PollError> {
    if state.work.store().is_some()
        && (state.store.unavailable().is_some() || state.store.is_full())
    {
        return Err(PollError::StoreRefuses);
    }
    let event = Event {
        id: crate::ingest::new_event_id(),
        source: source.to_owned(),
        model: model.to_owned(),
        action: action.to_owned(),
        record_id: Some(id),
        received_at_ms: now_ms(),
        payload,
        headers: Vec::new(),
    };
    let dedup = DedupKey::Explicit {
        source: source.to_owned(),
        id: change_key(model, id, write_date),
    };
    match &state.work {
        crate::workplane::WorkPlane::Nats(work) => work.accept(&event, &dedup).await?,
        crate::workplane::WorkPlane::Sled(_) => state.store.accept(&event, &dedup)?,
    };
    Ok(())
}

/// Compares the model's ids with those seen last time; an `unlink` event for each one gone.
async fn find_deletions(
    state: &State,
    source: &str,
    odoo: &OdooSource,
    model: &PollModelConfig,
) -> Result<usize, PollError> {
    let name = model.model.as_str();
    let ids: BTreeSet<i64> = odoo
        .client
        .search(name, json!([]))
        .await?
        .into_iter()
        .collect();
    if ids.len() > model.max_ids {
        tracing::warn!(
            source,
            model = name,
            ids = ids.len(),
            max_ids = model.max_ids,
            "too many records for the deletion check; skipped"
        );
        return Ok(0);
    }
    let before = cursor::known_ids(&state.store, source, name)?;
    let gone: Vec<i64> = before
        .map(|b| b.difference(&ids).copied().collect())
        .unwrap_or_default();
    for &id in &gone {
        let payload = json!({ "id": id }).to_string();
        accept(state, source, name, "unlink", id, "unlink", payload).await?;
    }
    if !gone.is_empty() {
        state.store.durable().await?;
        state.fanout_wake.notify_one();
    }
    cursor::save_ids(&state.store, source, name, &ids)?;
    Ok(gone.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_now_beginning_or_an_odoo_time() {
        assert_eq!(Start::parse("now"), Ok(Start::Now));
        assert_eq!(Start::parse("beginning"), Ok(Start::Beginning));
        assert_eq!(
            Start::parse("2024-05-14 09:12:40"),
            Ok(Start::After("2024-05-14 09:12:40".into()))
        );
        assert!(Start::parse("2024-05-14T09:12:40").is_err());
        assert!(Start::parse("yesterday").is_err());
    }

    #[test]
    fn a_change_is_keyed_by_model_id_and_write_date() {
        assert_eq!(
            change_key("sale.order", 12, "2024-05-14 09:12:40"),
            "sale.order/12/2024-05-14 09:12:40"
        );
    }
}
