//! What `nats-server` spends per event on the NATS engine's JetStream operations, without the
//! gateway: the same messages (sizes, deduplication ids, consumers and their limits) made by a
//! bare client, for the shape the engine has and for two shapes it could have. Prints a
//! Markdown table; `BENCHMARKS.md` explains the figures.
//!
//! - `consumer fan-out` (the engine today): the event is published to the events stream; a
//!   fan-out consumer pulls it (batches of up to 256), publishes its job to the work stream and
//!   acknowledges it; the lane's consumer hands the job out (a pull for as many jobs as the
//!   lane has free slots, as the engine's lanes pull), its delivery-log record is published,
//!   the job is acknowledged.
//! - `fan-out at ingest`: the event is published to the events stream on a subject no consumer
//!   reads, then its job, by the publisher; the lane as above.
//! - `no event store`: only the job is published (it carries its event); the lane as above.
//!
//! `cargo build --release -p odoo-gateway-tests --bins`, then
//! `target/release/nats-mix [--events N] [--rounds R]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use bytes::Bytes;
use futures_util::StreamExt as _;
use odoo_gateway_tests::load::cpu_seconds;
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
/// The fan-out consumer's `max_ack_pending`, as the engine makes it.
const FAN_OUT_PENDING: usize = 8192;

/// One shape of the work plane's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    ConsumerFanOut,
    StandingLanes,
    FanOutAtIngest,
    NoEventStore,
}

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Self::ConsumerFanOut => "consumer fan-out (today)",
            Self::StandingLanes => "consumer fan-out, a standing pull per lane",
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
    anyhow::ensure!(
        events > 0 && rounds > 0,
        "--events and --rounds take at least 1"
    );
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
    println!(
        "| shape | nats-server CPU per event | client CPU per event | events/s | pull requests per event |"
    );
    println!("|---|---|---|---|---|");
    let shapes = [
        Shape::ConsumerFanOut,
        Shape::StandingLanes,
        Shape::FanOutAtIngest,
        Shape::NoEventStore,
    ];
    for round in 0..rounds {
        // Each round starts with another shape, so that none always runs first.
        let mut order = shapes;
        order.rotate_left(round % shapes.len());
        for (i, shape) in order.into_iter().enumerate() {
            let lane = format!("r{round}s{i}");
            let (server_before, client_before) = (cpu_seconds(server.pid()), own_cpu());
            let started = Instant::now();
            let pulls = one_round(&js, shape, &lane, events).await?;
            let elapsed = started.elapsed().as_secs_f64();
            let per_event = |s: f64| s * 1e6 / events as f64;
            println!(
                "| {} | {:.0} µs | {:.0} µs | {:.0} | {:.2} |",
                shape.label(),
                per_event(cpu_seconds(server.pid()) - server_before),
                per_event(own_cpu() - client_before),
                events as f64 / elapsed,
                pulls as f64 / events as f64
            );
        }
    }
    Ok(())
}

