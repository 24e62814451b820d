//! Faults of the shared work plane (`[storage] engine = "nats"`), with real processes and real
//! `nats-server`s: `kill -9` of one of three gateway instances in the middle of a load, and a
//! node of a three-node JetStream cluster (`replicas = 3`) killed and restarted under load. In
//! both, every event answered `202` reaches the receiver at least once; the deliveries a fault
//! makes twice are counted, and for the killed instance bounded.
//!
//! An event is acknowledged when an instance answered `202`; the receiver tells deliveries
//! apart by the event id of the delivered body. Clients retry a refused or cut request on the
//! next instance with the same body, as a real one would (a repeat is deduplicated and answered
//! with the first event's id). The only waits are generous ones; timings are printed, not
//! asserted.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odoo_gateway::cli::inbox::{Inbox, InboxOptions, Received};
use odoo_gateway::config::nats::DEFAULT_LEASE as LEASE;
use odoo_gateway_tests::HttpClient;
use odoo_gateway_tests::harness::free_port;
use odoo_gateway_tests::nats::{Engine, NatsCluster, NatsServer};
use odoo_gateway_tests::process::until_ready;

const TOKEN: &str = "faults-token-0123456789";
const ADMIN: &str = "faults-admin-0123456789";
/// `[delivery] per_destination_concurrency`: the `max_ack_pending` of the receiver's durable
/// consumer, so the most deliveries to it in flight in the whole cluster at any moment.
const IN_FLIGHT: usize = 16;
/// Clients posting at once during a load.
const WORKERS: usize = 16;
/// Events posted in the kill test; the kill comes once half of them are acknowledged.
const KILL_EVENTS: usize = 3000;
/// Events acknowledged in each phase of the node-restart test: before the kill, while the node
/// is down, after it is back.
const PHASE_EVENTS: usize = 400;
/// How long a client keeps retrying one event (`503`, connection refused) before the test
/// fails: more than a failover takes.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long every acknowledged event has to reach the receiver once the load is over: a dead
/// instance's work comes back after the lease ([`LEASE`], 15 s), then has to be run.
const DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// The two tests run one after the other: on a small machine, a second cluster of processes
/// starving the first one's lease renewals would make deliveries repeat for no fault of its
/// own, and blur what is counted.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The configuration of every instance: `storage` (from [`Engine::storage_toml`]), one Odoo
/// source, and the receiver as an operator-configured destination that a subscription sends
/// every event to (retried quickly should it ever fail).
fn config(storage: &str, receiver: &Inbox) -> String {
    format!(
        r#"{storage}
[server]
admin_token = "{ADMIN}"
[delivery]
retries = 50
per_destination_concurrency = {IN_FLIGHT}
[delivery.backoff]
schedule = ["100ms"]
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[delivery.client.app_ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[destinations]]
name = "receiver"
url = "{url}"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
[[subscriptions]]
id = "all"
events = ["*"]
destinations = ["receiver"]
"#,
        url = receiver.url("/hook")
    )
}

/// The ingest path of the Odoo source.
fn ingest_path() -> String {
    format!("/v1/odoo/odoo/{TOKEN}")
}

/// When each delivery the receiver got arrived, by path and event id (`<path> <id>`, the `id`
/// of the delivered body): each subscription delivers to a path of its own.
type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// What must arrive: every acknowledged event (id → number) at every path of `paths`, keyed
/// as [`Arrivals`] are.
fn expected(acked: &HashMap<String, usize>, paths: &[&str]) -> HashMap<String, usize> {
    paths
        .iter()
        .flat_map(|path| {
            acked
                .iter()
                .map(move |(id, n)| (format!("{path} {id}"), *n))
        })
        .collect()
}

