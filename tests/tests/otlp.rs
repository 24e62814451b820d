//! OTLP export, against a receiver that decodes what a collector decodes: the official
//! protobuf definitions (`opentelemetry-proto`), over OTLP/HTTP and over OTLP/gRPC (tonic's
//! server of the generated `TraceService`). One event that continues an incoming trace goes
//! through ingest, fan-out, enrichment from a fake Odoo, a plugin call and three delivery
//! attempts (the receiver fails the first); every stage is a span in the caller's trace,
//! under the event's ingest span, with its attributes; each attempt's span id is the one its
//! request carried. A collector that hangs costs spans (counted), never an answer.
//!
//! The export pipeline is one per process: the tests take turns.

#[path = "otlp/collector.rs"]
mod collector;

use std::time::Duration;

use collector::{Collector, attr};
use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::fake_odoo::{self, FakeOdoo};
use odoo_gateway_tests::{HttpClient, TestGateway, fixture, plugin};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "otlp-token-0123456789";
const ADMIN: &str = "otlp-admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(30);
/// The W3C specification's example: the caller's trace and span.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The export pipeline is the process's: one gateway exports at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(endpoint: &str, protocol: &str, odoo: &FakeOdoo, inbox: &Inbox, extra: &str) -> String {
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
[telemetry.otlp]
endpoint = "{endpoint}"
protocol = "{protocol}"
service_name = "gateway-under-test"
headers = {{ x-tenant = "acme" }}
timeout = "2s"
{extra}
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[sources.actions]
"SO confirmed" = "confirmed"
[sources.odoo]
url = "{odoo_url}"
database = "{db}"
login = "{login}"
api_key = "{key}"
timeout = "2s"
[[destinations]]
name = "fastfreight"
url = "{ff}"
secrets = ["{SECRET}"]
[[destinations]]
name = "parcelpost"
url = "{pp}"
secrets = ["{SECRET}"]
[[subscriptions]]
id = "shipping"
events = ["sale.order.*"]
destinations = ["fastfreight", "parcelpost"]
plugin = "{router}"
enrich = [
  {{ field = "order_line", model = "sale.order.line", fields = ["product_id", "product_uom_qty", "route_id", "display_type", "name"] }},
  {{ field = "partner_id", fields = ["name", "country_id", "zip"] }},
]
[subscriptions.config]
"route.Ship: FastFreight" = "fastfreight"
"route.Ship: ParcelPost" = "parcelpost"
"#,
        odoo_url = odoo.url(),
        db = fake_odoo::DATABASE,
        login = fake_odoo::LOGIN,
        key = fake_odoo::API_KEY,
        ff = inbox.url("/fastfreight"),
        pp = inbox.url("/parcelpost"),
        router = plugin("shipper_router").display(),
    )
}

