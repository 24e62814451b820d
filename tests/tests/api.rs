//! The third-party app API end to end over real sockets: subscriptions (CRUD, persistence
//! across a restart, tenant isolation, scopes), plugin uploads (hostile ones refused), test
//! events, the delivery log, replays, dead letters, outbound OAuth2/OAuth1/static-header
//! authentication, and `openapi.json` against the real router.

#[path = "api/receiver.rs"]
mod receiver;

use std::time::Duration;

use base64::Engine as _;
use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::{HttpClient, Reply, TestGateway, fixture, plugin, workspace};
use serde_json::{Value, json};
use sha2::Digest as _;

const SOURCE_TOKEN: &str = "test-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);
/// (app, client id, client secret)
const ACME: (&str, &str, &str) = ("acme", "acme-client", "acme-secret-0123456789");
const OTHER: (&str, &str, &str) = ("other", "other-client", "other-secret-0123456789");

fn app_toml((name, id, secret): (&str, &str, &str)) -> String {
    let hash = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    format!(
        "[[apps]]\nname = \"{name}\"\nscopes = [\"read\", \"write\"]\noauth2_client_id = \"{id}\"\n\
         oauth2_client_secret_sha256 = \"{hash}\"\nrate_limit_per_minute = 100000\ntoken_rate_limit_per_minute = 1000\n"
    )
}

fn config(extra: &str) -> String {
    format!(
        r#"
[server]
admin_token = "admin-token"
[storage]
path = "data"
[delivery]
retries = 0
[delivery.backoff]
schedule = ["50ms"]
jitter = 0.0
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{SOURCE_TOKEN}"]
{acme}
{other}
{extra}
"#,
        acme = app_toml(ACME),
        other = app_toml(OTHER),
    )
}

struct Api {
    client: HttpClient,
    base: String,
    token: String,
}