/// A receiver answering `200` that notes the deliveries of each event as they arrive.
async fn receiver() -> (Inbox, Arrivals) {
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    let on_receive = move |r: &Received| {
        let id = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|body| body["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "<no id>".to_owned());
        let mut seen = seen.lock().expect("lock");
        seen.entry(format!("{} {id}", r.path))
            .or_default()
            .push(Instant::now());
    };
    let inbox = Inbox::start_local(InboxOptions {
        on_receive: Some(Arc::new(on_receive)),
        ..Default::default()
    })
    .await
    .expect("inbox");
    (inbox, arrivals)
}

/// A gateway process (the real command line) with a configuration file and a sled folder of
/// its own, its log in that folder.
struct Process {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// A failed assertion must not leave a gateway running (it would outlive the test run).
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts an instance on `engine` delivering to `receiver`, and waits until it is ready.
    async fn start(engine: &Engine<'_>, receiver: &Inbox) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, config(&engine.storage_toml("data"), receiver))
            .expect("write config");
        let log = std::fs::File::create(dir.path().join("gateway.log")).expect("log file");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
            .args(["serve", "--config"])
            .arg(&file)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the gateway");
        let process = Self { child, port, dir };
        assert!(
            until_ready(port, Duration::from_secs(30)).await,
            "the gateway did not come up:\n{}",
            process.log_tail()
        );
        process
    }

    /// Where Odoo posts to this instance.
    fn ingest_url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, ingest_path())
    }

    /// `kill -9`.
    fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// The last lines of the instance's log, for assertion messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Registers an app on `instance` (every event granted) and subscribes it, through the app
/// API, to every event delivered to `url`.
async fn subscribe_app(instance: &Process, url: &str) {
    let client = HttpClient::new();
    let base = format!("http://127.0.0.1:{}", instance.port);
    let admin = format!("Bearer {ADMIN}");
    let app = serde_json::json!({"name": "shop", "scopes": ["read", "write"], "events": ["*"]});
    let registered = client
        .send(
            "POST",
            &format!("{base}/admin/apps"),
            &[
                ("authorization", &admin),
                ("content-type", "application/json"),
            ],
            app.to_string().into_bytes(),
        )
        .await
        .expect("register");
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let app = registered.json();
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        app["oauth2_client_id"].as_str().expect("client id"),
        app["oauth2_client_secret"].as_str().expect("secret")
    );
    let token = client
        .send(
            "POST",
            &format!("{base}/oauth2/token"),
            &[("content-type", "application/x-www-form-urlencoded")],
            form.into_bytes(),
        )
        .await
        .expect("token");
    assert_eq!(token.status, 200, "{:?}", token.body);
    let bearer = format!(
        "Bearer {}",
        token.json()["access_token"].as_str().expect("token")
    );
    let subscription =
        serde_json::json!({"id": "all", "events": ["*"], "destination": {"url": url}});
    let created = client
        .send(
            "POST",
            &format!("{base}/v1/subscriptions"),
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            subscription.to_string().into_bytes(),
        )
        .await
        .expect("subscribe");
    assert_eq!(created.status, 201, "{:?}", created.body);
}

