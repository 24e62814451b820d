//! What `nats-server` spends per event on the NATS engine's JetStream operations, without the
//! gateway: the same messages (sizes, deduplication ids, consumers and their limits) made by a
//! bare client, for the shape the engine has and for two shapes it could have. Prints a
//! Markdown table; `BENCHMARKS.md` explains the figures.
//!
//! - `consumer fan-out` (the engine today): the event is published to the events stream; a
//!   fan-out consumer pulls it, publishes its job to the work stream and acknowledges it; the
//!   lane's consumer hands the job out, its delivery-log record is published, the job is
//!   acknowledged.
//! - `fan-out at ingest`: the event is published to the events stream on a subject no consumer
//!   reads, then its job, by the publisher; the lane as above.
//! - `no event store`: only the job is published (it carries its event); the lane as above.
//!
//! `cargo build --release -p odoo-gateway-tests --bins`, then
//! `target/release/nats-mix [--events N] [--rounds R]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use bytes::Bytes;
use futures_util::StreamExt as _;
use odoo_gateway_tests::nats::NatsServer;
use tokio::sync::Semaphore;

/// Events in flight at once, as the load generator's 64 clients make them.
const IN_FLIGHT: usize = 64;
/// About what an accepted event is as stored (its JSON with an Odoo order body).
const EVENT_BYTES: usize = 600;
/// About what a delivery-log record is.
const RECORD_BYTES: usize = 300;
/// The lane's `max_ack_pending` (`per_destination_concurrency` by default).
const LANE_LIMIT: usize = 32;

/// One shape of the work plane's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    ConsumerFanOut,
    FanOutAtIngest,
    NoEventStore,
}

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Self::ConsumerFanOut => "consumer fan-out (today)",
            Self::FanOutAtIngest => "fan-out at ingest, event stored",
            Self::NoEventStore => "fan-out at ingest, no event store",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let arg = |name: &str, default: usize| -> anyhow::Result<usize> {
        std::env::args()
            .skip_while(|a| a != name)
            .nth(1)
            .map(|n| n.parse())
            .transpose()
            .with_context(|| format!("{name} takes a number"))
            .map(|n| n.unwrap_or(default))
    };
    let (events, rounds) = (arg("--events", 20_000)?, arg("--rounds", 2)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(measure(events, rounds))
}

