//! The polling source against a fake Odoo that keeps `write_date` to the microsecond and
//! shows it to the second: every change once, across a restart, an emulated crash before a
//! cursor write, an Odoo outage, seconds of more than a page, two changes of a record in one
//! second and late-committing transactions; reconcile mode and the deletion check.

use std::collections::BTreeSet;
use std::time::Duration;

use odoo_gateway_tests::fake_odoo::{self, FakeOdoo};
use serde_json::{Value, json};

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
    let t0 = odoo.datetime(0);
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
    assert_eq!(changes(&received)[4], (b, "write".into(), odoo.datetime(1)));
    gateway.stop().await.expect("stops");
    // A crash after the events were durable but before the cursor moved, as far as the
    // poller can tell: the cursor is gone, and everything is read again at the next start.
    {
        let store = odoo_gateway::store::Store::open(&dir.path().join("data")).expect("store");
        use odoo_gateway::connector::cursor;
        let at = cursor::cursor(&store, "odoo", "sale.order").expect("read");
        assert_eq!(
            at.map(|c| (c.id, c.write_date)),
            Some((b, odoo.datetime(1)))
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
    let (t2, t3) = (odoo.datetime(2), odoo.datetime(3));
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
        "id": id, "name": "S00200", "state": "sale", "amount_total": 1.0,
        "write_date": odoo.datetime(5)});
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
    // The scans run one after another: once a second has begun, the first one's ids are kept.
    let deadline = std::time::Instant::now() + WAIT;
    while odoo.calls("sale.order.search") < 2 {
        assert!(std::time::Instant::now() < deadline, "no deletion scans");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let polls = odoo.calls("sale.order.search_read");
    wait_polls(&odoo, polls + 2).await;
    // A transaction begins at 5 s (its record takes its id now) and commits after a later
    // change was polled and the cursor reached 10 s.
    odoo.set_clock(5);
    let mut late = odoo.begin();
    let y = late.create(
        "sale.order",
        json!({"name": "S00301", "state": "draft", "amount_total": 2.0}),
    );
    odoo.set_clock(10);
    let x = odoo.create(
        "sale.order",
        json!({"name": "S00300", "state": "draft", "amount_total": 1.0}),
    );
    inbox.wait_for(1, WAIT).await.expect("the first change");
    late.commit();
    let received = inbox.wait_for(2, WAIT).await.expect("the late change");
    wait_polls(&odoo, odoo.calls("sale.order.search_read") + 3).await;
    let all = changes(&inbox.received());
    assert_eq!(
        all,
        vec![
            (y, "create".into(), odoo.datetime(5)),
            (x, "create".into(), odoo.datetime(10)),
        ],
        "each once, though both are read at every poll"
    );
    assert_eq!(received.len(), 2);
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn a_second_of_three_pages_is_delivered_once_across_a_restart() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let poll = POLL.replace("page_size = 2", "page_size = 7");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, &poll, ORDERS);
    // 26 orders in one second: an import (one transaction, so one timestamp) begins, 6
    // orders of their own are created meanwhile, then the import's 20, with higher ids but
    // an earlier timestamp: ids and instants are in different orders.
    let mut import = odoo.begin();
    let mut ids: Vec<i64> = (20..26)
        .map(|n| odoo.create("sale.order", order(n)))
        .collect();
    ids.extend((0..20).map(|n| import.create("sale.order", order(n))));
    import.commit();
    ids.sort_unstable();
    let gateway = start(&config, dir.path()).await;
    let received = inbox.wait_for(27, WAIT).await.expect("every change");
    let t0 = odoo.datetime(0);
    let mut expected: Vec<(i64, String, String)> = ids
        .iter()
        .map(|id| (*id, "create".into(), t0.clone()))
        .collect();
    expected.insert(0, (12, "write".into(), "2024-05-14 09:12:40".into()));
    assert_eq!(changes(&received), expected, "each of the 26 once");
    gateway.stop().await.expect("stops");

    // Across a restart: the second is read again, and nothing of it delivered again; a later
    // write is delivered once.
    let gateway = start(&config, dir.path()).await;
    wait_polls(&odoo, odoo.calls("sale.order.search_read") + 3).await;
    odoo.tick(1);
    odoo.write("sale.order", ids[3], json!({"state": "sale"}));
    let received = inbox.wait_for(28, WAIT).await.expect("the later write");
    wait_polls(&odoo, odoo.calls("sale.order.search_read") + 3).await;
    let all = changes(&inbox.received());
    assert_eq!(all.len(), 28, "{all:?}");
    assert_eq!(
        changes(&received)[27],
        (ids[3], "write".into(), odoo.datetime(1))
    );
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn two_changes_of_a_record_within_one_second_are_two_events() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let poll = POLL.replace("start = \"beginning\"", "start = \"now\"");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, &poll, ORDERS);
    let gateway = start(&config, dir.path()).await;
    wait_polls(&odoo, odoo.calls("sale.order.search_read") + 2).await;
    odoo.tick(5);
    let id = odoo.create("sale.order", order(1));
    inbox.wait_for(1, WAIT).await.expect("the create");
    // Within the same second, after the poll read it: the same `write_date` as shown, but
    // another state, and an id the poll already passed.
    odoo.write("sale.order", id, json!({"state": "sale"}));
    let received = inbox.wait_for(2, WAIT).await.expect("the second change");
    wait_polls(&odoo, odoo.calls("sale.order.search_read") + 3).await;
    assert_eq!(inbox.received().len(), 2, "and nothing more");
    let states: Vec<Value> = received
        .iter()
        .map(|r| body(r)["payload"]["state"].clone())
        .collect();
    assert!(
        states.contains(&json!("draft")) && states.contains(&json!("sale")),
        "{states:?}"
    );
    let t5 = odoo.datetime(5);
    assert!(
        received
            .iter()
            .all(|r| body(r)["payload"]["write_date"] == json!(t5)),
        "both shown at the same second"
    );
    gateway.stop().await.expect("stops");
}

#[tokio::test]
async fn a_settled_second_is_not_read_again() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let poll = POLL.replace("start = \"beginning\"", "start = \"now\"");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, &poll, ORDERS);
    let gateway = start(&config, dir.path()).await;
    wait_polls(&odoo, odoo.calls("sale.order.search_read") + 2).await;
    // Written ten minutes ago, by the gateway's clock: long settled when it is read.
    odoo.backdate(600);
    odoo.create("sale.order", order(1));
    inbox.wait_for(1, WAIT).await.expect("the change");
    let at = odoo_gateway::odoo::time::to_seconds(&odoo.datetime(0)).expect("a datetime");
    let after = json!([[
        "write_date",
        ">=",
        odoo_gateway::odoo::time::from_seconds(at + 1)
    ]]);
    // The poll that read it is over, and the next ones start after its second, which is no
    // longer read again.
    wait_polls(&odoo, odoo.calls("sale.order.search_read") + 3).await;
    assert_eq!(odoo.last_domain("sale.order"), Some(after));
    assert_eq!(inbox.received().len(), 1);
    gateway.stop().await.expect("stops");
}

/// The fields of a test order `n`.
fn order(n: usize) -> Value {
    json!({"name": format!("S{:05}", 1000 + n), "state": "draft", "amount_total": n as f64})
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
