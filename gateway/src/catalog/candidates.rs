//! Which event types the sources produce, and why: the catalog's rows before their schemas.
//!
//! - A polled model makes `<model>.create` and `<model>.write`, and `<model>.unlink` with the
//!   deletion check.
//! - A webhook makes `<model>.<action>`, the action being one the source maps an Odoo server
//!   action to (`[sources.actions]`) or its `default_action`. Which models send webhooks is
//!   not written in the source: they are the models it enriches (`[sources.odoo.enrich]` and
//!   `app_enrich`) and those it polls in `reconcile` mode; an exact event type an app is
//!   granted adds that one type when its action is one of the source's.
//! - Any type seen at ingest from the source.
//!
//! An app's catalog is the types of the sources it may receive that its grants match. Pure.

use std::collections::{BTreeMap, BTreeSet};

use super::seen::SeenType;
use crate::config::Snapshot;
use crate::subscriptions::EventPattern;

/// Why a type is in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// A polled model.
    Poll,
    /// A webhook action of the source.
    Action,
    /// Seen at ingest.
    Seen,
}

impl Origin {
    /// Its name in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Action => "action",
            Self::Seen => "seen",
        }
    }
}

/// One event type the sources produce.
#[derive(Debug, Clone, Default)]
pub struct Candidate {
    /// `<model>.<action>`.
    pub event_type: String,
    /// The model.
    pub model: String,
    /// The action.
    pub action: String,
    /// The sources that produce it.
    pub sources: BTreeSet<String>,
    /// Why.
    pub origins: BTreeSet<Origin>,
    /// What each source says of it, for the description.
    pub notes: Vec<String>,
    /// The fields a poll reads, when it is polled with a list.
    pub polled_fields: Option<Vec<String>>,
    /// Whether a webhook can send it (the payload then has `_model`, `_id`, `_action`).
    pub webhook: bool,
    /// The Odoo server actions mapped to its action.
    pub odoo_actions: Vec<String>,
    /// When it was last seen (ms since the epoch).
    pub seen_ms: Option<u64>,
}

/// Whose catalog: the sources and event patterns it covers (`None`: every one).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Event patterns granted (`None`: the operator's view, everything).
    pub grants: Option<Vec<EventPattern>>,
    /// Sources that may be received (`None`: every source).
    pub sources: Option<Vec<String>>,
}

/// Adds `origin` and `note` for `<model>.<action>` from source `name`.
fn add<'a>(
    out: &'a mut BTreeMap<String, Candidate>,
    name: &str,
    model: &str,
    action: &str,
    origin: Origin,
    note: String,
) -> &'a mut Candidate {
    let event_type = format!("{model}.{action}");
    let entry = out.entry(event_type.clone()).or_insert_with(|| Candidate {
        event_type,
        model: model.to_owned(),
        action: action.to_owned(),
        ..Candidate::default()
    });
    entry.sources.insert(name.to_owned());
    entry.origins.insert(origin);
    if !entry.notes.contains(&note) {
        entry.notes.push(note);
    }
    if origin == Origin::Action {
        entry.webhook = true;
    }
    entry
}

fn note_actions(entry: &mut Candidate, odoo_names: &[&str]) {
    for n in odoo_names {
        if !entry.odoo_actions.iter().any(|a| a == n) {
            entry.odoo_actions.push((*n).to_owned());
        }
    }
}

