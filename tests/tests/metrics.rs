//! `/metrics`: the Prometheus exposition, read back with a Prometheus text parser.

use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::{HttpClient, TestGateway, fixture};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "metrics-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn config(inbox: &Inbox) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN}"
[storage]
path = "data"
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[destinations]]
name = "inbox"
url = "{url}"
secrets = ["{SECRET}"]
[[subscriptions]]
id = "all"
events = ["*"]
destinations = ["inbox"]
"#,
        url = inbox.url("/inbox")
    )
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|l| l == *v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => {
                buckets.last().map_or(0.0, |b| b.count)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        })
}

#[tokio::test]
async fn metrics_count_what_happened_and_need_the_admin_token() {
    let inbox = Inbox::start_local(InboxOptions {
        secrets: vec![SECRET.parse().expect("secret")],
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&inbox), dir.path())
        .await
        .expect("gateway");
    let client = HttpClient::new();
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let body = fixture("native/sale.order.confirmed.json");
    assert_eq!(
        client.post_json(&url, &body).await.expect("post").status,
        202
    );
    assert_eq!(
        client.post_json(&url, &body).await.expect("post").status,
        202
    );
    let wrong = gw.url("/v1/odoo/nobody/some-token-0123456789");
    assert_eq!(
        client.post_json(&wrong, &body).await.expect("post").status,
        401
    );
    inbox
        .wait_for(1, Duration::from_secs(20))
        .await
        .expect("delivered");

    let refused = client.get(&gw.url("/metrics")).await.expect("get");
    assert_eq!(refused.status, 401, "no token, no metrics");

    let auth = format!("Bearer {ADMIN}");
    // The attempt is counted right after the receiver answered: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let scrape = loop {
        let reply = client
            .send(
                "GET",
                &gw.url("/metrics"),
                &[("authorization", &auth)],
                Vec::new(),
            )
            .await
            .expect("metrics");
        assert_eq!(reply.status, 200);
        let text = String::from_utf8(reply.body.to_vec()).expect("UTF-8");
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
        let delivered = value(
            &scrape,
            "odoo_gateway_delivery_attempts_total",
            &[("subscription", "all"), ("outcome", "delivered")],
        );
        if delivered == Some(1.0) {
            break scrape;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let requests = "odoo_gateway_ingest_requests_total";
    let accepted = [("source", "odoo"), ("outcome", "accepted")];
    assert_eq!(value(&scrape, requests, &accepted), Some(1.0));
    let duplicate = [("source", "odoo"), ("outcome", "duplicate")];
    assert_eq!(value(&scrape, requests, &duplicate), Some(1.0));
    // A source nobody configured is not a label of its own.
    let stranger = [("source", "unknown"), ("outcome", "unauthorized")];
    assert_eq!(value(&scrape, requests, &stranger), Some(1.0));
    assert!(
        !scrape
            .samples
            .iter()
            .any(|s| s.labels.get("source") == Some("nobody"))
    );
    assert!(value(&scrape, "odoo_gateway_store_disk_bytes", &[]).is_some_and(|v| v > 0.0));
    assert_eq!(
        value(&scrape, "odoo_gateway_queue_due_jobs", &[]),
        Some(0.0)
    );
}
