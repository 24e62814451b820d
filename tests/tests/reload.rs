//! Hot reload over real sockets: under load nothing is lost and the new rules apply from the
//! swap on; a broken configuration or plugin keeps the old one serving; replacing a plugin's
//! file changes behaviour within moments.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway::reload::ConfigSource;
use odoo_gateway_tests::nats::{Engine, NatsServer};
use odoo_gateway_tests::{HttpClient, TestGateway, fixture, plugin};

const TOKEN: &str = "reload-token-0123456789";
const WAIT: Duration = Duration::from_secs(30);

fn config(inbox: &Inbox, subscriptions: &str) -> String {
    config_on(&Engine::Sled, inbox, subscriptions)
}

/// [`config`] with its state on `engine`.
fn config_on(engine: &Engine<'_>, inbox: &Inbox, subscriptions: &str) -> String {
    format!(
        r#"
[server]
admin_token = "admin-token-0123456789"
{storage}
[delivery.backoff]
schedule = ["50ms"]
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[destinations]]
name = "a"
url = "{a}"
[[destinations]]
name = "b"
url = "{b}"
{subscriptions}
"#,
        a = inbox.url("/a"),
        b = inbox.url("/b"),
        storage = engine.storage_toml("data"),
    )
}

const ONLY_A: &str = r#"
[[subscriptions]]
id = "a"
events = ["sale.order.*"]
destinations = ["a"]
"#;

const A_AND_B: &str = r#"
[[subscriptions]]
id = "a"
events = ["sale.order.*"]
destinations = ["a"]

[[subscriptions]]
id = "b"
events = ["sale.order.*"]
destinations = ["b"]
"#;

/// Replaces a file the way editors and deploy tools do: write beside it, then rename.
fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

async fn admin(
    client: &HttpClient,
    gw: &TestGateway,
    method: &str,
    path: &str,
) -> odoo_gateway_tests::Reply {
    client
        .send(
            method,
            &gw.url(path),
            &[("authorization", "Bearer admin-token-0123456789")],
            Vec::new(),
        )
        .await
        .expect("admin")
}