async fn measure(events: usize, rounds: usize) -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client);
    let file = |name: &str, subjects: &[&str]| stream::Config {
        name: name.into(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    js.get_or_create_stream(file("events", &["events.*", "events.x.*"]))
        .await?;
    js.get_or_create_stream(stream::Config {
        retention: stream::RetentionPolicy::WorkQueue,
        ..file("work", &["work.>"])
    })
    .await?;
    js.get_or_create_stream(stream::Config {
        max_messages_per_subject: 16,
        ..file("KV_deliveries", &["$KV.deliveries.>"])
    })
    .await?;
    println!(
        "{events} events a round, {IN_FLIGHT} in flight, one subscription; `nats-server` and this client on the same cores.\n"
    );
    println!("| shape | nats-server CPU per event | client CPU per event | events/s |");
    println!("|---|---|---|---|");
    let shapes = [
        Shape::ConsumerFanOut,
        Shape::FanOutAtIngest,
        Shape::NoEventStore,
    ];
    for round in 0..rounds {
        for (i, shape) in shapes.into_iter().enumerate() {
            let lane = format!("r{round}s{i}");
            let (server_before, client_before) = (cpu_seconds(server.pid()), own_cpu());
            let started = Instant::now();
            one_round(&js, shape, &lane, events).await?;
            let elapsed = started.elapsed().as_secs_f64();
            let per_event = |s: f64| s * 1e6 / events as f64;
            println!(
                "| {} | {:.0} µs | {:.0} µs | {:.0} |",
                shape.label(),
                per_event(cpu_seconds(server.pid()) - server_before),
                per_event(own_cpu() - client_before),
                events as f64 / elapsed
            );
        }
    }
    Ok(())
}

/// Runs `events` through `shape` on fresh consumers named after `lane`, until every job is
/// acknowledged.
async fn one_round(
    js: &jetstream::Context,
    shape: Shape,
    lane: &str,
    events: usize,
) -> anyhow::Result<()> {
    let event = Bytes::from(vec![b'e'; EVENT_BYTES]);
    let work = js.get_stream("work").await?;
    let pull = |name: String, filter: String, limit: usize| consumer::pull::Config {
        durable_name: Some(name),
        filter_subject: filter,
        ack_policy: consumer::AckPolicy::Explicit,
        max_ack_pending: limit as i64,
        ..Default::default()
    };
    let job_subject = format!("work.d.{lane}");
    let lane_consumer = work
        .get_or_create_consumer(
            &format!("d_{lane}"),
            pull(format!("d_{lane}"), job_subject.clone(), LANE_LIMIT),
        )
        .await?;
    // The lane: each job handed out gets its delivery-log record (no acknowledgement asked),
    // then its acknowledgement.
    let deliveries = {
        let js = js.clone();
        let lane = lane.to_owned();
        tokio::spawn(async move {
            let mut jobs = lane_consumer
                .stream()
                .max_messages_per_batch(LANE_LIMIT)
                .messages()
                .await?;
            let record = Bytes::from(vec![b'r'; RECORD_BYTES]);
            for n in 0..events {
                let job = jobs.next().await.context("the lane ended")??;
                js.client()
                    .publish(format!("$KV.deliveries.{lane}.{n}.1"), record.clone())
                    .await?;
                job.ack().await.map_err(anyhow::Error::msg)?;
            }
            anyhow::Ok(())
        })
    };
    if shape == Shape::ConsumerFanOut {
        let fan_out = js
            .get_stream("events")
            .await?
            .get_or_create_consumer(
                &format!("fanout_{lane}"),
                pull(format!("fanout_{lane}"), format!("events.{lane}"), 1_000),
            )
            .await?;
        let (js, job_subject) = (js.clone(), job_subject.clone());
        tokio::spawn(async move {
            let mut accepted = fan_out
                .stream()
                .max_messages_per_batch(256)
                .messages()
                .await?;
            for _ in 0..events {
                let message = accepted.next().await.context("the fan-out ended")??;
                let (js, job_subject) = (js.clone(), job_subject.clone());
                tokio::spawn(async move {
                    let id = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    let job = PublishMessage::build()
                        .payload(message.payload.clone())
                        .message_id(format!("{id}.job"));
                    js.send_publish(job_subject, job).await?.await?;
                    message.ack().await.map_err(anyhow::Error::msg)?;
                    anyhow::Ok(())
                });
            }
            anyhow::Ok(())
        });
    }
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    for n in 0..events {
        let slot = slots.clone().acquire_owned().await?;
        let (js, event, job_subject, lane) = (
            js.clone(),
            event.clone(),
            job_subject.clone(),
            lane.to_owned(),
        );
        tokio::spawn(async move {
            let id = format!("{lane}-{n}");
            let publish = |subject: String, id: String| {
                let message = PublishMessage::build()
                    .payload(event.clone())
                    .message_id(id);
                let js = js.clone();
                async move { js.send_publish(subject, message).await?.await }
            };
            let stored = match shape {
                Shape::ConsumerFanOut => publish(format!("events.{lane}"), id).await.map(drop),
                Shape::FanOutAtIngest => {
                    match publish(format!("events.x.{lane}"), id.clone()).await {
                        Ok(_) => publish(job_subject, format!("{id}.job")).await.map(drop),
                        Err(e) => Err(e),
                    }
                }
                Shape::NoEventStore => publish(job_subject, format!("{id}.job")).await.map(drop),
            };
            if let Err(e) = stored {
                eprintln!("a publish failed: {e}");
            }
            drop(slot);
        });
    }
    tokio::time::timeout(Duration::from_secs(600), deliveries)
        .await
        .context("the round did not finish within 10 minutes")???;
    Ok(())
}

/// User and system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
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
    (ticks(11) + ticks(12)) / 100.0
}

/// This process's CPU seconds so far.
fn own_cpu() -> f64 {
    cpu_seconds(std::process::id())
}