/// Waits until `collector` holds spans that `enough` accepts.
async fn spans_until(
    collector: &Collector,
    ours: impl Fn(&Span) -> bool,
    enough: impl Fn(&[(String, Span)]) -> bool,
) -> Vec<(String, Span)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut spans = collector.spans();
        spans.retain(|(_, s)| ours(s));
        if enough(&spans) {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the spans did not all arrive: {:#?}",
            spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole journey of one event, exported over `protocol`.
async fn one_event_is_one_trace(protocol: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    odoo_gateway::cli::init_logs(odoo_gateway::cli::LogFormat::Text);
    let collector = Collector::default();
    let endpoint = match protocol {
        "grpc" => collector.clone().serve_grpc().await,
        _ => collector.clone().serve_http().await,
    };
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = Inbox::start_local(InboxOptions {
        secrets: vec![SECRET.parse().expect("secret")],
        fail_first: 1,
        ..Default::default()
    })
    .await
    .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(&endpoint, protocol, &odoo, &inbox, ""), dir.path())
        .await
        .expect("starts");
    let incoming = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let reply = HttpClient::new()
        .send(
            "POST",
            &gateway.url(&format!("/v1/odoo/odoo/{TOKEN}")),
            &[
                ("content-type", "application/json"),
                ("traceparent", &incoming),
            ],
            fixture("native/sale.order.confirmed.json"),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let event_id = reply.json()["id"].as_str().expect("id").to_owned();
    // Two deliveries, the first request refused once: three attempts.
    let requests = inbox.wait_for(3, WAIT).await.expect("three requests");
    let named =
        |spans: &[(String, Span)], name: &str| spans.iter().filter(|(_, s)| s.name == name).count();
    // The export pipeline is the process's: the other suites' gateways in this test binary
    // make stage spans while it exports. This event's spans are those in the caller's trace
    // and those that name the event or one of its jobs (a stage in a wrong trace among them
    // still fails the checks below).
    let trace = hex::decode(TRACE).expect("hex");
    let ours = |s: &Span| {
        s.trace_id == trace
            || attr(s, "odoo_gateway.event.id").as_deref() == Some(event_id.as_str())
            || attr(s, "odoo_gateway.job").is_some_and(|job| job.starts_with(event_id.as_str()))
    };
    let spans = spans_until(&collector, ours, |spans| {
        named(spans, "delivery attempt") >= 3
            && named(spans, "plugin call") >= 1
            && named(spans, "fan-out") >= 1
            && named(spans, "ingest") >= 1
            && named(spans, "enrich") >= 1
    })
    .await;
    for (service, span) in &spans {
        assert_eq!(service, "gateway-under-test", "{}", span.name);
        assert_eq!(
            span.trace_id, trace,
            "{} is in the caller's trace",
            span.name
        );
    }
    let only = |name: &str| {
        let found: Vec<&Span> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name)
            .collect();
        assert_eq!(found.len(), 1, "one {name} span");
        found[0]
    };
    let ingest = only("ingest");
    assert_eq!(
        hex::encode(&ingest.parent_span_id),
        CALLER_SPAN,
        "ingest continues the caller's span"
    );
    assert_eq!(ingest.kind, SpanKind::Server as i32);
    assert_eq!(
        attr(ingest, "odoo_gateway.event.id").as_deref(),
        Some(event_id.as_str())
    );
    assert_eq!(attr(ingest, "odoo_gateway.source").as_deref(), Some("odoo"));
    assert_eq!(
        attr(ingest, "odoo_gateway.outcome").as_deref(),
        Some("accepted")
    );
    assert_eq!(
        attr(ingest, "odoo_gateway.event.type").as_deref(),
        Some("sale.order.confirmed")
    );
    assert_eq!(
        attr(ingest, "http.response.status_code").as_deref(),
        Some("202")
    );
    let fan_out = only("fan-out");
    assert_eq!(
        attr(fan_out, "odoo_gateway.jobs").as_deref(),
        Some("1"),
        "one plugin call"
    );
    let enrich = only("enrich");
    let plugin_call = only("plugin call");
    assert_eq!(
        attr(plugin_call, "odoo_gateway.subscription").as_deref(),
        Some("shipping")
    );
    assert_eq!(
        attr(plugin_call, "odoo_gateway.outcome").as_deref(),
        Some("deliver")
    );
    assert_eq!(
        attr(plugin_call, "odoo_gateway.deliveries").as_deref(),
        Some("2")
    );
    assert!(attr(plugin_call, "odoo_gateway.plugin").is_some_and(|p| p.len() >= 8 && p != "none"));
    let attempts: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "delivery attempt")
        .collect();
    for stage in [fan_out, enrich, plugin_call]
        .into_iter()
        .chain(attempts.iter().copied())
    {
        assert_eq!(
            stage.parent_span_id, ingest.span_id,
            "{} is a child of the ingest span",
            stage.name
        );
        assert_eq!(
            attr(stage, "odoo_gateway.event.id").as_deref(),
            Some(event_id.as_str()),
            "{}",
            stage.name
        );
    }
    // Enrichment's Odoo calls are its children.
    let odoo_calls: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "odoo call")
        .collect();
    assert!(
        odoo_calls.len() >= 2,
        "a read per related model: {}",
        odoo_calls.len()
    );
    for call in &odoo_calls {
        assert_eq!(call.parent_span_id, enrich.span_id);
        assert_eq!(call.kind, SpanKind::Client as i32);
    }
    assert!(
        odoo_calls
            .iter()
            .any(|c| attr(c, "odoo_gateway.odoo.model").as_deref() == Some("res.partner"))
    );
    // Each request the receiver saw names its attempt's span; the refused one failed.
    assert_eq!(requests.len(), 3);
    for request in &requests {
        let sent = request.header("traceparent").expect("traceparent");
        let span_id = &sent[36..52];
        assert_eq!(&sent[3..35], TRACE);
        let attempt = attempts
            .iter()
            .find(|a| hex::encode(&a.span_id) == span_id)
            .unwrap_or_else(|| panic!("an attempt span {span_id}"));
        assert_eq!(attempt.kind, SpanKind::Client as i32);
        let status = request.answered.expect("answered").as_u16();
        assert_eq!(
            attr(attempt, "http.response.status_code"),
            Some(status.to_string())
        );
        let (outcome, code) = if status == 500 {
            ("failed", StatusCode::Error)
        } else {
            ("delivered", StatusCode::Unset)
        };
        assert_eq!(
            attr(attempt, "odoo_gateway.outcome").as_deref(),
            Some(outcome)
        );
        assert_eq!(attempt.status.as_ref().map_or(0, |s| s.code), code as i32);
    }
    let retried: Vec<_> = attempts
        .iter()
        .filter(|a| attr(a, "odoo_gateway.attempt").as_deref() == Some("2"))
        .collect();
    assert_eq!(retried.len(), 1, "the refused delivery's second attempt");

    // A refused request is a failed ingest span in the caller's trace, with no event.
    let refused = HttpClient::new()
        .send(
            "POST",
            &gateway.url("/v1/odoo/odoo/not-the-token-0123456789"),
            &[
                ("content-type", "application/json"),
                ("traceparent", &incoming),
            ],
            fixture("native/sale.order.confirmed.json"),
        )
        .await
        .expect("post");
    assert_eq!(refused.status, 401);
    let spans = spans_until(&collector, ours, |spans| named(spans, "ingest") >= 2).await;
    let refusal = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| {
            s.name == "ingest" && attr(s, "odoo_gateway.outcome").as_deref() == Some("unauthorized")
        })
        .expect("the refused request's span");
    assert_eq!(refusal.trace_id, trace);
    assert_eq!(hex::encode(&refusal.parent_span_id), CALLER_SPAN);
    assert_eq!(
        refusal.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    assert_eq!(attr(refusal, "odoo_gateway.event.id"), None);
    gateway.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_one_trace_over_otlp_http() {
    one_event_is_one_trace("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_one_trace_over_otlp_grpc() {
    one_event_is_one_trace("grpc").await;
}

/// A collector that never answers: spans beyond the queue are dropped and counted, and the
/// gateway still answers and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_collector_costs_spans_never_events() {
    let _turn = ONE_AT_A_TIME.lock().await;
    odoo_gateway::cli::init_logs(odoo_gateway::cli::LogFormat::Text);
    let collector = Collector::hanging();
    let endpoint = collector.clone().serve_http().await;
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = odoo_gateway_tests::verifying_inbox(SECRET, 200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&endpoint, "http/protobuf", &odoo, &inbox, "max_queue = 4");
    let gateway = TestGateway::start(&config, dir.path())
        .await
        .expect("starts");
    let client = HttpClient::new();
    // Distinct records, so distinct events (a repeat makes no fan-out span).
    let post = |id: u32| {
        let (client, url) = (
            client.clone(),
            gateway.url(&format!("/v1/odoo/odoo/{TOKEN}")),
        );
        async move {
            let body = format!(r#"{{"_model": "res.partner", "id": {id}}}"#);
            let reply = client.post_json(&url, body.as_bytes()).await.expect("post");
            assert_eq!(reply.status, 202, "{:?}", reply.body);
        }
    };
    // The first export reaches the collector and hangs there...
    post(0).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while collector.requests() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no export came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... so what follows fills the queue of 4 and the rest is dropped, not waited for.
    for id in 1..=10 {
        post(id).await;
    }
    let scrape = client
        .send(
            "GET",
            &gateway.url("/metrics"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            Vec::new(),
        )
        .await
        .expect("scrape");
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    let dropped: f64 = text
        .lines()
        .find(|l| l.starts_with("odoo_gateway_otlp_spans_dropped_total{reason=\"queue_full\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no queue_full drops counted:\n{text}"));
    // Ten events make twenty spans (ingest, fan-out); four fit in the queue.
    assert!(dropped >= 12.0, "{dropped}");
    gateway.stop().await.expect("stops");
}