fn ids_by_path(inbox: &Inbox) -> HashMap<String, HashSet<String>> {
    let mut out: HashMap<String, HashSet<String>> = HashMap::new();
    for r in inbox.received() {
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        out.entry(r.path.clone())
            .or_default()
            .insert(body["id"].as_str().expect("id").to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_nothing_and_apply_from_the_swap() {
    let inbox = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config(&inbox, ONLY_A)).expect("write");
    let gw = TestGateway::start_with(ConfigSource::File(file.clone()))
        .await
        .expect("start");
    let client = HttpClient::new();

    // Producers: (event id, whether the request started after subscription `b` was swapped in).
    let acked: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let b_live = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let mut producers = Vec::new();
    for worker in 0..8 {
        let (acked, b_live, url) = (acked.clone(), b_live.clone(), url.clone());
        producers.push(tokio::spawn(async move {
            let client = HttpClient::new();
            for n in 0..250 {
                let after_swap = b_live.load(std::sync::atomic::Ordering::SeqCst);
                let body = format!(
                    r#"{{"_action": "x", "_id": {n}, "_model": "sale.order", "worker": {worker}}}"#
                );
                let reply = client.post_json(&url, body.as_bytes()).await.expect("post");
                assert_eq!(reply.status, 202);
                acked.lock().expect("lock").push((
                    reply.json()["id"].as_str().expect("id").to_owned(),
                    after_swap,
                ));
            }
        }));
    }

    // Reload 1: an identical configuration (a no-op swap while events flow).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        admin(&client, &gw, "POST", "/admin/reload").await.status,
        200
    );
    // Reload 2: broken TOML; refused, the running configuration keeps serving.
    std::fs::write(&file, "[[subscriptions]\nid = ").expect("write");
    let broken = admin(&client, &gw, "POST", "/admin/reload").await;
    assert_eq!(broken.status, 422);
    let message = broken.json()["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(message.contains("gateway.toml:1:"), "{message}");
    // Reload 3: subscription `b` joins.
    std::fs::write(&file, config(&inbox, A_AND_B)).expect("write");
    assert_eq!(
        admin(&client, &gw, "POST", "/admin/reload").await.status,
        200
    );
    b_live.store(true, std::sync::atomic::Ordering::SeqCst);

    for p in producers {
        p.await.expect("producer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), 2000);
    let deadline = Instant::now() + WAIT;
    loop {
        let got = ids_by_path(&inbox);
        let a = got.get("/a").cloned().unwrap_or_default();
        let b = got.get("/b").cloned().unwrap_or_default();
        let missing_a = acked.iter().filter(|(id, _)| !a.contains(id)).count();
        let missing_b = acked
            .iter()
            .filter(|(id, after)| *after && !b.contains(id))
            .count();
        if missing_a == 0 && missing_b == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing_a} events missing at a, {missing_b} new-rule events missing at b"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = admin(&client, &gw, "GET", "/admin/reload").await.json();
    // The file watcher may reload on the same writes as the admin endpoint: at least as many.
    assert!(
        status["reloads_ok"].as_u64() >= Some(2) && status["reloads_failed"].as_u64() >= Some(1),
        "{status}"
    );
    assert!(
        status["last_error"].is_null(),
        "a success clears the error: {status}"
    );
    assert_eq!(status["restart_needed"], serde_json::json!([]), "{status}");
    // Reload 4: `[plugins]` is read at start-up only: the reload says so, until the file
    // agrees with what runs again.
    let with_plugins = format!(
        "{}\n[plugins]\nper_subscription = 1\n",
        config(&inbox, A_AND_B)
    );
    std::fs::write(&file, with_plugins).expect("write");
    assert_eq!(
        admin(&client, &gw, "POST", "/admin/reload").await.status,
        200
    );
    let status = admin(&client, &gw, "GET", "/admin/reload").await.json();
    assert_eq!(
        status["restart_needed"],
        serde_json::json!(["[plugins]"]),
        "{status}"
    );
    std::fs::write(&file, config(&inbox, A_AND_B)).expect("write");
    assert_eq!(
        admin(&client, &gw, "POST", "/admin/reload").await.status,
        200
    );
    let status = admin(&client, &gw, "GET", "/admin/reload").await.json();
    assert_eq!(status["restart_needed"], serde_json::json!([]), "{status}");
    gw.stop().await.expect("stop");
}

#[tokio::test]
async fn a_replaced_plugin_file_changes_behaviour_and_a_broken_one_is_refused() {
    let inbox = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("plugin.wasm");
    std::fs::copy(plugin("order_filter"), &wasm).expect("copy");
    // order-filter drops the 1,150 order (minimum 2,000); the hostile plugin in `ok` mode echoes it.
    let subs = format!(
        r#"
[[subscriptions]]
id = "p"
events = ["sale.order.*"]
destinations = ["a"]
plugin = "{}"
[subscriptions.config]
min_amount_total = "2000"
mode = "ok"
"#,
        wasm.display()
    );
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config(&inbox, &subs)).expect("write");
    let gw = TestGateway::start_with(ConfigSource::File(file))
        .await
        .expect("start");
    let client = HttpClient::new();
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let order = fixture("native/sale.order.confirmed.json");

    assert_eq!(
        client.post_json(&url, &order).await.expect("post").status,
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(inbox.received().is_empty(), "filtered out by order-filter");

    // A broken plugin file: the reload fails, the old plugin keeps serving.
    replace(&wasm, b"not a component");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let status = admin(&client, &gw, "GET", "/admin/reload").await.json();
        if status["reloads_failed"].as_u64() == Some(1) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the broken plugin was not noticed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("subscriptions[0].plugin")),
        "{status}"
    );
    let second = order
        .clone()
        .into_iter()
        .chain(b" ".iter().copied())
        .collect::<Vec<u8>>();
    assert_eq!(
        client.post_json(&url, &second).await.expect("post").status,
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(inbox.received().is_empty(), "still order-filter");

    // A working replacement is taken (the watcher looks every 200 ms; compiling the new plugin
    // takes what it takes on a busy machine: the bound is generous, not a timing).
    let written = Instant::now();
    replace(
        &wasm,
        &std::fs::read(plugin("hostile_plugin")).expect("read"),
    );
    loop {
        let status = admin(&client, &gw, "GET", "/admin/reload").await.json();
        if status["reloads_ok"].as_u64() == Some(1) {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(30),
            "not reloaded: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let third = [order.as_slice(), b"  "].concat();
    assert_eq!(
        client.post_json(&url, &third).await.expect("post").status,
        202
    );
    let got = inbox
        .wait_for(1, WAIT)
        .await
        .expect("delivered by the new plugin");
    assert_eq!(got[0].path, "/a");
}

/// Subscription `b` and its destination are removed while `b`'s delivery waits for a retry.
#[tokio::test]
async fn queued_deliveries_of_a_removed_subscription_are_dead_lettered_with_the_reason() {
    queued_deliveries_of_a_removed_subscription_on(&Engine::Sled).await;
}

#[tokio::test]
async fn queued_deliveries_of_a_removed_subscription_are_dead_lettered_with_the_reason_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    queued_deliveries_of_a_removed_subscription_on(&server.engine("t")).await;
}

async fn queued_deliveries_of_a_removed_subscription_on(engine: &Engine<'_>) {
    let inbox = Inbox::start_local(InboxOptions {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        ..Default::default()
    })
    .await
    .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config_on(engine, &inbox, A_AND_B)).expect("write");
    let gw = TestGateway::start_with(ConfigSource::File(file.clone()))
        .await
        .expect("start");
    let client = HttpClient::new();
    let reply = client
        .post_json(
            &gw.url(&format!("/v1/odoo/odoo/{TOKEN}")),
            &fixture("native/sale.order.confirmed.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    inbox
        .wait_for(2, WAIT)
        .await
        .expect("first attempts failed");
    // Its destination goes too: no lane pulls those jobs any more.
    let only_a = config_on(engine, &inbox, ONLY_A).replace(
        &format!(
            "[[destinations]]\nname = \"b\"\nurl = \"{}\"\n",
            inbox.url("/b")
        ),
        "",
    );
    assert!(!only_a.contains("name = \"b\""), "{only_a}");
    std::fs::write(&file, only_a).expect("write");
    assert_eq!(
        admin(&client, &gw, "POST", "/admin/reload").await.status,
        200
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let dead = admin(&client, &gw, "GET", "/admin/dead-letters")
            .await
            .json();
        let reasons: Vec<String> = dead["dead_letters"]
            .as_array()
            .expect("list")
            .iter()
            .map(|d| d["reason"].as_str().unwrap_or("").to_owned())
            .collect();
        if reasons
            .iter()
            .any(|r| r.starts_with("subscription_removed"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter for the removed subscription: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On NATS: a delivery waiting for its retry when its subscription and destination leave the
/// configuration finds no lane when it comes due; the sweep dead-letters it once no instance
/// has pulled from that lane for its grace period.
#[tokio::test]
async fn a_delivery_whose_lane_is_gone_is_dead_lettered_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    let engine = server.engine("t");
    let inbox = Inbox::start_local(InboxOptions {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        ..Default::default()
    })
    .await
    .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    // Long enough for the lane to be stopped before the retry is due.
    let slow = |text: String| text.replace(r#"schedule = ["50ms"]"#, r#"schedule = ["3s"]"#);
    std::fs::write(&file, slow(config_on(&engine, &inbox, A_AND_B))).expect("write");
    let gw = TestGateway::start_with(ConfigSource::File(file.clone()))
        .await
        .expect("start");
    let client = HttpClient::new();
    let reply = client
        .post_json(
            &gw.url(&format!("/v1/odoo/odoo/{TOKEN}")),
            &fixture("native/sale.order.confirmed.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    inbox
        .wait_for(2, WAIT)
        .await
        .expect("first attempts failed");
    let only_a = config_on(&engine, &inbox, ONLY_A).replace(
        &format!(
            "[[destinations]]\nname = \"b\"\nurl = \"{}\"\n",
            inbox.url("/b")
        ),
        "",
    );
    std::fs::write(&file, slow(only_a)).expect("write");
    assert_eq!(
        admin(&client, &gw, "POST", "/admin/reload").await.status,
        200
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let dead = admin(&client, &gw, "GET", "/admin/dead-letters")
            .await
            .json();
        let found = dead["dead_letters"]
            .as_array()
            .expect("list")
            .iter()
            .any(|d| {
                d["subscription"] == "b"
                    && d["reason"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("subscription_removed"))
            });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter for the delivery whose lane is gone: {dead}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // `a`'s delivery stays on its lane: retried, given up only after its retries.
    let dead = admin(&client, &gw, "GET", "/admin/dead-letters")
        .await
        .json();
    assert!(
        dead["dead_letters"]
            .as_array()
            .expect("list")
            .iter()
            .filter(|d| d["subscription"] == "a")
            .all(|d| d["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("gave up"))),
        "{dead}"
    );
}

/// Deliveries waiting out their backoff hold none of their destination's slots: with two
/// slots and two deliveries waiting 30 s for their retry, a third is delivered at once.
#[tokio::test]
async fn retries_waiting_out_their_backoff_leave_the_destination_free() {
    retries_leave_the_destination_free_on(&Engine::Sled).await;
}

#[tokio::test]
async fn retries_waiting_out_their_backoff_leave_the_destination_free_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    retries_leave_the_destination_free_on(&server.engine("t")).await;
}

async fn retries_leave_the_destination_free_on(engine: &Engine<'_>) {
    let inbox = Inbox::start_local(InboxOptions {
        fail_first: 2,
        ..Default::default()
    })
    .await
    .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_on(engine, &inbox, ONLY_A)
        .replace(r#"schedule = ["50ms"]"#, r#"schedule = ["30s"]"#)
        .replace(
            "[delivery.backoff]",
            "[delivery]\nper_destination_concurrency = 2\n[delivery.backoff]",
        );
    let gw = TestGateway::start(&text, dir.path()).await.expect("start");
    let client = HttpClient::new();
    let post = |n: u32| {
        let mut order: serde_json::Value =
            serde_json::from_slice(&fixture("native/sale.order.confirmed.json")).expect("json");
        order["x_test_id"] = serde_json::json!(n);
        let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
        let client = client.clone();
        async move {
            let reply = client
                .post_json(&url, order.to_string().as_bytes())
                .await
                .expect("post");
            assert_eq!(reply.status, 202, "{:?}", reply.body);
        }
    };
    post(1).await;
    post(2).await;
    inbox
        .wait_for(2, WAIT)
        .await
        .expect("the first two attempts failed");
    post(3).await;
    let delivered = inbox
        .wait_for(3, Duration::from_secs(10))
        .await
        .expect("the third delivery is not held behind the two waiting retries");
    assert!(
        delivered[2].answered.is_some_and(|s| s.is_success()),
        "{:?} on {}",
        delivered[2].answered,
        engine.name()
    );
    gw.stop().await.expect("stop");
}
