//! What the portal offers beyond the API's first routes, through the API itself: rotating a
//! subscription's signing secret (the old one signing beside the new for a while) and
//! dry-running the app's own plugin (nothing queued or sent, another app's plugin out of
//! reach).

use std::time::Duration;

use odoo_gateway_tests::nats::Engine;
use odoo_gateway_tests::{TestGateway, plugin, verifying_inbox};
use serde_json::json;

use super::common::*;

const FIRST: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn apps() -> String {
    format!(
        "{}{}",
        app_toml(ACME, "events = [\"*\"]"),
        app_toml(OTHER, "events = [\"*\"]")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_old_one_until_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&Engine::Sled, "", &apps()), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gw, ACME, "read write").await;
    let old_only = verifying_inbox(FIRST, 200).await;
    let created = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"id": "orders", "events": ["sale.order.*"],
                "destination": {"url": old_only.url("/hook").to_string(), "secret": FIRST}})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);

    let rotated = acme
        .call("POST", "/v1/subscriptions/orders/rotate-secret", None)
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let rotated = rotated.json();
    let second = rotated["secret"].as_str().expect("secret").to_owned();
    assert!(second.starts_with("whsec_") && second != FIRST);
    let until = rotated["previous_secret_until_ms"].as_u64().expect("until");
    let shown = acme
        .call("GET", "/v1/subscriptions/orders", None)
        .await
        .json();
    assert_eq!(shown["destination"]["previous_secret_until_ms"], until);
    assert!(shown["destination"].get("secret").is_none(), "shown once");

    // A receiver still on the old secret verifies, and so would one on the new: two
    // signatures.
    post_order(&gw, json!({})).await;
    old_only
        .wait_for(1, Duration::from_secs(20))
        .await
        .expect("delivered");
    let got = &old_only.received()[0];
    assert!(got.verified(), "{:?}", got.verification);
    let signatures = got.header("webhook-signature").expect("signed");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");

    // Dropping the old one at once: one signature, the new secret's.
    let dropped = acme
        .call(
            "POST",
            "/v1/subscriptions/orders/rotate-secret",
            Some(json!({"keep_previous_secs": 0})),
        )
        .await;
    assert_eq!(dropped.status, 200);
    assert!(dropped.json()["previous_secret_until_ms"].is_null());
    let third = dropped.json()["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let new_only = verifying_inbox(&third, 200).await;
    let moved = acme
        .call(
            "PATCH",
            "/v1/subscriptions/orders",
            Some(json!({"destination": {"url": new_only.url("/hook").to_string()}})),
        )
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    // Another order: the same body again would be a duplicate, delivered once.
    post_order(&gw, json!({"x_second": true})).await;
    new_only
        .wait_for(1, Duration::from_secs(20))
        .await
        .expect("delivered");
    let got = &new_only.received()[0];
    assert!(got.verified());
    assert_eq!(
        got.header("webhook-signature")
            .expect("signed")
            .split(' ')
            .count(),
        1
    );
    let too_long = acme
        .call(
            "POST",
            "/v1/subscriptions/orders/rotate-secret",
            Some(json!({"keep_previous_secs": 2_592_000})),
        )
        .await;
    assert_eq!(too_long.status, 422);
    gw.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_dry_runs_its_own_plugin_and_nothing_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&Engine::Sled, "", &apps()), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gw, ACME, "read write").await;
    let other = Api::new(&gw, OTHER, "read").await;
    let bytes = std::fs::read(plugin("order_filter")).expect("plugin");
    let uploaded = acme.upload(bytes, "?name=big-orders").await;
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.body);
    let hash = uploaded.json()["hash"].as_str().expect("hash").to_owned();
    let inbox = verifying_inbox(FIRST, 200).await;
    let created = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(
                json!({"id": "big", "events": ["sale.order.*"], "plugin": "big-orders",
                "config": {"min_amount_total": 5000},
                "destination": {"url": inbox.url("/hook").to_string(), "secret": FIRST}}),
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);

    let run = |body: serde_json::Value| {
        let acme = &acme;
        async move {
            acme.call("POST", "/v1/plugins/big-orders/dry-run", Some(body))
                .await
        }
    };
    // With settings given: the order passes.
    let passed =
        run(json!({"sample": "sale.order.confirmed", "config": {"min_amount_total": 1000}})).await;
    assert_eq!(passed.status, 200, "{:?}", passed.body);
    let passed = passed.json();
    assert_eq!(passed["outcome"], "deliver", "{passed}");
    assert_eq!(
        passed["deliveries"].as_array().expect("deliveries").len(),
        1
    );
    assert!(
        passed["deliveries"][0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("S00012"))
    );
    assert_eq!(passed["plugin"], hash.as_str());
    // As the subscription runs it: its own settings filter the order out.
    let as_sub = run(json!({"sample": "sale.order.confirmed", "subscription": "big"}))
        .await
        .json();
    assert_eq!(as_sub["outcome"], "deliver");
    assert_eq!(as_sub["deliveries"], json!([]));
    assert_eq!(as_sub["subscription"], "big");
    // A pasted event, and the plugin's own refusal of bad settings.
    let pasted = run(
        json!({"event": {"model": "sale.order", "action": "confirmed",
        "payload": {"amount_total": 9000, "state": "sale"}}, "subscription": "big"}),
    )
    .await
    .json();
    assert_eq!(
        pasted["deliveries"].as_array().expect("deliveries").len(),
        1
    );
    let refused = run(json!({"sample": "sale.order.confirmed", "config": {}}))
        .await
        .json();
    assert_eq!(refused["outcome"], "give_up", "{refused}");
    for bad in [
        json!({}),
        json!({"sample": "nope"}),
        json!({"sample": "sale.order.confirmed", "subscription": "big", "config": {}}),
        json!({"sample": "sale.order.confirmed", "colour": "blue"}),
    ] {
        let reply = run(bad.clone()).await;
        assert_eq!(
            (reply.status, code(&reply)),
            (422, "invalid_dry_run".into()),
            "{bad}"
        );
    }
    // Another app's plugin is not there for it; a read-only token may dry-run.
    let theirs = other
        .call(
            "POST",
            &format!("/v1/plugins/{hash}/dry-run"),
            Some(json!({"sample": "sale.order.confirmed"})),
        )
        .await;
    assert_eq!(theirs.status, 404);
    let reader = Api::new(&gw, ACME, "read").await;
    let read_only = reader
        .call(
            "POST",
            &format!("/v1/plugins/{hash}/dry-run"),
            Some(json!({"sample": "sale.order.confirmed", "config": {"min_amount_total": 1}})),
        )
        .await;
    assert_eq!(read_only.status, 200, "{:?}", read_only.body);

    // Nothing was stored, queued or sent.
    let status = gw.admin(ADMIN, "GET", "/admin/status", None).await;
    assert_eq!(status["stored"]["events"], 0, "{status}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(inbox.received().is_empty());
    gw.stop().await.expect("stop");
}
