//! The polling source: changes read from Odoo, for versions without the webhook action
//! (9 to 16) and to reconcile the fire-and-forget webhook of 17+.
//!
//! Per polled model, `search_read` pages of the records changed from the cursor's second on,
//! as [`super::plan`] plans them: whole seconds in `write_date, id` order, a second of more
//! than a page by id, the last second seen read again by the next poll (Odoo shows
//! `write_date` to the second and keeps it to the microsecond, so that second may still get
//! changes). A record whose `create_date` equals its `write_date` is a `create`, any other a
//! `write`. Each change enters through the store's accept path like an ingested event, with
//! the explicit dedup key of [`crate::odoo::change`] (model, id, `write_date` and a fingerprint of
//! the fields read, so that two changes within one second are two events and the same state
//! read again is none); the cursor moves only once the page's events are durable. So a crash
//! re-reads at most the last second and a page, and the dedup keys make the re-read deliver
//! nothing twice.
//!
//! On the NATS engine ([`super::shared`]) every instance runs this stage; one polls each model
//! at a time (the holder of its lease), from the cursor they share, and a change is accepted
//! only if the shared bucket of changes has not seen its key.
//!
//! Polling cannot see deletions. For small models, `detect_deletions` compares the model's
//! ids every `deletions_every` and sends an `unlink` event for each id gone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Handles;
use super::cursor::{self, Cursor, Keeper};
use super::plan::{self, Query};
use super::shared::{Lease, RENEW};
use crate::event::Event;
pub use crate::odoo::Start;
use crate::odoo::change::{Change, change_key, fingerprint, unlink_key};
use crate::odoo::{OdooError, OdooSource, Poll, PollModelConfig};
use crate::store::{DedupKey, StoreError};
use crate::time::now_ms;

/// How often the configuration is looked at for models to start polling.
const TICK: Duration = Duration::from_millis(500);
/// Longest pause after failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why one poll of a model stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Odoo failed.
    #[error(transparent)]
    Odoo(#[from] OdooError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The work plane refuses new events (disk budget, failing disk, NATS unreachable).
    #[error("the work plane takes no new events now")]
    StoreRefuses,
}

