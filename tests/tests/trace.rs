//! One trace per event: the receiver sees the event's trace id in `traceparent` on every
//! attempt, the JSON log lines of its fan-out and attempts carry it, the admin API shows it,
//! and an incoming `traceparent` is continued. The real binary, its stderr to a pipe, on both
//! engines of the work plane.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::harness::Engine;
use odoo_gateway_tests::process::until_ready;
use odoo_gateway_tests::{HttpClient, fixture, on_both_engines};

const TOKEN: &str = "trace-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(30);
/// The W3C specification's example.
const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct Gateway {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// The real binary with JSON logs at debug level for the gateway, delivering every event
    /// to `inbox` with one retry after 50 ms, and orders through the `order-filter` plugin to
    /// `side`.
    async fn start(engine: &Engine<'_>, inbox: &Inbox, side: &Inbox) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
admin_token = "{ADMIN}"
{storage}
[delivery]
retries = 1
[delivery.backoff]
schedule = ["50ms"]
jitter = 0.0
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[destinations]]
name = "inbox"
url = "{url}"
[[destinations]]
name = "side"
url = "{side}"
[[subscriptions]]
id = "all"
events = ["*"]
destinations = ["inbox"]
[[subscriptions]]
id = "filtered"
events = ["sale.order.*"]
destinations = ["side"]
plugin = "{plugin}"
[subscriptions.config]
min_amount_total = "1000"
states = "sale"
"#,
                storage = engine.storage_toml("data"),
                url = inbox.url("/inbox"),
                side = side.url("/side"),
                plugin = odoo_gateway_tests::plugin("order_filter").display(),
            ),
        )
        .expect("write");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info,odoo_gateway=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway");
        let url = format!("http://127.0.0.1:{port}");
        assert!(until_ready(port, WAIT).await, "the gateway did not come up");
        Self {
            child,
            url,
            _dir: dir,
        }
    }

    /// Stops the gateway; its log lines, parsed.
    fn logs(mut self) -> Vec<serde_json::Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut stderr)
            .expect("read stderr");
        stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// `(trace id, parent id)` of a `traceparent` value.
fn parts(traceparent: &str) -> (String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(
        (fields[0], fields[1].len(), fields[2].len()),
        ("00", 32, 16)
    );
    (fields[1].to_owned(), fields[2].to_owned())
}

/// Posts Odoo's webhook body for order `record`, with `headers`; the event id. (The same body
/// twice would be one event.)
async fn post(client: &HttpClient, gw: &Gateway, record: u64, headers: &[(&str, &str)]) -> String {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("native/sale.order.confirmed.json")).expect("JSON");
    body["id"] = record.into();
    let reply = client
        .send(
            "POST",
            &format!("{}/v1/odoo/odoo/{TOKEN}", gw.url),
            &all,
            body.to_string().into_bytes(),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    reply.json()["id"].as_str().expect("id").to_owned()
}

async fn admin_trace_id(client: &HttpClient, gw: &Gateway, event: &str) -> String {
    let reply = client
        .send(
            "GET",
            &format!("{}/admin/events/{event}", gw.url),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            Vec::new(),
        )
        .await
        .expect("admin");
    assert_eq!(reply.status, 200);
    reply.json()["event"]["trace_id"]
        .as_str()
        .expect("trace_id")
        .to_owned()
}