/// The catalog's types for `scope`, by type. `exact_grants` are the exact event types apps
/// are granted (their models send webhooks).
pub fn candidates(
    snapshot: &Snapshot,
    seen: &[SeenType],
    exact_grants: &[String],
    scope: &Scope,
) -> BTreeMap<String, Candidate> {
    let mut out: BTreeMap<String, Candidate> = BTreeMap::new();
    let mut names: Vec<&String> = snapshot.sources.keys().collect();
    names.sort();
    for name in names {
        if scope.sources.as_ref().is_some_and(|s| !s.contains(name)) {
            continue;
        }
        let source = &snapshot.sources[name];
        let odoo = source.odoo.as_deref();
        let mut webhook_models: BTreeSet<String> = BTreeSet::new();
        if let Some(odoo) = odoo {
            webhook_models.extend(odoo.enrich.keys().cloned());
            webhook_models.extend(odoo.app_enrich.keys().cloned());
            if let Some(poll) = &odoo.poll {
                for m in &poll.models {
                    let listed = (!m.fields.is_empty()).then(|| m.fields.clone());
                    for (action, what) in [("create", "created"), ("write", "changed")] {
                        let entry = add(
                            &mut out,
                            name,
                            &m.model,
                            action,
                            Origin::Poll,
                            format!(
                                "A `{}` record {what}, found by polling source `{name}`",
                                m.model
                            ),
                        );
                        entry.polled_fields = listed.clone();
                    }
                    if m.detect_deletions {
                        add(
                            &mut out,
                            name,
                            &m.model,
                            "unlink",
                            Origin::Poll,
                            format!(
                                "A `{}` record deleted, found by the deletion check of source `{name}` (payload `{{\"id\"}}`)",
                                m.model
                            ),
                        );
                    }
                    if poll.reconcile {
                        webhook_models.insert(m.model.clone());
                    }
                }
            }
        }
        // A model seen is not taken to send webhooks: an envelope names its own action.
        let from_source: Vec<&SeenType> = seen.iter().filter(|s| &s.source == name).collect();
        let mut actions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (odoo_name, action) in &source.actions {
            actions.entry(action).or_default().push(odoo_name);
        }
        actions.entry(&source.default_action).or_default();
        let action_note = |model: &str, action: &str, odoo_names: &[&str]| {
            if odoo_names.is_empty() {
                format!(
                    "Odoo's webhook on `{model}` from source `{name}` when the URL and the action's name say no other action (`default_action = \"{action}\"`)"
                )
            } else {
                let listed: Vec<String> = odoo_names.iter().map(|n| format!("`{n}`")).collect();
                format!(
                    "Odoo's webhook on `{model}` from source `{name}`, sent by the server action {}",
                    listed.join(" or ")
                )
            }
        };
        for model in &webhook_models {
            for (action, odoo_names) in &actions {
                let entry = add(
                    &mut out,
                    name,
                    model,
                    action,
                    Origin::Action,
                    action_note(model, action, odoo_names),
                );
                note_actions(entry, odoo_names);
            }
        }
        for grant in exact_grants {
            let Some((model, action)) = grant.rsplit_once('.') else {
                continue;
            };
            if let Some(odoo_names) = actions.get(action) {
                let entry = add(
                    &mut out,
                    name,
                    model,
                    action,
                    Origin::Action,
                    action_note(model, action, odoo_names),
                );
                note_actions(entry, odoo_names);
            }
        }
        for s in from_source {
            let (model, action) = s.model_action();
            let entry = add(
                &mut out,
                name,
                model,
                action,
                Origin::Seen,
                format!("Seen from source `{name}`"),
            );
            entry.seen_ms = Some(entry.seen_ms.unwrap_or(0).max(s.seen_ms));
        }
    }
    if let Some(grants) = &scope.grants {
        out.retain(|t, _| crate::subscriptions::any_matches(grants, t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::build_for_test;

    const CONFIG: &str = r#"
[[sources]]
name = "odoo"
tokens = ["0123456789abcdef"]
actions = { "SO confirmed" = "confirmed" }
[sources.odoo]
url = "https://odoo.example.com/"
database = "prod"
login = "gateway@example.com"
api_key = "secret-key-0123456789"
[sources.odoo.enrich]
"sale.order" = [{ field = "partner_id" }]
[sources.odoo.poll]
models = [
  { model = "res.partner", fields = ["name", "email"], detect_deletions = true },
]

[[sources]]
name = "shop"
tokens = ["fedcba9876543210"]
"#;

    fn snapshot() -> Snapshot {
        build_for_test(CONFIG).expect("valid")
    }

    fn seen(source: &str, event_type: &str) -> SeenType {
        SeenType {
            source: source.into(),
            event_type: event_type.into(),
            seen_ms: 7,
            shape: Default::default(),
        }
    }

    #[test]
    fn the_sources_produce_polled_types_webhook_actions_and_types_seen() {
        let snapshot = snapshot();
        let found = candidates(
            &snapshot,
            &[seen("shop", "cart.abandoned")],
            &["account.move.confirmed".into(), "stock.move.done".into()],
            &Scope::default(),
        );
        let types: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(
            types,
            [
                // An exact grant whose action the source maps; `done` it does not.
                "account.move.confirmed",
                "cart.abandoned",
                "res.partner.create",
                "res.partner.unlink",
                "res.partner.write",
                // The model the source enriches sends webhooks.
                "sale.order.confirmed",
                "sale.order.write",
            ]
        );
        let partner = &found["res.partner.write"];
        assert_eq!(partner.origins.iter().collect::<Vec<_>>(), [&Origin::Poll]);
        assert_eq!(
            partner.polled_fields.as_deref(),
            Some(&["name".to_owned(), "email".to_owned()][..])
        );
        assert!(!partner.webhook, "not reconciled: no webhook on it");
        let confirmed = &found["sale.order.confirmed"];
        assert!(confirmed.webhook);
        assert_eq!(confirmed.odoo_actions, ["SO confirmed"]);
        let cart = &found["cart.abandoned"];
        assert_eq!(
            cart.sources.iter().collect::<Vec<_>>(),
            [&"shop".to_owned()]
        );
        assert_eq!(cart.seen_ms, Some(7));
    }

    #[test]
    fn an_app_sees_its_grants_from_its_sources() {
        let snapshot = snapshot();
        let scope = Scope {
            grants: Some(vec![EventPattern::parse("sale.order.*").unwrap()]),
            sources: Some(vec!["odoo".into()]),
        };
        let found = candidates(
            &snapshot,
            &[seen("shop", "sale.order.imported")],
            &[],
            &scope,
        );
        let types: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(types, ["sale.order.confirmed", "sale.order.write"]);
    }
}