impl From<sled::Error> for PollError {
    fn from(e: sled::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Runs until `shutdown`: one task per polled model, so that a slow or unreachable Odoo
/// delays the polling of its own models only. Tasks start and stop with the configuration
/// (a reload that adds or removes a model); one that ended (its model removed, or a panic) is
/// started again while its model is configured. On the NATS engine every instance runs the
/// tasks, and each polls only while it holds its model's lease.
pub async fn run(state: Arc<Handles>, shutdown: CancellationToken) {
    let mut tasks: HashMap<(String, String), tokio::task::JoinHandle<()>> = HashMap::new();
    // Opened when the first model is to be polled (on NATS, its buckets are made then).
    let mut keeper: Option<Keeper> = None;
    loop {
        let snapshot = state.snapshot.load_full();
        tasks.retain(|_, task| !task.is_finished());
        let polled = snapshot
            .sources
            .values()
            .filter_map(|s| Some((s, s.odoo.as_ref()?.poll.as_ref()?)));
        for (source, poll) in polled {
            for model in &poll.models {
                let k = (source.name.clone(), model.model.clone());
                let std::collections::hash_map::Entry::Vacant(free) = tasks.entry(k) else {
                    continue;
                };
                if keeper.is_none() {
                    match Keeper::of(&state.store, &state.control, &snapshot).await {
                        Ok(opened) => keeper = Some(opened),
                        Err(e) => {
                            tracing::warn!(error = %e, "polling cannot keep cursors yet; trying again")
                        }
                    }
                }
                let Some(keeper) = keeper.clone() else {
                    break;
                };
                let task = poll_loop(state.clone(), keeper, free.key().clone(), shutdown.clone());
                free.insert(tokio::spawn(task));
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
/// a reload removes it, and then gives its lease up. A poll cut short by shutdown loses
/// nothing: its cursor has not moved past what is durable.
async fn poll_loop(
    state: Arc<Handles>,
    keeper: Keeper,
    (source, model): (String, String),
    shutdown: CancellationToken,
) {
    let mut lease = keeper.shared().map(|s| s.lease(&source, &model));
    poll_while_configured(&state, &keeper, lease.as_mut(), &source, &model, &shutdown).await;
    if let Some(lease) = lease.as_mut() {
        lease.release().await;
    }
}

async fn poll_while_configured(
    state: &Handles,
    keeper: &Keeper,
    mut lease: Option<&mut Lease>,
    source: &str,
    model: &str,
    shutdown: &CancellationToken,
) {
    let mut failures = 0u32;
    let mut last_deletions: Option<Instant> = None;
    loop {
        let snapshot = state.snapshot.load_full();
        let found = snapshot.sources.get(source).and_then(|s| {
            let odoo = s.odoo.as_ref()?;
            let poll = odoo.poll.as_ref()?;
            Some((odoo, poll, poll.models.iter().find(|m| m.model == model)?))
        });
        let Some((odoo, poll, polled)) = found else {
            return;
        };
        // On NATS, only the lease holder polls; the others wait to take over.
        if let Some(lease) = lease.as_deref_mut() {
            let held = lease.keep().await.unwrap_or_else(|e| {
                tracing::warn!(source, model, error = %e, "polling lease unavailable");
                false
            });
            if !held {
                drop(snapshot);
                if !pause(RENEW, None, shutdown).await {
                    return;
                }
                continue;
            }
        }
        let outcome = tokio::select! {
            outcome = poll_model(state, keeper, lease.as_deref_mut(), source, (odoo, poll, polled), shutdown) => outcome,
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
                checked = find_deletions(state, keeper, source, odoo, polled) => checked,
                () = shutdown.cancelled() => return,
            };
            match checked {
                Ok(_) => last_deletions = Some(Instant::now()),
                Err(e) => tracing::warn!(source, model, error = %e, "deletion check failed"),
            }
        }
        let wait = if failures == 0 {
            poll.interval
        } else {
            (poll.interval * 2u32.pow(failures.min(10))).min(MAX_BACKOFF.max(poll.interval))
        };
        drop(snapshot);
        if !pause(wait, lease.as_deref_mut(), shutdown).await {
            return;
        }
    }
}

/// Waits `wait`, renewing `lease` meanwhile; false at shutdown.
async fn pause(
    wait: Duration,
    mut lease: Option<&mut Lease>,
    shutdown: &CancellationToken,
) -> bool {
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        let step = if lease.is_some() {
            left.min(RENEW)
        } else {
            left
        };
        tokio::select! {
            () = tokio::time::sleep(step) => {}
            () = shutdown.cancelled() => return false,
        }
        if let Some(lease) = lease.as_deref_mut()
            && let Err(e) = lease.keep().await
        {
            tracing::debug!(error = %e, "polling lease not renewed");
        }
    }
}

/// One poll of one model: every change from the cursor's second on, page by page. The
/// number of changes accepted (on sled a change read again and recognised counts too).
pub async fn poll_model(
    state: &Handles,
    keeper: &Keeper,
    mut lease: Option<&mut Lease>,
    source: &str,
    (odoo, poll, model): (&OdooSource, &Poll, &PollModelConfig),
    shutdown: &CancellationToken,
) -> Result<usize, PollError> {
    let client = &odoo.client;
    let name = model.model.as_str();
    let mut stored = match keeper.load(source, name).await? {
        Some(c) => c,
        None => {
            let first = initial_cursor(odoo, poll, name).await?;
            keeper.store_start(source, name, &first, &first).await?;
            first
        }
    };
    let floor = keeper.load_floor(source, name).await?;
    let mut fields = model.fields.clone();
    if !fields.is_empty() {
        for always in ["id", "create_date", "write_date"] {
            if !fields.iter().any(|f| f == always) {
                fields.push(always.to_owned());
            }
        }
    }
    let page_size = poll.page_size as usize;
    let began = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
    let mut query = Some(Query::From(stored.start(poll.overlap, floor.as_ref())));
    let mut read = 0;
    let mut whole = true;
    while let Some(q) = query {
        // A lease lost (to an instance that took over) ends the poll here.
        let lost = match lease.as_deref_mut() {
            Some(lease) => !lease.keep().await?,
            None => false,
        };
        if shutdown.is_cancelled() || lost {
            whole = false;
            break;
        }
        let page = client
            .search_read(name, q.domain(), &fields, q.order(), poll.page_size)
            .await?;
        let changes: Vec<Change> = page.iter().map(Change::of).collect::<Result<_, _>>()?;
        let at: Vec<(i64, i64)> = changes.iter().map(|c| (c.second, c.id)).collect();
        let step = plan::step(&q, &at, page_size);
        let mut accepted = false;
        for change in &changes[..step.deliver] {
            // What the start point leaves out (`start = "now"` or a time) stays out.
            if floor
                .as_ref()
                .is_some_and(|f| f.covers(change.second, change.id))
            {
                continue;
            }
            let fingerprint = fingerprint(change.record, &model.fields).unwrap_or_default();
            let key = change_key(name, change.id, &change.write_date, &fingerprint);
            let change = (change.action(), change.id, key, change.record);
            if accept(state, keeper, source, name, change).await? {
                accepted = true;
                read += 1;
            }
        }
        if accepted {
            state.work.flush_accepted().await?;
        }
        // Re-reading the overlap never moves the stored cursor back.
        if let Some(mut at) = step.position.filter(|at| at.is_after(&stored)) {
            at.settled = stored.settled;
            keeper.save(source, name, &at).await?;
            stored = at;
        }
        query = step.next;
    }
    // Every second from the start on was read by a poll that began when those up to
    // `settled` had settled: they are not read again.
    let settled = cursor::settled_before(began, poll.overlap).min(stored.second());
    if whole && settled > stored.settled {
        stored.settled = settled;
        keeper.save(source, name, &stored).await?;
    }
    Ok(read)
}

/// Where a model without a cursor starts: its cursor, and also its floor (what it covers
/// is never delivered).
async fn initial_cursor(odoo: &OdooSource, poll: &Poll, model: &str) -> Result<Cursor, OdooError> {
    match &poll.start {
        Start::Beginning => Ok(Cursor::at(0, 0)),
        // Changes after that second: none of it.
        Start::After(t) => Ok(Cursor::at(
            crate::odoo::time::to_seconds(t).unwrap_or(0),
            i64::MAX,
        )),
        Start::Now => {
            let fields = ["write_date".to_owned()];
            let latest = odoo
                .client
                .search_read(model, json!([]), &fields, "write_date desc, id desc", 1)
                .await?;
            // Up to the latest record's second and id: a record of that second with a higher
            // id comes after the start.
            let found = latest.first().map(Change::of).transpose()?;
            Ok(found.map_or(Cursor::at(0, 0), |c| Cursor::at(c.second, c.id)))
        }
    }
}

/// One change: its action, record id, dedup key and record.
type Accepting<'a> = (&'a str, i64, String, &'a serde_json::Map<String, Value>);

/// Stores one change as an event (not yet durable on sled; on NATS, accepted by JetStream
/// and noted as seen); whether it was new to the shared bucket (always, on sled: the store's
/// dedup key recognises a repeat).
async fn accept(
    state: &Handles,
    keeper: &Keeper,
    source: &str,
    model: &str,
    (action, id, key, payload): Accepting<'_>,
) -> Result<bool, PollError> {
    let shared = keeper.shared();
    if let Some(shared) = shared
        && shared.seen(source, &key).await?
    {
        return Ok(false);
    }
    if state.work.refuses().is_some() {
        return Err(PollError::StoreRefuses);
    }
    let event = Event {
        id: crate::event::new_id(),
        source: source.to_owned(),
        model: model.to_owned(),
        action: action.to_owned(),
        record_id: Some(id),
        received_at_ms: now_ms(),
        seq: crate::time::sequence(),
        payload: Value::Object(payload.clone()).to_string(),
        headers: Vec::new(),
    };
    let dedup = DedupKey::Explicit {
        source: source.to_owned(),
        id: key.clone(),
    };
    state.work.accept_unflushed(&event, &dedup).await?;
    if let Some(shared) = shared {
        shared.mark(source, &key).await?;
    }
    Ok(true)
}

/// Compares the model's ids with those seen last time; an `unlink` event for each one gone.
async fn find_deletions(
    state: &Handles,
    keeper: &Keeper,
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
        let payload = serde_json::Map::from_iter([("id".to_owned(), Value::from(id))]);
        let change = ("unlink", id, unlink_key(name, id), &payload);
        accept(state, keeper, source, name, change).await?;
    }
    if !gone.is_empty() {
        state.work.flush_accepted().await?;
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
}
