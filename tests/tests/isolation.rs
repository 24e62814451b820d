//! Scheduling and isolation over real sockets: a hostile plugin or a dead receiver costs its
//! own subscription and app, nobody else; paused and disabled subscriptions; duplicates. Every
//! scenario on both engines of the work plane.

use std::time::Duration;

use http::StatusCode;
use odoo_gateway::cli::inbox::Inbox;
use odoo_gateway_tests::harness::{Config, Engine, eventually};
use odoo_gateway_tests::{HttpClient, TestGateway, fixture, on_both_engines, plugin};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "test-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

/// A gateway on `engine` with one source, `destinations` (name, URL), the `[delivery]` lines
/// and backoff given, and `subscriptions` (TOML).
fn config(
    engine: &Engine<'_>,
    delivery: &[&str],
    backoff: &[&str],
    destinations: &[(&str, String)],
    subscriptions: &str,
) -> String {
    let mut config = Config::on(engine)
        .server(&format!("admin_token = \"{ADMIN}\""))
        .plugins("[plugins.limits]\ncpu_time_ms = 50")
        .source("odoo", TOKEN, "");
    for line in delivery {
        config = config.delivery(line);
    }
    if !backoff.is_empty() {
        config = config.backoff(backoff);
    }
    for (name, url) in destinations {
        config = config.destination(name, url, SECRET, "");
    }
    config
        .raw("[delivery.client.app_ssrf]\nallow = [\"127.0.0.0/8\"]")
        .raw(subscriptions)
        .toml()
}

async fn inbox() -> Inbox {
    odoo_gateway_tests::verifying_inbox(SECRET, 200).await
}