/// Runs `events` through `shape` on fresh consumers named after `lane`, until every job is
/// acknowledged; the pull requests the lane and the fan-out made.
async fn one_round(
    js: &jetstream::Context,
    shape: Shape,
    lane: &str,
    events: usize,
) -> anyhow::Result<usize> {
    let event = Bytes::from(vec![b'e'; EVENT_BYTES]);
    let work = js.get_stream("work").await?;
    let pull = |name: String, filter: String, limit: usize| consumer::pull::Config {
        durable_name: Some(name),
        filter_subject: filter,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(15),
        max_deliver: -1,
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
    let pulls = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    if shape == Shape::StandingLanes {
        tasks.spawn(run_standing_lane(
            js.clone(),
            lane_consumer,
            lane.to_owned(),
            events,
        ));
    } else {
        tasks.spawn(run_lane(
            js.clone(),
            lane_consumer,
            lane.to_owned(),
            events,
            pulls.clone(),
        ));
    }
    if matches!(shape, Shape::ConsumerFanOut | Shape::StandingLanes) {
        let fan_out = js
            .get_stream("events")
            .await?
            .get_or_create_consumer(
                &format!("fanout_{lane}"),
                pull(
                    format!("fanout_{lane}"),
                    format!("events.{lane}"),
                    FAN_OUT_PENDING,
                ),
            )
            .await?;
        tasks.spawn(run_fan_out(
            js.clone(),
            fan_out,
            job_subject.clone(),
            events,
            pulls.clone(),
        ));
    }
    let (js, lane) = (js.clone(), lane.to_owned());
    tasks.spawn(async move {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut accepted = tokio::task::JoinSet::new();
        for n in 0..events {
            let slot = slots.clone().acquire_owned().await?;
            let (js, event, job_subject) = (js.clone(), event.clone(), job_subject.clone());
            let id = format!("{lane}-{n}");
            // Read by the fan-out consumer, or by none (`events.x.*`).
            let events_subject = match shape {
                Shape::ConsumerFanOut | Shape::StandingLanes => format!("events.{lane}"),
                _ => format!("events.x.{lane}"),
            };
            accepted.spawn(async move {
                let publish = |subject: String, id: String| {
                    let message = PublishMessage::build()
                        .payload(event.clone())
                        .message_id(id);
                    let js = js.clone();
                    async move { anyhow::Ok(js.send_publish(subject, message).await?.await?) }
                };
                match shape {
                    Shape::ConsumerFanOut | Shape::StandingLanes => {
                        publish(events_subject, id).await?
                    }
                    Shape::FanOutAtIngest => {
                        publish(events_subject, id.clone()).await?;
                        publish(job_subject, format!("{id}.job")).await?
                    }
                    Shape::NoEventStore => publish(job_subject, format!("{id}.job")).await?,
                };
                drop(slot);
                anyhow::Ok(())
            });
            while let Some(done) = accepted.try_join_next() {
                done??;
            }
        }
        while let Some(done) = accepted.join_next().await {
            done??;
        }
        anyhow::Ok(())
    });
    // The round ends when the lane has settled every job; the first failure ends it early.
    let finished = tokio::time::timeout(Duration::from_secs(600), async {
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        anyhow::Ok(())
    });
    finished
        .await
        .context("the round did not finish within 10 minutes")??;
    Ok(pulls.load(Ordering::Relaxed))
}

/// The engine's lane loop: a pull for as many jobs as the lane has free slots (at least one,
/// waiting for it), each job then settled in its own task: its delivery-log record published
/// (no acknowledgement asked), the job acknowledged, its slot freed.
async fn run_lane(
    js: jetstream::Context,
    lane: consumer::PullConsumer,
    name: String,
    events: usize,
    pulls: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(LANE_LIMIT));
    let settled = Arc::new(AtomicUsize::new(0));
    let all_settled = Arc::new(tokio::sync::Notify::new());
    let record = Bytes::from(vec![b'r'; RECORD_BYTES]);
    let mut taken = 0;
    while taken < events {
        let mut permits = vec![slots.clone().acquire_owned().await?];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        pulls.fetch_add(1, Ordering::Relaxed);
        let mut batch = pull_batch(&lane, permits.len()).await?;
        while let Some(job) = batch.next().await {
            let job = job.map_err(anyhow::Error::msg)?;
            let permit = permits.pop();
            let (js, record, name) = (js.clone(), record.clone(), name.clone());
            let (settled, all_settled) = (settled.clone(), all_settled.clone());
            let n = taken;
            tokio::spawn(async move {
                let written = js
                    .client()
                    .publish(format!("$KV.deliveries.{name}.{n}.1"), record)
                    .await;
                let acked = job.ack().await;
                drop(permit);
                if let Err(e) = written {
                    eprintln!("a record was not published: {e}");
                }
                if let Err(e) = acked {
                    eprintln!("a job was not acknowledged: {e}");
                }
                if settled.fetch_add(1, Ordering::Relaxed) + 1 == events {
                    all_settled.notify_one();
                }
            });
            taken += 1;
        }
    }
    if settled.load(Ordering::Relaxed) < events {
        all_settled.notified().await;
    }
    Ok(())
}

/// A lane as a standing pull (`consumer.stream()`, asking again when half of a batch of the
/// lane's limit has come), each job settled as in [`run_lane`].
async fn run_standing_lane(
    js: jetstream::Context,
    lane: consumer::PullConsumer,
    name: String,
    events: usize,
) -> anyhow::Result<()> {
    let record = Bytes::from(vec![b'r'; RECORD_BYTES]);
    let mut jobs = lane
        .stream()
        .max_messages_per_batch(LANE_LIMIT)
        .expires(Duration::from_secs(1))
        .heartbeat(Duration::from_millis(400))
        .messages()
        .await
        .map_err(anyhow::Error::msg)?;
    let mut settling = tokio::task::JoinSet::new();
    for n in 0..events {
        let job = jobs
            .next()
            .await
            .context("the lane ended")?
            .map_err(anyhow::Error::msg)?;
        let (js, record, name) = (js.clone(), record.clone(), name.clone());
        settling.spawn(async move {
            js.client()
                .publish(format!("$KV.deliveries.{name}.{n}.1"), record)
                .await?;
            job.ack().await.map_err(anyhow::Error::msg)?;
            anyhow::Ok(())
        });
        while let Some(done) = settling.try_join_next() {
            done??;
        }
    }
    while let Some(done) = settling.join_next().await {
        done??;
    }
    Ok(())
}

/// The engine's fan-out loop: pulls of up to 256 events, each event's job published (its
/// deduplication id the event's) before the event is acknowledged.
async fn run_fan_out(
    js: jetstream::Context,
    fan_out: consumer::PullConsumer,
    job_subject: String,
    events: usize,
    pulls: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let mut fanned = tokio::task::JoinSet::new();
    let mut taken = 0;
    while taken < events {
        pulls.fetch_add(1, Ordering::Relaxed);
        let mut batch = pull_batch(&fan_out, 256).await?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(anyhow::Error::msg)?;
            let (js, job_subject) = (js.clone(), job_subject.clone());
            fanned.spawn(async move {
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
            taken += 1;
            while let Some(done) = fanned.try_join_next() {
                done??;
            }
        }
    }
    while let Some(done) = fanned.join_next().await {
        done??;
    }
    Ok(())
}

/// This process's CPU seconds so far.
fn own_cpu() -> f64 {
    cpu_seconds(std::process::id())
}

/// One pull of at most `max` messages from `consumer`, waiting up to a second for them.
async fn pull_batch(
    consumer: &consumer::PullConsumer,
    max: usize,
) -> anyhow::Result<consumer::pull::Batch> {
    consumer
        .batch()
        .max_messages(max)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .map_err(anyhow::Error::msg)
}
