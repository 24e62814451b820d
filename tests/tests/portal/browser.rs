//! The app portal in a real browser: a gateway with the fake Odoo behind its source, an app
//! with a failing subscription (a dead letter) and an uploaded plugin, another app with a
//! subscription of its own; then `tests/console/portal.test.mjs` drives Debian's Chromium
//! through playwright-core: an expired link refused, a link opened, the catalog with a schema
//! from Odoo, a subscription created (a bad filter refused first), a test event delivered
//! and seen in the log, the secret rotated, a pause, a dead letter replayed, a plugin
//! uploaded, a dry-run, the
//! other app's ids and `/admin/` refused, a revoked session and a logout. `./dev test`
//! installs Chromium and the script's `npm ci`; without them this test fails, it does not
//! skip.

use std::process::Command;
use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::fake_odoo::{self, FakeOdoo};
use odoo_gateway_tests::nats::Engine;
use odoo_gateway_tests::{TestGateway, plugin, workspace};
use serde_json::json;

use super::common::*;

fn browser_config(odoo: &FakeOdoo) -> String {
    let source = format!(
        r#"actions = {{ "SO confirmed" = "confirmed" }}
[sources.odoo]
url = "{url}"
database = "{db}"
login = "{login}"
api_key = "{key}"
[sources.odoo.enrich]
"sale.order" = [{{ field = "partner_id", fields = ["name", "zip", "country_id"] }}]
"#,
        url = odoo.url(),
        db = fake_odoo::DATABASE,
        login = fake_odoo::LOGIN,
        key = fake_odoo::API_KEY,
    );
    let apps = format!(
        "{}{}",
        app_toml(ACME, "events = [\"sale.order.*\"]"),
        app_toml(OTHER, "events = [\"*\"]")
    );
    config(&Engine::Sled, &source, &apps).replace(
        "[delivery]\nretries = 0",
        "[delivery]\nretries = 0\nshow_response_excerpts_to_apps = true",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_works_its_portal_in_a_real_browser() {
    let odoo = FakeOdoo::start().await.expect("fake Odoo");
    let good = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    let bad = Inbox::start_local(InboxOptions {
        status: http::StatusCode::INTERNAL_SERVER_ERROR,
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&browser_config(&odoo), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gw, ACME, "read write").await;
    let other = Api::new(&gw, OTHER, "read write").await;

    // A failing subscription of the app's, and its dead letter.
    let failing = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"id": "erp-sync", "events": ["sale.order.*"], "destination": {"url": bad.url("/erp").to_string()}})),
        )
        .await;
    assert_eq!(failing.status, 201, "{:?}", failing.body);
    let uploaded = acme
        .upload(
            std::fs::read(plugin("order_filter")).expect("plugin"),
            "?name=big-orders",
        )
        .await;
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.body);
    let theirs = other
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"id": "theirs", "events": ["*"], "destination": {"url": good.url("/theirs").to_string()}})),
        )
        .await;
    assert_eq!(theirs.status, 201);
    let event_id = post_order(&gw, json!({})).await;
    let dead_letter = format!("{event_id}.app.acme.erp-sync.0");
    eventually(WAIT, "the dead letter", || async {
        let letters = acme.call("GET", "/v1/dead-letters", None).await.json();
        letters["dead_letters"]
            .as_array()
            .is_some_and(|l| l.iter().any(|d| d["id"] == dead_letter.as_str()))
            .then_some(())
    })
    .await;
    let before = bad.received().len();
    good.wait_for(1, Duration::from_secs(20))
        .await
        .expect("the other app's delivery");

    // Links: one expired before it is used, one to work with.
    let expired = acme.link(json!({"link_ttl_secs": 1})).await;
    let link = acme.link(json!({})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let script = workspace().join("tests/console");
    let mut node = Command::new("node");
    node.arg("portal.test.mjs")
        .current_dir(&script)
        .env("GATEWAY_URL", gw.url(""))
        .env("PORTAL_URL", gw.url(&format!("/portal#link={link}")))
        .env("EXPIRED_URL", gw.url(&format!("/portal#link={expired}")))
        .env("ACME_TOKEN", acme_token(&gw).await)
        .env("RECEIVER_URL", good.url("/shop").to_string())
        .env("DEAD_LETTER", &dead_letter)
        .env("FAILING_SUBSCRIPTION", "erp-sync")
        .env("OTHER_SUBSCRIPTION", "theirs")
        .env("PLUGIN", "big-orders");
    let ran = tokio::task::spawn_blocking(move || node.output())
        .await
        .expect("joined")
        .unwrap_or_else(|e| {
            panic!("cannot run `node` (./dev test installs Node.js, Chromium and the script's npm ci): {e}")
        });
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        ran.status.success(),
        "the browser test failed ({}):\n{output}",
        ran.status
    );
    assert!(output.contains("portal test passed"), "{output}");

    // What the browser did reached the gateway: the subscription it created received the
    // test event, the replayed letter was tried again, nothing of the other app's changed.
    let created = acme
        .call("GET", "/v1/subscriptions/shop-orders", None)
        .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let created = created.json();
    assert_eq!(created["filter"], json!({"match": {"state": ["sale"]}}));
    assert!(
        created["destination"]["previous_secret_until_ms"].is_u64(),
        "{created}"
    );
    assert!(
        good.received().iter().any(|r| r.path == "/shop"),
        "the test event reached the receiver"
    );
    assert!(bad.received().len() > before, "the replay was attempted");
    let plugins = acme.call("GET", "/v1/plugins", None).await.json();
    assert!(
        plugins["plugins"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "to-xml")),
        "the plugin uploaded in the browser: {plugins}"
    );
    let untouched = other.call("GET", "/v1/subscriptions/theirs", None).await;
    assert_eq!(untouched.json()["enabled"], true);
    gw.stop().await.expect("stopped");
}

/// A bearer token of ACME's for the script (it revokes the portal's sessions with it).
async fn acme_token(gw: &TestGateway) -> String {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ACME.1, ACME.2));
    let reply = odoo_gateway_tests::HttpClient::new()
        .send(
            "POST",
            &gw.url("/oauth2/token"),
            &[
                ("authorization", &format!("Basic {basic}")),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            b"grant_type=client_credentials".to_vec(),
        )
        .await
        .expect("token");
    reply.json()["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}
