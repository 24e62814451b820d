//! End-to-end benchmark against the release binary, as a user runs it, with the ceiling
//! measured in the same run. Prints a Markdown table.
//!
//! This process is the load generator and the counting receiver. The gateway runs as its own
//! process (`target/release/odoo-gateway serve`) on the shipped defaults: only sources,
//! destinations, subscriptions and the SSRF allowance for the loopback receiver are
//! configured. A bare hyper relay (receive a POST, forward it to the receiver, answer) also
//! runs as its own process (this binary with `--relay`) and is measured first, for the ratio.
//!
//! Scenarios: end to end with no plugin, with `order-filter` and with `shipper-router-js`;
//! idle latency of one event;
//! a plain subscription's 500 deliveries beside each hostile plugin mode; other apps'
//! throughput while one app's ten subscriptions point at a receiver that never answers; and
//! (`engines`) the sled engine against the NATS engine with one and two instances.
//!
//! `cargo build --release -p odoo-gateway -p odoo-gateway-tests --bins`, then
//! `target/release/e2e-bench [--events N]` (or `./dev bench`; `E2E_GATEWAY_BIN` names another
//! gateway binary to measure, e.g. an earlier version's build); `--soak N` instead runs N
//! events with a short retention and samples disk and memory over time.

#[path = "e2e-bench/soak.rs"]
mod soak;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use odoo_gateway_tests::load::{
    CONCURRENCY, blast, blast_bodies, body, cpu_seconds, percentile, rich_body,
};
use odoo_gateway_tests::{HttpClient, plugin, workspace};

const TOKEN: &str = "bench-token-0123456789";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HOSTILE_EVENTS: usize = 500;
const HOSTILE_MODES: [&str; 4] = ["loop", "grow", "many", "huge-body"];
/// Extra `[storage]` settings from `--storage`.
static STORAGE_EXTRA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// Runs per noisy-neighbour row (the median is reported).
const NEIGHBOUR_RUNS: usize = 5;
/// Runs of each tenant-fairness row (the median is reported).
const FAIR_RUNS: usize = 3;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.get(1).map(String::as_str) == Some("--relay") {
        let (listen, forward) = (args[2].clone(), args[3].clone());
        return rt.block_on(relay(listen, forward));
    }
    let number = |flag: &str| -> anyhow::Result<Option<usize>> {
        args.iter()
            .skip_while(|a| *a != flag)
            .nth(1)
            .map(|n| n.parse())
            .transpose()
            .with_context(|| format!("{flag} takes a number"))
    };
    if let Some(events) = number("--soak")? {
        return rt.block_on(async {
            let (receiver, _, counts) = receivers().await?;
            soak::soak(&receiver, &counts, events).await
        });
    }
    let events = number("--events")?.unwrap_or(20_000);
    // `--only end-to-end,neighbours,fairness`: a subset of the scenarios (the relay always runs).
    let only: Option<Vec<String>> = args
        .iter()
        .skip_while(|a| *a != "--only")
        .nth(1)
        .map(|list| list.split(',').map(str::to_owned).collect());
    let wanted = move |scenario: &str| {
        only.as_ref()
            .is_none_or(|o| o.iter().any(|s| s == scenario))
    };
    // `--storage 'commit_delay = "2ms"'`: extra `[storage]` settings, to compare with the
    // defaults (the figures in BENCHMARKS.md use none).
    if let Some(extra) = args.iter().skip_while(|a| *a != "--storage").nth(1) {
        let _ = STORAGE_EXTRA.set(extra.clone());
    }
    rt.block_on(bench(events, &wanted))
}

