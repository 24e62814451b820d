//! Storage costs on the ingest path: accepting an event (the sled transaction that dedups,
//! stores and queues it) and the group-committed flush, at 1 and 64 concurrent writers.
//!
//! `cargo bench -p odoo-gateway --bench store` prints a table.

use std::sync::Arc;
use std::time::Instant;

use odoo_gateway::event::Event;
use odoo_gateway::store::{DedupKey, Store};

const BODY: &str = r#"{"_action": "SO confirmed(#57)", "_id": 12, "_model": "sale.order", "amount_total": 1150.0, "commitment_date": false, "date_order": "2024-05-14 09:12:33", "id": 12, "name": "S00012", "order_line": [31, 32], "partner_id": 9, "state": "sale"}"#;

fn event(n: usize) -> (Event, DedupKey) {
    let payload = BODY.replace("\"_id\": 12", &format!("\"_id\": {n}"));
    let dedup = DedupKey::body("odoo", payload.as_bytes(), 600_000);
    let event = Event {
        id: format!("evt_{n:020}"),
        source: "odoo".into(),
        model: "sale.order".into(),
        action: "confirmed".into(),
        record_id: Some(n as i64),
        received_at_ms: 1,
        seq: 0,
        payload,
        headers: vec![("content-type".into(), "application/json".into())],
    };
    (event, dedup)
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let n = 20_000;
    let events: Vec<_> = (0..n).map(event).collect();

    let started = Instant::now();
    for (e, d) in &events {
        store.accept(e, d).expect("accept");
    }
    let accept_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(store);
    let mut rows = vec![format!(
        "| accept (dedup check, event, backlog entry, dedup claim) | {accept_us:.1} µs | {:.0}/s |",
        1e6 / accept_us
    )];
    for writers in [1usize, 64] {
        let total = if writers == 1 { 500 } else { 20_000 };
        let started = Instant::now();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..writers {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..total / writers {
                        let (e, d) = event(1_000_000 + w * 1_000_000 + i);
                        store.accept(&e, &d).expect("accept");
                        store.durable().await.expect("durable");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
        });
        let secs = started.elapsed().as_secs_f64();
        rows.push(format!(
            "| accept + durable, {writers} concurrent writer(s) | {:.1} µs per event | {:.0}/s |",
            secs * 1e6 / total as f64,
            total as f64 / secs
        ));
    }
    println!("\n| operation | cost | rate |\n|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
