//! Polling on two gateways sharing a real `nats-server -js` (`[storage] engine = "nats"`):
//! one instance polls a model at a time (its lease), each change is delivered once, and when
//! the polling instance is killed (`kill -9`, as a crash) the other takes the model over from
//! the shared cursor.

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use odoo_gateway_tests::fake_odoo::{self, FakeOdoo};
use odoo_gateway_tests::nats::{Engine, NatsServer};
use serde_json::{Value, json};

use super::*;

/// How long a takeover may take: the lease expires ([`odoo_gateway::connector::shared::LEASE`]),
/// the other instance's next try finds it free, then polls.
const TAKEOVER: Duration = Duration::from_secs(30);

/// A gateway process (the real command line) with a folder of its own.
struct Gateway {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// A failed assertion must not leave a gateway running.
impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    async fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("gateway.log")).expect("log file");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
            .args(["serve", "--config"])
            .arg(&file)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the gateway");
        let gateway = Self { child, port, dir };
        let deadline = Instant::now() + WAIT;
        let client = HttpClient::new();
        while !client
            .get(&gateway.url("/readyz"))
            .await
            .is_ok_and(|r| r.status == 200)
        {
            assert!(Instant::now() < deadline, "not ready:\n{}", gateway.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gateway
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `kill -9`.
    fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// Whether this instance polls `sale.order` now (`/admin/status`).
    async fn polls(&self) -> bool {
        let reply = HttpClient::new()
            .send(
                "GET",
                &self.url("/admin/status"),
                &[("authorization", &format!("Bearer {ADMIN}"))],
                Vec::new(),
            )
            .await
            .expect("status");
        let status: Value = reply.json();
        let here = status["odoo_poll"][0]["polled_here"] == json!(true);
        if !here {
            eprintln!("status: {}", status["odoo_poll"]);
        }
        here
    }
}

fn cluster_config(engine: &Engine<'_>, odoo: &FakeOdoo, inbox: &Inbox) -> String {
    let poll = POLL.replace("page_size = 2", "page_size = 7");
    config(odoo, inbox, fake_odoo::API_KEY, &poll, ORDERS)
        .replace("[storage]\npath = \"data\"\n", &engine.storage_toml("data"))
}

/// Every polled change delivered so far, checked to be one event each. (A delivery may be
/// repeated when an instance dies between the receiver's answer and its acknowledgement:
/// receivers deduplicate on `webhook-id`, so repeats of one event count once.)
fn delivered_once(inbox: &Inbox) -> Vec<(i64, String, String)> {
    let mut events = std::collections::BTreeMap::new();
    for r in inbox.received() {
        let id = body(&r)["id"].as_str().expect("event id").to_owned();
        events.entry(id).or_insert(r);
    }
    let firsts: Vec<_> = events.into_values().collect();
    let all = changes(&firsts);
    let unique: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "each change one event: {all:?}");
    all
}

#[tokio::test]
async fn two_instances_poll_a_model_once_and_the_survivor_takes_it_over() {
    let server = NatsServer::start().expect("nats-server");
    let engine = server.engine("odoo_poll");
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let config = cluster_config(&engine, &odoo, &inbox);
    // Three pages in one second, in one import.
    let mut import = odoo.begin();
    let ids: Vec<i64> = (0..22)
        .map(|n| {
            import.create(
                "sale.order",
                json!({"name": format!("S{n:05}"), "state": "draft", "amount_total": 1.0}),
            )
        })
        .collect();
    import.commit();
    let mut first = Gateway::start(&config).await;
    let received = inbox.wait_for(23, WAIT).await.expect("every change");
    assert!(
        first.polls().await,
        "the only instance polls:\n{}",
        first.log()
    );
    let second = Gateway::start(&config).await;
    // Both run; the first keeps its lease while the second waits for it.
    wait_polls(&odoo, odoo.calls("sale.order.search_read") + 10).await;
    assert!(first.polls().await && !second.polls().await, "one poller");
    odoo.tick(1);
    odoo.write("sale.order", ids[5], json!({"state": "sale"}));
    inbox.wait_for(24, WAIT).await.expect("the write");
    assert_eq!(changes(&received).len(), 23);
    assert_eq!(delivered_once(&inbox).len(), 24);

    // The poller dies; the survivor takes the model over from the shared cursor.
    first.kill();
    let deadline = Instant::now() + TAKEOVER;
    while !second.polls().await {
        assert!(Instant::now() < deadline, "no takeover:\n{}", second.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    odoo.tick(1);
    let late = odoo.create(
        "sale.order",
        json!({"name": "S09999", "state": "draft", "amount_total": 2.0}),
    );
    inbox
        .wait_for(25, TAKEOVER)
        .await
        .unwrap_or_else(|_| panic!("polling continued:\n{}", second.log()));
    wait_polls(&odoo, odoo.calls("sale.order.search_read") + 10).await;
    let all = delivered_once(&inbox);
    assert_eq!(all.len(), 25, "{all:?}");
    assert!(all.contains(&(late, "create".into(), odoo.datetime(2))));
    assert!(all.contains(&(ids[5], "write".into(), odoo.datetime(1))));
}
