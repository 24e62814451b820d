//! The Odoo connector end to end, against the fake Odoo over real sockets: a native webhook
//! with bare ids enriched before `shipper-router` splits it, Odoo down or slow and then
//! back, refused credentials, and a polling source across a gateway restart.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions, Received};
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
    Inbox::start_local(InboxOptions {
        secrets: vec![SECRET.parse().expect("secret")],
        ..InboxOptions::default()
    })
    .await
    .expect("inbox")
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

#[tokio::test]
async fn a_native_webhook_with_bare_ids_is_enriched_then_split_by_shipper() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, "", &shipping());
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("starts");
    post_confirmed_order(&gateway).await;
    let received = inbox.wait_for(2, WAIT).await.expect("two deliveries");
    assert_split(&received);
    // One `read` per related model, and the partner's model asked of Odoo once.
    assert_eq!(odoo.calls("sale.order.line.read"), 1);
    assert_eq!(odoo.calls("res.partner.read"), 1);
    assert_eq!(odoo.calls("sale.order.fields_get"), 1);
    assert_eq!(odoo.calls("common.authenticate"), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(inbox.received().len(), 2, "nothing more");
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn odoo_down_or_slow_delays_enrichment_and_loses_nothing() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, "", &shipping());
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("starts");
    odoo.set_down(true);
    // Ingest does not wait for Odoo: the event is accepted at once.
    let started = std::time::Instant::now();
    post_confirmed_order(&gateway).await;
    assert!(started.elapsed() < Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        inbox.received().is_empty(),
        "nothing delivered while Odoo is down"
    );
    // Up again, but slower than the configured timeout: still retried.
    odoo.set_delay(Duration::from_millis(800));
    odoo.set_down(false);
    let asked = odoo.requests();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        inbox.received().is_empty(),
        "nothing delivered while Odoo is too slow"
    );
    assert!(odoo.requests() > asked, "the slow Odoo is asked again");
    odoo.set_delay(Duration::ZERO);
    let received = inbox
        .wait_for(2, WAIT)
        .await
        .expect("delivered once Odoo is back");
    assert_split(&received);
    let letters = gateway.wait_dead_letters(ADMIN, Duration::ZERO).await;
    assert!(letters.is_empty(), "{letters:?}");
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn a_refused_api_key_is_dead_lettered_with_a_clear_reason() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&odoo, &inbox, "not-the-key-0123456789", "", &shipping());
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("starts");
    post_confirmed_order(&gateway).await;
    let letters = gateway.wait_dead_letters(ADMIN, WAIT).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = letters[0].to_string();
    assert!(letter.contains("odoo_access_denied"), "{letter}");
    assert!(letter.contains(fake_odoo::LOGIN), "{letter}");
    assert!(
        !letter.contains("not-the-key"),
        "the key is never shown: {letter}"
    );
    assert!(inbox.received().is_empty());
    gateway.stop().await.expect("stops");
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

