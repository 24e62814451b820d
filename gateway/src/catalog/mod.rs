//! The event catalog: the event types an app may subscribe to (or, for the operator, every
//! type the sources produce), each with a description, a JSON Schema of its payload and an
//! example.
//!
//! - `candidates`: which types the sources produce (polled models, webhook actions, types
//!   seen) and, for an app, which of them its grants and sources cover;
//! - `schema`: a schema from Odoo's `fields_get` of the model, with what enrichment adds;
//!   `example`: a payload of placeholders in Odoo's shapes;
//! - `infer`, `seen`: for a type no Odoo describes, a schema inferred from the payloads seen
//!   at ingest (marked `inferred`), kept in the control plane.
//!
//! [`Catalog`] holds what ingest saw and the `fields_get` answers, cached per source and model
//! for [`FRESH_FOR`] and refreshed in the background after that (a failure is remembered for
//! [`FAILED_FOR`], so an Odoo that is down is not asked at every request). It reads Odoo
//! only when the catalog is asked for, never on the ingest path, and never writes anything
//! to Odoo.

pub mod candidates;
pub mod example;
pub mod infer;
pub mod schema;
pub mod seen;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use self::candidates::{Candidate, Scope};
use self::infer::Shape;
use self::schema::{EnrichedBy, Fields};
use crate::apps::App;
use crate::config::Snapshot;
use crate::control::ControlPlane;
use crate::odoo::{EnrichSpec, OdooSource};
use crate::store::StoreError;

/// How long a `fields_get` answer is used before it is asked again (in the background).
pub const FRESH_FOR: Duration = Duration::from_secs(600);
/// How long a failed `fields_get` is remembered before Odoo is asked again.
pub const FAILED_FOR: Duration = Duration::from_secs(30);
/// The longest a catalog request waits for one of Odoo's `fields_get` answers (a model's,
/// then those of the models its enrichment reads: within the request timeout).
const WAIT: Duration = Duration::from_secs(4);

#[derive(Debug, Clone)]
struct Cached {
    /// The client that asked (a reload may point the source elsewhere).
    client: String,
    at: Instant,
    answer: Result<Arc<Fields>, String>,
    refreshing: bool,
}

type Schemas = Arc<Mutex<HashMap<(String, String), Cached>>>;

/// One question to Odoo at a time per source and model: the entries of one request (and
/// concurrent requests) wait for the answer instead of asking again.
type Asking = Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>;

/// The catalog's live side, one per running gateway.
#[derive(Debug, Default)]
pub struct Catalog {
    /// The event types ingest saw, not yet written to the control plane.
    pub seen: seen::Seen,
    schemas: Schemas,
    asking: Asking,
}

/// Whose catalog.
#[derive(Debug, Clone, Copy)]
pub enum View<'a> {
    /// Every type the sources produce.
    Operator,
    /// The types this app may subscribe to.
    App(&'a App),
}

/// An enrichment shown in an entry.
#[derive(Debug, Clone, Serialize)]
pub struct EnrichInfo {
    /// The payload field enriched.
    pub field: String,
    /// The model read.
    pub model: String,
    /// The fields embedded (none: `[id, name]`).
    pub fields: Vec<String>,
    /// `source`: every subscription without its own list gets it; `app_allowance`: an app's
    /// subscription may ask for it (or part of it) in its `enrich`.
    pub by: &'static str,
}

/// One event type of the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// `<model>.<action>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The model.
    pub model: String,
    /// The action.
    pub action: String,
    /// The sources that produce it.
    pub sources: Vec<String>,
    /// Why it is listed: `poll`, `action`, `seen`.
    pub origins: Vec<&'static str>,
    /// What it is, for people.
    pub description: String,
    /// Where the schema comes from: `odoo` (`fields_get`), `inferred` (payloads seen) or
    /// `none` (nothing known yet).
    pub schema_origin: &'static str,
    /// Why the schema is not Odoo's, when Odoo was asked and did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_note: Option<String>,
    /// JSON Schema (2020-12) of the payload.
    pub schema: Value,
    /// A payload of placeholders in that shape (`null` when nothing is known).
    pub example: Value,
    /// What enrichment adds.
    pub enrich: Vec<EnrichInfo>,
    /// When it was last seen at ingest (ms since the epoch).
    pub seen_ms: Option<u64>,
}

