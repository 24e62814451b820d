//! The web console in a real browser: a gateway with a healthy subscription, a failing one
//! (flagged, with a dead letter) and one with a plugin, then `tests/console/console.test.mjs`
//! drives Debian's Chromium through playwright-core against it (log in, the failing
//! subscription flagged, an event's journey, a replay, a plugin dry-run, pause and enable,
//! a reload). `./dev test` installs Chromium and the script's `npm ci`; without them this
//! test fails, it does not skip.

use std::process::Command;
use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::{HttpClient, TestGateway, fixture, plugin, workspace};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "console-token-0123456789";
const ADMIN: &str = "console-admin-token-0123456789";

fn config(good: &Inbox, bad: &Inbox) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN}"
[storage]
path = "data"
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
events = ["*"]
destinations = ["broken"]
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
    let inbox = |status: u16| {
        Inbox::start_local(InboxOptions {
            secrets: vec![SECRET.parse().expect("secret")],
            status: http::StatusCode::from_u16(status).expect("status"),
            ..InboxOptions::default()
        })
    };
    let (good, bad) = (
        inbox(200).await.expect("inbox"),
        inbox(500).await.expect("inbox"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&good, &bad), dir.path())
        .await
        .expect("gateway");
    let reply = HttpClient::new()
        .post_json(
            &gw.url(&format!("/v1/odoo/odoo/{TOKEN}?event=confirmed")),
            &fixture("rich/sale.order.confirmed.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    let event_id = reply.json()["id"].as_str().expect("id").to_owned();
    // `orders` once, `shipping` split in two: three deliveries to the healthy receiver.
    good.wait_for(3, Duration::from_secs(30))
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
    assert_eq!(reload["generation"], 1, "the browser reloaded once: {reload}");
    gw.stop().await.expect("stopped");
}