/// The messages of the log lines whose spans name `trace_id`.
fn messages_with(logs: &[serde_json::Value], trace_id: &str) -> Vec<String> {
    logs.iter()
        .filter(|line| {
            line["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["trace_id"] == trace_id))
        })
        .map(|line| line["fields"]["message"].as_str().unwrap_or("").to_owned())
        .collect()
}

on_both_engines!(
    every_attempt_of_an_event_carries_its_trace_in_the_header_and_the_logs_on_sled,
    every_attempt_of_an_event_carries_its_trace_in_the_header_and_the_logs_on_nats,
    every_attempt_of_an_event_carries_its_trace_in_the_header_and_the_logs
);

async fn every_attempt_of_an_event_carries_its_trace_in_the_header_and_the_logs(
    engine: &Engine<'_>,
) {
    let inbox = Inbox::start_local(InboxOptions {
        fail_first: 1,
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let side = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    let gw = Gateway::start(engine, &inbox, &side).await;
    let client = HttpClient::new();
    let event = post(&client, &gw, 1, &[]).await;
    let received = inbox
        .wait_for(2, WAIT)
        .await
        .expect("an attempt and its retry");
    let (first, retry) = (&received[0], &received[1]);
    assert_eq!(first.answered.map(|s| s.as_u16()), Some(500));
    assert_eq!(
        first.webhook_id(),
        retry.webhook_id(),
        "one job, two attempts"
    );
    let (trace, first_span) = parts(first.header("traceparent").expect("traceparent"));
    let (retry_trace, retry_span) = parts(retry.header("traceparent").expect("traceparent"));
    assert_eq!(trace, retry_trace, "the retry continues the event's trace");
    assert_ne!(first_span, retry_span, "each attempt is a span of its own");
    assert_eq!(admin_trace_id(&client, &gw, &event).await, trace);

    // A second event is a trace of its own.
    let other = post(&client, &gw, 2, &[]).await;
    inbox.wait_for(3, WAIT).await.expect("delivered");
    let other_trace = admin_trace_id(&client, &gw, &other).await;
    assert_ne!(other_trace, trace);
    // What the plugin made of the first event is delivered in the same trace.
    let made = side
        .wait_for(2, WAIT)
        .await
        .expect("the plugin's deliveries");
    let traces: Vec<String> = made
        .iter()
        .map(|r| parts(r.header("traceparent").expect("traceparent")).0)
        .collect();
    assert!(
        traces.contains(&trace) && traces.contains(&other_trace),
        "{traces:?}"
    );

    let logs = gw.logs();
    let messages = messages_with(&logs, &trace);
    for expected in [
        "fan-out queued the event's jobs",
        "plugin called",
        "delivery attempt failed",
        "delivered",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "no `{expected}` line with trace_id {trace}: {messages:?}"
        );
    }
    assert!(
        !messages_with(&logs, &other_trace)
            .iter()
            .any(|m| m == "delivery attempt failed"),
        "the other event's lines are its own"
    );
}

on_both_engines!(
    an_incoming_traceparent_is_continued_and_an_invalid_one_ignored_on_sled,
    an_incoming_traceparent_is_continued_and_an_invalid_one_ignored_on_nats,
    an_incoming_traceparent_is_continued_and_an_invalid_one_ignored
);

async fn an_incoming_traceparent_is_continued_and_an_invalid_one_ignored(engine: &Engine<'_>) {
    let inbox = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    let side = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    let gw = Gateway::start(engine, &inbox, &side).await;
    let client = HttpClient::new();
    let state = "congo=t61rcWkgMzE";
    let continued = post(
        &client,
        &gw,
        1,
        &[("traceparent", INCOMING), ("tracestate", state)],
    )
    .await;
    let received = inbox.wait_for(1, WAIT).await.expect("delivered");
    let (trace, span) = parts(received[0].header("traceparent").expect("traceparent"));
    assert_eq!(received[0].header("tracestate"), Some(state), "passed on");
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(
        span, "00f067aa0ba902b7",
        "the gateway's attempt is a child span"
    );
    assert_eq!(admin_trace_id(&client, &gw, &continued).await, trace);

    let invalid = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let fresh = post(&client, &gw, 2, &[("traceparent", invalid)]).await;
    let received = inbox.wait_for(2, WAIT).await.expect("delivered");
    let (fresh_trace, _) = parts(received[1].header("traceparent").expect("traceparent"));
    assert_eq!(received[1].header("tracestate"), None);
    assert_ne!(fresh_trace, "0".repeat(32));
    assert_ne!(fresh_trace, trace);
    assert_eq!(admin_trace_id(&client, &gw, &fresh).await, fresh_trace);
    let logs = gw.logs();
    assert!(
        messages_with(&logs, &trace)
            .iter()
            .any(|m| m == "delivered"),
        "the continued trace is in the logs"
    );
}