impl Catalog {
    /// The catalog for `view`, by type.
    pub async fn entries(
        &self,
        snapshot: &Snapshot,
        control: &ControlPlane,
        view: View<'_>,
    ) -> Result<Vec<Entry>, StoreError> {
        let seen = seen::all(&self.seen, control).await?;
        let (scope, exact_grants) = match view {
            View::App(app) => (
                Scope {
                    grants: Some(app.grants()),
                    sources: app.sources.clone(),
                },
                exact(&app.events),
            ),
            View::Operator => {
                let mut grants: Vec<String> = snapshot
                    .apps
                    .iter()
                    .flat_map(|a| exact(&a.events))
                    .collect();
                for app in control.apps()? {
                    grants.extend(exact(&app.events));
                }
                (Scope::default(), grants)
            }
        };
        let found = candidates::candidates(snapshot, &seen, &exact_grants, &scope);
        let built = found.values().map(|c| self.entry(snapshot, c, &seen));
        Ok(futures_util::future::join_all(built).await)
    }

    /// One type of the catalog for `view`.
    pub async fn one(
        &self,
        snapshot: &Snapshot,
        control: &ControlPlane,
        view: View<'_>,
        event_type: &str,
    ) -> Result<Option<Entry>, StoreError> {
        Ok(self
            .entries(snapshot, control, view)
            .await?
            .into_iter()
            .find(|e| e.event_type == event_type))
    }

    async fn entry(&self, snapshot: &Snapshot, c: &Candidate, seen: &[seen::SeenType]) -> Entry {
        let mut shape = Shape::default();
        for s in seen
            .iter()
            .filter(|s| s.event_type == c.event_type && c.sources.contains(&s.source))
        {
            shape.merge(&s.shape);
        }
        let mut entry = Entry {
            event_type: c.event_type.clone(),
            model: c.model.clone(),
            action: c.action.clone(),
            sources: c.sources.iter().cloned().collect(),
            origins: c.origins.iter().map(|o| o.as_str()).collect(),
            description: format!("{}.", c.notes.join(". ")),
            schema_origin: "none",
            schema_note: None,
            schema: json!({ "$schema": schema::DIALECT, "type": "object" }),
            example: Value::Null,
            enrich: Vec::new(),
            seen_ms: c.seen_ms,
        };
        let odoo = c.sources.iter().find_map(|name| {
            let odoo = snapshot.sources.get(name)?.odoo.clone()?;
            Some((name.clone(), odoo))
        });
        if let Some((source, odoo)) = odoo {
            match self.fields(&source, &odoo, &c.model).await {
                Ok(fields) => {
                    self.describe(&mut entry, c, &source, &odoo, &fields, &shape)
                        .await;
                    return entry;
                }
                Err(e) => {
                    entry.schema_note = Some(format!(
                        "Odoo (source `{source}`) did not describe `{}`: {e}",
                        c.model
                    ));
                }
            }
        }
        if !shape.types.is_empty() {
            entry.schema_origin = "inferred";
            entry.schema = shape.schema();
            entry.example = shape.example();
        }
        entry
    }

    /// Fills `entry` from Odoo's descriptions of its model.
    async fn describe(
        &self,
        entry: &mut Entry,
        c: &Candidate,
        source: &str,
        odoo: &Arc<OdooSource>,
        fields: &Fields,
        seen: &Shape,
    ) {
        entry.schema_origin = "odoo";
        entry.schema = schema::payload_schema(&c.model, fields, c.webhook);
        let mut specs: Vec<(&EnrichSpec, EnrichedBy)> = odoo
            .enrich
            .get(&c.model)
            .into_iter()
            .flatten()
            .map(|s| (s, EnrichedBy::Source))
            .collect();
        // An app sees what it may ask for; the operator too, as what apps may ask for.
        specs.extend(
            odoo.app_enrich
                .get(&c.model)
                .into_iter()
                .flatten()
                .map(|s| (s, EnrichedBy::AppAllowance)),
        );
        let mut related_fields: Vec<Option<Arc<Fields>>> = Vec::new();
        for (spec, by) in &specs {
            let related = spec.model.clone().or_else(|| {
                fields
                    .get(&spec.field)
                    .and_then(|d| d["relation"].as_str())
                    .map(str::to_owned)
            });
            let described = match &related {
                Some(model) => self.fields(source, odoo, model).await.ok(),
                None => None,
            };
            let model = related.unwrap_or_default();
            schema::apply_enrich(&mut entry.schema, spec, &model, described.as_deref(), *by);
            entry.enrich.push(EnrichInfo {
                field: spec.field.clone(),
                model,
                fields: spec.fields.clone(),
                by: by.as_str(),
            });
            related_fields.push(described);
        }
        let seen_keys: Vec<String> = seen.keys.keys().cloned().collect();
        let picked = example::pick(fields, c.polled_fields.as_deref(), &seen_keys);
        let enriched: Vec<example::Enriched<'_>> = specs
            .iter()
            .zip(&related_fields)
            .filter(|((_, by), _)| *by == EnrichedBy::Source)
            .map(|((spec, _), related)| example::Enriched {
                spec,
                related: related.as_deref(),
            })
            .collect();
        let action = c.webhook.then(|| webhook_action(c));
        let polled = c.origins.contains(&candidates::Origin::Poll) && !c.webhook;
        entry.example = example::example(
            &c.model,
            fields,
            &picked,
            action.as_deref(),
            polled,
            &enriched,
        );
    }

