//! Crash safety: kill -9 the real gateway process while it ingests and delivers thousands of
//! events, restart it, and check that every acknowledged event is delivered at least once, on
//! both engines of the work plane.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::harness::{Config, Engine, free_port};
use odoo_gateway_tests::process::ProcessGateway;
use odoo_gateway_tests::{HttpClient, on_both_engines};

const TOKEN: &str = "crash-token-0123456789";
const EVENTS_BEFORE_KILL: usize = 1500;
const EVENTS_TOTAL: usize = 3000;

async fn start(config: &std::path::Path, port: u16) -> ProcessGateway {
    ProcessGateway::start(env!("CARGO_BIN_EXE_gateway-under-test"), config, port).await
}

/// Posts events `range` with `concurrency` workers; returns the acknowledged event ids.
/// Stops quietly when the gateway goes away (the kill).
async fn produce(port: u16, range: std::ops::Range<usize>, acked: Arc<Mutex<Vec<String>>>) {
    let next = Arc::new(Mutex::new(range));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (next, acked) = (next.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            let client = HttpClient::new();
            let url = format!("http://127.0.0.1:{port}/v1/odoo/odoo/{TOKEN}");
            loop {
                let Some(n) = next.lock().expect("lock").next() else { return };
                let body = format!(r#"{{"_action": "Order saved(#1)", "_id": {n}, "_model": "sale.order", "id": {n}, "name": "S{n:05}"}}"#);
                match client.post_json(&url, body.as_bytes()).await {
                    Ok(reply) if reply.status == 202 => {
                        let id = reply.json()["id"].as_str().expect("id").to_owned();
                        acked.lock().expect("lock").push(id);
                    }
                    Ok(reply) => panic!("unexpected answer {}: {:?}", reply.status, reply.body),
                    Err(_) => return,
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

on_both_engines!(
    kill_9_loses_no_acknowledged_event_on_sled,
    kill_9_loses_no_acknowledged_event_on_nats,
    kill_9_loses_no_acknowledged_event
);

async fn kill_9_loses_no_acknowledged_event(engine: &Engine<'_>) {
    let inbox = Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    let text = Config::on(engine)
        .delivery("retries = 50")
        .backoff(&["100ms"])
        .source("odoo", TOKEN, "")
        .destination(
            "receiver",
            inbox.url("/hook"),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "",
        )
        .subscription("all", &["*"], &["receiver"], "")
        .toml();
    std::fs::write(&config, text).expect("write config");

    let port = free_port();
    let mut gateway = start(&config, port).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let producer = tokio::spawn(produce(port, 0..EVENTS_TOTAL, acked.clone()));
    // Kill in the middle of ingest (and of deliveries, which run alongside).
    while acked.lock().expect("lock").len() < EVENTS_BEFORE_KILL {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gateway.kill_9();
    producer.await.expect("producer");
    let acked_before = acked.lock().expect("lock").len();
    let delivered_before = inbox.received().len();
    eprintln!("killed after {acked_before} acknowledged events, {delivered_before} deliveries");
    assert!(acked_before >= EVENTS_BEFORE_KILL);

    // Restart on the same data and send the rest.
    let mut gateway = start(&config, port).await;
    // Fresh numbers, so that no body repeats one sent before the kill (that would be deduplicated).
    produce(
        port,
        EVENTS_TOTAL..2 * EVENTS_TOTAL - acked_before,
        acked.clone(),
    )
    .await;
    let acked: HashSet<String> = acked.lock().expect("lock").iter().cloned().collect();

    let deadline = Instant::now() + Duration::from_secs(120);
    let counts = loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in inbox.received() {
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json body");
            *counts
                .entry(body["id"].as_str().expect("id").to_owned())
                .or_default() += 1;
        }
        let missing = acked.iter().filter(|id| !counts.contains_key(*id)).count();
        if missing == 0 {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged events were never delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "acknowledged {}, delivered {} distinct, {duplicates} duplicate deliveries (at-least-once)",
        acked.len(),
        counts.len()
    );

    // A graceful stop after all that: SIGTERM, exit 0.
    let pid = gateway.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let status = gateway.child.wait().expect("wait");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}
