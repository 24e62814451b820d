//! The polling source: every change once, in order, across a restart, an emulated crash
//! before a cursor write, an Odoo outage and a late-committing transaction; reconcile mode
//! and the deletion check.

use std::collections::BTreeSet;
use std::time::Duration;

use odoo_gateway_tests::fake_odoo::{self, FakeOdoo};
use serde_json::json;

use super::*;

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
        use odoo_gateway::odoo::cursor;
        let at = cursor::cursor(&store, "odoo", "sale.order").expect("read");
        assert_eq!(
            at.map(|c| (c.id, c.write_date)),
            Some((b, fake_odoo::datetime(1)))
        );
        cursor::reset_cursor(&store, "odoo", "sale.order").expect("reset");
        assert_eq!(
            cursor::cursor(&store, "odoo", "sale.order").expect("read"),
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

#[tokio::test]
async fn a_slow_odoo_does_not_hold_back_the_polling_of_another() {
    let slow = FakeOdoo::start().await.expect("fake odoo");
    let fast = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let poll = POLL.replace("start = \"beginning\"", "start = \"now\"");
    let other = format!(
        r#"{ORDERS}
[[sources]]
name = "other"
tokens = ["other-token-0123456789"]
[sources.odoo]
url = "{url}"
database = "{db}"
login = "{login}"
api_key = "{key}"
{poll}"#,
        url = fast.url(),
        db = fake_odoo::DATABASE,
        login = fake_odoo::LOGIN,
        key = fake_odoo::API_KEY,
    );
    let config = config(&slow, &inbox, fake_odoo::API_KEY, &poll, &other);
    let gateway = start(&config, dir.path()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Every call to the slow one now times out (after 500 ms, twice).
    slow.set_delay(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let id = fast.create(
        "sale.order",
        json!({"name": "S00500", "state": "draft", "amount_total": 1.0}),
    );
    let received = inbox
        .wait_for(1, WAIT)
        .await
        .expect("the other source's change");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let b = body(&received[0]);
    assert_eq!(
        (b["source"].as_str(), b["record_id"].as_i64()),
        (Some("other"), Some(id))
    );
    slow.set_delay(Duration::ZERO);
    gateway.stop().await.expect("stops");
}
