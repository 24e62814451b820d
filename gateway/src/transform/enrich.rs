//! Enrichment: the related records a subscription's `enrich` list names, read from Odoo and
//! embedded in the payload where their ids were, before the plugin (or the pass-through
//! body) sees the event.
//!
//! Odoo's webhook reads fields with `load=None`: a many2one is a bare id (`"partner_id": 9`)
//! and an x2many a list of ids (`"order_line": [31, 32]`). With `fields` given, a many2one
//! becomes the record and an x2many the list of records (in the order of the ids; a record
//! deleted since is left out); without, `[id, display name]` for each. One `read` per related
//! model per event, whatever the number of entries naming it.
//!
//! Runs in the plugin-call unit of work (the work plane's job runner), never in ingest. It
//! never changes the stored event: the enriched copy lives only for the call.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};
use tracing::Instrument as _;

use super::Outcome;
use crate::config::{Snapshot, Subscription};
use crate::event::Event;
use crate::odoo::{EnrichSpec, OdooClient, OdooError};
use crate::store::CallFailure;

/// Where ids sit in a payload field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ids {
    /// many2one: a bare id, or `[id, "name"]`.
    One(i64),
    /// x2many: a list of ids.
    Many(Vec<i64>),
}

fn ids_of(value: &Value) -> Option<Ids> {
    match value {
        Value::Number(n) => n.as_i64().map(Ids::One),
        Value::Array(items) => match items.as_slice() {
            [Value::Number(id), Value::String(_)] => id.as_i64().map(Ids::One),
            _ => items
                .iter()
                .map(Value::as_i64)
                .collect::<Option<_>>()
                .map(Ids::Many),
        },
        _ => None,
    }
}

/// What `sub` enriches in `event`: its own list, else its source's for the event's model.
/// An app's own list is cut to what the operator allows apps for that source and model
/// (`[sources.odoo.app_enrich]`), whatever it was when the app asked: an operator who
/// narrows the allowance narrows the app's subscriptions at once.
pub fn specs_for<'a>(
    snapshot: &'a Snapshot,
    sub: &'a Subscription,
    event: &Event,
) -> Cow<'a, [EnrichSpec]> {
    let odoo = snapshot
        .sources
        .get(&event.source)
        .and_then(|s| s.odoo.as_ref());
    if sub.enrich.is_empty() {
        let source_list = odoo.and_then(|o| o.enrich.get(&event.model));
        return Cow::Borrowed(source_list.map_or(&[], Vec::as_slice));
    }
    if sub.grants.is_none() {
        return Cow::Borrowed(&sub.enrich);
    }
    let allowance = odoo
        .and_then(|o| o.app_enrich.get(&event.model))
        .map_or(&[][..], Vec::as_slice);
    Cow::Owned(
        sub.enrich
            .iter()
            .filter_map(|spec| allowed(spec, allowance))
            .collect(),
    )
}

