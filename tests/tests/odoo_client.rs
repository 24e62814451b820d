//! The Odoo client against the fake Odoo over a real socket, in both protocols (JSON-RPC and
//! Odoo 19's JSON-2): answers in Odoo's shapes and a typed error for each way a call fails.

use std::time::Duration;

use odoo_gateway::odoo::{OdooClient, OdooConfig, OdooError};
use odoo_gateway_tests::fake_odoo::{self, FakeOdoo};
use serde_json::json;

fn client(odoo: &FakeOdoo, api_key: &str, protocol: &str) -> OdooClient {
    client_with(odoo, api_key, protocol, "0s")
}

fn client_with(odoo: &FakeOdoo, api_key: &str, protocol: &str, cache_ttl: &str) -> OdooClient {
    let config: OdooConfig = serde_json::from_value(json!({
        "cache_ttl": cache_ttl,
        "url": odoo.url(),
        "protocol": protocol,
        "database": fake_odoo::DATABASE,
        "login": fake_odoo::LOGIN,
        "api_key": api_key,
        "timeout": "300ms",
        "retries": 1,
    }))
    .expect("config");
    OdooClient::new(&config).expect("client")
}

#[tokio::test]
async fn reads_in_odoo_shapes_over_jsonrpc() {
    let odoo = FakeOdoo::start().await.expect("fake");
    let c = client(&odoo, fake_odoo::API_KEY, "jsonrpc");
    assert_eq!(c.version().await.expect("version")["server_serie"], "17.0");
    assert_eq!(c.uid().await.expect("uid"), fake_odoo::UID);
    reads_in_odoo_shapes(&odoo, &c).await;
    assert_eq!(odoo.calls("common.authenticate"), 1, "authenticated once");
}

#[tokio::test]
async fn reads_in_odoo_shapes_over_json2() {
    let odoo = FakeOdoo::start().await.expect("fake");
    let c = client(&odoo, fake_odoo::API_KEY, "json2");
    reads_in_odoo_shapes(&odoo, &c).await;
    assert_eq!(odoo.calls("common.authenticate"), 0, "no login with JSON-2");
}

async fn reads_in_odoo_shapes(odoo: &FakeOdoo, c: &OdooClient) {
    let fields = ["route_id".to_owned(), "product_id".to_owned()];
    let lines = c
        .read("sale.order.line", &[32, 31, 99], &fields)
        .await
        .expect("read");
    assert_eq!(lines.len(), 2, "a missing id is left out");
    assert_eq!(
        lines[0],
        json!({"id": 32, "route_id": [6, "Ship: ParcelPost"], "product_id": [28, "[E-COM11] Cabinet with Doors"]})
    );
    let domain = json!([
        "|",
        ["id", "in", [31, 33]],
        "&",
        ["id", ">", 31],
        ["display_type", "=", false]
    ]);
    let found = c
        .search_read("sale.order.line", domain, &["id".to_owned()], "id desc", 10)
        .await
        .expect("search_read");
    assert_eq!(
        found,
        vec![json!({"id": 33}), json!({"id": 32}), json!({"id": 31})]
    );
    assert_eq!(
        c.relation("sale.order", "partner_id")
            .await
            .expect("relation"),
        "res.partner"
    );
    assert_eq!(odoo.calls("sale.order.line.read"), 1);
}

#[tokio::test]
async fn each_failure_is_a_typed_error_over_jsonrpc() {
    each_failure_is_a_typed_error("jsonrpc").await;
}

#[tokio::test]
async fn each_failure_is_a_typed_error_over_json2() {
    each_failure_is_a_typed_error("json2").await;
}

async fn each_failure_is_a_typed_error(protocol: &str) {
    let odoo = FakeOdoo::start().await.expect("fake");
    let c = client(&odoo, fake_odoo::API_KEY, protocol);
    let fields = ["name".to_owned()];
    let e = c
        .read("no.such.model", &[1], &fields)
        .await
        .expect_err("model");
    assert!(
        matches!(&e, OdooError::MissingModel { model } if model == "no.such.model"),
        "{e}"
    );
    assert!(!e.is_retryable());
    let e = c
        .read("res.partner", &[9], &["nope".to_owned()])
        .await
        .expect_err("field");
    assert!(matches!(e, OdooError::MissingField { .. }), "{e}");
    assert!(e.to_string().contains("nope"), "{e}");

    let refused = client(&odoo, "wrong-key-0123456789", protocol);
    let e = refused
        .read("res.partner", &[9], &fields)
        .await
        .expect_err("key");
    assert!(matches!(e, OdooError::AccessDenied { .. }), "{e}");
    assert!(!e.to_string().contains("wrong-key"), "{e}");

    odoo.set_delay(Duration::from_millis(800));
    let e = c
        .read("res.partner", &[9], &fields)
        .await
        .expect_err("slow");
    assert!(
        matches!(e, OdooError::Timeout { .. }) && e.is_retryable(),
        "{e}"
    );
    odoo.set_delay(Duration::ZERO);

    odoo.set_down(true);
    let e = c
        .read("res.partner", &[9], &fields)
        .await
        .expect_err("down");
    assert!(
        matches!(e, OdooError::Http { status: 503, .. }) && e.is_retryable(),
        "{e}"
    );
    odoo.set_down(false);
    assert_eq!(
        c.read("res.partner", &[9], &fields)
            .await
            .expect("back")
            .len(),
        1
    );

    odoo.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = c
        .read("res.partner", &[9], &fields)
        .await
        .expect_err("gone");
    assert!(
        matches!(e, OdooError::Unreachable { .. }) && e.is_retryable(),
        "{e}"
    );
}

#[tokio::test]
async fn records_are_reused_within_the_cache_ttl_only() {
    let odoo = FakeOdoo::start().await.expect("fake");
    let fields = ["name".to_owned()];
    let cached = client_with(&odoo, fake_odoo::API_KEY, "jsonrpc", "300ms");
    for _ in 0..3 {
        let found = cached
            .read_cached("res.partner", &[9], &fields)
            .await
            .expect("read");
        assert_eq!(found[&9]["name"], "Deco Addict");
    }
    assert_eq!(odoo.calls("res.partner.read"), 1, "read once, then reused");
    // Other fields are another read.
    let other = ["zip".to_owned()];
    cached
        .read_cached("res.partner", &[9], &other)
        .await
        .expect("read");
    assert_eq!(odoo.calls("res.partner.read"), 2);
    tokio::time::sleep(Duration::from_millis(350)).await;
    cached
        .read_cached("res.partner", &[9], &fields)
        .await
        .expect("read");
    assert_eq!(odoo.calls("res.partner.read"), 3, "expired");
    let uncached = client(&odoo, fake_odoo::API_KEY, "jsonrpc");
    uncached
        .read_cached("res.partner", &[9], &fields)
        .await
        .expect("read");
    uncached
        .read_cached("res.partner", &[9], &fields)
        .await
        .expect("read");
    assert_eq!(odoo.calls("res.partner.read"), 5, "no cache by default");
}