#[tokio::test]
async fn a_polling_source_delivers_every_change_once_across_a_restart() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, POLL, ORDERS);
    // Three orders created in the same second: pages of two split them.
    let a = odoo.create(
        "sale.order",
        json!({"name": "S00100", "state": "draft", "amount_total": 10.0}),
    );
    let b = odoo.create(
        "sale.order",
        json!({"name": "S00101", "state": "draft", "amount_total": 20.0}),
    );
    let c = odoo.create(
        "sale.order",
        json!({"name": "S00102", "state": "draft", "amount_total": 30.0}),
    );
    let gateway = start(&config, dir.path()).await;
    let received = inbox
        .wait_for(4, WAIT)
        .await
        .expect("the first four changes");
    // The fixture's order (written after it was created), then the three creates.
    let t0 = fake_odoo::datetime(0);
    assert_eq!(
        changes(&received),
        vec![
            (12, "write".into(), "2024-05-14 09:12:40".into()),
            (a, "create".into(), t0.clone()),
            (b, "create".into(), t0.clone()),
            (c, "create".into(), t0.clone()),
        ]
    );
    odoo.tick(1);
    odoo.write("sale.order", b, json!({"state": "sale"}));
    let received = inbox.wait_for(5, WAIT).await.expect("the write");
    assert_eq!(
        changes(&received)[4],
        (b, "write".into(), fake_odoo::datetime(1))
    );
    gateway.stop().await.expect("stops");
    // A crash after the events were durable but before the cursor moved, as far as the
    // poller can tell: the cursor is gone, and everything is read again at the next start.
    {
        let store = odoo_gateway::store::Store::open(&dir.path().join("data")).expect("store");
        use odoo_gateway::odoo::poll;
        let at = poll::cursor(&store, "odoo", "sale.order").expect("read");
        assert_eq!(
            at.map(|c| (c.id, c.write_date)),
            Some((b, fake_odoo::datetime(1)))
        );
        poll::reset_cursor(&store, "odoo", "sale.order").expect("reset");
        assert_eq!(
            poll::cursor(&store, "odoo", "sale.order").expect("read"),
            None
        );
        store.flush().expect("flush");
    }

    // While the gateway is down: a write, then a create and two writes in one second. A
    // record created and changed between two polls is seen once, in its latest state.
    odoo.tick(1);
    odoo.write("sale.order", a, json!({"state": "sent"}));
    odoo.tick(1);
    let d = odoo.create(
        "sale.order",
        json!({"name": "S00103", "state": "draft", "amount_total": 5.0}),
    );
    odoo.write("sale.order", c, json!({"state": "cancel"}));
    let e = odoo.create(
        "sale.order",
        json!({"name": "S00104", "state": "draft", "amount_total": 6.0}),
    );
    let gateway = start(&config, dir.path()).await;
    let received = inbox
        .wait_for(9, WAIT)
        .await
        .expect("the changes made while stopped");
    let (t2, t3) = (fake_odoo::datetime(2), fake_odoo::datetime(3));
    assert_eq!(
        changes(&received)[5..].to_vec(),
        vec![
            (a, "write".into(), t2),
            (c, "write".into(), t3.clone()),
            (d, "create".into(), t3.clone()),
            (e, "create".into(), t3),
        ]
    );
    // Polls go on, but nothing is delivered twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = changes(&inbox.received());
    assert_eq!(all.len(), 9, "{all:?}");
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(unique.len(), 9, "no duplicates: {all:?}");
    assert!(odoo.calls("sale.order.search_read") > 4, "it kept polling");
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn reconcile_mode_skips_polled_changes_the_webhook_already_sent() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let poll = POLL.replace("start = \"beginning\"", "start = \"now\"\nreconcile = true");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, &poll, ORDERS);
    let gateway = start(&config, dir.path()).await;
    // Let the first poll place the cursor at "now".
    tokio::time::sleep(Duration::from_millis(300)).await;
    odoo.tick(5);
    // The webhook (with `write_date` selected in the server action) comes first, then the
    // poll sees the same change: the order the fake is about to create, as id 13.
    let id = 13;
    let webhook = json!({"_action": "SO confirmed(#57)", "_id": id, "_model": "sale.order",
        "id": id, "name": "S00200", "state": "sale", "write_date": fake_odoo::datetime(5)});
    let url = gateway.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let reply = HttpClient::new()
        .post_json(&url, webhook.to_string().as_bytes())
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    let created = odoo.create(
        "sale.order",
        json!({"name": "S00200", "state": "sale", "amount_total": 1.0}),
    );
    assert_eq!(created, id);
    let received = inbox.wait_for(1, WAIT).await.expect("the webhook's event");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = inbox.received();
    assert_eq!(all.len(), 1, "the polled change is the same event");
    assert_eq!(body(&received[0])["action"], "confirmed");
    // A later change that the webhook missed is polled.
    odoo.tick(1);
    odoo.write("sale.order", id, json!({"state": "cancel"}));
    let received = inbox.wait_for(2, WAIT).await.expect("the missed change");
    assert_eq!(body(&received[1])["action"], "write");
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn deletions_are_found_by_comparing_ids() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let poll = r#"
[sources.odoo.poll]
interval = "50ms"
start = "now"
deletions_every = "50ms"
models = [{ model = "sale.order", detect_deletions = true }]
"#;
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, poll, ORDERS);
    let gateway = start(&config, dir.path()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    odoo.unlink("sale.order", 12);
    let received = inbox.wait_for(1, WAIT).await.expect("the deletion");
    let b = body(&received[0]);
    assert_eq!(
        (b["action"].as_str(), b["record_id"].as_i64()),
        (Some("unlink"), Some(12))
    );
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn the_overlap_catches_a_change_dated_before_the_cursor() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let poll = POLL.replace(
        "start = \"beginning\"",
        "start = \"now\"\noverlap = \"10s\"",
    );
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, &poll, ORDERS);
    let gateway = start(&config, dir.path()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    odoo.set_clock(10);
    let x = odoo.create(
        "sale.order",
        json!({"name": "S00300", "state": "draft", "amount_total": 1.0}),
    );
    inbox.wait_for(1, WAIT).await.expect("the first change");
    // A transaction that began at 5 s commits after the cursor reached 10 s.
    odoo.set_clock(5);
    let y = odoo.create(
        "sale.order",
        json!({"name": "S00301", "state": "draft", "amount_total": 2.0}),
    );
    let received = inbox.wait_for(2, WAIT).await.expect("the late change");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = changes(&inbox.received());
    assert_eq!(
        all,
        vec![
            (y, "create".into(), fake_odoo::datetime(5)),
            (x, "create".into(), fake_odoo::datetime(10)),
        ],
        "each once, though both are read at every poll"
    );
    assert_eq!(received.len(), 2);
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn a_source_level_enrich_list_applies_to_a_subscription_without_plugin() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let enrich = r#"
[sources.odoo.enrich]
"sale.order" = [{ field = "order_line", model = "sale.order.line" }, { field = "partner_id", model = "res.partner" }]
"#;
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, enrich, ORDERS);
    let gateway = start(&config, dir.path()).await;
    post_confirmed_order(&gateway).await;
    let received = inbox
        .wait_for(1, WAIT)
        .await
        .expect("the pass-through delivery");
    let payload = &body(&received[0])["payload"];
    assert_eq!(
        payload["order_line"],
        json!([
            [31, "[FURN_8888] Office Lamp"],
            [32, "[E-COM11] Cabinet with Doors"]
        ])
    );
    assert_eq!(payload["partner_id"], json!([9, "Deco Addict"]));
    assert_eq!(payload["amount_total"], 1150.0, "the rest as Odoo sent it");
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn a_polling_source_waits_out_an_odoo_outage_and_loses_nothing() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, POLL, ORDERS);
    odoo.set_down(true);
    let gateway = start(&config, dir.path()).await;
    let a = odoo.create(
        "sale.order",
        json!({"name": "S00400", "state": "draft", "amount_total": 1.0}),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(odoo.requests() > 0, "it tried");
    assert!(inbox.received().is_empty());
    odoo.set_down(false);
    let received = inbox
        .wait_for(2, WAIT)
        .await
        .expect("polled once Odoo is back");
    let ids: Vec<i64> = changes(&received).iter().map(|c| c.0).collect();
    assert_eq!(ids, vec![12, a]);
    gateway.stop().await.expect("stops");
}