/// `spec` as it may run under `allowance` (one entry for the same field, naming no model or
/// the allowance's, and every field of `spec` among its fields; the allowance's model when
/// `spec` names none), or `None`.
pub fn allowed(spec: &EnrichSpec, allowance: &[EnrichSpec]) -> Option<EnrichSpec> {
    let entry = allowance.iter().find(|a| a.field == spec.field)?;
    // A model the allowance does not name could be any model: only Odoo's answer is allowed.
    let same_model = match (&spec.model, &entry.model) {
        (Some(asked), Some(allowed)) => asked == allowed,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let fields_ok = spec.fields.iter().all(|f| entry.fields.contains(f));
    (same_model && fields_ok).then(|| EnrichSpec {
        model: spec.model.clone().or_else(|| entry.model.clone()),
        ..spec.clone()
    })
}

/// Whether `sub` has anything to enrich in `event` (then fan-out queues a plugin-call job
/// even for a subscription without a plugin, so that the reads happen in background work).
pub fn wanted(snapshot: &Snapshot, sub: &Subscription, event: &Event) -> bool {
    !specs_for(snapshot, sub, event).is_empty()
}

/// The events of a batch of plugin calls, enriched for `sub`: each is the event to call the
/// plugin with, or the outcome that takes the call's place (retry later, give up).
pub async fn prepare(
    snapshot: &Snapshot,
    sub: &Subscription,
    events: Vec<Arc<Event>>,
) -> Vec<Result<Arc<Event>, Outcome>> {
    let mut prepared = Vec::with_capacity(events.len());
    // Once a source's Odoo failed in a way that may pass, the rest of the batch from that
    // source waits too, unasked.
    let mut unavailable: HashMap<String, CallFailure> = HashMap::new();
    for event in events {
        let specs = specs_for(snapshot, sub, &event);
        if specs.is_empty() {
            prepared.push(Ok(event));
            continue;
        }
        if let Some(reason) = unavailable.get(&event.source) {
            prepared.push(Err(Outcome::RetryLater(reason.clone())));
            continue;
        }
        let odoo = snapshot
            .sources
            .get(&event.source)
            .and_then(|s| s.odoo.as_ref());
        let Some(odoo) = odoo else {
            prepared.push(Err(Outcome::GiveUp(CallFailure::Odoo {
                code: "odoo_not_configured",
                message: format!(
                    "subscription `{}` enriches, but source `{}` has no [sources.odoo]",
                    sub.id, event.source
                ),
            })));
            continue;
        };
        let stage = crate::trace::enrich(&event, &sub.id);
        let enriched = enrich_event(&odoo.client, &specs, &event)
            .instrument(stage.span().clone())
            .await;
        if let Err(e) = &enriched {
            stage.fail(e.to_string());
        }
        prepared.push(match enriched {
            Ok(enriched) => Ok(enriched),
            Err(e) if e.is_retryable() => {
                let reason = CallFailure::Odoo {
                    code: e.code(),
                    message: e.to_string(),
                };
                unavailable.insert(event.source.clone(), reason.clone());
                Err(Outcome::RetryLater(reason))
            }
            Err(e) => Err(Outcome::GiveUp(CallFailure::Odoo {
                code: e.code(),
                message: e.to_string(),
            })),
        });
    }
    prepared
}

/// `event` with the fields of `specs` enriched; the same `Arc` when nothing was to be done.
pub async fn enrich_event(
    client: &OdooClient,
    specs: &[EnrichSpec],
    event: &Arc<Event>,
) -> Result<Arc<Event>, OdooError> {
    let Ok(Value::Object(mut payload)) = serde_json::from_str::<Value>(&event.payload) else {
        return Ok(event.clone());
    };
    if !enrich_payload(client, &event.model, specs, &mut payload).await? {
        return Ok(event.clone());
    }
    Ok(Arc::new(Event {
        payload: Value::Object(payload).to_string(),
        ..Event::clone(event)
    }))
}

/// Enriches `payload` (a record of `model`) in place; whether anything changed.
pub async fn enrich_payload(
    client: &OdooClient,
    model: &str,
    specs: &[EnrichSpec],
    payload: &mut Map<String, Value>,
) -> Result<bool, OdooError> {
    // Which ids of which model, with which fields, one entry per spec found in the payload.
    let mut wanted: Vec<(&EnrichSpec, String, Ids)> = Vec::new();
    for spec in specs {
        let Some(ids) = payload.get(&spec.field).and_then(ids_of) else {
            continue;
        };
        let related = match &spec.model {
            Some(m) => m.clone(),
            None => client.relation(model, &spec.field).await?,
        };
        wanted.push((spec, related, ids));
    }
    let mut reads: BTreeMap<&str, (BTreeSet<i64>, BTreeSet<&str>)> = BTreeMap::new();
    for (spec, related, ids) in &wanted {
        let (all_ids, fields) = reads.entry(related.as_str()).or_default();
        match ids {
            Ids::One(id) => {
                all_ids.insert(*id);
            }
            Ids::Many(list) => all_ids.extend(list),
        }
        if spec.fields.is_empty() {
            fields.insert("display_name");
        }
        fields.extend(spec.fields.iter().map(String::as_str));
    }
    let mut records: BTreeMap<String, _> = BTreeMap::new();
    for (related, (ids, fields)) in &reads {
        if ids.is_empty() {
            continue;
        }
        let ids: Vec<i64> = ids.iter().copied().collect();
        let fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        let found = client.read_cached(related, &ids, &fields).await?;
        records.insert((*related).to_owned(), found);
    }
    let mut changed = false;
    for (spec, related, ids) in wanted {
        let Some(found) = records.get(related.as_str()) else {
            continue;
        };
        let shaped = |id: &i64| found.get(id).map(|record| shape(spec, record));
        let value = match ids {
            // A many2one whose record is gone keeps its id.
            Ids::One(id) => shaped(&id).unwrap_or(Value::from(id)),
            Ids::Many(list) => Value::Array(list.iter().filter_map(shaped).collect()),
        };
        payload.insert(spec.field.clone(), value);
        changed = true;
    }
    Ok(changed)
}

/// A related record as `spec` wants it: `[id, name]`, or the record with its fields only.
fn shape(spec: &EnrichSpec, record: &Value) -> Value {
    if spec.fields.is_empty() {
        return Value::Array(vec![record["id"].clone(), record["display_name"].clone()]);
    }
    let mut out = Map::new();
    out.insert("id".into(), record["id"].clone());
    for f in &spec.fields {
        if let Some(v) = record.get(f) {
            out.insert(f.clone(), v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_are_found_in_every_shape_odoo_sends() {
        assert_eq!(ids_of(&json!(9)), Some(Ids::One(9)));
        assert_eq!(ids_of(&json!([9, "Deco Addict"])), Some(Ids::One(9)));
        assert_eq!(ids_of(&json!([31, 32])), Some(Ids::Many(vec![31, 32])));
        assert_eq!(ids_of(&json!([])), Some(Ids::Many(vec![])));
        assert_eq!(ids_of(&json!(false)), None);
        assert_eq!(ids_of(&json!("9")), None);
        assert_eq!(ids_of(&json!([1, {"a": 1}])), None);
    }

    #[test]
    fn an_app_enriches_only_within_the_allowance() {
        let spec = |field: &str, model: Option<&str>, fields: &[&str]| EnrichSpec {
            field: field.into(),
            model: model.map(Into::into),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        };
        let allowance = [spec("partner_id", Some("res.partner"), &["name", "zip"])];
        // A subset, with the allowance's model filled in.
        assert_eq!(
            allowed(&spec("partner_id", None, &["zip"]), &allowance),
            Some(spec("partner_id", Some("res.partner"), &["zip"]))
        );
        assert_eq!(
            allowed(&spec("partner_id", None, &[]), &allowance),
            Some(spec("partner_id", Some("res.partner"), &[]))
        );
        // Another field, another model, a field not allowed: no.
        assert_eq!(allowed(&spec("user_id", None, &[]), &allowance), None);
        assert_eq!(
            allowed(
                &spec("partner_id", Some("res.users"), &["name"]),
                &allowance
            ),
            None
        );
        assert_eq!(
            allowed(&spec("partner_id", None, &["name", "email"]), &allowance),
            None
        );
        assert_eq!(allowed(&spec("partner_id", None, &[]), &[]), None);
    }

    #[test]
    fn a_record_keeps_only_the_fields_asked_for() {
        let spec = EnrichSpec {
            field: "partner_id".into(),
            model: None,
            fields: vec!["name".into()],
        };
        let record = json!({"id": 9, "name": "Deco", "zip": "94523", "display_name": "Deco"});
        assert_eq!(shape(&spec, &record), json!({"id": 9, "name": "Deco"}));
        let names = EnrichSpec {
            fields: vec![],
            ..spec
        };
        assert_eq!(shape(&names, &record), json!([9, "Deco"]));
    }
}
