//! Storage at the edge over real sockets: the start-up window, readiness, and the disk budget
//! reached then relieved, with nothing acknowledged lost.

use std::time::Duration;

use odoo_gateway::cli::inbox::Inbox;
use odoo_gateway::reload::ConfigSource;
use odoo_gateway_tests::{HttpClient, TestGateway, fixture};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "test-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn while_starting_the_port_answers_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answering = tokio::spawn(async move {
        odoo_gateway::server::answer_starting(&listener).await;
    });
    let client = HttpClient::new();
    let url = format!("http://{addr}/v1/odoo/odoo/{TOKEN}");
    let reply = client
        .post_json(&url, &fixture("native/sale.order.confirmed.json"))
        .await
        .expect("answered");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"]["code"], "starting");
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(reply.headers["connection"], "close");
    let live = client
        .get(&format!("http://{addr}/healthz"))
        .await
        .expect("answered");
    assert_eq!(live.status, 200, "alive while starting");
    answering.abort();
}

fn config(inbox: &Inbox, storage: &str) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN}"
[storage]
path = "data"
maintenance_interval = "50ms"
{storage}
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{TOKEN}"]
[[destinations]]
name = "inbox"
url = "{url}"
secrets = ["{SECRET}"]
[[subscriptions]]
id = "all"
events = ["*"]
destinations = ["inbox"]
"#,
        url = inbox.url("/inbox")
    )
}

