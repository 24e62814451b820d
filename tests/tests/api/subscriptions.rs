//! Subscriptions: CRUD, validation, persistence across a restart, tenants and scopes, the
//! payload filter, and the rollback of a change the running configuration refuses.

use odoo_gateway_tests::nats::{Engine, NatsServer};
use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::{HttpClient, TestGateway, fixture};
use serde_json::{Value, json};

use super::common::*;

#[tokio::test]
async fn subscriptions_crud_persists_across_a_restart_and_stays_within_its_app() {
    subscriptions_crud_persists_across_a_restart_and_stays_within_its_app_on(&Engine::Sled).await;
}

#[tokio::test]
async fn subscriptions_crud_persists_across_a_restart_and_stays_within_its_app_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    subscriptions_crud_persists_across_a_restart_and_stays_within_its_app_on(&server.engine("t"))
        .await;
}

async fn subscriptions_crud_persists_across_a_restart_and_stays_within_its_app_on(
    engine: &Engine<'_>,
) {
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_on(engine, "");
    let gateway = TestGateway::start(&text, dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let url = inbox.url("/orders").to_string();

    let created = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"id": "orders", "events": ["sale.order.*"], "destination": {"url": url}})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let created = created.json();
    assert_eq!(created["id"], "orders");
    assert_eq!(created["subscription"], "app.acme.orders");
    let secret = created["destination"]["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"));

    let generated = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"events": ["*.unlink"], "destination": {"url": url}, "format": "xml"})),
        )
        .await;
    assert_eq!(generated.status, 201, "{:?}", generated.body);
    let generated_id = generated.json()["id"]
        .as_str()
        .expect("generated id")
        .to_owned();
    let again = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"id": "orders", "events": ["*"], "destination": {"url": url}})),
        )
        .await;
    assert_eq!(
        (again.status, code(&again).as_str()),
        (409, "already_exists")
    );

    // Validation names the field, and a bad body is told apart from a bad value.
    let bad = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"events": ["sale order"], "destination": {"url": url}})),
        )
        .await;
    assert_eq!(
        (bad.status, code(&bad).as_str()),
        (422, "invalid_subscription")
    );
    assert!(message(&bad).starts_with("events[0]"), "{}", message(&bad));
    let bad = acme
        .call(
            "PUT",
            "/v1/subscriptions/orders",
            Some(json!({"events": ["*"], "destination": {"url": "file:///etc/passwd"}})),
        )
        .await;
    assert!(
        bad.status == 422 && message(&bad).starts_with("destination.url"),
        "{:?}",
        bad.body
    );
    let auth = format!("Bearer {}", acme.token);
    let junk = acme
        .client
        .send(
            "POST",
            &gateway.url("/v1/subscriptions"),
            &[("authorization", &auth)],
            b"{not json".to_vec(),
        )
        .await
        .expect("post");
    assert_eq!((junk.status, code(&junk).as_str()), (400, "malformed_json"));

    let listed = acme.call("GET", "/v1/subscriptions", None).await.json();
    assert_eq!(listed["subscriptions"].as_array().map(Vec::len), Some(2));
    let shown = acme.call("GET", "/v1/subscriptions/orders", None).await;
    assert_eq!(shown.status, 200);
    assert!(
        !String::from_utf8_lossy(&shown.body).contains("whsec_"),
        "the secret is not shown again"
    );
    let patched = acme
        .call(
            "PATCH",
            "/v1/subscriptions/orders",
            Some(json!({"retries": 3, "timeout": "2s", "filter": {"match": {"state": ["sale"]}}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(
        (
            patched.json()["retries"].clone(),
            patched.json()["timeout"].clone()
        ),
        (json!(3), json!("2000ms"))
    );

    // Another app sees nothing of acme's, and cannot touch it.
    let other = Api::new(&gateway, OTHER, "read write").await;
    assert_eq!(
        other
            .call("GET", "/v1/subscriptions/orders", None)
            .await
            .status,
        404
    );
    assert_eq!(
        other
            .call("DELETE", "/v1/subscriptions/orders", None)
            .await
            .status,
        404
    );
    assert_eq!(
        other
            .call(
                "PATCH",
                "/v1/subscriptions/orders",
                Some(json!({"enabled": false}))
            )
            .await
            .status,
        404
    );
    assert_eq!(
        other.call("GET", "/v1/subscriptions", None).await.json()["subscriptions"],
        json!([])
    );
    // A read-only token reads but cannot write; no token at all is a 401.
    let reader = Api::new(&gateway, ACME, "read").await;
    assert_eq!(
        reader
            .call("GET", "/v1/subscriptions/orders", None)
            .await
            .status,
        200
    );
    let denied = reader
        .call("DELETE", "/v1/subscriptions/orders", None)
        .await;
    assert_eq!(
        (denied.status, code(&denied).as_str()),
        (403, "insufficient_scope")
    );
    let anonymous = HttpClient::new()
        .get(&gateway.url("/v1/subscriptions"))
        .await
        .expect("get");
    assert_eq!(anonymous.status, 401);

    // Restart on the same data: the subscriptions are there and join the snapshot at start-up.
    gateway.stop().await.expect("stop");
    let inbox = Inbox::start_local(InboxOptions {
        secrets: vec![secret.parse().expect("secret")],
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let gateway = TestGateway::start(&text, dir.path())
        .await
        .expect("restart");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let listed = acme.call("GET", "/v1/subscriptions", None).await.json();
    assert_eq!(
        listed["subscriptions"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    assert_eq!(
        acme.call("GET", "/v1/subscriptions/orders", None)
            .await
            .json()["retries"],
        3
    );
    let moved = acme
        .call(
            "PATCH",
            "/v1/subscriptions/orders",
            Some(json!({"destination": {"url": inbox.url("/orders").to_string()}})),
        )
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    post_order(&gateway, "after-restart").await;
    let got = inbox
        .wait_for(1, WAIT)
        .await
        .expect("delivered after the restart");
    assert!(
        got[0].verified(),
        "signed with the secret given at creation: {:?}",
        got[0].verification
    );
    assert!(
        got[0]
            .webhook_id()
            .is_some_and(|id| id.contains(".app.acme.orders."))
    );

    assert_eq!(
        acme.call("DELETE", &format!("/v1/subscriptions/{generated_id}"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        acme.call("GET", &format!("/v1/subscriptions/{generated_id}"), None)
            .await
            .status,
        404
    );
    gateway.stop().await.expect("stop");
}

on_both_engines!(
    the_payload_filter_selects_records_and_trims_fields,
    the_payload_filter_selects_records_and_trims_fields_on_nats,
    the_payload_filter_selects_records_and_trims_fields_on
);

async fn the_payload_filter_selects_records_and_trims_fields_on(engine: &Engine<'_>) {
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config_on(engine, ""), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let filter = json!({"match": {"state": ["sale", "done"], "partner_id": 9}, "fields": ["id", "name", "state"]});
    let body = json!({"id": "sold", "events": ["sale.order.*"], "destination": {"url": inbox.url("/sold").to_string()}, "filter": filter});
    let created = acme.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.json()["filter"], filter);

    let mut order: Value =
        serde_json::from_slice(&fixture("native/sale.order.confirmed.json")).expect("fixture");
    order["partner_id"] = json!([9, "Deco Addict"]);
    for state in ["draft", "sale"] {
        order["state"] = json!(state);
        let url = gateway.url(&format!("/v1/odoo/odoo/{SOURCE_TOKEN}?event=confirmed"));
        let reply = HttpClient::new()
            .post_json(&url, order.to_string().as_bytes())
            .await
            .expect("ingest");
        assert_eq!(reply.status, 202);
    }
    let got = inbox.wait_for(1, WAIT).await.expect("the matching order");
    let envelope: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(
        envelope["payload"],
        json!({"id": 12, "name": "S00012", "state": "sale"}),
        "only the selected fields"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        inbox.received().len(),
        1,
        "the draft order was filtered out"
    );

    let bad = acme
        .call(
            "PATCH",
            "/v1/subscriptions/sold",
            Some(json!({"filter": {"match": {"state": []}}})),
        )
        .await;
    assert!(
        bad.status == 422 && message(&bad).starts_with("filter.match.state"),
        "{:?}",
        bad.body
    );
    gateway.stop().await.expect("stop");
}

/// The configuration file breaks while the gateway runs: an API change cannot join the
/// running configuration, so it is not kept, and the answer says why.
#[tokio::test]
async fn a_change_the_running_configuration_refuses_is_rolled_back() {
    a_change_the_running_configuration_refuses_is_rolled_back_on(&Engine::Sled).await;
}

#[tokio::test]
async fn a_change_the_running_configuration_refuses_is_rolled_back_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    a_change_the_running_configuration_refuses_is_rolled_back_on(&server.engine("t")).await;
}

async fn a_change_the_running_configuration_refuses_is_rolled_back_on(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    let text = config_on(engine, "");
    std::fs::write(&path, &text).expect("write config");
    let source = odoo_gateway::reload::ConfigSource::File(path.clone());
    let gateway = TestGateway::start_with(source).await.expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let body =
        json!({"id": "kept", "events": ["*"], "destination": {"url": "http://127.0.0.1:9/hook"}});
    assert_eq!(
        acme.call("POST", "/v1/subscriptions", Some(body))
            .await
            .status,
        201
    );

    std::fs::write(
        &path,
        format!("{text}\n[[destinations]]\nname = \"broken\"\n"),
    )
    .expect("break config");
    let body = json!({"id": "refused", "events": ["*"], "destination": {"url": "http://127.0.0.1:9/hook"}});
    let refused = acme
        .call("POST", "/v1/subscriptions", Some(body.clone()))
        .await;
    assert_eq!(
        (refused.status, code(&refused).as_str()),
        (422, "reload_failed"),
        "{:?}",
        refused.body
    );
    assert!(
        message(&refused).contains("url"),
        "the reason: {}",
        message(&refused)
    );
    assert_eq!(
        acme.call("GET", "/v1/subscriptions/refused", None)
            .await
            .status,
        404,
        "rolled back"
    );
    let deleted = acme.call("DELETE", "/v1/subscriptions/kept", None).await;
    assert_eq!(deleted.status, 422, "{:?}", deleted.body);
    assert_eq!(
        acme.call("GET", "/v1/subscriptions/kept", None)
            .await
            .status,
        200,
        "the delete was rolled back"
    );

    std::fs::write(&path, &text).expect("repair config");
    assert_eq!(
        acme.call("POST", "/v1/subscriptions", Some(body))
            .await
            .status,
        201
    );
    gateway.stop().await.expect("stop");
}
