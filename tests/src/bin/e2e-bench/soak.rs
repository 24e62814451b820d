//! The soak run: many events through the release gateway with a short retention, sampling
//! disk usage, resident memory and throughput every few seconds. The disk must level off.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use odoo_gateway_tests::HttpClient;

use super::{CONCURRENCY, Counts, TOKEN, body, config, gateway, subscription};

/// Time between two samples.
const SAMPLE_EVERY: Duration = Duration::from_secs(30);
/// The offered load: a steady rate below what the gateway delivers on this machine, so the
/// run shows the steady state (a rate above it only grows the backlog).
const EVENTS_PER_SECOND: f64 = 1_500.0;
const ADMIN: &str = "soak-admin-token-0123456789";

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Runs `events` events through a gateway keeping finished events for 20 s, and prints one
/// row per sample.
pub(super) async fn soak(receiver: &str, counts: &Counts, events: usize) -> anyhow::Result<()> {
    let path = "/soak";
    let mut cfg = config(
        &[("receiver", format!("{receiver}{path}"))],
        &subscription("orders", "receiver", ""),
    );
    cfg = cfg.replacen(
        "[storage]\npath = \"data\"\n",
        &format!(
            "[server]\nadmin_token = \"{ADMIN}\"\n\n[storage]\npath = \"data\"\nretention = \"20s\"\ndedup_window = \"10s\"\nmaintenance_interval = \"5s\"\n"
        ),
        1,
    );
    let gw = gateway(&cfg).await?;
    let data = gw._dir.as_ref().map(|d| d.path().join("data"));
    let pid = gw.child.id();
    let url = format!("{}/v1/odoo/odoo/{TOKEN}", gw.base);
    let status_url = format!("{}/admin/status", gw.base);
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    let start = tokio::time::Instant::now();
    for _ in 0..CONCURRENCY {
        let (next, url) = (next.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let client = HttpClient::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= events {
                    return;
                }
                let due = start + Duration::from_secs_f64(n as f64 / EVENTS_PER_SECOND);
                tokio::time::sleep_until(due).await;
                let reply = client.post_json(&url, &body(50_000_000 + n)).await;
                assert!(reply.is_ok_and(|r| r.status == 202), "event {n} refused");
            }
        }));
    }
    println!(
        "\nsoak: {events} events offered at {EVENTS_PER_SECOND:.0}/s, retention 20 s, maintenance every 5 s\n"
    );
    println!(
        "| time | posted | delivered | rate (deliveries/s) | database on disk | gateway RSS | last maintenance round |"
    );
    println!("|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let admin = HttpClient::new();
    let mut last = (Duration::ZERO, 0usize);
    loop {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let elapsed = started.elapsed();
        let delivered = counts.get(path);
        let rate = (delivered - last.1) as f64 / (elapsed - last.0).as_secs_f64();
        last = (elapsed, delivered);
        let maintenance = admin
            .send(
                "GET",
                &status_url,
                &[("authorization", &format!("Bearer {ADMIN}"))],
                Vec::new(),
            )
            .await
            .map(|r| r.json()["maintenance"].clone())
            .unwrap_or_default();
        println!(
            "| {:.0} s | {} | {delivered} | {rate:.0} | {:.1} MiB | {:.0} MiB | pruned {} events in {} ms |",
            elapsed.as_secs_f64(),
            next.load(Ordering::Relaxed).min(events),
            data.as_deref().map_or(0, dir_bytes) as f64 / (1 << 20) as f64,
            rss_mib(pid),
            maintenance["pruned"]["events"],
            maintenance["took_ms"],
        );
        if delivered >= events {
            break;
        }
        anyhow::ensure!(
            elapsed < Duration::from_secs(3 * 3600),
            "the soak run did not finish"
        );
    }
    for c in clients {
        c.await?;
    }
    println!(
        "\nall {events} delivered in {:.0} s ({:.0}/s on average); gateway peak RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        events as f64 / started.elapsed().as_secs_f64(),
        gw.peak_rss_mib()
    );
    Ok(())
}