    /// `fields_get` of `model` from `source`'s Odoo: cached, refreshed in the background once
    /// older than [`FRESH_FOR`], asked at most once per [`FAILED_FOR`] while it fails.
    async fn fields(
        &self,
        source: &str,
        odoo: &Arc<OdooSource>,
        model: &str,
    ) -> Result<Arc<Fields>, String> {
        let key = (source.to_owned(), model.to_owned());
        let client = odoo.client.describe();
        if let Some(known) = self.cached(&key, odoo, &client) {
            return known;
        }
        let turn = self
            .asking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let _turn = turn.lock().await;
        // Whoever asked while this waited has the answer now.
        if let Some(known) = self.cached(&key, odoo, &client) {
            return known;
        }
        let answer = ask(odoo, model).await;
        lock(&self.schemas).insert(
            key,
            Cached {
                client,
                at: Instant::now(),
                answer: answer.clone(),
                refreshing: false,
            },
        );
        answer
    }
}

impl Catalog {
    /// The cached answer for `key`, if it is still good (a fresh or stale success, a recent
    /// failure); a stale success is refreshed in the background.
    fn cached(
        &self,
        key: &(String, String),
        odoo: &Arc<OdooSource>,
        client: &str,
    ) -> Option<Result<Arc<Fields>, String>> {
        let c = lock(&self.schemas)
            .get(key)
            .cloned()
            .filter(|c| c.client == client)?;
        let age = c.at.elapsed();
        match c.answer {
            Ok(fields) => {
                if age >= FRESH_FOR && !c.refreshing {
                    refresh_later(&self.schemas, key.clone(), odoo.clone(), client.to_owned());
                }
                Some(Ok(fields))
            }
            Err(e) if age < FAILED_FOR => Some(Err(e)),
            Err(_) => None,
        }
    }
}

fn lock(schemas: &Schemas) -> std::sync::MutexGuard<'_, HashMap<(String, String), Cached>> {
    schemas.lock().unwrap_or_else(|p| p.into_inner())
}

async fn ask(odoo: &OdooSource, model: &str) -> Result<Arc<Fields>, String> {
    match tokio::time::timeout(WAIT, odoo.client.fields_get(model)).await {
        Ok(Ok(fields)) => Ok(Arc::new(fields)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {WAIT:?}")),
    }
}

/// Asks Odoo again in the background; the stale answer serves meanwhile, and stays when the
/// new question fails.
fn refresh_later(schemas: &Schemas, key: (String, String), odoo: Arc<OdooSource>, client: String) {
    if let Some(c) = lock(schemas).get_mut(&key) {
        c.refreshing = true;
    }
    let schemas = schemas.clone();
    tokio::spawn(async move {
        let answer = ask(&odoo, &key.1).await;
        let mut table = lock(&schemas);
        let Some(c) = table.get_mut(&key) else {
            return;
        };
        c.refreshing = false;
        match answer {
            Ok(fields) => {
                *c = Cached {
                    client,
                    at: Instant::now(),
                    answer: Ok(fields),
                    refreshing: false,
                };
            }
            Err(e) => {
                tracing::warn!(source = %key.0, model = %key.1, error = %e, "cannot refresh a model's fields for the event catalog; the last answer stays");
            }
        }
    });
}

/// The `_action` an example shows: the first Odoo server action mapped to this action.
fn webhook_action(c: &Candidate) -> String {
    let named = c
        .odoo_actions
        .first()
        .map_or("Send Webhook", String::as_str);
    let short = named.rsplit_once("(#").map_or(named, |(s, _)| s);
    format!("{short}(#1)")
}

/// The exact event types among `patterns`.
fn exact(patterns: &[String]) -> Vec<String> {
    patterns
        .iter()
        .filter_map(|p| match crate::subscriptions::EventPattern::parse(p) {
            Ok(crate::subscriptions::EventPattern::Exact(t)) => Some(t),
            _ => None,
        })
        .collect()
}
