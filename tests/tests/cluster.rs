//! Several gateways on one shared control plane (`[storage] engine = "nats"`), against a real
//! `nats-server -js`: what one instance registers, stores or pauses is served by the others
//! within a second, and what must be unique (an app's name, a subscription id, an OAuth1
//! nonce) is unique across all of them. The control plane's behaviour is also run against
//! both engines, sled and NATS, with one scenario.

use std::time::{Duration, Instant};

use base64::Engine as _;
use odoo_gateway::auth::{OAuth1Credentials, SignatureMethod, authorization_header};
use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::nats::{Engine, NatsCluster, NatsServer};
use odoo_gateway_tests::{HttpClient, Reply, TestGateway, fixture, plugin};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789";
const SOURCE_TOKEN: &str = "test-token-0123456789";
/// What both instances are reached as, behind their load balancer (OAuth1 signs it).
const PUBLIC_URL: &str = "http://gateway.test";
/// The promise: another instance serves a change within this.
const PROPAGATION: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(20);
/// A JetStream cluster that lost a node takes seconds to reconnect its clients and elect new
/// leaders, more on a loaded machine.
const CLUSTER_WAIT: Duration = Duration::from_secs(45);

fn config(engine: &Engine<'_>) -> String {
    format!(
        r#"{storage}
[server]
admin_token = "{ADMIN}"
public_url = "{PUBLIC_URL}"
[delivery]
retries = 0
[delivery.backoff]
schedule = ["50ms"]
jitter = 0.0
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[delivery.client.app_ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{SOURCE_TOKEN}"]
"#,
        storage = engine.storage_toml("data"),
    )
}

/// A gateway on `engine` with a sled folder of its own.
async fn instance(engine: &Engine<'_>) -> (TestGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(engine), dir.path())
        .await
        .expect("gateway starts");
    (gateway, dir)
}

async fn send(gw: &TestGateway, method: &str, path: &str, auth: &str, body: Vec<u8>) -> Reply {
    let content_type = if path.starts_with("/oauth2/") {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    HttpClient::new()
        .send(
            method,
            &gw.url(path),
            &[("authorization", auth), ("content-type", content_type)],
            body,
        )
        .await
        .expect("request")
}

async fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<Value>) -> Reply {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    send(gw, method, path, &format!("Bearer {ADMIN}"), body).await
}

/// Registers app `name` (every event granted) on `gw`; its credentials.
async fn register(gw: &TestGateway, name: &str) -> Value {
    let reply = admin(
        gw,
        "POST",
        "/admin/apps",
        Some(json!({"name": name, "scopes": ["read", "write"], "events": ["*"]})),
    )
    .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.json()
}

/// The token endpoint's answer for the app's client credentials.
async fn token_reply(gw: &TestGateway, app: &Value) -> Reply {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        app["oauth2_client_id"].as_str().expect("client id"),
        app["oauth2_client_secret"].as_str().expect("secret")
    ));
    send(
        gw,
        "POST",
        "/oauth2/token",
        &format!("Basic {basic}"),
        b"grant_type=client_credentials".to_vec(),
    )
    .await
}

