//! The operator commands (`status`, `events show`, `dead-letters list|replay`) against a
//! running gateway, as a person types them.

use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway::cli::operate::Operate;
use odoo_gateway_tests::{HttpClient, TestGateway, fixture};

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

    let journey = run(&gw, &["events", "show", &id]).await;
    assert!(journey.contains(&format!("{id}.works.0")), "{journey}");
    assert!(
        journey.contains("200") && journey.contains("500"),
        "{journey}"
    );
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
