//! Plugin uploads: hostile and malformed ones refused without a trace, a good one used by a
//! subscription.

use odoo_gateway_tests::nats::{Engine, NatsServer};
use std::time::Duration;

use odoo_gateway_tests::{TestGateway, plugin, workspace};
use serde_json::{Value, json};

use super::common::*;

#[tokio::test]
async fn hostile_uploads_are_refused_and_an_uploaded_plugin_delivers() {
    hostile_uploads_are_refused_and_an_uploaded_plugin_delivers_on(&Engine::Sled).await;
}

#[tokio::test]
async fn hostile_uploads_are_refused_and_an_uploaded_plugin_delivers_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    hostile_uploads_are_refused_and_an_uploaded_plugin_delivers_on(&server.engine("t")).await;
}

async fn hostile_uploads_are_refused_and_an_uploaded_plugin_delivers_on(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config_on(engine, ""), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;

    let wrong_world =
        wat::parse_file(workspace().join("gateway/tests/wat/missing_export.wat")).expect("wat");
    let echo =
        std::fs::read_to_string(workspace().join("gateway/tests/wat/echo.wat")).expect("echo.wat");
    // The plugins' virtual WASI has no key-value store: an import the host does not provide.
    let wasi_import =
        "(import \"wasi:keyvalue/store@0.2.0\" (instance (export \"count\" (func (result u32)))))";
    let with_wasi = wat::parse_str(echo.replace(";; EXTRA IMPORTS", wasi_import)).expect("wat");
    let core_module = wat::parse_str("(module (func (export \"handle\")))").expect("wat");
    let cases: [(Vec<u8>, &str, u16, &str); 6] = [
        (
            b"MZ this is not wasm".to_vec(),
            "application/wasm",
            422,
            "plugin_compile_failed",
        ),
        (core_module, "application/wasm", 422, "plugin_not_a_plugin"),
        (wrong_world, "application/wasm", 422, "plugin_not_a_plugin"),
        (with_wasi, "application/wasm", 422, "plugin_not_a_plugin"),
        (
            b"\0asm\x0d\0\x01\0garbage".to_vec(),
            "application/wasm",
            422,
            "plugin_compile_failed",
        ),
        (
            std::fs::read(plugin("order_filter")).expect("plugin"),
            "application/octet-stream",
            415,
            "unsupported_media_type",
        ),
    ];
    for (bytes, content_type, status, expected) in cases {
        let reply = acme.upload(bytes, content_type, "").await;
        assert_eq!(
            (reply.status, code(&reply).as_str()),
            (status, expected),
            "{:?}",
            reply.body
        );
    }
    let huge = acme
        .upload(vec![0; 10 * 1024 * 1024 + 1], "application/wasm", "")
        .await;
    assert_eq!(
        (huge.status, code(&huge).as_str()),
        (413, "payload_too_large")
    );
    assert_eq!(
        acme.call("GET", "/v1/plugins", None).await.json()["plugins"],
        json!([]),
        "nothing was kept"
    );
    let stored = std::fs::read_dir(dir.path().join("data/plugins"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0, "no file was written");

    let wasm = std::fs::read(plugin("order_filter")).expect("plugin");
    let uploaded = acme
        .upload(wasm.clone(), "application/wasm", "?name=order-filter")
        .await;
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.body);
    let hash = uploaded.json()["hash"].as_str().expect("hash").to_owned();
    assert!(
        dir.path()
            .join(format!("data/plugins/{hash}.wasm"))
            .exists()
    );
    assert_eq!(
        acme.upload(wasm, "application/wasm", "?name=order-filter")
            .await
            .status,
        200,
        "same bytes again"
    );
    let listed = acme.call("GET", "/v1/plugins", None).await.json();
    assert_eq!(listed["plugins"][0]["name"], "order-filter");

    let inbox = inbox().await;
    let url = inbox.url("/filtered").to_string();
    let sub = |config: Value| json!({"id": "big", "events": ["sale.order.confirmed"], "destination": {"url": url}, "plugin": "order-filter", "config": config});
    let refused = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(sub(json!({"min_amount_total": "lots"}))),
        )
        .await;
    assert_eq!(
        (refused.status, code(&refused).as_str()),
        (422, "plugin_invalid_config"),
        "{:?}",
        refused.body
    );
    assert_eq!(
        acme.call("GET", "/v1/subscriptions/big", None).await.status,
        404,
        "the refused subscription was not kept"
    );
    let other = Api::new(&gateway, OTHER, "read write").await;
    let foreign = other
        .call(
            "POST",
            "/v1/subscriptions",
            Some(sub(json!({"min_amount_total": 1000}))),
        )
        .await;
    assert!(
        foreign.status == 422 && message(&foreign).starts_with("plugin:"),
        "another app's plugin: {:?}",
        foreign.body
    );
    assert_eq!(
        other.call("GET", "/v1/plugins", None).await.json()["plugins"],
        json!([])
    );

    let created = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(sub(json!({"min_amount_total": 1000}))),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = created.json()["destination"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    post_order(&gateway, "plugin").await;
    let got = inbox.wait_for(1, WAIT).await.expect("the plugin delivered");
    let body: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(
        body["name"], "S00012",
        "order-filter passes the order through: {body}"
    );
    let secret: odoo_gateway::signing::SigningSecret = secret.parse().expect("secret");
    let id = got[0].webhook_id().expect("id");
    let ts = got[0].header("webhook-timestamp").expect("ts");
    let sig = got[0].header("webhook-signature").expect("sig");
    let now: i64 = ts.parse().expect("ts");
    let checked = odoo_gateway::signing::verify(
        &[secret],
        id,
        ts,
        sig,
        &got[0].body,
        now,
        Duration::from_secs(60),
    );
    assert!(
        checked.is_ok(),
        "signed with the subscription's secret: {checked:?}"
    );

    // Raising the threshold through the API filters the next order out.
    let patched = acme
        .call(
            "PATCH",
            "/v1/subscriptions/big",
            Some(json!({"config": {"min_amount_total": 5000}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    post_order(&gateway, "plugin-2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(inbox.received().len(), 1, "filtered out by the plugin");
    gateway.stop().await.expect("stop");
}

#[tokio::test]
async fn a_stored_subscription_that_no_longer_validates_is_quarantined_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(""), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let wasm = std::fs::read(plugin("order_filter")).expect("plugin");
    let uploaded = acme
        .upload(wasm, "application/wasm", "?name=order-filter")
        .await;
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.body);
    let hash = uploaded.json()["hash"].as_str().expect("hash").to_owned();
    let good = inbox().await;
    for (id, plugin) in [("filtered", Some("order-filter")), ("plain", None)] {
        let mut body = json!({"id": id, "events": ["sale.order.*"], "destination": {"url": good.url(&format!("/{id}")).to_string()}});
        if let Some(p) = plugin {
            body["plugin"] = json!(p);
            body["config"] = json!({"min_amount_total": "100"});
        }
        let reply = acme.call("POST", "/v1/subscriptions", Some(body)).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
    }
    gateway.stop().await.expect("stop");

    // The uploaded plugin's file is lost while the gateway is down.
    std::fs::remove_file(dir.path().join("data/plugins").join(format!("{hash}.wasm")))
        .expect("remove the stored plugin");
    let gateway = TestGateway::start(&config(""), dir.path())
        .await
        .expect("the gateway starts all the same");
    let status = odoo_gateway_tests::HttpClient::new()
        .send(
            "GET",
            &gateway.url("/admin/status"),
            &[("authorization", "Bearer admin-token-0123456789")],
            Vec::new(),
        )
        .await
        .expect("status")
        .json();
    let quarantined = status["quarantined_subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(quarantined.len(), 1, "{status}");
    assert_eq!(quarantined[0]["id"], "app.acme.filtered");
    // The other subscription still delivers.
    post_order(&gateway, "after-restart").await;
    let got = good.wait_for(1, WAIT).await.expect("delivered");
    assert_eq!(got[0].path, "/plain");
    gateway.stop().await.expect("stop");
}