fn order(n: usize) -> Vec<u8> {
    format!(r#"{{"_action": "SO confirmed(#57)", "_id": {n}, "_model": "sale.order", "amount_total": 1150.0, "id": {n}, "name": "S{n:05}", "state": "sale"}}"#).into_bytes()
}

async fn post(client: &HttpClient, gw: &TestGateway, body: &[u8]) {
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let reply = client.post_json(&url, body).await.expect("post");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}

async fn admin(gw: &TestGateway, method: &str, path: &str) -> serde_json::Value {
    gw.admin(ADMIN, method, path, None).await
}

fn count(inbox: &Inbox, path: &str) -> usize {
    inbox.received().iter().filter(|r| r.path == path).count()
}

async fn wait_count(inbox: &Inbox, path: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while count(inbox, path) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path}: {} of {n} deliveries",
            count(inbox, path)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

on_both_engines!(
    a_looping_plugin_does_not_hold_back_a_plain_subscription_on_sled,
    a_looping_plugin_does_not_hold_back_a_plain_subscription_on_nats,
    a_looping_plugin_does_not_hold_back_a_plain_subscription
);

async fn a_looping_plugin_does_not_hold_back_a_plain_subscription(engine: &Engine<'_>) {
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let subs = format!(
        r#"
[[subscriptions]]
id = "hostile"
events = ["sale.order.*"]
destinations = ["other"]
plugin = "{}"
retries = 5
[subscriptions.config]
mode = "loop"
[[subscriptions]]
id = "plain"
events = ["sale.order.*"]
destinations = ["plain"]
"#,
        plugin("hostile_plugin").display()
    );
    let cfg = config(
        engine,
        &[],
        &["2s"],
        &[
            ("plain", inbox.url("/plain").to_string()),
            ("other", inbox.url("/other").to_string()),
        ],
        &subs,
    );
    let gw = TestGateway::start(&cfg, dir.path()).await.expect("gateway");
    let client = HttpClient::new();
    // The hostile subscription matches first in file order: its plugin calls must not stand
    // in front of the plain subscription's deliveries.
    for n in 0..20 {
        post(&client, &gw, &order(n)).await;
    }
    wait_count(&inbox, "/plain", 20).await;
    // The hostile plugin's calls are still being retried (on NATS the depth is the sweep's
    // look of every second).
    eventually(WAIT, "the hostile plugin's calls queued", || async {
        let status = admin(&gw, "GET", "/admin/status").await;
        (status["schedule"]["known"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    let dead = admin(&gw, "GET", "/admin/dead-letters").await;
    assert!(
        dead["dead_letters"].as_array().expect("list").len() < 20,
        "not all given up yet: {dead}"
    );
    assert_eq!(count(&inbox, "/other"), 0);
    gw.stop().await.expect("stop");
}

on_both_engines!(
    one_subscriptions_plugin_calls_run_as_many_at_once_as_its_share_on_sled,
    one_subscriptions_plugin_calls_run_as_many_at_once_as_its_share_on_nats,
    one_subscriptions_plugin_calls_run_as_many_at_once_as_its_share
);

/// The most of `intervals` (start, end) that overlap at one instant.
fn most_at_once(intervals: &[(u64, u64)]) -> usize {
    // An end at the instant another starts is not an overlap: ends sort first.
    let mut edges: Vec<(u64, i32)> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

/// The calls of one subscription that overlap another of its calls.
fn overlapping(intervals: &[(u64, u64)]) -> usize {
    intervals
        .iter()
        .enumerate()
        .filter(|&(i, &(start, end))| {
            intervals
                .iter()
                .enumerate()
                .any(|(j, &(s, e))| i != j && s < end && start < e)
        })
        .count()
}

/// `[plugins] per_subscription` above the default half: three plugin threads, two of them for
/// the one subscription. A burst of its calls (each a plugin that loops until its CPU
/// allowance is spent), all due at once, runs two at a time throughout, never three, as the
/// stored start and length of each call show: not one runner working through most of them
/// while the other slot waits.
async fn one_subscriptions_plugin_calls_run_as_many_at_once_as_its_share(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config::on(engine)
        .server(&format!("admin_token = \"{ADMIN}\""))
        .plugins("concurrency = 3")
        .plugins("per_subscription = 2")
        .plugins("[plugins.limits]\ncpu_time_ms = 150")
        .source("odoo", TOKEN, "")
        .destination("nowhere", "http://127.0.0.1:9/", SECRET, "")
        .subscription(
            "hostile",
            &["sale.order.*"],
            &["nowhere"],
            &format!(
                "plugin = \"{}\"\nretries = 0\n[subscriptions.config]\nmode = \"loop\"",
                plugin("hostile_plugin").display()
            ),
        )
        .toml();
    let gw = TestGateway::start(&cfg, dir.path()).await.expect("gateway");
    let client = HttpClient::new();
    const EVENTS: usize = 8;
    // Paused while the events come in, so that all its calls are due at once when enabled.
    admin(&gw, "POST", "/admin/subscriptions/hostile/pause").await;
    for n in 0..EVENTS {
        post(&client, &gw, &order(n)).await;
    }
    eventually(WAIT, "every call waiting", || async {
        let subs = admin(&gw, "GET", "/admin/subscriptions").await;
        (subs["subscriptions"][0]["queued"].as_u64() == Some(EVENTS as u64)).then_some(())
    })
    .await;
    admin(&gw, "POST", "/admin/subscriptions/hostile/enable").await;
    // Each call is stored once it has ended: read until all are.
    let calls = eventually(WAIT, "every plugin call stored", || async {
        let log = admin(
            &gw,
            "GET",
            "/admin/deliveries?subscription=hostile&limit=100",
        )
        .await;
        let calls: Vec<(u64, u64)> = log["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .filter_map(|a| {
                let start = a["at_ms"].as_u64()?;
                Some((start, start + a["latency_ms"].as_u64()?))
            })
            .collect();
        (calls.len() >= EVENTS).then_some(calls)
    })
    .await;
    assert_eq!(
        calls.len(),
        EVENTS,
        "one call per event, no retry: {calls:?}"
    );
    assert_eq!(most_at_once(&calls), 2, "calls (start, end ms): {calls:?}");
    // Two runners of four calls each (or four and three, then the last): every call overlaps
    // one of the other runner's. One runner taking seven would leave two that do.
    assert!(
        overlapping(&calls) >= EVENTS - 2,
        "calls (start, end ms): {calls:?}"
    );
    gw.stop().await.expect("stop");
}

on_both_engines!(
    one_apps_dead_receiver_does_not_starve_other_apps_on_sled,
    one_apps_dead_receiver_does_not_starve_other_apps_on_nats,
    one_apps_dead_receiver_does_not_starve_other_apps
);

async fn one_apps_dead_receiver_does_not_starve_other_apps(engine: &Engine<'_>) {
    let inbox = inbox().await;
    // Accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hole_url = format!("http://{}", hole.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hole.accept().await {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut destinations = vec![("good", inbox.url("/good").to_string())];
    let names: Vec<String> = (0..10).map(|i| format!("hole{i}")).collect();
    let mut subs = String::new();
    for name in &names {
        destinations.push((name.as_str(), format!("{hole_url}/{name}")));
        subs.push_str(&format!(
            "[[subscriptions]]\nid = \"app.evil.{name}\"\nevents = [\"sale.order.*\"]\ndestinations = [\"{name}\"]\ntimeout = \"60s\"\n"
        ));
    }
    subs.push_str(
        "[[subscriptions]]\nid = \"app.good.orders\"\nevents = [\"sale.order.*\"]\ndestinations = [\"good\"]\n",
    );
    // Ten destinations of one app on one host: before slots were keyed by host and app, they
    // held 10 × 4 = 40 > 16 global slots and nothing else was delivered.
    let cfg = config(
        engine,
        &[
            "concurrency = 16",
            "per_destination_concurrency = 4",
            "per_app_concurrency = 8",
        ],
        &[],
        &destinations,
        &subs,
    );
    let gw = TestGateway::start(&cfg, dir.path()).await.expect("gateway");
    let client = HttpClient::new();
    for n in 0..100 {
        post(&client, &gw, &order(n)).await;
    }
    wait_count(&inbox, "/good", 100).await;
    drop(gw);
}

on_both_engines!(
    a_disabled_subscription_gets_no_work_on_sled,
    a_disabled_subscription_gets_no_work_on_nats,
    a_disabled_subscription_gets_no_work
);

async fn a_disabled_subscription_gets_no_work(engine: &Engine<'_>) {
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let subs = r#"
[[subscriptions]]
id = "off"
events = ["sale.order.*"]
destinations = ["inbox"]
enabled = false
[[subscriptions]]
id = "on"
events = ["sale.order.*"]
destinations = ["on"]
"#;
    let cfg = config(
        engine,
        &[],
        &[],
        &[
            ("inbox", inbox.url("/off").to_string()),
            ("on", inbox.url("/on").to_string()),
        ],
        subs,
    );
    let gw = TestGateway::start(&cfg, dir.path()).await.expect("gateway");
    let client = HttpClient::new();
    post(&client, &gw, &order(1)).await;
    wait_count(&inbox, "/on", 1).await;
    // Past a look of NATS's sweep (every second), which counts the queue.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let status = admin(&gw, "GET", "/admin/status").await;
    assert_eq!(
        status["schedule"]["known"], 0,
        "no job was made for `off`: {status}"
    );
    assert_eq!(count(&inbox, "/off"), 0);
    gw.stop().await.expect("stop");
}

on_both_engines!(
    a_paused_subscription_stays_paused_across_a_restart_until_enabled_on_sled,
    a_paused_subscription_stays_paused_across_a_restart_until_enabled_on_nats,
    a_paused_subscription_stays_paused_across_a_restart_until_enabled
);

async fn a_paused_subscription_stays_paused_across_a_restart_until_enabled(engine: &Engine<'_>) {
    let inbox = inbox().await;
    inbox.set_status(StatusCode::SERVICE_UNAVAILABLE);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        engine,
        &[
            "retries = 50",
            "flag_after_failures = 2",
            "disable_flagged = true",
        ],
        &["20ms"],
        &[("inbox", inbox.url("/inbox").to_string())],
        "[[subscriptions]]\nid = \"all\"\nevents = [\"*\"]\ndestinations = [\"inbox\"]\n",
    );
    let client = HttpClient::new();
    let gw = TestGateway::start(&cfg, dir.path()).await.expect("gateway");
    post(&client, &gw, &fixture("native/res.partner.minimal.json")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = admin(&gw, "GET", "/admin/status").await;
        if status["subscriptions"]["all"]["disabled"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never paused: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.stop().await.expect("stop");

    let gw = TestGateway::start(&cfg, dir.path()).await.expect("restart");
    let status = admin(&gw, "GET", "/admin/status").await;
    assert_eq!(status["subscriptions"]["all"]["disabled"], true, "{status}");
    inbox.set_status(StatusCode::OK);
    let attempts_before = inbox.received().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        inbox.received().len(),
        attempts_before,
        "paused: nothing is sent"
    );

    let enabled = admin(&gw, "POST", "/admin/subscriptions/all/enable").await;
    assert_eq!(enabled["was_paused"], true, "{enabled}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !inbox
        .received()
        .iter()
        .skip(attempts_before)
        .any(|r| r.verified())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered after enabling"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = admin(&gw, "GET", "/admin/status").await;
    assert!(status["subscriptions"].get("all").is_none(), "{status}");
    gw.stop().await.expect("stop");
}

on_both_engines!(
    concurrent_identical_submissions_are_delivered_once_on_sled,
    concurrent_identical_submissions_are_delivered_once_on_nats,
    concurrent_identical_submissions_are_delivered_once
);

async fn concurrent_identical_submissions_are_delivered_once(engine: &Engine<'_>) {
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        engine,
        &[],
        &[],
        &[("inbox", inbox.url("/inbox").to_string())],
        "[[subscriptions]]\nid = \"all\"\nevents = [\"*\"]\ndestinations = [\"inbox\"]\n",
    );
    let gw = TestGateway::start(&cfg, dir.path()).await.expect("gateway");
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    for round in 0..5 {
        let body = order(100 + round);
        let posts: Vec<_> = (0..16)
            .map(|_| {
                let (url, body) = (url.clone(), body.clone());
                tokio::spawn(async move {
                    let reply = HttpClient::new()
                        .post_json(&url, &body)
                        .await
                        .expect("post");
                    assert_eq!(reply.status, 202);
                    reply.json()["id"].as_str().expect("id").to_owned()
                })
            })
            .collect();
        let mut ids = Vec::new();
        for p in posts {
            ids.push(p.await.expect("task"));
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "every twin got the first one's id");
    }
    inbox.wait_for(5, WAIT).await.expect("delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(inbox.received().len(), 5, "one delivery per distinct body");
    gw.stop().await.expect("stop");
}
