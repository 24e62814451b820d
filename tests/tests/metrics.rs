//! `/metrics`: the Prometheus exposition, read back with a Prometheus text parser, on both
//! engines of the work plane; and what else an operator's stack reads
//! (`metrics/observability.rs`).

#[path = "metrics/observability.rs"]
mod observability;

use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::harness::{Config, Engine};
use odoo_gateway_tests::{HttpClient, TestGateway, fixture, on_both_engines};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "metrics-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn config(engine: &Engine<'_>, inbox: &Inbox) -> String {
    Config::on(engine)
        .server(&format!("admin_token = \"{ADMIN}\""))
        .source("odoo", TOKEN, "")
        .destination("inbox", inbox.url("/inbox"), SECRET, "")
        .subscription("all", &["*"], &["inbox"], "")
        .toml()
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

on_both_engines!(
    metrics_count_what_happened_and_need_the_admin_token_on_sled,
    metrics_count_what_happened_and_need_the_admin_token_on_nats,
    metrics_count_what_happened_and_need_the_admin_token
);

async fn metrics_count_what_happened_and_need_the_admin_token(engine: &Engine<'_>) {
    let inbox = Inbox::start_local(InboxOptions {
        secrets: vec![SECRET.parse().expect("secret")],
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(engine, &inbox), dir.path())
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
        // On NATS the queue's depth is as of the engine's last look (about once a second): wait
        // for a look taken after the delivery.
        let drained = value(&scrape, "odoo_gateway_queue_due_jobs", &[]) == Some(0.0);
        if delivered == Some(1.0) && drained {
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

/// Scrapes until `done` holds of the exposition, or fails with the last one.
async fn scrape_until(
    client: &HttpClient,
    gw: &TestGateway,
    done: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> prometheus_parse::Scrape {
    let auth = format!("Bearer {ADMIN}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
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
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("Prometheus text format");
        if done(&scrape) {
            return scrape;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Odoo's webhook body for a record of `model`, numbered `id` (distinct bodies, distinct events).
fn order(model: &str, id: u64) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("native/sale.order.confirmed.json")).expect("JSON");
    body["_model"] = model.into();
    body["id"] = id.into();
    body.to_string().into_bytes()
}

on_both_engines!(
    queues_plugins_and_pruning_are_measured_with_bounded_labels_on_sled,
    queues_plugins_and_pruning_are_measured_with_bounded_labels_on_nats,
    queues_plugins_and_pruning_are_measured_with_bounded_labels
);

async fn queues_plugins_and_pruning_are_measured_with_bounded_labels(engine: &Engine<'_>) {
    use base64::Engine as _;
    use sha2::Digest as _;

    let fast = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    // One delivery at a time to this host, each answered after a minute: the next one waits,
    // due, for longer than the test takes.
    let slow = Inbox::start_local(InboxOptions {
        delay: Duration::from_secs(60),
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_hash = hex::encode(sha2::Sha256::digest(b"shop-secret-0123456789"));
    let nats = !matches!(engine, Engine::Sled);
    // Events are pruned from the instance's own store on sled (at once here); on NATS the
    // events stream keeps them for `retention` by itself.
    let retention = if nats { "1h" } else { "1ms" };
    let storage = engine.storage_toml("data").replacen(
        "[storage]\n",
        &format!("[storage]\nretention = \"{retention}\"\nmaintenance_interval = \"100ms\"\n"),
        1,
    );
    let config = format!(
        r#"
[server]
admin_token = "{ADMIN}"
shutdown_grace = "100ms"
{storage}[delivery]
retries = 0
per_destination_concurrency = 1
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[delivery.client.app_ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[destinations]]
name = "fast"
url = "{fast}"
[[destinations]]
name = "slow"
url = "{slow}"
[[destinations]]
name = "idle"
url = "{idle}"
[[subscriptions]]
id = "filtered"
events = ["sale.order.*"]
destinations = ["fast"]
plugin = "{order_filter}"
[subscriptions.config]
min_amount_total = "1000"
states = "sale"
[[subscriptions]]
id = "queued"
events = ["stock.move.*"]
destinations = ["slow"]
[[subscriptions]]
id = "hostile"
events = ["res.partner.*"]
destinations = ["fast"]
plugin = "{hostile}"
[subscriptions.config]
mode = "loop"
[[apps]]
name = "shop"
scopes = ["read", "write"]
oauth2_client_id = "shop-client"
oauth2_client_secret_sha256 = "{secret_hash}"
events = ["*"]
"#,
        storage = storage,
        fast = fast.url("/fast"),
        slow = slow.url("/slow"),
        idle = fast.url("/idle"),
        order_filter = odoo_gateway_tests::plugin("order_filter").display(),
        hostile = odoo_gateway_tests::plugin("hostile_plugin").display(),
    );
    let gw = TestGateway::start(&config, dir.path())
        .await
        .expect("gateway");
    let client = HttpClient::new();
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    for body in [
        order("sale.order", 1),
        order("sale.order", 2),
        order("stock.move", 3),
        order("stock.move", 4),
        order("res.partner", 5),
    ] {
        assert_eq!(
            client.post_json(&url, &body).await.expect("post").status,
            202
        );
    }
    // An app's subscription: its destination joins the apps' series, not one of its own.
    let basic =
        base64::engine::general_purpose::STANDARD.encode("shop-client:shop-secret-0123456789");
    let token = client
        .send(
            "POST",
            &gw.url("/oauth2/token"),
            &[
                ("authorization", &format!("Basic {basic}")),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            b"grant_type=client_credentials".to_vec(),
        )
        .await
        .expect("token")
        .json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let created = client
        .send(
            "POST",
            &gw.url("/v1/subscriptions"),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
            format!(
                r#"{{"id": "mine", "events": ["crm.lead.*"], "destination": {{"url": "{}"}}}}"#,
                fast.url("/shop")
            )
            .into_bytes(),
        )
        .await
        .expect("create");
    assert_eq!(created.status, 201, "{:?}", created.body);

    let slow_queue = [("destination", "slow")];
    let scrape = scrape_until(&client, &gw, |s| {
        value(s, "odoo_gateway_destination_queued_jobs", &slow_queue) == Some(1.0)
            && value(
                s,
                "odoo_gateway_destination_oldest_due_seconds",
                &slow_queue,
            )
            .is_some_and(|age| age >= 0.2)
            && value(
                s,
                "odoo_gateway_plugin_calls_total",
                &[("subscription", "filtered"), ("outcome", "ok")],
            ) == Some(2.0)
            && value(
                s,
                "odoo_gateway_plugin_limit_hits_total",
                &[("subscription", "hostile"), ("limit", "cpu_time")],
            ) == Some(1.0)
            && (nats
                || value(s, "odoo_gateway_pruned_total", &[("kind", "events")])
                    .is_some_and(|n| n >= 2.0))
            // The filtered deliveries to `fast` may still be queued when the plugin's calls
            // are counted (and on NATS the depth is as of the last look).
            && ["fast", "idle", odoo_gateway::telemetry::APP_DESTINATIONS]
                .iter()
                .all(|idle| {
                    let labels = [("destination", *idle)];
                    value(s, "odoo_gateway_destination_queued_jobs", &labels) == Some(0.0)
                        && value(s, "odoo_gateway_destination_oldest_due_seconds", &labels)
                            == Some(0.0)
                })
    })
    .await;
    // Idle destinations are there, at zero; the apps' destinations share one series.
    for idle in ["fast", "idle", odoo_gateway::telemetry::APP_DESTINATIONS] {
        let labels = [("destination", idle)];
        assert_eq!(
            value(&scrape, "odoo_gateway_destination_queued_jobs", &labels),
            Some(0.0),
            "{idle}"
        );
        assert_eq!(
            value(
                &scrape,
                "odoo_gateway_destination_oldest_due_seconds",
                &labels
            ),
            Some(0.0),
            "{idle}"
        );
    }
    assert!(
        !scrape.samples.iter().any(|s| s
            .labels
            .get("destination")
            .is_some_and(|d| d.starts_with("app."))),
        "an app's destination has no series of its own"
    );
    // Plugin calls are labelled by the plugin they ran: the first digits of its hash.
    let plugin = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "odoo_gateway_plugin_calls_total"
                && s.labels.get("subscription") == Some("filtered")
        })
        .and_then(|s| s.labels.get("plugin"))
        .expect("plugin label")
        .to_owned();
    assert!(
        !plugin.is_empty() && plugin.bytes().all(|b| b.is_ascii_hexdigit()),
        "{plugin}"
    );
    assert!(
        value(
            &scrape,
            "odoo_gateway_plugin_call_seconds_count",
            &[("subscription", "filtered"), ("plugin", &plugin)],
        )
        .is_some_and(|n| n >= 2.0)
    );
    assert!(
        value(&scrape, "odoo_gateway_maintenance_round_seconds_count", &[])
            .is_some_and(|n| n >= 1.0)
    );
    // A reload is counted by its outcome (the app's new subscription made one already).
    let ok = [("outcome", "ok")];
    let before = value(&scrape, "odoo_gateway_reloads_total", &ok).unwrap_or(0.0);
    assert!(before >= 1.0, "the API's change was a reload");
    let reloaded = client
        .send(
            "POST",
            &gw.url("/admin/reload"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            Vec::new(),
        )
        .await
        .expect("reload");
    assert_eq!(reloaded.status, 200, "{:?}", reloaded.body);
    scrape_until(&client, &gw, |s| {
        value(s, "odoo_gateway_reloads_total", &ok) == Some(before + 1.0)
    })
    .await;
    gw.stop().await.expect("stop");
    slow.shutdown().await;
}