/// A bare relay: every POST is forwarded to `forward` and answered once that answered.
async fn relay(listen: String, forward: String) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let client = HttpClient::new();
    loop {
        let (stream, _) = listener.accept().await?;
        let (client, forward) = (client.clone(), forward.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (client, forward) = (client.clone(), forward.clone());
                async move {
                    let body = req.into_body().collect().await.map(|b| b.to_bytes());
                    let status = match body {
                        Ok(body) => match client.post_json(&forward, &body).await {
                            Ok(reply) => reply.status,
                            Err(_) => 502,
                        },
                        Err(_) => 400,
                    };
                    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// What the receiver counted, by path.
#[derive(Clone, Default)]
struct Counts {
    by_path: Arc<Mutex<HashMap<String, usize>>>,
}

impl Counts {
    fn get(&self, path: &str) -> usize {
        self.by_path
            .lock()
            .expect("counts")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    async fn wait(&self, path: &str, n: usize, limit: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        while self.get(path) < n {
            ensure!(
                started.elapsed() < limit,
                "only {} of {n} deliveries to {path} within {limit:?}",
                self.get(path)
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Ok(started.elapsed())
    }
}

/// A receiver that answers 200 and counts by path; and one that accepts and never answers.
async fn receivers() -> anyhow::Result<(String, String, Counts)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counts = Counts::default();
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let c = c.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let _ = req.into_body().collect().await;
                        *c.by_path.lock().expect("counts").entry(path).or_default() += 1;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hole = blackhole.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = blackhole.accept().await {
            held.push(stream); // accepted, never read, never answered
        }
    });
    Ok((format!("http://{addr}"), format!("http://{hole}"), counts))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn wait_up(url: &str) -> anyhow::Result<()> {
    let client = HttpClient::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.get(url).await.is_ok_and(|r| r.status == 200) {
        ensure!(Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A child process, killed when dropped.
struct Process {
    child: Child,
    base: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Peak resident memory (VmHWM) in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }
}

/// The gateway under test: `target/release/odoo-gateway`, or the binary `E2E_GATEWAY_BIN`
/// names (another version's build, measured in the same run for a comparison).
fn gateway_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("E2E_GATEWAY_BIN").map_or_else(
        || workspace().join("target/release/odoo-gateway"),
        PathBuf::from,
    );
    if !path.exists() {
        bail!(
            "{} is missing: cargo build --release -p odoo-gateway",
            path.display()
        );
    }
    Ok(path)
}

/// Starts the release gateway on `config` (shipped defaults for everything it leaves out).
async fn gateway(config: &str) -> anyhow::Result<Process> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config)?;
    let port = odoo_gateway_tests::harness::free_port();
    let child = Command::new(gateway_binary()?)
        .args(["serve", "--config"])
        .arg(&file)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the gateway")?;
    let base = format!("http://127.0.0.1:{port}");
    let process = Process {
        child,
        base: base.clone(),
        _dir: Some(dir),
    };
    wait_up(&format!("{base}/readyz")).await?;
    Ok(process)
}

/// The configuration: a source, the given destinations and subscriptions, nothing tuned.
fn config(destinations: &[(&str, String)], subscriptions: &str) -> String {
    config_on("[storage]\npath = \"data\"\n", destinations, subscriptions)
}

/// [`config`] with its own `[storage]` table (the engine).
fn config_on(storage: &str, destinations: &[(&str, String)], subscriptions: &str) -> String {
    let extra = STORAGE_EXTRA.get().map_or("", String::as_str);
    let mut out = format!(
        "{storage}{extra}\n\n# The receivers run on loopback.\n[delivery.client.ssrf]\nallow = [\"127.0.0.0/8\"]\n[delivery.client.app_ssrf]\nallow = [\"127.0.0.0/8\"]\n\n[[sources]]\nname = \"odoo\"\ntokens = [\"{TOKEN}\"]\n"
    );
    for (name, url) in destinations {
        out.push_str(&format!(
            "\n[[destinations]]\nname = \"{name}\"\nurl = \"{url}\"\nsecrets = [\"{SECRET}\"]\n"
        ));
    }
    out.push_str(subscriptions);
    out
}

fn subscription(id: &str, destination: &str, plugin_block: &str) -> String {
    format!(
        "\n[[subscriptions]]\nid = \"{id}\"\nevents = [\"sale.order.*\"]\ndestinations = [\"{destination}\"]\n{plugin_block}"
    )
}

fn order_filter() -> String {
    format!(
        "plugin = \"{}\"\n[subscriptions.config]\nmin_amount_total = \"100\"\n",
        plugin("order_filter").display()
    )
}

/// The JavaScript shipper-router with both lines of the rich order routed to the receiver: one
/// delivery, and so one plugin call, per event.
fn shipper_router_js() -> String {
    format!(
        "plugin = \"{}\"\n[subscriptions.config]\n\"product.FURN_8888\" = \"receiver\"\n\"route.6\" = \"receiver\"\n",
        plugin("shipper_router_js").display()
    )
}

fn hostile(mode: &str) -> String {
    format!(
        "plugin = \"{}\"\n[subscriptions.config]\nmode = \"{mode}\"\n",
        plugin("hostile_plugin").display()
    )
}

struct Row(String, String, String);

async fn bench(events: usize, wanted: &dyn Fn(&str) -> bool) -> anyhow::Result<()> {
    let (receiver, blackhole, counts) = receivers().await?;
    let mut rows = Vec::new();

    // The ceiling: a bare relay in its own process, same load, same receiver.
    let relay_port = odoo_gateway_tests::harness::free_port();
    let relay = Process {
        child: Command::new(std::env::current_exe()?)
            .args([
                "--relay",
                &format!("127.0.0.1:{relay_port}"),
                &format!("{receiver}/relay"),
            ])
            .spawn()
            .context("starting the relay")?,
        base: format!("http://127.0.0.1:{relay_port}"),
        _dir: None,
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let relay_url = format!("{}/", relay.base);
    blast(&relay_url, 0, 2_000, 200).await;
    let started = Instant::now();
    blast(&relay_url, 0, events, 200).await;
    let relay_rate = events as f64 / started.elapsed().as_secs_f64();
    rows.push(Row(
        "bare hyper relay (receive, forward, answer)".into(),
        format!("{relay_rate:.0} req/s"),
        "the ceiling for this machine and load".into(),
    ));
    drop(relay);

    // End to end on the defaults, without and with a plugin.
    let end_to_end = if wanted("end-to-end") { 3 } else { 0 };
    let native: fn(usize) -> Vec<u8> = body;
    for (label, plugin_block, path, make) in [
        (
            "end to end, defaults, no plugin",
            String::new(),
            "/plain",
            native,
        ),
        (
            "end to end, defaults, order-filter",
            order_filter(),
            "/filtered",
            native,
        ),
        (
            "end to end, defaults, shipper-router-js (rich orders, one plugin call per delivery)",
            shipper_router_js(),
            "/routed",
            rich_body,
        ),
    ]
    .into_iter()
    .take(end_to_end)
    {
        let cfg = config(
            &[("receiver", format!("{receiver}{path}"))],
            &subscription("orders", "receiver", &plugin_block),
        );
        let gw = gateway(&cfg).await?;
        let url = format!("{}/v1/odoo/odoo/{TOKEN}", gw.base);
        let before = counts.get(path);
        let started = Instant::now();
        let acks = blast_bodies(&url, 1_000_000, events, 202, make).await;
        let ingest = started.elapsed();
        counts
            .wait(path, before + events, Duration::from_secs(600))
            .await?;
        let total = started.elapsed();
        let rate = events as f64 / total.as_secs_f64();
        rows.push(Row(
            label.into(),
            format!(
                "{rate:.0} deliveries/s ({:.0} % of the relay)",
                100.0 * rate / relay_rate
            ),
            format!(
                "ingest {:.0}/s, ack p50 {:.1} ms p99 {:.1} ms; gateway peak RSS {:.0} MiB",
                events as f64 / ingest.as_secs_f64(),
                ms(percentile(&acks, 0.5)),
                ms(percentile(&acks, 0.99)),
                gw.peak_rss_mib()
            ),
        ));
        if plugin_block.is_empty() {
            // Idle latency: one event at a time, from the POST to the receiver.
            let client = HttpClient::new();
            let mut lat = Vec::new();
            for n in 0..200 {
                let before = counts.get(path);
                let started = Instant::now();
                let reply = client.post_json(&url, &body(5_000_000 + n)).await?;
                ensure!(reply.status == 202, "{:?}", reply.body);
                counts
                    .wait(path, before + 1, Duration::from_secs(10))
                    .await?;
                lat.push(started.elapsed());
            }
            lat.sort();
            rows.push(Row(
                "idle: one event, ingest to receiver".into(),
                "-".into(),
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms over 200 events",
                    ms(percentile(&lat, 0.5)),
                    ms(percentile(&lat, 0.99))
                ),
            ));
        }
    }

    // Noisy neighbour: a plain subscription's 500 deliveries beside a hostile plugin; the
    // median of a few runs each (a run is a fraction of a second: one hiccup would decide).
    // Besides the plain subscription alone, a well-behaved plugin (`ok`) is measured too: what
    // any second subscription costs, hostile or not.
    let mut baseline = None;
    let mut benign = None;
    let modes = if wanted("neighbours") {
        2 + HOSTILE_MODES.len()
    } else {
        0
    };
    for mode in ["none", "ok"].into_iter().chain(HOSTILE_MODES).take(modes) {
        let mut runs = Vec::new();
        let mut peak_rss = 0f64;
        for run in 0..NEIGHBOUR_RUNS {
            let path = format!("/neighbour-{mode}-{run}");
            let mut subs = subscription("plain", "plain", "");
            if mode != "none" {
                subs.push_str(&subscription("hostile", "other", &hostile(mode)));
            }
            let cfg = config(
                &[
                    ("plain", format!("{receiver}{path}")),
                    ("other", format!("{receiver}/hostile")),
                ],
                &subs,
            );
            let gw = gateway(&cfg).await?;
            let url = format!("{}/v1/odoo/odoo/{TOKEN}", gw.base);
            let started = Instant::now();
            blast(&url, 7_000_000, HOSTILE_EVENTS, 202).await;
            counts
                .wait(&path, HOSTILE_EVENTS, Duration::from_secs(600))
                .await?;
            runs.push(started.elapsed());
            peak_rss = peak_rss.max(gw.peak_rss_mib());
        }
        runs.sort();
        let took = runs[runs.len() / 2];
        let base = *baseline.get_or_insert(took);
        if mode == "ok" {
            benign = Some(took);
        }
        let against_benign = benign
            .filter(|_| !["none", "ok"].contains(&mode))
            .map(|b| format!(", {:.2}× beside `ok`", took.as_secs_f64() / b.as_secs_f64()))
            .unwrap_or_default();
        rows.push(Row(
            format!(
                "plain subscription, {HOSTILE_EVENTS} deliveries, beside hostile plugin `{mode}`"
            ),
            format!("{:.2} s", took.as_secs_f64()),
            format!(
                "{:.2}× the time without a neighbour{against_benign} (median of {NEIGHBOUR_RUNS}); gateway peak RSS {peak_rss:.0} MiB",
                took.as_secs_f64() / base.as_secs_f64(),
            ),
        ));
    }

    // Tenant fairness: one app's ten subscriptions to a receiver that never answers, against
    // app `good` alone and against the same ten subscriptions to a receiver that answers (the
    // cost of ten more subscriptions per event, without the dead receiver).
    let fair_events = (events / 4).max(1_000);
    let mut rates = Vec::new();
    let fairness = if wanted("fairness") { 3 } else { 0 };
    for evil in [None, Some(&receiver), Some(&blackhole)]
        .into_iter()
        .take(fairness)
    {
        let path = format!("/fair-{}", rates.len());
        let mut subs = subscription("app.good.orders", "good", "");
        let mut destinations = vec![("good", format!("{receiver}{path}"))];
        let names: Vec<String> = (0..10).map(|i| format!("evil{i}")).collect();
        if let Some(evil) = evil {
            for name in &names {
                destinations.push((name.as_str(), format!("{evil}/evil-{name}")));
                subs.push_str(&subscription(&format!("app.evil.{name}"), name, ""));
            }
        }
        // The median of FAIR_RUNS runs, each on a fresh gateway: one run takes well under a
        // second at the standard size, so a single hiccup would move it.
        let mut runs = Vec::new();
        let mut peak_rss = 0f64;
        for run in 0..FAIR_RUNS {
            let path = format!("{path}-{run}");
            let destinations: Vec<(&str, String)> = destinations
                .iter()
                .map(|(name, url)| {
                    let url = if *name == "good" {
                        format!("{receiver}{path}")
                    } else {
                        url.clone()
                    };
                    (*name, url)
                })
                .collect();
            let gw = gateway(&config(&destinations, &subs)).await?;
            let url = format!("{}/v1/odoo/odoo/{TOKEN}", gw.base);
            let started = Instant::now();
            blast(&url, 9_000_000 + run * 1_000_000, fair_events, 202).await;
            counts
                .wait(&path, fair_events, Duration::from_secs(600))
                .await?;
            runs.push(fair_events as f64 / started.elapsed().as_secs_f64());
            peak_rss = peak_rss.max(gw.peak_rss_mib());
        }
        runs.sort_by(f64::total_cmp);
        let rate = runs[runs.len() / 2];
        rates.push(rate);
        let (label, notes) = match rates.len() {
            1 => ("app `good` alone".to_owned(), String::new()),
            2 => (
                "app `good` while app `evil` has 10 subscriptions to a receiver that answers"
                    .to_owned(),
                format!("{:.0} % of `good` alone; ", 100.0 * rate / rates[0]),
            ),
            _ => (
                "app `good` while app `evil` has 10 subscriptions to a receiver that never answers"
                    .to_owned(),
                format!(
                    "{:.0} % of `good` alone, {:.0} % of `good` beside a healthy `evil`; ",
                    100.0 * rate / rates[0],
                    100.0 * rate / rates[1]
                ),
            ),
        };
        rows.push(Row(
            label,
            format!("{rate:.0} deliveries/s"),
            format!("{notes}median of {FAIR_RUNS}; gateway peak RSS {peak_rss:.0} MiB"),
        ));
    }

    if wanted("engines") {
        engines(&receiver, &counts, events, relay_rate, &mut rows).await?;
    }
    if wanted("ordering") {
        ordering(
            &receiver, &blackhole, &counts, events, relay_rate, &mut rows,
        )
        .await?;
    }

    println!(
        "\n{events} events (≈240 B Odoo order bodies), {CONCURRENCY} concurrent clients, load generator and receiver in this process, gateway and relay each in their own; {} cores.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| measurement | result | notes |\n|---|---|---|");
    for Row(a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
    Ok(())
}

/// The same end-to-end load (no plugin, one receiver) on the sled engine, on the NATS engine
/// with one instance, and with two instances sharing one JetStream server, the load split
/// between them; with the CPU each event cost the gateways and the NATS server.
async fn engines(
    receiver: &str,
    counts: &Counts,
    events: usize,
    relay_rate: f64,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    for (label, on_nats, instances) in [
        ("engines: sled, 1 instance", false, 1usize),
        ("engines: nats, 1 instance", true, 1),
        ("engines: nats, 2 instances", true, 2),
    ] {
        let server = if on_nats {
            Some(odoo_gateway_tests::nats::NatsServer::start()?)
        } else {
            None
        };
        let storage = match &server {
            Some(s) => format!(
                "[storage]\npath = \"data\"\nengine = \"nats\"\n[storage.nats]\nurls = [\"{}\"]\nbucket_prefix = \"bench\"\n",
                s.url()
            ),
            None => "[storage]\npath = \"data\"\n".to_owned(),
        };
        let path = format!(
            "/engine-{}-{instances}",
            if on_nats { "nats" } else { "sled" }
        );
        let cfg = config_on(
            &storage,
            &[("receiver", format!("{receiver}{path}"))],
            &subscription("orders", "receiver", ""),
        );
        let mut gateways = Vec::new();
        for _ in 0..instances {
            gateways.push(gateway(&cfg).await?);
        }
        let pids: Vec<u32> = gateways.iter().map(|g| g.child.id()).collect();
        let cpu = |pids: &[u32]| pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
        let nats_pid = server.as_ref().map(|s| s.pid());
        let (gw_before, nats_before) = (cpu(&pids), nats_pid.map_or(0.0, cpu_seconds));
        let share = events / instances;
        let total = share * instances;
        let before = counts.get(&path);
        let started = Instant::now();
        let loads: Vec<_> = gateways
            .iter()
            .enumerate()
            .map(|(i, gw)| {
                let url = format!("{}/v1/odoo/odoo/{TOKEN}", gw.base);
                tokio::spawn(async move { blast(&url, 3_000_000 + i * share, share, 202).await })
            })
            .collect();
        let mut acks = Vec::new();
        for load in loads {
            acks.extend(load.await?);
        }
        acks.sort();
        let ingest = started.elapsed();
        counts
            .wait(&path, before + total, Duration::from_secs(600))
            .await?;
        let elapsed = started.elapsed();
        let gw_cpu = cpu(&pids) - gw_before;
        let nats_cpu = nats_pid.map_or(0.0, cpu_seconds) - nats_before;
        let rate = total as f64 / elapsed.as_secs_f64();
        let per_event = |seconds: f64| seconds * 1e6 / total as f64;
        rows.push(Row(
            label.into(),
            format!(
                "{rate:.0} deliveries/s ({:.0} % of the relay)",
                100.0 * rate / relay_rate
            ),
            format!(
                "CPU per event: gateways {:.0} µs, nats-server {:.0} µs; ingest {:.0}/s, ack p50 {:.1} ms p99 {:.1} ms",
                per_event(gw_cpu),
                per_event(nats_cpu),
                total as f64 / ingest.as_secs_f64(),
                ms(percentile(&acks, 0.5)),
                ms(percentile(&acks, 0.99)),
            ),
        ));
    }
    Ok(())
}

/// Records the ordering rows' events are about: a record's events wait for each other.
const RECORDS: usize = 1_000;

fn over_records(n: usize) -> Vec<u8> {
    odoo_gateway_tests::load::record_body(n, RECORDS)
}

/// Ordered delivery's cost: the same load (events about 1,000 records) to one subscription
/// without and with `ordering = "record"`; then a plain subscription's throughput beside an
/// ordered one whose receiver never answers (every key of it blocked), against the first row.
async fn ordering(
    receiver: &str,
    blackhole: &str,
    counts: &Counts,
    events: usize,
    relay_rate: f64,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let mut unordered = None;
    for (label, ordering, stuck, path) in [
        (
            "ordering: 1,000 records, unordered",
            "",
            false,
            "/unordered",
        ),
        (
            "ordering: 1,000 records, ordering = \"record\"",
            "ordering = \"record\"\n",
            false,
            "/ordered",
        ),
        (
            "ordering: a plain subscription beside an ordered one whose receiver never answers",
            "",
            true,
            "/beside",
        ),
    ] {
        let mut subs = subscription("orders", "receiver", ordering);
        let mut destinations = vec![("receiver", format!("{receiver}{path}"))];
        if stuck {
            destinations.push(("stuck", format!("{blackhole}/stuck")));
            subs.push_str(&subscription("stuck", "stuck", "ordering = \"record\"\n"));
        }
        let gw = gateway(&config(&destinations, &subs)).await?;
        let url = format!("{}/v1/odoo/odoo/{TOKEN}", gw.base);
        let before = counts.get(path);
        let started = Instant::now();
        let acks = odoo_gateway_tests::load::blast_bodies(&url, 0, events, 202, over_records).await;
        counts
            .wait(path, before + events, Duration::from_secs(600))
            .await?;
        let rate = events as f64 / started.elapsed().as_secs_f64();
        let compared = match unordered {
            None => {
                unordered = Some(rate);
                String::new()
            }
            Some(base) => format!("{:.0} % of the unordered row; ", 100.0 * rate / base),
        };
        rows.push(Row(
            label.into(),
            format!(
                "{rate:.0} deliveries/s ({:.0} % of the relay)",
                100.0 * rate / relay_rate
            ),
            format!(
                "{compared}ack p50 {:.1} ms p99 {:.1} ms; gateway peak RSS {:.0} MiB",
                ms(percentile(&acks, 0.5)),
                ms(percentile(&acks, 0.99)),
                gw.peak_rss_mib()
            ),
        ));
    }
    Ok(())
}