impl Api {
    /// A client of `app` holding a token with `scope` (space-separated).
    async fn new(gateway: &TestGateway, (_, id, secret): (&str, &str, &str), scope: &str) -> Self {
        let client = HttpClient::new();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        let form = format!(
            "grant_type=client_credentials&scope={}",
            scope.replace(' ', "+")
        );
        let reply = client
            .send(
                "POST",
                &gateway.url("/oauth2/token"),
                &[
                    ("authorization", &format!("Basic {basic}")),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                form.into_bytes(),
            )
            .await
            .expect("token request");
        assert_eq!(reply.status, 200, "token: {:?}", reply.body);
        let token = reply.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        Self {
            client,
            base: gateway.url(""),
            token,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {}", self.token);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        self.client
            .send(method, &format!("{}{path}", self.base), &headers, bytes)
            .await
            .expect("api call")
    }

    async fn upload(&self, bytes: Vec<u8>, content_type: &str, query: &str) -> Reply {
        let auth = format!("Bearer {}", self.token);
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", content_type),
        ];
        self.client
            .send(
                "POST",
                &format!("{}/v1/plugins{query}", self.base),
                &headers,
                bytes,
            )
            .await
            .expect("upload")
    }
}

fn code(reply: &Reply) -> String {
    reply.json()["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn message(reply: &Reply) -> String {
    reply.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn post_order(gateway: &TestGateway, id: &str) {
    let mut order: Value =
        serde_json::from_slice(&fixture("native/sale.order.confirmed.json")).expect("fixture");
    order["x_test_id"] = json!(id);
    let url = gateway.url(&format!("/v1/odoo/odoo/{SOURCE_TOKEN}?event=confirmed"));
    let reply = HttpClient::new()
        .post_json(&url, order.to_string().as_bytes())
        .await
        .expect("ingest");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}

async fn inbox() -> Inbox {
    Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox")
}

/// Polls `f` until it returns `Some`, or panics after [`WAIT`].
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn subscriptions_crud_persists_across_a_restart_and_stays_within_its_app() {
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config("");
    let gateway = TestGateway::start(&text, dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let url = inbox.url("/orders").to_string();

    let created = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"id": "orders", "events": ["sale.order.*"], "destination": {"url": url}})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let created = created.json();
    assert_eq!(created["id"], "orders");
    assert_eq!(created["subscription"], "app.acme.orders");
    let secret = created["destination"]["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"));

    let generated = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"events": ["*.unlink"], "destination": {"url": url}, "format": "xml"})),
        )
        .await;
    assert_eq!(generated.status, 201, "{:?}", generated.body);
    let generated_id = generated.json()["id"]
        .as_str()
        .expect("generated id")
        .to_owned();
    let again = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"id": "orders", "events": ["*"], "destination": {"url": url}})),
        )
        .await;
    assert_eq!(
        (again.status, code(&again).as_str()),
        (409, "already_exists")
    );

    // Validation names the field, and a bad body is told apart from a bad value.
    let bad = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"events": ["sale order"], "destination": {"url": url}})),
        )
        .await;
    assert_eq!(
        (bad.status, code(&bad).as_str()),
        (422, "invalid_subscription")
    );
    assert!(message(&bad).starts_with("events[0]"), "{}", message(&bad));
    let bad = acme
        .call(
            "PUT",
            "/v1/subscriptions/orders",
            Some(json!({"events": ["*"], "destination": {"url": "file:///etc/passwd"}})),
        )
        .await;
    assert!(
        bad.status == 422 && message(&bad).starts_with("destination.url"),
        "{:?}",
        bad.body
    );
    let auth = format!("Bearer {}", acme.token);
    let junk = acme
        .client
        .send(
            "POST",
            &gateway.url("/v1/subscriptions"),
            &[("authorization", &auth)],
            b"{not json".to_vec(),
        )
        .await
        .expect("post");
    assert_eq!((junk.status, code(&junk).as_str()), (400, "malformed_json"));

    let listed = acme.call("GET", "/v1/subscriptions", None).await.json();
    assert_eq!(listed["subscriptions"].as_array().map(Vec::len), Some(2));
    let shown = acme.call("GET", "/v1/subscriptions/orders", None).await;
    assert_eq!(shown.status, 200);
    assert!(
        !String::from_utf8_lossy(&shown.body).contains("whsec_"),
        "the secret is not shown again"
    );
    let patched = acme
        .call(
            "PATCH",
            "/v1/subscriptions/orders",
            Some(json!({"retries": 3, "timeout": "2s", "filter": {"match": {"state": ["sale"]}}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(
        (
            patched.json()["retries"].clone(),
            patched.json()["timeout"].clone()
        ),
        (json!(3), json!("2000ms"))
    );

    // Another app sees nothing of acme's, and cannot touch it.
    let other = Api::new(&gateway, OTHER, "read write").await;
    assert_eq!(
        other
            .call("GET", "/v1/subscriptions/orders", None)
            .await
            .status,
        404
    );
    assert_eq!(
        other
            .call("DELETE", "/v1/subscriptions/orders", None)
            .await
            .status,
        404
    );
    assert_eq!(
        other
            .call(
                "PATCH",
                "/v1/subscriptions/orders",
                Some(json!({"enabled": false}))
            )
            .await
            .status,
        404
    );
    assert_eq!(
        other.call("GET", "/v1/subscriptions", None).await.json()["subscriptions"],
        json!([])
    );
    // A read-only token reads but cannot write; no token at all is a 401.
    let reader = Api::new(&gateway, ACME, "read").await;
    assert_eq!(
        reader
            .call("GET", "/v1/subscriptions/orders", None)
            .await
            .status,
        200
    );
    let denied = reader
        .call("DELETE", "/v1/subscriptions/orders", None)
        .await;
    assert_eq!(
        (denied.status, code(&denied).as_str()),
        (403, "insufficient_scope")
    );
    let anonymous = HttpClient::new()
        .get(&gateway.url("/v1/subscriptions"))
        .await
        .expect("get");
    assert_eq!(anonymous.status, 401);

    // Restart on the same data: the subscriptions are there and join the snapshot at start-up.
    gateway.stop().await.expect("stop");
    let inbox = Inbox::start_local(InboxOptions {
        secrets: vec![secret.parse().expect("secret")],
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let gateway = TestGateway::start(&text, dir.path())
        .await
        .expect("restart");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let listed = acme.call("GET", "/v1/subscriptions", None).await.json();
    assert_eq!(
        listed["subscriptions"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    assert_eq!(
        acme.call("GET", "/v1/subscriptions/orders", None)
            .await
            .json()["retries"],
        3
    );
    let moved = acme
        .call(
            "PATCH",
            "/v1/subscriptions/orders",
            Some(json!({"destination": {"url": inbox.url("/orders").to_string()}})),
        )
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    post_order(&gateway, "after-restart").await;
    let got = inbox
        .wait_for(1, WAIT)
        .await
        .expect("delivered after the restart");
    assert!(
        got[0].verified(),
        "signed with the secret given at creation: {:?}",
        got[0].verification
    );
    assert!(
        got[0]
            .webhook_id()
            .is_some_and(|id| id.contains(".app.acme.orders."))
    );

    assert_eq!(
        acme.call("DELETE", &format!("/v1/subscriptions/{generated_id}"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        acme.call("GET", &format!("/v1/subscriptions/{generated_id}"), None)
            .await
            .status,
        404
    );
    gateway.stop().await.expect("stop");
}

#[tokio::test]
async fn hostile_uploads_are_refused_and_an_uploaded_plugin_delivers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(""), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;

    let wrong_world =
        wat::parse_file(workspace().join("gateway/tests/wat/missing_export.wat")).expect("wat");
    let echo =
        std::fs::read_to_string(workspace().join("gateway/tests/wat/echo.wat")).expect("echo.wat");
    let wasi_import = "(import \"wasi:cli/environment@0.2.0\" (instance (export \"get-environment\" (func (result (list (tuple string string)))))))";
    let with_wasi = wat::parse_str(echo.replace(";; EXTRA IMPORTS", wasi_import)).expect("wat");
    let core_module = wat::parse_str("(module (func (export \"handle\")))").expect("wat");
    let cases: [(Vec<u8>, &str, u16, &str); 6] = [
        (
            b"MZ this is not wasm".to_vec(),
            "application/wasm",
            422,
            "plugin_compile_failed",
        ),
        (core_module, "application/wasm", 422, "plugin_not_a_plugin"),
        (wrong_world, "application/wasm", 422, "plugin_not_a_plugin"),
        (with_wasi, "application/wasm", 422, "plugin_not_a_plugin"),
        (
            b"\0asm\x0d\0\x01\0garbage".to_vec(),
            "application/wasm",
            422,
            "plugin_compile_failed",
        ),
        (
            std::fs::read(plugin("order_filter")).expect("plugin"),
            "application/octet-stream",
            415,
            "unsupported_media_type",
        ),
    ];
    for (bytes, content_type, status, expected) in cases {
        let reply = acme.upload(bytes, content_type, "").await;
        assert_eq!(
            (reply.status, code(&reply).as_str()),
            (status, expected),
            "{:?}",
            reply.body
        );
    }
    let huge = acme
        .upload(vec![0; 10 * 1024 * 1024 + 1], "application/wasm", "")
        .await;
    assert_eq!(
        (huge.status, code(&huge).as_str()),
        (413, "payload_too_large")
    );
    assert_eq!(
        acme.call("GET", "/v1/plugins", None).await.json()["plugins"],
        json!([]),
        "nothing was kept"
    );
    let stored = std::fs::read_dir(dir.path().join("data/plugins"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0, "no file was written");

    let wasm = std::fs::read(plugin("order_filter")).expect("plugin");
    let uploaded = acme
        .upload(wasm.clone(), "application/wasm", "?name=order-filter")
        .await;
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.body);
    let hash = uploaded.json()["hash"].as_str().expect("hash").to_owned();
    assert!(
        dir.path()
            .join(format!("data/plugins/{hash}.wasm"))
            .exists()
    );
    assert_eq!(
        acme.upload(wasm, "application/wasm", "?name=order-filter")
            .await
            .status,
        200,
        "same bytes again"
    );
    let listed = acme.call("GET", "/v1/plugins", None).await.json();
    assert_eq!(listed["plugins"][0]["name"], "order-filter");

    let inbox = inbox().await;
    let url = inbox.url("/filtered").to_string();
    let sub = |config: Value| json!({"id": "big", "events": ["sale.order.confirmed"], "destination": {"url": url}, "plugin": "order-filter", "config": config});
    let refused = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(sub(json!({"min_amount_total": "lots"}))),
        )
        .await;
    assert_eq!(
        (refused.status, code(&refused).as_str()),
        (422, "plugin_invalid_config"),
        "{:?}",
        refused.body
    );
    assert_eq!(
        acme.call("GET", "/v1/subscriptions/big", None).await.status,
        404,
        "the refused subscription was not kept"
    );
    let other = Api::new(&gateway, OTHER, "read write").await;
    let foreign = other
        .call(
            "POST",
            "/v1/subscriptions",
            Some(sub(json!({"min_amount_total": 1000}))),
        )
        .await;
    assert!(
        foreign.status == 422 && message(&foreign).starts_with("plugin:"),
        "another app's plugin: {:?}",
        foreign.body
    );
    assert_eq!(
        other.call("GET", "/v1/plugins", None).await.json()["plugins"],
        json!([])
    );

    let created = acme
        .call(
            "POST",
            "/v1/subscriptions",
            Some(sub(json!({"min_amount_total": 1000}))),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = created.json()["destination"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    post_order(&gateway, "plugin").await;
    let got = inbox.wait_for(1, WAIT).await.expect("the plugin delivered");
    let body: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(
        body["name"], "S00012",
        "order-filter passes the order through: {body}"
    );
    let secret: odoo_gateway::signing::SigningSecret = secret.parse().expect("secret");
    let id = got[0].webhook_id().expect("id");
    let ts = got[0].header("webhook-timestamp").expect("ts");
    let sig = got[0].header("webhook-signature").expect("sig");
    let now: i64 = ts.parse().expect("ts");
    let checked = odoo_gateway::signing::verify(
        &[secret],
        id,
        ts,
        sig,
        &got[0].body,
        now,
        Duration::from_secs(60),
    );
    assert!(
        checked.is_ok(),
        "signed with the subscription's secret: {checked:?}"
    );

    // Raising the threshold through the API filters the next order out.
    let patched = acme
        .call(
            "PATCH",
            "/v1/subscriptions/big",
            Some(json!({"config": {"min_amount_total": 5000}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    post_order(&gateway, "plugin-2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(inbox.received().len(), 1, "filtered out by the plugin");
    gateway.stop().await.expect("stop");
}

#[tokio::test]
async fn test_event_delivery_log_replay_and_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(""), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let good = inbox().await;
    let failing = Inbox::start_local(InboxOptions {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    for (id, url) in [
        ("a", good.url("/a")),
        ("b", good.url("/b")),
        ("down", failing.url("/down")),
    ] {
        let body = json!({"id": id, "events": ["sale.order.*"], "destination": {"url": url.to_string()}, "retries": 0});
        let reply = acme.call("POST", "/v1/subscriptions", Some(body)).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
    }

    // A test event reaches only the subscription it was sent to.
    let sent = acme.call("POST", "/v1/subscriptions/a/test", None).await;
    assert_eq!(sent.status, 202, "{:?}", sent.body);
    assert_eq!(sent.json()["event_type"], "sale.order.test");
    let event_id = sent.json()["event_id"]
        .as_str()
        .expect("event id")
        .to_owned();
    let got = good.wait_for(1, WAIT).await.expect("test event delivered");
    assert_eq!(got[0].path, "/a");
    let envelope: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(
        (
            envelope["id"].as_str(),
            envelope["payload"]["test"].as_bool()
        ),
        (Some(event_id.as_str()), Some(true))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(good.received().len(), 1, "subscription b did not get it");

    // The delivery log shows it with its attempt; a replay sends it again with the same id.
    let log = eventually("the delivery log", || async {
        let log = acme
            .call("GET", "/v1/subscriptions/a/deliveries", None)
            .await
            .json();
        (log["deliveries"][0]["status"] == "delivered").then_some(log)
    })
    .await;
    let delivery = &log["deliveries"][0];
    assert_eq!(delivery["event_id"], event_id.as_str());
    assert_eq!(delivery["attempts"][0]["status"], 200);
    let job_id = delivery["id"].as_str().expect("job id").to_owned();
    assert_eq!(
        acme.call("GET", "/v1/subscriptions/b/deliveries", None)
            .await
            .json()["deliveries"],
        json!([])
    );
    let other = Api::new(&gateway, OTHER, "read write").await;
    assert_eq!(
        other
            .call("POST", &format!("/v1/deliveries/{job_id}/replay"), None)
            .await
            .status,
        404
    );
    assert_eq!(
        other
            .call("GET", "/v1/subscriptions/a/deliveries", None)
            .await
            .status,
        404
    );
    let replayed = acme
        .call("POST", &format!("/v1/deliveries/{job_id}/replay"), None)
        .await;
    assert_eq!(replayed.status, 202, "{:?}", replayed.body);
    let got = good.wait_for(2, WAIT).await.expect("replayed");
    assert_eq!(
        got[1].webhook_id(),
        got[0].webhook_id(),
        "a replay keeps the delivery id"
    );

    // A failing receiver: the delivery is dead-lettered, listed for its app only, replayed.
    assert_eq!(
        acme.call("POST", "/v1/subscriptions/down/test", None)
            .await
            .status,
        202
    );
    let letters = eventually("a dead letter", || async {
        let letters =
            acme.call("GET", "/v1/dead-letters", None).await.json()["dead_letters"].clone();
        (letters.as_array().is_some_and(|l| !l.is_empty())).then_some(letters)
    })
    .await;
    assert_eq!(letters[0]["subscription"], "down");
    let dead_id = letters[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        other.call("GET", "/v1/dead-letters", None).await.json()["dead_letters"],
        json!([])
    );
    assert_eq!(
        other
            .call("POST", &format!("/v1/dead-letters/{dead_id}/replay"), None)
            .await
            .status,
        404
    );
    let log = acme
        .call("GET", "/v1/subscriptions/down/deliveries", None)
        .await
        .json();
    assert_eq!(log["deliveries"][0]["status"], "dead");
    assert_eq!(log["deliveries"][0]["attempts"][0]["status"], 503);

    failing.set_status(http::StatusCode::OK);
    let replayed = acme
        .call("POST", &format!("/v1/dead-letters/{dead_id}/replay"), None)
        .await;
    assert_eq!(replayed.status, 202, "{:?}", replayed.body);
    let log = eventually("the replayed delivery", || async {
        let log = acme
            .call("GET", "/v1/subscriptions/down/deliveries", None)
            .await
            .json();
        (log["deliveries"][0]["status"] == "delivered").then_some(log)
    })
    .await;
    let statuses: Vec<_> = log["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(503), json!(200)], "both attempts are kept");
    assert_eq!(
        acme.call("GET", "/v1/dead-letters", None).await.json()["dead_letters"],
        json!([])
    );
    gateway.stop().await.expect("stop");
}

#[tokio::test]
async fn outbound_oauth2_token_is_cached_and_refreshed_after_a_401() {
    let receiver = receiver::Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(""), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let auth = json!({"type": "oauth2", "token_url": receiver.url("/token"), "client_id": receiver::CLIENT_ID,
                      "client_secret": receiver::CLIENT_SECRET, "scopes": ["hooks"]});
    let body = json!({"id": "tokens", "events": ["sale.order.confirmed"], "destination": {"url": receiver.url("/hook-oauth2"), "auth": auth}});
    let created = acme.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert!(
        !String::from_utf8_lossy(&created.body).contains(receiver::CLIENT_SECRET),
        "the client secret is not echoed"
    );

    for n in 0..3 {
        post_order(&gateway, &format!("oauth2-{n}")).await;
    }
    eventually("three deliveries", || async {
        (receiver.hits("/hook-oauth2").len() >= 3).then_some(())
    })
    .await;
    let hits = receiver.hits("/hook-oauth2");
    assert!(
        hits.iter()
            .all(|h| h.status == 200 && h.authorization.as_deref() == Some("Bearer tok-1")),
        "{hits:?}"
    );
    assert_eq!(
        receiver
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one token for several deliveries"
    );

    // The receiver stops taking the token: one 401, one refresh, and the same attempt succeeds.
    receiver.revoke_all();
    post_order(&gateway, "oauth2-after-revoke").await;
    eventually("the retried delivery", || async {
        (receiver.hits("/hook-oauth2").len() >= 5).then_some(())
    })
    .await;
    let hits = receiver.hits("/hook-oauth2");
    assert_eq!((hits[3].status, hits[4].status), (401, 200), "{hits:?}");
    assert_eq!(hits[4].authorization.as_deref(), Some("Bearer tok-2"));
    assert_eq!(
        receiver
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    let log = acme
        .call("GET", "/v1/subscriptions/tokens/deliveries", None)
        .await
        .json();
    assert_eq!(
        log["deliveries"][0]["attempts"].as_array().map(Vec::len),
        Some(1),
        "the refresh is inside one attempt"
    );
    gateway.stop().await.expect("stop");
}

#[tokio::test]
async fn outbound_oauth1_and_static_header_from_the_configuration_file() {
    let receiver = receiver::Receiver::start().await;
    let destinations = format!(
        r#"
[[destinations]]
name = "shop"
url = "{oauth1}"
auth = {{ type = "oauth1", consumer_key = "{ck}", consumer_secret = "{cs}", token = "{tk}", token_secret = "{ts}" }}
[[destinations]]
name = "keyed"
url = "{keyed}"
auth = {{ type = "static_header", name = "x-api-key", value = "{key}" }}
[[subscriptions]]
id = "shop"
events = ["sale.order.*"]
destinations = ["shop"]
[[subscriptions]]
id = "keyed"
events = ["sale.order.*"]
destinations = ["keyed"]
"#,
        oauth1 = receiver.url("/hook-oauth1?shop=main&lang=fr"),
        keyed = receiver.url("/hook-static"),
        ck = receiver::CONSUMER_KEY,
        cs = receiver::CONSUMER_SECRET,
        tk = receiver::TOKEN,
        ts = receiver::TOKEN_SECRET,
        key = receiver::API_KEY,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(&destinations), dir.path())
        .await
        .expect("gateway");
    post_order(&gateway, "oauth1").await;
    eventually("both deliveries", || async {
        (!receiver.hits("/hook-oauth1").is_empty() && !receiver.hits("/hook-static").is_empty())
            .then_some(())
    })
    .await;
    let signed = &receiver.hits("/hook-oauth1")[0];
    assert_eq!(
        signed.status, 200,
        "the OAuth1 signature verifies: {signed:?}"
    );
    assert!(signed.authorization.as_deref().is_some_and(
        |a| a.starts_with("OAuth ") && a.contains("oauth_signature_method=\"HMAC-SHA1\"")
    ));
    assert_eq!(
        receiver.hits("/hook-static")[0].status,
        200,
        "the static header is sent"
    );

    // A bad auth block is refused with its key named, at start-up as on reload.
    let bad = config(&destinations.replace("HMAC-SHA1", "x").replace(
        "token_secret = ",
        "signature_method = \"PLAINTEXT\", token_secret = ",
    ));
    let err = TestGateway::start(&bad, tempfile::tempdir().expect("tempdir").path())
        .await
        .expect_err("refused");
    assert!(
        format!("{err:#}").contains("destinations[0].auth.signature_method"),
        "{err:#}"
    );
    gateway.stop().await.expect("stop");
}

/// Every documented operation is routed (answers something other than the router's 404 or
/// 405) and every route of [`odoo_gateway::api::API_ROUTES`] is documented.
#[tokio::test]
async fn openapi_documents_exactly_the_routes_the_server_has() {
    let text = std::fs::read_to_string(workspace().join("openapi.json"))
        .expect("openapi.json at the repository root");
    let doc: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    for (method, path) in odoo_gateway::api::API_ROUTES {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not in openapi.json"
        );
    }
    for (method, path) in &documented {
        let under_api = [
            "/v1/subscriptions",
            "/v1/plugins",
            "/v1/deliveries",
            "/v1/dead-letters",
        ]
        .iter()
        .any(|p| path.starts_with(p));
        if under_api {
            assert!(
                odoo_gateway::api::API_ROUTES.contains(&(method.as_str(), path.as_str())),
                "{method} {path} is documented but not routed"
            );
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(""), dir.path())
        .await
        .expect("gateway");
    let client = HttpClient::new();
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "x")
            .replace("{source}", "odoo")
            .replace("{token}", "t");
        let reply = client
            .send(method, &gateway.url(&concrete), &[], Vec::new())
            .await
            .expect("request");
        let unrouted = reply.status == 405
            || (reply.status == 404
                && serde_json::from_slice::<Value>(&reply.body)
                    .is_ok_and(|v| v["error"]["code"] == "not_found"));
        assert!(
            !unrouted,
            "{method} {path} is documented but the server answers {}",
            reply.status
        );
    }
    gateway.stop().await.expect("stop");
}