async fn reload(client: &HttpClient, gw: &TestGateway) {
    let auth = format!("Bearer {ADMIN}");
    let reply = client
        .send(
            "POST",
            &gw.url("/admin/reload"),
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await
        .expect("reload");
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

async fn wait_status(
    client: &HttpClient,
    url: &str,
    body: &[u8],
    status: u16,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = client.post_json(url, body).await.expect("post");
        if reply.status == status {
            return reply.json();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {} {:?}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_full_disk_budget_refuses_new_events_and_recovers_when_there_is_room() {
    let inbox = odoo_gateway_tests::verifying_inbox(SECRET, 200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config(&inbox, "")).expect("write");
    let gw = TestGateway::start_with(ConfigSource::File(file.clone()))
        .await
        .expect("gateway");
    let client = HttpClient::new();
    let ready = client.get(&gw.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));

    let before = fixture("native/res.partner.minimal.json");
    let reply = client.post_json(&url, &before).await.expect("post");
    assert_eq!(reply.status, 202);
    inbox.wait_for(1, WAIT).await.expect("delivered");

    // A budget far below what the database takes: pruning cannot make room.
    std::fs::write(&file, config(&inbox, "max_disk_bytes = 1")).expect("write");
    reload(&client, &gw).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let ready = loop {
        let ready = client.get(&gw.url("/readyz")).await.expect("readyz");
        if ready.status == 503 {
            break ready;
        }
        assert!(tokio::time::Instant::now() < deadline, "never full");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        ready.json()["reasons"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("storage_full"),
        "{:?}",
        ready.body
    );
    let refused = client
        .post_json(&url, &fixture("native/res.partner.saved.json"))
        .await
        .expect("post");
    assert_eq!(refused.status, 507);
    assert_eq!(refused.json()["error"]["code"], "storage_full");
    assert_eq!(refused.headers["retry-after"], "60");
    // `odoo-gateway status` says it last, in words.
    let url = gw.url("");
    let mut said = Vec::new();
    odoo_gateway::cli::operate::Operate::parse_from(&[
        "status",
        "--url",
        &url,
        "--admin-token",
        ADMIN,
    ])
    .expect("arguments")
    .run(&mut said)
    .await
    .expect("status");
    let said = String::from_utf8(said).expect("UTF-8");
    assert!(
        said.contains("INGEST PAUSED (storage_full): the store holds"),
        "{said}"
    );
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));

    // Room again: events are taken and delivered.
    std::fs::write(&file, config(&inbox, "max_disk_bytes = 1_000_000_000_000")).expect("write");
    reload(&client, &gw).await;
    wait_status(
        &client,
        &url,
        &fixture("native/account.move.posted.json"),
        202,
    )
    .await;
    let received = inbox.wait_for(2, WAIT).await.expect("delivered");
    assert_eq!(
        received.len(),
        2,
        "the refused event was not taken, the others were"
    );
    let ready = client.get(&gw.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status, 200);
    gw.stop().await.expect("stop");
}

/// `odoo-gateway storage compact`, the real command line, on the folder of a gateway that held
/// a backlog: refused while the gateway runs, then the folder shrinks, and what was kept is
/// there after a restart.
#[tokio::test]
async fn compaction_gives_space_back_and_keeps_what_was_stored() {
    let inbox = odoo_gateway_tests::verifying_inbox(SECRET, 200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    // Delivered events are kept a second, dead letters for long.
    let retention = "retention = \"1s\"\ndedup_window = \"1s\"";
    std::fs::write(&file, config(&inbox, retention)).expect("write");
    let gw = TestGateway::start_with(ConfigSource::File(file.clone()))
        .await
        .expect("gateway");
    let client = HttpClient::new();
    let url = gw.url(&format!("/v1/odoo/odoo/{TOKEN}"));
    let pad = "x".repeat(4000);
    for n in 0..1500 {
        let body = format!(
            r#"{{"_action": "Saved(#{n})", "_id": {n}, "_model": "res.partner", "id": {n}, "note": "{pad}"}}"#
        );
        let reply = client.post_json(&url, body.as_bytes()).await.expect("post");
        assert_eq!(reply.status, 202);
    }
    inbox.wait_for(1500, WAIT).await.expect("delivered");
    // With its subscription paused, one more event stays queued: it, and the pause, must
    // survive the compaction.
    gw.admin(ADMIN, "POST", "/admin/subscriptions/all/pause", None)
        .await;
    let kept = client
        .post_json(&url, &fixture("native/sale.order.confirmed.json"))
        .await
        .expect("post")
        .json()["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let compact = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gateway-under-test"))
            .args(["storage", "compact"])
            .args(args)
            .output()
            .expect("run")
    };
    let folder = dir.path().join("data");
    let in_use = compact(&["--path", folder.to_str().expect("path")]);
    assert!(!in_use.status.success());
    assert!(
        String::from_utf8_lossy(&in_use.stderr).contains("stop the gateway first"),
        "{in_use:?}"
    );
    // Everything delivered before is pruned once its second has passed.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = gw.admin(ADMIN, "GET", "/admin/status", None).await;
        if status["stored"]["events"].as_u64() == Some(1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never pruned: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = gw.admin(ADMIN, "GET", "/admin/status", None).await["storage"]["size_on_disk"]
        .as_u64()
        .expect("size");
    gw.stop().await.expect("stop");

    let done = compact(&["--config", file.to_str().expect("path")]);
    let said = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(done.status.success(), "{done:?}");
    assert!(said.starts_with("compacted "), "{said}");
    let gw = TestGateway::start_with(ConfigSource::File(file.clone()))
        .await
        .expect("gateway after compaction");
    let status = gw.admin(ADMIN, "GET", "/admin/status", None).await;
    let after = status["storage"]["size_on_disk"].as_u64().expect("size");
    assert!(
        after * 4 < before,
        "{before} bytes before, {after} after: {said}"
    );
    let journey = gw
        .admin(ADMIN, "GET", &format!("/admin/events/{kept}"), None)
        .await;
    assert_eq!(journey["event"]["id"], kept.as_str(), "{journey}");
    gw.admin(ADMIN, "POST", "/admin/subscriptions/all/enable", None)
        .await;
    let received = inbox
        .wait_for(1501, WAIT)
        .await
        .expect("delivered after the restart");
    assert_eq!(received.len(), 1501);
    gw.stop().await.expect("stop");
}
