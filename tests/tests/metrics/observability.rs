//! What an operator's stack reads: a scraper's token that opens `/metrics` and nothing else,
//! series that follow the configuration through a reload, the console's chart samples, and
//! the dashboard and alert rules in `docs/`, which may name only metrics the gateway exports.

use std::collections::BTreeSet;
use std::time::Duration;

use odoo_gateway::reload::ConfigSource;
use odoo_gateway_tests::{HttpClient, TestGateway, fixture, plugin, workspace};

use super::{ADMIN, SECRET, TOKEN, config, scrape_until};
use odoo_gateway_tests::harness::Engine;

const SCRAPER: &str = "scraper-token-0123456789";
const ROTATED: &str = "rotated-scraper-token-0123456789";

async fn get(client: &HttpClient, url: &str, token: &str) -> odoo_gateway_tests::Reply {
    client
        .send(
            "GET",
            url,
            &[("authorization", &format!("Bearer {token}"))],
            Vec::new(),
        )
        .await
        .expect("request")
}

#[tokio::test]
async fn a_metrics_token_reads_metrics_and_nothing_else() {
    let inbox = odoo_gateway_tests::verifying_inbox(SECRET, 200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(&Engine::Sled, &inbox).replace(
        "[server]\n",
        &format!("[server]\nmetrics_token = [\"{SCRAPER}\", \"{ROTATED}\"]\n"),
    );
    let gw = TestGateway::start(&text, dir.path())
        .await
        .expect("gateway");
    let client = HttpClient::new();
    for token in [SCRAPER, ROTATED, ADMIN] {
        let reply = get(&client, &gw.url("/metrics"), token).await;
        assert_eq!(reply.status, 200, "{token}");
        assert!(String::from_utf8_lossy(&reply.body).contains("odoo_gateway_ready"));
    }
    for token in ["", "not-a-token-0123456789"] {
        assert_eq!(get(&client, &gw.url("/metrics"), token).await.status, 401);
    }
    // Anywhere else the scraper's token is refused, with a code that says why.
    for (method, path) in [
        ("GET", "/admin/status"),
        ("GET", "/admin/charts"),
        ("GET", "/admin/dead-letters"),
        ("POST", "/admin/reload"),
        ("DELETE", "/admin/apps/someone"),
        ("GET", "/console"),
        ("GET", "/console/app.js"),
    ] {
        let reply = client
            .send(
                method,
                &gw.url(path),
                &[("authorization", &format!("Bearer {SCRAPER}"))],
                Vec::new(),
            )
            .await
            .expect("request");
        assert_eq!(reply.status, 403, "{method} {path}");
        assert_eq!(
            reply.json()["error"]["code"],
            "metrics_token_only",
            "{method} {path}"
        );
    }
    // The console's shell needs no token, and the admin token still opens `/admin/`.
    assert_eq!(
        client.get(&gw.url("/console")).await.expect("get").status,
        200
    );
    assert_eq!(
        get(&client, &gw.url("/admin/status"), ADMIN).await.status,
        200
    );
    assert_eq!(
        get(&client, &gw.url("/admin/status"), "wrong-token-0123456789")
            .await
            .status,
        401
    );
}

/// The series that name `value` under `label`.
fn series(scrape: &prometheus_parse::Scrape, label: &str, value: &str) -> usize {
    scrape
        .samples
        .iter()
        .filter(|s| s.labels.get(label) == Some(value))
        .count()
}

fn reload_config(url: &str, other: &str, before: bool) -> String {
    let (gone, swapped) = if before {
        (
            format!(
                r#"
[[destinations]]
name = "other"
url = "{other}"
secrets = ["{SECRET}"]
[[subscriptions]]
id = "gone"
events = ["*"]
destinations = ["other"]
plugin = "{filter}"
[subscriptions.config]
min_amount_total = "0"
"#,
                filter = plugin("order_filter").display()
            ),
            plugin("xml_transform"),
        )
    } else {
        (String::new(), plugin("order_filter"))
    };
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
id = "keep"
events = ["*"]
destinations = ["inbox"]
[[subscriptions]]
id = "swapped"
events = ["*"]
destinations = ["inbox"]
plugin = "{swapped}"
[subscriptions.config]
min_amount_total = "0"
{gone}
"#,
        swapped = swapped.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_drops_the_series_of_what_it_removed() {
    let inbox = odoo_gateway_tests::verifying_inbox(SECRET, 200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    let (url, other) = (
        inbox.url("/inbox").to_string(),
        inbox.url("/other").to_string(),
    );
    std::fs::write(&file, reload_config(&url, &other, true)).expect("write");
    let gw = TestGateway::start_with(ConfigSource::File(file.clone()))
        .await
        .expect("gateway");
    let client = HttpClient::new();
    let ingest = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let reply = client
        .post_json(&ingest, &fixture("native/sale.order.confirmed.json"))
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    // keep and swapped to the inbox, gone (whose filter keeps the order) to the other path.
    inbox
        .wait_for(3, Duration::from_secs(30))
        .await
        .expect("deliveries");
    // The inbox can see a delivery before the gateway counts it: wait for every series.
    let before = scrape_until(&client, &gw, |s| {
        series(s, "subscription", "gone") >= 2
            && series(s, "subscription", "swapped") >= 2
            && series(s, "subscription", "keep") >= 1
    })
    .await;
    let old_plugin = before
        .samples
        .iter()
        .find(|s| {
            s.labels.get("subscription") == Some("swapped") && s.labels.get("plugin").is_some()
        })
        .and_then(|s| s.labels.get("plugin").map(str::to_owned))
        .expect("the swapped subscription's plugin series");
    assert!(
        series(&before, "plugin", &old_plugin) >= 2,
        "calls and their duration"
    );
    assert!(
        series(&before, "destination", "other") >= 2,
        "queued jobs and due age"
    );
    let kept = series(&before, "subscription", "keep");
    assert!(kept >= 1);

    std::fs::write(&file, reload_config(&url, &other, false)).expect("write");
    gw.admin(ADMIN, "POST", "/admin/reload", None).await;
    let after = scrape_until(&client, &gw, |_| true).await;
    assert_eq!(
        series(&after, "subscription", "gone"),
        0,
        "a removed subscription's series"
    );
    assert_eq!(
        series(&after, "plugin", &old_plugin),
        0,
        "a plugin no longer run"
    );
    assert_eq!(
        series(&after, "destination", "other"),
        0,
        "a removed destination"
    );
    assert_eq!(
        series(&after, "subscription", "keep"),
        kept,
        "what stays, stays"
    );
    // The new plugin counts under its own hash.
    let reply = client
        .post_json(
            &ingest,
            &fixture("native/sale.order.confirmed.json")
                .iter()
                .copied()
                .chain(*b" ")
                .collect::<Vec<_>>(),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    let now = scrape_until(&client, &gw, |s| {
        s.samples.iter().any(|x| {
            x.labels.get("subscription") == Some("swapped")
                && x.labels.get("plugin").is_some_and(|p| p != old_plugin)
        })
    })
    .await;
    assert_eq!(series(&now, "subscription", "gone"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_show_the_sample_in_progress() {
    let inbox = odoo_gateway_tests::verifying_inbox(SECRET, 200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&Engine::Sled, &inbox), dir.path())
        .await
        .expect("gateway");
    let charts = gw.admin(ADMIN, "GET", "/admin/charts", None).await;
    assert_eq!(charts["interval_ms"], 60_000);
    assert_eq!(charts["capacity"], 60);
    let samples = charts["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 1, "only the sample in progress: {charts}");
    assert_eq!(samples[0]["partial"], true);
    assert_eq!(
        samples[0]["ingest_p50_ms"],
        serde_json::Value::Null,
        "no event yet"
    );
    let reply = HttpClient::new()
        .post_json(
            &gw.url(&format!("/v1/odoo/odoo/{TOKEN}")),
            &fixture("native/sale.order.confirmed.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202);
    inbox
        .wait_for(1, Duration::from_secs(20))
        .await
        .expect("delivered");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let charts = gw.admin(ADMIN, "GET", "/admin/charts", None).await;
        let now = &charts["samples"][0];
        if now["deliveries_per_sec"].as_f64().is_some_and(|v| v > 0.0) {
            assert!(
                now["ingest_p50_ms"].as_f64().is_some_and(|v| v > 0.0),
                "{now}"
            );
            assert!(
                now["ingest_p99_ms"].as_f64() >= now["ingest_p50_ms"].as_f64(),
                "{now}"
            );
            assert_eq!(now["failures_per_sec"], 0.0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{charts}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Metric names written in `text`: every `odoo_gateway_...` word.
fn named_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("odoo_gateway_") {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + word.len()..];
        names.insert(word);
    }
    names
}

/// Every name a scrape can show for the families the exposition declares (`# TYPE`): a
/// counter's `_total`, a histogram's `_bucket`, `_sum` and `_count`, a gauge as it is.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
    }
    names
}

#[tokio::test]
async fn the_dashboard_and_the_alert_rules_name_only_exported_metrics() {
    let inbox = odoo_gateway_tests::verifying_inbox(SECRET, 200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&Engine::Sled, &inbox), dir.path())
        .await
        .expect("gateway");
    // A family shows in the exposition only once it has a series, so the names are checked
    // against the registry's descriptors; what the running gateway shows is among them.
    let declared: BTreeSet<String> = odoo_gateway::telemetry::Metrics::new()
        .declared()
        .iter()
        .cloned()
        .collect();
    let reply = get(&HttpClient::new(), &gw.url("/metrics"), ADMIN).await;
    let shown = exported_names(&String::from_utf8_lossy(&reply.body));
    assert!(shown.contains("odoo_gateway_ready"), "{shown:?}");
    let undeclared: Vec<&String> = shown.difference(&declared).collect();
    assert!(
        undeclared.is_empty(),
        "shown but not declared: {undeclared:?}"
    );
    assert!(
        declared.contains("odoo_gateway_dead_letters_total"),
        "{declared:?}"
    );
    let exported = declared;

    let docs = workspace().join("docs");
    let dashboard =
        std::fs::read_to_string(docs.join("grafana-dashboard.json")).expect("dashboard");
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = parsed["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 8, "{} queries", exprs.len());
    let rules = std::fs::read_to_string(docs.join("prometheus-alerts.yml")).expect("alert rules");
    for alert in [
        "OdooGatewayDeadLettersGrowing",
        "OdooGatewaySubscriptionFlagged",
        "OdooGatewayIngestRefusingForSpace",
        "OdooGatewayNatsUnreachable",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert}");
    }
    let named: BTreeSet<String> = exprs
        .iter()
        .flat_map(|e| named_metrics(e))
        .chain(named_metrics(&rules))
        .collect();
    assert!(named.len() >= 10, "{named:?}");
    let unknown: Vec<&String> = named.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "named in docs/ but not exported: {unknown:?}"
    );
}
