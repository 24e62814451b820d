//! Enrichment: bare ids in, records embedded before the plugin (or pass-through), with Odoo
//! down, slow or refusing the key.

use std::time::Duration;

use odoo_gateway_tests::fake_odoo::{self, FakeOdoo};
use serde_json::json;

use super::*;

#[tokio::test]
async fn a_native_webhook_with_bare_ids_is_enriched_then_split_by_shipper() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, "", &shipping());
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("starts");
    post_confirmed_order(&gateway).await;
    let received = inbox.wait_for(2, WAIT).await.expect("two deliveries");
    assert_split(&received);
    // One `read` per related model, and the partner's model asked of Odoo once.
    assert_eq!(odoo.calls("sale.order.line.read"), 1);
    assert_eq!(odoo.calls("res.partner.read"), 1);
    assert_eq!(odoo.calls("sale.order.fields_get"), 1);
    assert_eq!(odoo.calls("common.authenticate"), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(inbox.received().len(), 2, "nothing more");
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn odoo_down_or_slow_delays_enrichment_and_loses_nothing() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, "", &shipping());
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("starts");
    odoo.set_down(true);
    // Ingest does not wait for Odoo: the event is accepted at once.
    let started = std::time::Instant::now();
    post_confirmed_order(&gateway).await;
    assert!(started.elapsed() < Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        inbox.received().is_empty(),
        "nothing delivered while Odoo is down"
    );
    // Up again, but slower than the configured timeout: still retried.
    odoo.set_delay(Duration::from_millis(800));
    odoo.set_down(false);
    let asked = odoo.requests();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        inbox.received().is_empty(),
        "nothing delivered while Odoo is too slow"
    );
    assert!(odoo.requests() > asked, "the slow Odoo is asked again");
    odoo.set_delay(Duration::ZERO);
    let received = inbox
        .wait_for(2, WAIT)
        .await
        .expect("delivered once Odoo is back");
    assert_split(&received);
    let letters = gateway.wait_dead_letters(ADMIN, Duration::ZERO).await;
    assert!(letters.is_empty(), "{letters:?}");
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn a_refused_api_key_is_dead_lettered_with_a_clear_reason() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&odoo, &inbox, "not-the-key-0123456789", "", &shipping());
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("starts");
    post_confirmed_order(&gateway).await;
    let letters = gateway.wait_dead_letters(ADMIN, WAIT).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = letters[0].to_string();
    assert!(letter.contains("odoo_access_denied"), "{letter}");
    assert!(letter.contains(fake_odoo::LOGIN), "{letter}");
    assert!(
        !letter.contains("not-the-key"),
        "the key is never shown: {letter}"
    );
    assert!(inbox.received().is_empty());
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn a_source_level_enrich_list_applies_to_a_subscription_without_plugin() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let enrich = r#"
[sources.odoo.enrich]
"sale.order" = [{ field = "order_line", model = "sale.order.line" }, { field = "partner_id", model = "res.partner" }]
"#;
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, enrich, ORDERS);
    let gateway = start(&config, dir.path()).await;
    post_confirmed_order(&gateway).await;
    let received = inbox
        .wait_for(1, WAIT)
        .await
        .expect("the pass-through delivery");
    let payload = &body(&received[0])["payload"];
    assert_eq!(
        payload["order_line"],
        json!([
            [31, "[FURN_8888] Office Lamp"],
            [32, "[E-COM11] Cabinet with Doors"]
        ])
    );
    assert_eq!(payload["partner_id"], json!([9, "Deco Addict"]));
    assert_eq!(payload["amount_total"], 1150.0, "the rest as Odoo sent it");
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn odoo_19_json2_enriches_the_same_way() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let json2 = "protocol = \"json2\"";
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, json2, &shipping());
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("starts");
    post_confirmed_order(&gateway).await;
    let received = inbox.wait_for(2, WAIT).await.expect("two deliveries");
    assert_split(&received);
    assert_eq!(odoo.calls("sale.order.line.read"), 1);
    assert_eq!(
        odoo.calls("common.authenticate"),
        0,
        "JSON-2 needs no login"
    );
    gateway.stop().await.expect("stops");
}