/// The ends of the logs of `instances` but `except`, for assertion messages.
fn logs(instances: &[Process], except: Option<usize>) -> String {
    instances
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != except)
        .map(|(i, p)| format!("--- instance {i}:\n{}", p.log_tail()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The clients of a load: events numbered from 0, each a distinct Odoo order (so no two are
/// deduplicated), posted by [`WORKERS`] workers. Event `n` goes to instance `n % instances`
/// and, on a retry, to the next live one, as a load balancer would send it; it is retried after
/// a `503` or a failed request, after a short pause, until it is acknowledged.
struct Load {
    /// Each instance's ingest URL.
    urls: Vec<String>,
    /// Which instances are still posted to (the test marks one dead before killing it).
    alive: Vec<AtomicBool>,
    /// The next event's number.
    next: AtomicUsize,
    /// Events from this number on are not posted: the load ends once each taken is
    /// acknowledged.
    end: AtomicUsize,
    /// The acknowledged events: event id (the `202`'s `id`) → number.
    acked: Mutex<HashMap<String, usize>>,
    /// When each acknowledgement came.
    acked_at: Mutex<Vec<Instant>>,
    /// `503` answers, retried.
    refused: AtomicUsize,
    /// Requests without an answer (connection refused or cut), retried.
    failed: AtomicUsize,
}

impl Load {
    /// A load of events `0..end` on the instances at `urls`.
    fn new(urls: Vec<String>, end: usize) -> Arc<Self> {
        Arc::new(Self {
            alive: urls.iter().map(|_| AtomicBool::new(true)).collect(),
            urls,
            next: AtomicUsize::new(0),
            end: AtomicUsize::new(end),
            acked: Mutex::default(),
            acked_at: Mutex::default(),
            refused: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        })
    }

    /// Starts the workers; each ends when the events run out.
    fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        (0..WORKERS)
            .map(|_| {
                let load = self.clone();
                tokio::spawn(async move {
                    let client = HttpClient::new();
                    loop {
                        let n = load.next.fetch_add(1, Ordering::SeqCst);
                        if n >= load.end.load(Ordering::SeqCst) {
                            return;
                        }
                        load.offer(&client, n).await;
                    }
                })
            })
            .collect()
    }

    /// Posts event `n` until an instance acknowledges it.
    async fn offer(&self, client: &HttpClient, n: usize) {
        let body = format!(
            r#"{{"_action": "Order saved(#1)", "_id": {n}, "_model": "sale.order", "id": {n}, "name": "S{n:05}"}}"#
        );
        let start = Instant::now();
        for attempt in n.. {
            let last = match client.post_json(self.pick(attempt), body.as_bytes()).await {
                Ok(reply) if reply.status == 202 => {
                    let id = reply.json()["id"].as_str().expect("id").to_owned();
                    self.acked.lock().expect("lock").insert(id, n);
                    self.acked_at.lock().expect("lock").push(Instant::now());
                    return;
                }
                Ok(reply) if reply.status == 503 => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    format!("503 {:?}", reply.body)
                }
                Ok(reply) => panic!(
                    "event {n}: unexpected answer {}: {:?}",
                    reply.status, reply.body
                ),
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    e.to_string()
                }
            };
            assert!(
                start.elapsed() < PATIENCE,
                "event {n} was not acknowledged within {PATIENCE:?}; last answer: {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The URL of the first live instance from `k` on (round robin).
    fn pick(&self, k: usize) -> &str {
        let count = self.urls.len();
        (0..count)
            .map(|i| (k + i) % count)
            .find(|&i| self.alive[i].load(Ordering::SeqCst))
            .map(|i| self.urls[i].as_str())
            .expect("an instance is alive")
    }

    /// How many events were acknowledged so far.
    fn acknowledged(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    /// Waits until `count` events are acknowledged; fails after `within`, naming the phase
    /// (`what`).
    async fn wait_acknowledged(&self, count: usize, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self.acknowledged() < count {
            assert!(
                Instant::now() < deadline,
                "{what}: only {} of {count} events acknowledged within {within:?} ({} answers 503, {} requests failed)",
                self.acknowledged(),
                self.refused.load(Ordering::Relaxed),
                self.failed.load(Ordering::Relaxed),
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The longest time without an acknowledgement while the load ran: how long ingest was
    /// refused at worst.
    fn longest_pause(&self) -> Duration {
        let mut at = self.acked_at.lock().expect("lock").clone();
        at.sort_unstable();
        at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
    }

    /// Ends the load: no new event is taken, each taken one is still posted until acknowledged.
    fn stop(&self) {
        self.end.store(0, Ordering::SeqCst);
    }
}

/// Waits until every event of `acked` reached the receiver at least once, and on until
/// `settled` has passed and no delivery came for a second (what a fault left leased comes back
/// up to a lease after it: its repeats are counted too); the arrivals by event id. Fails after
/// [`DELIVERY_WAIT`] naming the events never delivered; `logs` are shown with them.
async fn delivered(
    acked: &HashMap<String, usize>,
    arrivals: &Arrivals,
    settled: Instant,
    logs: impl Fn() -> String,
) -> HashMap<String, Vec<Instant>> {
    let deadline = Instant::now() + DELIVERY_WAIT;
    let mut last_total = 0;
    let mut quiet_since = Instant::now();
    loop {
        let now = arrivals.lock().expect("lock").clone();
        let total: usize = now.values().map(Vec::len).sum();
        if total != last_total {
            (last_total, quiet_since) = (total, Instant::now());
        }
        let mut missing: Vec<usize> = acked
            .iter()
            .filter(|(id, _)| !now.contains_key(*id))
            .map(|(_, n)| *n)
            .collect();
        if missing.is_empty()
            && Instant::now() >= settled
            && quiet_since.elapsed() >= Duration::from_secs(1)
        {
            return now;
        }
        if Instant::now() > deadline {
            missing.sort_unstable();
            panic!(
                "{} of {} acknowledged events were never delivered within {DELIVERY_WAIT:?} \
                 (numbers {:?}{}); {} deliveries of {} events arrived\n{}",
                missing.len(),
                acked.len(),
                &missing[..missing.len().min(20)],
                if missing.len() > 20 { "..." } else { "" },
                total,
                now.len(),
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the receiver got, against what was acknowledged.
struct Tally {
    /// Acknowledged events delivered (at least once).
    delivered: usize,
    /// Deliveries beyond the first of an event.
    duplicates: usize,
    /// Events delivered that were never acknowledged.
    unacknowledged: usize,
    /// Acknowledged events first delivered more than half a lease after the fault: work the
    /// fault left leased or unsettled, handed on after the lease.
    late: usize,
}

impl Tally {
    /// Counts `arrivals` against `acked`, for a fault that came at `fault`.
    fn new(
        acked: &HashMap<String, usize>,
        arrivals: &HashMap<String, Vec<Instant>>,
        fault: Instant,
    ) -> Self {
        let late_from = fault + LEASE / 2;
        Self {
            delivered: acked.keys().filter(|id| arrivals.contains_key(*id)).count(),
            duplicates: arrivals.values().map(|a| a.len() - 1).sum(),
            unacknowledged: arrivals
                .keys()
                .filter(|id| !acked.contains_key(*id))
                .count(),
            late: acked
                .keys()
                .filter_map(|id| arrivals.get(id)?.iter().min())
                .filter(|first| **first > late_from)
                .count(),
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delivered {} distinct ({} of them first delivered more than half a lease after the \
             fault), {} duplicate deliveries, {} delivered events never acknowledged",
            self.delivered, self.late, self.duplicates, self.unacknowledged
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_of_three_instances_under_load_loses_no_acknowledged_event() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = NatsServer::start().expect("nats-server");
    let engine = server.engine("kill9");
    let (inbox, arrivals) = receiver().await;
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Process::start(&engine, &inbox).await);
    }
    // An app subscribes through the API of one instance just before the load: from its `201`
    // on, every acknowledged event is its too, whichever instance fans it out.
    subscribe_app(&instances[0], &inbox.url("/app").to_string()).await;
    let load = Load::new(
        instances.iter().map(Process::ingest_url).collect(),
        KILL_EVENTS,
    );
    let workers = load.start();

    // Kill in the middle of ingest, and of the fan-out and deliveries running alongside.
    load.wait_acknowledged(KILL_EVENTS / 2, PATIENCE, "before the kill")
        .await;
    let victim = 1;
    load.alive[victim].store(false, Ordering::SeqCst);
    instances[victim].kill();
    let killed_at = Instant::now();
    let acked_at_kill = load.acknowledged();
    let delivered_at_kill: usize = arrivals.lock().expect("lock").values().map(Vec::len).sum();

    // The other two take the rest, including what was on its way to the dead one.
    for worker in workers {
        worker.await.expect("a client of the load failed");
    }
    let acked = load.acked.lock().expect("lock").clone();
    assert_eq!(
        acked.len(),
        KILL_EVENTS,
        "every event posted is acknowledged by an instance (two events got one id?)"
    );
    let acked_events = acked.len();
    let acked = expected(&acked, &["/hook", "/app"]);
    let got = delivered(
        &acked,
        &arrivals,
        killed_at + LEASE + Duration::from_secs(5),
        || logs(&instances, Some(victim)),
    )
    .await;
    let tally = Tally::new(&acked, &got, killed_at);
    eprintln!(
        "kill -9 of instance {victim} after {acked_at_kill} acknowledged events and \
         {delivered_at_kill} deliveries; {} requests cut and sent again; acknowledged \
         {acked_events} (each for two subscriptions), {tally}",
        load.failed.load(Ordering::Relaxed),
    );
    assert_eq!(
        tally.delivered,
        acked.len(),
        "every acknowledged event is delivered"
    );
    // The bound. A fan-out run again after the kill publishes nothing twice (its jobs' ids are
    // their `Nats-Msg-Id`), so a delivery repeats only when the dead instance had sent it but
    // its acknowledgement never reached JetStream. Such a job was pending on the receiver's
    // consumer, whose `max_ack_pending` is `per_destination_concurrency` for the whole
    // cluster: at most that many deliveries can be made twice.
    // Two destinations (the file's and the app's), each with its own consumer.
    assert!(
        tally.duplicates <= 2 * IN_FLIGHT,
        "{} duplicate deliveries: more than the {} deliveries that can be in flight to the \
         two destinations (per_destination_concurrency each)",
        tally.duplicates,
        2 * IN_FLIGHT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_node_restarted_under_load_loses_no_acknowledged_event() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let prefix = "restart";
    let mut cluster = NatsCluster::start().expect("three nats-server nodes");
    let (inbox, arrivals) = receiver().await;
    let engine = cluster.engine(prefix);
    let instances = [
        Process::start(&engine, &inbox).await,
        Process::start(&engine, &inbox).await,
    ];
    let load = Load::new(
        instances.iter().map(Process::ingest_url).collect(),
        usize::MAX,
    );
    let workers = load.start();
    load.wait_acknowledged(PHASE_EVENTS, PATIENCE, "before the node is killed")
        .await;

    // The node that leads the events stream goes: acknowledged writes must survive the
    // election of a new leader.
    let events = format!("{prefix}_events");
    let node = cluster
        .leader_of(&events)
        .expect("the events stream has a leader");
    let work_leader = cluster.leader_of(&format!("{prefix}_work"));
    cluster.kill(node);
    let killed_at = Instant::now();
    let acked_at_kill = load.acknowledged();
    let refused_at_kill = load.refused.load(Ordering::Relaxed);
    // Ingest goes on with two nodes of three (after a few seconds of `503`).
    load.wait_acknowledged(acked_at_kill + PHASE_EVENTS, PATIENCE, "with a node down")
        .await;
    let acked_down = load.acknowledged() - acked_at_kill;
    tokio::task::block_in_place(|| cluster.restart(node)).expect("the node restarts");
    let down_for = killed_at.elapsed();
    let acked_at_restart = load.acknowledged();
    load.wait_acknowledged(
        acked_at_restart + PHASE_EVENTS,
        PATIENCE,
        "after the node is back",
    )
    .await;
    load.stop();
    for worker in workers {
        worker.await.expect("a client of the load failed");
    }
    let acked = expected(&load.acked.lock().expect("lock").clone(), &["/hook"]);

    let got = delivered(
        &acked,
        &arrivals,
        killed_at + LEASE + Duration::from_secs(5),
        || logs(&instances, None),
    )
    .await;
    let tally = Tally::new(&acked, &got, killed_at);
    eprintln!(
        "node n{node} (leader of {events}; {prefix}_work led by {work_leader:?}) killed after \
         {acked_at_kill} acknowledged events, {acked_down} more acknowledged with it down, back \
         {down_for:?} after the kill, once {acked_at_restart} were acknowledged; {} answers 503 \
         while it was down or rejoining, {} requests failed, at most {:?} without an \
         acknowledgement; acknowledged {}, {tally}",
        load.refused.load(Ordering::Relaxed) - refused_at_kill,
        load.failed.load(Ordering::Relaxed),
        load.longest_pause(),
        acked.len(),
    );
    assert_eq!(
        tally.delivered,
        acked.len(),
        "every acknowledged event is delivered"
    );
}
