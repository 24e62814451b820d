//! The operator commands (`status`, `events show`, `dead-letters list|replay`,
//! `subscriptions list|pause|enable`, `deliveries list`) against a running gateway, as a
//! person types them.

use std::time::Duration;

use odoo_gateway::cli::inbox::Inbox;
use odoo_gateway::cli::operate::Operate;
use odoo_gateway_tests::harness::eventually;
use odoo_gateway_tests::{HttpClient, TestGateway, fixture, verifying_inbox};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "operate-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn config(good: &Inbox, bad: &Inbox) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN}"
[storage]
path = "data"
[delivery]
retries = 0
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[destinations]]
name = "good"
url = "{good}"
secrets = ["{SECRET}"]
[[destinations]]
name = "bad"
url = "{bad}"
secrets = ["{SECRET}"]
[[subscriptions]]
id = "works"
events = ["*"]
destinations = ["good"]
[[subscriptions]]
id = "fails"
events = ["*"]
destinations = ["bad"]
"#,
        good = good.url("/good"),
        bad = bad.url("/bad"),
    )
}

async fn run(gw: &TestGateway, args: &[&str]) -> String {
    let url = gw.url("");
    let mut all = args.to_vec();
    all.extend(["--url", url.as_str(), "--admin-token", ADMIN]);
    let mut out = Vec::new();
    Operate::parse_from(&all)
        .expect("arguments")
        .run(&mut out)
        .await
        .expect("command");
    String::from_utf8(out).expect("UTF-8")
}

#[tokio::test]
async fn an_operator_follows_an_event_and_replays_its_dead_letter() {
    let (good, bad) = (
        verifying_inbox(SECRET, 200).await,
        verifying_inbox(SECRET, 500).await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&good, &bad), dir.path())
        .await
        .expect("gateway");
    let reply = HttpClient::new()
        .post_json(
            &gw.url(&format!("/v1/odoo/odoo/{TOKEN}")),
            &fixture("native/sale.order.confirmed.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    let id = serde_json::from_slice::<serde_json::Value>(&reply.body).expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    good.wait_for(1, Duration::from_secs(20))
        .await
        .expect("delivered");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !run(&gw, &["dead-letters", "list"]).await.contains("fails") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The receiver sees the request before the gateway stores the attempt's answer.
    let (works, fails) = (format!("{id}.works.0"), format!("{id}.fails.0"));
    let journey = eventually(
        Duration::from_secs(20),
        "both attempts in the journey",
        || async {
            let journey = run(&gw, &["events", "show", &id]).await;
            (row(&journey, &works, "200") && row(&journey, &fails, "500")).then_some(journey)
        },
    )
    .await;
    // The event's trace id, as the receiver saw it in `traceparent`.
    assert!(
        journey.lines().any(|l| l
            .strip_prefix("trace ")
            .is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))),
        "{journey}"
    );
    let as_json: serde_json::Value =
        serde_json::from_str(&run(&gw, &["events", "show", &id, "--json"]).await).expect("JSON");
    assert_eq!(as_json["event"]["id"], id.as_str());
    assert_eq!(as_json["dead_letters"][0]["id"], format!("{id}.fails.0"));

    let status = run(&gw, &["status"]).await;
    assert!(
        status.contains("dead letters") && status.contains('1'),
        "{status}"
    );

    let replayed = run(&gw, &["dead-letters", "replay", &format!("{id}.fails.0")]).await;
    assert!(replayed.contains("queued again"), "{replayed}");
    bad.wait_for(2, Duration::from_secs(20))
        .await
        .expect("tried again");
}

async fn post_order(gw: &TestGateway) -> String {
    let reply = HttpClient::new()
        .post_json(
            &gw.url(&format!("/v1/odoo/odoo/{TOKEN}")),
            &fixture("native/sale.order.confirmed.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    serde_json::from_slice::<serde_json::Value>(&reply.body).expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// The `subscriptions list --json` entry of `id`.
async fn subscription(gw: &TestGateway, id: &str) -> serde_json::Value {
    let listed: serde_json::Value =
        serde_json::from_str(&run(gw, &["subscriptions", "list", "--json"]).await).expect("JSON");
    listed["subscriptions"]
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} is not listed: {listed}"))
}

#[tokio::test]
async fn a_paused_subscription_delivers_nothing_stays_paused_across_a_restart_and_resumes_when_enabled()
 {
    let (good, bad) = (
        verifying_inbox(SECRET, 200).await,
        verifying_inbox(SECRET, 500).await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&good, &bad), dir.path())
        .await
        .expect("gateway");

    let paused = run(&gw, &["subscriptions", "pause", "works"]).await;
    assert!(paused.contains("Paused `works`"), "{paused}");
    let id = post_order(&gw).await;
    bad.wait_for(1, Duration::from_secs(20))
        .await
        .expect("the other subscription still delivers");
    // The paused subscription's job waits in the schedule; nothing reaches its receiver.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while subscription(&gw, "works").await["queued"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        good.received().is_empty(),
        "a paused subscription delivered"
    );
    let table = run(&gw, &["subscriptions", "list"]).await;
    let works = table.lines().find(|l| l.starts_with("works")).expect("row");
    assert!(works.contains("paused"), "{table}");

    // The failing subscription's attempts, newest first; the paused one has none yet.
    let failed = run(
        &gw,
        &["deliveries", "list", "--subscription", "fails", "--failed"],
    )
    .await;
    assert!(
        failed.contains(&format!("{id}.fails.0")) && failed.contains("500"),
        "{failed}"
    );
    let as_json: serde_json::Value = serde_json::from_str(
        &run(
            &gw,
            &["deliveries", "list", "--subscription", "fails", "--json"],
        )
        .await,
    )
    .expect("JSON");
    assert_eq!(as_json["attempts"][0]["status"], 500, "{as_json}");
    assert_eq!(as_json["attempts"][0]["job_state"], "dead", "{as_json}");
    let none: serde_json::Value = serde_json::from_str(
        &run(
            &gw,
            &["deliveries", "list", "--subscription", "works", "--json"],
        )
        .await,
    )
    .expect("JSON");
    assert_eq!(none["attempts"], serde_json::json!([]), "{none}");

    // A restart keeps the pause (it is stored with the subscription's health).
    gw.stop().await.expect("stopped");
    let gw = TestGateway::start(&config(&good, &bad), dir.path())
        .await
        .expect("gateway again");
    assert_eq!(subscription(&gw, "works").await["paused"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(good.received().is_empty(), "delivered after the restart");

    let enabled = run(&gw, &["subscriptions", "enable", "works"]).await;
    assert!(enabled.contains("Enabled `works`"), "{enabled}");
    good.wait_for(1, Duration::from_secs(20))
        .await
        .expect("delivered once enabled");
    assert_eq!(subscription(&gw, "works").await["paused"], false);
    let works = format!("{id}.works.0");
    eventually(Duration::from_secs(20), "the stored attempt", || async {
        let delivered = run(&gw, &["deliveries", "list", "--subscription", "works"]).await;
        row(&delivered, &works, "200").then_some(())
    })
    .await;
}

/// Whether a line of a CLI table shows `job` with `status` in the column after it.
fn row(table: &str, job: &str, status: &str) -> bool {
    table.lines().any(|line| {
        line.split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w == [job, status])
    })
}
