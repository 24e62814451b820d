//! The operator's view of subscriptions: each with its health and queue depth, pausing and
//! enabling one, and its recent delivery attempts.
//!
//! Pausing writes the subscription's health record (stored, so it survives a restart);
//! dispatch then parks its jobs instead of running them. Nothing here runs a job.

use http::StatusCode;
use serde_json::{Value, json};

use crate::config::Snapshot;
use crate::http_error::{ApiError, Body, json as answer};
use crate::state::State;

/// How many of a subscription's newest jobs `GET /admin/deliveries` looks through.
const SCAN_JOBS: usize = 1000;
/// The most attempts one answer lists.
const MAX_LIMIT: usize = 1000;

fn known(snapshot: &Snapshot, id: &str) -> Result<(), ApiError> {
    snapshot
        .subscription(id)
        .map(drop)
        .ok_or_else(ApiError::not_found)
}

/// `GET /admin/subscriptions`: every subscription in force (the file's and the apps'), with
/// its health, whether it is paused, and how many of its jobs wait in the schedule.
pub(super) fn list(state: &State, snapshot: &Snapshot) -> http::Response<Body> {
    let depth = state.work.queued_by_subscription(snapshot);
    let items: Vec<Value> = snapshot
        .subscriptions
        .iter()
        .map(|sub| {
            let health = state.health.of(&sub.id);
            json!({
                "id": sub.id,
                "app": crate::subscriptions::owner_app(&sub.id),
                "events": sub.patterns.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "destinations": sub.destinations,
                "plugin": sub.plugin_name,
                "enabled": sub.enabled,
                "paused": health.disabled,
                "flagged": health.flagged,
                "consecutive_failures": health.consecutive_failures,
                "last_error": health.last_error,
                "queued": depth.get(sub.id.as_str()).copied().unwrap_or(0),
            })
        })
        .collect();
    answer(StatusCode::OK, &json!({ "subscriptions": items }))
}

/// `POST /admin/subscriptions/{id}/pause`: its jobs wait until it is enabled again.
pub(super) fn pause(
    state: &State,
    snapshot: &Snapshot,
    id: &str,
) -> Result<http::Response<Body>, ApiError> {
    known(snapshot, id)?;
    let was_paused = state.health.pause(id);
    tracing::info!(subscription = id, "subscription paused by the operator");
    Ok(answer(
        StatusCode::OK,
        &json!({ "id": id, "paused": true, "was_paused": was_paused }),
    ))
}

/// `POST /admin/subscriptions/{id}/enable`: clears its flag and pause, resumes its jobs.
pub(super) fn enable(
    state: &State,
    snapshot: &Snapshot,
    id: &str,
) -> Result<http::Response<Body>, ApiError> {
    known(snapshot, id)?;
    let was_paused = state.health.enable(id);
    let resumed = state.work.resume(&[id]);
    Ok(answer(
        StatusCode::OK,
        &json!({ "id": id, "enabled": true, "was_paused": was_paused, "resumed_jobs": resumed }),
    ))
}

/// What `GET /admin/deliveries` was asked.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DeliveriesQuery {
    subscription: String,
    failed: bool,
    limit: usize,
}

impl DeliveriesQuery {
    /// `subscription=S` (required), `failed=true|false`, `limit=N` (1 to 1000, default 100).
    pub(super) fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let invalid = |message: &str| ApiError::bad_request("invalid_query", message.to_owned());
        let (mut subscription, mut failed, mut limit) = (None, false, 100);
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "subscription" => subscription = Some(value.into_owned()),
                "failed" => {
                    failed = match &*value {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        _ => return Err(invalid("failed: give true or false")),
                    }
                }
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| invalid("limit: give a number from 1 to 1000"))?;
                }
                other => {
                    return Err(invalid(&format!(
                        "unknown parameter `{other}` (subscription, failed, limit)"
                    )));
                }
            }
        }
        let subscription = subscription
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("subscription: give the subscription id"))?;
        Ok(Self {
            subscription,
            failed,
            limit,
        })
    }
}

/// `GET /admin/deliveries?subscription=S[&failed=true][&limit=N]`: the subscription's
/// attempts (deliveries and plugin calls) among its newest jobs, newest first; with
/// `failed`, only those that failed. Each says where its job is now: pending, delivered or
/// dead.
pub(super) async fn deliveries(
    state: &State,
    snapshot: &Snapshot,
    query: Option<&str>,
) -> Result<http::Response<Body>, ApiError> {
    let query = DeliveriesQuery::parse(query)?;
    known(snapshot, &query.subscription)?;
    let internal = |e: crate::store::StoreError| ApiError::internal("admin request failed", &e);
    let mut attempts = Vec::new();
    for delivery in state
        .work
        .deliveries(&query.subscription, SCAN_JOBS)
        .await
        .map_err(internal)?
    {
        let job = &delivery.job;
        for a in delivery.attempts {
            if query.failed && !failed(&a) {
                continue;
            }
            attempts.push(json!({
                "job": job.id, "event_id": job.event_id, "destination": job.destination,
                "job_state": delivery.state.as_str(), "at_ms": a.at_ms, "status": a.status,
                "latency_ms": a.latency_ms, "error": a.error, "excerpt": a.excerpt,
                "ok": !failed(&a),
            }));
        }
    }
    attempts.sort_by_key(|a| std::cmp::Reverse(a["at_ms"].as_u64().unwrap_or(0)));
    attempts.truncate(query.limit);
    Ok(answer(
        StatusCode::OK,
        &json!({ "subscription": query.subscription, "failed_only": query.failed, "attempts": attempts }),
    ))
}

/// Whether an attempt failed: an error, or an answer other than 2xx.
fn failed(attempt: &crate::store::Attempt) -> bool {
    attempt.error.is_some() || attempt.status.is_some_and(|s| !(200..300).contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deliveries_query_needs_a_subscription_and_checks_its_numbers() {
        let q = DeliveriesQuery::parse(Some("subscription=app.shop.orders&failed=true&limit=5"))
            .expect("valid");
        assert_eq!(
            q,
            DeliveriesQuery {
                subscription: "app.shop.orders".into(),
                failed: true,
                limit: 5
            }
        );
        let q = DeliveriesQuery::parse(Some("subscription=a%20b")).expect("valid");
        assert_eq!(
            (q.subscription.as_str(), q.failed, q.limit),
            ("a b", false, 100)
        );
        for bad in [
            None,
            Some("failed=true"),
            Some("subscription="),
            Some("subscription=a&limit=0"),
            Some("subscription=a&limit=1001"),
            Some("subscription=a&failed=maybe"),
            Some("subscription=a&sort=asc"),
        ] {
            let e = DeliveriesQuery::parse(bad).expect_err("invalid");
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "invalid_query"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_attempt_failed_on_an_error_or_a_status_outside_2xx() {
        let attempt = |status, error: Option<&str>| crate::store::Attempt {
            at_ms: 1,
            status,
            latency_ms: 1,
            excerpt: String::new(),
            error: error.map(str::to_owned),
        };
        assert!(!failed(&attempt(Some(204), None)));
        assert!(
            !failed(&attempt(None, None)),
            "a plugin call that succeeded"
        );
        assert!(failed(&attempt(Some(500), None)));
        assert!(failed(&attempt(None, Some("connection refused"))));
    }
}
