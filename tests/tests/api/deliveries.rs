//! Test events, the delivery log with attempts, replays and dead letters.

use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::TestGateway;
use odoo_gateway_tests::nats::Engine;
use serde_json::{Value, json};

use super::common::*;

on_both_engines!(
    test_event_delivery_log_replay_and_dead_letters,
    test_event_delivery_log_replay_and_dead_letters_on_nats,
    test_event_delivery_log_replay_and_dead_letters_on
);

async fn test_event_delivery_log_replay_and_dead_letters_on(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config_on(engine, ""), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let good = inbox().await;
    let failing = Inbox::start_local(InboxOptions {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    for (id, url) in [
        ("a", good.url("/a")),
        ("b", good.url("/b")),
        ("down", failing.url("/down")),
    ] {
        let body = json!({"id": id, "events": ["sale.order.*"], "destination": {"url": url.to_string()}, "retries": 0});
        let reply = acme.call("POST", "/v1/subscriptions", Some(body)).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
    }

    // A test event reaches only the subscription it was sent to.
    let sent = acme.call("POST", "/v1/subscriptions/a/test", None).await;
    assert_eq!(sent.status, 202, "{:?}", sent.body);
    assert_eq!(sent.json()["event_type"], "sale.order.test");
    let event_id = sent.json()["event_id"]
        .as_str()
        .expect("event id")
        .to_owned();
    let got = good.wait_for(1, WAIT).await.expect("test event delivered");
    assert_eq!(got[0].path, "/a");
    let envelope: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(
        (
            envelope["id"].as_str(),
            envelope["payload"]["test"].as_bool()
        ),
        (Some(event_id.as_str()), Some(true))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(good.received().len(), 1, "subscription b did not get it");

    // The delivery log shows it with its attempt; a replay sends it again with the same id.
    let log = newest_delivery(&acme, "a", "delivered", "the delivery log").await;
    let delivery = &log["deliveries"][0];
    assert_eq!(delivery["event_id"], event_id.as_str());
    assert_eq!(delivery["attempts"][0]["status"], 200);
    assert_eq!(
        delivery["attempts"][0]["excerpt"], "",
        "an app sees status and timing, not what the receiver answered"
    );
    let job_id = delivery["id"].as_str().expect("job id").to_owned();
    assert_eq!(
        acme.call("GET", "/v1/subscriptions/b/deliveries", None)
            .await
            .json()["deliveries"],
        json!([])
    );
    let other = Api::new(&gateway, OTHER, "read write").await;
    assert_eq!(
        other
            .call("POST", &format!("/v1/deliveries/{job_id}/replay"), None)
            .await
            .status,
        404
    );
    assert_eq!(
        other
            .call("GET", "/v1/subscriptions/a/deliveries", None)
            .await
            .status,
        404
    );
    let replayed = acme
        .call("POST", &format!("/v1/deliveries/{job_id}/replay"), None)
        .await;
    assert_eq!(replayed.status, 202, "{:?}", replayed.body);
    let got = good.wait_for(2, WAIT).await.expect("replayed");
    assert_eq!(
        got[1].webhook_id(),
        got[0].webhook_id(),
        "a replay keeps the delivery id"
    );

    // A failing receiver: the delivery is dead-lettered, listed for its app only, replayed.
    assert_eq!(
        acme.call("POST", "/v1/subscriptions/down/test", None)
            .await
            .status,
        202
    );
    let letters = eventually(WAIT, "a dead letter", || async {
        let letters =
            acme.call("GET", "/v1/dead-letters", None).await.json()["dead_letters"].clone();
        (letters.as_array().is_some_and(|l| !l.is_empty())).then_some(letters)
    })
    .await;
    assert_eq!(letters[0]["subscription"], "down");
    let dead_id = letters[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        other.call("GET", "/v1/dead-letters", None).await.json()["dead_letters"],
        json!([])
    );
    assert_eq!(
        other
            .call("POST", &format!("/v1/dead-letters/{dead_id}/replay"), None)
            .await
            .status,
        404
    );
    // The log is written beside the dead letter, not before it: read it until it shows it.
    let log = newest_delivery(&acme, "down", "dead", "the dead delivery in the log").await;
    assert_eq!(log["deliveries"][0]["attempts"][0]["status"], 503);

    failing.set_status(http::StatusCode::OK);
    let replayed = acme
        .call("POST", &format!("/v1/dead-letters/{dead_id}/replay"), None)
        .await;
    assert_eq!(replayed.status, 202, "{:?}", replayed.body);
    let log = newest_delivery(&acme, "down", "delivered", "the replayed delivery").await;
    let statuses: Vec<_> = log["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(503), json!(200)], "both attempts are kept");
    assert_eq!(
        acme.call("GET", "/v1/dead-letters", None).await.json()["dead_letters"],
        json!([])
    );
    gateway.stop().await.expect("stop");
}

async fn admin(gateway: &TestGateway, method: &str, path: &str, body: Option<Value>) -> Value {
    gateway
        .admin("admin-token-0123456789", method, path, body)
        .await
}

/// Registers a stored app `name` and returns a client holding its token.
async fn register(gateway: &TestGateway, name: &str) -> Api {
    let issued = admin(
        gateway,
        "POST",
        "/admin/apps",
        Some(json!({"name": name, "scopes": ["read", "write"], "events": ["sale.order.*"]})),
    )
    .await;
    let id = issued["oauth2_client_id"]
        .as_str()
        .expect("client id")
        .to_owned();
    let secret = issued["oauth2_client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    Api::new(gateway, (name, id.as_str(), secret.as_str()), "read write").await
}

on_both_engines!(
    deleting_an_app_removes_everything_it_owned,
    deleting_an_app_removes_everything_it_owned_on_nats,
    deleting_an_app_removes_everything_it_owned_on
);

async fn deleting_an_app_removes_everything_it_owned_on(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config_on(engine, ""), dir.path())
        .await
        .expect("gateway");
    let failing = Inbox::start_local(InboxOptions {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let shop = register(&gateway, "shop").await;
    for (id, retries) in [("dead", 0), ("retrying", 20)] {
        let body = json!({"id": id, "events": ["sale.order.*"], "destination": {"url": failing.url(&format!("/{id}")).to_string()}, "retries": retries});
        let reply = shop.call("POST", "/v1/subscriptions", Some(body)).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
    }
    post_order(&gateway, "before-delete").await;
    // One dead letter, and a delivery being retried, each with its attempt in the log (the
    // log is written beside them, after the receiver's answer).
    eventually(WAIT, "a dead letter and a retried delivery", || async {
        let dead = shop.call("GET", "/v1/dead-letters", None).await.json();
        let mut logged = true;
        for id in ["dead", "retrying"] {
            let log = shop
                .call("GET", &format!("/v1/subscriptions/{id}/deliveries"), None)
                .await
                .json();
            logged &= log["deliveries"][0]["attempts"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
        }
        (dead["dead_letters"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
            && logged)
            .then_some(())
    })
    .await;

    let removed = admin(&gateway, "DELETE", "/admin/apps/shop", None).await;
    assert_eq!(removed["subscriptions_and_plugins"], 2, "{removed}");
    assert!(
        removed["queue_records"].as_u64().unwrap_or(0) >= 3,
        "{removed}"
    );
    let attempts_at_delete = failing.received().len();

    // Its deliveries stop.
    post_order(&gateway, "after-delete").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        failing.received().len(),
        attempts_at_delete,
        "nothing delivers for it any more"
    );

    // A new app under the same name starts from nothing.
    let reborn = register(&gateway, "shop").await;
    let listed = reborn.call("GET", "/v1/subscriptions", None).await.json();
    assert_eq!(listed["subscriptions"], json!([]), "{listed}");
    let dead = reborn.call("GET", "/v1/dead-letters", None).await.json();
    assert_eq!(dead["dead_letters"], json!([]), "{dead}");
    let body = json!({"id": "dead", "events": ["sale.order.*"], "destination": {"url": failing.url("/new").to_string()}});
    assert_eq!(
        reborn
            .call("POST", "/v1/subscriptions", Some(body))
            .await
            .status,
        201
    );
    let log = reborn
        .call("GET", "/v1/subscriptions/dead/deliveries", None)
        .await
        .json();
    assert_eq!(
        log["deliveries"],
        json!([]),
        "no inherited delivery log: {log}"
    );
    let stored = admin(&gateway, "GET", "/admin/dead-letters", None).await;
    assert_eq!(stored["dead_letters"], json!([]), "{stored}");
    gateway.stop().await.expect("stop");
}

on_both_engines!(
    an_app_subscribes_only_to_the_events_it_is_granted,
    an_app_subscribes_only_to_the_events_it_is_granted_on_nats,
    an_app_subscribes_only_to_the_events_it_is_granted_on
);

async fn an_app_subscribes_only_to_the_events_it_is_granted_on(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config_on(engine, ""), dir.path())
        .await
        .expect("gateway");
    let good = inbox().await;
    // Granted `sale.order.*` only (see `register`).
    let shop = register(&gateway, "shop").await;
    let url = good.url("/shop").to_string();
    for refused in [
        json!(["*"]),
        json!(["res.partner.*"]),
        json!(["sale.*"]),
        json!(["*.write"]),
    ] {
        let body = json!({"id": "s", "events": refused, "destination": {"url": url}});
        let reply = shop.call("POST", "/v1/subscriptions", Some(body)).await;
        assert_eq!(reply.status, 403, "{refused}: {:?}", reply.body);
        assert_eq!(code(&reply), "event_not_granted");
        assert!(
            message(&reply).contains("sale.order.*"),
            "{}",
            message(&reply)
        );
    }
    let body = json!({"id": "s", "events": ["sale.order.confirmed"], "destination": {"url": url}});
    let reply = shop.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    // Widening it later is refused the same way.
    let reply = shop
        .call(
            "PATCH",
            "/v1/subscriptions/s",
            Some(json!({"events": ["sale.order.confirmed", "*"]})),
        )
        .await;
    assert_eq!(reply.status, 403, "{:?}", reply.body);
    // An app granted the same events but only from another source hears nothing of this one.
    let issued = admin(
        &gateway,
        "POST",
        "/admin/apps",
        Some(json!({"name": "remote", "scopes": ["read", "write"], "events": ["sale.order.*"], "sources": ["other-odoo"]})),
    )
    .await;
    let remote = Api::new(
        &gateway,
        (
            "remote",
            issued["oauth2_client_id"].as_str().expect("id"),
            issued["oauth2_client_secret"].as_str().expect("secret"),
        ),
        "read write",
    )
    .await;
    let body = json!({"id": "r", "events": ["sale.order.*"], "destination": {"url": good.url("/remote").to_string()}});
    assert_eq!(
        remote
            .call("POST", "/v1/subscriptions", Some(body))
            .await
            .status,
        201
    );
    post_order(&gateway, "granted").await;
    good.wait_for(1, WAIT)
        .await
        .expect("the granted event is delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paths: Vec<String> = good.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        ["/shop"],
        "not to the app granted another source only"
    );
    gateway.stop().await.expect("stop");
}

on_both_engines!(
    retries_pauses_and_repeats_behave_alike,
    retries_pauses_and_repeats_behave_alike_on_nats,
    retries_pauses_and_repeats_on
);

/// The queue's own behaviour: a flapping receiver gets the delivery on the attempt after its
/// failures, with every attempt in the log; a paused subscription holds its deliveries and
/// sends them once enabled; a repeated submission is answered with the first event's id and
/// delivered once.
async fn retries_pauses_and_repeats_on(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config_on(engine, ""), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let flapping = Inbox::start_local(InboxOptions {
        fail_first: 2,
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let body = json!({"id": "flap", "events": ["sale.order.*"], "destination": {"url": flapping.url("/flap").to_string()}, "retries": 3});
    let reply = acme.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);

    // Retried on the backoff schedule until the receiver takes it.
    post_order(&gateway, "flapping").await;
    let log = newest_delivery(&acme, "flap", "delivered", "the third attempt delivers").await;
    let statuses: Vec<_> = log["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status"].as_u64())
        .collect();
    assert_eq!(
        statuses,
        [Some(500), Some(500), Some(200)],
        "{} on {}",
        log,
        engine.name()
    );
    let accepted = flapping
        .received()
        .iter()
        .filter(|r| r.answered.is_some_and(|s| s.is_success()))
        .count();
    assert_eq!(accepted, 1, "delivered once");

    // A paused subscription holds its deliveries, then sends them once enabled.
    let paused = admin(
        &gateway,
        "POST",
        "/admin/subscriptions/app.acme.flap/pause",
        None,
    )
    .await;
    assert_eq!(paused["paused"], true, "{paused}");
    post_order(&gateway, "held").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tagged = |inbox: &Inbox, tag: &str| {
        inbox
            .received()
            .iter()
            .filter(|r| {
                r.answered.is_some_and(|s| s.is_success())
                    && serde_json::from_slice::<Value>(&r.body)
                        .is_ok_and(|b| b["payload"]["x_test_id"] == tag)
            })
            .count()
    };
    assert_eq!(tagged(&flapping, "held"), 0, "held while paused");
    let enabled = admin(
        &gateway,
        "POST",
        "/admin/subscriptions/app.acme.flap/enable",
        None,
    )
    .await;
    assert_eq!(enabled["enabled"], true, "{enabled}");
    eventually(WAIT, "the held delivery is sent once enabled", || async {
        (tagged(&flapping, "held") == 1).then_some(())
    })
    .await;

    // The same body twice: one event, delivered once.
    let url = gateway.url(&format!("/v1/events/odoo/{SOURCE_TOKEN}"));
    let envelope = json!({"model": "sale.order", "action": "confirmed", "record_id": 7, "payload": {"x_test_id": "twice"}});
    let client = odoo_gateway_tests::HttpClient::new();
    let first = client
        .post_json(&url, envelope.to_string().as_bytes())
        .await
        .expect("ingest")
        .json();
    let second = client
        .post_json(&url, envelope.to_string().as_bytes())
        .await
        .expect("ingest")
        .json();
    assert_eq!(
        (first["duplicate"].as_bool(), second["duplicate"].as_bool()),
        (Some(false), Some(true)),
        "{first} {second}"
    );
    assert_eq!(
        first["id"], second["id"],
        "the repeat names the first event"
    );
    eventually(WAIT, "the event is delivered", || async {
        (tagged(&flapping, "twice") == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tagged(&flapping, "twice"), 1, "delivered once");
    gateway.stop().await.expect("stop");
}

on_both_engines!(
    a_plugin_rejecting_events_is_not_a_failing_subscription,
    a_plugin_rejecting_events_is_not_a_failing_subscription_on_nats,
    a_plugin_rejecting_events_on
);

/// A plugin's rejection is its decision about the event: the event goes to the dead letters
/// with the reason, and the subscription is neither flagged nor paused for it, however many it
/// rejects (here past `flag_after_failures` with `disable_flagged`).
async fn a_plugin_rejecting_events_on(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = inbox().await;
    let extra = format!(
        r#"
[[destinations]]
name = "picky"
url = "{url}"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
[[subscriptions]]
id = "picky"
events = ["sale.order.*"]
destinations = ["picky"]
plugin = "{plugin}"
[subscriptions.config]
mode = "reject"
"#,
        url = receiver.url("/picky"),
        plugin = odoo_gateway_tests::plugin("hostile_plugin").display(),
    );
    let config = config_on(engine, &extra).replace(
        "[delivery]\nretries = 0\n",
        "[delivery]\nretries = 0\nflag_after_failures = 2\ndisable_flagged = true\n",
    );
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("gateway");
    for n in 0..4 {
        post_order(&gateway, &format!("rejected-{n}")).await;
    }
    let letters = eventually(WAIT, "every rejected event is dead-lettered", || async {
        let all = admin(&gateway, "GET", "/admin/dead-letters", None).await;
        let letters: Vec<Value> = all["dead_letters"]
            .as_array()?
            .iter()
            .filter(|l| l["subscription"] == "picky")
            .cloned()
            .collect();
        (letters.len() == 4).then_some(letters)
    })
    .await;
    assert!(
        letters.iter().all(|l| l["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("plugin_rejected: "))),
        "{letters:?}"
    );
    let subs = admin(&gateway, "GET", "/admin/subscriptions", None).await;
    let picky = subs["subscriptions"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["id"] == "picky"))
        .cloned()
        .expect("listed");
    assert_eq!(
        (&picky["flagged"], &picky["paused"]),
        (&json!(false), &json!(false)),
        "{picky} on {}",
        engine.name()
    );
    assert!(receiver.received().is_empty(), "nothing delivered");
    gateway.stop().await.expect("stop");
}

/// `subscription`'s delivery log, read until its newest delivery has `status` (the log is
/// written after the receiver's answer, and beside a dead letter).
async fn newest_delivery(app: &Api, subscription: &str, status: &str, what: &str) -> Value {
    eventually(WAIT, what, || async {
        let log = app
            .call(
                "GET",
                &format!("/v1/subscriptions/{subscription}/deliveries"),
                None,
            )
            .await
            .json();
        (log["deliveries"][0]["status"] == status).then_some(log)
    })
    .await
}
