//! Load generator: measures the gateway on this machine and prints a table.
//!
//! Runs the real gateway in this process (its own runtime) on a real socket with sled in a
//! temporary folder, a counting receiver, and HTTP/1.1 keep-alive clients:
//! 1. durable ingest, as fast as 64 concurrent clients can go (no subscription matches);
//! 2. acknowledgement latency at a fixed 1,000 events/s;
//! 3. end to end: events through one plugin subscription (order-filter) to the receiver,
//!    signed and delivered;
//! 4. hot reload: file write to new rules, and the ingest rate around reloads.
//!
//! `cargo run --release -p odoo-gateway-tests --bin loadgen [-- --events N]`

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use odoo_gateway_tests::load::{CONCURRENCY, blast, body, percentile};
use odoo_gateway_tests::{HttpClient, TestGateway, plugin};

const TOKEN: &str = "load-token-0123456789";

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let events: usize = std::env::args()
        .skip_while(|a| a != "--events")
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("--events takes a number")?
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(events))
}

/// A receiver that answers 200 and counts.
async fn receiver() -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        counter.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((format!("http://{addr}/hook"), count))
}

fn config(subscriptions: &str, receiver: &str) -> String {
    format!(
        r#"
[storage]
path = "data"
[delivery]
concurrency = 256
per_destination_concurrency = 128
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[destinations]]
name = "receiver"
url = "{receiver}"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
{subscriptions}
"#
    )
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn bench(events: usize) -> anyhow::Result<()> {
    let (receiver_url, delivered) = receiver().await?;
    let mut rows = Vec::new();

    // 1. Durable ingest, no subscription matching.
    let dir = tempfile::tempdir()?;
    let gw = TestGateway::start(&config("", &receiver_url), dir.path()).await?;
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    blast(&url, 0, 2_000, 202).await; // warm-up
    let started = Instant::now();
    let lat = blast(&url, 10_000_000, events, 202).await;
    let secs = started.elapsed().as_secs_f64();
    rows.push(format!(
        "| durable ingest, concurrency {CONCURRENCY} | {:.0} events/s | p50 {:.2} ms, p99 {:.2} ms |",
        events as f64 / secs,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    ));

    // 2. Acknowledgement latency at a fixed 1,000 events/s for 5 s.
    let client = HttpClient::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut pending = Vec::new();
    for n in 0..5_000 {
        tick.tick().await;
        let (client, url) = (client.clone(), url.clone());
        pending.push(tokio::spawn(async move {
            let started = Instant::now();
            let reply = client
                .post_json(&url, &body(20_000_000 + n))
                .await
                .expect("post");
            assert_eq!(reply.status, 202);
            started.elapsed()
        }));
    }
    let mut lat = Vec::new();
    for p in pending {
        lat.push(p.await?);
    }
    lat.sort();
    rows.push(format!(
        "| ack latency at 1,000 events/s (5,000 events) | - | p50 {:.2} ms, p99 {:.2} ms |",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    ));
    gw.stop().await?;

    // 3. End to end through the order-filter plugin to the receiver.
    let dir = tempfile::tempdir()?;
    let subs = format!(
        r#"
[[subscriptions]]
id = "orders"
events = ["sale.order.*"]
destinations = ["receiver"]
plugin = "{}"
[subscriptions.config]
min_amount_total = "100"
"#,
        plugin("order_filter").display()
    );
    let gw = TestGateway::start(&config(&subs, &receiver_url), dir.path()).await?;
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let before = delivered.load(Ordering::Relaxed);
    let started = Instant::now();
    blast(&url, 30_000_000, events, 202).await;
    let ingested = started.elapsed().as_secs_f64();
    while delivered.load(Ordering::Relaxed) - before < events {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "deliveries stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    rows.push(format!(
        "| end to end: ingest + plugin + signed delivery | {:.0} deliveries/s | all {events} delivered in {secs:.2} s (ingest done at {ingested:.2} s) |",
        events as f64 / secs
    ));
    gw.stop().await?;

    // 4. Reload: latency from the file write to the new rules being active, and the ingest
    //    throughput per 250 ms window while the configuration is reloaded every second.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("gateway.toml");
    let with_admin = |subs: &str| {
        format!(
            "[server]\nadmin_token = \"bench-admin-token-0123\"\n{}",
            config(subs, &receiver_url)
        )
    };
    std::fs::write(&file, with_admin(""))?;
    let gw =
        TestGateway::start_with(odoo_gateway::reload::ConfigSource::File(file.clone())).await?;
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let status_url = gw.url("/admin/reload");
    let generation = |client: HttpClient, url: String| async move {
        let reply = client
            .send(
                "GET",
                &url,
                &[("authorization", "Bearer bench-admin-token-0123")],
                Vec::new(),
            )
            .await
            .expect("status");
        reply.json()["generation"].as_u64().unwrap_or(0)
    };
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..CONCURRENCY {
        let (sent, stop, url) = (sent.clone(), stop.clone(), url.clone());
        load.push(tokio::spawn(async move {
            let client = HttpClient::new();
            while !stop.load(Ordering::Relaxed) {
                let n = 40_000_000 + sent.fetch_add(1, Ordering::Relaxed);
                let reply = client.post_json(&url, &body(n)).await.expect("post");
                assert_eq!(reply.status, 202);
            }
        }));
    }
    let mut windows = Vec::new();
    let mut latencies = Vec::new();
    let mut last = sent.load(Ordering::Relaxed);
    for round in 0..16 {
        let reload_now = round % 4 == 2;
        let before = generation(client.clone(), status_url.clone()).await;
        let window_start = Instant::now();
        if reload_now {
            let subs = format!(
                "[[subscriptions]]\nid = \"r{round}\"\nevents = [\"nothing.matches\"]\ndestinations = [\"receiver\"]\n"
            );
            std::fs::write(&file, with_admin(&subs))?;
            while generation(client.clone(), status_url.clone()).await == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies.push(window_start.elapsed());
        }
        let left = Duration::from_millis(250).saturating_sub(window_start.elapsed());
        tokio::time::sleep(left).await;
        let now = sent.load(Ordering::Relaxed);
        windows.push((
            (now - last) as f64 / window_start.elapsed().as_secs_f64(),
            reload_now,
        ));
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await?;
    }
    gw.stop().await?;
    let quiet: Vec<f64> = windows.iter().filter(|w| !w.1).map(|w| w.0).collect();
    let busy: Vec<f64> = windows.iter().filter(|w| w.1).map(|w| w.0).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    latencies.sort();
    rows.push(format!(
        "| reload (file written → new rules active) | {:.0} events/s in reload windows vs {:.0} otherwise | median {:.0} ms, max {:.0} ms over {} reloads (file watcher polls every 200 ms) |",
        mean(&busy),
        mean(&quiet),
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
        latencies.len()
    ));

    println!("\n| measurement | throughput | latency / notes |\n|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\npeak RSS of the whole process (gateway + clients + receiver): {:.0} MiB",
        peak_rss_mib()
    );
    Ok(())
}
