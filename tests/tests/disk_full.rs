//! A full disk is a pause, never a wedge. The gateway runs on a small tmpfs with its receiver
//! down, 4 KiB Odoo bodies are posted until it refuses, then the receiver comes up: every
//! acknowledged event is delivered, and new events are accepted again without anyone's help.
//! Four ways to run out of room: the budget of live data (`507 storage_full`), the file
//! system's free space (`503 storage_unavailable`), a restart on a disk filled to its last
//! byte, and a disk filled by another program under the running gateway (sled's writes fail
//! and the database is reopened in the same process).
//!
//! Mounting a tmpfs needs root: where it is not permitted each test says so and returns.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway::reload::ConfigSource;
use odoo_gateway_tests::{HttpClient, Reply, TestGateway};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "disk-token-0123456789";
const ADMIN: &str = "disk-admin-0123456789";
/// How long the gateway may take to deliver a backlog, or to accept again after it.
const WITHIN: Duration = Duration::from_secs(40);
const MIB: u64 = 1024 * 1024;

/// A tmpfs of its own, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self { dir }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here ({}); run as root to test a full disk",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount ({e}); run as root to test a full disk");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// What another program would do: fills the file system to its last byte.
    fn fill(&self) {
        use std::io::Write as _;
        let mut file = std::fs::File::create(self.path().join("filler.bin")).expect("filler");
        for chunk in [MIB as usize, 4096, 1] {
            let bytes = vec![1u8; chunk];
            while file.write_all(&bytes).and_then(|()| file.flush()).is_ok() {}
        }
        let _ = file.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn config(storage: &Path, receiver: SocketAddr, room: &str) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN}"
shutdown_grace = "1s"
[storage]
path = "{storage}"
retention = "2s"
dedup_window = "2s"
maintenance_interval = "200ms"
{room}
[delivery]
retries = 100
[delivery.backoff]
schedule = ["1s"]
jitter = 0.0
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[destinations]]
name = "receiver"
url = "http://{receiver}/hook"
secrets = ["{SECRET}"]
[[subscriptions]]
id = "all"
events = ["*"]
destinations = ["receiver"]
"#,
        storage = storage.join("data").display()
    )
}

fn source(disk: &Tmpfs, receiver: SocketAddr, room: &str) -> ConfigSource {
    ConfigSource::Text {
        text: config(disk.path(), receiver, room),
        base: disk.path().to_path_buf(),
        origin: "disk.toml".into(),
    }
}

/// An address where nothing listens yet: the receiver is down.
fn receiver_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

async fn receiver_up(addr: SocketAddr) -> Inbox {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    Inbox::start(
        listener,
        InboxOptions {
            secrets: vec![SECRET.parse().expect("secret")],
            status: http::StatusCode::OK,
            ..Default::default()
        },
    )
    .expect("receiver")
}

/// A 4 KiB Odoo webhook body, different for each `n`.
fn body(n: usize) -> Vec<u8> {
    format!(
        r#"{{"_action": "Order saved(#{n})", "_id": {n}, "_model": "sale.order", "id": {n}, "name": "S{n:06}", "note": "{pad}"}}"#,
        pad = "x".repeat(4000)
    )
    .into_bytes()
}

/// Posts new events with a few workers until the gateway refuses one; returns the ids it
/// acknowledged and its first refusal.
async fn post_until_refused(gw: &TestGateway, next: &Arc<AtomicUsize>) -> (Vec<String>, Reply) {
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (url, next, stop) = (url.clone(), next.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let client = HttpClient::new();
            let mut acked = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                assert!(n < 100_000, "never refused");
                let reply = client.post_json(&url, &body(n)).await.expect("answered");
                if reply.status == 202 {
                    acked.push(reply.json()["id"].as_str().expect("id").to_owned());
                } else {
                    stop.store(true, Ordering::Relaxed);
                    return (acked, Some(reply));
                }
            }
            (acked, None)
        }));
    }
    let (mut acked, mut refusal) = (Vec::new(), None);
    for worker in workers {
        let (ids, refused) = worker.await.expect("worker");
        acked.extend(ids);
        refusal = refusal.or(refused);
    }
    (acked, refusal.expect("a refusal"))
}

/// Posts `count` new events; each must be acknowledged.
async fn post(gw: &TestGateway, next: &AtomicUsize, count: usize) -> Vec<String> {
    let client = HttpClient::new();
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let mut acked = Vec::new();
    for _ in 0..count {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let reply = client.post_json(&url, &body(n)).await.expect("answered");
        assert_eq!(reply.status, 202, "{:?}", reply.body);
        acked.push(reply.json()["id"].as_str().expect("id").to_owned());
    }
    acked
}

