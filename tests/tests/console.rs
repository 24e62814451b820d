//! The web console in a real browser: a gateway with a healthy subscription, a failing one
//! (flagged, with a dead letter) and one with a plugin, then `tests/console/console.test.mjs`
//! drives Debian's Chromium through playwright-core against it (log in, the failing
//! subscription flagged, an event's journey, a replay, a plugin dry-run, pause and enable,
//! a reload). `./dev test` installs Chromium and the script's `npm ci`; without them this
//! test fails, it does not skip.

use std::process::Command;
use std::time::Duration;

use odoo_gateway::cli::inbox::Inbox;
use odoo_gateway_tests::{HttpClient, TestGateway, fixture, plugin, verifying_inbox, workspace};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "console-token-0123456789";
const ADMIN: &str = "console-admin-token-0123456789";
const SCRAPER: &str = "console-metrics-token-0123456789";

fn config(good: &Inbox, bad: &Inbox) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN}"
metrics_token = "{SCRAPER}"
[storage]
path = "data"
# Short chart samples, so that the overview's charts have a history by the time it is shown.
[telemetry]
chart_interval = "1s"
[delivery]
retries = 0
flag_after_failures = 1
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[destinations]]
name = "inbox"
url = "{inbox}"
secrets = ["{SECRET}"]
[[destinations]]
name = "broken"
url = "{broken}"
secrets = ["{SECRET}"]
[[destinations]]
name = "fastfreight"
url = "{fastfreight}"
secrets = ["{SECRET}"]
[[destinations]]
name = "parcelpost"
url = "{parcelpost}"
secrets = ["{SECRET}"]
[[subscriptions]]
id = "orders"
events = ["sale.order.*"]
destinations = ["inbox"]
[[subscriptions]]
id = "erp-sync"
events = ["sale.order.*"]
destinations = ["broken"]
[[subscriptions]]
id = "partners"
events = ["res.partner.*"]
destinations = ["inbox"]
[[subscriptions]]
id = "shipping"
events = ["sale.order.confirmed"]
destinations = ["fastfreight", "parcelpost"]
plugin = "{plugin}"
[subscriptions.config]
"route.Ship: FastFreight" = "fastfreight"
"route.Ship: ParcelPost" = "parcelpost"
"#,
        inbox = good.url("/inbox"),
        broken = bad.url("/erp"),
        fastfreight = good.url("/fastfreight"),
        parcelpost = good.url("/parcelpost"),
        plugin = plugin("shipper_router").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_console_in_a_real_browser() {
    let (good, bad) = (
        verifying_inbox(SECRET, 200).await,
        verifying_inbox(SECRET, 500).await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&good, &bad), dir.path())
        .await
        .expect("gateway");
    // A few seconds of partner updates first: the charts' history (one sample a second).
    let client = HttpClient::new();
    for n in 0..8 {
        let partner = format!(r#"{{"_model": "res.partner", "id": {n}, "name": "Partner {n}"}}"#);
        let reply = client
            .post_json(
                &gw.url(&format!("/v1/odoo/odoo/{TOKEN}")),
                partner.as_bytes(),
            )
            .await
            .expect("post");
        assert_eq!(reply.status, 202);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    good.wait_for(8, Duration::from_secs(30))
        .await
        .expect("partners delivered");
    let reply = client
        .post_json(
            &gw.url(&format!("/v1/odoo/odoo/{TOKEN}?event=confirmed")),
            &fixture("rich/sale.order.confirmed.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    let event_id = reply.json()["id"].as_str().expect("id").to_owned();
    // `orders` once, `shipping` split in two: three more deliveries to the healthy receiver.
    good.wait_for(11, Duration::from_secs(30))
        .await
        .expect("delivered");
    let letters = gw.wait_dead_letters(ADMIN, Duration::from_secs(20)).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let dead_letter = letters[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(dead_letter, format!("{event_id}.erp-sync.0"));

    let script = workspace().join("tests/console");
    let mut node = Command::new("node");
    node.arg("console.test.mjs")
        .current_dir(&script)
        .env("GATEWAY_URL", gw.url(""))
        .env("ADMIN_TOKEN", ADMIN)
        .env("METRICS_TOKEN", SCRAPER)
        .env("EVENT_ID", &event_id)
        .env("DEAD_LETTER", &dead_letter)
        .env("FAILING_SUBSCRIPTION", "erp-sync")
        .env("HEALTHY_SUBSCRIPTION", "orders")
        .env("PLUGIN", "shipper_router")
        .env("PLUGIN_SUBSCRIPTION", "shipping")
        .env("PLUGIN_DESTINATIONS", "fastfreight,parcelpost")
        .env("SAMPLE", "sale.order.confirmed.rich");
    // The browser runs in its own process while this runtime serves the gateway.
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
        "the browser test failed ({}):\n{output}\n(with Chromium or playwright-core missing, run ./dev test, which installs them)",
        ran.status
    );
    assert!(output.contains("console test passed"), "{output}");

    // What the browser did reached the gateway: the replayed letter was tried again, and
    // the subscription it paused and enabled delivers.
    bad.wait_for(2, Duration::from_secs(20))
        .await
        .expect("the replay was attempted");
    let listed = gw.admin(ADMIN, "GET", "/admin/subscriptions", None).await;
    let orders = listed["subscriptions"]
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["id"] == "orders")
        .cloned()
        .expect("orders");
    assert_eq!(orders["paused"], false, "{orders}");
    let reload = gw.admin(ADMIN, "GET", "/admin/reload", None).await;
    assert_eq!(
        reload["generation"], 1,
        "the browser reloaded once: {reload}"
    );
    gw.stop().await.expect("stopped");
}

/// `method path` with the admin token (or none) and a JSON body; the reply, whatever it is.
async fn call(
    gw: &TestGateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> odoo_gateway_tests::Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    HttpClient::new()
        .send(
            method,
            &gw.url(path),
            &headers,
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        )
        .await
        .expect("request")
}

#[tokio::test]
async fn the_console_and_its_endpoints_answer_clear_errors_and_a_dry_run_queues_nothing() {
    let (good, bad) = (
        verifying_inbox(SECRET, 200).await,
        verifying_inbox(SECRET, 500).await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&good, &bad), dir.path())
        .await
        .expect("gateway");

    // The static shell: no token, a strict policy, and nothing but its own files.
    let shell = call(&gw, "GET", "/console", None, None).await;
    assert_eq!(shell.status, 200);
    assert_eq!(shell.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(shell.headers["x-content-type-options"], "nosniff");
    let policy = shell.headers["content-security-policy"]
        .to_str()
        .expect("ASCII");
    assert!(
        policy.contains("default-src 'none'") && !policy.contains("unsafe"),
        "{policy}"
    );
    let script = call(&gw, "GET", "/console/app.js", None, None).await;
    assert_eq!(
        script.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(String::from_utf8_lossy(&script.body).contains("Authorization: `Bearer ${token()}`"));
    let missing = call(&gw, "GET", "/console/nope.js", None, None).await;
    assert_eq!(
        (missing.status, missing.json()["error"]["code"].clone()),
        (404, "not_found".into())
    );
    assert_eq!(call(&gw, "POST", "/console", None, None).await.status, 405);
    let head = call(&gw, "HEAD", "/console", None, None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.headers["content-length"].to_str().ok(),
        Some(shell.body.len().to_string().as_str())
    );

    // The data needs the token.
    let refused = call(&gw, "GET", "/admin/subscriptions", None, None).await;
    assert_eq!(refused.status, 401);
    let admin = Some(ADMIN);
    let unknown = call(&gw, "POST", "/admin/subscriptions/nope/pause", admin, None).await;
    assert_eq!(
        (unknown.status, unknown.json()["error"]["code"].clone()),
        (404, "not_found".into())
    );
    let wrong = call(&gw, "GET", "/admin/subscriptions/orders/pause", admin, None).await;
    assert_eq!(
        (wrong.status, wrong.headers["allow"].to_str().ok()),
        (405, Some("POST"))
    );
    let no_sub = call(&gw, "GET", "/admin/deliveries?failed=true", admin, None).await;
    assert_eq!(
        (no_sub.status, no_sub.json()["error"]["code"].clone()),
        (400, "invalid_query".into())
    );
    let no_such = call(
        &gw,
        "GET",
        "/admin/deliveries?subscription=nope",
        admin,
        None,
    )
    .await;
    assert_eq!(no_such.status, 404);
    let wrong = call(&gw, "POST", "/admin/subscriptions", admin, None).await;
    assert_eq!(
        (wrong.status, wrong.headers["allow"].to_str().ok()),
        (405, Some("GET"))
    );

    // Samples and plugins for the dry-run picker.
    let samples = call(&gw, "GET", "/admin/samples", admin, None).await.json();
    let names: Vec<&str> = samples["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(names.contains(&"sale.order.confirmed.rich"), "{names:?}");
    let plugins = call(&gw, "GET", "/admin/plugins", admin, None).await.json();
    assert_eq!(
        plugins["plugins"],
        serde_json::json!([{ "name": "shipper_router", "subscriptions": ["shipping"] }])
    );

    let dry_run = |body: serde_json::Value| {
        call(
            &gw,
            "POST",
            "/admin/plugins/shipper_router/dry-run",
            admin,
            Some(body),
        )
    };
    let unknown = call(
        &gw,
        "POST",
        "/admin/plugins/nope/dry-run",
        admin,
        Some(serde_json::json!({ "sample": "sale.order.confirmed" })),
    )
    .await;
    assert_eq!(unknown.status, 404);
    for bad_request in [
        serde_json::json!({}),
        serde_json::json!({ "sample": "nope" }),
        serde_json::json!({ "event": { "no": "model" } }),
        serde_json::json!({ "sample": "sale.order.confirmed", "subscription": "orders" }),
        serde_json::json!({ "sample": "sale.order.confirmed", "colour": "blue" }),
    ] {
        let reply = dry_run(bad_request.clone()).await;
        assert_eq!(
            (reply.status, reply.json()["error"]["code"].clone()),
            (400, "invalid_dry_run".into()),
            "{bad_request}"
        );
    }
    // Odoo's bare webhook body has no line records: the plugin refuses it, with its reason.
    let refused = dry_run(serde_json::json!({ "sample": "sale.order.confirmed" }))
        .await
        .json();
    assert_eq!(refused["outcome"], "give_up", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("line records")),
        "{refused}"
    );
    // The rich order, pasted as an event: split between the two shippers.
    let rich: serde_json::Value =
        serde_json::from_slice(&fixture("rich/sale.order.confirmed.json")).expect("JSON");
    let split = dry_run(serde_json::json!({ "event": rich, "event_type": "sale.order.confirmed" }))
        .await
        .json();
    assert_eq!(split["outcome"], "deliver", "{split}");
    assert_eq!(split["subscription_matches"], true);
    let destinations: Vec<&str> = split["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|d| d["destination"].as_str())
        .collect();
    assert_eq!(destinations, ["fastfreight", "parcelpost"], "{split}");
    let body: serde_json::Value =
        serde_json::from_str(split["deliveries"][0]["body"].as_str().expect("body")).expect("JSON");
    assert_eq!(body["name"], "S00012");

    // Nothing was stored, queued or sent.
    let status = gw.admin(ADMIN, "GET", "/admin/status", None).await;
    assert_eq!(status["stored"]["events"], 0, "{status}");
    assert_eq!(status["stored"]["queued"], 0, "{status}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(good.received().is_empty() && bad.received().is_empty());
    gw.stop().await.expect("stopped");
}