async fn token(gw: &TestGateway, app: &Value) -> String {
    let reply = token_reply(gw, app).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn api(
    gw: &TestGateway,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    send(gw, method, path, &format!("Bearer {token}"), body).await
}

/// POSTs the `orders` subscription (every `sale.order.*` event to `path` on `receiver`) with
/// `token`.
async fn create_orders(gw: &TestGateway, token: &str, receiver: &Inbox, path: &str) -> Reply {
    let url = receiver.url(path).to_string();
    let body = json!({"id": "orders", "events": ["sale.order.*"], "destination": {"url": url}});
    api(gw, token, "POST", "/v1/subscriptions", Some(body)).await
}

fn code(reply: &Reply) -> String {
    reply.json()["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn post_order(gw: &TestGateway, id: &str) {
    let reply = offer_order(gw, id).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}

/// Posts a confirmed order tagged `id` the way Odoo does; the answer.
async fn offer_order(gw: &TestGateway, id: &str) -> Reply {
    let mut order: Value =
        serde_json::from_slice(&fixture("native/sale.order.confirmed.json")).expect("fixture");
    order["x_test_id"] = json!(id);
    let url = gw.url(&format!("/v1/odoo/odoo/{SOURCE_TOKEN}?event=confirmed"));
    HttpClient::new()
        .post_json(&url, order.to_string().as_bytes())
        .await
        .expect("ingest")
}

/// [`post_order`], retried while the answer is `503` (a client's part during a failover), for
/// up to `patience`.
async fn post_order_retrying(gw: &TestGateway, id: &str, patience: Duration) {
    let start = Instant::now();
    loop {
        let reply = offer_order(gw, id).await;
        if reply.status != 503 || start.elapsed() > patience {
            assert_eq!(reply.status, 202, "{:?}", reply.body);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn inbox() -> Inbox {
    Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox")
}

/// Polls `f` until it is true; how long that took, or `None` after `within`.
async fn within<F: std::future::Future<Output = bool>>(
    within: Duration,
    mut f: impl FnMut() -> F,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The subscription `id` as `gw`'s `/admin/subscriptions` lists it.
async fn listed(gw: &TestGateway, id: &str) -> Option<Value> {
    let all = admin(gw, "GET", "/admin/subscriptions", None).await.json();
    all["subscriptions"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
}

fn nats<'a>(server: &'a NatsServer, prefix: &'a str) -> Engine<'a> {
    Engine::Nats { server, prefix }
}

#[tokio::test]
async fn an_app_registered_on_one_instance_gets_a_token_on_another_and_names_stay_unique() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "apps");
    let ((a, _da), (b, _db)) = (instance(&engine).await, instance(&engine).await);

    let erp = register(&a, "erp").await;
    let took = within(PROPAGATION, || async {
        token_reply(&b, &erp).await.status == 200
    })
    .await;
    assert!(took.is_some(), "B issues a token to an app registered on A");

    // A token issued by one instance is honoured by the other: the hashes are shared.
    let from_b = token(&b, &erp).await;
    let whoami = api(&a, &from_b, "GET", "/v1/whoami", None).await;
    assert_eq!(
        (whoami.status, whoami.json()["app"].clone()),
        (200, json!("erp"))
    );

    let again = admin(
        &b,
        "POST",
        "/admin/apps",
        Some(json!({"name": "erp", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(
        (again.status, code(&again).as_str()),
        (409, "conflict"),
        "{:?}",
        again.body
    );
    let apps = admin(&b, "GET", "/admin/apps", None).await.json();
    assert_eq!(
        apps["apps"].as_array().map(|a| a.len()),
        Some(1),
        "one app, whichever instance is asked: {apps}"
    );

    // Two instances asked for one name at the same moment: exactly one registers it.
    for round in 0..5 {
        let body = Some(json!({"name": format!("race-{round}"), "scopes": ["read"]}));
        let (on_a, on_b) = tokio::join!(
            admin(&a, "POST", "/admin/apps", body.clone()),
            admin(&b, "POST", "/admin/apps", body.clone()),
        );
        let mut statuses = [on_a.status, on_b.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}");
    }
}

#[tokio::test]
async fn an_api_subscription_made_on_one_instance_is_served_by_another_within_a_second() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "subs");
    let ((a, _da), (b, _db)) = (instance(&engine).await, instance(&engine).await);
    let erp = register(&a, "erp").await;
    let on_a = token(&a, &erp).await;
    let receiver = inbox().await;

    let created = create_orders(&a, &on_a, &receiver, "/orders").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let took = within(PROPAGATION, || async {
        listed(&b, "app.erp.orders").await.is_some()
    })
    .await;
    assert!(
        took.is_some(),
        "B serves the subscription within {PROPAGATION:?}"
    );

    post_order(&b, "via-b").await;
    let got = receiver.wait_for(1, WAIT).await.expect("B delivers");
    assert_eq!(got[0].path, "/orders");

    // The id is taken on every instance.
    let on_b = token(&b, &erp).await;
    let twice = create_orders(&b, &on_b, &receiver, "/other").await;
    assert_eq!(
        (twice.status, code(&twice).as_str()),
        (409, "already_exists"),
        "{:?}",
        twice.body
    );

    // A pause on A holds B's deliveries; an enable on A lets them go.
    let paused = admin(
        &a,
        "POST",
        "/admin/subscriptions/app.erp.orders/pause",
        None,
    )
    .await;
    assert_eq!(paused.status, 200, "{:?}", paused.body);
    let took = within(PROPAGATION, || async {
        listed(&b, "app.erp.orders")
            .await
            .is_some_and(|s| s["paused"] == true)
    })
    .await;
    assert!(took.is_some(), "B sees the pause within {PROPAGATION:?}");
    post_order(&b, "while-paused").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing delivered while paused"
    );
    let enabled = admin(
        &a,
        "POST",
        "/admin/subscriptions/app.erp.orders/enable",
        None,
    )
    .await;
    assert_eq!(enabled.status, 200, "{:?}", enabled.body);
    receiver
        .wait_for(2, WAIT)
        .await
        .expect("B delivers what waited once A enabled it");

    // The delivery log is the cluster's: each instance lists both deliveries, whichever
    // instance made them.
    for (gw, bearer) in [(&a, &on_a), (&b, &on_b)] {
        let log = within(WAIT, || async {
            let log = api(
                gw,
                bearer,
                "GET",
                "/v1/subscriptions/orders/deliveries",
                None,
            )
            .await
            .json();
            log["deliveries"]
                .as_array()
                .is_some_and(|d| d.len() == 2 && d.iter().all(|j| j["status"] == "delivered"))
        })
        .await;
        assert!(log.is_some(), "every instance lists both deliveries");
    }
}

#[tokio::test]
async fn a_plugin_uploaded_on_one_instance_is_fetched_by_another() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "plugins");
    let ((a, _da), (b, db)) = (instance(&engine).await, instance(&engine).await);
    let erp = register(&a, "erp").await;
    let on_a = token(&a, &erp).await;
    let wasm = std::fs::read(plugin("order_filter")).expect("plugin");
    let auth = format!("Bearer {on_a}");
    let uploaded = HttpClient::new()
        .send(
            "POST",
            &a.url("/v1/plugins?name=order-filter"),
            &[
                ("authorization", &auth),
                ("content-type", "application/wasm"),
            ],
            wasm,
        )
        .await
        .expect("upload");
    assert_eq!(uploaded.status, 201, "{:?}", uploaded.body);
    let hash = uploaded.json()["hash"].as_str().expect("hash").to_owned();

    // B names the plugin A stored: it finds the record, fetches the bytes, checks the config.
    let on_b = token(&b, &erp).await;
    let receiver = inbox().await;
    let body = json!({"id": "big", "events": ["sale.order.confirmed"], "destination": {"url": receiver.url("/big").to_string()}, "plugin": "order-filter", "config": {"min_amount_total": 0}});
    let start = Instant::now();
    let created = loop {
        let reply = api(&b, &on_b, "POST", "/v1/subscriptions", Some(body.clone())).await;
        if reply.status == 201 || start.elapsed() > PROPAGATION {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert!(
        db.path().join(format!("data/plugins/{hash}.wasm")).exists(),
        "B keeps the component as a file of its own"
    );
    let took = within(PROPAGATION, || async {
        listed(&a, "app.erp.big").await.is_some()
    })
    .await;
    assert!(took.is_some(), "A serves B's subscription");
    post_order(&a, "big-order").await;
    receiver
        .wait_for(1, WAIT)
        .await
        .expect("A runs the plugin and delivers");
}

#[tokio::test]
async fn a_replayed_oauth1_nonce_is_refused_by_another_instance() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "nonces");
    let ((a, _da), (b, _db)) = (instance(&engine).await, instance(&engine).await);
    let erp = register(&a, "erp").await;
    let credentials = OAuth1Credentials {
        consumer_key: erp["oauth1_consumer_key"].as_str().expect("key").into(),
        consumer_secret: erp["oauth1_consumer_secret"]
            .as_str()
            .expect("secret")
            .into(),
        token: Some(erp["oauth1_token"].as_str().expect("token").into()),
        token_secret: erp["oauth1_token_secret"].as_str().expect("secret").into(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let signed = |nonce: &str| {
        authorization_header(
            "GET",
            &format!("{PUBLIC_URL}/v1/whoami"),
            &[],
            &credentials,
            SignatureMethod::HmacSha256,
            now,
            nonce,
        )
        .expect("sign")
    };
    let mut n = 0;
    let known = within(PROPAGATION, || {
        n += 1;
        let header = signed(&format!("warm-up-{n}"));
        let b = &b;
        async move {
            send(b, "GET", "/v1/whoami", &header, Vec::new())
                .await
                .status
                == 200
        }
    })
    .await;
    assert!(known.is_some(), "B knows the app registered on A");

    for (first, second) in [(&a, &b), (&b, &a)] {
        let header = signed(&format!("once-{}", first.addr));
        let used = send(first, "GET", "/v1/whoami", &header, Vec::new()).await;
        assert_eq!(used.status, 200, "{:?}", used.body);
        let replayed = send(second, "GET", "/v1/whoami", &header, Vec::new()).await;
        assert_eq!(
            (replayed.status, code(&replayed).as_str()),
            (401, "nonce_reused"),
            "{:?}",
            replayed.body
        );
    }
}

#[tokio::test]
async fn an_app_removed_on_one_instance_stops_delivering_on_another() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "removal");
    let ((a, _da), (b, _db)) = (instance(&engine).await, instance(&engine).await);
    let erp = register(&a, "erp").await;
    let on_a = token(&a, &erp).await;
    let receiver = inbox().await;
    let created = create_orders(&a, &on_a, &receiver, "/orders").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert!(
        within(PROPAGATION, || async {
            listed(&b, "app.erp.orders").await.is_some()
        })
        .await
        .is_some()
    );
    let on_b = token(&b, &erp).await;
    post_order(&b, "before").await;
    receiver.wait_for(1, WAIT).await.expect("delivered before");

    let removed = admin(&a, "DELETE", "/admin/apps/erp", None).await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    let took = within(PROPAGATION, || async {
        listed(&b, "app.erp.orders").await.is_none()
    })
    .await;
    assert!(
        took.is_some(),
        "B drops the app's subscription within {PROPAGATION:?}"
    );
    let refused = api(&b, &on_b, "GET", "/v1/subscriptions", None).await;
    assert_eq!(
        refused.status, 401,
        "B's token of the removed app: {:?}",
        refused.body
    );
    post_order(&b, "after").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing delivered after the removal"
    );

    // The name and the credential index were released: the name can be registered again,
    // and the new app starts from nothing.
    let again = register(&b, "erp").await;
    let on_b = token(&b, &again).await;
    let subs = api(&b, &on_b, "GET", "/v1/subscriptions", None).await;
    assert_eq!(subs.json()["subscriptions"], json!([]), "{:?}", subs.body);
}

#[tokio::test]
async fn one_subscription_id_created_on_two_instances_at_once_is_created_once() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "race");
    let ((a, _da), (b, _db)) = (instance(&engine).await, instance(&engine).await);
    let erp = register(&a, "erp").await;
    let (on_a, on_b) = (token(&a, &erp).await, token(&b, &erp).await);
    let receiver = inbox().await;
    for round in 0..5 {
        let body = Some(
            json!({"id": format!("race-{round}"), "events": ["sale.order.*"], "destination": {"url": receiver.url("/race").to_string()}}),
        );
        let (first, second) = tokio::join!(
            api(&a, &on_a, "POST", "/v1/subscriptions", body.clone()),
            api(&b, &on_b, "POST", "/v1/subscriptions", body.clone()),
        );
        let mut statuses = [first.status, second.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [201, 409],
            "round {round}: {:?} {:?}",
            first.body,
            second.body
        );
    }
    let listed = api(&a, &on_a, "GET", "/v1/subscriptions", None)
        .await
        .json();
    assert_eq!(
        listed["subscriptions"].as_array().map(Vec::len),
        Some(5),
        "{listed}"
    );
}

/// One scenario of the control plane's behaviour, the same on both engines: registering,
/// tokens, subscriptions, and everything still there after a restart.
async fn control_plane_scenario(engine: Engine<'_>) {
    let name = engine.name();
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&engine), dir.path())
        .await
        .expect("gateway starts");
    let status = admin(&gw, "GET", "/admin/status", None).await.json();
    assert_eq!(status["control_plane"], name, "{status}");
    let erp = register(&gw, "erp").await;
    let again = admin(&gw, "POST", "/admin/apps", Some(json!({"name": "erp"}))).await;
    assert_eq!(again.status, 409, "{name}: {:?}", again.body);
    let token = token(&gw, &erp).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        erp["oauth2_client_id"].as_str().expect("id"),
        erp["oauth2_client_secret"].as_str().expect("secret")
    ));
    let introspected = send(
        &gw,
        "POST",
        "/oauth2/introspect",
        &format!("Basic {basic}"),
        format!("token={token}").into_bytes(),
    )
    .await;
    assert_eq!(
        introspected.json()["active"],
        true,
        "{name}: {:?}",
        introspected.body
    );

    let receiver = inbox().await;
    let sub = json!({"id": "orders", "events": ["sale.order.*"], "destination": {"url": receiver.url("/orders").to_string()}});
    let created = api(&gw, &token, "POST", "/v1/subscriptions", Some(sub.clone())).await;
    assert_eq!(created.status, 201, "{name}: {:?}", created.body);
    let twice = api(&gw, &token, "POST", "/v1/subscriptions", Some(sub)).await;
    assert_eq!(twice.status, 409, "{name}: {:?}", twice.body);
    let patched = api(
        &gw,
        &token,
        "PATCH",
        "/v1/subscriptions/orders",
        Some(json!({"events": ["sale.order.confirmed"]})),
    )
    .await;
    assert_eq!(patched.status, 200, "{name}: {:?}", patched.body);
    post_order(&gw, "one").await;
    receiver.wait_for(1, WAIT).await.expect("delivered");
    let paused = admin(
        &gw,
        "POST",
        "/admin/subscriptions/app.erp.orders/pause",
        None,
    )
    .await;
    assert_eq!(paused.status, 200, "{name}: {:?}", paused.body);
    gw.stop().await.expect("stops");

    // Restarted (with NATS, on a fresh sled folder: nothing of the control plane was in it).
    let dir = if matches!(engine, Engine::Nats { .. }) {
        tempfile::tempdir().expect("tempdir")
    } else {
        dir
    };
    let gw = TestGateway::start(&config(&engine), dir.path())
        .await
        .expect("gateway restarts");
    let listed_sub = listed(&gw, "app.erp.orders").await;
    assert!(
        listed_sub
            .as_ref()
            .is_some_and(|s| s["paused"] == true && s["events"] == json!(["sale.order.confirmed"])),
        "{name}: the subscription and its pause survive: {listed_sub:?}"
    );
    let whoami = api(&gw, &token, "GET", "/v1/whoami", None).await;
    assert_eq!(
        whoami.status, 200,
        "{name}: the token survives: {:?}",
        whoami.body
    );
    let revoked = send(
        &gw,
        "POST",
        "/oauth2/revoke",
        &format!("Basic {basic}"),
        format!("token={token}").into_bytes(),
    )
    .await;
    assert_eq!(revoked.status, 200, "{name}: {:?}", revoked.body);
    let whoami = api(&gw, &token, "GET", "/v1/whoami", None).await;
    assert_eq!(whoami.status, 401, "{name}: revoked: {:?}", whoami.body);
    let fresh = token_reply(&gw, &erp).await;
    let deleted = api(
        &gw,
        fresh.json()["access_token"].as_str().expect("token"),
        "DELETE",
        "/v1/subscriptions/orders",
        None,
    )
    .await;
    assert_eq!(deleted.status, 200, "{name}: {:?}", deleted.body);
    assert!(
        listed(&gw, "app.erp.orders").await.is_none(),
        "{name}: deleted"
    );
    gw.stop().await.expect("stops");
}