/// Posts a new event every 100 ms until one is acknowledged (within [`WITHIN`]); returns its
/// id and every refusal's status and code on the way.
async fn accepted_again(gw: &TestGateway, next: &AtomicUsize) -> (String, Vec<(u16, String)>) {
    let client = HttpClient::new();
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut refusals = Vec::new();
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if let Ok(reply) = client.post_json(&url, &body(n)).await {
            if reply.status == 202 {
                return (
                    reply.json()["id"].as_str().expect("id").to_owned(),
                    refusals,
                );
            }
            let code = serde_json::from_slice::<serde_json::Value>(&reply.body)
                .map(|b| b["error"]["code"].as_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            refusals.push((reply.status, code));
        }
        let status = storage(gw).await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "new events still refused after {WITHIN:?}: {refusals:?} {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The event ids in what `inbox` took (answered 200), in order.
fn delivered(inbox: &Inbox) -> Vec<String> {
    inbox
        .received()
        .iter()
        .filter(|r| r.answered == Some(http::StatusCode::OK))
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            body["id"].as_str().expect("event id").to_owned()
        })
        .collect()
}

/// Waits until `inbox` took every event of `acked`.
async fn wait_delivered(inbox: &Inbox, acked: &[String]) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let got: HashSet<String> = delivered(inbox).into_iter().collect();
        let missing = acked.iter().filter(|id| !got.contains(*id)).count();
        if missing == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} acknowledged events not delivered",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/admin/status`'s storage section.
async fn storage(gw: &TestGateway) -> serde_json::Value {
    gw.admin(ADMIN, "GET", "/admin/status", None).await["storage"].clone()
}

async fn readiness(gw: &TestGateway) -> Reply {
    HttpClient::new()
        .get(&gw.url("/readyz"))
        .await
        .expect("readyz")
}

