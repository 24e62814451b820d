//! Delivery policies over real sockets: ordered delivery per record through a receiver that
//! fails at random, a destination's rate limit held by two instances sharing NATS, and a dead
//! receiver host's circuit opening (attempts stop) and closing again once it answers.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use odoo_gateway_tests::harness::{Config, Engine, NatsServer, WAIT, eventually};
use odoo_gateway_tests::{HttpClient, TestGateway, on_both_engines};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "policy-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

/// What a receiver saw: the event's number, its record, and whether it answered 2xx.
#[derive(Debug, Clone, Copy)]
struct Seen {
    n: u64,
    record: u64,
    ok: bool,
    at: Instant,
}

/// A receiver on a loopback port that answers 500 to a share of requests (a seeded generator,
/// so a run is repeatable), or to all while `down`, and 200 otherwise; it records every request.
#[derive(Clone)]
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(fail_per_mille: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let rng = Arc::new(AtomicU64::new(0x9e37_79b9_7f4a_7c15));
        let (s, d) = (seen.clone(), down.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, down, rng) = (s.clone(), d.clone(), rng.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, down, rng) = (seen.clone(), down.clone(), rng.clone());
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let envelope: serde_json::Value = body
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or_default();
                            let payload = &envelope["payload"];
                            // xorshift64: a failure is a draw below the share asked for.
                            let draw = rng
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |mut x| {
                                    x ^= x << 13;
                                    x ^= x >> 7;
                                    x ^= x << 17;
                                    Some(x)
                                })
                                .unwrap_or(0);
                            let ok = !down.load(Ordering::SeqCst) && draw % 1000 >= fail_per_mille;
                            seen.lock().expect("lock").push(Seen {
                                n: payload["n"].as_u64().unwrap_or(u64::MAX),
                                record: payload["id"].as_u64().unwrap_or(u64::MAX),
                                ok,
                                at: Instant::now(),
                            });
                            let status = if ok { 200 } else { 500 };
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, seen, down }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn delivered(&self) -> usize {
        let mut got: Vec<u64> = self.seen().iter().filter(|s| s.ok).map(|s| s.n).collect();
        got.sort_unstable();
        got.dedup();
        got.len()
    }
}

/// An Odoo order body: record `record`, the `n`th event posted.
fn order(record: u64, n: u64) -> Vec<u8> {
    format!(r#"{{"_action": "Order saved(#{record})", "_id": {record}, "_model": "sale.order", "id": {record}, "n": {n}}}"#)
        .into_bytes()
}

async fn post(client: &HttpClient, gw: &TestGateway, body: &[u8]) {
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let reply = client.post_json(&url, body).await.expect("post");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}

fn config(
    engine: &Engine<'_>,
    url: &str,
    destination: &str,
    subscription: &str,
    delivery: &[&str],
) -> String {
    let mut config = Config::on(engine)
        .server(&format!("admin_token = \"{ADMIN}\""))
        .backoff(&["20ms"])
        .source("odoo", TOKEN, "")
        .destination("receiver", url, SECRET, destination)
        .subscription("orders", &["*"], &["receiver"], subscription);
    for line in delivery {
        config = config.delivery(line);
    }
    config.toml()
}

on_both_engines!(
    ordered_delivery_keeps_each_records_order_through_random_failures_on_sled,
    ordered_delivery_keeps_each_records_order_through_random_failures_on_nats,
    ordered_delivery_keeps_each_records_order_through_random_failures
);

/// 1,000 events over 50 records, the receiver failing 30 % of attempts at random: every event
/// is delivered, and per record the receiver saw them one at a time in the order they were
/// accepted (no attempt of a later event before the earlier one was delivered). On NATS, two
/// instances share the work, the events posted to both in turn.
async fn ordered_delivery_keeps_each_records_order_through_random_failures(engine: &Engine<'_>) {
    let receiver = Receiver::start(300).await;
    let toml = config(
        engine,
        &receiver.url,
        "",
        "ordering = \"record\"\nretries = 100",
        &[],
    );
    let (da, db) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut gateways = vec![TestGateway::start(&toml, da.path()).await.expect("gateway")];
    if !matches!(engine, Engine::Sled) {
        gateways.push(
            TestGateway::start(&toml, db.path())
                .await
                .expect("gateway B"),
        );
    }
    let client = HttpClient::new();
    const EVENTS: u64 = 1_000;
    for n in 0..EVENTS {
        let gw = &gateways[n as usize % gateways.len()];
        post(&client, gw, &order(n % 50, n)).await;
    }
    eventually(
        Duration::from_secs(180),
        "every event delivered",
        || async { (receiver.delivered() as u64 == EVENTS).then_some(()) },
    )
    .await;
    let seen = receiver.seen();
    let failed = seen.iter().filter(|s| !s.ok).count();
    assert!(
        failed > 200,
        "the receiver failed {failed} attempts: the test tests something"
    );
    for record in 0..50 {
        let attempts: Vec<&Seen> = seen.iter().filter(|s| s.record == record).collect();
        // Each event's attempts, then the next's: its numbers never go down, and a new number
        // comes only after the last one was delivered.
        for pair in attempts.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                b.n > a.n && a.ok || b.n == a.n && !a.ok,
                "record {record}: event {} ({}) then event {}",
                a.n,
                if a.ok { "delivered" } else { "failed" },
                b.n
            );
        }
    }
    for gw in gateways {
        gw.stop().await.expect("stop");
    }
}