#[tokio::test]
async fn the_control_plane_behaves_alike_on_sled_and_on_nats() {
    control_plane_scenario(Engine::Sled).await;
    let server = NatsServer::start().expect("nats-server");
    control_plane_scenario(nats(&server, "scenario")).await;
}

#[tokio::test]
async fn while_nats_is_down_ingest_refuses_clearly_and_everything_accepted_is_delivered_after() {
    let mut server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "outage");
    let config_text = config(&engine);
    let (da, db) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = TestGateway::start(&config_text, da.path())
        .await
        .expect("A");
    let b = TestGateway::start(&config_text, db.path())
        .await
        .expect("B");
    let erp = register(&a, "erp").await;
    let on_a = token(&a, &erp).await;
    let receiver = inbox().await;
    let subscribe = |id: &'static str| {
        let (a, on_a, url) = (
            &a,
            on_a.clone(),
            receiver.url(&format!("/{id}")).to_string(),
        );
        async move {
            api(
                a,
                &on_a,
                "POST",
                "/v1/subscriptions",
                Some(json!({"id": id, "events": ["sale.order.*"], "destination": {"url": url}})),
            )
            .await
        }
    };
    assert_eq!(subscribe("before").await.status, 201);
    assert!(
        within(PROPAGATION, || async {
            listed(&b, "app.erp.before").await.is_some()
        })
        .await
        .is_some()
    );

    post_order(&b, "before").await;
    receiver.wait_for(1, WAIT).await.expect("delivered");

    server.kill();
    // Nothing is acknowledged that JetStream does not hold: ingest answers a clear 503.
    let reply = offer_order(&b, "during").await;
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (503, "queue_unavailable"),
        "{:?}",
        reply.body
    );
    let refused = api(&a, &on_a, "GET", "/v1/subscriptions", None).await;
    assert_eq!(
        (refused.status, code(&refused).as_str()),
        (503, "control_plane_unavailable"),
        "{:?}",
        refused.body
    );
    // A load balancer's readiness probe takes the instance out meanwhile.
    let ready = HttpClient::new()
        .get(&b.url("/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status, 503, "{:?}", ready.body);
    assert!(
        ready.json()["reasons"]
            .to_string()
            .contains("queue_unavailable"),
        "{:?}",
        ready.body
    );
    // What the alert rules read (`docs/prometheus-alerts.yml`).
    assert_eq!(gauge(&b, "odoo_gateway_nats_connected").await, Some(0.0));
    assert_eq!(gauge(&b, "odoo_gateway_ready").await, Some(0.0));

    server.restart().expect("nats-server restarts");
    let ready = within(WAIT, || async {
        HttpClient::new()
            .get(&b.url("/readyz"))
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(ready.is_some(), "ready again once NATS is back");
    assert_eq!(gauge(&b, "odoo_gateway_nats_connected").await, Some(1.0));
    let created = within(WAIT, || async { subscribe("after").await.status == 201 }).await;
    assert!(created.is_some(), "A writes again once NATS is back");
    let followed = within(WAIT, || async {
        listed(&b, "app.erp.after").await.is_some()
    })
    .await;
    assert!(followed.is_some(), "B follows the buckets again");
    post_order_retrying(&b, "after", WAIT).await;
    let both = within(WAIT, || async {
        let got = receiver.received();
        got.iter().any(|r| r.path == "/after")
            && got.iter().filter(|r| r.path == "/before").count() >= 2
    })
    .await;
    assert!(
        both.is_some(),
        "the order accepted after the outage reaches both subscriptions: {:?}",
        receiver
            .received()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
}

/// The value of the unlabelled gauge `name` in `gw`'s `/metrics`.
async fn gauge(gw: &TestGateway, name: &str) -> Option<f64> {
    let reply = send(
        gw,
        "GET",
        "/metrics",
        &format!("Bearer {ADMIN}"),
        Vec::new(),
    )
    .await;
    assert_eq!(reply.status, 200);
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = rest.strip_prefix("{}").unwrap_or(rest);
            rest.strip_prefix(' ')?.parse().ok()
        })
}

#[tokio::test]
async fn the_control_plane_survives_a_node_restarting_in_a_three_node_r3_cluster() {
    let mut cluster = NatsCluster::start().expect("three nats-server nodes");
    let config_text = config(&cluster.engine("r3"));
    let (da, db) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = TestGateway::start(&config_text, da.path())
        .await
        .expect("A");
    let b = TestGateway::start(&config_text, db.path())
        .await
        .expect("B");
    let receiver = inbox().await;

    // A node is killed: the instances go on through the two others (after a few seconds of
    // `503 control_plane_unavailable` while they reconnect and the buckets elect leaders),
    // then it comes back with its store.
    {
        let node = 0;
        cluster.kill(node);
        let name = format!("app-{node}");
        // A write the cluster took but whose answer was lost to the failover makes the next
        // try a 409: the app is there all the same.
        let mut answers = Vec::new();
        let start = Instant::now();
        while start.elapsed() < CLUSTER_WAIT {
            let reply = admin(
                &a,
                "POST",
                "/admin/apps",
                Some(json!({"name": name, "scopes": ["read", "write"], "events": ["*"]})),
            )
            .await;
            answers.push(reply.status);
            if reply.status == 201 || (reply.status == 409 && answers.len() > 1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let registered = answers.last().is_some_and(|s| *s == 201 || *s == 409);
        assert!(
            registered,
            "node {node} down: A registers {name}: {answers:?}"
        );
        let app = admin(&a, "GET", "/admin/apps", None).await.json();
        assert!(
            app["apps"]
                .as_array()
                .is_some_and(|apps| apps.iter().any(|x| x["name"] == name)),
            "{app}"
        );
        cluster.restart(node).expect("the node restarts");
    }
    // After the restart the shared state is all there, on both instances. Clients retry what
    // meets one more `503` while the node rejoins.
    let erp = register(&b, "erp").await;
    let start = Instant::now();
    let on_a = loop {
        let reply = token_reply(&a, &erp).await;
        if reply.status == 200 || start.elapsed() > CLUSTER_WAIT {
            assert_eq!(
                reply.status, 200,
                "A issues a token to the app registered on B: {:?}",
                reply.body
            );
            break reply.json()["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned();
        }
        // A `429` (the token endpoint's own limit, which quick retries on a loaded machine
        // reach) is waited out as its Retry-After says; a `503` is retried soon.
        let pause = if reply.status == 429 {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(50)
        };
        tokio::time::sleep(pause).await;
    };
    let start = Instant::now();
    let created = loop {
        let reply = create_orders(&a, &on_a, &receiver, "/orders").await;
        if reply.status != 503 || start.elapsed() > CLUSTER_WAIT {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(created.status, 201, "{:?}", created.body);
    let followed = within(CLUSTER_WAIT, || async {
        listed(&b, "app.erp.orders").await.is_some()
    })
    .await;
    assert!(followed.is_some(), "B follows");
    let both = within(CLUSTER_WAIT, || async {
        let apps = admin(&b, "GET", "/admin/apps", None).await.json();
        apps["apps"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    assert!(both.is_some(), "B has both apps");
    post_order_retrying(&b, "r3", CLUSTER_WAIT).await;
    receiver
        .wait_for(1, CLUSTER_WAIT)
        .await
        .expect("B delivers");
}

/// Read-your-writes across instances: every event accepted after an app was told `201
/// Created` reaches the new subscription, whichever instance accepts it and whichever fans
/// it out, even in the moment before the other instance has heard of the subscription.
#[tokio::test]
async fn every_event_accepted_after_a_subscription_is_created_reaches_it_on_any_instance() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "ryw");
    let ((a, _da), (b, _db)) = (instance(&engine).await, instance(&engine).await);
    let erp = register(&a, "erp").await;
    let on_a = token(&a, &erp).await;
    let receiver = inbox().await;
    let created = create_orders(&a, &on_a, &receiver, "/orders").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    // At once, on both instances: B has not heard of the subscription yet for the first of
    // them, and either instance may fan any of them out.
    const EVENTS: usize = 60;
    let posts = (0..EVENTS).map(|n| {
        let gw = if n % 2 == 0 { &a } else { &b };
        async move { post_order(gw, &format!("ryw-{n}")).await }
    });
    futures_util::future::join_all(posts).await;
    let got = receiver.wait_for(EVENTS, WAIT).await;
    let tags: std::collections::HashSet<String> = receiver
        .received()
        .iter()
        .filter_map(|r| {
            serde_json::from_slice::<Value>(&r.body).ok()?["payload"]["x_test_id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        got.is_ok() && tags.len() == EVENTS,
        "{} of {EVENTS} events reached the subscription",
        tags.len()
    );
}

/// A job pulled while every one of the instance's delivery slots is busy keeps its lease while
/// it waits: it is not handed to another puller past the lease and sent twice.
#[tokio::test]
async fn a_job_waiting_for_a_slot_keeps_its_lease_and_is_sent_once() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "lease");
    let slow = Inbox::start_local(InboxOptions {
        delay: Duration::from_secs(3),
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let fast = inbox().await;
    let config = format!(
        r#"{storage}lease = "1s"
[server]
admin_token = "{ADMIN}"
[delivery]
concurrency = 1
timeout = "10s"
retries = 0
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{SOURCE_TOKEN}"]
[[destinations]]
name = "slow"
url = "{slow_url}"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
[[destinations]]
name = "fast"
url = "{fast_url}"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
[[subscriptions]]
id = "slow"
events = ["sale.order.*"]
destinations = ["slow"]
[[subscriptions]]
id = "fast"
events = ["res.partner.*"]
destinations = ["fast"]
"#,
        storage = engine.storage_toml("data"),
        slow_url = slow.url("/slow"),
        fast_url = fast.url("/fast"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config, dir.path())
        .await
        .expect("gateway starts");
    // The slow delivery takes the instance's one slot for 3 s, three leases.
    post_order(&gw, "slow").await;
    // Let it take the slot before the other job arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = gw.url(&format!("/v1/events/odoo/{SOURCE_TOKEN}"));
    let partner = json!({"model": "res.partner", "action": "write", "record_id": 9, "payload": {"name": "waits"}});
    let reply = HttpClient::new()
        .post_json(&url, partner.to_string().as_bytes())
        .await
        .expect("ingest");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    fast.wait_for(1, WAIT)
        .await
        .expect("the waiting job is sent");
    slow.wait_for(1, WAIT).await.expect("the slow one is sent");
    // Long enough for a second copy, handed out past the lease, to arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fast.received().len(), 1, "sent once");
    assert_eq!(slow.received().len(), 1, "sent once");
    gw.stop().await.expect("stop");
}

/// A plugin output that, with its event, is too large for one message of the queue is
/// dead-lettered with the reason, once: it could never be queued, so it is not called again
/// and again.
#[tokio::test]
async fn a_plugin_output_too_large_for_the_queue_is_dead_lettered_with_the_reason() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "large");
    let receiver = inbox().await;
    let config = format!(
        r#"{base}
[[destinations]]
name = "echo"
url = "{url}"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
[[subscriptions]]
id = "echo"
events = ["res.partner.*"]
destinations = ["echo"]
plugin = "{plugin}"
[subscriptions.config]
mode = "ok"
"#,
        base = config(&engine),
        url = receiver.url("/echo"),
        plugin = odoo_gateway_tests::plugin("hostile_plugin").display(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config, dir.path())
        .await
        .expect("gateway starts");
    // 700 KB: the event fits in a message, the event and its echo together do not.
    let big = "x".repeat(700 * 1024);
    let envelope = json!({"model": "res.partner", "action": "write", "record_id": 1, "payload": {"note": big}});
    let url = gw.url(&format!("/v1/events/odoo/{SOURCE_TOKEN}"));
    let reply = HttpClient::new()
        .post_json(&url, envelope.to_string().as_bytes())
        .await
        .expect("ingest");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let letter = within(WAIT, || async {
        let letters = admin(&gw, "GET", "/admin/dead-letters", None).await.json();
        letters["dead_letters"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    })
    .await;
    assert!(letter.is_some(), "dead-lettered");
    let letters = admin(&gw, "GET", "/admin/dead-letters", None).await.json();
    let reason = letters["dead_letters"][0]["reason"].as_str().unwrap_or("");
    assert!(reason.starts_with("plugin_output_too_large: "), "{letters}");
    assert!(receiver.received().is_empty(), "nothing delivered");
    gw.stop().await.expect("stop");
}

/// A field-filtered subscription writes its body into its job: with its event, that job can be
/// larger than a NATS message though the event itself was accepted. It is dead-lettered with
/// the reason, and the event's other jobs are delivered (before, the fan-out handed the event
/// back every second, forever, and nothing of it was delivered).
#[tokio::test]
async fn a_job_too_large_for_the_queue_is_dead_lettered_and_its_event_still_fans_out() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "toolarge");
    let receiver = inbox().await;
    let config = format!(
        r#"{base}
[[destinations]]
name = "all"
url = "{all}"
[[destinations]]
name = "notes"
url = "{notes}"
[[subscriptions]]
id = "all"
events = ["res.partner.*"]
destinations = ["all"]
[[subscriptions]]
id = "notes"
events = ["res.partner.*"]
destinations = ["notes"]
filter = {{ fields = ["note"] }}
"#,
        base = config(&engine),
        all = receiver.url("/all"),
        notes = receiver.url("/notes"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config, dir.path())
        .await
        .expect("gateway starts");
    // 600 KB: the event fits in a message; the event with the filtered copy of its note does
    // not.
    let big = "x".repeat(600 * 1024);
    let envelope = json!({"model": "res.partner", "action": "write", "record_id": 1, "payload": {"note": big}});
    let url = gw.url(&format!("/v1/events/odoo/{SOURCE_TOKEN}"));
    let reply = HttpClient::new()
        .post_json(&url, envelope.to_string().as_bytes())
        .await
        .expect("ingest");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let delivered = receiver
        .wait_for(1, WAIT)
        .await
        .expect("the plain delivery");
    assert_eq!(delivered[0].path, "/all");
    let letter = within(WAIT, || async {
        let letters = admin(&gw, "GET", "/admin/dead-letters", None).await.json();
        letters["dead_letters"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    })
    .await;
    assert!(letter.is_some(), "dead-lettered");
    let letters = admin(&gw, "GET", "/admin/dead-letters", None).await.json();
    let reason = letters["dead_letters"][0]["reason"].as_str().unwrap_or("");
    assert!(reason.starts_with("too_large: "), "{letters}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "the plain delivery, once");
    gw.stop().await.expect("stop");
}

/// An instance whose configuration file was broken on disk (an operator's edit in progress)
/// still takes the changes other instances make to the shared control plane, over its last good
/// file: before, every rebuild failed, its snapshot stayed behind, and its fan-out handed every
/// event back.
#[tokio::test]
async fn an_instance_with_a_broken_file_still_takes_shared_changes_and_fans_out() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "broken");
    let (a, _da) = instance(&engine).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    let text = config(&engine);
    std::fs::write(&path, &text).expect("write config");
    let b = TestGateway::start_with(odoo_gateway::reload::ConfigSource::File(path.clone()))
        .await
        .expect("gateway B");
    std::fs::write(
        &path,
        format!("{text}\n[[destinations]]\nname = \"half-written\"\n"),
    )
    .expect("break B's file");
    // B's watcher sees the change and refuses it; the running configuration stays.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let erp = register(&a, "erp").await;
    let on_a = token(&a, &erp).await;
    let receiver = inbox().await;
    let created = create_orders(&a, &on_a, &receiver, "/orders").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert!(
        within(WAIT, || async {
            listed(&b, "app.erp.orders").await.is_some()
        })
        .await
        .is_some(),
        "B serves the subscription made on A"
    );
    // Only B fans out from now on.
    a.stop().await.expect("stop A");
    for n in 0..5 {
        post_order(&b, &format!("b{n}")).await;
    }
    receiver
        .wait_for(5, WAIT)
        .await
        .expect("every event B accepted reaches the subscription");
    b.stop().await.expect("stop B");
}

/// What the configuration says is what runs: streams and consumers made under other settings
/// (here an earlier `retention`, `dedup_window` and `lease`) are brought to the configured
/// ones at start-up.
#[tokio::test]
async fn changed_storage_settings_reach_the_streams_at_the_next_start() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "settings");
    let dir = tempfile::tempdir().expect("tempdir");
    let with = |retention: &str, dedup: &str| {
        let lease = if retention == "1h" { "5s" } else { "7s" };
        config(&engine)
            .replace(
                "[storage]\n",
                &format!("[storage]\nretention = \"{retention}\"\ndedup_window = \"{dedup}\"\n"),
            )
            .replace(
                "[storage.nats]\n",
                &format!("[storage.nats]\nlease = \"{lease}\"\n"),
            )
    };
    let lease = || {
        server
            .consumer_info("settings_events", "fanout")
            .expect("consumer info")["config"]["ack_wait"]
            .as_u64()
    };
    let max_age = || {
        let info = server.stream_info("settings_events").expect("stream info");
        (
            info["config"]["max_age"].as_u64(),
            info["config"]["duplicate_window"].as_u64(),
        )
    };
    let first = TestGateway::start(&with("1h", "10m"), dir.path())
        .await
        .expect("gateway");
    within(WAIT, || async { lease() == Some(5_000_000_000) })
        .await
        .expect("the fan-out consumer is made with the first lease");
    first.stop().await.expect("stop");
    assert_eq!(max_age(), (Some(3_600_000_000_000), Some(600_000_000_000)));
    let second = TestGateway::start(&with("2h", "20m"), dir.path())
        .await
        .expect("gateway");
    assert_eq!(
        max_age(),
        (Some(7_200_000_000_000), Some(1_200_000_000_000)),
        "the new retention and dedup window are in force"
    );
    // The fan-out consumer is opened once the stages run.
    let leased = within(WAIT, || async { lease() == Some(7_000_000_000) }).await;
    assert!(leased.is_some(), "the new lease is in force: {:?}", lease());
    second.stop().await.expect("stop");
}

/// Tenancy for the whole cluster: an app whose receivers hang holds no more of the cluster's
/// deliveries than `per_app_concurrency`, however many subscriptions it has and however many
/// instances run them, and another app's deliveries go on meanwhile.
#[tokio::test]
async fn an_app_with_hanging_receivers_holds_at_most_its_share_of_the_cluster() {
    let server = NatsServer::start().expect("nats-server");
    let engine = nats(&server, "tenancy");
    let text = config(&engine).replace(
        "[delivery]\nretries = 0\n",
        "[delivery]\nretries = 0\ntimeout = \"10s\"\nconcurrency = 4\nper_app_concurrency = 2\n",
    );
    let start = || async {
        let dir = tempfile::tempdir().expect("tempdir");
        let gw = TestGateway::start(&text, dir.path())
            .await
            .expect("gateway starts");
        (gw, dir)
    };
    let ((a, _da), (b, _db)) = (start().await, start().await);
    let hanging = Inbox::start_local(InboxOptions {
        delay: Duration::from_secs(6),
        ..InboxOptions::default()
    })
    .await
    .expect("inbox");
    let good = inbox().await;
    let slow_app = register(&a, "slow").await;
    let slow_token = token(&a, &slow_app).await;
    for n in 0..4 {
        let url = hanging.url(&format!("/s{n}")).to_string();
        let body =
            json!({"id": format!("s{n}"), "events": ["sale.order.*"], "destination": {"url": url}});
        let reply = api(&a, &slow_token, "POST", "/v1/subscriptions", Some(body)).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
    }
    let good_app = register(&a, "good").await;
    let good_token = token(&a, &good_app).await;
    let created = create_orders(&a, &good_token, &good, "/good").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    for n in 0..4 {
        let gw = if n % 2 == 0 { &a } else { &b };
        post_order(gw, &format!("t{n}")).await;
    }
    // The good app's four deliveries arrive while the slow app's hang.
    good.wait_for(4, Duration::from_secs(5))
        .await
        .expect("the other app is delivered meanwhile");
    let started = hanging.received().len();
    assert!(
        (1..=2).contains(&started),
        "{started} deliveries of the slow app in flight at once in the cluster (its share: 2)"
    );
}