fn assert_exactly_once(delivered: &[String], acked: &[String]) {
    let distinct: HashSet<&String> = delivered.iter().collect();
    assert_eq!(distinct.len(), delivered.len(), "a delivery was repeated");
    let acked: HashSet<&String> = acked.iter().collect();
    assert_eq!(distinct, acked, "delivered exactly what was acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_live_data_budget_ingest_pauses_and_resumes_by_itself() {
    let Some(disk) = Tmpfs::mount(48) else { return };
    let receiver = receiver_address();
    let room = "max_disk_bytes = 8_000_000\nmin_free_bytes = 4_194_304\nreserve_bytes = 4_194_304";
    let gw = TestGateway::start_with(source(&disk, receiver, room))
        .await
        .expect("gateway");
    let next = Arc::new(AtomicUsize::new(0));
    let (mut acked, mut taken, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    // Three times: the first refill grows the folder (the first fill's room is freed only as
    // sled rewrites it), the next must not grow it much more (sled reuses what pruning freed),
    // or accepting again would only fill the disk. Without reuse each round would take as
    // much again, and the third would find the disk full first (503, not 507).
    for round in 0..3 {
        let (ids, refusal) = post_until_refused(&gw, &next).await;
        assert!(ids.len() > 500, "round {round}: only {} taken", ids.len());
        assert_eq!(refusal.status, 507, "{:?}", refusal.body);
        assert_eq!(refusal.json()["error"]["code"], "storage_full");
        assert!(refusal.headers.contains_key("retry-after"));
        let ready = readiness(&gw).await;
        assert_eq!(ready.status, 503);
        let reason = ready.json()["reasons"][0].as_str().unwrap_or("").to_owned();
        assert!(reason.starts_with("storage_full: "), "{reason}");
        let status = storage(&gw).await;
        assert_eq!(status["paused"]["reason"], "storage_full", "{status}");
        assert!(
            status["live"]["bytes"].as_u64() >= Some(7_000_000),
            "{status}"
        );
        sizes.push(status["size_on_disk"].as_u64().expect("size"));

        let inbox = receiver_up(receiver).await;
        wait_delivered(&inbox, &ids).await;
        acked.extend(ids);
        let (id, refusals) = accepted_again(&gw, &next).await;
        assert!(
            refusals
                .iter()
                .all(|(s, c)| *s == 507 && c == "storage_full"),
            "{refusals:?}"
        );
        wait_delivered(&inbox, std::slice::from_ref(&id)).await;
        acked.push(id);
        assert_eq!(readiness(&gw).await.status, 200);
        inbox.shutdown().await;
        taken.extend(delivered(&inbox));
    }
    assert!(
        sizes[2] <= sizes[1] + sizes[1] / 2,
        "the folder keeps growing: {sizes:?} bytes at each refusal"
    );
    assert_exactly_once(&taken, &acked);
    let metrics = HttpClient::new()
        .send(
            "GET",
            &gw.url("/metrics"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            Vec::new(),
        )
        .await
        .expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let refused = text
        .lines()
        .find(|l| l.starts_with("odoo_gateway_ingest_refused_total{reason=\"storage_full\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(refused >= Some(2.0), "{text}");
    gw.stop().await.expect("stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_disk_ingest_pauses_and_resumes_by_itself() {
    let Some(disk) = Tmpfs::mount(48) else { return };
    let receiver = receiver_address();
    let room = "min_free_bytes = 8_388_608\nreserve_bytes = 4_194_304";
    let gw = TestGateway::start_with(source(&disk, receiver, room))
        .await
        .expect("gateway");
    let next = Arc::new(AtomicUsize::new(0));
    let (mut acked, refusal) = post_until_refused(&gw, &next).await;
    assert!(acked.len() > 500, "only {} taken", acked.len());
    assert_eq!(refusal.status, 503, "{:?}", refusal.body);
    assert_eq!(refusal.json()["error"]["code"], "storage_unavailable");
    let reason = readiness(&gw).await.json()["reasons"][0]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(reason.starts_with("disk_full: "), "{reason}");
    let status = storage(&gw).await;
    assert_eq!(status["paused"]["reason"], "disk_full", "{status}");

    let inbox = receiver_up(receiver).await;
    wait_delivered(&inbox, &acked).await;
    let (id, refusals) = accepted_again(&gw, &next).await;
    assert!(
        refusals
            .iter()
            .all(|(s, c)| *s == 503 && c == "storage_unavailable"),
        "{refusals:?}"
    );
    acked.push(id);
    wait_delivered(&inbox, &acked).await;
    assert_exactly_once(&delivered(&inbox), &acked);
    gw.stop()
        .await
        .expect("stopped cleanly, the database flushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_a_disk_filled_to_the_last_byte_comes_up_and_delivers() {
    let Some(disk) = Tmpfs::mount(48) else { return };
    let receiver = receiver_address();
    let room = "min_free_bytes = 8_388_608\nreserve_bytes = 4_194_304";
    let gw = TestGateway::start_with(source(&disk, receiver, room))
        .await
        .expect("gateway");
    let next = Arc::new(AtomicUsize::new(0));
    let mut acked = post(&gw, &next, 800).await;
    gw.stop().await.expect("stopped");

    disk.fill();
    let gw = TestGateway::start_serving(source(&disk, receiver, room))
        .await
        .expect("the gateway comes up on a full disk");
    let inbox = receiver_up(receiver).await;
    wait_delivered(&inbox, &acked).await;
    let (id, _) = accepted_again(&gw, &next).await;
    acked.push(id);
    wait_delivered(&inbox, &acked).await;
    assert_exactly_once(&delivered(&inbox), &acked);
    gw.stop().await.expect("stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filled_under_the_running_gateway_is_survived_by_reopening_the_database() {
    let Some(disk) = Tmpfs::mount(48) else { return };
    let receiver = receiver_address();
    // No watch of free space: nothing stops the write that fails (a disk filled between two
    // looks, in the gateway's own words).
    let room = "min_free_bytes = 0\nreserve_bytes = 4_194_304";
    let gw = TestGateway::start_with(source(&disk, receiver, room))
        .await
        .expect("gateway");
    let next = Arc::new(AtomicUsize::new(0));
    let mut acked = post(&gw, &next, 300).await;

    // Another program takes the last byte: sled's next write fails, and sled takes no write
    // after that until the database is opened again.
    disk.fill();
    let (more, refusal) = post_until_refused(&gw, &next).await;
    acked.extend(more);
    assert_eq!(refusal.status, 503, "{:?}", refusal.body);
    assert_eq!(refusal.json()["error"]["code"], "storage_unavailable");

    let inbox = receiver_up(receiver).await;
    wait_delivered(&inbox, &acked).await;
    // sled takes no write after its I/O error: accepting again means it was reopened.
    let (id, refusals) = accepted_again(&gw, &next).await;
    assert!(refusals.iter().all(|(s, _)| *s == 503), "{refusals:?}");
    acked.push(id);
    wait_delivered(&inbox, &acked).await;
    // At least once: an outcome not yet flushed when the disk filled is delivered again.
    let got: HashSet<String> = delivered(&inbox).into_iter().collect();
    assert!(acked.iter().all(|id| got.contains(id)));
    gw.stop().await.expect("stopped cleanly");
}
