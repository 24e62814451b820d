//! Every bad input to ingest gets a clear status, a stable code and a message, and nothing is
//! stored; deliveries to private addresses are refused unless allowed.

use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::{HttpClient, Reply, TestGateway, fixture};

const TOKEN: &str = "ingest-token-0123456789";

fn config(destination: &str, allow: &str) -> String {
    format!(
        r#"
[server]
admin_token = "admin-token-0123456789"
max_body_bytes = 4096
[storage]
path = "data"
[delivery]
retries = 0
[delivery.client.ssrf]
allow = [{allow}]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[sources]]
name = "other"
tokens = ["other-token-0123456789"]
[[destinations]]
name = "d"
url = "{destination}"
[[subscriptions]]
id = "all"
events = ["*"]
destinations = ["d"]
"#
    )
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        reply.headers.get("content-type").map(|v| v.to_str().ok()),
        Some(Some("application/json"))
    );
}

async fn status(client: &HttpClient, gw: &TestGateway) -> serde_json::Value {
    let reply = client
        .send(
            "GET",
            &gw.url("/admin/status"),
            &[("authorization", "Bearer admin-token-0123456789")],
            Vec::new(),
        )
        .await
        .expect("status");
    assert_eq!(reply.status, 200);
    reply.json()
}

#[tokio::test]
async fn bad_requests_are_refused_clearly_and_store_nothing() {
    let inbox = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(
        &config(&inbox.url("/").to_string(), r#""127.0.0.0/8""#),
        dir.path(),
    )
    .await
    .expect("start");
    let c = HttpClient::new();
    let native = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let order = fixture("native/sale.order.confirmed.json");

    assert_error(
        &c.post_json(&native, b"{\"_model\": ").await.expect("post"),
        400,
        "malformed_json",
    );
    assert_error(
        &c.post_json(&native, b"{\"id\": 3}").await.expect("post"),
        400,
        "invalid_event",
    );
    assert_eq!(
        c.post_json(&native, &order).await.expect("post").status,
        202,
        "the one good event"
    );
    let wrong = c
        .post_json(&gw.url("/v1/odoo/odoo/wrong-token-0123456789"), &order)
        .await
        .expect("post");
    let unknown = c
        .post_json(&gw.url(&format!("/v1/odoo/nobody/{TOKEN}")), &order)
        .await
        .expect("post");
    assert_error(&wrong, 401, "unauthorized");
    assert_error(&unknown, 401, "unauthorized");
    assert_eq!(
        wrong.body, unknown.body,
        "an unknown source and a wrong token look the same"
    );
    let other_source = c
        .post_json(&gw.url(&format!("/v1/odoo/other/{TOKEN}")), &order)
        .await
        .expect("post");
    assert_error(&other_source, 401, "unauthorized");

    let huge = vec![b' '; 10_000];
    assert_error(
        &c.post_json(&native, &huge).await.expect("post"),
        413,
        "payload_too_large",
    );
    let plain = c
        .send(
            "POST",
            &native,
            &[("content-type", "text/plain")],
            order.clone(),
        )
        .await
        .expect("post");
    assert_error(&plain, 415, "unsupported_media_type");
    let get = c.get(&native).await.expect("get");
    assert_error(&get, 405, "method_not_allowed");
    assert_eq!(
        get.headers.get("allow").map(|v| v.to_str().ok()),
        Some(Some("POST"))
    );
    assert_error(
        &c.get(&gw.url("/nowhere")).await.expect("get"),
        404,
        "not_found",
    );

    let envelope = gw.url("/v1/events/odoo");
    let no_token = c.post_json(&envelope, b"{}").await.expect("post");
    assert_error(&no_token, 401, "unauthorized");
    let bearer = format!("Bearer {TOKEN}");
    let xml = c
        .send(
            "POST",
            &envelope,
            &[
                ("content-type", "application/xml"),
                ("authorization", &bearer),
            ],
            b"<event model=".to_vec(),
        )
        .await
        .expect("post");
    assert_error(&xml, 400, "malformed_xml");
    let csv = c
        .send(
            "POST",
            &envelope,
            &[("content-type", "text/csv"), ("authorization", &bearer)],
            b"a,b".to_vec(),
        )
        .await
        .expect("post");
    assert_error(&csv, 415, "unsupported_media_type");
    let missing = c
        .send(
            "POST",
            &envelope,
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
            ],
            br#"{"model": "a.b"}"#.to_vec(),
        )
        .await
        .expect("post");
    assert_error(&missing, 400, "invalid_event");
    assert_error(
        &c.get(&gw.url("/admin/status")).await.expect("get"),
        401,
        "unauthorized",
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored = status(&c, &gw).await["stored"].clone();
    assert_eq!(
        stored["events"], 1,
        "only the one good event was stored: {stored}"
    );
    inbox
        .wait_for(1, Duration::from_secs(20))
        .await
        .expect("the good event's delivery");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        inbox.received().len(),
        1,
        "only the good event is delivered"
    );
    gw.stop().await.expect("stop");
}

#[tokio::test]
async fn deliveries_to_private_addresses_are_refused_unless_allowed() {
    let inbox = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    // Loopback is private: with no allow list, the guard refuses it at connect time.
    let gw = TestGateway::start(&config(&inbox.url("/").to_string(), ""), dir.path())
        .await
        .expect("start");
    let c = HttpClient::new();
    let reply = c
        .post_json(
            &gw.url(&format!("/v1/odoo/odoo/{TOKEN}")),
            &fixture("native/res.partner.minimal.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    let letters = gw
        .wait_dead_letters("admin-token-0123456789", Duration::from_secs(10))
        .await;
    assert_eq!(letters.len(), 1);
    let reason = letters[0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("ssrf_blocked") && reason.contains("127.0.0.1"),
        "{reason}"
    );
    assert_eq!(
        letters[0]["attempts"], 1,
        "a refused address fails the same way every time: dead-lettered at once, not retried"
    );
    assert!(
        inbox.received().is_empty(),
        "nothing reached the private address"
    );
}

#[tokio::test]
async fn apps_do_not_get_the_operators_ssrf_allowances() {
    let inbox = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    // The operator allows loopback for its own destinations; the app subscription (an
    // `app.<name>.<id>` id, as the API makes them) to the same address gets no such allowance.
    let config = config(&inbox.url("/operator").to_string(), "\"127.0.0.0/8\"").replace(
        "[[subscriptions]]",
        &format!(
            "[[destinations]]\nname = \"app.shop.hook\"\nurl = \"{}\"\n[[subscriptions]]\nid = \"app.shop.hook\"\nevents = [\"*\"]\ndestinations = [\"app.shop.hook\"]\n[[subscriptions]]",
            inbox.url("/app")
        ),
    );
    let gw = TestGateway::start(&config, dir.path())
        .await
        .expect("start");
    let c = HttpClient::new();
    let reply = c
        .post_json(
            &gw.url(&format!("/v1/odoo/odoo/{TOKEN}")),
            &fixture("native/res.partner.minimal.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    let got = inbox
        .wait_for(1, Duration::from_secs(10))
        .await
        .expect("the operator's delivery");
    assert_eq!(got[0].path, "/operator");
    let letters = gw
        .wait_dead_letters("admin-token-0123456789", Duration::from_secs(10))
        .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["subscription"], "app.shop.hook");
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("ssrf_blocked"),
        "{letters:?}"
    );
    assert!(inbox.received().iter().all(|r| r.path != "/app"));
    gw.stop().await.expect("stop");
}
