//! The Odoo connector end to end, against the fake Odoo over real sockets: enrichment of a
//! native webhook with bare ids before `shipper-router` splits it ([`enrich`]), and the
//! polling source across restarts, outages, seconds of more than a page and late commits
//! ([`poll`]), the cursor commands and an app's enrichment ([`operate`]), and two instances
//! sharing a NATS server ([`cluster`]). Shared here: the
//! configuration around the fake Odoo, the inbox, and reading what it received.

mod cluster;
mod enrich;
mod operate;
mod poll;

use std::path::Path;
use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, Received};
use odoo_gateway_tests::fake_odoo::{self, FakeOdoo};
use odoo_gateway_tests::{HttpClient, TestGateway, fixture, plugin};
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "test-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

/// The configuration: one source on the fake Odoo (`odoo_extra` is added to its
/// `[sources.odoo]` table), the inbox's three paths, and `subscriptions`.
fn config(
    odoo: &FakeOdoo,
    inbox: &Inbox,
    api_key: &str,
    odoo_extra: &str,
    subscriptions: &str,
) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN}"
[storage]
path = "data"
[delivery.backoff]
schedule = ["50ms"]
jitter = 0.0
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[sources.actions]
"SO confirmed" = "confirmed"
[sources.odoo]
url = "{odoo_url}"
database = "{db}"
login = "{login}"
api_key = "{api_key}"
timeout = "500ms"
retries = 1
{odoo_extra}
[[destinations]]
name = "inbox"
url = "{url}"
secrets = ["{SECRET}"]
[[destinations]]
name = "fastfreight"
url = "{url_ff}"
secrets = ["{SECRET}"]
[[destinations]]
name = "parcelpost"
url = "{url_pp}"
secrets = ["{SECRET}"]
{subscriptions}
"#,
        odoo_url = odoo.url(),
        db = fake_odoo::DATABASE,
        login = fake_odoo::LOGIN,
        url = inbox.url("/inbox"),
        url_ff = inbox.url("/fastfreight"),
        url_pp = inbox.url("/parcelpost"),
    )
}

fn shipping() -> String {
    format!(
        r#"
[[subscriptions]]
id = "shipping"
events = ["sale.order.*"]
destinations = ["fastfreight", "parcelpost", "inbox"]
plugin = "{router}"
retries = 30
enrich = [
  {{ field = "order_line", model = "sale.order.line", fields = ["product_id", "product_uom_qty", "route_id", "display_type", "name"] }},
  {{ field = "partner_id", fields = ["name", "country_id", "zip"] }},
]
[subscriptions.config]
"route.Ship: FastFreight" = "fastfreight"
"route.Ship: ParcelPost" = "parcelpost"
"#,
        router = plugin("shipper_router").display(),
    )
}

async fn inbox() -> Inbox {
    odoo_gateway_tests::verifying_inbox(SECRET, 200).await
}

async fn post_confirmed_order(gateway: &TestGateway) {
    let url = gateway.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let reply = HttpClient::new()
        .post_json(&url, &fixture("native/sale.order.confirmed.json"))
        .await
        .expect("post");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}

fn body(r: &Received) -> Value {
    serde_json::from_slice(&r.body).expect("JSON delivery")
}

fn line_ids(r: &Received) -> Vec<i64> {
    body(r)["order_line"]
        .as_array()
        .expect("order_line records")
        .iter()
        .map(|l| l["id"].as_i64().expect("line id"))
        .collect()
}

/// The two shippers' deliveries, checked: each has its own line, with its product and
/// route, and the partner read from Odoo.
fn assert_split(received: &[Received]) {
    assert_eq!(received.len(), 2, "one delivery per shipper");
    let by_path = |p: &str| {
        received
            .iter()
            .find(|r| r.path == p)
            .unwrap_or_else(|| panic!("a delivery to {p}"))
    };
    let (ff, pp) = (by_path("/fastfreight"), by_path("/parcelpost"));
    assert!(ff.verified() && pp.verified());
    assert_eq!(line_ids(ff), vec![31]);
    assert_eq!(line_ids(pp), vec![32]);
    let line = &body(ff)["order_line"][0];
    assert_eq!(line["product_id"], json!([27, "[FURN_8888] Office Lamp"]));
    assert_eq!(line["route_id"], json!([5, "Ship: FastFreight"]));
    assert_eq!(
        body(pp)["partner_id"],
        json!({"id": 9, "name": "Deco Addict", "country_id": [233, "United States"], "zip": "94523"})
    );
    assert_eq!(body(pp)["name"], "S00012");
}

const POLL: &str = r#"
[sources.odoo.poll]
interval = "50ms"
page_size = 2
start = "beginning"
models = [{ model = "sale.order", fields = ["name", "state", "amount_total"] }]
"#;

const ORDERS: &str = r#"
[[subscriptions]]
id = "orders"
events = ["sale.order.*"]
destinations = ["inbox"]
"#;

/// (record id, action, write_date) of each polled change delivered, in the order Odoo made
/// them (deliveries run concurrently, so they may arrive in another order).
fn changes(received: &[Received]) -> Vec<(i64, String, String)> {
    let mut all: Vec<(i64, String, String)> = received
        .iter()
        .map(|r| {
            let b = body(r);
            (
                b["record_id"].as_i64().expect("record id"),
                b["action"].as_str().expect("action").to_owned(),
                b["payload"]["write_date"]
                    .as_str()
                    .expect("write_date")
                    .to_owned(),
            )
        })
        .collect();
    all.sort_by(|x, y| (&x.2, x.0).cmp(&(&y.2, y.0)));
    all
}

async fn start(config: &str, dir: &Path) -> TestGateway {
    TestGateway::start(config, dir).await.expect("starts")
}

/// Waits until the fake Odoo got `n` `sale.order.search_read` calls: polls happened, which no
/// sleep can promise.
async fn wait_polls(odoo: &FakeOdoo, n: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    while odoo.calls("sale.order.search_read") < n {
        assert!(std::time::Instant::now() < deadline, "no polls");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