/// On NATS an ordered subscription delivers events as they are: one with a plugin is refused
/// with the reason.
#[tokio::test]
async fn an_ordered_plugin_subscription_is_refused_with_the_reason_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = odoo_gateway_tests::plugin("order_filter");
    let toml = config(
        &server.engine("ordering"),
        "http://127.0.0.1:9/hook",
        "",
        &format!("ordering = \"record\"\nplugin = \"{}\"", plugin.display()),
        &[],
    );
    let error = TestGateway::start(&toml, dir.path())
        .await
        .expect_err("refused");
    assert!(
        format!("{error:#}").contains("subscriptions[0].ordering: on engine \"nats\", an ordered subscription delivers events as they are"),
        "{error:#}"
    );
}

/// How many deliveries the receiver took within `window` after `from`.
fn within(seen: &[Seen], from: Instant, window: Duration) -> usize {
    seen.iter()
        .filter(|s| s.ok && s.at >= from && s.at < from + window)
        .count()
}

/// A destination's `10/s`, held by two instances sharing NATS together: over 20 s, the
/// receiver gets 200 ± 10 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_for_two_instances_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    let engine = server.engine("rate");
    let receiver = Receiver::start(0).await;
    let toml = config(&engine, &receiver.url, "rate_limit = \"10/s\"", "", &[]);
    let (da, db) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = TestGateway::start(&toml, da.path())
        .await
        .expect("gateway A");
    let b = TestGateway::start(&toml, db.path())
        .await
        .expect("gateway B");
    let client = HttpClient::new();
    for n in 0..400 {
        let gw = if n % 2 == 0 { &a } else { &b };
        post(&client, gw, &order(n, n)).await;
    }
    let first = eventually(WAIT, "a first delivery", || async {
        receiver.seen().first().map(|s| s.at)
    })
    .await;
    // Past the first second's burst, 20 s of the rate.
    let from = first + Duration::from_secs(1);
    tokio::time::sleep_until((from + Duration::from_secs(20)).into()).await;
    let got = within(&receiver.seen(), from, Duration::from_secs(20));
    assert!(
        (180..=220).contains(&got),
        "{got} deliveries in 20 s at 10/s"
    );
    a.stop().await.expect("stop A");
    b.stop().await.expect("stop B");
}

on_both_engines!(
    a_rate_limit_paces_deliveries_on_sled,
    a_rate_limit_paces_deliveries_on_nats,
    a_rate_limit_paces_deliveries
);

/// A destination's `20/s` on one instance: over 5 s, 100 ± 10 %.
async fn a_rate_limit_paces_deliveries(engine: &Engine<'_>) {
    let receiver = Receiver::start(0).await;
    let toml = config(engine, &receiver.url, "rate_limit = \"20/s\"", "", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&toml, dir.path())
        .await
        .expect("gateway");
    let client = HttpClient::new();
    for n in 0..200 {
        post(&client, &gw, &order(n, n)).await;
    }
    let first = eventually(WAIT, "a first delivery", || async {
        receiver.seen().first().map(|s| s.at)
    })
    .await;
    let from = first + Duration::from_secs(1);
    tokio::time::sleep_until((from + Duration::from_secs(5)).into()).await;
    let got = within(&receiver.seen(), from, Duration::from_secs(5));
    assert!((90..=110).contains(&got), "{got} deliveries in 5 s at 20/s");
    gw.stop().await.expect("stop");
}

on_both_engines!(
    a_dead_host_opens_its_circuit_and_a_healthy_one_closes_it_on_sled,
    a_dead_host_opens_its_circuit_and_a_healthy_one_closes_it_on_nats,
    a_dead_host_opens_its_circuit_and_a_healthy_one_closes_it
);

/// A receiver that answers 503 to everything: after three failures in a row its host's circuit
/// opens, and attempts stop (but for one probe per cool-down) though twenty deliveries are due
/// every 20 ms; `/admin/status` and `/metrics` say so. Once it answers again, the next probe
/// closes the circuit and every event is delivered.
async fn a_dead_host_opens_its_circuit_and_a_healthy_one_closes_it(engine: &Engine<'_>) {
    let receiver = Receiver::start(0).await;
    receiver.down.store(true, Ordering::SeqCst);
    let toml = config(
        engine,
        &receiver.url,
        "",
        "retries = 1000",
        &["[delivery.circuit]", "failures = 3", "cool_down = \"2s\""],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&toml, dir.path())
        .await
        .expect("gateway");
    let client = HttpClient::new();
    for n in 0..20 {
        post(&client, &gw, &order(n, n)).await;
    }
    let status = eventually(WAIT, "the circuit open", || async {
        let status = gw.admin(ADMIN, "GET", "/admin/status", None).await;
        let open = status["circuits"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["state"] == "open"));
        open.then_some(status)
    })
    .await;
    assert!(
        status["circuits"][0]["host"]
            .as_str()
            .is_some_and(|h| h.starts_with("http://127.0.0.1:")),
        "{status}"
    );
    // While it is open, attempts stop: at most a probe each cool-down (2 s) in 3 s.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = receiver.seen().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = receiver.seen().len() - before;
    assert!(during <= 2, "{during} attempts while the circuit was open");
    let metrics = client
        .send(
            "GET",
            &gw.url("/metrics"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            Vec::new(),
        )
        .await
        .expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.contains("odoo_gateway_receiver_circuit_open{host=\"http://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("odoo_gateway_receiver_circuit_changes_total{outcome=\"open\"}"));

    receiver.down.store(false, Ordering::SeqCst);
    eventually(Duration::from_secs(60), "every event delivered", || async {
        (receiver.delivered() == 20).then_some(())
    })
    .await;
    let status = gw.admin(ADMIN, "GET", "/admin/status", None).await;
    assert_eq!(
        status["circuits"],
        serde_json::json!([]),
        "closed again: {status}"
    );
    gw.stop().await.expect("stop");
}
