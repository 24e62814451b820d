//! Load for the benchmarks: Odoo order bodies and concurrent keep-alive posters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::HttpClient;

/// Keep-alive clients the load generators run.
pub const CONCURRENCY: usize = 64;

/// A unique native Odoo body for a confirmed order (≈240 bytes).
pub fn body(n: usize) -> Vec<u8> {
    format!(
        r#"{{"_action": "SO confirmed(#57)", "_id": {n}, "_model": "sale.order", "amount_total": 1150.0, "commitment_date": false, "date_order": "2024-05-14 09:12:33", "id": {n}, "name": "S{n:05}", "order_line": [31, 32], "partner_id": 9, "state": "sale"}}"#
    )
    .into_bytes()
}

/// A unique rich Odoo body for a confirmed order, its three lines embedded (the fixture
/// `odoo/rich/sale.order.confirmed.json` under another id and name; ≈2.5 KB).
pub fn rich_body(n: usize) -> Vec<u8> {
    odoo_gateway_fixtures::RICH_ORDER
        .replacen("\"_id\": 12,", &format!("\"_id\": {n},"), 1)
        .replacen("\"id\": 12,", &format!("\"id\": {n},"), 1)
        .replacen(
            "\"name\": \"S00012\",",
            &format!("\"name\": \"S{n:05}\","),
            1,
        )
        .into_bytes()
}

/// The `n`th of a load whose events are about `records` orders: the body of the order `n %
/// records`, told apart by its name (so no two events are one).
pub fn record_body(n: usize, records: usize) -> Vec<u8> {
    let id = n % records;
    format!(
        r#"{{"_action": "SO confirmed(#57)", "_id": {id}, "_model": "sale.order", "amount_total": 1150.0, "id": {id}, "name": "S{n:07}", "partner_id": 9, "state": "sale"}}"#
    )
    .into_bytes()
}

/// The `p` quantile of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Posts events `first..first + count` with [`CONCURRENCY`] clients, each answer expected to
/// be `expect`; returns the sorted latencies.
pub async fn blast(url: &str, first: usize, count: usize, expect: u16) -> Vec<Duration> {
    blast_bodies(url, first, count, expect, body).await
}

/// [`blast`] with the bodies `make` gives.
pub async fn blast_bodies(
    url: &str,
    first: usize,
    count: usize,
    expect: u16,
    make: fn(usize) -> Vec<u8>,
) -> Vec<Duration> {
    let next = Arc::new(AtomicUsize::new(first));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, url) = (next.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let client = HttpClient::new();
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= first + count {
                    return latencies;
                }
                let started = Instant::now();
                let reply = client.post_json(&url, &make(n)).await.expect("post");
                assert_eq!(reply.status, expect, "{:?}", reply.body);
                latencies.push(started.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all.sort();
    all
}

/// User and system CPU time of process `pid` so far, in seconds (Linux's `/proc/<pid>/stat`).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}
